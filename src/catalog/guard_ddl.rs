//! DDL that would change a stream table's contents or protection behind pg_trickle's back, seen
//! from the ProcessUtility hook. Refused before it runs: a column's type changed (`USING` rewrites
//! the rows, even to the same type), the table made unlogged (crash recovery would empty it with no
//! trace in any change buffer), a table made its inheritance child (whose rows a `SELECT` of the
//! stream table would show). Its write guard dropped is put back (as capture triggers are): a
//! `pg_restore --clean` drops every trigger before its table, so refusing would break restores.
//! Column lists changed otherwise are caught after the fact (`guard::check_altered`); disabling the
//! guard stays an expert's choice.

use super::guard::{is_guard, own_write_active, GUARD_TRIGGER};
use crate::dvm::sql::QualifiedName;
use crate::error::{PgtError, PgtResult, SqlState};
use pgrx::pg_sys::{self, Oid};
use pgrx::PgList;
use std::ffi::CStr;

/// Refuses `node` if it is such a statement on a stream table.
///
/// # Safety
/// `node` must be a valid utility statement's parse node, inside a transaction.
pub unsafe fn check(node: *mut pg_sys::Node) -> PgtResult<()> {
    if own_write_active() {
        return Ok(());
    }
    // SAFETY: the tag says which node it is; lists hold the node types PostgreSQL's grammar puts there.
    unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_AlterTableStmt => {
                let stmt = node as *mut pg_sys::AlterTableStmt;
                if (*stmt).objtype != pg_sys::ObjectType::OBJECT_TABLE {
                    return Ok(());
                }
                for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds).iter_ptr() {
                    let unlogged = match (*cmd).subtype {
                        pg_sys::AlterTableType::AT_AlterColumnType => false,
                        pg_sys::AlterTableType::AT_SetUnLogged => true,
                        pg_sys::AlterTableType::AT_AddInherit => {
                            refuse_child((*cmd).def as *mut pg_sys::RangeVar)?;
                            continue;
                        }
                        _ => continue,
                    };
                    let Some(name) = stream_table((*stmt).relation) else {
                        continue;
                    };
                    return Err(match unlogged {
                        false => super::guard::columns_changed(&name),
                        true => PgtError::new(
                            SqlState::WrongObjectType,
                            format!("cannot make stream table {name} unlogged"),
                        )
                        .detail("Crash recovery empties an unlogged table, and nothing would tell its refreshes to fill it again."),
                    });
                }
            }
            pg_sys::NodeTag::T_CreateStmt => {
                let stmt = node as *mut pg_sys::CreateStmt;
                for parent in PgList::<pg_sys::RangeVar>::from_pg((*stmt).inhRelations).iter_ptr() {
                    refuse_child(parent)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuses a new inheritance child of `parent` if that is a stream table.
///
/// # Safety
/// `parent` must be a valid RangeVar.
unsafe fn refuse_child(parent: *mut pg_sys::RangeVar) -> PgtResult<()> {
    // SAFETY: as the caller promises.
    match unsafe { stream_table(parent) } {
        Some(name) => Err(PgtError::new(
            SqlState::WrongObjectType,
            format!("cannot inherit from stream table {name}"),
        )
        .detail("A child's rows would show in every query of the stream table, which holds its query's rows only.")),
        None => Ok(()),
    }
}

/// The stream tables whose write guard `node` drops (`DROP TRIGGER pgtrickle_guard ON ...`), to put
/// it back once the statement has run ([`rearm`]).
///
/// # Safety
/// `node` must be a valid utility statement's parse node, inside a transaction.
pub unsafe fn dropped_guards(node: *mut pg_sys::Node) -> Vec<Oid> {
    if own_write_active() {
        return Vec::new();
    }
    // SAFETY: the tag says which node it is; a DROP TRIGGER's objects are name lists (String nodes).
    unsafe {
        if (*node).type_ != pg_sys::NodeTag::T_DropStmt {
            return Vec::new();
        }
        let stmt = node as *mut pg_sys::DropStmt;
        if (*stmt).removeType != pg_sys::ObjectType::OBJECT_TRIGGER {
            return Vec::new();
        }
        let mut guarded = Vec::new();
        for object in PgList::<pg_sys::List>::from_pg((*stmt).objects).iter_ptr() {
            let names = PgList::<pg_sys::String>::from_pg(object);
            let Some(trigger) = names.get_ptr(names.len().saturating_sub(1)) else {
                continue;
            };
            if CStr::from_ptr((*trigger).sval).to_bytes() != GUARD_TRIGGER.as_bytes() {
                continue;
            }
            let table = pg_sys::list_copy_head(object, names.len() as i32 - 1);
            if let Some(relid) = guarded_relation(pg_sys::makeRangeVarFromNameList(table)) {
                guarded.push(relid);
            }
        }
        guarded
    }
}

/// Puts the write guard back on each stream table of `relids` that is still there.
pub fn rearm(relids: &[Oid]) -> PgtResult<()> {
    for &relid in relids {
        let Some(st) = crate::catalog::stream_tables::load_by_relid(relid)? else {
            continue;
        };
        let name = crate::catalog::names::qualified_name_of(relid)?;
        let _own = super::guard::OwnWrite::begin();
        super::guard::install(&name, st.pgt_id)?;
        pgrx::warning!(
            "pg_trickle: the write guard of stream table {name} was put back; only refreshes write a stream table (to write it yourself anyway: ALTER TABLE {name} DISABLE TRIGGER {GUARD_TRIGGER})"
        );
    }
    Ok(())
}

/// The relation's name, if it is a stream table (carries the write guard).
///
/// # Safety
/// `relation` must be a valid RangeVar, inside a transaction.
unsafe fn stream_table(relation: *mut pg_sys::RangeVar) -> Option<QualifiedName> {
    // SAFETY: as the caller promises.
    let relid = unsafe { guarded_relation(relation) }?;
    crate::catalog::names::qualified_name_of(relid).ok()
}

/// The relation, if it exists and carries the write guard.
///
/// # Safety
/// `relation` must be a valid RangeVar, inside a transaction.
unsafe fn guarded_relation(relation: *mut pg_sys::RangeVar) -> Option<Oid> {
    // SAFETY: a name lookup without a lock (the statement takes its own next) and a relcache entry
    // read and closed; a missing relation is the statement's to report.
    unsafe {
        let relid = pg_sys::RangeVarGetRelidExtended(
            relation,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        if relid == Oid::INVALID {
            return None;
        }
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return None;
        }
        let triggers = (*rel).trigdesc;
        let guarded = !triggers.is_null()
            && (0..(*triggers).numtriggers as usize)
                .any(|i| is_guard(&*(*triggers).triggers.add(i)));
        pg_sys::RelationClose(rel);
        guarded.then_some(relid)
    }
}
