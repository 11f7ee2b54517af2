//! Maintaining `ORDER BY ... LIMIT k` (a top-K stream table): the storage holds the query's first k
//! rows, and a refresh moves that window by the delta of the query *without* its LIMIT (Δ, computed
//! by the operators' rules, never from stored state: the window does not hold every group).
//!
//! The new window is the first k of the *candidates*: the stored rows minus those Δ deletes, plus
//! those Δ inserts. That is exact (a valid answer of the query, ties at the cut-off included) when
//! at least k candidates sort no later than the old window's last row, the *cut-off*: every row of
//! the query the window never held sorts at or after the cut-off, so none of them can belong before
//! those k. When deletions leave fewer, the window is *refilled* by running the defining query
//! itself. A window of fewer than k rows held the whole query, so its candidates are the whole
//! new query and no refill is needed.
//!
//! With `OFFSET m` the storage holds the rows ranked m+1 to m+k, and the first m (the *head*) are not
//! stored. A batch whose changes all sort after the window's first row leaves the head as it was (its
//! rows sort no later than that row), so the window is the first k of the rest and the above holds.
//! A change that sorts no later than it (it enters or leaves the head, and the window shifts), or any
//! change to an empty window, refills.

use super::apply::{
    row_identity, stored_copies, typed_delta, Payload, DUP_COLUMN, REPORT, ROW_ID_COLUMN,
};
use super::optree::{SortKey, TopK};
use super::plan::{Param, PlanStep, RefreshAction, RefreshPlan, StepOutput};
use super::sql::{ident_list, quote_ident, QualifiedName};

/// The DIFFERENTIAL plan of a top-K stream table: ONE statement, like `apply::differential_plan`.
/// `delta_query`: the consolidated Δ rows (`c0..`, `__pgt_w`) of the query without its LIMIT;
/// `defining_query`: the query with it, run only for a refill.
pub fn top_k_plan(
    storage: &QualifiedName,
    payload: &Payload,
    delta_query: &str,
    top_k: &TopK,
    defining_query: &str,
) -> RefreshPlan {
    RefreshPlan {
        action: RefreshAction::Differential,
        steps: vec![PlanStep {
            label: format!(
                "move the {} by the batch's delta (refilled from the defining query when deletions leave too few{})",
                window_name(top_k),
                if top_k.offset > 0 { " or a change sorts no later than the window's first row" } else { "" }
            ),
            sql: statement(storage, payload, delta_query, top_k, defining_query),
            params: vec![Param::OldFrontier],
            output: StepOutput::Applied,
        }],
        one_snapshot: false,
        insert_rows: None,
        delete_all: None,
    }
}

/// "first 10 rows", or with an offset "rows 21 to 30".
pub fn window_name(top_k: &TopK) -> String {
    if top_k.offset == 0 {
        format!("first {} rows", top_k.limit)
    } else {
        format!(
            "rows {} to {}",
            top_k.offset + 1,
            top_k.offset + top_k.limit
        )
    }
}

/// `c1 DESC NULLS LAST, c0` over `alias.c{i}`.
fn order_by(order: &[SortKey], column: &dyn Fn(usize) -> String) -> String {
    order
        .iter()
        .map(|k| {
            let direction = if k.descending { " DESC" } else { "" };
            let nulls = match k.nulls_first {
                Some(true) => " NULLS FIRST",
                Some(false) => " NULLS LAST",
                None => "",
            };
            format!("{}{direction}{nulls}", column(k.column))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn statement(
    storage: &QualifiedName,
    payload: &Payload,
    delta_query: &str,
    top_k: &TopK,
    defining_query: &str,
) -> String {
    let n = payload.columns.len();
    let storage_q = storage.quoted();
    let limit = top_k.limit;
    let at = |alias: &str| columns_at(n, alias);
    let stored = |alias: &str| stored_as_c(payload, alias);
    let copies = stored_copies(payload);
    let order = |alias: &str| order_by(&top_k.order, &|i| format!("{alias}.c{i}"));
    let stored_order = stored_x_order(payload, top_k);
    let names = (0..n)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let typed_query: Vec<String> = payload
        .types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("q.c{i}::{t}"))
        .collect();
    format!(
        "WITH pgt_delta AS MATERIALIZED ({delta}),
         pgt_gone AS MATERIALIZED (
           SELECT x.ctid AS tid FROM pgt_delta AS d CROSS JOIN LATERAL (
             SELECT x.ctid FROM {storage_q} AS x WHERE {copies} LIMIT -d.__pgt_w) AS x
            WHERE d.__pgt_w < 0),
         pgt_candidates AS MATERIALIZED (
           SELECT {stored_x}, x.ctid AS tid FROM {storage_q} AS x
            WHERE NOT EXISTS (SELECT FROM pgt_gone AS g WHERE g.tid = x.ctid)
           UNION ALL
           SELECT {at_d}, NULL::pg_catalog.tid
             FROM pgt_delta AS d CROSS JOIN LATERAL pg_catalog.generate_series(1, d.__pgt_w) AS k
            WHERE d.__pgt_w > 0),
         pgt_cutoff AS (
           SELECT {stored_x} FROM {storage_q} AS x ORDER BY {stored_order} OFFSET {last} LIMIT 1),
         pgt_refill AS (
           SELECT COALESCE((
             SELECT r.n <= {limit} FROM (
               SELECT s.cutoff, pg_catalog.row_number() OVER (ORDER BY {order_s}, s.cutoff) AS n
                 FROM (SELECT {at_c}, false AS cutoff FROM pgt_candidates AS c
                       UNION ALL SELECT {at_k}, true FROM pgt_cutoff AS k) AS s) AS r
              WHERE r.cutoff), false){head_moved} AS refill),
         pgt_new AS MATERIALIZED (
           (SELECT {at_c}, c.tid FROM pgt_candidates AS c
             WHERE NOT (SELECT f.refill FROM pgt_refill AS f) ORDER BY {order_c} LIMIT {limit})
           UNION ALL
           (SELECT {typed_query}, NULL::pg_catalog.tid FROM ({defining_query}
           ) AS q({names}) WHERE (SELECT f.refill FROM pgt_refill AS f))),
         pgt_deleted AS (
           DELETE FROM {storage_q} AS t WHERE NOT EXISTS (SELECT FROM pgt_new AS w WHERE w.tid = t.ctid)
           RETURNING 1),
         pgt_inserted AS (
           INSERT INTO {storage_q} ({cols}, {ROW_ID_COLUMN}, {DUP_COLUMN})
           SELECT {at_w}, {id}, 1 FROM pgt_new AS w WHERE w.tid IS NULL
           RETURNING 1)
         SELECT (SELECT pg_catalog.count(*) FROM pgt_deleted) AS rows_deleted,
                (SELECT pg_catalog.count(*) FROM pgt_inserted) AS rows_inserted,
                (SELECT pg_catalog.count(*) FROM pgt_deleted) AS expected_deleted,
                {REPORT}",
        delta = typed_delta(payload, delta_query, &["__pgt_w"]),
        head_moved = if top_k.offset == 0 { String::new() } else { head_moved(storage, payload, top_k) },
        stored_x = stored("x"),
        at_d = at("d"),
        at_c = at("c"),
        at_k = at("k"),
        at_w = at("w"),
        last = limit.saturating_sub(1),
        order_s = order("s"),
        order_c = order("c"),
        typed_query = typed_query.join(", "),
        cols = ident_list(&payload.columns),
        id = row_identity("w", payload),
    )
}

/// ` OR <the head may have changed>`, for a window after an OFFSET: some Δ row sorts no later than
/// the window's first stored row (it ties or precedes it: Δ rows sort before it on ties), or the
/// window is empty and the batch changed anything.
fn head_moved(storage: &QualifiedName, payload: &Payload, top_k: &TopK) -> String {
    format!(
        "
              OR COALESCE((
             SELECT r.n > 1 FROM (
               SELECT s.head, pg_catalog.row_number() OVER (ORDER BY {order_s}, s.head) AS n
                 FROM (SELECT {at_d}, false AS head FROM pgt_delta AS d
                       UNION ALL (SELECT {stored}, true FROM {storage_q} AS x ORDER BY {stored_order} LIMIT 1)) AS s) AS r
              WHERE r.head), EXISTS (SELECT FROM pgt_delta))",
        order_s = order_by(&top_k.order, &|i| format!("s.c{i}")),
        at_d = columns_at(payload.columns.len(), "d"),
        stored = stored_as_c(payload, "x"),
        stored_order = stored_x_order(payload, top_k),
        storage_q = storage.quoted(),
    )
}

/// `alias.c0, alias.c1, ...` for `n` columns.
fn columns_at(n: usize, alias: &str) -> String {
    (0..n)
        .map(|i| format!("{alias}.c{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The stored payload columns of `alias` (the storage table) renamed `c0, c1, ...`.
fn stored_as_c(payload: &Payload, alias: &str) -> String {
    payload
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{alias}.{} AS c{i}", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The window's order over the storage table aliased `x`.
fn stored_x_order(payload: &Payload, top_k: &TopK) -> String {
    order_by(&top_k.order, &|i| {
        format!("x.{}", quote_ident(&payload.columns[i]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(limit: u64) -> RefreshPlan {
        plan_after(limit, 0)
    }

    fn plan_after(limit: u64, offset: u64) -> RefreshPlan {
        let payload = Payload::visible(
            &["Region".into(), "n".into()],
            &["text".into(), "bigint".into()],
        );
        let top_k = TopK {
            order: vec![
                SortKey {
                    column: 1,
                    descending: true,
                    nulls_first: Some(false),
                },
                SortKey {
                    column: 0,
                    descending: false,
                    nulls_first: None,
                },
            ],
            limit,
            offset,
        };
        top_k_plan(
            &QualifiedName::new("s", "top"),
            &payload,
            "SELECT 1",
            &top_k,
            "SELECT r, n FROM t ORDER BY n DESC LIMIT 3 -- c",
        )
    }

    #[test]
    fn one_statement_reads_the_old_frontier_and_reports_its_counts() {
        let p = plan(3);
        assert_eq!(p.action, RefreshAction::Differential);
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.steps[0].params, [Param::OldFrontier]);
        assert_eq!(p.steps[0].output, StepOutput::Applied);
    }

    #[test]
    fn the_window_is_sorted_as_the_query_sorts_and_cut_at_the_limit() {
        let sql = &plan(3).steps[0].sql;
        assert!(
            sql.contains("ORDER BY c.c1 DESC NULLS LAST, c.c0 LIMIT 3"),
            "{sql}"
        );
        assert!(
            sql.contains("ORDER BY x.\"n\" DESC NULLS LAST, x.\"Region\" OFFSET 2 LIMIT 1"),
            "{sql}"
        );
        // The cut-off sorts after the candidates it ties with: a tie counts as no later than it.
        assert!(
            sql.contains("OVER (ORDER BY s.c1 DESC NULLS LAST, s.c0, s.cutoff)"),
            "{sql}"
        );
        assert!(sql.contains("SELECT r.n <= 3 FROM"), "{sql}");
        // Stored rows are matched by identity index and record image, as in the row apply.
        assert!(
            sql.contains("x.__pgt_row_id = pg_catalog.hash_record_extended(ROW(d.c0, d.c1), 0)"),
            "{sql}"
        );
        assert!(sql.contains("OPERATOR(pg_catalog.*=)"), "{sql}");
    }

    #[test]
    fn a_refill_runs_the_defining_query_typed_as_the_storage() {
        let sql = &plan(3).steps[0].sql;
        // A trailing comment in the query cannot swallow the rest.
        assert!(
            sql.contains("LIMIT 3 -- c\n           ) AS q(c0, c1) WHERE (SELECT f.refill"),
            "{sql}"
        );
        assert!(
            sql.contains("SELECT q.c0::text, q.c1::bigint, NULL::pg_catalog.tid"),
            "{sql}"
        );
    }

    #[test]
    fn limit_zero_has_no_cut_off_row_to_read() {
        assert!(plan(0).steps[0].sql.contains("OFFSET 0 LIMIT 1"));
    }

    #[test]
    fn after_an_offset_a_change_that_sorts_no_later_than_the_first_row_refills() {
        let plain = &plan(3).steps[0].sql;
        assert!(!plain.contains("s.head"), "{plain}");
        let p = plan_after(3, 20);
        let sql = &p.steps[0].sql;
        assert!(
            p.steps[0].label.contains("rows 21 to 23"),
            "{}",
            p.steps[0].label
        );
        // Δ rows sort before the first stored row on ties: a tie refills too.
        assert!(
            sql.contains("OVER (ORDER BY s.c1 DESC NULLS LAST, s.c0, s.head)"),
            "{sql}"
        );
        assert!(
            sql.contains("ORDER BY x.\"n\" DESC NULLS LAST, x.\"Region\" LIMIT 1)) AS s) AS r"),
            "{sql}"
        );
        assert!(
            sql.contains("WHERE r.head), EXISTS (SELECT FROM pgt_delta)) AS refill"),
            "{sql}"
        );
    }
}
