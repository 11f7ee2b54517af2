//! The per-database scheduler: every tick, refresh the ACTIVE stream tables that are due, upstream
//! before downstream, each in its own REPEATABLE READ transaction. A failed refresh is logged, recorded
//! in the catalog and history, and retried with backoff; it never takes the scheduler down.

use super::policy;
use super::xact::{self, Isolation};
use crate::error::PgtResult;
use crate::gucs;
use crate::refresh::{self, Initiator};
use crate::spi;
use crate::stats::history;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, DynamicBackgroundWorker, DynamicBackgroundWorkerLoadError, SignalWakeFlags};
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::time::{Duration, Instant};

const PRUNE_EVERY: Duration = Duration::from_secs(60);

unsafe extern "C-unwind" {
    /// PostgreSQL's SIGTERM handler (postgres.c); pgrx only exposes a wrapper, not the function itself.
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
}

pub fn start(db: Oid, db_name: &str) -> Result<DynamicBackgroundWorker, DynamicBackgroundWorkerLoadError> {
    BackgroundWorkerBuilder::new(&format!("pg_trickle scheduler {db_name}"))
        .set_type("pg_trickle scheduler")
        .set_library("pg_trickle")
        .set_function("pg_trickle_scheduler_main")
        .set_argument(Some(pg_sys::Datum::from(db.to_u32())))
        .enable_shmem_access(None)
        .enable_spi_access()
        .set_restart_time(None)
        // SAFETY: reading this process's pid.
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic()
}

struct DueStreamTable {
    pgt_id: i64,
    name: String,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_trickle_scheduler_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    // SIGTERM: PostgreSQL's own handler, so a long refresh is cancelled promptly at shutdown.
    // SAFETY: installing a signal handler during worker start-up, before signals are unblocked.
    unsafe { pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(postgres_die)) };
    let db = Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db), None);

    let installed = xact::run(Isolation::ReadCommitted, extension_installed);
    if installed != Ok(true) {
        // No pg_trickle here (or the catalog is unreadable): the launcher probes again later.
        return;
    }
    // SAFETY: reading this process's pid.
    if !super::shmem::start_serving(db, unsafe { pg_sys::MyProcPid }) {
        return; // a DROP/ALTER DATABASE needs this database to itself
    }
    log!("{} started", BackgroundWorker::get_name());

    let mut last_prune = Instant::now() - PRUNE_EVERY;
    loop {
        pgrx::check_for_interrupts!();
        if BackgroundWorker::sighup_received() {
            // SAFETY: the standard way for a background worker to re-read postgresql.conf.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        match xact::run(Isolation::ReadCommitted, extension_installed) {
            Ok(true) => {}
            Ok(false) => {
                super::shmem::stop_serving(db);
                log!("pg_trickle scheduler: extension dropped, exiting");
                return;
            }
            Err(e) => warning!("pg_trickle scheduler: cannot read the catalog: {e}"),
        }
        if gucs::enabled() {
            tick();
            if last_prune.elapsed() >= PRUNE_EVERY {
                if let Err(e) = xact::run(Isolation::ReadCommitted, || history::prune(gucs::history_retention_days())) {
                    warning!("pg_trickle scheduler: pruning refresh history failed: {e}");
                }
                last_prune = Instant::now();
            }
        }
        BackgroundWorker::wait_latch(Some(gucs::scheduler_interval()));
    }
}

fn extension_installed() -> PgtResult<bool> {
    Ok(spi::one::<bool>("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_trickle')", &[])?
        == Some(true))
}

fn tick() {
    let due = match xact::run(Isolation::ReadCommitted, due_stream_tables) {
        Ok(due) => due,
        Err(e) => {
            warning!("pg_trickle scheduler: cannot list due stream tables: {e}");
            return;
        }
    };
    for st in due {
        pgrx::check_for_interrupts!();
        let started = Instant::now();
        match xact::run(Isolation::RepeatableRead, || refresh::run(st.pgt_id, Initiator::Scheduler, refresh::has_xid())) {
            Ok(outcome) => debug1!("pg_trickle: refreshed {} in {:?}: {outcome:?}", st.name, started.elapsed()),
            Err(message) => {
                warning!("pg_trickle: refresh of stream table {} failed: {message}", st.name);
                let elapsed = started.elapsed();
                let recorded =
                    xact::run(Isolation::ReadCommitted, || refresh::record_failure(st.pgt_id, elapsed, &message));
                if let Err(e) = recorded {
                    warning!("pg_trickle: could not record the failure of {}: {e}", st.name);
                }
            }
        }
    }
}

/// ACTIVE stream tables whose (backed-off) schedule has elapsed, upstream before downstream.
fn due_stream_tables() -> PgtResult<Vec<DueStreamTable>> {
    let candidates = spi::rows(
        "WITH RECURSIVE levels(pgt_id, level) AS (
             SELECT st.pgt_id, 0 FROM pgtrickle.pgt_stream_tables st
           UNION ALL
             SELECT down.pgt_id, l.level + 1
               FROM levels l
               JOIN pgtrickle.pgt_stream_tables up ON up.pgt_id = l.pgt_id
               JOIN pgtrickle.pgt_dependencies down ON down.source_relid = up.pgt_relid
              WHERE l.level < 64
         )
         SELECT st.pgt_id, st.pgt_relid::regclass::text AS name, st.schedule_ms, st.consecutive_errors,
                (EXTRACT(EPOCH FROM pg_catalog.clock_timestamp()) * 1000)::bigint AS now_ms,
                (EXTRACT(EPOCH FROM st.last_attempt_at) * 1000)::bigint AS last_attempt_ms,
                (SELECT max(level) FROM levels l WHERE l.pgt_id = st.pgt_id) AS level
           FROM pgtrickle.pgt_stream_tables st
          WHERE st.status = 'ACTIVE'
          ORDER BY level, st.pgt_id",
        &[],
        |r| {
            Ok((
                DueStreamTable { pgt_id: spi::col(r, "pgt_id")?, name: spi::col(r, "name")? },
                spi::col::<i64>(r, "schedule_ms")?,
                spi::col::<i32>(r, "consecutive_errors")?,
                spi::col::<i64>(r, "now_ms")?,
                r.get_by_name::<i64, _>("last_attempt_ms")?,
            ))
        },
    )?;
    Ok(candidates
        .into_iter()
        .filter(|(_, schedule_ms, errors, now_ms, last)| policy::is_due(*now_ms, *last, *schedule_ms, *errors))
        .map(|(st, ..)| st)
        .collect())
}
