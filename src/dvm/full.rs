//! The FULL refresh plan: recompute the defining query and replace the stream table's contents.

use super::apply::{row_identity, Payload, DUP_COLUMN, ROW_ID_COLUMN};
use super::plan::{PlanStep, RefreshAction, RefreshPlan, StepOutput};
use super::sql::{ident_list, QualifiedName};

/// Replaces the contents of `storage` with the rows of `source` in ONE statement: the delete, the
/// insert and the snapshot that becomes the frontier share one snapshot, whatever the isolation level,
/// and readers see the old contents until the transaction commits (no TRUNCATE: it is not MVCC-safe
/// and would block readers). `source` yields the payload's columns in order: the defining query
/// itself, or for stream tables with stored aggregate state the query that also computes that state.
/// With `row_ids`, also fills the hidden row identity columns the differential engine maintains.
pub fn full_refresh_plan(storage: &QualifiedName, payload: &Payload, source: &str, row_ids: bool) -> RefreshPlan {
    let n = payload.columns.len();
    let c: Vec<String> = (0..n).map(|i| format!("q.c{i}")).collect();
    let names = (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>().join(", ");
    let (target, select) = if row_ids {
        let id = row_identity("q", &payload.identity);
        (
            format!("{}, {ROW_ID_COLUMN}, {DUP_COLUMN}", ident_list(&payload.columns)),
            format!(
                // Identical copies are interchangeable (see `apply`): no window over the whole result
                // to number them, every copy is copy 1.
                "SELECT {cols}, {id}, 1 FROM ({source}\n) AS q({names})",
                cols = c.join(", "),
            ),
        )
    } else {
        (ident_list(&payload.columns), format!("SELECT * FROM ({source}\n) AS q"))
    };
    let sql = format!(
        "WITH pgt_deleted AS (DELETE FROM {storage} RETURNING 1), \
              pgt_inserted AS (INSERT INTO {storage} ({target}) {select} RETURNING 1) \
         SELECT (SELECT pg_catalog.count(*) FROM pgt_deleted) AS rows_deleted, \
                (SELECT pg_catalog.count(*) FROM pgt_inserted) AS rows_inserted, \
                pg_catalog.pg_current_snapshot()::text AS snapshot",
        storage = storage.quoted(),
    );
    RefreshPlan {
        action: RefreshAction::Full,
        steps: vec![PlanStep {
            label: "recompute the defining query and replace the contents".into(),
            sql,
            params: vec![],
            output: StepOutput::Counts,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_plan_is_one_statement_that_reports_counts_and_snapshot() {
        let plan = full_refresh_plan(
            &QualifiedName::new("public", "Order Totals"),
            &Payload::visible(&["customer".into(), "sum \"x\"".into()], &["text".into(), "numeric".into()]),
            "SELECT 1, 2 -- trailing comment",
            false,
        );
        assert_eq!(plan.action, RefreshAction::Full);
        assert_eq!(plan.steps.len(), 1);
        let sql = &plan.steps[0].sql;
        assert!(sql.contains("DELETE FROM \"public\".\"Order Totals\""));
        assert!(sql.contains("INSERT INTO \"public\".\"Order Totals\" (\"customer\", \"sum \"\"x\"\"\")"));
        // A trailing line comment in the user's query must not swallow the rest of the statement.
        assert!(sql.contains("-- trailing comment\n) AS q"));
        assert!(sql.contains("pg_current_snapshot()"));
        assert_eq!(plan.steps[0].output, StepOutput::Counts);
    }

    #[test]
    fn with_row_ids_the_hidden_identity_and_duplicate_ordinal_are_filled() {
        let payload = Payload::visible(&["a".into(), "b".into()], &["int".into(), "int".into()]);
        let plan = full_refresh_plan(&QualifiedName::new("s", "t"), &payload, "SELECT 1, 2", true);
        let sql = &plan.steps[0].sql;
        assert!(sql.contains("(\"a\", \"b\", __pgt_row_id, __pgt_dup)"), "{sql}");
        assert!(sql.contains("hash_record_extended(ROW(q.c0, q.c1), 0)"), "{sql}");
        assert!(!sql.contains("OVER ("), "no window over the whole result: {sql}");
        assert!(sql.contains(") AS q(c0, c1)"), "{sql}");
    }
}
