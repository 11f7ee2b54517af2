//! Table functions and VALUES lists in FROM: each expands the rows before it (`Expand`), reading
//! their columns.
//! Table columns in the stub catalog: a [id, x, g], b [id, y, a_id].

use super::{assert_tree, tree};

#[test]
fn a_lateral_function_expands_the_items_before_it() {
    let t = tree("SELECT a.id, u.e FROM public.a, LATERAL pg_catalog.unnest(a.g) u(e)");
    // Layout: a [id, g] 0-1, u [e] 2.
    assert_tree(
        &t.root,
        "
        Project #0; #2
          Expand pg_catalog.unnest((#1)) (1)
            Scan public.a [id, g]
        ",
    );
}

#[test]
fn conditions_on_the_input_go_below_the_function_and_the_others_above() {
    let t = tree(
        "SELECT a.id, e.key, e.value FROM public.a CROSS JOIN LATERAL pg_catalog.jsonb_each(a.g) e(key, value)
  WHERE ((a.x > 5) AND (e.key <> 'k'::text))",
    );
    assert_tree(
        &t.root,
        "
        Project #0; #3; #4
          Filter (#3 <> 'k'::TEXT)
            Expand pg_catalog.jsonb_each((#2)) (2)
              Filter (#1 > 5)
                Scan public.a [id, x, g]
        ",
    );
}

#[test]
fn a_join_after_the_function_sees_its_columns_and_named_arguments_are_kept() {
    let t = tree(
        "SELECT b.y, s.n FROM public.a, LATERAL pg_catalog.generate_series(1, a.x, step => 2) s(n)
     JOIN public.b ON b.id = s.n WHERE (b.a_id = a.id)",
    );
    // Layout: a [id, x] 0-1, s [n] 2, b [id, y, a_id] 3-5.
    assert_tree(
        &t.root,
        "
        Project #4; #2
          InnerJoin (#3 = #2) AND (#5 = #0)
            Expand pg_catalog.generate_series((1), (#1), step => (2)) (1)
              Scan public.a [id, x]
            Scan public.b [id, y, a_id]
        ",
    );
}

#[test]
fn a_left_join_keeps_its_condition_on_the_function() {
    let t = tree(
        "SELECT a.id, u.e FROM (public.a LEFT JOIN LATERAL pg_catalog.unnest(a.g) u(e) ON ((u.e > a.x))) WHERE (a.id > 0)",
    );
    assert_tree(
        &t.root,
        "
        Project #0; #3
          LeftExpand pg_catalog.unnest((#2)) (1) ((#3 > #1))
            Filter (#0 > 0)
              Scan public.a [id, x, g]
        ",
    );
}

#[test]
fn a_parenthesised_join_that_starts_with_a_function_expands_the_items_before_it() {
    let t = tree(
        "SELECT a.id, u.e, b.y FROM public.a, (LATERAL pg_catalog.unnest(a.g) u(e) JOIN public.b ON ((b.id = u.e)))",
    );
    // Layout: a [id, g] 0-1, u [e] 2, b [id, y] 3-4.
    assert_tree(
        &t.root,
        "
        Project #0; #2; #4
          InnerJoin ((#3 = #2))
            Expand pg_catalog.unnest((#1)) (1)
              Scan public.a [id, g]
            Scan public.b [id, y]
        ",
    );
}

#[test]
fn unnest_read_as_a_keyword_is_the_same_function() {
    let t = tree("SELECT a.id, u.e FROM public.a, unnest(ARRAY[a.x, 2]) u(e)");
    assert_tree(
        &t.root,
        "
        Project #0; #2
          Expand unnest((ARRAY[#1, 2])) (1)
            Scan public.a [id, x]
        ",
    );
}

#[test]
fn with_ordinality_numbers_each_rows_expansion() {
    // PostgreSQL prints `LATERAL f(..) WITH ORDINALITY`, which the parser reads once LATERAL goes.
    let t = tree(
        "SELECT a.id, u.e, u.ordinality FROM public.a, LATERAL pg_catalog.unnest(a.g) WITH ORDINALITY u(e, ordinality)",
    );
    assert_tree(
        &t.root,
        "
        Project #0; #2; #3
          Expand pg_catalog.unnest((#1)) WITH ORDINALITY (2)
            Scan public.a [id, g]
        ",
    );
}

#[test]
fn a_values_list_joined_after_a_table_expands_it_and_a_lateral_one_reads_it() {
    let t = tree(
        "SELECT a.id, v.label FROM (public.a JOIN ( VALUES (1,'one'::text), (2,'two'::text)) v(x, label) ON ((v.x = a.x)))",
    );
    assert_tree(
        &t.root,
        "
        Project #0; #3
          Filter ((#2 = #1))
            Expand (VALUES (1, 'one'::TEXT), (2, 'two'::TEXT)) (2)
              Scan public.a [id, x]
        ",
    );
    let t = tree("SELECT a.id, v.n FROM public.a, LATERAL ( VALUES (a.x), (a.g)) v(n)");
    assert_tree(
        &t.root,
        "
        Project #0; #3
          Expand (VALUES (#1), (#2)) (1)
            Scan public.a [id, x, g]
        ",
    );
}

#[test]
fn a_values_lists_unnamed_columns_are_column1_column2() {
    let t = tree(
        "SELECT a.id, v.column2 FROM (public.a JOIN ( VALUES (1,'one'::text)) v ON ((v.column1 = a.x)))",
    );
    assert_tree(
        &t.root,
        "
        Project #0; #3
          Filter ((#2 = #1))
            Expand (VALUES (1, 'one'::TEXT)) (2)
              Scan public.a [id, x]
        ",
    );
}

#[test]
fn a_function_or_values_list_written_first_follows_the_table_it_is_joined_with() {
    // Layout after the move: a [id, x] 0-1, u [e] 2.
    let expected = "
        Project #2; #0
          Filter (#1 = #2)
            Expand pg_catalog.unnest((ARRAY[1, 2])) (1)
              Scan public.a [id, x]
        ";
    let comma = tree(
        "SELECT u.e, a.id FROM pg_catalog.unnest(ARRAY[1, 2]) u(e), public.a WHERE (a.x = u.e)",
    );
    assert_tree(&comma.root, expected);
    let joined = tree(
        "SELECT u.e, a.id FROM pg_catalog.unnest(ARRAY[1, 2]) u(e) JOIN public.a ON (a.x = u.e)",
    );
    assert_tree(&joined.root, expected);
    // As PostgreSQL prints it: the join in parentheses.
    let printed = tree(
        "SELECT u.e, a.id FROM (pg_catalog.unnest(ARRAY[1, 2]) u(e) JOIN public.a ON (a.x = u.e))",
    );
    assert_tree(&printed.root, expected);
    // Two joins after it, as PostgreSQL prints them: nested parentheses.
    let two = tree(
        "SELECT u.e, a.id, b.y FROM ((pg_catalog.unnest(ARRAY[1, 2]) u(e) JOIN public.a ON (a.x = u.e)) JOIN public.b ON (b.a_id = a.id))",
    );
    assert!(
        super::show(&two.root).contains("Expand"),
        "{}",
        super::show(&two.root)
    );
    // `f RIGHT JOIN a` keeps a's rows: a LEFT JOIN LATERAL f.
    let right = tree(
        "SELECT m.label, a.id FROM (VALUES (1, 'one'::text), (2, 'two'::text)) m(k, label) RIGHT JOIN public.a ON (a.x = m.k)",
    );
    assert_tree(
        &right.root,
        "
        Project #3; #0
          LeftExpand (VALUES (1, 'one'::TEXT), (2, 'two'::TEXT)) (2) (#1 = #2)
            Scan public.a [id, x]
        ",
    );
}

#[test]
fn a_function_or_values_list_first_and_kept_expands_one_unchanging_row() {
    // A LEFT JOIN keeps the function's rows: it stays first, over a row of no columns.
    let left = tree(
        "SELECT u.e, a.id FROM (pg_catalog.unnest(ARRAY[1, 2]) u(e) LEFT JOIN public.a ON (a.x = u.e))",
    );
    assert_tree(
        &left.root,
        "
        Project #0; #1
          LeftJoin (#2 = #0)
            Expand pg_catalog.unnest((ARRAY[1, 2])) (1)
              Unit
            Scan public.a [id, x]
        ",
    );
    // A condition on the function's columns filters its rows; one on the table's stays above.
    let filtered = tree(
        "SELECT m.label, a.id FROM ((VALUES (1, 'one'::text), (2, 'two'::text)) m(k, label) FULL JOIN public.a ON (a.x = m.k)) WHERE (m.k > 0)",
    );
    assert_tree(
        &filtered.root,
        "
        Project #1; #2
          Filter (#0 > 0)
            FullJoin (#3 = #0)
              Expand (VALUES (1, 'one'::TEXT), (2, 'two'::TEXT)) (2)
                Unit
              Scan public.a [id, x]
        ",
    );
}
