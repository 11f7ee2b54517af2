//! Delta rules, one per operator. Every relation here is SQL whose columns are `c0..cN`; a delta also
//! has `__pgt_w bigint`, the row's signed multiplicity (a Z-set, not necessarily consolidated).
//!
//! Notation in comments: X is a node's current ("new") result, ΔX its delta, X_old = X ⊎ −ΔX.

use super::context::DiffContext;
use super::sharing::{known_whole_result, occurs_more_than_once, shared_delta, whole_input};
use crate::dvm::apply::identified_by_text;
use crate::dvm::optree::{Expr, ExprPart, JoinKind, Node, OpTree};
use crate::dvm::sql::quote_ident;
use crate::error::{PgtError, PgtResult};

pub const W: &str = "__pgt_w";

/// `a.c0, a.c1, ...`
fn cols(alias: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{alias}.c{i}")).collect()
}

/// `a.c0 AS c0, ...` from the given expressions.
pub(super) fn named(exprs: Vec<String>) -> Vec<String> {
    exprs
        .into_iter()
        .enumerate()
        .map(|(i, e)| format!("{e} AS c{i}"))
        .collect()
}

pub(super) fn select(items: &[String]) -> String {
    if items.is_empty() {
        "SELECT".to_string()
    } else {
        format!("SELECT {}", items.join(", "))
    }
}

pub(super) fn with_weight(mut items: Vec<String>, weight: &str) -> Vec<String> {
    items.push(format!("{weight} AS {W}"));
    items
}

/// How to consolidate rows by identity, not equality: the values to select and the GROUP BY keys.
/// The keys are the values and their text, so that rows equal under `=` but shown differently
/// (`1.5` and `1.50`, `'1 day'` and `'24 hours'`) stay apart and a change between them reaches the
/// stream table. The text is left out for values whose type (`types`, when known) prints equal
/// values the same: rendering each change row as text is a good part of reading a batch. A value of
/// a type that has no equality but whose text is the value ([`identified_by_text`]: `json`) is
/// grouped by its text alone, and selected as that text read back.
fn identity_grouping(values: &[String], types: &[String]) -> (Vec<String>, Vec<String>) {
    let known = types.len() == values.len();
    let (mut selected, mut keys, mut printed) = (Vec::new(), Vec::new(), Vec::new());
    for (i, value) in values.iter().enumerate() {
        if known && identified_by_text(&types[i]) {
            let text = format!("{value}::pg_catalog.text");
            selected.push(format!("({text})::pg_catalog.{}", types[i]));
            keys.push(text);
            continue;
        }
        selected.push(value.clone());
        keys.push(value.clone());
        if !(known && equal_values_print_equal(&types[i])) {
            printed.push(value.clone());
        }
    }
    if !printed.is_empty() {
        keys.push(format!("ROW({})::text", printed.join(", ")));
    }
    (selected, keys)
}

/// The SQL types of `node`'s output columns, where the tree knows them: a table's columns, through
/// filters, joins and plain column references. Empty when it does not know one of them.
fn known_types(tree: &OpTree, node: &Node) -> Vec<String> {
    let known = |types: Vec<String>| {
        if types.len() == node.arity() {
            types
        } else {
            Vec::new()
        }
    };
    match node {
        Node::Scan { types, .. } => known(types.clone()),
        Node::Filter { input, .. } | Node::SemiJoin { left: input, .. } => known_types(tree, input),
        Node::Project { input, exprs } => {
            let below = known_types(tree, input);
            known(
                exprs
                    .iter()
                    .map_while(|e| match e.parts.as_slice() {
                        [ExprPart::Col(i)] => below.get(*i).cloned(),
                        _ => None,
                    })
                    .collect(),
            )
        }
        Node::Join { left, right, .. } => {
            known([known_types(tree, left), known_types(tree, right)].concat())
        }
        Node::CteRef { id, .. } => tree
            .ctes
            .get(*id)
            .map_or_else(Vec::new, |cte| known_types(tree, cte)),
        Node::Aggregate { .. } | Node::Distinct { .. } | Node::UnionAll { .. } => Vec::new(),
    }
}

/// Whether equal values of type `t` (as `format_type` prints it) always print the same: integers,
/// `numeric` with a scale, dates and times without a zone offset of their own, ... Not so for `numeric`
/// without a scale (`1.5` = `1.50`), `interval` (`1 day` = `24 hours`), floats (`0` = `-0`), `time
/// with time zone`, text under a nondeterministic collation (see [`is_text`]), and types the engine
/// does not know.
pub(super) fn equal_values_print_equal(t: &str) -> bool {
    matches!(
        t,
        "smallint"
            | "integer"
            | "bigint"
            | "boolean"
            | "date"
            | "uuid"
            | "oid"
            | "money"
            | "time without time zone"
            | "timestamp without time zone"
            | "timestamp with time zone"
    ) || t.starts_with("numeric(")
        || t.starts_with("timestamp(")
        || (t.starts_with("time(") && t.ends_with("without time zone"))
}

/// Text types: their equal values print the same under a deterministic collation (every database
/// default), not under a nondeterministic one, which a column's type name does not show.
pub(super) fn is_text(t: &str) -> bool {
    t == "text" || t.starts_with("character varying") || t.starts_with("character(")
}

pub(super) fn group_by(exprs: &[String]) -> String {
    if exprs.is_empty() {
        String::new()
    } else {
        format!(" GROUP BY {}", exprs.join(", "))
    }
}

pub(super) fn union_all(parts: Vec<String>) -> String {
    parts
        .into_iter()
        .map(|p| format!("SELECT * FROM ({p}) AS u"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// Renders a join condition over `l`'s columns followed by `r`'s.
fn render_pair(e: &Expr, l: &str, left_arity: usize, r: &str) -> String {
    e.render(&|i| {
        if i < left_arity {
            format!("{l}.c{i}")
        } else {
            format!("{r}.c{}", i - left_arity)
        }
    })
}

fn cte<'t>(tree: &'t OpTree, id: usize) -> PgtResult<&'t Node> {
    tree.ctes
        .get(id)
        .ok_or_else(|| PgtError::internal(format!("CTE {id} missing from the OpTree")))
}

/// Whether a node's delta is empty for certain in this batch (every source under it is bypassed).
pub fn is_static_empty(tree: &OpTree, node: &Node, ctx: &DiffContext) -> bool {
    match node {
        Node::Scan { table, .. } => ctx.cache.bypass.contains(&table.relid),
        Node::CteRef { id, .. } => tree
            .ctes
            .get(*id)
            .is_none_or(|c| is_static_empty(tree, c, ctx)),
        other => other
            .children()
            .into_iter()
            .all(|c| is_static_empty(tree, c, ctx)),
    }
}

/// The node's current result.
pub fn new_sql(tree: &OpTree, node: &Node, ctx: &mut DiffContext) -> PgtResult<String> {
    if let Some(name) = known_whole_result(node, ctx) {
        return Ok(format!("SELECT * FROM {name}"));
    }
    descend(ctx)?;
    let sql = match node {
        Node::Scan { table, columns, .. } => {
            let items = named(
                columns
                    .iter()
                    .map(|c| format!("t.{}", quote_ident(c)))
                    .collect(),
            );
            format!(
                "{} FROM {}.{} AS t",
                select(&items),
                quote_ident(&table.schema),
                quote_ident(&table.name)
            )
        }
        Node::Filter { input, predicate } => {
            let a = ctx.alias("f");
            let inner = new_sql(tree, input, ctx)?;
            format!(
                "SELECT * FROM ({inner}) AS {a} WHERE {}",
                predicate.render(&|i| format!("{a}.c{i}"))
            )
        }
        Node::Project { input, exprs } => {
            let a = ctx.alias("p");
            let inner = new_sql(tree, input, ctx)?;
            let items = named(
                exprs
                    .iter()
                    .map(|e| e.render(&|i| format!("{a}.c{i}")))
                    .collect(),
            );
            format!("{} FROM ({inner}) AS {a}", select(&items))
        }
        Node::Join {
            kind,
            left,
            right,
            on,
            ..
        } => {
            let (l, r) = (ctx.alias("l"), ctx.alias("r"));
            let la = left.arity();
            let (ls, rs) = (new_sql(tree, left, ctx)?, new_sql(tree, right, ctx)?);
            let items = named([cols(&l, la), cols(&r, right.arity())].concat());
            let join = match kind {
                JoinKind::Inner => "JOIN",
                JoinKind::Left => "LEFT JOIN",
                JoinKind::Right => "RIGHT JOIN",
                JoinKind::Full => "FULL JOIN",
            };
            let cond = on
                .as_ref()
                .map_or("true".to_string(), |e| render_pair(e, &l, la, &r));
            format!(
                "{} FROM ({ls}) AS {l} {join} ({rs}) AS {r} ON {cond}",
                select(&items)
            )
        }
        Node::SemiJoin {
            anti,
            left,
            right,
            on,
        } => {
            let (l, r) = (ctx.alias("l"), ctx.alias("r"));
            let (ls, rs) = (new_sql(tree, left, ctx)?, new_sql(tree, right, ctx)?);
            let not = if *anti { "NOT " } else { "" };
            format!(
                "SELECT {l}.* FROM ({ls}) AS {l} WHERE {not}EXISTS (SELECT 1 FROM ({rs}) AS {r} WHERE {})",
                render_pair(on, &l, left.arity(), &r)
            )
        }
        Node::Aggregate {
            input,
            group_by: keys,
            aggregates,
            ..
        } => {
            let a = ctx.alias("g");
            let inner = if keys.is_empty() {
                whole_input(tree, input, ctx)?
            } else {
                new_sql(tree, input, ctx)?
            };
            let (keys, aggs) = (render_over(keys, &a), render_over(aggregates, &a));
            let sql = format!(
                "{} FROM ({inner}) AS {a}{}",
                select(&named([keys.clone(), aggs].concat())),
                group_by(&keys)
            );
            if keys.is_empty() && ctx.opt.hoist_global_aggregates {
                format!("SELECT * FROM {}", hoist_materialized(ctx, "one_", sql))
            } else {
                sql
            }
        }
        Node::Distinct { input } => {
            let a = ctx.alias("d");
            format!(
                "SELECT DISTINCT * FROM ({}) AS {a}",
                new_sql(tree, input, ctx)?
            )
        }
        Node::UnionAll { inputs } => union_all(
            inputs
                .iter()
                .map(|i| new_sql(tree, i, ctx))
                .collect::<PgtResult<Vec<_>>>()?,
        ),
        Node::CteRef { id, .. } => new_sql(tree, cte(tree, *id)?, ctx)?,
    };
    ctx.opt.depth -= 1;
    Ok(sql)
}

/// `exprs` over the delta rows of `inner` (aliased `a`), each row keeping its weight.
fn weighted_projection(exprs: &[Expr], a: &str, inner: &str) -> String {
    let items = with_weight(named(render_over(exprs, a)), &format!("{a}.{W}"));
    format!("{} FROM ({inner}) AS {a}", select(&items))
}

/// Each of `es` over the columns of FROM item `a`.
fn render_over(es: &[Expr], a: &str) -> Vec<String> {
    es.iter()
        .map(|e| e.render(&|i| format!("{a}.c{i}")))
        .collect()
}

fn descend(ctx: &mut DiffContext) -> PgtResult<()> {
    ctx.opt.depth += 1;
    if ctx.opt.depth > ctx.opt.max_depth {
        return Err(PgtError::internal(format!(
            "query nests deeper than {} operators",
            ctx.opt.max_depth
        )));
    }
    Ok(())
}

/// Puts `sql` in a WITH item (computed once however often it is referenced) and returns its name.
/// The same text hoisted again is the same item: an outer join's terms each need the batch of a
/// source, a FULL JOIN's three times, and read it once so (the text has no volatile parts: DIFFERENTIAL
/// refuses non-immutable functions, and the snapshot is the statement's).
pub(super) fn hoist(ctx: &mut DiffContext, stem: &str, sql: String) -> String {
    let body = format!("({sql})");
    if let Some((name, _)) = ctx.cache.with_items.iter().find(|(_, b)| *b == body) {
        return name.clone();
    }
    let name = ctx.alias(stem);
    ctx.cache.with_items.push((name.clone(), body));
    name
}

/// As [`hoist`], computed once even where referenced once (PostgreSQL inlines such a WITH item).
pub(super) fn hoist_materialized(ctx: &mut DiffContext, stem: &str, sql: String) -> String {
    let name = ctx.alias(stem);
    ctx.cache
        .with_items
        .push((name.clone(), format!("MATERIALIZED ({sql})")));
    name
}

/// The node's delta as a WITH item (it is read by several terms), or None when statically empty.
pub(super) fn hoisted_delta(
    tree: &OpTree,
    node: &Node,
    ctx: &mut DiffContext,
    stem: &str,
) -> PgtResult<Option<String>> {
    if is_static_empty(tree, node, ctx) {
        return Ok(None);
    }
    let sql = delta_sql(tree, node, ctx)?;
    Ok(Some(hoist(ctx, stem, sql)))
}

/// The node's delta. Only call for nodes that are not statically empty.
pub fn delta_sql(tree: &OpTree, node: &Node, ctx: &mut DiffContext) -> PgtResult<String> {
    descend(ctx)?;
    let sql = match node {
        Node::Scan {
            table,
            columns,
            types,
        } => {
            let buffer = ctx.cdc.sources.get(&table.relid).ok_or_else(|| {
                PgtError::internal(format!(
                    "no change buffer for {}.{}",
                    table.schema, table.name
                ))
            })?;
            let values: Vec<String> = columns
                .iter()
                .map(|c| format!("b.{}", quote_ident(c)))
                .collect();
            let (source, batch) = (buffer.buffer.quoted(), ctx.cdc.batch_predicate("b"));
            if ctx.opt.raw_scans {
                format!(
                    "{} FROM {source} AS b WHERE {batch}",
                    select(&with_weight(named(values), &format!("b.{W}::bigint")))
                )
            } else {
                let (selected, keys) = identity_grouping(&values, types);
                let items = with_weight(named(selected), &format!("pg_catalog.sum(b.{W})::bigint"));
                format!(
                    "{} FROM {source} AS b WHERE {batch}{} HAVING pg_catalog.sum(b.{W}) <> 0",
                    select(&items),
                    group_by(&keys)
                )
            }
        }
        Node::Filter { input, predicate } => {
            let a = ctx.alias("f");
            let inner = delta_sql(tree, input, ctx)?;
            format!(
                "SELECT * FROM ({inner}) AS {a} WHERE {}",
                predicate.render(&|i| format!("{a}.c{i}"))
            )
        }
        Node::Project { input, exprs } => {
            let a = ctx.alias("p");
            let inner = delta_sql(tree, input, ctx)?;
            weighted_projection(exprs, &a, &inner)
        }
        Node::Join {
            kind: JoinKind::Inner,
            left,
            right,
            on,
            ..
        } => inner_join_delta(tree, left, right, on.as_ref(), ctx)?,
        Node::Join {
            kind,
            left,
            right,
            on,
            null_types,
        } => outer_join_delta(tree, *kind, left, right, on.as_ref(), null_types, ctx)?,
        Node::SemiJoin {
            anti,
            left,
            right,
            on,
        } => semi_join_delta(tree, *anti, left, right, on, ctx)?,
        Node::Aggregate {
            input,
            group_by,
            aggregates,
            key_eq,
            ..
        } => shared_delta(tree, node, ctx, |ctx| {
            aggregate_delta(tree, input, group_by, key_eq, aggregates, ctx)
        })?,
        Node::Distinct { input } => {
            let keys: Vec<Expr> = (0..input.arity()).map(Expr::col).collect();
            aggregate_delta(tree, input, &keys, &[], &[], ctx)?
        }
        Node::UnionAll { inputs } => {
            let mut parts = Vec::new();
            for input in inputs {
                if !is_static_empty(tree, input, ctx) {
                    parts.push(delta_sql(tree, input, ctx)?);
                }
            }
            union_all(parts)
        }
        Node::CteRef { id, .. } => {
            let name = match ctx.cache.cte_delta_names.get(id) {
                Some(name) => name.clone(),
                None => {
                    let body = delta_sql(tree, cte(tree, *id)?, ctx)?;
                    ctx.opt.cte_counter += 1;
                    let name = hoist(ctx, "cte_delta_", body);
                    ctx.cache.cte_delta_names.insert(*id, name.clone());
                    name
                }
            };
            format!("SELECT * FROM {name}")
        }
    };
    ctx.opt.depth -= 1;
    Ok(sql)
}

/// Δ(L ⋈ R) = ΔL ⋈ R + L ⋈ ΔR − ΔL ⋈ ΔR, with weights multiplied; terms with an empty side dropped.
fn inner_join_delta(
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
fn exists_in_any(
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
fn key_equalities(p: &str, pairs: &[(usize, usize)], keys: &[Expr], rows: &str) -> String {
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
    descend(ctx)?;
    let sql = match node {
        Node::Filter { input, predicate } => {
            let a = ctx.alias("f");
            let inner = new_sql_matching(tree, input, partners, pairs, ctx)?;
            format!(
                "SELECT * FROM ({inner}) AS {a} WHERE {}",
                predicate.render(&|i| format!("{a}.c{i}"))
            )
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
            let items = named(
                exprs
                    .iter()
                    .map(|e| e.render(&|i| format!("{a}.c{i}")))
                    .collect(),
            );
            format!("{} FROM ({inner}) AS {a}", select(&items))
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
            format!(
                "SELECT * FROM ({inner}) AS {a} WHERE {}",
                predicate.render(&|i| format!("{a}.c{i}"))
            )
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
fn outer_join_delta(
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

fn semi_join_delta(
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

/// Aggregates (and DISTINCT, an aggregate without aggregate functions): recompute only the groups the
/// batch touches, as +(their new rows) −(their old rows). The old rows are computed by PostgreSQL from
/// the old input (current input ⊎ −Δinput, consolidated and expanded), with the aggregate calls as
/// written — so every aggregate, MIN/MAX after deleting the extremum, and numeric sums are exact.
fn aggregate_delta(
    tree: &OpTree,
    input: &Node,
    keys: &[Expr],
    key_eq: &[String],
    aggs: &[Expr],
    ctx: &mut DiffContext,
) -> PgtResult<String> {
    aggregate_delta_of(tree, input, keys, key_eq, aggs, None, ctx)
}

/// [`aggregate_delta`], optionally of only the groups a join partner can meet: `matching` is the
/// partner (a FROM item) and (partner column, group key index) equalities. The input delta is cut
/// to those groups before anything else, so a group is either recomputed whole or not at all.
fn aggregate_delta_of(
    tree: &OpTree,
    input: &Node,
    keys: &[Expr],
    key_eq: &[String],
    aggs: &[Expr],
    matching: Option<(&[String], &[(usize, usize)])>,
    ctx: &mut DiffContext,
) -> PgtResult<String> {
    let n = input.arity();
    let mut dinput = hoisted_delta(tree, input, ctx, "dagg_")?
        .ok_or_else(|| PgtError::internal("aggregate delta requested for an unchanged input"))?;
    if let Some((partners, pairs)) = matching {
        let d = ctx.alias("d");
        let test = exists_in_any(partners, ctx, &|m| key_equalities(m, pairs, keys, &d));
        dinput = hoist(
            ctx,
            "dmatch_",
            format!("SELECT {d}.* FROM {dinput} AS {d} WHERE {test}"),
        );
    }
    let render_all = |a: &str, es: &[Expr]| -> Vec<String> {
        es.iter()
            .map(|e| e.render(&|i| format!("{a}.c{i}")))
            .collect()
    };

    // Groups the batch touches, and the current input rows of exactly those groups.
    let restricted = if keys.is_empty() {
        // One global group: it is touched whenever the input changed at all.
        let a = ctx.alias("a");
        format!(
            "SELECT {a}.* FROM ({}) AS {a} WHERE EXISTS (SELECT 1 FROM {dinput})",
            whole_input(tree, input, ctx)?
        )
    } else {
        let touched = {
            let d = ctx.alias("d");
            let items: Vec<String> = render_all(&d, keys)
                .into_iter()
                .enumerate()
                .map(|(i, e)| format!("{e} AS k{i}"))
                .collect();
            hoist(
                ctx,
                "touched_",
                format!("SELECT DISTINCT {} FROM {dinput} AS {d}", items.join(", ")),
            )
        };
        rows_of_groups(tree, input, keys, key_eq, &touched, ctx)?
    };
    let restricted_name = hoist(ctx, "grp_", restricted);

    let aggregate = |ctx: &mut DiffContext, rows: String, weight: &str| -> String {
        let a = ctx.alias("a");
        let (k, g) = (render_all(&a, keys), render_all(&a, aggs));
        let body = format!(
            "{} FROM ({rows}) AS {a}{}",
            select(&with_weight(named([k.clone(), g].concat()), weight)),
            group_by(&k)
        );
        if keys.is_empty() {
            // An aggregate without GROUP BY returns a row even for no input: only emit it when touched.
            let s = ctx.alias("s");
            format!("SELECT * FROM ({body}) AS {s} WHERE EXISTS (SELECT 1 FROM {dinput})")
        } else {
            body
        }
    };
    let new_rows = aggregate(ctx, format!("SELECT * FROM {restricted_name}"), "1::bigint");

    // Old input rows of the touched groups: consolidate current ⊎ −Δ, keep positive multiplicities,
    // and expand them back into rows.
    let (u, z) = (ctx.alias("u"), ctx.alias("z"));
    let c = (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>();
    let zset = format!(
        "SELECT {}, 1::bigint AS {W} FROM {restricted_name} UNION ALL SELECT {}, -{W} FROM {dinput}",
        if c.is_empty() { "NULL AS __pgt_none".to_string() } else { c.join(", ") },
        if c.is_empty() { "NULL AS __pgt_none".to_string() } else { c.join(", ") },
    );
    let (selected, keys) = identity_grouping(&cols(&u, n), &known_types(tree, input));
    let consolidated = format!(
        "SELECT {} FROM ({zset}) AS {u}{} HAVING pg_catalog.sum({u}.{W}) > 0",
        with_weight(named(selected), &format!("pg_catalog.sum({u}.{W})")).join(", "),
        group_by(&keys)
    );
    let old_input = format!(
        "{} FROM ({consolidated}) AS {z} CROSS JOIN LATERAL pg_catalog.generate_series(1, {z}.{W}) AS {z}_n",
        select(&named(cols(&z, n)))
    );
    let old_rows = aggregate(ctx, old_input, "-1::bigint");
    Ok(union_all(vec![new_rows, old_rows]))
}

/// The current rows of `input` whose group keys (`keys` over the input) are among the rows of
/// `groups`, a relation with columns `k0..`. Keys without NULLs: a semi-join on the keys' own
/// equality (`key_eq`, resolved when the stream table was created; record equality without it),
/// which the planner drives through an index on the keys. Keys with NULLs (a group of their own in
/// GROUP BY, but never equal under =): matched null-safely, and only scanned when such a key is
/// among `groups` at all.
pub(super) fn rows_of_groups(
    tree: &OpTree,
    input: &Node,
    keys: &[Expr],
    key_eq: &[String],
    groups: &str,
    ctx: &mut DiffContext,
) -> PgtResult<String> {
    let render_all = |a: &str| -> Vec<String> {
        keys.iter()
            .map(|e| e.render(&|i| format!("{a}.c{i}")))
            .collect()
    };
    let (a, b) = (ctx.alias("a"), ctx.alias("a"));
    let (ka, kb) = (render_all(&a), render_all(&b));
    let k: Vec<String> = (0..keys.len()).map(|i| format!("k{i}")).collect();
    let any_null = k
        .iter()
        .map(|k| format!("{k} IS NULL"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let kb_any_null = kb
        .iter()
        .map(|e| format!("({e}) IS NULL"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let t = ctx.alias("t");
    let same = same_keys(
        &k.iter().map(|k| format!("{t}.{k}")).collect::<Vec<_>>(),
        &kb,
    );
    let g = ctx.alias("g");
    let gk: Vec<String> = k.iter().map(|k| format!("{g}.{k}")).collect();
    let on = if key_eq.len() == keys.len() {
        ka.iter()
            .zip(&gk)
            .zip(key_eq)
            .map(|((e, k), op)| format!("({e}) {op} {k}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    } else {
        // No resolved operators (DISTINCT, trees from before 0.2.0): record equality, exact under
        // any search_path but not index-driven; it calls NULL equal, so NULL keys are left to the
        // null-safe branch below.
        let non_null: Vec<String> = gk.iter().map(|k| format!("{k} IS NOT NULL")).collect();
        format!("{} AND {}", non_null.join(" AND "), same_keys(&ka, &gk))
    };
    let member = format!("EXISTS (SELECT 1 FROM {groups} AS {g} WHERE {on})");
    let (ia, ib) = (new_sql(tree, input, ctx)?, new_sql(tree, input, ctx)?);
    Ok(format!(
        "SELECT {a}.* FROM ({ia}) AS {a} WHERE {member} \
         UNION ALL \
         SELECT {b}.* FROM ({ib}) AS {b} WHERE ({kb_any_null}) \
           AND EXISTS (SELECT 1 FROM {groups} AS {t} WHERE {same}) \
           AND EXISTS (SELECT 1 FROM {groups} WHERE {any_null})"
    ))
}

/// Whether two lists of group keys are the same group: NULL equal to NULL, and each key compared
/// by its type's default equality (as GROUP BY does) — record equality, which needs no operator
/// looked up by name, so it means the same under any search_path (`IS NOT DISTINCT FROM` resolves
/// `=` through it).
pub(super) fn same_keys(left: &[String], right: &[String]) -> String {
    format!(
        "ROW({})::pg_catalog.record OPERATOR(pg_catalog.=) ROW({})::pg_catalog.record",
        left.join(", "),
        right.join(", ")
    )
}

/// `WITH <the hoisted items> ` (empty when there are none).
pub(super) fn with_clause(ctx: &DiffContext) -> String {
    if ctx.cache.with_items.is_empty() {
        return String::new();
    }
    let items: Vec<String> = ctx
        .cache
        .with_items
        .iter()
        .map(|(name, body)| format!("{name} AS {body}"))
        .collect();
    format!("WITH {} ", items.join(", "))
}

/// Runs `f` with scan deltas read as the buffer's change rows, unconsolidated, when `raw` (see
/// `OptimizationContext::raw_scans`); consolidated again afterwards.
pub(super) fn with_raw_scans<T>(
    ctx: &mut DiffContext,
    raw: bool,
    f: impl FnOnce(&mut DiffContext) -> T,
) -> T {
    ctx.opt.raw_scans = raw;
    let out = f(ctx);
    ctx.opt.raw_scans = false;
    out
}

/// Whether `node` is its sources' rows filtered, projected and appended, nothing else: its delta is
/// then linear in the change rows, consolidated or not.
pub(super) fn reads_rows_directly(node: &Node) -> bool {
    match node {
        Node::Scan { .. } => true,
        Node::Filter { input, .. } | Node::Project { input, .. } => reads_rows_directly(input),
        Node::UnionAll { inputs } => inputs.iter().all(reads_rows_directly),
        _ => false,
    }
}

/// The whole query's delta, consolidated: one row per distinct output row with a non-zero weight.
/// None when no source under the query changed. `types`: the output columns' SQL types when known
/// (the storage's), which spares the rows' text where equal values print the same.
pub fn delta_query(
    tree: &OpTree,
    types: &[String],
    ctx: &mut DiffContext,
) -> PgtResult<Option<String>> {
    if let Some(staged) = &ctx.cdc.staged {
        // An external worker consolidated the batch's rows already (`dvm::offload`).
        return Ok(Some(format!("SELECT * FROM {staged}")));
    }
    if is_static_empty(tree, &tree.root, ctx) {
        return Ok(None);
    }
    ctx.opt.hoist_global_aggregates = true;
    // Filtered and projected rows are consolidated here, once, not also as they leave the buffer.
    let body = with_raw_scans(ctx, reads_rows_directly(&tree.root), |ctx| {
        delta_sql(tree, &tree.root, ctx)
    })?;
    let n = tree.root.arity();
    let (selected, keys) = identity_grouping(&cols("d", n), types);
    let with = with_clause(ctx);
    Ok(Some(format!(
        "{with}{} FROM ({body}) AS d{} HAVING pg_catalog.sum(d.{W}) <> 0",
        select(&with_weight(
            named(selected),
            &format!("pg_catalog.sum(d.{W})::bigint")
        )),
        group_by(&keys)
    )))
}
