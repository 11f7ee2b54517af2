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
    Spi::connect_mut(|c| c.update(sql, None, args).map(|_| ())).map_err(internal)
}

/// Runs a statement and returns the first column of its first row (None for no row or NULL).
pub fn one<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid]) -> PgtResult<Option<T>> {
    Spi::connect_mut(|c| {
        let table = c.update(sql, Some(1), args)?;
        if table.is_empty() {
            Ok(None)
        } else {
            table.first().get_one::<T>()
        }
    })
    .map_err(internal)
}

/// Runs a query and maps every row with `f`.
pub fn rows<R>(
    sql: &str,
    args: &[DatumWithOid],
    mut f: impl FnMut(&pgrx::spi::SpiHeapTupleData) -> Result<R, SpiError>,
) -> PgtResult<Vec<R>> {
    Spi::connect_mut(|c| {
        let table = c.update(sql, None, args)?;
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            out.push(f(&row)?);
        }
        Ok(out)
    })
    .map_err(internal)
}

type KeptPlan = std::mem::ManuallyDrop<pgrx::spi::OwnedPreparedStatement>;

thread_local! {
    /// Plans kept across transactions by [`rows_cached`], by statement text. `ManuallyDrop`: freeing a
    /// plan (`SPI_freeplan`) is only done inside a transaction, when the cache is cleared, never by a
    /// thread-local destructor while the backend exits.
    static KEPT_PLANS: std::cell::RefCell<std::collections::HashMap<String, KeptPlan>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// At most this many kept plans per backend; past it the cache starts afresh (statement texts name
/// relations, so renamed or re-created ones leave stale entries behind).
const MAX_KEPT_PLANS: usize = 256;

/// As [`rows`], for a statement run again and again with only its parameters changing (a stream
/// table's refresh): the plan is prepared once per backend and kept (`SPI_keepplan`), so a long-lived
/// worker does not parse, analyse and plan the statement at every refresh. PostgreSQL's plan cache
/// revalidates it after DDL on anything it uses. `types` are the parameters' types.
pub fn rows_cached<R>(
    sql: &str,
    types: &[pgrx::PgOid],
    args: &[DatumWithOid],
    mut f: impl FnMut(&pgrx::spi::SpiHeapTupleData) -> Result<R, SpiError>,
) -> PgtResult<Vec<R>> {
    KEPT_PLANS.with(|plans| {
        let mut plans = plans.borrow_mut();
        Spi::connect_mut(|c| {
            if !plans.contains_key(sql) {
                if plans.len() >= MAX_KEPT_PLANS {
                    plans.drain().for_each(|(_, plan)| drop(std::mem::ManuallyDrop::into_inner(plan)));
                }
                let prepared = c.prepare_mut(sql, types)?.keep();
                plans.insert(sql.to_string(), std::mem::ManuallyDrop::new(prepared));
            }
            let plan: &pgrx::spi::OwnedPreparedStatement = plans.get(sql).expect("inserted above");
            let table = c.update(plan, None, args)?;
            let mut out = Vec::with_capacity(table.len());
            for row in table {
                out.push(f(&row)?);
            }
            Ok(out)
        })
        .map_err(internal)
    })
}

/// Reads a column that must not be NULL.
pub fn col<T: FromDatum + IntoDatum>(row: &pgrx::spi::SpiHeapTupleData, name: &str) -> Result<T, SpiError> {
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
pub fn in_subtransaction<R>(body: impl FnOnce() -> PgtResult<R>) -> Result<PgtResult<R>, String> {
    use pgrx::pg_sys;
    // SAFETY: the begin/release/rollback calls pair up on every path, and the memory context and
    // resource owner are restored afterwards, as PL/pgSQL does around exception blocks.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let outcome = pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(|| Ok(body())))
            .catch_others(|caught| Err(caught_message(&caught)))
            .execute();
        if matches!(outcome, Ok(Ok(_))) {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        outcome
    }
}
