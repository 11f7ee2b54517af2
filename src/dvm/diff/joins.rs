//! Delta rules of joins: inner joins (ΔL ⋈ R + L ⋈ ΔR − ΔL ⋈ ΔR), outer joins (the inner part plus
//! the preserved sides' rows whose match status changed, null-padded) and semi/anti joins (rows whose
//! match status changed), and the probes that restrict a side to the keys the other side has.

use super::context::DiffContext;
use super::rules::{
    aggregate_delta_of, cols, cte, delta_sql, descend, filtered, group_by, hoist, hoisted_delta,
    is_static_empty, named, new_sql, projection, render_over, render_pair, select, union_all,
    weighted_projection, with_weight, W,
};
use super::sharing::occurs_more_than_once;
use crate::dvm::optree::{Expr, JoinKind, Node, OpTree};
use crate::error::PgtResult;

/// Δ(L ⋈ R) = ΔL ⋈ R + L ⋈ ΔR − ΔL ⋈ ΔR, with weights multiplied; terms with an empty side dropped.
pub(super) fn inner_join_delta(
    tree: &OpTree,
    left: &Node,
    right: &Node,
    on: Option<&Expr>,
    ctx: &mut DiffContext,
) -> PgtResult<String> {
    let (la, ra) = (left.arity(), right.arity());
    let pairs = on.map(|e| equalities_across(e, la)).unwrap_or_default();
    let flipped: Vec<(usize, usize)> = pairs.iter().map(|&(l, r)| (r, l)).collect();
    let dl = hoisted_delta(tree, left, ctx, "dl_")?;
    // The right side's delta meets the left side's current rows and its delta, nothing else.
    let dr = if is_static_empty(tree, right, ctx) {
        None
    } else if pairs.is_empty() || !groups_below(right) {
        let sql = delta_sql(tree, right, ctx)?;
        Some(hoist(ctx, "dr_", sql))
    } else {
        let mut partners = vec![format!("({})", new_sql(tree, left, ctx)?)];
        partners.extend(dl.clone());
        let sql = delta_sql_matching(tree, right, &partners, &pairs, ctx)?;
        Some(hoist(ctx, "dr_", sql))
    };
    let mut terms = Vec::new();
    let mut term =
        |ctx: &mut DiffContext, ls: String, rs: String, weight: &dyn Fn(&str, &str) -> String| {
            let (l, r) = (ctx.alias("l"), ctx.alias("r"));
            let cond = on.map_or("true".to_string(), |e| render_pair(e, &l, la, &r));
            let items = with_weight(
                named([cols(&l, la), cols(&r, ra)].concat()),
                &weight(&l, &r),
            );
            terms.push(format!(
                "{} FROM ({ls}) AS {l} JOIN ({rs}) AS {r} ON {cond}",
                select(&items)
            ));
        };
    if let Some(dl) = &dl {
        let rs = new_sql_matching(tree, right, &[dl.clone()], &pairs, ctx)?;
        term(ctx, format!("SELECT * FROM {dl}"), rs, &|l, _| {
            format!("{l}.{W}")
        });
    }
    if let Some(dr) = &dr {
        let ls = new_sql_matching(tree, left, &[dr.clone()], &flipped, ctx)?;
        term(ctx, ls, format!("SELECT * FROM {dr}"), &|_, r| {
            format!("{r}.{W}")
        });
    }
    if let (Some(dl), Some(dr)) = (&dl, &dr) {
        term(
            ctx,
            format!("SELECT * FROM {dl}"),
            format!("SELECT * FROM {dr}"),
            &|l, r| format!("-({l}.{W} * {r}.{W})"),
        );
    }
    Ok(union_all(terms))
}

/// Whether some row of some `partners` FROM item meets `cond` (given the partner's alias): one
/// EXISTS per item, so PostgreSQL probes each by its own keys (an index of the current rows, a hash of
/// a delta); an EXISTS over their UNION ALL is one hashed semi-join that reads every current row.
pub(super) fn exists_in_any(
    partners: &[String],
    ctx: &mut DiffContext,
    cond: &dyn Fn(&str) -> String,
) -> String {
    let tests: Vec<String> = partners
        .iter()
        .map(|p| {
            let m = ctx.alias("m");
            format!("EXISTS (SELECT 1 FROM {p} AS {m} WHERE {})", cond(&m))
        })
        .collect();
    format!("({})", tests.join(" OR "))
}

/// `p.c<partner column> = (<group key over rows>)` for each (partner column, group key index) pair.
pub(super) fn key_equalities(
    p: &str,
    pairs: &[(usize, usize)],
    keys: &[Expr],
    rows: &str,
) -> String {
    let eqs: Vec<String> = pairs
        .iter()
        .map(|&(pc, k)| {
            format!(
                "{p}.c{pc} = ({})",
                keys[k].render(&|i| format!("{rows}.c{i}"))
            )
        })
        .collect();
    eqs.join(" AND ")
}

/// Whether a grouped aggregate is reached from `node` through filters and projections: only
/// then can a join partner cut its delta (`delta_sql_matching`).
fn groups_below(node: &Node) -> bool {
    match node {
        Node::Filter { input, .. } | Node::Project { input, .. } => groups_below(input),
        Node::Aggregate { group_by, .. } => !group_by.is_empty(),
        _ => false,
    }
}

/// The `left = right` conjuncts of a join condition over (left columns, right columns), as
/// (left column, right column) pairs.
fn equalities_across(on: &Expr, left_arity: usize) -> Vec<(usize, usize)> {
    crate::dvm::index_advice::equalities(on)
        .into_iter()
        .filter_map(|(a, b)| match (a < left_arity, b < left_arity) {
            (true, false) => Some((a, b - left_arity)),
            (false, true) => Some((b, a - left_arity)),
            _ => None,
        })
        .collect()
}

/// The current rows of `node` that a row of `partners` (FROM items) can join with, where `pairs`
/// are (partner column, node column) equalities of the join condition: all of `node` but for a
/// grouped aggregate (seen through filters, plain column projections and CTEs), whose input is
/// restricted to the groups whose keys equal some partner row's. PostgreSQL cannot push a join key
/// into a grouped subquery, so without this a small delta joined to `GROUP BY` aggregates every
/// group (TPC-H Q17's average per part, Q18's `IN (... GROUP BY ... HAVING)`). Exact: a group's key
/// decides whether any of its rows can join, and kept groups keep all their rows.
fn new_sql_matching(
    tree: &OpTree,
    node: &Node,
    partners: &[String],
    pairs: &[(usize, usize)],
    ctx: &mut DiffContext,
) -> PgtResult<String> {
    if pairs.is_empty() {
        return new_sql(tree, node, ctx);
    }
    if read_whole(node, ctx) {
        // Kept apart, the rows offer no index probe by the join key: PostgreSQL hashes them. The
        // source's own filters stay inside, where they can still use its indexes.
        return Ok(format!("{} OFFSET 0", new_sql(tree, node, ctx)?));
    }
    descend(ctx)?;
    let sql = match node {
        Node::Filter { input, predicate } => {
            let a = ctx.alias("f");
            let inner = new_sql_matching(tree, input, partners, pairs, ctx)?;
            filtered(predicate, &a, &inner)
        }
        Node::Project { input, exprs } => {
            let a = ctx.alias("p");
            let inner = new_sql_matching(
                tree,
                input,
                partners,
                &through_projection(pairs, exprs),
                ctx,
            )?;
            projection(exprs, &a, &inner)
        }
        Node::Aggregate {
            input,
            group_by: keys,
            aggregates,
            ..
        } if pairs.iter().any(|&(_, c)| c < keys.len()) => {
            let (r, a) = (ctx.alias("m"), ctx.alias("g"));
            let inner = new_sql(tree, input, ctx)?;
            let on_keys: Vec<(usize, usize)> = pairs
                .iter()
                .copied()
                .filter(|&(_, c)| c < keys.len())
                .collect();
            let test = exists_in_any(partners, ctx, &|d| key_equalities(d, &on_keys, keys, &r));
            let restricted = format!("SELECT {r}.* FROM ({inner}) AS {r} WHERE {test}");
            let (keys, aggs) = (render_over(keys, &a), render_over(aggregates, &a));
            format!(
                "{} FROM ({restricted}) AS {a}{}",
                select(&named([keys.clone(), aggs].concat())),
                group_by(&keys)
            )
        }
        Node::CteRef { id, .. } => new_sql_matching(tree, cte(tree, *id)?, partners, pairs, ctx)?,
        other => new_sql(tree, other, ctx)?,
    };
    ctx.opt.depth -= 1;
    Ok(sql)
}

/// Whether `left ⋈ right` meets each change row with at most one partner row, in one hash join: one
/// side changed, and the other is read whole (a hash join, see [`read_whole`]) and unique on the
/// join's equalities (one of its unique indexes covered). Consolidating the batch first then saves
/// nothing worth its own pass (`rules::reads_change_rows_raw`): the join costs what reading the
/// change rows costs. Where the partner is probed through an index, a cancelled pair saves two
/// probes; where a change row meets many partner rows (a dimension row updated 600 times in one
/// batch, joined with its 1,000 facts) or change rows of the other side (the `ΔL ⋈ ΔR` term, a row
/// updated on both sides N times: N² pairs), the unconsolidated batch multiplies the work.
pub(super) fn meets_each_change_row_once(
    tree: &OpTree,
    left: &Node,
    right: &Node,
    on: Option<&Expr>,
    ctx: &DiffContext,
) -> bool {
    let Some(pairs) = on.map(|on| equalities_across(on, left.arity())) else {
        return false;
    };
    let once = |partner: &Node, columns: Vec<usize>| {
        read_whole(partner, ctx) && unique_on(partner, &columns, ctx)
    };
    match (
        is_static_empty(tree, left, ctx),
        is_static_empty(tree, right, ctx),
    ) {
        (false, true) => once(right, pairs.iter().map(|&(_, r)| r).collect()),
        (true, false) => once(left, pairs.iter().map(|&(l, _)| l).collect()),
        _ => false,
    }
}

/// Whether `node` (a source's rows through filters and projections) holds at most one row per value
/// of its output `columns`: they are the source's columns of one of its unique indexes, or more.
fn unique_on(node: &Node, columns: &[usize], ctx: &DiffContext) -> bool {
    let scanned: Vec<(u32, &String)> = columns
        .iter()
        .filter_map(|&c| crate::dvm::index_advice::scanned(node, c))
        .map(|(table, column)| (table.relid, column))
        .collect();
    let Some(&(relid, _)) = scanned.first() else {
        return false;
    };
    ctx.opt.unique_keys.get(&relid).is_some_and(|sets| {
        sets.iter()
            .any(|set| set.iter().all(|c| scanned.contains(&(relid, c))))
    })
}

/// Whether `node` is a source's rows, filtered and projected, that the batch is large against
/// (`OptimizationContext::whole_reads`).
fn read_whole(node: &Node, ctx: &DiffContext) -> bool {
    match node {
        Node::Filter { input, .. } | Node::Project { input, .. } => read_whole(input, ctx),
        Node::Scan { table, .. } => ctx.opt.whole_reads.contains(&table.relid),
        _ => false,
    }
}

/// The delta of `node` as far as a join partner can meet it: `pairs` are (partner column, node
/// column) equalities of the join condition, `partners` FROM items holding every row the delta can
/// be joined with. As `delta_sql`, but a grouped aggregate (seen through filters and plain column
/// projections) recomputes only the groups whose keys some partner row has: a join of a
/// selective table with `GROUP BY` (TPC-H Q17's parts of one brand and container, against the
/// average quantity of every part a batch touched) recomputes what can reach the result.
fn delta_sql_matching(
    tree: &OpTree,
    node: &Node,
    partners: &[String],
    pairs: &[(usize, usize)],
    ctx: &mut DiffContext,
) -> PgtResult<String> {
    if pairs.is_empty() {
        return delta_sql(tree, node, ctx);
    }
    descend(ctx)?;
    let sql = match node {
        Node::Filter { input, predicate } => {
            let a = ctx.alias("f");
            let inner = delta_sql_matching(tree, input, partners, pairs, ctx)?;
            filtered(predicate, &a, &inner)
        }
        Node::Project { input, exprs } => {
            let a = ctx.alias("p");
            let inner = delta_sql_matching(
                tree,
                input,
                partners,
                &through_projection(pairs, exprs),
                ctx,
            )?;
            weighted_projection(exprs, &a, &inner)
        }
        Node::Aggregate {
            input,
            group_by,
            aggregates,
            key_eq,
            ..
        } if pairs.iter().any(|&(_, c)| c < group_by.len())
            && !occurs_more_than_once(tree, node) =>
        {
            let on_keys: Vec<(usize, usize)> = pairs
                .iter()
                .copied()
                .filter(|&(_, c)| c < group_by.len())
                .collect();
            aggregate_delta_of(
                tree,
                input,
                group_by,
                key_eq,
                aggregates,
                Some((partners, &on_keys)),
                ctx,
            )?
        }
        other => delta_sql(tree, other, ctx)?,
    };
    ctx.opt.depth -= 1;
    Ok(sql)
}

/// `pairs` (partner column, output column) of a projection, as pairs over its input: those whose
/// output is a plain input column.
fn through_projection(pairs: &[(usize, usize)], exprs: &[Expr]) -> Vec<(usize, usize)> {
    pairs
        .iter()
        .filter_map(|&(p, c)| match exprs.get(c)?.parts.as_slice() {
            [crate::dvm::optree::ExprPart::Col(j)] => Some((p, *j)),
            _ => None,
        })
        .collect()
}

/// How the rows of one side (`x`) relate to the other side (`y`) under `on`, for outer/semi/anti joins.
/// `on` is over (left columns, right columns); `x_is_left` says which of the two `x` is.
struct Probe<'a> {
    on: &'a Expr,
    left_arity: usize,
    x_is_left: bool,
}

impl Probe<'_> {
    fn cond(&self, x: &str, y: &str) -> String {
        if self.x_is_left {
            render_pair(self.on, x, self.left_arity, y)
        } else {
            render_pair(self.on, y, self.left_arity, x)
        }
    }

    /// `EXISTS (rows of relation `ys` matching x)`
    fn exists(&self, ctx: &mut DiffContext, x: &str, ys: &str) -> String {
        let y = ctx.alias("y");
        format!(
            "EXISTS (SELECT 1 FROM ({ys}) AS {y} WHERE {})",
            self.cond(x, &y)
        )
    }

    /// `exists`, for rows of x a join feeds: when the condition has equalities between the two
    /// sides besides other conjuncts, their EXISTS first. PostgreSQL drives a join with a semi-join
    /// only when it can make the other side unique on the semi-join's keys, which takes equalities
    /// alone; with `y.k = x.k AND y.s <> x.s` it computes every row of x and then probes.
    fn exists_keyed(&self, ctx: &mut DiffContext, x: &str, ys: &str) -> String {
        let full = self.exists(ctx, x, ys);
        let across = self.equalities();
        if across.is_empty() || crate::dvm::index_advice::equalities_of_all(self.on).1 {
            return full;
        }
        let y = ctx.alias("y");
        let keys = across
            .iter()
            .map(|(xc, yc)| format!("{y}.c{yc} = {x}.c{xc}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        format!("EXISTS (SELECT 1 FROM ({ys}) AS {y} WHERE {keys}) AND {full}")
    }

    /// The condition's equalities between the two sides, as (x column, y column).
    fn equalities(&self) -> Vec<(usize, usize)> {
        let pairs = equalities_across(self.on, self.left_arity);
        if self.x_is_left {
            pairs
        } else {
            pairs.into_iter().map(|(l, r)| (r, l)).collect()
        }
    }

    /// The number of matches x had in the old state of the other side: |matches in Y| − Σw(matches in ΔY).
    fn old_matches(&self, ctx: &mut DiffContext, x: &str, ys: &str, dy: &str) -> String {
        let (y, d) = (ctx.alias("y"), ctx.alias("y"));
        format!(
            "((SELECT pg_catalog.count(*) FROM ({ys}) AS {y} WHERE {}) - (SELECT COALESCE(pg_catalog.sum({d}.{W}), 0) FROM {dy} AS {d} WHERE {}))",
            self.cond(x, &y),
            self.cond(x, &d)
        )
    }
}

/// The delta of "rows of X with at least one match in Y" (`want_match`) or "rows of X without a match"
/// (not `want_match`), as relations with X's columns and a weight:
///   term 1: ΔX rows judged against the new Y                               (linear in X)
///   term 2: rows of X_old that match some ΔY row: w · ([status in new Y] − [status in old Y])
/// Rows of X_old matching no ΔY row keep their status, so they need no work.
fn match_status_delta(
    tree: &OpTree,
    x: &Node,
    y: &Node,
    probe: &Probe,
    want_match: bool,
    ctx: &mut DiffContext,
) -> PgtResult<Vec<String>> {
    let xa = x.arity();
    let dx = hoisted_delta(tree, x, ctx, "dx_")?;
    let dy = hoisted_delta(tree, y, ctx, "dy_")?;
    let mut terms = Vec::new();
    if let Some(dx) = &dx {
        let a = ctx.alias("x");
        let ys = new_sql_matching(tree, y, &[dx.clone()], &probe.equalities(), ctx)?;
        let exists = probe.exists(ctx, &a, &ys);
        let test = if want_match {
            exists
        } else {
            format!("NOT {exists}")
        };
        terms.push(format!("SELECT {a}.* FROM {dx} AS {a} WHERE {test}"));
    }
    if let Some(dy) = &dy {
        let a = ctx.alias("x");
        let ys = new_sql(tree, y, ctx)?;
        let matches_now = probe.exists(ctx, &a, &ys);
        let matches_before = format!("{} > 0", probe.old_matches(ctx, &a, &ys, dy));
        let status = |test: &str| {
            if want_match {
                format!("CASE WHEN {test} THEN 1 ELSE 0 END")
            } else {
                format!("CASE WHEN {test} THEN 0 ELSE 1 END")
            }
        };
        let weight = format!(
            "{a}.{W} * (({}) - ({}))",
            status(&matches_now),
            status(&matches_before)
        );
        // X_old restricted to the rows ΔY touches, in each of its two parts: under the UNION ALL
        // the test would only run after all of X had been computed.
        let dy_rows = format!("SELECT * FROM {dy}");
        let touched_now = probe.exists_keyed(ctx, "o", &dy_rows);
        let current = format!(
            "{} FROM ({}) AS o WHERE {touched_now}",
            select(&with_weight(named(cols("o", xa)), "1::bigint")),
            new_sql(tree, x, ctx)?
        );
        let xs = match dx.as_deref() {
            None => current,
            Some(d) => {
                let touched_before = probe.exists(ctx, "od", &dy_rows);
                format!(
                    "{current} UNION ALL {} FROM {d} AS od WHERE {touched_before}",
                    select(&with_weight(named(cols("od", xa)), &format!("-od.{W}")))
                )
            }
        };
        terms.push(format!(
            "{} FROM ({xs}) AS {a}",
            select(&with_weight(named(cols(&a, xa)), &weight))
        ));
    }
    Ok(terms)
}

/// Outer joins: the matched part changes like an inner join; the null-padded part is the preserved
/// side's rows without a match (both sides' for FULL JOIN, each on its own: a row is matched or not
/// whatever happens to the other side's unmatched rows).
pub(super) fn outer_join_delta(
    tree: &OpTree,
    kind: JoinKind,
    left: &Node,
    right: &Node,
    on: Option<&Expr>,
    null_types: &[String],
    ctx: &mut DiffContext,
) -> PgtResult<String> {
    let la = left.arity();
    let mut parts = vec![inner_join_delta(tree, left, right, on, ctx)?];
    let always = Expr::sql("true");
    for &keeps_left in kind.preserved_sides() {
        let probe = Probe {
            on: on.unwrap_or(&always),
            left_arity: la,
            x_is_left: keeps_left,
        };
        let (preserved, other) = if keeps_left {
            (left, right)
        } else {
            (right, left)
        };
        // FULL keeps both sides' types, left then right; LEFT and RIGHT only the padded side's.
        let padded_types = match (kind, keeps_left) {
            (JoinKind::Full, true) => null_types.get(la..).unwrap_or_default(),
            (JoinKind::Full, false) => null_types.get(..la).unwrap_or(null_types),
            _ => null_types,
        };
        let nulls: Vec<String> = (0..other.arity())
            .map(|i| {
                padded_types
                    .get(i)
                    .map_or("NULL".to_string(), |t| format!("NULL::{t}"))
            })
            .collect();
        for unmatched in match_status_delta(tree, preserved, other, &probe, false, ctx)? {
            let z = ctx.alias("z");
            let kept = cols(&z, preserved.arity());
            let values = if keeps_left {
                [kept, nulls.clone()].concat()
            } else {
                [nulls.clone(), kept].concat()
            };
            parts.push(format!(
                "{} FROM ({unmatched}) AS {z}",
                select(&with_weight(named(values), &format!("{z}.{W}")))
            ));
        }
    }
    Ok(union_all(parts))
}

pub(super) fn semi_join_delta(
    tree: &OpTree,
    anti: bool,
    left: &Node,
    right: &Node,
    on: &Expr,
    ctx: &mut DiffContext,
) -> PgtResult<String> {
    let probe = Probe {
        on,
        left_arity: left.arity(),
        x_is_left: true,
    };
    Ok(union_all(match_status_delta(
        tree, left, right, &probe, !anti, ctx,
    )?))
}
