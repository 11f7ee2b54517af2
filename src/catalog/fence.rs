//! What may run while a user's SQL text is read.
//!
//! Reading a text runs code: a literal of a composite type, array or range holding a domain runs the
//! domain's CHECK as it is read (`record_in` → `domain_in`). pg_trickle reads a query only with the
//! rights of the role that answers for it (its writer, or its stream table's owner), and never with
//! its own: the analysis, the query view and every refresh work from such a reading. While one runs,
//! no utility statement may run as a role other than a superuser, so code running as a text is read
//! cannot change the catalog under the reading (a review swapped a type mid-analysis with `ALTER TYPE`
//! and `CREATE TYPE` from a domain's CHECK). pg_trickle's own statements and a superuser's event
//! triggers run as a superuser.

use crate::error::{PgtError, SqlState};
use pgrx::pg_sys;
use std::cell::Cell;

thread_local! {
    /// How many readings as a query's writer or owner are under way (they nest).
    static READING: Cell<u32> = const { Cell::new(0) };
}

/// Runs `body`, which reads SQL text as its writer or owner: their code may run, but no utility
/// statement of theirs.
pub fn reading_as_writer<R>(body: impl FnOnce() -> R) -> R {
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            READING.with(|r| r.set(r.get() - 1));
        }
    }
    READING.with(|r| r.set(r.get() + 1));
    let _done = Done;
    body()
}

/// Called as a utility statement begins: refuses one that a user's code runs while a query is read.
pub fn admit_utility_statement() {
    let reading = READING.with(|r| r.get() > 0);
    // SAFETY: reads the current user id and looks its superuser flag up in the catalog cache.
    if !reading || unsafe { pg_sys::superuser() } {
        return;
    }
    PgtError::new(
        SqlState::FeatureNotSupported,
        "no utility statement may run while pg_trickle reads a query",
    )
    .detail("Code that runs as a query is read (a domain's CHECK) must not change the catalog the reading depends on.")
    .raise();
}
