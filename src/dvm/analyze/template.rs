//! Expression templates. An sqlparser expression is cloned, chosen subexpressions (column references,
//! aggregate calls, grouped expressions) are replaced by marker identifiers, the result is printed
//! with sqlparser's Display (which round-trips PostgreSQL syntax), and the text is split on the
//! markers into `Sql` and `Col` parts. Everything not replaced is carried over verbatim.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, ObjectName, VisitMut, VisitorMut,
};

use super::{invalid, unsupported, AnalyzeError, Result};
use crate::dvm::optree::{Expr, ExprPart};

/// Marker delimiters: control characters never appear in normalised SQL (`parse` rejects them).
pub(super) const MARK_OPEN: char = '\u{1}';
pub(super) const MARK_CLOSE: char = '\u{2}';

/// Decides, for each subexpression top-down, whether to replace it by `Col(n)` (`Some(n)`; its
/// inside is then not looked at) or to look inside (`None`).
pub(super) type Hook<'h> = dyn FnMut(&SqlExpr) -> Result<Option<usize>> + 'h;

pub(super) fn template(expr: &SqlExpr, hook: &mut Hook<'_>) -> Result<Expr> {
    let mut expr = expr.clone();
    if let ControlFlow::Break(err) = expr.visit(&mut Marker { hook }) {
        return Err(err);
    }
    split(&expr.to_string())
}

struct Marker<'a, 'h> {
    hook: &'a mut Hook<'h>,
}

impl VisitorMut for Marker<'_, '_> {
    type Break = AnalyzeError;

    fn pre_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<AnalyzeError> {
        match (self.hook)(expr) {
            Ok(Some(n)) => {
                *expr = SqlExpr::Identifier(Ident::new(format!("{MARK_OPEN}{n}{MARK_CLOSE}")));
                ControlFlow::Continue(())
            }
            Ok(None) => ControlFlow::Continue(()),
            Err(err) => ControlFlow::Break(err),
        }
    }
}

fn split(text: &str) -> Result<Expr> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find(MARK_OPEN) {
        if open > 0 {
            parts.push(ExprPart::Sql(rest[..open].to_string()));
        }
        let marker = &rest[open + MARK_OPEN.len_utf8()..];
        let Some(close) = marker.find(MARK_CLOSE) else {
            return invalid("unterminated column marker");
        };
        let Ok(n) = marker[..close].parse() else {
            return invalid("malformed column marker");
        };
        parts.push(ExprPart::Col(n));
        rest = &marker[close + MARK_CLOSE.len_utf8()..];
    }
    if !rest.is_empty() {
        parts.push(ExprPart::Sql(rest.to_string()));
    }
    Ok(Expr { parts })
}

/// Concatenates templates, merging adjacent SQL text.
pub(super) fn concat(pieces: impl IntoIterator<Item = Expr>) -> Expr {
    let mut parts: Vec<ExprPart> = Vec::new();
    for part in pieces.into_iter().flat_map(|e| e.parts) {
        match (parts.last_mut(), part) {
            (Some(ExprPart::Sql(text)), ExprPart::Sql(more)) => text.push_str(&more),
            (_, part) => parts.push(part),
        }
    }
    Expr { parts }
}

/// `(left = right)`.
pub(super) fn equals(left: Expr, right: Expr) -> Expr {
    concat([
        Expr::sql("("),
        left,
        Expr::sql(" = "),
        right,
        Expr::sql(")"),
    ])
}

/// The conjunction of predicates (each already parenthesised as PostgreSQL prints it), if any.
pub(super) fn and_all(predicates: Vec<Expr>) -> Option<Expr> {
    let mut pieces = Vec::new();
    for (i, p) in predicates.into_iter().enumerate() {
        if i > 0 {
            pieces.push(Expr::sql(" AND "));
        }
        pieces.push(p);
    }
    (!pieces.is_empty()).then(|| concat(pieces))
}

/// A conjunct's template, parenthesised unless it already prints as one unit, so conjuncts can be
/// ANDed in any combination. (PostgreSQL's normalised text parenthesises every operator expression.)
pub(super) fn as_conjunct(expr: &SqlExpr, rendered: Expr) -> Expr {
    if matches!(expr, SqlExpr::Nested(_)) || is_atomic(expr) {
        rendered
    } else {
        parenthesised(rendered)
    }
}

/// Wraps a template in parentheses.
pub(super) fn parenthesised(expr: Expr) -> Expr {
    concat([Expr::sql("("), expr, Expr::sql(")")])
}

pub(super) fn strip_nested(mut expr: &SqlExpr) -> &SqlExpr {
    while let SqlExpr::Nested(inner) = expr {
        expr = inner;
    }
    expr
}

/// The top-level AND conjuncts of a predicate, each as written (with its parentheses).
pub(super) fn conjuncts(expr: &SqlExpr) -> Vec<&SqlExpr> {
    match strip_nested(expr) {
        SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut all = conjuncts(left);
            all.extend(conjuncts(right));
            all
        }
        _ => vec![expr],
    }
}

/// Whether the expression prints as one unit that needs no parentheses around it.
pub(super) fn is_atomic(expr: &SqlExpr) -> bool {
    matches!(
        expr,
        SqlExpr::Identifier(_)
            | SqlExpr::CompoundIdentifier(_)
            | SqlExpr::Value(_)
            | SqlExpr::Function(_)
            | SqlExpr::Cast { .. }
            | SqlExpr::TypedString(_)
            | SqlExpr::Case { .. }
    )
}

/// An identifier's name: quoted ones keep their case, unquoted ones fold to lower case like PostgreSQL.
pub(super) fn ident_name(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}

/// The parts of a (possibly qualified) object name.
pub(super) fn name_parts(name: &ObjectName) -> Result<Vec<String>> {
    name.0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) => Ok(ident_name(ident)),
            None => invalid(format!("unexpected name {name}")),
        })
        .collect()
}

/// A function's name as written, e.g. `pg_catalog.sum` (what `Catalog::is_aggregate` receives).
pub(super) fn function_name(function: &Function) -> String {
    name_parts(&function.name).map_or_else(|_| function.name.to_string(), |parts| parts.join("."))
}

/// Set-returning functions: in the SELECT list they change the row count, which no operator models.
/// Only the common built-in ones, for the analyser on its own: the extension refuses any function
/// PostgreSQL says returns a set in a select list before analysing (`catalog/analysis.rs`).
const SET_RETURNING: &[&str] = &[
    "generate_series",
    "generate_subscripts",
    "unnest",
    "regexp_matches",
    "regexp_split_to_table",
    "string_to_table",
    "json_array_elements",
    "json_array_elements_text",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "json_each",
    "json_each_text",
    "jsonb_each",
    "jsonb_each_text",
    "json_object_keys",
    "jsonb_object_keys",
    "json_populate_recordset",
    "jsonb_populate_recordset",
    "json_to_recordset",
    "jsonb_to_recordset",
    "jsonb_path_query",
];

/// Rejects the constructs no expression may contain; `context` says where the expression is,
/// e.g. "the SELECT list".
pub(super) fn check_expr(expr: &SqlExpr, context: &str) -> Result<()> {
    match expr {
        SqlExpr::Subquery(_) | SqlExpr::Exists { .. } | SqlExpr::InSubquery { .. } => {
            unsupported(format!("subquery in {context}"))
        }
        SqlExpr::QualifiedWildcard(name, _) => unsupported(format!("whole-row reference {name}.*")),
        SqlExpr::GroupingSets(_) => unsupported("GROUPING SETS"),
        SqlExpr::Cube(_) => unsupported("CUBE"),
        SqlExpr::Rollup(_) => unsupported("ROLLUP"),
        SqlExpr::Function(function) => check_function(function, context),
        _ => Ok(()),
    }
}

fn check_function(function: &Function, context: &str) -> Result<()> {
    let name = function_name(function);
    if function.over.is_some() {
        return unsupported(format!(
            "window function {name}() in a UNION branch or in a subquery of an expression (window functions are read in the SELECT list of the query, of a subquery in FROM, of a CTE or of a view)"
        ));
    }
    let base = name.rsplit('.').next().unwrap_or(&name);
    if SET_RETURNING.contains(&base) {
        return unsupported(format!("set-returning function {name}()"));
    }
    match &function.args {
        FunctionArguments::Subquery(_) => unsupported(format!("subquery in {context}")),
        FunctionArguments::List(list) => {
            for arg in &list.args {
                let (FunctionArg::Named { arg, .. }
                | FunctionArg::ExprNamed { arg, .. }
                | FunctionArg::Unnamed(arg)) = arg;
                if let FunctionArgExpr::QualifiedWildcard(row) = arg {
                    return unsupported(format!("whole-row reference {row}.*"));
                }
            }
            Ok(())
        }
        FunctionArguments::None => Ok(()),
    }
}
