//! Settings a refresh runs with, in a GUC nest level of its own (as REFRESH MATERIALIZED VIEW does):
//! set for the refresh only and restored afterwards, so a manual refresh leaves the caller's session
//! as it was. An ERROR unwinds the nest level with the (sub)transaction.

use crate::error::PgtResult;
use pgrx::pg_sys;
use std::ffi::CString;

/// `jit = off`: a refresh's statements are costed for the whole sources (the planner cannot know how
/// few rows a batch holds), which passes `jit_above_cost` and makes PostgreSQL JIT-compile every
/// refresh — tens of milliseconds, whatever the batch.
const REFRESH_SETTINGS: &[(&str, &str)] = &[("jit", "off")];

pub fn with_refresh_settings<R>(body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    // SAFETY: plain calls into PostgreSQL's GUC machinery from a backend inside a transaction; the
    // strings outlive the calls (set_config_option copies them).
    let nest = unsafe { pg_sys::NewGUCNestLevel() };
    for (name, value) in REFRESH_SETTINGS {
        let (name, value) = (CString::new(*name).expect("no NUL"), CString::new(*value).expect("no NUL"));
        unsafe {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
    }
    let out = body();
    // SAFETY: pops exactly the level pushed above; false = restore the previous values.
    unsafe { pg_sys::AtEOXact_GUC(false, nest) };
    out
}
