//! Every `pg_trickle.*` setting: one registration function and typed accessors.
//! README.md lists them with defaults and meaning; keep the two in step.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
static SCHEDULER_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
static HISTORY_RETENTION_DAYS: GucSetting<i32> = GucSetting::<i32>::new(7);
static FULL_REFRESH_RATIO: GucSetting<f64> = GucSetting::<f64>::new(0.5);
static ADAPTIVE_WORKERS: GucSetting<bool> = GucSetting::<bool>::new(true);
static MIN_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(1);
static MAX_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(8);
static MAX_CONSECUTIVE_ERRORS: GucSetting<i32> = GucSetting::<i32>::new(10);
static WORKER_RECLAIM_TIMEOUT_S: GucSetting<i32> = GucSetting::<i32>::new(30);
static REFRESH_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(0);

pub fn init() {
    GucRegistry::define_bool_guc(
        c"pg_trickle.enabled",
        c"Whether the background coordinators refresh stream tables.",
        c"When off, coordinators keep running but refresh nothing and their refresh workers exit; manual refreshes still work.",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.scheduler_interval_ms",
        c"How often each database's coordinator looks for stream tables that are due and sizes its refresh worker pool.",
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
        c"The coordinators delete older rows from pgtrickle.pgt_refresh_history; 0 keeps history forever.",
        &HISTORY_RETENTION_DAYS,
        0,
        3650,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_trickle.adaptive_workers",
        c"Whether each database's refresh worker pool sizes itself between min_workers and max_workers.",
        c"Once per coordinator tick: CPU above 70% removes a worker, lag above 5x a schedule grows the pool to max_workers, a queue above 2x the workers adds one, all idle shrinks it to min_workers; each change needs 3 agreeing ticks. Off: the pool is fixed at max_workers.",
        &ADAPTIVE_WORKERS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.min_workers",
        c"Refresh workers each database's pool keeps running when idle.",
        c"0 lets an idle pool stop every worker; the coordinator then refreshes in its own process until workers start again.",
        &MIN_WORKERS,
        0,
        crate::bgworker::MAX_POOL_WORKERS as i32,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.max_workers",
        c"The most refresh workers a database's pool runs.",
        c"Never more than max_worker_processes leaves free after the launcher and the coordinator (a WARNING says when this is lowered).",
        &MAX_WORKERS,
        1,
        crate::bgworker::MAX_POOL_WORKERS as i32,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.max_consecutive_errors",
        c"Scheduled refreshes of a stream table that may fail in a row before it is put in status ERROR.",
        c"Failures back off (the schedule doubled per failure, up to an hour); at this many the stream table stops being refreshed, keeping its last error, until pgtrickle.alter_stream_table(name, status => 'ACTIVE'). 0: never.",
        &MAX_CONSECUTIVE_ERRORS,
        0,
        1_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.worker_reclaim_timeout",
        c"How long an external worker (pg_trickle_worker) may stay silent before the coordinator counts it as gone.",
        c"Workers heartbeat every 5 s; one whose last heartbeat is older than this is marked 'gone' in pgtrickle.pgt_worker_registry.",
        &WORKER_RECLAIM_TIMEOUT_S,
        1,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.refresh_timeout",
        c"The longest a scheduled refresh may run before it is canceled; 0: no limit.",
        c"Applies to refreshes by the refresh workers and the coordinator, which statement_timeout does not reach; a canceled refresh rolls back and counts as a failure (backoff, then status ERROR after max_consecutive_errors). Manual refreshes follow the caller's statement_timeout. Settable per database (ALTER DATABASE ... SET), read when its workers start.",
        &REFRESH_TIMEOUT_MS,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MS,
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

pub fn adaptive_workers() -> bool {
    ADAPTIVE_WORKERS.get()
}

pub fn min_workers() -> u32 {
    MIN_WORKERS.get().max(0) as u32
}

pub fn max_workers() -> u32 {
    MAX_WORKERS.get().max(1) as u32
}

pub fn max_consecutive_errors() -> i32 {
    MAX_CONSECUTIVE_ERRORS.get()
}

pub fn worker_reclaim_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(WORKER_RECLAIM_TIMEOUT_S.get().max(1) as u64)
}

/// `pg_trickle.refresh_timeout`: None for no limit.
pub fn refresh_timeout() -> Option<std::time::Duration> {
    let ms = REFRESH_TIMEOUT_MS.get();
    (ms > 0).then(|| std::time::Duration::from_millis(ms as u64))
}
