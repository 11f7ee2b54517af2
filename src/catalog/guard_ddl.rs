//! DDL that would change a stream table's contents or protection behind pg_trickle's back, seen
//! from the ProcessUtility hook. Refused before it runs: a column's type changed (`USING` rewrites
//! the rows, even to the same type); the table made unlogged (crash recovery would empty it with no
//! trace in any change buffer); the table made an inheritance child or a partition (writes through
//! the parent would reach its rows past the guard, which fires only for statements naming it), or
//! made the parent of one (whose rows every query of it would show); its write guard renamed or
//! replaced. The guard dropped is put back (as capture triggers are): a `pg_restore --clean` drops
//! every trigger before its table, so refusing would break restores. Column lists changed otherwise
//! are caught after the fact (`guard::check_altered`); disabling the guard stays an expert's choice.
//! Stream tables are known by pg_trickle's catalog, not by their triggers, which their owner can
//! rename.

use super::guard::{columns_changed, own_write_active, GUARD_TRIGGER};
use crate::dvm::sql::QualifiedName;
use crate::error::{PgtError, PgtResult, SqlState};
use crate::spi;
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
    let refused = |what: String, detail: &str| {
        Err(PgtError::new(SqlState::WrongObjectType, what).detail(detail))
    };
    const UNLOGGED: &str =
        "Crash recovery empties an unlogged table, and nothing would tell its refreshes to fill it again.";
    const MEMBER: &str = "Writes through the parent would reach its rows past the guard, which only refreshes may pass.";
    const PARENT: &str =
        "A child's rows would show in every query of the stream table, which holds its query's rows only.";
    const GUARD: &str = "Only refreshes write a stream table; the guard refuses every other write, and a restore finds stream tables by it.";
    // SAFETY: the tag says which node it is; lists hold the node types PostgreSQL's grammar puts there.
    unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_AlterTableStmt => {
                let stmt = node as *mut pg_sys::AlterTableStmt;
                // ALTER FOREIGN TABLE ... INHERIT too.
                if !matches!(
                    (*stmt).objtype,
                    pg_sys::ObjectType::OBJECT_TABLE | pg_sys::ObjectType::OBJECT_FOREIGN_TABLE
                ) {
                    return Ok(());
                }
                for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds).iter_ptr() {
                    match (*cmd).subtype {
                        pg_sys::AlterTableType::AT_AlterColumnType => {
                            if let Some(name) = stream_table((*stmt).relation)? {
                                return Err(columns_changed(&name));
                            }
                        }
                        pg_sys::AlterTableType::AT_SetUnLogged => {
                            if let Some(name) = stream_table((*stmt).relation)? {
                                return refused(
                                    format!("cannot make stream table {name} unlogged"),
                                    UNLOGGED,
                                );
                            }
                        }
                        pg_sys::AlterTableType::AT_AddInherit => {
                            if let Some(name) = stream_table((*stmt).relation)? {
                                return refused(format!("cannot make stream table {name} inherit from another table"), MEMBER);
                            }
                            if let Some(name) = stream_table((*cmd).def as *mut pg_sys::RangeVar)? {
                                return refused(
                                    format!("cannot inherit from stream table {name}"),
                                    PARENT,
                                );
                            }
                        }
                        pg_sys::AlterTableType::AT_AttachPartition => {
                            let partition = (*((*cmd).def as *mut pg_sys::PartitionCmd)).name;
                            if let Some(name) = stream_table(partition)? {
                                return refused(
                                    format!("cannot attach stream table {name} as a partition"),
                                    MEMBER,
                                );
                            }
                        }
                        _ => {}
                    }
                }
            }
            // CREATE FOREIGN TABLE's statement starts with a CREATE TABLE's.
            pg_sys::NodeTag::T_CreateStmt | pg_sys::NodeTag::T_CreateForeignTableStmt => {
                let stmt = node as *mut pg_sys::CreateStmt;
                for parent in PgList::<pg_sys::RangeVar>::from_pg((*stmt).inhRelations).iter_ptr() {
                    if let Some(name) = stream_table(parent)? {
                        return refused(format!("cannot inherit from stream table {name}"), PARENT);
                    }
                }
            }
            pg_sys::NodeTag::T_RenameStmt => {
                let stmt = node as *mut pg_sys::RenameStmt;
                if (*stmt).renameType == pg_sys::ObjectType::OBJECT_TRIGGER
                    && is_guard_name((*stmt).subname)
                {
                    if let Some(name) = stream_table((*stmt).relation)? {
                        return refused(
                            format!("cannot rename the write guard of stream table {name}"),
                            GUARD,
                        );
                    }
                }
            }
            pg_sys::NodeTag::T_CreateTrigStmt => {
                let stmt = node as *mut pg_sys::CreateTrigStmt;
                if (*stmt).replace && is_guard_name((*stmt).trigname) {
                    if let Some(name) = stream_table((*stmt).relation)? {
                        return refused(
                            format!("cannot replace the write guard of stream table {name}"),
                            GUARD,
                        );
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The stream tables whose write guard `node` drops (`DROP TRIGGER pgtrickle_guard ON ...`), to put
/// it back once the statement has run ([`rearm`]).
///
/// # Safety
/// `node` must be a valid utility statement's parse node, inside a transaction.
pub unsafe fn dropped_guards(node: *mut pg_sys::Node) -> PgtResult<Vec<Oid>> {
    if own_write_active() {
        return Ok(Vec::new());
    }
    // SAFETY: the tag says which node it is; a DROP TRIGGER's objects are name lists (String nodes).
    unsafe {
        if (*node).type_ != pg_sys::NodeTag::T_DropStmt {
            return Ok(Vec::new());
        }
        let stmt = node as *mut pg_sys::DropStmt;
        if (*stmt).removeType != pg_sys::ObjectType::OBJECT_TRIGGER {
            return Ok(Vec::new());
        }
        let mut guarded = Vec::new();
        for object in PgList::<pg_sys::List>::from_pg((*stmt).objects).iter_ptr() {
            let names = PgList::<pg_sys::String>::from_pg(object);
            let Some(trigger) = names.get_ptr(names.len().saturating_sub(1)) else {
                continue;
            };
            if !is_guard_name((*trigger).sval) {
                continue;
            }
            let table = pg_sys::list_copy_head(object, names.len() as i32 - 1);
            let relid = relation_id(pg_sys::makeRangeVarFromNameList(table));
            if let Some(relid) = relid.filter(|&r| is_stream_table(r).unwrap_or(false)) {
                guarded.push(relid);
            }
        }
        Ok(guarded)
    }
}

/// Puts the write guard back on each stream table of `relids` that is still there.
pub fn rearm(relids: &[Oid]) -> PgtResult<()> {
    super::privilege::as_extension_owner(|| {
        for &relid in relids {
            let Some(st) = super::stream_tables::load_by_relid(relid)? else {
                continue;
            };
            let name = super::names::qualified_name_of(relid)?;
            let _own = super::guard::OwnWrite::begin();
            super::guard::install(&name, st.pgt_id)?;
            pgrx::warning!(
                "pg_trickle: the write guard of stream table {name} was put back; only refreshes write a stream table (to write it yourself anyway: ALTER TABLE {name} DISABLE TRIGGER {GUARD_TRIGGER})"
            );
        }
        Ok(())
    })
}

/// Whether a trigger name is the guard's.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string.
unsafe fn is_guard_name(name: *const std::ffi::c_char) -> bool {
    // SAFETY: as the caller promises.
    !name.is_null() && unsafe { CStr::from_ptr(name) }.to_bytes() == GUARD_TRIGGER.as_bytes()
}

/// The relation's name, if it is a stream table.
///
/// # Safety
/// `relation` must be NULL or a valid RangeVar, inside a transaction.
unsafe fn stream_table(relation: *mut pg_sys::RangeVar) -> PgtResult<Option<QualifiedName>> {
    // SAFETY: as the caller promises.
    let Some(relid) = (unsafe { relation_id(relation) }) else {
        return Ok(None);
    };
    if !is_stream_table(relid)? {
        return Ok(None);
    }
    super::names::qualified_name_of(relid).map(Some)
}

/// The relation a name resolves to now, if any (no lock: the statement takes its own next, and
/// reports a missing relation itself).
///
/// # Safety
/// `relation` must be NULL or a valid RangeVar, inside a transaction.
unsafe fn relation_id(relation: *mut pg_sys::RangeVar) -> Option<Oid> {
    if relation.is_null() {
        return None;
    }
    // SAFETY: a name lookup; missing_ok.
    let relid = unsafe {
        pg_sys::RangeVarGetRelidExtended(
            relation,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    };
    (relid != Oid::INVALID).then_some(relid)
}

/// Whether pg_trickle's catalog (read as its owner: other roles may not) has `relid` as a stream
/// table.
fn is_stream_table(relid: Oid) -> PgtResult<bool> {
    if !super::privilege::installed() {
        return Ok(false);
    }
    super::privilege::as_extension_owner(|| {
        Ok(spi::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = $1)",
            &[relid.into()],
        )?
        .unwrap_or(false))
    })
}
