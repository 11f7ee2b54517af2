use crate::catalog::stream_tables;
use crate::error::{OrRaise, PgtResult};
use crate::refresh::{self, Initiator};
use pgrx::prelude::*;

/// Refreshes a stream table now, in the caller's transaction. Waits for a refresh already running.
#[pg_extern(schema = "pgtrickle")]
fn refresh_stream_table(name: &str) {
    run(name).or_raise()
}

fn run(name: &str) -> PgtResult<()> {
    let wrote_before = refresh::has_xid();
    let pgt_id = stream_tables::find_id(name)?;
    refresh::run(pgt_id, Initiator::Manual, wrote_before).map(|_| ())
}
