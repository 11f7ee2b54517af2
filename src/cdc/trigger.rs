//! The capture trigger function, `pgtrickle._capture(source)`: one C function behind every capture
//! trigger of every source (and of its partitions and children, members.rs). It appends the
//! statement's transition rows — or, fired as a row trigger under the replica role, the row — to the
//! source's change buffer with `heap_insert`: no PL/pgSQL call, no executor started per statement,
//! no SECURITY DEFINER switch. That is most of what capture costs a writer (a single-row UPDATE
//! spent about a fifth of its time in the PL/pgSQL capture function this replaces). Only a buffer
//! someone gave an index gets an executor state too, to add each row to its indexes.
//!
//! It checks no privileges: the rows it writes are exactly the changes the statement made, into a
//! buffer no user may write. So it guards its own use instead: it captures only when fired by one of
//! the triggers pg_trickle creates, by name, on the source or on one of its descendants. Anything
//! else — a trigger a table owner made with it, the capture triggers a dump restored onto tables
//! with new OIDs (until `pgtrickle.restore_stream_tables()`) — captures nothing.

use super::{buffer_name, members, signal};
use crate::error::{OrRaise, PgtError, PgtResult, SqlState};
use crate::result_relation::ResultRelation;
use crate::spi;
use pgrx::pg_sys::{self, Oid};
use pgrx::trigger_support::{
    called_as_trigger, trigger_fired_by_delete, trigger_fired_by_insert, trigger_fired_by_update,
    trigger_fired_for_row,
};
use std::ffi::{CStr, CString};

/// The buffer's own leading columns: `__pgt_xid`, `__pgt_w`; the source's columns follow.
const LEADING_COLUMNS: usize = 2;
/// Statements that change at least this many rows insert through a bulk-insert state (one pinned
/// target page, a ring of buffers), as COPY does.
const BULK_ROWS: i64 = 1000;

function_info_v1!(pg_finfo_pgtrickle_capture);

/// # Safety
/// Called by PostgreSQL's function manager, with a valid `fcinfo`.
#[no_mangle]
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn pgtrickle_capture(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fcinfo comes from the function manager.
    unsafe { capture(fcinfo) }.or_raise();
    // An AFTER trigger's result is ignored.
    pg_sys::Datum::from(0usize)
}

unsafe fn capture(fcinfo: pg_sys::FunctionCallInfo) -> PgtResult<()> {
    // SAFETY (whole function): fcinfo, its TriggerData and everything they point to are valid for
    // the duration of the call, as the trigger manager guarantees.
    unsafe {
        if !called_as_trigger(fcinfo) {
            return Err(PgtError::new(
                SqlState::ObjectNotInPrerequisiteState,
                "pgtrickle._capture() runs only as a trigger",
            )
            .hint("pg_trickle creates the capture triggers itself."));
        }
        let data = &*((*fcinfo).context as *const pg_sys::TriggerData);
        let trigger = &*data.tg_trigger;
        let relation = data.tg_relation;
        let Some(source) = source_argument(trigger) else {
            return Ok(());
        };
        if super::replaced::is_replacing(source) {
            return Ok(());
        }
        let name = CStr::from_ptr(trigger.tgname).to_string_lossy();
        if !own_trigger(trigger.tgoid, source, (*relation).rd_id, &name)? {
            return Ok(());
        }
        let event = data.tg_event;
        let buffer_oid = buffer_oid(source)?;

        let buffer = pg_sys::table_open(buffer_oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let mut writer = Writer::new(relation, buffer)?;
        if trigger_fired_for_row(event) {
            if trigger_fired_by_insert(event) {
                writer.heap_tuple(data.tg_trigtuple, 1);
            } else if trigger_fired_by_delete(event) {
                writer.heap_tuple(data.tg_trigtuple, -1);
            } else if trigger_fired_by_update(event) {
                writer.heap_tuple(data.tg_trigtuple, -1);
                writer.heap_tuple(data.tg_newtuple, 1);
            }
        } else {
            if !data.tg_oldtable.is_null()
                && (trigger_fired_by_delete(event) || trigger_fired_by_update(event))
            {
                writer.transition_table(data.tg_oldtable, -1);
            }
            if !data.tg_newtable.is_null()
                && (trigger_fired_by_insert(event) || trigger_fired_by_update(event))
            {
                writer.transition_table(data.tg_newtable, 1);
            }
        }
        // A statement that changed no row (UPDATE ... WHERE false) wakes no stream table.
        if writer.finish() > 0 {
            signal::note(source.to_u32());
        }
        // The lock is kept until the transaction ends, as for any table a statement wrote.
        pg_sys::table_close(buffer, pg_sys::NoLock as pg_sys::LOCKMODE);
        Ok(())
    }
}

function_info_v1!(pg_finfo_pgtrickle_signal);

/// `pgtrickle._signal(source)`, the signal trigger function (members.rs, `Family::Signal`): the
/// source changed in this transaction. No buffer, no row touched; a stray call only costs a refresh,
/// and only pg_trickle may create triggers running it (EXECUTE is revoked from PUBLIC).
///
/// # Safety
/// Called by PostgreSQL's function manager, with a valid `fcinfo`.
#[no_mangle]
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn pgtrickle_signal(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fcinfo, its TriggerData and its trigger are valid for the call (trigger manager).
    unsafe {
        if !called_as_trigger(fcinfo) {
            let e = PgtError::new(
                SqlState::ObjectNotInPrerequisiteState,
                "pgtrickle._signal() runs only as a trigger",
            )
            .hint("pg_trickle creates the signal triggers itself.");
            Err::<(), _>(e).or_raise();
        }
        let data = &*((*fcinfo).context as *const pg_sys::TriggerData);
        if let Some(source) = source_argument(&*data.tg_trigger) {
            signal::note(source.to_u32());
        }
    }
    pg_sys::Datum::from(0usize)
}

/// Whether `trigger`, on `table`, is one of the signal triggers pg_trickle gives `table` — by what it
/// runs (`pgtrickle._signal('<table oid>')`) as well as by its name, which the table's owner could
/// give a trigger of their own.
///
/// # Safety
/// `trigger` comes from an open relation's trigger descriptor.
pub unsafe fn is_own_signal_trigger(trigger: &pg_sys::Trigger, table: Oid) -> bool {
    // SAFETY: as the caller promises.
    unsafe {
        let name = CStr::from_ptr(trigger.tgname).to_string_lossy();
        members::own_signal_trigger(table, &name)
            && runs_own_function(trigger.tgfoid, "_signal")
            && source_argument(trigger) == Some(table)
    }
}

/// Whether `function` is pg_trickle's `pgtrickle.<name>` (read from the catalog caches).
pub fn runs_own_function(function: Oid, name: &str) -> bool {
    // SAFETY: catalog cache lookups; NULL (no such function or schema) is checked before reading.
    unsafe {
        let function_name = pg_sys::get_func_name(function);
        if function_name.is_null() || CStr::from_ptr(function_name).to_bytes() != name.as_bytes() {
            return false;
        }
        let schema = pg_sys::get_namespace_name(pg_sys::get_func_namespace(function));
        !schema.is_null() && CStr::from_ptr(schema).to_bytes() == b"pgtrickle"
    }
}

/// The source's OID: the trigger's one argument.
unsafe fn source_argument(trigger: &pg_sys::Trigger) -> Option<Oid> {
    if trigger.tgnargs != 1 || trigger.tgargs.is_null() {
        return None;
    }
    // SAFETY: tgargs holds tgnargs NUL-terminated strings.
    let arg = unsafe { CStr::from_ptr(*trigger.tgargs) }.to_str().ok()?;
    arg.parse::<u32>().ok().filter(|&o| o != 0).map(Oid::from)
}

thread_local! {
    /// Member triggers (by trigger OID) found to sit on a real descendant of their source: a row
    /// trigger fires per row, and the check is a catalog query. A trigger keeps its OID only as long
    /// as it exists, and re-arming drops the triggers of a table that stops being a descendant, so a
    /// trigger made later under the same name is checked anew.
    static CHECKED_MEMBERS: std::cell::RefCell<std::collections::HashSet<Oid>> = std::cell::RefCell::new(std::collections::HashSet::new());
}

/// Enough for every member trigger a backend writes through; past it the set starts afresh.
const MAX_CHECKED_MEMBERS: usize = 4096;

/// Whether `trigger` is one of the capture triggers pg_trickle made for `source` on `table`.
fn own_trigger(trigger: Oid, source: Oid, table: Oid, name: &str) -> PgtResult<bool> {
    if !members::is_capture_trigger(source, table, name) {
        return Ok(false);
    }
    if table == source || CHECKED_MEMBERS.with(|m| m.borrow().contains(&trigger)) {
        return Ok(true);
    }
    // Names can be chosen by whoever owns `table`: it must really be a partition or child of the source.
    let member = spi::one::<bool>(
        "WITH RECURSIVE up(relid) AS (
             SELECT inhparent FROM pg_catalog.pg_inherits WHERE inhrelid = $1
             UNION
             SELECT i.inhparent FROM pg_catalog.pg_inherits i JOIN up u ON i.inhrelid = u.relid)
         SELECT EXISTS (SELECT 1 FROM up WHERE relid = $2)",
        &[table.into(), source.into()],
    )? == Some(true);
    if member {
        CHECKED_MEMBERS.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() >= MAX_CHECKED_MEMBERS {
                m.clear();
            }
            m.insert(trigger);
        });
    }
    Ok(member)
}

fn buffer_oid(source: Oid) -> PgtResult<Oid> {
    let buffer = buffer_name(source);
    let schema = CString::new(buffer.schema.as_str()).expect("no NUL");
    let name = CString::new(buffer.name.as_str()).expect("no NUL");
    // SAFETY: catalog lookups by name; both return InvalidOid when not found.
    let oid = unsafe {
        let namespace = pg_sys::get_namespace_oid(schema.as_ptr(), true);
        if namespace == pg_sys::InvalidOid {
            pg_sys::InvalidOid
        } else {
            pg_sys::get_relname_relid(name.as_ptr(), namespace)
        }
    };
    if oid == pg_sys::InvalidOid {
        return Err(PgtError::new(
            SqlState::ObjectNotInPrerequisiteState,
            format!("the change buffer {buffer} of this table is missing"),
        )
        .hint("Its stream tables cannot see this change: drop and create them again, or report a bug if pg_trickle dropped it."));
    }
    Ok(oid)
}

/// Appends a replaced row (`replaced.rs`) to the change buffer of the stream table `storage`.
///
/// # Safety
/// Inside a transaction; `storage` is a captured source.
pub(super) unsafe fn append_replaced_row(storage: Oid) -> PgtResult<()> {
    let buffer_oid = buffer_oid(storage)?;
    // SAFETY: both relations are opened and closed here, their locks kept until the transaction ends.
    unsafe {
        let relation = pg_sys::table_open(storage, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let buffer = pg_sys::table_open(buffer_oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let mut writer = Writer::new(relation, buffer)?;
        let natts = writer.source_values.len();
        let (values, nulls) = (vec![pg_sys::Datum::from(0usize); natts], vec![true; natts]);
        writer.insert(
            values.as_ptr(),
            nulls.as_ptr(),
            super::replaced::REPLACED_WEIGHT,
        );
        writer.finish();
        signal::note(storage.to_u32());
        pg_sys::table_close(buffer, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::table_close(relation, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
    Ok(())
}

/// Appends change rows of one source relation to one buffer.
struct Writer {
    relation: pg_sys::Relation,
    buffer: pg_sys::Relation,
    /// For each buffer column after the leading ones: the source attribute (0-based) it records.
    columns: Vec<Option<usize>>,
    xid: pg_sys::Datum,
    command: pg_sys::CommandId,
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    source_values: Vec<pg_sys::Datum>,
    source_nulls: Vec<bool>,
    bulk: pg_sys::BulkInsertState,
    /// The buffer's indexes, if it has any (pg_trickle makes none; someone else may have), and a
    /// slot to hand each appended row to them.
    indexes: Option<(ResultRelation, *mut pg_sys::TupleTableSlot)>,
    /// Change rows appended so far.
    written: u64,
    /// Reset after every row: what forming and inserting it allocated.
    per_row: pg_sys::MemoryContext,
}

impl Writer {
    unsafe fn new(relation: pg_sys::Relation, buffer: pg_sys::Relation) -> PgtResult<Writer> {
        // SAFETY: both relations are open; their descriptors live as long as they are.
        unsafe {
            let source_desc = (*relation).rd_att;
            let buffer_desc = (*buffer).rd_att;
            let source_attrs = attributes(source_desc);
            let buffer_attrs = attributes(buffer_desc);
            let mut columns =
                Vec::with_capacity(buffer_attrs.len().saturating_sub(LEADING_COLUMNS));
            for column in buffer_attrs.iter().skip(LEADING_COLUMNS) {
                if column.attisdropped {
                    columns.push(None);
                    continue;
                }
                let name = attribute_name(column);
                let Some(i) = source_attrs
                    .iter()
                    .position(|a| !a.attisdropped && attribute_name(a) == name)
                else {
                    return Err(column_mismatch(relation, name, "has no such column"));
                };
                if source_attrs[i].atttypid != column.atttypid {
                    return Err(column_mismatch(relation, name, "has another type"));
                }
                columns.push(Some(i));
            }
            let per_row = pg_sys::AllocSetContextCreateExtended(
                pg_sys::CurrentMemoryContext,
                c"pg_trickle capture".as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            );
            // An index on the buffer must list every row, like one on any table: a refresh that
            // read the buffer through it would otherwise miss changes.
            let indexes = if (*(*buffer).rd_rel).relhasindex {
                let result = ResultRelation::open(buffer);
                let slot = pg_sys::MakeSingleTupleTableSlot(
                    buffer_desc,
                    &raw const pg_sys::TTSOpsHeapTuple,
                );
                Some((result, slot))
            } else {
                None
            };
            Ok(Writer {
                relation,
                buffer,
                columns,
                xid: pg_sys::Datum::from(pg_sys::GetTopFullTransactionId().value),
                command: pg_sys::GetCurrentCommandId(true),
                values: vec![pg_sys::Datum::from(0usize); buffer_attrs.len()],
                nulls: vec![false; buffer_attrs.len()],
                source_values: vec![pg_sys::Datum::from(0usize); source_attrs.len()],
                source_nulls: vec![false; source_attrs.len()],
                bulk: std::ptr::null_mut(),
                indexes,
                written: 0,
                per_row,
            })
        }
    }

    /// A row trigger's tuple, in the source relation's format.
    unsafe fn heap_tuple(&mut self, tuple: pg_sys::HeapTuple, weight: i16) {
        if tuple.is_null() {
            return;
        }
        // SAFETY: the tuple has the relation's descriptor; the arrays have its number of attributes.
        unsafe {
            pg_sys::heap_deform_tuple(
                tuple,
                (*self.relation).rd_att,
                self.source_values.as_mut_ptr(),
                self.source_nulls.as_mut_ptr(),
            );
            let (values, nulls) = (self.source_values.as_ptr(), self.source_nulls.as_ptr());
            self.insert(values, nulls, weight);
        }
    }

    /// Every row of a transition table, read through a read pointer of our own (other triggers of
    /// the statement may read the same tuplestore).
    unsafe fn transition_table(&mut self, table: *mut pg_sys::Tuplestorestate, weight: i16) {
        // SAFETY: the tuplestore lives until the statement's AFTER triggers are done; the slot is
        // dropped before returning; its values are used before the next row replaces them.
        unsafe {
            if self.bulk.is_null() && pg_sys::tuplestore_tuple_count(table) >= BULK_ROWS {
                self.bulk = pg_sys::GetBulkInsertState();
            }
            let slot = pg_sys::MakeSingleTupleTableSlot(
                (*self.relation).rd_att,
                &raw const pg_sys::TTSOpsMinimalTuple,
            );
            let reader =
                pg_sys::tuplestore_alloc_read_pointer(table, pg_sys::EXEC_FLAG_REWIND as i32);
            pg_sys::tuplestore_select_read_pointer(table, reader);
            pg_sys::tuplestore_rescan(table);
            while pg_sys::tuplestore_gettupleslot(table, true, false, slot) {
                pg_sys::slot_getallattrs(slot);
                self.insert((*slot).tts_values, (*slot).tts_isnull, weight);
            }
            pg_sys::ExecDropSingleTupleTableSlot(slot);
        }
    }

    /// One change row: the transaction, the weight, the recorded columns of `values`/`nulls`
    /// (indexed like the source relation's attributes).
    unsafe fn insert(&mut self, values: *const pg_sys::Datum, nulls: *const bool, weight: i16) {
        self.values[0] = self.xid;
        self.nulls[0] = false;
        self.values[1] = pg_sys::Datum::from(weight);
        self.nulls[1] = false;
        for (j, column) in self.columns.iter().enumerate() {
            let (value, null) = match column {
                // SAFETY: i < the source's number of attributes, the length of both arrays.
                Some(i) => unsafe { (*values.add(*i), *nulls.add(*i)) },
                None => (pg_sys::Datum::from(0usize), true),
            };
            self.values[LEADING_COLUMNS + j] = value;
            self.nulls[LEADING_COLUMNS + j] = null;
        }
        // SAFETY: the arrays match the buffer's descriptor; heap_insert toasts as needed (values
        // still pointing into the source's TOAST table are copied into the buffer's).
        unsafe {
            let previous = pg_sys::MemoryContextSwitchTo(self.per_row);
            let tuple = pg_sys::heap_form_tuple(
                (*self.buffer).rd_att,
                self.values.as_mut_ptr(),
                self.nulls.as_mut_ptr(),
            );
            pg_sys::heap_insert(self.buffer, tuple, self.command, 0, self.bulk);
            if let Some((result, slot)) = &self.indexes {
                // The slot takes the tuple's place (`t_self`, set by heap_insert) for the indexes.
                pg_sys::ExecStoreHeapTuple(tuple, *slot, false);
                result.insert_index_entries(*slot);
                pg_sys::ExecClearTuple(*slot);
            }
            pg_sys::MemoryContextSwitchTo(previous);
            pg_sys::MemoryContextReset(self.per_row);
        }
        self.written += 1;
    }

    /// Frees what the writer holds; returns how many change rows it appended.
    unsafe fn finish(self) -> u64 {
        // SAFETY: frees what `new` and `transition_table` allocated, once.
        unsafe {
            if !self.bulk.is_null() {
                pg_sys::FreeBulkInsertState(self.bulk);
            }
            if let Some((result, slot)) = self.indexes {
                pg_sys::ExecDropSingleTupleTableSlot(slot);
                result.close();
            }
            pg_sys::MemoryContextDelete(self.per_row);
        }
        self.written
    }
}

unsafe fn attributes<'a>(desc: pg_sys::TupleDesc) -> &'a [pg_sys::FormData_pg_attribute] {
    // SAFETY: a tuple descriptor holds natts attributes inline.
    unsafe { (*desc).attrs.as_slice((*desc).natts as usize) }
}

fn attribute_name(attr: &pg_sys::FormData_pg_attribute) -> &CStr {
    // SAFETY: attname is a NUL-terminated NameData.
    unsafe { CStr::from_ptr(attr.attname.data.as_ptr()) }
}

unsafe fn column_mismatch(relation: pg_sys::Relation, column: &CStr, what: &str) -> PgtError {
    let column = column.to_string_lossy();
    // SAFETY: the relation is open.
    let table = unsafe { CStr::from_ptr((*(*relation).rd_rel).relname.data.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    PgtError::new(
        SqlState::ObjectNotInPrerequisiteState,
        format!("change capture of \"{table}\" is out of step: \"{table}\" {what} \"{column}\" that its change buffer records"),
    )
    .hint("Its stream tables must be created again; please report how the table was changed.")
}
