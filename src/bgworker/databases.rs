//! The launcher's view of the cluster's databases. The launcher is connected to no database, so it
//! reads the shared catalog pg_database directly, as autovacuum's launcher does.

use pgrx::pg_sys::{self, Oid};

pub struct Database {
    pub oid: Oid,
    pub name: String,
}

/// Databases a scheduler may connect to: not templates, connections allowed, not half-dropped.
pub fn connectable() -> Vec<Database> {
    let mut out = Vec::new();
    // SAFETY: standard catalog heap scan inside a transaction (see autovacuum.c get_database_list);
    // tuples are only read while the scan is open, and names are copied out before it ends.
    unsafe {
        pg_sys::StartTransactionCommand();
        pg_sys::GetTransactionSnapshot();
        let rel = pg_sys::table_open(
            pg_sys::DatabaseRelationId,
            pg_sys::AccessShareLock as pg_sys::LOCKMODE,
        );
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let db = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            // datconnlimit = -2 marks a database whose DROP DATABASE was interrupted.
            if (*db).datallowconn && !(*db).datistemplate && (*db).datconnlimit != -2 {
                let name = std::ffi::CStr::from_ptr((*db).datname.data.as_ptr())
                    .to_string_lossy()
                    .into_owned();
                out.push(Database {
                    oid: (*db).oid,
                    name,
                });
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        pg_sys::CommitTransactionCommand();
    }
    out
}
