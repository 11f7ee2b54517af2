//! How far a stream table's contents trail its sources (pg_stat_pgtrickle.current_lag_estimate_ms):
//! the age of the oldest committed change not yet applied, 0 when there is none.
//!
//! A DIFFERENTIAL stream table knows which changes it has not applied: the change rows of its
//! sources' buffers that its frontier does not contain. Their age is exact where PostgreSQL records
//! commit times (`track_commit_timestamp = on`); otherwise it is bounded by the time since the
//! refresh that set the frontier (they committed after it). A FULL stream table (or one about to
//! reinitialise) cannot tell whether its sources changed: its lag is that bound too.

use crate::catalog::stream_tables;
use crate::error::PgtResult;
use crate::spi;

/// Milliseconds, or None for an unknown stream table or one never refreshed.
pub fn current_lag_ms(pgt_id: i64) -> PgtResult<Option<f64>> {
    let Some(st) = stream_tables::load(pgt_id)? else { return Ok(None) };
    let since_refresh = spi::one::<f64>(
        "SELECT (pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - last_refresh_at) * 1000)::float8
           FROM pgtrickle.pgt_stream_tables WHERE pgt_id = $1",
        &[pgt_id.into()],
    )?;
    let (Some(frontier), Some(tree), false) = (st.frontier.as_deref(), st.tree()?, st.needs_reinit) else {
        return Ok(since_refresh);
    };
    let exact = spi::one::<bool>("SELECT pg_catalog.current_setting('track_commit_timestamp')::bool", &[])? == Some(true);
    let mut pending = false;
    let mut oldest: Option<f64> = None;
    for table in tree.tables() {
        let buffer = crate::cdc::buffer_name(pgrx::pg_sys::Oid::from(table.relid));
        if spi::one::<bool>("SELECT pg_catalog.to_regclass($1) IS NULL", &[buffer.quoted().as_str().into()])? == Some(true) {
            return Ok(since_refresh); // capture is being re-armed
        }
        let age = if exact {
            "(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - pg_catalog.min(pg_catalog.pg_xact_commit_timestamp(b.__pgt_xid::pg_catalog.xid))) * 1000)::float8"
        } else {
            "NULL::float8"
        };
        let row = spi::rows(
            &format!(
                "SELECT pg_catalog.count(*) > 0 AS pending, {age} AS age_ms
                   FROM {buffer} AS b WHERE NOT pg_catalog.pg_visible_in_snapshot(b.__pgt_xid, $1::pg_catalog.pg_snapshot)"
            ),
            &[frontier.into()],
            |r| Ok((spi::col::<bool>(r, "pending")?, r.get_by_name::<f64, _>("age_ms")?)),
        )?;
        if let Some((true, age)) = row.into_iter().next() {
            pending = true;
            oldest = match (oldest, age) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }
    Ok(match (pending, oldest) {
        (false, _) => Some(0.0),
        (true, Some(age)) => Some(age.max(0.0)),
        (true, None) => since_refresh,
    })
}
