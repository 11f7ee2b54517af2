use crate::catalog::{names, stream_tables};
use crate::cdc;
use crate::dvm::apply::differential_plan;
use crate::dvm::diff::{delta_query, DiffContext};
use crate::dvm::explain::describe_tree;
use crate::dvm::full::full_refresh_plan;
use crate::error::{OrRaise, PgtResult};
use pgrx::prelude::*;

/// Explains how a stream table is refreshed: the mode and why, the operator tree, and the SQL a
/// refresh runs (for DIFFERENTIAL: the plan with every source changed).
#[pg_extern(schema = "pgtrickle")]
fn explain_stream_table(name: &str) -> String {
    explain(name).or_raise()
}

fn explain(name: &str) -> PgtResult<String> {
    let st = stream_tables::find(name)?;
    let storage = names::qualified_name_of(st.relid)?;
    let mut out = format!(
        "Stream table: {storage}\nRefresh mode: {} (requested {})\nWhy: {}\nStatus: {}{}\n",
        st.effective_mode,
        st.refresh_mode,
        st.mode_reason.as_deref().unwrap_or("-"),
        st.status,
        if st.needs_reinit { " (next refresh is FULL: reinitialising)" } else { "" },
    );
    out.push_str(&format!("\nDefining query:\n{}\n", st.defining_query));
    match st.tree()? {
        Some(tree) => {
            out.push_str(&format!("\nOperator tree:\n{}", describe_tree(&tree)));
            if let Some(delta) = delta_query(&tree, &mut DiffContext::new(cdc::refresh_context(&tree.tables())))? {
                let plan = differential_plan(&storage, &st.output_columns, &delta, st.pgt_id);
                out.push_str(&format!("\nDifferential refresh ($1 = the frontier before the refresh):\n{}\n", plan.describe()));
            }
        }
        None => {
            let plan = full_refresh_plan(&storage, &st.output_columns, &st.defining_query, false);
            out.push_str(&format!("\nFull refresh:\n{}\n", plan.describe()));
        }
    }
    Ok(out)
}
