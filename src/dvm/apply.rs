//! Applying a delta to a stream table.
//!
//! Storage tables of DIFFERENTIAL stream tables carry two hidden columns:
//! - `__pgt_row_id bigint`: a hash of the row's visible values (indexed), so rows are found without
//!   scanning;
//! - `__pgt_dup integer`: 1..n among the n identical copies of a row, so a query result that contains
//!   duplicates (sources without keys, UNION ALL) is kept exactly, copy by copy.
//! A delta says, per distinct row, how many copies to add or remove (its weight w). With m copies
//! stored, the MERGE deletes copies m+w+1..m (w < 0) or inserts m+1..m+w (w > 0): always the highest
//! ordinals, so they stay dense.

use super::plan::{Param, PlanStep, RefreshAction, RefreshPlan, StepOutput};
use super::sql::{ident_list, quote_ident, QualifiedName};

pub const ROW_ID_COLUMN: &str = "__pgt_row_id";
pub const DUP_COLUMN: &str = "__pgt_dup";

/// The row identity of `c0..c{n-1}` under `alias`: a 64-bit hash of the values through each type's
/// own hash function, so it does not depend on output settings such as DateStyle or TimeZone.
pub fn row_identity(alias: &str, n: usize) -> String {
    let values: Vec<String> = (0..n).map(|i| format!("{alias}.c{i}")).collect();
    format!("pg_catalog.hash_record_extended(ROW({}), 0)", values.join(", "))
}

/// The DIFFERENTIAL plan: collect the consolidated delta in a temporary table (capturing the snapshot
/// it was computed at, in the same statement), MERGE it into the storage table, drop the temporary
/// table. `delta_query` yields `c0..cN, __pgt_w` and reads the old frontier as `$1`.
pub fn differential_plan(storage: &QualifiedName, columns: &[String], delta_query: &str, pgt_id: i64) -> RefreshPlan {
    let n = columns.len();
    let delta = QualifiedName::new("pg_temp", format!("__pgt_delta_{pgt_id}"));
    let c: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let visible: Vec<String> = columns.iter().map(|col| quote_ident(col)).collect();
    let as_c: Vec<String> = visible.iter().zip(&c).map(|(v, c)| format!("{v} AS {c}")).collect();

    let create = format!(
        "CREATE TEMPORARY TABLE {delta} ON COMMIT DROP AS SELECT {}, 0::bigint AS __pgt_w FROM {storage} WITH NO DATA",
        as_c.join(", "),
        storage = storage.quoted()
    );
    let fill = format!(
        "WITH pgt_filled AS (INSERT INTO {delta} ({}, __pgt_w) {delta_query} RETURNING __pgt_w) \
         SELECT COALESCE(pg_catalog.sum(GREATEST(-__pgt_w, 0)), 0)::bigint AS rows_deleted, \
                COALESCE(pg_catalog.sum(GREATEST(__pgt_w, 0)), 0)::bigint AS rows_inserted, \
                pg_catalog.pg_current_snapshot()::text AS snapshot \
           FROM pgt_filled",
        c.join(", ")
    );
    let t_vals: Vec<String> = visible.iter().map(|v| format!("t.{v}")).collect();
    let x_vals: Vec<String> = visible.iter().map(|v| format!("x.{v}")).collect();
    let d_vals: Vec<String> = c.iter().map(|c| format!("d.{c}")).collect();
    let s_vals: Vec<String> = c.iter().map(|c| format!("s.{c}")).collect();
    let id = row_identity("d", n);
    let merge = format!(
        "MERGE INTO {storage} AS t
         USING (
           SELECT d.*, k AS {DUP_COLUMN}, (k > d.__pgt_m + d.__pgt_w) AS __pgt_del
             FROM (SELECT d.*, {id} AS {ROW_ID_COLUMN},
                          (SELECT pg_catalog.count(*) FROM {storage} AS x
                            WHERE x.{ROW_ID_COLUMN} = {id} AND ROW({x}) IS NOT DISTINCT FROM ROW({dv})) AS __pgt_m
                     FROM {delta} AS d) AS d
             CROSS JOIN LATERAL pg_catalog.generate_series(
                 LEAST(d.__pgt_m, d.__pgt_m + d.__pgt_w) + 1, GREATEST(d.__pgt_m, d.__pgt_m + d.__pgt_w)) AS k
         ) AS s
         ON t.{ROW_ID_COLUMN} = s.{ROW_ID_COLUMN} AND t.{DUP_COLUMN} = s.{DUP_COLUMN}
            AND ROW({tv}) IS NOT DISTINCT FROM ROW({sv})
         WHEN MATCHED AND s.__pgt_del THEN DELETE
         WHEN NOT MATCHED AND NOT s.__pgt_del THEN
           INSERT ({cols}, {ROW_ID_COLUMN}, {DUP_COLUMN}) VALUES ({sv}, s.{ROW_ID_COLUMN}, s.{DUP_COLUMN})",
        storage = storage.quoted(),
        x = x_vals.join(", "),
        dv = d_vals.join(", "),
        tv = t_vals.join(", "),
        sv = s_vals.join(", "),
        cols = ident_list(columns),
    );
    RefreshPlan {
        action: RefreshAction::Differential,
        steps: vec![
            PlanStep { label: "a temporary table for the delta".into(), sql: create, params: vec![], output: StepOutput::None },
            PlanStep {
                label: "compute the consolidated delta of the batch (changes visible now, not at the old frontier)".into(),
                sql: fill,
                params: vec![Param::OldFrontier],
                output: StepOutput::Counts,
            },
            PlanStep { label: "apply the delta copy by copy".into(), sql: merge, params: vec![], output: StepOutput::Merged },
            PlanStep { label: "drop the temporary table".into(), sql: format!("DROP TABLE {delta}"), params: vec![], output: StepOutput::None },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_captures_the_snapshot_with_the_delta_and_merges_by_identity() {
        let plan = differential_plan(&QualifiedName::new("public", "Sales"), &["Region".into(), "n".into()], "SELECT 1", 7);
        assert_eq!(plan.action, RefreshAction::Differential);
        let kinds: Vec<StepOutput> = plan.steps.iter().map(|s| s.output).collect();
        assert_eq!(kinds, vec![StepOutput::None, StepOutput::Counts, StepOutput::Merged, StepOutput::None]);
        assert!(plan.steps[0].sql.contains("\"Region\" AS c0, \"n\" AS c1"), "{}", plan.steps[0].sql);
        let fill = &plan.steps[1].sql;
        assert!(fill.contains("INSERT INTO \"pg_temp\".\"__pgt_delta_7\" (c0, c1, __pgt_w) SELECT 1 RETURNING"), "{fill}");
        assert!(fill.contains("pg_current_snapshot()"), "{fill}");
        assert_eq!(plan.steps[1].params, vec![Param::OldFrontier]);
        let merge = &plan.steps[2].sql;
        assert!(merge.contains("MERGE INTO \"public\".\"Sales\" AS t"));
        assert!(merge.contains("ON t.__pgt_row_id = s.__pgt_row_id AND t.__pgt_dup = s.__pgt_dup"));
        assert!(merge.contains("INSERT (\"Region\", \"n\", __pgt_row_id, __pgt_dup)"));
        assert!(plan.describe().contains("-- step 3: apply the delta copy by copy"));
    }
}
