//! Functions behind `pgtrickle.pg_stat_pgtrickle` and `pgtrickle.stream_tables` (sql/finalize.sql),
//! and the statistics reset functions.

use crate::catalog::{privilege, stream_tables};
use crate::error::{required, OrRaise};
use crate::stats::{cost_summary, lag, percentile};
use pgrx::prelude::*;

/// The `p` percentile of `values` (NULLs ignored), as percentile_cont interpolates.
#[pg_extern(schema = "pgtrickle", name = "_percentile", immutable, parallel_safe)]
fn percentile_of(values: Vec<Option<f64>>, p: f64) -> Option<f64> {
    let values: Vec<f64> = values.into_iter().flatten().collect();
    percentile::percentile(&values, p)
}

/// Milliseconds the stream table's contents trail its sources (see src/stats/lag.rs); NULL to a
/// caller who may not see the stream table in the views that call this (which PUBLIC reads, so it
/// must be executable by PUBLIC: a view checks EXECUTE as its reader).
#[pg_extern(schema = "pgtrickle", name = "_current_lag_ms", stable)]
fn current_lag_ms(pgt_id: i64) -> Option<f64> {
    let reader = privilege::caller();
    // Change buffers are readable only through pg_trickle.
    privilege::as_extension_owner(|| lag::current_lag_ms(pgt_id, reader)).or_raise()
}

/// Sets every stream table's statistics in pg_stat_pgtrickle back to zero (stats_reset says when).
#[pg_extern(schema = "pgtrickle", name = "pg_stat_pgtrickle_reset")]
fn reset_all() {
    super::on_primary("reset pg_trickle's statistics")
        .and_then(|()| privilege::as_extension_owner(|| cost_summary::reset_statistics(None)))
        .or_raise()
}

/// Sets one stream table's statistics back to zero.
#[pg_extern(schema = "pgtrickle", name = "pg_stat_pgtrickle_reset")]
fn reset_one(name: Option<&str>) {
    super::on_primary("reset pg_trickle's statistics")
        .and_then(|()| required(name, "name"))
        .and_then(|name| {
            privilege::as_extension_owner(|| {
                cost_summary::reset_statistics(Some(stream_tables::find_id(name)?))
            })
        })
        .or_raise()
}
