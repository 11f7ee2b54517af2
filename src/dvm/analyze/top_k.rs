//! A top-level `ORDER BY ... LIMIT k [OFFSET m]`: taken off the query before it is analysed, and kept
//! as a [`TopK`] over the query's output columns (maintained by `dvm::top_k`). LIMIT anywhere else,
//! OFFSET without LIMIT and `FETCH ... WITH TIES` stay refused by `query::check_query`.

use sqlparser::ast::{
    Expr as SqlExpr, LimitClause, OrderByKind, Query, SelectItem, SetExpr, Value,
};

use super::{invalid, unsupported, Result};
use crate::dvm::optree::{SortKey, TopK};

/// Removes `ORDER BY ... LIMIT k [OFFSET m]` from `query` and returns it; None (and `query` untouched) when
/// the query has no LIMIT. ORDER BY items must be output columns: written as positions (as
/// PostgreSQL prints them for set operations) or as a SELECT-list expression.
pub(super) fn take(query: &mut Query) -> Result<Option<TopK>> {
    let Some(LimitClause::LimitOffset {
        limit: Some(limit),
        offset,
        limit_by,
    }) = &query.limit_clause
    else {
        return Ok(None);
    };
    if !limit_by.is_empty() {
        return invalid("LIMIT BY is not PostgreSQL");
    }
    let Some(limit) = constant_count(limit) else {
        return unsupported("LIMIT with a value other than a constant number");
    };
    let offset = match offset {
        None => 0,
        Some(offset) => match constant_count(&offset.value) {
            Some(n) => n,
            None => return unsupported("OFFSET with a value other than a constant number"),
        },
    };
    let items = match &query.order_by {
        Some(order_by) => match &order_by.kind {
            OrderByKind::Expressions(items) if !items.is_empty() => items,
            _ => return unsupported("LIMIT without ORDER BY"),
        },
        None => return unsupported("LIMIT without ORDER BY"),
    };
    let projection = match query.body.as_ref() {
        SetExpr::Select(select) => Some(&select.projection),
        _ => None,
    };
    let mut order = Vec::with_capacity(items.len());
    for item in items {
        if item.with_fill.is_some() {
            return invalid("ORDER BY ... WITH FILL is not PostgreSQL");
        }
        let Some(column) = output_position(&item.expr, projection) else {
            return unsupported(format!(
                "ORDER BY {} with LIMIT (an ORDER BY item must be one of the SELECT list's columns)",
                item.expr
            ));
        };
        order.push(SortKey {
            column,
            descending: item.options.asc == Some(false),
            nulls_first: item.options.nulls_first,
        });
    }
    query.order_by = None;
    query.limit_clause = None;
    Ok(Some(TopK {
        order,
        limit,
        offset,
    }))
}

/// A non-negative integer constant (`LIMIT 10`, `OFFSET 0`).
fn constant_count(expr: &SqlExpr) -> Option<u64> {
    match expr {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse::<u64>().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// The 0-based output column an ORDER BY item names: `ORDER BY 2`, or an expression printed as one
/// of the SELECT list's.
fn output_position(expr: &SqlExpr, projection: Option<&Vec<SelectItem>>) -> Option<usize> {
    if let SqlExpr::Value(v) = expr {
        if let Value::Number(n, _) = &v.value {
            return n.parse::<usize>().ok().filter(|&n| n >= 1).map(|n| n - 1);
        }
    }
    let wanted = unnested(expr).to_string();
    projection?.iter().position(|item| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
            unnested(e).to_string() == wanted
        }
        _ => false,
    })
}

fn unnested(mut expr: &SqlExpr) -> &SqlExpr {
    while let SqlExpr::Nested(inner) = expr {
        expr = inner;
    }
    expr
}
