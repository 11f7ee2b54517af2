//! Functions the extension's own SQL calls (event triggers); not for users (EXECUTE revoked).

use crate::error::OrRaise;
use pgrx::pg_sys::Oid;
use pgrx::prelude::*;

/// Called after ALTER TABLE on a source: keeps change capture in step with its columns.
#[pg_extern(schema = "pgtrickle", name = "_source_altered")]
fn source_altered(source: Oid) {
    crate::cdc::source_altered(source).or_raise()
}
