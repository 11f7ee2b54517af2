//! The refresh worker pool's shared state: per database, its coordinator, the refresh jobs of the
//! current round and the refresh workers serving them, the target size and the recent sizing
//! decisions. Fixed-size (heapless) structures under one LWLock; latches are PGPROC latches, which
//! live in shared memory, so any process may set them.
//!
//! A job is a stream table to refresh. The coordinator queues those whose upstreams are done; a
//! worker takes a queued job (Running, with its pid), refreshes in its own transaction, and marks it
//! Done, saying whether it refreshed; the coordinator collects Done jobs. A worker that dies
//! meanwhile leaves its job Running with a pid that is gone: the coordinator notices (`reap`), and
//! the refresh's transaction was rolled back with the process.

use super::adaptive::{Decision, Measurement};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

/// Refresh workers in the whole cluster.
pub const MAX_WORKERS: usize = super::MAX_POOL_WORKERS;
/// Jobs queued or running at once, cluster-wide; the rest wait for a later tick.
const MAX_JOBS: usize = 4096;
/// Databases with a coordinator.
const MAX_POOLS: usize = 64;
/// Sizing decisions kept per database.
pub const DECISIONS_KEPT: usize = 32;
/// Bytes of a stream table's name kept for pg_stat_activity.
const NAME_BYTES: usize = 96;
/// Owners whose last turn each database's pool remembers (one it forgot counts as never served).
const OWNERS_REMEMBERED: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq)]
enum JobState {
    Queued,
    Running,
    Done,
}

#[derive(Clone)]
struct Job {
    db: u32,
    pgt_id: i64,
    name: heapless::String<NAME_BYTES>,
    /// The stream table's owner: workers share themselves among owners (`take_job`).
    owner: u32,
    state: JobState,
    worker: i32,
    /// Done: whether the refresh ran (not busy, failed or lost).
    refreshed: bool,
}

#[derive(Clone, Copy)]
struct WorkerSlot {
    db: u32,
    pid: i32,
    latch: usize,
    /// The coordinator that was serving `db` when this worker joined; it serves no other.
    coordinator: i32,
    /// The stream table being refreshed, 0 when idle.
    busy: i64,
    retiring: bool,
}

/// A sizing decision and what it was based on, for operators.
#[derive(Clone, Copy, Default)]
pub struct DecisionRecord {
    pub at: pg_sys::TimestampTz,
    pub target: u32,
    pub changed: bool,
    pub reason: u8,
    pub agreeing: u8,
    /// CPU utilisation in per mille, -1 when not measured yet.
    pub cpu_permille: i32,
    pub queue_depth: u32,
    pub busy: u32,
    pub workers: u32,
    pub lag_ratio: f64,
}

#[derive(Clone, Default)]
struct DbPool {
    db: u32,
    coordinator: i32,
    coordinator_latch: usize,
    target: u32,
    max_workers: u32,
    decisions: heapless::Deque<DecisionRecord, DECISIONS_KEPT>,
    refreshes: u64,
    workers_started: u64,
    start_failures: u64,
    workers_lost: u64,
    /// Workers that started but found every pool slot of the cluster taken.
    join_failures: u64,
    /// How long the coordinator's last tick took (catalog query, skip decisions, sizing), in µs.
    last_tick_us: u64,
    /// Jobs taken so far: the sequence `served` counts in.
    taken: u64,
    /// When a worker last took a job of each owner (`taken` then), for `policy::next_in_queue`; the
    /// least recently served owner gives way when full.
    served: heapless::Vec<(u32, u64), OWNERS_REMEMBERED>,
}

#[derive(Default)]
pub struct PoolShared {
    workers: heapless::Vec<WorkerSlot, MAX_WORKERS>,
    jobs: heapless::Vec<Job, MAX_JOBS>,
    pools: heapless::Vec<DbPool, MAX_POOLS>,
}

// SAFETY: plain inline data (heapless keeps its elements in place); the latch addresses point into
// PostgreSQL's shared memory, which is mapped at the same address in every backend.
unsafe impl PGRXSharedMemory for PoolShared {}

// SAFETY: the name is unique to pg_trickle.
static POOL: PgLwLock<PoolShared> = unsafe { PgLwLock::new(c"pg_trickle_pool") };

pub fn init() {
    pg_shmem_init!(POOL);
}

fn my_latch() -> usize {
    // SAFETY: MyLatch is this process's PGPROC latch once it is connected.
    unsafe { pg_sys::MyLatch as usize }
}

fn set_latch(latch: usize) {
    if latch != 0 {
        // SAFETY: a PGPROC latch in shared memory; setting a latch whose owner has exited is harmless.
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
}

/// Whether `pid` is a live backend connected to `db`.
pub fn alive(pid: i32, db: u32) -> bool {
    // SAFETY: BackendPidGetProc reads the proc array under its own lock; PGPROCs are never freed.
    unsafe {
        let proc = pg_sys::BackendPidGetProc(pid);
        !proc.is_null() && (*proc).databaseId.to_u32() == db
    }
}

// ---- the coordinator's side ----

/// This process becomes `db`'s coordinator. Jobs an earlier coordinator left are forgotten (their
/// stream tables are still due), and its workers will leave.
pub fn attach_coordinator(db: u32, pid: i32) {
    let mut shared = POOL.exclusive();
    shared.jobs.retain(|j| j.db != db);
    let latch = my_latch();
    if let Some(pool) = shared.pools.iter_mut().find(|p| p.db == db) {
        pool.coordinator = pid;
        pool.coordinator_latch = latch;
    } else {
        let _ = shared.pools.push(DbPool {
            db,
            coordinator: pid,
            coordinator_latch: latch,
            ..Default::default()
        });
    }
    wake_all(&shared, db);
}

/// The coordinator leaves: its workers finish what they run and exit.
pub fn detach_coordinator(db: u32) {
    let mut shared = POOL.exclusive();
    shared
        .jobs
        .retain(|j| j.db != db || j.state == JobState::Running);
    if let Some(pool) = shared.pools.iter_mut().find(|p| p.db == db) {
        pool.coordinator = 0;
        pool.coordinator_latch = 0;
    }
    wake_all(&shared, db);
}

fn wake_all(shared: &PoolShared, db: u32) {
    for w in shared.workers.iter().filter(|w| w.db == db) {
        set_latch(w.latch);
    }
}

/// Whether a live coordinator serves `db`.
pub fn coordinator_serves(db: u32) -> bool {
    POOL.share()
        .pools
        .iter()
        .any(|p| p.db == db && p.coordinator != 0 && alive(p.coordinator, db))
}

/// Wakes `db`'s coordinator, if one serves it.
pub fn wake_coordinator(db: u32) {
    if let Some(pool) = POOL.share().pools.iter().find(|p| p.db == db) {
        set_latch(pool.coordinator_latch);
    }
}

/// A stream table to refresh: its id, its name (for pg_stat_activity and log lines) and its owner's
/// OID (0 when not known).
pub struct Request {
    pub pgt_id: i64,
    pub name: String,
    pub owner: u32,
}

/// Queues jobs and wakes idle workers. Returns how many fit.
pub fn enqueue(db: u32, jobs: &[Request]) -> usize {
    let mut shared = POOL.exclusive();
    let mut queued = 0;
    for request in jobs {
        let mut short = heapless::String::new();
        for ch in request.name.chars() {
            if short.push(ch).is_err() {
                break;
            }
        }
        let job = Job {
            db,
            pgt_id: request.pgt_id,
            name: short,
            owner: request.owner,
            state: JobState::Queued,
            worker: 0,
            refreshed: false,
        };
        if shared.jobs.push(job).is_err() {
            break;
        }
        queued += 1;
    }
    for w in shared.workers.iter().filter(|w| w.db == db && w.busy == 0) {
        set_latch(w.latch);
    }
    queued
}

/// Queued and running jobs of `db`.
pub fn outstanding(db: u32) -> (u32, u32) {
    let shared = POOL.share();
    let count = |s: JobState| {
        shared
            .jobs
            .iter()
            .filter(|j| j.db == db && j.state == s)
            .count() as u32
    };
    (count(JobState::Queued), count(JobState::Running))
}

/// The stream tables of `db` queued or running.
pub fn outstanding_ids(db: u32) -> Vec<i64> {
    POOL.share()
        .jobs
        .iter()
        .filter(|j| j.db == db && j.state != JobState::Done)
        .map(|j| j.pgt_id)
        .collect()
}

/// Removes the finished jobs of `db`: (pgt_id, whether it refreshed).
pub fn collect_done(db: u32) -> Vec<(i64, bool)> {
    let mut shared = POOL.exclusive();
    let done = shared
        .jobs
        .iter()
        .filter(|j| j.db == db && j.state == JobState::Done)
        .map(|j| (j.pgt_id, j.refreshed))
        .collect();
    shared
        .jobs
        .retain(|j| j.db != db || j.state != JobState::Done);
    done
}

/// Workers of `db` that died (their pid is gone) are removed; each job one of them was running is
/// returned (id and name), marked done, for the coordinator to record as failed.
pub fn reap(db: u32) -> Vec<(i64, String)> {
    let mut shared = POOL.exclusive();
    let dead: Vec<i32> = shared
        .workers
        .iter()
        .filter(|w| w.db == db && !alive(w.pid, db))
        .map(|w| w.pid)
        .collect();
    let mut lost = Vec::new();
    for job in shared
        .jobs
        .iter_mut()
        .filter(|j| j.db == db && j.state == JobState::Running)
    {
        if dead.contains(&job.worker) || (!alive(job.worker, db) && job.worker != 0) {
            job.state = JobState::Done;
            lost.push((job.pgt_id, job.name.to_string()));
        }
    }
    shared.workers.retain(|w| !dead.contains(&w.pid));
    if let Some(pool) = shared.pools.iter_mut().find(|p| p.db == db) {
        pool.workers_lost += dead.len() as u64;
    }
    lost
}

/// Registered workers of `db` serving coordinator `coordinator`: (all, busy).
pub fn workers(db: u32, coordinator: i32) -> (u32, u32) {
    let shared = POOL.share();
    let mine = || {
        shared
            .workers
            .iter()
            .filter(|w| w.db == db && w.coordinator == coordinator && !w.retiring)
    };
    (
        mine().count() as u32,
        mine().filter(|w| w.busy != 0).count() as u32,
    )
}

/// Whether `pid` has registered as a worker.
pub fn registered(pid: i32) -> bool {
    POOL.share().workers.iter().any(|w| w.pid == pid)
}

/// Asks up to `n` idle workers of `db` to exit.
pub fn retire(db: u32, n: u32) {
    let mut shared = POOL.exclusive();
    let mut left = n;
    for w in shared
        .workers
        .iter_mut()
        .filter(|w| w.db == db && w.busy == 0 && !w.retiring)
    {
        if left == 0 {
            break;
        }
        w.retiring = true;
        set_latch(w.latch);
        left -= 1;
    }
}

/// Records a sizing decision and the effective maximum.
pub fn record_decision(db: u32, m: &Measurement, d: &Decision, workers: u32, max_workers: u32) {
    // SAFETY: reading the clock.
    let at = unsafe { pg_sys::GetCurrentTimestamp() };
    let record = DecisionRecord {
        at,
        target: d.target,
        changed: d.changed,
        reason: d.reason.code(),
        agreeing: d.agreeing,
        cpu_permille: m.cpu.map(|c| (c * 1000.0).round() as i32).unwrap_or(-1),
        queue_depth: m.queue_depth,
        busy: m.busy,
        workers,
        lag_ratio: m.lag_ratio,
    };
    let mut shared = POOL.exclusive();
    if let Some(pool) = shared.pools.iter_mut().find(|p| p.db == db) {
        pool.target = d.target;
        pool.max_workers = max_workers;
        if pool.decisions.is_full() {
            pool.decisions.pop_front();
        }
        let _ = pool.decisions.push_back(record);
    }
}

/// Records how long the coordinator's last tick took.
pub fn record_tick(db: u32, took: std::time::Duration) {
    let mut shared = POOL.exclusive();
    if let Some(pool) = shared.pools.iter_mut().find(|p| p.db == db) {
        pool.last_tick_us = took.as_micros().min(u128::from(u64::MAX)) as u64;
    }
}

/// Counts a worker start, or a failed one (no background worker slot free).
pub fn count_start(db: u32, started: bool) {
    let mut shared = POOL.exclusive();
    if let Some(pool) = shared.pools.iter_mut().find(|p| p.db == db) {
        if started {
            pool.workers_started += 1;
        } else {
            pool.start_failures += 1;
        }
    }
}

// ---- the workers' side (and the coordinator when it refreshes in-process) ----

/// Joins `db`'s pool. None: no coordinator serves it, or every slot is taken.
pub fn register_worker(db: u32, pid: i32) -> Option<i32> {
    let mut shared = POOL.exclusive();
    let pool = shared
        .pools
        .iter()
        .position(|p| p.db == db && p.coordinator != 0)?;
    let coordinator = shared.pools[pool].coordinator;
    let slot = WorkerSlot {
        db,
        pid,
        latch: my_latch(),
        coordinator,
        busy: 0,
        retiring: false,
    };
    if shared.workers.push(slot).is_err() {
        shared.pools[pool].join_failures += 1;
        set_latch(shared.pools[pool].coordinator_latch);
        return None;
    }
    Some(coordinator)
}

/// How many workers of `db` found no pool slot so far.
pub fn join_failures(db: u32) -> u64 {
    POOL.share()
        .pools
        .iter()
        .find(|p| p.db == db)
        .map(|p| p.join_failures)
        .unwrap_or(0)
}

pub fn unregister_worker(pid: i32) {
    POOL.exclusive().workers.retain(|w| w.pid != pid);
}

/// Whether the worker should exit: asked to, or its coordinator is gone or replaced.
pub fn should_exit(db: u32, pid: i32, coordinator: i32) -> bool {
    let shared = POOL.share();
    let retiring = shared
        .workers
        .iter()
        .find(|w| w.pid == pid)
        .is_none_or(|w| w.retiring);
    let serving = shared
        .pools
        .iter()
        .any(|p| p.db == db && p.coordinator == coordinator);
    retiring || !serving
}

/// Takes the next queued job of `db` for `pid`: (pgt_id, name); which one, `policy::next_in_queue`
/// decides (shared among owners).
pub fn take_job(db: u32, pid: i32) -> Option<(i64, String)> {
    let mut shared = POOL.exclusive();
    let shared = &mut *shared;
    let pool = shared.pools.iter_mut().find(|p| p.db == db);
    let index = next_job(&shared.jobs, db, pool.as_deref())?;
    let job = &mut shared.jobs[index];
    job.state = JobState::Running;
    if let Some(pool) = pool {
        note_served(pool, job.owner);
    }
    job.worker = pid;
    let taken = (job.pgt_id, job.name.to_string());
    if let Some(w) = shared.workers.iter_mut().find(|w| w.pid == pid) {
        w.busy = taken.0;
    }
    Some(taken)
}

fn next_job(jobs: &[Job], db: u32, pool: Option<&DbPool>) -> Option<usize> {
    let ours = |state: JobState| {
        jobs.iter()
            .enumerate()
            .filter(move |(_, j)| j.db == db && j.state == state)
    };
    let running: Vec<u32> = ours(JobState::Running).map(|(_, j)| j.owner).collect();
    let (at, owners): (Vec<usize>, Vec<u32>) =
        ours(JobState::Queued).map(|(i, j)| (i, j.owner)).unzip();
    let last_served = |owner: u32| {
        pool.and_then(|p| p.served.iter().find(|(o, _)| *o == owner))
            .map_or(0, |(_, at)| *at)
    };
    super::policy::next_in_queue(&owners, &running, last_served).map(|k| at[k])
}

fn note_served(pool: &mut DbPool, owner: u32) {
    pool.taken += 1;
    let now = pool.taken;
    if let Some(entry) = pool.served.iter_mut().find(|(o, _)| *o == owner) {
        entry.1 = now;
        return;
    }
    if pool.served.is_full() {
        // Forget the least recently served owner.
        if let Some(oldest) = (0..pool.served.len()).min_by_key(|&i| pool.served[i].1) {
            pool.served.swap_remove(oldest);
        }
    }
    let _ = pool.served.push((owner, now));
}

/// The job is done (`refreshed`, or not: busy, or failed and recorded): wakes the coordinator.
pub fn finish_job(db: u32, pid: i32, pgt_id: i64, refreshed: bool) {
    let mut shared = POOL.exclusive();
    if let Some(job) = shared.jobs.iter_mut().find(|j| {
        j.db == db && j.pgt_id == pgt_id && j.worker == pid && j.state == JobState::Running
    }) {
        job.state = JobState::Done;
        job.refreshed = refreshed;
    }
    if let Some(w) = shared.workers.iter_mut().find(|w| w.pid == pid) {
        w.busy = 0;
    }
    if let Some(pool) = shared.pools.iter_mut().find(|p| p.db == db) {
        pool.refreshes += 1;
        set_latch(pool.coordinator_latch);
    }
}

/// The pids of `db`'s refresh workers (database-level DDL stops them with the coordinator).
pub fn worker_pids(db: u32) -> Vec<i32> {
    POOL.share()
        .workers
        .iter()
        .filter(|w| w.db == db)
        .map(|w| w.pid)
        .collect()
}

// ---- for operators ----

/// What `pgtrickle.pool_status` shows for one database.
pub struct Status {
    pub coordinator: i32,
    pub target: u32,
    pub max_workers: u32,
    pub workers: u32,
    pub busy: u32,
    pub queued: u32,
    pub running_jobs: u32,
    pub refreshes: u64,
    pub workers_started: u64,
    pub start_failures: u64,
    pub workers_lost: u64,
    pub last_tick_us: u64,
    pub last: Option<DecisionRecord>,
}

pub fn status(db: u32) -> Option<Status> {
    let shared = POOL.share();
    let pool = shared.pools.iter().find(|p| p.db == db)?;
    let mine = || {
        shared
            .workers
            .iter()
            .filter(|w| w.db == db && w.coordinator == pool.coordinator)
    };
    let count = |s: JobState| {
        shared
            .jobs
            .iter()
            .filter(|j| j.db == db && j.state == s)
            .count() as u32
    };
    Some(Status {
        coordinator: pool.coordinator,
        target: pool.target,
        max_workers: pool.max_workers,
        workers: mine().count() as u32,
        busy: mine().filter(|w| w.busy != 0).count() as u32,
        queued: count(JobState::Queued),
        running_jobs: count(JobState::Running),
        refreshes: pool.refreshes,
        workers_started: pool.workers_started,
        start_failures: pool.start_failures,
        workers_lost: pool.workers_lost,
        last_tick_us: pool.last_tick_us,
        last: pool.decisions.back().copied(),
    })
}

pub fn decisions(db: u32) -> Vec<DecisionRecord> {
    let shared = POOL.share();
    shared
        .pools
        .iter()
        .find(|p| p.db == db)
        .map(|p| p.decisions.iter().copied().collect())
        .unwrap_or_default()
}
