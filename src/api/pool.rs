//! What operators see of this database's refresh worker pool (views `pgtrickle.pool_status` and
//! `pgtrickle.pool_decisions`, sql/finalize.sql).

use crate::bgworker::adaptive::Reason;
use crate::bgworker::pool::{self, DecisionRecord};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

fn database() -> u32 {
    // SAFETY: MyDatabaseId is set for every backend connected to a database.
    unsafe { pg_sys::MyDatabaseId.to_u32() }
}

fn at(record: &DecisionRecord) -> Option<TimestampWithTimeZone> {
    TimestampWithTimeZone::try_from(record.at).ok()
}

fn cpu_percent(record: &DecisionRecord) -> Option<f64> {
    (record.cpu_permille >= 0).then(|| record.cpu_permille as f64 / 10.0)
}

/// One row: the pool of this database now, and its last sizing decision. No row while the database
/// has no coordinator.
#[allow(clippy::type_complexity)]
#[pg_extern(schema = "pgtrickle", name = "_pool_status")]
fn pool_status() -> TableIterator<
    'static,
    (
        name!(coordinator_pid, i32),
        name!(target_workers, i32),
        name!(max_workers, i32),
        name!(workers, i32),
        name!(busy_workers, i32),
        name!(idle_workers, i32),
        name!(queued_refreshes, i32),
        name!(running_refreshes, i32),
        name!(pending_cleanups, i32),
        name!(refreshes, i64),
        name!(workers_started, i64),
        name!(worker_start_failures, i64),
        name!(workers_lost, i64),
        name!(last_tick_ms, f64),
        name!(decided_at, Option<TimestampWithTimeZone>),
        name!(reason, Option<String>),
        name!(cpu_percent, Option<f64>),
        name!(queue_depth, Option<i32>),
        name!(lag_ratio, Option<f64>),
        name!(signalled_sources, i32),
        name!(signal_overflows, i64),
    ),
> {
    let (signalled, overflows) = crate::cdc::signal::usage(database());
    let row = pool::status(database()).map(|s| {
        let last = s.last.as_ref();
        (
            s.coordinator,
            s.target as i32,
            s.max_workers as i32,
            s.workers as i32,
            s.busy as i32,
            s.workers.saturating_sub(s.busy) as i32,
            s.queued as i32,
            s.running_jobs as i32,
            crate::bgworker::releases::pending(database()) as i32,
            s.refreshes as i64,
            s.workers_started as i64,
            s.start_failures as i64,
            s.workers_lost as i64,
            s.last_tick_us as f64 / 1000.0,
            last.and_then(at),
            last.map(|d| describe(d)),
            last.and_then(cpu_percent),
            last.map(|d| d.queue_depth as i32),
            last.map(|d| d.lag_ratio),
            signalled as i32,
            overflows as i64,
        )
    });
    TableIterator::new(row)
}

/// The recent sizing decisions of this database's pool, oldest first (one per coordinator tick).
#[allow(clippy::type_complexity)]
#[pg_extern(schema = "pgtrickle", name = "_pool_decisions")]
fn pool_decisions() -> TableIterator<
    'static,
    (
        name!(decided_at, Option<TimestampWithTimeZone>),
        name!(target_workers, i32),
        name!(changed, bool),
        name!(reason, String),
        name!(cpu_percent, Option<f64>),
        name!(queue_depth, i32),
        name!(busy_workers, i32),
        name!(workers, i32),
        name!(lag_ratio, f64),
    ),
> {
    TableIterator::new(pool::decisions(database()).into_iter().map(|d| {
        (
            at(&d),
            d.target as i32,
            d.changed,
            describe(&d),
            cpu_percent(&d),
            d.queue_depth as i32,
            d.busy as i32,
            d.workers as i32,
            d.lag_ratio,
        )
    }))
}

/// The rule that applied, and how far its count of agreeing ticks had come.
fn describe(d: &DecisionRecord) -> String {
    let reason = Reason::from_code(d.reason);
    match reason {
        Reason::Steady | Reason::Fixed | Reason::Bounds => reason.as_str().to_string(),
        _ if d.agreeing == 0 => format!("{}: holding at min_workers", reason.as_str()),
        _ if d.changed => format!("{} ({} agreeing ticks)", reason.as_str(), d.agreeing),
        _ => format!(
            "{} ({}/{} agreeing ticks)",
            reason.as_str(),
            d.agreeing,
            crate::bgworker::adaptive::AGREEING
        ),
    }
}
