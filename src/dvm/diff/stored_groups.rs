//! A top-level GROUP BY recomputed per touched group (its aggregates are not kept from stored state),
//! or a top-level DISTINCT, whose output shows one of several equal values that may print
//! differently: a group key, a DISTINCT column or a MIN/MAX of `numeric` without a fixed scale (`1.5`
//! = `1.50`), `citext` (`'A'` = `'a'`), a float (`0` = `-0`), an `interval` (`1 day` = `24 hours`).
//! Which of the equal values PostgreSQL shows depends on the order it reads them in, so a group's
//! old row recomputed from its old input (as `rules::aggregate_delta_of` does) need not be the row
//! the stream table holds: the apply would miss the row it must delete or — when the recomputed old
//! row and the new one print alike — cancel them and keep showing a value no row holds any more.
//! The same holds for a float computed from an aggregate (`stddev(x)`), whose last digits depend on
//! that order. Here the old rows are the stream table's own rows of the touched groups, found by
//! their visible keys.
//!
//! Elsewhere in a query (under a join or another operator, or an aggregate with a key the SELECT
//! list does not show) there are no stored rows to read back: the engine refuses such a query
//! ([`unreadable_picks`]).

use super::context::DiffContext;
use super::rules::{
    aggregate_rows, cols, filtered, group_by, identity_grouping, is_static_empty,
    known_to_print_apart, known_types, may_print_apart, named, rows_in_groups, select,
    touched_groups, weighted_projection, with_clause, with_weight, GroupsLookup, W,
};
use super::AggregateState;
use crate::dvm::apply::Payload;
use crate::dvm::optree::{AggFunc, Expr, Node, OpTree};
use crate::dvm::sql::{quote_ident, QualifiedName};
use crate::error::{PgtError, PgtResult};

/// How sure a test must be that equal values of a type print differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrintsApart {
    /// Unless the engine knows they print alike ([`may_print_apart`]): to read rows back, which is
    /// exact either way.
    Maybe,
    /// Only a type known to ([`known_to_print_apart`]): to refuse a query, which a type the engine
    /// merely does not know (an enum, a domain) should not cause.
    Surely,
}

impl PrintsApart {
    fn holds(self, tree: &OpTree, input: &Node, t: &str, expr: &Expr) -> bool {
        may_print_apart(tree, input, t, expr)
            && (self == PrintsApart::Maybe || known_to_print_apart(t))
    }
}

/// What of the output of `node` (an Aggregate) PostgreSQL picks among equal values that print
/// differently (as sure as `how`), in words: its first such group key or MIN/MAX among the output
/// columns `shown` (keys first, then aggregates). None for other nodes.
pub fn picks_among_equals(
    tree: &OpTree,
    node: &Node,
    shown: &dyn Fn(usize) -> bool,
    how: PrintsApart,
) -> Option<String> {
    let Node::Aggregate {
        input,
        group_by,
        calls,
        key_types,
        ..
    } = node
    else {
        return None;
    };
    let key = group_by
        .iter()
        .zip(key_types)
        .enumerate()
        .find(|(i, (key, t))| shown(*i) && how.holds(tree, input, t, key))
        .map(|(_, (_, t))| format!("a group key of type {t}"));
    key.or_else(|| {
        calls
            .iter()
            .enumerate()
            .filter(|(j, c)| {
                shown(group_by.len() + j)
                    && matches!(c.func, AggFunc::Min | AggFunc::Max)
                    && !c.arg_type.is_empty()
            })
            .find(|(_, c)| {
                c.arg
                    .as_ref()
                    .is_some_and(|arg| how.holds(tree, input, &c.arg_type, arg))
            })
            .map(|(_, c)| format!("{}() over {}", c.func.name(), c.arg_type))
    })
}

/// Which of `arity` input columns `exprs` read.
fn columns_read<'e>(exprs: impl Iterator<Item = &'e Expr>, arity: usize) -> Vec<bool> {
    let mut out = vec![false; arity];
    for c in exprs.flat_map(|e| e.columns()) {
        if let Some(slot) = out.get_mut(c) {
            *slot = true;
        }
    }
    out
}

/// Whether output column `i` is among `shown` (one beyond it counts as shown: the cautious side).
fn is_shown(shown: &[bool], i: usize) -> bool {
    shown.get(i).copied().unwrap_or(true)
}

/// The aggregates and DISTINCTs of a query whose picks among equal values reach the stream table's
/// columns and whose old rows cannot be read back from it (every one but a top-level GROUP BY or
/// DISTINCT that [`StoredGroups`] or [`AggregateState`] maintains), described, for the refusal.
/// `types`: the SQL types of the query's output columns.
pub fn unreadable_picks(tree: &OpTree, types: &[String]) -> Option<String> {
    let maintained = (AggregateState::of(tree).is_some()
        || StoredGroups::of(tree, types).is_some())
    .then(|| match top_aggregate(tree) {
        Some((node, ..)) => node as *const Node,
        None => &tree.root as *const Node,
    });
    let mut found = None;
    let mut judge = |node: &Node, shown: &[bool]| {
        if found.is_none() && maintained != Some(node as *const Node) {
            found = shown_pick(tree, node, shown);
        }
    };
    visit_shown(&tree.root, &vec![true; tree.root.arity()], &mut judge);
    // A CTE may be read in several places: all its columns count as shown.
    for cte in &tree.ctes {
        visit_shown(cte, &vec![true; cte.arity()], &mut judge);
    }
    found.map(|what| {
        format!(
            "{what} recomputed per group where the stream table's rows cannot be read back (under a join or another operator, \
             or grouped by a key the SELECT list does not show): equal values may print differently (1.5 and 1.50, 'A' and 'a' \
             under citext, 0 and -0), and which one PostgreSQL shows depends on the order it reads them in"
        )
    })
}

/// What `node` picks among equal values known to print apart in its output columns `shown`.
fn shown_pick(tree: &OpTree, node: &Node, shown: &[bool]) -> Option<String> {
    match node {
        Node::Aggregate { .. } => {
            picks_among_equals(tree, node, &|i| is_shown(shown, i), PrintsApart::Surely)
        }
        Node::Distinct { input } => {
            // Where the tree knows the columns' types (a DISTINCT over expressions it may not).
            known_types(tree, input)
                .iter()
                .enumerate()
                .find(|(i, t)| {
                    is_shown(shown, *i) && PrintsApart::Surely.holds(tree, input, t, &Expr::col(*i))
                })
                .map(|(_, t)| format!("a DISTINCT column of type {t}"))
        }
        _ => None,
    }
}

/// Calls `f` on `node` and every node below it with the output columns of each whose values reach
/// the stream table's columns (`shown`: those of `node`). A value compared (a join or filter
/// condition, a group key not shown) or counted does not reach them; one aggregated by anything
/// but a count may (the scale of a numeric sum is its inputs').
fn visit_shown(node: &Node, shown: &[bool], f: &mut dyn FnMut(&Node, &[bool])) {
    f(node, shown);
    match node {
        Node::Scan { .. } | Node::CteRef { .. } | Node::Unit => {}
        Node::Filter { input, .. } | Node::Distinct { input } => visit_shown(input, shown, f),
        Node::Project { input, exprs } => {
            let used = columns_read(
                exprs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| is_shown(shown, *i))
                    .map(|(_, e)| e),
                input.arity(),
            );
            visit_shown(input, &used, f);
        }
        Node::Join { left, right, .. } => {
            let (l, r) = shown.split_at(left.arity().min(shown.len()));
            visit_shown(left, l, f);
            visit_shown(right, r, f);
        }
        Node::SemiJoin { left, right, .. } => {
            visit_shown(left, shown, f);
            visit_shown(right, &vec![false; right.arity()], f);
        }
        // A shown function column may carry the values of what the call reads (`unnest(t.amounts)`).
        Node::Expand { input, call, .. } => {
            let la = input.arity();
            let mut used: Vec<bool> = (0..la).map(|i| is_shown(shown, i)).collect();
            if (la..node.arity()).any(|i| is_shown(shown, i)) {
                for i in call.columns() {
                    if let Some(u) = used.get_mut(i) {
                        *u = true;
                    }
                }
            }
            visit_shown(input, &used, f);
        }
        Node::Aggregate {
            input,
            group_by,
            aggregates,
            calls,
            ..
        } => {
            let keys = group_by
                .iter()
                .enumerate()
                .filter(|(i, _)| is_shown(shown, *i))
                .map(|(_, e)| e);
            let values = aggregates.iter().enumerate().filter(|(j, _)| {
                is_shown(shown, group_by.len() + j)
                    && !calls
                        .get(*j)
                        .is_some_and(|c| matches!(c.func, AggFunc::CountStar | AggFunc::Count))
            });
            let used = columns_read(keys.chain(values.map(|(_, e)| e)), input.arity());
            visit_shown(input, &used, f);
        }
        Node::UnionAll { inputs } => {
            for input in inputs {
                visit_shown(input, shown, f);
            }
        }
    }
}

/// The query's top-level Aggregate, with the HAVING filter above it and the SELECT list over both:
/// `Project(Filter?(Aggregate))`, not a top-K query.
fn top_aggregate(tree: &OpTree) -> Option<(&Node, Option<&Expr>, &[Expr])> {
    if tree.top_k.is_some() {
        return None;
    }
    let Node::Project { input, exprs } = &tree.root else {
        return None;
    };
    let (aggregate, having) = match input.as_ref() {
        Node::Filter { input, predicate } => (input.as_ref(), Some(predicate)),
        other => (other, None),
    };
    matches!(aggregate, Node::Aggregate { .. }).then_some((aggregate, having, exprs.as_slice()))
}

/// A `real` or `double precision` column of the SELECT list computed from an aggregate of `node`
/// (`stddev(x)`, `corr(x, y)`), described: its last digits depend on the order the group's rows are
/// read in, so a recomputed old value need not be the stored one (the apply would miss it and
/// repair with FULL).
fn float_result(node: &Node, exprs: &[Expr], types: &[String]) -> Option<String> {
    let Node::Aggregate { group_by, .. } = node else {
        return None;
    };
    exprs
        .iter()
        .zip(types)
        .find(|(e, t)| {
            matches!(t.as_str(), "real" | "double precision")
                && e.columns().iter().any(|&c| c >= group_by.len())
        })
        .map(|(_, t)| format!("an aggregate's {t} result depends in its last digits on the order rows are read in, which a recomputation need not repeat"))
}

/// A top-level GROUP BY recomputed per touched group, or a top-level DISTINCT, whose old rows a
/// recomputation need not reproduce (see the module comment), with every group key shown as a
/// column of its own.
pub struct StoredGroups<'t> {
    input: &'t Node,
    keys: Vec<Expr>,
    key_eq: &'t [String],
    aggregates: Vec<Expr>,
    having: Option<&'t Expr>,
    /// The SELECT list over the Aggregate's output (keys, then aggregates).
    exprs: Vec<Expr>,
    /// Per group key, the output column that shows it.
    key_columns: Vec<usize>,
    /// Why the old rows are read back: what of the output a recomputation need not reproduce.
    reason: String,
}

impl<'t> StoredGroups<'t> {
    /// `types`: the SQL types of the query's output columns (a DISTINCT's are its keys').
    pub fn of(tree: &'t OpTree, types: &[String]) -> Option<StoredGroups<'t>> {
        if AggregateState::of(tree).is_some() || tree.top_k.is_some() {
            return None;
        }
        if let Node::Distinct { input } = &tree.root {
            // DISTINCT groups by every column, with the columns' own equality: one key each.
            let columns: Vec<Expr> = (0..input.arity()).map(Expr::col).collect();
            let reason = columns
                .iter()
                .zip(types)
                .find(|(c, t)| PrintsApart::Maybe.holds(tree, input, t, c))
                .map(|(_, t)| format!("a DISTINCT column of type {t} shows one of several equal values that may print differently, which a recomputation need not pick again"))?;
            return Some(StoredGroups {
                input,
                key_columns: (0..columns.len()).collect(),
                keys: columns.clone(),
                key_eq: &[],
                aggregates: Vec::new(),
                having: None,
                exprs: columns,
                reason,
            });
        }
        let (node, having, exprs) = top_aggregate(tree)?;
        // What the SELECT list shows of the Aggregate's output (a HAVING only compares it).
        let shown = columns_read(exprs.iter(), node.arity());
        let reason = picks_among_equals(tree, node, &|i| is_shown(&shown, i), PrintsApart::Maybe)
            .map(|what| format!("{what} shows one of several equal values that may print differently, which a recomputation need not pick again"))
            .or_else(|| float_result(node, exprs, types))?;
        let Node::Aggregate {
            input,
            group_by,
            aggregates,
            key_eq,
            ..
        } = node
        else {
            return None;
        };
        let key_columns = (0..group_by.len())
            .map(|i| exprs.iter().position(|e| *e == Expr::col(i)))
            .collect::<Option<Vec<_>>>()?;
        Some(StoredGroups {
            input,
            keys: group_by.clone(),
            key_eq,
            aggregates: aggregates.clone(),
            having,
            exprs: exprs.to_vec(),
            key_columns,
            reason,
        })
    }

    /// Why the old rows are read back, in words.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Whether `node` is the Aggregate whose touched groups these are (not one inside its input).
    pub fn regroups(&self, node: &Node) -> bool {
        matches!(node, Node::Aggregate { input, .. } if std::ptr::eq(input.as_ref(), self.input))
    }

    /// The consolidated delta of the stream table's visible rows: the touched groups' new rows,
    /// less their rows in `storage`. None when no source under the query changed.
    pub fn delta_query(
        &self,
        tree: &OpTree,
        storage: &QualifiedName,
        payload: &Payload,
        ctx: &mut DiffContext,
    ) -> PgtResult<Option<String>> {
        if is_static_empty(tree, &tree.root, ctx) {
            return Ok(None);
        }
        ctx.opt.hoist_global_aggregates = true;
        let touched = touched_groups(tree, self.input, &self.keys, self.key_eq, None, ctx)?;
        let new_groups = aggregate_rows(
            &self.keys,
            &self.aggregates,
            &format!("SELECT * FROM {}", touched.rows),
            "1::bigint",
            &touched.dinput,
            ctx,
        );
        let new_groups = match self.having {
            Some(predicate) => {
                let f = ctx.alias("f");
                filtered(predicate, &f, &new_groups)
            }
            None => new_groups,
        };
        let p = ctx.alias("p");
        let new_rows = weighted_projection(&self.exprs, &p, &new_groups);

        let n = tree.root.arity();
        let (Some(visible), Some(types)) = (payload.columns.get(..n), payload.types.get(..n))
        else {
            return Err(PgtError::internal("a payload without the query's columns"));
        };
        let s = ctx.alias("s");
        let stored = format!(
            "SELECT {} FROM {} AS {s}",
            visible
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{s}.{} AS c{i}", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(", "),
            storage.quoted()
        );
        let old_rows = match &touched.groups {
            Some(groups) => {
                let keys = &self.key_columns;
                rows_in_groups(
                    &|a| keys.iter().map(|k| format!("{a}.c{k}")).collect(),
                    self.key_eq,
                    groups,
                    GroupsLookup::SemiJoin,
                    ctx,
                    &mut |_| Ok(stored.clone()),
                )?
            }
            None => format!("{stored} WHERE EXISTS (SELECT 1 FROM {})", touched.dinput),
        };
        let o = ctx.alias("o");
        let old_rows = format!(
            "{} FROM ({old_rows}) AS {o}",
            select(&with_weight(named(cols(&o, n)), "-1::bigint"))
        );

        let (selected, identity) = identity_grouping(&cols("d", n), types);
        Ok(Some(format!(
            "{}{} FROM ({new_rows} UNION ALL {old_rows}) AS d{} HAVING pg_catalog.sum(d.{W}) <> 0",
            with_clause(ctx),
            select(&with_weight(
                named(selected),
                &format!("pg_catalog.sum(d.{W})::bigint")
            )),
            group_by(&identity)
        )))
    }
}
