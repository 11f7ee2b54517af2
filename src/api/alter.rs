use crate::catalog::analysis;
use crate::catalog::differential::choose_mode;
use crate::catalog::modes::{RefreshMode, Status};
use crate::catalog::schedule::{format_schedule, parse_schedule};
use crate::catalog::stream_tables::{self, StreamTable};
use crate::catalog::{names, privilege};
use crate::dvm::apply::{DUP_COLUMN, ROW_ID_COLUMN};
use crate::error::{required, OrRaise, PgtError, PgtResult};
use crate::spi;
use pgrx::prelude::*;

/// Changes a stream table's schedule, refresh mode or status (ACTIVE / SUSPENDED). NULL keeps a setting.
#[pg_extern(schema = "pgtrickle")]
fn alter_stream_table(
    name: Option<&str>,
    schedule: default!(Option<&str>, "NULL"),
    refresh_mode: default!(Option<&str>, "NULL"),
    status: default!(Option<&str>, "NULL"),
) {
    let caller = privilege::caller();
    super::on_primary("alter a stream table")
        .and_then(|()| required(name, "name"))
        .and_then(|name| {
            privilege::as_extension_owner(|| alter(caller, name, schedule, refresh_mode, status))
        })
        .or_raise()
}

fn alter(
    caller: pgrx::pg_sys::Oid,
    name: &str,
    schedule: Option<&str>,
    refresh_mode: Option<&str>,
    status: Option<&str>,
) -> PgtResult<()> {
    // Validate everything before changing anything.
    let schedule_ms = schedule.map(parse_schedule).transpose()?;
    let mode = refresh_mode.map(RefreshMode::parse).transpose()?;
    let status = status.map(Status::parse_settable).transpose()?;
    let st = stream_tables::find(name)?;
    privilege::require_owner(caller, st.relid, name)?;

    if let Some(mode) = mode {
        change_mode(&st, mode, caller)?;
    }
    if let Some(ms) = schedule_ms {
        spi::exec(
            "UPDATE pgtrickle.pgt_stream_tables SET schedule = $2, schedule_ms = $3 WHERE pgt_id = $1",
            &[st.pgt_id.into(), format_schedule(ms).into(), ms.into()],
        )?;
    }
    if let Some(status) = status {
        // Re-activating starts retries afresh instead of at the backed-off interval.
        spi::exec(
            "UPDATE pgtrickle.pgt_stream_tables
                SET status = $2,
                    consecutive_errors = CASE WHEN $2 = 'ACTIVE' THEN 0 ELSE consecutive_errors END
              WHERE pgt_id = $1",
            &[st.pgt_id.into(), status.as_str().into()],
        )?;
    }
    crate::bgworker::request_scheduler();
    Ok(())
}

/// Re-decides the effective mode. Becoming DIFFERENTIAL adds the hidden row identity and change
/// capture (which `caller` must be allowed to add) and makes the next refresh a FULL one that fills
/// them in.
fn change_mode(
    st: &StreamTable,
    requested: RefreshMode,
    caller: pgrx::pg_sys::Oid,
) -> PgtResult<()> {
    let _own = crate::catalog::guard::OwnWrite::begin();
    let owner = stream_tables::owner(st.relid)?;
    let analysis = analysis::analyze(&st.defining_query, owner)?;
    let choice = choose_mode(&analysis, requested, owner, Some(caller))?;
    let becomes_differential =
        choice.effective == RefreshMode::Differential && st.effective_mode != "DIFFERENTIAL";
    if becomes_differential {
        let storage = names::qualified_name_of(st.relid)?;
        if !stream_tables::has_row_identity(st.relid)? {
            spi::exec(&format!("ALTER TABLE {storage} ADD COLUMN {ROW_ID_COLUMN} bigint, ADD COLUMN {DUP_COLUMN} integer"), &[])?;
            super::create::add_row_identity_index(&storage)?;
        }
    }
    let tree = choice
        .tree
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| PgtError::internal(e.to_string()))?;
    if becomes_differential {
        spi::exec(
            &crate::catalog::reinit::mark_sql(
                "pgt_id = $1",
                "'switched to DIFFERENTIAL: a FULL refresh fills the hidden columns'",
            )?,
            &[st.pgt_id.into()],
        )?;
    }
    spi::exec(
        "UPDATE pgtrickle.pgt_stream_tables
            SET refresh_mode = $2, effective_mode = $3, op_tree = $4::jsonb, mode_reason = $5
          WHERE pgt_id = $1",
        &[
            st.pgt_id.into(),
            requested.as_str().into(),
            choice.effective.as_str().into(),
            tree.into(),
            choice.reason.into(),
        ],
    )?;
    crate::catalog::unchanged::decide(st.pgt_id, &analysis, choice.effective)?;
    crate::catalog::stream_tables::record_unique_keys(st.pgt_id, choice.tree.as_ref())?;
    crate::cdc::collect_garbage()
}
