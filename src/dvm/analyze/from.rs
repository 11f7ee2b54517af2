//! The FROM clause. Its items join the current block's scope as they are read (so a JOIN's ON can
//! see them); joins form a [`FromTree`] over item numbers, which becomes nodes once the block's
//! layout is known.

use std::ops::Range;

use sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, JoinConstraint, JoinOperator, ObjectName,
    SetExpr, TableAlias, TableFactor, TableWithJoins,
};

use super::scope::{Item, Layout, Source};
use super::template::{and_all, as_conjunct, concat, conjuncts, equals, ident_name, name_parts};
use super::{invalid, unsupported, AnalyzeError, Analyzer, Relation, Result};
use crate::dvm::optree::{Expr, ExprPart, JoinKind, Node, TableRef};

/// Expressions hold symbols until the layout is known.
pub(super) enum FromTree {
    Item(usize),
    /// `on` is a list of conjuncts, ANDed (none: a cross join). An inner join's are its condition's
    /// top-level conjuncts, which `pushdown.rs` may move; an outer join's is its whole condition.
    Join {
        kind: JoinKind,
        left: Box<FromTree>,
        right: Box<FromTree>,
        on: Vec<Expr>,
    },
    /// Rows of `input` for which every predicate is true (placed by `pushdown.rs`).
    Filter {
        input: Box<FromTree>,
        predicates: Vec<Expr>,
    },
    /// A table function that reads `input`'s items (`input, LATERAL f(..)`), FROM item `item` with
    /// `columns` columns: [`Node::Expand`]. `on` is the join condition as conjuncts, a filter above
    /// it unless `left_join`. No `input`: the function starts the FROM list and reads nothing
    /// ([`Node::Unit`]).
    Expand {
        input: Option<Box<FromTree>>,
        item: usize,
        columns: usize,
        call: Expr,
        on: Vec<Expr>,
        left_join: bool,
    },
}

impl FromTree {
    fn first_item(&self) -> usize {
        match self {
            FromTree::Item(i) => *i,
            FromTree::Join { left, .. } => left.first_item(),
            FromTree::Filter { input, .. }
            | FromTree::Expand {
                input: Some(input), ..
            } => input.first_item(),
            FromTree::Expand {
                input: None, item, ..
            } => *item,
        }
    }

    fn last_item(&self) -> usize {
        match self {
            FromTree::Item(i) | FromTree::Expand { item: i, .. } => *i,
            FromTree::Join { right, .. } => right.last_item(),
            FromTree::Filter { input, .. } => input.last_item(),
        }
    }

    /// The FROM items under this tree (always consecutive: items are numbered as they are read).
    pub(super) fn items(&self) -> Range<usize> {
        self.first_item()..self.last_item() + 1
    }
}

/// A FROM subtree being built: its items, and the columns its USING joins merged (name, symbol).
struct Side {
    tree: FromTree,
    items: Range<usize>,
    merged: Vec<(String, usize)>,
}

/// A table function in FROM, its arguments read: `name(args) AS alias(names)`; or a VALUES list,
/// which expands each row before it into its rows the same way.
struct TableFunction {
    /// For messages: `table function f()`, `a VALUES list`.
    what: String,
    alias: String,
    names: Vec<String>,
    call: Expr,
}

impl Analyzer<'_> {
    /// Reads the FROM list into the current block's scope; `a, b` is a cross join.
    pub(super) fn from_clause(&mut self, from: &[TableWithJoins]) -> Result<FromTree> {
        let reordered = super::leading_function::moved(from);
        let from = reordered.as_deref().unwrap_or(from);
        let mut tree: Option<Side> = None;
        for table in from {
            // `a, LATERAL f(a.x) [JOIN ...]`: the function expands what is left of it.
            if starts_with_function(&table.relation) {
                if let Some(before) = tree.take() {
                    tree = Some(self.lateral(before, table)?);
                    continue;
                }
            }
            let side = self.table_with_joins(table)?;
            tree = Some(match tree {
                None => side,
                Some(left) => Side {
                    items: left.items.start..side.items.end,
                    tree: FromTree::Join {
                        kind: JoinKind::Inner,
                        left: Box::new(left.tree),
                        right: Box::new(side.tree),
                        on: vec![],
                    },
                    merged: Vec::new(),
                },
            });
        }
        tree.map(|side| side.tree)
            .ok_or_else(|| AnalyzeError::Unsupported("SELECT without FROM".into()))
    }

    /// `before, table` where `table` starts with a table function, maybe inside parentheses
    /// (`a, (LATERAL f(a.x) JOIN b ON ...)`, as PostgreSQL prints it): the function expands
    /// `before`, then `table`'s joins follow. Their conditions read neither `before` (PostgreSQL
    /// would have refused them) nor anything but what they join, so the bracketing is the same.
    fn lateral(&mut self, before: Side, table: &TableWithJoins) -> Result<Side> {
        let side = match &table.relation {
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.lateral(before, table_with_joins)?,
            factor => match self.table_function(factor)? {
                Some(function) => {
                    self.expand(before, function, JoinKind::Inner, &JoinConstraint::None)?
                }
                None => return invalid("a FROM item that is not a table function"),
            },
        };
        self.joins(side, table)
    }

    fn table_with_joins(&mut self, table: &TableWithJoins) -> Result<Side> {
        let left = match self.table_function(&table.relation)? {
            Some(function) => self.leading(function),
            None => self.factor(&table.relation)?,
        };
        self.joins(left, table)
    }

    /// `left` joined with each of `table`'s joins in turn.
    fn joins(&mut self, mut left: Side, table: &TableWithJoins) -> Result<Side> {
        for join in &table.joins {
            let (kind, constraint) = match &join.join_operator {
                JoinOperator::Join(c) | JoinOperator::Inner(c) | JoinOperator::CrossJoin(c) => {
                    (JoinKind::Inner, c)
                }
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, c),
                JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (JoinKind::Right, c),
                JoinOperator::FullOuter(c) => (JoinKind::Full, c),
                _ => return invalid("a join type PostgreSQL does not have"),
            };
            if let Some(function) = self.table_function(&join.relation)? {
                left = self.expand(left, function, kind, constraint)?;
                continue;
            }
            let right = self.factor(&join.relation)?;
            left = self.join(left, right, kind, constraint)?;
        }
        Ok(left)
    }

    fn join(
        &mut self,
        left: Side,
        right: Side,
        kind: JoinKind,
        constraint: &JoinConstraint,
    ) -> Result<Side> {
        let mut merged: Vec<(String, usize)> = Vec::new();
        let on = match constraint {
            // An inner join's conjuncts are kept apart, so each can move to where it belongs.
            JoinConstraint::On(expr) if kind == JoinKind::Inner => conjuncts(expr)
                .into_iter()
                .map(|c| Ok(as_conjunct(c, self.render(c, "a JOIN condition")?)))
                .collect::<Result<Vec<_>>>()?,
            JoinConstraint::On(expr) => vec![self.render(expr, "a JOIN condition")?],
            // Its merged columns are COALESCE(left, right): neither side's column.
            JoinConstraint::Using(_) if kind == JoinKind::Full => {
                return unsupported("FULL JOIN ... USING (use ON)")
            }
            JoinConstraint::Using(columns) => {
                let mut equalities = Vec::new();
                for column in columns {
                    let name = match name_parts(column)?.as_slice() {
                        [name] => name.clone(),
                        _ => return invalid(format!("unexpected USING column {column}")),
                    };
                    let l = self.side_column(&left, &name)?;
                    let r = self.side_column(&right, &name)?;
                    equalities.push(equals(Expr::col(l), Expr::col(r)));
                    // The merged column is the side that is never null-padded.
                    merged.push((name, if kind == JoinKind::Right { r } else { l }));
                }
                match kind {
                    JoinKind::Inner => equalities,
                    _ => and_all(equalities).into_iter().collect(),
                }
            }
            JoinConstraint::Natural => return unsupported("NATURAL JOIN"),
            JoinConstraint::None => vec![],
        };
        for (name, sym) in left.merged.into_iter().chain(right.merged) {
            if !merged.iter().any(|(n, _)| *n == name) {
                merged.push((name, sym));
            }
        }
        let tree = FromTree::Join {
            kind,
            left: Box::new(left.tree),
            right: Box::new(right.tree),
            on,
        };
        Ok(Side {
            tree,
            items: left.items.start..right.items.end,
            merged,
        })
    }

    /// `input` joined with a table function that may read it (LATERAL): its rows, each followed by
    /// each row the function returns for it ([`FromTree::Expand`]).
    fn expand(
        &mut self,
        input: Side,
        function: TableFunction,
        kind: JoinKind,
        constraint: &JoinConstraint,
    ) -> Result<Side> {
        let columns = function.names.len();
        let item = self
            .leaf(Item::new(function.alias, function.names, Source::Function))
            .items
            .start;
        let (on, left_join) = match (kind, constraint) {
            (JoinKind::Inner, JoinConstraint::None) => (vec![], false),
            (JoinKind::Inner, JoinConstraint::On(expr)) => (
                conjuncts(expr)
                    .into_iter()
                    .map(|c| Ok(as_conjunct(c, self.render(c, "a JOIN condition")?)))
                    .collect::<Result<Vec<_>>>()?,
                false,
            ),
            (JoinKind::Left, JoinConstraint::On(expr)) => {
                (vec![self.render(expr, "a JOIN condition")?], true)
            }
            (JoinKind::Inner | JoinKind::Left, _) => {
                return unsupported(format!("a join with {} other than by ON", function.what))
            }
            (JoinKind::Right | JoinKind::Full, _) => {
                return unsupported(format!("RIGHT or FULL JOIN with {}", function.what))
            }
        };
        Ok(Side {
            items: input.items.start..item + 1,
            tree: FromTree::Expand {
                input: Some(Box::new(input.tree)),
                item,
                columns,
                call: function.call,
                on,
                left_join,
            },
            merged: input.merged,
        })
    }

    /// A table function or VALUES list that starts a FROM list and reads nothing (its arguments
    /// were read with no item before them): rows that never change, the left side of what follows
    /// (`FROM generate_series(1, 7) AS d(n) LEFT JOIN t ON t.day = d.n`). Inner and cross joins
    /// with a table were moved after it before this (`leading_function`).
    fn leading(&mut self, function: TableFunction) -> Side {
        let columns = function.names.len();
        let item = self
            .leaf(Item::new(function.alias, function.names, Source::Function))
            .items
            .start;
        Side {
            items: item..item + 1,
            tree: FromTree::Expand {
                input: None,
                item,
                columns,
                call: function.call,
                on: Vec::new(),
                left_join: false,
            },
            merged: Vec::new(),
        }
    }

    /// The table function a FROM item calls (None: the item is something else), its arguments
    /// read in the scope of the items before it. PostgreSQL's normalised SQL names every column of
    /// a function item (`jsonb_each(t.doc) e(key, value)`).
    fn table_function(&mut self, factor: &TableFactor) -> Result<Option<TableFunction>> {
        if let Some((rows, alias)) = values_list(factor) {
            return self.values_list(rows, alias).map(Some);
        }
        let unnest_args: Vec<FunctionArg>;
        let unnest_name: ObjectName;
        let (name, args, alias, ordinality) = match factor {
            TableFactor::Function {
                name, args, alias, ..
            } => (name, &args[..], alias, false),
            // `unnest(a [, b ...])`, which the parser reads as the UNNEST keyword.
            TableFactor::UNNEST {
                alias,
                array_exprs,
                with_offset,
                with_ordinality,
                ..
            } => {
                if *with_offset {
                    return unsupported("WITH OFFSET");
                }
                unnest_args = array_exprs
                    .iter()
                    .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e.clone())))
                    .collect();
                unnest_name = ObjectName::from(vec![sqlparser::ast::Ident::new("unnest")]);
                (&unnest_name, &unnest_args[..], alias, *with_ordinality)
            }
            TableFactor::Table {
                name,
                args: Some(args),
                alias,
                with_ordinality,
                sample,
                ..
            } => {
                if sample.is_some() {
                    return unsupported("TABLESAMPLE");
                }
                (name, &args.args[..], alias, *with_ordinality)
            }
            _ => return Ok(None),
        };
        let Some(alias) = alias.as_ref().filter(|a| !a.columns.is_empty()) else {
            return invalid(format!("table function {name}() without column names"));
        };
        if alias.columns.iter().any(|c| c.data_type.is_some()) {
            return unsupported(format!(
                "a column definition list on table function {name}()"
            ));
        }
        let mut call = vec![ExprPart::Sql(format!("{name}("))];
        for (i, arg) in args.iter().enumerate() {
            if i > 0 {
                call.push(ExprPart::Sql(", ".into()));
            }
            // `name => value` keeps its name.
            let (prefix, value) = match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(value)) => (String::new(), value),
                FunctionArg::Named {
                    name: arg_name,
                    arg: FunctionArgExpr::Expr(value),
                    operator,
                } => (format!("{arg_name} {operator} "), value),
                FunctionArg::ExprNamed {
                    name: arg_name,
                    arg: FunctionArgExpr::Expr(value),
                    operator,
                } => (format!("{arg_name} {operator} "), value),
                other => {
                    return unsupported(format!("argument {other} of table function {name}()"))
                }
            };
            if !prefix.is_empty() {
                call.push(ExprPart::Sql(prefix));
            }
            let rendered = self.render(value, "a table function's arguments")?;
            call.push(ExprPart::Sql("(".into()));
            call.extend(rendered.parts);
            call.push(ExprPart::Sql(")".into()));
        }
        // The numbering is the function's: each row's own, as deterministic as its rows.
        call.push(ExprPart::Sql(
            if ordinality { ") WITH ORDINALITY" } else { ")" }.into(),
        ));
        Ok(Some(TableFunction {
            what: format!("table function {name}()"),
            alias: ident_name(&alias.name),
            names: alias.columns.iter().map(|c| ident_name(&c.name)).collect(),
            call: Expr { parts: call },
        }))
    }

    /// `(VALUES (..), ..) AS alias(names)` as an expansion: its rows (constants, or with LATERAL
    /// reading the items before it) follow each row before it.
    fn values_list(&mut self, rows: &[Vec<SqlExpr>], alias: &TableAlias) -> Result<TableFunction> {
        let mut parts = vec![Expr::sql("(VALUES ")];
        for (i, row) in rows.iter().enumerate() {
            parts.push(Expr::sql(if i == 0 { "(" } else { ", (" }));
            for (j, value) in row.iter().enumerate() {
                if j > 0 {
                    parts.push(Expr::sql(", "));
                }
                parts.push(self.render(value, "a VALUES list")?);
            }
            parts.push(Expr::sql(")"));
        }
        parts.push(Expr::sql(")"));
        // Columns the alias does not name are PostgreSQL's `column1`, `column2`, ...
        let width = rows.first().map_or(0, Vec::len);
        let names = (0..width)
            .map(|i| {
                alias
                    .columns
                    .get(i)
                    .map_or_else(|| format!("column{}", i + 1), |c| ident_name(&c.name))
            })
            .collect();
        Ok(TableFunction {
            what: "a VALUES list".into(),
            alias: ident_name(&alias.name),
            names,
            call: concat(parts),
        })
    }

    /// The symbol of a USING column on one side: a column merged by an inner USING join, else the
    /// first item that has it.
    fn side_column(&mut self, side: &Side, name: &str) -> Result<usize> {
        if let Some((_, sym)) = side.merged.iter().find(|(n, _)| n == name) {
            return Ok(*sym);
        }
        let scope = self.current_scope();
        for item in side.items.clone() {
            if let Some(col) = self.scopes[scope].items[item]
                .names
                .iter()
                .position(|n| n == name)
            {
                return Ok(self.column(scope, item, col));
            }
        }
        invalid(format!("USING column {name} not found"))
    }

    fn factor(&mut self, factor: &TableFactor) -> Result<Side> {
        match factor {
            TableFactor::Table {
                name,
                alias,
                args,
                sample,
                ..
            } => {
                if args.is_some() {
                    return unsupported(format!("table function {name}() in FROM"));
                }
                if sample.is_some() {
                    return unsupported("TABLESAMPLE");
                }
                let item = self.relation(name, alias.as_ref())?;
                Ok(self.leaf(item))
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                sample,
            } => {
                if *lateral {
                    return unsupported("LATERAL subquery");
                }
                if sample.is_some() {
                    return unsupported("TABLESAMPLE");
                }
                let sub = self.subquery(subquery)?;
                let alias_name = alias
                    .as_ref()
                    .map(|a| ident_name(&a.name))
                    .unwrap_or_default();
                let names = renamed(sub.names, alias.as_ref())?;
                Ok(self.leaf(Item::new(alias_name, names, Source::Node(sub.node))))
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.is_some() {
                    return unsupported("alias on a parenthesised join");
                }
                self.table_with_joins(table_with_joins)
            }
            TableFactor::Function { name, .. } => {
                unsupported(format!("table function {name}() in FROM"))
            }
            TableFactor::UNNEST { .. } => unsupported("table function unnest() in FROM"),
            other => unsupported(format!("FROM item {other}")),
        }
    }

    fn leaf(&mut self, item: Item) -> Side {
        let scope = self.current_scope();
        let items = &mut self.scopes[scope].items;
        items.push(item);
        let n = items.len() - 1;
        Side {
            tree: FromTree::Item(n),
            items: n..n + 1,
            merged: Vec::new(),
        }
    }

    /// A named relation: a CTE in scope (when unqualified), else a table or view from the catalog.
    fn relation(&mut self, name: &ObjectName, alias: Option<&TableAlias>) -> Result<Item> {
        let parts = name_parts(name)?;
        let (schema, relation) = match parts.as_slice() {
            [relation] => (None, relation),
            [schema, relation] => (Some(schema.as_str()), relation),
            _ => return invalid(format!("unexpected relation name {name}")),
        };
        let alias_name = alias.map_or_else(|| relation.clone(), |a| ident_name(&a.name));
        if schema.is_none() {
            if let Some(cte) = self.cte_names.iter().rev().find(|c| c.name == *relation) {
                let node = Node::CteRef {
                    id: cte.id,
                    arity: cte.columns.len(),
                };
                return Ok(Item::new(
                    alias_name,
                    renamed(cte.columns.clone(), alias)?,
                    Source::Node(node),
                ));
            }
        }
        match self.catalog.relation(schema, relation) {
            Some(Relation::Table {
                relid,
                schema,
                name,
                columns,
            }) => {
                let names = renamed(columns.clone(), alias)?;
                Ok(Item::new(
                    alias_name,
                    names,
                    Source::Table {
                        table: TableRef {
                            relid,
                            schema,
                            name,
                        },
                        columns,
                    },
                ))
            }
            Some(Relation::View { definition }) => {
                let view = self.view(&definition)?;
                Ok(Item::new(
                    alias_name,
                    renamed(view.names, alias)?,
                    Source::Node(view.node),
                ))
            }
            None => invalid(format!("relation {name} does not exist")),
        }
    }

    /// Turns the FROM tree into nodes: scans read only the block's used columns, and join
    /// conditions get positions relative to their join's inputs.
    pub(super) fn build_from(&mut self, tree: FromTree, layout: &Layout) -> Result<Node> {
        let items = std::mem::take(&mut self.scopes[layout.scope].items);
        let mut leaves: Vec<Option<Node>> = items
            .into_iter()
            .map(|item| {
                Some(match item.source {
                    Source::Table { table, columns } => {
                        let columns = columns
                            .into_iter()
                            .zip(item.used)
                            .filter_map(|(c, used)| used.then_some(c))
                            .collect();
                        Node::Scan {
                            table,
                            columns,
                            types: vec![],
                        }
                    }
                    Source::Node(node) => node,
                    // Built by its FromTree::Expand.
                    Source::Function => return None,
                })
            })
            .collect();
        self.build_tree(tree, layout, &mut leaves)
    }

    fn build_tree(
        &self,
        tree: FromTree,
        layout: &Layout,
        leaves: &mut [Option<Node>],
    ) -> Result<Node> {
        match tree {
            FromTree::Item(i) => leaves[i]
                .take()
                .ok_or_else(|| AnalyzeError::Invalid("FROM item used twice".into())),
            FromTree::Join {
                kind,
                left,
                right,
                on,
            } => {
                let start = layout.offset(left.first_item());
                let left = self.build_tree(*left, layout, leaves)?;
                let right = self.build_tree(*right, layout, leaves)?;
                let on = and_all(on)
                    .map(|on| self.place_from(&on, layout, start))
                    .transpose()?;
                Ok(Node::Join {
                    kind,
                    left: Box::new(left),
                    right: Box::new(right),
                    on,
                    null_types: Vec::new(),
                })
            }
            FromTree::Expand {
                input,
                item,
                columns,
                call,
                on,
                left_join,
            } => {
                let (start, input) = match input {
                    Some(input) => (
                        layout.offset(input.first_item()),
                        self.build_tree(*input, layout, leaves)?,
                    ),
                    None => (layout.offset(item), Node::Unit),
                };
                let arity = input.arity();
                // The call reads the items before the function, nothing else.
                let call = self.place(&call, |sym| {
                    layout
                        .position(sym)?
                        .checked_sub(start)
                        .filter(|&p| p < arity)
                })?;
                let on = and_all(on)
                    .map(|on| self.place_from(&on, layout, start))
                    .transpose()?;
                let expand = |left_join| Node::Expand {
                    input: Box::new(input),
                    call,
                    columns,
                    left_join,
                };
                Ok(match (on, left_join) {
                    (on, true) => expand(on),
                    (Some(predicate), false) => Node::Filter {
                        input: Box::new(expand(None)),
                        predicate,
                    },
                    (None, false) => expand(None),
                })
            }
            FromTree::Filter { input, predicates } => {
                let start = layout.offset(input.first_item());
                let input = self.build_tree(*input, layout, leaves)?;
                match and_all(predicates) {
                    Some(p) => Ok(Node::Filter {
                        input: Box::new(input),
                        predicate: self.place_from(&p, layout, start)?,
                    }),
                    None => Ok(input),
                }
            }
        }
    }

    /// Places an expression over the part of the block's FROM output that starts at `start`.
    fn place_from(&self, expr: &Expr, layout: &Layout, start: usize) -> Result<Expr> {
        self.place(expr, |sym| layout.position(sym)?.checked_sub(start))
    }
}

/// The rows and named alias of a FROM item that is a VALUES list, `[LATERAL] (VALUES ...) v(a, b)`.
fn values_list(factor: &TableFactor) -> Option<(&[Vec<SqlExpr>], &TableAlias)> {
    let TableFactor::Derived {
        subquery,
        alias: Some(alias),
        sample: None,
        ..
    } = factor
    else {
        return None;
    };
    let plain = subquery.with.is_none()
        && subquery.order_by.is_none()
        && subquery.limit_clause.is_none()
        && subquery.fetch.is_none();
    match subquery.body.as_ref() {
        SetExpr::Values(values) if plain => Some((&values.rows[..], alias)),
        _ => None,
    }
}

/// Whether a FROM item is a table function or a VALUES list, or a parenthesised join that starts
/// with one.
pub(super) fn starts_with_function(factor: &TableFactor) -> bool {
    if values_list(factor).is_some() {
        return true;
    }
    match factor {
        TableFactor::Function { .. }
        | TableFactor::UNNEST { .. }
        | TableFactor::Table { args: Some(_), .. } => true,
        TableFactor::NestedJoin {
            table_with_joins,
            alias: None,
        } => starts_with_function(&table_with_joins.relation),
        _ => false,
    }
}

/// Applies an alias's column list (`t(c1, c2)`), which renames the first columns.
pub(super) fn renamed(mut names: Vec<String>, alias: Option<&TableAlias>) -> Result<Vec<String>> {
    let columns = alias.map_or(&[][..], |a| &a.columns[..]);
    if columns.len() > names.len() {
        return invalid(format!(
            "alias {} has more columns than its relation",
            alias.map_or(String::new(), |a| a.to_string())
        ));
    }
    for (name, column) in names.iter_mut().zip(columns) {
        *name = ident_name(&column.name);
    }
    Ok(names)
}
