//! The catalog: stream-table metadata in `pgtrickle.pgt_stream_tables`, their sources in
//! `pgtrickle.pgt_dependencies`, and the rules for what may be stored there.

pub mod modes;
pub mod schedule;

#[cfg(feature = "pg")]
pub mod analysis;
#[cfg(feature = "pg")]
pub mod depend;
#[cfg(feature = "pg")]
pub mod differential;
#[cfg(feature = "pg")]
pub mod guard;
#[cfg(feature = "pg")]
pub mod reinit;
#[cfg(feature = "pg")]
pub mod privilege;
#[cfg(feature = "pg")]
pub mod query_view;
#[cfg(feature = "pg")]
pub mod names;
#[cfg(feature = "pg")]
pub mod stream_tables;

/// Prefix reserved for pg_trickle's hidden columns and internal objects.
pub const HIDDEN_PREFIX: &str = "__pgt_";
