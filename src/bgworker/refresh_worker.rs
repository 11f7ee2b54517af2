//! A refresh worker: a dynamic background worker of one database's pool. It takes the jobs its
//! coordinator queues, refreshes each stream table in its own REPEATABLE READ transaction (with the
//! owner's rights, as every refresh), and exits when asked to, or when its coordinator is gone.
//! In pg_stat_activity: backend_type `pg_trickle refresh worker`, and the stream table it refreshes
//! in `query`.

use super::pool;
use super::xact::{self, Isolation};
use crate::refresh::{self, Initiator};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, DynamicBackgroundWorker, DynamicBackgroundWorkerLoadError, SignalWakeFlags};
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::time::{Duration, Instant};

pub const BACKEND_TYPE: &str = "pg_trickle refresh worker";
/// An idle worker looks at its pool this often even without being woken.
const IDLE_WAIT: Duration = Duration::from_secs(5);

pub fn start(db: Oid, db_name: &str) -> Result<DynamicBackgroundWorker, DynamicBackgroundWorkerLoadError> {
    BackgroundWorkerBuilder::new(&format!("{BACKEND_TYPE} {db_name}"))
        .set_type(BACKEND_TYPE)
        .set_library("pg_trickle")
        .set_function("pg_trickle_refresh_worker_main")
        .set_argument(Some(pg_sys::Datum::from(db.to_u32())))
        .enable_shmem_access(None)
        .enable_spi_access()
        .set_restart_time(None)
        // SAFETY: reading this process's pid; the coordinator is woken when the worker starts or stops.
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic()
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_trickle_refresh_worker_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    super::use_postgres_sigterm();
    let db = Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db), None);
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

/// Refreshes one stream table in its own transaction; a failure is logged and recorded (with
/// backoff), never raised. Shared by the workers and the coordinator's in-process fallback.
/// Returns whether it refreshed (not: busy with another refresher, gone, broken or failed).
pub fn run_job(pgt_id: i64, name: &str) -> bool {
    let started = Instant::now();
    if let Err(e) = xact::run(Isolation::ReadCommitted, || refresh::mark_in_flight(pgt_id, true)) {
        warning!("pg_trickle: could not mark the refresh of {name} as started: {e}");
    }
    match xact::run(Isolation::RepeatableRead, || refresh::run(pgt_id, Initiator::Scheduler, refresh::has_xid())) {
        Ok(refresh::Outcome::Refreshed { .. }) => {
            debug1!("pg_trickle: refreshed {name} in {:?}", started.elapsed());
            true
        }
        Ok(outcome) => {
            // Busy (another session refreshes it), gone or broken: nothing is in flight here.
            debug1!("pg_trickle: did not refresh {name}: {outcome:?}");
            let _ = xact::run(Isolation::ReadCommitted, || refresh::mark_in_flight(pgt_id, false));
            false
        }
        Err(message) => {
            record_failure(pgt_id, name, started.elapsed(), &message);
            false
        }
    }
}

/// Logs and records a failed refresh (also one whose worker died).
pub fn record_failure(pgt_id: i64, name: &str, elapsed: Duration, message: &str) {
    warning!("pg_trickle: refresh of stream table {name} failed: {message}");
    if let Err(e) = xact::run(Isolation::ReadCommitted, || refresh::record_failure(pgt_id, elapsed, message)) {
        warning!("pg_trickle: could not record the failure of {name}: {e}");
    }
}

/// What pg_stat_activity shows: the stream table being refreshed, or idle.
fn report_activity(refreshing: Option<&str>) {
    let (state, text) = match refreshing {
        Some(name) => (pg_sys::BackendState::STATE_RUNNING, format!("refresh stream table {name}")),
        None => (pg_sys::BackendState::STATE_IDLE, String::new()),
    };
    let text = std::ffi::CString::new(text).unwrap_or_default();
    // SAFETY: copies the string into this backend's status entry.
    unsafe { pg_sys::pgstat_report_activity(state, text.as_ptr()) };
}
