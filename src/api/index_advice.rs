//! explain_stream_table's index advice: the join keys a differential refresh looks up that have no
//! usable index (the pure part, which keys, is `dvm::index_advice`). Indexes are only suggested,
//! never created: the tables are the user's.

use crate::dvm::index_advice::{advice, probes, Probe};
use crate::dvm::optree::OpTree;
use crate::error::PgtResult;
use crate::spi;
use pgrx::pg_sys::Oid;

/// A valid, non-partial B-tree or hash index whose first column is the key serves equality lookups.
const HAS_INDEX: &str = "SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_catalog.pg_am am ON am.oid = ic.relam
      JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = $1 AND a.attname = $2::name AND i.indisvalid AND i.indpred IS NULL
       AND am.amname IN ('btree', 'hash'))";

/// The section of the explanation listing join keys without an index; empty when there are none.
pub fn section(tree: &OpTree) -> PgtResult<String> {
    let mut missing: Vec<Probe> = Vec::new();
    for probe in probes(tree) {
        let indexed = spi::one::<bool>(
            HAS_INDEX,
            &[
                Oid::from(probe.table.relid).into(),
                probe.column.as_str().into(),
            ],
        )?;
        if indexed != Some(true) {
            missing.push(probe);
        }
    }
    if missing.is_empty() {
        return Ok(String::new());
    }
    Ok(format!(
        "\nJoin keys without an index (a refresh reads the whole table for them):\n{}",
        advice(&missing)
    ))
}
