//! The SQL API in schema `pgtrickle`. Each function validates its arguments, does its work in the
//! caller's transaction (so a failure leaves nothing behind), and raises errors with SQLSTATE, message
//! and hint.

mod alter;
mod create;
mod drop;
mod explain;
mod index_advice;
mod internal;
mod pool;
mod refresh;
mod restore;
mod statistics;
mod worker;

/// Refuses `action` on a hot standby, before it reaches a statement PostgreSQL would refuse with less
/// to say (or, through pgrx, with "cannot assign TransactionIds during recovery").
fn on_primary(action: &str) -> crate::error::PgtResult<()> {
    // SAFETY: reads shared recovery state; no side effects.
    if unsafe { pgrx::pg_sys::RecoveryInProgress() } {
        return Err(crate::error::PgtError::new(
            crate::error::SqlState::ReadOnlySqlTransaction,
            format!("cannot {action} on a standby (recovery is in progress)"),
        )
        .hint("Run it on the primary: stream tables reach standbys by replication like any table, and a promoted standby maintains them."));
    }
    Ok(())
}

/// Declares schema `pgtrickle` to pgrx, so functions can say `schema = "pgtrickle"`.
#[pgrx::pg_schema]
mod pgtrickle {}
