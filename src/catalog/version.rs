//! Which catalog the library runs against. A new library is installed before
//! `ALTER EXTENSION pg_trickle UPDATE`, so for a while it serves the previous version's catalog.

use crate::error::PgtResult;
use crate::spi;
use std::cell::Cell;

thread_local! {
    /// Once the 0.2.0 catalog is seen, it stays (no downgrades).
    static AT_LEAST_0_2_0: Cell<bool> = const { Cell::new(false) };
}

/// Whether the catalog is 0.2.0's or later: `reinit_reason`, query views, the capture role. Told by
/// `pgt_stream_tables.reinit_reason`, which 0.2.0 added.
pub fn at_least_0_2_0() -> PgtResult<bool> {
    if AT_LEAST_0_2_0.with(Cell::get) {
        return Ok(true);
    }
    let found = spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                         WHERE attrelid = 'pgtrickle.pgt_stream_tables'::pg_catalog.regclass
                           AND attname = 'reinit_reason' AND NOT attisdropped)",
        &[],
    )? == Some(true);
    AT_LEAST_0_2_0.with(|c| c.set(found));
    Ok(found)
}
