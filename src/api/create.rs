use crate::catalog::analysis::{self, QueryAnalysis};
use crate::catalog::modes::RefreshMode;
use crate::catalog::schedule::{format_schedule, parse_schedule};
use crate::catalog::stream_tables::{self, NewStreamTable};
use crate::catalog::{depend, names};
use crate::dvm::sql::{quote_ident, QualifiedName};
use crate::error::{OrRaise, PgtError, PgtResult, SqlState};
use crate::refresh::{self, Initiator};
use crate::spi;
use pgrx::pg_sys::Oid;
use pgrx::prelude::*;

/// Creates a stream table `name` holding the result of `query`, refreshed every `schedule`.
#[pg_extern(schema = "pgtrickle")]
fn create_stream_table(
    name: &str,
    query: &str,
    schedule: default!(&str, "'1m'"),
    refresh_mode: default!(&str, "'AUTO'"),
) {
    create(name, query, schedule, refresh_mode).or_raise()
}

fn create(name: &str, query: &str, schedule: &str, refresh_mode: &str) -> PgtResult<()> {
    let schedule_ms = parse_schedule(schedule)?;
    let requested = RefreshMode::parse(refresh_mode)?;
    let effective = requested.resolve()?;
    let target = names::parse_for_create(name)?;
    if names::resolve_existing(&target.quoted())?.is_some() {
        return Err(PgtError::new(SqlState::DuplicateTable, format!("relation {target} already exists"))
            .hint("Choose another name, or drop the existing relation first."));
    }
    let analysis = analysis::analyze(query)?;
    let relid = create_storage(&target, &analysis)?;

    let pgt_id = stream_tables::insert(NewStreamTable {
        relid,
        original_query: query.trim(),
        defining_query: &analysis.defining_query,
        output_columns: analysis.columns.iter().map(|c| c.name.clone()).collect(),
        schedule: format_schedule(schedule_ms),
        schedule_ms,
        refresh_mode: requested.as_str(),
        effective_mode: effective.as_str(),
    })?;
    for source in &analysis.sources {
        stream_tables::insert_dependency(pgt_id, source.relid, source.kind.as_str())?;
        depend::on_source(relid, source.relid);
    }
    depend::on_extension(relid);

    refresh::run(pgt_id, Initiator::Create)?;
    crate::bgworker::request_scheduler();
    Ok(())
}

/// Creates the table that holds the stream table's rows, with the query's column names and types.
fn create_storage(target: &QualifiedName, analysis: &QueryAnalysis) -> PgtResult<Oid> {
    let columns = analysis
        .columns
        .iter()
        .map(|c| format!("{} {}", quote_ident(&c.name), c.type_sql))
        .collect::<Vec<_>>()
        .join(", ");
    spi::exec(&format!("CREATE TABLE {target} ({columns})"), &[])?;
    names::resolve_existing(&target.quoted())?
        .ok_or_else(|| PgtError::internal(format!("storage table {target} not found after CREATE TABLE")))
}
