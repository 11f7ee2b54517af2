//! Work on equal subtrees done once per statement: the whole current result an aggregate without
//! GROUP BY reads, and the delta of an aggregate the query holds more than once (a view read twice,
//! TPC-H Q15's `revenue0`).

use super::context::DiffContext;
use super::rules::{hoist, hoist_materialized, new_sql, reads_rows_directly};
use crate::dvm::optree::{Node, OpTree};
use crate::error::PgtResult;

/// The current result of `input`, read whole (by an aggregate without GROUP BY): a MATERIALIZED WITH
/// item, computed once per statement, where computing it takes more than scanning its sources —
/// Q15's `(SELECT max(total_revenue) FROM revenue0)` over a grouped view, whose whole result the
/// delta needs in three places (the new maximum, the old one, the join with the changed maximum).
pub(super) fn whole_input(tree: &OpTree, input: &Node, ctx: &mut DiffContext) -> PgtResult<String> {
    if !ctx.opt.hoist_global_aggregates || reads_rows_directly(input) {
        return new_sql(tree, input, ctx);
    }
    if let Some(name) = known_whole_result(input, ctx) {
        return Ok(format!("SELECT * FROM {name}"));
    }
    let sql = new_sql(tree, input, ctx)?;
    let name = hoist_materialized(ctx, "whole_", sql);
    ctx.cache.whole_results.push((input.clone(), name.clone()));
    Ok(format!("SELECT * FROM {name}"))
}

/// Whether the query holds `node` more than once (a view or subquery written twice, as TPC-H Q15's
/// `revenue0`): its delta is then computed once, for every group the batch touched, and shared —
/// rather than once per place, each cut to what its join partner can meet.
pub(super) fn occurs_more_than_once(tree: &OpTree, node: &Node) -> bool {
    fn count(n: &Node, node: &Node) -> usize {
        usize::from(n == node)
            + n.children()
                .into_iter()
                .map(|c| count(c, node))
                .sum::<usize>()
    }
    let roots = std::iter::once(&tree.root).chain(&tree.ctes);
    roots.map(|r| count(r, node)).sum::<usize>() > 1
}

/// The WITH item holding `node`'s whole current result, if this statement has one.
pub(super) fn known_whole_result(node: &Node, ctx: &DiffContext) -> Option<String> {
    ctx.cache
        .whole_results
        .iter()
        .find(|(n, _)| n == node)
        .map(|(_, name)| name.clone())
}

/// `node`'s delta, computed by `compute`; for an aggregate the query holds more than once, computed
/// once into a WITH item that every place reads.
pub(super) fn shared_delta(
    tree: &OpTree,
    node: &Node,
    ctx: &mut DiffContext,
    compute: impl FnOnce(&mut DiffContext) -> PgtResult<String>,
) -> PgtResult<String> {
    if !occurs_more_than_once(tree, node) {
        return compute(ctx);
    }
    if let Some((_, name)) = ctx.cache.shared_deltas.iter().find(|(n, _)| n == node) {
        return Ok(format!("SELECT * FROM {name}"));
    }
    let sql = compute(ctx)?;
    let name = hoist(ctx, "agg_", sql);
    ctx.cache.shared_deltas.push((node.clone(), name.clone()));
    Ok(format!("SELECT * FROM {name}"))
}
