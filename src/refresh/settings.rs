//! Settings a differential refresh's statements run with, in a GUC nest level of their own (as REFRESH
//! MATERIALIZED VIEW does for its search_path): set for those statements only and restored
//! afterwards, so a manual refresh leaves the caller's session as it was. An ERROR unwinds the nest
//! level with the (sub)transaction. A FULL refresh recomputes the whole query and runs with the
//! session's settings, like REFRESH MATERIALIZED VIEW.

use crate::error::PgtResult;
use pgrx::pg_sys;
use std::ffi::CString;

/// - `jit = off`: the statements are costed for the whole sources (the planner cannot know how few
///   rows a batch holds), which passes `jit_above_cost` and makes PostgreSQL JIT-compile every
///   refresh — tens of milliseconds, whatever the batch.
/// - `random_page_cost = 1.1`: a batch touches a small, scattered part of each source (the groups it
///   recomputes, the rows its join keys match); with the default 4.0 the planner prefers reading a
///   whole source sequentially as soon as that part passes ~1%. A differential statement should pay
///   for what it touches, through the indexes, whenever there are any.
/// - `plan_cache_mode = force_generic_plan`: the statement's plan is kept across refreshes (see
///   `spi::run`) and its one parameter, the old frontier, does not change the best plan.
/// - `max_parallel_workers_per_gather = 0`: a change buffer's statistics can say many rows where
///   there are few (it was large when last analysed, or holds changes other consumers have not
///   applied yet); a plain read of it (the batch count) then started parallel workers, which costs
///   more than the whole scan (milliseconds each).
const DIFFERENTIAL_SETTINGS: &[(&str, &str)] = &[
    ("jit", "off"),
    ("random_page_cost", "1.1"),
    ("plan_cache_mode", "force_generic_plan"),
    ("max_parallel_workers_per_gather", "0"),
];

/// What the text form of a value depends on, pinned. A DIFFERENTIAL stream table's query calls
/// only IMMUTABLE functions, so nothing it computes depends on these; but where the engine breaks
/// a tie between rows that sort alike it compares their text (`dvm::analyze::distinct_on`), and with
/// these pinned every refresh picks the same row, whichever session runs it (a `DateStyle` of the
/// caller's changed which of two tied dates a manual refresh picked).
const TEXT_FORM_SETTINGS: &[(&str, &str)] = &[
    ("DateStyle", "ISO, MDY"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
];

/// What a query's text means, pinned wherever pg_trickle prints a query (`pg_get_viewdef`) or reads
/// text it printed: the text forms of values above, and how string and array literals are read. A
/// session's own (`standard_conforming_strings = off`, `DateStyle = 'SQL, DMY'`) otherwise printed
/// another user's stored query in a form that read back as something else (a review did it with
/// `ALTER SCHEMA ... RENAME`, which reprints every stored query that follows renames).
const QUERY_TEXT_SETTINGS: &[(&str, &str)] =
    &[("standard_conforming_strings", "on"), ("array_nulls", "on")];

/// `body` with [`QUERY_TEXT_SETTINGS`] and the text forms of values pinned.
pub fn with_query_text_settings<R>(body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    with_settings(QUERY_TEXT_SETTINGS, || with_text_form_settings(body))
}

/// Every refresh, around all its statements:
/// - `search_path = pg_catalog, pg_temp`: what a refresh computes must not depend on the session
///   that runs it (a user's schema early in the path could supply another `=`). Everything the
///   refresh runs names its objects: defining queries are stored schema-qualified, and generated SQL
///   qualifies its operators. `pg_temp` last, so temporary objects cannot stand in either.
/// - `plan_cache_mode = force_generic_plan`: its catalog reads and writes are parameterised by the
///   stream table and run on every refresh, so plan them once, generically. Under the default
///   `auto` PostgreSQL plans each statement's first five executions anew (custom plans) before it
///   keeps one — which a scheduler or a session refreshing now and then pays again and again.
const REFRESH_SETTINGS: &[(&str, &str)] = &[
    ("search_path", PINNED_SEARCH_PATH),
    ("plan_cache_mode", "force_generic_plan"),
    // Stored query text is read as it was printed (`QUERY_TEXT_SETTINGS`).
    ("standard_conforming_strings", "on"),
    ("array_nulls", "on"),
];

/// The search_path pg_trickle's own statements run with wherever they run with rights other than
/// their caller's (refreshes, the SQL API as the extension's owner, background workers): nothing a
/// user puts in a schema can stand in for an operator or function they name.
pub const PINNED_SEARCH_PATH: &str = "pg_catalog, pg_temp";

/// For a background worker's whole session, right after it connects: it runs as a superuser, and a
/// database's own `search_path` (`ALTER DATABASE ... SET`, which its owner may set) must not supply
/// what its statements call. A session-level setting outranks the database's and the file's.
pub fn pin_session_search_path() {
    set(
        "search_path",
        PINNED_SEARCH_PATH,
        pg_sys::GucAction::GUC_ACTION_SET,
    );
}

/// Sets a setting for the session (`GUC_ACTION_SET`) or for the current nest level
/// (`GUC_ACTION_SAVE`, undone by `AtEOXact_GUC`).
fn set(name: &str, value: &str, action: pg_sys::GucAction::Type) {
    let (name, value) = (
        CString::new(name).expect("no NUL"),
        CString::new(value).expect("no NUL"),
    );
    // SAFETY: PostgreSQL's GUC machinery from a connected backend; the strings outlive the call
    // (set_config_option copies them).
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            0,
            false,
        );
    }
}

/// `body` with `search_path` set to `path` (a GUC nest level of its own, as the settings above).
pub fn with_search_path<R>(path: &str, body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    with_settings(&[("search_path", path)], body)
}

/// What the SQL API runs with as the extension's owner: the pinned search_path, and the database's
/// default tablespace for the objects pg_trickle creates (change buffers, indexes), not the one a
/// caller chose (which the caller may not be allowed to use).
pub fn with_extension_owner_settings<R>(body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    with_settings(
        &[
            ("search_path", PINNED_SEARCH_PATH),
            ("default_tablespace", ""),
        ],
        body,
    )
}

/// `body` with `default_tablespace` set to `tablespace`.
pub fn with_default_tablespace<R>(
    tablespace: &str,
    body: impl FnOnce() -> PgtResult<R>,
) -> PgtResult<R> {
    with_settings(&[("default_tablespace", tablespace)], body)
}

/// pg_trickle's housekeeping DDL (dropping capture it made) tells the client nothing: PostgreSQL's
/// NOTICEs about it ("drop cascades to trigger ...") name objects the session never made.
const QUIET: &[(&str, &str)] = &[("client_min_messages", "warning")];

pub fn quietly<R>(body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    // SAFETY: reads a GUC variable of this backend.
    let level = unsafe { pg_sys::client_min_messages };
    // A session that asked for less (`error`) keeps its own setting.
    if level >= pg_sys::WARNING as i32 {
        return body();
    }
    with_settings(QUIET, body)
}

pub fn with_differential_settings<R>(body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    with_settings(DIFFERENTIAL_SETTINGS, || with_text_form_settings(body))
}

/// For FULL refreshes that compute the operator tree (`OpTree::full_from_tree`), whose tie-breaks
/// must pick as the differential ones do.
pub fn with_text_form_settings<R>(body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    with_settings(TEXT_FORM_SETTINGS, body)
}

/// `body` with `lock_timeout` set to `ms`: for work that gives up rather than wait long, where a wait
/// is not a lock it can ask for without waiting (a row another transaction updated).
pub fn with_lock_timeout<R>(ms: u32, body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    with_settings(&[("lock_timeout", &ms.to_string())], body)
}

pub fn with_refresh_settings<R>(body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    with_settings(REFRESH_SETTINGS, body)
}

fn with_settings<R>(
    settings: &[(&str, &str)],
    body: impl FnOnce() -> PgtResult<R>,
) -> PgtResult<R> {
    // SAFETY: opens a GUC nest level inside a transaction; closed below.
    let nest = unsafe { pg_sys::NewGUCNestLevel() };
    for (name, value) in settings {
        set(name, value, pg_sys::GucAction::GUC_ACTION_SAVE);
    }
    let out = body();
    // SAFETY: pops exactly the level pushed above; false = restore the previous values.
    unsafe { pg_sys::AtEOXact_GUC(false, nest) };
    out
}
