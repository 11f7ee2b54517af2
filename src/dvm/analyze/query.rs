//! Whole queries: WITH, set operations, and the clauses that cannot be maintained incrementally.

use sqlparser::ast::{LimitClause, Query, SetExpr, SetOperator, SetQuantifier, With};

use super::from::renamed;
use super::template::ident_name;
use super::{
    distinct_on, grouping_sets, invalid, unsupported, window, Analyzed, Analyzer, CteName, Result,
};
use crate::dvm::optree::CollectedSubquery;
use crate::dvm::optree::Node;

impl Analyzer<'_> {
    pub(super) fn query(&mut self, query: &Query) -> Result<Analyzed> {
        check_query(query)?;
        let visible = self.cte_names.len();
        let result = match &query.with {
            Some(with) => self.with(with).and_then(|()| self.set_expr(&query.body)),
            None => self.set_expr(&query.body),
        };
        self.cte_names.truncate(visible);
        result
    }

    /// A subquery in FROM, a CTE's or a view's body: one whose own SELECT computes window functions
    /// or is a `SELECT DISTINCT ON` is read as the defining query's would be (`window::rewrite`,
    /// `distinct_on::rewrite_top`). The query as written is kept to be described
    /// (`OpTree::collected_subqueries`).
    pub(super) fn subquery(&mut self, query: &Query) -> Result<Analyzed> {
        if window::computes_windows(query) || distinct_on::is_top(query) {
            self.collected_subquery(query)
        } else {
            self.query(query)
        }
    }

    /// `subquery`'s rewrite, a frame of its own: views nest this recursion (up to
    /// `MAX_VIEW_DEPTH`), and a rewritten query is large.
    fn collected_subquery(&mut self, query: &Query) -> Result<Analyzed> {
        let expanded = window::computes_windows(query);
        let mut rewritten = query.clone();
        if expanded {
            window::rewrite(&mut rewritten, self)?;
        } else {
            distinct_on::rewrite_top(&mut rewritten, self)?;
        }
        let with: Vec<&str> = self.cte_names.iter().map(|c| c.sql.as_str()).collect();
        let with = if with.is_empty() {
            String::new()
        } else {
            format!("WITH {} ", with.join(", "))
        };
        self.collected_subqueries.push(CollectedSubquery {
            query: format!("{with}SELECT * FROM ({query}) AS pgt_collected"),
            expanded,
        });
        self.query(&rewritten)
    }

    /// A SELECT grouped by grouping sets, as the union of one grouped SELECT per set (a frame of its
    /// own, off the recursion of plain queries: see `collected_subquery`).
    fn grouping_sets(&mut self, select: &sqlparser::ast::Select) -> Result<Analyzed> {
        let expanded = grouping_sets::expand(select, self)?;
        self.set_expr(&expanded)
    }

    /// Analyses each CTE once, in order (so a CTE sees the earlier ones), into `OpTree::ctes`.
    fn with(&mut self, with: &With) -> Result<()> {
        if with.recursive {
            return unsupported("recursive CTE");
        }
        for cte in &with.cte_tables {
            let body = self.subquery(&cte.query)?;
            let columns = renamed(body.names, Some(&cte.alias))?;
            self.ctes.push(body.node);
            self.cte_names.push(CteName {
                name: ident_name(&cte.alias.name),
                id: self.ctes.len() - 1,
                columns,
                sql: cte.to_string(),
            });
        }
        Ok(())
    }

    fn set_expr(&mut self, body: &SetExpr) -> Result<Analyzed> {
        match body {
            SetExpr::Select(select) if grouping_sets::has_grouping_sets(select) => {
                self.grouping_sets(select)
            }
            SetExpr::Select(select) => self.select(select),
            SetExpr::Query(query) => self.query(query),
            SetExpr::SetOperation {
                op,
                set_quantifier,
                left,
                right,
            } => {
                let distinct = match (op, set_quantifier) {
                    (SetOperator::Union, SetQuantifier::All) => false,
                    (SetOperator::Union, SetQuantifier::None | SetQuantifier::Distinct) => true,
                    (SetOperator::Union, _) => return unsupported("UNION BY NAME"),
                    // `parse` rewrote them into grouped queries (`set_ops`).
                    (SetOperator::Except | SetOperator::Intersect, _) => {
                        return invalid(format!("{op} left after its rewrite"))
                    }
                    (SetOperator::Minus, _) => return invalid("MINUS is not PostgreSQL"),
                };
                let left = self.set_expr(left)?;
                let right = self.set_expr(right)?;
                if left.node.arity() != right.node.arity() {
                    return invalid("set operation inputs with different numbers of columns");
                }
                let mut inputs = union_inputs(left.node, distinct);
                inputs.extend(union_inputs(right.node, distinct));
                let union = Node::UnionAll { inputs };
                let node = if distinct {
                    Node::Distinct {
                        input: Box::new(union),
                    }
                } else {
                    union
                };
                Ok(Analyzed {
                    node,
                    names: left.names,
                })
            }
            SetExpr::Values(_) => unsupported("VALUES list"),
            SetExpr::Table(_) => unsupported("TABLE command"),
            _ => invalid("expected a SELECT"),
        }
    }
}

/// The inputs a union input contributes: nested UNION ALLs are flattened, and under a UNION
/// (which removes duplicates anyway) so are nested UNIONs.
fn union_inputs(node: Node, distinct: bool) -> Vec<Node> {
    match node {
        Node::UnionAll { inputs } => inputs,
        Node::Distinct { input } if distinct && matches!(*input, Node::UnionAll { .. }) => {
            union_inputs(*input, distinct)
        }
        node => vec![node],
    }
}

/// Rejects the query-level clauses that change which rows a query returns depending on order or
/// locking (a top-level `ORDER BY ... LIMIT` was taken off before: see `top_k`). ORDER BY alone
/// does not change a table's contents, so it is ignored.
pub(super) fn check_query(query: &Query) -> Result<()> {
    match &query.limit_clause {
        Some(
            LimitClause::LimitOffset { limit: Some(_), .. } | LimitClause::OffsetCommaLimit { .. },
        ) => return unsupported("LIMIT"),
        Some(LimitClause::LimitOffset {
            offset: Some(_), ..
        }) => return unsupported("OFFSET without LIMIT"),
        _ => {}
    }
    match &query.fetch {
        Some(fetch) if fetch.with_ties => return unsupported("FETCH FIRST ... WITH TIES"),
        Some(_) => return unsupported("FETCH FIRST"),
        None => {}
    }
    if !query.locks.is_empty() {
        return unsupported("FOR UPDATE/FOR SHARE");
    }
    if query.for_clause.is_some()
        || query.settings.is_some()
        || query.format_clause.is_some()
        || !query.pipe_operators.is_empty()
    {
        return invalid("non-PostgreSQL query syntax");
    }
    Ok(())
}
