use crate::catalog::{privilege, restore};
use crate::error::OrRaise;
use pgrx::prelude::*;

/// After pg_restore: ties each restored catalog row to its stream table in this database again, arms
/// change capture anew, and makes each one's next refresh FULL. One row per restored catalog row.
#[pg_extern(schema = "pgtrickle")]
fn restore_stream_tables() -> TableIterator<
    'static,
    (
        name!(pgt_id, i64),
        name!(stream_table, Option<String>),
        name!(outcome, String),
    ),
> {
    let caller = privilege::caller();
    let restored = super::on_primary("restore stream tables")
        .and_then(|()| privilege::require_superuser(caller, "restore stream tables"))
        .and_then(|()| privilege::as_extension_owner(restore::restore))
        .or_raise();
    TableIterator::new(
        restored
            .into_iter()
            .map(|r| (r.pgt_id, r.stream_table, r.outcome)),
    )
}
