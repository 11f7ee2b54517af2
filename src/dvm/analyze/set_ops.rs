//! `INTERSECT` and `EXCEPT` (with or without `ALL`): each is read as the grouped query that counts
//! every distinct row on both sides,
//!
//! ```sql
//! SELECT c.. FROM (SELECT c.., count(*) FILTER (WHERE side = 1) AS nl, count(*) FILTER (WHERE side = 2) AS nr
//!                    FROM (SELECT c.., 1 AS side FROM (left) UNION ALL SELECT c.., 2 FROM (right)) u
//!                   GROUP BY c..) g
//!  WHERE nl > 0 AND nr = 0                                   -- EXCEPT; INTERSECT: nr > 0
//! -- EXCEPT ALL: CROSS JOIN LATERAL generate_series(1, nl - nr); INTERSECT ALL: LEAST(nl, nr)
//! ```
//!
//! which returns the same rows (GROUP BY, like the set operations, takes NULLs as equal), and is
//! maintained like any grouped subquery under a filter and an expansion. PostgreSQL runs the query
//! as written for FULL refreshes; both give one multiset, because the engine refuses group keys whose
//! equal values may print differently.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Query, SelectItem, SetExpr, SetOperator, SetQuantifier, VisitMut, VisitorMut,
};

use super::block::default_name;
use super::template::ident_name;
use super::{invalid, parse, unsupported, AnalyzeError, Result};

/// Rewrites every INTERSECT and EXCEPT of `query` (subqueries included) into its grouped form.
pub(super) fn rewrite(query: &mut Query) -> Result<()> {
    match query.visit(&mut Rewriter) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Rewriter;

impl VisitorMut for Rewriter {
    type Break = AnalyzeError;

    // Post-order: the queries inside a body (subqueries, parenthesised operands) are rewritten
    // before it.
    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<AnalyzeError> {
        if !has_intersect_or_except(&query.body) {
            return ControlFlow::Continue(());
        }
        match render(&query.body).and_then(|sql| parse(&sql)) {
            Ok(rewritten) => {
                query.body = rewritten.body;
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }
}

fn has_intersect_or_except(body: &SetExpr) -> bool {
    match body {
        SetExpr::SetOperation {
            op, left, right, ..
        } => {
            matches!(op, SetOperator::Intersect | SetOperator::Except)
                || has_intersect_or_except(left)
                || has_intersect_or_except(right)
        }
        _ => false,
    }
}

/// `body` as SQL, its INTERSECTs and EXCEPTs in grouped form.
fn render(body: &SetExpr) -> Result<String> {
    let SetExpr::SetOperation {
        op,
        set_quantifier,
        left,
        right,
    } = body
    else {
        return Ok(body.to_string());
    };
    let (l, r) = (render(left)?, render(right)?);
    let all = match set_quantifier {
        SetQuantifier::All => true,
        SetQuantifier::None | SetQuantifier::Distinct => false,
        _ => return unsupported(format!("{op} BY NAME")),
    };
    let keep = match (op, all) {
        (SetOperator::Union, _) => return Ok(format!("({l}) {op} {set_quantifier} ({r})")),
        (SetOperator::Except, false) => Keep::Where("g.__pgt_nl > 0 AND g.__pgt_nr = 0"),
        (SetOperator::Intersect, false) => Keep::Where("g.__pgt_nl > 0 AND g.__pgt_nr > 0"),
        (SetOperator::Except, true) => Keep::Copies("g.__pgt_nl - g.__pgt_nr"),
        (SetOperator::Intersect, true) => Keep::Copies("LEAST(g.__pgt_nl, g.__pgt_nr)"),
        (SetOperator::Minus, _) => return invalid("MINUS is not PostgreSQL"),
    };
    let names = output_names(left)?;
    let columns: Vec<String> = (0..names.len()).map(|i| format!("__pgt_c{i}")).collect();
    let of = |alias: &str| -> String {
        columns
            .iter()
            .map(|c| format!("{alias}.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let list = columns.join(", ");
    let sides = format!(
        "SELECT {}, 1 AS __pgt_side FROM ({l}) AS __pgt_l({list}) UNION ALL SELECT {}, 2 FROM ({r}) AS __pgt_r({list})",
        of("__pgt_l"),
        of("__pgt_r")
    );
    let counted = format!(
        "SELECT {u}, count(*) FILTER (WHERE u.__pgt_side = 1) AS __pgt_nl, count(*) FILTER (WHERE u.__pgt_side = 2) AS __pgt_nr
           FROM ({sides}) AS u GROUP BY {u}",
        u = of("u")
    );
    let shown: Vec<String> = columns
        .iter()
        .zip(&names)
        .map(|(c, name)| format!("g.{c} AS \"{}\"", name.replace('"', "\"\"")))
        .collect();
    let shown = shown.join(", ");
    Ok(match keep {
        Keep::Where(condition) => {
            format!("SELECT {shown} FROM ({counted}) AS g WHERE {condition}")
        }
        Keep::Copies(n) => format!(
            "SELECT {shown} FROM ({counted}) AS g CROSS JOIN LATERAL pg_catalog.generate_series(1, {n}) AS __pgt_copy(n)"
        ),
    })
}

/// Which rows of the counted groups a set operation keeps.
enum Keep {
    /// Each group once, where the condition holds.
    Where(&'static str),
    /// Each group as many times as the expression says (none when it is not positive).
    Copies(&'static str),
}

/// The output column names of a set operation: its first block's.
fn output_names(body: &SetExpr) -> Result<Vec<String>> {
    match body {
        SetExpr::Select(select) => select
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::UnnamedExpr(e) => Ok(default_name(e)),
                SelectItem::ExprWithAlias { alias, .. } => Ok(ident_name(alias)),
                _ => unsupported("INTERSECT or EXCEPT with * in the select list"),
            })
            .collect(),
        SetExpr::Query(query) => output_names(&query.body),
        SetExpr::SetOperation { left, .. } => output_names(left),
        SetExpr::Values(values) => Ok((1..=values.rows.first().map_or(0, Vec::len))
            .map(|i| format!("column{i}"))
            .collect()),
        _ => invalid("expected a SELECT"),
    }
}
