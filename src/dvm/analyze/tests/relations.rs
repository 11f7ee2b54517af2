//! FROM items other than plain tables (CTEs, views, subqueries), naming, set operations, and
//! resolution errors.

use super::{analyze, assert_tree, error, names, tree, AnalyzeError, Stub};
use crate::dvm::optree::TableRef;

#[test]
fn ctes_can_use_earlier_ctes_and_unused_ones_are_kept() {
    let t = tree(
        " WITH t1 AS ( SELECT a.id, a.x FROM public.a), t2(k, v) AS ( SELECT t1.id, (t1.x * 2) FROM t1), unused AS ( SELECT b.y FROM public.b)
 SELECT t2.k, t2.v FROM t2 WHERE (t2.v > 1)",
    );
    assert_eq!(t.ctes.len(), 3);
    assert_tree(
        &t.ctes[1],
        "
        Project #0; (#1 * 2)
          CteRef 0 (2)
        ",
    );
    assert_tree(
        &t.root,
        "
        Project #0; #1
          Filter (#1 > 1)
            CteRef 1 (2)
        ",
    );
    // Every table read, CTE bodies included.
    let tables: Vec<TableRef> = t.tables();
    assert_eq!(
        tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
}

#[test]
fn a_cte_used_in_a_subquery_and_shadowed_by_an_inner_with() {
    let t = tree(
        " WITH t AS ( SELECT a.x FROM public.a)
 SELECT s.x FROM ( WITH t AS ( SELECT b.y AS x FROM public.b) SELECT t.x FROM t) s, t t_outer WHERE (s.x = t_outer.x)",
    );
    assert_eq!(t.ctes.len(), 2);
    assert_tree(
        &t.root,
        "
        Project #0
          InnerJoin (#0 = #1)
            Project #0
              CteRef 1 (1)
            CteRef 0 (1)
        ",
    );
}

#[test]
fn a_view_is_expanded_in_place_under_its_alias() {
    let t = tree("SELECT w.x FROM public.v w WHERE (w.id > 1)");
    assert_tree(
        &t.root,
        "
        Project #1
          Filter (#0 > 1)
            Project #0; #1
              Filter (#1 > 0)
                Scan public.a [id, x]
        ",
    );
    let t = tree("SELECT vv.vid FROM public.vv");
    assert_tree(
        &t.root,
        "
        Project #0
          Project #0
            Project #0; #1
              Filter (#1 > 0)
                Scan public.a [id, x]
        ",
    );
}

#[test]
fn a_view_cycle_is_an_error_not_a_crash() {
    assert!(matches!(
        error("SELECT c.n FROM public.cycle c"),
        AnalyzeError::Invalid(_)
    ));
}

#[test]
fn quoted_identifiers_keep_case_spaces_and_quotes() {
    let t = tree(
        r#"SELECT ol."Amount$", ol."Qty ""x""" AS "Weird ""Name""" FROM public."Order Lines" ol WHERE (ol."Line Id" > 0)"#,
    );
    assert_eq!(names(&t), ["Amount$", "Weird \"Name\""]);
    assert_tree(
        &t.root,
        r#"
        Project #1; #2
          Filter (#0 > 0)
            Scan public.Order Lines [Line Id, Amount$, Qty "x"]
        "#,
    );
    let t = tree(r#"SELECT "Order Lines"."Amount$" FROM public."Order Lines""#);
    assert_eq!(names(&t), ["Amount$"]);
    assert_tree(
        &t.root,
        "
        Project #0
          Scan public.Order Lines [Amount$]
        ",
    );
}

#[test]
fn alias_column_lists_rename_columns() {
    let t = tree("SELECT t.p, t.g FROM public.a t(p, q) WHERE (t.q > 1)");
    assert_eq!(names(&t), ["p", "g"]);
    assert_tree(
        &t.root,
        "
        Project #0; #2
          Filter (#1 > 1)
            Scan public.a [id, x, g]
        ",
    );
}

#[test]
fn subqueries_in_from_expose_their_select_list_names() {
    let t = tree(
        "SELECT s.total, s.g FROM ( SELECT a.g, sum(a.x) AS total FROM public.a GROUP BY a.g) s WHERE (s.total > 10)",
    );
    assert_tree(
        &t.root,
        "
        Project #1; #0
          Filter (#1 > 10)
            Project #0; #1
              Aggregate group [#1] agg [sum(#0)]
                Scan public.a [x, g]
        ",
    );
}

#[test]
fn union_all_flattens_and_union_distincts_once() {
    let t = tree("SELECT a.x FROM public.a UNION ALL SELECT b.a_id FROM public.b UNION ALL SELECT c.z FROM public.c");
    assert_tree(
        &t.root,
        "
        UnionAll
          Project #0
            Scan public.a [x]
          Project #0
            Scan public.b [a_id]
          Project #0
            Scan public.c [z]
        ",
    );
    let t = tree(
        "SELECT a.x FROM public.a UNION SELECT b.a_id FROM public.b UNION SELECT c.z FROM public.c",
    );
    assert_tree(
        &t.root,
        "
        Distinct
          UnionAll
            Project #0
              Scan public.a [x]
            Project #0
              Scan public.b [a_id]
            Project #0
              Scan public.c [z]
        ",
    );
    // A UNION under a UNION ALL keeps its own Distinct.
    let t = tree("( SELECT a.x FROM public.a UNION SELECT b.a_id FROM public.b) UNION ALL SELECT c.z FROM public.c");
    assert_tree(
        &t.root,
        "
        UnionAll
          Distinct
            UnionAll
              Project #0
                Scan public.a [x]
              Project #0
                Scan public.b [a_id]
          Project #0
            Scan public.c [z]
        ",
    );
}

#[test]
fn order_by_and_limit_all_change_nothing() {
    let t = tree("SELECT a.x FROM public.a ORDER BY a.g DESC LIMIT ALL");
    assert_tree(
        &t.root,
        "
        Project #0
          Scan public.a [x]
        ",
    );
}

#[test]
fn resolution_errors_are_invalid() {
    let invalid = |sql: &str| match analyze(sql, &Stub) {
        Err(AnalyzeError::Invalid(why)) => why,
        other => panic!("expected Invalid, got {other:?}"),
    };
    assert_eq!(
        invalid("SELECT n.x FROM public.nope n"),
        "relation public.nope does not exist"
    );
    assert_eq!(
        invalid("SELECT a.nope FROM public.a"),
        "column a.nope does not exist"
    );
    assert_eq!(
        invalid("SELECT z.x FROM public.a"),
        "missing FROM-clause entry for z (in z.x)"
    );
    assert_eq!(
        invalid("SELECT a.x FROM public.a UNION SELECT b.y, b.id FROM public.b"),
        "set operation inputs with different numbers of columns"
    );
    assert_eq!(
        invalid("SELECT 1; SELECT 2"),
        "expected a single SELECT statement"
    );
    assert!(invalid("SELECT a.x FROM public.a WHERE").starts_with("could not parse the query"));
    assert_eq!(
        invalid("DELETE FROM public.a"),
        "expected a single SELECT statement"
    );
}
