//! FULL stream tables whose sources did not change are not rewritten.
//!
//! A FULL refresh recomputes the query; if no table it reads changed and it calls only IMMUTABLE
//! functions, the result is the same, and the coordinator skips it as it skips an idle DIFFERENTIAL
//! stream table (by the change signals of its sources, cdc/signal.rs). For that every table the
//! query reads — named, or read through views (as PostgreSQL's rewriter expands them) — carries
//! signal triggers (cdc/members.rs), and is recorded among its sources. `pgt_stream_tables.skip_unchanged`
//! says whether this holds.
//!
//! Not skippable: a query calling `now()`, `random()` or any STABLE or VOLATILE function (its result
//! changes without a write), and one reading what cannot signal its writes: a foreign table (or
//! one among a source's partitions), a materialized view (`REFRESH MATERIALIZED VIEW` fires no
//! trigger), a system catalog, a sequence.

use super::analysis::QueryAnalysis;
use super::modes::RefreshMode;
use crate::error::PgtResult;
use crate::spi;
use pgrx::pg_sys::Oid;

/// PostgreSQL's first OID for user objects: below it are the system catalogs (and initdb's tables).
const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

/// Decides whether the stream table's refreshes may be skipped while its sources are unchanged, and
/// if so arms the signal triggers on every table it reads (before its first refresh: arming waits
/// for writers in flight, whose changes that refresh then sees) and records those tables as sources.
/// A stream table that no longer qualifies leaves its signal triggers to the clean-up
/// (`cdc::collect_garbage`).
pub fn decide(pgt_id: i64, analysis: &QueryAnalysis, effective: RefreshMode) -> PgtResult<()> {
    if !super::version::at_least_0_2_0()? {
        return Ok(());
    }
    let tables = if effective == RefreshMode::Full && analysis.non_immutable_functions.is_empty() {
        signalling_tables(pgt_id, &analysis.relations_read)?
    } else {
        None
    };
    if let Some(tables) = &tables {
        super::stream_tables::record_table_sources(pgt_id, tables)?;
        for &table in tables {
            crate::cdc::ensure_signals(table)?;
        }
    }
    spi::exec(
        "UPDATE pgtrickle.pgt_stream_tables SET skip_unchanged = $2 WHERE pgt_id = $1",
        &[pgt_id.into(), tables.is_some().into()],
    )
}

/// `relations` (what a query reads, views expanded), if every one of them is a table that can signal
/// its writes and that the stream table's owner may read itself (signal triggers go on it, and its
/// writes show in the owner's refreshes: not for a table only another role's view reads) and, unless
/// armed already, may add a trigger to; None otherwise.
fn signalling_tables(pgt_id: i64, relations: &[Oid]) -> PgtResult<Option<Vec<Oid>>> {
    let owner = spi::one::<Oid>(
        "SELECT c.relowner FROM pgtrickle.pgt_stream_tables st
           JOIN pg_catalog.pg_class c ON c.oid = st.pgt_relid WHERE st.pgt_id = $1",
        &[pgt_id.into()],
    )?
    .ok_or_else(|| {
        crate::error::PgtError::internal(format!("stream table {pgt_id} has no owner"))
    })?;
    let unreadable = spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.unnest($2::pg_catalog.oid[]) AS r(oid)
                         WHERE NOT pg_catalog.has_table_privilege($1, r.oid, 'SELECT'))",
        &[owner.into(), relations.to_vec().into()],
    )?;
    if unreadable != Some(false) {
        return Ok(None);
    }
    for &relid in relations {
        let kind = spi::rows(
            "SELECT relkind::text AS relkind, relpersistence::text AS persistence FROM pg_catalog.pg_class WHERE oid = $1",
            &[relid.into()],
            |r| Ok((spi::col::<String>(r, "relkind")?, spi::col::<String>(r, "persistence")?)),
        )?;
        let table = matches!(kind.first(), Some((relkind, persistence)) if matches!(relkind.as_str(), "r" | "p") && persistence != "t");
        if !table
            || relid.to_u32() < FIRST_NORMAL_OBJECT_ID
            || crate::cdc::foreign_descendant(relid)?.is_some()
        {
            return Ok(None);
        }
    }
    // Arming takes a lock that holds off the table's writers until the transaction ends: only for
    // an owner who could add a trigger to it, unless it is armed already.
    let unarmable = super::privilege::first_table_denying_triggers(owner, relations, |t| {
        crate::cdc::armed(crate::cdc::Family::Signal, t)
    })?;
    Ok(unarmable.is_none().then(|| relations.to_vec()))
}

/// The tables whose signals a stream table skips refreshes by: empty unless it has `skip_unchanged`.
pub fn signalled_sources(pgt_id: i64) -> PgtResult<Vec<Oid>> {
    if !super::version::at_least_0_2_0()? {
        return Ok(Vec::new());
    }
    spi::rows(
        "SELECT d.source_relid FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables st USING (pgt_id)
          WHERE d.pgt_id = $1 AND st.skip_unchanged AND d.source_kind <> 'VIEW'",
        &[pgt_id.into()],
        |r| spi::col::<Oid>(r, "source_relid"),
    )
}

/// Whether a signal trigger of a table the stream table skips refreshes by is disabled: its writes
/// are not signalled, so the stream table must be refreshed every schedule (it stays marked for
/// reinitialisation, which the coordinator never skips).
pub fn signals_suspended(pgt_id: i64) -> PgtResult<bool> {
    let tables = signalled_sources(pgt_id)?;
    Ok(!tables.is_empty() && crate::cdc::suspended(crate::cdc::Family::Signal, &tables)?)
}
