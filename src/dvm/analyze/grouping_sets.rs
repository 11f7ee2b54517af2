//! `GROUP BY ROLLUP (...)`, `CUBE (...)` and `GROUPING SETS (...)`: one grouped query per grouping
//! set, under UNION ALL, as PostgreSQL defines them. In the query of a set, the grouping expressions
//! the set leaves out are NULL outside aggregate calls, and `GROUPING(...)` is the constant bit mask
//! of the arguments left out:
//!
//! ```sql
//! SELECT a, b, sum(x) AS s, GROUPING(a, b) AS g FROM t GROUP BY ROLLUP (a, b)
//! -- is read as
//! SELECT a, b, sum(x) AS s, 0 AS g FROM t GROUP BY a, b
//! UNION ALL SELECT a, NULL AS b, sum(x) AS s, 1 AS g FROM t GROUP BY a
//! UNION ALL SELECT NULL AS a, NULL AS b, sum(x) AS s, 3 AS g FROM t
//! ```
//!
//! so each branch is maintained like any grouped query (sums and counts from their stored state),
//! and the empty set gives its one row even over no rows, as a query without GROUP BY does.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr as SqlExpr, GroupByExpr, Ident, ObjectName, Select, SelectItem, SetExpr, SetOperator,
    SetQuantifier, Value, VisitMut, VisitorMut,
};

use super::block::default_name;
use super::template::function_name;
use super::{unsupported, Analyzer, Result};

/// More sets than this (a CUBE of seven expressions has 128) are refused: each is a grouped query
/// of its own, maintained on every refresh.
const MAX_SETS: usize = 64;

/// Whether `select` groups by ROLLUP, CUBE or GROUPING SETS.
pub(super) fn has_grouping_sets(select: &Select) -> bool {
    matches!(&select.group_by, GroupByExpr::Expressions(items, _)
        if items.iter().any(|e| matches!(e, SqlExpr::Rollup(_) | SqlExpr::Cube(_) | SqlExpr::GroupingSets(_))))
}

/// `select` as the UNION ALL of one grouped query per grouping set.
pub(super) fn expand(select: &Select, analyzer: &Analyzer<'_>) -> Result<SetExpr> {
    let GroupByExpr::Expressions(items, modifiers) = &select.group_by else {
        return unsupported("GROUP BY ALL");
    };
    if !modifiers.is_empty() {
        return unsupported("GROUP BY ... WITH modifiers");
    }
    if select.distinct.is_some() {
        return unsupported("DISTINCT over grouping sets");
    }
    let sets = sets_of(items)?;
    // The grand total's branch is an aggregate without GROUP BY, which reads no scalar subquery
    // beside its aggregates (`analyze::scalar`): say so of the query as it was written.
    if sets.iter().any(Vec::is_empty) && reads_scalar_subquery(select) {
        return unsupported(
            "a scalar subquery in the SELECT list or HAVING with a grand total (ROLLUP, CUBE or the empty grouping set)",
        );
    }
    let mut grouping: Vec<SqlExpr> = Vec::new();
    for e in sets.iter().flatten() {
        if !grouping.contains(e) {
            grouping.push(e.clone());
        }
    }
    // A left-out expression is a NULL of its type: a bare NULL in one branch of the union would be
    // taken for text.
    let nulls: Vec<SqlExpr> = match analyzer
        .catalog
        .column_types(&typing_query(select, &grouping, analyzer))
    {
        Some(types) if types.len() == grouping.len() => {
            types.iter().map(|t| typed_null(t)).collect()
        }
        _ => vec![SqlExpr::Value(Value::Null.into()); grouping.len()],
    };
    let mut branches = sets.iter().map(|set| {
        let mut branch = select.clone();
        let kept: Vec<SqlExpr> = grouping
            .iter()
            .filter(|e| set.contains(e))
            .cloned()
            .collect();
        let (absent, null): (Vec<SqlExpr>, Vec<SqlExpr>) = grouping
            .iter()
            .zip(&nulls)
            .filter(|(e, _)| !set.contains(e))
            .map(|(e, n)| (e.clone(), n.clone()))
            .unzip();
        // Named as PostgreSQL names them, before a NULL takes an item's place.
        for item in branch.projection.iter_mut() {
            if let SelectItem::UnnamedExpr(expr) = item {
                let alias = Ident::with_quote('"', default_name(expr));
                *item = SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias,
                };
            }
        }
        let mut left_out = LeftOut {
            kept: &kept,
            absent: &absent,
            null: &null,
            analyzer,
            shielded: Vec::new(),
            failed: None,
        };
        for item in branch.projection.iter_mut() {
            let _ = item.visit(&mut left_out);
        }
        if let Some(having) = branch.having.as_mut() {
            let _ = having.visit(&mut left_out);
        }
        if let Some(e) = left_out.failed {
            return Err(e);
        }
        if kept.is_empty()
            && !branch
                .projection
                .iter()
                .any(|i| analyzer.item_has_aggregate(i))
        {
            // `GROUP BY ()` without aggregates is still one group: a HAVING makes the query one.
            branch
                .having
                .get_or_insert(SqlExpr::Value(Value::Boolean(true).into()));
        }
        branch.group_by = GroupByExpr::Expressions(kept, vec![]);
        Ok(SetExpr::Select(Box::new(branch)))
    });
    let first = branches
        .next()
        .unwrap_or_else(|| unsupported("an empty list of grouping sets"))?;
    branches.try_fold(first, |left, right| {
        Ok(SetExpr::SetOperation {
            op: SetOperator::Union,
            set_quantifier: SetQuantifier::All,
            left: Box::new(left),
            right: Box::new(right?),
        })
    })
}

/// `NULL::type`, with the type's collation when it has one (a NULL of the default collation beside
/// a column's `"C"` would leave the union's column without one, which sorting it needs).
/// Whether the select list or HAVING holds a scalar subquery.
fn reads_scalar_subquery(select: &Select) -> bool {
    let found = |e: &SqlExpr| {
        sqlparser::ast::visit_expressions(e, |e| match e {
            SqlExpr::Subquery(_) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    };
    select.projection.iter().any(|item| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => found(e),
        _ => false,
    }) || select.having.as_ref().is_some_and(found)
}

fn typed_null(t: &str) -> SqlExpr {
    let (name, collation) = match t.split_once(" COLLATE ") {
        Some((name, collation)) => (name, Some(collation)),
        None => (t, None),
    };
    let Ok(null) = super::parse_expr(&format!("NULL::{name}")) else {
        return SqlExpr::Value(Value::Null.into());
    };
    match collation {
        Some(collation) => SqlExpr::Collate {
            expr: Box::new(null),
            collation: ObjectName::from(quoted_parts(collation)),
        },
        None => null,
    }
}

/// The parts of a qualified name as PostgreSQL quotes it (`"pg_catalog"."C.utf8"`, `public.x`): dots
/// inside quotes are the name's own.
fn quoted_parts(name: &str) -> Vec<Ident> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut quoted = false;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                part.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(Ident::with_quote('"', std::mem::take(&mut part))),
            c => part.push(c),
        }
    }
    parts.push(Ident::with_quote('"', part));
    parts
}

/// `SELECT <the grouping expressions> FROM ... WHERE ...` of `select`, with the CTEs it sees: what
/// PostgreSQL types them by.
fn typing_query(select: &Select, grouping: &[SqlExpr], analyzer: &Analyzer<'_>) -> String {
    let mut typing = select.clone();
    typing.projection = grouping
        .iter()
        .map(|e| SelectItem::UnnamedExpr(e.clone()))
        .collect();
    typing.group_by = GroupByExpr::Expressions(vec![], vec![]);
    typing.having = None;
    let with: Vec<&str> = analyzer.cte_names.iter().map(|c| c.sql.as_str()).collect();
    if with.is_empty() {
        typing.to_string()
    } else {
        format!("WITH {} {typing}", with.join(", "))
    }
}

/// The grouping sets of a GROUP BY list: the cross product of its items' sets (a plain expression
/// is in every set).
fn sets_of(items: &[SqlExpr]) -> Result<Vec<Vec<SqlExpr>>> {
    let mut sets: Vec<Vec<SqlExpr>> = vec![vec![]];
    for item in items {
        let choices: Vec<Vec<SqlExpr>> = match item {
            SqlExpr::Rollup(elements) => (0..=elements.len())
                .rev()
                .map(|n| elements[..n].concat())
                .collect(),
            SqlExpr::Cube(elements) => {
                if elements.len() > 16 {
                    return unsupported(format!("more than {MAX_SETS} grouping sets"));
                }
                (0..1usize << elements.len())
                    .rev()
                    .map(|mask| {
                        (0..elements.len())
                            .filter(|i| mask & (1 << (elements.len() - 1 - i)) != 0)
                            .flat_map(|i| elements[i].clone())
                            .collect()
                    })
                    .collect()
            }
            // Each listed set is a GROUP BY list of its own (it may hold a ROLLUP or a CUBE).
            SqlExpr::GroupingSets(listed) => {
                let mut all = Vec::new();
                for set in listed {
                    all.extend(sets_of(set)?);
                }
                all
            }
            SqlExpr::Tuple(exprs) => vec![exprs.clone()],
            SqlExpr::Nested(inner) => vec![vec![(**inner).clone()]],
            plain => vec![vec![plain.clone()]],
        };
        sets = sets
            .iter()
            .flat_map(|set| {
                choices.iter().map(move |choice| {
                    let mut joined = set.clone();
                    joined.extend(choice.iter().cloned());
                    joined
                })
            })
            .collect();
        if sets.len() > MAX_SETS {
            return unsupported(format!("more than {MAX_SETS} grouping sets"));
        }
    }
    Ok(sets)
}

/// Puts NULL in place of the grouping expressions a set leaves out, outside aggregate calls and
/// outside the expressions it keeps (`a + b` kept whole when the set groups by it), and the bit mask
/// in place of `GROUPING(...)`.
struct LeftOut<'s, 'c> {
    kept: &'s [SqlExpr],
    absent: &'s [SqlExpr],
    /// The NULL of each absent expression's type.
    null: &'s [SqlExpr],
    analyzer: &'s Analyzer<'c>,
    /// For each expression being visited, whether it shields what is under it.
    shielded: Vec<bool>,
    failed: Option<super::AnalyzeError>,
}

impl VisitorMut for LeftOut<'_, '_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
        let inside = self.shielded.iter().any(|&s| s);
        if !inside {
            if let SqlExpr::Function(f) = expr {
                if function_name(f).eq_ignore_ascii_case("grouping") {
                    match self.mask(f) {
                        Ok(mask) => {
                            *expr = SqlExpr::Value(Value::Number(mask.to_string(), false).into())
                        }
                        Err(e) => {
                            self.failed = Some(e);
                            return ControlFlow::Break(());
                        }
                    }
                } else if let Some(i) = self.absent.iter().position(|a| a == expr) {
                    *expr = self.null[i].clone();
                }
            } else if let Some(i) = self.absent.iter().position(|a| a == expr) {
                *expr = self.null[i].clone();
            }
        }
        let shields = self.kept.contains(expr)
            || matches!(expr, SqlExpr::Function(f)
                if f.over.is_none() && self.analyzer.catalog.is_aggregate(&function_name(f)));
        self.shielded.push(shields);
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _: &mut SqlExpr) -> ControlFlow<()> {
        self.shielded.pop();
        ControlFlow::Continue(())
    }
}

impl LeftOut<'_, '_> {
    /// `GROUPING(args)`: bit i (from the left, the last argument lowest) set when argument i is
    /// left out of the set.
    fn mask(&self, f: &sqlparser::ast::Function) -> Result<u64> {
        let args = match &f.args {
            sqlparser::ast::FunctionArguments::List(list) => &list.args,
            _ => return unsupported("GROUPING without arguments"),
        };
        if args.len() > 31 {
            return unsupported("GROUPING with more than 31 arguments");
        }
        let mut mask = 0u64;
        for arg in args {
            let sqlparser::ast::FunctionArg::Unnamed(sqlparser::ast::FunctionArgExpr::Expr(e)) =
                arg
            else {
                return unsupported("GROUPING with a named argument");
            };
            let e = super::template::strip_nested(e);
            let bit = if self.absent.iter().any(|a| a == e) {
                1
            } else if self.kept.iter().any(|k| k == e) {
                0
            } else {
                return super::invalid(format!("GROUPING({e}): not a grouping expression"));
            };
            mask = (mask << 1) | bit;
        }
        Ok(mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_split_at_dots_outside_quotes() {
        let names = |s: &str| {
            quoted_parts(s)
                .into_iter()
                .map(|i| i.value)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("\"pg_catalog\".\"C.utf8\""), ["pg_catalog", "C.utf8"]);
        assert_eq!(names("public.\"a\"\"b\""), ["public", "a\"b"]);
        assert_eq!(names("\"POSIX\""), ["POSIX"]);
    }
}
