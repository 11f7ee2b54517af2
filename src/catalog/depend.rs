//! Entries in pg_depend that make PostgreSQL itself protect stream tables:
//! - storage table -> each source: `DROP TABLE source` fails with "other objects depend on it" unless
//!   CASCADE, which drops the stream table too (the sql_drop event trigger then clears the catalog);
//! - storage table -> the extension: `DROP EXTENSION pg_trickle` lists the stream tables and needs
//!   CASCADE, which removes them with everything else the extension created.

use pgrx::pg_sys::{self, Oid};

fn record(dependent_relid: Oid, referenced_class: Oid, referenced_oid: Oid) {
    let dependent = pg_sys::ObjectAddress { classId: pg_sys::RelationRelationId, objectId: dependent_relid, objectSubId: 0 };
    let referenced = pg_sys::ObjectAddress { classId: referenced_class, objectId: referenced_oid, objectSubId: 0 };
    // SAFETY: both addresses are valid for the duration of the call; recordDependencyOn inserts a
    // pg_depend row in the current transaction and raises a PostgreSQL error on failure.
    unsafe { pg_sys::recordDependencyOn(&dependent, &referenced, pg_sys::DependencyType::DEPENDENCY_NORMAL) }
}

/// The storage table depends on a relation it reads.
pub fn on_source(storage: Oid, source: Oid) {
    record(storage, pg_sys::RelationRelationId, source);
}

/// The storage table depends on the pg_trickle extension.
pub fn on_extension(storage: Oid) {
    // SAFETY: a static C string; missing_ok = false raises if the extension is absent, which cannot
    // happen while one of its functions is running.
    let ext = unsafe { pg_sys::get_extension_oid(c"pg_trickle".as_ptr(), false) };
    record(storage, pg_sys::ExtensionRelationId, ext);
}
