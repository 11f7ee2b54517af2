use crate::catalog::{names, privilege, stream_tables};
use crate::error::{required, OrRaise, PgtError, PgtResult, SqlState};
use crate::spi;
use pgrx::prelude::*;

/// Drops a stream table: its storage table, its catalog entries, and change capture no other stream
/// table needs. Refused while another stream table reads it.
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
    // PostgreSQL's own refusal would name the reader's query view and hint at a CASCADE this
    // function does not have.
    let readers = spi::one::<String>(
        "SELECT pg_catalog.string_agg(s.pgt_relid::pg_catalog.regclass::text, ', ' ORDER BY 1)
           FROM pgtrickle.pgt_stream_tables s
          WHERE s.pgt_id IN (SELECT d.pgt_id FROM pgtrickle.pgt_dependencies d WHERE d.source_relid = $1)",
        &[st.relid.into()],
    )?;
    if let Some(readers) = readers {
        return Err(PgtError::new(
            SqlState::DependentObjectsStillExist,
            format!("cannot drop stream table {storage} because other stream tables read it"),
        )
        .detail(format!("Read by: {readers}."))
        .hint(format!(
            "Drop those first, or drop all of them with DROP TABLE {storage} CASCADE."
        )));
    }
    spi::exec(
        "DELETE FROM pgtrickle.pgt_stream_tables WHERE pgt_id = $1",
        &[st.pgt_id.into()],
    )?;
    spi::exec(&format!("DROP TABLE {storage}"), &[])?;
    // Sources nobody reads differentially any more lose their change capture.
    crate::cdc::collect_garbage()
}
