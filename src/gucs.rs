//! Every `pg_trickle.*` setting: one registration function and typed accessors.
//! README.md lists them with defaults and meaning; keep the two in step.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
static SCHEDULER_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
static HISTORY_RETENTION_DAYS: GucSetting<i32> = GucSetting::<i32>::new(7);
static FULL_REFRESH_RATIO: GucSetting<f64> = GucSetting::<f64>::new(0.5);

pub fn init() {
    GucRegistry::define_bool_guc(
        c"pg_trickle.enabled",
        c"Whether the background scheduler refreshes stream tables.",
        c"When off, schedulers keep running but refresh nothing; manual refreshes still work.",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.scheduler_interval_ms",
        c"How often each database's scheduler looks for stream tables that are due.",
        c"The granularity of schedules: a stream table is refreshed at most one tick after it falls due.",
        &SCHEDULER_INTERVAL_MS,
        10,
        60_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.history_retention_days",
        c"How many days of refresh history to keep.",
        c"The scheduler deletes older rows from pgtrickle.pgt_refresh_history; 0 keeps history forever.",
        &HISTORY_RETENTION_DAYS,
        0,
        3650,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"pg_trickle.full_refresh_ratio",
        c"Until their refresh costs are measured, AUTO stream tables refresh FULL for batches above this fraction of the sources' rows.",
        c"Once pgtrickle.pgt_cost_model_summary has measured a FULL refresh and enough DIFFERENTIAL ones, AUTO refreshes FULL only when the batch's predicted DIFFERENTIAL cost exceeds the measured FULL cost; before, this share of the sources' rows (pg_class.reltuples) decides. Applies to AUTO only: DIFFERENTIAL stream tables never switch.",
        &FULL_REFRESH_RATIO,
        0.0,
        1000.0,
        GucContext::Userset,
        GucFlags::default(),
    );
}

pub fn full_refresh_ratio() -> f64 {
    FULL_REFRESH_RATIO.get()
}

pub fn enabled() -> bool {
    ENABLED.get()
}

pub fn scheduler_interval() -> std::time::Duration {
    std::time::Duration::from_millis(SCHEDULER_INTERVAL_MS.get().max(10) as u64)
}

pub fn history_retention_days() -> i32 {
    HISTORY_RETENTION_DAYS.get()
}
