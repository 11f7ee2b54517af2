//! Replaced rows: a source's rows replaced as a whole, recorded as one change row of weight 0
//! (`REPLACED_WEIGHT`) rather than a change row per row. A TRUNCATE writes one (its trigger function,
//! cdc/mod.rs), and so does the FULL refresh of a stream table below. A reader whose batch holds one
//! refreshes FULL.
//!
//! A stream table read by other stream tables is itself a captured source. Its FULL refresh replaces
//! every row: captured row by row, that is a change row per deleted and per inserted row — a FULL
//! refresh of a 450,000-row result took 3.4 times as long, and its readers then worked through
//! 900,000 change rows where recomputing took a fifth of the time.
//!
//! So when every reader would refresh FULL for such a batch anyway (`refresh::replace` decides),
//! the refresh's own writes are not captured. One *replaced* row goes into the buffer instead, in
//! the same transaction: weight 0, no values. A reader whose batch holds one refreshes FULL. The row
//! is visible exactly when the new contents are, so every reader gets it right at any frontier, one
//! created meanwhile included. A weight of 0 adds nothing to any delta, were one ever to read it.

use crate::error::PgtResult;
use pgrx::pg_sys::{self, Oid};
use std::cell::Cell;

pub use crate::dvm::diff::context::REPLACED_WEIGHT;

thread_local! {
    /// The stream table whose contents this backend is replacing uncaptured, and the transaction
    /// doing it: capture of that table is skipped in that transaction only, whatever happens to the
    /// guard that should have cleared it.
    static REPLACING: Cell<Option<(Oid, u64)>> = const { Cell::new(None) };
}

fn current_transaction() -> u64 {
    // SAFETY: reads the current transaction's state; no side effects.
    unsafe { pg_sys::GetTopFullTransactionIdIfAny().value }
}

/// Whether writes to `table` are not to be captured now: this backend is replacing its contents.
pub fn is_replacing(table: Oid) -> bool {
    REPLACING.with(|r| match r.get() {
        Some((relid, xact)) => relid == table && xact == current_transaction(),
        None => false,
    })
}

/// Called by a source's TRUNCATE trigger function (as pgtrickle_capture, the only role that may):
/// appends a replaced row to the source's change buffer and signals the change. Written as capture
/// writes its rows: an `INSERT` would fill the buffer's other columns with NULLs checked against
/// their types, running the CHECK of a source's domain with pgtrickle_capture's rights.
#[pgrx::pg_extern(schema = "pgtrickle", name = "_capture_truncate", parallel_unsafe)]
fn capture_truncate(source: Oid) {
    use crate::error::OrRaise;
    // SAFETY: called by the trigger on `source`, whose buffer exists while the trigger does.
    unsafe { super::trigger::append_replaced_row(source) }.or_raise()
}

/// Runs `replace` — the statements replacing every row of the stream table `storage` — without
/// capturing its writes, after appending a replaced row to the table's change buffer.
pub fn uncaptured<T>(storage: Oid, replace: impl FnOnce() -> PgtResult<T>) -> PgtResult<T> {
    // SAFETY: the buffer exists (the caller checked that `storage` is captured); the row is written
    // as capture writes its rows.
    unsafe { super::trigger::append_replaced_row(storage) }?;
    struct Restore(Option<(Oid, u64)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            REPLACING.with(|r| r.set(self.0));
        }
    }
    // The replaced row gave the transaction its xid.
    let _restore = Restore(REPLACING.with(|r| r.replace(Some((storage, current_transaction())))));
    replace()
}
