//! GROUP BY, aggregate calls, HAVING, and the SELECT list over an Aggregate's output.

use super::{assert_tree, names, show, tree, unsupported};

#[test]
fn expressions_over_aggregates_and_having() {
    let t = tree(
        " SELECT a.g, (sum(b.y) / (count(*))::numeric) AS avg_y
   FROM (public.a JOIN public.b ON ((a.id = b.a_id)))
  GROUP BY a.g
 HAVING (sum(b.y) > (10)::numeric)",
    );
    assert_eq!(names(&t), ["g", "avg_y"]);
    assert_tree(
        &t.root,
        "
        Project #0; (#1 / (#2)::NUMERIC)
          Filter (#1 > (10)::NUMERIC)
            Aggregate group [#1] agg [sum(#2); count(*)]
              InnerJoin ((#0 = #3))
                Scan public.a [id, g]
                Scan public.b [y, a_id]
        ",
    );
}

#[test]
fn an_ungrouped_column_is_added_to_the_group_by() {
    // Allowed by PostgreSQL because a.x depends on the grouped primary key a.id.
    let t = tree(
        " SELECT a.id, a.x, count(b.id) AS n
   FROM (public.a LEFT JOIN public.b ON ((b.a_id = a.id)))
  GROUP BY a.id",
    );
    assert_tree(
        &t.root,
        "
        Project #0; #1; #2
          Aggregate group [#0; #1] agg [count(#2)]
            LeftJoin ((#3 = #0))
              Scan public.a [id, x]
              Scan public.b [id, a_id]
        ",
    );
}

#[test]
fn an_added_group_column_shifts_the_aggregates_after_it() {
    // count(*) is seen before a.x is added, and still lands after all group columns.
    let t = tree("SELECT count(*) AS n, a.x FROM public.a GROUP BY a.id");
    assert_tree(
        &t.root,
        "
        Project #2; #1
          Aggregate group [#0; #1] agg [count(*)]
            Scan public.a [id, x]
        ",
    );
}

#[test]
fn a_grouped_expression_matches_whatever_its_parentheses() {
    let t = tree(
        "SELECT (a.x + 1) AS x1, upper(a.g) AS ug, count(*) AS n FROM public.a GROUP BY ((a.x + 1)), (upper(a.g))",
    );
    assert_tree(
        &t.root,
        "
        Project #0; #1; #2
          Aggregate group [(#0 + 1); upper(#1)] agg [count(*)]
            Scan public.a [x, g]
        ",
    );
}

#[test]
fn expressions_over_grouped_values_and_constants() {
    let t = tree(
        "SELECT (a.g || '!'::text) AS bang, 'k'::text AS k, (max(a.x) + 1) AS m FROM public.a GROUP BY a.g, 'k'::text",
    );
    assert_tree(
        &t.root,
        "
        Project (#0 || '!'::TEXT); #1; (#2 + 1)
          Aggregate group [#1; 'k'::TEXT] agg [max(#0)]
            Scan public.a [x, g]
        ",
    );
}

#[test]
fn aggregate_calls_keep_filter_distinct_order_by_and_are_deduplicated() {
    let t = tree(
        " SELECT count(*) FILTER (WHERE (a.x > 1)) AS big, count(DISTINCT a.g) AS kinds,
        string_agg(a.g, ','::text ORDER BY a.g) AS all_g, pg_catalog.sum(a.x) AS total,
        bool_and((a.x > 0)) AS pos, count(*) FILTER (WHERE (a.x > 1)) AS again
   FROM public.a",
    );
    assert_tree(
        &t.root,
        "
        Project #0; #1; #2; #3; #4; #0
          Aggregate group [] agg [count(*) FILTER (WHERE (#0 > 1)); count(DISTINCT #1); string_agg(#1, ','::TEXT ORDER BY #1); pg_catalog.sum(#0); bool_and((#0 > 0))]
            Scan public.a [x, g]
        ",
    );
}

#[test]
fn aggregates_over_a_filtered_input_without_group_by() {
    let t = tree("SELECT sum(b.y) AS s, avg(b.y) AS a FROM public.b WHERE (b.a_id IS NOT NULL)");
    assert_tree(
        &t.root,
        "
        Project #0; #1
          Aggregate group [] agg [sum(#0); avg(#0)]
            Filter (#1 IS NOT NULL)
              Scan public.b [y, a_id]
        ",
    );
}

#[test]
fn group_by_without_aggregates_and_having_only() {
    let t = tree("SELECT a.g FROM public.a GROUP BY a.g");
    assert_tree(
        &t.root,
        "
        Project #0
          Aggregate group [#0] agg []
            Scan public.a [g]
        ",
    );
    let t = tree("SELECT a.g FROM public.a GROUP BY a.g HAVING (min(a.x) > 0)");
    assert_tree(
        &t.root,
        "
        Project #0
          Filter (#1 > 0)
            Aggregate group [#1] agg [min(#0)]
              Scan public.a [x, g]
        ",
    );
}

#[test]
fn a_numeric_group_by_is_a_select_list_position() {
    let t = tree("SELECT a.g, count(*) AS n FROM public.a GROUP BY 1");
    assert_tree(
        &t.root,
        "
        Project #0; #1
          Aggregate group [#0] agg [count(*)]
            Scan public.a [g]
        ",
    );
}

/// ROLLUP, CUBE and GROUPING SETS: one grouped query per set under UNION ALL, the expressions a set
/// leaves out NULL (outside aggregates), GROUPING() its constant mask.
#[test]
fn grouping_sets_are_one_grouped_query_per_set() {
    let t = tree(
        "SELECT a.g, a.x, count(*) AS n, sum(a.x) AS s, GROUPING(a.g, a.x) AS gr FROM public.a GROUP BY ROLLUP(a.g, a.x)",
    );
    assert_eq!(t.output_names, ["g", "x", "n", "s", "gr"]);
    assert_tree(
        &t.root,
        "
        UnionAll
          Project #0; #1; #2; #3; 0
            Aggregate group [#1; #0] agg [count(*); sum(#0)]
              Scan public.a [x, g]
          Project #0; NULL; #1; #2; 1
            Aggregate group [#1] agg [count(*); sum(#0)]
              Scan public.a [x, g]
          Project NULL; NULL; #0; #1; 3
            Aggregate group [] agg [count(*); sum(#0)]
              Scan public.a [x]
        ",
    );
    // CUBE: every subset; a plain key in every set; GROUPING SETS as listed, () among them.
    let branches = |sql: &str| super::show(&tree(sql).root).matches("Aggregate").count();
    assert_eq!(
        branches("SELECT a.g, a.x, count(*) AS n FROM public.a GROUP BY CUBE(a.g, a.x)"),
        4
    );
    assert_eq!(
        branches(
            "SELECT a.id, a.g, a.x, count(*) AS n FROM public.a GROUP BY a.id, ROLLUP(a.g, a.x)"
        ),
        3
    );
    assert_eq!(
        branches(
            "SELECT a.g, count(*) AS n FROM public.a GROUP BY GROUPING SETS ((a.g), (), (a.g))"
        ),
        3
    );
    // The set without keys and without aggregates is still one row.
    let t = tree("SELECT a.g FROM public.a GROUP BY GROUPING SETS ((a.g), ())");
    assert!(
        super::show(&t.root).contains("Filter true"),
        "{}",
        super::show(&t.root)
    );
    // A kept key that is a function of a key left out keeps its value.
    let t = tree(
        "SELECT abs(a.x) AS u, a.x, count(*) AS n FROM public.a GROUP BY ROLLUP(abs(a.x), a.x)",
    );
    let shown = super::show(&t.root);
    assert!(shown.contains("Project #0; NULL; #1"), "{shown}");
    // One group without an aggregate keeps a count the query does not show.
    let t = tree("SELECT 1 AS one FROM public.a HAVING true");
    assert!(
        super::show(&t.root).contains("agg [count(*)]"),
        "{}",
        super::show(&t.root)
    );
    // A key inside an aggregate is the row's value; outside, NULL in the sets without it.
    let t = tree("SELECT (a.g + 1) AS g1, max(a.g) AS top FROM public.a GROUP BY ROLLUP(a.g)");
    let shown = super::show(&t.root);
    assert!(shown.contains("Project (NULL + 1); #0"), "{shown}");
    assert_eq!(
        unsupported(
            "SELECT count(*) AS n FROM public.a GROUP BY CUBE(a.g, a.x), CUBE(a.id, a.x), CUBE(a.id, a.g), CUBE(a.x, a.id)"
        ),
        "more than 64 grouping sets"
    );
    // Beside a grand total, a scalar subquery is refused as written (until 2026-12-07 as "of an
    // aggregate without GROUP BY", which the query is not); without one, it is read.
    let beside = "a scalar subquery in the SELECT list or HAVING with a grand total (ROLLUP, CUBE or the empty grouping set)";
    for sql in [
        "SELECT a.g, count(*) AS n, (SELECT max(b.y) FROM public.b) AS m FROM public.a GROUP BY ROLLUP (a.g)",
        "SELECT a.g, count(*) AS n FROM public.a GROUP BY ROLLUP (a.g) HAVING count(*) > (SELECT max(b.y) FROM public.b)",
    ] {
        assert_eq!(unsupported(sql), beside, "{sql}");
    }
    tree("SELECT a.g, a.x, count(*) AS n, (SELECT max(b.y) FROM public.b) AS m FROM public.a GROUP BY GROUPING SETS ((a.g), (a.x))");
}

#[test]
fn a_subquery_in_having_is_unsupported_unless_it_is_one_aggregate() {
    assert_eq!(
        unsupported(
            "SELECT a.g FROM public.a GROUP BY a.g HAVING (EXISTS ( SELECT 1 FROM public.b WHERE (b.a_id = a.g)))"
        ),
        "subquery in HAVING"
    );
    // A correlated one that is one aggregate: HAVING filters the groups left-joined with its grouped form.
    let t = tree(
        "SELECT a.g FROM public.a GROUP BY a.g HAVING (count(*) > ( SELECT count(*) AS count FROM public.b WHERE (b.a_id = a.g)))",
    );
    let shown = show(&t.root);
    assert!(
        shown.contains("Filter (#1 > COALESCE(#4, 0))") && shown.contains("LeftJoin"),
        "{shown}"
    );
}

#[test]
fn a_subscripted_column_is_a_column_reference() {
    // PostgreSQL prints `a.x[1]`; sqlparser reads it as `a` with the accesses `.x` and `[1]`. Until
    // 2026-12-05 the analyser left it as text, a constant to it, which PostgreSQL then could not
    // place (`missing FROM-clause entry for table "a"`) in every statement made from it.
    let t = tree(
        " SELECT a.x[1] AS x1, a.x[1:2] AS x12, count(*) AS n
   FROM public.a
  WHERE (a.x[2] > 0)
  GROUP BY a.x[1], a.x[1:2]",
    );
    assert_tree(
        &t.root,
        "
        Project #0; #1; #2
          Aggregate group [(#0[1]); (#0[1:2])] agg [count(*)]
            Filter (#0[2] > 0)
              Scan public.a [x]
        ",
    );
}
