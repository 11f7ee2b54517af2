//! The offloading executor: at a refresh point the oracle acts as `pg_trickle_worker` does with
//! offloading on — claim the twin's job, take the server's local plan (`worker_offload`), pull the
//! batch with binary COPY, reduce it with the engine's own offload module, push it back with binary
//! COPY and have the server apply it (`worker_offload_apply`), all as a role holding only
//! `pgtrickle_worker`, in one READ COMMITTED transaction. Where the server keeps the refresh (no
//! local plan) or the reduction cannot be exact, the refresh runs on the server, as the worker's does.

use pg_trickle::dvm::offload::copy;
use pg_trickle::dvm::offload::plan::LocalPlan;
use pg_trickle::dvm::offload::value::LocalType;
use postgres::{Client, Transaction};
use std::io::{Read, Write};

/// How a refresh point went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// Reduced here, applied by the server.
    Offloaded,
    /// On the server: why.
    OnServer(String),
}

/// Why offloading did not complete: the batch goes to the server (`Local`), or the refresh failed.
enum Stop {
    Local(String),
    Sql(String, postgres::Error),
}

fn sql<T>(statement: &str, r: Result<T, postgres::Error>) -> Result<T, Stop> {
    r.map_err(|e| Stop::Sql(statement.to_string(), e))
}

/// Refreshes `twin` as an offloading worker logged in as `role`; `server_refresh` is the statement
/// that refreshes it on the server instead. Err: the failing statement and its error.
pub fn refresh(
    client: &mut Client,
    twin: &str,
    role: &str,
    server_refresh: &str,
) -> Result<Refreshed, (String, postgres::Error)> {
    let mut tx = client.transaction().map_err(|e| ("BEGIN".to_string(), e))?;
    match offload(&mut tx, twin, role) {
        Ok(None) => {
            tx.commit().map_err(|e| ("COMMIT".to_string(), e))?;
            Ok(Refreshed::Offloaded)
        }
        Ok(Some(why)) | Err(Stop::Local(why)) => {
            drop(tx);
            client
                .batch_execute(server_refresh)
                .map_err(|e| (server_refresh.to_string(), e))?;
            Ok(Refreshed::OnServer(why))
        }
        // The apply itself may refuse a batch (a group to recompute): the server refreshes it then.
        Err(Stop::Sql(statement, e))
            if statement.contains("worker_offload_apply")
                && e.code().is_some_and(|c| c.code() == "22P02") =>
        {
            drop(tx);
            client
                .batch_execute(server_refresh)
                .map_err(|e| (server_refresh.to_string(), e))?;
            Ok(Refreshed::OnServer(e.to_string()))
        }
        Err(Stop::Sql(statement, e)) => Err((statement, e)),
    }
}

/// The offload in `tx`: None when applied, Some(why) when the server keeps the refresh.
fn offload(tx: &mut Transaction<'_>, twin: &str, role: &str) -> Result<Option<String>, Stop> {
    let setup = format!(
        "SELECT pgtrickle.worker_register('00000000-0000-4000-8000-00000000000a', 'oracle', pg_backend_pid(), NULL);
         INSERT INTO pgtrickle.pgt_worker_jobs (pgt_id) SELECT pgt_id FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = '{twin}'::regclass;
         SET LOCAL ROLE {role}"
    );
    sql(&setup, tx.batch_execute(&setup))?;
    let w = "00000000-0000-4000-8000-00000000000a";
    let claim = "SELECT job_id, attempt FROM pgtrickle.worker_claim($1::text::uuid)";
    let job = sql(claim, tx.query_one(claim, &[&w]))?;
    let (job_id, attempt): (i64, i32) = (job.get(0), job.get(1));
    let offload = "SELECT plan, copy_out, copy_in, not_offloaded FROM pgtrickle.worker_offload($1::text::uuid, $2, $3)";
    let handout = sql(offload, tx.query_one(offload, &[&w, &job_id, &attempt]))?;
    let (plan, copy_out, copy_in): (Option<String>, Option<String>, Option<String>) =
        (handout.get(0), handout.get(1), handout.get(2));
    let (Some(plan), Some(copy_out), Some(copy_in)) = (plan, copy_out, copy_in) else {
        return Ok(Some(
            handout.get::<_, Option<String>>(3).unwrap_or_default(),
        ));
    };
    let plan: LocalPlan =
        serde_json::from_str(&plan).map_err(|e| Stop::Local(format!("local plan: {e}")))?;
    let mut data = Vec::new();
    let mut reader = sql(&copy_out, tx.copy_out(copy_out.as_str()))?;
    reader
        .read_to_end(&mut data)
        .map_err(|e| Stop::Local(format!("reading the batch: {e}")))?;
    drop(reader);
    let mut types = plan.types.clone();
    types.push(LocalType::Int2);
    let rows = copy::decode(&data, &types).map_err(|e| Stop::Local(e.to_string()))?;
    let reduced = plan.reduce(&rows).map_err(|e| Stop::Local(e.to_string()))?;
    let bytes =
        copy::encode(&reduced, &plan.staged_types()).map_err(|e| Stop::Local(e.to_string()))?;
    let mut writer = sql(&copy_in, tx.copy_in(copy_in.as_str()))?;
    writer
        .write_all(&bytes)
        .map_err(|e| Stop::Local(format!("pushing the batch: {e}")))?;
    sql(&copy_in, writer.finish())?;
    let apply = "SELECT outcome FROM pgtrickle.worker_offload_apply($1::text::uuid, $2, $3, $4)";
    let changes = rows.len() as i64;
    sql(
        apply,
        tx.query_one(apply, &[&w, &job_id, &attempt, &changes]),
    )?;
    let cleanup = format!(
        "SELECT pgtrickle.worker_stop('{w}'); RESET ROLE;
         DELETE FROM pgtrickle.pgt_worker_jobs WHERE job_id = {job_id};
         DELETE FROM pgtrickle.pgt_worker_registry WHERE worker_id = '{w}'"
    );
    sql(&cleanup, tx.batch_execute(&cleanup))?;
    Ok(None)
}
