//! The context a delta computation runs in, composed of three parts so that callers build only what
//! they need: CDC facts (where changes are and which sources changed), a cache (CTE deltas shared by
//! several references, bypassed sources), and optimisation bookkeeping (depth, counters, limits).

use crate::dvm::optree::Node;
use crate::dvm::sql::QualifiedName;
use std::collections::{BTreeMap, BTreeSet};

/// The weight of a *replaced* row in a change buffer: the source's rows were replaced as a whole
/// (TRUNCATE, or a stream table's FULL refresh left uncaptured; src/cdc/replaced.rs), and a batch
/// holding one is refreshed FULL. Captured changes weigh ±1.
pub const REPLACED_WEIGHT: i16 = 0;

/// Where a source's changes are and how a batch is cut from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCdc {
    /// The change buffer: `__pgt_xid xid8, __pgt_w smallint`, then the source's columns by name.
    pub buffer: QualifiedName,
    /// The batch's change rows in it, once counted: the planner is told ([`BatchTest::Function`]).
    pub counted: Option<i64>,
}

/// How a batch predicate tests a change row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchTest {
    /// The visibility functions, their bounds compared first. The planner sees a product of default
    /// selectivities: any batch is a fixed share of its buffer. (A 0.1.0 catalog has nothing else.)
    #[default]
    Visibility,
    /// `pgtrickle._in_batch(xid, new, old, rows)`, the same test in one C function, whose planner
    /// support estimates the batch at `rows` (src/cdc/batch.rs).
    Function,
}

#[derive(Debug, Clone, Default)]
pub struct CdcContext {
    /// Change buffer per source table OID.
    pub sources: BTreeMap<u32, SourceCdc>,
    /// How the batch predicate is written.
    pub batch_test: BatchTest,
    /// SQL for the frontier the batch starts after (exclusive), e.g. `$1::pg_catalog.pg_snapshot`.
    pub old_frontier: String,
    /// SQL for the snapshot the batch ends at (inclusive), e.g. `pg_catalog.pg_current_snapshot()`.
    pub new_frontier: String,
    /// A relation holding the batch's Δ as an external worker computed it (`dvm::offload`), read
    /// instead of the change buffer: for an aggregate kept from stored state its Δ per group (see
    /// `AggregateState::delta_query`), for any other query its consolidated Δ rows (`c0..`, `__pgt_w`).
    pub staged: Option<String>,
}

impl CdcContext {
    /// The batch of a refresh plan: changes visible in the statement's own snapshot and not at the
    /// old frontier, which the plan binds as `$1` (`Param::OldFrontier`).
    pub fn for_refresh(
        buffers: impl IntoIterator<Item = (u32, QualifiedName)>,
        batch_test: BatchTest,
    ) -> CdcContext {
        CdcContext {
            sources: buffers
                .into_iter()
                .map(|(relid, buffer)| {
                    (
                        relid,
                        SourceCdc {
                            buffer,
                            counted: None,
                        },
                    )
                })
                .collect(),
            batch_test,
            old_frontier: "$1::pg_catalog.pg_snapshot".into(),
            new_frontier: "pg_catalog.pg_current_snapshot()".into(),
            staged: None,
        }
    }

    /// The batch predicate over buffer alias `b`: visible in the new snapshot and not in the old.
    /// `counted`: the batch's change rows in that buffer, if known. The snapshots are scalar
    /// subqueries, i.e. InitPlans evaluated once per statement: written inline, PostgreSQL would
    /// build the current snapshot and parse the old one from its text again for every change row (a
    /// third of a batch scan's time).
    pub fn batch_predicate(&self, b: &str, counted: Option<i64>) -> String {
        let (new, old) = (&self.new_frontier, &self.old_frontier);
        match self.batch_test {
            BatchTest::Function => format!(
                "pgtrickle._in_batch({b}.__pgt_xid, (SELECT {new}), (SELECT {old}), {})",
                counted.map_or("NULL::bigint".to_string(), |n| estimate_class(n).to_string())
            ),
            // Comparisons with the bounds come first and decide most rows without a function call,
            // exactly as `pg_visible_in_snapshot` would (it is that arithmetic): below the old
            // `xmin` a row is visible at the old frontier, so out — the rows kept for a slower
            // consumer of the buffer, often most of it; below the new `xmin` it is visible in the
            // new snapshot; from the old `xmax` on it is not visible at the old frontier. Only
            // transactions in progress at either snapshot reach the visibility functions.
            BatchTest::Visibility => format!(
                "{b}.__pgt_xid OPERATOR(pg_catalog.>=) (SELECT pg_catalog.pg_snapshot_xmin({old})) \
                 AND ({b}.__pgt_xid OPERATOR(pg_catalog.<) (SELECT pg_catalog.pg_snapshot_xmin({new})) \
                      OR pg_catalog.pg_visible_in_snapshot({b}.__pgt_xid, (SELECT {new}))) \
                 AND ({b}.__pgt_xid OPERATOR(pg_catalog.>=) (SELECT pg_catalog.pg_snapshot_xmax({old})) \
                      OR NOT pg_catalog.pg_visible_in_snapshot({b}.__pgt_xid, (SELECT {old})))"
            ),
        }
    }
}

/// The row count the planner is told for a batch of `rows`: the nearest power of four, so that a
/// statement's text, and with it its kept plan, is the same for every batch within a factor of two
/// of the class, and the estimate stays within that factor of the count.
pub fn estimate_class(rows: i64) -> i64 {
    // 2·4^k is the geometric middle between 4^k and 4^(k+1).
    let mut class: i64 = 1;
    while rows >= class.saturating_mul(2) && class < i64::MAX / 4 {
        class *= 4;
    }
    class
}

#[derive(Debug, Clone, Default)]
pub struct CacheContext {
    /// Sources known to have no changes in this batch: their deltas are empty and pruned statically.
    pub bypass: BTreeSet<u32>,
    /// CTE id -> name of the WITH item holding that CTE's delta (computed once, referenced many times).
    pub cte_delta_names: BTreeMap<usize, String>,
    /// WITH items to put in front of the final query, in dependency order: name, and what follows
    /// `AS` (the parenthesised query, maybe with `MATERIALIZED`).
    pub with_items: Vec<(String, String)>,
    /// Nodes whose whole current result is a MATERIALIZED WITH item (node, item name): wherever else
    /// the statement needs that node's current result, it reads the item.
    pub whole_results: Vec<(Node, String)>,
    /// Aggregates that occur more than once in the query (a view read twice) and the WITH item
    /// holding their delta, computed once.
    pub shared_deltas: Vec<(Node, String)>,
    /// Indexes on the columns by which a refresh recomputes groups (`catalog::indexes::group_key_indexes`).
    pub group_indexes: GroupIndexes,
}

/// The B-tree indexes a refresh may look touched groups up through, by source column (table OID,
/// column name); each serves the columns' own `=` and order (their collations, their types' default
/// operator classes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupIndexes {
    /// Columns that lead such an index, arrays and tables too large for an exact bitmap left out:
    /// touched groups keyed by one of them are read as `key = ANY (ARRAY(...))`, which PostgreSQL
    /// serves with one bitmap scan visiting each heap page once, in order. Elsewhere a semi-join,
    /// which without an index hashes the groups (`ANY` over a computed array would compare each row
    /// with every group) and with one probes the index group by group, visiting a page once per row
    /// on it.
    pub bitmap_keys: BTreeSet<(u32, String)>,
    /// (table, first column, second column) of such indexes, any size: a MIN/MAX of the second per
    /// group of the first is read, for a group that lost its extremum, as the first entry of the
    /// group's range in the index (`algebraic::AggregateState::delta_query`), not from its rows.
    pub key_value_pairs: BTreeSet<(u32, String, String)>,
}

#[derive(Debug, Clone)]
pub struct OptimizationContext {
    pub depth: usize,
    pub max_depth: usize,
    pub cte_counter: usize,
    pub alias_counter: usize,
    /// Scan deltas are the batch's change rows as they are, not consolidated by row identity: set
    /// while computing the input of a consumer that is linear in its input (see
    /// `algebraic::AggregateState::delta_query`), for which consolidating is wasted work.
    pub raw_scans: bool,
    /// How an aggregate kept from stored state finds its touched groups' stored rows.
    pub group_lookup: GroupLookup,
    /// Aggregates without GROUP BY over the current state become MATERIALIZED WITH items: one row,
    /// computed once per statement whatever the plan (on the inner side of a nested loop the planner
    /// thought would run once, it is recomputed per outer row); and so does the whole input they read
    /// where computing it takes more than a scan (`CacheContext::whole_results`). Set by the callers
    /// that put the WITH clause in front of what they build.
    pub hoist_global_aggregates: bool,
    /// Sources a join's delta term reads whole, by one hash join, instead of probing them once per
    /// delta row: the batch is large against them ([`reads_whole`]).
    pub whole_reads: BTreeSet<u32>,
    /// Of the sources in `whole_reads`: the column sets each of their unique indexes covers (valid,
    /// not partial, no expressions), by table OID. A join whose partner is unique on its join key
    /// meets each change row with at most one partner row.
    pub unique_keys: BTreeMap<u32, Vec<BTreeSet<String>>>,
}

/// How the touched groups' stored rows are found (see `algebraic::AggregateState::delta_query`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupLookup {
    /// One probe of the row identity index per touched group: cheap while the batch touches few of
    /// the stored groups.
    #[default]
    Probe,
    /// One hash join against a scan of the whole storage table: cheaper once the batch touches a good
    /// share of its groups (a probe costs about ten times a scanned row).
    Scan,
}

impl GroupLookup {
    /// The cheaper lookup for a batch of `batch_rows` change rows against `stored_rows` stored groups
    /// (the planner's estimate, `pg_class.reltuples`; negative when never counted). A batch touches at
    /// most one group per change row.
    pub fn for_batch(batch_rows: i64, stored_rows: f64) -> GroupLookup {
        if stored_rows >= 0.0 && (batch_rows as f64) * 4.0 >= stored_rows {
            GroupLookup::Scan
        } else {
            GroupLookup::Probe
        }
    }
}

/// Whether a join's delta terms had better read all of a partner source's `source_rows` rows (the
/// planner's count, `pg_class.reltuples`; not positive when never counted, or when the count does
/// not cover what a scan reads) and hash them than probe its index once per delta row, for
/// `batch_rows` change rows of the other sources. A probe costs about as much as
/// scanning and hashing eight rows: against a cached 100,000-row table, 15,000 change rows hashed
/// ~10% faster than probed, 75,000 ~40% (docs/BENCHMARKS.md). The planner cannot tell, since a
/// change buffer's estimate is a fraction of its rows and a kept plan was made for an earlier batch.
pub fn reads_whole(batch_rows: i64, source_rows: f64) -> bool {
    source_rows > 0.0 && (batch_rows as f64) * 8.0 >= source_rows
}

impl Default for OptimizationContext {
    fn default() -> Self {
        OptimizationContext {
            depth: 0,
            max_depth: 64,
            cte_counter: 0,
            alias_counter: 0,
            raw_scans: false,
            group_lookup: GroupLookup::Probe,
            hoist_global_aggregates: false,
            whole_reads: BTreeSet::new(),
            unique_keys: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DiffContext {
    pub cdc: CdcContext,
    pub cache: CacheContext,
    pub opt: OptimizationContext,
}

impl DiffContext {
    pub fn new(cdc: CdcContext) -> DiffContext {
        DiffContext {
            cdc,
            ..Default::default()
        }
    }

    /// A fresh alias for a derived table.
    pub fn alias(&mut self, stem: &str) -> String {
        self.opt.alias_counter += 1;
        format!("{stem}{}", self.opt.alias_counter)
    }
}
