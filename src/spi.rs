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

/// Reads a column that must not be NULL.
pub fn col<T: FromDatum + IntoDatum>(row: &pgrx::spi::SpiHeapTupleData, name: &str) -> Result<T, SpiError> {
    row.get_by_name::<T, _>(name)?.ok_or(SpiError::NoTupleTable)
}
