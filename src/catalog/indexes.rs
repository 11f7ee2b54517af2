//! Which columns lead an index that equality lookups can use: for explain_stream_table's advice, and
//! for the refresh, which looks a batch's touched groups up through such an index as one array
//! (`dvm::diff::rules::rows_of_groups`).

use crate::dvm::diff::GroupIndexes;
use crate::dvm::index_advice::recomputed_group_keys;
use crate::dvm::optree::OpTree;
use crate::error::PgtResult;
use crate::spi;
use pgrx::pg_sys::Oid;
use std::collections::{BTreeMap, BTreeSet};

/// `FROM` and `WHERE` of the columns of `$1` (table OIDs) that lead an index serving equality
/// lookups with the column's own `=`: a valid, non-partial B-tree or hash index whose first column
/// has the column's collation and its type's default operator class ([`serves_column`]). An index on
/// `s COLLATE "C"`, or on a citext column with `text_ops`, orders by something else, and the planner
/// cannot use it for the column's `=`. As `i`, `am`, `a` (the column) and `ty` (its type).
fn leading_columns() -> String {
    format!(
        "FROM pg_catalog.pg_index i
           JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
           JOIN pg_catalog.pg_am am ON am.oid = ic.relam
           JOIN pg_catalog.pg_opclass oc ON oc.oid = i.indclass[0]
           JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
           JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
          WHERE i.indrelid = ANY ($1) AND i.indisvalid AND i.indpred IS NULL
            AND am.amname IN ('btree', 'hash') AND {}",
        serves_column("i", 0, "oc", "a")
    )
}

/// Index `i`'s column `n` (operator class `oc`) is attribute `a` as it is, in its own collation and its
/// type's default operator class (the type's own, or, for a type without one such as `varchar` or a
/// domain, a default one it is read as).
fn serves_column(i: &str, n: usize, oc: &str, a: &str) -> String {
    format!(
        "{i}.indcollation[{n}] = {a}.attcollation AND {oc}.opcdefault
            AND ({oc}.opcintype = {a}.atttypid
                 OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_opclass d
                                 WHERE d.opcmethod = {oc}.opcmethod AND d.opcdefault AND d.opcintype = {a}.atttypid))"
    )
}

/// Whether `column` of `relid` leads an index serving equality lookups.
pub fn is_indexed(relid: u32, column: &str) -> PgtResult<bool> {
    let found = spi::one::<bool>(
        &format!(
            "SELECT EXISTS (SELECT 1 {} AND a.attname = $2::name)",
            leading_columns()
        ),
        &[vec![Oid::from(relid)].into(), column.into()],
    )?;
    Ok(found == Some(true))
}

/// Per table of `relids`, the columns of each of its unique indexes that are valid, not partial and
/// without expressions (key and INCLUDE columns: a superset of what makes a row unique).
pub fn unique_column_sets(
    relids: &BTreeSet<u32>,
) -> PgtResult<BTreeMap<u32, Vec<BTreeSet<String>>>> {
    let mut out: BTreeMap<u32, Vec<BTreeSet<String>>> = BTreeMap::new();
    if relids.is_empty() {
        return Ok(out);
    }
    let relids: Vec<Oid> = relids.iter().copied().map(Oid::from).collect();
    let found = spi::rows(
        "SELECT i.indrelid AS relid,
                pg_catalog.array_agg(a.attname::text) AS columns
           FROM pg_catalog.pg_index i
           JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
          WHERE i.indrelid = ANY ($1) AND i.indisunique AND i.indisvalid
            AND i.indpred IS NULL AND i.indexprs IS NULL
          GROUP BY i.indexrelid, i.indrelid",
        &[relids.into()],
        |r| {
            Ok((
                spi::col::<Oid>(r, "relid")?.to_u32(),
                spi::col::<Vec<String>>(r, "columns")?,
            ))
        },
    )?;
    for (relid, columns) in found {
        out.entry(relid)
            .or_default()
            .push(columns.into_iter().collect());
    }
    Ok(out)
}

/// `pg_class` row `c` is a plain table or materialized view without children: the only tables whose
/// indexes [`group_key_indexes`] counts.
fn plain_table(c: &str) -> String {
    format!("{c}.relkind IN ('r', 'm') AND NOT {c}.relhassubclass")
}

/// Whether `relid` is a plain table or materialized view without children ([`plain_table`]).
pub fn is_plain_table(relid: u32) -> PgtResult<bool> {
    let plain = spi::one::<bool>(
        &format!(
            "SELECT {} FROM pg_catalog.pg_class c WHERE c.oid = $1",
            plain_table("c")
        ),
        &[Oid::from(relid).into()],
    )?;
    Ok(plain == Some(true))
}

/// For a refresh of `tree`: the B-tree indexes it may look touched groups up through, as
/// [`GroupIndexes`] describes them. A column counts for a bitmap lookup in a table whose every page a
/// bitmap in `work_mem` holds exactly, with room to grow (twice the table's current size; a bitmap
/// page entry takes about 64 bytes), and not as an array. In a lossy bitmap each row of a page is
/// checked against `= ANY` again, comparing it with every element of the array: a touched group's
/// lookup would cost the groups times the rows. A hash index's bitmap is rechecked always (it stores
/// hashes), and it has no order, so hash indexes do not count. Plain tables and materialized views
/// without children only: a scan of a partitioned or inherited table reads tables of other sizes and
/// indexes, each with a bitmap of its own. Asked only for the tables of keys by which the tree
/// recomputes groups (a query kept from stored state without MIN/MAX asks nothing); empty otherwise.
pub fn group_key_indexes(tree: &OpTree) -> PgtResult<GroupIndexes> {
    let mut relids: Vec<u32> = recomputed_group_keys(tree)
        .iter()
        .map(|k| k.table.relid)
        .collect();
    if relids.is_empty() {
        return Ok(GroupIndexes::default());
    }
    relids.sort_unstable();
    relids.dedup();
    let relids: Vec<Oid> = relids.into_iter().map(Oid::from).collect();
    let found = spi::rows(
        &format!(
            "SELECT DISTINCT i.indrelid AS relid, a.attname::text AS column_name,
                    ty.typcategory <> 'A'
                      AND pg_catalog.pg_relation_size(i.indrelid)::float8
                            / pg_catalog.current_setting('block_size')::float8 * 2 * 64
                          <= (SELECT s.setting::float8 * 1024 FROM pg_catalog.pg_settings s WHERE s.name = 'work_mem')
                      AS bitmap,
                    (SELECT a2.attname::text FROM pg_catalog.pg_attribute a2
                       JOIN pg_catalog.pg_opclass oc2 ON oc2.oid = i.indclass[1]
                      WHERE i.indnkeyatts >= 2 AND a2.attrelid = i.indrelid AND a2.attnum = i.indkey[1]
                        AND {}) AS second_column
             {} AND am.amname = 'btree'
                AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = i.indrelid AND {})",
            serves_column("i", 1, "oc2", "a2"),
            leading_columns(),
            plain_table("c")
        ),
        &[relids.into()],
        |r| {
            Ok((
                spi::col::<Oid>(r, "relid")?.to_u32(),
                spi::col::<String>(r, "column_name")?,
                spi::col::<bool>(r, "bitmap")?,
                r.get_by_name::<String, _>("second_column")?,
            ))
        },
    )?;
    let mut out = GroupIndexes::default();
    for (relid, column, bitmap, second) in found {
        if let Some(second) = second {
            out.key_value_pairs.insert((relid, column.clone(), second));
        }
        if bitmap {
            out.bitmap_keys.insert((relid, column));
        }
    }
    Ok(out)
}
