//! Which columns a refresh writes into a storage table, with their types there: the visible ones,
//! plus the hidden aggregate state when the differential engine keeps it (`dvm::diff::algebraic`).

use crate::catalog::stream_tables::StreamTable;
use crate::dvm::apply::Payload;
use crate::dvm::diff::AggregateState;
use crate::dvm::optree::OpTree;
use crate::dvm::sql::{quote_ident, QualifiedName};
use crate::error::{PgtError, PgtResult};
use crate::spi;

/// The payload of `st` under `tree`. Hidden state columns the storage table lacks (created before
/// the engine kept state, or retyped by a reinitialisation) are added when `add_missing` — a FULL
/// refresh, which fills them — and make the result None otherwise.
pub fn payload(
    st: &StreamTable,
    storage: &QualifiedName,
    tree: Option<&OpTree>,
    add_missing: bool,
) -> PgtResult<Option<Payload>> {
    let existing = crate::cdc::table_columns(st.relid)?;
    let type_of = |name: &str| {
        existing
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    };
    let visible_types = st
        .output_columns
        .iter()
        .map(|c| {
            type_of(c)
                .ok_or_else(|| PgtError::internal(format!("storage column \"{c}\" is missing")))
        })
        .collect::<PgtResult<Vec<_>>>()?;
    let Some(state) = tree.and_then(AggregateState::of) else {
        return Ok(Some(Payload::visible(&st.output_columns, &visible_types)));
    };
    let mut changes = Vec::new();
    for (name, type_sql) in state.hidden_columns() {
        let found = type_of(&name);
        if found.as_deref() == Some(type_sql.split(" COLLATE ").next().unwrap_or(&type_sql)) {
            continue;
        }
        if !add_missing {
            return Ok(None);
        }
        let column = quote_ident(&name);
        if found.is_some() {
            changes.push(format!("DROP COLUMN {column}"));
        }
        changes.push(format!("ADD COLUMN {column} {type_sql}"));
    }
    if !changes.is_empty() {
        if !has_fillfactor(st.relid)? {
            changes.push(format!("SET (fillfactor = {GROUP_ROWS_FILLFACTOR})"));
        }
        // As the owner: adding a column of a domain checks every row against the domain's CHECK,
        // the owner's code (a group key's type), which must not run with pg_trickle's rights.
        let owner = crate::catalog::stream_tables::owner(st.relid)?;
        crate::catalog::privilege::as_owner(owner, || {
            spi::exec(
                &format!("ALTER TABLE {} {}", storage.quoted(), changes.join(", ")),
                &[],
            )
        })?;
    }
    Ok(Some(state.payload(&st.output_columns, &visible_types)))
}

/// The fill factor a storage table gets when it starts keeping aggregate state: each refresh updates
/// the rows of the groups it touches in place, and with room left on their page those updates are
/// HOT (no new index entry, the old version pruned by the next visit). At the default 100 the first
/// update of each row moves it to another page, and under steady churn the table grows past the size
/// it has at 50 anyway (docs/ARCHITECTURE.md, "Apply").
const GROUP_ROWS_FILLFACTOR: u32 = 50;

/// Whether the table has a fill factor of its own (set by us before, or by its owner: kept).
fn has_fillfactor(relid: pgrx::pg_sys::Oid) -> PgtResult<bool> {
    Ok(spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c, pg_catalog.unnest(c.reloptions) AS o
                         WHERE c.oid = $1 AND o LIKE 'fillfactor=%')",
        &[relid.into()],
    )? == Some(true))
}

/// The planner's row count estimate of a storage table (`pg_class.reltuples`; -1 before its first
/// count).
pub fn estimated_rows(st: &StreamTable) -> PgtResult<f64> {
    Ok(
        crate::catalog::stream_tables::pg_class_row(st.relid, |c| f64::from(c.reltuples))
            .unwrap_or(-1.0),
    )
}
