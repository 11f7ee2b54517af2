//! Entries in pg_depend that make PostgreSQL itself protect stream tables:
//! - storage table -> each source: `DROP TABLE source` fails with "other objects depend on it" unless
//!   CASCADE, which drops the stream table too (the sql_drop event trigger then clears the catalog);
//! - storage table -> the extension: `DROP EXTENSION pg_trickle` lists the stream tables and needs
//!   CASCADE, which removes them with everything else the extension created.

use pgrx::pg_sys::{self, Oid};

fn record(dependent: (Oid, Oid), referenced: (Oid, Oid), kind: pg_sys::DependencyType::Type) {
    let dependent = pg_sys::ObjectAddress {
        classId: dependent.0,
        objectId: dependent.1,
        objectSubId: 0,
    };
    let referenced = pg_sys::ObjectAddress {
        classId: referenced.0,
        objectId: referenced.1,
        objectSubId: 0,
    };
    // SAFETY: both addresses are valid for the duration of the call; recordDependencyOn inserts a
    // pg_depend row in the current transaction and raises a PostgreSQL error on failure.
    unsafe { pg_sys::recordDependencyOn(&dependent, &referenced, kind) }
}

fn relation(oid: Oid) -> (Oid, Oid) {
    (pg_sys::RelationRelationId, oid)
}

/// The storage table depends on a relation it reads.
pub fn on_source(storage: Oid, source: Oid) {
    record(
        relation(storage),
        relation(source),
        pg_sys::DependencyType::DEPENDENCY_NORMAL,
    );
}

/// A change buffer goes away, silently, with its source table.
pub fn auto_on_source_relation(buffer: Oid, source: Oid) {
    record(
        relation(buffer),
        relation(source),
        pg_sys::DependencyType::DEPENDENCY_AUTO,
    );
}

/// So do the capture trigger functions.
pub fn auto_function_on_source(function: Oid, source: Oid) {
    record(
        (pg_sys::ProcedureRelationId, function),
        relation(source),
        pg_sys::DependencyType::DEPENDENCY_AUTO,
    );
}

/// A stream table's query view goes with its storage table.
pub fn auto_on_storage(view: Oid, storage: Oid) {
    record(
        relation(view),
        relation(storage),
        pg_sys::DependencyType::DEPENDENCY_AUTO,
    );
}

/// The storage table depends on the pg_trickle extension.
pub fn on_extension(storage: Oid) {
    // SAFETY: a static C string; missing_ok = false raises if the extension is absent, which cannot
    // happen while one of its functions is running.
    let ext = unsafe { pg_sys::get_extension_oid(c"pg_trickle".as_ptr(), false) };
    record(
        relation(storage),
        (pg_sys::ExtensionRelationId, ext),
        pg_sys::DependencyType::DEPENDENCY_NORMAL,
    );
}

/// Runs `body` so that what it creates belongs to the user's objects, not to the extension, even when
/// called from an extension script (`ALTER EXTENSION pg_trickle UPDATE` re-arming capture): change
/// buffers, capture functions and query views are per-database objects that dumps must contain and
/// that pg_trickle replaces at will, which PostgreSQL forbids for extension members.
pub fn outside_extension_script<R>(body: impl FnOnce() -> R) -> R {
    // SAFETY: backend globals read and written from the backend's only thread. On an ERROR the
    // extension machinery resets both itself (execute_extension_script's PG_CATCH).
    let saved = unsafe { (pg_sys::creating_extension, pg_sys::CurrentExtensionObject) };
    unsafe {
        pg_sys::creating_extension = false;
        pg_sys::CurrentExtensionObject = pg_sys::InvalidOid;
    }
    let out = body();
    unsafe {
        pg_sys::creating_extension = saved.0;
        pg_sys::CurrentExtensionObject = saved.1;
    }
    out
}
