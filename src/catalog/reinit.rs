//! Marking stream tables for reinitialisation — their next refresh is FULL — and saying why
//! (`pgt_stream_tables.reinit_reason`, shown in the refresh history when the FULL refresh runs).

use crate::error::PgtResult;
use crate::spi;
use pgrx::pg_sys::Oid;

/// The SQL that marks the stream tables chosen by `filter` (a condition on pgt_stream_tables) for
/// reinitialisation with `reason_sql` (an SQL expression), keeping an earlier reason if there is one.
pub fn mark_sql(filter: &str, reason_sql: &str) -> PgtResult<String> {
    let reason = if super::version::at_least_0_2_0()? {
        format!(", reinit_reason = COALESCE(reinit_reason, {reason_sql})")
    } else {
        String::new()
    };
    Ok(format!(
        "UPDATE pgtrickle.pgt_stream_tables SET needs_reinit = true{reason} WHERE {filter}"
    ))
}

/// Marks every stream table reading `source`.
pub fn mark_dependents(source: Oid, reason: &str) -> PgtResult<()> {
    spi::exec(
        &mark_sql(
            "pgt_id IN (SELECT pgt_id FROM pgtrickle.pgt_dependencies WHERE source_relid = $1)",
            "$2",
        )?,
        &[source.into(), reason.into()],
    )
}
