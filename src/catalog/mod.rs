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
