//! The FULL refresh plan: recompute the defining query and replace the stream table's contents.

use super::apply::{row_identity, Payload, DUP_COLUMN, ROW_ID_COLUMN};
use super::plan::{InsertRows, PlanStep, RefreshAction, RefreshPlan, StepOutput};
use super::sql::{ident_list, QualifiedName};

/// Replaces the contents of `storage` with the rows of `source`: the delete, the insert and the
/// snapshot that becomes the frontier share one snapshot (`one_snapshot`), whatever the isolation
/// level, and readers see the old contents until the transaction commits (no TRUNCATE: it is not
/// MVCC-safe and would block readers). `source` yields the payload's columns in order: the defining query
/// itself, or for stream tables with stored aggregate state the query that also computes that state.
/// With `row_ids`, also fills the hidden row identity columns the differential engine maintains.
pub fn full_refresh_plan(
    storage: &QualifiedName,
    payload: &Payload,
    source: &str,
    row_ids: bool,
) -> RefreshPlan {
    let n = payload.columns.len();
    let c: Vec<String> = (0..n).map(|i| format!("q.c{i}")).collect();
    let names = (0..n)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut columns = payload.columns.clone();
    let select = if row_ids {
        columns.extend([ROW_ID_COLUMN.to_string(), DUP_COLUMN.to_string()]);
        let id = row_identity("q", payload);
        format!(
            // Identical copies are interchangeable (see `apply`): no window over the whole result
            // to number them, every copy is copy 1.
            "SELECT {cols}, {id}, 1 FROM ({source}\n) AS q({names})",
            cols = c.join(", "),
        )
    } else {
        format!("SELECT * FROM ({source}\n) AS q")
    };
    let target = ident_list(&columns);
    let storage = storage.quoted();
    let step = |label: &str, sql: String, output| PlanStep {
        label: label.into(),
        sql,
        params: vec![],
        output,
    };
    // Three statements on one snapshot rather than one statement with data-modifying CTEs: those
    // would have to return every row they delete and insert to be counted (two tuplestores of the
    // whole result, spilling to disk past work_mem), where a statement's own row count is free.
    RefreshPlan {
        action: RefreshAction::Full,
        steps: vec![
            step(
                "remove the current contents",
                format!("DELETE FROM {storage}"),
                StepOutput::Deleted,
            ),
            step(
                "recompute the defining query (on the same snapshot)",
                format!("INSERT INTO {storage} ({target}) {select}"),
                StepOutput::Inserted,
            ),
            step(
                "the snapshot the query read its sources with: the new frontier",
                "SELECT pg_catalog.pg_current_snapshot()::text AS snapshot".into(),
                StepOutput::Snapshot,
            ),
        ],
        one_snapshot: true,
        insert_rows: Some(InsertRows {
            step: 1,
            select,
            columns,
        }),
        delete_all: Some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_plan_replaces_the_contents_on_one_snapshot() {
        let plan = full_refresh_plan(
            &QualifiedName::new("public", "Order Totals"),
            &Payload::visible(
                &["customer".into(), "sum \"x\"".into()],
                &["text".into(), "numeric".into()],
            ),
            "SELECT 1, 2 -- trailing comment",
            false,
        );
        assert_eq!(plan.action, RefreshAction::Full);
        assert!(plan.one_snapshot);
        let outputs: Vec<StepOutput> = plan.steps.iter().map(|s| s.output).collect();
        assert_eq!(
            outputs,
            [
                StepOutput::Deleted,
                StepOutput::Inserted,
                StepOutput::Snapshot
            ]
        );
        assert_eq!(plan.steps[0].sql, "DELETE FROM \"public\".\"Order Totals\"");
        let insert = &plan.steps[1].sql;
        assert!(
            insert.contains(
                "INSERT INTO \"public\".\"Order Totals\" (\"customer\", \"sum \"\"x\"\"\")"
            ),
            "{insert}"
        );
        // A trailing line comment in the user's query must not swallow the rest of the statement.
        assert!(insert.contains("-- trailing comment\n) AS q"), "{insert}");
        assert!(
            !insert.contains("RETURNING"),
            "counted by the statement's row count: {insert}"
        );
        assert!(plan.steps[2].sql.contains("pg_current_snapshot()"));
        assert!(plan.steps.iter().all(|s| s.params.is_empty()));
    }

    #[test]
    fn with_row_ids_the_hidden_identity_and_duplicate_ordinal_are_filled() {
        let payload = Payload::visible(&["a".into(), "b".into()], &["int".into(), "int".into()]);
        let plan = full_refresh_plan(&QualifiedName::new("s", "t"), &payload, "SELECT 1, 2", true);
        let sql = &plan.steps[1].sql;
        assert!(
            sql.contains("(\"a\", \"b\", \"__pgt_row_id\", \"__pgt_dup\")"),
            "{sql}"
        );
        assert!(
            sql.contains("hash_record_extended(ROW(q.c0, q.c1), 0)"),
            "{sql}"
        );
        assert!(
            !sql.contains("OVER ("),
            "no window over the whole result: {sql}"
        );
        assert!(sql.contains(") AS q(c0, c1)"), "{sql}");
        // The insert step is marked, with its query and target columns, for an executor's own insert.
        let rows = plan
            .insert_rows
            .as_ref()
            .expect("the insert step is marked");
        assert_eq!(rows.step, 1);
        assert!(sql.ends_with(&rows.select), "{sql}");
        assert_eq!(rows.columns, ["a", "b", "__pgt_row_id", "__pgt_dup"]);
        // So is the delete step, for an executor's own deletions.
        assert_eq!(plan.delete_all, Some(0));
        assert!(plan.steps[0].sql.starts_with("DELETE FROM "), "{sql}");
    }
}
