//! A MIN/MAX group that lost its extremum, recomputed through an index on (group key, argument).
//!
//! Recomputing such a group from its rows reads every one of them: with the rows of a group spread
//! over the table, a heap page per row (134 groups of ~100 rows took 34 ms, most of a 1% batch's
//! refresh). A B-tree index whose first two columns are the group key and the MIN/MAX's argument
//! holds each group's values in order: the extremum is the first entry of the group's range, one
//! probe (`ORDER BY arg LIMIT 1`, which PostgreSQL serves from the index), plus a heap visit per entry
//! whose row is no longer visible.

use super::rules::new_sql;
use super::DiffContext;
use crate::dvm::index_advice::scanned;
use crate::dvm::optree::{AggCall, AggFunc, Expr, ExprPart, Node, OpTree, TableRef};
use crate::error::PgtResult;
use std::collections::BTreeMap;

/// The columns of an aggregate whose MIN/MAX a probe can recompute: one group key and every
/// argument plain columns of the one table its input scans (through projections), every call a COUNT
/// (kept by arithmetic alone) or a MIN/MAX without FILTER, no argument the key itself. A WHERE or a
/// FILTER on other columns would make the probe walk its group's range in the index, a heap visit
/// per entry, until a row passes: where the condition follows the value (`WHERE flag` with `flag`
/// set on the largest values), most of the group, one group at a time, 2.5-4x slower than reading
/// every recomputed group's rows in one bitmap scan. `args`: per MIN/MAX call, its position in the
/// calls, its argument's input column and that column's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtremumColumns<'t> {
    pub table: &'t TableRef,
    pub key_position: usize,
    pub key: String,
    pub args: Vec<(usize, usize, String)>,
}

/// See [`ExtremumColumns`]; None for any other aggregate, or one without MIN/MAX.
pub(crate) fn extremum_columns<'t>(
    input: &'t Node,
    keys: &[Expr],
    calls: &[AggCall],
) -> Option<ExtremumColumns<'t>> {
    let [key] = keys else {
        return None;
    };
    let key_position = plain_column(key)?;
    if !scans_one_table(input) {
        return None;
    }
    let (table, key) = scanned(input, key_position)?;
    let mut args = Vec::new();
    for (j, call) in calls.iter().enumerate() {
        match call.func {
            AggFunc::CountStar | AggFunc::Count => continue,
            AggFunc::Min | AggFunc::Max => {}
            AggFunc::Sum | AggFunc::Avg | AggFunc::Other => return None,
        }
        if call.filter.is_some() {
            return None;
        }
        let m = call.arg.as_ref().and_then(plain_column)?;
        let (t, column) = scanned(input, m)?;
        if t.relid != table.relid || column == key {
            return None;
        }
        args.push((j, m, column.clone()));
    }
    (!args.is_empty()).then(|| ExtremumColumns {
        table,
        key_position,
        key: key.clone(),
        args,
    })
}

/// Per MIN/MAX call of `cols` (by position in `calls`), the SQL of its value over the group whose key
/// is `{z}.k0` (equal under `eq`): the first entry of the group's range in the index, which
/// PostgreSQL reads for `ORDER BY arg LIMIT 1`.
pub(super) fn extremum_probes(
    tree: &OpTree,
    input: &Node,
    cols: &ExtremumColumns,
    eq: &str,
    calls: &[AggCall],
    z: &str,
    ctx: &mut DiffContext,
) -> PgtResult<BTreeMap<usize, String>> {
    let n = cols.key_position;
    let mut probes = BTreeMap::new();
    for (j, m, _) in &cols.args {
        let call = &calls[*j];
        let order = if call.func == AggFunc::Max {
            " DESC"
        } else {
            ""
        };
        // A group of NULL keys is a group too; its range is found by IS NULL, which the index serves
        // as well.
        let mut first = |key_test: &dyn Fn(&str) -> String| -> PgtResult<String> {
            let x = ctx.alias("x");
            let rows = new_sql(tree, input, ctx)?;
            Ok(format!(
                "(SELECT {x}.c{m} FROM ({rows}) AS {x} WHERE {} AND {x}.c{m} IS NOT NULL \
                 ORDER BY {x}.c{m}{order} LIMIT 1)",
                key_test(&format!("{x}.c{n}"))
            ))
        };
        let of_null_key = first(&|k| format!("{k} IS NULL"))?;
        let of_key = first(&|k| format!("{k} {eq} {z}.k0"))?;
        probes.insert(
            *j,
            format!("CASE WHEN {z}.k0 IS NULL THEN {of_null_key} ELSE {of_key} END"),
        );
    }
    Ok(probes)
}

/// The input column an expression is, if it is one as it is.
fn plain_column(e: &Expr) -> Option<usize> {
    match e.parts.as_slice() {
        [ExprPart::Col(n)] => Some(*n),
        _ => None,
    }
}

/// Whether `node` reads all of one table's rows, through projections only.
fn scans_one_table(node: &Node) -> bool {
    match node {
        Node::Scan { .. } => true,
        Node::Project { input, .. } => scans_one_table(input),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(relid: u32, cols: &[&str]) -> Node {
        Node::Scan {
            table: TableRef {
                relid,
                schema: "public".into(),
                name: format!("t{relid}"),
            },
            columns: cols.iter().map(|c| c.to_string()).collect(),
            types: vec![],
        }
    }

    fn call(func: AggFunc, arg: Option<Expr>) -> AggCall {
        AggCall {
            func,
            arg,
            ..AggCall::other()
        }
    }

    #[test]
    fn only_counts_and_min_max_of_plain_columns_of_the_one_scanned_table_qualify() {
        let input = scan(7, &["g", "v", "t"]);
        let calls = [
            call(AggFunc::CountStar, None),
            call(AggFunc::Min, Some(Expr::col(1))),
            call(AggFunc::Max, Some(Expr::col(2))),
        ];
        let cols = extremum_columns(&input, &[Expr::col(0)], &calls).expect("qualifies");
        assert_eq!(
            (cols.table.relid, cols.key_position, cols.key.as_str()),
            (7, 0, "g")
        );
        assert_eq!(
            cols.args,
            [(1, 1, "v".to_string()), (2, 2, "t".to_string())]
        );
        // Two keys; a key or argument computed; a SUM; no MIN/MAX at all.
        let two_keys = [Expr::col(0), Expr::col(2)];
        assert!(extremum_columns(&input, &two_keys, &calls).is_none());
        let computed = Expr {
            parts: vec![
                ExprPart::Sql("lower(".into()),
                ExprPart::Col(2),
                ExprPart::Sql(")".into()),
            ],
        };
        assert!(extremum_columns(&input, &[computed.clone()], &calls).is_none());
        let of_computed = [call(AggFunc::Min, Some(computed))];
        assert!(extremum_columns(&input, &[Expr::col(0)], &of_computed).is_none());
        let with_sum = [calls[1].clone(), call(AggFunc::Sum, Some(Expr::col(1)))];
        assert!(extremum_columns(&input, &[Expr::col(0)], &with_sum).is_none());
        assert!(extremum_columns(&input, &[Expr::col(0)], &calls[..1]).is_none());
        // A FILTER; a WHERE; the key's own MIN.
        let filtered = [AggCall {
            filter: Some(Expr::col(2)),
            ..calls[1].clone()
        }];
        assert!(extremum_columns(&input, &[Expr::col(0)], &filtered).is_none());
        let with_where = Node::Filter {
            input: Box::new(scan(7, &["g", "v", "t"])),
            predicate: Expr::col(2),
        };
        assert!(extremum_columns(&with_where, &[Expr::col(0)], &calls).is_none());
        let of_key = [call(AggFunc::Min, Some(Expr::col(0)))];
        assert!(extremum_columns(&input, &[Expr::col(0)], &of_key).is_none());
        // A join's input reads two tables.
        let joined = Node::Join {
            kind: crate::dvm::optree::JoinKind::Inner,
            left: Box::new(scan(7, &["g", "v", "t"])),
            right: Box::new(scan(8, &["id"])),
            on: None,
            null_types: vec![],
        };
        assert!(extremum_columns(&joined, &[Expr::col(0)], &calls).is_none());
    }
}
