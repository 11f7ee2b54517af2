//! Unit tests of aggregates maintained from stored state: which trees qualify, the hidden columns
//! and identity they get, and what a batch reads. Exactness is checked against PostgreSQL in
//! pg_test/tests/aggregates.rs and by the oracle.

use super::algebraic::AggregateState;
use super::context::{BatchTest, CdcContext, DiffContext};
use super::stream_delta;
use crate::dvm::apply::Delta;

fn groups(d: Option<Delta>) -> String {
    match d {
        Some(Delta::Groups(sql)) => sql,
        other => panic!("expected a grouped delta, got {other:?}"),
    }
}
use crate::dvm::optree::{AggCall, AggFunc, Expr, ExprPart, Node, OpTree, TableRef};
use crate::dvm::sql::QualifiedName;

fn call(func: AggFunc, arg: Option<usize>, arg_type: &str) -> AggCall {
    AggCall {
        func,
        arg: arg.map(Expr::col),
        filter: None,
        arg_type: arg_type.into(),
        less_than: if matches!(func, AggFunc::Min | AggFunc::Max) {
            "OPERATOR(pg_catalog.<)".into()
        } else {
            String::new()
        },
        fixed_scale: None,
    }
}

/// The Aggregate under a `grouped` tree's root, to alter what analysis recorded.
fn aggregate_mut(tree: &mut OpTree) -> &mut Node {
    let Node::Project { input, .. } = &mut tree.root else {
        unreachable!("grouped trees have a Project root")
    };
    input.as_mut()
}

/// `SELECT <exprs> FROM sales(region, amount, qty) GROUP BY <keys>` with the given calls.
fn grouped(keys: Vec<Expr>, calls: Vec<AggCall>, exprs: Vec<Expr>) -> OpTree {
    let scan = Node::Scan {
        table: TableRef {
            relid: 10,
            schema: "public".into(),
            name: "sales".into(),
        },
        columns: vec!["region".into(), "amount".into(), "qty".into()],
        types: vec![],
    };
    let key_types = keys.iter().map(|_| "text".to_string()).collect();
    let aggregates = calls.iter().map(|_| Expr::sql("agg(...)")).collect();
    let names = (0..exprs.len()).map(|i| format!("o{i}")).collect();
    OpTree {
        root: Node::Project {
            input: Box::new(Node::Aggregate {
                input: Box::new(scan),
                group_by: keys,
                aggregates,
                calls,
                key_types,
                key_eq: vec![],
            }),
            exprs,
        },
        ctes: vec![],
        output_names: names,
        top_k: None,
        unique_keys: Vec::new(),
        full_from_tree: false,
        collected_subqueries: Vec::new(),
    }
}

fn ctx() -> DiffContext {
    DiffContext::new(CdcContext::for_refresh(
        [(10, QualifiedName::new("pgtrickle_changes", "changes_10"))],
        BatchTest::Visibility,
    ))
}

/// The delta of `tree` kept in `state`'s storage (`v`, `t`: the visible columns), as SQL.
fn delta_groups(
    tree: &OpTree,
    state: &AggregateState,
    v: &[String],
    t: &[String],
    ctx: &mut DiffContext,
) -> String {
    groups(
        stream_delta(
            tree,
            &QualifiedName::new("public", "st"),
            &state.payload(v, t),
            ctx,
        )
        .unwrap(),
    )
}

/// The hidden state columns, as "name type".
fn hidden_of(state: &AggregateState) -> Vec<String> {
    state
        .hidden_columns()
        .into_iter()
        .map(|(n, t)| format!("{n} {t}"))
        .collect()
}

fn visible(n: usize) -> (Vec<String>, Vec<String>) {
    (
        (0..n).map(|i| format!("o{i}")).collect(),
        (0..n).map(|_| "bigint".to_string()).collect(),
    )
}

#[test]
fn count_sum_avg_over_exact_types_qualify_and_get_hidden_state() {
    let tree = grouped(
        vec![Expr::col(0)],
        vec![
            call(AggFunc::CountStar, None, ""),
            call(AggFunc::Sum, Some(1), "numeric(12,2)"),
            call(AggFunc::Avg, Some(2), "integer"),
        ],
        vec![Expr::col(0), Expr::col(1), Expr::col(2), Expr::col(3)],
    );
    let state = AggregateState::of(&tree).expect("maintainable");
    let hidden: Vec<(String, String)> = state.hidden_columns();
    let names: Vec<&str> = hidden.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "__pgt_count",
            "__pgt_a0",
            "__pgt_a1",
            "__pgt_n1",
            "__pgt_a2",
            "__pgt_n2"
        ]
    );
    assert_eq!(hidden[2].1, "numeric", "SUM(numeric(12,2)) state");
    assert_eq!(hidden[4].1, "bigint", "AVG(integer) keeps an int8 sum");
    let (v, t) = visible(4);
    let payload = state.payload(&v, &t);
    assert_eq!(payload.identity, vec![0], "the group key is the identity");
    assert_eq!(payload.columns.len(), 10);
}

#[test]
fn a_key_the_select_list_does_not_show_is_stored_hidden() {
    let tree = grouped(
        vec![Expr::col(0)],
        vec![call(AggFunc::Count, Some(1), "numeric")],
        vec![Expr::col(1)],
    );
    let state = AggregateState::of(&tree).expect("maintainable");
    assert_eq!(
        state.hidden_columns()[0],
        ("__pgt_k0".to_string(), "text".to_string())
    );
    let (v, t) = visible(1);
    assert_eq!(state.payload(&v, &t).identity, vec![1]);
}

#[test]
fn other_aggregates_float_sums_and_having_keep_the_group_rescan() {
    let exprs = vec![Expr::col(0), Expr::col(1)];
    let other = AggCall::other();
    assert!(AggregateState::of(&grouped(vec![Expr::col(0)], vec![other], exprs.clone())).is_none());
    let float_sum = call(AggFunc::Sum, Some(1), "double precision");
    assert!(
        AggregateState::of(&grouped(vec![Expr::col(0)], vec![float_sum], exprs.clone())).is_none()
    );
    // Trees stored before calls were recorded: aggregates without their descriptions.
    let mut old = grouped(
        vec![Expr::col(0)],
        vec![call(AggFunc::CountStar, None, "")],
        exprs.clone(),
    );
    let Node::Aggregate { calls, .. } = aggregate_mut(&mut old) else {
        unreachable!()
    };
    calls.clear();
    assert!(AggregateState::of(&old).is_none());
    // HAVING: a Filter between the Project and the Aggregate.
    let mut having = grouped(
        vec![Expr::col(0)],
        vec![call(AggFunc::CountStar, None, "")],
        exprs,
    );
    if let Node::Project { input, .. } = &mut having.root {
        let agg = std::mem::replace(input.as_mut(), Node::CteRef { id: 0, arity: 0 });
        **input = Node::Filter {
            input: Box::new(agg),
            predicate: Expr::sql("true"),
        };
    }
    assert!(AggregateState::of(&having).is_none());
}

#[test]
fn a_count_and_sum_batch_reads_the_buffer_and_the_stored_groups_only() {
    let tree = grouped(
        vec![Expr::col(0)],
        vec![
            call(AggFunc::CountStar, None, ""),
            call(AggFunc::Sum, Some(2), "integer"),
        ],
        vec![Expr::col(0), Expr::col(1), Expr::col(2)],
    );
    let state = AggregateState::of(&tree).unwrap();
    let (v, t) = visible(3);
    let payload = state.payload(&v, &t);
    let storage = QualifiedName::new("public", "st");
    let sql = groups(stream_delta(&tree, &storage, &payload, &mut ctx()).unwrap());
    assert!(
        !sql.contains("\"public\".\"sales\""),
        "the source is not read: {sql}"
    );
    assert!(sql.contains("changes_10"), "{sql}");
    assert!(
        sql.contains("__pgt_row_id = pg_catalog.hash_record_extended(ROW("),
        "groups found by identity: {sql}"
    );
    assert!(
        sql.contains("LIMIT 1) AS o ON true"),
        "one index probe per group: {sql}"
    );
    assert!(
        sql.contains("OPERATOR(pg_catalog.*=)"),
        "unchanged groups are left alone: {sql}"
    );
    assert!(
        sql.contains(".ctid AS o_ctid") && sql.contains("AS __pgt_old"),
        "the stored row is remembered: {sql}"
    );
    assert!(
        sql.contains("b.__pgt_w AS __pgt_w FROM"),
        "sums read the change rows as they are: {sql}"
    );
    assert!(
        !sql.contains("::text HAVING"),
        "no consolidation of the batch for sums: {sql}"
    );
}

#[test]
fn extrema_and_joins_read_the_consolidated_batch() {
    let minimum = grouped(
        vec![Expr::col(0)],
        vec![call(AggFunc::Min, Some(1), "numeric(12,2)")],
        vec![Expr::col(0), Expr::col(1)],
    );
    let mut joined = grouped(
        vec![Expr::col(0)],
        vec![call(AggFunc::CountStar, None, "")],
        vec![Expr::col(0), Expr::col(1)],
    );
    let Node::Aggregate { input, .. } = aggregate_mut(&mut joined) else {
        unreachable!()
    };
    let scan = std::mem::replace(input.as_mut(), Node::CteRef { id: 0, arity: 0 });
    **input = Node::Join {
        kind: crate::dvm::optree::JoinKind::Inner,
        left: Box::new(scan.clone()),
        right: Box::new(scan),
        on: Some(Expr::sql("true")),
        null_types: vec![],
    };
    for tree in [minimum, joined] {
        let state = AggregateState::of(&tree).unwrap();
        let (v, t) = visible(2);
        let sql = delta_groups(&tree, &state, &v, &t, &mut ctx());
        assert!(
            sql.contains("::text HAVING pg_catalog.sum(b.__pgt_w) <> 0"),
            "consolidated: {sql}"
        );
        assert!(!sql.contains("b.__pgt_w AS __pgt_w"), "{sql}");
    }
}

/// Sums over a join that hashes its partner, unique on the join key, read the change rows as they
/// are, as over a scan.
#[test]
fn sums_over_a_join_that_hashes_its_partner_read_the_batch_as_it_is() {
    let mut joined = grouped(
        vec![Expr::col(0)],
        vec![call(AggFunc::Sum, Some(1), "integer")],
        vec![Expr::col(0), Expr::col(1)],
    );
    let Node::Aggregate { input, .. } = aggregate_mut(&mut joined) else {
        unreachable!()
    };
    let changed = std::mem::replace(input.as_mut(), Node::CteRef { id: 0, arity: 0 });
    let Node::Scan { columns, .. } = changed.clone() else {
        unreachable!()
    };
    let partner = Node::Scan {
        table: TableRef {
            relid: 2,
            schema: "public".into(),
            name: "dim".into(),
        },
        columns: columns.clone(),
        types: vec![],
    };
    let arity = columns.len();
    let partner_key = columns[0].clone();
    **input = Node::Join {
        kind: crate::dvm::optree::JoinKind::Inner,
        left: Box::new(changed),
        right: Box::new(partner),
        on: Some(Expr {
            parts: vec![
                ExprPart::Col(0),
                ExprPart::Sql(" = ".into()),
                ExprPart::Col(arity),
            ],
        }),
        null_types: vec![],
    };
    let state = AggregateState::of(&joined).unwrap();
    let (v, t) = visible(2);
    let partner_unchanged = |whole: bool| {
        let mut c = ctx();
        c.cache.bypass.insert(2);
        if whole {
            c.opt.whole_reads.insert(2);
            let key = [partner_key.clone()].into_iter().collect();
            c.opt.unique_keys.insert(2, vec![key]);
        }
        c
    };
    let probed = delta_groups(&joined, &state, &v, &t, &mut partner_unchanged(false));
    assert!(
        probed.contains("::text HAVING pg_catalog.sum(b.__pgt_w) <> 0"),
        "{probed}"
    );
    let hashed = delta_groups(&joined, &state, &v, &t, &mut partner_unchanged(true));
    assert!(hashed.contains("b.__pgt_w AS __pgt_w FROM"), "{hashed}");
    assert!(!hashed.contains("::text HAVING"), "{hashed}");
}

#[test]
fn min_and_max_recompute_only_groups_whose_extremum_was_deleted() {
    let tree = grouped(
        vec![Expr::col(0)],
        vec![
            call(AggFunc::Min, Some(1), "numeric(12,2)"),
            call(AggFunc::Max, Some(1), "numeric(12,2)"),
        ],
        vec![Expr::col(0), Expr::col(1), Expr::col(2)],
    );
    let state = AggregateState::of(&tree).unwrap();
    let (v, t) = visible(3);
    let sql = delta_groups(&tree, &state, &v, &t, &mut ctx());
    assert!(
        sql.contains("OPERATOR(pg_catalog.<)"),
        "extrema compared with the type's own order: {sql}"
    );
    assert!(
        sql.contains("FILTER (WHERE d") && sql.contains(" OVER (PARTITION BY "),
        "copies of the extremum counted: {sql}"
    );
    assert!(sql.contains("AS n_n0") && sql.contains("AS n_n1"), "{sql}");
    assert!(sql.contains("WHERE rescan"), "{sql}");
    assert!(
        sql.contains("\"public\".\"sales\""),
        "rescanned groups read the source: {sql}"
    );
    assert!(
        sql.contains("WHERE EXISTS (SELECT 1 FROM arescan_"),
        "gated on there being any: {sql}"
    );
}

#[test]
fn min_and_max_read_off_an_index_on_key_and_argument_are_not_counted() {
    let mut tree = grouped(
        vec![Expr::col(0)],
        vec![
            call(AggFunc::Min, Some(1), "numeric(12,2)"),
            call(AggFunc::Max, Some(1), "numeric(12,2)"),
            call(AggFunc::CountStar, None, ""),
        ],
        vec![Expr::col(0), Expr::col(1), Expr::col(2), Expr::col(3)],
    );
    if let Node::Aggregate { key_eq, .. } = aggregate_mut(&mut tree) {
        *key_eq = vec!["OPERATOR(pg_catalog.=)".into()];
    }
    let state = AggregateState::of(&tree).unwrap();
    let (v, t) = visible(4);
    let mut probed = ctx();
    probed.cache.group_indexes.key_value_pairs = [(10, "region".to_string(), "amount".to_string())]
        .into_iter()
        .collect();
    let sql = delta_groups(&tree, &state, &v, &t, &mut probed);
    // The batch as it is, one aggregate, no window; the new extremum off the index, copies unknown.
    assert!(sql.contains("b.__pgt_w AS __pgt_w FROM"), "{sql}");
    assert!(!sql.contains(" OVER ("), "{sql}");
    assert!(!sql.contains("dic0") && !sql.contains("ddc1"), "{sql}");
    assert!(
        sql.contains("NULL::bigint AS n_n0") && sql.contains("NULL::bigint AS n_n1"),
        "{sql}"
    );
    assert!(
        sql.contains(" IS NOT NULL ORDER BY ") && sql.contains(" DESC LIMIT 1)"),
        "{sql}"
    );
    assert!(!sql.contains("arescan_"), "no group is read whole: {sql}");
    // Without the index (or for an offloaded batch): counted, and recomputed from the rows.
    let counted = delta_groups(&tree, &state, &v, &t, &mut ctx());
    assert!(
        counted.contains(" OVER (PARTITION BY ") && counted.contains("arescan_"),
        "{counted}"
    );
    assert!(!counted.contains(" ORDER BY "), "{counted}");
}

#[test]
fn rescanned_groups_are_looked_up_as_one_array_only_through_an_index_on_their_one_key() {
    let mut tree = grouped(
        vec![Expr::col(0)],
        vec![call(AggFunc::Min, Some(1), "numeric(12,2)")],
        vec![Expr::col(0), Expr::col(1)],
    );
    if let Node::Aggregate { key_eq, .. } = aggregate_mut(&mut tree) {
        *key_eq = vec!["OPERATOR(pg_catalog.=)".into()];
    }
    let state = AggregateState::of(&tree).unwrap();
    let (v, t) = visible(2);
    let any = "OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT ";
    let unindexed = delta_groups(&tree, &state, &v, &t, &mut ctx());
    assert!(!unindexed.contains(any), "{unindexed}");
    let mut indexed_ctx = ctx();
    indexed_ctx.cache.group_indexes.bitmap_keys =
        [(10, "region".to_string())].into_iter().collect();
    let indexed = delta_groups(&tree, &state, &v, &t, &mut indexed_ctx);
    assert!(
        indexed.contains(&format!(".c0) {any}")) && indexed.contains(".k0 FROM arescan_"),
        "the key's own equality against the rescanned groups' keys: {indexed}"
    );
    assert!(
        indexed.contains("IS NULL))) AND EXISTS (SELECT 1 FROM arescan_"),
        "NULL keys still matched null-safely: {indexed}"
    );
    // Another column's index does not serve the key.
    let mut other_ctx = ctx();
    other_ctx.cache.group_indexes.bitmap_keys = [(10, "amount".to_string())].into_iter().collect();
    let other = delta_groups(&tree, &state, &v, &t, &mut other_ctx);
    assert!(!other.contains(any), "{other}");
}

#[test]
fn the_full_query_computes_visible_columns_and_state_in_payload_order() {
    let tree = grouped(
        vec![Expr::col(0)],
        vec![call(AggFunc::Avg, Some(1), "numeric(12,2)")],
        vec![
            Expr::col(0),
            Expr {
                parts: vec![ExprPart::Col(1), ExprPart::Sql(" * 2".into())],
            },
        ],
    );
    let state = AggregateState::of(&tree).unwrap();
    let types: Vec<String> = ["text", "numeric", "bigint", "numeric", "bigint"]
        .iter()
        .map(|t| t.to_string())
        .collect();
    let sql = state.full_query(&tree, &types).unwrap();
    assert!(
        sql.contains("pg_catalog.numeric_div("),
        "AVG as PostgreSQL computes it: {sql}"
    );
    assert!(
        sql.contains("AS c4 FROM (SELECT"),
        "five payload columns: {sql}"
    );
    assert!(sql.contains("pg_catalog.count(*) AS s_count"), "{sql}");
    assert!(sql.contains(" GROUP BY a.c0"), "{sql}");
}

#[test]
fn a_numeric_sum_without_extrema_recomputes_nan_groups_in_valid_sql() {
    let tree = grouped(
        vec![],
        vec![call(AggFunc::Sum, Some(1), "numeric(12,2)")],
        vec![Expr::col(0)],
    );
    let state = AggregateState::of(&tree).unwrap();
    let (v, t) = visible(1);
    let sql = delta_groups(&tree, &state, &v, &t, &mut ctx());
    assert!(
        sql.contains("ARRAY['NaN', 'Infinity', '-Infinity']::pg_catalog.numeric[]"),
        "{sql}"
    );
    assert!(
        !sql.contains(".*,  FROM") && !sql.contains(", FROM"),
        "no empty select list item: {sql}"
    );
}

#[test]
fn a_batch_large_against_the_stored_groups_joins_them_by_one_scan() {
    use super::context::GroupLookup;
    assert_eq!(GroupLookup::for_batch(15_000, 10_000.0), GroupLookup::Scan);
    assert_eq!(GroupLookup::for_batch(1_500, 10_000.0), GroupLookup::Probe);
    assert_eq!(
        GroupLookup::for_batch(1, 1.0),
        GroupLookup::Scan,
        "a global aggregate's one row"
    );
    assert_eq!(
        GroupLookup::for_batch(1, -1.0),
        GroupLookup::Probe,
        "never counted: probe"
    );
    let tree = grouped(
        vec![Expr::col(0)],
        vec![
            call(AggFunc::CountStar, None, ""),
            call(AggFunc::Sum, Some(1), "numeric(12,2)"),
        ],
        vec![Expr::col(0), Expr::col(1), Expr::col(2)],
    );
    let state = AggregateState::of(&tree).unwrap();
    let (v, t) = visible(3);
    let mut scan = ctx();
    scan.opt.group_lookup = GroupLookup::Scan;
    let sql = delta_groups(&tree, &state, &v, &t, &mut scan);
    assert!(
        sql.contains("__pgt_row_id AS o_id FROM \"public\".\"st\" AS t5 OFFSET 0) AS o"),
        "the identity index is kept out: {sql}"
    );
    assert!(
        sql.contains("ON o.o_id = pg_catalog.hash_record_extended(ROW("),
        "joined on the identity hash: {sql}"
    );
    assert!(
        !sql.contains("LIMIT 1) AS o ON true"),
        "no probe per group: {sql}"
    );
}

#[test]
fn only_groups_to_recompute_are_joined_with_their_recomputation() {
    let tree = grouped(
        vec![Expr::col(0)],
        vec![call(AggFunc::Sum, Some(1), "numeric(12,2)")],
        vec![Expr::col(0), Expr::col(1)],
    );
    let state = AggregateState::of(&tree).unwrap();
    let (v, t) = visible(2);
    let sql = delta_groups(&tree, &state, &v, &t, &mut ctx());
    assert!(
        sql.contains("WHERE NOT z") && sql.contains(".rescan UNION ALL SELECT z"),
        "arithmetic groups skip the join: {sql}"
    );
    assert!(!sql.contains("CASE WHEN z"), "{sql}");
}

#[test]
fn a_numeric_sum_of_any_scale_keeps_its_largest_input_scale_as_an_extremum() {
    let tree = grouped(
        vec![Expr::col(0)],
        vec![
            call(AggFunc::Sum, Some(1), "numeric"),
            call(AggFunc::Avg, Some(2), "numeric(10,2)"),
        ],
        vec![Expr::col(0), Expr::col(1), Expr::col(2)],
    );
    let state = AggregateState::of(&tree).expect("a sum of numeric is kept from stored state");
    let hidden = hidden_of(&state);
    assert_eq!(
        hidden,
        [
            "__pgt_count bigint",
            "__pgt_a0 numeric",
            "__pgt_n0 bigint",
            "__pgt_a1 numeric",
            "__pgt_n1 bigint",
            "__pgt_a2 integer",
            "__pgt_n2 bigint"
        ],
        "one hidden MAX(scale(x)) for the sum without a fixed scale, none for numeric(10,2)"
    );
    let (v, t) = visible(3);
    let sql = delta_groups(&tree, &state, &v, &t, &mut ctx());
    assert!(
        sql.contains("pg_catalog.max((pg_catalog.scale(d"),
        "the largest scale among the inserted rows: {sql}"
    );
    assert!(
        sql.contains("WHERE rescan"),
        "a group that lost its most precise input is recomputed: {sql}"
    );
    let full = state
        .full_query(&tree, &state.payload(&v, &t).types)
        .unwrap();
    assert!(
        full.contains("GROUP BY a.c0, (pg_catalog.scale(a.c1))"),
        "partial states per input scale: {full}"
    );
    assert!(
        full.contains("FILTER (WHERE w.p_a2 = w.m2)"),
        "the copies of the largest scale counted: {full}"
    );
}

#[test]
fn a_numeric_sum_of_an_expression_with_a_fixed_scale_keeps_no_scale_state() {
    // `sum(price * (1 - discount))` over numeric(15,2) columns: every value has four decimals.
    let mut sum = call(AggFunc::Sum, Some(1), "numeric");
    sum.fixed_scale = Some(4);
    let tree = grouped(
        vec![Expr::col(0)],
        vec![sum],
        vec![Expr::col(0), Expr::col(1)],
    );
    let state = AggregateState::of(&tree).expect("kept from stored state");
    let hidden = hidden_of(&state);
    assert_eq!(
        hidden,
        ["__pgt_count bigint", "__pgt_a0 numeric", "__pgt_n0 bigint"],
        "no hidden MAX(scale(x))"
    );
    let (v, t) = visible(2);
    let sql = delta_groups(&tree, &state, &v, &t, &mut ctx());
    assert!(!sql.contains("pg_catalog.scale("), "{sql}");
}

#[test]
fn a_numeric_key_without_a_fixed_scale_is_rescanned_after_deletes_and_a_year_is_not() {
    // `GROUP BY EXTRACT(year FROM d)` (TPC-H Q7, Q9): numeric, never any decimals, so equal years
    // print alike and a group that lost rows needs no recompute; a plain `numeric` key (1.5, 1.50)
    // does.
    let with_key = |key: Expr| {
        let mut tree = grouped(
            vec![key],
            vec![call(AggFunc::CountStar, None, "")],
            vec![Expr::col(0), Expr::col(1)],
        );
        let Node::Aggregate {
            input, key_types, ..
        } = aggregate_mut(&mut tree)
        else {
            unreachable!()
        };
        *key_types = vec!["numeric".into()];
        let Node::Scan { types, .. } = input.as_mut() else {
            unreachable!()
        };
        *types = vec!["date".into(), "numeric".into(), "integer".into()];
        tree
    };
    let year = Expr {
        parts: vec![
            ExprPart::Sql("EXTRACT(year FROM ".into()),
            ExprPart::Col(0),
            ExprPart::Sql(")".into()),
        ],
    };
    let (v, t) = visible(2);
    for (key, rescans) in [(year, false), (Expr::col(1), true)] {
        let tree = with_key(key);
        let state = AggregateState::of(&tree).expect("kept from stored state");
        let sql = delta_groups(&tree, &state, &v, &t, &mut ctx());
        assert_eq!(sql.contains("ddel"), rescans, "{sql}");
        // explain_stream_table says so.
        let said = state.recomputed_when();
        assert_eq!(
            said.iter().any(|l| l
                .starts_with("a batch deletes rows of it: equal values of a group key (numeric) ")),
            rescans,
            "{said:?}"
        );
    }
}

#[test]
fn explain_lists_every_reason_a_group_is_recomputed() {
    // count and an integer sum never recompute; a numeric sum does on NaN or infinity and, without
    // a fixed scale, keeps its largest scale as a MAX; MIN over integers when its every copy may
    // be gone, and MAX over numeric also when an equal value that may print differently is deleted.
    let mut filtered_min = call(AggFunc::Min, Some(2), "integer");
    filtered_min.filter = Some(Expr {
        parts: vec![ExprPart::Col(1), ExprPart::Sql(" > 0".into())],
    });
    let calls = vec![
        call(AggFunc::CountStar, None, ""),
        call(AggFunc::Sum, Some(2), "integer"),
        call(AggFunc::Sum, Some(1), "numeric"),
        filtered_min,
        call(AggFunc::Max, Some(1), "numeric"),
    ];
    let tree = grouped(vec![Expr::col(0)], calls, (0..6).map(Expr::col).collect());
    let state = AggregateState::of(&tree).expect("kept from stored state");
    assert_eq!(
        state.recomputed_when(),
        [
            "a numeric sum is or becomes NaN or infinite: sum(#1) (__pgt_a2)",
            "the batch may have deleted every copy of the value of min(#2) FILTER (WHERE #1 > 0) (__pgt_a3)",
            "the batch may have deleted every copy of the value of max(#1) (__pgt_a4)",
            "the batch deletes a value equal to that of max(#1) (__pgt_a4): equal numeric values may print differently",
            "the batch may have deleted every copy of the value of the largest scale among sum(#1)'s inputs (__pgt_a5)",
        ]
    );
    let plain = grouped(
        vec![Expr::col(0)],
        vec![
            call(AggFunc::CountStar, None, ""),
            call(AggFunc::Sum, Some(2), "integer"),
        ],
        (0..3).map(Expr::col).collect(),
    );
    assert!(AggregateState::of(&plain)
        .unwrap()
        .recomputed_when()
        .is_empty());
}

#[test]
fn explain_says_why_a_grouped_query_recomputes_every_touched_group() {
    use super::algebraic::why_not_kept;
    let kept = grouped(
        vec![Expr::col(0)],
        vec![call(AggFunc::Sum, Some(2), "integer")],
        vec![Expr::col(0), Expr::col(1)],
    );
    assert_eq!(why_not_kept(&kept), None);

    let other = grouped(
        vec![Expr::col(0)],
        vec![call(AggFunc::Sum, Some(2), "integer"), AggCall::other()],
        vec![Expr::col(0), Expr::col(1), Expr::col(2)],
    );
    let why = why_not_kept(&other).expect("not kept");
    assert!(
        why.starts_with("agg(...) cannot be kept from stored state"),
        "{why}"
    );

    let mut unhashable = kept.clone();
    let Node::Aggregate { key_types, .. } = aggregate_mut(&mut unhashable) else {
        unreachable!()
    };
    key_types.clear();
    let why = why_not_kept(&unhashable).expect("not kept");
    assert!(why.contains("no hash function"), "{why}");
}
