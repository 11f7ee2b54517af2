//! Stream tables restored from a dump. pg_dump carries the catalog's rows (extension configuration),
//! the storage tables with their contents and write guards, the query views and the old capture —
//! but the rows hold the dumped database's OIDs, which here name nothing, or another table, so the
//! scheduler refuses to refresh them (stream_tables::identity_holds). `restore` ties each row to its
//! table again: found by the guard trigger's argument (the stream table's id, which a dump keeps),
//! its query re-read from its query view (which a dump re-creates by name), its capture armed anew.

use super::analysis;
use super::differential::choose_mode;
use super::modes::RefreshMode;
use super::stream_tables::{self, StreamTable};
use crate::error::{PgtError, PgtResult};
use crate::spi;
use pgrx::pg_sys::Oid;

/// What became of one restored catalog row.
pub struct Restored {
    pub pgt_id: i64,
    /// The storage table's name, once found.
    pub stream_table: Option<String>,
    pub outcome: String,
}

const REINIT_REASON: &str = "restored from a dump";

/// Restores every catalog row that does not belong to a stream table of this database.
pub fn restore() -> PgtResult<Vec<Restored>> {
    let _own = super::guard::OwnWrite::begin();
    let ids: Vec<i64> = spi::rows(
        "SELECT pgt_id FROM pgtrickle.pgt_stream_tables ORDER BY pgt_id",
        &[],
        |r| spi::col::<i64>(r, "pgt_id"),
    )?;
    let mut healthy = Vec::new();
    let mut stale = Vec::new();
    for id in ids {
        let Some(st) = stream_tables::load(id)? else {
            continue;
        };
        if stream_tables::identity_holds(&st)? {
            healthy.push(id)
        } else {
            stale.push(st)
        }
    }
    continue_identities()?;
    if stale.is_empty() {
        return Ok(Vec::new());
    }
    let keep: Vec<Oid> = spi::rows(
        "SELECT DISTINCT source_relid FROM pgtrickle.pgt_dependencies WHERE pgt_id = ANY ($1)",
        &[healthy.into()],
        |r| spi::col::<Oid>(r, "source_relid"),
    )?;
    crate::cdc::drop_capture_except(&keep)?;

    // First every row names its table again (a stream table may read another one), then each one's
    // query, mode, sources and capture are rebuilt.
    let mut outcomes = Vec::new();
    let mut found = Vec::new();
    spi::exec(
        "UPDATE pgtrickle.pgt_stream_tables SET pgt_relid = (4294967295 - pgt_id)::pg_catalog.oid WHERE pgt_id = ANY ($1)",
        &[stale.iter().map(|st| st.pgt_id).collect::<Vec<_>>().into()],
    )?;
    for st in stale {
        match storage_of(st.pgt_id)? {
            Some(relid) => {
                spi::exec(
                    "UPDATE pgtrickle.pgt_stream_tables SET pgt_relid = $2 WHERE pgt_id = $1",
                    &[st.pgt_id.into(), relid.into()],
                )?;
                found.push(StreamTable {
                    relid,
                    identity_holds: None,
                    ..st
                });
            }
            None => {
                // Nothing to refresh into: the row goes (its history with it).
                spi::exec(
                    "DELETE FROM pgtrickle.pgt_stream_tables WHERE pgt_id = $1",
                    &[st.pgt_id.into()],
                )?;
                outcomes.push(Restored {
                    pgt_id: st.pgt_id,
                    stream_table: None,
                    outcome: "removed: no table here (or more than one) carries its write guard with its query view's owner, or its query view is missing".into(),
                });
            }
        }
    }
    for st in found {
        outcomes.push(rebuild(&st)?);
    }
    crate::cdc::collect_garbage()?;
    crate::bgworker::request_scheduler();
    Ok(outcomes)
}

/// New stream tables and history rows get ids after the restored ones (a dump restores the rows, not
/// the identity sequences' positions).
fn continue_identities() -> PgtResult<()> {
    for (table, column) in [
        ("pgtrickle.pgt_stream_tables", "pgt_id"),
        ("pgtrickle.pgt_refresh_history", "refresh_id"),
    ] {
        spi::exec(
            &format!(
                "SELECT pg_catalog.setval(seq, m)
                   FROM (SELECT pg_catalog.pg_get_serial_sequence($1, $2)::pg_catalog.regclass AS seq,
                                (SELECT max({column}) FROM {table}) AS m) s
                  WHERE m > COALESCE(pg_catalog.pg_sequence_last_value(seq), 0)"
            ),
            &[table.into(), column.into()],
        )?;
    }
    Ok(())
}

/// The table carrying the write guard of stream table `pgt_id` and owned by its query view's owner —
/// if there is exactly one (only pg_trickle may create guards; a second one would be a forgery).
fn storage_of(pgt_id: i64) -> PgtResult<Option<Oid>> {
    let candidates: Vec<Oid> = spi::rows(
        "SELECT t.tgrelid FROM pg_catalog.pg_trigger t
           JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
           JOIN pg_catalog.pg_class v ON v.oid = pg_catalog.to_regclass($2) AND v.relowner = c.relowner
          WHERE t.tgname = 'pgtrickle_guard' AND t.tgnargs = 1
            AND pg_catalog.encode(t.tgargs, 'escape') = $1::text || '\\000'
            AND NOT EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_relid = t.tgrelid)",
        &[pgt_id.into(), super::query_view::name(pgt_id).quoted().as_str().into()],
        |r| spi::col::<Oid>(r, "tgrelid"),
    )?;
    Ok(match candidates[..] {
        [one] => Some(one),
        _ => None,
    })
}

/// Ties the query view and the storage table together again, re-reads the query from the view and
/// re-decides the mode (arming capture for DIFFERENTIAL); the first refresh is FULL. A query that no
/// longer works here puts the stream table in ERROR, saying why.
fn rebuild(st: &StreamTable) -> PgtResult<Restored> {
    let name = super::names::qualified_name_of(st.relid)?;
    let view = super::query_view::name(st.pgt_id);
    let view_oid = spi::one::<Oid>(
        "SELECT pg_catalog.to_regclass($1)::oid",
        &[view.quoted().as_str().into()],
    )?
    .ok_or_else(|| PgtError::internal(format!("{view} vanished")))?;
    super::depend::auto_on_storage(view_oid, st.relid);
    super::depend::on_extension(st.relid);
    let text = super::query_view::current_text(st.pgt_id)?
        .ok_or_else(|| PgtError::internal(format!("{view} has no definition")))?;
    let requested = RefreshMode::parse(&st.refresh_mode)?;
    let rebuilt = spi::in_subtransaction(|| {
        let owner = stream_tables::owner(st.relid)?;
        let analysis = analysis::analyze(&text, owner)?;
        let choice = choose_mode(&analysis, requested, owner, None)?;
        if choice.effective == RefreshMode::Differential
            && !stream_tables::has_row_identity(st.relid)?
        {
            return Err(PgtError::new(
                crate::error::SqlState::ObjectNotInPrerequisiteState,
                "its table has no row identity columns, which DIFFERENTIAL refreshes need",
            ));
        }
        Ok((analysis, choice))
    });
    let (analysis, choice) = match rebuilt {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return broken(st, name.to_string(), &e.to_string()),
        Err(message) => return broken(st, name.to_string(), &message),
    };
    let tree = choice
        .tree
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| PgtError::internal(e.to_string()))?;
    spi::exec(
        "UPDATE pgtrickle.pgt_stream_tables
            SET defining_query = $2, op_tree = $3::jsonb, effective_mode = $4, mode_reason = $5,
                frontier = NULL, needs_reinit = true, reinit_reason = $6,
                status = CASE WHEN status = 'SUSPENDED' THEN 'SUSPENDED' ELSE 'ACTIVE' END,
                consecutive_errors = 0, last_error = NULL, last_error_at = NULL, refresh_started_at = NULL
          WHERE pgt_id = $1",
        &[st.pgt_id.into(), text.as_str().into(), tree.into(), choice.effective.as_str().into(), choice.reason.into(), REINIT_REASON.into()],
    )?;
    stream_tables::record_sources(st.pgt_id, &analysis, choice.tree.as_ref())?;
    super::unchanged::decide(st.pgt_id, &analysis, choice.effective)?;
    for source in &analysis.sources {
        super::depend::on_source(st.relid, source.relid);
    }
    Ok(Restored {
        pgt_id: st.pgt_id,
        stream_table: Some(name.to_string()),
        outcome: format!(
            "restored ({}): its next refresh is FULL",
            choice.effective.as_str()
        ),
    })
}

fn broken(st: &StreamTable, name: String, why: &str) -> PgtResult<Restored> {
    let error = format!("could not be restored: {why}");
    spi::exec(
        "UPDATE pgtrickle.pgt_stream_tables
            SET status = 'ERROR', last_error = $2, last_error_at = pg_catalog.clock_timestamp(), frontier = NULL
          WHERE pgt_id = $1",
        &[st.pgt_id.into(), error.as_str().into()],
    )?;
    Ok(Restored {
        pgt_id: st.pgt_id,
        stream_table: Some(name),
        outcome: error,
    })
}
