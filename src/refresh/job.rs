//! A scheduled refresh as a job of the coordinator's pool: claimed for the whole job (not just its
//! refresh transaction) and marked in flight before it starts, so that a crash, an immediate
//! shutdown or a killed process leaves a trace the next coordinator records as a failure — and a
//! refresh still running elsewhere is never mistaken for an interrupted one.
//!
//! The claim is a session-level lock on the stream table's key (`locks`), taken by the job's process
//! in the transaction that marks it, and released with the mark when the job ends; it dies with
//! the process. The refresh's own transaction-level claim (same key) is granted to the same process.

use super::{claim, claim_lock, Initiator};
use crate::error::PgtResult;
use crate::locks::Scope;
use crate::spi;

/// Claims the stream table for this job and marks the refresh in flight (commit before refreshing).
/// False: another process refreshes it now.
pub fn begin(pgt_id: i64) -> PgtResult<bool> {
    if !claim_lock(pgt_id).try_acquire(Scope::Session) {
        return Ok(false);
    }
    mark(pgt_id, true)?;
    Ok(true)
}

/// Ends the job: clears the mark (a successful refresh or a recorded failure already did) and
/// releases the claim. In the refresh's transaction, or the one recording its failure.
pub fn end(pgt_id: i64, clear_mark: bool) -> PgtResult<()> {
    if clear_mark {
        mark(pgt_id, false)?;
    }
    claim_lock(pgt_id).release();
    Ok(())
}

fn mark(pgt_id: i64, in_flight: bool) -> PgtResult<()> {
    if !crate::catalog::version::at_least_0_2_0()? {
        return Ok(());
    }
    spi::exec(
        "UPDATE pgtrickle.pgt_stream_tables
            SET refresh_started_at = CASE WHEN $2 THEN pg_catalog.clock_timestamp() END
          WHERE pgt_id = $1",
        &[pgt_id.into(), in_flight.into()],
    )
}

/// A refresh that was in flight when its process or the server stopped.
pub struct Interrupted {
    pub pgt_id: i64,
    pub started: String,
    /// From its start until now.
    pub elapsed: std::time::Duration,
}

/// The mark of `pgt_id`'s refresh in flight, if it is still set: its refresh did not commit (a
/// committed refresh clears the mark in its own transaction). A catalog before 0.2.0 keeps no mark:
/// then every refresh counts as not committed, with no start known.
pub fn still_marked(pgt_id: i64) -> PgtResult<Option<Interrupted>> {
    if !crate::catalog::version::at_least_0_2_0()? {
        return Ok(Some(Interrupted {
            pgt_id,
            started: "unknown".into(),
            elapsed: std::time::Duration::ZERO,
        }));
    }
    Ok(marks(Some(pgt_id))?.into_iter().next())
}

/// The marked refreshes nobody runs now (their claim is free): taken until the transaction ends.
pub fn interrupted() -> PgtResult<Vec<Interrupted>> {
    if !crate::catalog::version::at_least_0_2_0()? {
        return Ok(Vec::new());
    }
    let marked = marks(None)?;
    let mut out = Vec::new();
    for m in marked {
        if claim(m.pgt_id, Initiator::Scheduler)? {
            out.push(m);
        }
    }
    Ok(out)
}

/// The marks in flight (of `pgt_id` only, if given), with how long ago each was set.
fn marks(pgt_id: Option<i64>) -> PgtResult<Vec<Interrupted>> {
    spi::rows(
        "SELECT pgt_id, refresh_started_at::text AS started,
                pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - refresh_started_at)::float8 AS elapsed_s
           FROM pgtrickle.pgt_stream_tables
          WHERE refresh_started_at IS NOT NULL AND ($1::bigint IS NULL OR pgt_id = $1)",
        &[pgt_id.into()],
        |r| {
            Ok(Interrupted {
                pgt_id: spi::col(r, "pgt_id")?,
                started: spi::col(r, "started")?,
                elapsed: std::time::Duration::from_secs_f64(spi::col::<f64>(r, "elapsed_s")?.max(0.0)),
            })
        },
    )
}
