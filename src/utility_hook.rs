//! pg_trickle's ProcessUtility hooks (bgworker/database_ddl.rs, cdc/prepared.rs) each pass the
//! statement on to the hook installed before them, or to PostgreSQL.

use pgrx::pg_sys;

/// The arguments of one ProcessUtility call, as PostgreSQL passed them.
pub struct UtilityCall {
    pub pstmt: *mut pg_sys::PlannedStmt,
    pub query_string: *const std::ffi::c_char,
    pub read_only_tree: bool,
    pub context: pg_sys::ProcessUtilityContext::Type,
    pub params: pg_sys::ParamListInfo,
    pub query_env: *mut pg_sys::QueryEnvironment,
    pub dest: *mut pg_sys::DestReceiver,
    pub qc: *mut pg_sys::QueryCompletion,
}

impl UtilityCall {
    /// Runs the statement through `previous` (the hook installed before ours), or PostgreSQL's own
    /// `standard_ProcessUtility`.
    ///
    /// # Safety
    /// The arguments are those PostgreSQL passed to the hook, unchanged.
    pub unsafe fn forward(&self, previous: pg_sys::ProcessUtility_hook_type) {
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
