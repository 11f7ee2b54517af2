//! Turning the `name text` arguments of the SQL API into relations. Names follow SQL identifier
//! syntax, exactly like a regclass literal: `orders`, `sales.orders`, `"Order Totals"`.

use crate::dvm::sql::QualifiedName;
use crate::error::{PgtError, PgtResult, SqlState};
use crate::spi;
use pgrx::pg_sys::Oid;

/// Splits `name` into (schema, relation); an unqualified name gets the schema it would be created in
/// (the first existing schema on search_path).
pub fn parse_for_create(name: &str) -> PgtResult<QualifiedName> {
    let parts = parse_ident(name)?;
    let (schema, rel) = match parts.as_slice() {
        [rel] => {
            let schema: Option<String> = super::privilege::as_caller(|| {
                spi::one("SELECT pg_catalog.current_schema()::pg_catalog.text", &[])
            })?;
            let schema = schema.ok_or_else(|| {
                PgtError::new(SqlState::InvalidSchemaName, "no schema has been selected to create in")
                    .hint("Schema-qualify the stream table name, or set search_path to an existing schema.")
            })?;
            (schema, rel.clone())
        }
        [schema, _] if schema == "pg_temp" => return Err(temporary()),
        [schema, rel] => (schema.clone(), rel.clone()),
        _ => return Err(too_many_parts(name)),
    };
    let namespace: Option<Oid> = spi::one(
        "SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1",
        &[schema.as_str().into()],
    )?;
    let Some(namespace) = namespace else {
        return Err(PgtError::new(
            SqlState::InvalidSchemaName,
            format!("schema \"{schema}\" does not exist"),
        ));
    };
    // SAFETY: reads the namespace's name from the catalog cache.
    if unsafe { pgrx::pg_sys::isAnyTempNamespace(namespace) } {
        return Err(temporary());
    }
    Ok(QualifiedName::new(schema, rel))
}

/// A stream table outlives the session and is refreshed by other processes: never temporary (an
/// unqualified name with `pg_temp` first on search_path would otherwise land there).
fn temporary() -> PgtError {
    PgtError::new(SqlState::FeatureNotSupported, "a stream table cannot be created in a temporary schema")
        .hint("Give a permanent schema: stream tables outlive the session and are refreshed by background workers.")
}

/// Resolves `name` to an existing relation, following search_path for unqualified names.
pub fn resolve_existing(name: &str) -> PgtResult<Option<Oid>> {
    let name = canonical(name)?;
    super::privilege::as_caller(|| {
        spi::one::<Oid>(
            "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
            &[name.as_str().into()],
        )
    })
}

/// `name` checked and written the one way `to_regclass` reads exactly it: one or two parts, each
/// quoted where needed.
pub fn canonical(name: &str) -> PgtResult<String> {
    let parts = parse_ident(name)?;
    if parts.len() > 2 {
        return Err(too_many_parts(name));
    }
    Ok(parts
        .iter()
        .map(|p| crate::dvm::sql::quote_ident(p))
        .collect::<Vec<_>>()
        .join("."))
}

/// A role's name, quoted where needed, for GRANT / OWNER TO and messages.
pub fn role_name(role: Oid) -> PgtResult<String> {
    Ok(
        spi::one::<String>("SELECT $1::pg_catalog.regrole::text", &[role.into()])?
            .unwrap_or_default(),
    )
}

/// The relation's current schema-qualified name, from the catalog caches (every refresh asks).
pub fn qualified_name_of(relid: Oid) -> PgtResult<QualifiedName> {
    // SAFETY: syscache lookups inside a transaction; each returns a palloc'd copy or NULL.
    let (schema, name) = unsafe {
        let name = pgrx::pg_sys::get_rel_name(relid);
        let schema = if name.is_null() {
            std::ptr::null_mut()
        } else {
            pgrx::pg_sys::get_namespace_name(pgrx::pg_sys::get_rel_namespace(relid))
        };
        (owned(schema), owned(name))
    };
    match (schema, name) {
        (Some(schema), Some(name)) => Ok(QualifiedName::new(schema, name)),
        _ => Err(PgtError::internal(format!(
            "relation {relid:?} has no pg_class row"
        ))),
    }
}

/// A C string from the catalog caches as a `String` (None for NULL).
///
/// # Safety
/// `s` is NULL or a NUL-terminated string that lives for the call.
unsafe fn owned(s: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: as the caller promises.
    (!s.is_null()).then(|| {
        unsafe { std::ffi::CStr::from_ptr(s) }
            .to_string_lossy()
            .into_owned()
    })
}

fn parse_ident(name: &str) -> PgtResult<Vec<String>> {
    if name.trim().is_empty() {
        return Err(PgtError::new(
            SqlState::InvalidName,
            "stream table name must not be empty",
        ));
    }
    // parse_ident() is PostgreSQL's own identifier parser; strict mode rejects trailing junk with
    // its own ERROR (22023, "string is not a valid identifier", and a DETAIL saying why).
    let parts: Option<Vec<String>> =
        crate::spi::one("SELECT pg_catalog.parse_ident($1, true)", &[name.into()])?;
    parts
        .filter(|p| !p.is_empty())
        .ok_or_else(|| PgtError::new(SqlState::InvalidName, format!("invalid name \"{name}\"")))
}

fn too_many_parts(name: &str) -> PgtError {
    PgtError::new(
        SqlState::InvalidName,
        format!("improper qualified name (too many dotted names): {name}"),
    )
    .hint("Use name or schema.name.")
}
