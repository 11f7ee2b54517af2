//! Change capture: for each base table a stream table reads (in DIFFERENTIAL mode), a change buffer
//! `pgtrickle_changes.changes_<relid>` and statement-level AFTER triggers with transition tables that
//! append every inserted row (weight +1) and deleted row (weight −1) — an UPDATE is both — tagged with
//! the writing transaction's id. They run one C function, `pgtrickle._capture(<relid>)` (trigger.rs).
//! A TRUNCATE trigger marks dependents for a full refresh instead. Sources are shared: one buffer
//! serves every stream table reading that table. Partitions, inheritance children, replication and
//! trigger states: see members.rs. (A 0.1.0 catalog, served by this library until `ALTER EXTENSION
//! pg_trickle UPDATE`, has no capture function: there each source gets PL/pgSQL capture functions of
//! its own, which the update replaces.)

mod batch;
mod members;
pub mod replaced;
pub mod signal;
mod trigger;
pub use members::{
    armed, descendant_tables, foreign_descendant, own_capture_trigger, suspended, unlogged_member,
    Family,
};
pub use trigger::{is_own_signal_trigger, runs_own_function};

use crate::catalog::{depend, reinit, HIDDEN_PREFIX};
use crate::dvm::diff::{BatchTest, CdcContext};
use crate::dvm::optree::TableRef;
use crate::dvm::sql::{ident_list, quote_ident, quote_literal, QualifiedName};
use crate::error::{PgtError, PgtResult, SqlState};
use crate::locks::{Lock, Scope};
use crate::spi;
use pgrx::pg_sys::Oid;

pub const SCHEMA: &str = "pgtrickle_changes";

/// The NOLOGIN role that owns change buffers and runs capture (made by sql/finalize.sql): whoever
/// writes a source runs its capture triggers with this role's rights — append to its buffers, mark
/// stream tables for reinitialisation — and no others.
pub const CAPTURE_ROLE: &str = "pgtrickle_capture";

pub fn buffer_name(relid: Oid) -> QualifiedName {
    QualifiedName::new(SCHEMA, format!("changes_{}", relid.to_u32()))
}

fn capture_function(relid: Oid) -> QualifiedName {
    QualifiedName::new(SCHEMA, format!("capture_{}", relid.to_u32()))
}

/// The row-at-a-time twin of the capture function, for writes that fire row triggers only.
fn row_capture_function(relid: Oid) -> QualifiedName {
    QualifiedName::new(SCHEMA, format!("capture_row_{}", relid.to_u32()))
}

fn truncate_function(relid: Oid) -> QualifiedName {
    QualifiedName::new(SCHEMA, format!("truncated_{}", relid.to_u32()))
}

/// `pgtrickle._capture()`, the capture trigger function; None in a 0.1.0 catalog.
fn native_capture_function() -> PgtResult<Option<Oid>> {
    spi::one::<Oid>(
        "SELECT pg_catalog.to_regprocedure('pgtrickle._capture()')::oid",
        &[],
    )
}

/// The batch context of a refresh reading `tables`: each one's change buffer, and the batch test
/// the catalog has (`pgtrickle._in_batch` came with 0.2.0).
pub fn refresh_context(tables: &[TableRef]) -> PgtResult<CdcContext> {
    let test = if crate::catalog::version::has_batch_function()? {
        BatchTest::Function
    } else {
        BatchTest::Visibility
    };
    Ok(CdcContext::for_refresh(
        tables
            .iter()
            .map(|t| (t.relid, buffer_name(Oid::from(t.relid)))),
        test,
    ))
}

/// (name, SQL type) of every live column of a table, in order.
pub fn table_columns(relid: Oid) -> PgtResult<Vec<(String, String)>> {
    spi::rows(
        "SELECT attname::text AS name, pg_catalog.format_type(atttypid, atttypmod) AS type_sql
           FROM pg_catalog.pg_attribute
          WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped
          ORDER BY attnum",
        &[relid.into()],
        |r| Ok((spi::col(r, "name")?, spi::col(r, "type_sql")?)),
    )
}

/// (name, SQL type) of every live column of a table, in order, with its collation where it is not
/// the type's own (`catalog::analysis::collated_columns`): a change buffer's columns compare as the
/// source's do (a buffer's `text` beside the source's `text COLLATE "C"` would leave a delta's join
/// or grouping without a collation).
fn collated_columns(relid: Oid) -> PgtResult<Vec<(String, String)>> {
    Ok(crate::catalog::analysis::collated_columns(relid)?
        .into_iter()
        .map(|c| (c.name, c.type_sql))
        .collect())
}

/// Class of the lock (`locks`; its key: the source's OID) held by whoever changes who consumes a
/// source's change buffer: the clean-up of consumed change rows (which skips a buffer when it cannot
/// have the lock at once) and a stream table joining the consumers, until its transaction ends. So a
/// clean-up never deletes rows a consumer that is still being created has not seen, and two sessions
/// installing capture on one source take turns.
pub const CONSUMERS_LOCK_CLASS: i32 = 0x5047_5443; // "PGTC"

/// The consumers lock of `source`'s change buffer.
pub fn consumers_lock(source: Oid) -> Lock {
    Lock::new(CONSUMERS_LOCK_CLASS, source.to_u32() as i32)
}

/// Installs capture on `source` unless it is already there, and holds the source's consumers lock
/// until the transaction ends. Idempotent.
pub fn ensure_capture(source: Oid) -> PgtResult<()> {
    consumers_lock(source).acquire(Scope::Transaction);
    // Another session may just have committed the capture we waited for: see its catalog rows.
    // SAFETY: processes pending catalog invalidations, as any lock acquisition on a relation does.
    unsafe { pgrx::pg_sys::AcceptInvalidationMessages() };
    let buffer = buffer_name(source);
    if existing(&buffer)?.is_some() {
        return Ok(());
    }
    let _guard = RearmGuard::enter();
    install(source)
}

/// The columns capture records for `source`: all of them — but a stream table's hidden columns,
/// which no query reads (a DIFFERENTIAL stream table over another sees only its visible columns).
fn capture_columns(source: Oid) -> PgtResult<Vec<(String, String)>> {
    let columns = collated_columns(source)?;
    let is_stream_table = spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = $1)",
        &[source.into()],
    )? == Some(true);
    if is_stream_table {
        return Ok(columns
            .into_iter()
            .filter(|(n, _)| !n.starts_with(HIDDEN_PREFIX))
            .collect());
    }
    if let Some((name, _)) = columns.iter().find(|(n, _)| n.starts_with(HIDDEN_PREFIX)) {
        let table = crate::catalog::names::qualified_name_of(source)?;
        return Err(PgtError::new(
            SqlState::ReservedName,
            format!("column \"{name}\" of {table} uses a name reserved by pg_trickle"),
        )
        .detail(format!(
            "Change capture adds its own columns starting with \"{HIDDEN_PREFIX}\"."
        )));
    }
    Ok(columns)
}

fn install(source: Oid) -> PgtResult<()> {
    let table = crate::catalog::names::qualified_name_of(source)?;
    let columns = capture_columns(source)?;
    let buffer = buffer_name(source);
    let defs: Vec<String> = columns
        .iter()
        .map(|(n, t)| format!("{} {t}", quote_ident(n)))
        .collect();
    spi::exec(
        &format!(
            "CREATE TABLE {buffer} (__pgt_xid pg_catalog.xid8 NOT NULL, __pgt_w smallint NOT NULL{}{})",
            if defs.is_empty() { "" } else { ", " },
            defs.join(", ")
        ),
        &[],
    )?;
    spi::exec(
        &format!(
            "COMMENT ON TABLE {buffer} IS {}",
            quote_literal(&format!("pg_trickle change buffer for {table}"))
        ),
        &[],
    )?;
    protect_buffer(source)?;
    if crate::catalog::version::at_least_0_2_0()? {
        // Its deletes must be allowed where a publication publishes it (sql/finalize.sql).
        spi::exec("SELECT pgtrickle._identify_published_tables()", &[])?;
    }
    let native = native_capture_function()?.is_some();
    if !native {
        write_capture_function(source, &columns)?;
    }
    write_truncate_function(source, &table)?;
    // Triggers on the source and on its partitions or inheritance children.
    members::rearm(Family::Capture, source, true)?;
    // Dropping the source drops its capture with it (its triggers go with it anyway).
    depend::auto_on_source_relation(lookup_oid(&buffer)?, source);
    depend::auto_function_on_source(lookup_function(&truncate_function(source))?, source);
    if !native {
        depend::auto_function_on_source(lookup_function(&capture_function(source))?, source);
        depend::auto_function_on_source(lookup_function(&row_capture_function(source))?, source);
    }
    hand_to_capture_role(source)
}

/// Gives the source's buffer and capture functions to [`CAPTURE_ROLE`]; idempotent. (A 0.1.0
/// catalog has no such role: there capture stays the extension owner's until the update.)
fn hand_to_capture_role(source: Oid) -> PgtResult<()> {
    if !crate::catalog::version::at_least_0_2_0()? {
        return Ok(());
    }
    spi::exec(
        &format!(
            "ALTER TABLE {} OWNER TO {CAPTURE_ROLE}",
            buffer_name(source)
        ),
        &[],
    )?;
    for function in [
        capture_function(source),
        row_capture_function(source),
        truncate_function(source),
    ] {
        if existing_function(&function)?.is_some() {
            spi::exec(
                &format!("ALTER FUNCTION {function}() OWNER TO {CAPTURE_ROLE}"),
                &[],
            )?;
        }
    }
    Ok(())
}

/// Change rows are the source's rows: whoever reads a buffer (a stream table's owner, granted SELECT
/// for its refreshes) sees them only while they may read the source itself — `SELECT` on it, `USAGE`
/// on its schema, and no row-level security of it applying to them (`row_security_active`: which
/// of its rows the policies would hide is not known of a change row), so a REVOKE, or a role that
/// loses BYPASSRLS, hides its change rows at once — or holds `pgtrickle_worker` (external workers
/// pull batches themselves; that role is as trusted as a replication role). (The buffer's owner, who
/// captures and cleans up, is not subject.) A policy written by an earlier version is replaced.
pub(crate) fn protect_buffer(source: Oid) -> PgtResult<()> {
    let buffer = buffer_name(source);
    skip_statistics_of_users_types(&buffer)?;
    // Known by its name, which says which version wrote it (not by its text, which a search_path
    // could have bent when an earlier version wrote it).
    let policies: Vec<String> = spi::rows(
        "SELECT polname::text AS name FROM pg_catalog.pg_policy
          WHERE polrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)
            AND polname::text OPERATOR(pg_catalog.~~) 'pgtrickle\\_source\\_readers%'",
        &[buffer.quoted().as_str().into()],
        |r| spi::col::<String>(r, "name"),
    )?;
    if policies.iter().any(|p| p == BUFFER_POLICY) {
        return Ok(());
    }
    if policies.is_empty() {
        spi::exec(
            &format!("ALTER TABLE {buffer} ENABLE ROW LEVEL SECURITY"),
            &[],
        )?;
    }
    for old in policies {
        spi::exec(
            &format!("DROP POLICY {} ON {buffer}", quote_ident(&old)),
            &[],
        )?;
    }
    // The sub-selects make the checks one initplan each per scan, not calls per row. Every
    // operator is named with its schema: whatever search_path this runs in, the policy means this.
    let source = source.to_u32();
    spi::exec(
        &format!(
            "CREATE POLICY {BUFFER_POLICY} ON {buffer} FOR SELECT
               USING ((SELECT pg_catalog.has_table_privilege({source}::pg_catalog.oid, 'SELECT')
                              AND pg_catalog.has_schema_privilege(c.relnamespace, 'USAGE')
                              AND NOT pg_catalog.row_security_active(c.oid)
                         FROM pg_catalog.pg_class c
                        WHERE c.oid OPERATOR(pg_catalog.=) {source}::pg_catalog.oid)
                      OR (SELECT pg_catalog.pg_has_role('{WORKER_ROLE}', 'USAGE')))"
        ),
        &[],
    )
}

/// ANALYZE of a buffer — autovacuum's, anyone's — runs as its owner, pgtrickle_capture, and calls
/// its column types' code: a range type's `subtype_diff`, which any user may write. Columns of types
/// made after initdb (users' and extensions') are left out of the statistics (`SET STATISTICS 0`),
/// so that no user's code runs as the role that owns every buffer (a review made it put a trigger on
/// another's buffer that way). A refresh plans on a buffer's row count, not on those columns.
fn skip_statistics_of_users_types(buffer: &QualifiedName) -> PgtResult<()> {
    let columns: Vec<String> = spi::rows(
        "SELECT attname::text AS name FROM pg_catalog.pg_attribute
          WHERE attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)
            AND attnum OPERATOR(pg_catalog.>) 0 AND NOT attisdropped
            AND atttypid OPERATOR(pg_catalog.>=) $2::pg_catalog.oid
            AND attstattarget OPERATOR(pg_catalog.<>) 0
          ORDER BY attnum",
        &[
            buffer.quoted().as_str().into(),
            Oid::from(pgrx::pg_sys::FirstNormalObjectId).into(),
        ],
        |r| spi::col::<String>(r, "name"),
    )?;
    if columns.is_empty() {
        return Ok(());
    }
    let changes: Vec<String> = columns
        .iter()
        .map(|c| format!("ALTER COLUMN {} SET STATISTICS 0", quote_ident(c)))
        .collect();
    spi::exec(&format!("ALTER TABLE {buffer} {}", changes.join(", ")), &[])
}

/// The change buffers' row-level policy, by version (`protect_buffer`): 2 since 2026-12-07 (the
/// source's schema and row-level security checked too).
const BUFFER_POLICY: &str = "pgtrickle_source_readers_2";

/// The role external workers' login roles are granted; its members read every change buffer
/// (workers pull batches themselves).
pub(crate) const WORKER_ROLE: &str = "pgtrickle_worker";

/// A refresh reads its sources' change buffers as the stream table's owner: let `owner` read those
/// of `sources` (buffers belong to whoever installed capture first). Only what the owner can read
/// anyway: a refresh reads the sources themselves as the owner too, which fails without SELECT.
pub fn grant_readers(sources: &[Oid], owner: Oid) -> PgtResult<()> {
    let buffers: Vec<String> = sources.iter().map(|&s| buffer_name(s).quoted()).collect();
    let missing: Vec<String> = spi::rows(
        "SELECT b AS buffer FROM pg_catalog.unnest($1::text[]) AS b
          WHERE pg_catalog.to_regclass(b) IS NOT NULL
            AND NOT pg_catalog.has_table_privilege($2, pg_catalog.to_regclass(b), 'SELECT')",
        &[buffers.into(), owner.into()],
        |r| spi::col::<String>(r, "buffer"),
    )?;
    let schema = spi::one::<bool>(
        "SELECT pg_catalog.has_schema_privilege($1, $2, 'USAGE')",
        &[owner.into(), SCHEMA.into()],
    )?;
    if missing.is_empty() && schema == Some(true) {
        return Ok(());
    }
    let role = crate::catalog::names::role_name(owner)?;
    if schema != Some(true) {
        spi::exec(&format!("GRANT USAGE ON SCHEMA {SCHEMA} TO {role}"), &[])?;
    }
    for buffer in missing {
        spi::exec(&format!("GRANT SELECT ON {buffer} TO {role}"), &[])?;
    }
    Ok(())
}

/// (Re)writes the function the TRUNCATE triggers run. It appends a replaced row to the buffer
/// (replaced.rs): a reader whose batch holds it refreshes FULL, saying the table was truncated. An
/// insert, so a TRUNCATE at REPEATABLE READ does not fail because a refresh committed since its
/// snapshot — as it did when it marked the readers' catalog rows, which a 0.1.0 catalog (without the
/// change signal) still does.
fn write_truncate_function(source: Oid, table: &QualifiedName) -> PgtResult<()> {
    let body = if crate::catalog::version::at_least_0_2_0()? {
        format!(
            "PERFORM pgtrickle._capture_truncate({}::pg_catalog.oid);",
            source.to_u32()
        )
    } else {
        let mark = crate::catalog::reinit::mark_sql(
            &crate::catalog::readers_of(&source.to_u32().to_string(), ""),
            &quote_literal(&format!("{table} was truncated")),
        )?;
        format!("{mark};")
    };
    spi::exec(
        &format!(
            "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
               SET search_path = pg_catalog, pg_temp AS $pgt$
             BEGIN
               {body}
               RETURN NULL;
             END $pgt$",
            truncate_function(source)
        ),
        &[],
    )?;
    // Only its trigger runs it: nobody may make a trigger of their own run it (CREATE TRIGGER
    // needs EXECUTE; firing does not), to append replaced rows to another's buffer.
    spi::exec(
        &format!(
            "REVOKE ALL ON FUNCTION {}() FROM PUBLIC",
            truncate_function(source)
        ),
        &[],
    )
}

/// (Re)writes the capture function for the source's current columns.
fn write_capture_function(source: Oid, columns: &[(String, String)]) -> PgtResult<()> {
    let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
    let target = if names.is_empty() {
        String::new()
    } else {
        format!(", {}", ident_list(&names))
    };
    let from = |alias: &str| {
        names
            .iter()
            .map(|n| format!(", {alias}.{}", quote_ident(n)))
            .collect::<String>()
    };
    let buffer = buffer_name(source);
    let capture = capture_function(source);
    // Tells the coordinator at commit that the source changed (cdc/signal.rs); a 0.1.0 catalog has
    // no such function until the update, which rewrites these functions. Called as a condition, not
    // with PERFORM: PL/pgSQL evaluates a simple expression directly, where PERFORM starts an executor
    // on every call (measured: about 2% of a single-row UPDATE's cost).
    let signal = if spi::one::<bool>(
        "SELECT pg_catalog.to_regprocedure('pgtrickle._note_change(oid)') IS NOT NULL",
        &[],
    )? == Some(true)
    {
        format!(
            "IF pgtrickle._note_change({}::pg_catalog.oid) IS NULL THEN END IF;",
            source.to_u32()
        )
    } else {
        String::new()
    };
    spi::exec(
        &format!(
            "CREATE OR REPLACE FUNCTION {capture}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
               SET search_path = pg_catalog, pg_temp AS $pgt$
             BEGIN
               {signal}
               -- One statement per event: an UPDATE's old and new rows in one INSERT.
               IF TG_OP = 'INSERT' THEN
                 INSERT INTO {buffer} (__pgt_xid, __pgt_w{target})
                 SELECT pg_catalog.pg_current_xact_id(), 1{new} FROM pgt_new n;
               ELSIF TG_OP = 'DELETE' THEN
                 INSERT INTO {buffer} (__pgt_xid, __pgt_w{target})
                 SELECT pg_catalog.pg_current_xact_id(), -1{old} FROM pgt_old o;
               ELSE
                 INSERT INTO {buffer} (__pgt_xid, __pgt_w{target})
                 SELECT pg_catalog.pg_current_xact_id(), 1{new} FROM pgt_new n
                 UNION ALL
                 SELECT pg_catalog.pg_current_xact_id(), -1{old} FROM pgt_old o;
               END IF;
               RETURN NULL;
             END $pgt$",
            new = from("n"),
            old = from("o"),
        ),
        &[],
    )?;
    let values = |record: &str| {
        names
            .iter()
            .map(|n| format!(", {record}.{}", quote_ident(n)))
            .collect::<String>()
    };
    spi::exec(
        &format!(
            "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
               SET search_path = pg_catalog, pg_temp AS $pgt$
             BEGIN
               {signal}
               IF TG_OP <> 'INSERT' THEN
                 INSERT INTO {buffer} (__pgt_xid, __pgt_w{target}) VALUES (pg_catalog.pg_current_xact_id(), -1{old});
               END IF;
               IF TG_OP <> 'DELETE' THEN
                 INSERT INTO {buffer} (__pgt_xid, __pgt_w{target}) VALUES (pg_catalog.pg_current_xact_id(), 1{new});
               END IF;
               RETURN NULL;
             END $pgt$",
            row_capture_function(source),
            old = values("OLD"),
            new = values("NEW"),
        ),
        &[],
    )
}

/// Whether any of `columns` (of `source`) is of a domain type.
fn any_domain(source: Oid, columns: &[(String, String)]) -> PgtResult<bool> {
    let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
    Ok(spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                          JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
                         WHERE a.attrelid OPERATOR(pg_catalog.=) $1
                           AND a.attname OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.name[])
                           AND t.typtype OPERATOR(pg_catalog.=) 'd')",
        &[source.into(), names.into()],
    )? == Some(true))
}

/// Whether `source` has a change buffer: some DIFFERENTIAL or AUTO stream table reads it.
pub fn is_captured(source: Oid) -> PgtResult<bool> {
    Ok(existing(&buffer_name(source))?.is_some())
}

fn existing(name: &QualifiedName) -> PgtResult<Option<Oid>> {
    spi::one::<Oid>(
        "SELECT pg_catalog.to_regclass($1)::oid",
        &[name.quoted().as_str().into()],
    )
}

fn lookup_oid(name: &QualifiedName) -> PgtResult<Oid> {
    existing(name)?.ok_or_else(|| PgtError::internal(format!("{name} not found after creation")))
}

fn existing_function(name: &QualifiedName) -> PgtResult<Option<Oid>> {
    spi::one::<Oid>(
        "SELECT pg_catalog.to_regprocedure($1 || '()')::oid",
        &[name.quoted().as_str().into()],
    )
}

fn lookup_function(name: &QualifiedName) -> PgtResult<Oid> {
    existing_function(name)?
        .ok_or_else(|| PgtError::internal(format!("{name}() not found after creation")))
}

/// Installs signal triggers on `source` and its descendants unless there already (members.rs,
/// `Family::Signal`), taking turns with other sessions as [`ensure_capture`] does. Idempotent.
pub fn ensure_signals(source: Oid) -> PgtResult<()> {
    consumers_lock(source).acquire(Scope::Transaction);
    // SAFETY: processes pending catalog invalidations, as any lock acquisition on a relation does.
    unsafe { pgrx::pg_sys::AcceptInvalidationMessages() };
    let _guard = RearmGuard::enter();
    members::rearm(Family::Signal, source, true)?;
    Ok(())
}

/// After DDL touching a source that FULL stream tables skip refreshes of while it is unchanged:
/// any ALTER can change what it holds without a write (a column retyped, a partition attached or
/// detached), so those stream tables refresh once; and new members get their signal triggers.
fn signals_altered(source: Oid) -> PgtResult<()> {
    let watched = spi::one::<bool>(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables st WHERE st.skip_unchanged AND {})",
            crate::catalog::readers_of("$1", "")
        ),
        &[source.into()],
    )? == Some(true);
    if !watched {
        return Ok(());
    }
    // A view a FULL stream table reads is a source too: it has no triggers of its own (the tables
    // it reads now are armed when its readers reinitialise).
    // SAFETY: a catalog lookup of the relation's kind.
    let kind = unsafe { pgrx::pg_sys::get_rel_relkind(source) } as u8;
    if matches!(
        kind,
        pgrx::pg_sys::RELKIND_RELATION | pgrx::pg_sys::RELKIND_PARTITIONED_TABLE
    ) {
        members::rearm(Family::Signal, source, false)?;
    }
    let table = crate::catalog::names::qualified_name_of(source)?;
    spi::exec(
        &reinit::mark_sql(
            &format!(
                "skip_unchanged AND {}",
                crate::catalog::readers_of("$1", "")
            ),
            "$2",
        )?,
        &[source.into(), format!("{table} was altered").into()],
    )
}

/// Removes capture from sources no stream table reads any more.
pub fn collect_garbage() -> PgtResult<()> {
    spi::exec("SELECT pgtrickle._cdc_gc()", &[])
}

/// Drops the capture of `sources`: all their buffers first, then their capture triggers on the
/// sources and their descendants, then their functions — CASCADE, so the triggers running them go
/// too. (Whatever those drops make the event triggers re-arm finds no buffer left to re-arm.)
fn drop_capture(sources: &[Oid]) -> PgtResult<()> {
    crate::refresh::quietly(|| drop_capture_of(sources))
}

fn drop_capture_of(sources: &[Oid]) -> PgtResult<()> {
    for &source in sources {
        spi::exec(
            &format!("DROP TABLE IF EXISTS {}", buffer_name(source)),
            &[],
        )?;
    }
    for &source in sources {
        members::drop_native_triggers(Family::Capture, source)?;
        for function in [
            capture_function(source),
            truncate_function(source),
            row_capture_function(source),
        ] {
            spi::exec(
                &format!("DROP FUNCTION IF EXISTS {function}() CASCADE"),
                &[],
            )?;
        }
    }
    Ok(())
}

/// Drops all capture and signal triggers but those of `keep`: after a restore, the dumped buffers,
/// functions and triggers are named after the OIDs of the dumped database, which mean nothing here
/// (or another table).
/// Returns how many sources' capture went.
pub fn drop_capture_except(keep: &[Oid]) -> PgtResult<usize> {
    let _guard = RearmGuard::enter();
    let stale: Vec<Oid> = spi::rows(
        "SELECT DISTINCT pg_catalog.substring(name, '_([0-9]+)$')::pg_catalog.oid AS source FROM (
                SELECT relname::text AS name FROM pg_catalog.pg_class WHERE relnamespace = $1::pg_catalog.regnamespace
                UNION ALL
                SELECT proname::text FROM pg_catalog.pg_proc WHERE pronamespace = $1::pg_catalog.regnamespace) o
          WHERE name ~ '^(changes|capture|capture_row|truncated)_[0-9]+$'
            AND pg_catalog.substring(name, '_([0-9]+)$')::pg_catalog.oid <> ALL ($2::pg_catalog.oid[])",
        &[SCHEMA.into(), keep.to_vec().into()],
        |r| spi::col::<Oid>(r, "source"),
    )?;
    drop_capture(&stale)?;
    members::drop_signals_except(keep)?;
    Ok(stale.len())
}

/// After DDL touching a source (ALTER TABLE, a new partition or child, a dropped capture trigger):
/// keep capture in step with its columns, descendants and trigger states. Added columns are simply
/// added to the buffer; anything else (a dropped or retyped column, an added column of a domain)
/// rebuilds the buffer. Whenever
/// changes may have been missed, every dependent stream table reinitialises with a FULL refresh,
/// which also re-checks its query (and its mode: a source that became a partition is read FULL).
pub fn source_altered(source: Oid) -> PgtResult<()> {
    // A source OID with no relation: a restored catalog's (or a restored capture trigger's name),
    // before `restore_stream_tables()` maps it to the table as it is now. Nothing to keep in step.
    if crate::catalog::stream_tables::pg_class_row(source, |_| ()).is_none() {
        return Ok(());
    }
    // Our own DDL below fires the event triggers again: the outer call already does the work.
    let Some(_guard) = RearmGuard::enter() else {
        return Ok(());
    };
    signals_altered(source)?;
    let buffer = buffer_name(source);
    let Some(buffer_oid) = existing(&buffer)? else {
        return Ok(());
    };
    let now = capture_columns(source)?;
    let captured: Vec<(String, String)> =
        collated_columns(buffer_oid)?.into_iter().skip(2).collect();
    let uncollated = |t: &str| t.split(" COLLATE ").next().unwrap_or(t).to_string();
    let only_additions = captured.len() <= now.len()
        && captured
            .iter()
            .zip(&now)
            .all(|(a, b)| a.0 == b.0 && uncollated(&a.1) == uncollated(&b.1))
        // Adding a column of a domain to a table with rows checks each against the domain: the
        // source owner's CHECK, which must not run as pg_trickle (a new buffer has no rows).
        && !any_domain(source, &now[captured.len()..])?;
    let table = crate::catalog::names::qualified_name_of(source)?;
    if !only_additions {
        reinit::mark_dependents(source, &format!("the columns of {table} changed"))?;
        drop_capture(&[source])?;
        return install(source);
    }
    // A buffer made before buffers had their sources' collations takes them (no rewrite).
    for ((name, had), (_, has)) in captured.iter().zip(&now) {
        if had != has {
            spi::exec(
                &format!(
                    "ALTER TABLE {buffer} ALTER COLUMN {} TYPE {has}",
                    quote_ident(name)
                ),
                &[],
            )?;
        }
    }
    for (name, type_sql) in &now[captured.len()..] {
        spi::exec(
            &format!(
                "ALTER TABLE {buffer} ADD COLUMN {} {type_sql}",
                quote_ident(name)
            ),
            &[],
        )?;
    }
    let native = native_capture_function()?.is_some();
    if native {
        // PL/pgSQL capture of an older catalog: its triggers go with its functions (in this
        // transaction, so no write is missed) and the capture trigger function's take their place.
        if existing_function(&capture_function(source))?.is_some()
            || existing_function(&row_capture_function(source))?.is_some()
        {
            // Marked first, so the reason is this one and not the dropped triggers' (sql_drop).
            reinit::mark_dependents(
                source,
                &format!("capture of {table} was re-armed: the capture trigger function replaces the PL/pgSQL capture of an older version, whose triggers may have missed replicated writes"),
            )?;
            for function in [capture_function(source), row_capture_function(source)] {
                spi::exec(
                    &format!("DROP FUNCTION IF EXISTS {function}() CASCADE"),
                    &[],
                )?;
            }
            members::rearm(Family::Capture, source, true)?;
        }
    } else {
        // Always: the functions an older version wrote may lack what this one writes (the change signal).
        write_capture_function(source, &now)?;
    }
    // Functions written by an older version learn to say why; their buffers learn who may read them.
    write_truncate_function(source, &table)?;
    protect_buffer(source)?;
    let became_member = spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhrelid = $1)",
        &[source.into()],
    )?;
    let row_security = spi::one::<bool>(
        "SELECT relrowsecurity FROM pg_catalog.pg_class WHERE oid = $1",
        &[source.into()],
    )?;
    if row_security == Some(true) {
        // Enabled (or still on): dependents re-decide whether their owner may read it through deltas.
        reinit::mark_dependents(source, &format!("row-level security of {table} is enabled"))?;
    }
    if let Some(foreign) = members::foreign_descendant(source)? {
        reinit::mark_dependents(
            source,
            &format!("{table} gained the foreign-table partition or child {foreign}"),
        )?;
    }
    if became_member == Some(true) {
        reinit::mark_dependents(
            source,
            &format!("{table} became a partition or inheritance child"),
        )?;
    }
    if !native && existing_function(&row_capture_function(source))?.is_none() {
        // Capture from before row triggers (0.1.0): add the row function; rearm adds the triggers.
        write_capture_function(source, &now)?;
        depend::auto_function_on_source(lookup_function(&row_capture_function(source))?, source);
    }
    hand_to_capture_role(source)?;
    if members::rearm(Family::Capture, source, false)? {
        reinit::mark_dependents(
            source,
            &format!("capture of {table} was re-armed: a partition or child attached, detached or dropped, or a capture trigger disabled or dropped"),
        )?;
    }
    Ok(())
}

thread_local! {
    static REARMING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this backend as re-arming capture until dropped (also when an ERROR unwinds).
struct RearmGuard;

impl RearmGuard {
    fn enter() -> Option<RearmGuard> {
        REARMING.with(|r| {
            if r.replace(true) {
                None
            } else {
                Some(RearmGuard)
            }
        })
    }
}

impl Drop for RearmGuard {
    fn drop(&mut self) {
        REARMING.with(|r| r.set(false));
    }
}
