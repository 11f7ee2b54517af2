//! Refreshing one stream table: claim it, fence on its catalog row, choose the action (NO_DATA,
//! DIFFERENTIAL, FULL — and why), run its plan, record the new frontier and the outcome — all in the
//! caller's transaction, so a refresh is applied completely or not at all.

mod differential;
mod direct_writes;
mod full_delete;
mod full_insert;
pub mod job;
pub mod offload;
mod one_snapshot;
mod reinit;
mod replace;
pub(crate) mod settings;
mod spi_exec;
pub mod storage;

use crate::catalog::names;
use crate::catalog::stream_tables::{self, StreamTable};
use crate::dvm::decide::{self, Decision, Facts, Step};
use crate::dvm::diff::AggregateState;
use crate::dvm::frontier::Snapshot;
use crate::dvm::full::full_refresh_plan;
use crate::dvm::plan::RefreshAction;
use crate::dvm::sql::QualifiedName;
use crate::error::{PgtError, PgtResult, SqlState};
use crate::locks::{Lock, Scope};
use crate::spi;
use crate::stats::history::{self, HistoryEntry};
pub use reinit::Breakage;
pub use settings::{quietly, with_refresh_settings};
pub use spi_exec::Applied;

/// Class of the locks claiming a stream table's refresh (`locks`); the key is the pgt_id.
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
    Refreshed {
        action: RefreshAction,
        rows_inserted: i64,
        rows_deleted: i64,
    },
    /// Another session holds the claim (scheduler only: it tries next tick).
    Busy,
    /// The stream table was dropped meanwhile.
    Gone,
    /// The stream table is now in ERROR: a source changed so that the query no longer works, or no
    /// longer qualifies for DIFFERENTIAL (or the catalog row is another database's). A manual
    /// refresh raises this as its error, and the status goes back with it.
    Broken(Breakage),
}

/// What one refresh did, before it is recorded.
struct Done {
    action: RefreshAction,
    reason: String,
    applied: Applied,
    /// The next refresh must be FULL as well, and why (see differential::refresh).
    reinit_next: Option<String>,
    /// Change rows in the batch a DIFFERENTIAL refresh applied (0 otherwise): what its cost is fitted to.
    changes: i64,
}

/// Whether the current transaction has an xid, i.e. may have written something. Ask before the
/// refresh writes anything itself (its first write, or a DDL statement through SPI, assigns one).
pub fn has_xid() -> bool {
    // SAFETY: reads the current transaction's state; no side effects.
    unsafe { pgrx::pg_sys::GetCurrentTransactionIdIfAny() != pgrx::pg_sys::InvalidTransactionId }
}

/// Where a DIFFERENTIAL refresh takes its batch from.
#[derive(Debug, Clone, Copy)]
pub enum Batch<'a> {
    /// The change buffers, cut at the refresh statement's own snapshot.
    Buffers,
    /// An external worker's reduced delta (api/worker.rs, `dvm::offload`).
    Staged(&'a Staged),
}

/// A batch an external worker has reduced: the change rows up to `snapshot` (the new frontier),
/// `changes` of them, reduced to one row per touched group in `relation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub snapshot: String,
    pub relation: String,
    pub changes: i64,
}

/// Refreshes one stream table in the current transaction. `wrote_before`: whether the transaction
/// had an xid before the caller's first statement (see [`has_xid`]); without one it cannot have
/// changed a source itself, which spares a scan of every change buffer.
pub fn run(pgt_id: i64, initiator: Initiator, wrote_before: bool) -> PgtResult<Outcome> {
    run_batch(pgt_id, initiator, wrote_before, Batch::Buffers)
}

/// [`run`], with the batch taken from `batch`.
pub fn run_batch(
    pgt_id: i64,
    initiator: Initiator,
    wrote_before: bool,
    batch: Batch<'_>,
) -> PgtResult<Outcome> {
    let _own = crate::catalog::guard::OwnWrite::begin();
    let outcome =
        settings::with_refresh_settings(|| run_claimed(pgt_id, initiator, wrote_before, batch))?;
    // A manual refresh raises the reason as its error, which rolls the status back: only a refresh
    // that commits it says so.
    if let (Outcome::Broken(breakage), true) = (&outcome, initiator != Initiator::Manual) {
        if let Some(st) = stream_tables::load(pgt_id)? {
            // A restored row's OID may name another table, or none.
            let name = match *breakage {
                Breakage::ForeignRow => None,
                _ => names::qualified_name_of(st.relid).ok(),
            }
            .map_or_else(|| format!("with pgt_id {pgt_id}"), |n| n.to_string());
            let why = st.last_error.unwrap_or_default();
            pgrx::warning!("pg_trickle: stream table {name} is now in status ERROR: {why}");
        }
    }
    Ok(outcome)
}

fn run_claimed(
    pgt_id: i64,
    initiator: Initiator,
    wrote_before: bool,
    batch: Batch<'_>,
) -> PgtResult<Outcome> {
    if !claim(pgt_id, initiator)? {
        return Ok(Outcome::Busy);
    }
    let Some(st) = stream_tables::load_for_update(pgt_id)? else {
        return Ok(Outcome::Gone);
    };
    if !stream_tables::identity_holds(&st)? {
        spi::exec(
            "UPDATE pgtrickle.pgt_stream_tables
                SET status = 'ERROR', last_error_at = pg_catalog.clock_timestamp(),
                    last_error = $2
              WHERE pgt_id = $1",
            &[
                pgt_id.into(),
                format!(
                    "{} (restored from a dump?): nothing is refreshed; delete the row and create the stream table again",
                    Breakage::ForeignRow.describe()
                )
                .into(),
            ],
        )?;
        return Ok(Outcome::Broken(Breakage::ForeignRow));
    }
    let started_at = history::now()?;
    let storage = names::qualified_name_of(st.relid)?;

    // The decision is pure (dvm::decide); this gathers the facts it asks for, then carries it out.
    let facts = Facts {
        creating: initiator == Initiator::Create,
        needs_reinit: st.needs_reinit,
        differential: st.effective_mode == "DIFFERENTIAL",
        mode_reason: st.mode_reason.clone(),
        auto: st.refresh_mode == "AUTO",
        staged_changes: match batch {
            Batch::Staged(staged) => Some(staged.changes),
            Batch::Buffers => None,
        },
        has_frontier: st.frontier.is_some(),
        restarted: st.restarted_since_refresh,
        ..Default::default()
    };
    // The facts and the refresh read one snapshot (see one_snapshot): the batch counted is the batch applied.
    let done = match one_snapshot::during(|| {
        decide_and_refresh(&st, &storage, facts, wrote_before, batch)
    })? {
        Ok(done) => done,
        Err(outcome) => return Ok(outcome),
    };

    let frontier = frontier_without_own_xid(&done.applied.snapshot)?;
    let current = crate::catalog::version::at_least_0_2_0()?;
    let reason = if current { ", reinit_reason = $5" } else { "" };
    let in_flight = if current {
        ", refresh_started_at = NULL"
    } else {
        ""
    };
    spi::exec(
        &format!(
            "UPDATE pgtrickle.pgt_stream_tables
                SET frontier = $2::pg_snapshot, last_refresh_at = $3, last_attempt_at = $3,
                    consecutive_errors = 0, last_error = NULL, needs_reinit = $4{reason}{in_flight}
              WHERE pgt_id = $1"
        ),
        &[
            pgt_id.into(),
            frontier.as_str().into(),
            started_at.into(),
            done.reinit_next.is_some().into(),
            done.reinit_next.clone().into(),
        ],
    )?;
    // The requests this refresh saw are honoured (a reinitialisation, or FULL: see decide).
    crate::catalog::reinit::clear_requests(&st.reinit_requests)?;
    let finished_at = history::now()?;
    history::record(&HistoryEntry {
        pgt_id,
        started_at,
        finished_at,
        action: done.action.as_str(),
        status: "SUCCESS",
        initiated_by: initiator.as_str(),
        reason: Some(&done.reason),
        rows_inserted: Some(done.applied.rows_inserted),
        rows_deleted: Some(done.applied.rows_deleted),
        error_message: None,
        delta_rows: Some(done.changes),
    })?;
    crate::stats::cost_summary::record(pgt_id, done.action, done.changes, started_at, finished_at)?;
    // A NO_DATA refresh consumed nothing, so it frees no change rows: skip the buffer scans. A
    // scheduled refresh leaves the clean-up to its caller, after the commit (`release_changes`); a
    // manual one to the coordinator, after its caller commits (bgworker/releases.rs). Without a
    // coordinator it deletes, never truncates: its caller's statement or transaction may go on for
    // long after it, and writers of the source would wait for the buffer's lock all that time.
    if st.effective_mode == "DIFFERENTIAL"
        && done.action != RefreshAction::NoData
        && initiator != Initiator::Scheduler
        && !(initiator == Initiator::Manual && crate::bgworker::releases::after_commit(pgt_id))
    {
        settings::with_differential_settings(|| {
            differential::release_consumed_changes(&st, differential::Release::Delete)
        })?;
    }
    Ok(Outcome::Refreshed {
        action: done.action,
        rows_inserted: done.applied.rows_inserted,
        rows_deleted: done.applied.rows_deleted,
    })
}

/// The clean-up after a scheduled refresh of `pgt_id` (`Outcome::Refreshed` other than NO_DATA),
/// in a transaction of its own right after the refresh's commit: deletes the change rows every
/// consumer has applied, or truncates a large buffer they have all applied (see `Release`) — which
/// writers of the source would wait for until the refresh committed, were it done inside it. Rows a
/// clean-up leaves (it failed, or the process ended first) go with the next one.
pub fn release_changes(pgt_id: i64) -> PgtResult<()> {
    settings::with_refresh_settings(|| {
        let Some(st) = stream_tables::load(pgt_id)? else {
            return Ok(());
        };
        if st.effective_mode != "DIFFERENTIAL" {
            return Ok(());
        }
        let how = differential::Release::here();
        settings::with_differential_settings(|| differential::release_consumed_changes(&st, how))
    })
}

/// Gathers the facts the decision asks for and carries the decision out: what the refresh did, or
/// the outcome that ends it without one.
fn decide_and_refresh(
    st: &StreamTable,
    storage: &QualifiedName,
    mut facts: Facts,
    wrote_before: bool,
    batch: Batch<'_>,
) -> PgtResult<Result<Done, Outcome>> {
    let mut gathered = differential::Gathered::default();
    let row_security = match facts.differential && !facts.creating && !facts.needs_reinit {
        true => differential::row_security_now(&mut gathered, st)?,
        false => None,
    };
    facts.needs_reinit |= row_security.is_some();
    let decision = loop {
        match decide::next(&facts) {
            Step::Ask(fact) => differential::gather(
                fact,
                &mut facts,
                &mut gathered,
                st,
                storage,
                wrote_before,
                batch,
            )?,
            Step::Decide(decision) => break decision,
        }
    };
    let done = match decision {
        Decision::Full {
            reason,
            reinit_next,
        } => Done {
            reinit_next,
            ..full(st, storage, reason)?
        },
        Decision::Reinitialise { again_next } => match reinitialise(st, storage, row_security)? {
            Ok(done) => Done {
                reinit_next: done.reinit_next.or(again_next),
                ..done
            },
            Err(breakage) => return Ok(Err(Outcome::Broken(breakage))),
        },
        Decision::NoData => {
            let snapshot = match batch {
                Batch::Staged(staged) => staged.snapshot.clone(),
                Batch::Buffers => gathered.snapshot()?,
            };
            Done {
                action: RefreshAction::NoData,
                reason: "no changes since the last refresh".into(),
                applied: Applied {
                    rows_inserted: 0,
                    rows_deleted: 0,
                    snapshot,
                },
                reinit_next: None,
                changes: 0,
            }
        }
        Decision::Differential { auto } => differential::refresh(st, storage, gathered, auto)?,
        Decision::ApplyStaged => match batch {
            Batch::Staged(staged) => differential::refresh_staged(st, storage, staged)?,
            Batch::Buffers => {
                return Err(PgtError::internal("a worker's batch to apply without one"))
            }
        },
        Decision::RefuseEmptyWorkerBatch => {
            return Err(PgtError::new(SqlState::InsufficientPrivilege, "the external worker read no change rows, but the batch has some")
                .hint("The worker's role must hold pgtrickle_worker (GRANT pgtrickle_worker TO <role>) to read change buffers."));
        }
    };
    Ok(Ok(done))
}

fn full(st: &StreamTable, storage: &QualifiedName, reason: String) -> PgtResult<Done> {
    let row_ids = stream_tables::has_row_identity(st.relid)?;
    // The operator tree decides what a DIFFERENTIAL stream table stores besides the visible columns.
    let tree = if row_ids && st.effective_mode == "DIFFERENTIAL" {
        st.tree()?
    } else {
        None
    };
    let payload = storage::payload(st, storage, tree.as_ref(), true)?.ok_or_else(|| {
        PgtError::internal("storage payload unavailable after adding its columns")
    })?;
    let state = tree.as_ref().and_then(AggregateState::of);
    let source = match (&state, &tree) {
        (Some(state), Some(tree)) => state.full_query(tree, &payload.types)?,
        (None, Some(tree)) if tree.full_from_tree => crate::dvm::diff::rules::new_sql(
            tree,
            &tree.root,
            &mut crate::dvm::diff::DiffContext::default(),
        )?,
        _ => st.defining_query.clone(),
    };
    let plan = full_refresh_plan(storage, &payload, &source, row_ids);
    let from_tree = tree.as_ref().is_some_and(|t| t.full_from_tree);
    let execute = || {
        if from_tree {
            settings::with_text_form_settings(|| spi_exec::execute(&plan, st))
        } else {
            spi_exec::execute(&plan, st)
        }
    };
    let (applied, reason) = match replace::uncaptured(st)? {
        Some(how) => (
            crate::cdc::replaced::uncaptured(st.relid, execute)?,
            format!("{reason}; {how}"),
        ),
        None => (execute()?, reason),
    };
    Ok(Done {
        action: RefreshAction::Full,
        reason,
        applied,
        reinit_next: None,
        changes: 0,
    })
}

/// A reinitialisation: the query checked against the sources again (an error: the stream table is
/// now in ERROR, and why), then FULL — and FULL at the next refresh too while a capture or signal
/// trigger of a source is disabled.
/// `why`: a reason found by this refresh rather than recorded (`differential::row_security_now`).
fn reinitialise(
    st: &StreamTable,
    storage: &QualifiedName,
    why: Option<String>,
) -> PgtResult<Result<Done, Breakage>> {
    let st = match reinit::prepare(st)? {
        Ok(st) => st,
        Err(breakage) => return Ok(Err(breakage)),
    };
    // A disabled capture trigger captures nothing: FULL until it is enabled again.
    let suspended = match st.tree()? {
        Some(tree) => crate::cdc::suspended(
            crate::cdc::Family::Capture,
            &tree
                .tables()
                .iter()
                .map(|t| pgrx::pg_sys::Oid::from(t.relid))
                .collect::<Vec<_>>(),
        )?,
        None => false,
    };
    let reason = if suspended {
        SUSPENDED_CAPTURE.to_string()
    } else {
        format!(
            "reinitialised: {}",
            why.as_deref()
                .or(st.reinit_reason.as_deref())
                .unwrap_or("a source was truncated or changed, or its capture was interrupted")
        )
    };
    let mut done = full(&st, storage, reason)?;
    done.reinit_next = if suspended {
        Some("change capture on a source was disabled".to_string())
    } else if crate::catalog::unchanged::signals_suspended(st.pgt_id)? {
        // Unsignalled writes: refreshed each schedule until the trigger is enabled again.
        Some("a signal trigger on a source is disabled".to_string())
    } else {
        None
    };
    Ok(Ok(done))
}

const SUSPENDED_CAPTURE: &str =
    "FULL: change capture on a source is disabled (ALTER TABLE ... DISABLE TRIGGER)";

/// The snapshot to record as frontier: the refresh's, with the refreshing transaction's own xid made
/// invisible (see `Snapshot::without`), so its own later writes belong to the next batch.
fn frontier_without_own_xid(snapshot: &str) -> PgtResult<String> {
    // SAFETY: pg_current_xact_id() without a statement: the top-level xid (the fence's FOR UPDATE has
    // assigned it already), with its epoch.
    let own = unsafe { pgrx::pg_sys::GetTopFullTransactionId() }.value;
    Ok(Snapshot::parse(snapshot)?.without(own).to_text())
}

/// One refresher per stream table: a transaction-level lock of pg_trickle's (`locks`).
/// Users wait for a running refresh; the scheduler moves on and retries next tick.
pub(crate) fn claim(pgt_id: i64, initiator: Initiator) -> PgtResult<bool> {
    let lock = claim_lock(pgt_id);
    Ok(match initiator {
        Initiator::Scheduler => lock.try_acquire(Scope::Transaction),
        Initiator::Create | Initiator::Manual => {
            lock.acquire(Scope::Transaction);
            true
        }
    })
}

/// The lock claiming a stream table's refresh.
pub(crate) fn claim_lock(pgt_id: i64) -> Lock {
    Lock::new(LOCK_CLASS, pgt_id as i32)
}

/// Records a failed scheduled refresh that ran for `elapsed`. Runs in a fresh transaction after the
/// failed one rolled back.
pub fn record_failure(pgt_id: i64, elapsed: std::time::Duration, message: &str) -> PgtResult<()> {
    // One clock reading: the history row's duration is `elapsed` itself.
    let finished_at = history::now()?;
    let started_at: pgrx::datum::TimestampWithTimeZone = spi::one(
        "SELECT $1 - pg_catalog.make_interval(secs => $2)",
        &[finished_at.into(), elapsed.as_secs_f64().into()],
    )?
    .ok_or_else(|| PgtError::internal("the refresh's start is NULL"))?;
    // After max_consecutive_errors failures in a row (0: never) the stream table goes to ERROR.
    let in_flight = if crate::catalog::version::at_least_0_2_0()? {
        ", refresh_started_at = NULL"
    } else {
        ""
    };
    let was_active = spi::one::<bool>(
        "SELECT status = 'ACTIVE' FROM pgtrickle.pgt_stream_tables WHERE pgt_id = $1 FOR UPDATE",
        &[pgt_id.into()],
    )? == Some(true);
    let failed = spi::rows(
        &format!(
            "UPDATE pgtrickle.pgt_stream_tables
                SET consecutive_errors = consecutive_errors + 1, last_error = $2,
                    last_error_at = pg_catalog.clock_timestamp(), last_attempt_at = $3{in_flight},
                    status = CASE WHEN $4 > 0 AND consecutive_errors + 1 >= $4 AND status = 'ACTIVE' THEN 'ERROR' ELSE status END
              WHERE pgt_id = $1
              RETURNING effective_mode, consecutive_errors, status = 'ERROR' AS in_error"
        ),
        &[pgt_id.into(), message.into(), started_at.into(), crate::gucs::max_consecutive_errors().into()],
        |r| Ok((spi::col::<String>(r, "effective_mode")?, spi::col::<i32>(r, "consecutive_errors")?, spi::col::<bool>(r, "in_error")?)),
    )?;
    let Some((mode, errors, in_error)) = failed.into_iter().next() else {
        return Ok(());
    };
    crate::stats::cost_summary::count_failure(pgt_id)?;
    if in_error && was_active {
        let name = stream_tables::load(pgt_id)?
            .and_then(|st| names::qualified_name_of(st.relid).ok())
            .map(|n| n.to_string())
            .unwrap_or_else(|| format!("pgt_id {pgt_id}"));
        pgrx::warning!(
            "pg_trickle: stream table {name} failed {errors} times in a row and is now in status ERROR; fix the cause, then SELECT pgtrickle.alter_stream_table({}, status => 'ACTIVE')",
            crate::dvm::sql::quote_literal(&name)
        );
    }
    history::record(&HistoryEntry {
        pgt_id,
        started_at,
        finished_at,
        action: if mode == "DIFFERENTIAL" {
            "DIFFERENTIAL"
        } else {
            "FULL"
        },
        status: "FAILED",
        initiated_by: Initiator::Scheduler.as_str(),
        reason: None,
        rows_inserted: None,
        rows_deleted: None,
        error_message: Some(message),
        delta_rows: None,
    })
}
