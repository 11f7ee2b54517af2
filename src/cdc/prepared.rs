//! `COMMIT PREPARED` makes a prepared transaction's changes visible in a session that did not make
//! them. Capture signalled their sources at `PREPARE TRANSACTION`, before they were visible, so a
//! refresh that ran in between may have recorded those signals without seeing the rows. So
//! pg_trickle's ProcessUtility hook (crate::utility_hook) signals once more when a `COMMIT PREPARED`
//! has finished, for every source (the committing session does not know which ones the transaction
//! wrote): each stream table then refreshes once more.

use pgrx::pg_sys;

/// Whether a utility statement is `COMMIT PREPARED`.
///
/// # Safety
/// `node` must be a valid parse node.
pub unsafe fn is_commit_prepared(node: *mut pg_sys::Node) -> bool {
    // SAFETY: the tag says which node it is.
    unsafe {
        (*node).type_ == pg_sys::NodeTag::T_TransactionStmt
            && (*(node as *mut pg_sys::TransactionStmt)).kind
                == pg_sys::TransactionStmtKind::TRANS_STMT_COMMIT_PREPARED
    }
}
