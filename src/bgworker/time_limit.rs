//! `pg_trickle.refresh_timeout`: a scheduled refresh that runs longer is canceled, as
//! `statement_timeout` cancels a client's statement — by the same timer. PostgreSQL arms that timer
//! for each command a client sends; a background worker's statements run through SPI, where nothing
//! arms it, so `statement_timeout` itself never stops a background refresh. Armed here, it raises
//! PostgreSQL's own "canceling statement due to statement timeout" (57014) wherever the refresh next
//! checks for interrupts — a scan, a sort, a lock wait, a `pg_sleep` — and the refresh rolls back like
//! any failed one.

use pgrx::pg_sys;
use std::ffi::c_int;
use std::time::Duration;

unsafe extern "C-unwind" {
    // utils/timeout.h, which pgrx does not bind.
    fn enable_timeout_after(id: c_int, delay_ms: c_int);
    fn disable_timeout(id: c_int, keep_indicator: bool);
    fn get_timeout_active(id: c_int) -> bool;
}

/// `STATEMENT_TIMEOUT` of utils/timeout.h: the fourth reason in every version since 9.3. Its handler,
/// registered for every backend by InitPostgres, signals this process as `pg_cancel_backend` does.
const STATEMENT_TIMEOUT: c_int = 3;

/// Runs `body`, canceled once `limit` has passed (None: no limit). Returns what it returned and
/// whether the limit ran out meanwhile.
pub fn within<R>(limit: Option<Duration>, body: impl FnOnce() -> R) -> (R, bool) {
    let Some(limit) = limit else {
        return (body(), false);
    };
    let ms = limit.as_millis().clamp(1, c_int::MAX as u128) as c_int;
    // SAFETY: PostgreSQL's timeout machinery, set up by InitPostgres in a connected background worker;
    // nothing else arms this reason here (postgres.c does so only for client commands).
    unsafe { enable_timeout_after(STATEMENT_TIMEOUT, ms) };
    let out = body();
    // SAFETY: as above. A timeout that fired is no longer active.
    let ran_out = unsafe {
        let ran_out = !get_timeout_active(STATEMENT_TIMEOUT);
        disable_timeout(STATEMENT_TIMEOUT, false);
        ran_out
    };
    if ran_out {
        // It may have run out after the body's last check for interrupts (during its commit, which
        // holds them off): a cancel left pending would hit the worker's loop, outside any
        // transaction, where there is nothing left to cancel.
        // SAFETY: a flag of this process, with the timer disarmed.
        unsafe { pg_sys::QueryCancelPending = 0 };
    }
    (out, ran_out)
}
