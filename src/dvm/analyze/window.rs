//! Window functions over partitions: `row_number()`, `rank()`, `dense_rank()`, `percent_rank()`,
//! `cume_dist()`, `ntile(k)`, `lag`/`lead`, `first_value` and aggregates over a whole partition
//! (`sum(x) OVER (PARTITION BY p)`). The query is read as the grouped query that computes each
//! partition's rows in order, expanded again:
//!
//! ```sql
//! SELECT e.v1 AS x, e.n AS rn, e.s1 AS prev, w.g1 AS total
//!   FROM (SELECT array_agg(x ORDER BY o, ROW(..)::text) AS a1, array_agg(y ORDER BY ...) AS a2,
//!                sum(x) AS g1
//!           FROM ... WHERE ... GROUP BY p) AS w
//!  CROSS JOIN unnest(w.a1, <w.a2 shifted one place on>) WITH ORDINALITY AS e(v1, s1, n)
//! ```
//!
//! so it is maintained like DISTINCT ON (`distinct_on`): each partition a batch touches is computed
//! again from its rows, and its rows are replaced where they changed. `ROW(..)::text` orders rows the
//! window's ORDER BY leaves tied, so that every refresh numbers them alike (with the settings that
//! text depends on pinned); the stream table's FULL refreshes compute the same query
//! (`OpTree::full_from_tree`). A window over the whole result (no PARTITION BY) is refused: every
//! change would recompute all of it, in one array.
//!
//! The defining query's SELECT is rewritten so, and so is that of a subquery in FROM, a CTE or a
//! view (`Analyzer::subquery`): the first rows of each partition are a filter over the expansion.
//!
//! Ranks come from the rows' ORDER BY keys in that order, one record per row (`__pgt_k`):
//! `pgtrickle._window_ranks(keys, kind)` numbers them by their peers, the rows whose keys are equal
//! (NULLs equal to NULLs, as a window has them); `percent_rank`, `cume_dist` and `ntile` are that
//! number, or the row's, and the partition's size, by PostgreSQL's own arithmetic.

use sqlparser::ast::{
    Expr as SqlExpr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    OrderByExpr, Query, Select, SelectItem, SetExpr, Value, WindowSpec, WindowType,
};

use super::block::default_name;
use super::template::{function_name, ident_name, name_parts};
use super::{invalid, unsupported, AnalyzeError, Analyzer, Result};
use crate::dvm::window_ranks::Peers;

/// Rewrites `query` if its own SELECT computes window functions; whether it did.
pub(super) fn rewrite(query: &mut Query, analyzer: &Analyzer<'_>) -> Result<bool> {
    if !computes_windows(query) {
        return Ok(false);
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Ok(false);
    };
    if query.limit_clause.is_some() || query.fetch.is_some() {
        return unsupported("window functions with LIMIT or OFFSET");
    }
    let sql = restated(select, analyzer)?;
    // The query's WITH items stay in front of it: its FROM may read them.
    let with = query
        .with
        .as_ref()
        .map(|w| format!("{w} "))
        .unwrap_or_default();
    *query = super::parse(&format!("{with}{sql}"))?;
    Ok(true)
}

/// Whether `query`'s own SELECT computes window functions.
pub(super) fn computes_windows(query: &Query) -> bool {
    match query.body.as_ref() {
        SetExpr::Select(select) => select.projection.iter().any(is_window_item),
        _ => false,
    }
}

fn is_window_item(item: &SelectItem) -> bool {
    match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
            contains_window(e)
        }
        _ => false,
    }
}

/// PostgreSQL's window functions that are not aggregates.
const WINDOW_ONLY: [&str; 11] = [
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
];

/// What one select item becomes.
enum Item {
    /// The row's own value of an expression: element `i` of the expansion.
    Value(usize),
    /// `row_number()`: the expansion's ordinality.
    RowNumber,
    /// `rank()`, `dense_rank()`: element `i` of the expanded ranks (see `Peers`).
    Ranked(usize),
    /// `percent_rank()`: from ranks `i` (of the row's first peer) and the partition's size.
    PercentRank(usize),
    /// `cume_dist()`: from ranks `i` (of the row's last peer) and the partition's size.
    CumeDist(usize),
    /// `ntile(k)`: from the row's place and the partition's size.
    Ntile(i64),
    /// Element `i` of the expansion of a shifted array (`lag`, `lead`): see `shifted`.
    Shifted(usize),
    /// The partition's first element of array `i` (`first_value`).
    First(usize),
    /// Aggregate `i` of the partition.
    Aggregate(usize),
}

/// The index of `peers` among the ranks the query expands, added if new.
fn ranks_column(ranks: &mut Vec<Peers>, peers: Peers) -> usize {
    ranks.iter().position(|&p| p == peers).unwrap_or_else(|| {
        ranks.push(peers);
        ranks.len() - 1
    })
}

/// The grouped and expanded query that computes `select`'s window functions.
fn restated(select: &Select, analyzer: &Analyzer<'_>) -> Result<String> {
    if !select.named_window.is_empty() {
        return unsupported("a named window (WINDOW w AS ...)");
    }
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
        || select.having.is_some();
    if grouped || select.distinct.is_some() {
        return unsupported(
            "window functions over a grouped or DISTINCT query (compute them over it as a subquery: SELECT ..., rank() OVER (...) FROM (SELECT ... GROUP BY ...) s)",
        );
    }
    let mut partition: Option<Vec<SqlExpr>> = None;
    let mut order: Option<Vec<OrderByExpr>> = None;
    // The rows' own values (item expressions, window arguments), and the partitions' aggregates.
    let mut values: Vec<SqlExpr> = Vec::new();
    let mut aggregates: Vec<String> = Vec::new();
    // Arrays of `values` moved by an offset (`lag`, `lead`): value index, offset.
    let mut shifts: Vec<(usize, i64)> = Vec::new();
    // The ranks by peers the items read.
    let mut ranks: Vec<Peers> = Vec::new();
    let mut items: Vec<(Item, String)> = Vec::with_capacity(select.projection.len());
    for item in &select.projection {
        let (expr, name) = match item {
            SelectItem::UnnamedExpr(e) => (e, default_name(e)),
            SelectItem::ExprWithAlias { expr, alias } => (expr, ident_name(alias)),
            _ => return unsupported("window functions with * in the select list"),
        };
        let window = match expr {
            SqlExpr::Function(f) => f.over.as_ref().map(|over| (f, over)),
            _ => None,
        };
        let Some((f, over)) = window else {
            if contains_window(expr) {
                return unsupported(
                    "a window function inside an expression (make it a column of its own)",
                );
            }
            // Each value is collected by an aggregate, where subqueries are not read.
            if contains_subquery(expr) {
                return unsupported("window functions with a subquery in the select list");
            }
            if analyzer.item_has_aggregate(item) {
                return invalid("an aggregate outside a window in a query that is not grouped");
            }
            values.push(expr.clone());
            items.push((Item::Value(values.len() - 1), name));
            continue;
        };
        let spec = match over {
            WindowType::WindowSpec(spec) => spec,
            WindowType::NamedWindow(_) => return unsupported("a named window (OVER w)"),
        };
        // Read by their name below: only PostgreSQL's own (a user's `public.ntile` aggregate is not
        // ntile). The defining query names a function outside pg_catalog with its schema.
        let fname = match name_parts(&f.name)?.as_slice() {
            [name] => name.clone(),
            [schema, name] if schema == "pg_catalog" => name.clone(),
            _ => {
                return unsupported(format!(
                    "window function {}() (only PostgreSQL's own window functions and aggregates are maintained)",
                    function_name(f)
                ))
            }
        };
        if contains_subquery(expr) {
            return unsupported(format!(
                "a subquery in {fname}()'s arguments, PARTITION BY or ORDER BY"
            ));
        }
        same_partition(&mut partition, spec, &fname)?;
        // `rank` and its kin are also ordered-set aggregates by name: window functions first.
        let kind = if !WINDOW_ONLY.contains(&fname.as_str())
            && analyzer.catalog.is_aggregate(&function_name(f))
        {
            if !spec.order_by.is_empty() {
                return unsupported(format!(
                    "a running aggregate ({fname}() OVER (... ORDER BY ...)): only aggregates over a whole partition are maintained"
                ));
            }
            if super::aggregate::ORDER_DEPENDENT.contains(&fname.as_str()) {
                return unsupported(format!(
                    "{fname}() over a partition (its result depends on the order rows are read in, which a window aggregate cannot fix)"
                ));
            }
            let mut call = f.clone();
            call.over = None;
            aggregates.push(SqlExpr::Function(call).to_string());
            Item::Aggregate(aggregates.len() - 1)
        } else {
            same_order(&mut order, spec)?;
            let args = plain_args(f)?;
            match (fname.as_str(), args.as_slice()) {
                ("row_number", []) => Item::RowNumber,
                ("lag" | "lead", [x, rest @ ..]) => {
                    let by = match rest {
                        [] => 1,
                        [k] => offset(k, &fname)?,
                        _ => return unsupported(format!("{fname}() with a default value")),
                    };
                    values.push(x.clone());
                    shifts.push((values.len() - 1, if fname == "lag" { -by } else { by }));
                    Item::Shifted(shifts.len() - 1)
                }
                ("first_value", [x]) => {
                    values.push(x.clone());
                    Item::First(values.len() - 1)
                }
                ("rank" | "dense_rank" | "percent_rank" | "cume_dist", []) => {
                    if !analyzer.catalog.has_window_ranks() {
                        return unsupported(format!(
                            "{fname}() with a pg_trickle catalog that lacks pgtrickle._window_ranks (ALTER EXTENSION pg_trickle UPDATE adds it to a 0.1.0 catalog; a 0.2.0 catalog made before it needs the extension created again)"
                        ));
                    }
                    match fname.as_str() {
                        "rank" => Item::Ranked(ranks_column(&mut ranks, Peers::First)),
                        "dense_rank" => Item::Ranked(ranks_column(&mut ranks, Peers::Sets)),
                        "percent_rank" => {
                            Item::PercentRank(ranks_column(&mut ranks, Peers::First))
                        }
                        _ => Item::CumeDist(ranks_column(&mut ranks, Peers::Last)),
                    }
                }
                ("ntile", [k]) => Item::Ntile(
                    integer_constant(k)
                        .filter(|k| (1..=i64::from(i32::MAX)).contains(k))
                        .ok_or_else(|| {
                            AnalyzeError::Unsupported(
                                "ntile() with an argument that is not a positive integer constant"
                                    .to_string(),
                            )
                        })?,
                ),
                _ => {
                    return unsupported(format!(
                        "window function {fname}() (row_number, rank, dense_rank, percent_rank, cume_dist, ntile, lag, lead, first_value and aggregates over a whole partition are supported)"
                    ))
                }
            }
        };
        items.push((kind, name));
    }
    let partition = partition.unwrap_or_default();
    let order = order.unwrap_or_default();
    // Without ORDER BY every row of a partition is a peer of every other.
    let order_keys: Vec<String> = order.iter().map(|o| o.expr.to_string()).collect();
    let order_keys = if order_keys.is_empty() {
        "true".to_string()
    } else {
        order_keys.join(", ")
    };
    let order: Vec<String> = order.iter().map(ToString::to_string).collect();
    // Rows equal in the window's order and in every value they show are the same row as far as the
    // result can tell; the text settles the order of any others.
    let all: Vec<String> = values.iter().map(ToString::to_string).collect();
    let by = [order, vec![format!("ROW({})::text", all.join(", "))]]
        .concat()
        .join(", ");
    let mut arrays: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("pg_catalog.array_agg({v} ORDER BY {by}) AS __pgt_a{i}"))
        .collect();
    if arrays.is_empty() {
        // One element per row, to expand into as many rows.
        arrays.push(format!(
            "pg_catalog.array_agg(true ORDER BY {by}) AS __pgt_a0"
        ));
    }
    if !ranks.is_empty() {
        arrays.push(format!(
            "pg_catalog.array_agg(ROW({order_keys}) ORDER BY {by}) AS __pgt_k"
        ));
    }
    let inner_items: Vec<String> = arrays
        .iter()
        .cloned()
        .chain(
            aggregates
                .iter()
                .enumerate()
                .map(|(i, a)| format!("{a} AS __pgt_g{i}")),
        )
        .collect();
    let from: Vec<String> = select.from.iter().map(ToString::to_string).collect();
    if from.is_empty() {
        return unsupported("window functions without a FROM clause");
    }
    let filter = select
        .selection
        .as_ref()
        .map(|w| format!(" WHERE {w}"))
        .unwrap_or_default();
    let keys: Vec<String> = partition.iter().map(ToString::to_string).collect();
    // The keys are read by the ranks only, not expanded themselves.
    let expanded = arrays.len() - usize::from(!ranks.is_empty());
    let unnested: Vec<String> = (0..expanded)
        .map(|i| format!("__pgt_w.__pgt_a{i}"))
        .chain(
            shifts
                .iter()
                .map(|&(i, by)| shifted(&format!("__pgt_w.__pgt_a{i}"), by)),
        )
        .chain(
            ranks
                .iter()
                .map(|p| format!("pgtrickle._window_ranks(__pgt_w.__pgt_k, '{}')", p.code())),
        )
        .collect();
    let columns: Vec<String> = (0..expanded)
        .map(|i| format!("__pgt_v{i}"))
        .chain((0..shifts.len()).map(|i| format!("__pgt_s{i}")))
        .chain((0..ranks.len()).map(|i| format!("__pgt_r{i}")))
        .collect();
    // The partition's row count: every array has an element per row.
    let size = "pg_catalog.cardinality(__pgt_w.__pgt_a0)";
    let place = "__pgt_e.__pgt_n";
    let outer: Vec<String> = items
        .iter()
        .map(|(item, name)| {
            let expr = match item {
                Item::Value(i) => format!("__pgt_e.__pgt_v{i}"),
                Item::RowNumber => "__pgt_e.__pgt_n".to_string(),
                Item::Shifted(i) => format!("__pgt_e.__pgt_s{i}"),
                Item::First(i) => format!("__pgt_w.__pgt_a{i}[1]"),
                Item::Aggregate(i) => format!("__pgt_w.__pgt_g{i}"),
                Item::Ranked(i) => format!("__pgt_e.__pgt_r{i}"),
                // window_percent_rank: 0 for a partition of one row.
                Item::PercentRank(i) => format!(
                    "(CASE WHEN {size} > 1 THEN (__pgt_e.__pgt_r{i} - 1)::float8 / ({size} - 1)::float8 ELSE 0::float8 END)"
                ),
                Item::CumeDist(i) => {
                    format!("(__pgt_e.__pgt_r{i}::float8 / {size}::float8)")
                }
                Item::Ntile(k) => ntile(place, size, *k),
            };
            format!("{expr} AS {}", quoted(name))
        })
        .collect();
    Ok(format!(
        "SELECT {} FROM (SELECT {} FROM {}{filter} GROUP BY {}) AS __pgt_w \
         CROSS JOIN unnest({}) WITH ORDINALITY AS __pgt_e({}, __pgt_n)",
        outer.join(", "),
        inner_items.join(", "),
        from.join(", "),
        keys.join(", "),
        unnested.join(", "),
        columns.join(", "),
    ))
}

/// `array` moved by `by` places, as long as it: `lead(x, k)` is the array without its first `k`
/// elements (the expansion pads it with NULLs), `lag(x, k)` the array after `k` NULLs of its element
/// type (`array[0]`), cut to its length. Expanded alongside the others, each element is read once:
/// a subscript per row would walk a text array from its start, quadratic in the partition.
fn shifted(array: &str, by: i64) -> String {
    let by = by.clamp(-i64::from(i32::MAX - 1), i64::from(i32::MAX - 1));
    if by >= 0 {
        format!("{array}[{}:]", by + 1)
    } else {
        format!(
            "(pg_catalog.array_cat(pg_catalog.array_fill({array}[0], ARRAY[LEAST({}, pg_catalog.cardinality({array}))]), {array}))[1:pg_catalog.cardinality({array})]",
            -by
        )
    }
}

/// Every window of the query partitions alike, and by something.
fn same_partition(seen: &mut Option<Vec<SqlExpr>>, spec: &WindowSpec, fname: &str) -> Result<()> {
    if spec.window_frame.is_some() {
        return unsupported(format!(
            "a window frame clause ({fname}() OVER (... ROWS/RANGE ...))"
        ));
    }
    if spec.partition_by.is_empty() || spec.partition_by.iter().all(is_constant) {
        return unsupported(format!(
            "a window function over the whole result ({fname}() OVER () or without PARTITION BY: every change would recompute all of it; use FULL)"
        ));
    }
    match seen {
        None => *seen = Some(spec.partition_by.clone()),
        Some(p) if *p == spec.partition_by => {}
        Some(_) => return unsupported("windows with different PARTITION BY in one query"),
    }
    Ok(())
}

/// The window functions that number rows share one order.
fn same_order(seen: &mut Option<Vec<OrderByExpr>>, spec: &WindowSpec) -> Result<()> {
    match seen {
        None => *seen = Some(spec.order_by.clone()),
        Some(o) if *o == spec.order_by => {}
        Some(_) => return unsupported("windows with different ORDER BY in one query"),
    }
    Ok(())
}

/// Whether `expr` (at any depth) satisfies `test`.
fn has(expr: &SqlExpr, test: impl Fn(&SqlExpr) -> bool) -> bool {
    sqlparser::ast::visit_expressions(expr, |e| {
        if test(e) {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// Whether `expr` reads no column (`PARTITION BY 1`: one partition).
fn is_constant(expr: &SqlExpr) -> bool {
    !has(expr, |e| {
        matches!(e, SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_))
    })
}

fn contains_subquery(expr: &SqlExpr) -> bool {
    has(expr, |e| {
        matches!(
            e,
            SqlExpr::Subquery(_) | SqlExpr::Exists { .. } | SqlExpr::InSubquery { .. }
        )
    })
}

/// Whether `expr` calls a window function of its own query block: one inside a subquery is that
/// subquery's (`Analyzer::subquery` reads it).
fn contains_window(expr: &SqlExpr) -> bool {
    super::scalar::has_own(
        expr,
        |e| matches!(e, SqlExpr::Function(f) if f.over.is_some()),
    )
}

/// A window function's arguments, when they are plain expressions.
fn plain_args(f: &Function) -> Result<Vec<SqlExpr>> {
    if f.filter.is_some() || f.null_treatment.is_some() || !f.within_group.is_empty() {
        return unsupported(format!("{}() with FILTER or options", function_name(f)));
    }
    match &f.args {
        FunctionArguments::None => Ok(vec![]),
        FunctionArguments::Subquery(_) => unsupported("a subquery as a window function's argument"),
        FunctionArguments::List(list) => {
            if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                return unsupported(format!("{}() with DISTINCT or options", function_name(f)));
            }
            list.args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e.clone()),
                    _ => unsupported(format!("{}() with named or * arguments", function_name(f))),
                })
                .collect()
        }
    }
}

/// `ntile(k)` of the row at `place` (from 1) of a partition of `size` rows, as window_ntile deals
/// them: `size / k` rows a bucket, and one more in each of the first `size % k` buckets (each row a
/// bucket of its own when there are fewer rows than buckets, which the first case covers).
fn ntile(place: &str, size: &str, k: i64) -> String {
    let (small, extra) = (format!("({size} / {k})"), format!("({size} % {k})"));
    let first = format!("{extra} * ({small} + 1)");
    format!(
        "(CASE WHEN {place} <= {first} THEN ({place} - 1) / ({small} + 1) + 1 \
         ELSE {extra} + ({place} - 1 - {first}) / {small} + 1 END)::integer"
    )
}

/// An integer constant, possibly cast to an integer type: `2`, `2::bigint` (not `7::boolean::int`,
/// which is 1).
fn integer_constant(k: &SqlExpr) -> Option<i64> {
    let mut k = super::template::strip_nested(k);
    while let SqlExpr::Cast {
        expr, data_type, ..
    } = k
    {
        let target = data_type.to_string().to_lowercase();
        if !matches!(
            target.as_str(),
            "int" | "integer" | "bigint" | "smallint" | "int2" | "int4" | "int8"
        ) {
            return None;
        }
        k = super::template::strip_nested(expr);
    }
    match k {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse::<i64>().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// `lag(x, k)`'s `k`: a non-negative integer constant.
fn offset(k: &SqlExpr, fname: &str) -> Result<i64> {
    integer_constant(k).filter(|n| *n >= 0).ok_or_else(|| {
        AnalyzeError::Unsupported(format!(
            "{fname}() with an offset that is not a non-negative integer constant"
        ))
    })
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
