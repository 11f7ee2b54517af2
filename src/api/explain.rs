use crate::catalog::{names, stream_tables};
use crate::cdc;
use crate::dvm::apply::stream_plan;
use crate::dvm::diff::stored_groups::StoredGroups;
use crate::dvm::diff::{stream_delta, why_not_kept, AggregateState, DiffContext};
use crate::dvm::explain::describe_tree;
use crate::dvm::full::full_refresh_plan;
use crate::error::{required, OrRaise, PgtResult};
use crate::refresh;
use pgrx::prelude::*;

/// Explains how a stream table is refreshed: the mode and why, the operator tree, and the SQL a
/// refresh runs (for DIFFERENTIAL: the plan with every source changed).
#[pg_extern(schema = "pgtrickle")]
fn explain_stream_table(name: Option<&str>) -> String {
    let caller = crate::catalog::privilege::caller();
    required(name, "name")
        .and_then(|name| crate::catalog::privilege::as_extension_owner(|| explain(caller, name)))
        .or_raise()
}

fn explain(caller: pgrx::pg_sys::Oid, name: &str) -> PgtResult<String> {
    let st = stream_tables::find(name)?;
    // The query and its reasons are for those who may read the stream table.
    let readable = crate::spi::one::<bool>(
        "SELECT pg_catalog.has_table_privilege($1, $2, 'SELECT')",
        &[caller.into(), st.relid.into()],
    )?;
    if readable != Some(true) {
        crate::catalog::privilege::require_owner(caller, st.relid, name)?;
    }
    let storage = names::qualified_name_of(st.relid)?;
    let mut out = format!(
        "Stream table: {storage}\nRefresh mode: {} (requested {})\nWhy: {}\nStatus: {}{}\n",
        st.effective_mode,
        st.refresh_mode,
        st.mode_reason.as_deref().unwrap_or("-"),
        st.status,
        if st.needs_reinit {
            " (next refresh is FULL: reinitialising)"
        } else {
            ""
        },
    );
    out.push_str(&format!("\nDefining query:\n{}\n", st.defining_query));
    match st.tree()? {
        Some(tree) => {
            out.push_str(&format!("\nOperator tree:\n{}", describe_tree(&tree)));
            // The indexes a refresh would look groups up through: for the advice, the note on
            // MIN/MAX and the refresh's SQL alike.
            let group_indexes = crate::catalog::indexes::group_key_indexes(&tree)?;
            out.push_str(&super::index_advice::section(&tree, &group_indexes)?);
            out.push_str(&super::index_advice::buffer_section(caller, &st, &tree)?);
            if let Some(top_k) = &tree.top_k {
                out.push_str(&crate::dvm::explain::describe_top_k(&tree, top_k));
            }
            let payload = refresh::storage::payload(&st, &storage, Some(&tree), false)?;
            if let Some(why) = why_not_kept(&tree) {
                out.push_str(&format!(
                    "\nAggregates: every group a batch touches is recomputed from all its input rows: {why}\n"
                ));
            }
            if let Some(groups) = payload
                .as_ref()
                .and_then(|p| StoredGroups::of(&tree, &p.types))
            {
                out.push_str(&format!(
                    "\nA touched group's old row is read from the stream table, by its keys: {}\n",
                    groups.reason()
                ));
            }
            if let Some(state) = AggregateState::of(&tree) {
                let hidden: Vec<String> =
                    state.hidden_columns().into_iter().map(|(n, _)| n).collect();
                out.push_str(&format!(
                    "\nAggregates: maintained from stored state (hidden columns {})\n",
                    hidden.join(", ")
                ));
                let when = state.recomputed_when();
                if when.is_empty() {
                    out.push_str("A group is never recomputed from its input rows: a batch reads its change rows and the touched groups' stored rows\n");
                } else {
                    out.push_str("A group is recomputed from its current input rows (through an index on the group key, if there is one) only when:\n");
                    for line in when {
                        out.push_str(&format!("  - {line}\n"));
                    }
                    let mut ctx = DiffContext::default();
                    ctx.cache.group_indexes = group_indexes.clone();
                    if let Some(note) = state.probed_extrema(&ctx) {
                        out.push_str(&format!("  and {note}\n"));
                    }
                }
            }
            match payload {
                None => out.push_str("\nDifferential refresh: the next refresh is FULL, to set up the stored aggregate state\n"),
                Some(payload) => {
                    let mut ctx = DiffContext::new(cdc::refresh_context(&tree.tables())?);
                    ctx.cache.group_indexes = group_indexes;
                    if let Some(delta) = stream_delta(&tree, &storage, &payload, &mut ctx)? {
                        let plan = stream_plan(&tree, &storage, &payload, &delta, &st.defining_query);
                        out.push_str(&format!("\nDifferential refresh ($1 = the frontier before the refresh):\n{}\n", plan.describe()));
                    }
                }
            }
        }
        None => {
            let payload =
                refresh::storage::payload(&st, &storage, None, false)?.ok_or_else(|| {
                    crate::error::PgtError::internal("no payload for a FULL stream table")
                })?;
            let plan = full_refresh_plan(&storage, &payload, &st.defining_query, false);
            out.push_str(&format!("\nFull refresh:\n{}\n", plan.describe()));
        }
    }
    Ok(out)
}
