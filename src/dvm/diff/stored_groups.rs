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
    touched_groups, weighted_projection, with_clause, with_weight, W,
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

/// The output columns of the top-level Aggregate that the SELECT list `exprs` shows (a HAVING only
/// compares them).
fn shown_by(exprs: &[Expr]) -> impl Fn(usize) -> bool + '_ {
    move |i| exprs.iter().any(|e| e.columns().contains(&i))
}

/// The aggregates of a query that pick among equal values and whose old rows cannot be read back
/// from the stream table (every one but a top-level GROUP BY that [`StoredGroups`] or
/// [`AggregateState`] maintains), described, for the refusal.
/// `types`: the SQL types of the query's output columns.
pub fn unreadable_picks(tree: &OpTree, types: &[String]) -> Option<String> {
    fn walk(tree: &OpTree, node: &Node, skip: &[*const Node]) -> Option<String> {
        if !skip.contains(&(node as *const Node)) {
            if let Some(what) = picks_among_equals(tree, node, &|_| true, PrintsApart::Surely) {
                return Some(what);
            }
            if let Node::Distinct { input } = node {
                // Where the tree knows the columns' types (a DISTINCT over expressions it may not).
                let types = known_types(tree, input);
                let mut columns = types.iter().enumerate();
                if let Some((_, t)) =
                    columns.find(|(i, t)| PrintsApart::Surely.holds(tree, input, t, &Expr::col(*i)))
                {
                    return Some(format!("a DISTINCT column of type {t}"));
                }
            }
        }
        node.children()
            .into_iter()
            .find_map(|c| walk(tree, c, skip))
    }
    // The top-level GROUP BY: only what its SELECT list shows can show a pick; it is kept from
    // stored state or read back (StoredGroups), or refused here.
    let top = top_aggregate(tree);
    let top_refused = top.and_then(|(node, _, exprs)| {
        if AggregateState::of(tree).is_some() || StoredGroups::of(tree, types).is_some() {
            return None;
        }
        picks_among_equals(tree, node, &shown_by(exprs), PrintsApart::Surely)
    });
    top_refused
        .or_else(|| {
            // The top-level GROUP BY was judged above; a top-level DISTINCT shows its own rows,
            // which StoredGroups reads back when they may print apart.
            let top_distinct = matches!(tree.root, Node::Distinct { .. }) && tree.top_k.is_none();
            let skip: Vec<*const Node> = top
                .map(|(node, ..)| node as *const Node)
                .into_iter()
                .chain(top_distinct.then_some(&tree.root as *const Node))
                .collect();
            walk(tree, &tree.root, &skip)
        })
        .or_else(|| tree.ctes.iter().find_map(|c| walk(tree, c, &[])))
        .map(|what| {
            format!(
                "{what} recomputed per group where the stream table's rows cannot be read back (under a join or another operator, \
                 or grouped by a key the SELECT list does not show): equal values may print differently (1.5 and 1.50, 'A' and 'a' \
                 under citext, 0 and -0), and which one PostgreSQL shows depends on the order it reads them in"
            )
        })
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
        let reason = picks_among_equals(tree, node, &shown_by(exprs), PrintsApart::Maybe)
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
