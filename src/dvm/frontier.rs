//! Frontiers are PostgreSQL snapshots (`pg_snapshot` text: `xmin:xmax:xip,...`). A change row belongs to
//! the batch of a refresh when its transaction is visible in the refresh's snapshot and not in the
//! stream table's frontier — the way PgQ cuts batches. Unlike a log position, this is exact for long
//! transactions that commit below a frontier that already moved past their start.

use crate::error::{PgtError, PgtResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub xmin: u64,
    pub xmax: u64,
    /// In-progress transaction ids, ascending.
    pub xip: Vec<u64>,
}

impl Snapshot {
    pub fn parse(text: &str) -> PgtResult<Snapshot> {
        let bad = || PgtError::internal(format!("malformed snapshot \"{text}\""));
        let mut parts = text.trim().splitn(3, ':');
        let xmin = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let xmax = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let xip_text = parts.next().ok_or_else(bad)?;
        let mut xip = Vec::new();
        for x in xip_text.split(',').filter(|s| !s.is_empty()) {
            xip.push(x.parse::<u64>().map_err(|_| bad())?);
        }
        xip.sort_unstable();
        if xmin > xmax || xip.iter().any(|&x| x < xmin || x >= xmax) {
            return Err(bad());
        }
        Ok(Snapshot { xmin, xmax, xip })
    }

    /// Whether `xid`'s effects are visible in this snapshot (pg_visible_in_snapshot).
    pub fn is_visible(&self, xid: u64) -> bool {
        xid < self.xmin || (xid < self.xmax && self.xip.binary_search(&xid).is_err())
    }

    /// This snapshot with `xid` made invisible.
    ///
    /// PostgreSQL leaves a transaction's own xid out of its snapshot's in-progress list, so when a later
    /// transaction has already finished (own xid < xmax) `pg_current_snapshot()` reports the refreshing
    /// transaction itself as visible. Changes that same transaction makes to a source *after* the
    /// refresh would then count as consumed and be lost. Recording the frontier without its own xid puts
    /// them in the next batch, where they belong.
    pub fn without(&self, xid: u64) -> Snapshot {
        let mut s = self.clone();
        if s.is_visible(xid) && xid >= s.xmin {
            if let Err(pos) = s.xip.binary_search(&xid) {
                s.xip.insert(pos, xid);
            }
        }
        s
    }

    pub fn to_text(&self) -> String {
        let xip = self
            .xip
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        format!("{}:{}:{}", self.xmin, self.xmax, xip)
    }
}

/// Snapshots with transactions in progress or not, overlapping or apart, for tests of batch
/// predicates over [`TEST_XIDS`]: transaction ids below, inside and above all of them.
#[cfg(test)]
pub(crate) const TEST_SNAPSHOTS: [&str; 6] = [
    "100:100:",
    "100:105:101,103",
    "103:110:103,104,108",
    "104:104:",
    "90:120:95,101,110,119",
    "120:130:125",
];
#[cfg(test)]
pub(crate) const TEST_XIDS: std::ops::Range<u64> = 85..135;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        let s = Snapshot::parse("100:105:101,103").unwrap();
        assert_eq!(
            s,
            Snapshot {
                xmin: 100,
                xmax: 105,
                xip: vec![101, 103]
            }
        );
        assert_eq!(s.to_text(), "100:105:101,103");
        assert_eq!(Snapshot::parse("7:7:").unwrap().to_text(), "7:7:");
        for bad in ["", "1:2", "x:2:", "5:3:", "1:5:9"] {
            assert!(Snapshot::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn visibility_matches_pg_visible_in_snapshot() {
        let s = Snapshot::parse("100:105:101,103").unwrap();
        assert!(s.is_visible(99));
        assert!(s.is_visible(100));
        assert!(!s.is_visible(101));
        assert!(s.is_visible(102));
        assert!(!s.is_visible(103));
        assert!(s.is_visible(104));
        assert!(!s.is_visible(105));
    }

    /// The batch predicate's shortcuts (`CdcContext::batch_predicate`), written as that SQL is, decide
    /// every transaction as the visibility functions alone do: for snapshots with transactions in
    /// progress or not, overlapping or apart, and xids below, inside and above both.
    #[test]
    fn the_batch_predicates_bounds_decide_as_the_visibility_functions_do() {
        let snapshots = TEST_SNAPSHOTS.map(|t| Snapshot::parse(t).unwrap());
        for old in &snapshots {
            for new in &snapshots {
                for xid in TEST_XIDS {
                    let exact = new.is_visible(xid) && !old.is_visible(xid);
                    let shortcut = xid >= old.xmin
                        && (xid < new.xmin || new.is_visible(xid))
                        && (xid >= old.xmax || !old.is_visible(xid));
                    assert_eq!(shortcut, exact, "old {old:?}, new {new:?}, xid {xid}");
                }
            }
        }
    }

    #[test]
    fn own_xid_is_made_invisible_only_when_it_was_visible() {
        let s = Snapshot::parse("100:105:101").unwrap();
        // Own xid 102 below xmax and not in xip: reported visible, must not be.
        let f = s.without(102);
        assert!(!f.is_visible(102));
        assert_eq!(f.to_text(), "100:105:101,102");
        // Already invisible (>= xmax): unchanged.
        assert_eq!(s.without(107), s);
        // Every other transaction keeps its visibility.
        for x in 95..110 {
            if x != 102 {
                assert_eq!(f.is_visible(x), s.is_visible(x), "{x}");
            }
        }
    }
}
