//! Each stream table's defining query is also kept as a view, `pgtrickle_queries.q_<pgt_id>`, which
//! PostgreSQL maintains for us: it follows renames of the tables, views, columns and schemas the
//! query reads (the stored text is regenerated from it, and the operator tree rebuilt), it refuses to
//! drop or retype a column the query reads, as it does for any view, and a dump re-creates it as
//! SQL. The view goes away with the stream table's storage table.

use super::analysis::{self, with_empty_search_path};
use super::differential::choose_mode;
use super::modes::RefreshMode;
use super::stream_tables::{self, StreamTable};
use crate::dvm::sql::{quote_literal, QualifiedName};
use crate::error::{PgtError, PgtResult, SqlState};
use crate::spi;
use pgrx::pg_sys::{self, Oid};
use std::ffi::CString;

pub const SCHEMA: &str = "pgtrickle_queries";

pub fn name(pgt_id: i64) -> QualifiedName {
    QualifiedName::new(SCHEMA, format!("q_{pgt_id}"))
}

/// Creates the view for a new stream table whose storage table is `storage`.
pub fn create(pgt_id: i64, storage: Oid, defining_query: &str) -> PgtResult<()> {
    // A 0.1.0 catalog has no schema for them; ALTER EXTENSION ... UPDATE makes the views then.
    if spi::one::<Oid>(
        "SELECT pg_catalog.to_regnamespace($1)::oid",
        &[SCHEMA.into()],
    )?
    .is_none()
    {
        return Ok(());
    }
    let view = name(pgt_id);
    // The stream table's owner reads the query (reading runs code: a literal's input functions) and
    // pg_trickle makes the view of that reading, never reading the text with its own rights.
    let owner = super::stream_tables::owner(storage)?;
    let tree = super::privilege::reading_as(owner, || analysis::parsed_tree(defining_query))?;
    // SAFETY: `tree` is the analysed tree just read, in the current memory context.
    let oid = unsafe { define_view(&view, tree) }?;
    let storage_name = super::names::qualified_name_of(storage)?;
    spi::exec(
        &format!(
            "COMMENT ON VIEW {view} IS {}",
            quote_literal(&format!("pg_trickle: the defining query of stream table {storage_name} (follows renames of what it reads)"))
        ),
        &[],
    )?;
    super::depend::auto_on_storage(oid, storage);
    refuse_temporary_objects(oid)?;
    // The stream table's owner owns its query, as for any view of theirs.
    let view_owner = spi::one::<Oid>(
        "SELECT relowner FROM pg_catalog.pg_class WHERE oid = $1",
        &[oid.into()],
    )?;
    if view_owner != Some(owner) {
        let role = super::names::role_name(owner)?;
        let _own = super::guard::OwnWrite::begin();
        spi::exec(&format!("ALTER VIEW {view} OWNER TO {role}"), &[])?;
    }
    // The stored text as the view prints it: `pg_get_querydef` has no view to name a set
    // operation's later columns after (`SELECT id + 100 AS id`), and a stored text that differs from
    // the view's would be rebuilt at the next DDL that touches a source.
    if let Some(text) = current_text(pgt_id)? {
        if text != defining_query {
            spi::exec(
                "UPDATE pgtrickle.pgt_stream_tables SET defining_query = $2 WHERE pgt_id = $1",
                &[pgt_id.into(), text.into()],
            )?;
        }
    }
    Ok(())
}

/// Refuses a query view that reads one of the session's temporary objects (a function, a type, an
/// operator...: temporary tables are refused by the analysis): the session's end would drop the view
/// (as PostgreSQL drops any view of them), and refreshes run in other sessions.
fn refuse_temporary_objects(view: Oid) -> PgtResult<()> {
    let temporary = spi::one::<String>(
        "SELECT o.type OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) o.identity
           FROM pg_catalog.pg_rewrite r
           JOIN pg_catalog.pg_depend d
             ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
           CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.refclassid, d.refobjid, d.refobjsubid) o
          WHERE r.ev_class = $1
            AND o.schema = (SELECT nspname FROM pg_catalog.pg_namespace WHERE oid = pg_catalog.pg_my_temp_schema())
          ORDER BY 1 LIMIT 1",
        &[view.into()],
    )?;
    match temporary {
        None => Ok(()),
        Some(object) => Err(PgtError::new(
            SqlState::FeatureNotSupported,
            format!("stream tables cannot depend on temporary objects: the defining query uses {object}"),
        )
        .detail("Background refreshes run in other sessions, and a session's temporary objects go when it ends.")),
    }
}

/// Creates the view `view` of an analysed SELECT, as `CREATE VIEW` does with the tree it reads:
/// a relation of the tree's output columns, then the tree as its rule. Returns the view's OID.
///
/// # Safety
/// `tree` is a valid analysed, not rewritten, query tree of one SELECT.
unsafe fn define_view(view: &QualifiedName, tree: *mut pg_sys::Query) -> PgtResult<Oid> {
    let schema =
        CString::new(view.schema.as_str()).map_err(|_| PgtError::internal("NUL in a name"))?;
    let relname =
        CString::new(view.name.as_str()).map_err(|_| PgtError::internal("NUL in a name"))?;
    // SAFETY: the function's contract; node construction as DefineVirtualRelation (view.c) does,
    // in the current memory context. An ERROR raised unwinds through pgrx's guard.
    unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            let mut columns: *mut pg_sys::List = std::ptr::null_mut();
            let list = (*tree).targetList;
            for i in 0..(if list.is_null() { 0 } else { (*list).length }) {
                let entry =
                    (*(*list).elements.add(i as usize)).ptr_value as *mut pg_sys::TargetEntry;
                if (*entry).resjunk {
                    continue;
                }
                let expr = (*entry).expr as *mut pg_sys::Node;
                let column = pg_sys::makeColumnDef(
                    (*entry).resname,
                    pg_sys::exprType(expr),
                    pg_sys::exprTypmod(expr),
                    pg_sys::exprCollation(expr),
                );
                columns = pg_sys::lappend(columns, column.cast());
            }
            let stmt = pg_sys::palloc0(std::mem::size_of::<pg_sys::CreateStmt>())
                as *mut pg_sys::CreateStmt;
            (*stmt).type_ = pg_sys::NodeTag::T_CreateStmt;
            (*stmt).relation = pg_sys::makeRangeVar(
                pg_sys::pstrdup(schema.as_ptr()),
                pg_sys::pstrdup(relname.as_ptr()),
                -1,
            );
            (*stmt).tableElts = columns;
            (*stmt).oncommit = pg_sys::OnCommitAction::ONCOMMIT_NOOP;
            let address = pg_sys::DefineRelation(
                stmt,
                pg_sys::RELKIND_VIEW as std::ffi::c_char,
                pg_sys::InvalidOid,
                std::ptr::null_mut(),
                std::ptr::null(),
            );
            pg_sys::CommandCounterIncrement();
            StoreViewQuery(address.objectId, tree, false);
            pg_sys::CommandCounterIncrement();
            Ok(address.objectId)
        })
    }
}

unsafe extern "C-unwind" {
    // commands/view.h, which pgrx does not bind: stores `view_parse` as the view's rule.
    fn StoreViewQuery(view: pg_sys::Oid, view_parse: *mut pg_sys::Query, replace: bool);
}

/// The defining query as the view reads now (schema-qualified, like the stored text), if the stream
/// table has the view (those created before 0.2.0 do not).
pub fn current_text(pgt_id: i64) -> PgtResult<Option<String>> {
    let view = name(pgt_id);
    with_empty_search_path(|| {
        crate::refresh::settings::with_query_text_settings(|| {
            spi::one::<String>(
                "SELECT pg_catalog.pg_get_viewdef(pg_catalog.to_regclass($1), false)",
                &[view.quoted().as_str().into()],
            )
        })
    })
    .map(|text| text.map(|t| t.trim().trim_end_matches(';').to_string()))
}

/// `FROM pg_catalog.pg_class v` continued: joined with the stream table whose query view `v` is,
/// by the id in its name (an index lookup), and `WHERE` `v` is in the query views' schema.
const STREAM_TABLE_OF_VIEW: &str = "JOIN pgtrickle.pgt_stream_tables st
   ON st.pgt_id = CASE WHEN v.relname ~ '^q_[1-9][0-9]{0,17}$' THEN pg_catalog.substr(v.relname, 3)::bigint END
WHERE v.relnamespace = 'pgtrickle_queries'::pg_catalog.regnamespace";

/// After a DDL command (`command_tag`) on `relid` (None: not a relation, e.g. ALTER SCHEMA).
pub fn sources_changed(command_tag: &str, relid: Option<Oid>) -> PgtResult<()> {
    let is_view = match relid {
        Some(relid) => {
            spi::one::<bool>(
                "SELECT relkind = 'v' FROM pg_catalog.pg_class WHERE oid = $1",
                &[relid.into()],
            )? == Some(true)
        }
        None => false,
    };
    refuse_changes_to_query_views(command_tag, relid, is_view)?;
    match (command_tag, relid) {
        ("CREATE VIEW", Some(view)) => reinitialise_view_readers(view, "redefined"),
        ("ALTER SCHEMA", _) => follow_renames(None),
        (_, Some(relid)) => {
            follow_renames(Some(relid))?;
            // A view's options or owner decide whether the engine may read through it.
            if is_view && !super::guard::own_write_active() {
                reinitialise_view_readers(relid, "altered")?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The stream tables reading `view` (named or under a view they name) reinitialise: the view was
/// `what` ("redefined", "altered").
fn reinitialise_view_readers(view: Oid, what: &str) -> PgtResult<()> {
    let name = super::names::qualified_name_of(view)?;
    spi::exec(
        &super::reinit::mark_sql(
            &super::readers_of("$1", " AND d.source_kind = 'VIEW'"),
            "$2",
        )?,
        &[view.into(), format!("view {name} was {what}").into()],
    )
}

/// The query views are pg_trickle's: replacing one would change what a stream table computes behind
/// its catalog's back, renaming or moving one would lose it. (Its owner and options may change.)
fn refuse_changes_to_query_views(
    command_tag: &str,
    relid: Option<Oid>,
    is_view: bool,
) -> PgtResult<()> {
    if super::guard::own_write_active() || !super::version::at_least_0_2_0()? {
        return Ok(());
    }
    let refused = |view: String| {
        Err(PgtError::new(
            SqlState::WrongObjectType,
            format!("cannot change {view}: it is a stream table's defining query"),
        )
        .hint("To change the query, drop the stream table and create it again."))
    };
    if command_tag == "CREATE VIEW" {
        // Only a live stream table's view: a restore re-creates the views before the catalog's rows.
        let replaced = spi::one::<String>(
            &format!(
                "SELECT pg_catalog.format('pgtrickle_queries.%I', v.relname) FROM pg_catalog.pg_class v
                   {STREAM_TABLE_OF_VIEW} AND v.oid = $1"
            ),
            &[relid.into()],
        )?;
        return replaced.map_or(Ok(()), refused);
    }
    if !(command_tag == "ALTER SCHEMA" || command_tag == "ALTER VIEW" || is_view) {
        return Ok(());
    }
    // Renamed or moved away (the view, or its schema): a query view — the view that depends on a
    // stream table's storage table automatically — no longer named as its stream table's. Only
    // this command's view, or any for a schema's: one that is gone (dropped with the temporary
    // objects it read, say) stops no one else's DDL.
    let lost = spi::one::<String>(
        "SELECT pg_catalog.format('pgtrickle_queries.q_%s', st.pgt_id)
           FROM pgtrickle.pgt_stream_tables st
           JOIN pg_catalog.pg_depend d
             ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = st.pgt_relid
            AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'a'
           JOIN pg_catalog.pg_class v ON v.oid = d.objid AND v.relkind = 'v'
          WHERE ($1::pg_catalog.oid IS NULL OR v.oid = $1)
            AND ((SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = v.relnamespace) <> 'pgtrickle_queries'
                 OR v.relname <> 'q_' || st.pgt_id)
          ORDER BY st.pgt_id LIMIT 1",
        &[relid.into()],
    )?;
    lost.map_or(Ok(()), refused)
}

/// After DDL that may have renamed something stream tables read (`relid`, or anything when None):
/// stores the regenerated defining query of each affected stream table and rebuilds its operator
/// tree, which names relations and columns. The contents stay valid: only names changed.
pub fn follow_renames(relid: Option<Oid>) -> PgtResult<()> {
    // With a relation, from its dependents in pg_depend (an index lookup): this runs after every DDL
    // command on a relation, including those creating a stream table, so it must not read every
    // stream table's view.
    let read = |r: &pgrx::spi::SpiHeapTupleData| spi::col::<i64>(r, "pgt_id");
    let affected: Vec<i64> = match relid {
        Some(relid) => spi::rows(
            &format!(
                "SELECT DISTINCT st.pgt_id FROM pg_catalog.pg_depend d
                   JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
                   JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
                   {STREAM_TABLE_OF_VIEW}
                    AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = $1
                    AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
            ),
            &[relid.into()],
            read,
        )?,
        None => spi::rows(
            &format!("SELECT st.pgt_id FROM pg_catalog.pg_class v {STREAM_TABLE_OF_VIEW}"),
            &[],
            read,
        )?,
    };
    for pgt_id in affected {
        let Some(st) = stream_tables::load(pgt_id)? else {
            continue;
        };
        let Some(text) = current_text(pgt_id)? else {
            continue;
        };
        if text != st.defining_query {
            store_text(&st, &text)?;
        }
    }
    Ok(())
}

fn mark_reinit(st: &StreamTable, problem: &str) -> PgtResult<()> {
    spi::exec(
        &super::reinit::mark_sql("pgt_id = $1", "$2")?,
        &[
            st.pgt_id.into(),
            format!("after a rename its query could not be rebuilt: {problem}").into(),
        ],
    )
}

fn store_text(st: &StreamTable, text: &str) -> PgtResult<()> {
    spi::exec(
        "UPDATE pgtrickle.pgt_stream_tables SET defining_query = $2 WHERE pgt_id = $1",
        &[st.pgt_id.into(), text.into()],
    )?;
    if st.effective_mode != "DIFFERENTIAL" || st.needs_reinit {
        // A reinitialisation rebuilds the tree itself.
        return Ok(());
    }
    // Never abort the user's DDL over this: a query that no longer analyses reinitialises instead,
    // and the reinitialisation says why (or puts the stream table in ERROR).
    let requested = RefreshMode::parse(&st.refresh_mode)?;
    let rebuilt = spi::in_subtransaction(|| {
        let owner = stream_tables::owner(st.relid)?;
        let analysis = analysis::analyze(text, owner)?;
        let choice = choose_mode(&analysis, requested, owner, Some(owner))?;
        Ok((analysis, choice))
    });
    let (analysis, choice) = match rebuilt {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return mark_reinit(st, &e.to_string()),
        Err(message) => return mark_reinit(st, &message),
    };
    let tree = choice
        .tree
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| PgtError::internal(e.to_string()))?;
    spi::exec(
        "UPDATE pgtrickle.pgt_stream_tables SET op_tree = $2::jsonb, effective_mode = $3, mode_reason = $4 WHERE pgt_id = $1",
        &[st.pgt_id.into(), tree.into(), choice.effective.as_str().into(), choice.reason.into()],
    )?;
    if choice.tree.is_none() {
        // No longer DIFFERENTIAL (e.g. a source became something the engine cannot read): FULL next.
        spi::exec(
            &super::reinit::mark_sql("pgt_id = $1", "'a renamed source made its query FULL-only'")?,
            &[st.pgt_id.into()],
        )?;
    }
    stream_tables::record_sources(st.pgt_id, &analysis, choice.tree.as_ref())
}
