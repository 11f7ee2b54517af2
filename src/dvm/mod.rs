//! The differential view maintenance (DVM) engine.
//!
//! Pure by design (invariant 5): no pgrx, no I/O. It turns a stream table's stored description into a
//! [`plan::RefreshPlan`] — SQL text built and quoted here — that any executor can run: SPI inside
//! PostgreSQL, tokio-postgres in `pg_trickle_worker`. Unit-tested with plain `cargo test`.

pub mod analyze;
pub mod apply;
pub mod decide;
pub mod diff;
pub mod explain;
pub mod frontier;
pub mod full;
pub mod index_advice;
pub mod offload;
pub mod optree;
pub mod plan;
pub mod scale;
pub mod sql;
pub mod top_k;
pub mod window_ranks;
