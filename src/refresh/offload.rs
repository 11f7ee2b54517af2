//! The server's side of real offload (`dvm::offload`): decide whether an external worker can reduce a
//! stream table's batch itself, and hand it what it needs — the local plan, the statement that pulls
//! the batch with binary COPY, and a temporary table to push the reduced delta into. The refresh that
//! applies it is the ordinary one (`run_batch` with [`super::Batch::Staged`]).

use crate::catalog::stream_tables::{self, StreamTable};
use crate::cdc::{self, WORKER_ROLE};
use crate::dvm::diff::{BatchTest, CdcContext};
use crate::dvm::offload::plan::{LocalPlan, Output};
use crate::dvm::offload::value::LocalType;
use crate::dvm::sql::{quote_ident, quote_literal};
use crate::error::{PgtError, PgtResult};
use crate::spi;
use pgrx::pg_sys::Oid;

/// What a worker is handed for one batch.
#[derive(Debug, Clone)]
pub struct Handout {
    pub plan: LocalPlan,
    /// `COPY (...) TO STDOUT (FORMAT binary)`: the batch's change rows, the plan's columns then the weight.
    pub copy_out: String,
    /// `COPY ... FROM STDIN (FORMAT binary)` into `staged`, in the plan's staged layout.
    pub copy_in: String,
    /// The temporary table the worker fills (schema-qualified, quoted).
    pub staged: String,
    /// The snapshot the batch ends at: the stream table's next frontier.
    pub snapshot: String,
}

/// Prepares the offload of `st`'s next batch, or says why it stays on the server. Call with the
/// stream table claimed and its catalog row locked (they stay so until the apply, in the same
/// transaction), as the extension's owner with the refresh's pinned settings (search_path
/// `pg_catalog, pg_temp`): it creates the staged table and grants.
pub fn prepare(st: &StreamTable) -> PgtResult<Result<Handout, String>> {
    if st.effective_mode != "DIFFERENTIAL" {
        return Ok(Err("it is refreshed FULL".into()));
    }
    if st.needs_reinit {
        return Ok(Err("it needs a full refresh first".into()));
    }
    let Some(old_frontier) = st.frontier.as_deref() else {
        return Ok(Err("it has not been refreshed yet".into()));
    };
    if !stream_tables::identity_holds(st)? {
        return Ok(Err("its catalog row does not belong to it".into()));
    }
    let Some(tree) = st.tree()? else {
        return Ok(Err("it has no operator tree".into()));
    };
    let plan = match LocalPlan::of(&tree) {
        Ok(plan) => plan,
        Err(why) => return Ok(Err(format!("not evaluated by workers: {why}"))),
    };
    let storage = crate::catalog::names::qualified_name_of(st.relid)?;
    let Some(payload) = super::storage::payload(st, &storage, Some(&tree), false)? else {
        return Ok(Err(
            "its stored aggregate state is set up by the next full refresh".into(),
        ));
    };
    let columns: Vec<(String, String)> = match plan.output {
        Output::Groups { .. } => plan
            .staged
            .iter()
            .map(|(n, t)| (n.clone(), t.sql().to_string()))
            .collect(),
        // Rows are matched with the stored ones by record image: the staged columns have the storage
        // table's very types (typmods included), which must be what the worker computes.
        Output::Rows { .. } => {
            let mut columns = Vec::new();
            for ((name, local), sql) in plan.staged.iter().zip(&payload.types) {
                if LocalType::of_sql(sql) != Some(*local) {
                    return Ok(Err(format!("an output column of type {sql}")));
                }
                columns.push((name.clone(), sql.clone()));
            }
            columns.push(("__pgt_w".into(), "bigint".into()));
            columns
        }
    };
    let source = Oid::from(plan.source.relid);
    if let Some(why) = source_refuses(source)? {
        return Ok(Err(why));
    }
    let snapshot = spi::one::<String>("SELECT pg_catalog.pg_current_snapshot()::text", &[])?
        .ok_or_else(|| PgtError::internal("pg_current_snapshot() is NULL"))?;
    let worker_role = spi::one::<Oid>(
        "SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1",
        &[WORKER_ROLE.into()],
    )?
    .ok_or_else(|| PgtError::internal(format!("role {WORKER_ROLE} is missing")))?;
    // The worker reads the batch itself: its role may read the change buffers it is handed, and the
    // buffer's policy lets it see every row (a buffer protected by an earlier version learns that).
    cdc::grant_readers(&[source], worker_role)?;
    cdc::protect_buffer(source)?;
    let staged = staged_table(st, &columns)?;
    let copy_out = copy_out(&plan, source, old_frontier, &snapshot);
    let names: Vec<String> = columns.iter().map(|(n, _)| quote_ident(n)).collect();
    let copy_in = format!(
        "COPY {staged} ({}) FROM STDIN (FORMAT binary)",
        names.join(", ")
    );
    Ok(Ok(Handout {
        plan,
        copy_out,
        copy_in,
        staged,
        snapshot,
    }))
}

/// Why the source's change rows cannot be reduced outside the server, if they cannot: row-level
/// security (the owner's query may not see every row), and text compared under a collation where
/// equal strings may differ in bytes.
fn source_refuses(source: Oid) -> PgtResult<Option<String>> {
    let row = spi::rows(
        "SELECT c.relrowsecurity AS rls,
                EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_collation l ON l.oid = a.attcollation
                         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND NOT l.collisdeterministic) AS nondeterministic
           FROM pg_catalog.pg_class c WHERE c.oid = $1",
        &[source.into()],
        |r| Ok((spi::col::<bool>(r, "rls")?, spi::col::<bool>(r, "nondeterministic")?)),
    )?;
    Ok(match row.into_iter().next() {
        None => Some("its source is gone".into()),
        Some((true, _)) => Some("its source has row-level security".into()),
        Some((_, true)) => Some("its source has a column with a nondeterministic collation".into()),
        _ => None,
    })
}

/// The batch predicate over buffer alias `b`: the changes after `old_frontier` up to `snapshot`,
/// both written in as constants (the worker's statements run later, with other snapshots).
fn batch(old_frontier: &str, snapshot: &str) -> String {
    CdcContext {
        old_frontier: format!("{}::pg_catalog.pg_snapshot", quote_literal(old_frontier)),
        new_frontier: format!("{}::pg_catalog.pg_snapshot", quote_literal(snapshot)),
        // Read whole (COPY, EXISTS): no estimate to give.
        batch_test: BatchTest::Visibility,
        ..Default::default()
    }
    .batch_predicate("b", None)
}

/// Whether the batch a worker reported empty is: a worker that may not see the buffer's rows would
/// read none and lose them.
pub fn batch_is_empty(source: Oid, old_frontier: &str, snapshot: &str) -> PgtResult<bool> {
    let sql = format!(
        "SELECT NOT EXISTS (SELECT 1 FROM {} AS b WHERE {})",
        cdc::buffer_name(source).quoted(),
        batch(old_frontier, snapshot)
    );
    Ok(spi::one::<bool>(&sql, &[])? == Some(true))
}

/// `COPY (the batch's change rows) TO STDOUT (FORMAT binary)`.
fn copy_out(plan: &LocalPlan, source: Oid, old_frontier: &str, snapshot: &str) -> String {
    let batch = batch(old_frontier, snapshot);
    let mut items: Vec<String> = plan
        .columns
        .iter()
        .map(|c| format!("b.{}", quote_ident(c)))
        .collect();
    items.push("b.__pgt_w".into());
    format!(
        "COPY (SELECT {} FROM {} AS b WHERE {batch}) TO STDOUT (FORMAT binary)",
        items.join(", "),
        cdc::buffer_name(source).quoted()
    )
}

/// The session's temporary table for `st`'s reduced deltas, with these columns (name, SQL type),
/// created on first use (emptied at every commit): the worker may insert into it, the stream
/// table's owner, whose refresh reads it, select.
fn staged_table(st: &StreamTable, columns: &[(String, String)]) -> PgtResult<String> {
    let definition = columns
        .iter()
        .map(|(n, t)| format!("{} {t}", quote_ident(n)))
        .collect::<Vec<_>>()
        .join(", ");
    // The layout is part of the name: a stream table altered since gets a table of its own.
    let name = format!("pgt_offload_{}_{:08x}", st.pgt_id, fnv(&definition) as u32);
    let qualified = format!("pg_temp.{}", quote_ident(&name));
    let exists = spi::one::<bool>(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[qualified.as_str().into()],
    )? == Some(true);
    if !exists {
        spi::exec(
            &format!(
                "CREATE TEMPORARY TABLE {} ({definition}) ON COMMIT DELETE ROWS",
                quote_ident(&name)
            ),
            &[],
        )?;
        spi::exec(
            &format!("GRANT INSERT ON {qualified} TO {WORKER_ROLE}"),
            &[],
        )?;
    }
    // Emptied at every commit; and now, so that nothing pushed earlier in this transaction counts.
    spi::exec(&format!("DELETE FROM {qualified}"), &[])?;
    let owner = stream_tables::owner(st.relid)?;
    let readable = spi::one::<bool>(
        "SELECT pg_catalog.has_table_privilege($1, $2::pg_catalog.regclass, 'SELECT')",
        &[owner.into(), qualified.as_str().into()],
    )?;
    if readable != Some(true) {
        spi::exec(
            &format!(
                "GRANT SELECT ON {qualified} TO {}",
                crate::catalog::names::role_name(owner)?
            ),
            &[],
        )?;
    }
    Ok(qualified)
}

/// FNV-1a: a stable short hash for a name.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}
