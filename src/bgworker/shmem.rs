//! Shared memory between backends, schedulers and the launcher: databases that asked for a
//! scheduler, databases whose scheduler is serving the extension, and databases held by
//! database-level DDL (no scheduler may run there meanwhile).

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock, PgXactCallbackEvent};
use std::cell::Cell;

/// Pending scheduler requests the launcher has not picked up yet (it drains them every tick).
const MAX_PENDING_REQUESTS: usize = 64;
/// Schedulers tracked as serving. Beyond this, a terminated one waits for the periodic probe and
/// database-level DDL cannot find it to stop it (DROP DATABASE then needs FORCE, as without pg_trickle).
const MAX_SERVING: usize = 256;
/// Databases held at once by concurrent DROP/ALTER/CREATE DATABASE statements.
const MAX_HOLDS: usize = 16;
/// A hold outlives its statement only if the backend dies without releasing it; then it lapses.
const HOLD_LAPSES_AFTER_US: i64 = 60 * 1_000_000;

#[derive(Clone, Copy)]
pub struct Serving {
    db: u32,
    pid: i32,
}

#[derive(Clone, Copy)]
pub struct Hold {
    db: u32,
    /// GetCurrentTimestamp() after which the hold no longer counts.
    until: pg_sys::TimestampTz,
}

#[derive(Default)]
pub struct LauncherShared {
    /// Database OIDs whose scheduler should start now instead of at the next periodic probe.
    pub requests: heapless::Vec<u32, MAX_PENDING_REQUESTS>,
    /// Schedulers that found the extension, by database. If one exits without having seen the
    /// extension dropped — terminated by DROP/ALTER DATABASE or an administrator, or after a crash —
    /// the launcher restarts it promptly instead of at the next probe.
    pub serving: heapless::Vec<Serving, MAX_SERVING>,
    /// Databases a DROP/ALTER/CREATE DATABASE needs without other sessions (see `database_ddl`).
    pub holds: heapless::Vec<Hold, MAX_HOLDS>,
}

// SAFETY: plain inline data (heapless keeps its elements in place); no pointers into process memory.
unsafe impl PGRXSharedMemory for LauncherShared {}

// SAFETY: the name is unique to pg_trickle.
pub static LAUNCHER: PgLwLock<LauncherShared> = unsafe { PgLwLock::new(c"pg_trickle_launcher") };

pub fn init() {
    pg_shmem_init!(LAUNCHER);
}

/// Asks the launcher to make sure this database has a scheduler (called when stream tables are
/// created or re-activated). The request is posted when the transaction commits: a scheduler started
/// earlier would not see the new catalog rows (or even the extension) and would exit again.
/// Cheap and idempotent; if the queue is full the periodic probe covers it.
pub fn request_scheduler() {
    if REQUEST_AT_COMMIT.replace(true) {
        return; // already registered in this transaction
    }
    pgrx::register_xact_callback(PgXactCallbackEvent::Commit, || {
        REQUEST_AT_COMMIT.set(false);
        // SAFETY: MyDatabaseId is set for every backend connected to a database.
        post_request(unsafe { pg_sys::MyDatabaseId });
    });
    pgrx::register_xact_callback(PgXactCallbackEvent::Abort, || REQUEST_AT_COMMIT.set(false));
}

thread_local! {
    /// Whether this transaction has already registered its commit-time request.
    static REQUEST_AT_COMMIT: Cell<bool> = const { Cell::new(false) };
}

/// Asks the launcher to start `db`'s scheduler now (if it has none).
pub fn post_request(db: pg_sys::Oid) {
    let db = db.to_u32();
    let mut shared = LAUNCHER.exclusive();
    if !shared.requests.contains(&db) {
        let _ = shared.requests.push(db); // full: the launcher's periodic probe starts it instead
    }
}

/// Takes the pending requests (launcher only).
pub fn take_requests() -> Vec<u32> {
    let mut shared = LAUNCHER.exclusive();
    let out = shared.requests.iter().copied().collect();
    shared.requests.clear();
    out
}

/// Registers this process as `db`'s serving scheduler — unless a database-level statement holds
/// `db`, in which case the caller must exit. One lock for both, so that `hold_database` either sees
/// this scheduler's pid or this scheduler sees the hold.
pub fn start_serving(db: pg_sys::Oid, pid: i32) -> bool {
    let mut shared = LAUNCHER.exclusive();
    if holds_now(&shared, db.to_u32()) {
        return false;
    }
    shared.serving.retain(|s| s.db != db.to_u32());
    let _ = shared.serving.push(Serving {
        db: db.to_u32(),
        pid,
    }); // full: restarts wait for the probe
    true
}

/// This scheduler saw the extension dropped and exits for good (scheduler only).
pub fn stop_serving(db: pg_sys::Oid) {
    take_serving(db.to_u32());
}

/// Whether `db`'s scheduler was serving the extension when it exited; forgets it (launcher only).
pub fn take_serving(db: u32) -> bool {
    let mut shared = LAUNCHER.exclusive();
    let before = shared.serving.len();
    shared.serving.retain(|s| s.db != db);
    shared.serving.len() != before
}

/// Keeps schedulers out of `db` until `release_database`, and returns the pid of the scheduler
/// serving it now (to be stopped). `Err` if there is no room to record the hold.
pub fn hold_database(db: pg_sys::Oid) -> Result<Option<i32>, ()> {
    // SAFETY: reading the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let mut shared = LAUNCHER.exclusive();
    shared.holds.retain(|h| h.until > now); // lapsed: their backends died holding them
    shared
        .holds
        .push(Hold {
            db: db.to_u32(),
            until: now + HOLD_LAPSES_AFTER_US,
        })
        .map_err(|_| ())?;
    Ok(shared
        .serving
        .iter()
        .find(|s| s.db == db.to_u32())
        .map(|s| s.pid))
}

/// Ends one hold on `db` (holds nest: two statements may hold the same template database).
pub fn release_database(db: pg_sys::Oid) {
    let mut shared = LAUNCHER.exclusive();
    if let Some(i) = shared.holds.iter().position(|h| h.db == db.to_u32()) {
        shared.holds.swap_remove(i);
    }
}

/// Whether a database-level statement currently needs `db` without a scheduler.
pub fn is_held(db: pg_sys::Oid) -> bool {
    holds_now(&LAUNCHER.share(), db.to_u32())
}

fn holds_now(shared: &LauncherShared, db: u32) -> bool {
    // SAFETY: reading the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    shared.holds.iter().any(|h| h.db == db && h.until > now)
}
