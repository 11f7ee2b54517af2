//! The new state of a MIN/MAX kept from stored state, from its old state and the batch's Δ per group
//! (see `algebraic`): the extremum, the copies of it, and when the group must be recomputed instead.

use crate::dvm::optree::{AggCall, AggFunc};

use super::rules::prints_as_it_compares;

/// Whether a batch counts the copies of each MIN/MAX's least/greatest inserted and deleted values
/// (`__pgt_n{j}`): so that deleting one copy of an extremum need not recompute its group. A group
/// whose extremum an index gives back in a probe (`extremum_probes`) is cheaper recomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExtremumCopies {
    Counted,
    Uncounted,
}

/// For MIN/MAX call `j` over rows joined as `{j_}` (its Δ `di{j}`, `dd{j}` and, counted, `dic{j}`,
/// `ddc{j}`; its stored extremum `oa` and copies `on`): the new state's items (`n_a{j}`, `n_n{j}`)
/// and the conditions under which the group is recomputed instead.
pub(super) fn extremum_state(
    call: &AggCall,
    j: usize,
    j_: &str,
    oa: &str,
    on: &str,
    copies: ExtremumCopies,
) -> (Vec<String>, Vec<String>) {
    let lt = &call.less_than;
    let (di, dd) = (format!("{j_}.di{j}"), format!("{j_}.dd{j}"));
    // `better(x, y)`: x lies beyond y (below for MIN, above for MAX).
    let better = |x: &str, y: &str| {
        if call.func == AggFunc::Min {
            format!("{x} {lt} {y}")
        } else {
            format!("{y} {lt} {x}")
        }
    };
    let new_best = format!(
        "({di} IS NOT NULL AND ({oa} IS NULL OR {}))",
        better(&di, oa)
    );
    let value = format!("CASE WHEN {new_best} THEN {di} ELSE {oa} END AS n_a{j}");
    if copies == ExtremumCopies::Uncounted {
        // A deleted value at or beyond the extremum (the new one, or the stored one) may have been
        // its last copy.
        let rescan = format!(
            "COALESCE({dd} IS NOT NULL AND CASE WHEN {new_best} THEN NOT {} ELSE {oa} IS NULL OR NOT {} END, false)",
            better(&di, &dd),
            better(oa, &dd)
        );
        return (vec![value, format!("NULL::bigint AS n_n{j}")], vec![rescan]);
    }
    let (dic, ddc) = (format!("{j_}.dic{j}"), format!("{j_}.ddc{j}"));
    let lost = format!(
        "CASE WHEN {dd} IS NOT NULL AND {} THEN {ddc} ELSE 0 END",
        same(&dd, oa, lt)
    );
    let gained = format!(
        "CASE WHEN {di} IS NOT NULL AND {} THEN {dic} ELSE 0 END",
        same(&di, oa, lt)
    );
    // Copies of an inserted new extremum that the same batch deleted again (a join's delta cancels
    // rows that way; a new group's rows may come and go in one batch).
    let undone = format!(
        "CASE WHEN {dd} IS NOT NULL AND {} THEN {ddc} ELSE 0 END",
        same(&dd, &di, lt)
    );
    let counted = format!(
        "CASE WHEN {new_best} THEN {dic} - ({undone}) WHEN {oa} IS NULL THEN 0 ELSE {on} - ({lost}) + ({gained}) END AS n_n{j}"
    );
    let mut rescan = Vec::new();
    // Recompute when a deleted value lay beyond the extremum (out of step: beyond the new one, or
    // between the stored one and it), or when every copy of it may be gone — the stored copies
    // (unknown: at least one) less the deleted plus the inserted ones identical to it (an equal value
    // that prints differently, `1.50` for `1.5`, must show: recompute); with a new extremum, when
    // the batch deleted every copy it inserted.
    let kept = format!(
        "CASE WHEN {di} IS NOT NULL AND ROW({di})::pg_catalog.record OPERATOR(pg_catalog.*=) ROW({oa})::pg_catalog.record THEN {dic} ELSE 0 END"
    );
    // Maintained MIN/MAX have the default collation (`maintainable`): their texts print as they compare.
    if !prints_as_it_compares(&call.arg_type) {
        // Which equal copy the stored value printed as is unknown: a deleted copy of the extremum
        // (stored or new) may have been it.
        rescan.push(format!(
            "COALESCE({dd} IS NOT NULL AND (({oa} IS NOT NULL AND {}) OR ({di} IS NOT NULL AND {})), false)",
            same(&dd, oa, lt),
            same(&dd, &di, lt)
        ));
    }
    rescan.push(format!(
        "COALESCE({dd} IS NOT NULL AND CASE WHEN {new_best} THEN {} OR ({} AND {dic} - {ddc} <= 0) OR ({oa} IS NOT NULL AND {} AND NOT {}) \
         ELSE {oa} IS NULL OR {} OR ({} AND COALESCE({on}, 1) - {ddc} + ({kept}) <= 0) END, false)",
        better(&dd, &di),
        same(&dd, &di, lt),
        better(&dd, oa),
        same(&dd, &di, lt),
        better(&dd, oa),
        same(&dd, oa, lt)
    ));
    (vec![value, counted], rescan)
}

/// `x` and `y` (neither NULL) are equal in the order `lt` defines: neither lies below the other.
pub(super) fn same(x: &str, y: &str, lt: &str) -> String {
    format!("(NOT ({x} {lt} {y}) AND NOT ({y} {lt} {x}))")
}
