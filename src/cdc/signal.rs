//! Change signals: capture tells the coordinator, through shared memory, that a source changed, so
//! an idle DIFFERENTIAL stream table costs no transaction, refresh or catalog write per tick.
//!
//! Capture functions call `pgtrickle._note_change(source)`; when the writing transaction commits
//! (its changes visible), the source's counter goes up. The coordinator remembers each stream
//! table's source counters as they were just before its last refresh was queued; while they are
//! the same, nothing committed since, and the refresh is skipped. Shared memory is lost on restart,
//! and then every stream table refreshes once. Conservative everywhere else: a source that finds no
//! room bumps `overflows` (every stream table then counts as changed), a prepared transaction bumps
//! at PREPARE (the coordinator refreshes regardless while prepared transactions exist), an aborted
//! subtransaction's change still counts.

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};
use std::cell::RefCell;

/// Sources with a counter, cluster-wide (a power of two, as the map requires).
const MAX_SOURCES: usize = 4096;

/// A source's signals: how many commits changed it, and when the latest one was signalled.
#[derive(Default, Clone, Copy)]
struct Changed {
    count: u64,
    /// `TimestampTz` taken at the commit's callback, so at or after the commit became visible.
    at: pg_sys::TimestampTz,
}

#[derive(Default)]
pub struct ChangeCounters {
    counters: heapless::FnvIndexMap<u64, Changed, MAX_SOURCES>,
    overflows: u64,
    /// When the latest source found no room (0: never).
    overflowed_at: pg_sys::TimestampTz,
}

// SAFETY: plain inline data (heapless keeps its elements in place).
unsafe impl PGRXSharedMemory for ChangeCounters {}

// SAFETY: the name is unique to pg_trickle.
static CHANGES: PgLwLock<ChangeCounters> = unsafe { PgLwLock::new(c"pg_trickle_changes") };

pub fn init() {
    pg_shmem_init!(CHANGES);
}

fn key(db: u32, source: u32) -> u64 {
    (u64::from(db) << 32) | u64::from(source)
}

/// Registers the transaction-end callback that signals the pending changes. Once per backend, at
/// the first change: cheaper than pgrx's per-transaction callbacks on a write path that runs it for
/// every writing statement.
fn register_once() {
    thread_local! {
        static REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if REGISTERED.with(|r| r.replace(true)) {
        return;
    }
    // SAFETY: registers a static function for this backend's lifetime; it only touches our own
    // thread-local list and shared memory under its LWLock.
    unsafe { pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut()) };
}

#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        // Committed (visible), or prepared (committed later, elsewhere: see the module comment).
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            signal_pending()
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT => PENDING.with(|p| p.borrow_mut().clear()),
        _ => {}
    }
}

thread_local! {
    /// Sources this transaction changed, to be signalled when it commits.
    static PENDING: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Called by PL/pgSQL capture functions (those of a 0.1.0 catalog, as pgtrickle_capture): `source`
/// changed in this transaction.
#[pg_extern(schema = "pgtrickle", name = "_note_change", parallel_unsafe)]
fn note_change(source: pg_sys::Oid) {
    note(source.to_u32());
}

/// `source` changed in this transaction: signal it when the transaction commits.
pub fn note(source: u32) {
    register_once();
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if !p.contains(&source) {
            p.push(source);
        }
    });
}

fn signal_pending() {
    let sources = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if sources.is_empty() {
        return;
    }
    // SAFETY: MyDatabaseId is set for every backend connected to a database; reading the clock.
    let (db, now) = unsafe { (pg_sys::MyDatabaseId.to_u32(), pg_sys::GetCurrentTimestamp()) };
    let mut shared = CHANGES.exclusive();
    for source in sources {
        match shared.counters.get_mut(&key(db, source)) {
            Some(c) => {
                *c = Changed {
                    count: c.count.wrapping_add(1),
                    at: now,
                }
            }
            None => {
                if shared
                    .counters
                    .insert(key(db, source), Changed { count: 1, at: now })
                    .is_err()
                {
                    shared.overflows = shared.overflows.wrapping_add(1);
                    shared.overflowed_at = now;
                }
            }
        }
    }
}

/// The counters of `sources` in `db` (0 for one never signalled since start), and the overflow count.
pub fn read(db: u32, sources: &[u32]) -> (Vec<u64>, u64) {
    let shared = CHANGES.share();
    (
        sources
            .iter()
            .map(|&s| shared.counters.get(&key(db, s)).map_or(0, |c| c.count))
            .collect(),
        shared.overflows,
    )
}

/// When the latest change of one of `sources` in `db` was signalled since the server started (or a
/// source found no room, which may hide any); None when none was.
pub fn last_change(db: u32, sources: &[u32]) -> Option<pg_sys::TimestampTz> {
    let shared = CHANGES.share();
    let latest = sources
        .iter()
        .filter_map(|&s| shared.counters.get(&key(db, s)).map(|c| c.at))
        .max();
    let overflowed = (shared.overflows > 0).then_some(shared.overflowed_at);
    latest.max(overflowed)
}
