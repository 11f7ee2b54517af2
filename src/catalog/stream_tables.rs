//! Reading and writing `pgtrickle.pgt_stream_tables` rows.

use super::names;
use crate::error::{PgtError, PgtResult, SqlState};
use crate::spi;
use pgrx::pg_sys::Oid;
use pgrx::spi::SpiHeapTupleData;

/// What a refresh needs to know about a stream table.
#[derive(Debug, Clone)]
pub struct StreamTable {
    pub pgt_id: i64,
    pub relid: Oid,
    pub defining_query: String,
    pub output_columns: Vec<String>,
    pub refresh_mode: String,
    pub effective_mode: String,
    pub status: String,
    pub op_tree: Option<String>,
    pub mode_reason: Option<String>,
    pub frontier: Option<String>,
    pub needs_reinit: bool,
    /// Why the next refresh must be FULL (None before 0.2.0's catalog, or when nobody said).
    pub reinit_reason: Option<String>,
    /// The reinitialisation requests seen at load (`pgt_reinit_requests`), which a successful
    /// refresh deletes.
    pub reinit_requests: Vec<i64>,
    pub last_error: Option<String>,
    /// The server started, or finished recovery as a promoted standby, after the last successful
    /// refresh (see `dvm::decide::Facts::restarted`). A refresh replayed from a former primary
    /// started before its commit, whose replay is the latest `pg_last_xact_replay_timestamp()` can be.
    pub restarted_since_refresh: bool,
    /// Whether the row names its own storage table (see [`identity_holds`]), when the load already
    /// checked it.
    pub identity_holds: Option<bool>,
}

impl StreamTable {
    pub fn tree(&self) -> PgtResult<Option<crate::dvm::optree::OpTree>> {
        self.op_tree
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| PgtError::internal(format!("stored operator tree is unreadable: {e}")))
    }
}

const COLUMNS: &str = "pgt_id, pgt_relid, defining_query, output_columns, refresh_mode, effective_mode, status, \
                       op_tree::text AS op_tree, mode_reason, frontier::text AS frontier, needs_reinit, last_error, \
                       COALESCE(last_refresh_at < GREATEST(pg_catalog.pg_postmaster_start_time(), \
                                pg_catalog.pg_last_xact_replay_timestamp()), false) AS restarted_since_refresh";

/// The columns to load (from `pgtrickle.pgt_stream_tables st`), with the reinitialisation requests
/// when the catalog has them (see catalog::reinit).
fn columns() -> PgtResult<String> {
    let requests = if super::version::at_least_0_2_0()? {
        "COALESCE(st.reinit_reason, (SELECT q.reason FROM pgtrickle.pgt_reinit_requests q
                                      WHERE q.pgt_id = st.pgt_id ORDER BY q.request_id LIMIT 1)) AS reinit_reason,
         ARRAY(SELECT q.request_id FROM pgtrickle.pgt_reinit_requests q WHERE q.pgt_id = st.pgt_id) AS reinit_requests"
    } else {
        "NULL::text AS reinit_reason, '{}'::bigint[] AS reinit_requests"
    };
    Ok(format!("{COLUMNS}, {requests}"))
}

fn from_row(r: &SpiHeapTupleData) -> Result<StreamTable, pgrx::spi::SpiError> {
    let requests: Vec<i64> = spi::col(r, "reinit_requests")?;
    Ok(StreamTable {
        pgt_id: spi::col(r, "pgt_id")?,
        relid: spi::col(r, "pgt_relid")?,
        defining_query: spi::col(r, "defining_query")?,
        output_columns: spi::col(r, "output_columns")?,
        refresh_mode: spi::col(r, "refresh_mode")?,
        effective_mode: spi::col(r, "effective_mode")?,
        status: spi::col(r, "status")?,
        op_tree: r.get_by_name("op_tree")?,
        mode_reason: r.get_by_name("mode_reason")?,
        frontier: r.get_by_name("frontier")?,
        // A request is as good as the flag (catalog::reinit).
        needs_reinit: spi::col::<bool>(r, "needs_reinit")? || !requests.is_empty(),
        reinit_reason: r.get_by_name("reinit_reason")?,
        reinit_requests: requests,
        last_error: r.get_by_name("last_error")?,
        restarted_since_refresh: spi::col(r, "restarted_since_refresh")?,
        identity_holds: None,
    })
}

/// Loads a stream table by id and locks its catalog row (FOR UPDATE): the fence that makes two
/// refreshers of one stream table serialize, and turns a stale REPEATABLE READ snapshot into a
/// serialization failure instead of a double apply. The same statement answers [`identity_holds`]
/// for the row (every refresh asks it).
pub fn load_for_update(pgt_id: i64) -> PgtResult<Option<StreamTable>> {
    let view = super::query_view::name(pgt_id).quoted();
    let (identity, args) = if super::version::at_least_0_2_0()? {
        (
            identity_sql("pgt_relid", "$2", "status"),
            vec![pgt_id.into(), view.as_str().into()],
        )
    } else {
        ("true".to_string(), vec![pgt_id.into()])
    };
    let sql = format!(
        "SELECT {}, {identity} AS identity_holds FROM pgtrickle.pgt_stream_tables st WHERE pgt_id = $1 FOR UPDATE",
        columns()?
    );
    Ok(spi::rows(&sql, &args, |r| {
        Ok(StreamTable {
            identity_holds: r.get_by_name("identity_holds")?,
            ..from_row(r)?
        })
    })?
    .into_iter()
    .next())
}

/// Whether the catalog row still names its own storage table: its query view is tied to that table
/// (an AUTO dependency made at creation). A dump restores the catalog's rows with the old OIDs but
/// not that tie; such a row may name no table, or another one, and must never be refreshed. A row
/// whose view was dropped along with a column it read (DROP ... CASCADE) is in ERROR already, and its
/// refresh explains what broke. (A 0.1.0 catalog has no query views: nothing to check.)
pub fn identity_holds(st: &StreamTable) -> PgtResult<bool> {
    if let Some(holds) = st.identity_holds {
        return Ok(holds);
    }
    if !super::version::at_least_0_2_0()? {
        return Ok(true);
    }
    Ok(spi::one::<bool>(
        &format!("SELECT {}", identity_sql("$1", "$2", "$3")),
        &[
            st.relid.into(),
            super::query_view::name(st.pgt_id).quoted().as_str().into(),
            st.status.as_str().into(),
        ],
    )? == Some(true))
}

/// The check of [`identity_holds`] as an expression over the storage table's OID, the query view's
/// name and the row's status.
fn identity_sql(relid: &str, view: &str, status: &str) -> String {
    format!(
        "CASE WHEN pg_catalog.to_regclass({view}) IS NULL THEN {status} = 'ERROR'
              ELSE EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                            WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                              AND d.objid = pg_catalog.to_regclass({view})
                              AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                              AND d.refobjid = {relid} AND d.deptype = 'a') END"
    )
}

/// The role owning the storage table.
pub fn owner(relid: Oid) -> PgtResult<Oid> {
    pg_class_row(relid, |c| c.relowner)
        .ok_or_else(|| PgtError::internal("storage table without an owner"))
}

/// `read` applied to the relation's `pg_class` row from the catalog cache (None: no such relation).
pub fn pg_class_row<R>(
    relid: Oid,
    read: impl FnOnce(&pgrx::pg_sys::FormData_pg_class) -> R,
) -> Option<R> {
    use pgrx::pg_sys;
    // SAFETY: a syscache lookup inside a transaction; the row is read, then released.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            pg_sys::Datum::from(relid),
        );
        if tuple.is_null() {
            return None;
        }
        let out = read(&*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tuple));
        pg_sys::ReleaseSysCache(tuple);
        Some(out)
    }
}

/// Loads a stream table by id, without locking it.
pub fn load(pgt_id: i64) -> PgtResult<Option<StreamTable>> {
    let sql = format!(
        "SELECT {} FROM pgtrickle.pgt_stream_tables st WHERE pgt_id = $1",
        columns()?
    );
    Ok(spi::rows(&sql, &[pgt_id.into()], from_row)?
        .into_iter()
        .next())
}

pub fn load_by_relid(relid: Oid) -> PgtResult<Option<StreamTable>> {
    let sql = format!(
        "SELECT {} FROM pgtrickle.pgt_stream_tables st WHERE pgt_relid = $1",
        columns()?
    );
    Ok(spi::rows(&sql, &[relid.into()], from_row)?
        .into_iter()
        .next())
}

/// Finds the stream table a user named, or says clearly why there is none.
pub fn find(name: &str) -> PgtResult<StreamTable> {
    let relid = names::resolve_existing(name)?.ok_or_else(|| not_found(name))?;
    load_by_relid(relid)?.ok_or_else(|| not_a_stream_table(name))
}

/// The id of the stream table a user named (what a refresh needs to start: it loads the rest itself).
pub fn find_id(name: &str) -> PgtResult<i64> {
    Ok(find_ids(name)?.1)
}

/// The storage table's OID and the stream table's id for a user-given name.
pub fn find_ids(name: &str) -> PgtResult<(Oid, i64)> {
    // The name in the caller's search_path, the catalog row in the pinned one.
    let Some(relid) = names::resolve_existing(name)? else {
        return Err(not_found(name));
    };
    let pgt_id = spi::one::<i64>(
        "SELECT pgt_id FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = $1",
        &[relid.into()],
    )?;
    pgt_id
        .map(|pgt_id| (relid, pgt_id))
        .ok_or_else(|| not_a_stream_table(name))
}

fn not_found(name: &str) -> PgtError {
    PgtError::new(
        SqlState::UndefinedTable,
        format!("stream table \"{name}\" does not exist"),
    )
    .hint("List stream tables with: SELECT * FROM pgtrickle.stream_tables;")
}

fn not_a_stream_table(name: &str) -> PgtError {
    PgtError::new(
        SqlState::WrongObjectType,
        format!("\"{name}\" is not a stream table"),
    )
    .hint("List stream tables with: SELECT * FROM pgtrickle.stream_tables;")
}

pub struct NewStreamTable<'a> {
    pub relid: Oid,
    pub op_tree: Option<String>,
    pub mode_reason: String,
    pub original_query: &'a str,
    pub defining_query: &'a str,
    pub output_columns: Vec<String>,
    pub schedule: String,
    pub schedule_ms: i64,
    pub refresh_mode: &'static str,
    pub effective_mode: &'static str,
}

pub fn insert(st: NewStreamTable) -> PgtResult<i64> {
    spi::one::<i64>(
        "INSERT INTO pgtrickle.pgt_stream_tables
             (pgt_relid, original_query, defining_query, output_columns, schedule, schedule_ms, refresh_mode, effective_mode,
              op_tree, mode_reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)
         RETURNING pgt_id",
        &[
            st.relid.into(),
            st.original_query.into(),
            st.defining_query.into(),
            st.output_columns.into(),
            st.schedule.into(),
            st.schedule_ms.into(),
            st.refresh_mode.into(),
            st.effective_mode.into(),
            st.op_tree.into(),
            st.mode_reason.into(),
        ],
    )?
    .ok_or_else(|| PgtError::internal("INSERT ... RETURNING returned no row"))
}

/// Whether the storage table carries the hidden row identity (stream tables that are or were
/// DIFFERENTIAL; FULL refreshes must then fill it too).
pub fn has_row_identity(relid: Oid) -> PgtResult<bool> {
    Ok(spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attname = $2 AND NOT attisdropped)",
        &[relid.into(), crate::dvm::apply::ROW_ID_COLUMN.into()],
    )? == Some(true))
}

/// Records what a stream table reads: the relations its query names, and the base tables its
/// operator tree reads through views — whose changes, TRUNCATEs and DDL concern it as much.
pub fn record_sources(
    pgt_id: i64,
    analysis: &crate::catalog::analysis::QueryAnalysis,
    tree: Option<&crate::dvm::optree::OpTree>,
) -> PgtResult<()> {
    spi::exec(
        "DELETE FROM pgtrickle.pgt_dependencies WHERE pgt_id = $1",
        &[pgt_id.into()],
    )?;
    for source in &analysis.sources {
        insert_dependency(pgt_id, source.relid, source.kind.as_str())?;
    }
    // Views under the views it names: redefining or altering one changes what it reads too.
    let views: Vec<Oid> = analysis.sources.iter().map(|s| s.relid).collect();
    spi::exec(
        &format!(
            "{}
             INSERT INTO pgtrickle.pgt_dependencies (pgt_id, source_relid, source_kind)
             SELECT $1, oid, 'VIEW' FROM views WHERE oid <> ALL ($2::oid[])",
            super::with_views_below("SELECT v FROM pg_catalog.unnest($2::oid[]) AS v")
        ),
        &[pgt_id.into(), views.into()],
    )?;
    let tables: Vec<Oid> = tree
        .map(|t| t.tables())
        .unwrap_or_default()
        .iter()
        .map(|t| Oid::from(t.relid))
        .collect();
    record_table_sources(pgt_id, &tables)?;
    record_unique_keys(pgt_id, tree)
}

/// pg_depend entries from the storage table to the unique keys `tree` relies on, and to no others.
pub fn record_unique_keys(pgt_id: i64, tree: Option<&crate::dvm::optree::OpTree>) -> PgtResult<()> {
    let Some(storage) = spi::one::<Oid>(
        "SELECT pgt_relid FROM pgtrickle.pgt_stream_tables WHERE pgt_id = $1",
        &[pgt_id.into()],
    )?
    else {
        return Ok(());
    };
    super::depend::on_unique_keys(storage, tree.map_or(&[], |t| t.unique_keys.as_slice()))
}

/// Records `tables` (read through views, say) among the stream table's sources, unless there already.
pub fn record_table_sources(pgt_id: i64, tables: &[Oid]) -> PgtResult<()> {
    spi::exec(
        "INSERT INTO pgtrickle.pgt_dependencies (pgt_id, source_relid, source_kind)
         SELECT $1, c.oid, CASE WHEN EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_relid = c.oid)
                                THEN 'STREAM_TABLE' WHEN c.relkind = 'p' THEN 'PARTITIONED_TABLE' ELSE 'TABLE' END
           FROM pg_catalog.pg_class c
          WHERE c.oid = ANY ($2::pg_catalog.oid[])
            AND NOT EXISTS (SELECT 1 FROM pgtrickle.pgt_dependencies d WHERE d.pgt_id = $1 AND d.source_relid = c.oid)",
        &[pgt_id.into(), tables.to_vec().into()],
    )
}

fn insert_dependency(pgt_id: i64, source: Oid, kind: &str) -> PgtResult<()> {
    spi::exec(
        "INSERT INTO pgtrickle.pgt_dependencies (pgt_id, source_relid, source_kind) VALUES ($1, $2, $3)",
        &[pgt_id.into(), source.into(), kind.into()],
    )
}
