use crate::catalog::analysis::{self, QueryAnalysis};
use crate::catalog::differential::choose_mode;
use crate::catalog::modes::RefreshMode;
use crate::catalog::schedule::{format_schedule, parse_schedule};
use crate::catalog::stream_tables::{self, NewStreamTable};
use crate::catalog::{depend, names, privilege};
use crate::dvm::apply::{DUP_COLUMN, ROW_ID_COLUMN};
use crate::dvm::sql::{quote_ident, QualifiedName};
use crate::error::{required, OrRaise, PgtError, PgtResult, SqlState};
use crate::refresh::{self, Initiator};
use crate::spi;
use pgrx::pg_sys::Oid;
use pgrx::prelude::*;

/// Creates a stream table `name` holding the result of `query`, refreshed every `schedule`.
#[pg_extern(schema = "pgtrickle")]
fn create_stream_table(
    name: Option<&str>,
    query: Option<&str>,
    schedule: default!(Option<&str>, "'1m'"),
    refresh_mode: default!(Option<&str>, "'AUTO'"),
) {
    let args = || -> PgtResult<_> {
        Ok((
            required(name, "name")?,
            required(query, "query")?,
            required(schedule, "schedule")?,
            required(refresh_mode, "refresh_mode")?,
        ))
    };
    let caller = privilege::caller();
    super::on_primary("create a stream table")
        .and_then(|()| args())
        .and_then(|(name, query, schedule, mode)| {
            privilege::as_extension_owner(|| create(caller, name, query, schedule, mode))
        })
        .or_raise()
}

fn create(
    caller: Oid,
    name: &str,
    query: &str,
    schedule: &str,
    refresh_mode: &str,
) -> PgtResult<()> {
    let _own = crate::catalog::guard::OwnWrite::begin();
    let schedule_ms = parse_schedule(schedule)?;
    let requested = RefreshMode::parse(refresh_mode)?;
    let target = names::parse_for_create(name)?;
    if names::resolve_existing(&target.quoted())?.is_some() {
        return Err(PgtError::new(
            SqlState::DuplicateTable,
            format!("relation {target} already exists"),
        )
        .hint("Choose another name, or drop the existing relation first."));
    }
    let analysis = analysis::analyze_new(query)?;
    privilege::require_select(
        caller,
        &analysis.sources.iter().map(|s| s.relid).collect::<Vec<_>>(),
    )?;
    // For DIFFERENTIAL this also installs change capture on the sources.
    let choice = choose_mode(&analysis, requested, caller, Some(caller))?;
    let differential = choice.effective == RefreshMode::Differential;
    // The caller's table, in the caller's schema, with the caller's rights.
    let relid = privilege::creating_as_caller(|| create_storage(&target, &analysis, differential))?;

    let op_tree = choice
        .tree
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| PgtError::internal(e.to_string()))?;
    let pgt_id = stream_tables::insert(NewStreamTable {
        relid,
        op_tree,
        mode_reason: choice.reason,
        original_query: query.trim(),
        defining_query: &analysis.defining_query,
        output_columns: analysis.columns.iter().map(|c| c.name.clone()).collect(),
        schedule: format_schedule(schedule_ms),
        schedule_ms,
        refresh_mode: requested.as_str(),
        effective_mode: choice.effective.as_str(),
    })?;
    crate::catalog::guard::install(&target, pgt_id)?;
    stream_tables::record_sources(pgt_id, &analysis, choice.tree.as_ref())?;
    crate::catalog::unchanged::decide(pgt_id, &analysis, choice.effective)?;
    for source in &analysis.sources {
        depend::on_source(relid, source.relid);
    }
    crate::catalog::query_view::create(pgt_id, relid, &analysis.defining_query)?;
    depend::on_extension(relid);

    if crate::catalog::version::at_least_0_2_0()? {
        // Where a publication publishes the new stream table: a replica identity before the first
        // refresh deletes from it (capture gave its buffers theirs), and a WARNING for FOR ALL
        // TABLES (sql/finalize.sql).
        spi::exec(
            "SELECT pgtrickle._identify_published_tables(), pgtrickle._warn_if_all_tables_published()",
            &[],
        )?;
    }
    refresh::run(pgt_id, Initiator::Create, true)?;
    if differential {
        // Statistics from the start (taken as autovacuum would: as the owner, security-restricted).
        // Without them the planner expects dozens of rows per row identity, and the plans a refresh
        // worker keeps probe the stored rows with bitmap scans (twice the cost of an index scan)
        // until autovacuum first analyses the table.
        privilege::as_owner(caller, || spi::exec(&format!("ANALYZE {target}"), &[]))?;
    }
    // SAFETY: reads the transaction's isolation level.
    let transaction_snapshot =
        unsafe { pgrx::pg_sys::XactIsoLevel } >= pgrx::pg_sys::XACT_REPEATABLE_READ as i32;
    if differential && transaction_snapshot {
        // The initial population read this transaction's snapshot, taken before capture was
        // installed (and before this stream table joined the consumers whose change rows the
        // clean-up keeps): writes committed in between may be in neither. FULL once more after commit.
        spi::exec(
            &crate::catalog::reinit::mark_sql(
                "pgt_id = $1",
                "'created in a REPEATABLE READ or SERIALIZABLE transaction, whose snapshot may predate writes capture did not see'",
            )?,
            &[pgt_id.into()],
        )?;
    }
    crate::bgworker::request_scheduler();
    Ok(())
}

/// Creates the table that holds the stream table's rows, with the query's column names and types,
/// plus the hidden row identity for DIFFERENTIAL refreshes.
fn create_storage(
    target: &QualifiedName,
    analysis: &QueryAnalysis,
    differential: bool,
) -> PgtResult<Oid> {
    let mut columns: Vec<String> = analysis
        .columns
        .iter()
        .map(|c| format!("{} {}", quote_ident(&c.name), c.type_sql))
        .collect();
    if differential {
        columns.push(format!("{ROW_ID_COLUMN} bigint NOT NULL"));
        columns.push(format!("{DUP_COLUMN} integer NOT NULL"));
    }
    spi::exec(
        &format!("CREATE TABLE {target} ({})", columns.join(", ")),
        &[],
    )?;
    if differential {
        add_row_identity_index(target)?;
    }
    names::resolve_existing(&target.quoted())?.ok_or_else(|| {
        PgtError::internal(format!(
            "storage table {target} not found after CREATE TABLE"
        ))
    })
}

pub(super) fn add_row_identity_index(target: &QualifiedName) -> PgtResult<()> {
    spi::exec(&format!("CREATE INDEX ON {target} ({ROW_ID_COLUMN})"), &[])
}
