//! What an external worker computes for a refresh, from the batch's change rows of the one source:
//! for an aggregate kept from stored state (`dvm::diff::algebraic`), its Δ per group — filter,
//! projection, group keys, the weighted sums and counts — exactly the relation the server would
//! otherwise compute as the first step of the aggregate's delta; for a filter and projection of the
//! table, the query's Δ rows, consolidated by identity. The server takes it from a staged table
//! instead and does the rest (the join with the stored groups, the apply).

use super::scalar::{compile, EvalError, Scalar};
use super::value::{Decimal, LocalType, Value};
use crate::dvm::diff::{sum_type, AggregateState};
use crate::dvm::optree::{AggFunc, Node, OpTree, TableRef};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One aggregate call, evaluated locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalCall {
    pub func: LocalFunc,
    pub arg: Option<Scalar>,
    pub filter: Option<Scalar>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocalFunc {
    CountStar,
    Count,
    /// SUM or AVG (AVG is kept as a sum and a count): the sum's type.
    Sum(LocalType),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalPlan {
    pub source: TableRef,
    /// The source columns read from its change buffer, and their types (the change weight follows).
    pub columns: Vec<String>,
    pub types: Vec<LocalType>,
    /// Every WHERE of the query, over those columns.
    pub filter: Option<Scalar>,
    pub output: Output,
    /// The reduced delta's columns. Groups: as the aggregate's delta rule names them — `k{i}`,
    /// `dcount`, then per call `da{j}` (and `dn{j}`, the non-NULL count, for sums). Rows: `c{i}`,
    /// then `__pgt_w`, the net weight.
    pub staged: Vec<(String, LocalType)>,
}

/// What the worker pushes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// One row per touched group of an aggregate kept from stored state.
    Groups {
        keys: Vec<Scalar>,
        calls: Vec<LocalCall>,
    },
    /// The query's rows with their net weight, one per distinct row (identical bytes: `1.5` and
    /// `1.50` stay apart, as the engine's consolidation by identity keeps them); none of weight 0.
    Rows { exprs: Vec<Scalar> },
}

/// Why a stream table's refresh is not evaluated by a worker (said in its history).
pub type NotLocal = String;

impl LocalPlan {
    pub fn of(tree: &OpTree) -> Result<LocalPlan, NotLocal> {
        if !tree.ctes.is_empty() {
            return Err("it has a WITH query".into());
        }
        let Some(state) = AggregateState::of(tree) else {
            return LocalPlan::rows(tree);
        };
        let (input, keys, key_types, calls) = state.parts();
        let (source, columns, types, inputs, filters) = flatten(input)?;
        let filter = conjunction(filters);
        let mut staged = Vec::new();
        let mut local_keys = Vec::new();
        for (i, (key, sql_type)) in keys.iter().zip(key_types).enumerate() {
            let ty = LocalType::of_sql(sql_type)
                .ok_or_else(|| format!("group key of type {sql_type}"))?;
            // Equal numerics may differ in display scale (1.5, 1.50): grouping by their bytes would
            // split a group PostgreSQL keeps whole.
            if ty == LocalType::Numeric {
                return Err("a numeric group key".into());
            }
            let (scalar, compiled) = compile(key, &inputs)?;
            if compiled != ty {
                return Err(format!("group key {i} of type {sql_type}"));
            }
            local_keys.push(scalar);
            staged.push((format!("k{i}"), ty));
        }
        staged.push(("dcount".to_string(), LocalType::Int8));
        let mut local_calls = Vec::new();
        for (j, call) in calls.iter().enumerate() {
            let func = match call.func {
                AggFunc::CountStar => LocalFunc::CountStar,
                AggFunc::Count => LocalFunc::Count,
                AggFunc::Sum | AggFunc::Avg => {
                    let sum = sum_type(&call.arg_type)
                        .ok_or_else(|| format!("a sum over {}", call.arg_type))?;
                    // A sum over numerics of any scale keeps its largest scale as an extremum, on
                    // the server; one whose every value has the same scale (dvm/scale.rs) keeps none,
                    // and the worker's exact decimals carry that scale as PostgreSQL's do.
                    if call.arg_type == "numeric" && call.fixed_scale.is_none() {
                        return Err("a sum over numeric without a fixed scale".into());
                    }
                    LocalFunc::Sum(LocalType::of_sql(sum).ok_or("a sum type")?)
                }
                AggFunc::Min | AggFunc::Max => return Err("MIN/MAX".into()),
                AggFunc::Other => return Err("an aggregate recomputed per group".into()),
            };
            let arg = match &call.arg {
                Some(a) => {
                    let (scalar, ty) = compile(a, &inputs)?;
                    if matches!(func, LocalFunc::Sum(_)) && !ty.is_number() {
                        return Err(format!("a sum over {}", ty.sql()));
                    }
                    Some(scalar)
                }
                None if func == LocalFunc::CountStar => None,
                None => return Err("an aggregate without an argument".into()),
            };
            let filter = match &call.filter {
                Some(f) => match compile(f, &inputs)? {
                    (s, LocalType::Bool) => Some(s),
                    _ => return Err("a FILTER that is not boolean".into()),
                },
                None => None,
            };
            match func {
                LocalFunc::Sum(ty) => {
                    staged.push((format!("da{j}"), ty));
                    staged.push((format!("dn{j}"), LocalType::Int8));
                }
                _ => staged.push((format!("da{j}"), LocalType::Int8)),
            }
            local_calls.push(LocalCall { func, arg, filter });
        }
        let output = Output::Groups {
            keys: local_keys,
            calls: local_calls,
        };
        Ok(LocalPlan {
            source,
            columns,
            types,
            filter,
            output,
            staged,
        })
    }

    /// A filter and projection of one table: its Δ rows.
    fn rows(tree: &OpTree) -> Result<LocalPlan, NotLocal> {
        let (source, columns, types, outputs, filters) = flatten(&tree.root)?;
        let mut staged: Vec<(String, LocalType)> = outputs
            .iter()
            .enumerate()
            .map(|(i, (_, t))| (format!("c{i}"), *t))
            .collect();
        staged.push(("__pgt_w".to_string(), LocalType::Int8));
        let output = Output::Rows {
            exprs: outputs.into_iter().map(|(s, _)| s).collect(),
        };
        Ok(LocalPlan {
            source,
            columns,
            types,
            filter: conjunction(filters),
            output,
            staged,
        })
    }

    pub fn staged_types(&self) -> Vec<LocalType> {
        self.staged.iter().map(|(_, t)| *t).collect()
    }

    /// Reduces change rows (the source's columns, then the change's weight ±1) to the staged layout.
    /// Groups: one row per touched group, what `SELECT keys, sum(w), ... GROUP BY keys` over the
    /// filtered rows gives, value for value (a global aggregate, no keys, gives exactly one row).
    /// Rows: the filtered rows' projections with their summed weights, those not 0.
    pub fn reduce(&self, rows: &[Vec<Value>]) -> Result<Vec<Vec<Value>>, EvalError> {
        match &self.output {
            Output::Groups { keys, calls } => self.reduce_groups(rows, keys, calls),
            Output::Rows { exprs } => self.reduce_rows(rows, exprs),
        }
    }

    /// The rows that pass the filter: their values and weight.
    fn passing<'r>(
        &'r self,
        rows: &'r [Vec<Value>],
    ) -> impl Iterator<Item = Result<(&'r [Value], i128), EvalError>> + 'r {
        rows.iter().filter_map(move |row| {
            let (values, w) = row.split_at(row.len().saturating_sub(1));
            let Some(Value::Int(w)) = w.first() else {
                return Some(Err(EvalError::Mistyped));
            };
            if *w == i64::from(crate::dvm::diff::context::REPLACED_WEIGHT) {
                return Some(Err(EvalError::Replaced));
            }
            match self.filter.as_ref().map_or(Ok(true), |f| f.holds(values)) {
                Ok(true) => Some(Ok((values, *w as i128))),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            }
        })
    }

    fn reduce_groups(
        &self,
        rows: &[Vec<Value>],
        keys: &[Scalar],
        calls: &[LocalCall],
    ) -> Result<Vec<Vec<Value>>, EvalError> {
        let mut index: HashMap<Vec<Value>, usize> = HashMap::new();
        let mut groups: Vec<(Vec<Value>, Group)> = Vec::new();
        for passed in self.passing(rows) {
            let (values, w) = passed?;
            let key = keys
                .iter()
                .map(|k| k.eval(values))
                .collect::<Result<Vec<_>, _>>()?;
            let at = slot(&mut index, &mut groups, key, || Group::new(calls.len()));
            groups[at].1.add(calls, values, w)?;
        }
        if groups.is_empty() && keys.is_empty() {
            groups.push((Vec::new(), Group::new(calls.len())));
        }
        groups
            .into_iter()
            .map(|(key, g)| g.row(calls, key))
            .collect()
    }

    fn reduce_rows(
        &self,
        rows: &[Vec<Value>],
        exprs: &[Scalar],
    ) -> Result<Vec<Vec<Value>>, EvalError> {
        let mut index: HashMap<Vec<Value>, usize> = HashMap::new();
        let mut out: Vec<(Vec<Value>, i128)> = Vec::new();
        for passed in self.passing(rows) {
            let (values, w) = passed?;
            let row = exprs
                .iter()
                .map(|e| e.eval(values))
                .collect::<Result<Vec<_>, _>>()?;
            let at = slot(&mut index, &mut out, row, || 0);
            out[at].1 += w;
        }
        out.into_iter()
            .filter(|(_, w)| *w != 0)
            .map(|(mut row, w)| {
                row.push(Value::Int(
                    i64::try_from(w).map_err(|_| EvalError::OutOfRange("bigint"))?,
                ));
                Ok(row)
            })
            .collect()
    }
}

/// The position of `key`'s entry in `items` (first-seen order), added with `new()` when absent.
fn slot<T>(
    index: &mut HashMap<Vec<Value>, usize>,
    items: &mut Vec<(Vec<Value>, T)>,
    key: Vec<Value>,
    new: impl FnOnce() -> T,
) -> usize {
    *index.entry(key.clone()).or_insert_with(|| {
        items.push((key, new()));
        items.len() - 1
    })
}

fn conjunction(mut parts: Vec<Scalar>) -> Option<Scalar> {
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(Scalar::And(parts)),
    }
}

/// A group's running Δ.
struct Group {
    /// Σ w over the group's rows; None before the first row (the SQL sum of nothing is NULL).
    count: Option<i128>,
    /// Per call: Σ w over counted rows, and for sums Σ w·arg (None while no argument was non-NULL).
    counted: Vec<Option<i128>>,
    sums: Vec<Option<Decimal>>,
}

impl Group {
    fn new(calls: usize) -> Group {
        Group {
            count: None,
            counted: vec![None; calls],
            sums: vec![None; calls],
        }
    }

    fn add(&mut self, calls: &[LocalCall], values: &[Value], w: i128) -> Result<(), EvalError> {
        self.count = Some(self.count.unwrap_or(0) + w);
        for (j, call) in calls.iter().enumerate() {
            if let Some(f) = &call.filter {
                if !f.holds(values)? {
                    continue;
                }
            }
            let arg = match &call.arg {
                Some(a) => a.eval(values)?,
                None => Value::Bool(true),
            };
            if arg.is_null() {
                continue;
            }
            self.counted[j] = Some(self.counted[j].unwrap_or(0) + w);
            if let LocalFunc::Sum(_) = call.func {
                let product = arg
                    .decimal()
                    .ok_or(EvalError::Mistyped)?
                    .checked_mul(Decimal::from_int(w as i64));
                let product = product.ok_or(EvalError::OutOfRange("numeric"))?;
                let sum = match self.sums[j] {
                    Some(s) => s
                        .checked_add(product)
                        .ok_or(EvalError::OutOfRange("numeric"))?,
                    None => product,
                };
                self.sums[j] = Some(sum);
            }
        }
        Ok(())
    }

    fn row(self, calls: &[LocalCall], mut key: Vec<Value>) -> Result<Vec<Value>, EvalError> {
        let bigint = |v: i128| -> Result<Value, EvalError> {
            i64::try_from(v)
                .map(Value::Int)
                .map_err(|_| EvalError::OutOfRange("bigint"))
        };
        key.push(match self.count {
            Some(c) => bigint(c)?,
            None => Value::Null,
        });
        for (j, call) in calls.iter().enumerate() {
            let counted = bigint(self.counted[j].unwrap_or(0))?;
            match call.func {
                LocalFunc::Sum(ty) => {
                    key.push(match (self.sums[j], ty) {
                        (None, _) => Value::Null,
                        (Some(s), LocalType::Int8) => {
                            if s.scale != 0 {
                                return Err(EvalError::Mistyped);
                            }
                            bigint(s.mantissa)?
                        }
                        (Some(s), _) => Value::Numeric(s),
                    });
                    key.push(counted);
                }
                _ => key.push(counted),
            }
        }
        Ok(key)
    }
}

type Flat = (
    TableRef,
    Vec<String>,
    Vec<LocalType>,
    Vec<(Scalar, LocalType)>,
    Vec<Scalar>,
);

/// A chain of filters and projections over one scan: the scan's columns and types, what each of the
/// chain's output columns is over them, and its filters.
fn flatten(node: &Node) -> Result<Flat, NotLocal> {
    match node {
        Node::Scan {
            table,
            columns,
            types,
        } => {
            let local: Vec<LocalType> = types
                .iter()
                .map(|t| LocalType::of_sql(t).ok_or_else(|| format!("a source column of type {t}")))
                .collect::<Result<_, _>>()?;
            if local.len() != columns.len() {
                return Err("a scan without column types".into());
            }
            let inputs = local
                .iter()
                .enumerate()
                .map(|(i, t)| (Scalar::Column(i), *t))
                .collect();
            Ok((table.clone(), columns.clone(), local, inputs, Vec::new()))
        }
        Node::Filter { input, predicate } => {
            let (t, c, ty, inputs, mut filters) = flatten(input)?;
            match compile(predicate, &inputs)? {
                (s, LocalType::Bool) => filters.push(s),
                _ => return Err("a WHERE that is not boolean".into()),
            }
            Ok((t, c, ty, inputs, filters))
        }
        Node::Project { input, exprs } => {
            let (t, c, ty, inputs, filters) = flatten(input)?;
            let projected = exprs
                .iter()
                .map(|e| compile(e, &inputs))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((t, c, ty, projected, filters))
        }
        Node::Join { .. } | Node::SemiJoin { .. } => Err("a join".into()),
        Node::Aggregate { .. } => Err("an aggregate not kept from stored state".into()),
        _ => Err("an input that is not a filter or projection of one table".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dvm::optree::{AggCall, Expr, ExprPart};

    fn call(func: AggFunc, arg: Option<usize>, arg_type: &str, filter: Option<Expr>) -> AggCall {
        let less_than = if matches!(func, AggFunc::Min | AggFunc::Max) {
            "OPERATOR(pg_catalog.<)"
        } else {
            ""
        };
        AggCall {
            func,
            arg: arg.map(Expr::col),
            filter,
            arg_type: arg_type.into(),
            less_than: less_than.into(),
            fixed_scale: None,
        }
    }

    /// `(#n > v)` as the analyser writes it.
    fn greater(n: usize, v: &str) -> Expr {
        Expr {
            parts: vec![
                ExprPart::Sql("(".into()),
                ExprPart::Col(n),
                ExprPart::Sql(format!(" > {v})")),
            ],
        }
    }

    /// `SELECT <keys>, <calls> FROM sales(region text, amount numeric(12,2), qty integer)
    /// WHERE qty > 2 GROUP BY <keys>`.
    fn tree(keys: Vec<usize>, key_types: &[&str], calls: Vec<AggCall>) -> OpTree {
        let scan = Node::Scan {
            table: TableRef {
                relid: 10,
                schema: "public".into(),
                name: "sales".into(),
            },
            columns: vec!["region".into(), "amount".into(), "qty".into()],
            types: vec!["text".into(), "numeric(12,2)".into(), "integer".into()],
        };
        let filtered = Node::Filter {
            input: Box::new(scan),
            predicate: greater(2, "2"),
        };
        let n = keys.len() + calls.len();
        OpTree {
            root: Node::Project {
                input: Box::new(Node::Aggregate {
                    input: Box::new(filtered),
                    group_by: keys.into_iter().map(Expr::col).collect(),
                    aggregates: calls.iter().map(|_| Expr::sql("agg(...)")).collect(),
                    calls,
                    key_types: key_types.iter().map(|t| t.to_string()).collect(),
                    key_eq: vec![],
                }),
                exprs: (0..n).map(Expr::col).collect(),
            },
            ctes: vec![],
            output_names: (0..n).map(|i| format!("o{i}")).collect(),
            top_k: None,
            unique_keys: Vec::new(),
            full_from_tree: false,
            collected_subqueries: Vec::new(),
        }
    }

    fn row(region: Option<&str>, amount: Option<&str>, qty: Option<i64>, w: i64) -> Vec<Value> {
        vec![
            region.map_or(Value::Null, |r| Value::Text(r.into())),
            amount.map_or(Value::Null, |a| Value::Numeric(Decimal::parse(a).unwrap())),
            qty.map_or(Value::Null, Value::Int),
            Value::Int(w),
        ]
    }

    fn num(s: &str) -> Value {
        Value::Numeric(Decimal::parse(s).unwrap())
    }

    #[test]
    fn a_batch_reduces_to_the_delta_rule_s_group_rows() {
        let t = tree(
            vec![0],
            &["text"],
            vec![
                call(AggFunc::CountStar, None, "", None),
                call(AggFunc::Sum, Some(1), "numeric(12,2)", None),
                call(AggFunc::Avg, Some(2), "integer", None),
                call(
                    AggFunc::Count,
                    Some(1),
                    "numeric(12,2)",
                    Some(greater(2, "5")),
                ),
            ],
        );
        let plan = LocalPlan::of(&t).unwrap();
        let names: Vec<&str> = plan.staged.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["k0", "dcount", "da0", "da1", "dn1", "da2", "dn2", "da3"]
        );
        let rows = vec![
            row(Some("eu"), Some("1.50"), Some(3), 1),
            row(Some("eu"), None, Some(7), 1),
            row(Some("eu"), Some("2.25"), Some(9), -1),
            row(Some("us"), Some("5.00"), Some(1), 1), // filtered out: qty <= 2
            row(None, Some("0.10"), Some(4), 1),
            row(Some("us"), Some("1.00"), None, 1), // filtered out: NULL qty
            row(Some("ap"), None, Some(3), 1),
            row(Some("ap"), None, Some(3), -1),
        ];
        let out = plan.reduce(&rows).unwrap();
        let int = Value::Int;
        assert_eq!(
            out,
            vec![
                // eu: count 1+1-1; sum 1.50 - 2.25; avg's sum 3+7-9 over 1 net input; count(amount) where qty > 5: +0 -1
                vec![
                    Value::Text("eu".into()),
                    int(1),
                    int(1),
                    num("-0.75"),
                    int(0),
                    int(1),
                    int(1),
                    int(-1)
                ],
                vec![
                    Value::Null,
                    int(1),
                    int(1),
                    num("0.10"),
                    int(1),
                    int(4),
                    int(1),
                    int(0)
                ],
                // ap: inserted and deleted in one batch; its sum of no non-NULL amounts is NULL
                vec![
                    Value::Text("ap".into()),
                    int(0),
                    int(0),
                    Value::Null,
                    int(0),
                    int(0),
                    int(0),
                    int(0)
                ],
            ]
        );
        let types = plan.staged_types();
        let bytes = super::super::copy::encode(&out, &types).unwrap();
        assert_eq!(super::super::copy::decode(&bytes, &types).unwrap(), out);
    }

    #[test]
    fn a_global_aggregate_always_has_its_one_row() {
        let plan = LocalPlan::of(&tree(
            vec![],
            &[],
            vec![call(AggFunc::Sum, Some(2), "integer", None)],
        ))
        .unwrap();
        assert_eq!(
            plan.staged_types(),
            [LocalType::Int8, LocalType::Int8, LocalType::Int8]
        );
        let filtered_out = vec![row(Some("eu"), None, Some(1), 1)];
        assert_eq!(
            plan.reduce(&filtered_out).unwrap(),
            vec![vec![Value::Null, Value::Null, Value::Int(0)]]
        );
        // A replaced row (a TRUNCATE in the batch): nothing to reduce it to, even where the filter
        // would drop its NULLs.
        let truncated = vec![row(None, None, Some(1), 1), row(None, None, None, 0)];
        assert_eq!(plan.reduce(&truncated), Err(EvalError::Replaced));
        let big = vec![
            row(None, None, Some(i32::MAX as i64), 1),
            row(None, None, Some(i32::MAX as i64), 1),
        ];
        assert_eq!(
            plan.reduce(&big).unwrap(),
            vec![vec![
                Value::Int(2),
                Value::Int(2 * i32::MAX as i64),
                Value::Int(2)
            ]]
        );
    }

    #[test]
    fn a_numeric_sum_with_a_fixed_scale_is_reduced_with_postgresql_s_scale() {
        // sum(amount * qty): numeric(12,2) times integer, every value of scale 2 (dvm/scale.rs).
        let product = Expr {
            parts: vec![
                ExprPart::Sql("(".into()),
                ExprPart::Col(1),
                ExprPart::Sql(" * ".into()),
                ExprPart::Col(2),
                ExprPart::Sql(")".into()),
            ],
        };
        let mut sum = call(AggFunc::Sum, None, "numeric", None);
        sum.arg = Some(product);
        let unknown = tree(vec![0], &["text"], vec![sum.clone()]);
        assert_eq!(
            LocalPlan::of(&unknown).unwrap_err(),
            "a sum over numeric without a fixed scale"
        );
        sum.fixed_scale = Some(2);
        let plan = LocalPlan::of(&tree(vec![0], &["text"], vec![sum])).unwrap();
        let rows = vec![
            row(Some("eu"), Some("1.50"), Some(4), 1),
            row(Some("eu"), Some("2.25"), Some(4), -1),
        ];
        // 6.00 - 9.00: scale 2 kept, as PostgreSQL's numeric product and sum keep it.
        let out = plan.reduce(&rows).unwrap();
        assert_eq!(
            out,
            vec![vec![
                Value::Text("eu".into()),
                Value::Int(0),
                num("-3.00"),
                Value::Int(0)
            ]]
        );
        let Value::Numeric(d) = &out[0][2] else {
            panic!("not a numeric: {:?}", out[0][2]);
        };
        assert_eq!(d.scale, 2);
    }

    #[test]
    fn what_stays_on_the_server_says_why() {
        let refused = |t: OpTree| LocalPlan::of(&t).unwrap_err();
        assert_eq!(
            refused(tree(
                vec![0],
                &["text"],
                vec![call(AggFunc::Max, Some(2), "integer", None)]
            )),
            "MIN/MAX"
        );
        assert_eq!(
            refused(tree(
                vec![1],
                &["numeric(12,2)"],
                vec![call(AggFunc::CountStar, None, "", None)]
            )),
            "a numeric group key"
        );
        assert_eq!(
            refused(tree(
                vec![0],
                &["text"],
                vec![call(AggFunc::Sum, Some(1), "numeric", None)]
            )),
            "a sum over numeric without a fixed scale"
        );
        assert_eq!(
            refused(tree(
                vec![0],
                &["text"],
                vec![call(AggFunc::Other, Some(1), "text", None)]
            )),
            "an aggregate not kept from stored state"
        );
    }

    #[test]
    fn a_filter_and_projection_reduces_to_consolidated_rows() {
        let scan = Node::Scan {
            table: TableRef {
                relid: 10,
                schema: "public".into(),
                name: "sales".into(),
            },
            columns: vec!["region".into(), "amount".into(), "qty".into()],
            types: vec!["text".into(), "numeric".into(), "integer".into()],
        };
        let doubled = Expr {
            parts: vec![
                ExprPart::Sql("(".into()),
                ExprPart::Col(2),
                ExprPart::Sql(" * 2)".into()),
            ],
        };
        let t = OpTree {
            root: Node::Project {
                input: Box::new(Node::Filter {
                    input: Box::new(scan),
                    predicate: greater(2, "2"),
                }),
                exprs: vec![Expr::col(0), Expr::col(1), doubled],
            },
            ctes: vec![],
            output_names: vec!["region".into(), "amount".into(), "q2".into()],
            top_k: None,
            unique_keys: Vec::new(),
            full_from_tree: false,
            collected_subqueries: Vec::new(),
        };
        let plan = LocalPlan::of(&t).unwrap();
        let types: Vec<LocalType> = plan.staged.iter().map(|(_, t)| *t).collect();
        assert_eq!(
            types,
            [
                LocalType::Text,
                LocalType::Numeric,
                LocalType::Int4,
                LocalType::Int8
            ]
        );
        let rows = vec![
            row(Some("eu"), Some("1.5"), Some(3), 1),
            row(Some("eu"), Some("1.50"), Some(3), 1), // equal, printed differently: a row of its own
            row(Some("eu"), Some("1.5"), Some(3), 1),
            row(Some("us"), Some("2"), Some(4), 1),
            row(Some("us"), Some("2"), Some(4), -1), // cancels out
            row(Some("ap"), Some("9"), Some(1), 1),  // filtered out
            row(None, None, Some(5), -1),
        ];
        let text = |s: &str| Value::Text(s.into());
        assert_eq!(
            plan.reduce(&rows).unwrap(),
            vec![
                vec![text("eu"), num("1.5"), Value::Int(6), Value::Int(2)],
                vec![text("eu"), num("1.50"), Value::Int(6), Value::Int(1)],
                vec![Value::Null, Value::Null, Value::Int(10), Value::Int(-1)],
            ]
        );
    }

    #[test]
    fn local_plans_survive_json() {
        let plan = LocalPlan::of(&tree(
            vec![0],
            &["text"],
            vec![call(AggFunc::Count, Some(1), "numeric(12,2)", None)],
        ))
        .unwrap();
        let back: LocalPlan = serde_json::from_str(&serde_json::to_string(&plan).unwrap()).unwrap();
        assert_eq!(back, plan);
    }
}
