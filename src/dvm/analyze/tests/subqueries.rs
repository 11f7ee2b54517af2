//! EXISTS / NOT EXISTS / IN / NOT IN (subquery) conjuncts as semi- and anti-joins, and subqueries
//! elsewhere.

use super::{assert_tree, show, tree, unsupported};
use crate::dvm::optree::UniqueKey;

#[test]
fn correlated_exists_pushes_its_own_conjuncts_into_the_right_side() {
    let t = tree(
        " SELECT a.id FROM public.a
  WHERE ((a.x > 0) AND (EXISTS ( SELECT 1 FROM public.b WHERE ((b.y > (0)::numeric) AND (b.a_id = a.id) AND (b.id <> a.x)))))",
    );
    // Left: a [id, x]; right: b [id, y, a_id] at 2, 3, 4.
    assert_tree(
        &t.root,
        "
        Project #0
          SemiJoin (#4 = #0) AND (#2 <> #1)
            Filter (#1 > 0)
              Scan public.a [id, x]
            Filter (#1 > (0)::NUMERIC)
              Scan public.b [id, y, a_id]
        ",
    );
}

#[test]
fn not_exists_written_either_way_is_an_anti_join() {
    for sql in [
        "SELECT a.id FROM public.a WHERE (NOT (EXISTS ( SELECT 1 FROM public.b WHERE (b.a_id = a.id))))",
        "SELECT a.id FROM public.a WHERE NOT EXISTS ( SELECT 1 FROM public.b WHERE (b.a_id = a.id))",
    ] {
        assert_tree(
            &tree(sql).root,
            "
            Project #0
              AntiJoin (#1 = #0)
                Scan public.a [id]
                Scan public.b [a_id]
            ",
        );
    }
}

#[test]
fn not_in_written_either_way_is_the_anti_join_on_values_that_may_be_equal() {
    for sql in [
        "SELECT a.id FROM public.a WHERE (a.x NOT IN ( SELECT b.a_id FROM public.b))",
        "SELECT a.id FROM public.a WHERE (NOT (a.x IN ( SELECT b.a_id FROM public.b)))",
    ] {
        assert_tree(
            &tree(sql).root,
            "
            Project #0
              AntiJoin ((#1 = #2) OR (#1) IS NULL OR (#2) IS NULL)
                Scan public.a [id, x]
                Scan public.b [a_id]
            ",
        );
    }
    // Row-wise, correlated, and negated twice (which is IN).
    assert_tree(
        &tree(
            "SELECT a.id FROM public.a WHERE ((a.id, a.x) NOT IN ( SELECT b.id, b.a_id FROM public.b WHERE (b.y > (0)::numeric)))",
        )
        .root,
        "
        Project #0
          AntiJoin ((#0 = #2) OR (#0) IS NULL OR (#2) IS NULL) AND ((#1 = #4) OR (#1) IS NULL OR (#4) IS NULL)
            Scan public.a [id, x]
            Filter (#1 > (0)::NUMERIC)
              Scan public.b [id, y, a_id]
        ",
    );
    assert_tree(
        &tree("SELECT a.id FROM public.a WHERE (NOT (a.x NOT IN ( SELECT b.a_id FROM public.b WHERE (b.id = a.id))))").root,
        "
        Project #0
          SemiJoin (#2 = #0) AND (#1 = #3)
            Scan public.a [id, x]
            Scan public.b [id, a_id]
        ",
    );
}

#[test]
fn quantified_comparisons_that_are_in_and_not_in_are_read_as_such() {
    // `<> ALL` is NOT IN, NULLs included; PostgreSQL keeps it as written. `= ANY` is IN.
    assert_tree(
        &tree("SELECT a.id FROM public.a WHERE (a.x <> ALL ( SELECT b.a_id FROM public.b))").root,
        "
        Project #0
          AntiJoin ((#1 = #2) OR (#1) IS NULL OR (#2) IS NULL)
            Scan public.a [id, x]
            Scan public.b [a_id]
        ",
    );
    assert_eq!(
        show(
            &tree("SELECT a.id FROM public.a WHERE (a.x = ANY ( SELECT b.a_id FROM public.b))")
                .root
        ),
        show(&tree("SELECT a.id FROM public.a WHERE (a.x IN ( SELECT b.a_id FROM public.b))").root)
    );
    // Inside a subquery, and negated.
    assert_eq!(
        show(&tree("SELECT a.id FROM public.a WHERE (EXISTS ( SELECT 1 FROM public.b WHERE ((b.a_id = a.id) AND (NOT (b.y <> ALL ( SELECT a2.x FROM public.a a2))))))").root),
        show(&tree("SELECT a.id FROM public.a WHERE (EXISTS ( SELECT 1 FROM public.b WHERE ((b.a_id = a.id) AND (b.y IN ( SELECT a2.x FROM public.a a2)))))").root)
    );
    // Other quantified comparisons over a subquery are refused by name (not as a "scalar subquery").
    for (sql, what) in [
        (
            "SELECT a.id FROM public.a WHERE (a.x > ALL ( SELECT b.a_id FROM public.b))",
            "> ALL (subquery)",
        ),
        (
            "SELECT a.id FROM public.a WHERE (a.x <> ANY ( SELECT b.a_id FROM public.b))",
            "<> ANY (subquery)",
        ),
        (
            "SELECT a.id FROM public.a WHERE (a.x = ALL ( SELECT b.a_id FROM public.b))",
            "= ALL (subquery)",
        ),
    ] {
        let message = unsupported(sql);
        assert!(message.starts_with(what), "{sql}: {message}");
        assert!(
            message.contains("other than = ANY, which is IN, and <> ALL, which is NOT IN"),
            "{message}"
        );
    }
    // ANY over an array is no subquery: untouched.
    tree("SELECT a.id FROM public.a WHERE (a.x = ANY (ARRAY[1, 2]))");
}

#[test]
fn uncorrelated_in_over_a_plain_block_reads_its_from() {
    let t =
        tree("SELECT a.g FROM public.a WHERE (a.x IN ( SELECT (b.a_id + 1) FROM public.b WHERE (b.y > (0)::numeric)))");
    assert_tree(
        &t.root,
        "
        Project #1
          SemiJoin (#0 = (#3 + 1))
            Scan public.a [x, g]
            Filter (#0 > (0)::NUMERIC)
              Scan public.b [y, a_id]
        ",
    );
}

#[test]
fn correlated_in_combines_the_correlation_and_the_equality() {
    let t = tree("SELECT a.id FROM public.a WHERE (a.x IN ( SELECT b.a_id FROM public.b WHERE (b.id = a.id)))");
    assert_tree(
        &t.root,
        "
        Project #0
          SemiJoin (#2 = #0) AND (#1 = #3)
            Scan public.a [id, x]
            Scan public.b [id, a_id]
        ",
    );
}

#[test]
fn row_in_compares_each_column() {
    let t = tree(
        "SELECT a.g FROM public.a WHERE ((a.id, a.x) IN ( SELECT b.id, b.a_id FROM public.b))",
    );
    assert_tree(
        &t.root,
        "
        Project #2
          SemiJoin (#0 = #3) AND (#1 = #4)
            Scan public.a [id, x, g]
            Scan public.b [id, a_id]
        ",
    );
}

#[test]
fn an_uncorrelated_subquery_of_any_shape_is_the_whole_right_side() {
    let t = tree("SELECT a.id FROM public.a WHERE (a.x IN ( SELECT max(b.a_id) AS max FROM public.b GROUP BY b.y))");
    assert_tree(
        &t.root,
        "
        Project #0
          SemiJoin (#1 = #2)
            Scan public.a [id, x]
            Project #1
              Aggregate group [#0] agg [max(#1)]
                Scan public.b [y, a_id]
        ",
    );
    let t = tree("SELECT a.id FROM public.a WHERE (EXISTS ( SELECT b.y FROM public.b UNION SELECT c.z FROM public.c))");
    assert_tree(
        &t.root,
        "
        Project #0
          SemiJoin true
            Scan public.a [id]
            Distinct
              UnionAll
                Project #0
                  Scan public.b [y]
                Project #0
                  Scan public.c [z]
        ",
    );
}

#[test]
fn an_uncorrelated_plain_exists_joins_on_true() {
    let t = tree("SELECT a.id FROM public.a WHERE (EXISTS ( SELECT 1 FROM public.b WHERE (b.y > (0)::numeric)))");
    assert_tree(
        &t.root,
        "
        Project #0
          SemiJoin true
            Scan public.a [id]
            Filter (#0 > (0)::NUMERIC)
              Scan public.b [y]
        ",
    );
}

#[test]
fn a_subquery_can_itself_contain_a_semi_join() {
    let t = tree(
        " SELECT a.id FROM public.a
  WHERE (EXISTS ( SELECT 1 FROM public.b
          WHERE ((b.a_id = a.id) AND (EXISTS ( SELECT 1 FROM public.c WHERE (c.b_id = b.id))))))",
    );
    assert_tree(
        &t.root,
        "
        Project #0
          SemiJoin (#2 = #0)
            Scan public.a [id]
            SemiJoin (#2 = #0)
              Scan public.b [id, a_id]
              Scan public.c [b_id]
        ",
    );
}

#[test]
fn exists_subqueries_may_join_inside() {
    let t = tree(
        " SELECT a.id FROM public.a
  WHERE (EXISTS ( SELECT 1 FROM (public.b JOIN public.c ON ((c.b_id = b.id))) WHERE (b.a_id = a.id)))",
    );
    assert_tree(
        &t.root,
        "
        Project #0
          SemiJoin (#2 = #0)
            Scan public.a [id]
            InnerJoin ((#2 = #0))
              Scan public.b [id, a_id]
              Scan public.c [b_id]
        ",
    );
}

#[test]
fn semi_joins_in_a_grouped_block_sit_below_the_aggregate() {
    let t = tree(
        "SELECT a.g, count(*) AS n FROM public.a WHERE (EXISTS ( SELECT 1 FROM public.b WHERE (b.a_id = a.id))) GROUP BY a.g",
    );
    assert_tree(
        &t.root,
        "
        Project #0; #1
          Aggregate group [#1] agg [count(*)]
            SemiJoin (#2 = #0)
              Scan public.a [id, g]
              Scan public.b [a_id]
        ",
    );
}

#[test]
fn a_one_row_aggregate_subquery_is_a_cross_join_with_its_row() {
    // In WHERE: a filter over the cross join.
    let t =
        tree("SELECT a.id FROM public.a WHERE (a.x > ( SELECT max(b.a_id) AS max FROM public.b))");
    let shown = show(&t.root);
    assert!(
        shown.contains("Aggregate group [] agg [max(#0)]"),
        "{shown}"
    );
    assert!(
        shown.contains("Scan public.a [id, x]") && shown.contains("Scan public.b [a_id]"),
        "{shown}"
    );
    assert!(
        !shown.contains("Semi") && !shown.contains("Anti"),
        "{shown}"
    );
    // In the SELECT list, and in HAVING of a grouped block (where it is one more, hidden, group key).
    let t = tree("SELECT a.id, ( SELECT count(*) AS count FROM public.b) AS n FROM public.a");
    assert_eq!(t.output_names, vec!["id".to_string(), "n".to_string()]);
    let t = tree(
        "SELECT a.g, sum(a.x) AS s FROM public.a GROUP BY a.g HAVING (sum(a.x) > ( SELECT (sum(b.y) * 0.5) FROM public.b))",
    );
    let shown = show(&t.root);
    assert!(
        shown.contains("Aggregate group [#1; #2] agg [sum(#0)]"),
        "the value is a second key: {shown}"
    );
    assert!(
        shown.contains("Filter (#2 > #1)") && shown.contains("Project #0; #2"),
        "{shown}"
    );
}

#[test]
fn unsupported_subqueries_are_named() {
    assert_eq!(
        unsupported(
            "SELECT a.g, sum(( SELECT max(b.y) AS max FROM public.b WHERE (b.a_id = a.id))) AS s FROM public.a GROUP BY a.g"
        ),
        "correlated scalar subquery inside an aggregate's argument"
    );
    assert_eq!(
        unsupported(
            "SELECT a.id, ( SELECT b.y FROM public.b WHERE (b.a_id = a.id)) AS m FROM public.a"
        ),
        "correlated scalar subquery other than one aggregate without GROUP BY, or one expression of a table whose unique key the subquery's equalities fix (it may return several rows)"
    );
    // Fixing only part of a unique key, or a unique column through a join, is not enough.
    for sql in [
        "SELECT a.id, ( SELECT c.z FROM public.c WHERE (c.b_id = a.id)) AS m FROM public.a",
        "SELECT a.id, ( SELECT b.y FROM (public.b JOIN public.c ON ((c.b_id = b.id))) WHERE (b.id = a.id)) AS m FROM public.a",
        "SELECT a.id, ( SELECT DISTINCT b.y FROM public.b WHERE (b.id = a.id)) AS m FROM public.a",
        // The alias renames b's columns: its `id` is b's `y`.
        "SELECT a.id, ( SELECT bb.y FROM public.b bb(y, id) WHERE (bb.id = a.id)) AS m FROM public.a",
        // A cast of the key column: equal casts need not be equal keys.
        "SELECT a.id, ( SELECT b.y FROM public.b WHERE ((b.id)::double precision = a.x)) AS m FROM public.a",
    ] {
        assert!(
            unsupported(sql).contains("it may return several rows"),
            "{sql}"
        );
    }
    assert_eq!(
        unsupported("SELECT a.id, ( SELECT COALESCE(max(b.y), 0) AS m FROM public.b WHERE (b.a_id = a.id)) AS m FROM public.a"),
        "correlated scalar subquery whose value over no rows is neither NULL nor a count (such as COALESCE(max(x), 0))"
    );
    assert_eq!(
        unsupported("SELECT a.id, ( SELECT b.y FROM public.b WHERE (b.id = 1)) AS m FROM public.a"),
        "scalar subquery other than an aggregate without GROUP BY"
    );
    assert_eq!(
        unsupported("SELECT a.id FROM public.a WHERE (a.x > ( SELECT max(b.y) AS max FROM public.b GROUP BY b.a_id))"),
        "scalar subquery other than an aggregate without GROUP BY"
    );
    assert_eq!(
        unsupported(
            "SELECT sum(a.x) AS s, ( SELECT max(b.y) AS max FROM public.b) AS m FROM public.a"
        ),
        "scalar subquery in the SELECT list or HAVING of an aggregate without GROUP BY"
    );
    assert_eq!(
        unsupported("SELECT a.id, (EXISTS ( SELECT 1 FROM public.b)) AS e FROM public.a"),
        "subquery in the SELECT list"
    );
    let where_context =
        "subquery in WHERE other than a top-level [NOT] EXISTS or [NOT] IN conjunct";
    assert_eq!(
        unsupported(
            "SELECT a.id FROM public.a WHERE ((a.x > 1) OR (EXISTS ( SELECT 1 FROM public.b WHERE (b.a_id = a.id))))"
        ),
        where_context
    );
    for (sql, why) in [
        (
            "SELECT a.id FROM public.a WHERE (a.x > ( SELECT COALESCE(max(b.y), 0) FROM public.b WHERE (b.id = a.id)))",
            "correlated scalar subquery whose value over no rows is neither NULL nor a count (such as COALESCE(max(x), 0))",
        ),
        (
            "SELECT a.id FROM public.a WHERE (a.x > ( SELECT max(b.y) AS max FROM public.b WHERE (b.id < a.id)))",
            "correlated scalar subquery with a correlation other than an equality",
        ),
        (
            "SELECT a.g, count(*) AS n FROM public.a WHERE ((a.x > ( SELECT count(*) AS count FROM public.b WHERE (b.id = a.id))) OR (a.x = 0)) GROUP BY a.g",
            "correlated scalar subquery other than one in the SELECT list or compared in a WHERE condition",
        ),
        (
            "SELECT a.id FROM public.a WHERE ((a.x > ( SELECT count(*) AS count FROM public.b WHERE (b.id = a.id))) OR (EXISTS ( SELECT 1 FROM public.c WHERE (c.id = a.g))))",
            "correlated scalar subquery other than one in the SELECT list or compared in a WHERE condition",
        ),
        (
            "SELECT a.id FROM public.a WHERE (a.x > ( SELECT (max(b.y) + a.g) FROM public.b WHERE (b.id = a.id)))",
            "correlated scalar subquery whose value reads the enclosing query",
        ),
    ] {
        assert_eq!(unsupported(sql), why, "{sql}");
    }
}

#[test]
fn other_correlated_conditions_in_where_filter_above_left_joins() {
    // A count (0 over no rows), and a comparison inside OR: the condition moves above the left join.
    for sql in [
        "SELECT a.id FROM public.a WHERE ((a.x > ( SELECT count(*) AS count FROM public.b WHERE (b.a_id = a.id))) AND (a.g > 1))",
        "SELECT a.id FROM public.a WHERE ((a.x > ( SELECT max(b.y) AS max FROM public.b WHERE (b.a_id = a.id))) OR (a.x = 0))",
    ] {
        let t = tree(sql);
        let shown = show(&t.root);
        let filter = shown.find("Filter").expect(&shown);
        let join = shown.find("LeftJoin").expect(&shown);
        assert!(filter < join, "the condition filters the left join: {shown}");
        assert_eq!(t.output_names, vec!["id".to_string()], "{shown}");
    }
    // A comparison with an aggregate NULL over no rows stays an inner join.
    let t = tree("SELECT a.id FROM public.a WHERE (a.x > ( SELECT max(b.y) AS max FROM public.b WHERE (b.a_id = a.id)))");
    assert!(!show(&t.root).contains("LeftJoin"), "{}", show(&t.root));
}

#[test]
fn a_correlated_aggregate_compared_in_where_is_a_join_with_its_grouped_form() {
    // TPC-H Q17's shape: the correlation key becomes the group key and a join condition.
    let t = tree(
        "SELECT sum(l.x) AS s FROM public.a l, public.b p
          WHERE ((p.id = l.id) AND (p.y > (0)::numeric) AND (l.x < ( SELECT (0.2 * avg(l2.x)) FROM public.a l2 WHERE (l2.id = p.id))))",
    );
    let shown = show(&t.root);
    assert!(
        shown.contains("Aggregate group [#0] agg [avg(#1)]"),
        "grouped by the correlation key: {shown}"
    );
    assert!(
        !shown.contains("Semi") && !shown.contains("Left"),
        "an inner join: {shown}"
    );
    assert_eq!(shown.matches("Scan public.a").count(), 2, "{shown}");
}

#[test]
fn correlation_is_limited_to_plain_subqueries_and_one_level() {
    let msg = unsupported(
        "SELECT a.id FROM public.a WHERE (EXISTS ( SELECT b.y FROM public.b WHERE (b.a_id = a.id) GROUP BY b.y))",
    );
    assert!(
        msg.starts_with("correlated reference a.id in a subquery other than a plain"),
        "{msg}"
    );
    let msg = unsupported(
        " SELECT a.id FROM public.a
  WHERE (EXISTS ( SELECT 1 FROM public.b WHERE (EXISTS ( SELECT 1 FROM public.c WHERE (c.id = a.id)))))",
    );
    assert_eq!(
        msg,
        "correlated reference a.id to a query more than one level out"
    );
    assert_eq!(
        unsupported(
            "SELECT a.id FROM public.a WHERE (EXISTS ( SELECT 1 FROM (public.b JOIN public.c ON ((c.id = a.id)))))"
        ),
        "correlated reference outside the WHERE clause of an EXISTS/IN subquery"
    );
}

#[test]
fn a_correlated_aggregate_in_the_select_list_is_a_left_join_with_its_grouped_form() {
    // The block's FROM and WHERE stay together below the left join (a comma join stays a join).
    let t = tree(
        "SELECT a.id, b.y, ( SELECT max(c.z) AS max FROM public.c WHERE ((c.b_id = b.id) AND (c.z > 0))) AS top
           FROM public.a, public.b WHERE ((b.a_id = a.id) AND (a.x > 1))",
    );
    assert_eq!(
        t.output_names,
        vec!["id".to_string(), "y".to_string(), "top".to_string()]
    );
    let shown = show(&t.root);
    assert!(shown.contains("LeftJoin"), "{shown}");
    assert!(
        shown.contains("Aggregate group [#0] agg [max(#1)]"),
        "grouped by the correlation key: {shown}"
    );
    assert!(
        shown.contains("InnerJoin (#4 = #0)"),
        "the comma join is a join on its condition: {shown}"
    );
    // A count is 0 for an outer row without a group; two subqueries are two left joins.
    let t = tree(
        "SELECT a.id, ( SELECT count(*) AS count FROM public.b WHERE (b.a_id = a.id)) AS n,
                ( SELECT sum(b.y) AS sum FROM public.b WHERE (b.a_id = a.id)) AS s FROM public.a",
    );
    assert_eq!(
        t.output_names,
        vec!["id".to_string(), "n".to_string(), "s".to_string()]
    );
    let shown = show(&t.root);
    assert_eq!(shown.matches("LeftJoin").count(), 2, "{shown}");
    assert!(shown.contains("COALESCE"), "{shown}");
    // Beside an uncorrelated one, with DISTINCT.
    let t = tree(
        "SELECT DISTINCT a.g, ( SELECT max(b.y) AS max FROM public.b WHERE (b.a_id = a.id)) AS m,
                ( SELECT count(*) AS count FROM public.d) AS nd FROM public.a",
    );
    assert_eq!(
        t.output_names,
        vec!["g".to_string(), "m".to_string(), "nd".to_string()]
    );
    assert!(show(&t.root).starts_with("Distinct"), "{}", show(&t.root));
}

#[test]
fn in_a_grouped_block_the_left_join_reads_the_groups() {
    // The aggregate is computed below the join, per group; the subquery is correlated with the key.
    let t = tree(
        "SELECT a.g, sum(a.x) AS s, ( SELECT max(b.y) AS max FROM public.b WHERE (b.a_id = a.g)) AS m
           FROM public.a GROUP BY a.g",
    );
    assert_eq!(
        t.output_names,
        vec!["g".to_string(), "s".to_string(), "m".to_string()]
    );
    let shown = show(&t.root);
    let join = shown.find("LeftJoin").expect(&shown);
    let sum = shown.find("agg [sum(").expect(&shown);
    assert!(
        join < sum,
        "the outer block's aggregate sits below the join: {shown}"
    );
    // A GROUP BY expression is read whole (its column alone is not grouped).
    let t = tree(
        "SELECT (a.x + 1) AS x1, ( SELECT count(*) AS count FROM public.b WHERE (b.a_id = a.g)) AS n
           FROM public.a GROUP BY (a.x + 1), a.g",
    );
    assert_eq!(t.output_names, vec!["x1".to_string(), "n".to_string()]);
    assert!(
        show(&t.root).contains("Aggregate group [(#0 + 1); #1]"),
        "{}",
        show(&t.root)
    );
}

#[test]
fn a_lookup_by_a_unique_key_is_a_left_join_with_the_table() {
    // `b.id` is unique: at most one row of b per outer row, so no grouping, and a missing one is NULL.
    let t = tree(
        "SELECT a.id, ( SELECT b.y FROM public.b WHERE ((b.id = a.x) AND (b.y > 0))) AS y,
                ( SELECT c.z FROM public.c WHERE ((c.id = a.g) AND (c.b_id = a.x))) AS z FROM public.a",
    );
    assert_eq!(
        t.output_names,
        vec!["id".to_string(), "y".to_string(), "z".to_string()]
    );
    let shown = show(&t.root);
    assert_eq!(shown.matches("LeftJoin").count(), 2, "{shown}");
    assert!(!shown.contains("Aggregate"), "{shown}");
    assert!(!shown.contains("COALESCE"), "{shown}");
    assert!(shown.contains("Filter (#1 > 0)"), "{shown}");
    assert_eq!(
        t.unique_keys,
        vec![
            UniqueKey {
                relid: 2,
                columns: vec!["id".into()]
            },
            UniqueKey {
                relid: 3,
                columns: vec!["b_id".into(), "id".into()]
            }
        ]
    );
    // Compared in WHERE: an inner join, as an aggregate's grouped form is.
    let t = tree(
        "SELECT a.id FROM public.a WHERE (a.x > ( SELECT b.y FROM public.b WHERE (b.id = a.g)))",
    );
    assert!(!show(&t.root).contains("Aggregate"), "{}", show(&t.root));
    assert_eq!(t.unique_keys.len(), 1);
}
