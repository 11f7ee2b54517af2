//! One snapshot for a refresh's batch count and its delta, whatever the isolation level.
//!
//! The count decides which sources changed, and the delta statement leaves the unchanged ones out;
//! that is only sound when both read the same snapshot (a commit in between would be skipped and
//! the frontier moved past it). Under REPEATABLE READ they do. Under READ COMMITTED — a manual
//! `refresh_stream_table` from a session in autocommit — each statement takes a new snapshot, so
//! for the span of the refresh the transaction keeps the one taken when it begins, as REPEATABLE
//! READ would: the statements in between see each other's writes (their command ids advance) and
//! nothing committed after it.

use pgrx::pg_sys;

/// Runs `body` with every statement it runs on one snapshot, taken now.
pub fn during<R>(body: impl FnOnce() -> R) -> R {
    // SAFETY: reads a backend global inside a transaction.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        return body();
    }
    let _kept = Kept::begin();
    body()
}

/// While alive, the transaction uses the snapshot taken by `begin`; restored when dropped, also
/// when an ERROR unwinds through (before the (sub)transaction's abort releases its resources).
struct Kept {
    level: i32,
    snapshot: pg_sys::Snapshot,
}

impl Kept {
    fn begin() -> Self {
        // SAFETY: inside a transaction. Under READ COMMITTED `GetTransactionSnapshot` takes a new
        // snapshot into `CurrentSnapshot`; registering a copy holds back the xmin horizon for as long
        // as it is used (an unregistered one would not). With the isolation level at REPEATABLE READ,
        // `GetTransactionSnapshot` returns `CurrentSnapshot` as it stands — this snapshot — to every
        // statement, each of which pushes its own copy with its own command id.
        unsafe {
            let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot());
            let level = pg_sys::XactIsoLevel;
            pg_sys::XactIsoLevel = pg_sys::XACT_REPEATABLE_READ as i32;
            Kept { level, snapshot }
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        // SAFETY: undoes exactly `begin`, once.
        unsafe {
            pg_sys::XactIsoLevel = self.level;
            pg_sys::UnregisterSnapshot(self.snapshot);
        }
    }
}
