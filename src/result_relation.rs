//! An executor state whose one result relation is a table, for code that inserts rows below the
//! executor — a FULL refresh's batch inserts, capture's change rows — and must still do what an
//! `INSERT` does for every row: check its constraints and add it to every index of the table.

use pgrx::pg_sys;
use pgrx::PgList;

pub struct ResultRelation {
    pub estate: *mut pg_sys::EState,
    pub target: *mut pg_sys::ResultRelInfo,
}

impl ResultRelation {
    /// # Safety
    /// `rel` is an open plain table, locked with at least `RowExclusiveLock`; it stays open until
    /// [`ResultRelation::close`].
    pub unsafe fn open(rel: pg_sys::Relation) -> ResultRelation {
        // SAFETY: as promised; the table as the one range table entry and result relation, as
        // logical replication's apply builds one.
        unsafe {
            let estate = pg_sys::CreateExecutorState();
            let rte = pg_sys::palloc0(std::mem::size_of::<pg_sys::RangeTblEntry>())
                as *mut pg_sys::RangeTblEntry;
            (*rte).type_ = pg_sys::NodeTag::T_RangeTblEntry;
            (*rte).rtekind = pg_sys::RTEKind::RTE_RELATION;
            (*rte).relid = (*rel).rd_id;
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
            ResultRelation { estate, target }
        }
    }

    /// Whether the table has indexes to add rows to.
    pub fn has_indexes(&self) -> bool {
        // SAFETY: the result relation is open (see `open`).
        unsafe { (*self.target).ri_NumIndices > 0 }
    }

    /// Adds the row in `slot`, just inserted into the heap (its `tts_tid` set), to every index.
    ///
    /// # Safety
    /// `slot` holds a row of the table's type whose heap insertion this command made.
    pub unsafe fn insert_index_entries(&self, slot: *mut pg_sys::TupleTableSlot) {
        if !self.has_indexes() {
            return;
        }
        // SAFETY: as promised; the executor state and its indexes are open.
        unsafe {
            let recheck = pg_sys::ExecInsertIndexTuples(
                self.target,
                slot,
                self.estate,
                false,
                false,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            pg_sys::list_free(recheck);
            self.reset_per_tuple_memory();
        }
    }

    /// Frees what evaluating a row's constraints or index expressions allocated.
    pub fn reset_per_tuple_memory(&self) {
        // SAFETY: the executor state is alive; its per-tuple context, once made, is only reset here.
        unsafe {
            let context = (*self.estate).es_per_tuple_exprcontext;
            if !context.is_null() {
                pg_sys::MemoryContextReset((*context).ecxt_per_tuple_memory);
            }
        }
    }

    /// Closes the indexes and frees the executor state (the table stays open for its opener).
    ///
    /// # Safety
    /// No slot made in the executor state is used afterwards.
    pub unsafe fn close(self) {
        // SAFETY: undoes `open`, once (`self` is consumed).
        unsafe {
            pg_sys::ExecCloseIndices(self.target);
            pg_sys::ExecResetTupleTable((*self.estate).es_tupleTable, false);
            pg_sys::FreeExecutorState(self.estate);
        }
    }
}
