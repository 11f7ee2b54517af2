//! GROUP BY and aggregates. The Aggregate node's output is the group-by values then the aggregate
//! calls; HAVING and the SELECT list are rewritten over that output, matching grouped expressions
//! by their resolved text and aggregate calls as wholes.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, Expr as SqlExpr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentClause, FunctionArguments, GroupByExpr, GroupByWithModifier, Select,
    SelectItem, Value,
};

use super::block::Where;
use super::from::FromTree;
use super::scope::{Layout, ScopeId, Sym};
use super::template::{
    check_expr, function_name, is_atomic, parenthesised, strip_nested, template,
};
use super::{invalid, unsupported, Analyzer, Result};
use crate::dvm::optree::{AggCall, AggFunc, Expr, Node};

/// An Aggregate being collected; expressions hold symbols over the block's FROM output.
struct Grouping {
    group_by: Vec<Expr>,
    aggregates: Vec<Expr>,
    /// `calls[j]` describes `aggregates[j]`.
    calls: Vec<AggCall>,
}

impl Analyzer<'_> {
    /// A grouped block above its FROM and WHERE: Aggregate, the HAVING Filter, and the Project.
    pub(super) fn grouped(
        &mut self,
        select: &Select,
        items: &[(String, SqlExpr)],
        from: FromTree,
        filter: Where,
        scope: ScopeId,
    ) -> Result<Node> {
        let mut grouping = self.grouping(select, items)?;
        let exprs = items
            .iter()
            .map(|(_, e)| self.over_aggregate(e, &mut grouping, "the SELECT list"))
            .collect::<Result<Vec<_>>>()?;
        let having = select
            .having
            .as_ref()
            .map(|h| self.over_aggregate(h, &mut grouping, "HAVING"))
            .transpose()?;
        // One group without an aggregate (`SELECT 1 FROM t HAVING true`, a grouping set without
        // keys): a count the query does not show is the state that keeps its one row one.
        if grouping.group_by.is_empty() && grouping.calls.is_empty() {
            let count = super::parse_expr("count(*)")?;
            self.over_aggregate(&count, &mut grouping, "the SELECT list")?;
        }
        // Every reference is resolved: the layout (which columns the scans read) is final.
        let layout = Layout::new(scope, &self.scopes[scope]);
        let input = self.build_input(from, filter, &layout)?;
        let groups = grouping.group_by.len();
        let place = |e: &Expr| self.place(e, |sym| layout.position(sym));
        let group_by = grouping.group_by.iter().map(place).collect::<Result<_>>()?;
        let aggregates = grouping
            .aggregates
            .iter()
            .map(place)
            .collect::<Result<_>>()?;
        let calls = grouping
            .calls
            .iter()
            .map(|c| {
                Ok(AggCall {
                    arg: c.arg.as_ref().map(place).transpose()?,
                    filter: c.filter.as_ref().map(place).transpose()?,
                    ..c.clone()
                })
            })
            .collect::<Result<_>>()?;
        let mut node = Node::Aggregate {
            input: Box::new(input),
            group_by,
            aggregates,
            calls,
            key_types: vec![],
            key_eq: vec![],
        };
        let output = |sym| match sym {
            Sym::Group(i) => Some(i),
            Sym::Agg(j) => Some(groups + j),
            _ => None,
        };
        if let Some(having) = having {
            node = Node::Filter {
                input: Box::new(node),
                predicate: self.place(&having, output)?,
            };
        }
        let exprs = exprs
            .iter()
            .map(|e| self.place(e, output))
            .collect::<Result<_>>()?;
        Ok(Node::Project {
            input: Box::new(node),
            exprs,
        })
    }

    /// An aggregate call (not a window function).
    pub(super) fn is_aggregate_call(&self, expr: &SqlExpr) -> bool {
        matches!(expr, SqlExpr::Function(f) if f.over.is_none() && self.catalog.is_aggregate(&function_name(f)))
    }

    fn has_aggregate(&self, expr: &SqlExpr) -> bool {
        visit_expressions(expr, |e| {
            if self.is_aggregate_call(e) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .is_break()
    }

    pub(super) fn item_has_aggregate(&self, item: &SelectItem) -> bool {
        match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                self.has_aggregate(expr)
            }
            _ => false,
        }
    }

    /// Whether the block aggregates: GROUP BY, HAVING, or an aggregate call in the SELECT list.
    pub(super) fn is_grouped(&self, select: &Select, items: &[(String, SqlExpr)]) -> bool {
        let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(g, m) if g.is_empty() && m.is_empty());
        grouped || select.having.is_some() || items.iter().any(|(_, e)| self.has_aggregate(e))
    }

    /// The GROUP BY expressions, resolved over the block's FROM.
    fn grouping(&mut self, select: &Select, items: &[(String, SqlExpr)]) -> Result<Grouping> {
        let exprs = match &select.group_by {
            GroupByExpr::All(_) => return unsupported("GROUP BY ALL"),
            GroupByExpr::Expressions(_, modifiers) if !modifiers.is_empty() => {
                return unsupported(match &modifiers[0] {
                    GroupByWithModifier::Rollup => "ROLLUP",
                    GroupByWithModifier::Cube => "CUBE",
                    GroupByWithModifier::GroupingSets(_) => "GROUPING SETS",
                    GroupByWithModifier::Totals => "WITH TOTALS",
                })
            }
            GroupByExpr::Expressions(exprs, _) => exprs,
        };
        let mut group_by = Vec::new();
        for expr in exprs {
            // A bare number is a select-list position, as in PostgreSQL.
            let expr = match expr {
                SqlExpr::Value(v) if matches!(v.value, Value::Number(..)) => {
                    let n: usize = v.to_string().parse().unwrap_or(0);
                    match n.checked_sub(1).and_then(|i| items.get(i)) {
                        Some((_, item)) => item,
                        None => {
                            return invalid(format!(
                                "GROUP BY position {v} is not in the select list"
                            ))
                        }
                    }
                }
                expr => expr,
            };
            let key = self.group_key(expr, "GROUP BY")?;
            if !group_by.contains(&key) {
                group_by.push(key);
            }
        }
        Ok(Grouping {
            group_by,
            aggregates: Vec::new(),
            calls: Vec::new(),
        })
    }

    /// A grouped expression in one canonical form whatever its parentheses: outer ones dropped, one
    /// pair put back unless it is atomic. PostgreSQL prints `GROUP BY ((a.x + 1))` for `(a.x + 1)`.
    fn group_key(&mut self, expr: &SqlExpr, context: &str) -> Result<Expr> {
        let bare = strip_nested(expr);
        let rendered = self.render(bare, context)?;
        Ok(if is_atomic(bare) {
            rendered
        } else {
            parenthesised(rendered)
        })
    }

    /// Rewrites a HAVING or SELECT-list expression over the Aggregate's output.
    fn over_aggregate(
        &mut self,
        expr: &SqlExpr,
        grouping: &mut Grouping,
        context: &str,
    ) -> Result<Expr> {
        template(expr, &mut |e| {
            check_expr(e, context)?;
            if self.is_aggregate_call(e) {
                let call = self.render(e, context)?;
                let j = match grouping.aggregates.iter().position(|a| *a == call) {
                    Some(j) => j,
                    None => {
                        let SqlExpr::Function(f) = e else {
                            unreachable!("an aggregate call is a function")
                        };
                        grouping.calls.push(self.classify_call(f, context)?);
                        grouping.aggregates.push(call);
                        grouping.aggregates.len() - 1
                    }
                };
                return Ok(Some(self.syms.id(Sym::Agg(j))));
            }
            if matches!(e, SqlExpr::Value(_)) {
                return Ok(None);
            }
            let key = self.group_key(e, context)?;
            let i = match grouping.group_by.iter().position(|g| *g == key) {
                Some(i) => i,
                // PostgreSQL accepts an ungrouped column only when it depends on a grouped primary
                // key, so grouping by it too leaves the groups as they are.
                None if matches!(e, SqlExpr::CompoundIdentifier(_)) => {
                    grouping.group_by.push(key);
                    grouping.group_by.len() - 1
                }
                None => return Ok(None),
            };
            Ok(Some(self.syms.id(Sym::Group(i))))
        })
    }
}

/// Aggregates whose result depends on the order of their input rows unless the call orders them.
pub(super) const ORDER_DEPENDENT: &[&str] = &[
    "string_agg",
    "array_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "xmlagg",
];

impl Analyzer<'_> {
    /// Recognises the aggregates the engine maintains from stored state: pg_catalog's count, sum, avg,
    /// min and max with one plain argument (or `*` for count), no DISTINCT, ORDER BY or WITHIN GROUP.
    /// A FILTER clause is kept. Anything else is `Other`.
    fn classify_call(&mut self, f: &Function, context: &str) -> Result<AggCall> {
        let name = function_name(f).to_lowercase();
        let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
        let FunctionArguments::List(list) = &f.args else {
            return Ok(AggCall::other());
        };
        // Recomputing a group gives the same result as the whole query only if the aggregate does
        // not depend on the order it reads rows in; without ORDER BY these do (every batch would
        // "repair" the stream table with FULL). AUTO reads such a query with FULL from the start.
        let ordered = list
            .clauses
            .iter()
            .any(|c| matches!(c, FunctionArgumentClause::OrderBy(_)));
        if ORDER_DEPENDENT.contains(&name) && !ordered {
            return unsupported(format!(
                "{name}() without ORDER BY (its result depends on the order rows are read in)"
            ));
        }
        let plain = list.duplicate_treatment.is_none()
            && list.clauses.is_empty()
            && f.within_group.is_empty()
            && f.null_treatment.is_none()
            && matches!(f.parameters, FunctionArguments::None);
        if !plain || list.args.len() != 1 {
            return Ok(AggCall::other());
        }
        let arg = match &list.args[0] {
            FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => None,
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => return Ok(AggCall::other()),
        };
        let func = match (name, arg.is_some()) {
            ("count", false) => AggFunc::CountStar,
            ("count", true) => AggFunc::Count,
            ("sum", true) => AggFunc::Sum,
            ("avg", true) => AggFunc::Avg,
            ("min", true) => AggFunc::Min,
            ("max", true) => AggFunc::Max,
            _ => return Ok(AggCall::other()),
        };
        Ok(AggCall {
            func,
            arg: arg.map(|e| self.render(e, context)).transpose()?,
            filter: f
                .filter
                .as_deref()
                .map(|e| self.render(e, context))
                .transpose()?,
            arg_type: String::new(),
            less_than: String::new(),
            fixed_scale: None,
        })
    }
}
