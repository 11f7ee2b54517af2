//! `pgtrickle._window_ranks(keys anyarray, kind "char") RETURNS bigint[]`: the ranks of a window
//! partition's rows, given each row's ORDER BY values in the window's order (one element per row, a
//! record for the window rewrite: `analyze::window`). Rows whose values are equal — by the element
//! type's default equality, NULLs equal to NULLs, as a window compares them — are peers, and next to
//! each other; for each row it gives the place of its first peer (`'r'`: `rank()`), how many sets of
//! peers come up to it (`'d'`: `dense_rank()`) or the place of its last peer (`'e'`: what
//! `cume_dist()` divides). In C rather than SQL: called once per partition a refresh recomputes, a
//! SQL function ran a query of its own each time (~80 µs for a partition of three rows). Without the
//! `pg` feature only [`Peers`], the codes the rewrite writes.

#[cfg(feature = "pg")]
use crate::error::{PgtError, SqlState};
#[cfg(feature = "pg")]
use pgrx::pg_sys;

/// What `_window_ranks` gives each row, by its peers: its `kind` argument, which the window rewrite
/// writes and the function reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peers {
    /// The place of its first peer: `rank()`.
    First,
    /// How many sets of peers come up to it: `dense_rank()`.
    Sets,
    /// The place of its last peer: what `cume_dist()` divides.
    Last,
}

impl Peers {
    /// The function's `kind` argument.
    pub fn code(self) -> char {
        match self {
            Peers::First => 'r',
            Peers::Sets => 'd',
            Peers::Last => 'e',
        }
    }

    #[cfg(any(feature = "pg", test))]
    fn of(code: u8) -> Option<Peers> {
        [Peers::First, Peers::Sets, Peers::Last]
            .into_iter()
            .find(|p| p.code() as u32 == u32::from(code))
    }
}

/// The ranks of `kind` of rows where `starts[i]` says whether row `i` is not a peer of the row
/// before it (the first row always starts a set of peers).
#[cfg(any(feature = "pg", test))]
fn ranks(starts: &[bool], kind: Peers) -> Vec<i64> {
    let n = starts.len();
    let mut out = vec![0i64; n];
    match kind {
        Peers::First | Peers::Sets => {
            let (mut first, mut sets) = (0i64, 0i64);
            for (i, &start) in starts.iter().enumerate() {
                if start || i == 0 {
                    first = i as i64 + 1;
                    sets += 1;
                }
                out[i] = if kind == Peers::First { first } else { sets };
            }
        }
        Peers::Last => {
            let mut last = n as i64;
            for i in (0..n).rev() {
                out[i] = last;
                if starts[i] {
                    last = i as i64;
                }
            }
        }
    }
    out
}

#[cfg(feature = "pg")]
function_info_v1!(pg_finfo_pgtrickle_window_ranks);

/// The function manager's entry point (STRICT: neither argument is NULL).
///
/// # Safety
/// Called by PostgreSQL's function manager, with a valid `fcinfo` of that signature.
#[cfg(feature = "pg")]
#[no_mangle]
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn pgtrickle_window_ranks(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: the arguments are an array (detoasted here) and a "char", as the SQL signature says;
    // the element type's cache entry lives as long as the backend; every allocation is in the
    // call's memory context.
    unsafe {
        let code = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 1).value() as u8;
        let Some(kind) = Peers::of(code) else {
            PgtError::new(
                SqlState::InvalidParameterValue,
                format!(
                    "pgtrickle._window_ranks: unknown kind {:?} (r, d or e)",
                    code as char
                ),
            )
            .raise();
        };
        let array =
            pg_sys::pg_detoast_datum(pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0).cast_mut_ptr())
                .cast::<pg_sys::ArrayType>();
        let element = (*array).elemtype;
        let (mut len, mut by_value, mut align) = (0i16, false, 0 as std::ffi::c_char);
        pg_sys::get_typlenbyvalalign(element, &mut len, &mut by_value, &mut align);
        let (mut values, mut nulls, mut count) = (
            std::ptr::null_mut::<pg_sys::Datum>(),
            std::ptr::null_mut::<bool>(),
            0i32,
        );
        pg_sys::deconstruct_array(
            array,
            element,
            len.into(),
            by_value,
            align,
            &mut values,
            &mut nulls,
            &mut count,
        );
        let count = count.max(0) as usize;
        let (values, nulls) = if count == 0 {
            (&[][..], &[][..])
        } else {
            (
                std::slice::from_raw_parts(values, count),
                std::slice::from_raw_parts(nulls, count),
            )
        };
        let entry = pg_sys::lookup_type_cache(element, pg_sys::TYPECACHE_EQ_OPR_FINFO as i32);
        if (*entry).eq_opr_finfo.fn_oid == pg_sys::InvalidOid {
            let name = std::ffi::CStr::from_ptr(pg_sys::format_type_be(element))
                .to_string_lossy()
                .into_owned();
            PgtError::new(
                SqlState::UndefinedFunction,
                format!("could not identify an equality operator for type {name}"),
            )
            .raise();
        }
        let collation = (*fcinfo).fncollation;
        let mut starts = Vec::with_capacity(count);
        for i in 0..count {
            let peer = i > 0
                && match (nulls[i - 1], nulls[i]) {
                    (true, true) => true,
                    (false, false) => {
                        pg_sys::FunctionCall2Coll(
                            &mut (*entry).eq_opr_finfo,
                            collation,
                            values[i - 1],
                            values[i],
                        )
                        .value()
                            != 0
                    }
                    _ => false,
                };
            starts.push(!peer);
            if i % 4096 == 4095 {
                pgrx::check_for_interrupts!();
            }
        }
        let mut datums: Vec<pg_sys::Datum> = ranks(&starts, kind)
            .into_iter()
            .map(pg_sys::Datum::from)
            .collect();
        let result = pg_sys::construct_array(
            datums.as_mut_ptr(),
            datums.len() as i32,
            pg_sys::INT8OID,
            8,
            true,
            pg_sys::TYPALIGN_DOUBLE as std::ffi::c_char,
        );
        pg_sys::Datum::from(result)
    }
}

#[cfg(test)]
mod tests {
    use super::{ranks, Peers};

    #[test]
    fn ranks_follow_the_sets_of_peers() {
        // Rows 1 | 2 3 | 4 | 5 6 7 (a `true` starts a set).
        let starts = [true, true, false, true, true, false, false];
        assert_eq!(ranks(&starts, Peers::First), [1, 2, 2, 4, 5, 5, 5]);
        assert_eq!(ranks(&starts, Peers::Sets), [1, 2, 2, 3, 4, 4, 4]);
        assert_eq!(ranks(&starts, Peers::Last), [1, 3, 3, 4, 7, 7, 7]);
        assert_eq!(ranks(&[true], Peers::Last), [1]);
        assert!(ranks(&[], Peers::First).is_empty());
        // The first row starts a set whatever it says.
        assert_eq!(ranks(&[false, false], Peers::First), [1, 1]);
        assert_eq!(ranks(&[false, false], Peers::Last), [2, 2]);
        // The codes the rewrite writes are the ones the function reads.
        for p in [Peers::First, Peers::Sets, Peers::Last] {
            assert_eq!(Peers::of(p.code() as u8), Some(p));
        }
        assert_eq!(Peers::of(b'x'), None);
    }
}
