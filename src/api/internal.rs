//! Functions the extension's own SQL calls (event triggers); not for users (EXECUTE revoked).

use crate::error::OrRaise;
use pgrx::pg_sys::Oid;
use pgrx::prelude::*;

/// Called after ALTER TABLE on a source: keeps change capture in step with its columns.
#[pg_extern(schema = "pgtrickle", name = "_source_altered")]
fn source_altered(source: Oid) {
    crate::cdc::source_altered(source).or_raise()
}

/// Asked by the write guard on stream tables: is this write pg_trickle's own (a refresh)?
#[pg_extern(schema = "pgtrickle", name = "_own_write")]
fn own_write() -> bool {
    crate::catalog::guard::own_write_active()
}

/// Called after ALTER TABLE on a stream table: refuses changes to its columns.
#[pg_extern(schema = "pgtrickle", name = "_stream_table_altered")]
fn stream_table_altered(relid: Oid) {
    crate::catalog::guard::check_altered(relid).or_raise()
}
