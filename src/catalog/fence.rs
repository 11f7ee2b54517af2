//! What may run while pg_trickle reads SQL text.
//!
//! Reading a text runs code: a literal of a composite type, array or range holding a domain runs the
//! domain's CHECK as it is read (`record_in` → `domain_in`). pg_trickle reads a query first as its
//! writer or owner, refusing such literals, and then again as the extension's owner (the analysis's
//! temporary view, the query view). Checking one reading does not vouch for the next: code that runs
//! during the checked reading can change what the next one finds (a review replaced a type between
//! the two). So:
//! - during every reading, no utility statement may run as a role other than a superuser: code
//!   running as a text is read cannot change the catalog (`admit_utility_statement`, from the
//!   ProcessUtility hook; pg_trickle's own statements and a superuser's event triggers run as one);
//! - during the readings with pg_trickle's rights, PostgreSQL's function manager hooks also refuse to
//!   start a function that is not built in, not C or internal, and not owned by a superuser. (They
//!   cannot refuse a CHECK made of built-in functions: PostgreSQL looks built-in functions, among
//!   them `domain_in`, up without asking the hooks. Hence the first rule.)

use crate::error::{PgtError, SqlState};
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::cell::Cell;

thread_local! {
    /// How many readings with pg_trickle's rights are under way (they nest).
    static READING: Cell<u32> = const { Cell::new(0) };
    /// How many readings as a query's writer or owner are under way.
    static WRITER_READING: Cell<u32> = const { Cell::new(0) };
}

static mut PREVIOUS_NEEDS_HOOK: pg_sys::needs_fmgr_hook_type = None;
static mut PREVIOUS_HOOK: pg_sys::fmgr_hook_type = None;

/// pg_language's fixed OIDs of `internal` and `c`: functions only a superuser can create.
const INTERNAL_LANGUAGE: u32 = 12;
const C_LANGUAGE: u32 = 13;

/// Installs the hooks (from `_PG_init`, while preloading).
pub fn install() {
    // SAFETY: _PG_init runs once per process, before any statement; hooks are chained by convention.
    unsafe {
        PREVIOUS_NEEDS_HOOK = pg_sys::needs_fmgr_hook;
        pg_sys::needs_fmgr_hook = Some(needs_hook);
        PREVIOUS_HOOK = pg_sys::fmgr_hook;
        pg_sys::fmgr_hook = Some(hook);
    }
}

/// Runs `body`, which reads a user's SQL text with pg_trickle's rights (a `CREATE VIEW` of it),
/// refusing any user's code that reading would run.
pub fn reading<R>(body: impl FnOnce() -> R) -> R {
    counted(&READING, body)
}

/// Runs `body`, which reads SQL text as its writer or owner: their code may run, but no utility
/// statement — code that changed the catalog while the text was read and checked could make
/// pg_trickle's own reading of it find something else (a review swapped a type with `ALTER TYPE`
/// and `CREATE TYPE` from a domain's CHECK), and a domain's CHECK, a user's expression whatever it
/// calls, cannot be refused by function: `domain_in` is built in, and PostgreSQL looks built-in
/// functions up without asking the hooks.
pub fn reading_as_writer<R>(body: impl FnOnce() -> R) -> R {
    counted(&WRITER_READING, body)
}

fn counted<R>(counter: &'static std::thread::LocalKey<Cell<u32>>, body: impl FnOnce() -> R) -> R {
    struct Done(&'static std::thread::LocalKey<Cell<u32>>);
    impl Drop for Done {
        fn drop(&mut self) {
            self.0.with(|r| r.set(r.get() - 1));
        }
    }
    counter.with(|r| r.set(r.get() + 1));
    let _done = Done(counter);
    body()
}

fn is_reading() -> bool {
    READING.with(|r| r.get() > 0)
}

/// Called as a utility statement begins: refuses one that a user's code runs while pg_trickle reads
/// a query. pg_trickle's own (its `CREATE VIEW`) and a superuser's event triggers run as a
/// superuser; a user's code that runs as a text is read runs as its writer or owner, and with
/// pg_trickle's rights only in a function the hooks below let through, a superuser's.
pub fn admit_utility_statement() {
    let reading = is_reading() || WRITER_READING.with(|r| r.get() > 0);
    // SAFETY: reads the current user id and looks its superuser flag up in the catalog cache.
    if !reading || unsafe { pg_sys::superuser() } {
        return;
    }
    PgtError::new(
        SqlState::FeatureNotSupported,
        "no utility statement may run while pg_trickle reads a query",
    )
    .detail("Code that runs as a query is read (a domain's CHECK) must not change the catalog: pg_trickle reads the query again.")
    .raise();
}

/// Whether `function` is code a user may have written: not built in, in a language other than C or
/// internal, owned by a role that is not a superuser.
fn users_code(function: Oid) -> bool {
    if function.to_u32() < pg_sys::FirstNormalObjectId {
        return false;
    }
    // SAFETY: a syscache lookup inside a transaction; the row is read, then released.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            pg_sys::Datum::from(function),
        );
        if tuple.is_null() {
            return false;
        }
        let proc = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_proc>(tuple);
        let (language, owner) = (proc.prolang.to_u32(), proc.proowner);
        pg_sys::ReleaseSysCache(tuple);
        language != INTERNAL_LANGUAGE && language != C_LANGUAGE && !pg_sys::superuser_arg(owner)
    }
}

/// Asked by `fmgr_info` for every function it looks up: during a reading, a user's function goes
/// through `hook` when called.
#[pg_guard]
unsafe extern "C-unwind" fn needs_hook(function: Oid) -> bool {
    if is_reading() && users_code(function) {
        return true;
    }
    // SAFETY: the hook installed before ours, called as PostgreSQL would.
    unsafe { PREVIOUS_NEEDS_HOOK.is_some_and(|previous| previous(function)) }
}

#[pg_guard]
unsafe extern "C-unwind" fn hook(
    event: pg_sys::FmgrHookEventType::Type,
    flinfo: *mut pg_sys::FmgrInfo,
    private: *mut pg_sys::Datum,
) {
    // SAFETY: `flinfo` is the function manager's, valid for the call.
    let function = unsafe { (*flinfo).fn_oid };
    if event == pg_sys::FmgrHookEventType::FHET_START && is_reading() && users_code(function) {
        // SAFETY: a catalog lookup of a function that exists (it is being called).
        let name =
            unsafe { std::ffi::CStr::from_ptr(pg_sys::format_procedure_qualified(function)) };
        PgtError::new(
            SqlState::FeatureNotSupported,
            format!("reading the query would run function {}", name.to_string_lossy()),
        )
        .detail("pg_trickle reads a stream table's query with its own rights too, and runs no user's code while it does: a literal of a composite type, array or range holding a domain runs the domain's CHECK as it is read.")
        .hint("Build the value when the query runs instead: ROW(...)::type, ARRAY[...]::type[], or a cast from its text (('...')::text::type).")
        .raise();
    }
    // SAFETY: the hook installed before ours, called as PostgreSQL would.
    unsafe {
        if let Some(previous) = PREVIOUS_HOOK {
            previous(event, flinfo, private);
        }
    }
}
