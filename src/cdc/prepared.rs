//! `COMMIT PREPARED` makes a prepared transaction's changes visible in a session that did not make
//! them. Capture signalled their sources at `PREPARE TRANSACTION`, before they were visible, so a
//! refresh that ran in between may have recorded those signals without seeing the rows. This
//! ProcessUtility hook signals once more when a `COMMIT PREPARED` has finished, for every source
//! (the committing session does not know which ones the transaction wrote): each stream table then
//! refreshes once more.

use super::signal;
use crate::utility_hook::UtilityCall;
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
    // SAFETY: PostgreSQL passes a valid PlannedStmt whose utilityStmt is a parse node.
    let commit_prepared = unsafe { is_commit_prepared((*pstmt).utilityStmt) };
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
    // SAFETY: the arguments PostgreSQL gave us, unchanged; PREVIOUS_HOOK is only written by install().
    unsafe { call.forward(PREVIOUS_HOOK) };
    // Reached only when it succeeded: the prepared transaction's changes are visible now.
    if commit_prepared {
        signal::note_prepared_commit();
    }
}

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
