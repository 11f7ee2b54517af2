//! pg_trickle's own locks between sessions: the claim of a stream table's refresh, the consumers of
//! a source's change buffer.
//!
//! They are advisory locks of PostgreSQL's lock manager (shown in `pg_locks` as `advisory`, with
//! `classid` the lock's class, `objid` its key and `objsubid` [`KEY_SPACE`]), in a key space no SQL
//! function reaches: `pg_advisory_lock` and its kin take `objsubid` 1 (one bigint) or 2 (two
//! integers) only, and are granted to PUBLIC, so any role could otherwise hold a stream table's
//! claim and stall every refresh of it.

use pgrx::pg_sys;

/// `pg_locks.objsubid` of pg_trickle's locks.
pub const KEY_SPACE: u16 = 3;

/// One of pg_trickle's locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    class: i32,
    key: i32,
}

/// Whether a lock lasts until the transaction ends or until it is released (or the process exits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Transaction,
    Session,
}

impl Lock {
    pub fn new(class: i32, key: i32) -> Self {
        Lock { class, key }
    }

    fn tag(self) -> pg_sys::LOCKTAG {
        pg_sys::LOCKTAG {
            // SAFETY: reads the backend's database, set once at connection.
            locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
            locktag_field2: self.class as u32,
            locktag_field3: self.key as u32,
            locktag_field4: KEY_SPACE,
            locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
            locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
        }
    }

    /// Takes the lock, waiting for it (as `pg_advisory_xact_lock` does: `lock_timeout` and
    /// cancellation apply, deadlocks are detected).
    pub fn acquire(self, scope: Scope) {
        self.lock(scope, false);
    }

    /// Takes the lock if no other process holds it; false if one does.
    pub fn try_acquire(self, scope: Scope) -> bool {
        self.lock(scope, true)
    }

    fn lock(self, scope: Scope, dont_wait: bool) -> bool {
        let tag = self.tag();
        // SAFETY: the lock manager, inside a transaction, with a tag of our own key space.
        let result = unsafe {
            pg_sys::LockAcquire(
                &tag,
                pg_sys::ExclusiveLock as pg_sys::LOCKMODE,
                scope == Scope::Session,
                dont_wait,
            )
        };
        result != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
    }

    /// Releases a session-scope lock this process holds.
    pub fn release(self) {
        let tag = self.tag();
        // SAFETY: as above; releasing a lock not held only warns.
        unsafe { pg_sys::LockRelease(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, true) };
    }
}
