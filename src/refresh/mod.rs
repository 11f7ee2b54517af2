//! Refreshing one stream table: claim it, fence on its catalog row, run the plan, record the outcome —
//! all in the caller's transaction, so a refresh is applied completely or not at all.

mod spi_exec;

use crate::catalog::{names, stream_tables};
use crate::dvm::full::full_refresh_plan;
use crate::error::PgtResult;
use crate::spi;
use crate::stats::history::{self, HistoryEntry};

/// First key of pg_trickle's advisory locks (the two-int form); the second key is the pgt_id.
/// 0x50475452 = "PGTR".
pub const LOCK_CLASS: i32 = 0x5047_5452;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    Create,
    Manual,
    Scheduler,
}

impl Initiator {
    pub fn as_str(self) -> &'static str {
        match self {
            Initiator::Create => "CREATE",
            Initiator::Manual => "MANUAL",
            Initiator::Scheduler => "SCHEDULER",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Refreshed { rows_inserted: i64, rows_deleted: i64 },
    /// Another session holds the claim (scheduler only: it tries next tick).
    Busy,
    /// The stream table was dropped meanwhile.
    Gone,
}

pub fn run(pgt_id: i64, initiator: Initiator) -> PgtResult<Outcome> {
    if !claim(pgt_id, initiator)? {
        return Ok(Outcome::Busy);
    }
    let Some(st) = stream_tables::load_for_update(pgt_id)? else {
        return Ok(Outcome::Gone);
    };
    let started_at = history::now()?;
    let storage = names::qualified_name_of(st.relid)?;
    let plan = full_refresh_plan(&storage, &st.output_columns, &st.defining_query);
    let applied = spi_exec::execute(&plan, pgt_id)?;

    spi::exec(
        "UPDATE pgtrickle.pgt_stream_tables
            SET frontier = $2::pg_snapshot, last_refresh_at = $3, last_attempt_at = $3,
                consecutive_errors = 0, last_error = NULL
          WHERE pgt_id = $1",
        &[pgt_id.into(), applied.snapshot.as_str().into(), started_at.into()],
    )?;
    history::record(&HistoryEntry {
        pgt_id,
        started_at,
        action: plan.action.as_str(),
        status: "SUCCESS",
        initiated_by: initiator.as_str(),
        reason: None,
        rows_inserted: Some(applied.rows_inserted),
        rows_deleted: Some(applied.rows_deleted),
        error_message: None,
    })?;
    Ok(Outcome::Refreshed { rows_inserted: applied.rows_inserted, rows_deleted: applied.rows_deleted })
}

/// One refresher per stream table: a transaction-level advisory lock in pg_trickle's key space.
/// Users wait for a running refresh; the scheduler moves on and retries next tick.
fn claim(pgt_id: i64, initiator: Initiator) -> PgtResult<bool> {
    let key = pgt_id as i32;
    match initiator {
        Initiator::Scheduler => Ok(spi::one::<bool>(
            "SELECT pg_catalog.pg_try_advisory_xact_lock($1, $2)",
            &[LOCK_CLASS.into(), key.into()],
        )? == Some(true)),
        Initiator::Create | Initiator::Manual => {
            spi::exec("SELECT pg_catalog.pg_advisory_xact_lock($1, $2)", &[LOCK_CLASS.into(), key.into()])?;
            Ok(true)
        }
    }
}

/// Records a failed scheduled refresh. Runs in a fresh transaction after the failed one rolled back.
pub fn record_failure(pgt_id: i64, started_at: pgrx::datum::TimestampWithTimeZone, message: &str) -> PgtResult<()> {
    spi::exec(
        "UPDATE pgtrickle.pgt_stream_tables
            SET consecutive_errors = consecutive_errors + 1, last_error = $2,
                last_error_at = pg_catalog.clock_timestamp(), last_attempt_at = $3
          WHERE pgt_id = $1",
        &[pgt_id.into(), message.into(), started_at.into()],
    )?;
    let effective_mode: Option<String> =
        spi::one("SELECT effective_mode FROM pgtrickle.pgt_stream_tables WHERE pgt_id = $1", &[pgt_id.into()])?;
    let Some(action) = effective_mode else { return Ok(()) };
    history::record(&HistoryEntry {
        pgt_id,
        started_at,
        action: if action == "DIFFERENTIAL" { "DIFFERENTIAL" } else { "FULL" },
        status: "FAILED",
        initiated_by: Initiator::Scheduler.as_str(),
        reason: None,
        rows_inserted: None,
        rows_deleted: None,
        error_message: Some(message),
    })
}
