//! The refresh side of the external worker protocol (`pg_trickle_worker`; the queue, claims and
//! heartbeats are SQL functions in sql/finalize.sql, the coordinator's side is bgworker/external.rs).
//! EXECUTE is granted to `pgtrickle_worker` only.
//!
//! A worker refreshes a claimed job with `worker_refresh` in a transaction of its own and commits.
//! The refresh is the scheduler's (refresh::run: claim, fence, NO_DATA / DIFFERENTIAL / FULL, history,
//! clean-up, all as the stream table's owner); what is added is the fence on the job: the same
//! transaction marks the job done only while the worker's attempt is still the job's current one. A
//! job reclaimed meanwhile (the worker fell silent) has a higher attempt, so the late refresh raises
//! and rolls back — whatever the worker's clock says.

use crate::catalog::privilege;
use crate::error::{required, OrRaise, PgtError, PgtResult, SqlState};
use crate::refresh::{self, Batch, Initiator, Outcome, Staged};
use crate::spi;
use crate::stats::history::{self, Executor};
use pgrx::datum::Uuid;
use pgrx::prelude::*;

/// How a job ended, as `pgt_worker_jobs.outcome` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Refreshed,
    /// Another session held the stream table's claim: the coordinator queues it again.
    Busy,
    /// Dropped meanwhile.
    Gone,
    /// Its query no longer works; the stream table is now in ERROR.
    Broken,
    Failed,
}

impl JobOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Refreshed => "refreshed",
            JobOutcome::Busy => "busy",
            JobOutcome::Gone => "gone",
            JobOutcome::Broken => "broken",
            JobOutcome::Failed => "failed",
        }
    }
}

/// A claimed job, the fence's arguments.
struct Lease {
    worker_id: Uuid,
    job_id: i64,
    attempt: i32,
}

/// Refreshes the stream table of a job this worker claimed, in the caller's transaction; the
/// transaction may commit only if this returned. Row: what it did (`outcome`; `action`, the rows
/// inserted and deleted when it refreshed).
#[pg_extern(schema = "pgtrickle")]
#[allow(clippy::type_complexity)]
fn worker_refresh(
    worker_id: Option<Uuid>,
    job_id: Option<i64>,
    attempt: Option<i32>,
) -> TableIterator<
    'static,
    (
        name!(outcome, String),
        name!(action, Option<String>),
        name!(rows_inserted, i64),
        name!(rows_deleted, i64),
    ),
> {
    // Before any statement: see refresh::has_xid.
    let wrote_before = refresh::has_xid();
    let row = lease(worker_id, job_id, attempt)
        .and_then(|lease| elevated(|| refresh_job(&lease, wrote_before, Batch::Buffers)))
        .or_raise();
    TableIterator::once(row)
}

/// Runs `body` as the extension's owner, as a SECURITY DEFINER function would, with the refresh's
/// pinned settings (search_path `pg_catalog, pg_temp`): a worker's session decides nothing of what
/// the names in pg_trickle's own statements mean.
fn elevated<R>(body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    privilege::as_extension_owner(|| refresh::with_refresh_settings(body))
}

fn lease(worker_id: Option<Uuid>, job_id: Option<i64>, attempt: Option<i32>) -> PgtResult<Lease> {
    Ok(Lease {
        worker_id: required(worker_id, "worker_id")?,
        job_id: required(job_id, "job_id")?,
        attempt: required(attempt, "attempt")?,
    })
}

fn refresh_job(
    lease: &Lease,
    wrote_before: bool,
    batch: Batch<'_>,
) -> PgtResult<(String, Option<String>, i64, i64)> {
    let pgt_id = job_stream_table(lease)?;
    let _executor = history::executing_as(Executor::ExternalWorker(lease.worker_id));
    let (outcome, row) =
        match refresh::run_batch(pgt_id, Initiator::Scheduler, wrote_before, batch)? {
            Outcome::Refreshed {
                action,
                rows_inserted,
                rows_deleted,
            } => (
                JobOutcome::Refreshed,
                (
                    Some(action.as_str().to_string()),
                    rows_inserted,
                    rows_deleted,
                ),
            ),
            Outcome::Busy => (JobOutcome::Busy, (None, 0, 0)),
            Outcome::Gone => (JobOutcome::Gone, (None, 0, 0)),
            Outcome::Broken(_) => (JobOutcome::Broken, (None, 0, 0)),
        };
    if finish(lease, outcome)?.is_none() {
        return Err(not_current(
            lease,
            "it was reclaimed while this refresh ran; the refresh is rolled back",
        ));
    }
    Ok((outcome.as_str().to_string(), row.0, row.1, row.2))
}

/// The stream table of the job `lease` holds, while it is the job's current attempt.
fn job_stream_table(lease: &Lease) -> PgtResult<i64> {
    spi::one::<i64>(
        "SELECT pgt_id FROM pgtrickle.pgt_worker_jobs
          WHERE job_id = $1 AND attempt = $2 AND worker_id = $3 AND state = 'running'",
        &[
            lease.job_id.into(),
            lease.attempt.into(),
            lease.worker_id.into(),
        ],
    )?
    .ok_or_else(|| not_current(lease, "it was reclaimed or has finished"))
}

/// An offload handed out in this backend, for `worker_offload_apply` in the same transaction.
struct Pending {
    lease: (Uuid, i64, i32),
    /// The top-level transaction it belongs to.
    xid: u64,
    snapshot: String,
    staged: String,
}

thread_local! {
    static PENDING: std::cell::RefCell<Option<Pending>> = const { std::cell::RefCell::new(None) };
}

fn top_xid() -> u64 {
    // SAFETY: reads the current top-level transaction's full xid (invalid, 0, before one is assigned).
    unsafe { pgrx::pg_sys::GetTopFullTransactionIdIfAny() }.value
}

/// Real offload, step one: claims the job's stream table and, when a worker can reduce its batch
/// itself (`dvm::offload`), returns the local plan (JSON), the `COPY ... TO STDOUT` that pulls the
/// batch and the `COPY ... FROM STDIN` that pushes the reduced delta; the worker then calls
/// `worker_offload_apply` in the same transaction. Otherwise `not_offloaded` says why, and the worker
/// refreshes with `worker_refresh` as usual.
#[pg_extern(schema = "pgtrickle")]
#[allow(clippy::type_complexity)]
fn worker_offload(
    worker_id: Option<Uuid>,
    job_id: Option<i64>,
    attempt: Option<i32>,
) -> TableIterator<
    'static,
    (
        name!(plan, Option<String>),
        name!(copy_out, Option<String>),
        name!(copy_in, Option<String>),
        name!(not_offloaded, Option<String>),
    ),
> {
    let row = lease(worker_id, job_id, attempt)
        .and_then(|lease| elevated(|| offload_job(&lease)))
        .or_raise();
    TableIterator::once(row)
}

#[allow(clippy::type_complexity)]
fn offload_job(
    lease: &Lease,
) -> PgtResult<(
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
)> {
    PENDING.with(|p| p.borrow_mut().take());
    let pgt_id = job_stream_table(lease)?;
    let not = |why: &str| Ok((None, None, None, Some(why.to_string())));
    if !refresh::claim(pgt_id, Initiator::Scheduler)? {
        return not("another session is refreshing it");
    }
    let Some(st) = crate::catalog::stream_tables::load_for_update(pgt_id)? else {
        return not("it was dropped");
    };
    let handout = match refresh::offload::prepare(&st)? {
        Ok(handout) => handout,
        Err(why) => return not(&why),
    };
    let plan = serde_json::to_string(&handout.plan)
        .map_err(|e| PgtError::internal(format!("local plan: {e}")))?;
    PENDING.with(|p| {
        *p.borrow_mut() = Some(Pending {
            lease: (lease.worker_id, lease.job_id, lease.attempt),
            xid: top_xid(),
            snapshot: handout.snapshot,
            staged: handout.staged,
        })
    });
    Ok((
        Some(plan),
        Some(handout.copy_out),
        Some(handout.copy_in),
        None,
    ))
}

/// Real offload, step two: refreshes the job's stream table from the reduced delta the worker
/// pushed (`changes` change rows in its batch), advances the frontier to the batch's end, records
/// history and finishes the job — fenced on its attempt, like `worker_refresh`.
#[pg_extern(schema = "pgtrickle")]
#[allow(clippy::type_complexity)]
fn worker_offload_apply(
    worker_id: Option<Uuid>,
    job_id: Option<i64>,
    attempt: Option<i32>,
    changes: Option<i64>,
) -> TableIterator<
    'static,
    (
        name!(outcome, String),
        name!(action, Option<String>),
        name!(rows_inserted, i64),
        name!(rows_deleted, i64),
    ),
> {
    let row = lease(worker_id, job_id, attempt)
        .and_then(|lease| {
            let changes = required(changes, "changes")?;
            let pending = PENDING.with(|p| p.borrow_mut().take()).filter(|p| {
                p.lease == (lease.worker_id, lease.job_id, lease.attempt)
                    && p.xid != 0
                    && p.xid == top_xid()
            });
            let Some(pending) = pending else {
                return Err(PgtError::new(
                    SqlState::ObjectNotInPrerequisiteState,
                    format!(
                        "job {} attempt {} has no offloaded batch in this transaction",
                        lease.job_id, lease.attempt
                    ),
                )
                .hint("Call pgtrickle.worker_offload first, in the same transaction."));
            };
            let staged = Staged {
                snapshot: pending.snapshot,
                relation: pending.staged,
                changes,
            };
            elevated(|| refresh_job(&lease, false, Batch::Staged(&staged)))
        })
        .or_raise();
    TableIterator::once(row)
}

/// After a worker committed a refresh of `pgt_id` (`worker_refresh` or `worker_offload_apply`):
/// deletes the change rows every consumer has applied, or truncates a large buffer they have all
/// applied — in a transaction of its own (call it outside a transaction block), because a `TRUNCATE`
/// makes writers of the source wait until the commit, which inside the refresh would be as late as
/// the worker makes it. By stream table, not job: the coordinator may already have collected the
/// finished job. Harmless for any stream table (it removes only applied rows). False when the worker
/// is not registered and active.
#[pg_extern(schema = "pgtrickle")]
fn worker_release(worker_id: Option<Uuid>, pgt_id: Option<i64>) -> bool {
    required(worker_id, "worker_id")
        .and_then(|worker_id| Ok((worker_id, required(pgt_id, "pgt_id")?)))
        .and_then(|(worker_id, pgt_id)| {
            elevated(|| {
                let active = spi::one::<bool>(
                    "SELECT EXISTS (SELECT 1 FROM pgtrickle.pgt_worker_registry WHERE worker_id = $1 AND status = 'active')",
                    &[worker_id.into()],
                )? == Some(true);
                if active {
                    refresh::release_changes(pgt_id)?;
                }
                Ok(active)
            })
        })
        .or_raise()
}

/// The fence: marks the job finished if `lease` is still its current attempt; its stream table.
/// Under READ COMMITTED a concurrent heartbeat of the row is waited for and re-checked; a reclaim
/// (attempt + 1, state 'reclaimed') makes this match nothing.
fn finish(lease: &Lease, outcome: JobOutcome) -> PgtResult<Option<(i64, f64)>> {
    let state = if outcome == JobOutcome::Failed {
        "failed"
    } else {
        "done"
    };
    let row = spi::rows(
        "UPDATE pgtrickle.pgt_worker_jobs
            SET state = $4, outcome = $5, finished_at = pg_catalog.clock_timestamp()
          WHERE job_id = $1 AND attempt = $2 AND worker_id = $3 AND state = 'running'
         RETURNING pgt_id, pg_catalog.date_part('epoch', finished_at - assigned_at)::float8 AS ran_s",
        &[lease.job_id.into(), lease.attempt.into(), lease.worker_id.into(), state.into(), outcome.as_str().into()],
        |r| Ok((spi::col::<i64>(r, "pgt_id")?, spi::col::<f64>(r, "ran_s")?)),
    )?;
    Ok(row.into_iter().next())
}

fn not_current(lease: &Lease, why: &str) -> PgtError {
    PgtError::new(
        SqlState::ObjectNotInPrerequisiteState,
        format!("job {} attempt {} is not worker {}'s to finish: {why}", lease.job_id, lease.attempt, lease.worker_id),
    )
    .hint("The coordinator reclaims the jobs of a worker silent for longer than pg_trickle.worker_reclaim_timeout and refreshes them itself; claim a new job.")
}

/// Records that this worker's refresh of a job failed with `message` (after its transaction rolled
/// back): the job is marked failed and the stream table's failure counted and recorded as for a
/// scheduled refresh (backoff, ERROR after pg_trickle.max_consecutive_errors). False when the attempt
/// is no longer current (nothing recorded: the job was reclaimed).
#[pg_extern(schema = "pgtrickle")]
fn worker_fail(
    worker_id: Option<Uuid>,
    job_id: Option<i64>,
    attempt: Option<i32>,
    message: Option<&str>,
) -> bool {
    let message = message.unwrap_or("failed");
    lease(worker_id, job_id, attempt)
        .and_then(|lease| {
            elevated(|| {
                let Some((pgt_id, ran_s)) = finish(&lease, JobOutcome::Failed)? else {
                    return Ok(false);
                };
                let _executor = history::executing_as(Executor::ExternalWorker(lease.worker_id));
                refresh::record_failure(
                    pgt_id,
                    std::time::Duration::from_secs_f64(ran_s.max(0.0)),
                    message,
                )?;
                Ok(true)
            })
        })
        .or_raise()
}
