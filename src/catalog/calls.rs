//! Comparing what two readings of a query call (catalog/analysis.rs reads a query's printed text
//! back and refuses it when the two differ).

/// The first function (by OID) that the sorted multisets of calls `written` and `read` do not call
/// equally often: preferably one `written` calls more often (the one lost).
pub fn first_call_apart(written: &[u32], read: &[u32]) -> Option<u32> {
    let (mut w, mut r) = (0, 0);
    let mut read_more = None;
    while w < written.len() {
        match read.get(r) {
            Some(&f) if f == written[w] => (w, r) = (w + 1, r + 1),
            Some(&f) if f < written[w] => {
                read_more = read_more.or(Some(f));
                r += 1;
            }
            _ => return Some(written[w]),
        }
    }
    read_more.or(read.get(r).copied())
}

#[cfg(test)]
mod tests {
    use super::first_call_apart;

    #[test]
    fn the_call_apart_is_the_one_the_written_query_makes_more_often() {
        assert_eq!(first_call_apart(&[1, 5, 5, 9], &[1, 5, 5, 9]), None);
        assert_eq!(first_call_apart(&[], &[]), None);
        // citext's = (100) read back as text's (67).
        assert_eq!(first_call_apart(&[5, 100], &[5, 67]), Some(100));
        assert_eq!(first_call_apart(&[5, 67, 100], &[5, 67, 67]), Some(100));
        // One call fewer, or one more.
        assert_eq!(first_call_apart(&[5, 5, 9], &[5, 9]), Some(5));
        assert_eq!(first_call_apart(&[5, 9], &[5, 9, 9]), Some(9));
        assert_eq!(first_call_apart(&[2, 3], &[1, 2, 3]), Some(1));
    }
}
