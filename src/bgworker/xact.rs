//! Transactions in background workers, with errors caught: a failed refresh (a PostgreSQL ERROR, a
//! returned `PgtError`, or a Rust panic) rolls back its own transaction and is handed back as a message,
//! so the worker logs it, records it and carries on.

use crate::error::PgtResult;
use pgrx::pg_sys;
use pgrx::PgTryBuilder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadCommitted,
    RepeatableRead,
}

/// Runs `body` in a new transaction at `isolation`, committing on success and rolling back on any
/// failure. Must not be called inside a transaction.
pub fn run<R>(isolation: Isolation, body: impl FnOnce() -> PgtResult<R>) -> Result<R, String> {
    // SAFETY: background-worker transaction control, as in BackgroundWorker::transaction, except that
    // the isolation level is set before the first snapshot is taken.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        if isolation == Isolation::RepeatableRead {
            pg_sys::XactIsoLevel = pg_sys::XACT_REPEATABLE_READ as i32;
        }
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let outcome = PgTryBuilder::new(std::panic::AssertUnwindSafe(|| match body() {
        Ok(value) => {
            // SAFETY: pairs with the push above; commit may itself raise (e.g. a serialization
            // failure), which the catch below turns into a rollback.
            unsafe {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
            Ok(value)
        }
        Err(e) => Err(e.to_string()),
    }))
    .catch_others(|caught| Err(crate::spi::caught_message(&caught)))
    .execute();
    if outcome.is_err() {
        // SAFETY: abandons whatever transaction state is left (SPI, snapshots, locks) after an error.
        unsafe { pg_sys::AbortCurrentTransaction() };
    }
    outcome
}
