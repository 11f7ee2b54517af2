//! A FULL refresh deletes the stream table's old rows itself, as it inserts the new ones
//! (`full_insert`): a scan of the table, each row it sees deleted in place.
//!
//! A stream table read by other stream tables carries capture triggers with transition tables, and
//! PostgreSQL fills a statement trigger's transition table with every row a `DELETE` deletes whether
//! or not the trigger then records anything — while the contents are replaced uncaptured
//! (cdc/replaced.rs) it records nothing. On the bench's 450,000-row upstream that tuplestore, spilt to
//! disk, made the `DELETE` take 440–490 ms instead of 240–300 ms. (Without capture triggers the two
//! ways take the same time, within this machine's noise; every FULL refresh deletes this way all the
//! same, so the path is the one every FULL refresh tests.)
//!
//! The deletions are MVCC deletions like the statement's: readers keep seeing the old rows until the
//! refresh commits, and a publication decodes them as deletes. Only a table the refresh may write
//! without its statement gets them (`direct_writes`, which also says what its signal triggers would
//! have); any other gets its `DELETE`, which behaves as it always has.

use crate::error::{PgtError, PgtResult, SqlState};
use pgrx::pg_sys::{self, Oid};

/// Deletes every row of `relid` visible to `snapshot`; how many, or None when the table cannot lose
/// rows this way (the caller then runs the `DELETE`).
///
/// # Safety
/// `snapshot` is registered, and the transaction may take `RowExclusiveLock` on `relid` (the refresh
/// claimed the stream table).
pub unsafe fn delete_all(relid: Oid, snapshot: pg_sys::Snapshot) -> PgtResult<Option<u64>> {
    // SAFETY: as the caller promises; the scan, slot and relation are released on every path that
    // returns, and an ERROR raised inside unwinds to the (sub)transaction's abort, which releases
    // them.
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let Some(direct) = super::direct_writes::writes_directly(rel, pg_sys::ACL_DELETE) else {
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            return Ok(None);
        };
        // As the statement would: a table that publishes deletes without a replica identity cannot
        // have them decoded, so they are refused (SQLSTATE 55000) rather than published as nothing.
        pg_sys::CheckCmdReplicaIdentity(rel, pg_sys::CmdType::CMD_DELETE);
        let slot = pg_sys::table_slot_create(rel, std::ptr::null_mut());
        let scan = pg_sys::table_beginscan(rel, snapshot, 0, std::ptr::null_mut());
        let command = pg_sys::GetCurrentCommandId(true);
        let mut deleted = 0u64;
        let mut failed = None;
        while pg_sys::table_scan_getnextslot(
            scan,
            pg_sys::ScanDirection::ForwardScanDirection,
            slot,
        ) {
            let mut failure: pg_sys::TM_FailureData = std::mem::zeroed();
            let result = pg_sys::table_tuple_delete(
                rel,
                &mut (*slot).tts_tid,
                command,
                snapshot,
                std::ptr::null_mut(),
                true,
                &mut failure,
                false,
            );
            if result != pg_sys::TM_Result::TM_Ok {
                failed = Some(result);
                break;
            }
            deleted += 1;
            pgrx::check_for_interrupts!();
        }
        pg_sys::table_endscan(scan);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        if let Some(result) = failed {
            return Err(concurrently_written(relid, result));
        }
        // The deletions are the refresh's own writes: its next statements no longer see the rows.
        pg_sys::CommandCounterIncrement();
        direct.written();
        pgrx::debug1!("pg_trickle: FULL refresh deleted {deleted} rows itself");
        Ok(Some(deleted))
    }
}

/// A row another transaction updated or deleted since the refresh's snapshot. Only refreshes write a
/// stream table (its guard), so this takes an expert's doing — the guard disabled, a subscription
/// applying into the table. The `DELETE` would have followed the row under READ COMMITTED; a refresh
/// that meets it fails as a REPEATABLE READ one would, and is retried.
fn concurrently_written(relid: Oid, result: pg_sys::TM_Result::Type) -> PgtError {
    let what = match result {
        pg_sys::TM_Result::TM_Updated => "updated",
        pg_sys::TM_Result::TM_Deleted => "deleted",
        _ => return PgtError::internal(format!("deleting a stream table's row returned {result}")),
    };
    let table = crate::catalog::names::qualified_name_of(relid)
        .map(|n| n.to_string())
        .unwrap_or_else(|_| format!("OID {}", relid.to_u32()));
    PgtError::new(
        SqlState::SerializationFailure,
        format!("could not refresh stream table {table}: another transaction {what} one of its rows meanwhile"),
    )
    .hint("Only refreshes should write a stream table; retry the refresh (a scheduled one is retried by itself).")
}
