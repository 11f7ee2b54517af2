//! explain_stream_table's index advice: the join keys a differential refresh looks up, and the keys of
//! groups it recomputes, that have no usable index (the pure part, which keys, is
//! `dvm::index_advice`), and change buffers holding many rows kept for slower stream tables. Indexes
//! are only suggested, never created: the tables are the user's, and an index on a buffer costs
//! every writer of its source.

use crate::catalog::indexes::{is_indexed, is_plain_table};
use crate::catalog::stream_tables::StreamTable;
use crate::dvm::diff::GroupIndexes;
use crate::dvm::index_advice::{
    advice, extremum_advice, extremum_indexes, group_key_advice, probes, recomputed_group_keys,
    ExtremumIndex, GroupKeys, Probe,
};
use crate::dvm::optree::OpTree;
use crate::error::PgtResult;
use crate::spi;
use pgrx::pg_sys::Oid;

/// Rows kept for slower consumers from which an index on a buffer's `__pgt_xid` is suggested: every
/// refresh of this stream table reads past them, a few scans of the buffer each (about a
/// millisecond per refresh at this count).
const KEPT_ROWS_WORTH_AN_INDEX: i64 = 10_000;

/// The sections of the explanation listing join keys, and keys of groups a refresh recomputes,
/// without an index; empty when there are none.
pub fn section(tree: &OpTree, group_indexes: &GroupIndexes) -> PgtResult<String> {
    let mut missing: Vec<Probe> = Vec::new();
    for probe in probes(tree) {
        if !is_indexed(probe.table.relid, &probe.column)? {
            missing.push(probe);
        }
    }
    let mut out = String::new();
    if !missing.is_empty() {
        out.push_str(&format!(
            "\nJoin keys without an index (a refresh reads the whole table for them):\n{}",
            advice(&missing)
        ));
    }
    // A partitioned or inherited table's index would not be used (`group_key_indexes`).
    let pairs = &group_indexes.key_value_pairs;
    let mut extrema: Vec<ExtremumIndex> = Vec::new();
    for x in extremum_indexes(tree) {
        if !pairs.contains(&(x.table.relid, x.key.clone(), x.argument.clone()))
            && is_plain_table(x.table.relid)?
        {
            extrema.push(x);
        }
    }
    let mut unindexed: Vec<GroupKeys> = Vec::new();
    for keys in recomputed_group_keys(tree) {
        // An index advised for a MIN/MAX leads with the group key: it serves the lookup too.
        if extrema
            .iter()
            .any(|x| x.table == keys.table && keys.columns == [x.key.clone()])
        {
            continue;
        }
        // Any one of them serves the semi-join's lookup of a group.
        let indexed = keys
            .columns
            .iter()
            .try_fold(false, |found, c| -> PgtResult<bool> {
                Ok(found || is_indexed(keys.table.relid, c)?)
            })?;
        if !indexed {
            unindexed.push(keys);
        }
    }
    if !unindexed.is_empty() {
        out.push_str(&format!(
            "\nGroup keys without an index (a refresh recomputing a group reads the whole table for it):\n{}",
            group_key_advice(&unindexed)
        ));
    }
    if !extrema.is_empty() {
        out.push_str(&format!(
            "\nMIN/MAX without an index on (group key, argument) (a group that loses its extremum reads all its rows):\n{}",
            extremum_advice(&extrema)
        ));
    }
    Ok(out)
}

/// The section describing the change buffers a differential refresh reads: how many rows each holds,
/// how many of them this stream table has applied already (kept for slower ones), and the index on
/// the transaction id that spares its refreshes reading past them when they are many. Only for the
/// sources `caller` may read: the counts tell how much a source changed.
pub fn buffer_section(caller: Oid, st: &StreamTable, tree: &OpTree) -> PgtResult<String> {
    let Some(frontier) = st.frontier.as_deref() else {
        return Ok(String::new());
    };
    let mut sources: Vec<u32> = tree.tables().iter().map(|t| t.relid).collect();
    sources.sort_unstable();
    sources.dedup();
    let mut lines = Vec::new();
    for relid in sources {
        let source = Oid::from(relid);
        let readable = spi::one::<bool>(
            "SELECT pg_catalog.has_table_privilege($1, $2, 'SELECT')",
            &[caller.into(), source.into()],
        )?;
        if readable != Some(true) {
            continue;
        }
        let buffer = crate::cdc::buffer_name(source).quoted();
        let Some(buffer_oid) = spi::one::<Oid>(
            "SELECT pg_catalog.to_regclass($1)::oid",
            &[buffer.as_str().into()],
        )?
        else {
            continue;
        };
        let counts = spi::rows(
            &format!(
                "SELECT pg_catalog.count(*) AS total,
                        pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_visible_in_snapshot(b.__pgt_xid, $1::pg_catalog.pg_snapshot)) AS kept
                   FROM {buffer} AS b"
            ),
            &[frontier.into()],
            |r| Ok((spi::col::<i64>(r, "total")?, spi::col::<i64>(r, "kept")?)),
        )?;
        let Some((total, kept)) = counts.into_iter().next() else {
            continue;
        };
        let name = crate::catalog::names::qualified_name_of(source)?;
        lines.push(format!(
            "{buffer} ({name}): {total} rows, {kept} of them applied here and kept for slower stream tables"
        ));
        if kept >= KEPT_ROWS_WORTH_AN_INDEX
            && kept > total - kept
            && !is_indexed(buffer_oid.to_u32(), "__pgt_xid")?
        {
            lines.push(format!(
                "-- each refresh reads past the kept rows; an index makes it read only its batch (it costs writers of {name} a little): CREATE INDEX ON {buffer} (__pgt_xid);"
            ));
        }
    }
    if lines.is_empty() {
        return Ok(String::new());
    }
    Ok(format!("\nChange buffers:\n{}\n", lines.join("\n")))
}
