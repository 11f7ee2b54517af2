//! The coordinator's side of external workers (`pg_trickle_worker`, worker-bin/): workers register
//! and heartbeat themselves (`pgtrickle.worker_register` / `worker_heartbeat` / `worker_stop`); the
//! coordinator marks those silent for longer than `pg_trickle.worker_reclaim_timeout` as gone.

use crate::error::PgtResult;
use crate::gucs;
use crate::spi;
use std::time::Duration;

/// How often the coordinator looks for silent workers: a silent worker is marked gone at most this
/// long after its timeout (and costs an idle coordinator one short transaction this often).
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Marks active workers whose last heartbeat is older than the reclaim timeout as gone; returns how
/// many. (A 0.1.0 catalog, served until ALTER EXTENSION ... UPDATE, has no registry.)
pub fn mark_silent_workers_gone() -> PgtResult<i64> {
    if !crate::catalog::version::at_least_0_2_0()? {
        return Ok(0);
    }
    let gone = spi::one::<i64>(
        "WITH gone AS (
           UPDATE pgtrickle.pgt_worker_registry SET status = 'gone'
            WHERE status = 'active' AND last_heartbeat < pg_catalog.now() - pg_catalog.make_interval(secs => $1)
           RETURNING 1)
         SELECT pg_catalog.count(*) FROM gone",
        &[(gucs::worker_reclaim_timeout().as_secs_f64()).into()],
    )?;
    Ok(gone.unwrap_or(0))
}
