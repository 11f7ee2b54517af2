//! The per-database coordinator. Every tick it finds the ACTIVE stream tables that are due (one
//! catalog query) and queues them in shared memory for the database's refresh workers, which run
//! them in parallel. A stream table waits while a stream table it reads is due, queued or running:
//! upstream before downstream in every round, without holding back independent ones. A DIFFERENTIAL
//! stream table none of whose sources signalled a change since its last refresh is skipped
//! altogether (cdc/signal.rs). Once per tick the coordinator also sizes the pool (adaptive.rs) and
//! starts or retires workers to match. Without any worker — none could start, or min_workers is 0
//! — it refreshes in its own process, one job per wake-up. A worker that dies mid-refresh rolled its
//! transaction back with it; its job is recorded as failed (with backoff) and runs again. While an
//! external worker (`pg_trickle_worker`) is alive, due refreshes are queued for external workers
//! instead (external.rs), and the ones they cannot finish come back to the pool. On every wake-up it
//! also runs the clean-ups manual refreshes left it when they committed (releases.rs).

use super::adaptive::{Bounds, Measurement, Sizer};
use super::xact::{self, Isolation};
use super::{cpu, policy, pool};
use super::{external, refresh_worker, releases};
use crate::cdc::signal;
use crate::error::PgtResult;
use crate::gucs;
use crate::spi;
use crate::stats::history;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerStatus, DynamicBackgroundWorker,
    DynamicBackgroundWorkerLoadError, SignalWakeFlags,
};
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

pub const BACKEND_TYPE: &str = "pg_trickle coordinator";
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// A worker that has not joined its pool this long after it was started is not waited for any more.
const START_GRACE: Duration = Duration::from_secs(10);

pub fn start(
    db: Oid,
    db_name: &str,
) -> Result<DynamicBackgroundWorker, DynamicBackgroundWorkerLoadError> {
    super::start_in_database(BACKEND_TYPE, "pg_trickle_coordinator_main", db, db_name)
}

/// A due stream table, as the tick's catalog query finds it.
struct Due {
    pgt_id: i64,
    /// Stream tables it reads directly.
    upstream: Vec<i64>,
    /// The tables whose capture or signal triggers signal its changes (cdc/signal.rs).
    sources: Vec<u32>,
    /// DIFFERENTIAL or a FULL one that skips unchanged sources (catalog/unchanged.rs), not to be
    /// reinitialised, not failing: it may be skipped while nothing changed.
    skippable: bool,
    lag_ratio: f64,
}

/// A due stream table not queued yet: it waits for its upstreams of the same round.
struct Waiting {
    pgt_id: i64,
    /// For the refresh worker's activity and log lines; looked up once it waits (see `name_waiting`).
    name: String,
    /// The stream table's owner, looked up with the name: the pool shares its workers among owners.
    owner: u32,
    upstream: Vec<i64>,
    sources: Vec<u32>,
}

/// The change signals of a stream table's sources at one moment: their stamps, and how many changes
/// no stamp accounts for (a source that found no room, a `COMMIT PREPARED`: each counts as a change
/// of every stream table).
/// The sources are part of it: a refresh that reinitialised may have changed them, and the stamps of
/// other sources must not compare equal by chance (two zeros).
#[derive(Clone, PartialEq, Eq)]
struct Signals {
    sources: Vec<u32>,
    stamps: Vec<u64>,
    unattributed: u64,
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
    /// Due stream tables not queued yet, upstream first.
    waiting: Vec<Waiting>,
    /// The signals of each queued or running refresh's sources when it was queued.
    queued_signals: HashMap<i64, Signals>,
    /// The signals as they were before each stream table's last refresh by this coordinator.
    seen: HashMap<i64, Signals>,
    sizer: Sizer,
    cpu: cpu::Sampler,
    starting: Vec<Starting>,
    /// A started worker found no pool slot: no more starts until then.
    no_starts_until: Option<Instant>,
    join_failures_seen: u64,
    warned_no_slot: bool,
    warned_clamp: Option<u32>,
    /// The change signals' overflow count when this coordinator started or last warned of it.
    overflows_seen: u64,
    /// Jobs queued for external workers (pgt_worker_jobs), by stream table: (job_id, name).
    external_jobs: HashMap<i64, (i64, String)>,
    /// External workers alive at the last sweep: due refreshes go to them while there is one.
    workers_alive: i64,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_trickle_coordinator_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    super::use_postgres_sigterm();
    let db = Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db), None);
    crate::refresh::settings::pin_session_search_path();

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
    let db_name = xact::run(Isolation::ReadCommitted, || {
        Ok(spi::one::<String>(
            "SELECT pg_catalog.current_database()::text",
            &[],
        )?)
    })
    .ok()
    .flatten()
    .unwrap_or_default();
    pool::attach_coordinator(db.to_u32(), pid);
    releases::adopt(db.to_u32());
    crate::stats::history::set_executor(crate::stats::history::Executor::Coordinator);
    log!("{} started", BackgroundWorker::get_name());

    let mut c = Coordinator {
        db,
        db_name,
        pid,
        waiting: Vec::new(),
        queued_signals: HashMap::new(),
        seen: HashMap::new(),
        // Grows to min_workers at the first tick that finds stream tables to refresh.
        sizer: Sizer::new(Bounds { min: 0, max: 0 }),
        cpu: cpu::Sampler::default(),
        starting: Vec::new(),
        no_starts_until: None,
        join_failures_seen: pool::join_failures(db.to_u32()),
        warned_no_slot: false,
        warned_clamp: None,
        overflows_seen: 0,
        external_jobs: HashMap::new(),
        workers_alive: 0,
    };
    record_interrupted();
    c.adopt_external_jobs();
    c.sweep_external_workers();
    let mut next_tick = Instant::now();
    let mut last_prune = Instant::now() - PRUNE_EVERY;
    let mut last_worker_sweep = Instant::now();
    loop {
        pgrx::check_for_interrupts!();
        if BackgroundWorker::sighup_received() {
            // SAFETY: the standard way for a background worker to re-read postgresql.conf.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        c.reap();
        c.collect();
        c.release_owed();
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + gucs::scheduler_interval();
            let ticked = Instant::now();
            let alive = c.tick();
            pool::record_tick(db.to_u32(), ticked.elapsed());
            if !alive {
                pool::detach_coordinator(db.to_u32());
                super::shmem::stop_serving(db);
                // Its capture went with it; a coordinator of a new installation starts afresh.
                signal::forget_database(db.to_u32());
                log!("pg_trickle coordinator: extension dropped, exiting");
                return;
            }
            if gucs::enabled() && last_prune.elapsed() >= PRUNE_EVERY {
                if let Err(e) = xact::run(Isolation::ReadCommitted, || {
                    history::prune(gucs::history_retention_days())?;
                    external::prune()
                }) {
                    warning!("pg_trickle coordinator: pruning refresh history failed: {e}");
                }
                last_prune = Instant::now();
            }
            if last_worker_sweep.elapsed() >= external::SWEEP_EVERY {
                c.sweep_external_workers();
                last_worker_sweep = Instant::now();
            }
            c.poll_external_jobs();
        }
        c.dispatch();
        c.fit_workers();
        if c.refresh_in_process() {
            continue; // look at the queue again at once
        }
        let wait = next_tick
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        BackgroundWorker::wait_latch(Some(wait));
    }
}

/// Refreshes that were in flight when their worker or the server stopped (a crash, an immediate
/// shutdown, a killed process) are recorded as failed; each stream table is refreshed again.
fn record_interrupted() {
    let recorded = xact::run(Isolation::ReadCommitted, || {
        let interrupted = crate::refresh::job::interrupted()?;
        for i in &interrupted {
            crate::refresh::record_failure(
                i.pgt_id,
                i.elapsed,
                &format!("interrupted: the server or the process running this refresh (started {}) stopped before it committed; it was rolled back", i.started),
            )?;
        }
        Ok(interrupted.len())
    });
    match recorded {
        Ok(0) => {}
        Ok(n) => log!("pg_trickle coordinator: {n} refresh(es) interrupted by a stop or crash recorded as failed"),
        Err(e) => warning!("pg_trickle coordinator: could not record interrupted refreshes: {e}"),
    }
}

fn extension_installed() -> PgtResult<bool> {
    Ok(spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_trickle')",
        &[],
    )? == Some(true))
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
    Bounds {
        min: gucs::min_workers().min(max),
        max,
    }
}

impl Coordinator {
    /// The clean-ups manual refreshes left to this database's coordinator (releases.rs), each in a
    /// transaction of its own; whether paused or not, as they free what was already applied.
    fn release_owed(&self) {
        let db = self.db.to_u32();
        // Those owed now: commits that keep owing more wait for the next pass, not the tick.
        for _ in 0..releases::pending(db) {
            let Some(pgt_id) = releases::next(db) else {
                break;
            };
            // The extension may have been dropped since (the next tick notices and exits).
            if let Err(e) = xact::run(Isolation::ReadCommitted, || {
                if extension_installed()? {
                    crate::refresh::release_changes(pgt_id)?;
                }
                Ok(())
            }) {
                warning!("pg_trickle coordinator: the clean-up after a manual refresh of stream table {pgt_id} failed: {e}");
            }
            releases::done(db, pgt_id);
        }
    }

    /// Finds what is due (one catalog query, one transaction) and sizes the pool. False when the
    /// extension is gone.
    fn tick(&mut self) -> bool {
        let found = match xact::run(Isolation::ReadCommitted, || {
            due_stream_tables(gucs::enabled())
        }) {
            Ok(Some(found)) => found,
            Ok(None) => return false,
            Err(e) => {
                warning!("pg_trickle coordinator: cannot list due stream tables: {e}");
                Found::default()
            }
        };
        if !gucs::enabled() {
            self.waiting.clear(); // paused: what has not been queued yet waits for the resumption
        }
        self.warn_of_overflows();
        let lag_ratio = self.take_due(found.due, found.may_skip);
        self.name_waiting();
        let (queued, _) = pool::outstanding(self.db.to_u32());
        let (workers, busy) = pool::workers(self.db.to_u32(), self.pid);
        let m = Measurement {
            cpu: self.cpu.measure(),
            queue_depth: queued + self.waiting.len() as u32,
            busy,
            lag_ratio,
        };
        let configured = bounds(&mut self.warned_clamp);
        // Nothing to refresh here (or refreshing is paused): no worker waits for work, in either mode.
        let bounds = if found.active == 0 {
            Bounds { min: 0, max: 0 }
        } else {
            configured
        };
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
        true
    }

    /// Adds the due stream tables that are not in flight already and have something to do to the
    /// waiting ones. Returns the largest lag among them, in multiples of their schedule.
    fn take_due(&mut self, due: Vec<Due>, may_skip: bool) -> f64 {
        let in_flight = self.in_flight();
        let mut lag: f64 = 0.0;
        for st in due {
            if in_flight.contains(&st.pgt_id) || self.waiting.iter().any(|w| w.pgt_id == st.pgt_id)
            {
                continue;
            }
            if may_skip
                && st.skippable
                && self.seen.get(&st.pgt_id) == Some(&self.signals(&st.sources))
            {
                continue; // idle: no transaction, no refresh, no catalog write
            }
            lag = lag.max(st.lag_ratio);
            self.waiting.push(Waiting {
                pgt_id: st.pgt_id,
                name: String::new(),
                owner: 0,
                upstream: st.upstream,
                sources: st.sources,
            });
        }
        lag
    }

    /// Names the waiting stream tables that have no name yet, and finds their owners: only those a
    /// tick did not skip, so an idle tick looks up nothing.
    fn name_waiting(&mut self) {
        let unnamed: Vec<i64> = self
            .waiting
            .iter()
            .filter(|w| w.name.is_empty())
            .map(|w| w.pgt_id)
            .collect();
        if unnamed.is_empty() {
            return;
        }
        let names = xact::run(Isolation::ReadCommitted, || {
            spi::rows(
                "SELECT st.pgt_id, st.pgt_relid::pg_catalog.regclass::text AS name,
                        COALESCE(c.relowner, 0)::bigint AS owner
                   FROM pgtrickle.pgt_stream_tables st
                   LEFT JOIN pg_catalog.pg_class c ON c.oid = st.pgt_relid
                  WHERE st.pgt_id = ANY ($1)",
                &[unnamed.into()],
                |r| {
                    Ok((
                        spi::col::<i64>(r, "pgt_id")?,
                        spi::col::<String>(r, "name")?,
                        spi::col::<i64>(r, "owner")? as u32,
                    ))
                },
            )
        })
        .unwrap_or_else(|e| {
            warning!("pg_trickle coordinator: cannot name the due stream tables: {e}");
            Vec::new()
        });
        for w in self.waiting.iter_mut().filter(|w| w.name.is_empty()) {
            // One dropped meanwhile keeps its id: its refresh finds it gone.
            match names.iter().find(|(id, _, _)| *id == w.pgt_id) {
                Some((_, name, owner)) => (w.name, w.owner) = (name.clone(), *owner),
                None => w.name = format!("pgt_id {}", w.pgt_id),
            }
        }
    }

    /// Logs (once per coordinator, and again if it worsens tenfold) that sources found no room
    /// in the change signals: every overflow refreshes every idle stream table of the cluster.
    fn warn_of_overflows(&mut self) {
        let overflows = signal::overflows();
        if overflows > 0 && overflows >= self.overflows_seen.saturating_mul(10).max(1) {
            warning!(
                "pg_trickle: {overflows} commits found no room for their source in the change signals, which hold {} sources for the cluster; each made every idle stream table refresh once",
                signal::MAX_SOURCES
            );
            self.overflows_seen = overflows;
        }
    }

    fn signals(&self, sources: &[u32]) -> Signals {
        let (stamps, unattributed) = signal::read(self.db.to_u32(), sources);
        Signals {
            sources: sources.to_vec(),
            stamps,
            unattributed,
        }
    }

    /// Queues each waiting stream table none of whose upstreams is waiting, queued or running.
    fn dispatch(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let in_flight = self.in_flight();
        let waiting_ids: Vec<i64> = self.waiting.iter().map(|w| w.pgt_id).collect();
        let (rest, jobs): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| {
                w.upstream
                    .iter()
                    .any(|u| in_flight.contains(u) || waiting_ids.contains(u))
            });
        if jobs.is_empty() {
            self.waiting = rest;
            return;
        }
        // Read just before queueing: a change signalled after this is the next refresh's.
        let signals: Vec<Signals> = jobs.iter().map(|w| self.signals(&w.sources)).collect();
        let list: Vec<pool::Request> = jobs
            .iter()
            .map(|w| pool::Request {
                pgt_id: w.pgt_id,
                name: w.name.clone(),
                owner: w.owner,
            })
            .collect();
        let queued: Vec<bool> = match self.queue_external(&list) {
            Some(queued) => queued,
            None => {
                let n = pool::enqueue(self.db.to_u32(), &list);
                (0..list.len()).map(|i| i < n).collect()
            }
        };
        for ((w, signals), queued) in jobs.into_iter().zip(signals).zip(queued) {
            if queued {
                self.queued_signals.insert(w.pgt_id, signals);
            } else {
                // No room in shared memory (or an outstanding external job): it waits (still due)
                // for a later tick.
                self.seen.remove(&w.pgt_id);
            }
        }
        self.waiting = rest;
    }

    /// Stream tables queued or running, here or on external workers.
    fn in_flight(&self) -> Vec<i64> {
        let mut ids = pool::outstanding_ids(self.db.to_u32());
        ids.extend(self.external_jobs.keys());
        ids
    }

    /// While an external worker is alive, queues these refreshes for external workers: for each,
    /// whether it was queued. None: no worker alive (or queueing failed): refresh them in-process.
    fn queue_external(&mut self, list: &[pool::Request]) -> Option<Vec<bool>> {
        if self.workers_alive == 0 {
            return None;
        }
        let ids: Vec<i64> = list.iter().map(|r| r.pgt_id).collect();
        match xact::run(Isolation::ReadCommitted, || external::queue(&ids)) {
            Ok(jobs) => Some(
                list.iter()
                    .map(|r| match jobs.iter().find(|j| j.pgt_id == r.pgt_id) {
                        Some(job) => {
                            self.external_jobs
                                .insert(r.pgt_id, (job.job_id, r.name.clone()));
                            true
                        }
                        None => false,
                    })
                    .collect(),
            ),
            Err(e) => {
                warning!("pg_trickle coordinator: cannot queue refreshes for external workers, refreshing in-process: {e}");
                None
            }
        }
    }

    /// Outstanding external jobs a previous coordinator of this database queued: waited for as if
    /// queued here (their sources' signals unknown: each stream table is refreshed again after).
    fn adopt_external_jobs(&mut self) {
        match xact::run(Isolation::ReadCommitted, external::adopt) {
            Ok(jobs) => {
                for job in jobs {
                    self.external_jobs
                        .insert(job.pgt_id, (job.job_id, format!("pgt_id {}", job.pgt_id)));
                }
            }
            Err(e) => {
                warning!("pg_trickle coordinator: cannot read the external workers' jobs: {e}")
            }
        }
    }

    /// Marks silent external workers gone and counts the live ones.
    fn sweep_external_workers(&mut self) {
        match xact::run(Isolation::ReadCommitted, external::sweep) {
            Ok(sweep) => {
                if sweep.gone > 0 {
                    log!(
                        "pg_trickle coordinator: {} external worker(s) silent for more than pg_trickle.worker_reclaim_timeout, marked gone",
                        sweep.gone
                    );
                }
                if (sweep.alive > 0) != (self.workers_alive > 0) {
                    let now = if sweep.alive > 0 {
                        "queued for external workers"
                    } else {
                        "refreshed in-process"
                    };
                    log!("pg_trickle coordinator: {} external worker(s) alive: due refreshes are {now}", sweep.alive);
                }
                self.workers_alive = sweep.alive;
            }
            Err(e) => warning!(
                "pg_trickle coordinator: checking external workers' heartbeats failed: {e}"
            ),
        }
    }

    /// Collects the external jobs that ended, and refreshes in-process those reclaimed from silent
    /// workers (or queued when no worker is left).
    fn poll_external_jobs(&mut self) {
        if self.external_jobs.is_empty() {
            return;
        }
        let ids: Vec<i64> = self
            .external_jobs
            .values()
            .map(|(job_id, _)| *job_id)
            .collect();
        let ends = match xact::run(Isolation::ReadCommitted, || {
            external::poll(&ids, self.workers_alive > 0)
        }) {
            Ok(ends) => ends,
            Err(e) => {
                warning!("pg_trickle coordinator: cannot look at the external workers' jobs: {e}");
                return;
            }
        };
        for end in ends {
            match end {
                external::JobEnd::Finished { pgt_id, refreshed } => {
                    self.external_jobs.remove(&pgt_id);
                    self.settle(pgt_id, refreshed);
                }
                external::JobEnd::Vanished { job_id } => {
                    let gone: Vec<i64> = self
                        .external_jobs
                        .iter()
                        .filter(|(_, (id, _))| *id == job_id)
                        .map(|(p, _)| *p)
                        .collect();
                    for pgt_id in gone {
                        self.external_jobs.remove(&pgt_id);
                        self.settle(pgt_id, false);
                    }
                }
                external::JobEnd::Reclaimed { pgt_id, worker_id } => {
                    let Some((_, name)) = self.external_jobs.remove(&pgt_id) else {
                        continue;
                    };
                    match worker_id {
                        Some(w) => log!("pg_trickle coordinator: the refresh of {name} was reclaimed from external worker {w}, silent for more than pg_trickle.worker_reclaim_timeout; refreshing it in-process"),
                        None => log!("pg_trickle coordinator: no external worker is alive to refresh {name}; refreshing it in-process"),
                    }
                    // Its owner is not known here (0): reclaimed refreshes share the pool as one.
                    let request = pool::Request {
                        pgt_id,
                        name,
                        owner: 0,
                    };
                    if pool::enqueue(self.db.to_u32(), &[request]) == 0 {
                        self.settle(pgt_id, false); // no room: due again at a later tick
                    }
                }
            }
        }
    }

    /// Finished refreshes: one that ran makes its sources' counters (from before it) the ones to
    /// compare with; one that did not (busy, failed, its worker died) must run again.
    fn collect(&mut self) {
        for (pgt_id, refreshed) in pool::collect_done(self.db.to_u32()) {
            self.settle(pgt_id, refreshed);
        }
    }

    /// A queued refresh ended (here or on an external worker).
    fn settle(&mut self, pgt_id: i64, refreshed: bool) {
        match (self.queued_signals.remove(&pgt_id), refreshed) {
            (Some(signals), true) => {
                self.seen.insert(pgt_id, signals);
            }
            _ => {
                self.seen.remove(&pgt_id);
            }
        }
    }

    /// Workers that died are removed; the jobs they were running are recorded as failed.
    fn reap(&mut self) {
        for (pgt_id, name) in pool::reap(self.db.to_u32()) {
            refresh_worker::record_lost(
                pgt_id,
                &name,
                "the refresh worker running it exited (the refresh was rolled back)",
            );
        }
        // Started workers leave this list once they joined the pool, exited, or took too long.
        self.starting.retain(|s| match s.handle.pid() {
            Ok(pid) => !pool::registered(pid) && s.since.elapsed() < START_GRACE,
            Err(BackgroundWorkerStatus::NotYetStarted) => s.since.elapsed() < START_GRACE,
            Err(_) => false,
        });
        let join_failures = pool::join_failures(self.db.to_u32());
        if join_failures > self.join_failures_seen {
            self.join_failures_seen = join_failures;
            self.no_starts_until = Some(Instant::now() + START_GRACE);
            if !self.warned_no_slot {
                warning!(
                    "pg_trickle coordinator: a refresh worker of database \"{}\" could not join the pool (all {} pool slots of the cluster are taken); retrying later",
                    self.db_name,
                    pool::MAX_WORKERS
                );
                self.warned_no_slot = true;
            }
        }
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
        if self.no_starts_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        for _ in live..target {
            match refresh_worker::start(self.db, &self.db_name) {
                Ok(handle) => {
                    pool::count_start(self.db.to_u32(), true);
                    self.starting.push(Starting {
                        handle,
                        since: Instant::now(),
                    });
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
        let Some((pgt_id, name)) = pool::take_job(self.db.to_u32(), self.pid) else {
            return false;
        };
        let refreshed = refresh_worker::run_job(pgt_id, &name);
        pool::finish_job(self.db.to_u32(), self.pid, pgt_id, refreshed);
        true
    }
}

/// A stream table's row as the tick reads it (`due_stream_tables`).
struct Listed {
    pgt_id: i64,
    relid: u32,
    active: bool,
    schedule_ms: i64,
    errors: i32,
    now_ms: i64,
    last_attempt_ms: Option<i64>,
    lag_ratio: f64,
    signalled: bool,
}

/// What a tick finds in the catalog.
#[derive(Default)]
struct Found {
    /// ACTIVE stream tables whose (backed-off) schedule has elapsed (dispatch orders them by their
    /// upstreams).
    due: Vec<Due>,
    /// ACTIVE stream tables.
    active: usize,
    /// Whether idle stream tables may be skipped: capture signals changes (a catalog before 0.2.0
    /// has capture functions that do not, until ALTER EXTENSION ... UPDATE rewrites them), and no
    /// prepared transaction exists (their changes are signalled at PREPARE, before they commit).
    may_skip: bool,
}

/// A source no listed stream table reads is forgotten by the signal map only if its latest signal is
/// this much older than the listing: a stream table committed just after the listing (not in it),
/// whose source signalled since, keeps that signal for the lag its monitoring reports.
const FORGET_MARGIN_US: i64 = 10_000_000;

/// None when the extension is not installed (any more). With `enabled` off, finds nothing due.
fn due_stream_tables(enabled: bool) -> PgtResult<Option<Found>> {
    if !extension_installed()? {
        return Ok(None);
    }
    if !enabled {
        return Ok(Some(Found::default()));
    }
    let may_skip = spi::one::<bool>(
        "SELECT pg_catalog.to_regprocedure('pgtrickle._note_change(oid)') IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_xacts WHERE database = pg_catalog.current_database())",
        &[],
    )? == Some(true);
    // FULL stream tables that skip refreshes while their sources are unchanged (catalog/unchanged.rs).
    let skip_unchanged = if crate::catalog::version::at_least_0_2_0()? {
        "st.skip_unchanged"
    } else {
        "false"
    };
    let pending = crate::catalog::reinit::pending_sql("st")?;
    // SAFETY: reading the clock.
    let listed_at = unsafe { pg_sys::GetCurrentTimestamp() };
    // Two scans of one table each, joined here: the tick must not depend on the catalog's statistics.
    // A join planned when pgt_stream_tables was analysed nearly empty (every stream table dropped,
    // then many created before autovacuum analysed it again) ran the grouped dependencies once per
    // stream table: 200 ms a tick for 1,000 stream tables, where this takes a few.
    let tables = spi::rows(
        // Float8 epochs (EXTRACT's numeric costs more), no names (name_waiting).
        &format!("SELECT st.pgt_id, st.pgt_relid::bigint AS relid, st.status = 'ACTIVE' AS active,
                st.schedule_ms, st.consecutive_errors,
                (pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) * 1000)::bigint AS now_ms,
                (pg_catalog.date_part('epoch', st.last_attempt_at) * 1000)::bigint AS last_attempt_ms,
                COALESCE(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - st.last_refresh_at) * 1000 / st.schedule_ms, 0) AS lag_ratio,
                (st.effective_mode = 'DIFFERENTIAL' OR {skip_unchanged}) AND NOT {pending} AS signalled
           FROM pgtrickle.pgt_stream_tables st"),
        &[],
        |r| {
            Ok(Listed {
                pgt_id: spi::col(r, "pgt_id")?,
                relid: spi::col::<i64>(r, "relid")? as u32,
                active: spi::col(r, "active")?,
                schedule_ms: spi::col(r, "schedule_ms")?,
                errors: spi::col(r, "consecutive_errors")?,
                now_ms: spi::col(r, "now_ms")?,
                last_attempt_ms: r.get_by_name::<i64, _>("last_attempt_ms")?,
                lag_ratio: spi::col(r, "lag_ratio")?,
                signalled: spi::col(r, "signalled")?,
            })
        },
    )?;
    let reads = spi::rows(
        "SELECT pgt_id, source_relid::bigint AS source, source_kind <> 'VIEW' AS captured
           FROM pgtrickle.pgt_dependencies",
        &[],
        |r| {
            Ok((
                spi::col::<i64>(r, "pgt_id")?,
                spi::col::<i64>(r, "source")? as u32,
                spi::col::<bool>(r, "captured")?,
            ))
        },
    )?;
    let captured: HashSet<u32> = reads
        .iter()
        .filter(|(_, _, captured)| *captured)
        .map(|(_, source, _)| *source)
        .collect();
    // SAFETY: MyDatabaseId is set once the coordinator is connected.
    let db = unsafe { pg_sys::MyDatabaseId.to_u32() };
    // Sources nothing reads any more (their stream tables dropped) leave the map.
    signal::forget_uncaptured(db, &captured, listed_at - FORGET_MARGIN_US);
    let stream_table_of: HashMap<u32, i64> = tables.iter().map(|t| (t.relid, t.pgt_id)).collect();
    // Per stream table: the stream tables it reads, and its captured sources (sorted: the signals
    // read for them are compared with those of earlier ticks).
    let mut read_by: HashMap<i64, (Vec<i64>, Vec<u32>)> = HashMap::new();
    for (pgt_id, source, captured) in reads {
        let (upstream, sources) = read_by.entry(pgt_id).or_default();
        if let Some(&up) = stream_table_of.get(&source) {
            upstream.push(up);
        }
        if captured {
            sources.push(source);
        }
    }
    let mut active: Vec<Listed> = tables.into_iter().filter(|t| t.active).collect();
    active.sort_unstable_by_key(|t| t.pgt_id);
    let due = active
        .iter()
        .filter(|t| policy::is_due(t.now_ms, t.last_attempt_ms, t.schedule_ms, t.errors))
        .map(|t| {
            let (mut upstream, mut sources) = read_by.remove(&t.pgt_id).unwrap_or_default();
            upstream.sort_unstable();
            sources.sort_unstable();
            Due {
                pgt_id: t.pgt_id,
                upstream,
                sources,
                skippable: t.signalled && t.errors == 0,
                // Failing stream tables back off on purpose: their staleness is not lag more
                // workers would cure.
                lag_ratio: if t.errors > 0 { 0.0 } else { t.lag_ratio },
            }
        })
        .collect();
    Ok(Some(Found {
        due,
        active: active.len(),
        may_skip,
    }))
}
