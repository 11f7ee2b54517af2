//! Predicate placement: WHERE conjuncts over several inputs become join conditions, conjuncts over
//! one input filter it, and outer joins, subqueries and constants stay where they were.
//! Table columns in the stub catalog: a [id, x, g], b [id, y, a_id], c [id, b_id, z], d [id, x, w].

use super::{assert_tree, tree};
use crate::dvm::diff::{delta_query, BatchTest, CdcContext, DiffContext};
use crate::dvm::optree::{JoinKind, Node};
use crate::dvm::sql::QualifiedName;

/// Inner joins without a condition anywhere in the tree.
fn cross_joins(node: &Node) -> usize {
    let here = usize::from(matches!(
        node,
        Node::Join {
            kind: JoinKind::Inner,
            on: None,
            ..
        }
    ));
    here + node.children().into_iter().map(cross_joins).sum::<usize>()
}

#[test]
fn a_four_table_comma_join_becomes_a_chain_of_joins_with_conditions() {
    let t = tree(
        "SELECT a.g, b.y, c.z, d.w FROM public.a, public.b, public.c, public.d
  WHERE ((b.a_id = a.id) AND (c.b_id = b.id) AND (d.id = c.id) AND (a.x > 5))",
    );
    // Layout: a [id, x, g] 0-2, b [id, y, a_id] 3-5, c [id, b_id, z] 6-8, d [id, w] 9-10.
    assert_tree(
        &t.root,
        "
        Project #2; #4; #8; #10
          InnerJoin (#9 = #6)
            InnerJoin (#7 = #3)
              InnerJoin (#5 = #0)
                Filter (#1 > 5)
                  Scan public.a [id, x, g]
                Scan public.b [id, y, a_id]
              Scan public.c [id, b_id, z]
            Scan public.d [id, w]
        ",
    );
    assert_eq!(cross_joins(&t.root), 0);
}

#[test]
fn single_input_conjuncts_filter_their_input_with_its_own_positions() {
    let t = tree(
        "SELECT a.g, b.y FROM public.a, public.b WHERE ((b.a_id = a.id) AND (b.y > (0)::numeric) AND (a.x < b.y) AND (b.id <> 7))",
    );
    // Layout: a [id, x, g] 0-2, b [id, y, a_id] 3-5. b's filters are over b's own columns and
    // land on b in the order written.
    assert_tree(
        &t.root,
        "
        Project #2; #4
          InnerJoin (#5 = #0) AND (#1 < #4)
            Scan public.a [id, x, g]
            Filter (#1 > (0)::NUMERIC) AND (#0 <> 7)
              Scan public.b [id, y, a_id]
        ",
    );
}

#[test]
fn explicit_inner_joins_take_where_conjuncts_too() {
    let t = tree(
        "SELECT a.x, c.z FROM (public.a JOIN public.b ON ((a.id = b.a_id))), public.c WHERE ((c.b_id = b.id) AND (c.z > 0))",
    );
    assert_tree(
        &t.root,
        "
        Project #1; #5
          InnerJoin (#4 = #2)
            InnerJoin ((#0 = #3))
              Scan public.a [id, x]
              Scan public.b [id, a_id]
            Filter (#1 > 0)
              Scan public.c [b_id, z]
        ",
    );
}

#[test]
fn an_inner_joins_own_conjuncts_move_like_where_conjuncts() {
    let t = tree(
        "SELECT a.x, c.z FROM ((public.a CROSS JOIN public.b) JOIN public.c ON (((a.id = b.a_id) AND (c.b_id = b.id) AND (c.z > 0))))",
    );
    assert_tree(
        &t.root,
        "
        Project #1; #5
          InnerJoin (#4 = #2)
            InnerJoin (#0 = #3)
              Scan public.a [id, x]
              Scan public.b [id, a_id]
            Filter (#1 > 0)
              Scan public.c [b_id, z]
        ",
    );
}

#[test]
fn a_conjunct_over_three_inputs_lands_on_the_join_that_covers_them() {
    let t = tree(
        "SELECT a.g, d.w FROM public.a, public.b, public.c, public.d
  WHERE ((b.a_id = a.id) AND (((a.x + b.y) + c.z) > 0) AND (d.id = c.id))",
    );
    // Layout: a [id, x, g] 0-2, b [y, a_id] 3-4, c [id, z] 5-6, d [id, w] 7-8.
    assert_tree(
        &t.root,
        "
        Project #2; #8
          InnerJoin (#7 = #5)
            InnerJoin (((#1 + #3) + #6) > 0)
              InnerJoin (#4 = #0)
                Scan public.a [id, x, g]
                Scan public.b [y, a_id]
              Scan public.c [id, z]
            Scan public.d [id, w]
        ",
    );
}

#[test]
fn inputs_joined_only_through_a_later_one_are_rebracketed_in_the_same_column_order() {
    // Written left-deep, a and b would be a cross join; joined through c they need none.
    let t = tree(
        "SELECT a.g, b.y FROM public.a, public.b, public.c WHERE ((a.x = c.z) AND (b.id = c.b_id))",
    );
    // Layout: a [x, g] 0-1, b [id, y] 2-3, c [b_id, z] 4-5: the same whatever the bracketing.
    assert_tree(
        &t.root,
        "
        Project #1; #3
          InnerJoin (#0 = #5)
            Scan public.a [x, g]
            InnerJoin (#0 = #2)
              Scan public.b [id, y]
              Scan public.c [b_id, z]
        ",
    );
    // A written order without cross joins is kept, even bracketed to the right.
    let t = tree(
        "SELECT a.g FROM (public.a JOIN (public.b JOIN public.c ON ((c.b_id = b.id))) ON ((b.a_id = a.id)))",
    );
    assert_tree(
        &t.root,
        "
        Project #1
          InnerJoin ((#3 = #0))
            Scan public.a [id, g]
            InnerJoin ((#2 = #0))
              Scan public.b [id, a_id]
              Scan public.c [b_id]
        ",
    );
}

#[test]
fn a_real_cartesian_product_stays_one() {
    let t = tree("SELECT a.g, b.y FROM public.a, public.b WHERE (a.x > 1)");
    assert_tree(
        &t.root,
        "
        Project #1; #2
          InnerJoin
            Filter (#0 > 1)
              Scan public.a [x, g]
            Scan public.b [y]
        ",
    );
}

#[test]
fn constants_stay_above_the_joins() {
    let t = tree("SELECT a.g FROM public.a, public.b WHERE (true AND (b.a_id = a.id) AND (1 < 2))");
    assert_tree(
        &t.root,
        "
        Project #1
          Filter true AND (1 < 2)
            InnerJoin (#2 = #0)
              Scan public.a [id, g]
              Scan public.b [a_id]
        ",
    );
    // `ON true` reads nothing: it stays on the top join of its cluster and joins nothing.
    let t =
        tree("SELECT a.g FROM (public.a JOIN public.b ON true), public.c WHERE (c.b_id = b.id)");
    assert_tree(
        &t.root,
        "
        Project #0
          InnerJoin (#2 = #1) AND true
            InnerJoin
              Scan public.a [g]
              Scan public.b [id]
            Scan public.c [b_id]
        ",
    );
}

#[test]
fn where_conjuncts_over_an_outer_join_filter_its_result() {
    // Even a conjunct over the preserved side stays above the outer join; nothing enters its ON.
    let t = tree(
        "SELECT a.g, c.z FROM (public.a LEFT JOIN public.b ON (((b.a_id = a.id) AND (b.y > (0)::numeric)))), public.c
  WHERE ((c.b_id = b.id) AND (b.y IS NULL) AND (a.x > 1))",
    );
    // Layout: a [id, x, g] 0-2, b [id, y, a_id] 3-5, c [b_id, z] 6-7.
    assert_tree(
        &t.root,
        "
        Project #2; #7
          InnerJoin (#6 = #3)
            Filter (#4 IS NULL) AND (#1 > 1)
              LeftJoin (((#5 = #0) AND (#4 > (0)::NUMERIC)))
                Scan public.a [id, x, g]
                Scan public.b [id, y, a_id]
            Scan public.c [b_id, z]
        ",
    );
    let t =
        tree("SELECT a.g FROM (public.a RIGHT JOIN public.b ON ((b.a_id = a.id))) WHERE (a.x > 1)");
    assert_tree(
        &t.root,
        "
        Project #2
          Filter (#1 > 1)
            RightJoin ((#3 = #0))
              Scan public.a [id, x, g]
              Scan public.b [a_id]
        ",
    );
}

#[test]
fn inner_joins_inside_an_outer_join_are_placed_on_their_own() {
    let t = tree(
        "SELECT a.g, c.z FROM (public.a LEFT JOIN (public.b CROSS JOIN public.c) ON ((b.a_id = a.id))) WHERE (c.b_id = b.id)",
    );
    // The WHERE conjunct reads the null-padded side: it must not join b and c inside.
    assert_tree(
        &t.root,
        "
        Project #1; #5
          Filter (#4 = #2)
            LeftJoin ((#3 = #0))
              Scan public.a [id, g]
              InnerJoin
                Scan public.b [id, a_id]
                Scan public.c [b_id, z]
        ",
    );
    let t = tree(
        "SELECT a.g, c.z FROM (public.a LEFT JOIN (public.b CROSS JOIN public.c) ON (((b.a_id = a.id) AND (c.b_id = b.id))))",
    );
    // An outer join's ON stays whole, ...
    assert_tree(
        &t.root,
        "
        Project #1; #5
          LeftJoin (((#3 = #0) AND (#4 = #2)))
            Scan public.a [id, g]
            InnerJoin
              Scan public.b [id, a_id]
              Scan public.c [b_id, z]
        ",
    );
    let t = tree(
        "SELECT a.g, c.z FROM (public.a LEFT JOIN (public.b JOIN public.c ON (((c.b_id = b.id) AND (c.z > 0)))) ON ((b.a_id = a.id)))",
    );
    // ... but the inner join's conjuncts are placed within it.
    assert_tree(
        &t.root,
        "
        Project #1; #5
          LeftJoin ((#3 = #0))
            Scan public.a [id, g]
            InnerJoin (#2 = #0)
              Scan public.b [id, a_id]
              Filter (#1 > 0)
                Scan public.c [b_id, z]
        ",
    );
}

#[test]
fn subqueries_in_from_are_filtered_from_above() {
    let t = tree(
        "SELECT s.x, b.y FROM ( SELECT DISTINCT a.x FROM public.a) s, public.b WHERE ((s.x = b.a_id) AND (s.x > 1))",
    );
    assert_tree(
        &t.root,
        "
        Project #0; #1
          InnerJoin (#0 = #2)
            Filter (#0 > 1)
              Distinct
                Project #0
                  Scan public.a [x]
            Scan public.b [y, a_id]
        ",
    );
}

#[test]
fn an_exists_subquery_places_its_own_conjuncts_too() {
    let t = tree(
        "SELECT a.id FROM public.a
  WHERE (EXISTS ( SELECT 1 FROM public.b, public.c WHERE ((c.b_id = b.id) AND (b.a_id = a.id) AND (c.z > 0))))",
    );
    // The right side is b [id, a_id] 0-1, c [b_id, z] 2-3; the correlated conjunct is the semi-join's.
    assert_tree(
        &t.root,
        "
        Project #0
          SemiJoin (#2 = #0)
            Scan public.a [id]
            InnerJoin (#2 = #0)
              Scan public.b [id, a_id]
              Filter (#1 > 0)
                Scan public.c [b_id, z]
        ",
    );
}

#[test]
fn the_delta_of_a_comma_join_has_no_join_without_a_condition() {
    let t = tree(
        "SELECT a.g, b.y, c.z FROM public.a, public.b, public.c WHERE ((b.a_id = a.id) AND (c.b_id = b.id) AND (a.x > 5))",
    );
    let mut ctx = DiffContext::new(CdcContext::for_refresh(
        [1, 2, 3].map(|r| {
            (
                r,
                QualifiedName::new("pgtrickle_changes", format!("changes_{r}")),
            )
        }),
        BatchTest::Visibility,
    ));
    let sql = delta_query(&t, &[], &mut ctx).unwrap().expect("a delta");
    assert!(!sql.contains("ON true"), "{sql}");
    assert!(sql.contains(" JOIN "), "{sql}");
}
