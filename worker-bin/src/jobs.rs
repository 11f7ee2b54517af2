//! Refresh jobs on the working connection: claim the oldest queued job (`pgtrickle.worker_claim`),
//! refresh it in one transaction, commit. When the server hands out a local plan
//! (`pgtrickle.worker_offload`), this worker reduces the batch itself (offload.rs) and the server
//! applies the reduced delta (`pgtrickle.worker_offload_apply`); otherwise, or when the reduction
//! cannot be exact, `pgtrickle.worker_refresh` runs the whole refresh on the server. Either way the
//! server runs it as the stream table's owner and fences it on the job's attempt; after the commit,
//! `pgtrickle.worker_release` cleans up the applied change rows. A refresh that
//! fails is rolled back and recorded (`pgtrickle.worker_fail`); one whose job was reclaimed
//! meanwhile is refused by the server and rolled back, and the coordinator has refreshed it
//! in-process.

use crate::log::Logger;
use crate::offload::{self, Failed, Reduced};
use crate::serve::Failure;
use std::time::Instant;
use tokio_postgres::{Client, Row};

/// A job this worker claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub job_id: i64,
    pub attempt: i32,
    pub stream_table: String,
    pub pgt_id: i64,
}

/// The oldest queued job, now this worker's; None when the queue is empty.
pub async fn claim(
    client: &Client,
    worker_id: &str,
    target: &str,
) -> Result<Option<Claimed>, Failure> {
    let mut tries = 0;
    let row = loop {
        match client
            .query_opt(
                "SELECT job_id, attempt, stream_table, pgt_id FROM pgtrickle.worker_claim($1::text::uuid)",
                &[&worker_id],
            )
            .await
        {
            Ok(row) => break row,
            // The claim met the coordinator updating the same job rows: try again, and after a
            // few tries leave the job for the next poll, rather than end the session.
            Err(e) if crate::serve::transient(&e) => {
                tries += 1;
                if tries == 3 {
                    return Ok(None);
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
            }
            Err(e) => return Err(crate::serve::classify(&e, target)),
        }
    };
    Ok(row.map(|r| Claimed {
        job_id: r.get(0),
        attempt: r.get(1),
        stream_table: r.get::<_, Option<String>>(2).unwrap_or_default(),
        pgt_id: r.get(3),
    }))
}

/// Whether an error means the connection (or the server) is gone, rather than the statement failed.
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        // admin shutdown, crash shutdown, cannot connect now; connection exceptions
        Some(db) => db.code().code().starts_with("57P") || db.code().code().starts_with("08"),
        None => true,
    }
}

/// A job's transaction: READ COMMITTED whatever default_transaction_isolation says (the closing fence
/// re-checks the job row its own heartbeats keep touching; at REPEATABLE READ that would be a
/// serialization error), each statement held to `pg_trickle.refresh_timeout` as the server holds its
/// own scheduled refreshes — as `statement_timeout` for this transaction only, read at each job, and
/// only where it is stricter than the session's own. The claim, heartbeats and the recording of a
/// failure are not held to it.
const BEGIN_JOB: &str = "BEGIN ISOLATION LEVEL READ COMMITTED;
    SELECT pg_catalog.set_config('statement_timeout', l.limit_text, true)
      FROM (SELECT pg_catalog.current_setting('pg_trickle.refresh_timeout', true) AS limit_text) AS l
     WHERE l.limit_text IS NOT NULL AND l.limit_text <> '0'
       AND (pg_catalog.current_setting('statement_timeout') = '0'
            OR l.limit_text::pg_catalog.interval < pg_catalog.current_setting('statement_timeout')::pg_catalog.interval)";

/// Refreshes a claimed job. Err only when the connection is lost (the transaction, if open, rolls
/// back on the server, and the coordinator reclaims the job once its heartbeat is stale).
pub async fn run(
    client: &Client,
    worker_id: &str,
    job: &Claimed,
    log: Logger,
    target: &str,
    offload: bool,
) -> Result<(), Failure> {
    let started = Instant::now();
    let lost =
        |e: tokio_postgres::Error| Failure::Retry(format!("{target}: {}", crate::error_text(&e)));
    let job_fields: [Field; 3] = [
        ("stream_table", &job.stream_table),
        ("job_id", &job.job_id),
        ("attempt", &job.attempt),
    ];
    log.debug("claimed", &job_fields);
    client.batch_execute(BEGIN_JOB).await.map_err(lost)?;
    let offloaded = if offload {
        offload_or_roll_back(client, worker_id, job, log, &job_fields, &lost).await?
    } else {
        None
    };
    let (refreshed, reduced) = match offloaded {
        Some((row, r)) => (Ok(row), Some(r)),
        None => (
            client
                .query_one(
                    "SELECT outcome, action, rows_inserted, rows_deleted FROM pgtrickle.worker_refresh($1::text::uuid, $2, $3)",
                    &[&worker_id, &job.job_id, &job.attempt],
                )
                .await,
            None,
        ),
    };
    let row = match refreshed {
        Ok(row) => row,
        Err(e) if connection_lost(&e) => {
            log.warn(
                "job lost with the connection, not committed",
                &also(&job_fields, &[("error", &crate::error_text(&e))]),
            );
            return Err(lost(e));
        }
        Err(e) => {
            let message = crate::error_text(&e);
            client.batch_execute("ROLLBACK").await.map_err(lost)?;
            let recorded: bool = client
                .query_one(
                    "SELECT pgtrickle.worker_fail($1::text::uuid, $2, $3, $4)",
                    &[&worker_id, &job.job_id, &job.attempt, &message],
                )
                .await
                .map_err(lost)?
                .get(0);
            let what = if recorded {
                "refresh failed"
            } else {
                "refresh refused, rolled back: the job is no longer this worker's"
            };
            log.warn(what, &also(&job_fields, &[("error", &message)]));
            return Ok(());
        }
    };
    if let Err(e) = client.batch_execute("COMMIT").await {
        log.warn(
            "refresh not committed",
            &also(&job_fields, &[("error", &crate::error_text(&e))]),
        );
        return if connection_lost(&e) {
            Err(lost(e))
        } else {
            Ok(())
        };
    }
    let outcome: String = row.get(0);
    let action: Option<String> = row.get(1);
    let (inserted, deleted): (i64, i64) = (row.get(2), row.get(3));
    let ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0);
    let action = action.unwrap_or_default();
    if outcome == "refreshed" && action != "NO_DATA" {
        release(client, worker_id, job, log, &job_fields)
            .await
            .map_err(lost)?;
    }
    let mut fields = also(
        &job_fields,
        &[
            ("outcome", &outcome),
            ("action", &action),
            ("rows_inserted", &inserted),
            ("rows_deleted", &deleted),
            ("duration_ms", &ms),
        ],
    );
    let offloaded = reduced.is_some();
    fields.push(("offloaded", &offloaded));
    let r = reduced.unwrap_or(Reduced {
        changes: 0,
        groups: 0,
        bytes_in: 0,
        bytes_out: 0,
    });
    if offloaded {
        fields.extend_from_slice(&[
            ("changes", &r.changes as &dyn std::fmt::Display),
            ("groups", &r.groups),
            ("bytes_pulled", &r.bytes_in),
            ("bytes_pushed", &r.bytes_out),
        ]);
    }
    log.info(
        if outcome == "refreshed" {
            "refreshed"
        } else {
            "not refreshed"
        },
        &fields,
    );
    Ok(())
}

/// The clean-up of a committed refresh, in a statement of its own (`pgtrickle.worker_release`): the
/// change rows every consumer has applied go, by `TRUNCATE` where the server can, whose lock writers
/// of the source wait for only while that statement runs. A failure is logged: the next refresh's
/// clean-up takes them. Err only when the connection is lost.
async fn release(
    client: &Client,
    worker_id: &str,
    job: &Claimed,
    log: Logger,
    job_fields: &[Field<'_>],
) -> Result<(), tokio_postgres::Error> {
    let started = Instant::now();
    match client
        .execute(
            "SELECT pgtrickle.worker_release($1::text::uuid, $2)",
            &[&worker_id, &job.pgt_id],
        )
        .await
    {
        Ok(_) => {
            let ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0);
            log.debug(
                "change buffers cleaned up",
                &also(job_fields, &[("duration_ms", &ms)]),
            );
            Ok(())
        }
        Err(e) if connection_lost(&e) => Err(e),
        Err(e) => {
            log.warn(
                "could not clean up the change buffers; the next refresh will",
                &also(job_fields, &[("error", &crate::error_text(&e))]),
            );
            Ok(())
        }
    }
}

/// Offloads the job when the server hands out a plan: its result row and what was reduced. None:
/// the server refreshes it instead, in the transaction that is open on return (the same one, or a
/// new one after a failed offload was rolled back).
async fn offload_or_roll_back(
    client: &Client,
    worker_id: &str,
    job: &Claimed,
    log: Logger,
    job_fields: &[Field<'_>],
    lost: &dyn Fn(tokio_postgres::Error) -> Failure,
) -> Result<Option<(Row, Reduced)>, Failure> {
    match try_offload(client, worker_id, job).await {
        Ok(Offloaded::Applied(row, r)) => Ok(Some((row, r))),
        Ok(Offloaded::Not(why)) => {
            log.debug(
                "refreshing on the server",
                &also(job_fields, &[("why", &why)]),
            );
            Ok(None)
        }
        Err(Failed::Db(e)) if connection_lost(&e) => {
            log.warn(
                "job lost with the connection, not committed",
                &also(job_fields, &[("error", &crate::error_text(&e))]),
            );
            Err(lost(e))
        }
        Err(failed) => {
            let why = match failed {
                Failed::Local(why) => why,
                Failed::Db(e) => crate::error_text(&e),
            };
            log.info(
                "offload not possible for this batch; refreshing on the server",
                &also(job_fields, &[("why", &why)]),
            );
            client
                .batch_execute(&format!("ROLLBACK; {BEGIN_JOB}"))
                .await
                .map_err(lost)?;
            Ok(None)
        }
    }
}

enum Offloaded {
    /// Reduced here and applied by the server: its result row.
    Applied(Row, Reduced),
    /// The server refreshes this one itself: why.
    Not(String),
}

/// Offers the job for offload; when the server hands out a plan, reduces the batch and has it applied.
async fn try_offload(client: &Client, worker_id: &str, job: &Claimed) -> Result<Offloaded, Failed> {
    let handout = client
        .query_one(
            "SELECT plan, copy_out, copy_in, not_offloaded FROM pgtrickle.worker_offload($1::text::uuid, $2, $3)",
            &[&worker_id, &job.job_id, &job.attempt],
        )
        .await?;
    let (plan, copy_out, copy_in): (Option<String>, Option<String>, Option<String>) =
        (handout.get(0), handout.get(1), handout.get(2));
    let (Some(plan), Some(copy_out), Some(copy_in)) = (plan, copy_out, copy_in) else {
        return Ok(Offloaded::Not(
            handout.get::<_, Option<String>>(3).unwrap_or_default(),
        ));
    };
    let reduced = offload::reduce(client, &plan, &copy_out, &copy_in).await?;
    let row = client
        .query_one(
            "SELECT outcome, action, rows_inserted, rows_deleted FROM pgtrickle.worker_offload_apply($1::text::uuid, $2, $3, $4)",
            &[&worker_id, &job.job_id, &job.attempt, &reduced.changes],
        )
        .await?;
    Ok(Offloaded::Applied(row, reduced))
}

type Field<'a> = (&'a str, &'a dyn std::fmt::Display);

/// A log line's fields: the job's, then these.
fn also<'a>(job: &[Field<'a>], extra: &[Field<'a>]) -> Vec<Field<'a>> {
    [job, extra].concat()
}
