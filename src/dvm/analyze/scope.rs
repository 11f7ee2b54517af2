//! Name resolution. Each query block has a [`Scope`]: its FROM items, each with an alias and output
//! column names. A column reference resolves to a [`Sym`] (which item, which column), interned as a
//! number and written as `ExprPart::Col(number)` until the block's [`Layout`] gives it a position.

use std::collections::HashMap;

use sqlparser::ast::Expr as SqlExpr;

use super::template::{check_expr, ident_name, template};
use super::{invalid, unsupported, AnalyzeError, Analyzer, Result};
use crate::dvm::optree::{Expr, ExprPart, Node, TableRef};

pub(super) type ScopeId = usize;

/// Where a FROM item's rows come from.
pub(super) enum Source {
    /// A base table, with all its columns; the scan will read only the used ones.
    Table {
        table: TableRef,
        columns: Vec<String>,
    },
    /// Anything already analysed: a subquery, a view, a CTE reference. All its columns are output.
    Node(Node),
    /// A table function (`FromTree::Expand` holds its call).
    Function,
}

pub(super) struct Item {
    pub alias: String,
    /// The names the query uses for the item's columns (after any `alias(c1, c2)` renaming).
    pub names: Vec<String>,
    pub source: Source,
    pub used: Vec<bool>,
}

impl Item {
    pub fn new(alias: String, names: Vec<String>, source: Source) -> Item {
        let used = vec![false; names.len()];
        Item {
            alias,
            names,
            source,
            used,
        }
    }
}

#[derive(Default)]
pub(super) struct Scope {
    pub items: Vec<Item>,
}

/// What an `ExprPart::Col` means before positions are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Sym {
    /// Column `col` of FROM item `item` of block `scope`.
    Col {
        scope: ScopeId,
        item: usize,
        col: usize,
    },
    /// Column n of a semi-join's right side (only in a semi-join's `on`).
    Right(usize),
    /// Group-by value i / aggregate j of the block's Aggregate (only above it).
    Group(usize),
    Agg(usize),
}

/// Interns symbols as numbers, so equal references make equal `Expr`s.
#[derive(Default)]
pub(super) struct Syms {
    list: Vec<Sym>,
    ids: HashMap<Sym, usize>,
}

impl Syms {
    pub fn id(&mut self, sym: Sym) -> usize {
        let list = &mut self.list;
        *self.ids.entry(sym).or_insert_with(|| {
            list.push(sym);
            list.len() - 1
        })
    }

    pub fn get(&self, id: usize) -> Sym {
        self.list[id]
    }
}

/// A block being read. `correlated` blocks (EXISTS/IN subqueries in plain form) may reference
/// the immediately enclosing block; no other block may reference an outer one.
pub(super) struct Frame {
    pub scope: ScopeId,
    pub correlated: bool,
}

/// Positions of a block's FROM output: items in order, each contributing its used table columns
/// (or all columns of an analysed node).
pub(super) struct Layout {
    pub scope: ScopeId,
    positions: Vec<Vec<Option<usize>>>,
    pub arity: usize,
}

impl Layout {
    pub fn new(scope_id: ScopeId, scope: &Scope) -> Layout {
        let mut next = 0;
        let positions = scope
            .items
            .iter()
            .map(|item| {
                let dense = matches!(item.source, Source::Node(_) | Source::Function);
                item.used
                    .iter()
                    .map(|&used| {
                        (dense || used).then(|| {
                            next += 1;
                            next - 1
                        })
                    })
                    .collect()
            })
            .collect();
        Layout {
            scope: scope_id,
            positions,
            arity: next,
        }
    }

    /// The position of a column of this block, if the symbol is one.
    pub fn position(&self, sym: Sym) -> Option<usize> {
        match sym {
            Sym::Col { scope, item, col } if scope == self.scope => self.positions[item][col],
            _ => None,
        }
    }

    /// Where an item's columns start.
    pub fn offset(&self, item: usize) -> usize {
        self.positions[..item]
            .iter()
            .map(|cols| cols.iter().flatten().count())
            .sum()
    }
}

impl Analyzer<'_> {
    /// Runs `f` with a new block (and its empty scope) innermost, popping it whatever happens.
    pub(super) fn in_frame<T>(
        &mut self,
        correlated: bool,
        f: impl FnOnce(&mut Self, ScopeId) -> Result<T>,
    ) -> Result<T> {
        let scope = self.scopes.len();
        self.scopes.push(Scope::default());
        self.frames.push(Frame { scope, correlated });
        let result = f(self, scope);
        self.frames.pop();
        result
    }

    /// The innermost block's scope.
    pub(super) fn current_scope(&self) -> ScopeId {
        self.frames
            .last()
            .expect("column references are resolved inside a block")
            .scope
    }

    /// Resolves `alias.column`, innermost block first, into a symbol id.
    pub(super) fn resolve(&mut self, alias: &str, column: &str) -> Result<usize> {
        let innermost_correlated = self.frames.last().is_some_and(|f| f.correlated);
        for (depth, frame) in self.frames.iter().rev().enumerate() {
            let scope = &self.scopes[frame.scope];
            let Some(item) = scope.items.iter().position(|it| it.alias == alias) else {
                continue;
            };
            let Some(col) = scope.items[item].names.iter().position(|n| n == column) else {
                return invalid(format!("column {alias}.{column} does not exist"));
            };
            match depth {
                0 => {}
                1 if innermost_correlated => {}
                1 => {
                    return unsupported(format!(
                        "correlated reference {alias}.{column} in a subquery other than a plain \
                         EXISTS/IN subquery (SELECT ... FROM ... WHERE)"
                    ))
                }
                _ => {
                    return unsupported(format!(
                        "correlated reference {alias}.{column} to a query more than one level out"
                    ))
                }
            }
            return Ok(self.column(frame.scope, item, col));
        }
        invalid(format!(
            "missing FROM-clause entry for {alias} (in {alias}.{column})"
        ))
    }

    /// Renders an expression evaluated over the current block's FROM output; `context` names where
    /// it is, for errors ("the SELECT list").
    pub(super) fn render(&mut self, expr: &SqlExpr, context: &str) -> Result<Expr> {
        template(expr, &mut |e| {
            check_expr(e, context)?;
            self.column_ref(e)
        })
    }

    /// The symbol of a column reference `alias.column`, or None for any other expression. Bare
    /// names are left alone: normalised SQL qualifies every column, so a bare name is something
    /// else, like the field in `(t.c).field`.
    pub(super) fn column_ref(&mut self, expr: &SqlExpr) -> Result<Option<usize>> {
        match expr {
            SqlExpr::CompoundIdentifier(parts) => match parts.as_slice() {
                [alias, column] => self
                    .resolve(&ident_name(alias), &ident_name(column))
                    .map(Some),
                _ => invalid(format!("unexpected column reference {expr}")),
            },
            _ => Ok(None),
        }
    }

    /// The symbol id of a known column, marking it used.
    pub(super) fn column(&mut self, scope: ScopeId, item: usize, col: usize) -> usize {
        self.scopes[scope].items[item].used[col] = true;
        self.syms.id(Sym::Col { scope, item, col })
    }

    /// Whether an expression reads a column of a block other than `scope` (a correlated reference).
    pub(super) fn is_correlated(&self, expr: &Expr, scope: ScopeId) -> bool {
        expr.columns()
            .into_iter()
            .any(|n| matches!(self.syms.get(n), Sym::Col { scope: s, .. } if s != scope))
    }

    /// Replaces each symbol by the position `place` gives it. A symbol it does not know is a
    /// reference that cannot be evaluated there: an outer column outside a subquery's WHERE.
    pub(super) fn place(&self, expr: &Expr, place: impl Fn(Sym) -> Option<usize>) -> Result<Expr> {
        let parts = expr
            .parts
            .iter()
            .map(|part| match part {
                ExprPart::Col(n) => place(self.syms.get(*n)).map(ExprPart::Col).ok_or_else(|| {
                    AnalyzeError::Unsupported(
                        "correlated reference outside the WHERE clause of an EXISTS/IN subquery"
                            .into(),
                    )
                }),
                sql => Ok(sql.clone()),
            })
            .collect::<Result<_>>()?;
        Ok(Expr { parts })
    }
}
