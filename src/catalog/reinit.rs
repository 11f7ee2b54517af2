//! Marking stream tables for reinitialisation — their next refresh is FULL — and saying why
//! (`pgt_stream_tables.reinit_reason`, shown in the refresh history when the FULL refresh runs).

use crate::error::PgtResult;
use crate::spi;
use pgrx::pg_sys::Oid;
use std::cell::Cell;

thread_local! {
    /// Whether the catalog has `reinit_reason` (0.2.0 on); once seen, it stays (no downgrades).
    static HAS_REASON_COLUMN: Cell<bool> = const { Cell::new(false) };
}

/// Whether the catalog records reinitialisation reasons. The library also runs against a 0.1.0
/// catalog until `ALTER EXTENSION pg_trickle UPDATE`.
pub fn has_reason_column() -> PgtResult<bool> {
    if HAS_REASON_COLUMN.with(Cell::get) {
        return Ok(true);
    }
    let found = spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                         WHERE attrelid = 'pgtrickle.pgt_stream_tables'::pg_catalog.regclass
                           AND attname = 'reinit_reason' AND NOT attisdropped)",
        &[],
    )? == Some(true);
    HAS_REASON_COLUMN.with(|c| c.set(found));
    Ok(found)
}

/// The SQL that marks the stream tables chosen by `filter` (a condition on pgt_stream_tables) for
/// reinitialisation with `reason_sql` (an SQL expression), keeping an earlier reason if there is one.
pub fn mark_sql(filter: &str, reason_sql: &str) -> PgtResult<String> {
    let reason = if has_reason_column()? {
        format!(", reinit_reason = COALESCE(reinit_reason, {reason_sql})")
    } else {
        String::new()
    };
    Ok(format!("UPDATE pgtrickle.pgt_stream_tables SET needs_reinit = true{reason} WHERE {filter}"))
}

/// Marks every stream table reading `source`.
pub fn mark_dependents(source: Oid, reason: &str) -> PgtResult<()> {
    spi::exec(
        &mark_sql("pgt_id IN (SELECT pgt_id FROM pgtrickle.pgt_dependencies WHERE source_relid = $1)", "$2")?,
        &[source.into(), reason.into()],
    )
}
