//! Scalar subqueries that always return exactly one row: an uncorrelated aggregate without GROUP BY
//! or HAVING, such as `(SELECT avg(t.y) FROM t)`. A block reads each one as a cross join with that row:
//!
//! `... WHERE x > (SELECT avg(t.y) FROM t)` is read as
//! `... FROM ..., (SELECT avg(t.y) FROM t) AS "__pgt_scalar_1"(v) WHERE x > "__pgt_scalar_1".v`,
//!
//! which the engine already maintains (a change of the value changes every row that reads it). In a
//! block with GROUP BY, a value read by the SELECT list or HAVING is one more group key: every row has
//! the same value, so the groups do not change. Other scalar subqueries (correlated ones, ones that may
//! return no row or several) are refused by name.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr as SqlExpr, GroupByExpr, Ident, Query, Select, SelectItem, SetExpr, TableFactor, Visit, VisitMut, Visitor, VisitorMut,
};

use super::template::ident_name;
use super::{invalid, parse, unsupported, Analyzer, Result};

/// The alias of the n-th scalar subquery's row; its one column is `v`.
fn alias(n: usize) -> String {
    format!("__pgt_scalar_{n}")
}

/// Replaces the block's own scalar subqueries (not those of nested subqueries) with a column of a
/// new FROM item, collecting the subqueries.
struct Hoist {
    depth: usize,
    next: usize,
    found: Vec<(String, Query)>,
}

impl VisitorMut for Hoist {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
        if self.depth == 0 {
            if let SqlExpr::Subquery(query) = expr {
                self.next += 1;
                let name = alias(self.next);
                self.found.push((name.clone(), (**query).clone()));
                *expr = SqlExpr::CompoundIdentifier(vec![Ident::with_quote('"', name), Ident::new("v")]);
            }
        }
        ControlFlow::Continue(())
    }

    // A nested query's expressions belong to that query's own block.
    fn pre_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// The table aliases a query defines, and the qualifiers its column references use.
#[derive(Default)]
struct Names {
    defined: BTreeSet<String>,
    qualifiers: BTreeSet<String>,
}

impl Visitor for Names {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table { name, alias, .. } => {
                let own = alias.as_ref().map(|a| ident_name(&a.name));
                let own = own.or_else(|| name.0.last().and_then(|p| p.as_ident()).map(ident_name));
                self.defined.extend(own);
            }
            TableFactor::Derived { alias: Some(alias), .. } => {
                self.defined.insert(ident_name(&alias.name));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &SqlExpr) -> ControlFlow<()> {
        if let SqlExpr::CompoundIdentifier(parts) = expr {
            if parts.len() >= 2 {
                self.qualifiers.insert(ident_name(&parts[parts.len() - 2]));
            }
        }
        ControlFlow::Continue(())
    }
}

/// Whether an expression has a scalar subquery of its own (not inside a nested subquery).
struct OwnSubquery {
    depth: usize,
}

impl Visitor for OwnSubquery {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &SqlExpr) -> ControlFlow<()> {
        if self.depth == 0 && matches!(expr, SqlExpr::Subquery(_)) {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// Whether an aggregate is called at the expression's own level (not inside a nested subquery).
struct OwnAggregate<'a, 'c> {
    analyzer: &'a Analyzer<'c>,
    depth: usize,
}

impl Visitor for OwnAggregate<'_, '_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &SqlExpr) -> ControlFlow<()> {
        if self.depth == 0 && self.analyzer.is_aggregate_call(expr) {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

impl Analyzer<'_> {
    fn calls_aggregate(&self, item: &SelectItem) -> bool {
        item.visit(&mut OwnAggregate { analyzer: self, depth: 0 }).is_break()
    }

    /// `select` with its scalar subqueries read as cross joins (see the module comment), or None when
    /// it has none.
    pub(super) fn hoist_scalar_subqueries(&self, select: &Select) -> Result<Option<Box<Select>>> {
        let mut probe = OwnSubquery { depth: 0 };
        let has_any = select.selection.as_ref().is_some_and(|e| e.visit(&mut probe).is_break())
            || select.projection.iter().any(|item| item.visit(&mut probe).is_break())
            || select.having.as_ref().is_some_and(|e| e.visit(&mut probe).is_break());
        if !has_any {
            return Ok(None);
        }
        // Boxed: `select` recurses through views and subqueries, and a Select is large.
        let mut out = Box::new(select.clone());
        let mut hoist = Hoist { depth: 0, next: 0, found: Vec::new() };
        if let Some(selection) = out.selection.as_mut() {
            let _ = selection.visit(&mut hoist);
        }
        let in_where = hoist.found.len();
        for item in out.projection.iter_mut() {
            let _ = item.visit(&mut hoist);
        }
        if let Some(having) = out.having.as_mut() {
            let _ = having.visit(&mut hoist);
        }
        let aggregates = out.having.is_some() || out.projection.iter().any(|item| self.calls_aggregate(item));
        let mut grouped_keys = match &mut out.group_by {
            GroupByExpr::Expressions(keys, modifiers) if modifiers.is_empty() => Some(keys),
            GroupByExpr::Expressions(..) => None,
            GroupByExpr::All(_) => return unsupported("GROUP BY ALL"),
        };
        let global_aggregate = aggregates && grouped_keys.as_ref().is_some_and(|k| k.is_empty());
        if global_aggregate && hoist.found.len() > in_where {
            return unsupported("scalar subquery in the SELECT list or HAVING of an aggregate without GROUP BY");
        }
        for (n, (name, query)) in hoist.found.iter().enumerate() {
            self.check_one_row(query)?;
            let derived = parse(&format!("SELECT 1 FROM ({query}) AS \"{name}\"(v)"))?;
            let SetExpr::Select(wrapper) = *derived.body else { return invalid("scalar subquery wrapper") };
            out.from.extend(wrapper.from);
            if n >= in_where {
                if let Some(keys) = grouped_keys.as_mut().filter(|k| !k.is_empty()) {
                    keys.push(SqlExpr::CompoundIdentifier(vec![Ident::with_quote('"', name.clone()), Ident::new("v")]));
                }
            }
        }
        Ok(Some(out))
    }

    /// Refuses a scalar subquery that is not an uncorrelated aggregate without GROUP BY or HAVING.
    fn check_one_row(&self, query: &Query) -> Result<()> {
        let mut names = Names::default();
        let _ = query.visit(&mut names);
        if !names.qualifiers.is_subset(&names.defined) {
            return unsupported("correlated scalar subquery");
        }
        let one_row = match &*query.body {
            SetExpr::Select(select) => {
                matches!(&select.group_by, GroupByExpr::Expressions(g, m) if g.is_empty() && m.is_empty())
                    && select.having.is_none()
                    && select.projection.len() == 1
                    && select.projection.iter().all(|item| self.calls_aggregate(item))
            }
            _ => false,
        };
        if !one_row || query.with.is_some() {
            return unsupported("scalar subquery other than an aggregate without GROUP BY");
        }
        Ok(())
    }
}
