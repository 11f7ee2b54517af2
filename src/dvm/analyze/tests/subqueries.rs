//! EXISTS / NOT EXISTS / IN (subquery) conjuncts as semi-joins, and subqueries elsewhere.

use super::{assert_tree, tree, unsupported};

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
    let t = tree("SELECT a.g FROM public.a WHERE ((a.id, a.x) IN ( SELECT b.id, b.a_id FROM public.b))");
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
fn unsupported_subqueries_are_named() {
    assert_eq!(
        unsupported("SELECT a.id FROM public.a WHERE (a.x NOT IN ( SELECT b.a_id FROM public.b))"),
        "NOT IN (subquery)"
    );
    assert_eq!(
        unsupported("SELECT a.id FROM public.a WHERE (NOT (a.x IN ( SELECT b.a_id FROM public.b)))"),
        "NOT IN (subquery)"
    );
    assert_eq!(
        unsupported("SELECT a.id, ( SELECT max(b.y) AS max FROM public.b WHERE (b.a_id = a.id)) AS m FROM public.a"),
        "subquery in the SELECT list"
    );
    assert_eq!(
        unsupported("SELECT a.id, (EXISTS ( SELECT 1 FROM public.b)) AS e FROM public.a"),
        "subquery in the SELECT list"
    );
    let where_context = "subquery in WHERE other than a top-level [NOT] EXISTS or IN conjunct";
    assert_eq!(
        unsupported(
            "SELECT a.id FROM public.a WHERE ((a.x > 1) OR (EXISTS ( SELECT 1 FROM public.b WHERE (b.a_id = a.id))))"
        ),
        where_context
    );
    assert_eq!(
        unsupported("SELECT a.id FROM public.a WHERE (a.x > ( SELECT max(b.a_id) AS max FROM public.b))"),
        where_context
    );
}

#[test]
fn correlation_is_limited_to_plain_subqueries_and_one_level() {
    let msg = unsupported(
        "SELECT a.id FROM public.a WHERE (EXISTS ( SELECT b.y FROM public.b WHERE (b.a_id = a.id) GROUP BY b.y))",
    );
    assert!(msg.starts_with("correlated reference a.id in a subquery other than a plain"), "{msg}");
    let msg = unsupported(
        " SELECT a.id FROM public.a
  WHERE (EXISTS ( SELECT 1 FROM public.b WHERE (EXISTS ( SELECT 1 FROM public.c WHERE (c.id = a.id)))))",
    );
    assert_eq!(msg, "correlated reference a.id to a query more than one level out");
    assert_eq!(
        unsupported(
            "SELECT a.id FROM public.a WHERE (EXISTS ( SELECT 1 FROM (public.b JOIN public.c ON ((c.id = a.id)))))"
        ),
        "correlated reference outside the WHERE clause of an EXISTS/IN subquery"
    );
}
