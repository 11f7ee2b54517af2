//! Marking stream tables for reinitialisation — their next refresh is FULL — and saying why (a row
//! of `pgt_reinit_requests`, shown in the refresh history when the FULL refresh runs).

use crate::error::PgtResult;
use crate::spi;
use pgrx::pg_sys::Oid;

/// The SQL that marks the stream tables chosen by `filter` (a condition on pgt_stream_tables) for
/// reinitialisation with `reason_sql` (an SQL expression); the earliest reason is the one shown.
///
/// Marks are often made inside someone else's transaction (DDL on a source, from the event
/// triggers), so they are appended to `pgt_reinit_requests` rather than written to the stream table's
/// row: under REPEATABLE READ an update of a row a refresh updated since the snapshot fails with
/// 40001, an insert never does. A 0.1.0 catalog has no such table and gets the update.
pub fn mark_sql(filter: &str, reason_sql: &str) -> PgtResult<String> {
    Ok(if super::version::at_least_0_2_0()? {
        format!(
            "INSERT INTO pgtrickle.pgt_reinit_requests (pgt_id, reason)
             SELECT pgt_id, {reason_sql} FROM pgtrickle.pgt_stream_tables WHERE {filter}"
        )
    } else {
        format!("UPDATE pgtrickle.pgt_stream_tables SET needs_reinit = true WHERE {filter}")
    })
}

/// Whether the stream table `alias` (a row of pgt_stream_tables) must reinitialise: its own flag or
/// a request, as an SQL expression. (The requests are few, usually none: one hashed subplan.)
pub fn pending_sql(alias: &str) -> PgtResult<String> {
    Ok(if super::version::at_least_0_2_0()? {
        format!(
            "({alias}.needs_reinit OR {alias}.pgt_id IN (SELECT q.pgt_id FROM pgtrickle.pgt_reinit_requests q))"
        )
    } else {
        format!("{alias}.needs_reinit")
    })
}

/// Deletes the requests a successful refresh honoured (by id: a manual refresh's last statements may
/// see requests made since it decided, which stay for the next one).
pub fn clear_requests(ids: &[i64]) -> PgtResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    spi::exec(
        "DELETE FROM pgtrickle.pgt_reinit_requests WHERE request_id = ANY($1)",
        &[ids.to_vec().into()],
    )
}

/// Marks every stream table reading `source`.
pub fn mark_dependents(source: Oid, reason: &str) -> PgtResult<()> {
    spi::exec(
        &mark_sql(&super::readers_of("$1", ""), "$2")?,
        &[source.into(), reason.into()],
    )
}
