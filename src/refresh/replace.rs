//! Whether a FULL refresh replaces a stream table's contents uncaptured (cdc/replaced.rs): only when
//! the stream table is a captured source and every stream table reading it would refresh FULL for
//! the batch a captured replacement makes — its current rows deleted, as many inserted — anyway.
//! A reader kept DIFFERENTIAL by its mode, or by AUTO's cost model (a large join over a small
//! stream table, say), gets the rows captured as always.

use crate::catalog::stream_tables::{self, StreamTable};
use crate::error::PgtResult;
use crate::spi;

/// A reader of the stream table being refreshed, as far as the choice needs it.
struct Reader {
    pgt_id: i64,
    auto: bool,
    differential: bool,
    needs_reinit: bool,
}

/// Whether `st`'s FULL refresh goes uncaptured; and if so, the words the refresh history adds.
pub(super) fn uncaptured(st: &StreamTable) -> PgtResult<Option<&'static str>> {
    // A 0.1.0 catalog captures with PL/pgSQL functions, which know nothing of replaced rows.
    if !crate::catalog::version::at_least_0_2_0()? {
        return Ok(None);
    }
    if !crate::cdc::is_captured(st.relid)? {
        return Ok(None);
    }
    let readers = spi::rows(
        &format!(
            "SELECT pgt_id, refresh_mode = 'AUTO' AS auto, effective_mode = 'DIFFERENTIAL' AS differential,
                    {} AS needs_reinit
               FROM pgtrickle.pgt_stream_tables st
              WHERE {}",
            crate::catalog::reinit::pending_sql("st")?,
            crate::catalog::readers_of("$1", "")
        ),
        &[st.relid.into()],
        |r| {
            Ok(Reader {
                pgt_id: spi::col(r, "pgt_id")?,
                auto: spi::col(r, "auto")?,
                differential: spi::col(r, "differential")?,
                needs_reinit: spi::col(r, "needs_reinit")?,
            })
        },
    )?;
    // What capturing the replacement would put in the readers' batch.
    let changes = 2 * super::storage::estimated_rows(st)?.max(0.0) as i64;
    for reader in readers {
        if !reader.differential || reader.needs_reinit {
            continue;
        }
        if !reader.auto || changes == 0 {
            return Ok(None);
        }
        let Some(tables) = stream_tables::load(reader.pgt_id)?
            .map(|r| r.tree())
            .transpose()?
            .flatten()
            .map(|tree| tree.tables())
        else {
            return Ok(None);
        };
        if !crate::stats::cost_summary::auto_decision(reader.pgt_id, &tables, changes)?.full {
            return Ok(None);
        }
    }
    Ok(Some(
        "its new contents are not captured row by row: every stream table reading it refreshes FULL",
    ))
}
