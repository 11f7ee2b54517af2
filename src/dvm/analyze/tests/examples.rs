//! The six real `pg_get_viewdef` outputs from the analyzer's brief, verbatim.

use super::{assert_tree, names, tree};

#[test]
fn join_filter_group_by_having_and_filtered_aggregates() {
    let t = tree(
        " SELECT a.g, count(*) AS n, sum(b.y) FILTER (WHERE (b.y > (0)::numeric)) AS s, avg(b.y) AS avg
   FROM (public.a JOIN public.b ON ((a.id = b.a_id)))
  WHERE (a.x > 1)
  GROUP BY a.g
 HAVING (count(*) > 1)",
    );
    assert_eq!(names(&t), ["g", "n", "s", "avg"]);
    assert_tree(
        &t.root,
        "
        Project #0; #1; #2; #3
          Filter (#1 > 1)
            Aggregate group [#2] agg [count(*); sum(#3) FILTER (WHERE (#3 > (0)::NUMERIC)); avg(#3)]
              InnerJoin ((#0 = #4))
                Filter (#1 > 1)
                  Scan public.a [id, x, g]
                Scan public.b [y, a_id]
        ",
    );
}

#[test]
fn left_join_using() {
    let t =
        tree(" SELECT a.id, a.x, a.g, b.y, b.a_id FROM (public.a LEFT JOIN public.b USING (id))");
    assert_eq!(names(&t), ["id", "x", "g", "y", "a_id"]);
    assert_tree(
        &t.root,
        "
        Project #0; #1; #2; #4; #5
          LeftJoin (#0 = #3)
            Scan public.a [id, x, g]
            Scan public.b [id, y, a_id]
        ",
    );
}

#[test]
fn cte_referenced_twice_with_distinct() {
    let t = tree(
        " WITH t AS ( SELECT a.g, a.x FROM public.a WHERE (a.x IS NOT NULL) )
 SELECT DISTINCT t.g FROM t, t t2 WHERE (t.x = t2.x)",
    );
    assert_eq!(names(&t), ["g"]);
    assert_eq!(t.ctes.len(), 1);
    assert_tree(
        &t.ctes[0],
        "
        Project #1; #0
          Filter (#0 IS NOT NULL)
            Scan public.a [x, g]
        ",
    );
    assert_tree(
        &t.root,
        "
        Distinct
          Project #0
            InnerJoin (#1 = #3)
              CteRef 0 (2)
              CteRef 0 (2)
        ",
    );
}

#[test]
fn exists_in_and_not_exists() {
    let t = tree(
        " SELECT a.id FROM public.a
  WHERE ((EXISTS ( SELECT 1 FROM public.b WHERE ((b.a_id = a.id) AND (b.y > (0)::numeric))))
     AND (a.x IN ( SELECT b.a_id FROM public.b))
     AND (NOT (EXISTS ( SELECT FROM public.b bb WHERE (bb.id = a.id)))))",
    );
    // Left side: a [id, x] (positions 0, 1); each right side starts at 2.
    assert_tree(
        &t.root,
        "
        Project #0
          AntiJoin (#2 = #0)
            SemiJoin (#1 = #2)
              SemiJoin (#3 = #0)
                Scan public.a [id, x]
                Filter (#0 > (0)::NUMERIC)
                  Scan public.b [y, a_id]
              Scan public.b [a_id]
            Scan public.b [id]
        ",
    );
}

#[test]
fn union_of_a_parenthesised_union_all_and_a_subquery() {
    let t = tree(
        " ( SELECT a.g, a.x FROM public.a
   UNION ALL
   SELECT 'b'::text AS g, b.a_id AS x FROM public.b
 ) UNION
 SELECT s.g, 1 AS x FROM ( SELECT a.g FROM public.a) s",
    );
    assert_eq!(names(&t), ["g", "x"]);
    assert_tree(
        &t.root,
        "
        Distinct
          UnionAll
            Project #1; #0
              Scan public.a [x, g]
            Project 'b'::TEXT; #0
              Scan public.b [a_id]
            Project #0; 1
              Project #0
                Scan public.a [g]
        ",
    );
}

#[test]
fn case_coalesce_casts_and_right_join() {
    let t = tree(
        " SELECT CASE WHEN (a.x > 1) THEN 'big'::text ELSE COALESCE(a.g, 'none'::text) END AS c,
        (a.x)::numeric(10,2) AS xn, (a.g || '-'::text) AS gg, ((a.x >= 1) AND (a.x <= 3)) AS bt
   FROM (public.a RIGHT JOIN public.b ON (((a.id = b.id) AND (b.y < (1)::numeric))))",
    );
    assert_eq!(names(&t), ["c", "xn", "gg", "bt"]);
    assert_tree(
        &t.root,
        "
        Project CASE WHEN (#1 > 1) THEN 'big'::TEXT ELSE COALESCE(#2, 'none'::TEXT) END; (#1)::NUMERIC(10,2); (#2 || '-'::TEXT); ((#1 >= 1) AND (#1 <= 3))
          RightJoin (((#0 = #3) AND (#4 < (1)::NUMERIC)))
            Scan public.a [id, x, g]
            Scan public.b [id, y]
        ",
    );
}

/// PostgreSQL prints `trim(s)` as `TRIM(BOTH FROM s)`, which the parser reads once the characters
/// are written in (until 2026-12-05 every query with `trim()` was "could not parse the query").
#[test]
fn trim_as_postgresql_prints_it() {
    let t = tree(
        "SELECT a.id, TRIM(BOTH FROM a.x) AS t, TRIM(LEADING FROM a.x) AS l, TRIM(TRAILING 'x'::text FROM a.x) AS r FROM public.a",
    );
    assert_tree(
        &t.root,
        "
        Project #0; TRIM(BOTH ' ' FROM #1); TRIM(LEADING ' ' FROM #1); TRIM(TRAILING 'x'::TEXT FROM #1)
          Scan public.a [id, x]
        ",
    );
}
