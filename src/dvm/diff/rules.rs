//! Delta rules, one per operator. Every relation here is SQL whose columns are `c0..cN`; a delta also
//! has `__pgt_w bigint`, the row's signed multiplicity (a Z-set, not necessarily consolidated).
//!
//! Notation in comments: X is a node's current ("new") result, ΔX its delta, X_old = X ⊎ −ΔX.

use super::context::DiffContext;
use super::joins::{
    exists_in_any, inner_join_delta, key_equalities, meets_each_change_row_once, outer_join_delta,
    semi_join_delta,
};
use super::sharing::{known_whole_result, shared_delta, whole_input};
use crate::dvm::apply::identified_by_text;
use crate::dvm::optree::{Expr, ExprPart, JoinKind, Node, OpTree};
use crate::dvm::scale;
use crate::dvm::sql::quote_ident;
use crate::error::{PgtError, PgtResult};

pub const W: &str = "__pgt_w";

/// `a.c0, a.c1, ...`
pub(super) fn cols(alias: &str, n: usize) -> Vec<String> {
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
pub(super) fn identity_grouping(values: &[String], types: &[String]) -> (Vec<String>, Vec<String>) {
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
pub(super) fn known_types(tree: &OpTree, node: &Node) -> Vec<String> {
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
        // A table function's column types are PostgreSQL's to know.
        Node::Aggregate { .. }
        | Node::Distinct { .. }
        | Node::UnionAll { .. }
        | Node::Expand { .. } => Vec::new(),
        Node::Unit => Vec::new(),
    }
}

/// Whether equal values of type `t` (as `format_type` prints it) always print the same: integers,
/// `numeric` with a scale, dates and times without a zone offset of their own, ... Not so for `numeric`
/// without a scale (`1.5` = `1.50`), `interval` (`1 day` = `24 hours`), floats (`0` = `-0`), `time
/// with time zone`, text under a nondeterministic collation (see [`is_text`]), and types the engine
/// does not know.
pub(crate) fn equal_values_print_equal(t: &str) -> bool {
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

/// Equal values of `t` print the same under the default collation: [`equal_values_print_equal`], or
/// text (the engine keeps MIN/MAX and group keys of text only under the default collation).
pub(super) fn prints_as_it_compares(t: &str) -> bool {
    equal_values_print_equal(t) || is_text(t)
}

/// Whether equal values of `expr` (over `input`), of SQL type `t`, may print differently: its type
/// does not print as it compares, and it is not a `numeric` whose every value has the same number of
/// decimals (`EXTRACT(year FROM d)`, `round(x, 2)`, a sum of `numeric(15,2)`).
pub(crate) fn may_print_apart(tree: &OpTree, input: &Node, t: &str, expr: &Expr) -> bool {
    let t = t.split(" COLLATE ").next().unwrap_or(t);
    !(prints_as_it_compares(t)
        || (t == "numeric"
            && scale::expr_scale(expr, &|i| scale::column_scale(tree, input, i)).is_some()))
}

/// Whether `t` is one of the types known to have equal values that print differently: `numeric`
/// (`1.5` = `1.50`), floats (`0` = `-0`), `interval` (`1 day` = `24 hours`), `time with time zone`,
/// `citext` (`'A'` = `'a'`), `jsonb` (`1.0` = `1.00` inside), and arrays and ranges of them. Types
/// the engine does not know at all are not among them (see [`may_print_apart`] for the cautious
/// test).
pub(crate) fn known_to_print_apart(t: &str) -> bool {
    let t = t.split(" COLLATE ").next().unwrap_or(t);
    if let Some(element) = t.strip_suffix("[]") {
        return known_to_print_apart(element);
    }
    t.starts_with("numeric")
        || t.starts_with("interval")
        || matches!(t, "real" | "double precision" | "jsonb" | "numrange")
        || (t.starts_with("time") && t.ends_with("with time zone") && !t.starts_with("timestamp"))
        || t == "citext"
        || t.ends_with(".citext")
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
pub(super) fn render_pair(e: &Expr, l: &str, left_arity: usize, r: &str) -> String {
    e.render(&|i| {
        if i < left_arity {
            format!("{l}.c{i}")
        } else {
            format!("{r}.c{}", i - left_arity)
        }
    })
}

pub(super) fn cte<'t>(tree: &'t OpTree, id: usize) -> PgtResult<&'t Node> {
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
            filtered(predicate, &a, &inner)
        }
        Node::Project { input, exprs } => {
            let a = ctx.alias("p");
            let inner = new_sql(tree, input, ctx)?;
            projection(exprs, &a, &inner)
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
        Node::Expand { .. } => expansion(tree, node, ctx, Rows::Current)?,
        Node::Unit => "SELECT".to_string(),
    };
    ctx.opt.depth -= 1;
    Ok(sql)
}

/// Which rows of an input a rule reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rows {
    Current,
    Delta,
}

/// The rows of a [`Node::Expand`] over its input's current rows, or over its delta's (each
/// expanded row keeping its input row's weight). The input is FROM item `e`, the function's rows
/// `x(x0, ..)`.
fn expansion(tree: &OpTree, node: &Node, ctx: &mut DiffContext, rows: Rows) -> PgtResult<String> {
    let Node::Expand {
        input,
        call,
        columns,
        left_join,
    } = node
    else {
        return Err(PgtError::internal("an expansion of something else"));
    };
    let (a, f) = (ctx.alias("e"), ctx.alias("x"));
    let inner = match rows {
        Rows::Current => new_sql(tree, input, ctx)?,
        Rows::Delta => delta_sql(tree, input, ctx)?,
    };
    let la = input.arity();
    let column = |i: usize| {
        if i < la {
            format!("{a}.c{i}")
        } else {
            format!("{f}.x{}", i - la)
        }
    };
    let mut items = named((0..la + columns).map(column).collect());
    if rows == Rows::Delta {
        items = with_weight(items, &format!("{a}.{W}"));
    }
    let names: Vec<String> = (0..*columns).map(|i| format!("x{i}")).collect();
    let call = call.render(&|i| format!("{a}.c{i}"));
    let join = match left_join {
        None => format!("CROSS JOIN LATERAL {call} AS {f}({})", names.join(", ")),
        Some(on) => format!(
            "LEFT JOIN LATERAL {call} AS {f}({}) ON {}",
            names.join(", "),
            on.render(&column)
        ),
    };
    Ok(format!("{} FROM ({inner}) AS {a} {join}", select(&items)))
}

/// `exprs` over the delta rows of `inner` (aliased `a`), each row keeping its weight.
/// Rows of `inner` (as FROM item `a`) for which `predicate` holds; weights, if any, pass through.
pub(super) fn filtered(predicate: &Expr, a: &str, inner: &str) -> String {
    format!(
        "SELECT * FROM ({inner}) AS {a} WHERE {}",
        predicate.render(&|i| format!("{a}.c{i}"))
    )
}

/// `exprs` over the rows of `inner` (as FROM item `a`), named `c0..`.
pub(super) fn projection(exprs: &[Expr], a: &str, inner: &str) -> String {
    format!(
        "{} FROM ({inner}) AS {a}",
        select(&named(render_over(exprs, a)))
    )
}

pub(super) fn weighted_projection(exprs: &[Expr], a: &str, inner: &str) -> String {
    let items = with_weight(named(render_over(exprs, a)), &format!("{a}.{W}"));
    format!("{} FROM ({inner}) AS {a}", select(&items))
}

/// Each of `es` over the columns of FROM item `a`.
pub(super) fn render_over(es: &[Expr], a: &str) -> Vec<String> {
    es.iter()
        .map(|e| e.render(&|i| format!("{a}.c{i}")))
        .collect()
}

pub(super) fn descend(ctx: &mut DiffContext) -> PgtResult<()> {
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
            let (source, batch) = (
                buffer.buffer.quoted(),
                ctx.cdc.batch_predicate("b", buffer.counted),
            );
            if ctx.opt.raw_scans {
                // The buffer's `smallint` weight as it is: its consumers only sum it (`sum(int2)`
                // adds in a plain bigint, `sum(int8)` in a 128-bit state it then turns into numeric:
                // 3 ms of 14 in aggregating 15,000 change rows into 6,800 groups).
                format!(
                    "{} FROM {source} AS b WHERE {batch}",
                    select(&with_weight(named(values), &format!("b.{W}")))
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
            filtered(predicate, &a, &inner)
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
            // A pruned input keeps its place as a typed empty branch: it takes part in resolving the
            // union's column types as in the query (the first input's `text` over a later
            // `varchar`), or a batch that changed only the `varchar` side has that type, and
            // comparing it with the current, `text` rows fails.
            let mut parts = Vec::new();
            let mut changed = false;
            for input in inputs {
                if is_static_empty(tree, input, ctx) {
                    let e = ctx.alias("e");
                    parts.push(format!(
                        "SELECT {e}.*, 0::bigint AS {W} FROM ({}) AS {e} WHERE false",
                        new_sql(tree, input, ctx)?
                    ));
                } else {
                    parts.push(delta_sql(tree, input, ctx)?);
                    changed = true;
                }
            }
            if !changed {
                return Err(PgtError::internal(
                    "the delta of a UNION ALL none of whose inputs changed",
                ));
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
        // Each changed row expands as it did or does in the current state: weights pass through.
        Node::Expand { .. } => expansion(tree, node, ctx, Rows::Delta)?,
        // Never changes (and is statically empty, so no rule asks).
        Node::Unit => format!("SELECT 0::bigint AS {W} WHERE false"),
    };
    ctx.opt.depth -= 1;
    Ok(sql)
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
pub(super) fn aggregate_delta_of(
    tree: &OpTree,
    input: &Node,
    keys: &[Expr],
    key_eq: &[String],
    aggs: &[Expr],
    matching: Option<(&[String], &[(usize, usize)])>,
    ctx: &mut DiffContext,
) -> PgtResult<String> {
    let n = input.arity();
    let touched = touched_groups(tree, input, keys, key_eq, matching, ctx)?;
    let (dinput, restricted_name) = (touched.dinput.clone(), touched.rows.clone());
    let aggregate = |ctx: &mut DiffContext, rows: String, weight: &str| -> String {
        aggregate_rows(keys, aggs, &rows, weight, &dinput, ctx)
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

/// What a batch touches of an aggregate over `input`, hoisted as WITH items: the input's delta, the
/// groups it touches (`k0..`; none for a global aggregate, touched by any change) and the current
/// input rows of exactly those groups.
pub(super) struct TouchedGroups {
    pub dinput: String,
    pub groups: Option<String>,
    pub rows: String,
}

/// [`TouchedGroups`] of the aggregate of `input` by `keys`; `matching` as for [`aggregate_delta_of`].
pub(super) fn touched_groups(
    tree: &OpTree,
    input: &Node,
    keys: &[Expr],
    key_eq: &[String],
    matching: Option<(&[String], &[(usize, usize)])>,
    ctx: &mut DiffContext,
) -> PgtResult<TouchedGroups> {
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
    let (groups, restricted) = if keys.is_empty() {
        // One global group: it is touched whenever the input changed at all.
        let a = ctx.alias("a");
        let rows = format!(
            "SELECT {a}.* FROM ({}) AS {a} WHERE EXISTS (SELECT 1 FROM {dinput})",
            whole_input(tree, input, ctx)?
        );
        (None, rows)
    } else {
        let d = ctx.alias("d");
        let items: Vec<String> = render_over(keys, &d)
            .into_iter()
            .enumerate()
            .map(|(i, e)| format!("{e} AS k{i}"))
            .collect();
        let groups = hoist(
            ctx,
            "touched_",
            format!("SELECT DISTINCT {} FROM {dinput} AS {d}", items.join(", ")),
        );
        let rows = rows_of_groups(tree, input, keys, key_eq, &groups, ctx)?;
        (Some(groups), rows)
    };
    let rows = hoist(ctx, "grp_", restricted);
    Ok(TouchedGroups {
        dinput,
        groups,
        rows,
    })
}

/// `keys` and `aggs` per group of `rows` (a relation of the aggregate's input columns), each
/// result row weighted `weight`. A global aggregate returns a row even for no input: it is emitted
/// only when the batch touched it (`dinput` has rows).
pub(super) fn aggregate_rows(
    keys: &[Expr],
    aggs: &[Expr],
    rows: &str,
    weight: &str,
    dinput: &str,
    ctx: &mut DiffContext,
) -> String {
    let a = ctx.alias("a");
    let (k, g) = (render_over(keys, &a), render_over(aggs, &a));
    let body = format!(
        "{} FROM ({rows}) AS {a}{}",
        select(&with_weight(named([k.clone(), g].concat()), weight)),
        group_by(&k)
    );
    if keys.is_empty() {
        let s = ctx.alias("s");
        format!("SELECT * FROM ({body}) AS {s} WHERE EXISTS (SELECT 1 FROM {dinput})")
    } else {
        body
    }
}

/// The current rows of `input` whose group keys (`keys` over the input) are among the rows of
/// `groups`, a relation with columns `k0..`. Keys without NULLs: a semi-join on the keys' own
/// equality (`key_eq`, resolved when the stream table was created; record equality without it),
/// or, for one key that leads an index, `key = ANY` of the groups' keys (see [`GroupsLookup`]).
/// Keys with NULLs (a group of their own in GROUP BY, but never equal under =): matched
/// null-safely, and only scanned when such a key is among `groups` at all.
pub(super) fn rows_of_groups(
    tree: &OpTree,
    input: &Node,
    keys: &[Expr],
    key_eq: &[String],
    groups: &str,
    ctx: &mut DiffContext,
) -> PgtResult<String> {
    let lookup = if indexed_key(input, keys, key_eq, ctx) {
        GroupsLookup::AnyOfArray
    } else {
        GroupsLookup::SemiJoin
    };
    rows_in_groups(
        &|a| render_over(keys, a),
        key_eq,
        groups,
        lookup,
        ctx,
        &mut |ctx| new_sql(tree, input, ctx),
    )
}

/// Whether the groups are keyed by one source column that leads a B-tree index serving its `=`
/// (`GroupIndexes::bitmap_keys`).
fn indexed_key(input: &Node, keys: &[Expr], key_eq: &[String], ctx: &DiffContext) -> bool {
    let ([key], [_]) = (keys, key_eq) else {
        return false;
    };
    let [ExprPart::Col(n)] = key.parts.as_slice() else {
        return false;
    };
    crate::dvm::index_advice::scanned(input, *n).is_some_and(|(table, column)| {
        ctx.cache
            .group_indexes
            .bitmap_keys
            .contains(&(table.relid, column.clone()))
    })
}

/// How [`rows_in_groups`] finds the rows of the touched groups whose keys have no NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GroupsLookup {
    /// `EXISTS (SELECT 1 FROM groups WHERE key = k0 ...)`: any number of keys, with or without an index.
    SemiJoin,
    /// `key = ANY (ARRAY(SELECT k0 FROM groups))`: one key leading a B-tree index, looked up in one
    /// bitmap scan.
    AnyOfArray,
}

/// The rows of a relation (`relation`, asked for twice) whose group keys (`key_of` a FROM item of it)
/// are among the rows of `groups`, as [`rows_of_groups`] describes.
pub(super) fn rows_in_groups(
    key_of: &dyn Fn(&str) -> Vec<String>,
    key_eq: &[String],
    groups: &str,
    lookup: GroupsLookup,
    ctx: &mut DiffContext,
    relation: &mut dyn FnMut(&mut DiffContext) -> PgtResult<String>,
) -> PgtResult<String> {
    let (a, b) = (ctx.alias("a"), ctx.alias("a"));
    let (ka, kb) = (key_of(&a), key_of(&b));
    let k: Vec<String> = (0..ka.len()).map(|i| format!("k{i}")).collect();
    let any_null = k
        .iter()
        .map(|k| format!("{k} IS NULL"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let kb_any_null = any_is_null(&kb);
    let t = ctx.alias("t");
    let tk: Vec<String> = k.iter().map(|k| format!("{t}.{k}")).collect();
    let same = if key_eq.len() == kb.len() {
        // Each key by its own equality, NULL equal to NULL: a record comparison needs both sides'
        // types alike, and the touched keys may come from one branch of a UNION ALL (an integer)
        // while the relation has the union's type (a bigint).
        each_key(&tk, &kb, key_eq, |t, e, op| {
            format!("({t} {op} ({e}) OR ({t} IS NULL AND ({e}) IS NULL))")
        })
    } else {
        same_keys(&tk, &kb)
    };
    let g = ctx.alias("g");
    let gk: Vec<String> = k.iter().map(|k| format!("{g}.{k}")).collect();
    let on = if key_eq.len() == ka.len() {
        each_key(&ka, &gk, key_eq, |e, k, op| format!("({e}) {op} {k}"))
    } else {
        // No resolved operators (DISTINCT, trees from before 0.2.0): record equality, exact under
        // any search_path but not index-driven; it calls NULL equal, so NULL keys are left to the
        // null-safe branch below.
        let non_null: Vec<String> = gk.iter().map(|k| format!("{k} IS NOT NULL")).collect();
        format!("{} AND {}", non_null.join(" AND "), same_keys(&ka, &gk))
    };
    // The two branches must not both take a row. A composite key whose fields are all NULL `IS
    // NULL`, and yet its type's `=` calls it equal to another such value: it goes to the null-safe
    // branch only.
    let ka_any_null = any_is_null(&ka);
    let member = match (lookup, ka.as_slice(), key_eq) {
        (GroupsLookup::AnyOfArray, [key], [op]) => format!(
            "NOT ({ka_any_null}) AND ({key}) {op} ANY (ARRAY(SELECT {g}.k0 FROM {groups} AS {g}))"
        ),
        _ => format!("NOT ({ka_any_null}) AND EXISTS (SELECT 1 FROM {groups} AS {g} WHERE {on})"),
    };
    let (ia, ib) = (relation(ctx)?, relation(ctx)?);
    Ok(format!(
        "SELECT {a}.* FROM ({ia}) AS {a} WHERE {member} \
         UNION ALL \
         SELECT {b}.* FROM ({ib}) AS {b} WHERE ({kb_any_null}) \
           AND EXISTS (SELECT 1 FROM {groups} AS {t} WHERE {same}) \
           AND EXISTS (SELECT 1 FROM {groups} WHERE {any_null})"
    ))
}

/// `(e1) IS NULL OR (e2) IS NULL ...`.
fn any_is_null(exprs: &[String]) -> String {
    exprs
        .iter()
        .map(|e| format!("({e}) IS NULL"))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// One comparison per group key, `compare(left, right, its equality)`, all of them holding.
fn each_key(
    left: &[String],
    right: &[String],
    key_eq: &[String],
    compare: impl Fn(&str, &str, &str) -> String,
) -> String {
    left.iter()
        .zip(right)
        .zip(key_eq)
        .map(|((l, r), op)| compare(l, r, op))
        .collect::<Vec<_>>()
        .join(" AND ")
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

/// Whether `node`'s delta may be computed from its sources' change rows as they are (for a consumer
/// that is linear in them, see `OptimizationContext::raw_scans`) at no extra cost: rows read
/// directly, and inner joins of such rows that meet each change row with at most one partner row
/// in a hash join ([`meets_each_change_row_once`]). Any other join reads the consolidated batch.
pub(super) fn reads_change_rows_raw(tree: &OpTree, node: &Node, ctx: &DiffContext) -> bool {
    let raw = |n: &Node| reads_change_rows_raw(tree, n, ctx);
    match node {
        Node::Filter { input, .. } | Node::Project { input, .. } => raw(input),
        Node::UnionAll { inputs } => inputs.iter().all(|i| raw(i)),
        Node::Join {
            kind: JoinKind::Inner,
            left,
            right,
            on,
            ..
        } => {
            raw(left)
                && raw(right)
                && meets_each_change_row_once(tree, left, right, on.as_ref(), ctx)
        }
        other => reads_rows_directly(other),
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
    let raw = reads_change_rows_raw(tree, &tree.root, ctx);
    let body = with_raw_scans(ctx, raw, |ctx| delta_sql(tree, &tree.root, ctx))?;
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
