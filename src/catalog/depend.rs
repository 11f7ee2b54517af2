//! Entries in pg_depend that make PostgreSQL itself protect stream tables:
//! - storage table -> each source: `DROP TABLE source` fails with "other objects depend on it" unless
//!   CASCADE, which drops the stream table too (the sql_drop event trigger then clears the catalog);
//! - storage table -> the extension: `DROP EXTENSION pg_trickle` lists the stream tables and needs
//!   CASCADE, which removes them with everything else the extension created;
//! - storage table -> the unique index of a key its query's reading relies on ([`on_unique_keys`]).

use pgrx::pg_sys::{self, Oid};

use crate::dvm::optree::UniqueKey;
use crate::error::{PgtError, PgtResult, SqlState};
use crate::spi;

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

/// The storage table depends on the unique index of each key its reading relies on
/// (`OpTree::unique_keys`: a lookup subquery read as a left join), and on no other index: without the
/// key the subquery could return several rows, which PostgreSQL refuses at run time and the reading
/// would show as several rows. So `DROP INDEX` or `DROP CONSTRAINT` of it fails unless CASCADE, which
/// drops the stream table, as for a source. A reading that no longer relies on a key (the stream
/// table became FULL) releases it.
pub fn on_unique_keys(storage: Oid, keys: &[UniqueKey]) -> PgtResult<()> {
    let sorted = |columns: &[String]| {
        let mut c = columns.to_vec();
        c.sort();
        c
    };
    let mut wanted = Vec::new();
    for key in keys {
        let index = unique_indexes(Oid::from(key.relid))?
            .into_iter()
            .find(|(_, columns)| sorted(columns) == sorted(&key.columns))
            .map(|(index, _)| index);
        let Some(index) = index else {
            return Err(PgtError::new(
                SqlState::ObjectNotInPrerequisiteState,
                "a unique key the stream table's query relies on is gone",
            )
            .hint("Create the stream table again."));
        };
        wanted.push(index);
    }
    let recorded: Vec<Oid> = spi::rows(
        "SELECT d.refobjid FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid = d.refobjid
          WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = $1
            AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'n'
            AND c.relkind IN ('i', 'I')",
        &[storage.into()],
        |r| spi::col::<Oid>(r, "refobjid"),
    )?;
    let normal = pg_sys::DependencyType::DEPENDENCY_NORMAL;
    for index in recorded.iter().filter(|i| !wanted.contains(i)) {
        // SAFETY: deletes pg_depend rows of this transaction's catalog state; raises on failure.
        unsafe {
            pg_sys::deleteDependencyRecordsForSpecific(
                pg_sys::RelationRelationId,
                storage,
                normal as u8 as std::ffi::c_char,
                pg_sys::RelationRelationId,
                *index,
            );
        }
    }
    for index in wanted.iter().filter(|i| !recorded.contains(i)) {
        record(relation(storage), relation(*index), normal);
    }
    Ok(())
}

/// The unique indexes of table `relid` that a lookup may rely on, with their key columns in index
/// order, the primary key first: valid, immediate (not DEFERRABLE), not partial, over plain columns,
/// and not an inheritance parent's (which does not cover the children a query reads with it).
pub fn unique_indexes(relid: Oid) -> PgtResult<Vec<(Oid, Vec<String>)>> {
    spi::rows(
        "SELECT i.indexrelid,
                (SELECT pg_catalog.array_agg(a.attname::text ORDER BY k.n)
                   FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, n)
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE k.n <= i.indnkeyatts) AS columns
           FROM pg_catalog.pg_index i
          WHERE i.indrelid = $1 AND i.indisunique AND i.indimmediate AND i.indisvalid
            AND i.indpred IS NULL AND i.indexprs IS NULL
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h JOIN pg_catalog.pg_class c ON c.oid = h.inhparent
                             WHERE h.inhparent = i.indrelid AND c.relkind = 'r')
          ORDER BY i.indisprimary DESC, i.indnkeyatts, i.indexrelid",
        &[relid.into()],
        |r| Ok((spi::col::<Oid>(r, "indexrelid")?, spi::col::<Vec<String>>(r, "columns")?)),
    )
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
