//! Stream tables are written only by pg_trickle. A direct INSERT/UPDATE/DELETE/TRUNCATE would make a
//! stream table drift from its query unnoticed until a delta touched those rows, and DDL on its columns
//! would break every refresh; both are refused with a clear error (as PostgreSQL refuses writes to a
//! materialized view). pg_trickle's own writes and DDL — refreshes, create, mode changes — run inside
//! an [`OwnWrite`] scope, which the guard trigger asks about through `pgtrickle._own_write()`.

use crate::dvm::apply::{DUP_COLUMN, ROW_ID_COLUMN};
use crate::dvm::sql::QualifiedName;
use crate::error::{PgtError, PgtResult, SqlState};
use crate::spi;
use pgrx::pg_sys::Oid;
use std::cell::Cell;

thread_local! {
    static OWN_WRITES: Cell<u32> = const { Cell::new(0) };
}

/// While alive, this backend's writes to stream tables are pg_trickle's own (nests; ends also when
/// an ERROR unwinds).
pub struct OwnWrite(());

impl OwnWrite {
    pub fn begin() -> OwnWrite {
        OWN_WRITES.with(|n| n.set(n.get() + 1));
        OwnWrite(())
    }
}

impl Drop for OwnWrite {
    fn drop(&mut self) {
        OWN_WRITES.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

pub fn own_write_active() -> bool {
    OWN_WRITES.with(|n| n.get() > 0)
}

/// The write guard's trigger name on every storage table.
pub const GUARD_TRIGGER: &str = "pgtrickle_guard";

/// Whether `trigger` is the write guard: its name, and the function it runs (the table's owner could
/// give a trigger of their own the name).
pub fn is_guard(trigger: &pgrx::pg_sys::Trigger) -> bool {
    // SAFETY: a trigger of an open relation's descriptor has a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(trigger.tgname) };
    name.to_bytes() == GUARD_TRIGGER.as_bytes()
        && crate::cdc::runs_own_function(trigger.tgfoid, "_guard_stream_table")
}

/// Puts the write guard on a new storage table. ALWAYS: replica-role sessions are refused too. Its
/// argument is the stream table's id: a dump carries it along with the table (and a restore finds
/// each catalog row's table by it, whatever its OID and name are then).
pub fn install(storage: &QualifiedName, pgt_id: i64) -> PgtResult<()> {
    // A 0.1.0 catalog (the library is updated before ALTER EXTENSION ... UPDATE, which then guards
    // every stream table) has no guard function yet.
    let guard = spi::one::<Oid>(
        "SELECT pg_catalog.to_regprocedure('pgtrickle._guard_stream_table()')::oid",
        &[],
    )?;
    if guard.is_none() {
        return Ok(());
    }
    spi::exec(
        &format!(
            "CREATE TRIGGER {GUARD_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {storage}
               FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle._guard_stream_table('{pgt_id}')"
        ),
        &[],
    )?;
    spi::exec(
        &format!("ALTER TABLE {storage} ENABLE ALWAYS TRIGGER {GUARD_TRIGGER}"),
        &[],
    )
}

/// After ALTER TABLE on a stream table (not by pg_trickle): its visible columns must still be the
/// query's, in order, and the hidden ones a refresh relies on must be intact. Raising here aborts
/// the ALTER TABLE.
pub fn check_altered(relid: Oid) -> PgtResult<()> {
    if own_write_active() {
        return Ok(());
    }
    let Some(st) = crate::catalog::stream_tables::load_by_relid(relid)? else {
        return Ok(());
    };
    // ENABLE TRIGGER ALL (as pg_restore --disable-triggers ends) leaves the guard firing in origin
    // sessions only: set it back to ALWAYS. DISABLE is the expert's choice and kept.
    let state = spi::one::<String>(
        "SELECT tgenabled::text FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND tgname = 'pgtrickle_guard'",
        &[relid.into()],
    )?;
    if matches!(state.as_deref(), Some("O") | Some("R")) {
        let _own = OwnWrite::begin();
        let name = crate::catalog::names::qualified_name_of(relid)?;
        spi::exec(
            &format!("ALTER TABLE {name} ENABLE ALWAYS TRIGGER {GUARD_TRIGGER}"),
            &[],
        )?;
    }
    // A new owner (ALTER TABLE ... OWNER TO): the query view follows, and refreshes, which run as
    // the owner, need to read the change buffers.
    let owner = crate::catalog::stream_tables::owner(relid)?;
    let view = crate::catalog::query_view::name(st.pgt_id);
    let view_owner = spi::one::<Oid>(
        "SELECT relowner FROM pg_catalog.pg_class WHERE oid = pg_catalog.to_regclass($1)",
        &[view.quoted().as_str().into()],
    )?;
    if view_owner.is_some_and(|o| o != owner) {
        // The owner's rights decide what the engine may read through deltas (views, row security).
        let role = crate::catalog::names::role_name(owner)?;
        spi::exec(
            &crate::catalog::reinit::mark_sql("pgt_id = $1", "$2")?,
            &[st.pgt_id.into(), format!("its owner is now {role}").into()],
        )?;
        let _own = OwnWrite::begin();
        spi::exec(&format!("ALTER VIEW {view} OWNER TO {role}"), &[])?;
    }
    if let Some(tree) = st.tree()? {
        let sources: Vec<Oid> = tree.tables().iter().map(|t| Oid::from(t.relid)).collect();
        crate::cdc::grant_readers(&sources, owner)?;
    }
    let columns = crate::cdc::table_columns(relid)?;
    let visible: Vec<&String> = columns
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !n.starts_with(crate::catalog::HIDDEN_PREFIX))
        .collect();
    let hidden_ok = st.effective_mode != "DIFFERENTIAL"
        || [(ROW_ID_COLUMN, "bigint"), (DUP_COLUMN, "integer")]
            .iter()
            .all(|(name, ty)| columns.iter().any(|(n, t)| n == name && t == ty));
    if visible
        .iter()
        .map(|s| s.as_str())
        .eq(st.output_columns.iter().map(|s| s.as_str()))
        && hidden_ok
    {
        return Ok(());
    }
    Err(columns_changed(&crate::catalog::names::qualified_name_of(
        relid,
    )?))
}

/// The error for DDL that changes a stream table's columns (or, `guard_ddl`, their types).
pub fn columns_changed(name: &QualifiedName) -> PgtError {
    PgtError::new(SqlState::WrongObjectType, format!("cannot change the columns of stream table {name}"))
        .detail("A stream table's columns are its defining query's, plus hidden columns its refreshes maintain.")
        .hint("To change them, drop the stream table and create it again with another query.")
}
