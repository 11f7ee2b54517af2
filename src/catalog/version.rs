//! Which catalog the library runs against. A new library is installed before
//! `ALTER EXTENSION pg_trickle UPDATE`, so for a while it serves the previous version's catalog.

use crate::error::PgtResult;
use crate::spi;
use std::cell::Cell;
use std::thread::LocalKey;

thread_local! {
    static AT_LEAST_0_2_0: Cell<bool> = const { Cell::new(false) };
    static BATCH_FUNCTION: Cell<bool> = const { Cell::new(false) };
    static WINDOW_RANKS: Cell<bool> = const { Cell::new(false) };
}

/// Whether the catalog has what `probe` (a query of one boolean) looks for. Once seen, it stays for
/// the backend's life (no downgrades); until then every call asks.
fn seen(once_seen: &'static LocalKey<Cell<bool>>, probe: &str) -> PgtResult<bool> {
    if once_seen.with(Cell::get) {
        return Ok(true);
    }
    let found = spi::one::<bool>(probe, &[])? == Some(true);
    once_seen.with(|c| c.set(found));
    Ok(found)
}

/// Whether the catalog is 0.2.0's or later: `reinit_reason`, query views, the capture role. Told by
/// `pgt_stream_tables.reinit_reason`, which 0.2.0 added.
pub fn at_least_0_2_0() -> PgtResult<bool> {
    seen(
        &AT_LEAST_0_2_0,
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                         WHERE attrelid = 'pgtrickle.pgt_stream_tables'::pg_catalog.regclass
                           AND attname = 'reinit_reason' AND NOT attisdropped)",
    )
}

/// Whether the catalog has `pgtrickle._in_batch` (src/cdc/batch.rs), told by the function itself:
/// a database whose 0.2.0 catalog predates it is served the visibility functions.
pub fn has_batch_function() -> PgtResult<bool> {
    seen(
        &BATCH_FUNCTION,
        "SELECT pg_catalog.to_regprocedure('pgtrickle._in_batch(xid8, pg_catalog.pg_snapshot, pg_catalog.pg_snapshot, bigint)') IS NOT NULL",
    )
}

/// Whether the catalog has `pgtrickle._window_ranks` (src/dvm/analyze/window.rs), which rank() and
/// its kin are maintained with; a 0.2.0 catalog that predates it refuses them DIFFERENTIAL.
pub fn has_window_ranks() -> PgtResult<bool> {
    seen(
        &WINDOW_RANKS,
        "SELECT pg_catalog.to_regprocedure('pgtrickle._window_ranks(anyarray, \"char\")') IS NOT NULL",
    )
}
