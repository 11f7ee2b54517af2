//! A FULL refresh inserts its query's rows itself, as REFRESH MATERIALIZED VIEW and COPY do.
//!
//! `INSERT ... SELECT` costs a FULL refresh twice over:
//! - PostgreSQL never plans it in parallel; only statements that insert the rows themselves (CREATE
//!   TABLE AS, REFRESH MATERIALIZED VIEW) read the query with parallel workers. On an aggregate over a
//!   million rows that is most of the difference: 124 ms serial against 78 ms with two workers.
//! - It inserts row by row, a heap insertion and a WAL record each, where COPY inserts a batch per
//!   call (`heap_multi_insert`, a WAL record per page): 430 ms against 148 ms for 676,666 rows.
//!
//! (The bench data, a global aggregate and the filter shape; docs/BENCHMARKS.md.) So the insert step
//! runs the query as a `SELECT` — in parallel where the planner would — and inserts its rows a batch
//! at a time with `table_multi_insert`, checking each row's constraints and adding it
//! to every index, as COPY FROM does. A serial read passes each row on as the query yields it; a
//! parallel one keeps them first in a tuplestore (spilling to disk past `work_mem`), since nothing may
//! be written while parallel workers run.

use crate::dvm::plan::InsertRows;
use crate::error::{PgtError, PgtResult};
use crate::result_relation::ResultRelation;
use pgrx::pg_sys::{self, Oid};
use pgrx::PgList;
use std::ffi::CString;

/// Inserts the rows of `rows.select`, read on `snapshot`, into `relid`; how many, or None when the
/// table cannot take rows this way (see `direct_writes`) or the query's columns do not map one to one,
/// with equal types, onto the table's: the caller then runs the `INSERT`, which behaves as it
/// always has.
///
/// # Safety
/// SPI is connected, `snapshot` is registered, and the caller holds `RowExclusiveLock` on `relid`
/// (the FULL refresh's `DELETE` took it) or may take it.
pub unsafe fn insert(
    relid: Oid,
    rows: &InsertRows,
    snapshot: pg_sys::Snapshot,
) -> PgtResult<Option<u64>> {
    let select = CString::new(rows.select.as_str())
        .map_err(|_| PgtError::internal("statement text contains a NUL byte"))?;
    // SAFETY: as the caller promises; the relation is closed and the plan freed on every path that
    // returns.
    unsafe {
        // Whether the table takes rows this way is known before the query is planned: a table that
        // does not gets its `INSERT`, planned once.
        let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let Some(direct) = super::direct_writes::writes_directly(rel, pg_sys::ACL_INSERT) else {
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            return Ok(None);
        };
        let plan = pg_sys::SPI_prepare_cursor(
            select.as_ptr(),
            0,
            std::ptr::null_mut(),
            pg_sys::CURSOR_OPT_PARALLEL_OK as i32,
        );
        if plan.is_null() {
            let code = pg_sys::SPI_result;
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            return Err(PgtError::internal(format!(
                "SPI_prepare_cursor failed ({code})"
            )));
        }
        let out = match result_type(plan) {
            Some((desc, parallel)) => {
                insert_read(rel, plan, desc, parallel, &rows.columns, snapshot)
            }
            None => Ok(None),
        };
        pg_sys::SPI_freeplan(plan);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        if matches!(out, Ok(Some(_))) {
            direct.written();
        }
        out
    }
}

/// The query's row type, when its plan is one `SELECT`; and whether that reads in parallel.
unsafe fn result_type(plan: pg_sys::SPIPlanPtr) -> Option<(pg_sys::TupleDesc, bool)> {
    // SAFETY: `plan` is a valid, unsaved SPI plan: its cached plan is released with no owner.
    unsafe {
        let cached = pg_sys::SPI_plan_get_cached_plan(plan);
        if cached.is_null() {
            return None;
        }
        let statements = PgList::<pg_sys::PlannedStmt>::from_pg((*cached).stmt_list);
        let select = match statements.get_ptr(0) {
            Some(s) if statements.len() == 1 && (*s).commandType == pg_sys::CmdType::CMD_SELECT => {
                Some((*s).parallelModeNeeded)
            }
            _ => None,
        };
        pg_sys::ReleaseCachedPlan(cached, std::ptr::null_mut());
        let sources =
            PgList::<pg_sys::CachedPlanSource>::from_pg(pg_sys::SPI_plan_get_plan_sources(plan));
        let desc = sources
            .get_ptr(0)
            .map(|s| (*s).resultDesc)
            .filter(|d| !d.is_null())?;
        select.map(|parallel| (desc, parallel))
    }
}

/// For each of the table's attributes, the query column that fills it (None: a dropped attribute).
/// None when a live attribute has no column, a column has no attribute, or a type or type modifier
/// differs (the `INSERT` would coerce).
unsafe fn column_map(
    table: pg_sys::TupleDesc,
    query: pg_sys::TupleDesc,
    columns: &[String],
) -> Option<Vec<Option<usize>>> {
    // SAFETY: both descriptors are valid; attributes are read within their `natts`.
    unsafe {
        let (table_natts, query_natts) = ((*table).natts as usize, (*query).natts as usize);
        if query_natts != columns.len() {
            return None;
        }
        let table_attrs = (*table).attrs.as_slice(table_natts);
        let query_attrs = (*query).attrs.as_slice(query_natts);
        let mut map = Vec::with_capacity(table_natts);
        let mut used = 0;
        for attr in table_attrs {
            if attr.attisdropped {
                map.push(None);
                continue;
            }
            let name = pgrx::name_data_to_str(&attr.attname);
            let i = columns.iter().position(|c| c == name)?;
            let q = &query_attrs[i];
            if q.atttypid != attr.atttypid || q.atttypmod != attr.atttypmod {
                return None;
            }
            map.push(Some(i));
            used += 1;
        }
        (used == columns.len()).then_some(map)
    }
}

unsafe fn insert_read(
    rel: pg_sys::Relation,
    plan: pg_sys::SPIPlanPtr,
    desc: pg_sys::TupleDesc,
    parallel: bool,
    columns: &[String],
    snapshot: pg_sys::Snapshot,
) -> PgtResult<Option<u64>> {
    // SAFETY: as `insert`'s caller promises, with `rel` open. Everything opened here is closed
    // before returning; an ERROR raised inside unwinds to the (sub)transaction's abort, which
    // releases it all.
    unsafe {
        let Some(map) = column_map((*rel).rd_att, desc, columns) else {
            return Ok(None);
        };
        let mut sink = Sink::open(rel, map);
        if parallel {
            // Kept first: nothing may be written while parallel workers run.
            let store = pg_sys::tuplestore_begin_heap(false, false, pg_sys::work_mem);
            let dest = pg_sys::CreateDestReceiver(pg_sys::CommandDest::DestTuplestore);
            pg_sys::ffi::pg_guard_ffi_boundary(|| {
                SetTuplestoreDestReceiverParams(
                    dest,
                    store,
                    pg_sys::CurrentMemoryContext,
                    false,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                )
            });
            let read = run_select(plan, snapshot, dest);
            if let Some(destroy) = (*dest).rDestroy {
                destroy(dest);
            }
            read?;
            let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsMinimalTuple);
            while pg_sys::tuplestore_gettupleslot(store, true, false, slot) {
                sink.push(slot);
            }
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            pg_sys::tuplestore_end(store);
        } else {
            // Inserted as the query yields them.
            let mut receiver = Receiver {
                base: pg_sys::DestReceiver {
                    receiveSlot: Some(receive_row),
                    rStartup: Some(receiver_startup),
                    rShutdown: Some(receiver_done),
                    rDestroy: Some(receiver_done),
                    mydest: pg_sys::CommandDest::DestNone,
                },
                sink: &mut sink,
            };
            run_select(plan, snapshot, &mut receiver.base)?;
        }
        let inserted = sink.close();
        // The rows are the refresh's own writes: visible to its next statements.
        pg_sys::CommandCounterIncrement();
        pgrx::debug1!(
            "pg_trickle: FULL refresh inserted {inserted} rows itself (query read {})",
            if parallel { "in parallel" } else { "serially" }
        );
        Ok(Some(inserted))
    }
}

/// Runs the `SELECT` on exactly `snapshot` (read-only SPI runs on the active snapshot), its rows to
/// `dest`.
unsafe fn run_select(
    plan: pg_sys::SPIPlanPtr,
    snapshot: pg_sys::Snapshot,
    dest: *mut pg_sys::DestReceiver,
) -> PgtResult<()> {
    let options = pg_sys::SPIExecuteOptions {
        read_only: true,
        dest,
        ..Default::default()
    };
    // SAFETY: SPI is connected, the plan and the snapshot are valid (see `insert`).
    let rc = unsafe {
        pg_sys::PushActiveSnapshot(snapshot);
        let rc = pg_sys::SPI_execute_plan_extended(plan, &options);
        pg_sys::PopActiveSnapshot();
        rc
    };
    // A receiver marked `DestNone` (ours) makes SPI report a SELECT as SPI_OK_UTILITY.
    if rc != pg_sys::SPI_OK_SELECT as i32 && rc != pg_sys::SPI_OK_UTILITY as i32 {
        return Err(PgtError::internal(format!(
            "SPI_execute_plan_extended failed ({rc})"
        )));
    }
    Ok(())
}

/// The executor's receiver for a serial read: each row straight to the sink.
#[repr(C)]
struct Receiver {
    base: pg_sys::DestReceiver,
    sink: *mut Sink,
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn receive_row(
    slot: *mut pg_sys::TupleTableSlot,
    receiver: *mut pg_sys::DestReceiver,
) -> bool {
    // SAFETY: `receiver` is the `base` of a live `Receiver` (see `insert_read`), whose sink outlives
    // the query.
    unsafe { (*(*(receiver as *mut Receiver)).sink).push(slot) };
    true
}

// Nothing to do at the start and end of the query; they cannot fail, so need no guard.
unsafe extern "C-unwind" fn receiver_startup(
    _receiver: *mut pg_sys::DestReceiver,
    _operation: std::ffi::c_int,
    _desc: pg_sys::TupleDesc,
) {
}

unsafe extern "C-unwind" fn receiver_done(_receiver: *mut pg_sys::DestReceiver) {}

/// Where the query's rows go: into the table a batch at a time, as COPY FROM buffers them (up to
/// 1,000 rows or 64 kB), each row's constraints checked and the row added to every index.
struct Sink {
    rel: pg_sys::Relation,
    /// For each of the table's attributes, the query column that fills it (see `column_map`).
    map: Vec<Option<usize>>,
    constrained: bool,
    result: ResultRelation,
    bulk: pg_sys::BulkInsertState,
    slots: Vec<*mut pg_sys::TupleTableSlot>,
    rows: usize,
    bytes: usize,
    inserted: u64,
}

impl Sink {
    const ROWS: usize = 1000;
    const BYTES: usize = 64 * 1024;

    /// # Safety
    /// `rel` is open with `RowExclusiveLock`, a plain table, and `map` fits its attributes.
    unsafe fn open(rel: pg_sys::Relation, map: Vec<Option<usize>>) -> Sink {
        // SAFETY: as promised.
        unsafe {
            Sink {
                rel,
                map,
                constrained: !(*(*rel).rd_att).constr.is_null(),
                result: ResultRelation::open(rel),
                bulk: pg_sys::GetBulkInsertState(),
                slots: Vec::new(),
                rows: 0,
                bytes: 0,
                inserted: 0,
            }
        }
    }

    /// Takes one row of the query (a slot of its row type).
    unsafe fn push(&mut self, from: *mut pg_sys::TupleTableSlot) {
        // SAFETY: `from` holds a row of the query's type; the next free slot is the table's type.
        unsafe {
            pg_sys::slot_getallattrs(from);
            // Slots are made as a batch first needs them (a one-row result makes one), in the
            // executor state's memory: this runs inside the query, whose own memory ends with it.
            if self.rows == self.slots.len() {
                let outer = pg_sys::CurrentMemoryContext;
                let estate = self.result.estate;
                pg_sys::CurrentMemoryContext = (*estate).es_query_cxt;
                let made = pg_sys::table_slot_create(self.rel, &mut (*estate).es_tupleTable);
                pg_sys::CurrentMemoryContext = outer;
                self.slots.push(made);
            }
            let row = self.slots[self.rows];
            let natts = self.map.len();
            let values = std::slice::from_raw_parts_mut((*row).tts_values, natts);
            let nulls = std::slice::from_raw_parts_mut((*row).tts_isnull, natts);
            for (j, from_column) in self.map.iter().enumerate() {
                (values[j], nulls[j]) = match from_column {
                    Some(i) => (*(*from).tts_values.add(*i), *(*from).tts_isnull.add(*i)),
                    None => (pg_sys::Datum::from(0), true),
                };
            }
            pg_sys::ExecStoreVirtualTuple(row);
            // The row's own copy: the query's is gone at its next row.
            pg_sys::ExecMaterializeSlot(row);
            if self.constrained {
                pg_sys::ExecConstraints(self.result.target, row, self.result.estate);
                self.result.reset_per_tuple_memory();
            }
            let tuple = (*(row as *mut pg_sys::HeapTupleTableSlot)).tuple;
            self.bytes += tuple.as_ref().map_or(0, |t| t.t_len as usize);
            self.rows += 1;
            self.inserted += 1;
            if self.rows == Self::ROWS || self.bytes >= Self::BYTES {
                self.flush();
            }
            pgrx::check_for_interrupts!();
        }
    }

    /// Inserts the waiting rows, then adds each to every index.
    unsafe fn flush(&mut self) {
        if self.rows == 0 {
            return;
        }
        // SAFETY: the first `rows` slots hold materialised rows of the table's type; the relation,
        // executor state and result relation are open (see `open`).
        unsafe {
            pg_sys::table_multi_insert(
                self.rel,
                self.slots.as_mut_ptr(),
                self.rows as i32,
                (*self.result.estate).es_output_cid,
                0,
                self.bulk,
            );
            for &slot in &self.slots[..self.rows] {
                self.result.insert_index_entries(slot);
                pg_sys::ExecClearTuple(slot);
            }
        }
        self.rows = 0;
        self.bytes = 0;
    }

    /// Inserts what waits and closes the executor state; the rows inserted.
    unsafe fn close(mut self) -> u64 {
        // SAFETY: undoes `open`, once (`self` is consumed); the relation stays open for the caller.
        unsafe {
            self.flush();
            pg_sys::FreeBulkInsertState(self.bulk);
            self.result.close();
        }
        self.inserted
    }
}

unsafe extern "C-unwind" {
    // executor/tstoreReceiver.h, which pgrx does not bind.
    fn SetTuplestoreDestReceiverParams(
        receiver: *mut pg_sys::DestReceiver,
        store: *mut pg_sys::Tuplestorestate,
        context: pg_sys::MemoryContext,
        detoast: bool,
        target_desc: pg_sys::TupleDesc,
        map_failure_msg: *const std::ffi::c_char,
    );
}
