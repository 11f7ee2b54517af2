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

/// Declares schema `pgtrickle` to pgrx, so functions can say `schema = "pgtrickle"`.
#[pgrx::pg_schema]
mod pgtrickle {}
