//! The catalog: stream-table metadata in `pgtrickle.pgt_stream_tables`, their sources in
//! `pgtrickle.pgt_dependencies`, and the rules for what may be stored there.

pub mod calls;
pub mod modes;
pub mod schedule;

#[cfg(feature = "pg")]
pub mod analysis;
#[cfg(feature = "pg")]
pub mod depend;
#[cfg(feature = "pg")]
pub mod differential;
#[cfg(feature = "pg")]
pub mod fence;
#[cfg(feature = "pg")]
pub mod guard;
#[cfg(feature = "pg")]
pub mod guard_ddl;
#[cfg(feature = "pg")]
pub mod indexes;
#[cfg(feature = "pg")]
pub mod names;
#[cfg(feature = "pg")]
pub mod privilege;
#[cfg(feature = "pg")]
pub mod query_view;
#[cfg(feature = "pg")]
pub mod reinit;
#[cfg(feature = "pg")]
pub mod restore;
#[cfg(feature = "pg")]
pub mod stream_tables;
#[cfg(feature = "pg")]
pub mod type_ops;
#[cfg(feature = "pg")]
pub mod unchanged;
#[cfg(feature = "pg")]
pub mod version;

/// `pgt_id` is a stream table reading `source` (an SQL expression) `and` (a condition on
/// `pgt_dependencies`, may be empty), as an SQL condition on a `pgt_stream_tables` row. Written
/// `= ANY (ARRAY(...))` so the readers are looked up first and once (an InitPlan), whatever the
/// catalog's statistics: as `IN (SELECT ...)`, planned on statistics taken when nearly every stream
/// table had been dropped, it scanned the dependencies once per stream table (with 1,000 stream
/// tables, 40 ms for each of the two DDL statements creating one runs).
pub fn readers_of(source: &str, and: &str) -> String {
    format!(
        "pgt_id = ANY (ARRAY(SELECT d.pgt_id FROM pgtrickle.pgt_dependencies d WHERE d.source_relid = {source}{and}))"
    )
}

/// `WITH RECURSIVE views(oid) AS (...)`: the relations `start` (a SELECT of one column of OIDs) names,
/// and every view under them, at any depth (through the views' rewrite rules).
#[cfg(feature = "pg")]
pub fn with_views_below(start: &str) -> String {
    format!(
        "WITH RECURSIVE views(oid) AS (
             {start}
             UNION
             SELECT d.refobjid FROM views w
               JOIN pg_catalog.pg_rewrite r ON r.ev_class = w.oid
               JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
                    AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid <> w.oid
               JOIN pg_catalog.pg_class c ON c.oid = d.refobjid AND c.relkind = 'v')"
    )
}

/// Prefix reserved for pg_trickle's hidden columns and internal objects.
pub const HIDDEN_PREFIX: &str = "__pgt_";
