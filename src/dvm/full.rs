//! The FULL refresh plan: recompute the defining query and replace the stream table's contents.

use super::plan::{PlanStep, RefreshAction, RefreshPlan, StepOutput};
use super::sql::{ident_list, QualifiedName};

/// Replaces the contents of `storage` with the result of `defining_query` in ONE statement: the delete,
/// the insert and the snapshot that becomes the frontier share one snapshot, whatever the isolation
/// level, and readers see the old contents until the transaction commits (no TRUNCATE: it is not
/// MVCC-safe and would block readers).
pub fn full_refresh_plan(storage: &QualifiedName, columns: &[String], defining_query: &str) -> RefreshPlan {
    let cols = ident_list(columns);
    let sql = format!(
        "WITH pgt_deleted AS (DELETE FROM {storage} RETURNING 1), \
              pgt_inserted AS (INSERT INTO {storage} ({cols}) SELECT * FROM ({query}\n) AS pgt_q RETURNING 1) \
         SELECT (SELECT pg_catalog.count(*) FROM pgt_deleted) AS rows_deleted, \
                (SELECT pg_catalog.count(*) FROM pgt_inserted) AS rows_inserted, \
                pg_catalog.pg_current_snapshot()::text AS snapshot",
        storage = storage.quoted(),
        query = defining_query,
    );
    RefreshPlan {
        action: RefreshAction::Full,
        steps: vec![PlanStep {
            label: "recompute the defining query and replace the contents".into(),
            sql,
            params: vec![],
            output: StepOutput::Applied,
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
            &["customer".into(), "sum \"x\"".into()],
            "SELECT 1, 2 -- trailing comment",
        );
        assert_eq!(plan.action, RefreshAction::Full);
        assert_eq!(plan.steps.len(), 1);
        let sql = &plan.steps[0].sql;
        assert!(sql.contains("DELETE FROM \"public\".\"Order Totals\""));
        assert!(sql.contains("INSERT INTO \"public\".\"Order Totals\" (\"customer\", \"sum \"\"x\"\"\")"));
        // A trailing line comment in the user's query must not swallow the rest of the statement.
        assert!(sql.contains("-- trailing comment\n) AS pgt_q"));
        assert!(sql.contains("pg_current_snapshot()"));
        assert_eq!(plan.steps[0].output, StepOutput::Applied);
    }
}
