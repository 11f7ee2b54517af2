//! EXISTS / NOT EXISTS / IN / NOT IN (subquery) conjuncts of WHERE, which become semi- and anti-joins.
//!
//! `x NOT IN (subquery)` keeps a row only when the comparison with every subquery row is true, so a
//! NULL on either side (which makes it unknown) removes the row unless the subquery is empty: it is
//! the anti-join on "may equal", `(x = y OR x IS NULL OR y IS NULL)` per column.
//!
//! A plain subquery (SELECT ... FROM ... WHERE) is read as a block that may reference the enclosing
//! one: its conjuncts over its own FROM filter the right side, and the ones referencing the
//! enclosing block form the semi-join's `on`. Any other subquery must be uncorrelated, and its whole
//! node is the right side.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, visit_expressions_mut, BinaryOperator, Expr as SqlExpr, GroupByExpr, Query,
    Select, SetExpr, UnaryOperator,
};

use super::block::check_select;
use super::query::check_query;
use super::scope::{Layout, Sym};
use super::template::{and_all, concat, equals, strip_nested};
use super::{invalid, unsupported, Analyzer, Result};
use crate::dvm::optree::{Expr, ExprPart, Node};

/// How a WHERE conjunct is handled.
pub(super) enum Conjunct<'a> {
    Exists {
        query: &'a Query,
        anti: bool,
    },
    In {
        lhs: &'a SqlExpr,
        query: &'a Query,
        negated: bool,
    },
    Plain(&'a SqlExpr),
}

/// A semi-join to put over the block's FROM. `on` holds symbols: the block's columns, and
/// `Sym::Right` for the right side's.
pub(super) struct Semi {
    pub anti: bool,
    pub right: Node,
    pub on: Expr,
}

pub(super) fn classify(expr: &SqlExpr) -> Result<Conjunct<'_>> {
    match strip_nested(expr) {
        SqlExpr::Exists { subquery, negated } => Ok(Conjunct::Exists {
            query: subquery,
            anti: *negated,
        }),
        SqlExpr::InSubquery {
            expr: lhs,
            subquery,
            negated,
        } => Ok(Conjunct::In {
            lhs,
            query: subquery,
            negated: *negated,
        }),
        SqlExpr::UnaryOp {
            op: UnaryOperator::Not,
            expr: inner,
        } => match strip_nested(inner) {
            SqlExpr::Exists { subquery, negated } => Ok(Conjunct::Exists {
                query: subquery,
                anti: !negated,
            }),
            SqlExpr::InSubquery {
                expr: lhs,
                subquery,
                negated,
            } => Ok(Conjunct::In {
                lhs,
                query: subquery,
                negated: !negated,
            }),
            _ => Ok(Conjunct::Plain(expr)),
        },
        _ => Ok(Conjunct::Plain(expr)),
    }
}

/// `x = ANY (subquery)` is `x IN (subquery)` and `x <> ALL (subquery)` is `x NOT IN (subquery)`, by
/// the standard's definition, NULLs included (PostgreSQL prints the first as IN, keeps the second):
/// `select` with them rewritten so, or None when it has none. Other comparisons with ANY or ALL over
/// a subquery are refused by name.
pub(super) fn quantified_as_in(select: &Select) -> Result<Option<Box<Select>>> {
    let quantified = |e: &SqlExpr| match e {
        SqlExpr::AnyOp { right, .. } | SqlExpr::AllOp { right, .. } => {
            matches!(strip_nested(right), SqlExpr::Subquery(_))
        }
        _ => false,
    };
    if visit_expressions(select, |e| {
        if quantified(e) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_continue()
    {
        return Ok(None);
    }
    let mut out = Box::new(select.clone());
    let refused = visit_expressions_mut(out.as_mut(), |e| {
        let (left, op, right, negated) = match e {
            SqlExpr::AnyOp {
                left,
                compare_op,
                right,
                ..
            } => (left, compare_op, right, false),
            SqlExpr::AllOp {
                left,
                compare_op,
                right,
            } => (left, compare_op, right, true),
            _ => return ControlFlow::Continue(()),
        };
        let SqlExpr::Subquery(query) = strip_nested(right) else {
            return ControlFlow::Continue(());
        };
        let expected = if negated {
            BinaryOperator::NotEq
        } else {
            BinaryOperator::Eq
        };
        if *op != expected {
            let quantifier = if negated { "ALL" } else { "ANY" };
            return ControlFlow::Break(format!("{op} {quantifier} (subquery)"));
        }
        *e = SqlExpr::InSubquery {
            expr: left.clone(),
            subquery: query.clone(),
            negated,
        };
        ControlFlow::Continue(())
    });
    if let ControlFlow::Break(what) = refused {
        return unsupported(format!(
            "{what} (a comparison with ANY or ALL over a subquery other than = ANY, which is IN, and <> ALL, which is NOT IN)"
        ));
    }
    Ok(Some(out))
}

const IN_CONTEXT: &str = "the left side of IN (subquery)";

/// How a row of the enclosing block and a subquery row are compared.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Membership {
    /// EXISTS: the subquery's own conditions only.
    Exists,
    /// IN: the values are equal.
    In,
    /// NOT IN: the anti-join on values that may be equal (equal, or either NULL).
    NotIn,
}

impl Membership {
    fn anti(self, anti: bool) -> bool {
        anti || self == Membership::NotIn
    }

    fn compare(self, left: Expr, right: Expr) -> Expr {
        match self {
            Membership::NotIn => concat([
                Expr::sql("(("),
                left.clone(),
                Expr::sql(" = "),
                right.clone(),
                Expr::sql(") OR ("),
                left,
                Expr::sql(") IS NULL OR ("),
                right,
                Expr::sql(") IS NULL)"),
            ]),
            _ => equals(left, right),
        }
    }
}

impl Analyzer<'_> {
    /// The semi-join for `EXISTS (query)` (no `lhs`), `lhs IN (query)` or, as an anti-join,
    /// `lhs NOT IN (query)`.
    pub(super) fn semi(
        &mut self,
        query: &Query,
        lhs: Option<&SqlExpr>,
        membership: Membership,
        anti: bool,
    ) -> Result<Semi> {
        let anti = membership.anti(anti);
        let lhs = match lhs.map(strip_nested) {
            Some(SqlExpr::Tuple(row)) => Some(
                row.iter()
                    .map(|e| self.render(e, IN_CONTEXT))
                    .collect::<Result<Vec<_>>>()?,
            ),
            Some(lhs) => Some(vec![self.render(lhs, IN_CONTEXT)?]),
            None => None,
        };
        check_query(query)?;
        if let Some(select) = self.plain_select(query) {
            return self.plain_semi(select, lhs, membership, anti);
        }
        // Any other query must be uncorrelated (its blocks cannot see this one): its node is the right side.
        let sub = self.query(query)?;
        let on = match lhs {
            Some(lhs) => {
                if lhs.len() != sub.names.len() {
                    return invalid("IN subquery with the wrong number of columns");
                }
                let right = (0..lhs.len()).map(|n| Expr::col(self.syms.id(Sym::Right(n))));
                and_all(
                    lhs.into_iter()
                        .zip(right)
                        .map(|(l, r)| membership.compare(l, r))
                        .collect(),
                )
            }
            None => None,
        };
        Ok(Semi {
            anti,
            right: sub.node,
            on: on.unwrap_or_else(|| Expr::sql("true")),
        })
    }

    /// The subquery's SELECT if it is a single block with nothing but FROM and WHERE.
    fn plain_select<'q>(&self, query: &'q Query) -> Option<&'q Select> {
        let SetExpr::Select(select) = &*query.body else {
            return None;
        };
        let ungrouped = matches!(&select.group_by, GroupByExpr::Expressions(g, m) if g.is_empty() && m.is_empty());
        let plain = query.with.is_none()
            && ungrouped
            && select.having.is_none()
            && select.distinct.is_none()
            && select.named_window.is_empty()
            && !select
                .projection
                .iter()
                .any(|item| self.item_has_aggregate(item));
        plain.then_some(&**select)
    }

    /// The right side is the subquery's FROM under its own WHERE conjuncts, so correlated conjuncts
    /// can read any of its columns; for IN, the select-list expressions are inlined into `on`.
    fn plain_semi(
        &mut self,
        select: &Select,
        lhs: Option<Vec<Expr>>,
        membership: Membership,
        anti: bool,
    ) -> Result<Semi> {
        let quantified = quantified_as_in(select)?;
        let select = quantified.as_deref().unwrap_or(select);
        let hoisted = self.hoist_scalar_subqueries(select)?;
        let select = hoisted.as_deref().unwrap_or(select);
        check_select(select)?;
        self.in_frame(true, |an, scope| {
            let from = an.from_clause(&select.from)?;
            let mut filter = an.where_clause(select.selection.as_ref(), scope)?;
            let mut on = std::mem::take(&mut filter.correlated);
            if let Some(lhs) = lhs {
                let items = an.select_items(&select.projection, scope)?;
                if items.len() != lhs.len() {
                    return invalid("IN subquery with the wrong number of columns");
                }
                for (l, (_, e)) in lhs.into_iter().zip(&items) {
                    on.push(
                        membership.compare(l, an.render(e, "the SELECT list of an IN subquery")?),
                    );
                }
            }
            let layout = Layout::new(scope, &an.scopes[scope]);
            let right = an.build_input(from, filter, &layout)?;
            let on = on.iter().map(|e| an.to_right_side(e, &layout)).collect();
            Ok(Semi {
                anti,
                right,
                on: and_all(on).unwrap_or_else(|| Expr::sql("true")),
            })
        })
    }

    /// Turns the subquery's own columns into `Sym::Right` positions; the enclosing block's stay symbols.
    fn to_right_side(&mut self, expr: &Expr, layout: &Layout) -> Expr {
        let parts = expr
            .parts
            .iter()
            .map(|part| match part {
                ExprPart::Col(n) => match layout.position(self.syms.get(*n)) {
                    Some(pos) => ExprPart::Col(self.syms.id(Sym::Right(pos))),
                    None => ExprPart::Col(*n),
                },
                sql => sql.clone(),
            })
            .collect();
        Expr { parts }
    }
}
