//! Reinitialising after a source was truncated or its columns changed: re-check the defining query
//! against the sources as they are now. If it still works with the same result columns, the stream
//! table gets a FULL refresh (and a fresh operator tree); if not, it goes to ERROR with the reason —
//! never silently wrong results.

use crate::catalog::analysis::{self, QueryAnalysis};
use crate::catalog::differential::choose_mode;
use crate::catalog::modes::RefreshMode;
use crate::catalog::query_view;
use crate::catalog::stream_tables::{self, StreamTable};
use crate::catalog::HIDDEN_PREFIX;
use crate::error::{PgtResult, SqlState};
use crate::spi;

/// Why a reinitialisation put a stream table in ERROR: what its owner can do about it differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breakage {
    /// This catalog row is not a stream table of this database (restored from another one).
    ForeignRow,
    /// The query no longer works against the sources, or its result columns changed.
    Query,
    /// The query works, but DIFFERENTIAL (as requested) cannot read a source any more.
    NotDifferential,
}

impl Breakage {
    /// How `last_error` begins.
    pub(super) fn describe(self) -> &'static str {
        match self {
            Breakage::ForeignRow => "this catalog row does not belong to a stream table of this database",
            Breakage::Query => "a source of this stream table changed and its query no longer works",
            Breakage::NotDifferential => {
                "a source of this stream table changed and it no longer qualifies for DIFFERENTIAL refresh"
            }
        }
    }
}

/// The refreshed catalog row when the stream table can be rebuilt; else why it is now in ERROR.
pub(super) fn prepare(st: &StreamTable) -> PgtResult<Result<StreamTable, Breakage>> {
    // The query as PostgreSQL reads it now: renamed columns, a redefined view.
    let query = match query_view::current_text(st.pgt_id)? {
        Some(text) if text != st.defining_query => {
            spi::exec(
                "UPDATE pgtrickle.pgt_stream_tables SET defining_query = $2 WHERE pgt_id = $1",
                &[st.pgt_id.into(), text.as_str().into()],
            )?;
            text
        }
        _ => st.defining_query.clone(),
    };
    let analysis =
        match spi::in_subtransaction(|| analysis::analyze(&query, stream_tables::owner(st.relid)?))
        {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return broken(st, Breakage::Query, &e.to_string()),
            Err(message) => return broken(st, Breakage::Query, &message),
        };
    if let Some(problem) = changed_columns(st, &analysis)? {
        return broken(st, Breakage::Query, &problem);
    }
    if st.effective_mode != "DIFFERENTIAL" {
        // What the query reads and calls now decides whether unchanged sources may skip refreshes.
        crate::catalog::unchanged::decide(st.pgt_id, &analysis, RefreshMode::Full)?;
    } else {
        let requested = RefreshMode::parse(&st.refresh_mode)?;
        // Capture goes on new sources only where the owner could put a trigger (a view the owner
        // may redefine now reads another role's table).
        let choice = match spi::in_subtransaction(|| {
            let owner = stream_tables::owner(st.relid)?;
            choose_mode(&analysis, requested, owner, Some(owner))
        }) {
            Ok(Ok(choice)) => choice,
            // What the engine refuses to read (0A000), or may not capture (42501): the query itself
            // still works.
            Ok(Err(e))
                if matches!(
                    e.state,
                    SqlState::FeatureNotSupported | SqlState::InsufficientPrivilege
                ) =>
            {
                return broken(st, Breakage::NotDifferential, &e.to_string())
            }
            Ok(Err(e)) => return broken(st, Breakage::Query, &e.to_string()),
            Err(message) => return broken(st, Breakage::Query, &message),
        };
        stream_tables::record_sources(st.pgt_id, &analysis, choice.tree.as_ref())?;
        crate::catalog::unchanged::decide(st.pgt_id, &analysis, choice.effective)?;
        let tree = choice
            .tree
            .map(|t| serde_json::to_string(&t))
            .transpose()
            .map_err(|e| crate::error::PgtError::internal(e.to_string()))?;
        spi::exec(
            "UPDATE pgtrickle.pgt_stream_tables SET op_tree = $2::jsonb, effective_mode = $3, mode_reason = $4 WHERE pgt_id = $1",
            &[st.pgt_id.into(), tree.into(), choice.effective.as_str().into(), choice.reason.into()],
        )?;
    }
    Ok(stream_tables::load_for_update(st.pgt_id)?.ok_or(Breakage::Query))
}

fn changed_columns(st: &StreamTable, analysis: &QueryAnalysis) -> PgtResult<Option<String>> {
    let stored: Vec<(String, String)> = crate::cdc::table_columns(st.relid)?
        .into_iter()
        .filter(|(name, _)| !name.starts_with(HIDDEN_PREFIX))
        .collect();
    let now: Vec<(String, String)> = analysis
        .columns
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.type_sql
                    .split(" COLLATE ")
                    .next()
                    .unwrap_or(&c.type_sql)
                    .to_string(),
            )
        })
        .collect();
    if stored == now {
        return Ok(None);
    }
    let show = |cols: &[(String, String)]| {
        cols.iter()
            .map(|(n, t)| format!("{n} {t}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(Some(format!(
        "the query's result columns changed from ({}) to ({}); drop and re-create the stream table",
        show(&stored),
        show(&now)
    )))
}

fn broken(
    st: &StreamTable,
    breakage: Breakage,
    problem: &str,
) -> PgtResult<Result<StreamTable, Breakage>> {
    let message = format!("{}: {problem}", breakage.describe());
    spi::exec(
        "UPDATE pgtrickle.pgt_stream_tables
            SET status = 'ERROR', last_error = $2, last_error_at = pg_catalog.clock_timestamp()
          WHERE pgt_id = $1",
        &[st.pgt_id.into(), message.into()],
    )?;
    Ok(Err(breakage))
}
