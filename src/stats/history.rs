//! `pgtrickle.pgt_refresh_history`: one row per refresh attempt.

use crate::error::{PgtError, PgtResult};
use crate::spi;
use pgrx::datum::TimestampWithTimeZone;

/// Who runs refreshes in this process, for `executed_by`: a refresh worker, the coordinator, or a
/// session calling the SQL API (the default) — each with its pid — or, for the duration of a
/// `worker_refresh` call, an external worker (with its registry id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    Session,
    RefreshWorker,
    Coordinator,
    /// `pg_trickle_worker` with this `worker_id`.
    ExternalWorker(pgrx::datum::Uuid),
}

impl Executor {
    fn describe(self) -> String {
        // SAFETY: reading this process's pid.
        let pid = unsafe { pgrx::pg_sys::MyProcPid };
        match self {
            Executor::Session => format!("session {pid}"),
            Executor::RefreshWorker => format!("refresh worker {pid}"),
            Executor::Coordinator => format!("coordinator {pid}"),
            Executor::ExternalWorker(id) => format!("external worker {id}"),
        }
    }
}

thread_local! {
    static EXECUTOR: std::cell::Cell<Executor> = const { std::cell::Cell::new(Executor::Session) };
}

/// Declares who this process is (background workers, at start).
pub fn set_executor(executor: Executor) {
    EXECUTOR.with(|e| e.set(executor));
}

/// Declares an executor until the returned guard is dropped (also when an ERROR unwinds).
pub fn executing_as(executor: Executor) -> ExecutorScope {
    ExecutorScope {
        previous: EXECUTOR.with(|e| e.replace(executor)),
    }
}

pub struct ExecutorScope {
    previous: Executor,
}

impl Drop for ExecutorScope {
    fn drop(&mut self) {
        EXECUTOR.with(|e| e.set(self.previous));
    }
}

fn executed_by() -> String {
    EXECUTOR.with(|e| e.get()).describe()
}

pub struct HistoryEntry<'a> {
    pub pgt_id: i64,
    pub started_at: TimestampWithTimeZone,
    /// When it ended: read once by the caller, which gives the statistics (`cost_summary::record`)
    /// the same reading, so the history and pg_stat_pgtrickle measure each refresh alike.
    pub finished_at: TimestampWithTimeZone,
    pub action: &'a str,
    pub status: &'a str,
    pub initiated_by: &'a str,
    pub reason: Option<&'a str>,
    pub rows_inserted: Option<i64>,
    pub rows_deleted: Option<i64>,
    pub error_message: Option<&'a str>,
    pub delta_rows: Option<i64>,
}

/// Wall-clock time (not the transaction's start), for durations.
/// `clock_timestamp()`, without a statement.
pub fn now() -> PgtResult<TimestampWithTimeZone> {
    // SAFETY: reads the system clock as PostgreSQL's clock_timestamp() does.
    let now = unsafe { pgrx::pg_sys::GetCurrentTimestamp() };
    TimestampWithTimeZone::try_from(now)
        .map_err(|e| PgtError::internal(format!("clock_timestamp(): {e:?}")))
}

pub fn record(e: &HistoryEntry) -> PgtResult<()> {
    let mut args = vec![
        e.pgt_id.into(),
        e.started_at.into(),
        e.finished_at.into(),
        e.action.into(),
        e.status.into(),
        e.initiated_by.into(),
        e.reason.into(),
        e.rows_inserted.into(),
        e.rows_deleted.into(),
        e.error_message.into(),
    ];
    // A 0.1.0 catalog (until ALTER EXTENSION pg_trickle UPDATE) has no executed_by, delta_rows.
    let (columns, values) = if crate::catalog::version::at_least_0_2_0()? {
        args.push(executed_by().into());
        args.push(e.delta_rows.into());
        (", executed_by, delta_rows", ", $11, $12")
    } else {
        ("", "")
    };
    spi::exec(
        &format!(
            "INSERT INTO pgtrickle.pgt_refresh_history
                 (pgt_id, started_at, finished_at, action, status, initiated_by, reason, rows_inserted, rows_deleted,
                  error_message{columns})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10{values})"
        ),
        &args,
    )
}

/// Deletes history older than the retention period (0 keeps everything).
pub fn prune(retention_days: i32) -> PgtResult<()> {
    if retention_days <= 0 {
        return Ok(());
    }
    spi::exec(
        "DELETE FROM pgtrickle.pgt_refresh_history WHERE finished_at < pg_catalog.now() - pg_catalog.make_interval(days => $1)",
        &[retention_days.into()],
    )
}
