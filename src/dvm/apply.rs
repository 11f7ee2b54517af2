//! Applying a delta to a stream table.
//!
//! Storage tables of DIFFERENTIAL stream tables carry, after the query's visible columns:
//! - `__pgt_row_id bigint`: a hash of the row's *identity columns* (indexed), so rows are found
//!   without scanning: all visible columns, or the group keys of a stream table whose aggregates are
//!   maintained from stored state (see `dvm::diff::algebraic`);
//! - `__pgt_dup integer`: a copy number. A query result may contain identical rows (sources without
//!   keys, UNION ALL); they are kept copy by copy, and since identical copies are interchangeable a
//!   refresh deletes any w of them and numbers the copies it inserts 1..w — no lookup of how many
//!   are stored already. (FULL refreshes write every copy as copy 1.)
//! - for stream tables with algebraic aggregates, hidden state columns (`__pgt_count`, ...).
//!
//! The *payload* of a row is its visible columns followed by its hidden state columns. A delta says,
//! per distinct payload, how many copies to add or remove (its weight w). Rows are matched by
//! record-image identity (`*=`, as REFRESH MATERIALIZED VIEW CONCURRENTLY does), so a change that only
//! alters a value's representation (`1.5` → `1.50`) is applied, not mistaken for no change.

use super::optree::OpTree;
use super::plan::{Param, PlanStep, RefreshAction, RefreshPlan, StepOutput};
use super::sql::{ident_list, quote_ident, QualifiedName};

pub const ROW_ID_COLUMN: &str = "__pgt_row_id";
pub const DUP_COLUMN: &str = "__pgt_dup";
/// Columns of a grouped delta besides the payload: the stored row a group's new payload replaces
/// (`tid`, NULL for a new group), and whether the group exists after the batch.
pub const OLD_ROW: &str = "__pgt_old";
pub const KEEP: &str = "__pgt_keep";

/// What a stream table's storage holds per row, beyond the bookkeeping columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// Column names: the visible ones, then hidden state columns.
    pub columns: Vec<String>,
    /// Their SQL types in the storage table (`format_type`), one per column.
    pub types: Vec<String>,
    /// Positions (into `columns`) hashed into the row identity.
    pub identity: Vec<usize>,
}

impl Payload {
    /// A payload of visible columns only, every one part of the identity.
    pub fn visible(columns: &[String], types: &[String]) -> Payload {
        Payload {
            columns: columns.to_vec(),
            types: types.to_vec(),
            identity: (0..columns.len()).collect(),
        }
    }
}

/// The row identity of `alias.c{p}` for the payload's identity positions: a 64-bit hash of the
/// values through each type's own hash function, so it does not depend on output settings such as
/// DateStyle; a type [`identified_by_text`] is hashed as its text. Rows without identity columns (a
/// global aggregate: one row) all have identity 0.
pub fn row_identity(alias: &str, payload: &Payload) -> String {
    hash_values(
        &payload
            .identity
            .iter()
            .map(|&p| {
                let value = format!("{alias}.c{p}");
                match payload.types.get(p) {
                    Some(t) if identified_by_text(t) => format!("{value}::pg_catalog.text"),
                    _ => value,
                }
            })
            .collect::<Vec<_>>(),
    )
}

/// Types (as `format_type` prints them) without equality or hash function whose text is the value
/// itself, whatever the session's settings: `json` keeps its input verbatim. The engine groups and
/// hashes them by their text, which tells apart exactly what their record image does
/// (`{"a":1}` and `{"a": 1}` are two values, as they are to a reader).
pub fn identified_by_text(t: &str) -> bool {
    matches!(t, "json" | "json[]")
}

/// The row identity of these values (the identity columns' values, in identity order).
pub fn hash_values(values: &[String]) -> String {
    if values.is_empty() {
        return "0::bigint".into();
    }
    format!(
        "pg_catalog.hash_record_extended(ROW({}), 0)",
        values.join(", ")
    )
}

/// `ROW(a.x, a.y)::record *= ROW(b.c0, b.c1)::record`: record-image identity, NULLs equal to NULLs.
/// (The casts keep PostgreSQL from expanding a comparison of two row constructors column by column,
/// which would look for `*=` on the columns' own types.)
pub fn identical(left: &[String], right: &[String]) -> String {
    format!(
        "ROW({})::pg_catalog.record OPERATOR(pg_catalog.*=) ROW({})::pg_catalog.record",
        left.join(", "),
        right.join(", ")
    )
}

/// A stream table's delta, in one of two forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// A consolidated Z-set: payload columns `c0..` and a weight `__pgt_w`.
    Rows(String),
    /// One row per changed group of an aggregate kept from stored state: the new payload `c0..`,
    /// [`OLD_ROW`] and [`KEEP`]. See `dvm::diff::algebraic`.
    Groups(String),
}

/// The DIFFERENTIAL plan for `delta`: ONE statement that computes it, applies it and reports the
/// counts with the snapshot it read — so the batch, the tables it was joined against and the recorded
/// frontier are one consistent view, and no temporary table is created per refresh. `delta` reads the
/// old frontier as `$1`.
pub fn differential_plan(storage: &QualifiedName, payload: &Payload, delta: &Delta) -> RefreshPlan {
    let sql = match delta {
        Delta::Rows(query) => rows_statement(storage, payload, query),
        Delta::Groups(query) => groups_statement(storage, payload, query),
    };
    RefreshPlan {
        action: RefreshAction::Differential,
        steps: vec![PlanStep {
            label: "compute the delta of the batch (changes visible now, not at the old frontier) and apply it".into(),
            sql,
            params: vec![Param::OldFrontier],
            output: StepOutput::Applied,
        }],
        one_snapshot: false,
        insert_rows: None,
        delete_all: None,
    }
}

/// The DIFFERENTIAL plan of a stream table whose query is `tree`: a top-K window's (see
/// `dvm::top_k`: `delta` are then the Δ rows of the query without its LIMIT, and `defining_query`
/// refills the window), else [`differential_plan`].
pub fn stream_plan(
    tree: &OpTree,
    storage: &QualifiedName,
    payload: &Payload,
    delta: &Delta,
    defining_query: &str,
) -> RefreshPlan {
    match (&tree.top_k, delta) {
        (Some(top_k), Delta::Rows(rows)) => {
            super::top_k::top_k_plan(storage, payload, rows, top_k, defining_query)
        }
        _ => differential_plan(storage, payload, delta),
    }
}

/// `SELECT d.c0::<type> AS c0, ..., <extra> FROM (<query>) AS d`: the delta in the storage's types.
pub(super) fn typed_delta(payload: &Payload, query: &str, extra: &[&str]) -> String {
    let mut items: Vec<String> = payload
        .types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("d.c{i}::{t} AS c{i}"))
        .collect();
    items.extend(extra.iter().map(|e| format!("d.{e}")));
    format!("SELECT {} FROM ({query}\n) AS d", items.join(", "))
}

pub(super) const REPORT: &str = "pg_catalog.pg_current_snapshot()::text AS snapshot";

/// The condition that stored row `x` is a copy of delta row `d`: found through the row identity
/// index, confirmed by record image.
pub(super) fn stored_copies(payload: &Payload) -> String {
    let x_vals: Vec<String> = payload
        .columns
        .iter()
        .map(|v| format!("x.{}", quote_ident(v)))
        .collect();
    let d_vals: Vec<String> = (0..payload.columns.len())
        .map(|i| format!("d.c{i}"))
        .collect();
    format!(
        "x.{ROW_ID_COLUMN} = {} AND {}",
        row_identity("d", payload),
        identical(&x_vals, &d_vals)
    )
}

/// Rows: for each distinct row with weight w < 0, w copies are found through the row identity index
/// and deleted by `ctid` (a TID scan, whatever the planner estimates for the delta); rows with w > 0
/// are inserted w times with no lookup. A payload has one weight in a consolidated delta, so the two
/// never touch the same rows.
fn rows_statement(storage: &QualifiedName, payload: &Payload, delta_query: &str) -> String {
    let storage_q = storage.quoted();
    let d_vals: Vec<String> = (0..payload.columns.len())
        .map(|i| format!("d.c{i}"))
        .collect();
    let id = row_identity("d", payload);
    let copies = stored_copies(payload);
    format!(
        "WITH pgt_delta AS MATERIALIZED ({delta}),
         pgt_deleted AS (
           DELETE FROM {storage_q} AS t WHERE t.ctid = ANY (ARRAY(
             SELECT x.ctid FROM pgt_delta AS d CROSS JOIN LATERAL (
               SELECT x.ctid FROM {storage_q} AS x WHERE {copies} LIMIT -d.__pgt_w) AS x
              WHERE d.__pgt_w < 0))
           RETURNING 1),
         pgt_inserted AS (
           INSERT INTO {storage_q} ({cols}, {ROW_ID_COLUMN}, {DUP_COLUMN})
           SELECT {dv}, {id}, k::integer
             FROM pgt_delta AS d CROSS JOIN LATERAL pg_catalog.generate_series(1, d.__pgt_w) AS k
            WHERE d.__pgt_w > 0
           RETURNING 1)
         SELECT (SELECT pg_catalog.count(*) FROM pgt_deleted) AS rows_deleted,
                (SELECT pg_catalog.count(*) FROM pgt_inserted) AS rows_inserted,
                (SELECT COALESCE(pg_catalog.sum(-d.__pgt_w), 0)::bigint FROM pgt_delta AS d WHERE d.__pgt_w < 0) AS expected_deleted,
                {REPORT}",
        delta = typed_delta(payload, delta_query, &["__pgt_w"]),
        cols = ident_list(&payload.columns),
        dv = d_vals.join(", "),
    )
}

/// Groups: a group that existed and still does is updated in place, by the `ctid` its stored row was
/// found at (its identity, the keys' hash, does not change, so the update can be HOT); a vanished group
/// is deleted the same way; a new group is inserted. Counted as a delete and an insert per update, and
/// a stored row not found where the delta said means the stream table was out of step.
fn groups_statement(storage: &QualifiedName, payload: &Payload, delta_query: &str) -> String {
    let storage_q = storage.quoted();
    let set: Vec<String> = payload
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = d.c{i}", quote_ident(c)))
        .collect();
    let d_vals: Vec<String> = (0..payload.columns.len())
        .map(|i| format!("d.c{i}"))
        .collect();
    let rows_at = |which: &str| {
        format!("t.ctid = ANY (ARRAY(SELECT d.{OLD_ROW} FROM pgt_delta AS d WHERE d.{OLD_ROW} IS NOT NULL AND {which}))")
    };
    format!(
        "WITH pgt_delta AS MATERIALIZED ({delta}),
         pgt_updated AS (
           UPDATE {storage_q} AS t SET {set}, {DUP_COLUMN} = 1 FROM pgt_delta AS d
            WHERE {updated} AND t.ctid = d.{OLD_ROW}
           RETURNING 1),
         pgt_deleted AS (
           DELETE FROM {storage_q} AS t WHERE {deleted}
           RETURNING 1),
         pgt_inserted AS (
           INSERT INTO {storage_q} ({cols}, {ROW_ID_COLUMN}, {DUP_COLUMN})
           SELECT {dv}, {id}, 1 FROM pgt_delta AS d WHERE d.{OLD_ROW} IS NULL AND d.{KEEP}
           RETURNING 1)
         SELECT (SELECT pg_catalog.count(*) FROM pgt_updated) + (SELECT pg_catalog.count(*) FROM pgt_deleted) AS rows_deleted,
                (SELECT pg_catalog.count(*) FROM pgt_updated) + (SELECT pg_catalog.count(*) FROM pgt_inserted) AS rows_inserted,
                (SELECT pg_catalog.count(*) FROM pgt_delta AS d WHERE d.{OLD_ROW} IS NOT NULL) AS expected_deleted,
                {REPORT}",
        delta = typed_delta(payload, delta_query, &[OLD_ROW, KEEP]),
        set = set.join(", "),
        updated = rows_at(&format!("d.{KEEP}")),
        deleted = rows_at(&format!("NOT d.{KEEP}")),
        cols = ident_list(&payload.columns),
        dv = d_vals.join(", "),
        id = row_identity("d", payload),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> Payload {
        Payload::visible(
            &["Region".into(), "n".into()],
            &["text".into(), "bigint".into()],
        )
    }

    #[test]
    fn the_plan_is_one_statement_that_reports_counts_and_snapshot() {
        let plan = differential_plan(
            &QualifiedName::new("public", "Sales"),
            &payload(),
            &Delta::Rows("SELECT 1".into()),
        );
        assert_eq!(plan.action, RefreshAction::Differential);
        assert_eq!(plan.steps.len(), 1);
        assert_eq!(plan.steps[0].output, StepOutput::Applied);
        assert_eq!(plan.steps[0].params, vec![Param::OldFrontier]);
        let sql = &plan.steps[0].sql;
        assert!(
            sql.contains(
                "SELECT d.c0::text AS c0, d.c1::bigint AS c1, d.__pgt_w FROM (SELECT 1\n) AS d"
            ),
            "{sql}"
        );
        assert!(sql.contains("pg_current_snapshot()"), "{sql}");
        assert!(
            sql.contains(
                "INSERT INTO \"public\".\"Sales\" (\"Region\", \"n\", __pgt_row_id, __pgt_dup)"
            ),
            "{sql}"
        );
        assert!(!sql.contains("TEMPORARY"), "no catalog churn: {sql}");
        assert!(plan.describe().contains("-- step 1: compute the delta"));
    }

    #[test]
    fn rows_are_matched_by_identity_index_and_record_image() {
        let sql = &differential_plan(
            &QualifiedName::new("s", "t"),
            &payload(),
            &Delta::Rows("SELECT 1".into()),
        )
        .steps[0]
            .sql;
        assert!(
            sql.contains("x.__pgt_row_id = pg_catalog.hash_record_extended(ROW(d.c0, d.c1), 0)"),
            "{sql}"
        );
        assert!(sql.contains("ROW(x.\"Region\", x.\"n\")::pg_catalog.record OPERATOR(pg_catalog.*=) ROW(d.c0, d.c1)::pg_catalog.record"), "{sql}");
        assert!(
            sql.contains("t.ctid = ANY (ARRAY("),
            "deletes by TID: {sql}"
        );
        assert!(!sql.contains("IS NOT DISTINCT FROM"), "{sql}");
    }

    #[test]
    fn groups_are_updated_in_place_by_the_row_they_were_found_at() {
        let payload = Payload {
            identity: vec![0],
            ..payload()
        };
        let sql = &differential_plan(
            &QualifiedName::new("s", "t"),
            &payload,
            &Delta::Groups("SELECT 1".into()),
        )
        .steps[0]
            .sql;
        assert!(sql.contains("UPDATE \"s\".\"t\" AS t SET \"Region\" = d.c0, \"n\" = d.c1, __pgt_dup = 1 FROM pgt_delta AS d"), "{sql}");
        assert!(sql.contains("t.ctid = d.__pgt_old"), "{sql}");
        assert!(
            sql.contains("d.__pgt_old IS NOT NULL AND NOT d.__pgt_keep"),
            "vanished groups deleted: {sql}"
        );
        assert!(
            sql.contains("WHERE d.__pgt_old IS NULL AND d.__pgt_keep"),
            "new groups inserted: {sql}"
        );
        assert!(!sql.contains("__pgt_row_id ="), "no identity probe: {sql}");
    }

    #[test]
    fn identity_may_be_a_subset_or_empty() {
        let mut payload = Payload::visible(
            &["a".into(), "b".into(), "c".into()],
            &["integer".into(), "json".into(), "text".into()],
        );
        payload.identity = vec![2, 0];
        assert_eq!(
            row_identity("d", &payload),
            "pg_catalog.hash_record_extended(ROW(d.c2, d.c0), 0)"
        );
        payload.identity = vec![];
        assert_eq!(row_identity("d", &payload), "0::bigint");
    }

    #[test]
    fn json_is_identified_by_its_text() {
        let payload = Payload::visible(
            &["a".into(), "b".into(), "c".into()],
            &["integer".into(), "json".into(), "json[]".into()],
        );
        assert_eq!(
            row_identity("d", &payload),
            "pg_catalog.hash_record_extended(ROW(d.c0, d.c1::pg_catalog.text, d.c2::pg_catalog.text), 0)"
        );
    }
}
