//! Join trees: positions in `on` are relative to each join's own inputs.

use super::{assert_tree, tree, unsupported};

#[test]
fn join_condition_positions_span_left_then_right() {
    let t = tree("SELECT a.x, b.y FROM (public.a JOIN public.b ON ((b.a_id = a.id)))");
    assert_tree(
        &t.root,
        "
        Project #1; #2
          InnerJoin ((#3 = #0))
            Scan public.a [id, x]
            Scan public.b [y, a_id]
        ",
    );
}

#[test]
fn three_way_join_on_the_left() {
    let t =
        tree("SELECT a.g, c.z FROM ((public.a JOIN public.b ON ((a.id = b.a_id))) JOIN public.c ON ((c.b_id = b.id)))");
    assert_tree(
        &t.root,
        "
        Project #1; #5
          InnerJoin ((#4 = #2))
            InnerJoin ((#0 = #3))
              Scan public.a [id, g]
              Scan public.b [id, a_id]
            Scan public.c [b_id, z]
        ",
    );
}

#[test]
fn a_join_nested_on_the_right_counts_from_its_own_first_column() {
    let t = tree(
        "SELECT a.g, c.z FROM (public.a LEFT JOIN (public.b JOIN public.c ON ((c.b_id = b.id))) ON ((a.id = b.a_id)))",
    );
    // Block layout: a [id, g] 0-1, b [id, a_id] 2-3, c [b_id, z] 4-5; the inner join starts at 2.
    assert_tree(
        &t.root,
        "
        Project #1; #5
          LeftJoin ((#0 = #3))
            Scan public.a [id, g]
            InnerJoin ((#2 = #0))
              Scan public.b [id, a_id]
              Scan public.c [b_id, z]
        ",
    );
}

#[test]
fn comma_and_cross_join_have_no_condition() {
    let t = tree("SELECT a.x, b.y, c.z FROM public.a, (public.b CROSS JOIN public.c)");
    assert_tree(
        &t.root,
        "
        Project #0; #1; #2
          InnerJoin
            Scan public.a [x]
            InnerJoin
              Scan public.b [y]
              Scan public.c [z]
        ",
    );
}

#[test]
fn inner_and_outer_keywords_are_accepted() {
    let t = tree(
        "SELECT a.x, b.y, d.w FROM ((public.a INNER JOIN public.b ON ((a.id = b.a_id))) LEFT OUTER JOIN public.d ON ((d.id = a.id)))",
    );
    assert_tree(
        &t.root,
        "
        Project #1; #2; #5
          LeftJoin ((#4 = #0))
            InnerJoin ((#0 = #3))
              Scan public.a [id, x]
              Scan public.b [y, a_id]
            Scan public.d [id, w]
        ",
    );
}

#[test]
fn right_join_using() {
    let t = tree("SELECT b.id, a.x FROM (public.a RIGHT JOIN public.b USING (id))");
    assert_tree(
        &t.root,
        "
        Project #2; #1
          RightJoin (#0 = #2)
            Scan public.a [id, x]
            Scan public.b [id]
        ",
    );
}

#[test]
fn using_several_columns_ands_the_equalities() {
    let t = tree("SELECT a.id, d.w FROM (public.a JOIN public.d USING (id, x))");
    assert_tree(
        &t.root,
        "
        Project #0; #4
          InnerJoin (#0 = #2) AND (#1 = #3)
            Scan public.a [id, x]
            Scan public.d [id, x, w]
        ",
    );
}

#[test]
fn a_later_using_compares_the_column_an_earlier_using_merged() {
    // After `a RIGHT JOIN b USING (id)` the merged id is b's (a's may be null-padded).
    let t = tree("SELECT b.id, d.w FROM ((public.a RIGHT JOIN public.b USING (id)) JOIN public.d USING (id))");
    assert_tree(
        &t.root,
        "
        Project #1; #3
          InnerJoin (#1 = #2)
            RightJoin (#0 = #1)
              Scan public.a [id]
              Scan public.b [id]
            Scan public.d [id, w]
        ",
    );
    let t = tree(
        "SELECT a.id FROM ((public.a LEFT JOIN public.b USING (id)) JOIN public.d USING (id))",
    );
    assert_tree(
        &t.root,
        "
        Project #0
          InnerJoin (#0 = #2)
            LeftJoin (#0 = #1)
              Scan public.a [id]
              Scan public.b [id]
            Scan public.d [id]
        ",
    );
}

#[test]
fn a_self_join_scans_the_table_twice_with_separate_columns() {
    let t = tree("SELECT a.x, a2.g FROM (public.a JOIN public.a a2 ON ((a2.id = a.id)))");
    assert_tree(
        &t.root,
        "
        Project #1; #3
          InnerJoin ((#2 = #0))
            Scan public.a [id, x]
            Scan public.a [id, g]
        ",
    );
}

#[test]
fn a_full_join_keeps_its_condition_and_filters_above_it() {
    // Both sides are null-padded: a WHERE conjunct over either side stays above the join.
    let t = tree("SELECT a.x, b.id FROM (public.a FULL JOIN public.b ON ((a.id = b.id))) WHERE (a.x > 1) AND (b.id IS NOT NULL)");
    assert_tree(
        &t.root,
        "
        Project #1; #2
          Filter (#1 > 1) AND (#2 IS NOT NULL)
            FullJoin ((#0 = #2))
              Scan public.a [id, x]
              Scan public.b [id]
        ",
    );
}

#[test]
fn unsupported_joins_are_named() {
    assert_eq!(
        unsupported("SELECT a.x FROM (public.a FULL JOIN public.b USING (id))"),
        "FULL JOIN ... USING (use ON)"
    );
    assert_eq!(
        unsupported("SELECT a.x FROM (public.a NATURAL JOIN public.b)"),
        "NATURAL JOIN"
    );
    assert_eq!(
        unsupported("SELECT a.x, s.y FROM public.a, LATERAL ( SELECT b.y FROM public.b WHERE (b.a_id = a.id)) s"),
        "LATERAL subquery"
    );
    assert_eq!(
        unsupported("SELECT j.x FROM (public.a JOIN public.b ON ((a.id = b.id))) j"),
        "alias on a parenthesised join"
    );
    assert_eq!(
        unsupported("SELECT a.x FROM (public.a JOIN public.b ON ((a.id = ( SELECT max(c.id) AS max FROM public.c))))"),
        "subquery in a JOIN condition"
    );
}
