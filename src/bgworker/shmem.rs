//! Shared memory between backends and the launcher: databases that asked for a scheduler.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock, PgXactCallbackEvent};
use std::cell::Cell;

/// Pending scheduler requests the launcher has not picked up yet (it drains them every tick).
const MAX_PENDING_REQUESTS: usize = 64;

#[derive(Default)]
pub struct LauncherShared {
    /// Database OIDs whose scheduler should start now instead of at the next periodic probe.
    pub requests: heapless::Vec<u32, MAX_PENDING_REQUESTS>,
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
        post_request();
    });
    pgrx::register_xact_callback(PgXactCallbackEvent::Abort, || REQUEST_AT_COMMIT.set(false));
}

thread_local! {
    /// Whether this transaction has already registered its commit-time request.
    static REQUEST_AT_COMMIT: Cell<bool> = const { Cell::new(false) };
}

fn post_request() {
    // SAFETY: MyDatabaseId is set for every backend connected to a database.
    let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
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
