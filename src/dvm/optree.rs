//! The OpTree: a defining query as a tree of relational operators, with every column reference
//! resolved to a *position* in the input of the operator that evaluates it.
//!
//! Every node produces a relation whose columns are identified by position (0..arity). Expressions are
//! SQL templates ([`Expr`]) whose column references are positions, so the delta engine can place any
//! input under any alias without re-resolving names. Built by `dvm::analyze` from the normalised query,
//! stored as JSON in the catalog, and read by every refresh (in-process or in the external worker).

use serde::{Deserialize, Serialize};

/// A SQL expression with column references replaced by input positions.
/// `parts` alternate freely between literal SQL text and column references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expr {
    pub parts: Vec<ExprPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExprPart {
    /// SQL text, copied verbatim.
    Sql(String),
    /// The value of input column `n` (0-based).
    Col(usize),
}

impl Expr {
    pub fn sql(text: impl Into<String>) -> Expr {
        Expr {
            parts: vec![ExprPart::Sql(text.into())],
        }
    }

    pub fn col(n: usize) -> Expr {
        Expr {
            parts: vec![ExprPart::Col(n)],
        }
    }

    /// Renders the expression, writing each column reference with `column(n)`.
    pub fn render(&self, column: &dyn Fn(usize) -> String) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                ExprPart::Sql(s) => out.push_str(s),
                ExprPart::Col(n) => out.push_str(&column(*n)),
            }
        }
        out
    }

    /// The input positions this expression reads.
    pub fn columns(&self) -> Vec<usize> {
        self.parts
            .iter()
            .filter_map(|p| {
                if let ExprPart::Col(n) = p {
                    Some(*n)
                } else {
                    None
                }
            })
            .collect()
    }

    /// The same expression with every column position mapped through `f`.
    pub fn remap(&self, f: &dyn Fn(usize) -> usize) -> Expr {
        Expr {
            parts: self
                .parts
                .iter()
                .map(|p| match p {
                    ExprPart::Col(n) => ExprPart::Col(f(*n)),
                    other => other.clone(),
                })
                .collect(),
        }
    }
}

/// The aggregate functions the engine can maintain from stored state (pg_catalog's, without DISTINCT
/// or ORDER BY); everything else is `Other` and is recomputed per touched group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggFunc {
    CountStar,
    Count,
    Sum,
    Avg,
    Min,
    Max,
    Other,
}

impl AggFunc {
    /// The SQL function's name (`Other`: the aggregates the engine does not maintain from state).
    pub fn name(self) -> &'static str {
        match self {
            AggFunc::CountStar | AggFunc::Count => "count",
            AggFunc::Sum => "sum",
            AggFunc::Avg => "avg",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::Other => "aggregate",
        }
    }
}

/// One aggregate call, structurally: `func(arg) FILTER (WHERE filter)`, over the Aggregate's input
/// columns. `arg_type` (the argument's SQL type) and `less_than` (its default btree `<` operator, as
/// `OPERATOR(schema.<)`, for MIN/MAX) are filled in by the extension after analysis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggCall {
    pub func: AggFunc,
    pub arg: Option<Expr>,
    pub filter: Option<Expr>,
    #[serde(default)]
    pub arg_type: String,
    #[serde(default)]
    pub less_than: String,
    /// For a SUM/AVG over `numeric` without a declared scale: the number of decimals every value of
    /// `arg` has when that is fixed by the expression (`dvm::scale`), filled in with `arg_type`.
    #[serde(default)]
    pub fixed_scale: Option<u64>,
}

impl AggCall {
    pub fn other() -> AggCall {
        AggCall {
            func: AggFunc::Other,
            arg: None,
            filter: None,
            arg_type: String::new(),
            less_than: String::new(),
            fixed_scale: None,
        }
    }
}

/// A base table read by the query (after views are expanded). `relid` is the table's OID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TableRef {
    pub relid: u32,
    pub schema: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    /// FULL [OUTER] JOIN: the inner join, plus each side's rows that match nothing, padded with NULLs.
    Full,
}

impl JoinKind {
    /// The sides whose unmatched rows the join keeps, padded: true = the left side.
    pub fn preserved_sides(self) -> &'static [bool] {
        match self {
            JoinKind::Inner => &[],
            JoinKind::Left => &[true],
            JoinKind::Right => &[false],
            JoinKind::Full => &[true, false],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Node {
    /// A base table; output column i is table column `columns[i]` (only the columns the query uses,
    /// possibly none, e.g. for `count(*)`), of SQL type `types[i]` (filled in by the extension after
    /// analysis, as the analyser does not know types).
    Scan {
        table: TableRef,
        columns: Vec<String>,
        #[serde(default)]
        types: Vec<String>,
    },
    /// Rows of `input` for which `predicate` (over input columns) is true.
    Filter { input: Box<Node>, predicate: Expr },
    /// Output column i is `exprs[i]` over the input columns.
    Project { input: Box<Node>, exprs: Vec<Expr> },
    /// Output = left columns followed by right columns. `on` is over that concatenation; None is a
    /// cross join. For outer joins, `null_types` are the SQL types of the padded side's columns
    /// (right side for Left, left side for Right, left side then right side for Full), filled in by
    /// the extension after analysis.
    Join {
        kind: JoinKind,
        left: Box<Node>,
        right: Box<Node>,
        on: Option<Expr>,
        null_types: Vec<String>,
    },
    /// Rows of `left` with (anti: without) at least one row of `right` satisfying `on`, which is over
    /// left columns followed by right columns. Output = left columns. From EXISTS / NOT EXISTS / IN.
    SemiJoin {
        anti: bool,
        left: Box<Node>,
        right: Box<Node>,
        on: Expr,
    },
    /// GROUP BY: output = the `group_by` values followed by the `aggregates` values. Each aggregate is
    /// a complete aggregate call over input columns, e.g. `sum(#3) FILTER (WHERE (#3 > 0))`, evaluated
    /// by PostgreSQL as written. No `group_by` = one group over the whole input (always one row).
    /// `calls[j]` describes `aggregates[j]` structurally when the analyser recognised it (empty in
    /// trees stored before this existed: those aggregates are all treated as [`AggFunc::Other`]);
    /// `key_types` are the group keys' SQL types, filled in by the extension like `Scan::types`.
    Aggregate {
        input: Box<Node>,
        group_by: Vec<Expr>,
        aggregates: Vec<Expr>,
        #[serde(default)]
        calls: Vec<AggCall>,
        #[serde(default)]
        key_types: Vec<String>,
        /// Per group key, its type's equality as `OPERATOR(schema.=)`, resolved when the stream
        /// table is created: generated SQL matching keys must mean the query's grouping whatever
        /// the search_path (e.g. citext's case-insensitive `=`). Empty in trees from before 0.2.0.
        #[serde(default)]
        key_eq: Vec<String>,
    },
    /// DISTINCT over all input columns.
    Distinct { input: Box<Node> },
    /// UNION ALL; all inputs have the same arity. (UNION is Distinct over UnionAll.)
    UnionAll { inputs: Vec<Node> },
    /// A reference to `OpTree::ctes[id]`, whose output has `arity` columns.
    CteRef { id: usize, arity: usize },
    /// A table function or VALUES list in FROM (`FROM t, LATERAL jsonb_array_elements(t.doc) AS
    /// e(value)`): each row of `input` followed by each of the `columns` columns of the rows `call`
    /// (over the input's columns, as a FROM item: `f(..) [WITH ORDINALITY]`, `(VALUES ..)`) returns
    /// for it. Linear: a row's expansion depends on that row alone, so the delta of an expansion is
    /// the expansion of the delta. `left_join` (over the output columns) is the ON of `LEFT JOIN
    /// LATERAL f(..) ON ...`: an input row none of whose rows satisfies it is kept once, its
    /// function columns NULL.
    Expand {
        input: Box<Node>,
        call: Expr,
        columns: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        left_join: Option<Expr>,
    },
    /// One row of no columns, which never changes: the input of a table function or VALUES list
    /// that reads nothing before it (`FROM generate_series(1, 7) AS d(n) LEFT JOIN t ON ...`).
    Unit,
}

impl Node {
    /// Number of output columns. `ctes` resolves CteRef arity cheaply (it is stored).
    pub fn arity(&self) -> usize {
        match self {
            Node::Scan { columns, .. } => columns.len(),
            Node::Filter { input, .. } | Node::Distinct { input } => input.arity(),
            Node::Project { exprs, .. } => exprs.len(),
            Node::Join { left, right, .. } => left.arity() + right.arity(),
            Node::SemiJoin { left, .. } => left.arity(),
            Node::Aggregate {
                group_by,
                aggregates,
                ..
            } => group_by.len() + aggregates.len(),
            Node::UnionAll { inputs } => inputs.first().map_or(0, Node::arity),
            Node::CteRef { arity, .. } => *arity,
            Node::Expand { input, columns, .. } => input.arity() + columns,
            Node::Unit => 0,
        }
    }

    /// Direct children (CteRef has none here; its body lives in `OpTree::ctes`).
    pub fn children(&self) -> Vec<&Node> {
        match self {
            Node::Scan { .. } | Node::CteRef { .. } | Node::Unit => vec![],
            Node::Filter { input, .. }
            | Node::Project { input, .. }
            | Node::Aggregate { input, .. }
            | Node::Expand { input, .. }
            | Node::Distinct { input } => vec![input],
            Node::Join { left, right, .. } | Node::SemiJoin { left, right, .. } => {
                vec![left, right]
            }
            Node::UnionAll { inputs } => inputs.iter().collect(),
        }
    }

    pub fn children_mut(&mut self) -> Vec<&mut Node> {
        match self {
            Node::Scan { .. } | Node::CteRef { .. } | Node::Unit => vec![],
            Node::Filter { input, .. }
            | Node::Project { input, .. }
            | Node::Aggregate { input, .. }
            | Node::Expand { input, .. }
            | Node::Distinct { input } => vec![input],
            Node::Join { left, right, .. } | Node::SemiJoin { left, right, .. } => {
                vec![left, right]
            }
            Node::UnionAll { inputs } => inputs.iter_mut().collect(),
        }
    }

    /// A short name for explanations and errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Node::Scan { .. } => "Scan",
            Node::Filter { .. } => "Filter",
            Node::Project { .. } => "Project",
            Node::Join {
                kind: JoinKind::Inner,
                ..
            } => "InnerJoin",
            Node::Join {
                kind: JoinKind::Left,
                ..
            } => "LeftJoin",
            Node::Join {
                kind: JoinKind::Right,
                ..
            } => "RightJoin",
            Node::Join {
                kind: JoinKind::Full,
                ..
            } => "FullJoin",
            Node::SemiJoin { anti: false, .. } => "SemiJoin",
            Node::SemiJoin { anti: true, .. } => "AntiJoin",
            Node::Aggregate { .. } => "Aggregate",
            Node::Distinct { .. } => "Distinct",
            Node::UnionAll { .. } => "UnionAll",
            Node::CteRef { .. } => "CteRef",
            Node::Expand { .. } => "Expand",
            Node::Unit => "Unit",
        }
    }
}

/// A whole defining query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpTree {
    pub root: Node,
    /// Bodies of non-recursive CTEs, referenced by `Node::CteRef { id }` (possibly several times).
    pub ctes: Vec<Node>,
    /// The query's output column names (root arity).
    pub output_names: Vec<String>,
    /// `ORDER BY ... LIMIT k` of the whole query: the stream table holds the first k rows of `root`.
    #[serde(default)]
    pub top_k: Option<TopK>,
    /// Unique keys the reading of the query relies on: a correlated scalar subquery that is not an
    /// aggregate returns at most one row because its correlated columns hold one, so it is read as
    /// a left join. The stream table depends on such a key's index (`catalog::depend`), so the key
    /// cannot go while the stream table reads through it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unique_keys: Vec<UniqueKey>,
    /// FULL refreshes compute `root` rather than run the defining query: the query picks among
    /// tied rows as its plan happens to (`DISTINCT ON`, see `analyze::distinct_on`), the tree by a
    /// rule its deltas follow too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full_from_tree: bool,
    /// Subqueries in FROM, CTEs and views rewritten as the defining query's own SELECT is (window
    /// functions, DISTINCT ON): their columns are collected into arrays, which their types must allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collected_subqueries: Vec<CollectedSubquery>,
}

/// A subquery in FROM, a CTE or a view whose columns a refresh collects into arrays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectedSubquery {
    /// A query showing its columns: `WITH <the CTEs it sees> SELECT * FROM (<it>) AS pgt_collected`.
    pub query: String,
    /// Its rows are expanded from the arrays by `unnest` (window functions), which would expand a
    /// composite column into its fields.
    pub expanded: bool,
}

/// A unique key of a table, by its columns' names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniqueKey {
    pub relid: u32,
    pub columns: Vec<String>,
}

/// A top-level `ORDER BY ... LIMIT k [OFFSET m]` (see `dvm::top_k`), over the query's output columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopK {
    pub order: Vec<SortKey>,
    pub limit: u64,
    #[serde(default)]
    pub offset: u64,
}

/// One ORDER BY item: an output column, its direction and where NULLs go (None: the direction's
/// default, as PostgreSQL's `NULLS LAST` for ascending and `NULLS FIRST` for descending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortKey {
    pub column: usize,
    pub descending: bool,
    pub nulls_first: Option<bool>,
}

impl OpTree {
    /// Whether rows are expanded from arrays by `unnest` somewhere (window functions).
    pub fn expanded_rows(&self) -> bool {
        self.collected_subqueries.iter().any(|c| c.expanded)
    }

    /// Every base table the query reads, once each, in first-seen order.
    pub fn tables(&self) -> Vec<TableRef> {
        fn walk(node: &Node, out: &mut Vec<TableRef>) {
            if let Node::Scan { table, .. } = node {
                if !out.contains(table) {
                    out.push(table.clone());
                }
            }
            for child in node.children() {
                walk(child, out);
            }
        }
        let mut out = Vec::new();
        for cte in &self.ctes {
            walk(cte, &mut out);
        }
        walk(&self.root, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_render_and_remap_positions() {
        let e = Expr {
            parts: vec![
                ExprPart::Sql("(".into()),
                ExprPart::Col(1),
                ExprPart::Sql(" + ".into()),
                ExprPart::Col(0),
                ExprPart::Sql(")".into()),
            ],
        };
        assert_eq!(e.render(&|n| format!("t.c{n}")), "(t.c1 + t.c0)");
        assert_eq!(e.columns(), vec![1, 0]);
        assert_eq!(
            e.remap(&|n| n + 10).render(&|n| format!("c{n}")),
            "(c11 + c10)"
        );
    }

    #[test]
    fn arity_follows_the_operators() {
        let scan = |cols: &[&str]| Node::Scan {
            table: TableRef {
                relid: 1,
                schema: "public".into(),
                name: "t".into(),
            },
            columns: cols.iter().map(|c| c.to_string()).collect(),
            types: vec![],
        };
        let join = Node::Join {
            kind: JoinKind::Left,
            left: Box::new(scan(&["a", "b"])),
            right: Box::new(scan(&["c"])),
            on: None,
            null_types: vec![],
        };
        assert_eq!(join.arity(), 3);
        let agg = Node::Aggregate {
            input: Box::new(join),
            group_by: vec![Expr::col(0)],
            aggregates: vec![Expr::sql("count(*)")],
            calls: vec![],
            key_types: vec![],
            key_eq: vec![],
        };
        assert_eq!(agg.arity(), 2);
        let tree = OpTree {
            root: agg,
            ctes: vec![],
            output_names: vec!["a".into(), "n".into()],
            top_k: None,
            unique_keys: Vec::new(),
            full_from_tree: false,
            collected_subqueries: Vec::new(),
        };
        assert_eq!(tree.tables().len(), 1);
    }
}
