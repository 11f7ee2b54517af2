//! The batch predicate as one C function, `pgtrickle._in_batch(xid, new, old, rows)`: whether a change
//! of transaction `xid` is visible in snapshot `new` and not in `old` — `pg_visible_in_snapshot`'s
//! arithmetic, twice — with planner support that estimates the batch at `rows` rows, the count the
//! refresh has just taken (rounded, `dvm::diff::estimate_class`).
//!
//! Written with PostgreSQL's own functions, the predicate is three clauses whose default
//! selectivities the planner multiplies: any batch looks like ~15% of its buffer, so a batch of
//! 15,000 change rows was planned as 1,200 (index probes per row where a hash join was cheaper) and
//! a one-row batch in a buffer of 10,000 as 1,500.

use crate::error::{OrRaise, PgtError};
use pgrx::pg_sys;
use pgrx::PgList;

/// A `pg_snapshot` datum's contents after its varlena header, as xid8funcs.c lays them out:
/// `nxip` (u32), `xmin` and `xmax` (u64), then `nxip` in-progress transaction ids (u64, ascending).
#[derive(Debug, Clone, Copy)]
struct SnapshotBytes<'a> {
    xmin: u64,
    xmax: u64,
    xip: &'a [u8],
}

const XID: usize = std::mem::size_of::<u64>();
const HEAD: usize = std::mem::size_of::<u32>() + 2 * XID;

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; XID];
    word.copy_from_slice(&bytes[at..at + XID]);
    u64::from_ne_bytes(word)
}

impl<'a> SnapshotBytes<'a> {
    fn parse(data: &'a [u8]) -> Option<SnapshotBytes<'a>> {
        let nxip = u32::from_ne_bytes(data.get(..4)?.try_into().ok()?) as usize;
        if data.len() < HEAD {
            return None;
        }
        let xip = data.get(HEAD..HEAD.checked_add(nxip.checked_mul(XID)?)?)?;
        let (xmin, xmax) = (u64_at(data, 4), u64_at(data, 4 + XID));
        (xmin <= xmax).then_some(SnapshotBytes { xmin, xmax, xip })
    }

    /// `pg_visible_in_snapshot(xid, self)`.
    fn is_visible(&self, xid: u64) -> bool {
        if xid < self.xmin {
            return true;
        }
        if xid >= self.xmax {
            return false;
        }
        let (mut low, mut high) = (0, self.xip.len() / XID);
        while low < high {
            let mid = (low + high) / 2;
            match u64_at(self.xip, mid * XID).cmp(&xid) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return false,
            }
        }
        true
    }
}

/// Whether a change of `xid` is in the batch after `old` up to `new`.
fn in_batch(xid: u64, new: &SnapshotBytes, old: &SnapshotBytes) -> bool {
    xid >= old.xmin && new.is_visible(xid) && !old.is_visible(xid)
}

function_info_v1!(pg_finfo_pgtrickle_in_batch);

/// `pgtrickle._in_batch(xid8, pg_snapshot, pg_snapshot, bigint) RETURNS boolean`, called on NULL
/// input: false when the transaction or either snapshot is NULL (no frontier yet: nothing is in a
/// batch, as with the visibility functions); the row count only informs the planner.
///
/// # Safety
/// Called by PostgreSQL's function manager, with a valid `fcinfo` of that signature.
#[no_mangle]
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn pgtrickle_in_batch(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fcinfo holds the function's four arguments, as its SQL signature says; a snapshot
    // argument is a varlena, read in place unless compressed or out of line (then detoasted).
    let found = unsafe {
        if (0..3).any(|n| pgrx::fcinfo::pg_arg_is_null(fcinfo, n)) {
            false
        } else {
            let xid = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0).value() as u64;
            let snapshot = |n: usize| {
                let value = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, n).cast_mut_ptr();
                // Read in place unless compressed or stored out of line: an InitPlan's result comes
                // out of a tuple with a short header, which detoasting would copy for every row (a
                // palloc, and a call into PostgreSQL that pgrx guards with a setjmp).
                let value = if pgrx::varlena::varatt_is_4b_c(value)
                    || pgrx::varlena::varatt_is_1b_e(value)
                {
                    pg_sys::pg_detoast_datum(value)
                } else {
                    value
                };
                let header = if pgrx::varlena::varatt_is_1b(value) {
                    1
                } else {
                    4
                };
                let bytes = std::slice::from_raw_parts(
                    value.cast::<u8>().add(header),
                    pgrx::varlena::varsize_any_exhdr(value),
                );
                SnapshotBytes::parse(bytes)
                    .ok_or_else(|| {
                        PgtError::internal("pgtrickle._in_batch: a malformed pg_snapshot")
                    })
                    .or_raise()
            };
            in_batch(xid, &snapshot(1), &snapshot(2))
        }
    };
    pg_sys::Datum::from(found)
}

function_info_v1!(pg_finfo_pgtrickle_in_batch_support);

/// The planner support of `pgtrickle._in_batch`:
/// - for a restriction on a change buffer's scan whose row count is a constant, the selectivity that
///   makes the scan's estimate that count;
/// - for a B-tree index on the transaction id (operators advise one where a buffer keeps many rows
///   for slower stream tables, docs/OPERATIONS.md), the index condition `xid >= xmin(old)`: no row
///   below the old snapshot's `xmin` is in a batch, and the kept rows are all there. Lossy: the
///   function still decides each row the index returns.
///
/// Anything else gets PostgreSQL's default.
///
/// # Safety
/// Called by the planner with a support request node as its one argument.
#[no_mangle]
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn pgtrickle_in_batch_support(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: the argument is a planner node, and a selectivity request's root, args and range
    // table entries are the planner's, valid during the call.
    unsafe {
        let node = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0).cast_mut_ptr::<pg_sys::Node>();
        let none = pg_sys::Datum::from(0usize);
        if node.is_null() {
            return none;
        }
        match (*node).type_ {
            pg_sys::NodeTag::T_SupportRequestSelectivity => {
                let request = node.cast::<pg_sys::SupportRequestSelectivity>();
                match batch_selectivity(&*request) {
                    Some(selectivity) => {
                        (*request).selectivity = selectivity;
                        pg_sys::Datum::from(request)
                    }
                    None => none,
                }
            }
            pg_sys::NodeTag::T_SupportRequestIndexCondition => {
                let request = node.cast::<pg_sys::SupportRequestIndexCondition>();
                match lower_bound_condition(&*request) {
                    Some(conditions) => {
                        (*request).lossy = true;
                        pg_sys::Datum::from(conditions)
                    }
                    None => none,
                }
            }
            _ => none,
        }
    }
}

/// `xid >= pg_snapshot_xmin(old)` for an index whose column is the call's transaction id argument
/// and whose operator family has `>=` on `xid8`, as a one-element list.
unsafe fn lower_bound_condition(
    request: &pg_sys::SupportRequestIndexCondition,
) -> Option<*mut pg_sys::List> {
    // SAFETY: see the caller; the nodes made here live in the planner's memory context.
    unsafe {
        if request.indexarg != 0
            || request.node.is_null()
            || (*request.node).type_ != pg_sys::NodeTag::T_FuncExpr
        {
            return None;
        }
        let call = &*request.node.cast::<pg_sys::FuncExpr>();
        let args = PgList::<pg_sys::Node>::from_pg(call.args);
        let (xid, old) = (args.get_ptr(0)?, args.get_ptr(2)?);
        // The bound must be known before the scan: no column of any table (the index's own would
        // make it no index condition at all), nothing volatile.
        if pg_sys::contain_var_clause(old) || pg_sys::contain_volatile_functions(old) {
            return None;
        }
        let at_least = pg_sys::get_opfamily_member(
            request.opfamily,
            pg_sys::XID8OID,
            pg_sys::XID8OID,
            pg_sys::BTGreaterEqualStrategyNumber as i16,
        );
        // Strategy 4 is `>=` in the family's own order: only xid8's own comparison is the bound.
        if at_least == pg_sys::InvalidOid
            || pg_sys::get_opcode(at_least) != pg_sys::Oid::from(pg_sys::F_XID8GE)
        {
            return None;
        }
        let old = pg_sys::copyObjectImpl(old.cast()).cast::<pg_sys::Node>();
        let xmin = pg_sys::makeFuncExpr(
            pg_sys::Oid::from(pg_sys::F_PG_SNAPSHOT_XMIN),
            pg_sys::XID8OID,
            pg_sys::lappend(std::ptr::null_mut(), old.cast()),
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
            pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
        );
        let condition = pg_sys::make_opclause(
            at_least,
            pg_sys::BOOLOID,
            false,
            pg_sys::copyObjectImpl(xid.cast()).cast(),
            xmin.cast(),
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
        );
        pg_sys::set_opfuncid(condition.cast());
        Some(pg_sys::lappend(std::ptr::null_mut(), condition.cast()))
    }
}

/// The counted rows over the rows the planner expects the change buffer's scan to read.
unsafe fn batch_selectivity(request: &pg_sys::SupportRequestSelectivity) -> Option<f64> {
    // SAFETY: see the caller.
    unsafe {
        if request.is_join || request.root.is_null() {
            return None;
        }
        let args = PgList::<pg_sys::Node>::from_pg(request.args);
        let (xid, rows) = (args.get_ptr(0)?, args.get_ptr(3)?);
        if (*xid).type_ != pg_sys::NodeTag::T_Var || (*rows).type_ != pg_sys::NodeTag::T_Const {
            return None;
        }
        let (xid, rows) = (&*xid.cast::<pg_sys::Var>(), &*rows.cast::<pg_sys::Const>());
        if xid.varlevelsup != 0 || rows.constisnull {
            return None;
        }
        let root = &*request.root;
        let relid = usize::try_from(xid.varno).ok()?;
        if relid == 0 || relid >= usize::try_from(root.simple_rel_array_size).ok()? {
            return None;
        }
        let rel = *root.simple_rel_array.add(relid);
        if rel.is_null() {
            return None;
        }
        let counted = rows.constvalue.value() as i64 as f64;
        let tuples = (*rel).tuples;
        Some(if tuples > 0.0 {
            (counted / tuples).clamp(0.0, 1.0)
        } else {
            1.0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dvm::frontier::{Snapshot, TEST_SNAPSHOTS, TEST_XIDS};

    /// The bytes of a `pg_snapshot` datum after its header.
    fn bytes(s: &Snapshot) -> Vec<u8> {
        let mut out = (s.xip.len() as u32).to_ne_bytes().to_vec();
        for x in [s.xmin, s.xmax].iter().chain(&s.xip) {
            out.extend_from_slice(&x.to_ne_bytes());
        }
        out
    }

    /// The function decides every transaction as `pg_visible_in_snapshot` in the new snapshot and
    /// not in the old does: for snapshots with transactions in progress or not, overlapping or
    /// apart, and xids below, inside and above both.
    #[test]
    fn in_batch_decides_as_the_visibility_functions_do() {
        let snapshots = TEST_SNAPSHOTS.map(|t| Snapshot::parse(t).unwrap());
        for old in &snapshots {
            for new in &snapshots {
                let (old_bytes, new_bytes) = (bytes(old), bytes(new));
                let old_view = SnapshotBytes::parse(&old_bytes).unwrap();
                let new_view = SnapshotBytes::parse(&new_bytes).unwrap();
                for xid in TEST_XIDS {
                    assert_eq!(
                        new_view.is_visible(xid),
                        new.is_visible(xid),
                        "{new:?} {xid}"
                    );
                    let exact = new.is_visible(xid) && !old.is_visible(xid);
                    assert_eq!(
                        in_batch(xid, &new_view, &old_view),
                        exact,
                        "old {old:?}, new {new:?}, xid {xid}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_malformed_snapshot_is_refused() {
        let full = bytes(&Snapshot::parse("100:105:101,103").unwrap());
        assert!(SnapshotBytes::parse(&full).is_some());
        assert!(SnapshotBytes::parse(&full[..full.len() - 1]).is_none());
        assert!(SnapshotBytes::parse(&full[..10]).is_none());
        assert!(SnapshotBytes::parse(&[]).is_none());
        let mut backwards = bytes(&Snapshot::parse("100:105:").unwrap());
        backwards[4..12].copy_from_slice(&200u64.to_ne_bytes());
        assert!(SnapshotBytes::parse(&backwards).is_none());
    }
}
