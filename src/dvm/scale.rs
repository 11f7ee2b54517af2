//! Fixed decimal scales. PostgreSQL keeps a numeric's trailing zeros (its display scale): a
//! `numeric(15,2)` value has exactly two decimals, `a + b` and `a - b` have the larger of their
//! operands' decimals and `a * b` the sum of them. So an expression built from such columns, integers
//! and literals with `+`, `-` and `*` has one scale for every row, and so does a SUM of it: the engine
//! then needs no hidden largest-scale state for that SUM, and a group key of it prints equal values
//! alike (see `diff::algebraic`). So do PostgreSQL's rounding functions with a literal number of
//! decimals and `EXTRACT` of a whole field. Anything else — division, other functions, CASE,
//! unconstrained `numeric` columns — has no fixed scale here.

use crate::dvm::optree::{AggFunc, Expr, Node, OpTree};
use sqlparser::ast::{
    BinaryOperator, CeilFloorKind, DataType, DateTimeField, ExactNumberInfo, Expr as SqlExpr,
    Function, FunctionArg, FunctionArgExpr, FunctionArguments, UnaryOperator, Value,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// PostgreSQL's largest numeric display scale.
const MAX_SCALE: u64 = 1000;

/// How input column `i` is written while an expression is parsed: a name no query text can hold.
fn placeholder(i: usize) -> String {
    format!("__pgt_scale_col_{i}")
}

/// The number of decimals every non-NULL value of `expr` has, given its input columns' (`input`),
/// or None when it can vary from row to row.
pub fn expr_scale(expr: &Expr, input: &dyn Fn(usize) -> Option<u64>) -> Option<u64> {
    let text = expr.render(&placeholder);
    let parsed = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&text)
        .ok()?
        .parse_expr()
        .ok()?;
    let column =
        |name: &str| -> Option<u64> { input(name.strip_prefix("__pgt_scale_col_")?.parse().ok()?) };
    walk(&parsed, &column)
}

fn walk(e: &SqlExpr, column: &dyn Fn(&str) -> Option<u64>) -> Option<u64> {
    match e {
        SqlExpr::Identifier(id) => column(&id.value),
        SqlExpr::Nested(inner) => walk(inner, column),
        SqlExpr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => walk(expr, column),
        SqlExpr::BinaryOp { left, op, right } => {
            let (l, r) = (walk(left, column)?, walk(right, column)?);
            match op {
                BinaryOperator::Plus | BinaryOperator::Minus => Some(l.max(r)),
                BinaryOperator::Multiply => Some(l + r).filter(|s| *s <= MAX_SCALE),
                _ => None,
            }
        }
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => literal_scale(n),
            _ => None,
        },
        SqlExpr::Cast {
            expr, data_type, ..
        } => cast_scale(walk(expr, column), data_type),
        // `numeric` since PostgreSQL 14; these fields are whole numbers whatever the input's type.
        SqlExpr::Extract { field, .. } if whole_field(field) => Some(0),
        SqlExpr::Function(f) => function_scale(f, column),
        SqlExpr::Ceil {
            field: CeilFloorKind::DateTimeField(DateTimeField::NoDateTime),
            ..
        }
        | SqlExpr::Floor {
            field: CeilFloorKind::DateTimeField(DateTimeField::NoDateTime),
            ..
        } => Some(0),
        _ => None,
    }
}

/// Decimals of a call of one of PostgreSQL's rounding functions, or of `abs`: `round(x, 2)` has two
/// whatever `x` has; `round(x)`, `trunc(x)` and `ceiling(x)` none (`ceil` and `floor` parse as
/// expressions of their own, in `walk`). Over a float these return a whole float, which cast to
/// numeric has no decimals either; mixed with a numeric it stays a float, and the query text shows
/// the numeric side's cast to `double precision`, which has no fixed scale here.
fn function_scale(f: &Function, column: &dyn Fn(&str) -> Option<u64>) -> Option<u64> {
    let name = match f.name.0.as_slice() {
        [name] => name.as_ident()?.value.as_str(),
        [schema, name] if schema.as_ident()?.value == "pg_catalog" => {
            name.as_ident()?.value.as_str()
        }
        _ => return None,
    };
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    if f.filter.is_some()
        || f.over.is_some()
        || list.duplicate_treatment.is_some()
        || !list.clauses.is_empty()
    {
        return None;
    }
    let args = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    match (name, args.as_slice()) {
        ("round" | "trunc" | "ceiling", [_]) => Some(0),
        ("round" | "trunc", [_, digits]) => {
            // PostgreSQL clamps the number of decimals to 0..=2000 (NUMERIC_MAX_RESULT_SCALE).
            Some(
                u64::try_from(integer_literal(digits)?)
                    .unwrap_or(0)
                    .min(2000),
            )
        }
        ("abs", [x]) => walk(x, column),
        _ => None,
    }
}

/// The value of an integer literal, possibly negative or cast to an integer type.
fn integer_literal(e: &SqlExpr) -> Option<i64> {
    match e {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            Value::SingleQuotedString(n) => n.parse().ok(),
            _ => None,
        },
        SqlExpr::Nested(inner) => integer_literal(inner),
        SqlExpr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => integer_literal(expr).map(|n| -n),
        SqlExpr::Cast {
            expr,
            data_type: DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_),
            ..
        } => integer_literal(expr),
        _ => None,
    }
}

/// EXTRACT fields whose value has no decimals for every input type (`second`, `milliseconds`,
/// `epoch` and `julian` have some, depending on the type).
fn whole_field(field: &DateTimeField) -> bool {
    use DateTimeField as F;
    matches!(
        field,
        F::Year
            | F::Month
            | F::Week(None)
            | F::Day
            | F::Hour
            | F::Minute
            | F::Century
            | F::Decade
            | F::Dow
            | F::Doy
            | F::Isodow
            | F::Isoyear
            | F::Microseconds
            | F::Millennium
            | F::Quarter
            | F::Timezone
            | F::TimezoneHour
            | F::TimezoneMinute
    )
}

/// Decimals of a numeric literal as written (`1.50`: 2, `7`: 0); None with an exponent.
fn literal_scale(n: &str) -> Option<u64> {
    if n.contains(['e', 'E']) {
        return None;
    }
    Some(n.split_once('.').map_or(0, |(_, d)| d.len() as u64))
}

/// The scale of a cast of a value of scale `inner` to `to`.
fn cast_scale(inner: Option<u64>, to: &DataType) -> Option<u64> {
    match to {
        DataType::Numeric(info) | DataType::Decimal(info) => match info {
            ExactNumberInfo::None => inner,
            ExactNumberInfo::Precision(_) => Some(0),
            ExactNumberInfo::PrecisionAndScale(_, s) => u64::try_from(*s).ok(),
        },
        DataType::SmallInt(_)
        | DataType::Int(_)
        | DataType::Integer(_)
        | DataType::BigInt(_)
        | DataType::Int2(_)
        | DataType::Int4(_)
        | DataType::Int8(_) => Some(0),
        _ => None,
    }
}

/// Decimals of every value of a column of SQL type `t` (as `format_type` prints it).
pub fn type_scale(t: &str) -> Option<u64> {
    match t {
        "smallint" | "integer" | "bigint" => Some(0),
        _ => {
            let inner = t.strip_prefix("numeric(")?.strip_suffix(')')?;
            match inner.split_once(',') {
                Some((_, s)) => s.trim().parse().ok(),
                None => Some(0),
            }
        }
    }
}

/// Decimals of every value of `node`'s output column `col`, if fixed.
pub fn column_scale(tree: &OpTree, node: &Node, col: usize) -> Option<u64> {
    let over = |input: &Node, e: &Expr| expr_scale(e, &|i| column_scale(tree, input, i));
    match node {
        Node::Scan { types, .. } => type_scale(types.get(col)?),
        Node::Filter { input, .. } | Node::Distinct { input } => column_scale(tree, input, col),
        Node::SemiJoin { left, .. } => column_scale(tree, left, col),
        Node::Unit => None,
        // A function's values have whatever scale it gives them.
        Node::Expand { input, .. } => (col < input.arity())
            .then(|| column_scale(tree, input, col))
            .flatten(),
        Node::Project { input, exprs } => over(input, exprs.get(col)?),
        Node::Join { left, right, .. } => match col.checked_sub(left.arity()) {
            None => column_scale(tree, left, col),
            Some(r) => column_scale(tree, right, r),
        },
        Node::Aggregate {
            input,
            group_by,
            aggregates,
            calls,
            ..
        } => match col.checked_sub(group_by.len()) {
            None => over(input, group_by.get(col)?),
            // A count has no decimals; a sum of values of one scale has that scale, and MIN/MAX
            // are one of the values. (AVG divides: its scale depends on the values.)
            Some(j) => {
                let call = calls.get(j).filter(|_| calls.len() == aggregates.len())?;
                match call.func {
                    AggFunc::CountStar | AggFunc::Count => Some(0),
                    AggFunc::Sum | AggFunc::Min | AggFunc::Max => over(input, call.arg.as_ref()?),
                    AggFunc::Avg | AggFunc::Other => None,
                }
            }
        },
        Node::UnionAll { inputs } => {
            let mut scales = inputs.iter().map(|i| column_scale(tree, i, col));
            let first = scales.next()??;
            scales.all(|s| s == Some(first)).then_some(first)
        }
        Node::CteRef { id, .. } => column_scale(tree, tree.ctes.get(*id)?, col),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dvm::optree::{ExprPart, TableRef};

    fn expr(parts: &[&str]) -> Expr {
        // "#N" is input column N, anything else SQL text.
        Expr {
            parts: parts
                .iter()
                .map(|p| match p.strip_prefix('#') {
                    Some(n) => ExprPart::Col(n.parse().unwrap()),
                    None => ExprPart::Sql(p.to_string()),
                })
                .collect(),
        }
    }

    /// Columns: #0 numeric(15,2), #1 numeric(15,2), #2 integer, #3 numeric, #4 double precision.
    fn scale_of(parts: &[&str]) -> Option<u64> {
        let types = [
            "numeric(15,2)",
            "numeric(15,2)",
            "integer",
            "numeric",
            "double precision",
        ];
        expr_scale(&expr(parts), &|i| type_scale(types[i]))
    }

    #[test]
    fn sums_differences_and_products_of_fixed_scales_have_a_fixed_scale() {
        // TPC-H's revenue and Q9's amount, as pg_get_viewdef prints them.
        assert_eq!(
            scale_of(&["(", "#0", " * ((1)::numeric - ", "#1", "))"]),
            Some(4)
        );
        assert_eq!(
            scale_of(&[
                "((",
                "#0",
                " * ((1)::numeric - ",
                "#1",
                ")) - (",
                "#0",
                " * ",
                "#1",
                "))"
            ]),
            Some(4)
        );
        assert_eq!(scale_of(&["(", "#0", " + ", "#2", ")"]), Some(2));
        assert_eq!(scale_of(&["(", "#0", " * 1.50)"]), Some(4));
        assert_eq!(scale_of(&["- ", "#0"]), Some(2));
        assert_eq!(scale_of(&["(", "#2", ")::numeric"]), Some(0));
        assert_eq!(scale_of(&["(", "#3", ")::numeric(12,3)"]), Some(3));
        assert_eq!(scale_of(&["(", "#4", ")::integer"]), Some(0));
    }

    #[test]
    fn whole_extract_fields_have_no_decimals_and_the_others_no_fixed_scale() {
        // TPC-H Q7's and Q9's year, as pg_get_viewdef prints it (#4 standing in for a date).
        assert_eq!(scale_of(&["EXTRACT(year FROM ", "#4", ")"]), Some(0));
        assert_eq!(scale_of(&["EXTRACT(dow FROM ", "#4", ")"]), Some(0));
        assert_eq!(
            scale_of(&["(EXTRACT(month FROM ", "#4", ") * ", "#0", ")"]),
            Some(2)
        );
        // 6 for a timestamp, 0 for a date: not known from the expression.
        assert_eq!(scale_of(&["EXTRACT(epoch FROM ", "#4", ")"]), None);
        assert_eq!(scale_of(&["EXTRACT(second FROM ", "#4", ")"]), None);
        assert_eq!(scale_of(&["EXTRACT(milliseconds FROM ", "#4", ")"]), None);
        assert_eq!(scale_of(&["EXTRACT(julian FROM ", "#4", ")"]), None);
    }

    #[test]
    fn rounding_functions_fix_the_scale_and_abs_keeps_it() {
        assert_eq!(scale_of(&["round(", "#3", ", 2)"]), Some(2));
        assert_eq!(scale_of(&["pg_catalog.round(", "#3", ", 3)"]), Some(3));
        assert_eq!(scale_of(&["trunc(", "#3", ", '-2'::integer)"]), Some(0));
        assert_eq!(scale_of(&["round(", "#3", ", (-1))"]), Some(0));
        assert_eq!(scale_of(&["round(", "#3", ")"]), Some(0));
        assert_eq!(scale_of(&["round(", "#3", ", 5000)"]), Some(2000));
        assert_eq!(scale_of(&["floor(", "#3", ")"]), Some(0));
        assert_eq!(scale_of(&["(round(", "#4", "))::numeric"]), Some(0));
        assert_eq!(scale_of(&["abs(", "#0", ")"]), Some(2));
        assert_eq!(scale_of(&["(round(", "#3", ", 1) * ", "#0", ")"]), Some(3));
        // Not a literal, not pg_catalog's, or not a rounding function.
        assert_eq!(scale_of(&["round(", "#3", ", ", "#2", ")"]), None);
        assert_eq!(scale_of(&["public.round(", "#3", ", 2)"]), None);
        assert_eq!(scale_of(&["abs(", "#3", ")"]), None);
        assert_eq!(scale_of(&["sqrt(", "#0", ")"]), None);
    }

    #[test]
    fn anything_whose_scale_depends_on_the_values_has_none() {
        assert_eq!(scale_of(&["#3"]), None, "numeric without a declared scale");
        assert_eq!(scale_of(&["(", "#0", " / ", "#1", ")"]), None, "division");
        assert_eq!(scale_of(&["sqrt(", "#0", ")"]), None, "a function");
        assert_eq!(scale_of(&["(", "#0", " * ", "#3", ")"]), None);
        assert_eq!(
            scale_of(&["(", "#4", ")::numeric"]),
            None,
            "a float's decimals vary"
        );
        assert_eq!(
            scale_of(&["(", "#0", " * 1e2)"]),
            None,
            "a literal with an exponent"
        );
        assert_eq!(
            scale_of(&[
                "CASE WHEN ",
                "#2",
                " > 0 THEN ",
                "#0",
                " ELSE ",
                "#1",
                " END"
            ]),
            None
        );
        assert_eq!(scale_of(&["'-1.5'::numeric"]), None);
    }

    #[test]
    fn column_scales_follow_projections_joins_and_unions() {
        let scan = |relid: u32, types: &[&str]| Node::Scan {
            table: TableRef {
                relid,
                schema: "public".into(),
                name: format!("t{relid}"),
            },
            columns: (0..types.len()).map(|i| format!("c{i}")).collect(),
            types: types.iter().map(|t| t.to_string()).collect(),
        };
        let project = Node::Project {
            input: Box::new(Node::Join {
                kind: crate::dvm::optree::JoinKind::Inner,
                left: Box::new(scan(1, &["integer", "numeric(15,2)"])),
                right: Box::new(scan(2, &["numeric(12,4)", "text"])),
                on: None,
                null_types: vec![],
            }),
            exprs: vec![
                expr(&["(", "#1", " * ", "#2", ")"]),
                expr(&["#3"]),
                expr(&["#0"]),
            ],
        };
        let tree = OpTree {
            root: project.clone(),
            ctes: vec![],
            output_names: vec![],
            top_k: None,
            unique_keys: Vec::new(),
            full_from_tree: false,
            collected_subqueries: Vec::new(),
        };
        assert_eq!(column_scale(&tree, &project, 0), Some(6));
        assert_eq!(column_scale(&tree, &project, 1), None);
        assert_eq!(column_scale(&tree, &project, 2), Some(0));
        let union = |a: &str, b: &str| Node::UnionAll {
            inputs: vec![scan(1, &[a]), scan(2, &[b])],
        };
        assert_eq!(
            column_scale(&tree, &union("numeric(9,2)", "numeric(5,2)"), 0),
            Some(2)
        );
        assert_eq!(
            column_scale(&tree, &union("numeric(9,2)", "numeric(5,1)"), 0),
            None
        );
    }

    #[test]
    fn aggregate_outputs_keep_the_scale_of_a_sum_count_or_extremum() {
        // TPC-H Q15: max() over revenue0's sum of numeric(15,2) products, four decimals each.
        let call = |func: AggFunc, arg: &[&str]| crate::dvm::optree::AggCall {
            func,
            arg: (!arg.is_empty()).then(|| expr(arg)),
            ..crate::dvm::optree::AggCall::other()
        };
        let calls = vec![
            call(AggFunc::Sum, &["(", "#0", " * ", "#1", ")"]),
            call(AggFunc::CountStar, &[]),
            call(AggFunc::Max, &["#1"]),
            call(AggFunc::Avg, &["#0"]),
            call(AggFunc::Min, &["#2"]),
            call(AggFunc::Other, &["#0"]),
        ];
        let aggregate = |calls: Vec<crate::dvm::optree::AggCall>| Node::Aggregate {
            input: Box::new(Node::Scan {
                table: TableRef {
                    relid: 1,
                    schema: "public".into(),
                    name: "t".into(),
                },
                columns: vec!["a".into(), "b".into(), "c".into()],
                types: vec![
                    "numeric(15,2)".into(),
                    "numeric(15,2)".into(),
                    "numeric".into(),
                ],
            }),
            group_by: vec![expr(&["#0"])],
            aggregates: calls.iter().map(|_| expr(&["f(", "#0", ")"])).collect(),
            calls,
            key_types: vec![],
            key_eq: vec![],
        };
        let node = aggregate(calls);
        let tree = OpTree {
            root: node.clone(),
            ctes: vec![],
            output_names: vec![],
            top_k: None,
            unique_keys: Vec::new(),
            full_from_tree: false,
            collected_subqueries: Vec::new(),
        };
        let scales: Vec<Option<u64>> = (0..7).map(|c| column_scale(&tree, &node, c)).collect();
        assert_eq!(
            scales,
            [Some(2), Some(4), Some(0), Some(2), None, None, None]
        );
        // A tree from before 0.2.0, with no calls recorded: nothing known of its aggregates.
        let Node::Aggregate {
            input,
            group_by,
            aggregates,
            ..
        } = node
        else {
            unreachable!()
        };
        let old = Node::Aggregate {
            input,
            group_by,
            aggregates,
            calls: vec![],
            key_types: vec![],
            key_eq: vec![],
        };
        assert_eq!(column_scale(&tree, &old, 1), None);
    }
}
