use crate::catalog::{privilege, stream_tables};
use crate::error::{required, OrRaise, PgtError, PgtResult, SqlState};
use crate::refresh::{self, Breakage, Initiator, Outcome};
use pgrx::prelude::*;

/// Refreshes a stream table now, in the caller's transaction. Waits for a refresh already running.
#[pg_extern(schema = "pgtrickle")]
fn refresh_stream_table(name: Option<&str>) {
    let caller = privilege::caller();
    // Asked before the refresh writes anything: its own writes assign an xid, which would make every
    // manual refresh look like one inside a writing transaction and scan every buffer for its rows.
    let wrote_before = refresh::has_xid();
    super::on_primary("refresh a stream table")
        .and_then(|()| required(name, "name"))
        .and_then(|name| privilege::as_extension_owner(|| run(caller, name, wrote_before)))
        .or_raise()
}

fn run(caller: pgrx::pg_sys::Oid, name: &str, wrote_before: bool) -> PgtResult<()> {
    let (relid, pgt_id) = stream_tables::find_ids(name)?;
    privilege::require_owner(caller, relid, name)?;
    match refresh::run(pgt_id, Initiator::Manual, wrote_before)? {
        Outcome::Broken(breakage) => {
            let why = stream_tables::load(pgt_id)?
                .and_then(|st| st.last_error)
                .unwrap_or_default();
            let hint = match breakage {
                Breakage::NotDifferential => format!(
                    "Refresh it FULL from now on: SELECT pgtrickle.alter_stream_table({}, refresh_mode => 'FULL', status => 'ACTIVE'); with 'AUTO' it is refreshed FULL while a source needs it.",
                    crate::dvm::sql::quote_literal(name)
                ),
                Breakage::Query | Breakage::ForeignRow => {
                    "Drop the stream table and create it again for its sources as they are now.".to_string()
                }
            };
            Err(PgtError::new(
                SqlState::ObjectNotInPrerequisiteState,
                format!("stream table \"{name}\" cannot be refreshed: {why}"),
            )
            .hint(hint))
        }
        _ => Ok(()),
    }
}
