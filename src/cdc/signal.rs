//! Change signals: capture tells the coordinator, through shared memory, that a source changed, so
//! an idle DIFFERENTIAL stream table costs no transaction, refresh or catalog write per tick.
//!
//! Capture functions call `pgtrickle._note_change(source)`; when the writing transaction commits
//! (its changes visible), the source gets a new stamp. The coordinator remembers each stream
//! table's source stamps as they were just before its last refresh was queued; while they are
//! the same, nothing committed since, and the refresh is skipped. Shared memory is lost on restart,
//! and then every stream table refreshes once. Conservative everywhere else: a source that finds no
//! room bumps `overflows` (every stream table then counts as changed), a prepared transaction bumps
//! at PREPARE (the coordinator refreshes regardless while prepared transactions exist) and every
//! stream table counts as changed after its COMMIT PREPARED (crate::utility_hook), an aborted
//! subtransaction's change still counts.
//!
//! Entries of sources nothing captures any more are forgotten (the coordinator's sweep, the
//! launcher for a dropped database), so the map holds the cluster's live sources, not every source
//! it ever had. Stamps come from one cluster-wide sequence and are never reused: a source forgotten
//! and signalled again never shows a stamp some stream table remembers from before.

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};
use std::cell::RefCell;
use std::collections::HashSet;

/// Sources with a stamp, cluster-wide (a power of two, as the map requires).
pub const MAX_SOURCES: usize = 4096;

/// A source's latest signal: its stamp, and when it was signalled.
#[derive(Default, Clone, Copy)]
struct Changed {
    /// From `ChangeCounters::last_stamp`: unique over the server's life, never 0.
    stamp: u64,
    /// `TimestampTz` taken at the commit's callback, so at or after the commit became visible.
    at: pg_sys::TimestampTz,
}

#[derive(Default)]
pub struct ChangeCounters {
    sources: heapless::FnvIndexMap<u64, Changed, MAX_SOURCES>,
    /// The latest stamp handed out.
    last_stamp: u64,
    overflows: u64,
    /// When the latest source found no room (0: never).
    overflowed_at: pg_sys::TimestampTz,
    /// `COMMIT PREPARED`s finished, and when the latest did (0: never).
    prepared_commits: u64,
    prepared_committed_at: pg_sys::TimestampTz,
    /// Databases whose entries were forgotten all at once (`forget_database`).
    forgotten_databases: u64,
}

impl ChangeCounters {
    /// `key` committed a change at `now`: a new stamp, or an overflow when the map is full.
    fn signal(&mut self, key: u64, now: pg_sys::TimestampTz) {
        self.last_stamp += 1;
        let changed = Changed {
            stamp: self.last_stamp,
            at: now,
        };
        match self.sources.get_mut(&key) {
            Some(c) => *c = changed,
            None => {
                if self.sources.insert(key, changed).is_err() {
                    self.overflows += 1;
                    self.overflowed_at = now;
                }
            }
        }
    }

    /// Changes no source's stamp accounts for: each counts as a change of every stream table.
    fn unattributed(&self) -> u64 {
        self.overflows + self.prepared_commits + self.forgotten_databases
    }

    fn stamp(&self, key: u64) -> u64 {
        self.sources.get(&key).map_or(0, |c| c.stamp)
    }

    /// Whether `db` has an entry `forget_uncaptured` would remove.
    fn has_uncaptured(
        &self,
        db: u32,
        captured: &HashSet<u32>,
        before: pg_sys::TimestampTz,
    ) -> bool {
        self.sources
            .iter()
            .any(|(&k, c)| is_uncaptured(k, c, db, captured, before))
    }

    /// Removes the entries of `db`'s sources not in `captured` last signalled before `before`.
    fn forget_uncaptured(&mut self, db: u32, captured: &HashSet<u32>, before: pg_sys::TimestampTz) {
        self.sources
            .retain(|&k, c| !is_uncaptured(k, c, db, captured, before));
    }

    /// Also counts as a change of every stream table: a coordinator the caller did not know of
    /// may still compare the database's stamps (the launcher forgets a database once the
    /// coordinator it started has exited, and a restarted launcher knows none).
    fn forget_database(&mut self, db: u32) {
        self.sources.retain(|&k, _| database_of(k) != db);
        self.forgotten_databases += 1;
    }

    fn sources_of(&self, db: u32) -> usize {
        self.sources
            .keys()
            .filter(|&&k| database_of(k) == db)
            .count()
    }
}

fn is_uncaptured(
    key: u64,
    changed: &Changed,
    db: u32,
    captured: &HashSet<u32>,
    before: pg_sys::TimestampTz,
) -> bool {
    database_of(key) == db && !captured.contains(&(key as u32)) && changed.at < before
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

fn database_of(key: u64) -> u32 {
    (key >> 32) as u32
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
        shared.signal(key(db, source), now);
    }
}

/// The stamps of `sources` in `db` (0 for one not signalled since start, or forgotten), and the
/// count of changes no stamp accounts for (overflows and `COMMIT PREPARED`s), which only grows.
pub fn read(db: u32, sources: &[u32]) -> (Vec<u64>, u64) {
    let shared = CHANGES.share();
    (
        sources.iter().map(|&s| shared.stamp(key(db, s))).collect(),
        shared.unattributed(),
    )
}

/// A `COMMIT PREPARED` finished: what the transaction changed is visible now.
pub fn note_prepared_commit() {
    // SAFETY: reading the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let mut shared = CHANGES.exclusive();
    shared.prepared_commits += 1;
    shared.prepared_committed_at = now;
}

/// Forgets `db`'s sources that no stream table reads any more (not in `captured`, the sources the
/// coordinator's tick listed), if last signalled before `before` — a time before that listing, so a
/// source whose first stream table committed after it keeps its entry. Reads under the shared lock
/// first: a tick with nothing to forget never blocks a committing writer.
pub fn forget_uncaptured(db: u32, captured: &HashSet<u32>, before: pg_sys::TimestampTz) {
    let any = {
        let shared = CHANGES.share();
        shared.has_uncaptured(db, captured, before)
    }; // the shared lock is released here, before the exclusive one is taken
    if any {
        CHANGES.exclusive().forget_uncaptured(db, captured, before);
    }
}

/// Forgets every source of a database that is gone (the launcher, once its coordinator has exited).
pub fn forget_database(db: u32) {
    CHANGES.exclusive().forget_database(db);
}

/// Commits whose source found no room, since the server started.
pub fn overflows() -> u64 {
    CHANGES.share().overflows
}

/// How many of `db`'s sources hold an entry, and the cluster's overflow count (`pool_status`).
pub fn usage(db: u32) -> (usize, u64) {
    let shared = CHANGES.share();
    (shared.sources_of(db), shared.overflows)
}

/// When the latest change of one of `sources` in `db` was signalled since the server started (or a
/// source found no room, or a `COMMIT PREPARED` finished, either of which may hide any); None when
/// none was.
pub fn last_change(db: u32, sources: &[u32]) -> Option<pg_sys::TimestampTz> {
    let shared = CHANGES.share();
    let latest = sources
        .iter()
        .filter_map(|&s| shared.sources.get(&key(db, s)).map(|c| c.at))
        .max();
    let overflowed = (shared.overflows > 0).then_some(shared.overflowed_at);
    let prepared = (shared.prepared_commits > 0).then_some(shared.prepared_committed_at);
    latest.max(overflowed).max(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> Box<ChangeCounters> {
        Box::default()
    }

    #[test]
    fn a_forgotten_source_signalled_again_never_shows_an_old_stamp() {
        let mut m = map();
        let s = key(1, 100);
        m.signal(s, 10);
        let remembered = m.stamp(s);
        m.forget_uncaptured(1, &HashSet::new(), 20);
        assert_eq!(m.stamp(s), 0);
        m.signal(s, 30);
        assert_ne!(m.stamp(s), remembered);
        assert_ne!(m.stamp(s), 0);
    }

    #[test]
    fn only_the_databases_uncaptured_sources_signalled_before_the_margin_are_forgotten() {
        let mut m = map();
        m.signal(key(1, 100), 10); // read by a stream table
        m.signal(key(1, 101), 10); // read by none: forgotten
        m.signal(key(1, 102), 50); // read by none, signalled after the margin: kept
        m.signal(key(2, 101), 10); // another database's
        let captured: HashSet<u32> = [100].into_iter().collect();
        assert!(m.has_uncaptured(1, &captured, 20));
        m.forget_uncaptured(1, &captured, 20);
        assert!(!m.has_uncaptured(1, &captured, 20));
        assert_eq!(m.sources_of(1), 2);
        assert_ne!(m.stamp(key(1, 100)), 0);
        assert_eq!(m.stamp(key(1, 101)), 0);
        assert_ne!(m.stamp(key(1, 102)), 0);
        assert_ne!(m.stamp(key(2, 101)), 0);
        // What no stream table reads changes nothing for any of them.
        assert_eq!(m.unattributed(), 0);
        m.forget_database(1);
        assert_eq!((m.sources_of(1), m.sources_of(2)), (0, 1));
        // A coordinator unknown to the launcher may still compare the database's stamps.
        assert_eq!(m.unattributed(), 1);
    }

    #[test]
    fn a_full_map_overflows_until_forgetting_makes_room() {
        let mut m = map();
        for source in 0..MAX_SOURCES as u32 {
            m.signal(key(1, source), 10);
        }
        m.signal(key(2, 7), 20);
        assert_eq!(
            (m.overflows, m.overflowed_at, m.stamp(key(2, 7))),
            (1, 20, 0)
        );
        m.forget_database(1);
        m.signal(key(2, 7), 30);
        assert_eq!(m.overflows, 1);
        assert_ne!(m.stamp(key(2, 7)), 0);
    }
}
