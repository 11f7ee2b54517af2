//! A refresh runs with exactly its stream table owner's rights (DESIGN invariant 6), whoever starts
//! it — the scheduler's superuser, a superuser's manual refresh, later a pool or external worker —
//! as `REFRESH MATERIALIZED VIEW` does: the statements that read the sources and write the stream
//! table run as the owner, in a security-restricted operation (no SET ROLE, no session state a
//! trigger or function could leave behind), with the refresh's pinned search_path. Reading what the
//! owner may not read fails with PostgreSQL's own 42501, and the failed refresh copies nothing.
//! pg_trickle's bookkeeping around it (its catalog, change buffers' clean-up) runs as the caller.

use pgrx::pg_sys::{self, Oid};

/// Runs `body` as `owner`, security-restricted; the caller's identity comes back afterwards (also
/// when an ERROR unwinds: the guard restores it, and PostgreSQL's (sub)transaction abort does too).
pub fn as_owner<R>(owner: Oid, body: impl FnOnce() -> R) -> R {
    let mut user = pg_sys::InvalidOid;
    let mut context: i32 = 0;
    // SAFETY: reads and sets the backend's current user id and security context, as matview.c does
    // around a refresh; `Restore` puts the saved values back on every path out.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(owner, context | pg_sys::SECURITY_RESTRICTED_OPERATION as i32);
    }
    let _restore = Restore { user, context };
    body()
}

struct Restore {
    user: Oid,
    context: i32,
}

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: restores the values saved by `as_owner`.
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) };
    }
}
