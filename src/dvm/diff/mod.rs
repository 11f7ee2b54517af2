//! The differential engine: from an OpTree and a batch description to the SQL of the query's delta.

pub mod algebraic;
pub mod context;
mod extrema;
pub mod extremum_probes;
mod joins;
pub mod rules;
mod sharing;
pub mod stored_groups;

pub(crate) use algebraic::sum_type;
pub use algebraic::{why_not_kept, AggregateState};
pub use context::{
    estimate_class, reads_whole, BatchTest, CacheContext, CdcContext, DiffContext, GroupIndexes,
    GroupLookup, OptimizationContext, SourceCdc,
};
pub use rules::delta_query;

use crate::dvm::apply::{Delta, Payload};
use crate::dvm::optree::OpTree;
use crate::dvm::sql::QualifiedName;
use crate::error::PgtResult;

/// The delta of a stream table's payload, or None when no source under the query changed: per changed
/// group from stored aggregate state when the query allows it; for a top-level GROUP BY that shows one
/// of several equal values, its groups recomputed less their stored rows (`stored_groups`); else a
/// consolidated Z-set by the operators' delta rules.
pub fn stream_delta(
    tree: &OpTree,
    storage: &QualifiedName,
    payload: &Payload,
    ctx: &mut DiffContext,
) -> PgtResult<Option<Delta>> {
    let Some(state) = AggregateState::of(tree) else {
        // (An external worker's staged Δ never comes from a group recompute: `dvm::offload`.)
        if let Some(groups) = stored_groups::StoredGroups::of(tree, &payload.types)
            .filter(|_| ctx.cdc.staged.is_none())
        {
            return Ok(groups
                .delta_query(tree, storage, payload, ctx)?
                .map(Delta::Rows));
        }
        return Ok(delta_query(tree, &payload.types, ctx)?.map(Delta::Rows));
    };
    if rules::is_static_empty(tree, &tree.root, ctx) {
        return Ok(None);
    }
    ctx.opt.hoist_global_aggregates = true;
    let body = state.delta_query(tree, storage, payload, ctx)?;
    Ok(Some(Delta::Groups(format!(
        "{}{body}",
        rules::with_clause(ctx)
    ))))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_algebraic;
