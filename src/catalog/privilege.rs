//! Who may do what. The SQL API runs as its caller, and so do the steps PostgreSQL checks for itself
//! (creating the storage table in the caller's schema). pg_trickle's own work — its catalog, change
//! capture on sources, the query views — runs as the extension's owner, in an
//! [`as_extension_owner`] scope, so non-superusers can use pg_trickle without any grant on its
//! catalog (which holds SQL that refreshes execute: only pg_trickle's functions may write it). What
//! the caller could not do themselves is refused first, with 42501: using another role's stream
//! table, reading a source they may not read.

use crate::error::{PgtError, PgtResult, SqlState};
use crate::spi;
use pgrx::pg_sys::{self, Oid};

/// The role calling the SQL API.
pub fn caller() -> Oid {
    // SAFETY: reads the backend's current user id.
    unsafe { pg_sys::GetUserId() }
}

/// Runs `body` as the role that owns the pg_trickle extension (as a SECURITY DEFINER function would
/// run), restoring the caller's identity afterwards (also when an ERROR unwinds).
///
/// Its statements run with a pinned search_path (`settings::PINNED_SEARCH_PATH`): as the extension's
/// owner (a superuser), an operator a caller's schema supplied would run with those rights. What
/// must be read in the caller's search_path — the names and the query a caller passes — is read in
/// [`with_caller_search_path`], by statements that call nothing a schema could supply.
pub fn as_extension_owner<R>(body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    let owner = extension_owner()
        .ok_or_else(|| PgtError::internal("pg_trickle is not installed in this database"))?;
    let caller_path = current_search_path();
    CALLER_SEARCH_PATHS.with(|paths| paths.borrow_mut().push(caller_path));
    let _pop = PopCallerPath;
    as_role(owner, pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32, || {
        crate::refresh::settings::with_search_path(
            crate::refresh::settings::PINNED_SEARCH_PATH,
            body,
        )
    })
}

thread_local! {
    /// The search_path of each caller of [`as_extension_owner`] (nested calls push their own).
    static CALLER_SEARCH_PATHS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct PopCallerPath;

impl Drop for PopCallerPath {
    fn drop(&mut self) {
        CALLER_SEARCH_PATHS.with(|paths| paths.borrow_mut().pop());
    }
}

/// The session's search_path as set now.
fn current_search_path() -> String {
    // SAFETY: reads a GUC's current value (a string PostgreSQL owns), copied at once.
    unsafe {
        let value = pg_sys::GetConfigOption(c"search_path".as_ptr(), false, false);
        if value.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(value)
                .to_string_lossy()
                .into_owned()
        }
    }
}

/// Runs `body` in the search_path of the SQL API's caller (inside [`as_extension_owner`]; as it is
/// elsewhere): for resolving what the caller named. `body` must run statements that name nothing a
/// schema could supply but the caller's own input (`pg_catalog.to_regclass($1)`, the caller's query).
pub fn with_caller_search_path<R>(body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    match CALLER_SEARCH_PATHS.with(|paths| paths.borrow().last().cloned()) {
        Some(path) => crate::refresh::settings::with_search_path(&path, body),
        None => body(),
    }
}

/// Whether pg_trickle is installed in this database (the library may be loaded where it is not).
pub fn installed() -> bool {
    extension_owner().is_some()
}

/// The role owning the pg_trickle extension, read from `pg_extension` by its name index (every
/// call of the SQL API asks; an SPI statement would cost more than the rest of a no-change refresh's
/// lookups together).
fn extension_owner() -> Option<Oid> {
    let name = c"pg_trickle";
    // SAFETY: a catalog index scan inside a transaction, closed on every path; the tuple is read
    // before the scan ends. An ERROR inside unwinds, and the transaction's abort releases both.
    unsafe {
        let rel = pg_sys::table_open(
            pg_sys::ExtensionRelationId,
            pg_sys::AccessShareLock as pg_sys::LOCKMODE,
        );
        let mut key = pg_sys::ScanKeyData::default();
        pg_sys::ScanKeyInit(
            &mut key,
            pg_sys::Anum_pg_extension_extname as pg_sys::AttrNumber,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            pg_sys::F_NAMEEQ.into(),
            pg_sys::Datum::from(name.as_ptr()),
        );
        let scan = pg_sys::systable_beginscan(
            rel,
            pg_sys::ExtensionNameIndexId.into(),
            true,
            std::ptr::null_mut(),
            1,
            &mut key,
        );
        let tuple = pg_sys::systable_getnext(scan);
        let owner = (!tuple.is_null()).then(|| {
            (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_extension>(tuple)).extowner
        });
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        owner
    }
}

/// Runs `body` with exactly `owner`'s rights (DESIGN invariant 6), whoever started the refresh — the
/// scheduler's superuser, a superuser's manual refresh, later a pool or external worker — as
/// `REFRESH MATERIALIZED VIEW` does: in a security-restricted operation (no SET ROLE, no session
/// state a trigger or function could leave behind). Reading what the owner may not read fails with
/// PostgreSQL's own 42501, and the failed refresh copies nothing.
pub fn as_owner<R>(owner: Oid, body: impl FnOnce() -> R) -> R {
    as_role(owner, pg_sys::SECURITY_RESTRICTED_OPERATION as i32, body)
}

/// Runs `body` as `role` with the security context `flags` added, restoring the previous identity
/// afterwards (also when an ERROR unwinds; PostgreSQL's (sub)transaction abort restores it too).
pub fn as_role<R>(role: Oid, flags: i32, body: impl FnOnce() -> R) -> R {
    let mut user = pg_sys::InvalidOid;
    let mut context: i32 = 0;
    // SAFETY: saves and sets the backend's user id and security context; `Restore` puts them back.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(role, context | flags);
    }
    let _restore = Restore { user, context };
    body()
}

struct Restore {
    user: Oid,
    context: i32,
}

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: restores what `as_role` saved.
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) };
    }
}

/// The caller may act on a stream table only with its owner's privileges (as for ALTER/DROP of a
/// table, or REFRESH MATERIALIZED VIEW).
pub fn require_owner(caller: Oid, relid: Oid, name: &str) -> PgtResult<()> {
    let owner = super::stream_tables::owner(relid)?;
    // SAFETY: a catalog lookup of role membership.
    if unsafe { pg_sys::has_privs_of_role(caller, owner) } {
        return Ok(());
    }
    Err(PgtError::new(SqlState::InsufficientPrivilege, format!("must be owner of stream table {name}"))
        .hint("Only its owner (or a member of the owning role, or a superuser) may refresh, alter or drop it."))
}

/// Whether `reader` may see a stream table's statistics: as `pg_stat_pgtrickle` shows them, to whoever
/// may read it, and to `pg_read_all_stats` (`pg_monitor`).
pub fn may_see_statistics(reader: Oid, relid: Oid) -> bool {
    // SAFETY: catalog lookups of a relation's ACL and of role membership.
    unsafe {
        pg_sys::pg_class_aclcheck(relid, reader, pg_sys::ACL_SELECT as pg_sys::AclMode)
            == pg_sys::AclResult::ACLCHECK_OK
            || pg_sys::has_privs_of_role(reader, Oid::from(pg_sys::ROLE_PG_READ_ALL_STATS))
    }
}

/// The caller must be able to read every relation a new stream table's query names.
pub fn require_select(caller: Oid, sources: &[Oid]) -> PgtResult<()> {
    let denied = spi::one::<String>(
        "SELECT s::pg_catalog.regclass::text FROM pg_catalog.unnest($1::oid[]) AS s
          WHERE NOT pg_catalog.has_table_privilege($2, s, 'SELECT') ORDER BY 1 LIMIT 1",
        &[sources.to_vec().into(), caller.into()],
    )?;
    match denied {
        None => Ok(()),
        Some(source) => Err(PgtError::new(
            SqlState::InsufficientPrivilege,
            format!("permission denied for table {source}"),
        )
        .detail("A stream table's owner must be able to read everything its query reads.")),
    }
}

/// Only a superuser may do what concerns every stream table of the database (`what`).
pub fn require_superuser(caller: Oid, what: &str) -> PgtResult<()> {
    // SAFETY: a catalog lookup of the role's superuser flag.
    if unsafe { pg_sys::superuser_arg(caller) } {
        return Ok(());
    }
    Err(PgtError::new(
        SqlState::InsufficientPrivilege,
        format!("must be superuser to {what}"),
    ))
}
