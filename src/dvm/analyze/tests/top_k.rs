//! A top-level ORDER BY ... LIMIT becomes `OpTree::top_k` over output positions; the rest of the
//! query is analysed as if it had neither.

use super::{assert_tree, tree};
use crate::dvm::optree::{SortKey, TopK};

fn key(column: usize, descending: bool, nulls_first: Option<bool>) -> SortKey {
    SortKey {
        column,
        descending,
        nulls_first,
    }
}

#[test]
fn order_by_items_become_output_positions_with_their_direction() {
    let t = tree(
        "SELECT a.g, sum(a.x) AS s FROM public.a GROUP BY a.g ORDER BY (sum(a.x)) DESC NULLS LAST, a.g LIMIT 3",
    );
    assert_eq!(
        t.top_k,
        Some(TopK {
            order: vec![key(1, true, Some(false)), key(0, false, None)],
            limit: 3,
            offset: 0
        })
    );
    assert_tree(
        &t.root,
        "
        Project #0; #1
          Aggregate group [#1] agg [sum(#0)]
            Scan public.a [x, g]
        ",
    );
}

#[test]
fn set_operations_order_by_position() {
    let t = tree("SELECT a.id, a.x FROM public.a UNION ALL SELECT d.id, d.x FROM public.d ORDER BY 2 DESC, 1 LIMIT 4");
    assert_eq!(
        t.top_k,
        Some(TopK {
            order: vec![key(1, true, None), key(0, false, None)],
            limit: 4,
            offset: 0
        })
    );
}

#[test]
fn expressions_match_the_select_list_and_limit_zero_is_kept() {
    let t = tree(
        "SELECT a.id, (a.x * 2) AS w FROM public.a ORDER BY (a.x * 2) NULLS FIRST, a.id LIMIT 0",
    );
    assert_eq!(
        t.top_k,
        Some(TopK {
            order: vec![key(1, false, Some(true)), key(0, false, None)],
            limit: 0,
            offset: 0
        })
    );
}

#[test]
fn without_limit_there_is_no_top_k() {
    assert_eq!(tree("SELECT a.x FROM public.a ORDER BY a.x").top_k, None);
    assert_eq!(
        tree("SELECT a.x FROM public.a ORDER BY a.x LIMIT ALL").top_k,
        None
    );
}

#[test]
fn a_constant_offset_is_kept_with_the_limit() {
    for sql in [
        "SELECT a.id, a.x FROM public.a ORDER BY a.x DESC, a.id LIMIT 5 OFFSET 10",
        "SELECT a.id, a.x FROM public.a ORDER BY a.x DESC, a.id OFFSET 10 LIMIT 5",
    ] {
        assert_eq!(
            tree(sql).top_k,
            Some(TopK {
                order: vec![key(1, true, None), key(0, false, None)],
                limit: 5,
                offset: 10
            }),
            "{sql}"
        );
    }
}
