//! A FROM list that starts with a table function or a VALUES list (`FROM generate_series(1, 3) AS
//! g(n) JOIN t ON t.n = g.n`, `FROM (VALUES (1, 'open')) AS s(id, label) JOIN t ON ...`): the
//! analyser reads a function as an expansion of the items before it, and the first item has none.
//! Such an item reads nothing of the FROM list, so it can follow the table it is joined with:
//! inner and cross joins commute, and `f RIGHT JOIN t ON ...` is `t LEFT JOIN LATERAL f ON ...`.
//! Columns keep their names and the select list names them, so the query's rows are the same.

use sqlparser::ast::{Join, JoinConstraint, JoinOperator, TableFactor, TableWithJoins};

use super::from::starts_with_function;

/// `from` with its leading function moved after the table it is joined with; None when it does not
/// start with one, or when moving it would change the query (a LEFT or FULL join keeps the
/// function's rows; USING and NATURAL show the left side's value of each merged column, which may
/// print differently from the right side's).
pub(super) fn moved(from: &[TableWithJoins]) -> Option<Vec<TableWithJoins>> {
    let first = from.first()?;
    if first.joins.is_empty() && starts_with_function(&first.relation) && !is_nested(first) {
        // `f, t ...`: t first, then f.
        let second = from.get(1)?;
        if starts_with_function(&second.relation) {
            return None;
        }
        let mut reordered = from.to_vec();
        reordered.swap(0, 1);
        return Some(reordered);
    }
    let moved_first = function_joined_after(first)?;
    let mut reordered = from.to_vec();
    reordered[0] = moved_first;
    Some(reordered)
}

fn is_nested(table: &TableWithJoins) -> bool {
    matches!(table.relation, TableFactor::NestedJoin { alias: None, .. })
}

/// `table` with the function that starts it joined after the table it is joined with, looking
/// into parentheses: PostgreSQL prints `FROM f JOIN t ON .. JOIN u ON ..` as
/// `FROM ((f JOIN t ON ..) JOIN u ON ..)`.
fn function_joined_after(table: &TableWithJoins) -> Option<TableWithJoins> {
    match &table.relation {
        TableFactor::NestedJoin {
            table_with_joins,
            alias: None,
        } => Some(TableWithJoins {
            relation: TableFactor::NestedJoin {
                table_with_joins: Box::new(function_joined_after(table_with_joins)?),
                alias: None,
            },
            joins: table.joins.clone(),
        }),
        _ => joined_first(table),
    }
}

/// `f JOIN t ON ... [joins]` as `t JOIN f ON ... [joins]`, when `f` is a function or VALUES list
/// and the join allows it.
fn joined_first(table: &TableWithJoins) -> Option<TableWithJoins> {
    let (join, rest) = table.joins.split_first()?;
    if !starts_with_function(&table.relation) || starts_with_function(&join.relation) {
        return None;
    }
    let join_operator = match &join.join_operator {
        JoinOperator::Join(c) | JoinOperator::Inner(c) if swappable(c) => {
            JoinOperator::Inner(c.clone())
        }
        JoinOperator::CrossJoin(c) if swappable(c) => JoinOperator::CrossJoin(c.clone()),
        JoinOperator::Right(c) | JoinOperator::RightOuter(c) if swappable(c) => {
            JoinOperator::Left(c.clone())
        }
        _ => return None,
    };
    let mut joins = vec![Join {
        relation: table.relation.clone(),
        global: false,
        join_operator,
    }];
    joins.extend(rest.iter().cloned());
    Some(TableWithJoins {
        relation: join.relation.clone(),
        joins,
    })
}

fn swappable(constraint: &JoinConstraint) -> bool {
    matches!(constraint, JoinConstraint::On(_) | JoinConstraint::None)
}
