//! A FULL refresh that reads its query in parallel, as REFRESH MATERIALIZED VIEW does.
//!
//! PostgreSQL never plans `INSERT ... SELECT` in parallel: only statements that insert a query's rows
//! themselves (CREATE TABLE AS, REFRESH MATERIALIZED VIEW) read it with parallel workers. On an
//! aggregate over a million rows that is most of the difference: 124 ms serial against 78 ms with two
//! workers (a global aggregate on the bench data, two cores). So where the planner reads the query in
//! parallel, a FULL refresh runs it as a `SELECT` into a tuplestore and inserts the rows itself with
//! `ExecSimpleRelationInsert` — the row's constraints and every index of the stream table, as logical
//! replication's apply does. Elsewhere (a serial plan: the result is about as large as what is read,
//! so parallel workers would only pass rows through) the `INSERT ... SELECT` runs as before.
//!
//! The rows are kept, not inserted as they arrive: nothing may be written while parallel workers run.
//! The tuplestore spills to disk past `work_mem`.

use crate::dvm::plan::InsertRows;
use crate::error::{PgtError, PgtResult};
use crate::spi;
use pgrx::pg_sys::{self, Oid};
use pgrx::PgList;
use std::ffi::CString;

/// Whether rows may be inserted into the stream table `relid` without its `INSERT`: no trigger but
/// pg_trickle's guard (a user's statement trigger would not fire), no row-level security, and the
/// current role (the owner) may insert — else the SQL statement runs and behaves as it always has.
pub fn eligible(relid: Oid) -> PgtResult<bool> {
    Ok(spi::one::<bool>(
        "SELECT c.relkind = 'r' AND NOT c.relrowsecurity
                AND pg_catalog.has_table_privilege(c.oid, 'INSERT')
                AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t
                                 WHERE t.tgrelid = c.oid AND t.tgname <> 'pgtrickle_guard')
           FROM pg_catalog.pg_class c WHERE c.oid = $1",
        &[relid.into()],
    )?
    .unwrap_or(false))
}

/// Inserts the rows of `rows.select`, read on `snapshot`, into `relid`; how many, or None when the
/// planner would not read the query in parallel or its columns do not map one to one, with equal
/// types, onto the table's (the caller then runs the `INSERT`).
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
    // SAFETY: as the caller promises; the plan is freed on every path that returns.
    unsafe {
        let plan = pg_sys::SPI_prepare_cursor(
            select.as_ptr(),
            0,
            std::ptr::null_mut(),
            pg_sys::CURSOR_OPT_PARALLEL_OK as i32,
        );
        if plan.is_null() {
            let code = pg_sys::SPI_result;
            return Err(PgtError::internal(format!(
                "SPI_prepare_cursor failed ({code})"
            )));
        }
        let out = match parallel_result(plan) {
            Some(desc) => insert_read(relid, plan, desc, &rows.columns, snapshot),
            None => Ok(None),
        };
        pg_sys::SPI_freeplan(plan);
        out
    }
}

/// The query's row type when its plan is a parallel `SELECT`.
unsafe fn parallel_result(plan: pg_sys::SPIPlanPtr) -> Option<pg_sys::TupleDesc> {
    // SAFETY: `plan` is a valid, unsaved SPI plan: its cached plan is released with no owner.
    unsafe {
        let cached = pg_sys::SPI_plan_get_cached_plan(plan);
        if cached.is_null() {
            return None;
        }
        let statements = PgList::<pg_sys::PlannedStmt>::from_pg((*cached).stmt_list);
        let parallel = statements.len() == 1
            && statements.get_ptr(0).is_some_and(|s| {
                (*s).commandType == pg_sys::CmdType::CMD_SELECT && (*s).parallelModeNeeded
            });
        pg_sys::ReleaseCachedPlan(cached, std::ptr::null_mut());
        let sources =
            PgList::<pg_sys::CachedPlanSource>::from_pg(pg_sys::SPI_plan_get_plan_sources(plan));
        let desc = sources
            .get_ptr(0)
            .map(|s| (*s).resultDesc)
            .filter(|d| !d.is_null());
        desc.filter(|_| parallel)
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
    relid: Oid,
    plan: pg_sys::SPIPlanPtr,
    desc: pg_sys::TupleDesc,
    columns: &[String],
    snapshot: pg_sys::Snapshot,
) -> PgtResult<Option<u64>> {
    // SAFETY: as `insert`'s caller promises. Everything opened here is closed before returning; an
    // ERROR raised inside unwinds to the (sub)transaction's abort, which releases it all.
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let Some(map) = column_map((*rel).rd_att, desc, columns) else {
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            return Ok(None);
        };

        // The read: the query's rows into a tuplestore, on exactly `snapshot` (read-only SPI runs on
        // the active snapshot).
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
        let options = pg_sys::SPIExecuteOptions {
            read_only: true,
            dest,
            ..Default::default()
        };
        pg_sys::PushActiveSnapshot(snapshot);
        let rc = pg_sys::SPI_execute_plan_extended(plan, &options);
        pg_sys::PopActiveSnapshot();
        if let Some(destroy) = (*dest).rDestroy {
            destroy(dest);
        }
        if rc != pg_sys::SPI_OK_SELECT as i32 {
            return Err(PgtError::internal(format!(
                "SPI_execute_plan_extended failed ({rc})"
            )));
        }

        // The insert, as logical replication's apply inserts a row.
        let estate = pg_sys::CreateExecutorState();
        let rte = pg_sys::palloc0(std::mem::size_of::<pg_sys::RangeTblEntry>())
            as *mut pg_sys::RangeTblEntry;
        (*rte).type_ = pg_sys::NodeTag::T_RangeTblEntry;
        (*rte).rtekind = pg_sys::RTEKind::RTE_RELATION;
        (*rte).relid = relid;
        (*rte).relkind = pg_sys::RELKIND_RELATION as std::ffi::c_char;
        (*rte).rellockmode = pg_sys::RowExclusiveLock as i32;
        let mut range_table = PgList::<pg_sys::RangeTblEntry>::new();
        range_table.push(rte);
        pg_sys::ExecInitRangeTable(estate, range_table.into_pg());
        let target = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
            as *mut pg_sys::ResultRelInfo;
        (*target).type_ = pg_sys::NodeTag::T_ResultRelInfo;
        pg_sys::InitResultRelInfo(target, rel, 1, std::ptr::null_mut(), 0);
        (*estate).es_output_cid = pg_sys::GetCurrentCommandId(true);
        pg_sys::ExecOpenIndices(target, false);
        pg_sys::AfterTriggerBeginQuery();

        let read = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsMinimalTuple);
        let row = pg_sys::table_slot_create(rel, &mut (*estate).es_tupleTable);
        let natts = map.len();
        let mut inserted = 0u64;
        while pg_sys::tuplestore_gettupleslot(store, true, false, read) {
            pg_sys::slot_getallattrs(read);
            pg_sys::ExecClearTuple(row);
            let (from_values, from_nulls) = (
                std::slice::from_raw_parts((*read).tts_values, (*desc).natts as usize),
                std::slice::from_raw_parts((*read).tts_isnull, (*desc).natts as usize),
            );
            let values = std::slice::from_raw_parts_mut((*row).tts_values, natts);
            let nulls = std::slice::from_raw_parts_mut((*row).tts_isnull, natts);
            for (j, from) in map.iter().enumerate() {
                match from {
                    Some(i) => (values[j], nulls[j]) = (from_values[*i], from_nulls[*i]),
                    None => (values[j], nulls[j]) = (pg_sys::Datum::from(0), true),
                }
            }
            pg_sys::ExecStoreVirtualTuple(row);
            pg_sys::ExecSimpleRelationInsert(target, estate, row);
            if !(*estate).es_per_tuple_exprcontext.is_null() {
                pg_sys::MemoryContextReset(
                    (*(*estate).es_per_tuple_exprcontext).ecxt_per_tuple_memory,
                );
            }
            inserted += 1;
            pgrx::check_for_interrupts!();
        }

        pg_sys::AfterTriggerEndQuery(estate);
        pg_sys::ExecCloseIndices(target);
        pg_sys::ExecDropSingleTupleTableSlot(read);
        pg_sys::ExecResetTupleTable((*estate).es_tupleTable, false);
        pg_sys::FreeExecutorState(estate);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::tuplestore_end(store);
        // The rows are the refresh's own writes: visible to its next statements.
        pg_sys::CommandCounterIncrement();
        pgrx::debug1!(
            "pg_trickle: FULL refresh read its query in parallel and inserted {inserted} rows"
        );
        Ok(Some(inserted))
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
