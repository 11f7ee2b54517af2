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
        ns != pg_sys::InvalidOid
            && pg_sys::get_relname_relid(c"pgt_cost_model_summary".as_ptr(), ns)
                != pg_sys::InvalidOid
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
    let sql = format!(
        "SELECT {} FROM pgtrickle.pgt_cost_model_summary WHERE pgt_id = $1",
        COLUMNS.join(", ")
    );
    Ok(spi::rows(&sql, &[pgt_id.into()], from_row)?
        .into_iter()
        .next())
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
            let relids: Vec<pg_sys::Oid> =
                tables.iter().map(|t| pg_sys::Oid::from(t.relid)).collect();
            let rows: Option<f64> = spi::one(
                "SELECT pg_catalog.sum(GREATEST(reltuples, 0))::float8 FROM pg_catalog.pg_class WHERE oid = ANY($1)",
                &[relids.into()],
            )?;
            Ok(cost_model::by_ratio(
                changes,
                rows.unwrap_or(0.0),
                crate::gucs::full_refresh_ratio(),
                &unmeasured,
            ))
        }
    }
}

/// Refresh durations kept per stream table for pg_stat_pgtrickle's percentiles (a ring).
pub const RECENT_WINDOW: i64 = 128;

/// The statistics counters (`stat_*`) a successful refresh adds to, as SQL assignments for the
/// summary row `s`: `$elapsed` is the refresh's duration, `$delta` its change rows.
fn count_refresh(action: RefreshAction, elapsed: &str, delta: &str) -> String {
    let counter = match action {
        RefreshAction::Full => "stat_full_refreshes",
        RefreshAction::Differential => "stat_diff_refreshes",
        RefreshAction::NoData => "stat_no_data_refreshes",
    };
    format!(
        "{counter} = s.{counter} + 1, stat_delta_rows = s.stat_delta_rows + {delta},
         stat_total_ms = s.stat_total_ms + {elapsed},
         stat_recent_ms[(s.stat_recent_next % {RECENT_WINDOW}) + 1] = {elapsed},
         stat_recent_next = s.stat_recent_next + 1, stat_last_refresh_at = pg_catalog.clock_timestamp()"
    )
}

/// Counts a failed refresh in the stream table's statistics.
pub fn count_failure(pgt_id: i64) -> PgtResult<()> {
    if !present() {
        return Ok(());
    }
    spi::exec(
        "INSERT INTO pgtrickle.pgt_cost_model_summary AS s (pgt_id, stat_failed_refreshes) VALUES ($1, 1)
         ON CONFLICT (pgt_id) DO UPDATE SET stat_failed_refreshes = s.stat_failed_refreshes + 1",
        &[pgt_id.into()],
    )
}

/// Sets the statistics counters of one stream table (or all) back to zero; the cost model AUTO
/// decides with is kept.
pub fn reset_statistics(pgt_id: Option<i64>) -> PgtResult<()> {
    spi::exec(
        "UPDATE pgtrickle.pgt_cost_model_summary
            SET stat_full_refreshes = 0, stat_diff_refreshes = 0, stat_no_data_refreshes = 0,
                stat_failed_refreshes = 0, stat_delta_rows = 0, stat_total_ms = 0,
                stat_recent_ms = '{}', stat_recent_next = 0, stats_reset = pg_catalog.clock_timestamp()
          WHERE $1::bigint IS NULL OR pgt_id = $1",
        &[pgt_id.into()],
    )
}

/// Adds the refresh that ran from `started_at` to `finished_at` (clock_timestamp) and took `action`
/// on a batch of `changes` change rows to the stream table's summary: the cost model (FULL and
/// DIFFERENTIAL) and the statistics counters (every action), in one statement.
pub fn record(
    pgt_id: i64,
    action: RefreshAction,
    changes: i64,
    started_at: TimestampWithTimeZone,
    finished_at: TimestampWithTimeZone,
) -> PgtResult<()> {
    if !present() {
        return Ok(());
    }
    // The refresh's duration: from the same two clock readings as its history row.
    let elapsed = "(pg_catalog.date_part('epoch', $3 - $2) * 1000)::float8";
    let times = [pgt_id.into(), started_at.into(), finished_at.into()];
    if action == RefreshAction::NoData {
        // A NO_DATA refresh only counts. (The row exists since the initial population, but not for a
        // stream table created before 0.2.0 that has not refreshed since.)
        return spi::exec(
            &format!(
                "INSERT INTO pgtrickle.pgt_cost_model_summary AS s
                     (pgt_id, stat_no_data_refreshes, stat_total_ms, stat_recent_ms, stat_recent_next, stat_last_refresh_at)
                 VALUES ($1, 1, {elapsed}, ARRAY[{elapsed}], 1, pg_catalog.clock_timestamp())
                 ON CONFLICT (pgt_id) DO UPDATE SET {}",
                count_refresh(action, elapsed, "0")
            ),
            &times,
        );
    }
    // The duration and the current summary (if any) in one statement. The refresh holds the stream
    // table's claim, so nobody else updates the row meanwhile.
    let sql = format!(
        "SELECT {elapsed} AS elapsed_ms, {}
           FROM (VALUES (1)) AS v LEFT JOIN pgtrickle.pgt_cost_model_summary s ON s.pgt_id = $1",
        COLUMNS.map(|c| format!("s.{c}")).join(", ")
    );
    let (elapsed_ms, mut summary) = spi::rows(&sql, &times, |r| {
        Ok((
            r.get_by_name::<f64, _>("elapsed_ms")?.unwrap_or(0.0),
            from_row(r)?,
        ))
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
    let updates: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let (elapsed, delta) = (
        format!("${}::float8", COLUMNS.len() + 2),
        format!("${}::bigint", COLUMNS.len() + 3),
    );
    let counted = count_refresh(action, &elapsed, &delta);
    let (full, diff) = match action {
        RefreshAction::Full => (1, 0),
        _ => (0, 1),
    };
    spi::exec(
        &format!(
            "INSERT INTO pgtrickle.pgt_cost_model_summary AS s
                 (pgt_id, {}, stat_full_refreshes, stat_diff_refreshes, stat_delta_rows, stat_total_ms,
                  stat_recent_ms, stat_recent_next, stat_last_refresh_at)
             VALUES ($1, {}, {full}, {diff}, {delta}, {elapsed}, ARRAY[{elapsed}], 1, pg_catalog.clock_timestamp())
             ON CONFLICT (pgt_id) DO UPDATE SET {}, {counted}",
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
            elapsed_ms.into(),
            (if action == RefreshAction::Differential { changes } else { 0 }).into(),
        ],
    )
}
