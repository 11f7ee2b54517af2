//! One SELECT block, built bottom-up (after its one-row scalar subqueries became FROM items,
//! `scalar.rs`): FROM, then WHERE (a Filter and semi-joins), then GROUP BY and
//! aggregates with HAVING, then the SELECT list (always a Project), then DISTINCT.
//!
//! Everything the block references is resolved to symbols first; only then is the layout fixed
//! (which table columns the scans read) and every expression placed.

use sqlparser::ast::{
    Distinct, Expr as SqlExpr, Ident, Select, SelectFlavor, SelectItem,
    SelectItemQualifiedWildcardKind,
};

use super::from::FromTree;
use super::scope::{Layout, ScopeId, Sym};
use super::subquery::{classify, quantified_as_in, Conjunct, Membership, Semi};
use super::template::{and_all, as_conjunct, conjuncts, ident_name, name_parts, strip_nested};
use super::{invalid, unsupported, Analyzed, Analyzer, Result};
use crate::dvm::optree::{Expr, Node};

/// A WHERE clause, split by what each top-level conjunct needs.
#[derive(Default)]
pub(super) struct Where {
    /// Conjuncts over the block's own FROM: one Filter.
    filters: Vec<Expr>,
    /// EXISTS / NOT EXISTS / IN conjuncts.
    semis: Vec<Semi>,
    /// Conjuncts referencing the enclosing block (only in an EXISTS/IN subquery): its semi-join's `on`.
    pub correlated: Vec<Expr>,
}

/// What the WHERE context is called in errors about a subquery found inside an expression.
const WHERE_CONTEXT: &str = "WHERE other than a top-level [NOT] EXISTS or [NOT] IN conjunct";

impl Analyzer<'_> {
    pub(super) fn select(&mut self, select: &Select) -> Result<Analyzed> {
        check_select(select)?;
        let quantified = quantified_as_in(select)?;
        let select = quantified.as_deref().unwrap_or(select);
        let decorrelated = self.decorrelate_select_list(select)?;
        let select = decorrelated.as_deref().unwrap_or(select);
        let hoisted = self.hoist_scalar_subqueries(select)?;
        let select = hoisted.as_deref().unwrap_or(select);
        self.in_frame(false, |an, scope| an.select_block(select, scope))
    }

    fn select_block(&mut self, select: &Select, scope: ScopeId) -> Result<Analyzed> {
        let from = self.from_clause(&select.from)?;
        let filter = self.where_clause(select.selection.as_ref(), scope)?;
        let items = self.select_items(&select.projection, scope)?;
        let names = items.iter().map(|(name, _)| name.clone()).collect();
        let mut node = if self.is_grouped(select, &items) {
            self.grouped(select, &items, from, filter, scope)?
        } else {
            let exprs = items
                .iter()
                .map(|(_, e)| self.render(e, "the SELECT list"))
                .collect::<Result<Vec<_>>>()?;
            // Every reference is resolved: the layout (which columns the scans read) is final.
            let layout = Layout::new(scope, &self.scopes[scope]);
            let input = self.build_input(from, filter, &layout)?;
            let exprs = exprs
                .iter()
                .map(|e| self.place(e, |sym| layout.position(sym)))
                .collect::<Result<_>>()?;
            Node::Project {
                input: Box::new(input),
                exprs,
            }
        };
        if matches!(select.distinct, Some(Distinct::Distinct)) {
            node = Node::Distinct {
                input: Box::new(node),
            };
        }
        Ok(Analyzed { node, names })
    }

    /// Splits WHERE into conjuncts; subqueries in EXISTS/IN conjuncts are analysed here.
    pub(super) fn where_clause(
        &mut self,
        selection: Option<&SqlExpr>,
        scope: ScopeId,
    ) -> Result<Where> {
        let mut parts = Where::default();
        for conjunct in selection.map(conjuncts).unwrap_or_default() {
            match classify(conjunct)? {
                Conjunct::Exists { query, anti } => {
                    parts
                        .semis
                        .push(self.semi(query, None, Membership::Exists, anti)?)
                }
                Conjunct::In {
                    lhs,
                    query,
                    negated,
                } => {
                    let membership = if negated {
                        Membership::NotIn
                    } else {
                        Membership::In
                    };
                    parts
                        .semis
                        .push(self.semi(query, Some(lhs), membership, false)?)
                }
                Conjunct::Plain(expr) => {
                    let expr = as_conjunct(expr, self.render(expr, WHERE_CONTEXT)?);
                    if self.is_correlated(&expr, scope) {
                        parts.correlated.push(expr);
                    } else {
                        parts.filters.push(expr);
                    }
                }
            }
        }
        Ok(parts)
    }

    /// The block's rows before grouping: FROM with the WHERE conjuncts placed in it (`pushdown.rs`),
    /// a Filter of the ones that stay above it, then the semi-joins.
    pub(super) fn build_input(
        &mut self,
        from: FromTree,
        filter: Where,
        layout: &Layout,
    ) -> Result<Node> {
        let (from, above) = self.push_down(from, filter.filters, layout.scope);
        let mut node = self.build_from(from, layout)?;
        if let Some(predicate) = and_all(above) {
            let predicate = self.place(&predicate, |sym| layout.position(sym))?;
            node = Node::Filter {
                input: Box::new(node),
                predicate,
            };
        }
        for semi in filter.semis {
            let on = self.place(&semi.on, |sym| match sym {
                Sym::Right(n) => Some(layout.arity + n),
                sym => layout.position(sym),
            })?;
            node = Node::SemiJoin {
                anti: semi.anti,
                left: Box::new(node),
                right: Box::new(semi.right),
                on,
            };
        }
        Ok(node)
    }

    /// The SELECT list as (output name, expression), with `*` and `t.*` expanded.
    pub(super) fn select_items(
        &mut self,
        projection: &[SelectItem],
        scope: ScopeId,
    ) -> Result<Vec<(String, SqlExpr)>> {
        let mut items = Vec::new();
        for item in projection {
            match item {
                SelectItem::UnnamedExpr(expr) => items.push((default_name(expr), expr.clone())),
                SelectItem::ExprWithAlias { expr, alias } => {
                    items.push((ident_name(alias), expr.clone()))
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(name),
                    _,
                ) => {
                    let alias = match name_parts(name)?.as_slice() {
                        [alias] => alias.clone(),
                        _ => return invalid(format!("unexpected {name}.*")),
                    };
                    let Some(index) = self.scopes[scope]
                        .items
                        .iter()
                        .position(|it| it.alias == alias)
                    else {
                        return invalid(format!("missing FROM-clause entry for {alias}"));
                    };
                    items.extend(self.star(scope, index));
                }
                SelectItem::Wildcard(_) => {
                    for index in 0..self.scopes[scope].items.len() {
                        items.extend(self.star(scope, index));
                    }
                }
                SelectItem::QualifiedWildcard(..) => {
                    return unsupported(format!("select item {item}"))
                }
            }
        }
        Ok(items)
    }

    /// The columns of one FROM item, as if listed `alias.column` (quoted, so names survive as they are).
    fn star(&self, scope: ScopeId, index: usize) -> Vec<(String, SqlExpr)> {
        let item = &self.scopes[scope].items[index];
        let alias = Ident::with_quote('"', &item.alias);
        let column = |name: &String| {
            SqlExpr::CompoundIdentifier(vec![alias.clone(), Ident::with_quote('"', name)])
        };
        item.names
            .iter()
            .map(|name| (name.clone(), column(name)))
            .collect()
    }
}

/// The name PostgreSQL gives an unaliased select item (normalised SQL aliases every non-column one).
pub(super) fn default_name(expr: &SqlExpr) -> String {
    match expr {
        SqlExpr::CompoundIdentifier(parts) => parts.last().map_or_else(String::new, ident_name),
        SqlExpr::Identifier(ident) => ident_name(ident),
        SqlExpr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map_or_else(String::new, ident_name),
        SqlExpr::Cast { expr, .. } | SqlExpr::Nested(expr) => default_name(strip_nested(expr)),
        SqlExpr::Case { .. } => "case".into(),
        _ => "?column?".into(),
    }
}

/// Rejects what a SELECT block may have beyond what `select_block` reads.
pub(super) fn check_select(select: &Select) -> Result<()> {
    if let Some(Distinct::On(_)) = select.distinct {
        // The query's, a subquery's in FROM, a CTE's or a view's were rewritten (`distinct_on`).
        return unsupported("DISTINCT ON in a subquery of an expression (DISTINCT ON is read in the SELECT of the query, of a subquery in FROM, of a CTE or of a view)");
    }
    if !select.named_window.is_empty() {
        return unsupported("WINDOW clause");
    }
    if select.into.is_some() {
        return unsupported("SELECT INTO");
    }
    let foreign = select.top.is_some()
        || select
            .select_modifiers
            .as_ref()
            .is_some_and(|m| m.is_any_set())
        || select.exclude.is_some()
        || !select.lateral_views.is_empty()
        || select.prewhere.is_some()
        || !select.connect_by.is_empty()
        || !select.cluster_by.is_empty()
        || !select.distribute_by.is_empty()
        || !select.sort_by.is_empty()
        || select.qualify.is_some()
        || select.value_table_mode.is_some()
        || select.flavor != SelectFlavor::Standard;
    if foreign {
        return invalid("non-PostgreSQL SELECT syntax");
    }
    Ok(())
}
