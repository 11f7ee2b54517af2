//! Capture that sees every write to a source, whatever route it takes:
//! - **partitions and inheritance children**: a statement trigger fires only for the table a
//!   statement names, so DML aimed directly at a partition would bypass the root's triggers. Every
//!   descendant of a source carries member triggers that run the root's capture function (columns
//!   are taken by name, so a partition's own column order does not matter). Writes through the root
//!   fire only the root's triggers, whose transition tables hold the rows of every partition.
//! - **replication and restores**: capture triggers are `ENABLE ALWAYS`, so they fire under
//!   `session_replication_role = replica` too (logical replication apply, `pg_restore
//!   --disable-triggers` loads).
//! - **changed membership or trigger state** (ATTACH/DETACH PARTITION, a new child with rows, a
//!   dropped partition, a capture trigger disabled, dropped or re-enabled by hand): re-armed at once,
//!   and the dependents reinitialise with a FULL refresh, because rows may have come or gone unseen.
//!   While a capture trigger stays disabled, every refresh of its dependents is FULL.

use super::{capture_function, truncate_function, ROOT_TRIGGERS};
use crate::error::PgtResult;
use crate::spi;
use pgrx::pg_sys::Oid;

/// (name suffix, event, REFERENCING clause) of the capture triggers; TRUNCATE has its own function.
const EVENTS: [(&str, &str, &str); 3] = [
    ("ins", "INSERT", "REFERENCING NEW TABLE AS pgt_new"),
    ("upd", "UPDATE", "REFERENCING OLD TABLE AS pgt_old NEW TABLE AS pgt_new"),
    ("del", "DELETE", "REFERENCING OLD TABLE AS pgt_old"),
];

/// Creates the capture triggers of `source` on `table` (the source itself or one of its
/// descendants), firing always.
pub(super) fn arm(source: Oid, table: Oid) -> PgtResult<()> {
    let on = spi::one::<String>("SELECT $1::pg_catalog.regclass::text", &[table.into()])?.unwrap_or_default();
    let names = trigger_names(source, table);
    for ((_, event, referencing), name) in EVENTS.iter().zip(&names) {
        spi::exec(
            &format!(
                "CREATE TRIGGER {name} AFTER {event} ON {on} {referencing} FOR EACH STATEMENT EXECUTE FUNCTION {}()",
                capture_function(source)
            ),
            &[],
        )?;
    }
    spi::exec(
        &format!(
            "CREATE TRIGGER {} AFTER TRUNCATE ON {on} FOR EACH STATEMENT EXECUTE FUNCTION {}()",
            names[3],
            truncate_function(source)
        ),
        &[],
    )?;
    for name in &names {
        spi::exec(&format!("ALTER TABLE {on} ENABLE ALWAYS TRIGGER {name}"), &[])?;
    }
    Ok(())
}

/// The four trigger names: the source's own keep their historic names; a descendant's name the
/// source, so a partition that is a source itself can carry both.
fn trigger_names(source: Oid, table: Oid) -> Vec<String> {
    if source == table {
        ROOT_TRIGGERS.iter().map(|s| s.to_string()).collect()
    } else {
        ["ins", "upd", "del", "trunc"].iter().map(|e| format!("pgtrickle_capture_{}_{e}", source.to_u32())).collect()
    }
}

/// Brings the capture of `source` in line with its current descendants and trigger states. Returns
/// whether changes may have been missed (the dependents must reinitialise).
pub(super) fn rearm(source: Oid) -> PgtResult<bool> {
    let mut lossy = false;
    let functions = [capture_function(source), truncate_function(source)];
    let function_oids: Vec<Oid> = functions
        .iter()
        .filter_map(|f| {
            spi::one::<Oid>("SELECT pg_catalog.to_regprocedure($1 || '()')::oid", &[f.quoted().as_str().into()]).ok().flatten()
        })
        .collect();
    if function_oids.len() < 2 {
        return Ok(false);
    }
    // Which relations carry how many of the source's triggers now.
    let armed: Vec<(Oid, i64)> = spi::rows(
        "SELECT tgrelid, pg_catalog.count(*) AS n FROM pg_catalog.pg_trigger
          WHERE tgfoid = ANY($1) AND NOT tgisinternal GROUP BY tgrelid",
        &[function_oids.clone().into()],
        |r| Ok((spi::col(r, "tgrelid")?, spi::col(r, "n")?)),
    )?;
    let members = descendants(source)?;
    for &table in std::iter::once(&source).chain(members.iter()) {
        match armed.iter().find(|(rel, _)| *rel == table).map(|(_, n)| *n) {
            Some(4) => {}
            found => {
                // Missing (a new partition or child) or partly dropped by hand: arm it afresh.
                if found.is_some() {
                    disarm(source, table)?;
                }
                arm(source, table)?;
                lossy |= found.is_some() || table == source || has_rows(table)?;
            }
        }
    }
    for &(table, _) in armed.iter().filter(|(rel, _)| *rel != source && !members.contains(rel)) {
        // Detached or no longer inheriting: its rows left the source unseen.
        disarm(source, table)?;
        lossy = true;
    }
    // Trigger states: ALWAYS is the only state that captures everything. A disabled trigger is the
    // user's choice (refreshes are FULL until it is enabled again); any other state is set back.
    let states: Vec<(Oid, String, String)> = spi::rows(
        "SELECT tgrelid, tgname::text AS name, tgenabled::text AS state FROM pg_catalog.pg_trigger
          WHERE tgfoid = ANY($1) AND NOT tgisinternal",
        &[function_oids.into()],
        |r| Ok((spi::col(r, "tgrelid")?, spi::col(r, "name")?, spi::col(r, "state")?)),
    )?;
    for (table, name, state) in states {
        match state.as_str() {
            "A" => {}
            "D" => lossy = true,
            _ => {
                let on = spi::one::<String>("SELECT $1::pg_catalog.regclass::text", &[table.into()])?.unwrap_or_default();
                spi::exec(&format!("ALTER TABLE {on} ENABLE ALWAYS TRIGGER {}", crate::dvm::sql::quote_ident(&name)), &[])?;
                lossy = true;
            }
        }
    }
    Ok(lossy)
}

/// Whether a capture trigger of one of `sources` is disabled: their changes are not captured, so a
/// refresh must be FULL.
pub fn suspended(sources: &[Oid]) -> PgtResult<bool> {
    let names: Vec<String> = sources.iter().map(|&s| format!("{}()", capture_function(s).quoted())).collect();
    Ok(spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                         WHERE t.tgenabled = 'D'
                           AND t.tgfoid IN (SELECT pg_catalog.to_regprocedure(f)::oid FROM pg_catalog.unnest($1::text[]) AS f))",
        &[names.into()],
    )? == Some(true))
}

fn disarm(source: Oid, table: Oid) -> PgtResult<()> {
    let on = spi::one::<String>("SELECT $1::pg_catalog.regclass::text", &[table.into()])?.unwrap_or_default();
    for name in trigger_names(source, table) {
        spi::exec(&format!("DROP TRIGGER IF EXISTS {name} ON {on}"), &[])?;
    }
    Ok(())
}

/// Every partition or inheritance child below `source`, at any depth, that can hold or route rows.
fn descendants(source: Oid) -> PgtResult<Vec<Oid>> {
    spi::rows(
        "WITH RECURSIVE tree(relid) AS (
             SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent = $1
             UNION
             SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree t ON i.inhparent = t.relid)
         SELECT t.relid FROM tree t JOIN pg_catalog.pg_class c ON c.oid = t.relid
          WHERE c.relkind IN ('r', 'p') ORDER BY 1",
        &[source.into()],
        |r| spi::col::<Oid>(r, "relid"),
    )
}

fn has_rows(table: Oid) -> PgtResult<bool> {
    let on = spi::one::<String>("SELECT $1::pg_catalog.regclass::text", &[table.into()])?.unwrap_or_default();
    Ok(spi::one::<bool>(&format!("SELECT EXISTS (SELECT 1 FROM ONLY {on})"), &[])? == Some(true))
}
