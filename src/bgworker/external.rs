//! The coordinator's side of external workers (`pg_trickle_worker`, worker-bin/). Workers register
//! and heartbeat themselves (`pgtrickle.worker_register` / `worker_heartbeat` / `worker_stop`); the
//! coordinator marks those silent for longer than `pg_trickle.worker_reclaim_timeout` as gone.
//!
//! While at least one worker is alive, due refreshes become rows of `pgtrickle.pgt_worker_jobs`
//! (`queue`) and idle workers are woken with `NOTIFY pgtrickle_jobs` (a background worker cannot
//! LISTEN; a worker can). Each tick with jobs outstanding, `poll` collects the finished ones and
//! reclaims the rest that nobody will finish: running jobs whose heartbeat is older than the reclaim
//! timeout — the worker's session is terminated first if it still holds the stream table's claim —
//! and queued ones once no worker is alive. A reclaim raises the job's attempt, which fences the
//! worker out (api/worker.rs); the coordinator then refreshes the stream table in-process.

use crate::error::PgtResult;
use crate::gucs;
use crate::refresh::LOCK_CLASS;
use crate::spi;
use std::time::Duration;

/// How often the coordinator looks for silent workers: a silent worker is marked gone at most this
/// long after its timeout (and costs an idle coordinator one short transaction this often).
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// The channel that wakes idle workers when jobs are queued.
pub const NOTIFY_CHANNEL: &str = "pgtrickle_jobs";

/// Finished jobs and reclaimed ones are kept this long for operators to look at.
const KEEP_RECLAIMED: &str = "1 hour";

fn timeout_s() -> f64 {
    gucs::worker_reclaim_timeout().as_secs_f64()
}

/// What a sweep of the registry found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    /// Workers just marked gone.
    pub gone: i64,
    /// Workers active and heartbeating within the reclaim timeout.
    pub alive: i64,
}

/// Marks active workers whose last heartbeat is older than the reclaim timeout as gone, and counts
/// the live ones. (A 0.1.0 catalog, served until ALTER EXTENSION ... UPDATE, has no registry.)
pub fn sweep() -> PgtResult<Sweep> {
    if !crate::catalog::version::at_least_0_2_0()? {
        return Ok(Sweep::default());
    }
    let found = spi::rows(
        "WITH gone AS (
           UPDATE pgtrickle.pgt_worker_registry SET status = 'gone'
            WHERE status = 'active' AND last_heartbeat < pg_catalog.now() - pg_catalog.make_interval(secs => $1)
           RETURNING 1)
         SELECT (SELECT pg_catalog.count(*) FROM gone) AS gone,
                (SELECT pg_catalog.count(*) FROM pgtrickle.pgt_worker_registry
                  WHERE status = 'active' AND last_heartbeat >= pg_catalog.now() - pg_catalog.make_interval(secs => $1)) AS alive",
        &[timeout_s().into()],
        |r| Ok(Sweep { gone: spi::col(r, "gone")?, alive: spi::col(r, "alive")? }),
    )?;
    Ok(found.into_iter().next().unwrap_or_default())
}

/// A job in pgt_worker_jobs this coordinator waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub pgt_id: i64,
    pub job_id: i64,
}

/// The outstanding jobs a previous coordinator queued (adopted at start); finished ones it never
/// collected are deleted.
pub fn adopt() -> PgtResult<Vec<Job>> {
    if !crate::catalog::version::at_least_0_2_0()? {
        return Ok(Vec::new());
    }
    spi::exec(
        "DELETE FROM pgtrickle.pgt_worker_jobs WHERE state IN ('done', 'failed')",
        &[],
    )?;
    spi::rows(
        "SELECT pgt_id, job_id FROM pgtrickle.pgt_worker_jobs WHERE state IN ('queued', 'running') ORDER BY job_id",
        &[],
        |r| Ok(Job { pgt_id: spi::col(r, "pgt_id")?, job_id: spi::col(r, "job_id")? }),
    )
}

/// Queues a job per stream table (none for one that has an outstanding job already) and wakes the
/// workers at commit. The jobs queued.
pub fn queue(pgt_ids: &[i64]) -> PgtResult<Vec<Job>> {
    let queued = spi::rows(
        "INSERT INTO pgtrickle.pgt_worker_jobs (pgt_id)
         SELECT id FROM pg_catalog.unnest($1::bigint[]) AS id
          WHERE EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables st WHERE st.pgt_id = id)
         ON CONFLICT (pgt_id) WHERE state IN ('queued', 'running') DO NOTHING
         RETURNING pgt_id, job_id",
        &[pgt_ids.to_vec().into()],
        |r| {
            Ok(Job {
                pgt_id: spi::col(r, "pgt_id")?,
                job_id: spi::col(r, "job_id")?,
            })
        },
    )?;
    if !queued.is_empty() {
        spi::exec(
            "SELECT pg_catalog.pg_notify($1, '')",
            &[NOTIFY_CHANNEL.into()],
        )?;
    }
    Ok(queued)
}

/// What became of a job since it was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    /// A worker finished it: whether it refreshed (not busy, gone, broken or failed).
    Finished { pgt_id: i64, refreshed: bool },
    /// Nobody will finish it: refresh it in-process.
    Reclaimed {
        pgt_id: i64,
        worker_id: Option<String>,
    },
    /// Its row is gone (its stream table was dropped).
    Vanished { job_id: i64 },
}

/// The ends of these jobs, if any: finished ones are collected (and deleted), stale running ones
/// reclaimed (their worker's session terminated if it still holds the claim), and queued ones too
/// while `workers_alive` is false.
pub fn poll(job_ids: &[i64], workers_alive: bool) -> PgtResult<Vec<JobEnd>> {
    let ids = job_ids.to_vec();
    let mut ends = spi::rows(
        "SELECT id FROM pg_catalog.unnest($1::bigint[]) AS id
          WHERE NOT EXISTS (SELECT 1 FROM pgtrickle.pgt_worker_jobs j WHERE j.job_id = id)",
        &[ids.clone().into()],
        |r| {
            Ok(JobEnd::Vanished {
                job_id: spi::col(r, "id")?,
            })
        },
    )?;
    ends.extend(spi::rows(
        "DELETE FROM pgtrickle.pgt_worker_jobs WHERE job_id = ANY ($1) AND state IN ('done', 'failed')
         RETURNING pgt_id, outcome IS NOT DISTINCT FROM 'refreshed' AS refreshed",
        &[ids.clone().into()],
        |r| Ok(JobEnd::Finished { pgt_id: spi::col(r, "pgt_id")?, refreshed: spi::col(r, "refreshed")? }),
    )?);
    // A stale worker's session may sit inside its refresh transaction (frozen, partitioned away):
    // end it, so its claim and row locks go and its transaction can never commit.
    spi::exec(
        "SELECT pg_catalog.pg_terminate_backend(l.pid, 1000)
           FROM pgtrickle.pgt_worker_jobs j
           JOIN pg_catalog.pg_locks l
             ON l.locktype = 'advisory' AND l.granted AND l.pid = j.backend_pid
            AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
            AND l.classid = $3::pg_catalog.oid AND l.objid = j.pgt_id::integer::pg_catalog.oid AND l.objsubid = $4
          WHERE j.job_id = ANY ($1) AND j.state = 'running'
            AND j.heartbeat_at < pg_catalog.now() - pg_catalog.make_interval(secs => $2)
            AND l.pid <> pg_catalog.pg_backend_pid()",
        &[ids.clone().into(), timeout_s().into(), LOCK_CLASS.into(), i32::from(crate::locks::KEY_SPACE).into()],
    )?;
    let reclaimed = spi::rows(
        "UPDATE pgtrickle.pgt_worker_jobs j
            SET state = 'reclaimed', attempt = j.attempt + 1, finished_at = pg_catalog.clock_timestamp()
          WHERE j.job_id IN (
                SELECT q.job_id FROM pgtrickle.pgt_worker_jobs q
                 WHERE q.job_id = ANY ($1)
                   AND ((q.state = 'running' AND q.heartbeat_at < pg_catalog.now() - pg_catalog.make_interval(secs => $2))
                        OR (q.state = 'queued' AND NOT $3))
                   FOR UPDATE SKIP LOCKED)
         RETURNING j.pgt_id, j.worker_id::text AS worker_id",
        &[ids.into(), timeout_s().into(), workers_alive.into()],
        |r| Ok(JobEnd::Reclaimed { pgt_id: spi::col(r, "pgt_id")?, worker_id: r.get_by_name::<String, _>("worker_id")? }),
    )?;
    ends.extend(reclaimed);
    Ok(ends)
}

/// Deletes reclaimed jobs older than an hour (every job that ended otherwise is deleted when its
/// coordinator collects it).
pub fn prune() -> PgtResult<()> {
    if !crate::catalog::version::at_least_0_2_0()? {
        return Ok(());
    }
    spi::exec(
        &format!("DELETE FROM pgtrickle.pgt_worker_jobs WHERE state = 'reclaimed' AND finished_at < pg_catalog.now() - interval '{KEEP_RECLAIMED}'"),
        &[],
    )
}
