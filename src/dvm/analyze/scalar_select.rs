//! Correlated scalar subqueries in the SELECT list, in HAVING, and in WHERE conditions that scalar.rs
//! does not read as an inner join (a count, a comparison inside OR, ...), read as left joins with their
//! grouped form (scalar.rs):
//!
//! `SELECT a.id, (SELECT max(b.y) FROM b WHERE b.a_id = a.id) AS m FROM a WHERE a.x > 0` is read as
//! `SELECT o.c1 AS id, s.v AS m
//!    FROM (SELECT a.id, a.id FROM a WHERE a.x > 0) AS o(c1, o1)
//!    LEFT JOIN (SELECT b.a_id, max(b.y) FROM b GROUP BY b.a_id) AS s(k1, v) ON s.k1 = o.o1`.
//!
//! The block without its SELECT list and HAVING becomes a derived table of what they read — column
//! references, and in a grouped block whole aggregate calls — and of the outer expressions the
//! subqueries are correlated with (group keys, in a grouped block); HAVING, or those WHERE conditions
//! (in a block without grouping, and without EXISTS or IN beside them), become the WHERE above the
//! joins. So the block's joins, filters and grouping are analysed (and placed) as written, not across
//! an outer join. Each outer row meets at most one group (there is one per key), so no row is repeated
//! or lost. An outer row without a group reads the subquery's value over no rows: NULL for aggregates
//! other than count combined by arithmetic, 0 for a bare count; other values (`coalesce(max(x), 0)`)
//! are refused by name, as are subqueries that may return several rows (not an aggregate, nor a
//! lookup by a unique key, which reads NULL for an outer row without its row) and ones inside an
//! aggregate's argument.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Distinct, Expr as SqlExpr, GroupByExpr, Ident, Select, SelectItem, SetExpr, VisitMut,
    VisitorMut,
};

use super::block::default_name;
use super::scalar::{and_all, column, has_own, is_comparison, reads_outer, Grouped};
use super::template::{conjuncts, function_name, ident_name, strip_nested};
use super::{invalid, parse, unsupported, AnalyzeError, Analyzer, Result};

/// A scalar subquery reading the enclosing block.
fn correlated(e: &SqlExpr) -> bool {
    matches!(e, SqlExpr::Subquery(q) if reads_outer(q))
}

/// The derived table of the block's FROM and WHERE.
const OUTER: &str = "__pgt_outer";

/// The prefix of each grouped form's alias (`__pgt_select_scalar_1`, ...).
const SCALAR: &str = "__pgt_select_scalar_";

impl Analyzer<'_> {
    /// `select` with the correlated scalar subqueries of its SELECT list and HAVING read as left joins
    /// (see the module comment), or None when it has none.
    pub(super) fn decorrelate_select_list(&self, select: &Select) -> Result<Option<Box<Select>>> {
        let ungrouped = matches!(&select.group_by, GroupByExpr::Expressions(g, m) if g.is_empty() && m.is_empty());
        let grouped = !ungrouped
            || select.having.is_some()
            || select
                .projection
                .iter()
                .any(|item| self.calls_aggregate(item));
        // WHERE conditions the inner join of scalar.rs cannot read move above the left joins (not in a
        // grouped block: they filter before grouping).
        let (mut kept, mut lifted) = (Vec::new(), Vec::new());
        for conjunct in select.selection.iter().flat_map(|w| conjuncts(w)) {
            // An EXISTS or IN beside it stays: its correlation reads the block's own tables.
            let semi =
                |e: &SqlExpr| matches!(e, SqlExpr::Exists { .. } | SqlExpr::InSubquery { .. });
            let lift = !grouped
                && has_own(conjunct, correlated)
                && !has_own(conjunct, semi)
                && !self.inner_joinable(conjunct);
            if lift { &mut lifted } else { &mut kept }.push(conjunct.clone());
        }
        let in_having = select
            .having
            .as_ref()
            .is_some_and(|h| has_own(h, correlated));
        if lifted.is_empty()
            && !in_having
            && !select
                .projection
                .iter()
                .any(|item| has_own(item, correlated))
        {
            return Ok(None);
        }
        let mut joins = Joins {
            analyzer: self,
            depth: 0,
            in_aggregate: 0,
            found: Vec::new(),
        };
        let keys = match &select.group_by {
            GroupByExpr::Expressions(keys, _) => {
                keys.iter().map(|k| strip_nested(k).clone()).collect()
            }
            GroupByExpr::All(_) => return unsupported("GROUP BY ALL"),
        };
        let mut outer = OuterColumns {
            analyzer: self,
            grouped,
            keys,
            depth: 0,
            read: Vec::new(),
        };
        let mut rewrite = |expr: &mut SqlExpr| -> Result<()> {
            if let ControlFlow::Break(e) = expr.visit(&mut joins) {
                return Err(e);
            }
            let _ = expr.visit(&mut outer);
            Ok(())
        };
        let mut items = Vec::new();
        for item in &select.projection {
            let (mut expr, name) = match item {
                SelectItem::UnnamedExpr(e) => (e.clone(), default_name(e)),
                SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), ident_name(alias)),
                other => {
                    return unsupported(format!(
                        "select item {other} beside a correlated scalar subquery"
                    ))
                }
            };
            rewrite(&mut expr)?;
            items.push(format!("{expr} AS {}", Ident::with_quote('"', name)));
        }
        // HAVING (grouped) or the lifted WHERE conditions: the filter above the joins.
        let mut filter: Vec<SqlExpr> = select.having.iter().cloned().chain(lifted).collect();
        for condition in filter.iter_mut() {
            rewrite(condition)?;
        }
        // The derived table: what those read, then each subquery's outer expressions.
        let mut inner = select.clone();
        inner.distinct = None;
        inner.having = None;
        inner.selection = and_all(kept);
        let keys = joins.found.iter().flat_map(|(_, g)| g.outer.iter());
        inner.projection = outer
            .read
            .iter()
            .cloned()
            .chain(keys.cloned())
            .map(SelectItem::UnnamedExpr)
            .collect();
        let read = outer.read.len();
        let mut columns: Vec<String> = (1..=read).map(|i| format!("c{i}")).collect();
        let mut from = String::new();
        for (name, grouped) in &joins.found {
            // Correlated elsewhere than by equalities in its WHERE (a table function's argument).
            if grouped.outer.is_empty() {
                return unsupported(
                    "correlated scalar subquery that reads the outer row other than in its WHERE",
                );
            }
            let on: Vec<String> = (1..=grouped.outer.len())
                .map(|k| {
                    columns.push(format!("o{}", columns.len() - read + 1));
                    format!(
                        "\"{name}\".k{k} = \"{OUTER}\".{}",
                        columns.last().expect("just pushed")
                    )
                })
                .collect();
            from.push_str(&format!(
                " LEFT JOIN ({}) AS \"{name}\"({}) ON {}",
                grouped.query,
                grouped.columns().join(", "),
                on.join(" AND ")
            ));
        }
        let distinct = if matches!(select.distinct, Some(Distinct::Distinct)) {
            "DISTINCT "
        } else {
            ""
        };
        let filter = and_all(filter)
            .map(|f| format!(" WHERE {f}"))
            .unwrap_or_default();
        let sql = format!(
            "SELECT {distinct}{} FROM ({inner}) AS \"{OUTER}\"({}){from}{filter}",
            items.join(", "),
            columns.join(", ")
        );
        let query = parse(&sql)?;
        let SetExpr::Select(rewritten) = *query.body else {
            return invalid("SELECT list decorrelation");
        };
        Ok(Some(rewritten))
    }

    /// Whether scalar.rs reads this WHERE condition as an inner join: a comparison whose correlated
    /// operands are scalar subqueries NULL over no rows.
    fn inner_joinable(&self, conjunct: &SqlExpr) -> bool {
        let SqlExpr::BinaryOp { left, op, right } = strip_nested(conjunct) else {
            return false;
        };
        is_comparison(op)
            && [left, right]
                .into_iter()
                .all(|side| match strip_nested(side) {
                    SqlExpr::Subquery(q) if reads_outer(q) => self
                        .grouped_subquery(q)
                        .is_ok_and(|g| self.null_when_missing(&g)),
                    other => !has_own(other, correlated),
                })
    }

    /// What an outer row without a group reads instead of `grouped`'s value `v`.
    fn value_over_no_rows(&self, grouped: &Grouped, v: SqlExpr) -> Result<SqlExpr> {
        if self.null_when_missing(grouped) {
            return Ok(v);
        }
        // Every count is 0 over no rows (with DISTINCT or FILTER too); its group never has a NULL one.
        let count = matches!(strip_nested(&grouped.value), SqlExpr::Function(f)
            if self.is_aggregate_call(strip_nested(&grouped.value)) && function_name(f).rsplit('.').next() == Some("count"));
        if !count {
            return unsupported("correlated scalar subquery whose value over no rows is neither NULL nor a count (such as COALESCE(max(x), 0))");
        }
        let query = parse(&format!("SELECT COALESCE({v}, 0)"))?;
        match *query.body {
            SetExpr::Select(select) => match select.projection.into_iter().next() {
                Some(SelectItem::UnnamedExpr(e)) => Ok(e),
                _ => invalid("count's value over no rows"),
            },
            _ => invalid("count's value over no rows"),
        }
    }
}

/// Replaces the own correlated scalar subqueries of a SELECT-list or HAVING expression with their
/// grouped form's value, collecting the grouped forms.
struct Joins<'a, 'c> {
    analyzer: &'a Analyzer<'c>,
    depth: usize,
    /// Inside this many aggregate calls' arguments.
    in_aggregate: usize,
    found: Vec<(String, Grouped)>,
}

impl VisitorMut for Joins<'_, '_> {
    type Break = AnalyzeError;

    fn pre_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<AnalyzeError> {
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        if self.analyzer.is_aggregate_call(expr) {
            self.in_aggregate += 1;
            return ControlFlow::Continue(());
        }
        let SqlExpr::Subquery(query) = expr else {
            return ControlFlow::Continue(());
        };
        if !reads_outer(query) {
            return ControlFlow::Continue(());
        }
        if self.in_aggregate > 0 {
            return ControlFlow::Break(AnalyzeError::Unsupported(
                "correlated scalar subquery inside an aggregate's argument".into(),
            ));
        }
        let name = format!("{SCALAR}{}", self.found.len() + 1);
        let replaced = self
            .analyzer
            .grouped_subquery(query)
            .and_then(|g| Ok((self.analyzer.value_over_no_rows(&g, column(&name, "v"))?, g)));
        match replaced {
            Ok((value, grouped)) => {
                *expr = value;
                self.found.push((name, grouped));
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }

    fn post_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<AnalyzeError> {
        if self.depth == 0 && self.analyzer.is_aggregate_call(expr) {
            self.in_aggregate -= 1;
        }
        ControlFlow::Continue(())
    }

    track_query_depth!(AnalyzeError);
}

/// Replaces what a SELECT-list or HAVING expression reads of the block — its own column references
/// (not a nested query's, nor the grouped forms' values) and, in a grouped block, whole aggregate
/// calls and whole GROUP BY expressions — with columns of the derived table, collecting what they read.
struct OuterColumns<'a, 'c> {
    analyzer: &'a Analyzer<'c>,
    grouped: bool,
    /// The GROUP BY expressions: `a.g + 1` is read whole, as `a.g` alone is not grouped.
    keys: Vec<SqlExpr>,
    depth: usize,
    read: Vec<SqlExpr>,
}

impl VisitorMut for OuterColumns<'_, '_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
        let read = match &*expr {
            SqlExpr::Identifier(_) => true,
            SqlExpr::CompoundIdentifier(parts) => {
                !parts.first().is_some_and(|p| p.value.starts_with(SCALAR))
            }
            e => {
                self.grouped
                    && (self.analyzer.is_aggregate_call(e) || self.keys.contains(strip_nested(e)))
            }
        };
        if self.depth == 0 && read {
            let at = match self.read.iter().position(|r| r == expr) {
                Some(at) => at,
                None => {
                    self.read.push(expr.clone());
                    self.read.len() - 1
                }
            };
            *expr = column(OUTER, &format!("c{}", at + 1));
        }
        ControlFlow::Continue(())
    }

    track_query_depth!(());
}
