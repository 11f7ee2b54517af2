//! The DIFFERENTIAL refresh: the facts its decision (`dvm::decide`) asks for — the batch's size, AUTO's
//! prediction (src/stats/cost_model.rs), whether the stored state is there — and the delta, computed
//! and applied; or the Δ an external worker reduced, applied.

use super::spi_exec::{self, PlanError};
use super::{full, Batch, Done};
use crate::catalog::stream_tables::StreamTable;
use crate::cdc;
use crate::dvm::apply::stream_plan;
use crate::dvm::apply::Payload;
use crate::dvm::decide::{Fact, Facts};
use crate::dvm::diff::{reads_whole, stream_delta, AggregateState, DiffContext, GroupLookup};
use crate::dvm::optree::{OpTree, TableRef};
use crate::dvm::plan::RefreshAction;
use crate::dvm::sql::QualifiedName;
use crate::error::{PgtError, PgtResult};
use crate::spi;
use pgrx::pg_sys::{self, Oid};

use crate::locks::Scope;

/// What the executor learnt while gathering facts for the decision (`dvm::decide`), for the refresh
/// that follows.
#[derive(Default)]
pub(super) struct Gathered {
    tree: Option<OpTree>,
    /// The snapshot the batch ends at and the change rows per source (`Fact::BatchRows`).
    batch: Option<(String, Vec<i64>)>,
    /// The storage payload, when the aggregate state is there (`Fact::StateReady`).
    payload: Option<Payload>,
}

impl Gathered {
    fn tree(&mut self, st: &StreamTable) -> PgtResult<&OpTree> {
        if self.tree.is_none() {
            self.tree = Some(st.tree()?.ok_or_else(|| {
                PgtError::internal("DIFFERENTIAL stream table without an operator tree")
            })?);
        }
        Ok(self.tree.as_ref().expect("set above"))
    }

    /// The snapshot the counted batch ends at: a NO_DATA refresh's new frontier.
    pub(super) fn snapshot(&self) -> PgtResult<String> {
        self.batch
            .as_ref()
            .map(|(s, _)| s.clone())
            .ok_or_else(|| PgtError::internal("NO_DATA without a counted batch"))
    }
}

/// A source whose row-level security applies to the stream table's owner now, though it did not when
/// the stream table was made DIFFERENTIAL: the owner lost `BYPASSRLS` or `SUPERUSER` (no DDL on the
/// table says so). A delta reads the change buffer, which no policy filters, so the stream table
/// must be reinitialised, which reads the table whole or puts it in ERROR (`reinit::prepare`).
/// Catalog-cache lookups only: every DIFFERENTIAL refresh asks.
pub(super) fn row_security_now(
    gathered: &mut Gathered,
    st: &StreamTable,
) -> PgtResult<Option<String>> {
    let owner = crate::catalog::stream_tables::owner(st.relid)?;
    for table in gathered.tree(st)?.tables() {
        // SAFETY: a catalog-cache lookup inside a transaction; no error raised (noError).
        let applies = unsafe { pg_sys::check_enable_rls(Oid::from(table.relid), owner, true) };
        if applies as u32 == pg_sys::CheckEnableRlsResult::RLS_ENABLED {
            let name = spi::one::<String>(
                "SELECT $1::pg_catalog.regclass::text",
                &[Oid::from(table.relid).into()],
            )?
            .unwrap_or_default();
            return Ok(Some(format!(
                "row-level security of {name} applies to the stream table's owner {} now",
                crate::catalog::names::role_name(owner)?
            )));
        }
    }
    Ok(None)
}

/// Finds out `fact` for the decision. `wrote_before`: whether this transaction had an xid before the
/// refresh began (it may then have changed a source itself).
pub(super) fn gather(
    fact: Fact,
    facts: &mut Facts,
    gathered: &mut Gathered,
    st: &StreamTable,
    storage: &QualifiedName,
    wrote_before: bool,
    batch: Batch<'_>,
) -> PgtResult<()> {
    let tables = gathered.tree(st)?.tables();
    let frontier = st.frontier.as_deref().unwrap_or_default();
    match fact {
        Fact::UnloggedSource => {
            let sources: Vec<Oid> = tables.iter().map(|t| Oid::from(t.relid)).collect();
            facts.unlogged_source = Some(cdc::unlogged_member(&sources)?)
        }
        Fact::OwnChanges => {
            facts.own_changes = Some(own_uncommitted_changes(&tables, wrote_before)?)
        }
        Fact::BatchRows => {
            let counted =
                super::settings::with_differential_settings(|| count_batch(&tables, frontier))?;
            facts.batch_rows = Some(counted.counts.iter().sum());
            facts.replaced = match tables.iter().zip(&counted.replaced).find(|(_, &n)| n > 0) {
                Some((t, _)) => Some(replaced_why(Oid::from(t.relid))?),
                None => None,
            };
            gathered.batch = Some((counted.snapshot, counted.counts));
        }
        Fact::AutoChoice => {
            let decision = crate::stats::cost_summary::auto_decision(
                st.pgt_id,
                &tables,
                facts.batch_rows.unwrap_or(0),
            )?;
            facts.auto_choice = Some((decision.full, decision.reason));
        }
        Fact::StateReady => {
            let tree = gathered.tree(st)?.clone();
            gathered.payload = super::storage::payload(st, storage, Some(&tree), false)?;
            facts.state_ready = Some(gathered.payload.is_some());
        }
        Fact::BufferBatchEmpty => {
            let Batch::Staged(staged) = batch else {
                return Err(PgtError::internal("no worker's batch to check"));
            };
            let source = tables
                .first()
                .map(|t| Oid::from(t.relid))
                .ok_or_else(|| PgtError::internal("a batch without a source"))?;
            facts.buffer_batch_empty = Some(super::offload::batch_is_empty(
                source,
                frontier,
                &staged.snapshot,
            )?);
        }
    }
    Ok(())
}

/// The DIFFERENTIAL refresh of the counted batch; `auto`: why AUTO kept it DIFFERENTIAL.
pub(super) fn refresh(
    st: &StreamTable,
    storage: &QualifiedName,
    mut gathered: Gathered,
    auto: Option<String>,
) -> PgtResult<Done> {
    let tree = gathered.tree(st)?.clone();
    let tables = tree.tables();
    let (Some((_, counts)), Some(payload)) = (gathered.batch.take(), gathered.payload.take())
    else {
        return Err(PgtError::internal(
            "a DIFFERENTIAL refresh without its counted batch or payload",
        ));
    };
    let total: i64 = counts.iter().sum();
    let mut ctx = DiffContext::new(cdc::refresh_context(&tables)?);
    for (t, &n) in tables.iter().zip(&counts) {
        if let Some(source) = ctx.cdc.sources.get_mut(&t.relid) {
            source.counted = Some(n);
        }
    }
    // Unchanged sources contribute nothing: prune them. Sound because the counts and the delta read
    // the same snapshot (see one_snapshot).
    ctx.cache.bypass = tables
        .iter()
        .zip(&counts)
        .filter(|(_, &n)| n == 0)
        .map(|(t, _)| t.relid)
        .collect();
    ctx.cache.group_indexes = crate::catalog::indexes::group_key_indexes(&tree)?;
    // A source's rows are probed by the delta rows of the other sources' changes.
    ctx.opt.whole_reads = tables
        .iter()
        .zip(&counts)
        .filter(|(t, &own)| reads_whole(total - own, counted_rows(Oid::from(t.relid))))
        .map(|(t, _)| t.relid)
        .collect();
    ctx.opt.unique_keys = crate::catalog::indexes::unique_column_sets(&ctx.opt.whole_reads)?;
    if AggregateState::of(&tree).is_some() {
        ctx.opt.group_lookup = GroupLookup::for_batch(total, super::storage::estimated_rows(st)?);
    }
    let reason = format!(
        "{total} change{} in the batch{}",
        if total == 1 { "" } else { "s" },
        auto.map(|why| format!("; {why}")).unwrap_or_default()
    );
    apply_delta(st, storage, &tree, &payload, &mut ctx, total, reason, None)
}

/// The planner's count of a table's rows (`pg_class.reltuples`), or -1 where it does not count what
/// a scan reads: never counted, a partitioned table or a parent of inheritance children (its own
/// rows only, 0 when it holds none; autovacuum never counts a partitioned table).
fn counted_rows(relid: Oid) -> f64 {
    crate::catalog::stream_tables::pg_class_row(relid, |c| {
        if c.relkind == pg_sys::RELKIND_RELATION as std::ffi::c_char && !c.relhassubclass {
            f64::from(c.reltuples)
        } else {
            -1.0
        }
    })
    .unwrap_or(-1.0)
}

/// Builds the delta the context describes, applies it as the owner and says so with `reason`; an
/// apply out of step with the change log is repaired with FULL. `changes`: the batch's change rows.
/// `frontier`: the snapshot to record instead of the apply statement's (an offloaded batch's end).
#[allow(clippy::too_many_arguments)]
fn apply_delta(
    st: &StreamTable,
    storage: &QualifiedName,
    tree: &OpTree,
    payload: &Payload,
    ctx: &mut DiffContext,
    changes: i64,
    reason: String,
    frontier: Option<&str>,
) -> PgtResult<Done> {
    let Some(delta) = stream_delta(tree, storage, payload, ctx)? else {
        return Err(PgtError::internal(
            "a changed source produced no delta query",
        ));
    };
    let plan = stream_plan(tree, storage, payload, &delta, &st.defining_query);
    match super::settings::with_differential_settings(|| Ok(spi_exec::try_execute(&plan, st)))? {
        Ok(applied) => {
            let snapshot = frontier.map_or(applied.snapshot, str::to_string);
            let applied = super::Applied { snapshot, ..applied };
            Ok(Done { action: RefreshAction::Differential, reason, applied, reinit_next: None, changes })
        }
        // FULL reads the sources with its own snapshot and records that one.
        Err(PlanError::OutOfStep { expected, actual }) => full(
            st,
            storage,
            format!("repaired with FULL: the differential apply found {actual} of the {expected} rows it had to delete"),
        ),
        Err(PlanError::Failed(e)) => Err(e),
    }
}

/// The DIFFERENTIAL refresh of a batch an external worker has reduced (`staged`, see
/// `dvm::offload`: Δ per group of an aggregate kept from stored state, or the query's Δ rows): the
/// delta reads that instead of the change buffer. The frontier is the snapshot the worker's batch
/// was cut at, not the apply statement's.
pub(super) fn refresh_staged(
    st: &StreamTable,
    storage: &QualifiedName,
    staged: &super::Staged,
) -> PgtResult<Done> {
    let tree = st
        .tree()?
        .ok_or_else(|| PgtError::internal("DIFFERENTIAL stream table without an operator tree"))?;
    let mut ctx = DiffContext::new(cdc::refresh_context(&tree.tables())?);
    ctx.cdc.staged = Some(staged.relation.clone());
    ctx.cache.group_indexes = crate::catalog::indexes::group_key_indexes(&tree)?;
    let payload = super::storage::payload(st, storage, Some(&tree), false)?.ok_or_else(|| {
        PgtError::internal("offloaded refresh of a stream table without its aggregate state")
    })?;
    let groups = spi::one::<i64>(
        &format!("SELECT pg_catalog.count(*) FROM {}", staged.relation),
        &[],
    )?
    .unwrap_or(0);
    ctx.opt.group_lookup = GroupLookup::for_batch(groups, super::storage::estimated_rows(st)?);
    let reason = format!(
        "{} change{} in the batch, reduced to {groups} {}{} by an external worker",
        staged.changes,
        if staged.changes == 1 { "" } else { "s" },
        if AggregateState::of(&tree).is_some() {
            "group"
        } else {
            "row"
        },
        if groups == 1 { "" } else { "s" }
    );
    apply_delta(
        st,
        storage,
        &tree,
        &payload,
        &mut ctx,
        staged.changes,
        reason,
        Some(&staged.snapshot),
    )
}

/// The first source this transaction has changed itself (it has change rows with our xid), if any.
fn own_uncommitted_changes(tables: &[TableRef], wrote_before: bool) -> PgtResult<Option<String>> {
    // A transaction that had no xid before the refresh (every scheduled refresh) has written nothing.
    if !wrote_before {
        return Ok(None);
    }
    for t in tables {
        let buffer = cdc::buffer_name(Oid::from(t.relid));
        let own: Option<bool> = spi::one(
            &format!("SELECT EXISTS (SELECT 1 FROM {buffer} WHERE __pgt_xid = pg_catalog.pg_current_xact_id_if_assigned())"),
            &[],
        )?;
        if own == Some(true) {
            return Ok(Some(format!("{}.{}", t.schema, t.name)));
        }
    }
    Ok(None)
}

/// The snapshot the batch ends at, and per source the number of change rows and of replaced rows,
/// in one statement.
fn count_batch(tables: &[TableRef], frontier: &str) -> PgtResult<CountedBatch> {
    let batch = cdc::refresh_context(tables)?.batch_predicate("b", None);
    let per_source: Vec<String> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "(SELECT pg_catalog.count(*) AS n, pg_catalog.count(*) FILTER (WHERE b.__pgt_w = {}) AS replaced
                    FROM {} AS b WHERE {batch}) AS s{i}",
                crate::cdc::replaced::REPLACED_WEIGHT,
                cdc::buffer_name(Oid::from(t.relid))
            )
        })
        .collect();
    let column = |name: &str| {
        if tables.is_empty() {
            "NULL::bigint[]".to_string()
        } else {
            let items: Vec<String> = (0..tables.len()).map(|i| format!("s{i}.{name}")).collect();
            format!("ARRAY[{}]::bigint[]", items.join(", "))
        }
    };
    let sql = format!(
        "SELECT pg_catalog.pg_current_snapshot()::text AS snapshot, {} AS counts, {} AS replaced{}",
        column("n"),
        column("replaced"),
        if per_source.is_empty() {
            String::new()
        } else {
            format!(" FROM {}", per_source.join(", "))
        }
    );
    let row = spi::rows(&sql, &[frontier.into()], |r| {
        let counts = |name: &str| -> Result<Vec<i64>, pgrx::spi::SpiError> {
            Ok(r.get_by_name::<Vec<Option<i64>>, _>(name)?
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.unwrap_or(0))
                .collect())
        };
        Ok(CountedBatch {
            snapshot: spi::col::<String>(r, "snapshot")?,
            counts: counts("counts")?,
            replaced: counts("replaced")?,
        })
    })?;
    row.into_iter()
        .next()
        .ok_or_else(|| PgtError::internal("batch count returned no row"))
}

/// Why a batch holding a replaced row of `source` (cdc/replaced.rs) is FULL: only refreshes write
/// a stream table, and TRUNCATE empties a table.
fn replaced_why(source: Oid) -> PgtResult<String> {
    let name = crate::catalog::names::qualified_name_of(source)?;
    Ok(
        if crate::catalog::stream_tables::load_by_relid(source)?.is_some() {
            format!("{name} was refreshed FULL and its new contents not captured row by row")
        } else {
            format!("{name} was truncated")
        },
    )
}

/// The batch a refresh counted: the snapshot it ends at, and per source its change rows and its
/// replaced rows (cdc/replaced.rs).
struct CountedBatch {
    snapshot: String,
    counts: Vec<i64>,
    replaced: Vec<i64>,
}

/// Up to this many consumers of a source, the clean-up reads each one's frontier once per statement.
const FRONTIERS_READ_ONCE: usize = 4;

/// From this size on (about 13,000 change rows) a buffer whose every row has been applied is emptied
/// by `TRUNCATE` when that is safe: deleting rows one by one costs about 0.8 µs each (a 75,000-row
/// batch, 60 ms), `TRUNCATE` about 1 ms plus a new relation file — not worth it for small buffers.
const TRUNCATE_FROM_BYTES: i64 = 1 << 20;

/// How a clean-up may empty a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// `DELETE` the applied rows: safe in any transaction.
    Delete,
    /// A large buffer whose rows every consumer has applied is truncated instead, if no other
    /// session is using it (`ACCESS EXCLUSIVE`, not waited for). Only in a READ COMMITTED transaction
    /// of its own that commits at once (`refresh::release_changes`): writers of the source wait for
    /// the lock until then, and the check that nothing unapplied is left must see every committed row.
    TruncateWhenAllApplied,
}

impl Release {
    /// `TruncateWhenAllApplied` where the current transaction allows it, else `Delete` (a safeguard:
    /// the callers that may truncate run in transactions of their own).
    pub fn here() -> Release {
        // SAFETY: reads the current transaction's state; no side effects.
        let own_transaction = unsafe {
            pg_sys::XactIsoLevel < pg_sys::XACT_REPEATABLE_READ as i32
                && !pg_sys::IsTransactionBlock()
        };
        if own_transaction {
            Release::TruncateWhenAllApplied
        } else {
            Release::Delete
        }
    }
}

/// Deletes change rows every DIFFERENTIAL consumer of the source has applied (visible in all their
/// frontiers), so buffers do not grow without bound — or truncates the buffer (see [`Release`]).
/// Skips a buffer another session is cleaning, one with a consumer that has applied nothing yet, and
/// one it cannot lock at once: a clean-up never waits for a lock (the coordinator runs clean-ups
/// between its ticks, and a truncated buffer stays locked until the clean-up commits), and the rows
/// it leaves go with the next one.
pub(super) fn release_consumed_changes(st: &StreamTable, how: Release) -> PgtResult<()> {
    let Some(tree) = st.tree()? else {
        return Ok(());
    };
    for t in tree.tables() {
        let source = Oid::from(t.relid);
        if !cdc::consumers_lock(source).try_acquire(Scope::Transaction) {
            continue;
        }
        let buffer = cdc::buffer_name(source);
        let Some(buffer_oid) = lock_buffer_at_once(&buffer) else {
            continue;
        };
        let Some(applied) = applied_by_all(source)? else {
            continue;
        };
        if how == Release::TruncateWhenAllApplied {
            analyze_first_batch(buffer_oid, &buffer)?;
        }
        if how == Release::TruncateWhenAllApplied
            && truncated(source, buffer_oid, &buffer, &applied)?
        {
            continue;
        }
        spi::exec(
            &format!("DELETE FROM {buffer} AS b WHERE {}", applied.predicate),
            &applied.params(),
        )?;
    }
    Ok(())
}

/// How long a clean-up's `ANALYZE` or `TRUNCATE` of a buffer may wait for a lock before it leaves
/// the statistics for a later clean-up, or deletes the rows instead. Both update the buffer's
/// `pg_class` row, which waits for any open transaction that updated that row — a `GRANT` on the
/// buffer by any of its readers (a review held the coordinator that way for as long as its
/// transaction stayed open, and deadlocked it). The locks on the buffer itself are taken before,
/// without waiting.
const CLEAN_UP_LOCK_TIMEOUT_MS: u32 = 10;

/// Analyses a buffer that has never been analysed, at its first clean-up with a row in it, so that
/// the planner knows its columns. Without statistics PostgreSQL takes any column of it for a
/// skewed one (200 distinct values, a tenth of the rows in one hash bucket) and never hashes a
/// batch: a join reading its partner whole then hashed the partner's every row (a 100,000-row
/// dimension, ~12 ms) rather than the batch's 15,000. A buffer is truncated and refilled, but its
/// statistics stay, and autovacuum renews them as it would anyway; this only makes sure they exist.
/// Every buffer, however small its first batch: a query over two sources whose buffers had
/// statistics for one only planned worse than with none (TPC-H Q08 7–9 → 39 ms a refresh, the
/// `lineitem` buffer analysed after its first 600 change rows, `orders` below a 64 kB threshold).
/// ANALYZE runs as the buffer's owner and leaves out users' types (`cdc::skip_statistics_of_users_types`).
/// It never waits long: a buffer another session is analysing or vacuuming is left for the next
/// clean-up, and so is one whose statistics could not be written within [`CLEAN_UP_LOCK_TIMEOUT_MS`].
fn analyze_first_batch(oid: Oid, buffer: &QualifiedName) -> PgtResult<()> {
    // SAFETY: a syscache probe by (relation, attribute 1 = `__pgt_xid`, not inherited), no side effects.
    let analysed = unsafe {
        pg_sys::SearchSysCacheExists(
            pg_sys::SysCacheIdentifier::STATRELATTINH as i32,
            pg_sys::Datum::from(oid),
            pg_sys::Datum::from(1i16),
            pg_sys::Datum::from(false),
            pg_sys::Datum::from(0),
        )
    };
    // Only a superuser may analyse another role's table without a warning (a clean-up runs as one:
    // a background worker, or the extension's owner for an external worker).
    // SAFETY: reads the current role's attributes; no side effects.
    if analysed || !unsafe { pg_sys::superuser() } {
        return Ok(());
    }
    // ANALYZE of a buffer without a row (its pages hold rows deleted by earlier clean-ups) writes no
    // statistics, and would be repeated by every clean-up: only with a row in it.
    if spi::one::<bool>(&format!("SELECT EXISTS (SELECT 1 FROM {buffer})"), &[])? != Some(true) {
        return Ok(());
    }
    // SAFETY: takes a lock the transaction keeps until it ends; never waits.
    let locked = unsafe {
        pg_sys::ConditionalLockRelationOid(
            oid,
            pg_sys::ShareUpdateExclusiveLock as pg_sys::LOCKMODE,
        )
    };
    if !locked {
        return Ok(());
    }
    // Not done, the statistics are for a later clean-up: they are for speed only.
    run_without_waiting(&format!("ANALYZE {buffer}")).map(|_| ())
}

/// Runs `sql`, a statement on a buffer that updates its `pg_class` row (ANALYZE, TRUNCATE), in a
/// subtransaction with `lock_timeout` [`CLEAN_UP_LOCK_TIMEOUT_MS`]; whether it ran. A lock not
/// granted in time, or any other error but a cancel, rolls it back and nothing else (logged at
/// DEBUG1).
fn run_without_waiting(sql: &str) -> PgtResult<bool> {
    super::settings::with_lock_timeout(CLEAN_UP_LOCK_TIMEOUT_MS, || {
        match spi::in_subtransaction_not_waiting(|| spi::exec(sql, &[])) {
            Ok(done) => done.map(|()| true),
            Err(why) => {
                pgrx::debug1!("pg_trickle: not done, {sql}: {why}");
                Ok(false)
            }
        }
    })
}

/// Which change rows of a source every DIFFERENTIAL consumer has applied: a predicate over buffer
/// alias `b`, with the source as `$1` when it needs it.
struct AppliedByAll {
    predicate: String,
    source: Option<Oid>,
}

impl AppliedByAll {
    fn params(&self) -> Vec<pgrx::datum::DatumWithOid<'static>> {
        self.source.map(|s| vec![s.into()]).unwrap_or_default()
    }
}

/// None when the source has no DIFFERENTIAL consumer, or one that has applied nothing yet.
fn applied_by_all(source: Oid) -> PgtResult<Option<AppliedByAll>> {
    // How many consumers, whether all have applied something, and the first few of them.
    let consumers = spi::rows(
        &format!(
            "SELECT pg_catalog.count(*) AS n, COALESCE(pg_catalog.bool_and(s.frontier IS NOT NULL), false) AS applied,
                    (pg_catalog.array_agg(s.pgt_id ORDER BY s.pgt_id))[1:{FRONTIERS_READ_ONCE}] AS first
               FROM pgtrickle.pgt_stream_tables s
              WHERE {} AND s.effective_mode = 'DIFFERENTIAL'",
            crate::catalog::readers_of("$1", "")
        ),
        &[source.into()],
        |r| {
            let ids: Option<Vec<Option<i64>>> = r.get_by_name("first")?;
            Ok((spi::col::<i64>(r, "n")?, spi::col::<bool>(r, "applied")?, ids.unwrap_or_default()))
        },
    )?;
    let Some((n, applied, first)) = consumers.into_iter().next() else {
        return Ok(None);
    };
    if n == 0 || !applied {
        return Ok(None);
    }
    if n as usize <= FRONTIERS_READ_ONCE {
        // InitPlans per consumer read its frontier once per statement; the join below would be
        // evaluated again for every change row (most of the statement's time for a large batch).
        // The bounds decide most rows without calling the visibility function, exactly as it would:
        // below xmin a row is visible, from xmax on it is not (see `CdcContext::batch_predicate`).
        let visible_to_all: Vec<String> = first
            .iter()
            .flatten()
            .map(|id| {
                let frontier = |f: &str| {
                    format!("(SELECT {f} FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = {id})")
                };
                format!(
                    "(b.__pgt_xid OPERATOR(pg_catalog.<) {} OR (b.__pgt_xid OPERATOR(pg_catalog.<) {} AND pg_catalog.pg_visible_in_snapshot(b.__pgt_xid, {})))",
                    frontier("pg_catalog.pg_snapshot_xmin(s.frontier)"),
                    frontier("pg_catalog.pg_snapshot_xmax(s.frontier)"),
                    frontier("s.frontier"),
                )
            })
            .collect();
        return Ok(Some(AppliedByAll {
            predicate: visible_to_all.join(" AND "),
            source: None,
        }));
    }
    // Many consumers (a table every one of a thousand stream tables reads): per change row, stop at
    // the first consumer that has not applied it, rather than read every frontier.
    Ok(Some(AppliedByAll {
        predicate: format!(
            "NOT EXISTS (
                SELECT 1 FROM pgtrickle.pgt_stream_tables s
                 WHERE {} AND s.effective_mode = 'DIFFERENTIAL'
                   AND (s.frontier IS NULL OR NOT pg_catalog.pg_visible_in_snapshot(b.__pgt_xid, s.frontier)))",
            crate::catalog::readers_of("$1", "")
        ),
        source: Some(source),
    }))
}

/// The buffer's oid once this transaction holds `ROW EXCLUSIVE` on it (what its `DELETE` takes);
/// None when it is gone, or another session holds a lock that conflicts (a DDL on the source, a
/// clean-up that truncated it and has not committed yet, `LOCK TABLE`). PostgreSQL's own lookup
/// (`RVR_SKIP_LOCKED`) looks the name up again should the relation change while it waited for nothing.
fn lock_buffer_at_once(buffer: &QualifiedName) -> Option<Oid> {
    let (Ok(schema), Ok(name)) = (
        std::ffi::CString::new(buffer.schema.as_str()),
        std::ffi::CString::new(buffer.name.as_str()),
    ) else {
        return None;
    };
    // SAFETY: makeRangeVar copies nothing but keeps the pointers, which outlive the call below;
    // the lookup takes a lock the transaction keeps until it ends, and never waits.
    let oid = unsafe {
        let range = pg_sys::makeRangeVar(schema.as_ptr().cast_mut(), name.as_ptr().cast_mut(), -1);
        pg_sys::RangeVarGetRelidExtended(
            range,
            pg_sys::RowExclusiveLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK | pg_sys::RVROption::RVR_SKIP_LOCKED,
            None,
            std::ptr::null_mut(),
        )
    };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// Truncates a large buffer whose every row has been applied, if no other session uses it; whether
/// it did. Holding `ACCESS EXCLUSIVE`, no writer can be adding rows, and every writer that added some
/// has ended: this statement's snapshot sees all of them. `oid`: the buffer, locked.
fn truncated(
    source: Oid,
    oid: Oid,
    buffer: &QualifiedName,
    applied: &AppliedByAll,
) -> PgtResult<bool> {
    let bytes =
        spi::one::<i64>("SELECT pg_catalog.pg_relation_size($1)", &[oid.into()])?.unwrap_or(0);
    if bytes < TRUNCATE_FROM_BYTES {
        return Ok(false);
    }
    // SAFETY: takes a lock the transaction keeps until it ends; never waits.
    let locked = unsafe {
        pg_sys::ConditionalLockRelationOid(oid, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE)
    };
    if !locked {
        return Ok(false);
    }
    // A row older than every consumer's frontier's xmin is visible in all of them: only younger
    // ones need the predicate (one comparison a row rather than a snapshot test per consumer).
    let all_applied = spi::one::<bool>(
        &format!(
            "SELECT NOT EXISTS (
                    SELECT 1 FROM {buffer} AS b
                     WHERE b.__pgt_xid >= (SELECT pg_catalog.min(pg_catalog.pg_snapshot_xmin(s.frontier))
                                             FROM pgtrickle.pgt_stream_tables s
                                            WHERE {} AND s.effective_mode = 'DIFFERENTIAL')
                       AND ({}) IS NOT TRUE)",
            crate::catalog::readers_of(&source.to_u32().to_string(), ""),
            applied.predicate
        ),
        &applied.params(),
    )? == Some(true);
    if !all_applied {
        return Ok(false);
    }
    // TRUNCATE gives the buffer a new file, an update of its pg_class row, which waits for any open
    // transaction that changed that row (an open GRANT on the buffer: review 11 held the coordinator,
    // and the source's writers behind the lock taken above, that way). Not done, the rows are
    // deleted instead.
    run_without_waiting(&format!("TRUNCATE {buffer}"))
}
