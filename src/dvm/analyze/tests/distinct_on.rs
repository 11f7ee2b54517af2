//! `SELECT DISTINCT ON`: read as the grouped query whose groups keep their first row.
//! Table columns in the stub catalog: a [id, x, g], b [id, y, a_id].

use super::{assert_tree, error, tree, unsupported};
use crate::dvm::analyze::AnalyzeError;
use crate::dvm::optree::CollectedSubquery;

#[test]
fn each_item_comes_from_the_first_row_by_the_order_ties_broken_by_the_row() {
    let t = tree(
        "SELECT DISTINCT ON (a.g) a.g, a.id, (a.x + 1) AS x1 FROM public.a WHERE (a.x > 0) ORDER BY a.g, a.x DESC NULLS LAST, a.id",
    );
    assert!(t.full_from_tree);
    assert_eq!(t.output_names, ["g", "id", "x1"]);
    // Layout: a [id, x, g] 0-2.
    assert_tree(
        &t.root,
        "
        Project (#1)[1]; (#2)[1]; (#3)[1]
          Aggregate group [#2] agg [pg_catalog.array_agg(#2 ORDER BY #1 DESC NULLS LAST, #0, ROW(#2, #0, (#1 + 1))::TEXT); pg_catalog.array_agg(#0 ORDER BY #1 DESC NULLS LAST, #0, ROW(#2, #0, (#1 + 1))::TEXT); pg_catalog.array_agg((#1 + 1) ORDER BY #1 DESC NULLS LAST, #0, ROW(#2, #0, (#1 + 1))::TEXT)]
            Filter (#1 > 0)
              Scan public.a [id, x, g]
        ",
    );
}

#[test]
fn order_by_positions_and_keys_anywhere_in_it() {
    let by_position = tree("SELECT DISTINCT ON (a.g) a.g, a.x FROM public.a ORDER BY 1, 2 DESC");
    let by_expr = tree("SELECT DISTINCT ON (a.g) a.g, a.x FROM public.a ORDER BY a.g, a.x DESC");
    assert_eq!(by_position.root, by_expr.root);
    // Without an order beyond the keys, the row is chosen by how it prints.
    let unordered = tree("SELECT DISTINCT ON (a.g) a.g, a.x FROM public.a");
    assert_tree(
        &unordered.root,
        "
        Project (#1)[1]; (#2)[1]
          Aggregate group [#1] agg [pg_catalog.array_agg(#1 ORDER BY ROW(#1, #0)::TEXT); pg_catalog.array_agg(#0 ORDER BY ROW(#1, #0)::TEXT)]
            Scan public.a [x, g]
        ",
    );
}

#[test]
fn in_set_operation_branches_subqueries_and_ctes() {
    let t = tree(
        "SELECT DISTINCT ON (a.g) a.g, a.id FROM public.a UNION ALL (SELECT DISTINCT ON (b.y) b.y, b.id FROM public.b ORDER BY b.y, b.id DESC)",
    );
    assert!(t.full_from_tree);
    assert_eq!(super::show(&t.root).matches("Aggregate").count(), 2);
    assert!(!tree("SELECT a.g FROM public.a").full_from_tree);
    // In a subquery in FROM (a CTE, a view): read the same way, its columns described apart.
    let t = tree(
        "SELECT s.g, b.y FROM (SELECT DISTINCT ON (a.g) a.g, a.id FROM public.a ORDER BY a.g, a.id) s JOIN public.b ON (b.id = s.id)",
    );
    assert!(t.full_from_tree && !t.expanded_rows());
    assert_eq!(
        t.collected_subqueries,
        [CollectedSubquery {
            query: "SELECT * FROM (SELECT DISTINCT ON (a.g) a.g, a.id FROM public.a ORDER BY a.g, a.id) AS pgt_collected".into(),
            expanded: false,
        }]
    );
    assert_tree(
        &t.root,
        "
        Project #0; #3
          InnerJoin (#2 = #1)
            Project (#1)[1]; (#2)[1]
              Aggregate group [#1] agg [pg_catalog.array_agg(#1 ORDER BY #0, ROW(#1, #0)::TEXT); pg_catalog.array_agg(#0 ORDER BY #0, ROW(#1, #0)::TEXT)]
                Scan public.a [id, g]
            Scan public.b [id, y]
        ",
    );
    // An aggregate inside a subquery of the select list is that subquery's: the subquery is what
    // is refused.
    assert_eq!(
        unsupported(
            "SELECT DISTINCT ON (a.g) a.g, ( SELECT count(*) AS count FROM public.b) AS m FROM public.a ORDER BY a.g"
        ),
        "DISTINCT ON with a subquery in the select list"
    );
    // In a subquery of an expression it is refused.
    assert_eq!(
        unsupported(
            "SELECT b.y FROM public.b WHERE (b.id IN ( SELECT DISTINCT ON (a.g) a.id FROM public.a ORDER BY a.g, a.id))",
        ),
        "DISTINCT ON in a subquery of an expression (DISTINCT ON is read in the SELECT of the query, of a subquery in FROM, of a CTE or of a view)"
    );
    // PostgreSQL prints an expression key in parentheses.
    let t = tree(
        "SELECT DISTINCT ON ((a.g + 1)) (a.g + 1) AS g1, a.x FROM public.a ORDER BY (a.g + 1), a.x",
    );
    assert_eq!(t.output_names, ["g1", "x"]);
    // A subscripted column is a column.
    let t =
        tree("SELECT DISTINCT ON (a.g) a.g, a.x[1] AS x1 FROM public.a ORDER BY a.g, a.x[1] DESC");
    assert_eq!(t.output_names, ["g", "x1"]);
    let shown = super::show(&t.root);
    assert!(
        shown.contains("pg_catalog.array_agg(#0[1] ORDER BY #0[1] DESC"),
        "{shown}"
    );
}

#[test]
fn what_is_refused_and_why() {
    assert_eq!(
        unsupported("SELECT DISTINCT ON (a.g) a.id FROM public.a ORDER BY a.g, a.id"),
        "DISTINCT ON (a.g) without a.g in the select list"
    );
    assert_eq!(
        unsupported("SELECT DISTINCT ON (a.g) a.g, a.id FROM public.a ORDER BY a.g, a.id LIMIT 3"),
        "DISTINCT ON with LIMIT or OFFSET"
    );
    for sql in [
        "SELECT DISTINCT ON (a.g) a.g, count(*) AS n FROM public.a GROUP BY a.g, a.x ORDER BY a.g",
        "SELECT DISTINCT ON (a.g) a.g, sum(a.x) AS s FROM public.a GROUP BY a.g",
        "SELECT DISTINCT ON (a.g) a.g, row_number() OVER (ORDER BY a.id) AS r FROM public.a",
    ] {
        assert_eq!(
            unsupported(sql),
            "DISTINCT ON over aggregates or window functions",
            "{sql}"
        );
    }
    assert_eq!(
        unsupported("SELECT DISTINCT ON (a.g) a.g, (SELECT b.y FROM public.b WHERE b.id = a.id) AS y FROM public.a ORDER BY a.g, a.x"),
        "DISTINCT ON with a subquery in the select list"
    );
    // In a subquery too, named as what they are (until 2026-12-07: "in a UNION branch", and an
    // aggregate's argument).
    assert_eq!(
        unsupported("SELECT s.x FROM (SELECT DISTINCT ON (a.g) a.x, a.g FROM public.a ORDER BY a.g, rank() OVER (ORDER BY a.x)) s"),
        "DISTINCT ON ordered by a window function"
    );
    assert_eq!(
        unsupported("SELECT s.x FROM (SELECT DISTINCT ON (a.g) a.x, a.g FROM public.a ORDER BY a.g, (SELECT max(b.y) FROM public.b WHERE b.a_id = a.id)) s"),
        "DISTINCT ON ordered by a subquery"
    );
    assert!(matches!(
        error("SELECT DISTINCT ON (a.g) a.g, a.x FROM public.a ORDER BY 3"),
        AnalyzeError::Invalid(_)
    ));
}
