//! `SELECT DISTINCT ON (keys) items FROM ... ORDER BY keys, order`: per group of equal keys, the
//! group's first row by `order`. It is read as the grouped query that returns those rows (every
//! item, the keys too, from the group's first row: equal keys may print differently),
//!
//! ```sql
//! SELECT (array_agg(item ORDER BY order, ROW(items)::text))[1] AS item, ... FROM ... GROUP BY keys
//! ```
//!
//! so it is maintained like any aggregate without stored state: each group a batch touches is
//! computed again from its rows. `ROW(items)::text` breaks ties in `order`, so that every item comes
//! from the same row (with the settings that text depends on pinned: `refresh::settings`);
//! PostgreSQL itself takes whichever tied row its plan meets first, so the stream table's FULL
//! refreshes compute the same grouped query (`OpTree::full_from_tree`), and the choice among tied
//! rows never changes between refreshes. The keys must be in the select list: a stored row then
//! carries its group, and a row that differs from what the delta expects is found missing rather
//! than taken for another group's. The query's own SELECT (or its set operations' branches) is read
//! so, and so is a subquery's in FROM, a CTE's or a view's (`Analyzer::subquery`); the types of the
//! items are checked by the extension (`catalog::differential`).

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, Distinct, Expr as SqlExpr, GroupByExpr, Ident, OrderByExpr, OrderByKind,
    Query, Select, SelectItem, SetExpr, Value,
};

use super::block::default_name;
use super::template::{ident_name, strip_nested};
use super::{invalid, unsupported, Analyzer, Result};

/// Rewrites the `SELECT DISTINCT ON` blocks at the top of `query` (its SELECT, or the branches of
/// its set operations) into their grouped form; whether there was one. The defining query's items
/// are the stream table's columns, whose types the extension checks (an array column is refused:
/// see `catalog::differential`); a subquery's in FROM, a CTE's or a view's are described apart
/// (`Analyzer::subquery`). One in a subquery of an expression is refused (`block::check_select`).
pub(super) fn rewrite_top(query: &mut Query, analyzer: &Analyzer<'_>) -> Result<bool> {
    if let SetExpr::Select(select) = query.body.as_mut() {
        if !matches!(select.distinct, Some(Distinct::On(_))) {
            return Ok(false);
        }
        if query.limit_clause.is_some() || query.fetch.is_some() {
            return unsupported("DISTINCT ON with LIMIT or OFFSET");
        }
        grouped(select, query.order_by.as_ref().map(|o| &o.kind), analyzer)?;
        query.order_by = None;
        return Ok(true);
    }
    branches(query.body.as_mut(), analyzer)
}

/// Whether `rewrite_top` would rewrite something of `query`.
pub(super) fn is_top(query: &Query) -> bool {
    fn body(b: &SetExpr) -> bool {
        match b {
            SetExpr::Select(select) => matches!(select.distinct, Some(Distinct::On(_))),
            SetExpr::SetOperation { left, right, .. } => body(left) || body(right),
            SetExpr::Query(query) => body(&query.body),
            _ => false,
        }
    }
    body(&query.body)
}

/// The branches of a set operation: a bare `SELECT DISTINCT ON` has no ORDER BY of its own.
fn branches(body: &mut SetExpr, analyzer: &Analyzer<'_>) -> Result<bool> {
    match body {
        SetExpr::SetOperation { left, right, .. } => {
            Ok(branches(left, analyzer)? | branches(right, analyzer)?)
        }
        SetExpr::Select(select) if matches!(select.distinct, Some(Distinct::On(_))) => {
            grouped(select, None, analyzer)?;
            Ok(true)
        }
        SetExpr::Query(query) => rewrite_top(query, analyzer),
        _ => Ok(false),
    }
}

/// Rewrites one `SELECT DISTINCT ON` block, ordered by `order_by` (the query's ORDER BY).
fn grouped(
    select: &mut Select,
    order_by: Option<&OrderByKind>,
    analyzer: &Analyzer<'_>,
) -> Result<()> {
    let Some(Distinct::On(keys)) = &select.distinct else {
        return Ok(());
    };
    let keys = keys.clone();
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
        || select.having.is_some();
    // Of this block's own: a count inside a subquery of the select list is that subquery's.
    let computed = select.projection.iter().any(|item| {
        super::scalar::has_own(item, |e| match e {
            SqlExpr::Function(f) => f.over.is_some() || analyzer.is_aggregate_call(e),
            _ => false,
        })
    });
    if grouped || computed {
        return unsupported("DISTINCT ON over aggregates or window functions");
    }
    // Each item becomes an aggregate's argument, where subqueries are not read.
    let subquery = any_expression(&select.projection, |e| {
        matches!(
            e,
            SqlExpr::Subquery(_) | SqlExpr::Exists { .. } | SqlExpr::InSubquery { .. }
        )
    });
    if subquery {
        return unsupported("DISTINCT ON with a subquery in the select list");
    }
    let mut items: Vec<(SqlExpr, String)> = Vec::with_capacity(select.projection.len());
    for item in &select.projection {
        match item {
            SelectItem::UnnamedExpr(e) => items.push((e.clone(), default_name(e))),
            SelectItem::ExprWithAlias { expr, alias } => {
                items.push((expr.clone(), ident_name(alias)))
            }
            _ => return unsupported("DISTINCT ON with * in the select list"),
        }
    }
    // PostgreSQL prints a DISTINCT ON expression in parentheses, `DISTINCT ON ((upper(t.c)))`.
    let text = |e: &SqlExpr| strip_nested(e).to_string();
    let key_text: Vec<String> = keys.iter().map(text).collect();
    let is_key = |e: &SqlExpr| key_text.contains(&text(e));
    if let Some(missing) = keys
        .iter()
        .find(|k| !items.iter().any(|(e, _)| text(e) == text(k)))
    {
        let missing = strip_nested(missing);
        return unsupported(format!(
            "DISTINCT ON ({missing}) without {missing} in the select list"
        ));
    }
    let order = order_after_keys(order_by, &items, &is_key)?;
    let all: Vec<String> = items.iter().map(|(e, _)| e.to_string()).collect();
    // Rows equal in `order` and in how every item prints are the same row as far as the result
    // can tell.
    let by = [order, vec![format!("ROW({})::text", all.join(", "))]]
        .concat()
        .join(", ");
    let mut projection = Vec::with_capacity(items.len());
    for (expr, name) in items {
        // The keys too: equal keys may print differently (`1.5`, `1.50`), and the query shows the
        // first row's.
        let expr = super::parse_expr(&format!("(pg_catalog.array_agg({expr} ORDER BY {by}))[1]"))?;
        projection.push(SelectItem::ExprWithAlias {
            expr,
            alias: Ident::with_quote('"', name),
        });
    }
    select.projection = projection;
    select.distinct = None;
    select.group_by = GroupByExpr::Expressions(
        keys.iter().map(|k| strip_nested(k).clone()).collect(),
        vec![],
    );
    Ok(())
}

/// The ORDER BY items that pick a group's row: those that are not DISTINCT ON keys (constant within
/// a group), as SQL, positions replaced by the select list's expressions.
fn order_after_keys(
    order_by: Option<&OrderByKind>,
    items: &[(SqlExpr, String)],
    is_key: &dyn Fn(&SqlExpr) -> bool,
) -> Result<Vec<String>> {
    let exprs: &[OrderByExpr] = match order_by {
        None => &[],
        Some(OrderByKind::Expressions(exprs)) => exprs,
        Some(OrderByKind::All(_)) => return invalid("ORDER BY ALL is not PostgreSQL"),
    };
    let mut order = Vec::with_capacity(exprs.len());
    for item in exprs {
        if item.with_fill.is_some() {
            return invalid("ORDER BY ... WITH FILL is not PostgreSQL");
        }
        let expr = match &item.expr {
            SqlExpr::Value(v) => match &v.value {
                Value::Number(n, _) => match n
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i.wrapping_sub(1)))
                {
                    Some((e, _)) => e.clone(),
                    None => {
                        return invalid(format!("ORDER BY position {n} is not in the select list"))
                    }
                },
                _ => item.expr.clone(),
            },
            e => e.clone(),
        };
        // It becomes an aggregate's ORDER BY, where neither is read.
        let found = |test: &dyn Fn(&SqlExpr) -> bool| {
            visit_expressions(&expr, |e| match test(e) {
                true => ControlFlow::Break(()),
                false => ControlFlow::Continue(()),
            })
            .is_break()
        };
        if found(&|e| matches!(e, SqlExpr::Function(f) if f.over.is_some())) {
            return unsupported("DISTINCT ON ordered by a window function");
        }
        if found(&|e| {
            matches!(
                e,
                SqlExpr::Subquery(_) | SqlExpr::Exists { .. } | SqlExpr::InSubquery { .. }
            )
        }) {
            return unsupported("DISTINCT ON ordered by a subquery");
        }
        if !is_key(&expr) {
            order.push(format!("{expr}{}", item.options));
        }
    }
    Ok(order)
}

/// Whether an expression of `projection` (at any depth) satisfies `test`.
fn any_expression(projection: &[SelectItem], test: impl Fn(&SqlExpr) -> bool) -> bool {
    projection.iter().any(|item| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
            visit_expressions(e, |e| {
                if test(e) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .is_break()
        }
        _ => false,
    })
}
