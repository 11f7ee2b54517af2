//! pg_trickle's ProcessUtility hook: every utility statement passes through it, on to the hook
//! installed before it (or PostgreSQL's own). It steps the scheduler aside for database-level DDL
//! (bgworker/database_ddl.rs) and, after a `COMMIT PREPARED`, signals that the prepared
//! transaction's changes are visible (cdc/prepared.rs).

use crate::bgworker::database_ddl;
use crate::cdc::{prepared, signal};
use pgrx::pg_sys;
use pgrx::prelude::*;

static mut PREVIOUS_HOOK: pg_sys::ProcessUtility_hook_type = None;

/// Installs the hook (from `_PG_init`, while preloading).
pub fn install() {
    // SAFETY: _PG_init runs once per process, before any statement; hooks are chained by convention.
    unsafe {
        PREVIOUS_HOOK = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let call = UtilityCall {
        pstmt,
        query_string,
        read_only_tree,
        context,
        params,
        query_env,
        dest,
        qc,
    };
    // SAFETY: PostgreSQL passes a valid PlannedStmt whose utilityStmt is a parse node; the call
    // forwards its arguments unchanged; PREVIOUS_HOOK is only written by install().
    unsafe {
        let node = (*pstmt).utilityStmt;
        let commit_prepared = prepared::is_commit_prepared(node);
        database_ddl::run_stepping_aside(node, || call.forward(PREVIOUS_HOOK));
        // Reached only when the statement succeeded.
        if commit_prepared {
            signal::note_prepared_commit();
        }
    }
}

/// The arguments of one ProcessUtility call, as PostgreSQL passed them.
struct UtilityCall {
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
}

impl UtilityCall {
    /// Runs the statement through `previous` (the hook installed before ours), or PostgreSQL's own
    /// `standard_ProcessUtility`.
    ///
    /// # Safety
    /// The arguments are those PostgreSQL passed to the hook, unchanged.
    unsafe fn forward(&self, previous: pg_sys::ProcessUtility_hook_type) {
        let c = self;
        // SAFETY: as the caller promises.
        unsafe {
            match previous {
                Some(previous) => pg_sys::ffi::pg_guard_ffi_boundary(|| {
                    previous(
                        c.pstmt,
                        c.query_string,
                        c.read_only_tree,
                        c.context,
                        c.params,
                        c.query_env,
                        c.dest,
                        c.qc,
                    )
                }),
                None => pg_sys::standard_ProcessUtility(
                    c.pstmt,
                    c.query_string,
                    c.read_only_tree,
                    c.context,
                    c.params,
                    c.query_env,
                    c.dest,
                    c.qc,
                ),
            }
        }
    }
}
