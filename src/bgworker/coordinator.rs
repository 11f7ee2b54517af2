//! The per-database coordinator. Every tick it finds the ACTIVE stream tables that are due and makes
//! them a round: one DAG level at a time (upstream before downstream: a level is queued only after
//! every refresh of the level before it committed or failed), queued in shared memory for the
//! database's refresh workers, which run them in parallel. Once per tick it also sizes the pool
//! (adaptive.rs) and starts or retires workers to match. Without any worker — none could start, or
//! min_workers is 0 — it refreshes in its own process, one job per wake-up. A worker that dies
//! mid-refresh rolled its transaction back with it; its job is recorded as failed (with backoff) and
//! the stream table is due again.

use super::adaptive::{Bounds, Measurement, Sizer};
use super::refresh_worker;
use super::xact::{self, Isolation};
use super::{cpu, policy, pool};
use crate::error::PgtResult;
use crate::gucs;
use crate::spi;
use crate::stats::history;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker, DynamicBackgroundWorkerLoadError, SignalWakeFlags};
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub const BACKEND_TYPE: &str = "pg_trickle coordinator";
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// A worker that has not joined its pool this long after it was started is not waited for any more.
const START_GRACE: Duration = Duration::from_secs(10);

pub fn start(db: Oid, db_name: &str) -> Result<DynamicBackgroundWorker, DynamicBackgroundWorkerLoadError> {
    BackgroundWorkerBuilder::new(&format!("{BACKEND_TYPE} {db_name}"))
        .set_type(BACKEND_TYPE)
        .set_library("pg_trickle")
        .set_function("pg_trickle_coordinator_main")
        .set_argument(Some(pg_sys::Datum::from(db.to_u32())))
        .enable_shmem_access(None)
        .enable_spi_access()
        .set_restart_time(None)
        // SAFETY: reading this process's pid.
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic()
}

struct Due {
    pgt_id: i64,
    name: String,
    level: i32,
}

/// A worker this coordinator started that has not joined the pool yet.
struct Starting {
    handle: DynamicBackgroundWorker,
    since: Instant,
}

struct Coordinator {
    db: Oid,
    db_name: String,
    pid: i32,
    /// The levels of the current round not queued yet.
    round: VecDeque<Vec<(i64, String)>>,
    sizer: Sizer,
    cpu: cpu::Sampler,
    starting: Vec<Starting>,
    warned_no_slot: bool,
    warned_clamp: Option<u32>,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_trickle_coordinator_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    super::use_postgres_sigterm();
    let db = Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db), None);

    let installed = xact::run(Isolation::ReadCommitted, extension_installed);
    if installed != Ok(true) {
        // No pg_trickle here (or the catalog is unreadable): the launcher probes again later.
        return;
    }
    // SAFETY: reading this process's pid.
    let pid = unsafe { pg_sys::MyProcPid };
    if !super::shmem::start_serving(db, pid) {
        return; // a DROP/ALTER DATABASE needs this database to itself
    }
    let db_name = xact::run(Isolation::ReadCommitted, || Ok(spi::one::<String>("SELECT pg_catalog.current_database()::text", &[])?))
        .ok()
        .flatten()
        .unwrap_or_default();
    pool::attach_coordinator(db.to_u32(), pid);
    log!("{} started", BackgroundWorker::get_name());

    let mut c = Coordinator {
        db,
        db_name,
        pid,
        round: VecDeque::new(),
        // Grows to min_workers at the first tick that finds stream tables to refresh.
        sizer: Sizer::new(Bounds { min: 0, max: 0 }),
        cpu: cpu::Sampler::default(),
        starting: Vec::new(),
        warned_no_slot: false,
        warned_clamp: None,
    };
    let mut next_tick = Instant::now();
    let mut last_prune = Instant::now() - PRUNE_EVERY;
    loop {
        pgrx::check_for_interrupts!();
        if BackgroundWorker::sighup_received() {
            // SAFETY: the standard way for a background worker to re-read postgresql.conf.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        c.reap();
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + gucs::scheduler_interval();
            match xact::run(Isolation::ReadCommitted, extension_installed) {
                Ok(true) => {}
                Ok(false) => {
                    pool::detach_coordinator(db.to_u32());
                    super::shmem::stop_serving(db);
                    log!("pg_trickle coordinator: extension dropped, exiting");
                    return;
                }
                Err(e) => warning!("pg_trickle coordinator: cannot read the catalog: {e}"),
            }
            c.tick();
            if gucs::enabled() && last_prune.elapsed() >= PRUNE_EVERY {
                if let Err(e) = xact::run(Isolation::ReadCommitted, || history::prune(gucs::history_retention_days())) {
                    warning!("pg_trickle coordinator: pruning refresh history failed: {e}");
                }
                last_prune = Instant::now();
            }
        }
        c.advance();
        c.fit_workers();
        if c.refresh_in_process() {
            continue; // look at the queue again at once
        }
        let wait = next_tick.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        BackgroundWorker::wait_latch(Some(wait));
    }
}

fn extension_installed() -> PgtResult<bool> {
    Ok(spi::one::<bool>("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_trickle')", &[])?
        == Some(true))
}

/// min_workers and max_workers, the latter lowered to what max_worker_processes leaves free for
/// this database after the launcher and its coordinator (WARNING once per value when lowered).
fn bounds(warned: &mut Option<u32>) -> Bounds {
    // SAFETY: reading a GUC variable.
    let processes = unsafe { pg_sys::max_worker_processes }.max(0) as u32;
    let room = processes.saturating_sub(2).min(pool::MAX_WORKERS as u32);
    let wanted = gucs::max_workers();
    let max = wanted.min(room);
    if max < wanted && *warned != Some(wanted) {
        warning!(
            "pg_trickle.max_workers = {wanted} is more than max_worker_processes = {processes} leaves free; the pool uses at most {max} (raise max_worker_processes to allow more)"
        );
        *warned = Some(wanted);
    }
    Bounds { min: gucs::min_workers().min(max), max }
}

impl Coordinator {
    /// Starts a round if none is in flight, and sizes the pool.
    fn tick(&mut self) {
        let (mut lag_ratio, mut due, mut active) = (0.0, Vec::new(), 0);
        if gucs::enabled() {
            match xact::run(Isolation::ReadCommitted, due_stream_tables) {
                Ok(found) => (due, lag_ratio, active) = (found.due, found.lag_ratio, found.active),
                Err(e) => warning!("pg_trickle coordinator: cannot list due stream tables: {e}"),
            }
        }
        let (queued, running) = pool::outstanding(self.db.to_u32());
        if self.round.is_empty() && queued == 0 && running == 0 && !due.is_empty() {
            let mut levels: VecDeque<Vec<(i64, String)>> = VecDeque::new();
            let mut last_level = None;
            for st in due {
                if last_level != Some(st.level) {
                    levels.push_back(Vec::new());
                    last_level = Some(st.level);
                }
                if let Some(level) = levels.back_mut() {
                    level.push((st.pgt_id, st.name));
                }
            }
            self.round = levels;
        }
        let not_queued: u32 = self.round.iter().map(|l| l.len() as u32).sum();
        let (workers, busy) = pool::workers(self.db.to_u32(), self.pid);
        let m = Measurement { cpu: self.cpu.measure(), queue_depth: queued + not_queued, busy, lag_ratio };
        let configured = bounds(&mut self.warned_clamp);
        // Nothing to refresh here (or refreshing is paused): no worker waits for work, in either mode.
        let bounds = if active == 0 { Bounds { min: 0, max: 0 } } else { configured };
        let decision = self.sizer.decide(&m, bounds, gucs::adaptive_workers());
        if decision.changed {
            log!(
                "pg_trickle coordinator: refresh workers {} -> {} ({})",
                workers,
                decision.target,
                decision.reason.as_str()
            );
        }
        pool::record_decision(self.db.to_u32(), &m, &decision, workers, configured.max);
    }

    /// Queues the next level once the current one is finished.
    fn advance(&mut self) {
        let (queued, running) = pool::outstanding(self.db.to_u32());
        if queued > 0 || running > 0 {
            return;
        }
        let Some(level) = self.round.pop_front() else { return };
        let queued = pool::enqueue(self.db.to_u32(), &level);
        if queued < level.len() {
            // No room in shared memory: the rest wait for the next round (they stay due).
            self.round.clear();
        }
    }

    /// Workers that died are removed; the jobs they were running are recorded as failed.
    fn reap(&mut self) {
        for (pgt_id, name) in pool::reap(self.db.to_u32()) {
            refresh_worker::record_failure(pgt_id, &name, Duration::ZERO, "the refresh worker running it exited (the refresh was rolled back)");
        }
        self.starting.retain(|s| match s.handle.pid() {
            Ok(pid) => !pool::registered(pid) && s.since.elapsed() < START_GRACE,
            Err(BackgroundWorkerStatus::NotYetStarted) => s.since.elapsed() < START_GRACE,
            Err(_) => false,
        });
    }

    /// Starts or retires workers so that as many run as the target says.
    fn fit_workers(&mut self) {
        let target = self.sizer.target();
        let (workers, _) = pool::workers(self.db.to_u32(), self.pid);
        let live = workers + self.starting.len() as u32;
        if live >= target {
            pool::retire(self.db.to_u32(), live - target);
            // Whole again: a later lack of slots is worth a new WARNING.
            self.warned_no_slot = false;
            return;
        }
        for _ in live..target {
            match refresh_worker::start(self.db, &self.db_name) {
                Ok(handle) => {
                    pool::count_start(self.db.to_u32(), true);
                    self.starting.push(Starting { handle, since: Instant::now() });
                }
                Err(_) => {
                    pool::count_start(self.db.to_u32(), false);
                    if !self.warned_no_slot {
                        warning!(
                            "pg_trickle coordinator: no background worker slot free for a refresh worker of database \"{}\"; continuing with {live} and retrying (consider raising max_worker_processes)",
                            self.db_name
                        );
                        self.warned_no_slot = true;
                    }
                    return;
                }
            }
        }
    }

    /// With no worker at all, refreshes one queued job here. Returns whether it did.
    fn refresh_in_process(&mut self) -> bool {
        let (workers, _) = pool::workers(self.db.to_u32(), self.pid);
        if workers > 0 || !self.starting.is_empty() {
            return false;
        }
        let Some((pgt_id, name)) = pool::take_job(self.db.to_u32(), self.pid) else { return false };
        refresh_worker::run_job(pgt_id, &name);
        pool::finish_job(self.db.to_u32(), self.pid, pgt_id);
        true
    }
}

/// What a tick finds in the catalog.
struct Found {
    /// ACTIVE stream tables whose (backed-off) schedule has elapsed, by DAG level (upstream first).
    due: Vec<Due>,
    /// The largest staleness among healthy ACTIVE stream tables, in multiples of their schedule.
    lag_ratio: f64,
    /// ACTIVE stream tables.
    active: usize,
}

fn due_stream_tables() -> PgtResult<Found> {
    let candidates = spi::rows(
        "WITH RECURSIVE levels(pgt_id, level) AS (
             SELECT st.pgt_id, 0 FROM pgtrickle.pgt_stream_tables st
           UNION ALL
             SELECT down.pgt_id, l.level + 1
               FROM levels l
               JOIN pgtrickle.pgt_stream_tables up ON up.pgt_id = l.pgt_id
               JOIN pgtrickle.pgt_dependencies down ON down.source_relid = up.pgt_relid
              WHERE l.level < 64
         )
         SELECT st.pgt_id, st.pgt_relid::regclass::text AS name, st.schedule_ms, st.consecutive_errors,
                (EXTRACT(EPOCH FROM pg_catalog.clock_timestamp()) * 1000)::bigint AS now_ms,
                (EXTRACT(EPOCH FROM st.last_attempt_at) * 1000)::bigint AS last_attempt_ms,
                COALESCE(EXTRACT(EPOCH FROM pg_catalog.clock_timestamp() - st.last_refresh_at) * 1000 / st.schedule_ms, 0)::float8 AS lag_ratio,
                (SELECT max(level) FROM levels l WHERE l.pgt_id = st.pgt_id) AS level
           FROM pgtrickle.pgt_stream_tables st
          WHERE st.status = 'ACTIVE'
          ORDER BY level, st.pgt_id",
        &[],
        |r| {
            Ok((
                Due { pgt_id: spi::col(r, "pgt_id")?, name: spi::col(r, "name")?, level: spi::col(r, "level")? },
                spi::col::<i64>(r, "schedule_ms")?,
                spi::col::<i32>(r, "consecutive_errors")?,
                spi::col::<i64>(r, "now_ms")?,
                r.get_by_name::<i64, _>("last_attempt_ms")?,
                spi::col::<f64>(r, "lag_ratio")?,
            ))
        },
    )?;
    // Failing stream tables back off on purpose: their staleness is not lag more workers would cure.
    let lag = candidates.iter().filter(|c| c.2 == 0).map(|c| c.5).fold(0.0, f64::max);
    let active = candidates.len();
    let due = candidates
        .into_iter()
        .filter(|(_, schedule_ms, errors, now_ms, last, _)| policy::is_due(*now_ms, *last, *schedule_ms, *errors))
        .map(|(st, ..)| st)
        .collect();
    Ok(Found { due, lag_ratio: lag, active })
}
