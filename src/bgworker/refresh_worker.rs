//! A refresh worker: a dynamic background worker of one database's pool. It takes the jobs its
//! coordinator queues, refreshes each stream table in its own REPEATABLE READ transaction (with the
//! owner's rights, as every refresh), and exits when asked to, or when its coordinator is gone.
//! In pg_stat_activity: backend_type `pg_trickle refresh worker`, and the stream table it refreshes
//! in `query`.

use super::pool;
use super::xact::{self, Isolation};
use crate::dvm::plan::RefreshAction;
use crate::refresh::{self, job, Initiator};
use pgrx::bgworkers::{
    BackgroundWorker, DynamicBackgroundWorker, DynamicBackgroundWorkerLoadError, SignalWakeFlags,
};
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::time::{Duration, Instant};

pub const BACKEND_TYPE: &str = "pg_trickle refresh worker";
/// An idle worker looks at its pool this often even without being woken.
const IDLE_WAIT: Duration = Duration::from_secs(5);

pub fn start(
    db: Oid,
    db_name: &str,
) -> Result<DynamicBackgroundWorker, DynamicBackgroundWorkerLoadError> {
    super::start_in_database(BACKEND_TYPE, "pg_trickle_refresh_worker_main", db, db_name)
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_trickle_refresh_worker_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    super::use_postgres_sigterm();
    let db = Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db), None);
    crate::refresh::settings::pin_session_search_path();
    // SAFETY: reading this process's pid.
    let pid = unsafe { pg_sys::MyProcPid };
    if super::shmem::is_held(db) {
        return; // a DROP/ALTER DATABASE needs this database to itself
    }
    let Some(coordinator) = pool::register_worker(db.to_u32(), pid) else {
        return; // no coordinator any more, or no slot
    };
    crate::stats::history::set_executor(crate::stats::history::Executor::RefreshWorker);
    report_activity(None);
    loop {
        pgrx::check_for_interrupts!();
        if BackgroundWorker::sighup_received() {
            // SAFETY: the standard way for a background worker to re-read postgresql.conf.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if pool::should_exit(db.to_u32(), pid, coordinator) {
            break;
        }
        match pool::take_job(db.to_u32(), pid) {
            Some((pgt_id, name)) => {
                report_activity(Some(&name));
                let refreshed = run_job(pgt_id, &name);
                pool::finish_job(db.to_u32(), pid, pgt_id, refreshed);
                report_activity(None);
            }
            None => {
                BackgroundWorker::wait_latch(Some(IDLE_WAIT));
            }
        }
    }
    pool::unregister_worker(pid);
}

/// How far a job got before it ended.
enum Attempt {
    /// Another session refreshes the stream table now.
    Busy,
    /// Claiming it and marking it in flight failed (the claim, if taken, is released).
    NotStarted(String),
    Ran(Result<refresh::Outcome, String>),
}

/// Refreshes one stream table in its own transaction, as a job (see refresh/job.rs); a failure is
/// logged and recorded (with backoff), never raised. The job — the mark in flight, which may wait for
/// a row lock, and the refresh — is canceled once it has run for `pg_trickle.refresh_timeout`
/// (`time_limit`); a canceled refresh counts as a failure. Shared by the workers and the
/// coordinator's in-process fallback. Returns whether it refreshed (not: busy with another
/// refresher, gone, broken or failed).
pub fn run_job(pgt_id: i64, name: &str) -> bool {
    let started = Instant::now();
    let run = || {
        let outcome = refresh::run(pgt_id, Initiator::Scheduler, refresh::has_xid())?;
        // A refresh clears the mark itself; busy, gone or broken ones did nothing to clear.
        job::end(
            pgt_id,
            !matches!(outcome, refresh::Outcome::Refreshed { .. }),
        )?;
        Ok(outcome)
    };
    let limit = crate::gucs::refresh_timeout();
    let (attempt, timed_out) = super::time_limit::within(limit, || {
        match xact::run(Isolation::ReadCommitted, || job::begin(pgt_id)) {
            Ok(true) => Attempt::Ran(xact::run(Isolation::RepeatableRead, run)),
            Ok(false) => Attempt::Busy,
            Err(e) => Attempt::NotStarted(e),
        }
    });
    let outcome = match attempt {
        Attempt::Busy => return false,
        Attempt::NotStarted(e) => {
            warning!("pg_trickle: could not start the refresh of {name}: {e}");
            // A session-level claim outlives the failed transaction that took it.
            if let Err(e) = xact::run(Isolation::ReadCommitted, || job::end(pgt_id, false)) {
                warning!("pg_trickle: could not release the claim on {name}: {e}");
            }
            return false;
        }
        Attempt::Ran(outcome) => outcome,
    };
    let outcome = match (outcome, limit) {
        (Err(message), Some(limit)) if timed_out => Err(format!(
            "{message} (a scheduled refresh may run for at most pg_trickle.refresh_timeout, {} ms; this one had run for {} ms)",
            limit.as_millis(),
            started.elapsed().as_millis()
        )),
        (Ok(outcome @ refresh::Outcome::Refreshed { .. }), Some(limit)) if timed_out => {
            warning!(
                "pg_trickle: the refresh of {name} ran for {} ms, longer than pg_trickle.refresh_timeout ({} ms), and committed: the limit ran out while it committed, or its query caught the cancel",
                started.elapsed().as_millis(),
                limit.as_millis()
            );
            Ok(outcome)
        }
        (outcome, _) => outcome,
    };
    match outcome {
        Ok(refresh::Outcome::Refreshed { action, .. }) => {
            debug1!("pg_trickle: refreshed {name} in {:?}", started.elapsed());
            if action != RefreshAction::NoData {
                if let Err(e) = xact::run(Isolation::ReadCommitted, || {
                    refresh::release_changes(pgt_id)
                }) {
                    warning!("pg_trickle: could not clean up the change buffers of {name}: {e}");
                }
            }
            true
        }
        Ok(outcome) => {
            debug1!("pg_trickle: did not refresh {name}: {outcome:?}");
            false
        }
        Err(message) => {
            warning!("pg_trickle: refresh of stream table {name} failed: {message}");
            let recorded = xact::run(Isolation::ReadCommitted, || {
                refresh::record_failure(pgt_id, started.elapsed(), &message)?;
                job::end(pgt_id, false)
            });
            if let Err(e) = recorded {
                warning!("pg_trickle: could not record the failure of {name}: {e}");
                // Never keep the claim: nobody else could refresh it while this process lives.
                let _ = xact::run(Isolation::ReadCommitted, || job::end(pgt_id, true));
            }
            false
        }
    }
}

/// Logs and records a failed refresh whose worker died (the claim died with it) — unless its refresh
/// had committed before the process ended (it cleared its mark in flight): then there is nothing to
/// record.
pub fn record_lost(pgt_id: i64, name: &str, message: &str) {
    let recorded = xact::run(Isolation::ReadCommitted, || {
        let Some(mark) = job::still_marked(pgt_id)? else {
            return Ok(false);
        };
        refresh::record_failure(pgt_id, mark.elapsed, message)?;
        Ok(true)
    });
    match recorded {
        Ok(true) => warning!("pg_trickle: refresh of stream table {name} failed: {message}"),
        Ok(false) => {
            log!("pg_trickle: the process that refreshed {name} exited after the refresh committed")
        }
        Err(e) => warning!(
            "pg_trickle: refresh of stream table {name} failed: {message}; could not record it: {e}"
        ),
    }
}

/// What pg_stat_activity shows: the stream table being refreshed, or idle.
fn report_activity(refreshing: Option<&str>) {
    let (state, text) = match refreshing {
        Some(name) => (
            pg_sys::BackendState::STATE_RUNNING,
            format!("refresh stream table {name}"),
        ),
        None => (pg_sys::BackendState::STATE_IDLE, String::new()),
    };
    let text = std::ffi::CString::new(text).unwrap_or_default();
    // SAFETY: copies the string into this backend's status entry.
    unsafe { pg_sys::pgstat_report_activity(state, text.as_ptr()) };
}
