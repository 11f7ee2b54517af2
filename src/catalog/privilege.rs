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
/// must be read as the caller reads it — the names and the query a caller passes — is read
/// [`as_caller`]; pg_trickle never reads a caller's text with its own rights.
pub fn as_extension_owner<R>(body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    let owner = extension_owner()
        .ok_or_else(|| PgtError::internal("pg_trickle is not installed in this database"))?;
    let role = caller();
    let caller = Caller {
        role,
        search_path: search_path_as_read_by(role),
        default_tablespace: current_setting(c"default_tablespace"),
    };
    CALLERS.with(|callers| callers.borrow_mut().push(caller));
    let _pop = PopCaller;
    as_role(owner, pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32, || {
        crate::refresh::settings::with_extension_owner_settings(body)
    })
}

/// Runs `body`, which creates the caller's own objects (the storage table), as the caller and where
/// the caller's `default_tablespace` puts them, as `CREATE MATERIALIZED VIEW` would.
pub fn creating_as_caller<R>(body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    match CALLERS.with(|callers| callers.borrow().last().cloned()) {
        Some(caller) => as_role(caller.role, 0, || {
            crate::refresh::settings::with_default_tablespace(&caller.default_tablespace, body)
        }),
        None => body(),
    }
}

/// Who called the SQL API, for [`as_caller`].
#[derive(Clone)]
struct Caller {
    role: Oid,
    search_path: String,
    default_tablespace: String,
}

thread_local! {
    /// The callers of [`as_extension_owner`] (nested calls push their own).
    static CALLERS: std::cell::RefCell<Vec<Caller>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct PopCaller;

impl Drop for PopCaller {
    fn drop(&mut self) {
        CALLERS.with(|callers| callers.borrow_mut().pop());
    }
}

/// The session's search_path as `role` reads it, written out so that it means the same to any role:
/// each schema it names that exists and `role` may use, `"$user"` as `role`'s own schema, `pg_temp`
/// where it stands. Set as it is with other rights, the setting would mean something else there:
/// `"$user"` that role's schema, and schemas `role` may not use searched too.
fn search_path_as_read_by(role: Oid) -> String {
    let setting = current_search_path();
    let Ok(raw) = std::ffi::CString::new(setting.as_str()) else {
        return setting;
    };
    let mut schemas = Vec::new();
    // SAFETY: SplitIdentifierString splits a palloc'd copy in place into a List of pointers into
    // it; catalog lookups and ACL checks by OID; every string read is copied at once.
    unsafe {
        let copy = pg_sys::pstrdup(raw.as_ptr());
        let mut names: *mut pg_sys::List = std::ptr::null_mut();
        if !pg_sys::SplitIdentifierString(copy, b',' as std::ffi::c_char, &mut names) {
            // PostgreSQL accepted the setting with this very function: never here.
            return setting;
        }
        let count = if names.is_null() { 0 } else { (*names).length };
        for i in 0..count {
            let name = (*(*names).elements.add(i as usize)).ptr_value as *const std::ffi::c_char;
            let name = match std::ffi::CStr::from_ptr(name).to_bytes() {
                b"$user" => {
                    let user = pg_sys::GetUserNameFromId(role, true);
                    if user.is_null() {
                        continue;
                    }
                    user as *const std::ffi::c_char
                }
                b"pg_temp" => {
                    schemas.push("pg_temp".to_string());
                    continue;
                }
                _ => name,
            };
            let schema = pg_sys::get_namespace_oid(name, true);
            if schema != Oid::INVALID
                && pg_sys::pg_namespace_aclcheck(schema, role, pg_sys::ACL_USAGE as pg_sys::AclMode)
                    == pg_sys::AclResult::ACLCHECK_OK
            {
                schemas.push(
                    std::ffi::CStr::from_ptr(pg_sys::quote_identifier(name))
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    schemas.join(", ")
}

/// The session's search_path as set now.
fn current_search_path() -> String {
    current_setting(c"search_path")
}

/// A setting's current value.
fn current_setting(name: &std::ffi::CStr) -> String {
    // SAFETY: reads a GUC's current value (a string PostgreSQL owns), copied at once.
    unsafe {
        let value = pg_sys::GetConfigOption(name.as_ptr(), false, false);
        if value.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(value)
                .to_string_lossy()
                .into_owned()
        }
    }
}

/// Runs `body` as the SQL API's caller, in the caller's search_path (inside [`as_extension_owner`];
/// as it is elsewhere): for resolving what the caller named and parsing what the caller wrote.
/// Reading a query's text runs code — a literal of a composite type runs its fields' input
/// functions, and a domain's CHECK with them — which must run with the writer's rights.
pub fn as_caller<R>(body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    match CALLERS.with(|callers| callers.borrow().last().cloned()) {
        Some(caller) => as_role(
            caller.role,
            pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
            || crate::refresh::settings::with_search_path(&caller.search_path, body),
        ),
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

/// Runs `body`, which reads (parses) SQL text `owner` answers for — a stored defining query of theirs,
/// SQL built from one — as `owner`, as [`as_owner`] does, with the pinned search_path: reading a
/// text runs code (its literals' input functions, a domain's CHECK among them), which must never run
/// with pg_trickle's rights.
pub fn reading_as<R>(owner: Oid, body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    as_owner(owner, || {
        crate::refresh::settings::with_search_path(
            crate::refresh::settings::PINNED_SEARCH_PATH,
            || {
                crate::refresh::settings::with_query_text_settings(|| {
                    super::fence::reading_as_writer(body)
                })
            },
        )
    })
}

/// Runs `body` as `role` with the security context `flags` added, restoring the previous identity
/// afterwards (also when an ERROR unwinds; PostgreSQL's (sub)transaction abort restores it too).
///
/// Settings `body` changes (its code's `set_config(..., false)` included) are undone when it ends,
/// in a GUC nest level of its own, as `REFRESH MATERIALIZED VIEW` does for the owner's code: what
/// runs afterwards with other rights must not find a search_path that code chose.
pub fn as_role<R>(role: Oid, flags: i32, body: impl FnOnce() -> R) -> R {
    let mut user = pg_sys::InvalidOid;
    let mut context: i32 = 0;
    // SAFETY: saves and sets the backend's user id and security context, and opens a GUC nest
    // level; `Restore` closes both.
    let nest = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(role, context | flags);
        pg_sys::NewGUCNestLevel()
    };
    let _restore = Restore {
        user,
        context,
        nest,
    };
    body()
}

struct Restore {
    user: Oid,
    context: i32,
    nest: i32,
}

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: undoes what `as_role` did. While an ERROR unwinds, the (sub)transaction's abort
        // closes the nest level itself.
        unsafe {
            if !std::thread::panicking() {
                pg_sys::AtEOXact_GUC(false, self.nest);
            }
            pg_sys::SetUserIdAndSecContext(self.user, self.context)
        };
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

/// Of `tables` (what a query reads, views expanded), the first that pg_trickle would add triggers to
/// on `role`'s behalf — a table `role` may read, without pg_trickle's triggers of the kind `armed`
/// tests for — although `role` may not add triggers to it, or to one of its partitions or
/// inheritance children, itself: adding one takes a lock that holds off every writer of the table
/// until the transaction ends, and costs each writer the trigger from then on, so it takes the
/// `TRIGGER` privilege on each, as `CREATE TRIGGER` does. Returns the table (or member) denied.
pub fn first_table_denying_triggers(
    role: Oid,
    tables: &[Oid],
    armed: impl Fn(Oid) -> PgtResult<bool>,
) -> PgtResult<Option<Oid>> {
    let may = |relid: Oid, mode: u32| {
        // SAFETY: a catalog lookup of a relation's ACL.
        unsafe {
            pg_sys::pg_class_aclcheck(relid, role, mode as pg_sys::AclMode)
                == pg_sys::AclResult::ACLCHECK_OK
        }
    };
    for &relid in tables {
        // SAFETY: a catalog lookup of a relation's kind.
        let kind = unsafe { pg_sys::get_rel_relkind(relid) } as u8;
        let table = kind == pg_sys::RELKIND_RELATION || kind == pg_sys::RELKIND_PARTITIONED_TABLE;
        // A table the role may not read is refused for that, with its own reason.
        if !table || !may(relid, pg_sys::ACL_SELECT) || armed(relid)? {
            continue;
        }
        let mut members = std::iter::once(relid).chain(crate::cdc::descendant_tables(relid)?);
        if let Some(denied) = members.find(|&m| !may(m, pg_sys::ACL_TRIGGER)) {
            return Ok(Some(denied));
        }
    }
    Ok(None)
}

/// The caller must be able to read every relation a new stream table's query names, whole: change
/// capture queues whole rows, and its buffers are shown to whoever may read the source's table (a
/// grant of some columns is not enough, though it lets the query run).
pub fn require_select(caller: Oid, sources: &[Oid]) -> PgtResult<()> {
    let denied = spi::rows(
        "SELECT s::pg_catalog.regclass::text AS source,
                pg_catalog.has_any_column_privilege($2, s, 'SELECT') AS some_columns
           FROM pg_catalog.unnest($1::oid[]) AS s
          WHERE NOT pg_catalog.has_table_privilege($2, s, 'SELECT') ORDER BY 1 LIMIT 1",
        &[sources.to_vec().into(), caller.into()],
        |r| {
            Ok((
                spi::col::<String>(r, "source")?,
                spi::col::<bool>(r, "some_columns")?,
            ))
        },
    )?;
    let Some((source, some_columns)) = denied.into_iter().next() else {
        return Ok(());
    };
    let err = PgtError::new(
        SqlState::InsufficientPrivilege,
        format!("permission denied for table {source}"),
    );
    Err(if some_columns {
        err.detail(format!(
            "Only some columns of {source} are granted: a stream table's owner must be able to read the whole table, because change capture queues whole rows."
        ))
        .hint(format!("Grant SELECT on the whole of {source}."))
    } else {
        err.detail("A stream table's owner must be able to read everything its query reads.")
    })
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
