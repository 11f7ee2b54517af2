//! What a type can do, as PostgreSQL's type cache says: the same lookup GROUP BY, DISTINCT and
//! `hash_record_extended` make. It finds operator classes through binary coercion (`varchar` uses
//! `text`'s) and a domain's base type, and knows which arrays and composite types hash.

use crate::error::PgtResult;
use crate::spi;
use pgrx::pg_sys::{self, Oid};

/// The type cache entry's operators and hash function of `type_sql` (a `format_type` spelling, maybe
/// with a COLLATE clause), or None for a type name that does not resolve.
fn lookup(type_sql: &str, flags: u32) -> PgtResult<Option<pg_sys::TypeCacheEntry>> {
    let base = type_sql.split(" COLLATE ").next().unwrap_or(type_sql);
    if base.is_empty() {
        return Ok(None);
    }
    let Some(oid) = spi::one::<Oid>(
        "SELECT pg_catalog.to_regtype($1)::pg_catalog.oid",
        &[base.into()],
    )?
    else {
        return Ok(None);
    };
    // SAFETY: lookup_type_cache returns a pointer into the backend's long-lived type cache (it raises
    // an ERROR rather than return NULL); the entry is copied out at once.
    let entry = unsafe { *pg_sys::lookup_type_cache(oid, flags as i32) };
    Ok(Some(entry))
}

/// Whether values of the type have an extended hash function (the row identity hashes them).
pub fn hashable(type_sql: &str) -> PgtResult<bool> {
    Ok(lookup(type_sql, pg_sys::TYPECACHE_HASH_EXTENDED_PROC)?
        .is_some_and(|e| e.hash_extended_proc != Oid::INVALID))
}

/// `OPERATOR(schema.=)`: the equality of the type's default btree (else hash) operator class.
pub fn equality_operator(type_sql: &str) -> PgtResult<Option<String>> {
    match lookup(type_sql, pg_sys::TYPECACHE_EQ_OPR)? {
        Some(e) if e.eq_opr != Oid::INVALID => operator_sql(e.eq_opr),
        _ => Ok(None),
    }
}

/// `OPERATOR(schema.<)`: the less-than of the type's default btree operator class.
pub fn less_than_operator(type_sql: &str) -> PgtResult<Option<String>> {
    match lookup(type_sql, pg_sys::TYPECACHE_LT_OPR)? {
        Some(e) if e.lt_opr != Oid::INVALID => operator_sql(e.lt_opr),
        _ => Ok(None),
    }
}

fn operator_sql(opr: Oid) -> PgtResult<Option<String>> {
    spi::one::<String>(
        "SELECT pg_catalog.format('OPERATOR(%I.%s)', n.nspname, o.oprname)
           FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
          WHERE o.oid = $1",
        &[opr.into()],
    )
}
