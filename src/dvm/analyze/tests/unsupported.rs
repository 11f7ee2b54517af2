//! Each construct the differential engine cannot maintain is rejected by name.

use super::{error, tree, unsupported, AnalyzeError};

#[test]
fn row_limiting_and_locking() {
    // A top-level ORDER BY ... LIMIT is maintained (tests/top_k.rs); these forms are not.
    assert_eq!(
        unsupported("SELECT a.x FROM public.a ORDER BY a.x OFFSET 5"),
        "OFFSET without LIMIT"
    );
    assert_eq!(
        unsupported("SELECT a.x FROM public.a ORDER BY a.x LIMIT 10 OFFSET a.x"),
        "OFFSET with a value other than a constant number"
    );
    assert_eq!(
        unsupported("SELECT a.x FROM public.a LIMIT 10"),
        "LIMIT without ORDER BY"
    );
    assert_eq!(
        unsupported("SELECT a.x FROM public.a ORDER BY a.x FETCH FIRST 3 ROWS WITH TIES"),
        "FETCH FIRST ... WITH TIES"
    );
    assert_eq!(
        unsupported("SELECT a.x FROM public.a ORDER BY a.g LIMIT 10"),
        "ORDER BY a.g with LIMIT (an ORDER BY item must be one of the SELECT list's columns)"
    );
    assert_eq!(
        unsupported("SELECT a.x FROM public.a ORDER BY (a.x + 1) LIMIT 10"),
        "ORDER BY (a.x + 1) with LIMIT (an ORDER BY item must be one of the SELECT list's columns)"
    );
    assert_eq!(
        unsupported("SELECT a.x FROM public.a ORDER BY a.x FETCH FIRST 3 ROWS ONLY"),
        "FETCH FIRST"
    );
    assert_eq!(
        unsupported("SELECT a.x FROM public.a FOR UPDATE"),
        "FOR UPDATE/FOR SHARE"
    );
    // Inside a subquery too.
    assert_eq!(
        unsupported("SELECT s.x FROM ( SELECT a.x FROM public.a LIMIT 1) s"),
        "LIMIT"
    );
    assert_eq!(
        unsupported("SELECT a.id FROM public.a WHERE (EXISTS ( SELECT 1 FROM public.b WHERE (b.a_id = a.id) LIMIT 1))"),
        "LIMIT"
    );
}

/// Window functions in the SELECT list of the query, of a subquery in FROM, of a CTE or of a view
/// are read by `analyze::window` (tests/window.rs); elsewhere they are refused.
#[test]
fn window_functions() {
    let elsewhere = "(window functions are read in the SELECT list of the query, of a subquery in FROM, of a CTE or of a view)";
    assert_eq!(
        unsupported("SELECT a.x FROM public.a UNION ALL SELECT sum(b.y) OVER (PARTITION BY b.a_id) AS s FROM public.b"),
        format!("window function sum() in a UNION branch or in a subquery of an expression {elsewhere}")
    );
    assert_eq!(
        unsupported(
            "SELECT a.x FROM public.a WHERE (a.x IN ( SELECT row_number() OVER (PARTITION BY b.a_id ORDER BY b.y) AS rn FROM public.b))"
        ),
        format!("window function row_number() in a UNION branch or in a subquery of an expression {elsewhere}")
    );
    assert_eq!(
        unsupported(
            "SELECT s.x FROM (SELECT a.x, a.g FROM public.a UNION ALL SELECT b.y, row_number() OVER (PARTITION BY b.a_id ORDER BY b.y) AS rn FROM public.b) s"
        ),
        format!("window function row_number() in a UNION branch or in a subquery of an expression {elsewhere}")
    );
}

#[test]
fn recursive_ctes() {
    assert_eq!(
        unsupported(
            " WITH RECURSIVE r(n) AS ( SELECT a.id FROM public.a UNION ALL SELECT (r.n + 1) FROM r WHERE (r.n < 10))
 SELECT r.n FROM r"
        ),
        "recursive CTE"
    );
}

#[test]
fn row_sources_other_than_relations_and_selects() {
    // Rows no change could reach (a function first with tables is read: functions.rs).
    let no_table = "a query that reads no table (only table functions or VALUES lists)";
    assert_eq!(
        unsupported("SELECT v.p FROM ( VALUES (1,2), (3,4)) v(p, q)"),
        no_table
    );
    assert_eq!(unsupported("VALUES (1), (2)"), "VALUES list");
    assert_eq!(
        unsupported("SELECT g.i FROM generate_series(1, 10) g(i)"),
        no_table
    );
    assert_eq!(
        unsupported(
            "SELECT g.i, h.j FROM generate_series(1, 10) g(i), generate_series(1, g.i) h(j)"
        ),
        no_table
    );
    assert_eq!(
        unsupported("SELECT a.id, u.e FROM public.a RIGHT JOIN LATERAL pg_catalog.unnest(ARRAY[a.x]) u(e) ON true"),
        "RIGHT or FULL JOIN with table function pg_catalog.unnest()"
    );
    assert_eq!(
        unsupported("SELECT a.id, r.f FROM public.a, LATERAL public.f(a.x) r(f integer)"),
        "a column definition list on table function public.f()"
    );
    assert_eq!(unsupported("SELECT 1 AS one"), "SELECT without FROM");
    assert_eq!(
        unsupported("SELECT a.x FROM public.a TABLESAMPLE system (10)"),
        "TABLESAMPLE"
    );
}

#[test]
fn set_returning_functions_in_the_select_list() {
    assert_eq!(
        unsupported("SELECT a.id, generate_series(1, a.x) AS n FROM public.a"),
        "set-returning function generate_series()"
    );
    assert_eq!(
        unsupported("SELECT a.id, pg_catalog.unnest(ARRAY[a.x, a.id]) AS n FROM public.a"),
        "set-returning function pg_catalog.unnest()"
    );
}

#[test]
fn whole_row_references() {
    assert_eq!(
        unsupported("SELECT row_to_json(a.*) AS j FROM public.a"),
        "whole-row reference a.*"
    );
    // `SELECT a FROM a` as PostgreSQL prints it, which sqlparser cannot parse.
    assert_eq!(
        unsupported("SELECT a.*::public.a AS a FROM public.a"),
        "whole-row reference (a table's row as a value: SELECT t FROM t)"
    );
}

/// Forms PostgreSQL prints in a way sqlparser cannot parse are named, or the error quotes the text
/// where the parser stopped (its line and column are of PostgreSQL's printing, not the user's text).
#[test]
fn printed_forms_sqlparser_cannot_parse() {
    assert_eq!(
        unsupported(
            " SELECT a.x\n   FROM public.a\n  ORDER BY a.x\n FETCH FIRST (3) ROWS WITH TIES"
        ),
        "FETCH FIRST ... WITH TIES"
    );
    let message = |sql| match error(sql) {
        AnalyzeError::Invalid(m) => m,
        e => panic!("{sql}: {e:?}"),
    };
    assert_eq!(
        unsupported("SELECT d.a, a.id FROM (ROWS FROM(generate_series(0, 3), generate_series(1, 2)) d(a, b) LEFT JOIN public.a ON a.g = d.a)"),
        "ROWS FROM (...) with more than one function"
    );
    // Not a parse error of a text the analyser wrote (until 2026-12-07: "found: EOF").
    assert_eq!(
        unsupported("SELECT a.id, (SELECT count(*) AS count FROM generate_series(0, a.g) x(y)) AS c FROM public.a"),
        "correlated scalar subquery that reads the outer row other than in its WHERE"
    );
    let m = message(" SELECT a.x\n   FROM public.a\n  WHERE a.x = ANY ((((1)))) ))");
    assert!(
        m.starts_with("could not parse the query near \"WHERE a.x = ANY ((((1)))) ))\": "),
        "{m}"
    );
    // A long line: the quote starts at a word at most 30 characters before, and ends 40 after.
    let long = format!(
        "SELECT a.x FROM public.a WHERE {}a.x > 1) AND {}a.x > 1",
        "a.x > 1 AND ".repeat(5),
        "a.x > 1 AND ".repeat(5)
    );
    let m = message(&long);
    assert!(m.starts_with("could not parse the query near \"> 1 AND a.x > 1 AND a.x > 1) AND a.x > 1 AND a.x > 1 AND a.x > 1 AN\": "), "{m}");
}

#[test]
fn marker_characters_in_the_text() {
    assert_eq!(
        unsupported("SELECT 'x\u{1}'::text AS t FROM public.a"),
        "control characters U+0001/U+0002 in the query text"
    );
}

#[test]
fn collate_which_sqlparser_cannot_parse() {
    assert_eq!(
        unsupported(r#"SELECT (a.g COLLATE "C") AS g FROM public.a"#),
        "COLLATE"
    );
}

#[test]
fn from_only_which_sqlparser_cannot_parse_is_named() {
    let only = "FROM ONLY (a table read without its inheritance children)";
    for sql in [
        "SELECT a.x FROM ONLY public.a",
        "SELECT a.x FROM public.b, ONLY public.a WHERE a.x = b.id",
        "SELECT a.x FROM public.b JOIN ONLY public.a ON a.x = b.id",
        "SELECT a.x\n  FROM\n ONLY public.a",
    ] {
        assert_eq!(unsupported(sql), only, "{sql}");
    }
    // A literal or a quoted name that spells it is not the keyword: the parse error stays.
    for sql in [
        "SELECT 'FROM ONLY' FROM public.a WHERE",
        r#"SELECT a.x FROM "only" public.a"#,
    ] {
        assert!(
            matches!(error(sql), AnalyzeError::Invalid(ref m) if m.starts_with("could not parse the query")),
            "{sql}"
        );
    }
}

/// sqlparser reads a chain of operators into a tree one level deeper per operator, which every
/// recursion after it follows: a long chain is refused before it is parsed (a 2,000-term `AND`
/// overflowed a backend's stack), whatever parentheses and lists around it.
#[test]
fn long_operator_chains_are_refused_before_parsing() {
    let chain = |n: usize, op: &str| {
        (1..=n)
            .map(|i| format!("a.x <> {i}"))
            .collect::<Vec<_>>()
            .join(op)
    };
    let refused = "an expression chaining more than 10000 operators (AND, OR, +, ...) at one level";
    assert_eq!(
        unsupported(&format!(
            "SELECT a.x FROM public.a WHERE {}",
            chain(20_000, " AND ")
        )),
        refused
    );
    assert_eq!(
        unsupported(&format!(
            "SELECT (a.x + {}) AS s FROM public.a",
            vec!["1"; 12_000].join(" + ")
        )),
        refused
    );
    assert_eq!(
        unsupported(&format!(
            "SELECT a.x FROM public.a WHERE ({})",
            chain(6_000, " OR ")
        )),
        refused // `a.x <> i` counts too
    );
    // Lists and clauses start their counts afresh.
    let many_items = (1..=300)
        .map(|i| format!("a.x + {i} AS c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    tree(&format!(
        "SELECT {many_items} FROM public.a WHERE {}",
        chain(500, " AND ")
    ));
    tree(&format!(
        "SELECT a.x FROM public.a WHERE a.x IN ({})",
        (1..=5000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
}
