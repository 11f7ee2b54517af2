//! Predicate placement: each conjunct of WHERE (and of an inner join's ON) is moved to the lowest
//! point of the FROM tree where all the items it reads are joined, so `FROM a, b WHERE a.x = b.x`
//! becomes a join on `a.x = b.x` instead of a filter over a cross join (whose delta is a cartesian
//! product), and `a.y > 5` filters `a` before anything is joined.
//!
//! A block's inner joins form *clusters*: maximal subtrees of inner joins, whose inputs are FROM
//! items (tables, subqueries, CTE references — never looked into) and outer joins (kept whole).
//! Within a cluster every conjunct is a filter over the cartesian product of the inputs, so each
//! can go anywhere its inputs are joined:
//! - a conjunct over one input filters that input (a Filter right above it);
//! - a conjunct over several inputs joins them: it becomes part of the ON of the lowest inner join
//!   that covers them;
//! - a conjunct reading no column (a constant) stays above the FROM tree (from WHERE) or on the
//!   cluster's top join (from an ON).
//!
//! Outer joins are barriers: a conjunct over the columns of an outer join (either side) filters the
//! outer join's result as a whole; nothing moves into or out of an outer join's ON. Subqueries in
//! FROM are filtered from above, never inside, so DISTINCT, aggregates and UNION are not crossed.
//! A conjunct with a subquery never gets here (EXISTS / IN conjuncts are semi-joins; other
//! subqueries are rejected), nor does a volatile one: DIFFERENTIAL refuses queries with
//! non-immutable functions (`catalog/differential.rs`), and FULL refreshes run the query text.
//!
//! The join order is kept as written unless it leaves inputs to be joined without any condition
//! although another bracketing of the same inputs (in the same order, so column positions do not
//! change) needs fewer such cross joins: `a, b, c WHERE a.x = c.x AND b.y = c.y` becomes
//! `a JOIN (b JOIN c ON b.y = c.y) ON a.x = c.x`.

use std::collections::HashMap;

use super::from::FromTree;
use super::scope::{ScopeId, Sym};
use super::Analyzer;
use crate::dvm::optree::{Expr, JoinKind};

/// Above this many inputs in one cluster the written order is kept (the search is cubic).
const MAX_REBRACKETED_INPUTS: usize = 32;

/// A conjunct and the FROM items of the block it reads (sorted, distinct; empty for a constant).
struct Pred {
    expr: Expr,
    items: Vec<usize>,
}

/// A conjunct within a cluster: it reads inputs `lo..=hi` at most (None: it reads no input).
struct Placed {
    expr: Expr,
    span: Option<(usize, usize)>,
}

impl Placed {
    /// Whether this conjunct is a condition of the join of inputs `i..=k` with `k+1..=j`.
    fn joins(&self, i: usize, k: usize, j: usize) -> bool {
        self.span
            .is_some_and(|(lo, hi)| i <= lo && hi <= j && lo <= k && k < hi)
    }
}

/// Bracketings of a cluster's inputs: for the inputs `i..=j` (i < j), the last input of the left side.
type Splits = HashMap<(usize, usize), usize>;

impl Analyzer<'_> {
    /// Places the WHERE conjuncts of block `scope` into its FROM tree. Returns the tree and the
    /// conjuncts that stay above it (constants, and anything that reads something other than the
    /// block's own columns).
    pub(super) fn push_down(
        &self,
        tree: FromTree,
        filters: Vec<Expr>,
        scope: ScopeId,
    ) -> (FromTree, Vec<Expr>) {
        let mut preds = Vec::new();
        let mut above = Vec::new();
        for expr in filters {
            match self.items_read(&expr, scope) {
                Some(items) if !items.is_empty() => preds.push(Pred { expr, items }),
                _ => above.push(expr),
            }
        }
        (self.sink(tree, preds, scope), above)
    }

    /// The items of block `scope` an expression reads; None if it reads anything else.
    fn items_read(&self, expr: &Expr, scope: ScopeId) -> Option<Vec<usize>> {
        let mut items = Vec::new();
        for n in expr.columns() {
            match self.syms.get(n) {
                Sym::Col { scope: s, item, .. } if s == scope => items.push(item),
                _ => return None,
            }
        }
        items.sort_unstable();
        items.dedup();
        Some(items)
    }

    /// `tree` with `preds` (which read only its items) placed as low as they may go.
    fn sink(&self, tree: FromTree, preds: Vec<Pred>, scope: ScopeId) -> FromTree {
        match tree {
            FromTree::Join {
                kind: JoinKind::Inner,
                ..
            } => self.cluster(tree, preds, scope),
            FromTree::Join {
                kind,
                left,
                right,
                on,
            } => {
                let left = Box::new(self.sink(*left, vec![], scope));
                let right = Box::new(self.sink(*right, vec![], scope));
                filtered(
                    FromTree::Join {
                        kind,
                        left,
                        right,
                        on,
                    },
                    preds,
                )
            }
            expand @ FromTree::Expand { .. } => self.sink_into_expansion(expand, preds, scope),
            tree => filtered(tree, preds),
        }
    }

    /// A table function's expansion with `preds` placed: what reads only the function's input
    /// filters the input; the rest, and the condition of an inner join with the function (a filter
    /// over both), filter the expansion. A LEFT JOIN's condition stays where it is.
    fn sink_into_expansion(
        &self,
        mut tree: FromTree,
        preds: Vec<Pred>,
        scope: ScopeId,
    ) -> FromTree {
        let FromTree::Expand {
            input,
            on,
            left_join,
            ..
        } = &mut tree
        else {
            return filtered(tree, preds);
        };
        let mut preds = preds;
        if !*left_join {
            preds.extend(on.drain(..).map(|expr| {
                let items = self.items_read(&expr, scope).unwrap_or_default();
                Pred { expr, items }
            }));
        }
        // A function that starts the FROM list has no input to filter.
        let Some(input) = input else {
            return filtered(tree, preds);
        };
        let inside = input.items();
        let (below, above): (Vec<Pred>, Vec<Pred>) = preds
            .into_iter()
            .partition(|p| !p.items.is_empty() && p.items.iter().all(|i| inside.contains(i)));
        let unsunk = std::mem::replace(input.as_mut(), FromTree::Item(0));
        **input = self.sink(unsunk, below, scope);
        if *left_join {
            filtered(tree, above)
        } else {
            on.extend(above.into_iter().map(|p| p.expr));
            tree
        }
    }

    /// Rebuilds a cluster of inner joins with every conjunct (its own ON conjuncts and `outer`) at
    /// the lowest join that covers what it reads, or on the one input it reads.
    fn cluster(&self, tree: FromTree, outer: Vec<Pred>, scope: ScopeId) -> FromTree {
        let mut inputs = Vec::new();
        let mut on = Vec::new();
        let mut written = Splits::new();
        flatten(tree, &mut inputs, &mut on, &mut written);
        let ranges: Vec<_> = inputs.iter().map(FromTree::items).collect();
        let input_of = |item: usize| ranges.iter().position(|r| r.contains(&item));

        // Conjuncts over one input filter it; the others are placed on joins.
        let mut singles: Vec<Vec<Pred>> = inputs.iter().map(|_| Vec::new()).collect();
        let mut placed = Vec::new();
        let on = on.into_iter().map(|expr| {
            let items = self.items_read(&expr, scope).unwrap_or_default();
            Pred { expr, items }
        });
        for pred in on.chain(outer) {
            let span: Option<Vec<usize>> = pred.items.iter().map(|&item| input_of(item)).collect();
            match span.as_deref() {
                Some([first, .., last]) if first != last => placed.push(Placed {
                    expr: pred.expr,
                    span: Some((*first, *last)),
                }),
                Some([only, ..]) => singles[*only].push(pred),
                // A constant, or a reference outside the cluster (PostgreSQL would have refused it).
                _ => placed.push(Placed {
                    expr: pred.expr,
                    span: None,
                }),
            }
        }
        let mut inputs: Vec<Option<FromTree>> = inputs
            .into_iter()
            .zip(singles)
            .map(|(input, preds)| Some(self.sink(input, preds, scope)))
            .collect();

        let n = inputs.len();
        let splits = match cross_joins(&written, &placed, 0, n - 1) {
            0 => written,
            as_written if n <= MAX_REBRACKETED_INPUTS => {
                let (fewest, splits) = fewest_cross_joins(n, &placed);
                if fewest < as_written {
                    splits
                } else {
                    written
                }
            }
            _ => written,
        };
        let mut root = build(0, n - 1, &splits, &mut inputs, &placed);
        // Constants stay on the cluster's top join.
        if let FromTree::Join { on, .. } = &mut root {
            on.extend(
                placed
                    .into_iter()
                    .filter(|p| p.span.is_none())
                    .map(|p| p.expr),
            );
        }
        root
    }
}

/// A tree under a Filter of `preds`, if any.
fn filtered(tree: FromTree, preds: Vec<Pred>) -> FromTree {
    if preds.is_empty() {
        tree
    } else {
        FromTree::Filter {
            input: Box::new(tree),
            predicates: preds.into_iter().map(|p| p.expr).collect(),
        }
    }
}

/// Collects a cluster's inputs in order, its inner joins' ON conjuncts, and its written bracketing.
/// Returns the range of inputs under `tree`.
fn flatten(
    tree: FromTree,
    inputs: &mut Vec<FromTree>,
    on: &mut Vec<Expr>,
    splits: &mut Splits,
) -> (usize, usize) {
    match tree {
        FromTree::Join {
            kind: JoinKind::Inner,
            left,
            right,
            on: conjuncts,
        } => {
            let (i, k) = flatten(*left, inputs, on, splits);
            let (_, j) = flatten(*right, inputs, on, splits);
            on.extend(conjuncts);
            splits.insert((i, j), k);
            (i, j)
        }
        input => {
            inputs.push(input);
            (inputs.len() - 1, inputs.len() - 1)
        }
    }
}

/// How many joins of the bracketing of inputs `i..=j` have no condition.
fn cross_joins(splits: &Splits, placed: &[Placed], i: usize, j: usize) -> usize {
    if i == j {
        return 0;
    }
    let k = splits[&(i, j)];
    let here = usize::from(!placed.iter().any(|p| p.joins(i, k, j)));
    here + cross_joins(splits, placed, i, k) + cross_joins(splits, placed, k + 1, j)
}

/// A bracketing of `n` inputs with the fewest cross joins; among those, the most left-deep.
fn fewest_cross_joins(n: usize, placed: &[Placed]) -> (usize, Splits) {
    let mut cost = vec![vec![0usize; n]; n];
    let mut splits = Splits::new();
    for len in 2..=n {
        for i in 0..=n - len {
            let j = i + len - 1;
            let mut best = usize::MAX;
            for k in (i..j).rev() {
                let c = cost[i][k]
                    + cost[k + 1][j]
                    + usize::from(!placed.iter().any(|p| p.joins(i, k, j)));
                if c < best {
                    best = c;
                    splits.insert((i, j), k);
                }
            }
            cost[i][j] = best;
        }
    }
    (cost[0][n - 1], splits)
}

/// The join tree of inputs `i..=j`, each join with the conjuncts whose inputs it is the first to cover.
fn build(
    i: usize,
    j: usize,
    splits: &Splits,
    inputs: &mut [Option<FromTree>],
    placed: &[Placed],
) -> FromTree {
    if i == j {
        return inputs[i].take().expect("each input is placed once");
    }
    let k = splits[&(i, j)];
    let left = Box::new(build(i, k, splits, inputs, placed));
    let right = Box::new(build(k + 1, j, splits, inputs, placed));
    let on = placed
        .iter()
        .filter(|p| p.joins(i, k, j))
        .map(|p| p.expr.clone())
        .collect();
    FromTree::Join {
        kind: JoinKind::Inner,
        left,
        right,
        on,
    }
}
