//! Clean-ups owed after manual refreshes. A manual refresh runs in its caller's transaction, which
//! may go on long after it; deleting the change rows it applied there would cost the caller that
//! time, and truncating a large buffer there would block the source's writers until the caller
//! commits. So it leaves the clean-up to its database's coordinator, which runs it in a transaction
//! of its own right after the caller commits, as a refresh worker does after a scheduled refresh
//! (`refresh::release_changes`): deleting the rows every consumer has applied, or truncating a
//! large buffer they all have.
//!
//! The owed clean-ups live in shared memory. One that is lost (a restart, a coordinator that exits
//! first) leaves its rows to the source's next clean-up, after any refresh of a consumer that
//! applies changes. Without a coordinator serving the database, or without room in the list, the
//! refresh cleans up itself, as before.

use super::pool;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};
use std::cell::RefCell;

/// Clean-ups owed at once, cluster-wide.
const MAX_OWED: usize = 1024;

#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct Entry {
    db: u32,
    pgt_id: i64,
    /// The coordinator is running it; it stays listed (and counted) until done.
    running: bool,
}

#[derive(Default)]
pub struct Owed {
    entries: heapless::Vec<Entry, MAX_OWED>,
}

// SAFETY: plain inline data (heapless keeps its elements in place).
unsafe impl PGRXSharedMemory for Owed {}

// SAFETY: the name is unique to pg_trickle.
static OWED: PgLwLock<Owed> = unsafe { PgLwLock::new(c"pg_trickle_releases") };

pub fn init() {
    pg_shmem_init!(OWED);
}

thread_local! {
    /// Stream tables this transaction refreshed by hand, to be cleaned up after once it commits.
    static PENDING: RefCell<Vec<i64>> = const { RefCell::new(Vec::new()) };
}

/// Leaves the clean-up after this transaction's refresh of `pgt_id` to the coordinator, once the
/// transaction commits. False when no coordinator serves this database, or the list has no room for
/// what this transaction owes: the caller cleans up now.
pub fn after_commit(pgt_id: i64) -> bool {
    // SAFETY: MyDatabaseId is set for every backend connected to a database.
    let db = unsafe { pg_sys::MyDatabaseId.to_u32() };
    let owed = PENDING.with(|p| p.borrow().len());
    if !pool::coordinator_serves(db) || !has_room(owed + 1) {
        return false;
    }
    register_once();
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if !p.contains(&pgt_id) {
            p.push(pgt_id);
        }
    });
    true
}

/// Whether the list has room for `more` entries. When it looks full, the entries of databases no
/// live coordinator serves (dropped, or the extension dropped) are forgotten first: nothing would
/// run them, and their rows go with the next clean-up if the coordinator comes back.
fn has_room(more: usize) -> bool {
    let mut shared = OWED.exclusive();
    if shared.entries.len() + more > MAX_OWED {
        shared.entries.retain(|e| pool::coordinator_serves(e.db));
    }
    shared.entries.len() + more <= MAX_OWED
}

/// A coordinator starts serving `db`: clean-ups an earlier one was running when it exited are owed
/// again.
pub fn adopt(db: u32) {
    for e in OWED.exclusive().entries.iter_mut().filter(|e| e.db == db) {
        e.running = false;
    }
}

/// The next clean-up owed in `db`, marked running; `done` takes it off the list.
pub fn next(db: u32) -> Option<i64> {
    let mut shared = OWED.exclusive();
    let entry = shared
        .entries
        .iter_mut()
        .find(|e| e.db == db && !e.running)?;
    entry.running = true;
    Some(entry.pgt_id)
}

/// The running clean-up of `pgt_id` in `db` is done (or failed: the next one frees its rows).
pub fn done(db: u32, pgt_id: i64) {
    OWED.exclusive()
        .entries
        .retain(|e| !(e.db == db && e.pgt_id == pgt_id && e.running));
}

/// Clean-ups owed in `db`, running or not (`pgtrickle.pool_status`).
pub fn pending(db: u32) -> u32 {
    OWED.share().entries.iter().filter(|e| e.db == db).count() as u32
}

/// Registers the transaction-end and resource-release callbacks, once per backend (at its first
/// manual refresh).
fn register_once() {
    thread_local! {
        static REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if REGISTERED.with(|r| r.replace(true)) {
        return;
    }
    // SAFETY: registers static functions for this backend's lifetime; they only touch our own
    // thread-local list and shared memory under its LWLock.
    unsafe {
        pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut());
        pg_sys::RegisterResourceReleaseCallback(Some(after_locks_released), std::ptr::null_mut());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        // A prepared transaction commits later, maybe in another session: its rows wait for the
        // next clean-up, as they would after an aborted one (nothing was applied there).
        pg_sys::XactEvent::XACT_EVENT_PREPARE | pg_sys::XactEvent::XACT_EVENT_ABORT => {
            PENDING.with(|p| p.borrow_mut().clear())
        }
        _ => {}
    }
}

/// Owes the clean-ups once a committed transaction has released its locks, not at its commit
/// callback: the refresh still holds its lock on each buffer there, and a coordinator woken at once
/// would find the buffer in use and delete rather than truncate.
#[pg_guard]
unsafe extern "C-unwind" fn after_locks_released(
    phase: pg_sys::ResourceReleasePhase::Type,
    is_commit: bool,
    is_top_level: bool,
    _arg: *mut std::ffi::c_void,
) {
    // Called once per resource owner of the transaction; the first call takes the list.
    if phase == pg_sys::ResourceReleasePhase::RESOURCE_RELEASE_AFTER_LOCKS
        && is_commit
        && is_top_level
    {
        owe_pending();
    }
}

fn owe_pending() {
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if pending.is_empty() {
        return;
    }
    // SAFETY: MyDatabaseId is set for every backend connected to a database.
    let db = unsafe { pg_sys::MyDatabaseId.to_u32() };
    {
        let mut shared = OWED.exclusive();
        for pgt_id in pending {
            // One already running began before this commit and may not see what it applied.
            let entry = Entry {
                db,
                pgt_id,
                running: false,
            };
            if !shared.entries.contains(&entry) {
                // No room: the rows go with the source's next clean-up.
                let _ = shared.entries.push(entry);
            }
        }
    }
    pool::wake_coordinator(db);
}
