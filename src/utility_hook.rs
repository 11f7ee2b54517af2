//! pg_trickle's ProcessUtility hook: every utility statement passes through it, on to the hook
//! installed before it (or PostgreSQL's own). It refuses DDL that would change a stream table behind
//! pg_trickle's back (catalog/guard_ddl.rs), steps the scheduler aside for database-level DDL
//! (bgworker/database_ddl.rs), and signals after a `COMMIT PREPARED`.
//!
//! `COMMIT PREPARED` makes a prepared transaction's changes visible in a session that did not make
//! them. Capture signalled their sources at `PREPARE TRANSACTION`, before they were visible, so a
//! refresh that ran in between may have recorded those signals without seeing the rows. So the hook
//! signals once more when a `COMMIT PREPARED` has finished, for every source (the committing session
//! does not know which ones the transaction wrote): each stream table then refreshes once more.

use crate::bgworker::database_ddl;
use crate::cdc::signal;
use crate::error::OrRaise;
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
    let forward = || {
        // SAFETY: the arguments PostgreSQL gave us, unchanged, to the hook installed before ours (or
        // PostgreSQL's own); PREVIOUS_HOOK is only written by install().
        unsafe {
            match PREVIOUS_HOOK {
                Some(previous) => pg_sys::ffi::pg_guard_ffi_boundary(|| {
                    previous(
                        pstmt,
                        query_string,
                        read_only_tree,
                        context,
                        params,
                        query_env,
                        dest,
                        qc,
                    )
                }),
                None => pg_sys::standard_ProcessUtility(
                    pstmt,
                    query_string,
                    read_only_tree,
                    context,
                    params,
                    query_env,
                    dest,
                    qc,
                ),
            }
        }
    };
    crate::catalog::fence::admit_utility_statement();
    // SAFETY: PostgreSQL passes a valid PlannedStmt whose utilityStmt is a parse node.
    unsafe {
        let node = (*pstmt).utilityStmt;
        let mut dropped_guards = Vec::new();
        if pg_sys::IsTransactionState() {
            crate::catalog::guard_ddl::check(node).or_raise();
            dropped_guards = crate::catalog::guard_ddl::dropped_guards(node).or_raise();
        }
        let commit_prepared = is_commit_prepared(node);
        database_ddl::run_stepping_aside(node, forward);
        if !dropped_guards.is_empty() {
            crate::catalog::guard_ddl::rearm(&dropped_guards).or_raise();
        }
        // Reached only when the statement succeeded.
        if commit_prepared {
            signal::note_prepared_commit();
        }
    }
}

/// Whether a utility statement is `COMMIT PREPARED`.
///
/// # Safety
/// `node` must be a valid parse node.
unsafe fn is_commit_prepared(node: *mut pg_sys::Node) -> bool {
    // SAFETY: the tag says which node it is.
    unsafe {
        (*node).type_ == pg_sys::NodeTag::T_TransactionStmt
            && (*(node as *mut pg_sys::TransactionStmt)).kind
                == pg_sys::TransactionStmtKind::TRANS_STMT_COMMIT_PREPARED
    }
}
