//! Window functions over partitions: read as the grouped query of each partition's rows in order,
//! expanded again. Table columns in the stub catalog: a [id, x, g], b [id, y, a_id].

use super::{assert_tree, tree, unsupported};
use crate::dvm::optree::CollectedSubquery;

#[test]
fn row_number_and_offsets_come_from_the_partitions_arrays() {
    let t = tree(
        "SELECT a.id, row_number() OVER (PARTITION BY a.g ORDER BY a.x DESC, a.id) AS rn, lag(a.x) OVER (PARTITION BY a.g ORDER BY a.x DESC, a.id) AS prev, lead(a.x, 2) OVER (PARTITION BY a.g ORDER BY a.x DESC, a.id) AS next2, first_value(a.id) OVER (PARTITION BY a.g ORDER BY a.x DESC, a.id) AS first FROM public.a WHERE (a.x > 0)",
    );
    assert!(t.full_from_tree && t.expanded_rows());
    assert_eq!(t.output_names, ["id", "rn", "prev", "next2", "first"]);
    // Layout: a [id, x, g] 0-2. Equal arrays are computed once (id twice, x twice); lag and lead
    // expand shifted arrays.
    assert_tree(
        &t.root,
        "
        Project #4; #10; #8; #9; #3[1]
          Expand unnest((#0), (#1), (#2), (#3), ((pg_catalog.array_cat(pg_catalog.array_fill(#1[0], ARRAY[LEAST(1, pg_catalog.cardinality(#1))]), #1))[1:pg_catalog.cardinality(#1)]), (#2[3:])) WITH ORDINALITY (7)
            Project #1; #2; #2; #1
              Aggregate group [#2] agg [pg_catalog.array_agg(#0 ORDER BY #1 DESC, #0, ROW(#0, #1, #1, #0)::TEXT); pg_catalog.array_agg(#1 ORDER BY #1 DESC, #0, ROW(#0, #1, #1, #0)::TEXT)]
                Filter (#1 > 0)
                  Scan public.a [id, x, g]
        ",
    );
}

#[test]
fn ranks_come_from_the_order_keys_of_each_partition() {
    let t = tree(
        "SELECT a.id, rank() OVER (PARTITION BY a.g ORDER BY a.x DESC) AS r, dense_rank() OVER (PARTITION BY a.g ORDER BY a.x DESC) AS d, percent_rank() OVER (PARTITION BY a.g ORDER BY a.x DESC) AS p, cume_dist() OVER (PARTITION BY a.g ORDER BY a.x DESC) AS c, ntile(3) OVER (PARTITION BY a.g ORDER BY a.x DESC) AS t FROM public.a",
    );
    assert!(t.full_from_tree && t.expanded_rows());
    assert_eq!(t.output_names, ["id", "r", "d", "p", "c", "t"]);
    // Layout: a [id, x, g] 0-2. The keys (#1 below: ROW(x) per row, in the window's order) are not
    // expanded; the three kinds of ranks are, each once: rank() and percent_rank() share the first
    // peer's place.
    assert_tree(
        &t.root,
        "
        Project #2; #3; #4; (CASE WHEN pg_catalog.cardinality(#0) > 1 THEN (#3 - 1)::FLOAT8 / (pg_catalog.cardinality(#0) - 1)::FLOAT8 ELSE 0::FLOAT8 END); (#5::FLOAT8 / pg_catalog.cardinality(#0)::FLOAT8); (CASE WHEN #6 <= (pg_catalog.cardinality(#0) % 3) * ((pg_catalog.cardinality(#0) / 3) + 1) THEN (#6 - 1) / ((pg_catalog.cardinality(#0) / 3) + 1) + 1 ELSE (pg_catalog.cardinality(#0) % 3) + (#6 - 1 - (pg_catalog.cardinality(#0) % 3) * ((pg_catalog.cardinality(#0) / 3) + 1)) / (pg_catalog.cardinality(#0) / 3) + 1 END)::INTEGER
          Expand unnest((#0), (pgtrickle._window_ranks(#1, 'r')), (pgtrickle._window_ranks(#1, 'd')), (pgtrickle._window_ranks(#1, 'e'))) WITH ORDINALITY (5)
            Project #1; #2
              Aggregate group [#2] agg [pg_catalog.array_agg(#0 ORDER BY #1 DESC, ROW(#0)::TEXT); pg_catalog.array_agg(ROW(#1) ORDER BY #1 DESC, ROW(#0)::TEXT)]
                Scan public.a [id, x, g]
        ",
    );
    // Casts to integer types are looked through; a qualified built-in is the built-in.
    let t = tree("SELECT a.id, pg_catalog.ntile(3::bigint) OVER (PARTITION BY a.g ORDER BY a.x) AS t FROM public.a");
    assert!(super::show(&t.root).contains("% 3"));
    // Without ORDER BY every row is a peer of every other.
    let t = tree("SELECT a.id, rank() OVER (PARTITION BY a.g) AS r FROM public.a");
    assert!(super::show(&t.root).contains("pg_catalog.array_agg(ROW(true) ORDER BY ROW(#0)::TEXT)"));
}

#[test]
fn aggregates_over_whole_partitions() {
    let t = tree(
        "SELECT a.id, a.g, sum(a.x) OVER (PARTITION BY a.g) AS total, count(*) OVER (PARTITION BY a.g) AS n FROM public.a",
    );
    assert!(t.expanded_rows());
    assert_eq!(t.output_names, ["id", "g", "total", "n"]);
    assert_tree(
        &t.root,
        "
        Project #4; #5; #2; #3
          Expand unnest((#0), (#1)) WITH ORDINALITY (3)
            Project #1; #2; #3; #4
              Aggregate group [#2] agg [pg_catalog.array_agg(#0 ORDER BY ROW(#0, #2)::TEXT); pg_catalog.array_agg(#2 ORDER BY ROW(#0, #2)::TEXT); sum(#1); count(*)]
                Scan public.a [id, x, g]
        ",
    );
    // Only aggregates: one element per row still expands the partition into its rows.
    let t = tree("SELECT count(*) OVER (PARTITION BY a.g) AS n FROM public.a");
    assert!(super::show(&t.root).contains("pg_catalog.array_agg(true"));
    assert!(!tree("SELECT a.g FROM public.a").expanded_rows());
}

/// The first rows of each partition, in one query: the window in a subquery in FROM, a CTE or a
/// view is expanded as at the top, and the query filters the expansion.
#[test]
fn windows_in_subqueries_ctes_and_views() {
    let t = tree(
        "SELECT s.id, s.rn FROM ( SELECT a.id, row_number() OVER (PARTITION BY a.g ORDER BY a.x DESC) AS rn FROM public.a) s WHERE (s.rn <= 3)",
    );
    assert!(t.full_from_tree && t.expanded_rows());
    assert_eq!(t.output_names, ["id", "rn"]);
    assert_eq!(
        t.collected_subqueries,
        [CollectedSubquery {
            query: "SELECT * FROM (SELECT a.id, row_number() OVER (PARTITION BY a.g ORDER BY a.x DESC) AS rn FROM public.a) AS pgt_collected".into(),
            expanded: true,
        }]
    );
    assert_tree(
        &t.root,
        "
        Project #0; #1
          Filter (#1 <= 3)
            Project #1; #2
              Expand unnest((#0)) WITH ORDINALITY (2)
                Project #1
                  Aggregate group [#2] agg [pg_catalog.array_agg(#0 ORDER BY #1 DESC, ROW(#0)::TEXT)]
                    Scan public.a [id, x, g]
        ",
    );
    // A CTE's query is described with the CTEs it sees.
    let t = tree(
        "WITH c AS ( SELECT a.id, a.x, a.g FROM public.a), r AS ( SELECT c.id, rank() OVER (PARTITION BY c.g ORDER BY c.x) AS r FROM c) SELECT r.id FROM r WHERE (r.r = 1)",
    );
    assert!(t.full_from_tree && t.expanded_rows());
    assert_eq!(
        t.collected_subqueries,
        [CollectedSubquery {
            query: "WITH c AS (SELECT a.id, a.x, a.g FROM public.a) SELECT * FROM (SELECT c.id, rank() OVER (PARTITION BY c.g ORDER BY c.x) AS r FROM c) AS pgt_collected".into(),
            expanded: true,
        }]
    );
    // The same refusals as at the top.
    assert_eq!(
        unsupported("SELECT s.id FROM ( SELECT a.id, row_number() OVER (ORDER BY a.x) AS rn FROM public.a) s"),
        "a window function over the whole result (row_number() OVER () or without PARTITION BY: every change would recompute all of it; use FULL)"
    );
    assert!(tree("SELECT a.g FROM public.a")
        .collected_subqueries
        .is_empty());
    // The defining query's own window: its columns are described too.
    let top = "SELECT a.id, row_number() OVER (PARTITION BY a.g ORDER BY a.x) AS rn FROM public.a";
    assert_eq!(
        tree(top).collected_subqueries,
        [CollectedSubquery {
            query: format!("SELECT * FROM ({top}) AS pgt_collected"),
            expanded: true,
        }]
    );
    // A window in a subquery of a scalar subquery is that subquery's, not the select list's.
    let t = tree(
        "SELECT b.id, ( SELECT count(*) AS count FROM ( SELECT a.id, rank() OVER (PARTITION BY a.g ORDER BY a.x) AS r FROM public.a) s WHERE ((s.id = b.a_id) AND (s.r = 1))) AS firsts FROM public.b",
    );
    assert!(t.full_from_tree && t.expanded_rows());
    // A refill of ORDER BY ... LIMIT runs the defining query, which breaks ties its own way.
    assert_eq!(
        unsupported(
            "SELECT s.id, s.r FROM ( SELECT a.id, rank() OVER (PARTITION BY a.g ORDER BY a.x) AS r FROM public.a) s ORDER BY s.r, s.id LIMIT 3"
        ),
        "ORDER BY ... LIMIT over a subquery, CTE or view with DISTINCT ON or window functions"
    );
}

#[test]
fn what_is_refused_and_why() {
    for (sql, why) in [
        (
            "SELECT a.id, row_number() OVER (ORDER BY a.id) AS rn FROM public.a",
            "a window function over the whole result",
        ),
        (
            "SELECT a.id, nth_value(a.x, 2) OVER (PARTITION BY a.g ORDER BY a.x) AS r FROM public.a",
            "window function nth_value()",
        ),
        (
            "SELECT a.id, ntile(0) OVER (PARTITION BY a.g ORDER BY a.x) AS t FROM public.a",
            "ntile() with an argument that is not a positive integer constant",
        ),
        (
            "SELECT a.id, ntile(a.x) OVER (PARTITION BY a.g ORDER BY a.x) AS t FROM public.a",
            "ntile() with an argument that is not a positive integer constant",
        ),
        // 7::boolean::int is 1: only casts to integer types are looked through.
        (
            "SELECT a.id, ntile(7::boolean::int) OVER (PARTITION BY a.g ORDER BY a.x) AS t FROM public.a",
            "ntile() with an argument that is not a positive integer constant",
        ),
        (
            "SELECT a.id, lag(a.x, 2::boolean::int) OVER (PARTITION BY a.g ORDER BY a.x) AS t FROM public.a",
            "lag() with an offset that is not a non-negative integer constant",
        ),
        // A user's function of a window function's name is not that window function.
        (
            "SELECT a.id, public.ntile(3) OVER (PARTITION BY a.g ORDER BY a.x) AS t FROM public.a",
            "window function public.ntile() (only PostgreSQL's own",
        ),
        (
            "SELECT a.id, public.lag(a.x) OVER (PARTITION BY a.g ORDER BY a.x) AS t FROM public.a",
            "window function public.lag() (only PostgreSQL's own",
        ),
        (
            "SELECT a.id, rank() OVER (PARTITION BY a.g ORDER BY a.x) AS r, row_number() OVER (PARTITION BY a.g ORDER BY a.id) AS n FROM public.a",
            "windows with different ORDER BY in one query",
        ),
        (
            "SELECT a.id, sum(a.x) OVER (PARTITION BY a.g ORDER BY a.id) AS running FROM public.a",
            "a running aggregate (sum() OVER (... ORDER BY ...))",
        ),
        (
            "SELECT a.id, (row_number() OVER (PARTITION BY a.g ORDER BY a.id) - 1) AS r0 FROM public.a",
            "a window function inside an expression",
        ),
        (
            "SELECT a.id, COALESCE(lag(a.x) OVER (PARTITION BY a.g ORDER BY a.id), 0) AS p FROM public.a",
            "a window function inside an expression",
        ),
        (
            "SELECT a.id, row_number() OVER (PARTITION BY a.g ORDER BY a.id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS rn FROM public.a",
            "a window frame clause",
        ),
        (
            "SELECT a.id, row_number() OVER (PARTITION BY a.g ORDER BY a.id) AS rn, count(*) OVER (PARTITION BY a.x) AS n FROM public.a",
            "windows with different PARTITION BY in one query",
        ),
        (
            "SELECT a.id, row_number() OVER (PARTITION BY a.g ORDER BY a.id) AS rn, lag(a.x) OVER (PARTITION BY a.g ORDER BY a.x) AS p FROM public.a",
            "windows with different ORDER BY in one query",
        ),
        (
            "SELECT a.id, lag(a.x, 1, 0) OVER (PARTITION BY a.g ORDER BY a.id) AS p FROM public.a",
            "lag() with a default value",
        ),
        (
            "SELECT a.id, row_number() OVER (PARTITION BY 1 ORDER BY a.id) AS rn FROM public.a",
            "a window function over the whole result",
        ),
        (
            "SELECT a.id, string_agg(a.x, ',') OVER (PARTITION BY a.g) AS xs FROM public.a",
            "string_agg() over a partition",
        ),
        (
            "SELECT a.id, (SELECT max(b.y) FROM public.b WHERE (b.a_id = a.id)) AS m, row_number() OVER (PARTITION BY a.g ORDER BY a.id) AS rn FROM public.a",
            "window functions with a subquery in the select list",
        ),
        (
            "SELECT a.id, row_number() OVER (PARTITION BY (SELECT 1) ORDER BY a.id) AS rn FROM public.a",
            "a subquery in row_number()'s arguments, PARTITION BY or ORDER BY",
        ),
        (
            "SELECT a.id, lag(a.x, a.id) OVER (PARTITION BY a.g ORDER BY a.id) AS p FROM public.a",
            "lag() with an offset that is not a non-negative integer constant",
        ),
        (
            "SELECT a.id, row_number() OVER w AS rn FROM public.a WINDOW w AS (PARTITION BY a.g ORDER BY a.id)",
            "a named window",
        ),
        (
            "SELECT a.id, row_number() OVER (PARTITION BY a.g ORDER BY a.id) AS rn FROM public.a ORDER BY a.id LIMIT 3",
            "window functions with LIMIT or OFFSET",
        ),
        (
            "SELECT a.g, count(*) AS n, row_number() OVER (PARTITION BY a.g ORDER BY a.g) AS rn FROM public.a GROUP BY a.g",
            "window functions over a grouped or DISTINCT query",
        ),
    ] {
        let message = unsupported(sql);
        assert!(message.starts_with(why), "{sql}: {message}");
    }
}

#[test]
fn offsets_written_with_casts_or_past_any_partition() {
    // PostgreSQL prints `lag(x, 1::smallint)` with two casts; an offset past any array is clamped.
    let t = tree(
        "SELECT a.id, lag(a.x, ((1)::smallint)::integer) OVER (PARTITION BY a.g ORDER BY a.id) AS p, lead(a.x, 2147483647) OVER (PARTITION BY a.g ORDER BY a.id) AS n FROM public.a",
    );
    let shown = super::show(&t.root);
    assert!(shown.contains("ARRAY[LEAST(1, "), "{shown}");
    assert!(shown.contains("[2147483647:]"), "{shown}");
}
