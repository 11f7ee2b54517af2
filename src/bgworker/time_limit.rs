//! `pg_trickle.refresh_timeout`: a scheduled refresh that runs longer is canceled, as
//! `statement_timeout` cancels a client's statement — by the same timer. PostgreSQL arms that timer
//! for each command a client sends; a background worker's statements run through SPI, where nothing
//! arms it, so `statement_timeout` itself never stops a background refresh. Armed here, it raises
//! PostgreSQL's own "canceling statement due to statement timeout" (57014) wherever the refresh next
//! checks for interrupts — a scan, a sort, a lock wait, a `pg_sleep` — and the refresh rolls back like
//! any failed one.
//!
//! A cancel can be caught (PL/pgSQL's `EXCEPTION WHEN query_canceled`), so a query could go on past
//! it. One still running as long again (at least a second more) ends its process, as
//! `pg_terminate_backend` would: that cannot be caught. The pool replaces a refresh worker that
//! exits, and records the refresh as failed; a coordinator that refreshed in its own process is
//! started again, and records it as interrupted.

use pgrx::pg_sys;
use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

unsafe extern "C-unwind" {
    // utils/timeout.h, which pgrx does not bind.
    fn RegisterTimeout(id: c_int, handler: Option<extern "C" fn()>) -> c_int;
    fn enable_timeout_after(id: c_int, delay_ms: c_int);
    fn disable_timeout(id: c_int, keep_indicator: bool);
    fn get_timeout_indicator(id: c_int, reset_indicator: bool) -> bool;
}

/// `STATEMENT_TIMEOUT` of utils/timeout.h: the fourth reason in every version since 9.3. Its handler,
/// registered for every backend by InitPostgres, signals this process as `pg_cancel_backend` does.
const STATEMENT_TIMEOUT: c_int = 3;

/// RegisterTimeout hands out a free user-defined reason for any id at or past `USER_TIMEOUT` (12 in
/// PostgreSQL 15; fewer predefined reasons before, one more in 17).
const ANY_USER_TIMEOUT: c_int = 20;

/// This process's reason for ending itself, once registered.
static END_REASON: AtomicI32 = AtomicI32::new(-1);

/// Runs in the SIGALRM handler: asks this process to end, as `die` does on SIGTERM. `extern "C"`: it
/// cannot panic (flags and `SetLatch`, which is safe in a signal handler), and must not unwind.
extern "C" fn end_process() {
    // SAFETY: sig_atomic_t flags meant to be set from signal handlers; MyLatch is this process's.
    unsafe {
        // Already exiting (a SIGTERM's FATAL, with the timer still armed): as PostgreSQL's `die`.
        if pg_sys::proc_exit_inprogress {
            return;
        }
        pg_sys::InterruptPending = 1;
        pg_sys::ProcDiePending = 1;
        pg_sys::SetLatch(pg_sys::MyLatch);
    }
}

fn end_reason() -> c_int {
    let known = END_REASON.load(Ordering::Relaxed);
    if known >= 0 {
        return known;
    }
    // SAFETY: registering a handler in a connected background worker (InitPostgres set up the
    // timeout machinery); once per process.
    let id = unsafe { RegisterTimeout(ANY_USER_TIMEOUT, Some(end_process)) };
    END_REASON.store(id, Ordering::Relaxed);
    id
}

fn ms(d: Duration) -> c_int {
    d.as_millis().clamp(1, c_int::MAX as u128) as c_int
}

/// Runs `body`, canceled once `limit` has passed (None: no limit), its process ended once as long
/// again has passed. Returns what it returned and whether the limit ran out meanwhile.
pub fn within<R>(limit: Option<Duration>, body: impl FnOnce() -> R) -> (R, bool) {
    let out = match limit {
        Some(limit) => limited(limit, body),
        None => (body(), false),
    };
    // A cancel still pending — the limit's, run out during the commit (which holds interrupts off),
    // or an operator's — would hit the worker's loop, outside any transaction, and end the worker:
    // the job it was meant for is over, and there is nothing left to cancel.
    // SAFETY: a flag of this process, with the timers disarmed.
    unsafe { pg_sys::QueryCancelPending = 0 };
    out
}

fn limited<R>(limit: Duration, body: impl FnOnce() -> R) -> (R, bool) {
    let end = end_reason();
    let armed = Instant::now();
    // SAFETY: PostgreSQL's timeout machinery in a connected background worker; nothing else arms
    // these reasons here (postgres.c arms STATEMENT_TIMEOUT only for client commands).
    unsafe {
        enable_timeout_after(STATEMENT_TIMEOUT, ms(limit));
        enable_timeout_after(end, ms(limit + limit.max(Duration::from_secs(1))));
    }
    let out = body();
    // SAFETY: as above. Disarmed first, so that no cancel can arrive after the check below.
    let fired = unsafe {
        disable_timeout(end, false);
        disable_timeout(STATEMENT_TIMEOUT, true);
        get_timeout_indicator(STATEMENT_TIMEOUT, true)
    };
    // The indicator is reset when the cancel it caused was raised; the clock still tells.
    (out, fired || armed.elapsed() >= limit)
}
