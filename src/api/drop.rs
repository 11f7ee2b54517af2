use crate::catalog::{names, privilege, stream_tables};
use crate::error::{required, OrRaise, PgtResult};
use crate::spi;
use pgrx::prelude::*;

/// Drops a stream table: its storage table, its catalog entries, and change capture no other stream
/// table needs. Refused (by PostgreSQL's own
/// dependency check) while another stream table reads it.
#[pg_extern(schema = "pgtrickle")]
fn drop_stream_table(name: Option<&str>) {
    let caller = privilege::caller();
    super::on_primary("drop a stream table")
        .and_then(|()| required(name, "name"))
        .and_then(|name| privilege::as_extension_owner(|| drop(caller, name)))
        .or_raise()
}

fn drop(caller: pgrx::pg_sys::Oid, name: &str) -> PgtResult<()> {
    let st = stream_tables::find(name)?;
    privilege::require_owner(caller, st.relid, name)?;
    let storage = names::qualified_name_of(st.relid)?;
    spi::exec(
        "DELETE FROM pgtrickle.pgt_stream_tables WHERE pgt_id = $1",
        &[st.pgt_id.into()],
    )?;
    spi::exec(&format!("DROP TABLE {storage}"), &[])?;
    // Sources nobody reads differentially any more lose their change capture.
    crate::cdc::collect_garbage()
}
