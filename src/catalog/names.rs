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
    match parts.as_slice() {
        [rel] => {
            let schema: Option<String> = spi::one("SELECT pg_catalog.current_schema()::text", &[])?;
            let schema = schema.ok_or_else(|| {
                PgtError::new(SqlState::InvalidName, "no schema has been selected to create in")
                    .hint("Schema-qualify the stream table name, or set search_path to an existing schema.")
            })?;
            Ok(QualifiedName::new(schema, rel.clone()))
        }
        [schema, rel] => {
            let exists: Option<bool> = spi::one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
                &[schema.as_str().into()],
            )?;
            if exists != Some(true) {
                return Err(PgtError::new(
                    SqlState::InvalidSchemaName,
                    format!("schema \"{schema}\" does not exist"),
                ));
            }
            Ok(QualifiedName::new(schema.clone(), rel.clone()))
        }
        _ => Err(too_many_parts(name)),
    }
}

/// Resolves `name` to an existing relation, following search_path for unqualified names.
pub fn resolve_existing(name: &str) -> PgtResult<Option<Oid>> {
    let parts = parse_ident(name)?;
    if parts.len() > 2 {
        return Err(too_many_parts(name));
    }
    let quoted = parts
        .iter()
        .map(|p| crate::dvm::sql::quote_ident(p))
        .collect::<Vec<_>>()
        .join(".");
    spi::one::<Oid>(
        "SELECT pg_catalog.to_regclass($1)::oid",
        &[quoted.as_str().into()],
    )
}

/// A role's name, quoted where needed, for GRANT / OWNER TO and messages.
pub fn role_name(role: Oid) -> PgtResult<String> {
    Ok(
        spi::one::<String>("SELECT $1::pg_catalog.regrole::text", &[role.into()])?
            .unwrap_or_default(),
    )
}

/// The relation's current schema-qualified name.
pub fn qualified_name_of(relid: Oid) -> PgtResult<QualifiedName> {
    let row = spi::rows(
        "SELECT n.nspname::text AS schema, c.relname::text AS name
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE c.oid = $1",
        &[relid.into()],
        |r| {
            Ok(QualifiedName::new(
                spi::col::<String>(r, "schema")?,
                spi::col::<String>(r, "name")?,
            ))
        },
    )?;
    row.into_iter()
        .next()
        .ok_or_else(|| PgtError::internal(format!("relation {relid:?} has no pg_class row")))
}

fn parse_ident(name: &str) -> PgtResult<Vec<String>> {
    if name.trim().is_empty() {
        return Err(PgtError::new(
            SqlState::InvalidName,
            "stream table name must not be empty",
        ));
    }
    // parse_ident() is PostgreSQL's own identifier parser; strict mode rejects trailing junk.
    let parts: Option<Vec<String>> = crate::spi::one(
        "SELECT pg_catalog.parse_ident($1, true)",
        &[name.into()],
    )
    .map_err(|e| {
        PgtError::new(SqlState::InvalidName, format!("invalid name \"{name}\"")).detail(e.message)
    })?;
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
