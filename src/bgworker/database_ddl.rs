//! Stepping aside for database-level DDL.
//!
//! `DROP DATABASE`, `ALTER DATABASE ... RENAME TO`, `ALTER DATABASE ... SET TABLESPACE` and
//! `CREATE DATABASE ... TEMPLATE` fail while any other session is connected to the database they act
//! on — and a scheduler always is. PostgreSQL moves its own autovacuum workers out of the way; this
//! part of pg_trickle's ProcessUtility hook (crate::utility_hook) does the same for its scheduler: it holds the database (the launcher
//! starts no scheduler there), terminates its coordinator and refresh workers, runs the statement and releases the hold.
//! A scheduler comes back at once if the database still exists.

use super::shmem;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;
use std::ffi::CStr;

/// Runs a utility statement (`node`, run by `run`), first stepping aside if it needs a database to
/// itself (crate::utility_hook calls it for every utility statement).
///
/// # Safety
/// `node` must be a valid parse node.
pub unsafe fn run_stepping_aside(
    node: *mut pg_sys::Node,
    run: impl FnOnce() + std::panic::UnwindSafe,
) {
    // SAFETY: as the caller promises.
    let target = unsafe { exclusive_database_of(node) };
    let Some(db) = target else {
        run();
        return;
    };
    let Ok(scheduler) = shmem::hold_database(db) else {
        run(); // no room to record the hold: behave as without pg_trickle
        return;
    };
    // Its coordinator and refresh workers (the hold keeps new ones out).
    for pid in scheduler
        .into_iter()
        .chain(super::pool::worker_pids(db.to_u32()))
    {
        stop_scheduler(pid, db);
    }
    PgTryBuilder::new(run)
        .finally(|| {
            shmem::release_database(db);
            shmem::post_request(db);
        })
        .execute();
}

/// The database a statement needs to itself (no other sessions connected), if any.
///
/// # Safety
/// `node` must be a valid parse node.
unsafe fn exclusive_database_of(node: *mut pg_sys::Node) -> Option<pg_sys::Oid> {
    let name: *const std::ffi::c_char = unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_DropdbStmt => (*(node as *mut pg_sys::DropdbStmt)).dbname,
            pg_sys::NodeTag::T_RenameStmt => {
                let stmt = &*(node as *mut pg_sys::RenameStmt);
                if stmt.renameType != pg_sys::ObjectType::OBJECT_DATABASE {
                    return None;
                }
                stmt.subname
            }
            pg_sys::NodeTag::T_AlterDatabaseStmt => {
                let stmt = &*(node as *mut pg_sys::AlterDatabaseStmt);
                option_value(stmt.options, c"tablespace")?;
                stmt.dbname
            }
            pg_sys::NodeTag::T_CreatedbStmt => {
                let stmt = &*(node as *mut pg_sys::CreatedbStmt);
                option_value(stmt.options, c"template")?
            }
            _ => return None,
        }
    };
    if name.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated name from the parse tree; missing_ok, so no ERROR for unknown names.
    let oid = unsafe { pg_sys::get_database_oid(name, true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// The string value of the `DefElem` called `name` in an options list.
///
/// # Safety
/// `options` must be a List of DefElem (or NIL).
unsafe fn option_value(options: *mut pg_sys::List, name: &CStr) -> Option<*const std::ffi::c_char> {
    let list = unsafe { PgList::<pg_sys::DefElem>::from_pg(options) };
    let found = list.iter_ptr().find(|&def| unsafe {
        !(*def).defname.is_null() && CStr::from_ptr((*def).defname) == name && !(*def).arg.is_null()
    });
    // SAFETY: a DefElem with an argument; defGetString raises a normal ERROR for a non-string one.
    found.map(|def| unsafe { pg_sys::defGetString(def) as *const _ })
}

/// Sends SIGTERM to `db`'s scheduler — what PostgreSQL does to autovacuum workers in the same
/// situation — after checking that `pid` is still a process connected to `db`.
fn stop_scheduler(pid: i32, db: pg_sys::Oid) {
    // SAFETY: BackendPidGetProc reads the proc array under its own lock; PGPROCs are never freed,
    // and only its database is read.
    let still_there = unsafe {
        let proc = pg_sys::BackendPidGetProc(pid);
        !proc.is_null() && (*proc).databaseId == db
    };
    if still_there {
        // SAFETY: signalling a child process of this cluster by pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}
