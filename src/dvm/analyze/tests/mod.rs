//! Analyzer tests over a small in-memory catalog. Trees are compared as indented text (see `show`),
//! with every column reference rendered `#n`.

mod aggregates;
mod distinct_on;
mod examples;
mod functions;
mod joins;
mod pushdown;
mod relations;
mod set_ops;
mod subqueries;
mod top_k;
mod unsupported;
mod window;

use super::{analyze, AnalyzeError, Catalog, Relation};
use crate::dvm::optree::{Expr, JoinKind, Node, OpTree};

struct Stub;

fn table(relid: u32, name: &str, columns: &[&str]) -> Relation {
    Relation::Table {
        relid,
        schema: "public".into(),
        name: name.into(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
    }
}

impl Catalog for Stub {
    fn relation(&self, schema: Option<&str>, name: &str) -> Option<Relation> {
        if schema != Some("public") {
            return None;
        }
        Some(match name {
            "a" => table(1, "a", &["id", "x", "g"]),
            "b" => table(2, "b", &["id", "y", "a_id"]),
            "c" => table(3, "c", &["id", "b_id", "z"]),
            "d" => table(4, "d", &["id", "x", "w"]),
            "Order Lines" => table(5, "Order Lines", &["Line Id", "Amount$", "Qty \"x\""]),
            "v" => Relation::View {
                definition: " SELECT a.id, a.x\n   FROM public.a\n  WHERE (a.x > 0)".into(),
            },
            "vv" => Relation::View {
                definition: " SELECT v.id AS vid FROM public.v".into(),
            },
            "cycle" => Relation::View {
                definition: " SELECT cycle.n FROM public.cycle".into(),
            },
            _ => return None,
        })
    }

    /// `b.id` and `(c.b_id, c.id)` are unique.
    fn unique_keys(&self, relid: u32) -> Vec<Vec<String>> {
        match relid {
            2 => vec![vec!["id".into()]],
            3 => vec![vec!["b_id".into(), "id".into()]],
            _ => Vec::new(),
        }
    }

    fn is_aggregate(&self, name: &str) -> bool {
        let base = name.strip_prefix("pg_catalog.").unwrap_or(name);
        [
            "count",
            "sum",
            "avg",
            "min",
            "max",
            "string_agg",
            "array_agg",
            "bool_and",
            "bool_or",
        ]
        .contains(&base)
    }
}

fn tree(sql: &str) -> OpTree {
    analyze(sql, &Stub).unwrap_or_else(|e| panic!("{e}\nfor: {sql}"))
}

fn error(sql: &str) -> AnalyzeError {
    match analyze(sql, &Stub) {
        Ok(tree) => panic!("expected an error, got:\n{}\nfor: {sql}", show(&tree.root)),
        Err(e) => e,
    }
}

fn unsupported(sql: &str) -> String {
    match error(sql) {
        AnalyzeError::Unsupported(what) => what,
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

fn r(expr: &Expr) -> String {
    expr.render(&|n| format!("#{n}"))
}

fn list(exprs: &[Expr]) -> String {
    exprs.iter().map(r).collect::<Vec<_>>().join("; ")
}

/// The tree as indented lines, one node per line, children indented by two spaces.
fn show(node: &Node) -> String {
    let mut out = String::new();
    write(node, 0, &mut out);
    out
}

fn write(node: &Node, depth: usize, out: &mut String) {
    let line = match node {
        Node::Scan { table, columns, .. } => format!(
            "Scan {}.{} [{}]",
            table.schema,
            table.name,
            columns.join(", ")
        ),
        Node::Filter { predicate, .. } => format!("Filter {}", r(predicate)),
        Node::Project { exprs, .. } => format!("Project {}", list(exprs)),
        Node::Join {
            kind,
            on,
            null_types,
            ..
        } => {
            assert!(
                null_types.is_empty(),
                "the analyzer leaves null_types to the extension"
            );
            let kind = match kind {
                JoinKind::Inner => "InnerJoin",
                JoinKind::Left => "LeftJoin",
                JoinKind::Right => "RightJoin",
                JoinKind::Full => "FullJoin",
            };
            match on {
                Some(on) => format!("{kind} {}", r(on)),
                None => kind.to_string(),
            }
        }
        Node::SemiJoin { on, .. } => format!("{} {}", node.kind_name(), r(on)),
        Node::Aggregate {
            group_by,
            aggregates,
            ..
        } => {
            format!(
                "Aggregate group [{}] agg [{}]",
                list(group_by),
                list(aggregates)
            )
        }
        Node::Distinct { .. } => "Distinct".into(),
        Node::UnionAll { .. } => "UnionAll".into(),
        Node::CteRef { id, arity } => format!("CteRef {id} ({arity})"),
        Node::Expand {
            call,
            columns,
            left_join,
            ..
        } => match left_join {
            None => format!("Expand {} ({columns})", r(call)),
            Some(on) => format!("LeftExpand {} ({columns}) {}", r(call), r(on)),
        },
        Node::Unit => "Unit".into(),
    };
    out.push_str(&"  ".repeat(depth));
    out.push_str(&line);
    out.push('\n');
    for child in node.children() {
        write(child, depth + 1, out);
    }
}

/// Compares a tree with its expected text, written with any common indentation.
fn assert_tree(node: &Node, expected: &str) {
    let lines: Vec<&str> = expected.lines().filter(|l| !l.trim().is_empty()).collect();
    let indent = lines
        .iter()
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let expected: String = lines
        .iter()
        .map(|l| format!("{}\n", &l[indent..]))
        .collect();
    assert_eq!(show(node), expected, "\nactual:\n{}", show(node));
}

fn names(tree: &OpTree) -> Vec<&str> {
    tree.output_names.iter().map(String::as_str).collect()
}

#[test]
fn errors_display_what_went_wrong() {
    assert_eq!(
        AnalyzeError::Unsupported("LIMIT".into()).to_string(),
        "LIMIT is not supported in a stream table's query"
    );
    assert_eq!(
        AnalyzeError::Invalid("oops".into()).to_string(),
        "invalid defining query: oops"
    );
}

#[test]
fn a_scan_lists_only_the_columns_the_query_uses_in_table_order() {
    let t = tree("SELECT a.g, a.id FROM public.a");
    assert_tree(
        &t.root,
        "
        Project #1; #0
          Scan public.a [id, g]
        ",
    );
    assert_eq!(names(&t), ["g", "id"]);
    assert!(t.ctes.is_empty());
}

#[test]
fn count_star_scans_no_columns() {
    let t = tree("SELECT count(*) AS count FROM public.a");
    assert_tree(
        &t.root,
        "
        Project #0
          Aggregate group [] agg [count(*)]
            Scan public.a []
        ",
    );
    assert_eq!(t.root.arity(), 1);
}

#[test]
fn the_root_arity_matches_the_select_list_even_for_an_identity_projection() {
    let t = tree("SELECT a.id, a.x, a.g FROM public.a ORDER BY a.x");
    assert_tree(
        &t.root,
        "
        Project #0; #1; #2
          Scan public.a [id, x, g]
        ",
    );
    assert_eq!(names(&t), ["id", "x", "g"]);
}

#[test]
fn stars_expand_to_the_items_columns() {
    let t = tree("SELECT a.*, b.y FROM public.a, public.b");
    assert_eq!(names(&t), ["id", "x", "g", "y"]);
    assert_tree(
        &t.root,
        "
        Project #0; #1; #2; #3
          InnerJoin
            Scan public.a [id, x, g]
            Scan public.b [y]
        ",
    );
    assert_eq!(
        names(&tree("SELECT * FROM public.a, public.b")),
        ["id", "x", "g", "id", "y", "a_id"]
    );
}

#[test]
fn output_names_follow_aliases_and_column_names() {
    let t = tree("SELECT a.x AS renamed, a.g, (a.x + 1) AS plus FROM public.a");
    assert_eq!(names(&t), ["renamed", "g", "plus"]);
}

#[test]
fn the_trailing_semicolon_and_whitespace_are_tolerated() {
    let t = tree(" SELECT a.x\n   FROM public.a;\n");
    assert_eq!(names(&t), ["x"]);
}

/// PostgreSQL parenthesises every operator, so `a + b + c + ...` nests one level per term.
fn chain(terms: usize) -> String {
    let mut sum = "a.x".to_string();
    for _ in 1..terms {
        sum = format!("({sum} + a.x)");
    }
    sum
}

#[test]
fn long_operator_chains_parse_up_to_the_nesting_limit() {
    // Grouped, so each level is also re-rendered while matching group keys: the deepest recursion.
    let t = tree(&format!(
        "SELECT {0} AS s, count(*) AS n FROM public.a GROUP BY ({0})",
        chain(40)
    ));
    let Node::Project { input, .. } = &t.root else {
        panic!("expected a Project")
    };
    let Node::Aggregate { group_by, .. } = &**input else {
        panic!("expected an Aggregate")
    };
    assert_eq!(group_by[0].columns().len(), 40);
    assert_eq!(
        unsupported(&format!("SELECT {} AS s FROM public.a", chain(60))),
        "expressions or subqueries nested too deeply"
    );
}

#[test]
fn subscripts_and_field_access_keep_the_field_name() {
    // `.f` is a field of the composite column, not a column reference: it stays as written.
    let t = tree("SELECT (a.g)[1] AS first, (a.g).f AS field, (a.x = ANY (ARRAY[1, 2])) AS listed FROM public.a");
    let Node::Project { exprs, .. } = &t.root else {
        panic!("expected a Project")
    };
    assert_eq!(list(exprs), "(#1)[1]; (#1).f; (#0 = ANY(ARRAY[1, 2]))");
}
