//! Which join keys a differential refresh looks up, for explain_stream_table's index advice.
//!
//! Each delta term of a join reaches the other side through the join condition: the changed rows of
//! the left side are matched against the right side's current rows, and the other way round. When the
//! condition is `left column = right column` between two scanned tables, PostgreSQL can find those
//! matches with an index whose first column is that column; without one, the term reads the whole
//! table. The extension asks the catalog which of these keys have no index ([`advice`] words it).

use super::diff::AggregateState;
use super::optree::{Expr, ExprPart, Node, OpTree, TableRef};
use super::sql::quote_ident;

/// A lookup a delta term makes: rows of `table` matched on `column` to the delta of `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub table: TableRef,
    pub column: String,
    /// The table on the other side of the equality, whose changes are looked up.
    pub from: TableRef,
}

/// Every probe of the tree's joins (inner, outer and semi-joins), once each, in tree order.
pub fn probes(tree: &OpTree) -> Vec<Probe> {
    let mut out = Vec::new();
    for node in tree.ctes.iter().chain([&tree.root]) {
        walk(node, &mut out);
    }
    out
}

fn walk(node: &Node, out: &mut Vec<Probe>) {
    let sides = match node {
        Node::Join {
            left,
            right,
            on: Some(on),
            ..
        } => Some((left, right, on)),
        Node::SemiJoin {
            left, right, on, ..
        } => Some((left, right, on)),
        _ => None,
    };
    if let Some((left, right, on)) = sides {
        let la = left.arity();
        for (a, b) in equalities(on) {
            let (l, r) = match (a < la, b < la) {
                (true, false) => (a, b - la),
                (false, true) => (b, a - la),
                _ => continue,
            };
            let (Some(l), Some(r)) = (scanned(left, l), scanned(right, r)) else {
                continue;
            };
            for probe in [
                Probe {
                    table: r.0.clone(),
                    column: r.1.clone(),
                    from: l.0.clone(),
                },
                Probe {
                    table: l.0.clone(),
                    column: l.1.clone(),
                    from: r.0.clone(),
                },
            ] {
                if !out.contains(&probe) {
                    out.push(probe);
                }
            }
        }
    }
    for child in node.children() {
        walk(child, out);
    }
}

/// The group keys by which a refresh recomputes touched groups from their current rows, per table:
/// the plain columns of `table`, in key order, that an aggregate groups by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupKeys {
    pub table: TableRef,
    pub columns: Vec<String>,
}

/// The group keys of every aggregate in the tree that recomputes groups, once each, in tree order.
/// The query's own aggregate is left out when it is kept from stored state without extrema: it
/// recomputes a group only when a numeric sum turns NaN.
pub fn recomputed_group_keys(tree: &OpTree) -> Vec<GroupKeys> {
    let state = AggregateState::of(tree);
    let kept = state
        .as_ref()
        .and_then(AggregateState::input_rarely_recomputed);
    group_keys_except(tree, kept)
}

/// The group keys of every aggregate in the tree but the one whose input is `kept`.
fn group_keys_except(tree: &OpTree, kept: Option<&Node>) -> Vec<GroupKeys> {
    fn walk(node: &Node, kept: Option<&Node>, out: &mut Vec<GroupKeys>) {
        if let Node::Aggregate {
            input, group_by, ..
        } = node
        {
            if !kept.is_some_and(|k| std::ptr::eq(k, input.as_ref())) {
                for keys in keys_by_table(input, group_by) {
                    if !out.contains(&keys) {
                        out.push(keys);
                    }
                }
            }
        }
        for child in node.children() {
            walk(child, kept, out);
        }
    }
    let mut out = Vec::new();
    for node in tree.ctes.iter().chain([&tree.root]) {
        walk(node, kept, &mut out);
    }
    out
}

/// The group keys over `input` that are plain table columns, gathered per table in key order.
fn keys_by_table(input: &Node, group_by: &[Expr]) -> Vec<GroupKeys> {
    let mut found: Vec<GroupKeys> = Vec::new();
    let columns = group_by
        .iter()
        .filter_map(|key| match key.parts.as_slice() {
            [ExprPart::Col(n)] => scanned(input, *n),
            _ => None,
        });
    for (table, column) in columns {
        match found.iter_mut().find(|g| g.table == *table) {
            Some(g) => {
                if !g.columns.contains(column) {
                    g.columns.push(column.clone());
                }
            }
            None => found.push(GroupKeys {
                table: table.clone(),
                columns: vec![column.clone()],
            }),
        }
    }
    found
}

/// The advice for group keys none of whose columns leads an index.
pub fn group_key_advice(missing: &[GroupKeys]) -> String {
    missing
        .iter()
        .map(|g| {
            let quoted: Vec<String> = g.columns.iter().map(|c| quote_ident(c)).collect();
            format!(
                "-- no index on {}.{}({}): a recomputed group reads all of {}.{}; CREATE INDEX ON {}.{} ({});\n",
                g.table.schema,
                g.table.name,
                g.columns.join(", "),
                g.table.schema,
                g.table.name,
                quote_ident(&g.table.schema),
                quote_ident(&g.table.name),
                quoted.join(", ")
            )
        })
        .collect()
}

/// An index on (group key, argument) that would serve the MIN/MAX of `calls` (`min(amount)`, ...)
/// of the query's aggregate: a group that loses its extremum reads it off the index instead of
/// reading all its rows (`dvm::diff::extremum_probes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtremumIndex {
    pub table: TableRef,
    pub key: String,
    pub argument: String,
    pub calls: Vec<String>,
}

/// The indexes on (key, argument) that would serve the query's MIN/MAX, one per argument column.
pub fn extremum_indexes(tree: &OpTree) -> Vec<ExtremumIndex> {
    let Some(state) = AggregateState::of(tree) else {
        return Vec::new();
    };
    let Some(cols) = state.probe_columns() else {
        return Vec::new();
    };
    let (_, _, _, calls) = state.parts();
    let mut out: Vec<ExtremumIndex> = Vec::new();
    for (j, _, column) in &cols.args {
        let call = format!("{}({column})", calls[*j].func.name());
        match out.iter_mut().find(|x| x.argument == *column) {
            Some(x) => x.calls.push(call),
            None => out.push(ExtremumIndex {
                table: cols.table.clone(),
                key: cols.key.clone(),
                argument: column.clone(),
                calls: vec![call],
            }),
        }
    }
    out
}

/// The advice for MIN/MAX without an index on (key, argument).
pub fn extremum_advice(missing: &[ExtremumIndex]) -> String {
    missing
        .iter()
        .map(|x| {
            let (schema, name) = (&x.table.schema, &x.table.name);
            format!(
                "-- no index on {schema}.{name}({}, {}): a group that loses its {} reads all its rows; CREATE INDEX ON {}.{} ({}, {});\n",
                x.key,
                x.argument,
                x.calls.join(" or "),
                quote_ident(schema),
                quote_ident(name),
                quote_ident(&x.key),
                quote_ident(&x.argument)
            )
        })
        .collect()
}

/// The table column that output `pos` of `node` is, if it is one unchanged (through filters, joins and
/// projections that pass the column through).
pub(crate) fn scanned(node: &Node, pos: usize) -> Option<(&TableRef, &String)> {
    match node {
        Node::Scan { table, columns, .. } => Some((table, columns.get(pos)?)),
        Node::Filter { input, .. } | Node::SemiJoin { left: input, .. } => scanned(input, pos),
        Node::Join { left, right, .. } => {
            let la = left.arity();
            if pos < la {
                scanned(left, pos)
            } else {
                scanned(right, pos - la)
            }
        }
        Node::Project { input, exprs } => match exprs.get(pos)?.parts.as_slice() {
            [ExprPart::Col(n)] => scanned(input, *n),
            _ => None,
        },
        // A table function's own columns are no table's.
        Node::Expand { input, .. } if pos < input.arity() => scanned(input, pos),
        _ => None,
    }
}

/// The `#a = #b` conjuncts of a condition (its top-level ANDs, whatever their parentheses).
pub(crate) fn equalities(on: &Expr) -> Vec<(usize, usize)> {
    equalities_of_all(on).0
}

/// The `#a = #b` conjuncts of a condition, and whether they are all of its conjuncts.
pub(crate) fn equalities_of_all(on: &Expr) -> (Vec<(usize, usize)>, bool) {
    // Rendered with the analyser's markers, which never occur in SQL text: "\u{1}3\u{2}".
    let text = on.render(&|n| format!("\u{1}{n}\u{2}"));
    let mut out = Vec::new();
    let all = collect(&text, &mut out);
    (out, all)
}

/// Collects the equalities; returns whether every conjunct was one.
fn collect(text: &str, out: &mut Vec<(usize, usize)>) -> bool {
    let text = strip_parens(text.trim());
    let parts = split_and(text);
    if parts.len() > 1 {
        return parts
            .into_iter()
            .fold(true, |all, part| collect(part, out) && all);
    }
    if let Some((a, b)) = text.split_once(" = ") {
        if let (Some(a), Some(b)) = (marker(a), marker(b)) {
            out.push((a, b));
            return true;
        }
    }
    false
}

/// A whole column marker's number.
fn marker(text: &str) -> Option<usize> {
    text.strip_prefix('\u{1}')?
        .strip_suffix('\u{2}')?
        .parse()
        .ok()
}

/// Paren depth at each byte, outside quoted literals and identifiers; None for a byte inside quotes.
fn depths(text: &str) -> Vec<Option<usize>> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    text.chars()
        .flat_map(|c| {
            let here = match (quote, c) {
                (Some(q), c) if c == q => {
                    quote = None;
                    None
                }
                (Some(_), _) => None,
                (None, '\'' | '"') => {
                    quote = Some(c);
                    None
                }
                (None, '(') => {
                    depth += 1;
                    Some(depth - 1)
                }
                (None, ')') => {
                    depth = depth.saturating_sub(1);
                    Some(depth)
                }
                (None, _) => Some(depth),
            };
            std::iter::repeat_n(here, c.len_utf8())
        })
        .collect()
}

/// Removes parentheses around the whole text.
fn strip_parens(mut text: &str) -> &str {
    while text.starts_with('(') && text.ends_with(')') {
        let d = depths(text);
        // The opening parenthesis closes only at the end if everything between is deeper.
        if d[1..text.len() - 1]
            .iter()
            .all(|x| x.is_none_or(|x| x >= 1))
        {
            text = text[1..text.len() - 1].trim();
        } else {
            break;
        }
    }
    text
}

/// Splits at the ANDs outside any parentheses and quotes.
fn split_and(text: &str) -> Vec<&str> {
    let d = depths(text);
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while let Some(found) = text[i..].find(" AND ") {
        let at = i + found;
        if d[at] == Some(0) {
            parts.push(text[start..at].trim());
            start = at + " AND ".len();
        }
        i = at + " AND ".len();
    }
    parts.push(text[start..].trim());
    parts
}

/// One line per probe without an index: what it costs and the statement that fixes it.
pub fn advice(missing: &[Probe]) -> String {
    missing
        .iter()
        .map(|p| {
            format!(
                "-- no index on {}.{}({}): the delta of {}.{} scans all of {}.{}; CREATE INDEX ON {}.{} ({});\n",
                p.table.schema,
                p.table.name,
                p.column,
                p.from.schema,
                p.from.name,
                p.table.schema,
                p.table.name,
                quote_ident(&p.table.schema),
                quote_ident(&p.table.name),
                quote_ident(&p.column)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dvm::optree::JoinKind;

    fn table(relid: u32, name: &str) -> TableRef {
        TableRef {
            relid,
            schema: "public".into(),
            name: name.into(),
        }
    }

    fn scan(relid: u32, name: &str, cols: &[&str]) -> Node {
        Node::Scan {
            table: table(relid, name),
            columns: cols.iter().map(|c| c.to_string()).collect(),
            types: vec![],
        }
    }

    fn expr(parts: &[ExprPart]) -> Expr {
        Expr {
            parts: parts.to_vec(),
        }
    }

    fn sql(s: &str) -> ExprPart {
        ExprPart::Sql(s.into())
    }

    fn join(left: Node, right: Node, on: Expr) -> Node {
        Node::Join {
            kind: JoinKind::Inner,
            left: Box::new(left),
            right: Box::new(right),
            on: Some(on),
            null_types: vec![],
        }
    }

    fn tree(root: Node) -> OpTree {
        OpTree {
            root,
            ctes: vec![],
            output_names: vec![],
            top_k: None,
            unique_keys: Vec::new(),
            full_from_tree: false,
            collected_subqueries: Vec::new(),
        }
    }

    fn keys(tree: &OpTree) -> Vec<String> {
        probes(tree)
            .iter()
            .map(|p| format!("{}.{} <- {}", p.table.name, p.column, p.from.name))
            .collect()
    }

    #[test]
    fn each_side_of_an_equi_join_is_probed_on_its_own_column() {
        use ExprPart::Col;
        // customers [id, name] joined to a filtered orders [id, customer_id]: (#3 = #0).
        let orders = Node::Filter {
            input: Box::new(scan(2, "orders", &["id", "customer_id"])),
            predicate: expr(&[Col(0), sql(" > 5")]),
        };
        let t = tree(join(
            scan(1, "customers", &["id", "name"]),
            orders,
            expr(&[sql("(("), Col(3), sql(" = "), Col(0), sql("))")]),
        ));
        assert_eq!(
            keys(&t),
            ["orders.customer_id <- customers", "customers.id <- orders"]
        );
    }

    #[test]
    fn only_top_level_equalities_between_plain_columns_count() {
        use ExprPart::Col;
        let on = expr(&[
            sql("(("),
            Col(0),
            sql(" = "),
            Col(2),
            sql(") OR ("),
            Col(1),
            sql(" = "),
            Col(3),
            sql(")) AND ("),
            Col(1),
            sql(" = "),
            Col(3),
            sql(") AND (("),
            Col(0),
            sql(" + 1) = "),
            Col(2),
            sql(") AND ('a = (' = "),
            Col(0),
            sql(")"),
        ]);
        let t = tree(join(
            scan(1, "a", &["x", "y"]),
            scan(2, "b", &["x", "y"]),
            on,
        ));
        assert_eq!(keys(&t), ["b.y <- a", "a.y <- b"]);
    }

    #[test]
    fn nested_joins_projections_and_semi_joins_are_followed_to_their_scans() {
        use ExprPart::Col;
        let inner = join(
            scan(1, "a", &["id"]),
            scan(2, "b", &["a_id", "c_id"]),
            expr(&[sql("("), Col(1), sql(" = "), Col(0), sql(")")]),
        );
        let projected = Node::Project {
            input: Box::new(scan(3, "c", &["id", "v"])),
            exprs: vec![Expr::col(0), expr(&[Col(1), sql(" + 1")])],
        };
        // a [id] b [a_id, c_id] | c [id, v+1]: b.c_id = c.id, and a.id = (c.v + 1) which is no column.
        let outer = join(
            inner,
            projected,
            expr(&[
                sql("("),
                Col(2),
                sql(" = "),
                Col(3),
                sql(") AND ("),
                Col(0),
                sql(" = "),
                Col(4),
                sql(")"),
            ]),
        );
        let semi = Node::SemiJoin {
            anti: false,
            left: Box::new(outer),
            right: Box::new(scan(4, "d", &["b_id"])),
            on: expr(&[Col(1), sql(" = "), Col(5)]),
        };
        let t = tree(semi);
        assert_eq!(
            keys(&t),
            [
                "d.b_id <- b",
                "b.a_id <- d",
                "c.id <- b",
                "b.c_id <- c",
                "b.a_id <- a",
                "a.id <- b"
            ]
        );
    }

    #[test]
    fn advice_names_the_table_the_column_and_the_fix() {
        let missing = [Probe {
            table: table(2, "orders"),
            column: "customer id".into(),
            from: table(1, "customers"),
        }];
        assert_eq!(
            advice(&missing),
            "-- no index on public.orders(customer id): the delta of public.customers scans all of public.orders; \
             CREATE INDEX ON \"public\".\"orders\" (\"customer id\");\n"
        );
    }

    fn aggregate(input: Node, keys: &[usize]) -> Node {
        Node::Aggregate {
            input: Box::new(input),
            group_by: keys.iter().map(|&k| Expr::col(k)).collect(),
            aggregates: vec![expr(&[sql("min("), ExprPart::Col(2), sql(")")])],
            calls: vec![],
            key_types: vec![],
            key_eq: vec![],
        }
    }

    #[test]
    fn group_keys_are_the_plain_columns_each_recomputing_aggregate_groups_by() {
        use ExprPart::Col;
        // sales [region, shop, amount] joined to shops [id, city]; GROUP BY city, region, shop.
        let joined = join(
            scan(1, "sales", &["region", "shop", "amount"]),
            scan(2, "shops", &["id", "city"]),
            expr(&[Col(1), sql(" = "), Col(3)]),
        );
        let grouped = aggregate(joined, &[4, 0, 1]);
        let found: Vec<String> = group_keys_except(&tree(grouped.clone()), None)
            .iter()
            .map(|g| format!("{}({})", g.table.name, g.columns.join(", ")))
            .collect();
        assert_eq!(found, ["shops(city)", "sales(region, shop)"]);
        // A kept aggregate without extrema is left out; a computed key names no column.
        let kept_tree = tree(grouped.clone());
        let Node::Aggregate { input, .. } = &kept_tree.root else {
            unreachable!()
        };
        assert!(group_keys_except(&kept_tree, Some(input)).is_empty());
        let computed = Node::Aggregate {
            input: Box::new(scan(1, "sales", &["region", "shop", "amount"])),
            group_by: vec![expr(&[sql("lower("), Col(0), sql(")")])],
            aggregates: vec![],
            calls: vec![],
            key_types: vec![],
            key_eq: vec![],
        };
        assert!(group_keys_except(&tree(computed), None).is_empty());
        let advice = group_key_advice(&group_keys_except(&tree(grouped), None)[1..]);
        assert_eq!(
            advice,
            "-- no index on public.sales(region, shop): a recomputed group reads all of public.sales; \
             CREATE INDEX ON \"public\".\"sales\" (\"region\", \"shop\");\n"
        );
    }
}
