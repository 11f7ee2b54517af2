//! A readable rendering of an OpTree, for explain_stream_table.

use super::optree::{Expr, Node, OpTree, TopK};

pub fn describe_tree(tree: &OpTree) -> String {
    let mut out = String::new();
    for (id, cte) in tree.ctes.iter().enumerate() {
        out.push_str(&format!("CTE #{id}:\n"));
        write_node(cte, 1, &mut out);
    }
    write_node(&tree.root, 0, &mut out);
    out
}

/// An expression over its operator's input columns, each shown by position (`#n`).
pub fn describe_expr(e: &Expr) -> String {
    e.render(&|n| format!("#{n}"))
}

fn list(es: &[Expr]) -> String {
    es.iter().map(describe_expr).collect::<Vec<_>>().join(", ")
}

fn write_node(node: &Node, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    let detail = match node {
        Node::Scan {
            table,
            columns,
            types,
        } => {
            let cols: Vec<String> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    types
                        .get(i)
                        .filter(|t| !t.is_empty())
                        .map_or(c.clone(), |t| format!("{c} {t}"))
                })
                .collect();
            format!("{}.{} ({})", table.schema, table.name, cols.join(", "))
        }
        Node::Filter { predicate, .. } => describe_expr(predicate),
        Node::Project { exprs, .. } => list(exprs),
        Node::Join { on, .. } => on
            .as_ref()
            .map_or("cross".into(), |e| format!("on {}", describe_expr(e))),
        Node::SemiJoin { on, .. } => format!("on {}", describe_expr(on)),
        Node::Aggregate {
            group_by,
            aggregates,
            ..
        } => format!(
            "group by [{}] compute [{}]",
            list(group_by),
            list(aggregates)
        ),
        Node::Distinct { .. } | Node::UnionAll { .. } | Node::Unit => String::new(),
        Node::CteRef { id, .. } => format!("CTE #{id}"),
        Node::Expand {
            call, left_join, ..
        } => match left_join {
            None => format!("lateral {}", describe_expr(call)),
            Some(on) => format!(
                "left join lateral {} on {}",
                describe_expr(call),
                describe_expr(on)
            ),
        },
    };
    out.push_str(&format!(
        "{pad}{} [{} cols] {detail}\n",
        node.kind_name(),
        node.arity()
    ));
    for child in node.children() {
        write_node(child, depth + 1, out);
    }
}

/// How a top-K stream table is maintained, for explain_stream_table.
pub fn describe_top_k(tree: &OpTree, top_k: &TopK) -> String {
    let order = top_k
        .order
        .iter()
        .map(|k| {
            let name = tree.output_names.get(k.column).map_or("?", String::as_str);
            format!("{name}{}", if k.descending { " DESC" } else { "" })
        })
        .collect::<Vec<_>>()
        .join(", ");
    let head = if top_k.offset > 0 {
        "; and when a change sorts no later than the window's first row (the rows before it, which are not stored, \
         may have changed)"
    } else {
        ""
    };
    format!(
        "\nTop-K: the {} by {order}. A refresh moves them by the delta of the query without its LIMIT; \
         when the batch deletes rows of the window and too few rows are known to take their place, it runs the \
         defining query to refill it{head}\n",
        crate::dvm::top_k::window_name(top_k)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dvm::optree::TableRef;

    #[test]
    fn nodes_are_indented_under_their_parents() {
        let scan = Node::Scan {
            table: TableRef {
                relid: 1,
                schema: "public".into(),
                name: "t".into(),
            },
            columns: vec!["a".into()],
            types: vec![],
        };
        let tree = OpTree {
            root: Node::Filter {
                input: Box::new(scan),
                predicate: Expr {
                    parts: vec![
                        super::super::optree::ExprPart::Col(0),
                        super::super::optree::ExprPart::Sql(" > 1".into()),
                    ],
                },
            },
            ctes: vec![],
            output_names: vec!["a".into()],
            top_k: None,
            unique_keys: Vec::new(),
            full_from_tree: false,
            collected_subqueries: Vec::new(),
        };
        assert_eq!(
            describe_tree(&tree),
            "Filter [1 cols] #0 > 1\n  Scan [1 cols] public.t (a)\n"
        );
    }
}
