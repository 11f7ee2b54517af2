//! The launcher: keeps one coordinator running in every database that has pg_trickle.
//!
//! It does not know which databases have the extension; it starts a coordinator in each connectable
//! database, and a coordinator that finds no extension exits. Exited coordinators are retried after
//! `PROBE_INTERVAL`, or at once when a backend asks (`request_scheduler`, after a create/alter
//! commits). A request that arrives while a coordinator is still running is kept: that coordinator may
//! be a probe that started before the extension existed and is about to exit. A coordinator that was
//! serving the extension and exits anyway (DROP/ALTER DATABASE and CREATE DATABASE ... TEMPLATE
//! terminate it, as does `pg_terminate_backend`) is restarted after `RESTART_DELAY`.

use super::{databases, shmem};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime,
    DynamicBackgroundWorker, SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_secs(1);
/// How long after a coordinator found no extension (or exited before serving) its database is probed again.
const PROBE_INTERVAL: Duration = Duration::from_secs(30);
/// How long after a serving coordinator was terminated (or crashed) it is restarted.
const RESTART_DELAY: Duration = Duration::from_secs(2);

pub fn register() {
    BackgroundWorkerBuilder::new("pg_trickle launcher")
        .set_type("pg_trickle launcher")
        .set_library("pg_trickle")
        .set_function("pg_trickle_launcher_main")
        .enable_shmem_access(None)
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

struct Slot {
    handle: Option<DynamicBackgroundWorker>,
    next_attempt: Instant,
    /// A backend asked for a coordinator while one was running: if that one exits, start another at once.
    requested: bool,
    warned_no_slot: bool,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_trickle_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    crate::refresh::settings::pin_session_search_path();
    log!("pg_trickle launcher started");

    let mut slots: HashMap<u32, Slot> = HashMap::new();
    loop {
        if BackgroundWorker::sighup_received() {
            // SAFETY: the standard way for a background worker to re-read postgresql.conf.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let now = Instant::now();
        for db in shmem::take_requests() {
            if let Some(slot) = slots.get_mut(&db) {
                slot.next_attempt = now;
                slot.requested = slot.handle.is_some();
            }
        }
        let dbs = databases::connectable();
        slots.retain(|oid, slot| {
            if dbs.iter().any(|d| d.oid.to_u32() == *oid) {
                return true;
            }
            // The slot stays while a coordinator still runs there (terminated for DROP DATABASE and
            // not yet gone, or a database made unconnectable under it): it still compares the
            // database's change signals. Once it has exited, they go with the database.
            if slot
                .handle
                .as_ref()
                .is_some_and(|h| !matches!(h.pid(), Err(BackgroundWorkerStatus::Stopped)))
            {
                return true;
            }
            shmem::take_serving(*oid);
            crate::cdc::signal::forget_database(*oid);
            false
        });
        for db in &dbs {
            let slot = slots.entry(db.oid.to_u32()).or_insert(Slot {
                handle: None,
                next_attempt: now,
                requested: false,
                warned_no_slot: false,
            });
            if slot
                .handle
                .as_ref()
                .is_some_and(|h| matches!(h.pid(), Err(BackgroundWorkerStatus::Stopped)))
            {
                // The coordinator exited. A probe that found no extension is retried later, unless a
                // backend asked for a coordinator since; one that was serving was terminated or crashed.
                slot.handle = None;
                let was_serving = shmem::take_serving(db.oid.to_u32());
                slot.next_attempt = if std::mem::take(&mut slot.requested) {
                    now
                } else if was_serving {
                    now + RESTART_DELAY
                } else {
                    slot.next_attempt.max(now + PROBE_INTERVAL)
                };
            }
            if slot.handle.is_none() && now >= slot.next_attempt && !shmem::is_held(db.oid) {
                match super::coordinator::start(db.oid, &db.name) {
                    Ok(handle) => {
                        slot.handle = Some(handle);
                        slot.warned_no_slot = false;
                        // A later exit waits PROBE_INTERVAL unless a backend asks sooner.
                        slot.next_attempt = now + PROBE_INTERVAL;
                    }
                    Err(_) => {
                        if !slot.warned_no_slot {
                            warning!(
                                "pg_trickle: no background worker slot free for the coordinator of database \"{}\"; will retry (consider raising max_worker_processes)",
                                db.name
                            );
                            slot.warned_no_slot = true;
                        }
                        slot.next_attempt = now + TICK;
                    }
                }
            }
        }
        if !BackgroundWorker::wait_latch(Some(TICK)) {
            break;
        }
    }
    log!("pg_trickle launcher shutting down");
}
