//! Expressions a worker evaluates locally: a typed tree built on the server from the operator tree's
//! SQL templates, so the worker itself never parses SQL. Only what has exactly PostgreSQL's meaning
//! here is accepted — integer and exact numeric arithmetic, comparisons, AND/OR/NOT, IS [NOT] NULL,
//! casts between those types; everything else (functions, text ordering, numeric division, casts
//! that round or truncate) keeps the refresh on the server.

use super::value::{Decimal, LocalType, Value};
use crate::dvm::optree::Expr;
use serde::{Deserialize, Serialize};
use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, ExactNumberInfo, Expr as SqlExpr, UnaryOperator,
    Value as SqlValue,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    /// Integer division (truncates toward zero, as PostgreSQL's does).
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compare {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A constant, as the plan carries it (numerics as their exact text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Literal {
    Null,
    Int(i64),
    Numeric(String),
    Text(String),
    Bool(bool),
}

/// A typed expression over the source's columns (the scan's column positions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scalar {
    Column(usize),
    Const(Literal),
    /// `ty` is the result type: integer results are checked against its range.
    Arith {
        op: Arith,
        left: Box<Scalar>,
        right: Box<Scalar>,
        ty: LocalType,
    },
    Neg {
        arg: Box<Scalar>,
        ty: LocalType,
    },
    Compare {
        op: Compare,
        left: Box<Scalar>,
        right: Box<Scalar>,
    },
    And(Vec<Scalar>),
    Or(Vec<Scalar>),
    Not(Box<Scalar>),
    IsNull {
        arg: Box<Scalar>,
        negated: bool,
    },
    /// A cast between integer types or from an integer to numeric (`ty`); checked, never rounding.
    Cast {
        arg: Box<Scalar>,
        ty: LocalType,
    },
}

/// Why a value could not be computed locally; the server then refreshes the batch itself (and
/// raises the same error, if PostgreSQL would).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    OutOfRange(&'static str),
    DivisionByZero,
    /// A value of a type the expression does not expect (a plan built for other column types).
    Mistyped,
    /// A replaced row (weight 0: a TRUNCATE, or a stream table's rows replaced as a whole; see
    /// cdc/replaced.rs): no delta stands for it, the server refreshes FULL.
    Replaced,
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalError::OutOfRange(ty) => write!(f, "{ty} out of range"),
            EvalError::DivisionByZero => write!(f, "division by zero"),
            EvalError::Mistyped => write!(f, "a value of an unexpected type"),
            EvalError::Replaced => write!(
                f,
                "the batch replaces the source's rows as a whole (TRUNCATE)"
            ),
        }
    }
}

/// What an input position of a template stands for: an expression over the source's columns.
pub type Inputs<'a> = &'a [(Scalar, LocalType)];

/// Marker identifiers for column references while a template is parsed.
const COLUMN_PREFIX: &str = "__pgt_local_";

/// The local form of a template over `inputs`, and its type; Err names what is not local.
pub fn compile(expr: &Expr, inputs: Inputs<'_>) -> Result<(Scalar, LocalType), String> {
    let text = expr.render(&|n| format!("{COLUMN_PREFIX}{n}"));
    let parsed = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| format!("expression not understood: {e}"))?;
    let (scalar, ty) = typed(&parsed, inputs)?;
    Ok((scalar, ty.ok_or_else(|| "an untyped constant".to_string())?))
}

/// The type is None for a string literal or NULL not yet given a type by a cast or a comparison.
fn typed(e: &SqlExpr, inputs: Inputs<'_>) -> Result<(Scalar, Option<LocalType>), String> {
    match e {
        SqlExpr::Identifier(id) => {
            let n: usize = id
                .value
                .strip_prefix(COLUMN_PREFIX)
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("identifier {}", id.value))?;
            let (s, t) = inputs
                .get(n)
                .cloned()
                .ok_or_else(|| format!("column {n} out of range"))?;
            Ok((s, Some(t)))
        }
        SqlExpr::Nested(inner) => typed(inner, inputs),
        SqlExpr::Value(v) => literal(&v.value),
        SqlExpr::Cast {
            kind: CastKind::DoubleColon | CastKind::Cast,
            expr,
            data_type,
            format: None,
            array: false,
        } => {
            let to = cast_target(data_type)?;
            let (arg, from) = typed(expr, inputs)?;
            cast(arg, from, to)
        }
        SqlExpr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => Ok((
            Scalar::Not(Box::new(boolean(expr, inputs)?)),
            Some(LocalType::Bool),
        )),
        SqlExpr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => {
            let (arg, ty) = number(expr, inputs)?;
            Ok((
                Scalar::Neg {
                    arg: Box::new(arg),
                    ty,
                },
                Some(ty),
            ))
        }
        SqlExpr::IsNull(arg) | SqlExpr::IsNotNull(arg) => {
            let (arg, _) = typed(arg, inputs)?;
            Ok((
                Scalar::IsNull {
                    arg: Box::new(arg),
                    negated: matches!(e, SqlExpr::IsNotNull(_)),
                },
                Some(LocalType::Bool),
            ))
        }
        SqlExpr::BinaryOp { left, op, right } => binary(left, op, right, inputs),
        other => Err(short(other)),
    }
}

/// The first words of an expression, to say what was not local.
fn short(e: &SqlExpr) -> String {
    let text = e.to_string();
    let cut: String = text.chars().take(40).collect();
    if cut.len() < text.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

fn literal(v: &SqlValue) -> Result<(Scalar, Option<LocalType>), String> {
    Ok(match v {
        SqlValue::Number(text, _) => {
            if let Ok(i) = text.parse::<i64>() {
                let ty = if i32::try_from(i).is_ok() {
                    LocalType::Int4
                } else {
                    LocalType::Int8
                };
                (Scalar::Const(Literal::Int(i)), Some(ty))
            } else {
                Decimal::parse(text).ok_or_else(|| format!("numeric literal {text}"))?;
                (
                    Scalar::Const(Literal::Numeric(text.clone())),
                    Some(LocalType::Numeric),
                )
            }
        }
        SqlValue::SingleQuotedString(s) => (Scalar::Const(Literal::Text(s.clone())), None),
        SqlValue::Boolean(b) => (Scalar::Const(Literal::Bool(*b)), Some(LocalType::Bool)),
        SqlValue::Null => (Scalar::Const(Literal::Null), None),
        other => return Err(format!("literal {other}")),
    })
}

fn cast_target(t: &DataType) -> Result<LocalType, String> {
    Ok(match t {
        DataType::Int2(None) | DataType::SmallInt(None) => LocalType::Int2,
        DataType::Int(None) | DataType::Int4(None) | DataType::Integer(None) => LocalType::Int4,
        DataType::Int8(None) | DataType::BigInt(None) => LocalType::Int8,
        // With a precision or scale the cast rounds: not evaluated locally.
        DataType::Numeric(ExactNumberInfo::None) | DataType::Decimal(ExactNumberInfo::None) => {
            LocalType::Numeric
        }
        // varchar(n) truncates: only the unbounded forms.
        DataType::Text | DataType::Varchar(None) | DataType::CharacterVarying(None) => {
            LocalType::Text
        }
        DataType::Bool | DataType::Boolean => LocalType::Bool,
        other => return Err(format!("cast to {other}")),
    })
}

fn cast(
    arg: Scalar,
    from: Option<LocalType>,
    to: LocalType,
) -> Result<(Scalar, Option<LocalType>), String> {
    match (from, &arg) {
        // An untyped constant takes the cast's type: parse it now.
        (None, Scalar::Const(Literal::Null)) => Ok((arg, Some(to))),
        (None, Scalar::Const(Literal::Text(s))) => Ok((Scalar::Const(parse_as(s, to)?), Some(to))),
        (Some(from), _) if from == to => Ok((arg, Some(to))),
        (Some(from), _) if from.is_integer() && (to.is_integer() || to == LocalType::Numeric) => {
            Ok((
                Scalar::Cast {
                    arg: Box::new(arg),
                    ty: to,
                },
                Some(to),
            ))
        }
        (from, _) => Err(format!(
            "cast from {} to {}",
            from.map_or("unknown", |t| t.sql()),
            to.sql()
        )),
    }
}

fn parse_as(text: &str, to: LocalType) -> Result<Literal, String> {
    let bad = || format!("constant '{text}' as {}", to.sql());
    Ok(match to {
        LocalType::Int2 | LocalType::Int4 | LocalType::Int8 => {
            let v: i64 = text.trim().parse().map_err(|_| bad())?;
            let (lo, hi) = to.int_range().ok_or_else(bad)?;
            if v < lo || v > hi {
                return Err(bad());
            }
            Literal::Int(v)
        }
        LocalType::Numeric => {
            Decimal::parse(text.trim()).ok_or_else(bad)?;
            Literal::Numeric(text.trim().to_string())
        }
        LocalType::Text => Literal::Text(text.to_string()),
        LocalType::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "on" | "1" => Literal::Bool(true),
            "f" | "false" | "no" | "off" | "0" => Literal::Bool(false),
            _ => return Err(bad()),
        },
        LocalType::Date => return Err(bad()),
    })
}

fn boolean(e: &SqlExpr, inputs: Inputs<'_>) -> Result<Scalar, String> {
    match typed(e, inputs)? {
        (s, Some(LocalType::Bool)) => Ok(s),
        (Scalar::Const(Literal::Null), None) => Ok(Scalar::Const(Literal::Null)),
        _ => Err(format!("non-boolean operand in {}", short(e))),
    }
}

fn number(e: &SqlExpr, inputs: Inputs<'_>) -> Result<(Scalar, LocalType), String> {
    match typed(e, inputs)? {
        (s, Some(t)) if t.is_number() => Ok((s, t)),
        _ => Err(format!("non-numeric operand in {}", short(e))),
    }
}

/// The type of integer arithmetic between two integer types: the wider (int2 + int4 is int4).
fn wider(a: LocalType, b: LocalType) -> LocalType {
    let rank = |t: LocalType| match t {
        LocalType::Int2 => 0,
        LocalType::Int4 => 1,
        _ => 2,
    };
    if rank(a) >= rank(b) {
        a
    } else {
        b
    }
}

fn binary(
    left: &SqlExpr,
    op: &BinaryOperator,
    right: &SqlExpr,
    inputs: Inputs<'_>,
) -> Result<(Scalar, Option<LocalType>), String> {
    let arith = match op {
        BinaryOperator::Plus => Some(Arith::Add),
        BinaryOperator::Minus => Some(Arith::Sub),
        BinaryOperator::Multiply => Some(Arith::Mul),
        BinaryOperator::Divide => Some(Arith::Div),
        _ => None,
    };
    if let Some(op) = arith {
        let ((l, lt), (r, rt)) = (number(left, inputs)?, number(right, inputs)?);
        let ty = if lt.is_integer() && rt.is_integer() {
            wider(lt, rt)
        } else {
            LocalType::Numeric
        };
        if op == Arith::Div && ty == LocalType::Numeric {
            return Err("numeric division".into());
        }
        return Ok((
            Scalar::Arith {
                op,
                left: Box::new(l),
                right: Box::new(r),
                ty,
            },
            Some(ty),
        ));
    }
    let compare = match op {
        BinaryOperator::Eq => Some(Compare::Eq),
        BinaryOperator::NotEq => Some(Compare::Ne),
        BinaryOperator::Lt => Some(Compare::Lt),
        BinaryOperator::LtEq => Some(Compare::Le),
        BinaryOperator::Gt => Some(Compare::Gt),
        BinaryOperator::GtEq => Some(Compare::Ge),
        _ => None,
    };
    if let Some(op) = compare {
        let (l, lt) = typed(left, inputs)?;
        let (r, rt) = typed(right, inputs)?;
        // An untyped constant takes the other side's type.
        let (l, lt) = match lt {
            None => retype(l, rt)?,
            Some(t) => (l, t),
        };
        let (r, rt) = match rt {
            None => retype(r, Some(lt))?,
            Some(t) => (r, t),
        };
        let comparable = (lt.is_number() && rt.is_number())
            || (lt == rt && matches!(lt, LocalType::Bool | LocalType::Date))
            // Text only for (in)equality: ordering depends on the collation. Equality is byte
            // equality for deterministic collations (the server checks the source uses only those).
            || (lt == LocalType::Text && rt == LocalType::Text && matches!(op, Compare::Eq | Compare::Ne));
        if !comparable {
            return Err(format!("comparison of {} with {}", lt.sql(), rt.sql()));
        }
        return Ok((
            Scalar::Compare {
                op,
                left: Box::new(l),
                right: Box::new(r),
            },
            Some(LocalType::Bool),
        ));
    }
    match op {
        BinaryOperator::And | BinaryOperator::Or => {
            let parts = vec![boolean(left, inputs)?, boolean(right, inputs)?];
            Ok((
                if *op == BinaryOperator::And {
                    Scalar::And(parts)
                } else {
                    Scalar::Or(parts)
                },
                Some(LocalType::Bool),
            ))
        }
        other => Err(format!("operator {other}")),
    }
}

fn retype(s: Scalar, to: Option<LocalType>) -> Result<(Scalar, LocalType), String> {
    let to = to.ok_or("a comparison of two untyped constants")?;
    match cast(s, None, to)? {
        (s, Some(t)) => Ok((s, t)),
        _ => Err("an untyped constant".into()),
    }
}

impl Literal {
    fn value(&self) -> Result<Value, EvalError> {
        Ok(match self {
            Literal::Null => Value::Null,
            Literal::Int(i) => Value::Int(*i),
            Literal::Numeric(t) => Value::Numeric(Decimal::parse(t).ok_or(EvalError::Mistyped)?),
            Literal::Text(t) => Value::Text(t.clone()),
            Literal::Bool(b) => Value::Bool(*b),
        })
    }
}

fn in_range(v: i128, ty: LocalType) -> Result<Value, EvalError> {
    let (lo, hi) = ty.int_range().ok_or(EvalError::Mistyped)?;
    if v < lo as i128 || v > hi as i128 {
        return Err(EvalError::OutOfRange(ty.sql()));
    }
    Ok(Value::Int(v as i64))
}

fn numeric(d: Option<Decimal>) -> Result<Value, EvalError> {
    d.map(Value::Numeric)
        .ok_or(EvalError::OutOfRange("numeric"))
}

impl Scalar {
    /// The expression's value for one row of the source's columns.
    pub fn eval(&self, row: &[Value]) -> Result<Value, EvalError> {
        match self {
            Scalar::Column(n) => row.get(*n).cloned().ok_or(EvalError::Mistyped),
            Scalar::Const(l) => l.value(),
            Scalar::Arith {
                op,
                left,
                right,
                ty,
            } => {
                let (l, r) = (left.eval(row)?, right.eval(row)?);
                if l.is_null() || r.is_null() {
                    return Ok(Value::Null);
                }
                if ty.is_integer() {
                    let (Value::Int(a), Value::Int(b)) = (l, r) else {
                        return Err(EvalError::Mistyped);
                    };
                    let (a, b) = (a as i128, b as i128);
                    let v = match op {
                        Arith::Add => a + b,
                        Arith::Sub => a - b,
                        Arith::Mul => a * b,
                        Arith::Div if b == 0 => return Err(EvalError::DivisionByZero),
                        Arith::Div => a / b,
                    };
                    return in_range(v, *ty);
                }
                let (a, b) = (
                    l.decimal().ok_or(EvalError::Mistyped)?,
                    r.decimal().ok_or(EvalError::Mistyped)?,
                );
                numeric(match op {
                    Arith::Add => a.checked_add(b),
                    Arith::Sub => a.checked_sub(b),
                    Arith::Mul => a.checked_mul(b),
                    Arith::Div => return Err(EvalError::Mistyped),
                })
            }
            Scalar::Neg { arg, ty } => match arg.eval(row)? {
                Value::Null => Ok(Value::Null),
                Value::Int(v) => in_range(-(v as i128), *ty),
                Value::Numeric(d) => numeric(d.checked_neg()),
                _ => Err(EvalError::Mistyped),
            },
            Scalar::Compare { op, left, right } => {
                let (l, r) = (left.eval(row)?, right.eval(row)?);
                let ord = match (&l, &r) {
                    (Value::Null, _) | (_, Value::Null) => return Ok(Value::Null),
                    (Value::Int(a), Value::Int(b)) => a.cmp(b),
                    (Value::Text(a), Value::Text(b)) => {
                        if a == b {
                            Ordering::Equal
                        } else if matches!(op, Compare::Eq | Compare::Ne) {
                            Ordering::Less
                        } else {
                            return Err(EvalError::Mistyped);
                        }
                    }
                    (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
                    (Value::Date(a), Value::Date(b)) => a.cmp(b),
                    _ => {
                        let (a, b) = (
                            l.decimal().ok_or(EvalError::Mistyped)?,
                            r.decimal().ok_or(EvalError::Mistyped)?,
                        );
                        a.compare(b).ok_or(EvalError::OutOfRange("numeric"))?
                    }
                };
                Ok(Value::Bool(match op {
                    Compare::Eq => ord == Ordering::Equal,
                    Compare::Ne => ord != Ordering::Equal,
                    Compare::Lt => ord == Ordering::Less,
                    Compare::Le => ord != Ordering::Greater,
                    Compare::Gt => ord == Ordering::Greater,
                    Compare::Ge => ord != Ordering::Less,
                }))
            }
            // Three-valued logic: false wins over NULL in AND, true wins over NULL in OR.
            Scalar::And(parts) | Scalar::Or(parts) => {
                let decisive = matches!(self, Scalar::Or(_));
                let mut unknown = false;
                for p in parts {
                    match p.eval(row)? {
                        Value::Bool(b) if b == decisive => return Ok(Value::Bool(decisive)),
                        Value::Bool(_) => {}
                        Value::Null => unknown = true,
                        _ => return Err(EvalError::Mistyped),
                    }
                }
                Ok(if unknown {
                    Value::Null
                } else {
                    Value::Bool(!decisive)
                })
            }
            Scalar::Not(arg) => match arg.eval(row)? {
                Value::Bool(b) => Ok(Value::Bool(!b)),
                Value::Null => Ok(Value::Null),
                _ => Err(EvalError::Mistyped),
            },
            Scalar::IsNull { arg, negated } => {
                Ok(Value::Bool(arg.eval(row)?.is_null() != *negated))
            }
            Scalar::Cast { arg, ty } => match (arg.eval(row)?, ty) {
                (Value::Null, _) => Ok(Value::Null),
                (Value::Int(v), LocalType::Numeric) => Ok(Value::Numeric(Decimal::from_int(v))),
                (Value::Int(v), ty) => in_range(v as i128, *ty),
                _ => Err(EvalError::Mistyped),
            },
        }
    }

    /// Whether the row passes this predicate (NULL does not, as in WHERE and FILTER).
    pub fn holds(&self, row: &[Value]) -> Result<bool, EvalError> {
        match self.eval(row)? {
            Value::Bool(b) => Ok(b),
            Value::Null => Ok(false),
            _ => Err(EvalError::Mistyped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dvm::optree::ExprPart;

    /// A template from text where `$n` stands for input column n.
    fn template(text: &str) -> Expr {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            parts.push(ExprPart::Sql(rest[..i].to_string()));
            let digits: String = rest[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            parts.push(ExprPart::Col(digits.parse().unwrap()));
            rest = &rest[i + 1 + digits.len()..];
        }
        parts.push(ExprPart::Sql(rest.to_string()));
        Expr { parts }
    }

    fn inputs(types: &[LocalType]) -> Vec<(Scalar, LocalType)> {
        types
            .iter()
            .enumerate()
            .map(|(i, t)| (Scalar::Column(i), *t))
            .collect()
    }

    fn eval(text: &str, types: &[LocalType], row: &[Value]) -> Result<Value, EvalError> {
        let (s, _) = compile(&template(text), &inputs(types)).unwrap();
        s.eval(row)
    }

    fn num(s: &str) -> Value {
        Value::Numeric(Decimal::parse(s).unwrap())
    }

    use LocalType::*;

    #[test]
    fn arithmetic_has_postgresql_types_and_scales() {
        assert_eq!(
            eval("(($0 * (2)::numeric) + 0.5)", &[Numeric], &[num("1.25")]),
            Ok(num("3.00"))
        );
        assert_eq!(
            eval("($0 + $1)", &[Int4, Numeric], &[Value::Int(2), num("0.10")]),
            Ok(num("2.10"))
        );
        assert_eq!(
            eval("($0 / 2)", &[Int4], &[Value::Int(-7)]),
            Ok(Value::Int(-3))
        );
        assert_eq!(
            eval("($0 * 2)", &[Int4], &[Value::Int(i32::MAX as i64)]),
            Err(EvalError::OutOfRange("integer"))
        );
        assert_eq!(
            eval("($0 * 2)", &[Int8], &[Value::Int(i32::MAX as i64)]),
            Ok(Value::Int(2 * i32::MAX as i64))
        );
        assert_eq!(
            eval("($0 / 0)", &[Int4], &[Value::Int(1)]),
            Err(EvalError::DivisionByZero)
        );
        assert_eq!(
            eval("(- $0)", &[Int2], &[Value::Int(i16::MIN as i64)]),
            Err(EvalError::OutOfRange("smallint"))
        );
        assert_eq!(eval("($0 + 1)", &[Int4], &[Value::Null]), Ok(Value::Null));
    }

    #[test]
    fn predicates_follow_three_valued_logic() {
        let t = [Int4, Text, Bool];
        let row = [Value::Null, Value::Text("x".into()), Value::Bool(true)];
        assert_eq!(eval("(($0 > 2) AND $2)", &t, &row), Ok(Value::Null));
        assert_eq!(eval("(($0 > 2) OR $2)", &t, &row), Ok(Value::Bool(true)));
        assert_eq!(
            eval("(($0 > 2) AND (NOT $2))", &t, &row),
            Ok(Value::Bool(false))
        );
        assert_eq!(eval("($1 <> 'x'::text)", &t, &row), Ok(Value::Bool(false)));
        assert_eq!(eval("($1 = 'x')", &t, &row), Ok(Value::Bool(true)));
        assert_eq!(eval("($0 IS NULL)", &t, &row), Ok(Value::Bool(true)));
        assert_eq!(eval("($1 IS NOT NULL)", &t, &row), Ok(Value::Bool(true)));
        let (s, _) = compile(&template("($0 >= 1.50)"), &inputs(&[Numeric])).unwrap();
        assert_eq!(s.holds(&[num("1.5")]), Ok(true));
        assert_eq!(s.holds(&[Value::Null]), Ok(false));
    }

    #[test]
    fn what_is_not_local_is_named() {
        let refuse =
            |text: &str, types: &[LocalType]| compile(&template(text), &inputs(types)).unwrap_err();
        assert!(
            refuse("lower($0)", &[Text]).contains("lower"),
            "{}",
            refuse("lower($0)", &[Text])
        );
        assert_eq!(
            refuse("($0 < 'b'::text)", &[Text]),
            "comparison of text with text"
        );
        assert_eq!(refuse("($0 / 2.0)", &[Numeric]), "numeric division");
        assert!(refuse("($0)::numeric(10,2)", &[Int4]).starts_with("cast to"));
        assert!(refuse("($0)::integer", &[Numeric]).starts_with("cast from numeric"));
    }

    #[test]
    fn plans_survive_json() {
        let (s, _) = compile(
            &template("((($0)::numeric * 1.5) > '3'::numeric)"),
            &inputs(&[Int2]),
        )
        .unwrap();
        let back: Scalar = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.eval(&[Value::Int(3)]), Ok(Value::Bool(true)));
    }
}
