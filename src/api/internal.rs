//! Functions the extension's own SQL calls (event triggers); not for users (EXECUTE revoked).

use crate::error::OrRaise;
use pgrx::pg_sys::Oid;
use pgrx::prelude::*;

/// Called after ALTER TABLE on a source: keeps change capture in step with its columns.
#[pg_extern(schema = "pgtrickle", name = "_source_altered")]
fn source_altered(source: Oid) {
    crate::catalog::depend::outside_extension_script(|| crate::cdc::source_altered(source))
        .or_raise()
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

/// Called after DDL that may rename or redefine what stream tables read (`relid`; NULL for a schema):
/// their stored queries and operator trees follow renames; a redefined view makes its dependents
/// reinitialise.
#[pg_extern(schema = "pgtrickle", name = "_query_sources_changed")]
fn query_sources_changed(command_tag: &str, relid: Option<Oid>) {
    crate::catalog::query_view::sources_changed(command_tag, relid).or_raise()
}

/// Gives a stream table created before 0.2.0 its query view (the update script calls it).
#[pg_extern(schema = "pgtrickle", name = "_create_query_view")]
fn create_query_view(pgt_id: i64) {
    let _own = crate::catalog::guard::OwnWrite::begin();
    let create = || -> crate::error::PgtResult<()> {
        let Some(st) = crate::catalog::stream_tables::load(pgt_id)? else {
            return Ok(());
        };
        crate::catalog::query_view::create(pgt_id, st.relid, &st.defining_query)
    };
    crate::catalog::depend::outside_extension_script(create).or_raise()
}
