//! Scalar subqueries that always return exactly one row: an uncorrelated aggregate without GROUP BY
//! or HAVING, such as `(SELECT avg(t.y) FROM t)`. A block reads each one as a cross join with that row:
//!
//! `... WHERE x > (SELECT avg(t.y) FROM t)` is read as
//! `... FROM ..., (SELECT avg(t.y) FROM t) AS "__pgt_scalar_1"(v) WHERE x > "__pgt_scalar_1".v`,
//!
//! which the engine already maintains (a change of the value changes every row that reads it). In a
//! block with GROUP BY, a value read by the SELECT list or HAVING is one more group key: every row has
//! the same value, so the groups do not change.
//!
//! A *correlated* one is read as a join with its grouped form when that cannot change the result: it
//! is an operand of a comparison that is a top-level WHERE conjunct, it is correlated by equalities
//! only, and its value over no rows is NULL (aggregates other than count, combined by arithmetic). Then
//! `... WHERE l.q < (SELECT 0.2 * avg(l2.q) FROM l l2 WHERE l2.p = outer.p)` is read as
//! `... FROM ..., (SELECT l2.p, 0.2 * avg(l2.q) FROM l l2 GROUP BY l2.p) AS s(k1, v)
//!  WHERE l.q < s.v AND s.k1 = outer.p`:
//! an outer row without a group compares with NULL and is dropped either way. A correlated *lookup* —
//! one expression of one table whose unique key the equalities fix — is read the same way, with the
//! table itself as its form (see `grouped_subquery`). Other scalar subqueries (correlated otherwise,
//! ones that may return no row or several) are refused by name.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, GroupByExpr, Ident, Query, Select, SelectItem, SetExpr,
    TableFactor, UnaryOperator, Visit, VisitMut, Visitor, VisitorMut,
};

use super::template::{conjuncts, function_name, ident_name, name_parts, strip_nested};
use super::{invalid, parse, unsupported, AnalyzeError, Analyzer, Relation, Result};
use crate::dvm::optree::UniqueKey;

/// The alias of the n-th scalar subquery's row; its one column is `v`.
fn alias(n: usize) -> String {
    format!("__pgt_scalar_{n}")
}

/// A correlated scalar subquery as `SELECT keys, value FROM ... WHERE <own conditions> GROUP BY keys`:
/// one row per group, to be joined where its keys equal `outer` (the enclosing query's expressions
/// the subquery compared them with). `value` is the subquery's expression.
pub(super) struct Grouped {
    pub query: Query,
    pub outer: Vec<SqlExpr>,
    pub value: SqlExpr,
    /// A lookup (see [`Analyzer::grouped_subquery`]): its rows are the table's own, one per key, and
    /// a missing one reads NULL whatever `value` is.
    pub lookup: bool,
}

impl Grouped {
    /// The grouped form's column aliases: `k1..kn` for the keys, `v` for the value.
    pub fn columns(&self) -> Vec<String> {
        (1..=self.outer.len())
            .map(|i| format!("k{i}"))
            .chain(["v".to_string()])
            .collect()
    }
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
                *expr = column(&name, "v");
            }
        }
        ControlFlow::Continue(())
    }

    // A nested query's expressions belong to that query's own block.
    track_query_depth!(());
}

/// The qualifiers an expression's column references use.
fn qualifiers(expr: &SqlExpr) -> BTreeSet<String> {
    let mut names = Names::default();
    let _ = expr.visit(&mut names);
    names.qualifiers
}

fn strip_nested_mut(expr: &mut SqlExpr) -> &mut SqlExpr {
    match expr {
        SqlExpr::Nested(inner) => strip_nested_mut(inner),
        other => other,
    }
}

pub(super) fn column(alias: &str, name: &str) -> SqlExpr {
    SqlExpr::CompoundIdentifier(vec![Ident::with_quote('"', alias), Ident::new(name)])
}

/// `=`, `<>`, `<`, `<=`, `>`, `>=`: the operators a correlated scalar subquery may be compared with.
pub(super) fn is_comparison(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
    )
}

pub(super) fn and_all(parts: Vec<SqlExpr>) -> Option<SqlExpr> {
    parts.into_iter().reduce(|l, r| SqlExpr::BinaryOp {
        left: Box::new(l),
        op: BinaryOperator::And,
        right: Box::new(r),
    })
}

/// Whether a subquery refers to columns of an enclosing query (qualified by an alias it does not define).
pub(super) fn reads_outer(query: &Query) -> bool {
    let mut names = Names::default();
    let _ = query.visit(&mut names);
    !names.qualifiers.is_subset(&names.defined)
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
            TableFactor::Derived {
                alias: Some(alias), ..
            } => {
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

/// Whether `node` has, at its own level (not inside a nested subquery), an expression `hit` accepts.
pub(super) fn has_own<T: Visit>(node: &T, hit: impl FnMut(&SqlExpr) -> bool) -> bool {
    struct OwnLevel<F> {
        depth: usize,
        hit: F,
    }
    impl<F: FnMut(&SqlExpr) -> bool> Visitor for OwnLevel<F> {
        type Break = ();

        fn pre_visit_expr(&mut self, expr: &SqlExpr) -> ControlFlow<()> {
            if self.depth == 0 && (self.hit)(expr) {
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
    node.visit(&mut OwnLevel { depth: 0, hit }).is_break()
}

impl Analyzer<'_> {
    pub(super) fn calls_aggregate(&self, item: &SelectItem) -> bool {
        has_own(item, |e| self.is_aggregate_call(e))
    }

    /// `select` with its scalar subqueries read as cross joins (see the module comment), or None when
    /// it has none.
    pub(super) fn hoist_scalar_subqueries(&self, select: &Select) -> Result<Option<Box<Select>>> {
        let subquery = |e: &SqlExpr| matches!(e, SqlExpr::Subquery(_));
        let has_any = select
            .selection
            .as_ref()
            .is_some_and(|e| has_own(e, subquery))
            || select.projection.iter().any(|item| has_own(item, subquery))
            || select.having.as_ref().is_some_and(|e| has_own(e, subquery));
        if !has_any {
            return Ok(None);
        }
        // Boxed: `select` recurses through views and subqueries, and a Select is large.
        let mut out = Box::new(select.clone());
        let decorrelated = self.decorrelate_comparisons(&mut out)?;
        let mut hoist = Hoist {
            depth: 0,
            next: decorrelated,
            found: Vec::new(),
        };
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
        let aggregates =
            out.having.is_some() || out.projection.iter().any(|item| self.calls_aggregate(item));
        let mut grouped_keys = match &mut out.group_by {
            GroupByExpr::Expressions(keys, modifiers) if modifiers.is_empty() => Some(keys),
            GroupByExpr::Expressions(..) => None,
            GroupByExpr::All(_) => return unsupported("GROUP BY ALL"),
        };
        let global_aggregate = aggregates && grouped_keys.as_ref().is_some_and(|k| k.is_empty());
        if global_aggregate && hoist.found.len() > in_where {
            return unsupported(
                "scalar subquery in the SELECT list or HAVING of an aggregate without GROUP BY",
            );
        }
        for (n, (name, query)) in hoist.found.iter().enumerate() {
            self.check_one_row(query)?;
            let derived = parse(&format!("SELECT 1 FROM ({query}) AS \"{name}\"(v)"))?;
            let SetExpr::Select(wrapper) = *derived.body else {
                return invalid("scalar subquery wrapper");
            };
            out.from.extend(wrapper.from);
            if n >= in_where {
                if let Some(keys) = grouped_keys.as_mut().filter(|k| !k.is_empty()) {
                    keys.push(column(name, "v"));
                }
            }
        }
        Ok(Some(out))
    }

    /// Reads the correlated scalar subqueries compared in top-level WHERE conjuncts of `select` as joins
    /// with their grouped form (see the module comment); returns how many.
    fn decorrelate_comparisons(&self, select: &mut Select) -> Result<usize> {
        let Some(selection) = select.selection.take() else {
            return Ok(0);
        };
        let mut kept = Vec::new();
        let mut joined = 0;
        for conjunct in conjuncts(&selection) {
            let mut conjunct = conjunct.clone();
            if let SqlExpr::BinaryOp { left, op, right } = strip_nested_mut(&mut conjunct) {
                let comparison = is_comparison(op);
                for side in [left, right] {
                    let SqlExpr::Subquery(query) = strip_nested(side) else {
                        continue;
                    };
                    if !comparison || !reads_outer(query) {
                        continue;
                    }
                    let query = query.clone();
                    let name = alias(joined + 1);
                    let (item, keys) = self.grouped_form(&query, &name)?;
                    select.from.push(item);
                    **side = column(&name, "v");
                    for (i, outer) in keys.into_iter().enumerate() {
                        kept.push(SqlExpr::BinaryOp {
                            left: Box::new(column(&name, &format!("k{}", i + 1))),
                            op: BinaryOperator::Eq,
                            right: Box::new(outer),
                        });
                    }
                    joined += 1;
                }
            }
            kept.push(conjunct);
        }
        select.selection = and_all(kept);
        Ok(joined)
    }

    /// The FROM item `(SELECT keys, value FROM ... WHERE <own conditions> GROUP BY keys) AS name(k1.., v)`
    /// for a correlated scalar subquery compared in WHERE, and the outer expressions its keys must equal.
    fn grouped_form(
        &self,
        query: &Query,
        name: &str,
    ) -> Result<(sqlparser::ast::TableWithJoins, Vec<SqlExpr>)> {
        let grouped = self.grouped_subquery(query)?;
        if !self.null_when_missing(&grouped) {
            return unsupported("correlated scalar subquery whose value over no rows is not NULL (count, or a non-arithmetic expression)");
        }
        let derived = parse(&format!(
            "SELECT 1 FROM ({}) AS \"{name}\"({})",
            grouped.query,
            grouped.columns().join(", ")
        ))?;
        let SetExpr::Select(wrapper) = *derived.body else {
            return invalid("scalar subquery wrapper");
        };
        let Some(item) = wrapper.from.into_iter().next() else {
            return invalid("scalar subquery wrapper");
        };
        Ok((item, grouped.outer))
    }

    /// A correlated scalar subquery's grouped form (see the module comment): one aggregate without
    /// GROUP BY, correlated by equalities only. Or a *lookup*, `(SELECT u.name FROM u WHERE u.id =
    /// o.user_id)`: one expression over one table, no aggregate, correlated by equalities on columns
    /// that hold a unique key of the table, so at most one row matches an outer row. Its form is
    /// `SELECT u.id, u.name FROM u` — one row per key already — and an outer row without one reads
    /// NULL, as the subquery does.
    pub(super) fn grouped_subquery(&self, query: &Query) -> Result<Grouped> {
        let refuse = |why: &str| unsupported(format!("correlated scalar subquery {why}"));
        let SetExpr::Select(select) = &*query.body else {
            return refuse("that is not a single SELECT");
        };
        let ungrouped = matches!(&select.group_by, GroupByExpr::Expressions(g, m) if g.is_empty() && m.is_empty());
        if !ungrouped || select.having.is_some() || select.projection.len() != 1 {
            return refuse("other than one aggregate without GROUP BY");
        }
        let value = match &select.projection[0] {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e.clone(),
            _ => return refuse("other than one aggregate without GROUP BY"),
        };
        let lookup = !has_own(&value, |e| self.is_aggregate_call(e));
        let mut own = Names::default();
        let _ = query.visit(&mut own);
        let inner = |e: &SqlExpr| qualifiers(e).is_subset(&own.defined);
        let (mut local, mut keys, mut outer) = (Vec::new(), Vec::new(), Vec::new());
        for conjunct in select.selection.iter().flat_map(|w| conjuncts(w)) {
            if inner(conjunct) {
                local.push(conjunct.clone());
                continue;
            }
            let SqlExpr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } = strip_nested(conjunct)
            else {
                return refuse("with a correlation other than an equality");
            };
            let own_side = |e: &SqlExpr| !qualifiers(e).is_empty() && inner(e);
            let outside =
                |e: &SqlExpr| !qualifiers(e).is_empty() && qualifiers(e).is_disjoint(&own.defined);
            let (k, o) = if own_side(left) && outside(right) {
                (left, right)
            } else if own_side(right) && outside(left) {
                (right, left)
            } else {
                return refuse("with a correlation other than an equality");
            };
            keys.push((**k).clone());
            outer.push((**o).clone());
        }
        if !inner(&value) {
            return refuse("whose value reads the enclosing query");
        }
        if lookup {
            let key = self.unique_key_among(query, select, &keys).ok_or_else(|| {
                AnalyzeError::Unsupported(
                    "correlated scalar subquery other than one aggregate without GROUP BY, or one \
                     expression of a table whose unique key the subquery's equalities fix (it may \
                     return several rows)"
                        .into(),
                )
            })?;
            let mut noted = self.unique_keys.borrow_mut();
            if !noted.contains(&key) {
                noted.push(key);
            }
        }
        let mut grouped = query.clone();
        let SetExpr::Select(body) = grouped.body.as_mut() else {
            return invalid("scalar subquery body");
        };
        body.projection = keys
            .iter()
            .cloned()
            .chain([value.clone()])
            .map(SelectItem::UnnamedExpr)
            .collect();
        body.selection = and_all(local);
        body.group_by = GroupByExpr::Expressions(if lookup { Vec::new() } else { keys }, vec![]);
        Ok(Grouped {
            query: grouped,
            outer,
            value,
            lookup,
        })
    }

    /// For a subquery that is one expression of one table (no join, DISTINCT, ORDER BY, LIMIT,
    /// OFFSET, WITH or nested subquery) whose correlated equalities `keys` are plain columns of it:
    /// a unique key of the table among those columns.
    fn unique_key_among(
        &self,
        query: &Query,
        select: &Select,
        keys: &[SqlExpr],
    ) -> Option<UniqueKey> {
        if query.with.is_some()
            || query.order_by.is_some()
            || query.limit_clause.is_some()
            || query.fetch.is_some()
            || select.distinct.is_some()
            || select.from.len() != 1
            || !select.from[0].joins.is_empty()
            || has_own(select, |e| {
                matches!(
                    e,
                    SqlExpr::Subquery(_) | SqlExpr::Exists { .. } | SqlExpr::InSubquery { .. }
                )
            })
        {
            return None;
        }
        let TableFactor::Table {
            name,
            alias,
            args: None,
            sample: None,
            ..
        } = &select.from[0].relation
        else {
            return None;
        };
        // Columns renamed by the alias (`people p(a, b)`) would hide which columns the keys are.
        if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
            return None;
        }
        let parts = name_parts(name).ok()?;
        let [schema, table] = parts.as_slice() else {
            return None;
        };
        let Some(Relation::Table { relid, .. }) = self.catalog.relation(Some(schema), table) else {
            return None;
        };
        let alias = alias
            .as_ref()
            .map_or_else(|| table.clone(), |a| ident_name(&a.name));
        let columns: Vec<String> = keys
            .iter()
            .map(|k| match strip_nested(k) {
                SqlExpr::CompoundIdentifier(parts)
                    if parts.len() == 2 && ident_name(&parts[0]) == alias =>
                {
                    Some(ident_name(&parts[1]))
                }
                _ => None,
            })
            .collect::<Option<_>>()?;
        self.catalog
            .unique_keys(relid)
            .into_iter()
            .find(|key| key.iter().all(|c| columns.contains(c)))
            .map(|columns| UniqueKey { relid, columns })
    }

    /// Whether an outer row without a row of `grouped` reads NULL (not a count's 0).
    pub(super) fn null_when_missing(&self, grouped: &Grouped) -> bool {
        grouped.lookup || self.null_over_no_rows(&grouped.value)
    }

    /// Whether an expression is NULL when its aggregates see no rows: aggregates other than count,
    /// combined by arithmetic and casts (strict, so a NULL operand makes a NULL result).
    pub(super) fn null_over_no_rows(&self, expr: &SqlExpr) -> bool {
        match strip_nested(expr) {
            e @ SqlExpr::Function(f) if self.is_aggregate_call(e) => {
                function_name(f).rsplit('.').next() != Some("count")
            }
            SqlExpr::BinaryOp { left, op, right }
                if matches!(
                    op,
                    BinaryOperator::Plus
                        | BinaryOperator::Minus
                        | BinaryOperator::Multiply
                        | BinaryOperator::Divide
                        | BinaryOperator::Modulo
                ) =>
            {
                self.null_over_no_rows(left) || self.null_over_no_rows(right)
            }
            SqlExpr::UnaryOp {
                op: UnaryOperator::Minus | UnaryOperator::Plus,
                expr,
            } => self.null_over_no_rows(expr),
            SqlExpr::Cast { expr, .. } => self.null_over_no_rows(expr),
            _ => false,
        }
    }

    /// Refuses a scalar subquery that is not an uncorrelated aggregate without GROUP BY or HAVING.
    fn check_one_row(&self, query: &Query) -> Result<()> {
        if reads_outer(query) {
            return unsupported("correlated scalar subquery other than one in the SELECT list or compared in a WHERE condition");
        }
        let one_row = match &*query.body {
            SetExpr::Select(select) => {
                matches!(&select.group_by, GroupByExpr::Expressions(g, m) if g.is_empty() && m.is_empty())
                    && select.having.is_none()
                    && select.projection.len() == 1
                    && select
                        .projection
                        .iter()
                        .all(|item| self.calls_aggregate(item))
            }
            _ => false,
        };
        if !one_row || query.with.is_some() {
            return unsupported("scalar subquery other than an aggregate without GROUP BY");
        }
        Ok(())
    }
}
