//! How far a stream table's contents trail its sources (pg_stat_pgtrickle.current_lag_estimate_ms):
//! the age of the oldest committed change not yet applied, 0 when there is none.
//!
//! A DIFFERENTIAL stream table knows which changes it has not applied: the change rows of its
//! sources' buffers that its frontier does not contain. Their age is exact where PostgreSQL records
//! commit times (`track_commit_timestamp = on`); otherwise it is bounded by the time since the
//! refresh that set the frontier (they committed after it). A FULL stream table that skips
//! refreshes while its sources are unchanged (catalog/unchanged.rs) is behind by nothing when none of
//! its sources signalled a commit since its last refresh started (cdc/signal.rs; known only for
//! refreshes since the server started, and not while a prepared transaction may still commit), and
//! by at most the time since that refresh otherwise. Other FULL stream tables, and one about to
//! reinitialise, cannot tell whether their sources changed: their lag is that bound too.

use crate::catalog::stream_tables;
use crate::error::PgtResult;
use crate::spi;

/// Milliseconds, or None for an unknown stream table, one never refreshed, or one `reader` may not
/// see statistics of.
pub fn current_lag_ms(pgt_id: i64, reader: pgrx::pg_sys::Oid) -> PgtResult<Option<f64>> {
    let Some(st) = stream_tables::load(pgt_id)? else {
        return Ok(None);
    };
    if !crate::catalog::privilege::may_see_statistics(reader, st.relid) {
        return Ok(None);
    }
    let since_refresh = spi::one::<f64>(
        "SELECT (pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - last_refresh_at) * 1000)::float8
           FROM pgtrickle.pgt_stream_tables WHERE pgt_id = $1",
        &[pgt_id.into()],
    )?;
    let tree = st.tree()?;
    if tree.is_none() && !st.needs_reinit && since_refresh.is_some() && full_is_current(pgt_id)? {
        return Ok(Some(0.0));
    }
    let (Some(frontier), Some(tree), false) = (st.frontier.as_deref(), tree, st.needs_reinit)
    else {
        return Ok(since_refresh);
    };
    let exact = spi::one::<bool>(
        "SELECT pg_catalog.current_setting('track_commit_timestamp')::bool",
        &[],
    )? == Some(true);
    let mut pending = false;
    let mut oldest: Option<f64> = None;
    for table in tree.tables() {
        let buffer = crate::cdc::buffer_name(pgrx::pg_sys::Oid::from(table.relid));
        if spi::one::<bool>(
            "SELECT pg_catalog.to_regclass($1) IS NULL",
            &[buffer.quoted().as_str().into()],
        )? == Some(true)
        {
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

/// Whether a FULL stream table with `skip_unchanged` holds every committed change of its sources: no
/// source signalled a commit after its last refresh started, since a server start that preceded it.
/// (The refresh's snapshot is taken just before its recorded start — or, for a manual refresh in a
/// REPEATABLE READ transaction, at that transaction's first statement: a commit in between shows as
/// no lag until the next refresh, which its signal makes the coordinator run at the next schedule.)
fn full_is_current(pgt_id: i64) -> PgtResult<bool> {
    if !crate::catalog::version::at_least_0_2_0()? {
        return Ok(false);
    }
    let sources: Vec<u32> = crate::catalog::unchanged::signalled_sources(pgt_id)?
        .iter()
        .map(|s| s.to_u32())
        .collect();
    // SAFETY: MyDatabaseId is set for every backend connected to a database.
    let db = unsafe { pgrx::pg_sys::MyDatabaseId.to_u32() };
    let changed_at = crate::cdc::signal::last_change(db, &sources)
        .and_then(|t| pgrx::datum::TimestampWithTimeZone::try_from(t).ok());
    Ok(spi::one::<bool>(
        "SELECT st.skip_unchanged AND st.last_refresh_at > pg_catalog.pg_postmaster_start_time()
                AND ($2::timestamptz IS NULL OR $2 <= st.last_refresh_at)
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_xacts WHERE database = pg_catalog.current_database())
           FROM pgtrickle.pgt_stream_tables st WHERE st.pgt_id = $1",
        &[pgt_id.into(), changed_at.into()],
    )? == Some(true))
}
