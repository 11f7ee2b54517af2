//! Aggregates maintained from their own stored state.
//!
//! When a stream table's query is `SELECT <exprs over keys and aggregates> FROM ... GROUP BY keys`
//! (no HAVING, no DISTINCT on top) and every aggregate is COUNT, SUM or AVG over integers or
//! fixed-scale numerics, or MIN/MAX over a type with a default btree order, its storage table keeps,
//! per group, hidden state next to the visible columns:
//!
//! | column | content |
//! |---|---|
//! | `__pgt_k{i}` | group key i, when the SELECT list does not show it as a plain column |
//! | `__pgt_count` | the group's input row count (the group disappears at 0) |
//! | `__pgt_a{j}` | aggregate j: its count, its sum, or its extremum |
//! | `__pgt_n{j}` | SUM/AVG j: the count of non-NULL inputs (a sum of no values is NULL, not 0); MIN/MAX j: how many inputs equal the extremum (NULL: not known yet) |
//!
//! and the row identity is the hash of the group keys. A batch then costs the changed rows and the
//! touched groups' stored rows: per group, new state = old state + Δ, where Δ aggregates the
//! changed input rows with their signed weights. MIN/MAX take the least/greatest of the old extremum
//! and the inserted values and count the copies of the extremum; only a group that lost every copy of
//! its extremum (or whose count is not known yet: a FULL refresh leaves it unknown rather than read
//! its input twice) is recomputed from its current input rows, and so is a numeric group whose sum
//! is or becomes NaN.
//! Results are exact: integer and numeric arithmetic are exact, a fixed-scale numeric's sum keeps that
//! scale, and AVG is the same `numeric_div(sum, count)` PostgreSQL computes. A sum of `numeric` without
//! a fixed scale (`sum(price * (1 - discount))`) shows as many decimals as its most precise input, and
//! numeric addition keeps the larger of two scales: so the stored sum's scale is right until the last
//! input with the largest scale leaves. It keeps, as one more hidden aggregate, MAX(scale(x)) with the
//! copies of it (an extremum, maintained as MIN/MAX are): a group that loses its last one is
//! recomputed. A sum that is or becomes NaN or infinite is recomputed too. Float sums are not
//! maintained this way (PostgreSQL's own result depends on summation order, and a carried sum would
//! drift from every order's): they recompute groups, their old rows read back (`stored_groups`).

use super::context::{DiffContext, GroupLookup};
use super::extrema::{extremum_state, same, ExtremumCopies};
use super::extremum_probes::{extremum_columns, extremum_probes, ExtremumColumns};
use super::rules::{
    hoist, hoisted_delta, new_sql, prints_as_it_compares, reads_change_rows_raw, rows_of_groups,
    same_keys, with_raw_scans, W,
};
use crate::dvm::apply::{hash_values, identical, Payload, KEEP, OLD_ROW};
use crate::dvm::explain::describe_expr;
use crate::dvm::optree::{AggCall, AggFunc, Expr, ExprPart, Node, OpTree};

use crate::dvm::sql::{quote_ident, QualifiedName};
use crate::error::{PgtError, PgtResult};

const COUNT: &str = "__pgt_count";

/// A stream table whose aggregates live on stored state, and where each piece of it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateState<'t> {
    input: &'t Node,
    keys: &'t [Expr],
    /// The query's aggregate calls, then hidden ones: MAX(scale(x)) per SUM/AVG over `numeric` without a
    /// fixed scale (see the module comment).
    calls: Vec<AggCall>,
    key_types: &'t [String],
    key_eq: &'t [String],
    /// The SELECT list over the Aggregate's output (keys, then aggregate values).
    exprs: &'t [Expr],
    /// Per key: the visible column that shows it, if any (else it is stored hidden).
    key_visible: Vec<Option<usize>>,
    /// How many of `calls` are the query's own (the rest are hidden scale extrema).
    query_calls: usize,
    /// The types of the group keys whose equal values may print differently (see
    /// [`AggregateState::keys_print_alike`]).
    keys_printing_apart: Vec<String>,
}

/// The type SUM returns for an argument type, when the engine maintains it algebraically.
pub(crate) fn sum_type(arg_type: &str) -> Option<&'static str> {
    match arg_type {
        "smallint" | "integer" => Some("bigint"),
        "bigint" => Some("numeric"),
        // A fixed scale (numeric(p) has scale 0): every value has exactly that many decimals, and so
        // does every sum.
        t if t.starts_with("numeric(") => Some("numeric"),
        // Any scale: the sum shows the largest, kept next to it (`tracks_scale`).
        "numeric" => Some("numeric"),
        _ => None,
    }
}

/// A SUM/AVG whose sum is a `numeric`: it may be NaN or infinite, which does not subtract out, and
/// the group is then recomputed.
fn sums_as_numeric(call: &AggCall) -> bool {
    sum_type(&call.arg_type) == Some("numeric")
}

/// A SUM/AVG over `numeric` without a fixed scale: its result's scale is its inputs' largest. (An
/// expression whose every value has the same scale, `dvm::scale`, needs no such state.)
fn tracks_scale(call: &AggCall) -> bool {
    matches!(call.func, AggFunc::Sum | AggFunc::Avg)
        && call.arg_type == "numeric"
        && call.fixed_scale.is_none()
}

/// The hidden aggregate keeping the largest scale among a numeric SUM/AVG's inputs.
fn largest_scale(call: &AggCall) -> AggCall {
    let arg = call.arg.clone().map(|a| {
        let mut parts = vec![ExprPart::Sql("pg_catalog.scale(".into())];
        parts.extend(a.parts);
        parts.push(ExprPart::Sql(")".into()));
        Expr { parts }
    });
    AggCall {
        func: AggFunc::Max,
        arg,
        filter: call.filter.clone(),
        arg_type: "integer".into(),
        less_than: "OPERATOR(pg_catalog.<)".into(),
        fixed_scale: None,
    }
}

fn maintainable(call: &AggCall) -> bool {
    match call.func {
        AggFunc::CountStar | AggFunc::Count => true,
        AggFunc::Sum | AggFunc::Avg => sum_type(&call.arg_type).is_some(),
        // A collation other than the default would order differently from the stored column.
        AggFunc::Min | AggFunc::Max => {
            !call.less_than.is_empty()
                && !call.arg_type.is_empty()
                && !call.arg_type.contains(" COLLATE ")
        }
        AggFunc::Other => false,
    }
}

/// For a top-level `GROUP BY` whose aggregates are not kept from stored state (so a batch recomputes
/// every group it touches from that group's input rows): why, in words, for explain_stream_table.
/// None when they are kept, and for other shapes (a top-K query's window is described on its own).
pub fn why_not_kept(tree: &OpTree) -> Option<String> {
    if tree.top_k.is_some() || AggregateState::of(tree).is_some() {
        return None;
    }
    let Node::Project { input, .. } = &tree.root else {
        return None;
    };
    let Node::Aggregate {
        aggregates,
        calls,
        group_by,
        key_types,
        ..
    } = input.as_ref()
    else {
        return None;
    };
    if calls.len() != aggregates.len() {
        return Some(
            "its aggregates were analysed by an older version of pg_trickle (recreate the stream table to keep them from state)".into(),
        );
    }
    let others: Vec<String> = aggregates
        .iter()
        .zip(calls)
        .filter(|(_, c)| !maintainable(c))
        .map(|(a, _)| describe_expr(a))
        .collect();
    if !others.is_empty() {
        return Some(format!(
            "{} cannot be kept from stored state (only count, sum and avg over integers or numerics, \
             and min and max under the default collation, can)",
            others.join(", ")
        ));
    }
    (key_types.len() != group_by.len()).then(|| {
        "a group key has no hash function, and stored groups are found by a hash of their keys"
            .into()
    })
}

impl<'t> AggregateState<'t> {
    /// The algebraic form of `tree`, when its shape and every aggregate allow it.
    /// Never for a top-K query: its storage holds only the first rows, not every group.
    pub fn of(tree: &'t OpTree) -> Option<AggregateState<'t>> {
        if tree.top_k.is_some() {
            return None;
        }
        let Node::Project { input, exprs } = &tree.root else {
            return None;
        };
        let Node::Aggregate {
            input,
            group_by,
            aggregates,
            calls,
            key_types,
            key_eq,
        } = input.as_ref()
        else {
            return None;
        };
        if calls.len() != aggregates.len() || !calls.iter().all(maintainable) {
            return None;
        }
        let key_visible: Vec<Option<usize>> = (0..group_by.len())
            .map(|i| exprs.iter().position(|e| *e == Expr::col(i)))
            .collect();
        // The extension records no key types when a key cannot be hashed (the group identity).
        if key_types.len() != group_by.len() {
            return None;
        }
        let mut all = calls.clone();
        all.extend(calls.iter().filter(|c| tracks_scale(c)).map(largest_scale));
        let query_calls = calls.len();
        let keys_printing_apart = key_types
            .iter()
            .zip(group_by)
            .filter(|(t, key)| super::rules::may_print_apart(tree, input, t, key))
            .map(|(t, _)| t.split(" COLLATE ").next().unwrap_or(t).to_string())
            .collect();
        Some(AggregateState {
            input,
            keys: group_by,
            calls: all,
            key_types,
            key_eq,
            exprs,
            key_visible,
            query_calls,
            keys_printing_apart,
        })
    }

    /// Hidden state columns (name, SQL type), in storage order after the visible columns.
    pub fn hidden_columns(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .key_visible
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_none())
            .map(|(i, _)| (format!("__pgt_k{i}"), self.key_types[i].clone()))
            .collect();
        out.push((COUNT.into(), "bigint".into()));
        for (j, call) in self.calls.iter().enumerate() {
            match call.func {
                AggFunc::CountStar | AggFunc::Count => {
                    out.push((format!("__pgt_a{j}"), "bigint".into()))
                }
                AggFunc::Sum | AggFunc::Avg => {
                    out.push((
                        format!("__pgt_a{j}"),
                        sum_type(&call.arg_type).unwrap_or("numeric").into(),
                    ));
                    out.push((format!("__pgt_n{j}"), "bigint".into()));
                }
                AggFunc::Min | AggFunc::Max => {
                    out.push((format!("__pgt_a{j}"), call.arg_type.clone()));
                    out.push((format!("__pgt_n{j}"), "bigint".into()));
                }
                AggFunc::Other => {}
            }
        }
        out
    }

    /// `PARTITION BY <the group keys over alias a>` (empty for a global aggregate).
    fn partition_by(&self, a: &str) -> String {
        if self.keys.is_empty() {
            return String::new();
        }
        format!(
            "PARTITION BY {}",
            self.keys
                .iter()
                .map(|k| k.render(&|c| format!("{a}.c{c}")))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// What a worker needs to evaluate the aggregate's input locally (`dvm::offload`): the input,
    /// the group keys and their types, and every aggregate call (the hidden ones included).
    pub fn parts(&self) -> (&'t Node, &'t [Expr], &'t [String], &[AggCall]) {
        (self.input, self.keys, self.key_types, &self.calls)
    }

    /// The aggregate's input, when a group is recomputed only for a numeric sum turned NaN (no
    /// MIN/MAX to lose): explain_stream_table advises no index for it.
    pub fn input_rarely_recomputed(&self) -> Option<&'t Node> {
        (!self.has_extrema()).then_some(self.input)
    }

    fn has_extrema(&self) -> bool {
        self.calls
            .iter()
            .any(|c| matches!(c.func, AggFunc::Min | AggFunc::Max))
    }

    /// The storage payload: `visible` (names and types) then the hidden state; identity = the keys.
    pub fn payload(&self, visible: &[String], visible_types: &[String]) -> Payload {
        let hidden = self.hidden_columns();
        let mut columns = visible.to_vec();
        let mut types = visible_types.to_vec();
        columns.extend(hidden.iter().map(|(n, _)| n.clone()));
        types.extend(hidden.iter().map(|(_, t)| t.clone()));
        let mut next_hidden = visible.len();
        let identity = self
            .key_visible
            .iter()
            .map(|v| {
                v.unwrap_or_else(|| {
                    next_hidden += 1;
                    next_hidden - 1
                })
            })
            .collect();
        Payload {
            columns,
            types,
            identity,
        }
    }

    /// State names, in `hidden_columns` order minus the hidden keys: `count`, then per call `a{j}`
    /// (and `n{j}` for SUM/AVG).
    fn state_names(&self) -> Vec<String> {
        let mut out = vec!["count".to_string()];
        for (j, call) in self.calls.iter().enumerate() {
            out.push(format!("a{j}"));
            if call.func != AggFunc::Count && call.func != AggFunc::CountStar {
                out.push(format!("n{j}"));
            }
        }
        out
    }

    /// The aggregates computing every state from input rows under alias `a`, as `s_<name>`. With
    /// `extrema`, the rows also carry `m{j}`, each MIN/MAX's value over its group (see
    /// [`Self::with_group_extrema`]), and the copies of it are counted; without, those counts are
    /// left unknown (NULL).
    fn state_aggregates(&self, a: &str, extrema: bool) -> Vec<String> {
        let r = |e: &Expr| over(e, a);
        let filter = |c: &AggCall, extra: Option<String>| filter_clause(c, a, extra);
        let mut out = vec![format!("pg_catalog.count(*) AS s_count")];
        for (j, call) in self.calls.iter().enumerate() {
            let arg = call.arg.as_ref().map(r).unwrap_or_default();
            let f = filter(call, None);
            match call.func {
                AggFunc::CountStar => out.push(format!("pg_catalog.count(*){f} AS s_a{j}")),
                AggFunc::Count => out.push(format!("pg_catalog.count({arg}){f} AS s_a{j}")),
                AggFunc::Sum | AggFunc::Avg => {
                    out.push(format!("pg_catalog.sum({arg}){f} AS s_a{j}"));
                    out.push(format!("pg_catalog.count({arg}){f} AS s_n{j}"));
                }
                AggFunc::Min | AggFunc::Max => {
                    out.push(format!(
                        "pg_catalog.{}({arg}){f} AS s_a{j}",
                        call.func.name()
                    ));
                    out.push(if extrema {
                        let tie = format!(
                            "{arg} IS NOT NULL AND {}",
                            same(&arg, &format!("{a}.m{j}"), &call.less_than)
                        );
                        format!("pg_catalog.count(*){} AS s_n{j}", filter(call, Some(tie)))
                    } else {
                        format!("NULL::bigint AS s_n{j}")
                    });
                }
                AggFunc::Other => {}
            }
        }
        out
    }

    /// `rows` (input rows, under alias `a`) with `m{j}`: each MIN/MAX's value over the row's group.
    fn with_group_extrema(&self, rows: &str, a: &str) -> String {
        let r = |e: &Expr| over(e, a);
        let partition = self.partition_by(a);
        let windows: Vec<String> = self
            .calls
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.func, AggFunc::Min | AggFunc::Max))
            .map(|(j, c)| {
                let f = c
                    .filter
                    .as_ref()
                    .map_or(String::new(), |f| format!(" FILTER (WHERE {})", r(f)));
                format!(
                    "pg_catalog.{}({}){f} OVER ({partition}) AS m{j}",
                    c.func.name(),
                    c.arg.as_ref().map(r).unwrap_or_default()
                )
            })
            .collect();
        if windows.is_empty() {
            return rows.to_string();
        }
        format!("SELECT {a}.*, {} FROM ({rows}) AS {a}", windows.join(", "))
    }

    /// The payload computed from keys `{z}.{key_prefix}k{i}` and states `{z}.{prefix}<name>`, cast to
    /// `types`.
    fn payload_from_state(
        &self,
        z: &str,
        prefix: &str,
        key_prefix: &str,
        types: &[String],
    ) -> Vec<String> {
        let groups = self.keys.len();
        let value = |i: usize| -> String {
            if i < groups {
                return format!("{z}.{key_prefix}k{i}");
            }
            let j = i - groups;
            let a = format!("{z}.{prefix}a{j}");
            match self.calls[j].func {
                AggFunc::Avg => format!(
                    "(CASE WHEN {z}.{prefix}n{j} = 0 THEN NULL ELSE pg_catalog.numeric_div({a}::pg_catalog.numeric, {z}.{prefix}n{j}::pg_catalog.numeric) END)"
                ),
                _ => a,
            }
        };
        let mut out: Vec<String> = self.exprs.iter().map(|e| e.render(&value)).collect();
        out.extend(
            self.key_visible
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_none())
                .map(|(i, _)| format!("{z}.{key_prefix}k{i}")),
        );
        out.extend(
            self.state_names()
                .iter()
                .map(|s| format!("{z}.{prefix}{s}")),
        );
        out.into_iter()
            .zip(types)
            .map(|(e, t)| format!("({e})::{t}"))
            .collect()
    }

    /// Whether equal values of every group key print alike (integers, `numeric(p,s)`, dates, text
    /// under the default collation, a `numeric` expression whose every value has the same number of
    /// decimals, ...), so any member of a group shows its keys as every other does.
    fn keys_print_alike(&self) -> bool {
        self.keys_printing_apart.is_empty()
    }

    /// When a batch makes a group be recomputed from its current input rows, in words, for
    /// explain_stream_table: the conditions `rescan` collects in the delta, a line each (the numeric
    /// sums' in one); none when a batch never reads source rows for this stream table's groups.
    pub fn recomputed_when(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.keys_print_alike() {
            out.push(format!(
                "a batch deletes rows of it: equal values of a group key ({}) may print differently, and the group \
                 shows a current row's text (a numeric key of a fixed scale, numeric(p,s) or round(x, n), avoids this)",
                self.keys_printing_apart.join(", ")
            ));
        }
        let render = |j: usize| {
            let call = &self.calls[j];
            let arg = call.arg.as_ref().map_or("*".into(), describe_expr);
            let filter = call.filter.as_ref().map_or(String::new(), |f| {
                format!(" FILTER (WHERE {})", describe_expr(f))
            });
            format!("{}({arg}){filter}", call.func.name())
        };
        // The hidden MAX(scale(x)) calls follow the query's, one per SUM/AVG that tracks its scale.
        let scale_of: Vec<usize> = (0..self.query_calls)
            .filter(|&j| tracks_scale(&self.calls[j]))
            .collect();
        let mut special = Vec::new();
        for (j, call) in self.calls.iter().enumerate() {
            let what = match j.checked_sub(self.query_calls) {
                Some(k) => format!(
                    "the largest scale among {}'s inputs (__pgt_a{j})",
                    render(scale_of[k])
                ),
                None => format!("{} (__pgt_a{j})", render(j)),
            };
            match call.func {
                AggFunc::Sum | AggFunc::Avg if sums_as_numeric(call) => special.push(what),
                AggFunc::Min | AggFunc::Max => {
                    out.push(format!(
                        "the batch may have deleted every copy of the value of {what}"
                    ));
                    if !prints_as_it_compares(&call.arg_type) {
                        out.push(format!(
                            "the batch deletes a value equal to that of {what}: equal {} values may print differently",
                            call.arg_type
                        ));
                    }
                }
                _ => {}
            }
        }
        if !special.is_empty() {
            // NaN does not subtract out of a sum, nor do infinities.
            out.insert(
                usize::from(!self.keys_print_alike()),
                format!(
                    "a numeric sum is or becomes NaN or infinite: {}",
                    special.join(", ")
                ),
            );
        }
        out
    }

    /// The columns of an aggregate whose lost extrema an index on (key, argument) would serve
    /// (`extremum_probes`): [`ExtremumColumns`], with keys and arguments whose equal values print
    /// alike (which copy of an extremum shows does not matter).
    pub(crate) fn probe_columns(&self) -> Option<ExtremumColumns<'t>> {
        if self.key_eq.len() != 1 || !self.keys_print_alike() {
            return None;
        }
        let cols = extremum_columns(self.input, self.keys, &self.calls)?;
        cols.args
            .iter()
            .all(|(j, _, _)| prints_as_it_compares(&self.calls[*j].arg_type))
            .then_some(cols)
    }

    /// [`Self::probe_columns`] when every argument has its index (`GroupIndexes::key_value_pairs`).
    /// None for an external worker's batch, which never recomputes (`dvm::offload`).
    fn probed(&self, ctx: &DiffContext) -> Option<ExtremumColumns<'t>> {
        if ctx.cdc.staged.is_some() {
            return None;
        }
        let cols = self.probe_columns()?;
        let pairs = &ctx.cache.group_indexes.key_value_pairs;
        cols.args
            .iter()
            .all(|(_, _, arg)| pairs.contains(&(cols.table.relid, cols.key.clone(), arg.clone())))
            .then_some(cols)
    }

    /// For explain_stream_table: how a lost extremum is found when indexes on (key, argument) serve
    /// every MIN/MAX (`extremum_probes`); None when they do not.
    pub fn probed_extrema(&self, ctx: &DiffContext) -> Option<String> {
        let cols = self.probed(ctx)?;
        let mut indexes: Vec<String> = Vec::new();
        for (_, _, arg) in &cols.args {
            let index = format!("({}, {arg})", cols.key);
            if !indexes.contains(&index) {
                indexes.push(index);
            }
        }
        Some(format!(
            "a group's min/max is then read off the index on {}.{} {} (copies of it are not counted: a batch deleting one reads it again)",
            cols.table.schema,
            cols.table.name,
            indexes.join(", ")
        ))
    }

    fn key_items(&self, a: &str) -> Vec<String> {
        self.keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{} AS k{i}", k.render(&|c| format!("{a}.c{c}"))))
            .collect()
    }

    fn group_by(&self, a: &str) -> String {
        if self.keys.is_empty() {
            return String::new();
        }
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| k.render(&|c| format!("{a}.c{c}")))
            .collect();
        format!(" GROUP BY {}", keys.join(", "))
    }

    /// The query a FULL refresh inserts: every group's payload (visible columns and state).
    pub fn full_query(&self, tree: &OpTree, types: &[String]) -> PgtResult<String> {
        let mut ctx = DiffContext::default();
        let input = new_sql(tree, self.input, &mut ctx)?;
        let payload = self.payload_from_state("s", "s_", "", types);
        let named: Vec<String> = payload
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{e} AS c{i}"))
            .collect();
        let states = if self.calls.len() == self.query_calls {
            let items = [self.key_items("a"), self.state_aggregates("a", false)].concat();
            format!(
                "SELECT {} FROM ({input}) AS a{}",
                items.join(", "),
                self.group_by("a")
            )
        } else {
            self.states_counting_largest_scales(&input)
        };
        Ok(format!("SELECT {} FROM ({states}) AS s", named.join(", ")))
    }

    /// FULL's states when sums keep their largest input scale: in one pass over the input, partial
    /// states per group and input scale (few rows: groups × distinct scales), then per group their
    /// sum, with the copies of each largest scale counted — a FULL refresh that left them unknown
    /// would make the first change of every group recompute it. The query's own MIN/MAX copies stay
    /// unknown, as in `state_aggregates`.
    fn states_counting_largest_scales(&self, input: &str) -> String {
        let r = |e: &Expr| over(e, "a");
        let filter = |c: &AggCall, extra: Option<String>| filter_clause(c, "a", extra);
        let keys: Vec<String> = (0..self.keys.len()).map(|i| format!("k{i}")).collect();
        let mut group_by: Vec<String> = self
            .keys
            .iter()
            .map(|k| k.render(&|c| format!("a.c{c}")))
            .collect();
        let mut partial = [
            self.key_items("a"),
            vec!["pg_catalog.count(*) AS p_count".to_string()],
        ]
        .concat();
        let mut windows = Vec::new();
        let mut total: Vec<String> = keys.iter().map(|k| format!("w.{k} AS {k}")).collect();
        total.push("COALESCE(pg_catalog.sum(w.p_count), 0)::bigint AS s_count".into());
        let partition = keys
            .iter()
            .map(|k| format!("i.{k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let partition = if partition.is_empty() {
            String::new()
        } else {
            format!("PARTITION BY {partition}")
        };
        for (j, call) in self.calls.iter().enumerate() {
            let arg = call.arg.as_ref().map(r).unwrap_or_default();
            let f = filter(call, None);
            match call.func {
                AggFunc::CountStar | AggFunc::Count => {
                    let counted = if call.func == AggFunc::CountStar {
                        "*".to_string()
                    } else {
                        arg
                    };
                    partial.push(format!("pg_catalog.count({counted}){f} AS p_a{j}"));
                    total.push(format!(
                        "COALESCE(pg_catalog.sum(w.p_a{j}), 0)::bigint AS s_a{j}"
                    ));
                }
                AggFunc::Sum | AggFunc::Avg => {
                    partial.push(format!("pg_catalog.sum({arg}){f} AS p_a{j}"));
                    partial.push(format!("pg_catalog.count({arg}){f} AS p_n{j}"));
                    total.push(format!("pg_catalog.sum(w.p_a{j}) AS s_a{j}"));
                    total.push(format!(
                        "COALESCE(pg_catalog.sum(w.p_n{j}), 0)::bigint AS s_n{j}"
                    ));
                }
                AggFunc::Min | AggFunc::Max if j < self.query_calls => {
                    let agg = call.func.name();
                    partial.push(format!("pg_catalog.{agg}({arg}){f} AS p_a{j}"));
                    total.push(format!("pg_catalog.{agg}(w.p_a{j}) AS s_a{j}"));
                    total.push(format!("NULL::bigint AS s_n{j}"));
                }
                AggFunc::Min | AggFunc::Max => {
                    // A hidden largest scale: `arg` is scale(x), one more partial grouping key.
                    group_by.push(arg.clone());
                    partial.push(format!("pg_catalog.max({arg}){f} AS p_a{j}"));
                    partial.push(format!(
                        "pg_catalog.count(*){} AS p_n{j}",
                        filter(call, Some(format!("{arg} IS NOT NULL")))
                    ));
                    windows.push(format!(
                        "pg_catalog.max(i.p_a{j}) OVER ({partition}) AS m{j}"
                    ));
                    total.push(format!("pg_catalog.max(w.p_a{j}) AS s_a{j}"));
                    total.push(format!("COALESCE(pg_catalog.sum(w.p_n{j}) FILTER (WHERE w.p_a{j} = w.m{j}), 0)::bigint AS s_n{j}"));
                }
                AggFunc::Other => {}
            }
        }
        let outer_group = if keys.is_empty() {
            String::new()
        } else {
            format!(
                " GROUP BY {}",
                keys.iter()
                    .map(|k| format!("w.{k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!(
            "SELECT {} FROM (SELECT i.*, {} FROM (SELECT {} FROM ({input}) AS a GROUP BY {}) AS i) AS w{outer_group}",
            total.join(", "),
            windows.join(", "),
            partial.join(", "),
            group_by.join(", ")
        )
    }

    /// Δ per touched group, from the batch: `k{i}` (the keys), `dcount` (Σ w), and per call `da{j}`,
    /// `dn{j}` (COUNT/SUM/AVG) or `di{j}`, `dd{j}` (MIN/MAX: the least/greatest inserted and deleted
    /// values) with, when their copies are [`ExtremumCopies::Counted`], `dic{j}`, `ddc{j}`.
    fn group_deltas(
        &self,
        tree: &OpTree,
        ctx: &mut DiffContext,
        copies: ExtremumCopies,
    ) -> PgtResult<String> {
        // COUNT, SUM and AVG are sums of weighted inputs: change rows that cancel each other add up
        // to nothing anyway, so the batch is read as it is. Counted MIN/MAX need the consolidated
        // batch (a value inserted and deleted in one batch would look like a new extremum, and its
        // copies would not add up), and a join that probes its partner is cheaper probed with the
        // consolidated rows (pairs from UPDATEs of other columns cancel). Uncounted, such a value
        // only sends its group to be read off the index again.
        let counted_extrema = copies == ExtremumCopies::Counted && self.has_extrema();
        let raw = !counted_extrema && reads_change_rows_raw(tree, self.input, ctx);
        let dinput = with_raw_scans(ctx, raw, |ctx| {
            hoisted_delta(tree, self.input, ctx, "dagg_")
        })?
        .ok_or_else(|| PgtError::internal("aggregate delta requested for an unchanged input"))?;

        // Δ per touched group. MIN/MAX also count the inserted and deleted copies of the least
        // (greatest) inserted and deleted values, read off a window over the delta.
        let d = ctx.alias("d");
        let dinput = if counted_extrema {
            // Two windows per MIN/MAX: over inserted rows (wi) and over deleted rows (wd).
            let r = |e: &Expr| over(e, &d);
            let partition = self.partition_by(&d);
            let mut windows = Vec::new();
            for (j, c) in self
                .calls
                .iter()
                .enumerate()
                .filter(|(_, c)| matches!(c.func, AggFunc::Min | AggFunc::Max))
            {
                let agg = c.func.name();
                let arg = c.arg.as_ref().map(r).unwrap_or_default();
                let f = c
                    .filter
                    .as_ref()
                    .map_or(String::new(), |f| format!(" AND {}", r(f)));
                windows.push(format!("pg_catalog.{agg}({arg}) FILTER (WHERE {d}.{W} > 0{f}) OVER ({partition}) AS wi{j}"));
                windows.push(format!("pg_catalog.{agg}({arg}) FILTER (WHERE {d}.{W} < 0{f}) OVER ({partition}) AS wd{j}"));
            }
            hoist(
                ctx,
                "awin_",
                format!("SELECT {d}.*, {} FROM {dinput} AS {d}", windows.join(", ")),
            )
        } else {
            dinput
        };
        let r = |e: &Expr| over(e, &d);
        let w = format!("{d}.{W}");
        let mut deltas = vec![format!("pg_catalog.sum({w})::bigint AS dcount")];
        if !self.keys_print_alike() {
            deltas.push(format!(
                "COALESCE(pg_catalog.sum(-{w}) FILTER (WHERE {w} < 0), 0)::bigint AS ddel"
            ));
        }
        for (j, call) in self.calls.iter().enumerate() {
            let f = call.filter.as_ref().map(r);
            let when = |extra: &str| {
                let mut parts: Vec<String> = f.iter().cloned().collect();
                if !extra.is_empty() {
                    parts.push(extra.to_string());
                }
                if parts.is_empty() {
                    String::new()
                } else {
                    format!(" FILTER (WHERE {})", parts.join(" AND "))
                }
            };
            let arg = call.arg.as_ref().map(r).unwrap_or_default();
            match call.func {
                AggFunc::CountStar => deltas.push(format!(
                    "COALESCE(pg_catalog.sum({w}){}, 0)::bigint AS da{j}",
                    when("")
                )),
                AggFunc::Count => deltas.push(format!(
                    "COALESCE(pg_catalog.sum({w}){}, 0)::bigint AS da{j}",
                    when(&format!("{arg} IS NOT NULL"))
                )),
                AggFunc::Sum | AggFunc::Avg => {
                    let st = sum_type(&call.arg_type).unwrap_or("numeric");
                    let weighted = if st == "numeric" {
                        // Change rows weigh 1 or -1: a sign is cheaper than a numeric product, and
                        // keeps the scale just as the product does.
                        format!(
                            "CASE {w} WHEN 1 THEN {arg}::numeric WHEN -1 THEN -({arg}::numeric) ELSE {w}::numeric * {arg}::numeric END"
                        )
                    } else {
                        format!("{w}::{st} * {arg}::{st}")
                    };
                    deltas.push(format!(
                        "(pg_catalog.sum({weighted}){})::{st} AS da{j}",
                        when("")
                    ));
                    deltas.push(format!(
                        "COALESCE(pg_catalog.sum({w}){}, 0)::bigint AS dn{j}",
                        when(&format!("{arg} IS NOT NULL"))
                    ));
                }
                AggFunc::Min | AggFunc::Max if copies == ExtremumCopies::Uncounted => {
                    let agg = call.func.name();
                    deltas.push(format!(
                        "pg_catalog.{agg}({arg}){} AS di{j}",
                        when(&format!("{w} > 0"))
                    ));
                    deltas.push(format!(
                        "pg_catalog.{agg}({arg}){} AS dd{j}",
                        when(&format!("{w} < 0"))
                    ));
                }
                AggFunc::Min | AggFunc::Max => {
                    let lt = &call.less_than;
                    let tie = |win: &str| {
                        format!(
                            "{arg} IS NOT NULL AND {}",
                            same(&arg, &format!("{d}.{win}{j}"), lt)
                        )
                    };
                    deltas.push(format!("pg_catalog.min({d}.wi{j}) AS di{j}"));
                    deltas.push(format!("pg_catalog.min({d}.wd{j}) AS dd{j}"));
                    deltas.push(format!(
                        "COALESCE(pg_catalog.sum({w}){}, 0)::bigint AS dic{j}",
                        when(&format!("{w} > 0 AND {}", tie("wi")))
                    ));
                    deltas.push(format!(
                        "COALESCE(pg_catalog.sum(-{w}){}, 0)::bigint AS ddc{j}",
                        when(&format!("{w} < 0 AND {}", tie("wd")))
                    ));
                }
                AggFunc::Other => {}
            }
        }
        Ok(hoist(
            ctx,
            "astate_",
            format!(
                "SELECT {} FROM {dinput} AS {d}{}",
                [self.key_items(&d), deltas].concat().join(", "),
                self.group_by(&d)
            ),
        ))
    }

    /// The grouped delta of the stream table, reading the touched groups' stored state from
    /// `storage`: one row per group that changed, with its new payload (`c0..`), the stored row it
    /// replaces ([`OLD_ROW`]) and whether it still exists ([`KEEP`]). See `apply::grouped_plan`.
    pub fn delta_query(
        &self,
        tree: &OpTree,
        storage: &QualifiedName,
        payload: &Payload,
        ctx: &mut DiffContext,
    ) -> PgtResult<String> {
        let groups = self.keys.len();
        let k: Vec<String> = (0..groups).map(|i| format!("k{i}")).collect();
        // A MIN/MAX whose lost extremum is read off an index (`extremum_probes`) is not counted:
        // any deletion of it reads the index again, which costs less than counting the copies of
        // every batch's extrema.
        let probed = self.probed(ctx);
        let copies = match probed {
            Some(_) => ExtremumCopies::Uncounted,
            None => ExtremumCopies::Counted,
        };
        // An external worker may have computed Δ per group already (`dvm::offload`).
        let ds = match ctx.cdc.staged.clone() {
            Some(staged) => staged,
            None => self.group_deltas(tree, ctx, copies)?,
        };

        // The touched groups' stored rows: through the row identity index, or for a batch that touches
        // many of them, by one hash join over the storage table. The scan is a subquery kept apart
        // (`OFFSET 0`), so the index cannot be used from outside it, while the planner still knows the
        // identity column's statistics: without them it sorted both sides for a merge join on the
        // keys' records (17 of 84 ms at 1% churn of 10,000 groups, against ~4 ms hashed).
        let (s, t) = (ctx.alias("s"), ctx.alias("t"));
        let key_positions = &payload.identity;
        let key_match = |stored: &dyn Fn(usize) -> String| {
            if key_positions.is_empty() {
                return String::new();
            }
            let stored: Vec<String> = key_positions.iter().map(|p| stored(*p)).collect();
            let wanted: Vec<String> = (0..key_positions.len())
                .map(|i| format!("{s}.k{i}"))
                .collect();
            format!(" AND {}", same_keys(&stored, &wanted))
        };
        // The same hash the apply computes over the payload's key columns: same values, same types.
        let lookup_id = hash_values(&k.iter().map(|k| format!("{s}.{k}")).collect::<Vec<_>>());
        let old_items: Vec<String> = payload
            .columns
            .iter()
            .enumerate()
            .map(|(p, c)| format!("{t}.{} AS o{p}", quote_ident(c)))
            .collect();
        let storage_q = storage.quoted();
        let old_name = |state: &str| -> String {
            let col = if state == "count" {
                COUNT.to_string()
            } else {
                format!("__pgt_{state}")
            };
            format!(
                "o{}",
                payload.columns.iter().position(|c| *c == col).unwrap_or(0)
            )
        };
        let stored = format!("true AS o_e, {t}.ctid AS o_ctid, {}", old_items.join(", "));
        let joined = match ctx.opt.group_lookup {
            GroupLookup::Probe => format!(
                "SELECT {s}.*, o.* FROM {ds} AS {s} LEFT JOIN LATERAL (SELECT {stored} FROM {storage_q} AS {t} \
                  WHERE {t}.__pgt_row_id = {lookup_id}{} LIMIT 1) AS o ON true",
                key_match(&|p| format!("{t}.{}", quote_ident(&payload.columns[p])))
            ),
            GroupLookup::Scan => format!(
                "SELECT {s}.*, o.* FROM {ds} AS {s} LEFT JOIN (SELECT {stored}, {t}.__pgt_row_id AS o_id FROM {storage_q} AS {t} OFFSET 0) AS o \
                  ON o.o_id = {lookup_id}{}",
                key_match(&|p| format!("o.o{p}"))
            ),
        };
        let joined = hoist(ctx, "aold_", joined);

        // New state by arithmetic, and whether the group must be recomputed instead.
        let j_ = ctx.alias("j");
        let old = |state: &str| format!("{j_}.{}", old_name(state));
        let mut new_state = vec![format!(
            "COALESCE({}, 0) + {j_}.dcount AS n_count",
            old("count")
        )];
        let mut rescan = Vec::new();
        // A group whose keys' equal values print differently (`1.5`, `1.50`) shows one member's text;
        // a batch that removes rows of it may have removed that member: recompute, which reads the
        // text from the group's current rows. (A worker never reduces such keys: `dvm::offload`.)
        if !self.keys_print_alike() && ctx.cdc.staged.is_none() {
            rescan.push(format!("{j_}.ddel > 0"));
        }
        for (j, call) in self.calls.iter().enumerate() {
            let (oa, a) = (old(&format!("a{j}")), format!("a{j}"));
            match call.func {
                AggFunc::CountStar | AggFunc::Count => {
                    new_state.push(format!("COALESCE({oa}, 0) + {j_}.da{j} AS n_{a}"))
                }
                AggFunc::Sum | AggFunc::Avg => {
                    let on = old(&format!("n{j}"));
                    new_state.push(format!(
                        "CASE WHEN COALESCE({on}, 0) + {j_}.dn{j} = 0 THEN NULL ELSE COALESCE({oa}, 0) + COALESCE({j_}.da{j}, 0) END AS n_{a}"
                    ));
                    new_state.push(format!("COALESCE({on}, 0) + {j_}.dn{j} AS n_n{j}"));
                    if sums_as_numeric(call) {
                        // NaN, and (for numeric without a fixed scale) infinities, do not subtract out.
                        let special = "ARRAY['NaN', 'Infinity', '-Infinity']::pg_catalog.numeric[]";
                        rescan.push(format!(
                            "COALESCE({oa} OPERATOR(pg_catalog.=) ANY ({special}) OR {j_}.da{j} OPERATOR(pg_catalog.=) ANY ({special}), false)"
                        ));
                    }
                }
                AggFunc::Min | AggFunc::Max => {
                    let (state, recompute) =
                        extremum_state(call, j, &j_, &oa, &old(&format!("n{j}")), copies);
                    new_state.extend(state);
                    rescan.extend(recompute);
                }
                AggFunc::Other => {}
            }
        }
        // A group that vanishes needs no recomputation (a global aggregate's one row never vanishes).
        let rescan_flag = match (rescan.is_empty(), groups) {
            (true, _) => "false".to_string(),
            (false, 0) => rescan.join(" OR "),
            (false, _) => format!(
                "COALESCE({}, 0) + {j_}.dcount > 0 AND ({})",
                old("count"),
                rescan.join(" OR ")
            ),
        };
        let rescan_flag = if ctx.cdc.staged.is_some() && !rescan.is_empty() {
            // A worker's batch was cut at its own snapshot; a recompute here would read the sources at
            // this statement's. Fail instead (the worker then refreshes on the server). The cast reads
            // a column, so the planner cannot fold it into an error for every row.
            format!(
                "(CASE WHEN {rescan_flag} THEN ('pg_trickle: an offloaded batch needs a group recomputed (Δcount ' OPERATOR(pg_catalog.||) {j_}.dcount::pg_catalog.text OPERATOR(pg_catalog.||) '); refresh it on the server')::pg_catalog.int4 END) IS NOT NULL"
            )
        } else {
            rescan_flag
        };
        let alg = hoist(
            ctx,
            "anew_",
            format!(
                "SELECT {j_}.*, {}, ({rescan_flag}) AS rescan FROM {joined} AS {j_}",
                new_state.join(", ")
            ),
        );

        // Groups to recompute from their current input rows, and the final state of every group.
        let z = ctx.alias("z");
        let states = self.state_names();
        let kept_keys: Vec<String> = k.iter().map(|k| format!("{z}.{k} AS f_{k}")).collect();
        let probes = match &probed {
            Some(cols) => Some(extremum_probes(
                tree,
                self.input,
                cols,
                &self.key_eq[0],
                &self.calls,
                &z,
                ctx,
            )?),
            None => None,
        };
        let fin = if rescan.is_empty() {
            let items: Vec<String> = states
                .iter()
                .map(|st| format!("{z}.n_{st} AS f_{st}"))
                .chain(kept_keys.iter().cloned())
                .collect();
            format!("SELECT {z}.*, {} FROM {alg} AS {z}", items.join(", "))
        } else if let Some(probes) = probes {
            // Counts by arithmetic; a MIN/MAX to recompute read off the index, its copies uncounted.
            let probed_state = |st: &str| -> Option<String> {
                probes.iter().find_map(|(j, probe)| {
                    if st == format!("a{j}") {
                        Some(probe.clone())
                    } else {
                        (st == format!("n{j}")).then(|| "NULL::bigint".to_string())
                    }
                })
            };
            let items: Vec<String> = states
                .iter()
                .map(|st| match probed_state(st) {
                    Some(v) => {
                        format!("CASE WHEN {z}.rescan THEN {v} ELSE {z}.n_{st} END AS f_{st}")
                    }
                    None => format!("{z}.n_{st} AS f_{st}"),
                })
                .chain(kept_keys.iter().cloned())
                .collect();
            format!("SELECT {z}.*, {} FROM {alg} AS {z}", items.join(", "))
        } else {
            let recomputed = if groups == 0 {
                let a = ctx.alias("a");
                let input = new_sql(tree, self.input, ctx)?;
                let rows = self.with_group_extrema(&input, &ctx.alias("a"));
                format!(
                    "SELECT * FROM (SELECT {} FROM ({rows}) AS {a}) AS r WHERE EXISTS (SELECT 1 FROM {alg} WHERE rescan)",
                    self.state_aggregates(&a, true).join(", ")
                )
            } else {
                let wanted = hoist(
                    ctx,
                    "arescan_",
                    format!("SELECT {} FROM {alg} WHERE rescan", k.join(", ")),
                );
                let rows = rows_of_groups(tree, self.input, self.keys, self.key_eq, &wanted, ctx)?;
                let rows = self.with_group_extrema(&rows, &ctx.alias("a"));
                let a = ctx.alias("a");
                // The EXISTS is a one-time filter: without a group to recompute, the input is not read.
                format!(
                    "SELECT {} FROM ({rows}) AS {a} WHERE EXISTS (SELECT 1 FROM {wanted}){}",
                    [self.key_items(&a), self.state_aggregates(&a, true)]
                        .concat()
                        .join(", "),
                    self.group_by(&a)
                )
            };
            let rs = hoist(ctx, "arecomputed_", recomputed);
            // Keys may be NULL, and IS NOT DISTINCT FROM cannot drive a hash join: join on the keys'
            // hash (NULL-safe, hashable) and then compare the keys themselves.
            let mut same: Vec<String> = Vec::new();
            if !k.is_empty() {
                let hash = |a: &str| {
                    hash_values(&k.iter().map(|k| format!("{a}.{k}")).collect::<Vec<_>>())
                };
                same.push(format!(" AND {} = {}", hash("r"), hash(z.as_str())));
            }
            if !k.is_empty() {
                let (r, zk): (Vec<String>, Vec<String>) = k
                    .iter()
                    .map(|k| (format!("r.{k}"), format!("{z}.{k}")))
                    .unzip();
                same.push(format!(" AND {}", same_keys(&r, &zk)));
            }
            // Arithmetic for most groups; only the few to recompute are joined with their recomputation
            // (a join of every touched group would sort or hash them all for nothing).
            let kept: Vec<String> = states
                .iter()
                .map(|st| format!("{z}.n_{st} AS f_{st}"))
                .chain(kept_keys.iter().cloned())
                .collect();
            // A recomputed group's keys print as its current rows print them (the batch's may be a
            // deleted row's); one that vanished keeps the batch's, for the delete.
            let recomputed: Vec<String> = states
                .iter()
                .map(|st| {
                    if st == "count" {
                        "COALESCE(r.s_count, 0) AS f_count".to_string()
                    } else {
                        format!("r.s_{st} AS f_{st}")
                    }
                })
                .chain(k.iter().map(|k| {
                    format!("CASE WHEN r.s_count IS NULL THEN {z}.{k} ELSE r.{k} END AS f_{k}")
                }))
                .collect();
            format!(
                "SELECT {z}.*, {} FROM {alg} AS {z} WHERE NOT {z}.rescan \
                 UNION ALL SELECT {z}.*, {} FROM {alg} AS {z} LEFT JOIN {rs} AS r ON true{} WHERE {z}.rescan",
                kept.join(", "),
                recomputed.join(", "),
                same.concat()
            )
        };
        let fin = hoist(ctx, "afinal_", fin);

        // Per changed group: its new payload, the stored row it replaces, and whether it still exists.
        let y = ctx.alias("y");
        let new_payload = self.payload_from_state(&y, "f_", "f_", &payload.types);
        let exists_now = if groups == 0 {
            "true".to_string()
        } else {
            format!("COALESCE({y}.f_count > 0, false)")
        };
        let width = payload.columns.len();
        let named: Vec<String> = new_payload
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{v} AS c{i}"))
            .chain((0..width).map(|p| format!("{y}.o{p}")))
            .collect();
        // A group whose new payload is identical to its stored row is left alone. The payload is
        // computed once, in a subquery kept apart (`OFFSET 0`): flattened, every expression (an
        // AVG's division, say) would be evaluated again for the comparison.
        let v = ctx.alias("v");
        let cols = |prefix: &str| -> Vec<String> {
            (0..width).map(|p| format!("{v}.{prefix}{p}")).collect()
        };
        let unchanged = format!(
            "({v}.o_e IS TRUE AND {v}.{KEEP} AND {})",
            identical(&cols("o"), &cols("c"))
        );
        Ok(format!(
            "SELECT {}, {v}.{OLD_ROW}, {v}.{KEEP} FROM (\
               SELECT {}, {y}.o_e, {y}.o_ctid AS {OLD_ROW}, {exists_now} AS {KEEP} FROM {fin} AS {y} \
                WHERE {y}.o_e IS TRUE OR {exists_now} OFFSET 0) AS {v} \
              WHERE NOT {unchanged}",
            cols("c").join(", "),
            named.join(", "),
        ))
    }
}

/// `(expr)` over the input rows under alias `a` (columns `a.c0..`).
fn over(expr: &Expr, a: &str) -> String {
    format!("({})", expr.render(&|i| format!("{a}.c{i}")))
}

/// ` FILTER (WHERE ...)` for a call over rows under alias `a`: its own filter and `extra`, or nothing.
fn filter_clause(call: &AggCall, a: &str, extra: Option<String>) -> String {
    let parts: Vec<String> = call
        .filter
        .as_ref()
        .map(|f| over(f, a))
        .into_iter()
        .chain(extra)
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" FILTER (WHERE {})", parts.join(" AND "))
    }
}
