//! Thin helpers over pgrx's SPI for the statements pg_trickle runs. A PostgreSQL ERROR raised by a
//! statement propagates as that ERROR (with its own SQLSTATE); pgrx-level failures (type mismatches)
//! become internal errors.

use crate::error::{PgtError, PgtResult};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiError;

fn internal(e: SpiError) -> PgtError {
    PgtError::internal(format!("SPI: {e}"))
}

/// Runs a statement for its side effects.
pub fn exec(sql: &str, args: &[DatumWithOid]) -> PgtResult<()> {
    run(sql, args, None, |_| Ok(()))
}

/// Runs a statement and returns the first column of its first row (None for no row or NULL).
pub fn one<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid]) -> PgtResult<Option<T>> {
    run(sql, args, Some(1), |table| {
        if table.is_empty() {
            Ok(None)
        } else {
            table.first().get_one::<T>()
        }
    })
}

/// Runs a query and maps every row with `f`.
pub fn rows<R>(
    sql: &str,
    args: &[DatumWithOid],
    mut f: impl FnMut(&pgrx::spi::SpiHeapTupleData) -> Result<R, SpiError>,
) -> PgtResult<Vec<R>> {
    run(sql, args, None, |table| {
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            out.push(f(&row)?);
        }
        Ok(out)
    })
}

type KeptPlan = std::mem::ManuallyDrop<pgrx::spi::OwnedPreparedStatement>;

/// Kept plans by parameter types and statement text, each with when it was last used.
#[derive(Default)]
struct KeptPlans {
    plans: std::collections::HashMap<String, (KeptPlan, u64)>,
    uses: u64,
}

thread_local! {
    /// Plans kept across transactions. `ManuallyDrop`: freeing a plan (`SPI_freeplan`) is only done
    /// inside a transaction, when it is evicted, never by a thread-local destructor while the
    /// backend exits.
    static KEPT_PLANS: std::cell::RefCell<KeptPlans> = std::cell::RefCell::new(KeptPlans::default());
}

/// At most this many kept plans per backend; past it the least recently used one goes (statement
/// texts name relations, so renamed or re-created ones leave stale entries behind; a delta
/// statement's text carries its batch's size class, so a stream table may have a few).
const MAX_KEPT_PLANS: usize = 256;

/// Whether a statement's plan is kept: queries and DML, which pg_trickle runs again and again with
/// only their parameters changing (a refresh's catalog reads and writes, its delta statement), so a
/// long-lived worker does not parse, analyse and plan them every time. PostgreSQL's plan cache
/// revalidates kept plans after DDL on anything they use. DDL itself is not kept.
fn keeps_plan(sql: &str) -> bool {
    let head: String = sql
        .trim_start()
        .chars()
        .take(6)
        .collect::<String>()
        .to_ascii_uppercase();
    ["SELECT", "WITH", "INSERT", "UPDATE", "DELETE"]
        .iter()
        .any(|k| head.starts_with(k))
}

fn run<R>(
    sql: &str,
    args: &[DatumWithOid],
    limit: Option<libc::c_long>,
    read: impl FnOnce(pgrx::spi::SpiTupleTable) -> Result<R, SpiError>,
) -> PgtResult<R> {
    if !keeps_plan(sql) {
        return Spi::connect_mut(|c| read(c.update(sql, limit, args)?)).map_err(internal);
    }
    let types: Vec<pgrx::PgOid> = args.iter().map(|a| pgrx::PgOid::from(a.oid())).collect();
    let key = format!(
        "{:?}\n{sql}",
        args.iter().map(|a| a.oid().to_u32()).collect::<Vec<_>>()
    );
    // The plan leaves the cache while it runs: the statement may re-enter this module (an event
    // trigger, a pg_trickle function it calls), and the cache must not be borrowed then.
    let kept = KEPT_PLANS.with(|kept| kept.borrow_mut().plans.remove(&key));
    let plan = match kept {
        Some((plan, _)) => plan,
        None => std::mem::ManuallyDrop::new(
            Spi::connect_mut(|c| Ok::<_, SpiError>(c.prepare_mut(sql, &types)?.keep()))
                .map_err(internal)?,
        ),
    };
    let checked_out = CheckedOut {
        key,
        plan: Some(plan),
    };
    let plan: &pgrx::spi::OwnedPreparedStatement = checked_out.plan.as_ref().expect("set above");
    // `select`, not `update`: a plan prepared with `prepare_mut` runs read-write either way (a fresh
    // snapshot per statement, as PostgreSQL gives a volatile function's), but `update` would also
    // assign the transaction an id before the statement — which a hot standby refuses outright, and
    // which made every read of pg_trickle's views write a commit record.
    Spi::connect_mut(|c| read(c.select(plan, limit, args)?)).map_err(internal)
}

/// A kept plan taken out of the cache; goes back when dropped, also when an ERROR unwinds.
struct CheckedOut {
    key: String,
    plan: Option<KeptPlan>,
}

impl Drop for CheckedOut {
    fn drop(&mut self) {
        let Some(plan) = self.plan.take() else { return };
        KEPT_PLANS.with(|kept| {
            let mut kept = kept.borrow_mut();
            kept.uses += 1;
            let used = kept.uses;
            if kept.plans.len() >= MAX_KEPT_PLANS && !kept.plans.contains_key(&self.key) {
                let oldest = kept
                    .plans
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(key, _)| key.clone());
                if let Some((plan, _)) = oldest.and_then(|key| kept.plans.remove(&key)) {
                    drop(std::mem::ManuallyDrop::into_inner(plan));
                }
            }
            // A nested run of the same statement may have kept its own copy meanwhile.
            if let Some((other, _)) = kept
                .plans
                .insert(std::mem::take(&mut self.key), (plan, used))
            {
                drop(std::mem::ManuallyDrop::into_inner(other));
            }
        });
    }
}

/// What one statement of [`on_one_snapshot`] did: its row count, and its first row's first column
/// as text (None without a row).
pub struct SnapshotResult {
    pub rows: u64,
    pub first: Option<String>,
}

/// Runs statements without parameters one after another, all on one snapshot — the transaction
/// snapshot as it is now — as the parts of one statement would (each sees the one before it, and
/// `pg_current_snapshot()` is that snapshot). Under READ COMMITTED, separate statements would each
/// take a new one. AFTER triggers fire as usual.
///
/// `instead(i, snapshot)` may run statement `i` some other way on the same snapshot, with SPI
/// connected, and say what it did; None runs the statement.
pub fn on_one_snapshot(
    statements: &[&str],
    mut instead: impl FnMut(usize, pgrx::pg_sys::Snapshot) -> PgtResult<Option<SnapshotResult>>,
) -> PgtResult<Vec<SnapshotResult>> {
    use pgrx::pg_sys;
    let texts: Vec<std::ffi::CString> = statements
        .iter()
        .map(|s| {
            std::ffi::CString::new(*s)
                .map_err(|_| PgtError::internal("statement text contains a NUL byte"))
        })
        .collect::<PgtResult<_>>()?;
    // SAFETY: SPI is connected and finished around the calls, the snapshot registered and
    // unregistered, on every path that returns; an ERROR raised inside unwinds through here, and the
    // (sub)transaction's abort releases both.
    unsafe {
        if pg_sys::SPI_connect() < 0 {
            return Err(PgtError::internal("SPI_connect failed"));
        }
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot());
        let out = texts
            .iter()
            .enumerate()
            .map(|(i, text)| match instead(i, snapshot)? {
                Some(done) => Ok(done),
                None => run_on_snapshot(text, snapshot),
            })
            .collect::<PgtResult<Vec<_>>>();
        pg_sys::UnregisterSnapshot(snapshot);
        pg_sys::SPI_finish();
        out
    }
}

/// # Safety
/// SPI is connected, and `snapshot` is registered.
unsafe fn run_on_snapshot(
    text: &std::ffi::CStr,
    snapshot: pgrx::pg_sys::Snapshot,
) -> PgtResult<SnapshotResult> {
    use pgrx::pg_sys;
    // SAFETY: as the caller promises; the result is copied out before the next statement.
    unsafe {
        let plan = pg_sys::SPI_prepare(text.as_ptr(), 0, std::ptr::null_mut());
        if plan.is_null() {
            let code = pg_sys::SPI_result;
            return Err(PgtError::internal(format!("SPI_prepare failed ({code})")));
        }
        let rc = pg_sys::SPI_execute_snapshot(
            plan,
            std::ptr::null_mut(),
            std::ptr::null(),
            snapshot,
            std::ptr::null_mut(),
            false,
            true,
            0,
        );
        let result = if rc < 0 {
            Err(PgtError::internal(format!(
                "SPI_execute_snapshot failed ({rc})"
            )))
        } else {
            let rows = pg_sys::SPI_processed;
            let table = pg_sys::SPI_tuptable;
            let first = if rows > 0 && !table.is_null() {
                let value = pg_sys::SPI_getvalue(*(*table).vals, (*table).tupdesc, 1);
                (!value.is_null()).then(|| {
                    std::ffi::CStr::from_ptr(value)
                        .to_string_lossy()
                        .into_owned()
                })
            } else {
                None
            };
            Ok(SnapshotResult { rows, first })
        };
        pg_sys::SPI_freeplan(plan);
        result
    }
}

/// Reads a column that must not be NULL.
pub fn col<T: FromDatum + IntoDatum>(
    row: &pgrx::spi::SpiHeapTupleData,
    name: &str,
) -> Result<T, SpiError> {
    row.get_by_name::<T, _>(name)?.ok_or(SpiError::NoTupleTable)
}

/// What a caught error says, for logs and the catalog.
pub fn caught_message(caught: &pgrx::pg_sys::panic::CaughtError) -> String {
    use pgrx::pg_sys::panic::CaughtError;
    match caught {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => {
            let mut msg = report.message().to_string();
            if let Some(detail) = report.detail() {
                msg.push_str(&format!(" ({detail})"));
            }
            msg
        }
        CaughtError::RustPanic { ereport, .. } => format!("internal error: {}", ereport.message()),
    }
}

/// Runs `body` in a subtransaction. A PostgreSQL error (or panic) inside rolls back only the
/// subtransaction and comes back as its message, so the caller can carry on (a returned error rolls
/// it back too) — the same mechanism
/// as a PL/pgSQL EXCEPTION block. Use it where an error is an answer, not a failure.
/// A transient error (`SqlState::is_transient`: a cancel, a timeout, a deadlock) is no answer: it
/// rolls the subtransaction back and is raised again, as PL/pgSQL's `WHEN OTHERS` never catches a
/// cancel (a refresh canceled here once put its stream table in ERROR as if its query were broken).
pub fn in_subtransaction<R>(body: impl FnOnce() -> PgtResult<R>) -> Result<PgtResult<R>, String> {
    subtransaction(body, |_| false)
}

/// As [`in_subtransaction`], but a lock not granted in time (55P03: `lock_timeout`) is an answer too:
/// for work that may be left for later rather than waited for.
pub fn in_subtransaction_not_waiting<R>(
    body: impl FnOnce() -> PgtResult<R>,
) -> Result<PgtResult<R>, String> {
    subtransaction(body, |code| code == "55P03")
}

/// [`in_subtransaction`], with the transient errors `answers` (by SQLSTATE) taken as answers.
fn subtransaction<R>(
    body: impl FnOnce() -> PgtResult<R>,
    answers: impl Fn(&str) -> bool,
) -> Result<PgtResult<R>, String> {
    use pgrx::pg_sys;
    // SAFETY: the begin/release/rollback calls pair up on every path, and the memory context and
    // resource owner are restored afterwards, as PL/pgSQL does around exception blocks.
    let outcome = unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let outcome = pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(|| Ok(body())))
            .catch_others(Err)
            .execute();
        if matches!(outcome, Ok(Ok(_))) {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        outcome
    };
    let raised =
        |state: crate::error::SqlState| state.is_transient() && !answers(&state.sqlstate());
    match outcome {
        Ok(Err(e)) if raised(e.state) => e.raise(),
        Ok(result) => Ok(result),
        Err(caught) if caught_state(&caught).is_some_and(raised) => caught.rethrow(),
        Err(caught) => Err(caught_message(&caught)),
    }
}

/// The SQLSTATE of a caught PostgreSQL error (none for a panic).
fn caught_state(caught: &pgrx::pg_sys::panic::CaughtError) -> Option<crate::error::SqlState> {
    use pgrx::pg_sys::panic::CaughtError;
    match caught {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => Some(
            crate::error::SqlState::Passthrough(report.sql_error_code() as i32),
        ),
        CaughtError::RustPanic { .. } => None,
    }
}
