//! `pgtrickle.pgt_cost_model_summary`: reading a stream table's measured refresh costs for AUTO's
//! choice, and adding each FULL or DIFFERENTIAL refresh to them in the refresh's own transaction.
//! The arithmetic is in [`super::cost_model`].

use super::cost_model::{self, AutoDecision, CostSummary};
use crate::dvm::optree::TableRef;
use crate::dvm::plan::RefreshAction;
use crate::error::{PgtError, PgtResult};
use crate::spi;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys;
use pgrx::spi::{SpiError, SpiHeapTupleData};

/// The summary's columns besides `pgt_id` and `stats_reset`, in [`CostSummary`]'s order.
const COLUMNS: [&str; 15] = [
    "full_refreshes",
    "full_total_ms",
    "full_last_ms",
    "full_ewma_ms",
    "differential_refreshes",
    "differential_total_ms",
    "differential_changes",
    "differential_last_ms",
    "differential_last_changes",
    "differential_fixed_ms",
    "differential_ms_per_change",
    "fit_mean_changes",
    "fit_mean_ms",
    "fit_var_changes",
    "fit_cov_changes_ms",
];

/// Whether the catalog has the summary table. A database whose extension is still at 0.1.0 (the
/// library was upgraded, `ALTER EXTENSION pg_trickle UPDATE` not run yet) has not: its refreshes
/// record no costs and AUTO uses the ratio, until the update.
fn present() -> bool {
    // SAFETY: two syscache lookups by name in a backend inside a transaction; no locks taken, as
    // to_regclass does.
    unsafe {
        let ns = pg_sys::get_namespace_oid(c"pgtrickle".as_ptr(), true);
        ns != pg_sys::InvalidOid && pg_sys::get_relname_relid(c"pgt_cost_model_summary".as_ptr(), ns) != pg_sys::InvalidOid
    }
}

fn from_row(r: &SpiHeapTupleData) -> Result<CostSummary, SpiError> {
    let i = |name: &str| -> Result<Option<i64>, SpiError> { r.get_by_name::<i64, _>(name) };
    let f = |name: &str| -> Result<Option<f64>, SpiError> { r.get_by_name::<f64, _>(name) };
    Ok(CostSummary {
        full_refreshes: i("full_refreshes")?.unwrap_or(0),
        full_total_ms: f("full_total_ms")?.unwrap_or(0.0),
        full_last_ms: f("full_last_ms")?,
        full_ewma_ms: f("full_ewma_ms")?,
        differential_refreshes: i("differential_refreshes")?.unwrap_or(0),
        differential_total_ms: f("differential_total_ms")?.unwrap_or(0.0),
        differential_changes: i("differential_changes")?.unwrap_or(0),
        differential_last_ms: f("differential_last_ms")?,
        differential_last_changes: i("differential_last_changes")?,
        differential_fixed_ms: f("differential_fixed_ms")?,
        differential_ms_per_change: f("differential_ms_per_change")?,
        fit_mean_changes: f("fit_mean_changes")?.unwrap_or(0.0),
        fit_mean_ms: f("fit_mean_ms")?.unwrap_or(0.0),
        fit_var_changes: f("fit_var_changes")?.unwrap_or(0.0),
        fit_cov_changes_ms: f("fit_cov_changes_ms")?.unwrap_or(0.0),
    })
}

fn load(pgt_id: i64) -> PgtResult<Option<CostSummary>> {
    let sql = format!("SELECT {} FROM pgtrickle.pgt_cost_model_summary WHERE pgt_id = $1", COLUMNS.join(", "));
    Ok(spi::rows(&sql, &[pgt_id.into()], from_row)?.into_iter().next())
}

/// AUTO's choice for a batch of `changes` change rows read from `tables`: by the measured costs, or
/// by `pg_trickle.full_refresh_ratio` against the sources' `pg_class.reltuples` until they suffice.
pub fn auto_decision(pgt_id: i64, tables: &[TableRef], changes: i64) -> PgtResult<AutoDecision> {
    let measured = if present() {
        cost_model::by_measured_cost(load(pgt_id)?.as_ref(), changes)
    } else {
        Err("no cost summary until ALTER EXTENSION pg_trickle UPDATE".into())
    };
    match measured {
        Ok(decision) => Ok(decision),
        Err(unmeasured) => {
            let relids: Vec<pg_sys::Oid> = tables.iter().map(|t| pg_sys::Oid::from(t.relid)).collect();
            let rows: Option<f64> = spi::one(
                "SELECT pg_catalog.sum(GREATEST(reltuples, 0))::float8 FROM pg_catalog.pg_class WHERE oid = ANY($1)",
                &[relids.into()],
            )?;
            Ok(cost_model::by_ratio(changes, rows.unwrap_or(0.0), crate::gucs::full_refresh_ratio(), &unmeasured))
        }
    }
}

/// Adds the refresh that started at `started_at` (clock_timestamp) and took `action` on a batch of
/// `changes` change rows to the stream table's summary. NO_DATA refreshes write nothing.
pub fn record(pgt_id: i64, action: RefreshAction, changes: i64, started_at: TimestampWithTimeZone) -> PgtResult<()> {
    if action == RefreshAction::NoData || !present() {
        return Ok(());
    }
    // The duration, measured on the server, and the current summary (if any) in one statement. The
    // refresh holds the stream table's claim, so nobody else updates the row meanwhile.
    let sql = format!(
        "SELECT pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - $2) * 1000 AS elapsed_ms, {}
           FROM (VALUES (1)) AS v LEFT JOIN pgtrickle.pgt_cost_model_summary s ON s.pgt_id = $1",
        COLUMNS.map(|c| format!("s.{c}")).join(", ")
    );
    let (elapsed_ms, mut summary) = spi::rows(&sql, &[pgt_id.into(), started_at.into()], |r| {
        Ok((r.get_by_name::<f64, _>("elapsed_ms")?.unwrap_or(0.0), from_row(r)?))
    })?
    .into_iter()
    .next()
    .ok_or_else(|| PgtError::internal("cost summary query returned no row"))?;
    match action {
        RefreshAction::Full => summary.observe_full(elapsed_ms),
        RefreshAction::Differential => summary.observe_differential(changes, elapsed_ms),
        RefreshAction::NoData => return Ok(()),
    }
    let s = &summary;
    let placeholders: Vec<String> = (2..=COLUMNS.len() + 1).map(|i| format!("${i}")).collect();
    let updates: Vec<String> = COLUMNS.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
    spi::exec(
        &format!(
            "INSERT INTO pgtrickle.pgt_cost_model_summary (pgt_id, {}) VALUES ($1, {})
             ON CONFLICT (pgt_id) DO UPDATE SET {}",
            COLUMNS.join(", "),
            placeholders.join(", "),
            updates.join(", ")
        ),
        &[
            pgt_id.into(),
            s.full_refreshes.into(),
            s.full_total_ms.into(),
            s.full_last_ms.into(),
            s.full_ewma_ms.into(),
            s.differential_refreshes.into(),
            s.differential_total_ms.into(),
            s.differential_changes.into(),
            s.differential_last_ms.into(),
            s.differential_last_changes.into(),
            s.differential_fixed_ms.into(),
            s.differential_ms_per_change.into(),
            s.fit_mean_changes.into(),
            s.fit_mean_ms.into(),
            s.fit_var_changes.into(),
            s.fit_cov_changes_ms.into(),
        ],
    )
}
