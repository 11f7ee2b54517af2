//! Real offload, the worker's side: with the local plan the server handed out (`worker_offload`),
//! pull the batch's change rows with binary COPY, reduce them to one row per touched group here
//! (`pg_trickle::dvm::offload`: filter, projection, group keys, weighted counts and sums), and push
//! that back with binary COPY into the session's staged table; `worker_offload_apply` does the rest
//! on the server. What cannot be done exactly here (an overflow, a NaN, a value of another type)
//! is reported, and the job is refreshed on the server instead.

use bytes::Bytes;
use futures_util::{pin_mut, SinkExt, TryStreamExt};
use pg_trickle::dvm::offload::copy;
use pg_trickle::dvm::offload::plan::LocalPlan;
use pg_trickle::dvm::offload::value::LocalType;
use tokio_postgres::Client;

/// Why an offload did not complete.
#[derive(Debug)]
pub enum Failed {
    /// This worker cannot compute the batch exactly: the server must.
    Local(String),
    Db(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Failed {
        Failed::Db(e)
    }
}

/// What one reduction did.
#[derive(Debug, Clone, Copy)]
pub struct Reduced {
    /// Change rows in the batch.
    pub changes: i64,
    /// Rows pushed back: the touched groups.
    pub groups: usize,
    /// Bytes pulled and pushed.
    pub bytes_in: usize,
    pub bytes_out: usize,
}

/// Pulls, reduces and pushes one batch, inside the caller's transaction.
pub async fn reduce(
    client: &Client,
    plan: &str,
    copy_out: &str,
    copy_in: &str,
) -> Result<Reduced, Failed> {
    let plan: LocalPlan = serde_json::from_str(plan).map_err(|e| {
        Failed::Local(format!(
            "the server's local plan is not one this worker reads: {e}"
        ))
    })?;
    let stream = client.copy_out(copy_out).await?;
    pin_mut!(stream);
    let mut data = Vec::new();
    while let Some(chunk) = stream.try_next().await? {
        data.extend_from_slice(&chunk);
    }
    let mut types = plan.types.clone();
    types.push(LocalType::Int2); // the change's weight, __pgt_w
    let rows = copy::decode(&data, &types)
        .map_err(|e| Failed::Local(format!("reading the batch: {e}")))?;
    let reduced = plan
        .reduce(&rows)
        .map_err(|e| Failed::Local(format!("reducing the batch: {e}")))?;
    let encoded = copy::encode(&reduced, &plan.staged_types())
        .map_err(|e| Failed::Local(format!("writing the reduced batch: {e}")))?;
    let out = encoded.len();
    let sink = client.copy_in::<_, Bytes>(copy_in).await?;
    pin_mut!(sink);
    sink.send(Bytes::from(encoded)).await?;
    sink.finish().await?;
    Ok(Reduced {
        changes: rows.len() as i64,
        groups: reduced.len(),
        bytes_in: data.len(),
        bytes_out: out,
    })
}
