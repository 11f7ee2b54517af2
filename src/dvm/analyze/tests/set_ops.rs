//! INTERSECT and EXCEPT [ALL]: read as the rows of both sides counted per distinct row.
//! Table columns in the stub catalog: a [id, x, g], b [id, y, a_id].

use super::{assert_tree, tree};

#[test]
fn except_keeps_the_groups_only_the_left_side_has() {
    let t = tree("SELECT a.x, a.g AS grp FROM public.a EXCEPT SELECT b.a_id, b.y FROM public.b");
    assert_eq!(t.output_names, ["x", "grp"]);
    assert_tree(
        &t.root,
        "
        Project #0; #1
          Filter (#2 > 0) AND (#3 = 0)
            Project #0; #1; #2; #3
              Aggregate group [#0; #1] agg [count(*) FILTER (WHERE #2 = 1); count(*) FILTER (WHERE #2 = 2)]
                UnionAll
                  Project #0; #1; 1
                    Project #0; #1
                      Scan public.a [x, g]
                  Project #0; #1; 2
                    Project #1; #0
                      Scan public.b [y, a_id]
        ",
    );
}

#[test]
fn the_all_forms_keep_as_many_copies_as_the_counts_say() {
    let except_all = tree("SELECT a.x FROM public.a EXCEPT ALL SELECT b.a_id FROM public.b");
    let intersect_all = tree("SELECT a.x FROM public.a INTERSECT ALL SELECT b.a_id FROM public.b");
    let show = |t: &crate::dvm::optree::OpTree| super::show(&t.root);
    assert!(
        show(&except_all).contains("Expand pg_catalog.generate_series((1), (#1 - #2)) (1)"),
        "{}",
        show(&except_all)
    );
    assert!(
        show(&intersect_all)
            .contains("Expand pg_catalog.generate_series((1), (LEAST(#1, #2))) (1)"),
        "{}",
        show(&intersect_all)
    );
    let intersect = tree("SELECT a.x FROM public.a INTERSECT SELECT b.a_id FROM public.b");
    assert!(
        show(&intersect).contains("Filter (#1 > 0) AND (#2 > 0)"),
        "{}",
        show(&intersect)
    );
}

#[test]
fn chains_parentheses_subqueries_and_a_union_beside_them() {
    // `a EXCEPT b EXCEPT a` is `(a EXCEPT b) EXCEPT a`; a union inside is kept.
    let t = tree(
        "SELECT a.x FROM public.a EXCEPT SELECT b.y FROM public.b EXCEPT (SELECT b.a_id FROM public.b UNION SELECT a.g FROM public.a)",
    );
    let shown = super::show(&t.root);
    assert_eq!(shown.matches("Aggregate").count(), 2, "{shown}");
    assert!(shown.contains("Distinct"), "{shown}");
    let sub = tree(
        "SELECT s.x, b.y FROM (SELECT a.x FROM public.a INTERSECT SELECT b.a_id FROM public.b) s JOIN public.b ON (b.id = s.x)",
    );
    assert!(super::show(&sub.root).contains("Aggregate"));
}
