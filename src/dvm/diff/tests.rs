//! Unit tests of the delta rules, without PostgreSQL: each checks the shape of the SQL a rule emits —
//! which terms exist, how weights combine, what is pruned. End-to-end correctness against PostgreSQL is
//! the oracle's job (pg_test/tests/oracle.rs).

use super::context::{BatchTest, CdcContext, DiffContext};
use super::rules::{delta_query, is_static_empty};
use crate::dvm::optree::{Expr, ExprPart, JoinKind, Node, OpTree, TableRef};
use crate::dvm::sql::QualifiedName;

fn table(relid: u32, name: &str) -> TableRef {
    TableRef {
        relid,
        schema: "public".into(),
        name: name.into(),
    }
}

fn scan(relid: u32, name: &str, cols: &[&str]) -> Node {
    Node::Scan {
        table: table(relid, name),
        columns: cols.iter().map(|c| c.to_string()).collect(),
        types: vec![],
    }
}

fn eq(a: usize, b: usize) -> Expr {
    Expr {
        parts: vec![
            ExprPart::Col(a),
            ExprPart::Sql(" = ".into()),
            ExprPart::Col(b),
        ],
    }
}

/// `SELECT <keys>, func(#arg) FROM input [GROUP BY <keys>]`, keys matched with `key_eq`.
fn aggregate(input: Node, keys: &[usize], func: &str, arg: usize, key_eq: &[&str]) -> Node {
    Node::Aggregate {
        input: Box::new(input),
        group_by: keys.iter().map(|&k| Expr::col(k)).collect(),
        aggregates: vec![Expr {
            parts: vec![
                ExprPart::Sql(format!("{func}(")),
                ExprPart::Col(arg),
                ExprPart::Sql(")".into()),
            ],
        }],
        calls: vec![],
        key_types: vec![],
        key_eq: key_eq.iter().map(|e| e.to_string()).collect(),
    }
}

fn tree(root: Node) -> OpTree {
    let n = root.arity();
    OpTree {
        root,
        ctes: vec![],
        output_names: (0..n).map(|i| format!("o{i}")).collect(),
        top_k: None,
        unique_keys: Vec::new(),
        full_from_tree: false,
        collected_subqueries: Vec::new(),
    }
}

fn ctx(relids: &[u32], bypass: &[u32]) -> DiffContext {
    let mut ctx = DiffContext::new(CdcContext::for_refresh(
        relids.iter().map(|&r| {
            (
                r,
                QualifiedName::new("pgtrickle_changes", format!("changes_{r}")),
            )
        }),
        BatchTest::Visibility,
    ));
    ctx.cache.bypass = bypass.iter().copied().collect();
    ctx
}

fn delta(t: &OpTree, c: &mut DiffContext) -> String {
    delta_query(t, &[], c).unwrap().expect("a delta")
}

/// With the 0.2.0 catalog the batch is one call of `pgtrickle._in_batch`, which tells the planner
/// each source's counted rows, rounded to a power of four: a statement's text, and its kept plan,
/// changes only with the order of the batch's size.
#[test]
fn the_batch_function_tells_the_planner_each_sources_counted_rows() {
    use super::context::estimate_class;
    let t = a_join_b();
    let mut c = DiffContext::new(CdcContext::for_refresh(
        [10, 20].map(|r| {
            (
                r,
                QualifiedName::new("pgtrickle_changes", format!("changes_{r}")),
            )
        }),
        BatchTest::Function,
    ));
    c.cdc.sources.get_mut(&10).unwrap().counted = Some(15_000);
    c.cdc.sources.get_mut(&20).unwrap().counted = Some(3);
    let sql = delta(&t, &mut c);
    for (buffer, rows) in [(10, 16_384), (20, 4)] {
        let call = format!(
            "FROM \"pgtrickle_changes\".\"changes_{buffer}\" AS b WHERE pgtrickle._in_batch(b.__pgt_xid, \
             (SELECT pg_catalog.pg_current_snapshot()), (SELECT $1::pg_catalog.pg_snapshot), {rows})"
        );
        assert!(sql.contains(&call), "{call}: {sql}");
    }
    assert!(!sql.contains("pg_visible_in_snapshot"), "{sql}");
    let classes: Vec<i64> = [0, 1, 2, 3, 6, 7, 8, 1_000, 1_500, 15_000, 75_000]
        .map(estimate_class)
        .to_vec();
    assert_eq!(
        classes,
        [1, 1, 4, 4, 4, 4, 16, 1_024, 1_024, 16_384, 65_536]
    );
}

#[test]
fn a_scan_delta_is_the_batch_of_its_buffer_consolidated_once() {
    let t = tree(scan(10, "orders", &["id", "amount"]));
    let sql = delta(&t, &mut ctx(&[10], &[]));
    assert!(
        sql.contains("FROM \"pgtrickle_changes\".\"changes_10\" AS b"),
        "{sql}"
    );
    // The batch: visible in the statement's snapshot, not at the old frontier, bounds compared first.
    for part in [
        "b.__pgt_xid OPERATOR(pg_catalog.>=) (SELECT pg_catalog.pg_snapshot_xmin($1::pg_catalog.pg_snapshot))",
        "OR pg_catalog.pg_visible_in_snapshot(b.__pgt_xid, (SELECT pg_catalog.pg_current_snapshot()))",
        "OR NOT pg_catalog.pg_visible_in_snapshot(b.__pgt_xid, (SELECT $1::pg_catalog.pg_snapshot))",
    ] {
        assert!(sql.contains(part), "{part}: {sql}");
    }
    // Rows only filtered and projected are consolidated once, over the output columns, by identity:
    // the values and their text (1.5 and 1.50 stay apart).
    assert!(sql.contains("b.__pgt_w AS __pgt_w FROM"), "{sql}");
    assert_eq!(sql.matches("HAVING").count(), 1, "{sql}");
    assert!(
        sql.ends_with(
            "GROUP BY d.c0, d.c1, ROW(d.c0, d.c1)::text HAVING pg_catalog.sum(d.__pgt_w) <> 0"
        ),
        "{sql}"
    );
    // Knowing the output types (the storage's), the text is left out where it cannot differ.
    let typed = |types: &[&str]| {
        let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
        delta_query(&t, &types, &mut ctx(&[10], &[]))
            .unwrap()
            .expect("a delta")
    };
    assert!(
        typed(&["bigint", "numeric(12,2)"])
            .ends_with("GROUP BY d.c0, d.c1 HAVING pg_catalog.sum(d.__pgt_w) <> 0"),
        "plain types"
    );
    assert!(
        typed(&["bigint", "numeric"]).ends_with(
            "GROUP BY d.c0, d.c1, ROW(d.c1)::text HAVING pg_catalog.sum(d.__pgt_w) <> 0"
        ),
        "numeric without a scale prints 1.5 and 1.50 (and only its text is needed)"
    );
    // json has no equality: grouped by its text, which is the value, and read back from it.
    let json = typed(&["bigint", "json"]);
    assert!(
        json.ends_with(
            "GROUP BY d.c0, d.c1::pg_catalog.text HAVING pg_catalog.sum(d.__pgt_w) <> 0"
        ),
        "{json}"
    );
    assert!(
        json.contains("(d.c1::pg_catalog.text)::pg_catalog.json AS c1"),
        "{json}"
    );
}

/// `a(id, x) JOIN b(a_id, y) ON a.id = b.a_id`.
fn a_join_b() -> OpTree {
    tree(Node::Join {
        kind: JoinKind::Inner,
        left: Box::new(scan(10, "a", &["id", "x"])),
        right: Box::new(scan(20, "b", &["a_id", "y"])),
        on: Some(eq(0, 2)),
        null_types: vec![],
    })
}

#[test]
fn a_join_probes_with_the_consolidated_batch() {
    let t = a_join_b();
    let sql = delta(&t, &mut ctx(&[10], &[20]));
    assert!(sql.contains("GROUP BY b.\"id\", b.\"x\", ROW(b.\"id\", b.\"x\")::text HAVING pg_catalog.sum(b.__pgt_w) <> 0"), "{sql}");
    assert!(!sql.contains("b.__pgt_w AS __pgt_w"), "{sql}");
}

/// A batch large against the other side reads it whole (kept apart, so PostgreSQL hashes it rather
/// than probing its index per delta row); a small one probes it.
#[test]
fn a_join_reads_its_partner_whole_only_for_a_batch_large_against_it() {
    use super::context::reads_whole;
    assert!(reads_whole(15_000, 100_000.0));
    assert!(!reads_whole(1_500, 100_000.0));
    assert!(!reads_whole(1_000_000, -1.0), "never counted: probe");
    assert!(
        !reads_whole(1, 0.0),
        "counted empty, or a parent's own rows: probe"
    );
    let t = a_join_b();
    let b = "FROM \"public\".\"b\" AS t";
    let probed = delta(&t, &mut ctx(&[10], &[20]));
    assert!(probed.contains(&format!("{b})")), "{probed}");
    assert!(!probed.contains("OFFSET 0"), "{probed}");
    let mut whole = ctx(&[10], &[20]);
    whole.opt.whole_reads.insert(20);
    let hashed = delta(&t, &mut whole);
    assert!(hashed.contains(&format!("{b} OFFSET 0)")), "{hashed}");
    // Only the partner: the changed side is the batch either way.
    assert!(!hashed.contains("\"a\" AS t OFFSET 0"), "{hashed}");

    // A filtered partner keeps its filter inside, where its indexes serve it.
    let filtered_b = tree(Node::Join {
        kind: JoinKind::Inner,
        left: Box::new(scan(10, "a", &["id", "x"])),
        right: Box::new(Node::Filter {
            input: Box::new(scan(20, "b", &["a_id", "y"])),
            predicate: Expr {
                parts: vec![ExprPart::Col(1), ExprPart::Sql(" > 5".into())],
            },
        }),
        on: Some(eq(0, 2)),
        null_types: vec![],
    });
    let mut whole = ctx(&[10], &[20]);
    whole.opt.whole_reads.insert(20);
    let hashed = delta(&filtered_b, &mut whole);
    let kept_apart = text_between(&hashed, "FROM \"public\".\"b\" AS t) AS ", " OFFSET 0)");
    assert!(
        kept_apart.contains("WHERE") && kept_apart.contains(" > 5"),
        "{hashed}"
    );
}

/// A join that hashes its partner, unique on the join key, meets the batch's change rows as they
/// are: the result is consolidated once, and each change row costs a hash probe. A join that
/// probes, or whose partner is not unique on the key (a row updated many times would meet its
/// every partner row each time), or whose other side changed too (every pair of their change rows
/// would meet), reads the consolidated batch, and so does an outer join (its null-padded rows
/// depend on the net change).
#[test]
fn a_join_that_hashes_its_partner_reads_the_batch_as_it_is() {
    let consolidated = "GROUP BY b.\"id\", b.\"x\", ROW(b.\"id\", b.\"x\")::text HAVING";
    let t = a_join_b();
    let hashed = |changed: &[u32], unique: &[&str]| {
        let mut c = ctx(changed, &[20]);
        c.opt.whole_reads.insert(20);
        let key = unique.iter().map(|s| s.to_string()).collect();
        c.opt.unique_keys.insert(20, vec![key]);
        c
    };
    let sql = delta(&t, &mut hashed(&[10], &["a_id"]));
    assert!(
        sql.contains("b.\"x\" AS c1, b.__pgt_w AS __pgt_w FROM"),
        "{sql}"
    );
    assert!(!sql.contains(consolidated), "{sql}");
    assert!(
        sql.ends_with("HAVING pg_catalog.sum(d.__pgt_w) <> 0"),
        "{sql}"
    );
    let sql = delta(&t, &mut hashed(&[10], &["y"]));
    assert!(sql.contains(consolidated), "b is unique on y only: {sql}");
    let sql = delta(&t, &mut hashed(&[10], &["a_id", "y"]));
    assert!(
        sql.contains(consolidated),
        "b is unique on (a_id, y): {sql}"
    );
    let sql = delta(&t, &mut ctx(&[10], &[20]));
    assert!(sql.contains(consolidated), "b is probed: {sql}");

    let mut both_changed = hashed(&[10, 20], &["a_id"]);
    both_changed.cache.bypass.clear();
    both_changed.opt.whole_reads.insert(10);
    let sql = delta(&t, &mut both_changed);
    assert!(sql.contains(consolidated), "both sides changed: {sql}");

    let mut left = a_join_b();
    if let Node::Join { kind, .. } = &mut left.root {
        *kind = JoinKind::Left;
    }
    let sql = delta(&left, &mut hashed(&[10], &["a_id"]));
    assert!(sql.contains(consolidated), "{sql}");
}

/// The text from `start` to the first `end` after it (both included), or "" when absent.
fn text_between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    text.find(start)
        .and_then(|i| text[i..].find(end).map(|j| &text[i..i + j + end.len()]))
        .unwrap_or("")
}

#[test]
fn a_batch_is_consolidated_by_its_text_only_where_equal_values_can_print_differently() {
    let typed = |types: &[&str]| {
        let mut node = scan(10, "a", &["id", "x"]);
        if let Node::Scan { types: t, .. } = &mut node {
            *t = types.iter().map(|s| s.to_string()).collect();
        }
        let joined = Node::Join {
            kind: JoinKind::Inner,
            left: Box::new(node),
            right: Box::new(scan(20, "b", &["a_id", "y"])),
            on: Some(eq(0, 2)),
            null_types: vec![],
        };
        delta(&tree(joined), &mut ctx(&[10], &[20]))
    };
    let plain = typed(&["integer", "numeric(10,2)"]);
    assert!(
        plain.contains("GROUP BY b.\"id\", b.\"x\" HAVING"),
        "{plain}"
    );
    for loose in [
        ["integer", "numeric"],
        ["integer", "interval"],
        ["integer", "text"],
        ["integer", "time with time zone"],
    ] {
        let sql = typed(&loose);
        assert!(
            sql.contains("GROUP BY b.\"id\", b.\"x\", ROW(b.\"x\")::text HAVING"),
            "{loose:?}: {sql}"
        );
    }
    let json = typed(&["integer", "json[]"]);
    assert!(
        json.contains("GROUP BY b.\"id\", b.\"x\"::pg_catalog.text HAVING"),
        "{json}"
    );
}

#[test]
fn an_unchanged_query_has_no_delta_at_all() {
    let t = tree(scan(10, "orders", &["id"]));
    let mut c = ctx(&[10], &[10]);
    assert!(is_static_empty(&t, &t.root, &c));
    assert!(delta_query(&t, &[], &mut c).unwrap().is_none());
}

#[test]
fn filter_and_project_pass_weights_through() {
    let filtered = Node::Filter {
        input: Box::new(scan(10, "t", &["a", "b"])),
        predicate: Expr {
            parts: vec![ExprPart::Col(1), ExprPart::Sql(" > 5".into())],
        },
    };
    let t = tree(Node::Project {
        input: Box::new(filtered),
        exprs: vec![Expr {
            parts: vec![
                ExprPart::Sql("COALESCE(".into()),
                ExprPart::Col(0),
                ExprPart::Sql(", 0)".into()),
            ],
        }],
    });
    let sql = delta(&t, &mut ctx(&[10], &[]));
    assert!(
        sql.contains("WHERE f2.c1 > 5") || sql.contains(".c1 > 5"),
        "{sql}"
    );
    assert!(
        sql.contains("COALESCE(p1.c0, 0) AS c0, p1.__pgt_w AS __pgt_w"),
        "{sql}"
    );
}

#[test]
fn a_table_function_expands_each_changed_row_with_its_weight() {
    let call = |n: usize| Expr {
        parts: vec![
            ExprPart::Sql("pg_catalog.unnest(".into()),
            ExprPart::Col(n),
            ExprPart::Sql(")".into()),
        ],
    };
    let t = tree(Node::Expand {
        input: Box::new(scan(10, "t", &["id", "tags"])),
        call: call(1),
        columns: 1,
        left_join: None,
    });
    let sql = delta(&t, &mut ctx(&[10], &[]));
    // Only the batch is expanded, never the table; the function's column follows the input's.
    assert!(!sql.contains("\"public\".\"t\""), "{sql}");
    assert!(
        sql.contains("e1.c0 AS c0, e1.c1 AS c1, x2.x0 AS c2, e1.__pgt_w AS __pgt_w")
            && sql.contains("CROSS JOIN LATERAL pg_catalog.unnest(e1.c1) AS x2(x0)"),
        "{sql}"
    );

    let left = tree(Node::Expand {
        input: Box::new(scan(10, "t", &["id", "tags"])),
        call: call(1),
        columns: 1,
        left_join: Some(Expr {
            parts: vec![ExprPart::Col(2), ExprPart::Sql(" <> ''".into())],
        }),
    });
    let sql = delta(&left, &mut ctx(&[10], &[]));
    assert!(
        sql.contains("LEFT JOIN LATERAL pg_catalog.unnest(e1.c1) AS x2(x0) ON x2.x0 <> ''"),
        "{sql}"
    );
}

#[test]
fn an_inner_join_has_three_terms_when_both_sides_changed() {
    let t = a_join_b();
    let sql = delta(&t, &mut ctx(&[10, 20], &[]));
    assert_eq!(sql.matches(" JOIN (").count(), 3, "{sql}");
    assert!(
        sql.contains("-(l") && sql.contains(".__pgt_w * r"),
        "the ΔL ⋈ ΔR term is subtracted: {sql}"
    );
    // Both deltas are WITH items, each computed once.
    assert!(sql.starts_with("WITH dl_"), "{sql}");
    assert!(sql.contains("dr_"), "{sql}");
}

#[test]
fn an_unchanged_join_side_is_pruned_to_one_term() {
    let t = tree(Node::Join {
        kind: JoinKind::Inner,
        left: Box::new(scan(10, "a", &["id"])),
        right: Box::new(scan(20, "b", &["a_id"])),
        on: Some(eq(0, 1)),
        null_types: vec![],
    });
    let sql = delta(&t, &mut ctx(&[10, 20], &[20]));
    assert_eq!(sql.matches(" JOIN (").count(), 1, "{sql}");
    assert!(
        !sql.contains("changes_20"),
        "the unchanged side's buffer is never read: {sql}"
    );
    assert!(
        sql.contains("FROM \"public\".\"b\" AS t"),
        "it is joined in its current state: {sql}"
    );
}

#[test]
fn a_left_join_adds_null_padded_rows_whose_match_status_changed() {
    let t = tree(Node::Join {
        kind: JoinKind::Left,
        left: Box::new(scan(10, "a", &["id"])),
        right: Box::new(scan(20, "b", &["a_id", "y"])),
        on: Some(eq(0, 1)),
        null_types: vec!["integer".into(), "numeric".into()],
    });
    let sql = delta(&t, &mut ctx(&[10, 20], &[]));
    assert!(
        sql.contains("NULL::integer AS c1, NULL::numeric AS c2"),
        "{sql}"
    );
    assert!(
        sql.contains("WHERE NOT EXISTS"),
        "ΔL rows without a match are padded: {sql}"
    );
    assert!(
        sql.contains("pg_catalog.count(*)") && sql.contains("COALESCE(pg_catalog.sum("),
        "old matches = now − Δ: {sql}"
    );
    assert!(sql.contains("CASE WHEN EXISTS"), "{sql}");
}

#[test]
fn a_right_join_pads_the_left_side() {
    let t = tree(Node::Join {
        kind: JoinKind::Right,
        left: Box::new(scan(10, "a", &["id"])),
        right: Box::new(scan(20, "b", &["a_id"])),
        on: Some(eq(0, 1)),
        null_types: vec!["bigint".into()],
    });
    let sql = delta(&t, &mut ctx(&[10, 20], &[10]));
    assert!(sql.contains("NULL::bigint AS c0, z"), "{sql}");
}

#[test]
fn a_full_join_pads_each_side_with_the_other_sides_types() {
    let t = tree(Node::Join {
        kind: JoinKind::Full,
        left: Box::new(scan(10, "a", &["id"])),
        right: Box::new(scan(20, "b", &["a_id", "y"])),
        on: Some(eq(0, 1)),
        // Left's types, then right's.
        null_types: vec!["bigint".into(), "integer".into(), "numeric".into()],
    });
    let sql = delta(&t, &mut ctx(&[10, 20], &[]));
    assert!(
        sql.contains("NULL::integer AS c1, NULL::numeric AS c2"),
        "unmatched left rows, right side padded: {sql}"
    );
    assert!(
        sql.contains("NULL::bigint AS c0, z"),
        "unmatched right rows, left side padded: {sql}"
    );
    assert!(
        !sql.contains("FULL JOIN"),
        "the delta never joins in full: {sql}"
    );
    // Its three parts read each source's batch: one WITH item each, read once.
    for buffer in ["changes_10\"", "changes_20\""] {
        assert_eq!(sql.matches(buffer).count(), 1, "{buffer}: {sql}");
    }
}

#[test]
fn semi_and_anti_joins_judge_left_rows_against_the_right() {
    let semi = |anti| {
        tree(Node::SemiJoin {
            anti,
            left: Box::new(scan(10, "a", &["id"])),
            right: Box::new(scan(20, "b", &["a_id"])),
            on: eq(0, 1),
        })
    };
    let exists = delta(&semi(false), &mut ctx(&[10, 20], &[20]));
    assert!(exists.contains("WHERE EXISTS (SELECT 1 FROM"), "{exists}");
    let not_exists = delta(&semi(true), &mut ctx(&[10, 20], &[20]));
    assert!(
        not_exists.contains("WHERE NOT EXISTS (SELECT 1 FROM"),
        "{not_exists}"
    );
    // A change on the right re-judges the old left rows it touches.
    let right_changed = delta(&semi(false), &mut ctx(&[10, 20], &[10]));
    assert!(
        right_changed.contains(".__pgt_w * ((CASE WHEN EXISTS"),
        "{right_changed}"
    );
    assert!(
        right_changed.contains("1::bigint AS __pgt_w FROM (SELECT t.\"id\""),
        "old left rows: {right_changed}"
    );
}

#[test]
fn a_change_on_the_right_finds_the_left_rows_it_touches_by_the_equalities_alone_first() {
    // `EXISTS (... b.a_id = a.id AND b.y <> a.x)`: PostgreSQL can drive the left side from the
    // changed right rows only through a semi-join of equalities, so that one comes first.
    let on = Expr {
        parts: vec![
            ExprPart::Col(2),
            ExprPart::Sql(" = ".into()),
            ExprPart::Col(0),
            ExprPart::Sql(" AND ".into()),
            ExprPart::Col(3),
            ExprPart::Sql(" <> ".into()),
            ExprPart::Col(1),
        ],
    };
    let semi = |on| {
        tree(Node::SemiJoin {
            anti: false,
            left: Box::new(scan(10, "a", &["id", "x"])),
            right: Box::new(scan(20, "b", &["a_id", "y"])),
            on,
        })
    };
    let sql = delta(&semi(on), &mut ctx(&[10, 20], &[10]));
    let keyed = regex_like_find(
        &sql,
        "WHERE y",
        ".c0 = o.c0) AND EXISTS (SELECT 1 FROM (SELECT * FROM dy_",
    );
    assert!(
        keyed,
        "keyed EXISTS before the whole condition, on the current left rows: {sql}"
    );
    assert!(
        sql.contains(".c1 <> o.c1)"),
        "the whole condition still decides: {sql}"
    );
    // Equalities alone need no second test.
    let plain = delta(&semi(eq(2, 0)), &mut ctx(&[10, 20], &[10]));
    assert_eq!(
        plain.matches("FROM (SELECT * FROM dy_").count(),
        1,
        "equalities alone: one test: {plain}"
    );
}

#[test]
fn a_global_aggregate_joined_by_a_delta_is_computed_once_per_statement() {
    // `a JOIN (SELECT max(x) FROM b) ON true`, as an uncorrelated scalar subquery is read.
    let t = tree(Node::Join {
        kind: JoinKind::Inner,
        left: Box::new(scan(10, "a", &["id"])),
        right: Box::new(aggregate(scan(20, "b", &["x"]), &[], "max", 0, &[])),
        on: None,
        null_types: vec![],
    });
    let sql = delta(&t, &mut ctx(&[10, 20], &[20]));
    assert!(
        regex_like_find(&sql, "one_", " AS MATERIALIZED (SELECT max("),
        "{sql}"
    );
    assert!(sql.contains("(SELECT * FROM one_"), "{sql}");
}

#[test]
fn a_delta_joined_with_a_grouped_aggregate_aggregates_only_the_groups_it_can_join() {
    // `a JOIN (SELECT k, sum(x) FROM b GROUP BY k) s ON s.k = a.id`, a changed: only the groups
    // whose key some changed row of a has are aggregated.
    let t = tree(Node::Join {
        kind: JoinKind::Inner,
        left: Box::new(scan(10, "a", &["id"])),
        right: Box::new(aggregate(scan(20, "b", &["k", "x"]), &[0], "sum", 1, &[])),
        on: Some(eq(1, 0)),
        null_types: vec![],
    });
    let sql = delta(&t, &mut ctx(&[10, 20], &[20]));
    assert!(
        regex_like_find(&sql, "WHERE (EXISTS (SELECT 1 FROM dl_", " AS m"),
        "{sql}"
    );
    assert!(
        sql.contains(".c0 = (m"),
        "the partner's key column against the group key: {sql}"
    );
    // The aggregate's own delta is cut to the groups the left side (now, or in its delta) has.
    let sql = delta(&t, &mut ctx(&[10, 20], &[]));
    assert!(regex_like_find(&sql, "dmatch_", " AS (SELECT d"), "{sql}");
    // One EXISTS per partner (current rows, delta), each probed by its own keys.
    assert!(
        sql.contains(
            "WHERE (EXISTS (SELECT 1 FROM (SELECT t.\"id\" AS c0 FROM \"public\".\"a\" AS t) AS m"
        ),
        "{sql}"
    );
    assert!(
        regex_like_find(&sql, ") OR EXISTS (SELECT 1 FROM dl_", " AS m"),
        "{sql}"
    );
    // Joined on an aggregate value, not a key: nothing to restrict by.
    let mut on_value = t.clone();
    if let Node::Join { on, .. } = &mut on_value.root {
        *on = Some(eq(2, 0));
    }
    let sql = delta(&on_value, &mut ctx(&[10, 20], &[]));
    assert!(!sql.contains(" AS m") && !sql.contains("dmatch_"), "{sql}");
}

/// Whether `text` has `prefix`, an alias's digits, then `rest`.
fn regex_like_find(text: &str, prefix: &str, rest: &str) -> bool {
    text.match_indices(prefix).any(|(i, _)| {
        let after = &text[i + prefix.len()..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && after[digits..].starts_with(rest)
    })
}

#[test]
fn an_aggregate_recomputes_only_the_touched_groups_null_safely() {
    let t = tree(aggregate(
        scan(10, "sales", &["region", "amount"]),
        &[0],
        "max",
        1,
        &[],
    ));
    let sql = delta(&t, &mut ctx(&[10], &[]));
    assert!(sql.contains("SELECT DISTINCT"), "touched groups: {sql}");
    assert!(
        sql.contains(
            ".k0 IS NOT NULL AND ROW(a4.c0)::pg_catalog.record OPERATOR(pg_catalog.=) ROW("
        ),
        "without resolved operators, keys match by record equality: {sql}"
    );
    assert!(
        !sql.contains("IS NOT DISTINCT FROM"),
        "no operator resolved through the search_path: {sql}"
    );
    assert!(
        sql.contains("::pg_catalog.record OPERATOR(pg_catalog.=) ROW("),
        "NULL keys matched null-safely: {sql}"
    );
    assert!(
        sql.contains("generate_series(1,"),
        "old rows expanded from multiplicities: {sql}"
    );
    assert!(
        sql.contains("-1::bigint AS __pgt_w") && sql.contains("1::bigint AS __pgt_w"),
        "{sql}"
    );
    assert!(
        sql.contains("max("),
        "the aggregate is evaluated as written: {sql}"
    );
}

#[test]
fn group_keys_are_matched_with_the_operators_resolved_at_creation() {
    let t = tree(aggregate(
        scan(10, "sales", &["region", "amount"]),
        &[0],
        "max",
        1,
        &["OPERATOR(public.=)"],
    ));
    let sql = delta(&t, &mut ctx(&[10], &[]));
    assert!(
        sql.contains(".c0) OPERATOR(public.=) g"),
        "an index-friendly semi-join on the key's own =: {sql}"
    );
    assert!(!sql.contains(" IN (SELECT"), "{sql}");
}

#[test]
fn a_global_aggregate_only_emits_rows_when_its_input_changed() {
    let t = tree(Node::Aggregate {
        input: Box::new(scan(10, "t", &[])),
        group_by: vec![],
        aggregates: vec![Expr::sql("count(*)")],
        calls: vec![],
        key_types: vec![],
        key_eq: vec![],
    });
    let sql = delta(&t, &mut ctx(&[10], &[]));
    assert!(
        sql.matches("WHERE EXISTS (SELECT 1 FROM dagg_").count() >= 2,
        "{sql}"
    );
    assert!(!sql.contains(" GROUP BY  "), "{sql}");
}

#[test]
fn distinct_is_an_aggregate_over_all_columns() {
    let t = tree(Node::Distinct {
        input: Box::new(scan(10, "t", &["a", "b"])),
    });
    let sql = delta(&t, &mut ctx(&[10], &[]));
    assert!(
        sql.contains(
            ".k1 IS NOT NULL AND ROW(a4.c0, a4.c1)::pg_catalog.record OPERATOR(pg_catalog.=) ROW("
        ),
        "{sql}"
    );
}

#[test]
fn union_all_skips_unchanged_branches() {
    let t = tree(Node::UnionAll {
        inputs: vec![scan(10, "a", &["x"]), scan(20, "b", &["x"])],
    });
    let sql = delta(&t, &mut ctx(&[10, 20], &[20]));
    assert!(
        sql.contains("changes_10") && !sql.contains("changes_20"),
        "{sql}"
    );
}

#[test]
fn a_cte_referenced_twice_has_its_delta_computed_once() {
    let cte = scan(10, "a", &["k"]);
    let t = OpTree {
        root: Node::Join {
            kind: JoinKind::Inner,
            left: Box::new(Node::CteRef { id: 0, arity: 1 }),
            right: Box::new(Node::CteRef { id: 0, arity: 1 }),
            on: Some(eq(0, 1)),
            null_types: vec![],
        },
        ctes: vec![cte],
        output_names: vec!["a".into(), "b".into()],
        top_k: None,
        unique_keys: Vec::new(),
        full_from_tree: false,
        collected_subqueries: Vec::new(),
    };
    let mut c = ctx(&[10], &[]);
    let sql = delta(&t, &mut c);
    assert_eq!(sql.matches("changes_10").count(), 1, "{sql}");
    assert_eq!(c.cache.cte_delta_names.len(), 1);
    assert_eq!(c.opt.cte_counter, 1);
}

#[test]
fn nesting_beyond_the_limit_is_an_error_not_a_stack_overflow() {
    let mut node = scan(10, "t", &["a"]);
    for _ in 0..10 {
        node = Node::Filter {
            input: Box::new(node),
            predicate: Expr::sql("true"),
        };
    }
    let t = tree(node);
    let mut c = ctx(&[10], &[]);
    c.opt.max_depth = 5;
    assert!(delta_query(&t, &[], &mut c).is_err());
}

#[test]
fn a_grouped_input_read_whole_by_a_global_aggregate_is_computed_once_per_statement() {
    // TPC-H Q15's shape: `a JOIN g ON a.id = g.k WHERE g.s = (SELECT max(s) FROM g)` with
    // g = `SELECT k, sum(x) AS s FROM b GROUP BY k` (a view read twice), b changed.
    let sum_by_key = || {
        aggregate(
            scan(20, "b", &["k", "x"]),
            &[0],
            "sum",
            1,
            &["OPERATOR(pg_catalog.=)"],
        )
    };
    let top = aggregate(sum_by_key(), &[], "max", 1, &[]);
    let t = tree(Node::Join {
        kind: JoinKind::Inner,
        left: Box::new(Node::Join {
            kind: JoinKind::Inner,
            left: Box::new(scan(10, "a", &["id"])),
            right: Box::new(sum_by_key()),
            on: Some(eq(0, 1)),
            null_types: vec![],
        }),
        right: Box::new(top),
        on: Some(eq(2, 3)),
        null_types: vec![],
    });
    let sql = delta(&t, &mut ctx(&[10, 20], &[10]));
    // Every group of g, over all of b: once, in one MATERIALIZED item read everywhere else.
    let whole_groups =
        "AS c1 FROM (SELECT t.\"k\" AS c0, t.\"x\" AS c1 FROM \"public\".\"b\" AS t) AS g";
    assert_eq!(sql.matches(whole_groups).count(), 1, "{sql}");
    assert!(
        regex_like_find(&sql, "whole_", " AS MATERIALIZED (SELECT"),
        "{sql}"
    );
    assert!(
        sql.matches("FROM whole_").count() >= 3,
        "the new maximum, the old one's groups and the join read it: {sql}"
    );
    // g's delta (its touched groups, recomputed) once too, shared by the join and the maximum.
    assert_eq!(
        sql.matches(" AS (SELECT DISTINCT ").count(),
        1,
        "touched groups: {sql}"
    );
    assert!(regex_like_find(&sql, "agg_", " AS (SELECT"), "{sql}");
}

#[test]
fn types_known_to_print_equal_values_apart() {
    use super::rules::known_to_print_apart;
    for t in [
        "numeric",
        "double precision",
        "real",
        "interval",
        "interval day",
        "time with time zone",
        "time(3) with time zone",
        "public.citext",
        "jsonb",
        "numeric[]",
        "numrange",
        "numeric COLLATE \"C\"",
    ] {
        assert!(known_to_print_apart(t), "{t}");
    }
    // Printing alike, or not known either way (an enum, a domain): not refused for it.
    for t in [
        "integer",
        "text",
        "timestamp with time zone",
        "time without time zone",
        "public.mood",
        "bytea",
        "text[]",
    ] {
        assert!(!known_to_print_apart(t), "{t}");
    }
}
