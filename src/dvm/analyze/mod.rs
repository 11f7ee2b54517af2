//! The analyzer: turns a stream table's normalised defining query (the text `pg_get_viewdef()` prints
//! with an empty search_path) into an [`OpTree`].
//!
//! Pure Rust: the query is parsed with `sqlparser`, and the only outside knowledge comes through the
//! [`Catalog`] trait. Expressions are not interpreted: each is printed back to SQL with its column
//! references replaced by positions (`template.rs`), so whatever PostgreSQL accepted is carried over
//! verbatim.
//!
//! Column references are resolved in two steps, because a table's scan lists only the columns the
//! query uses, so positions are not known until a whole query block has been read: first every
//! reference becomes a symbol (`scope.rs`), then the block's layout turns symbols into positions.
//! Before that, WHERE conjuncts are moved into the FROM tree as join conditions and filters of
//! single inputs (`pushdown.rs`).

/// The two `VisitorMut` methods that keep `self.depth`, the number of nested queries the visit is in:
/// a block's own expressions are those at depth 0.
macro_rules! track_query_depth {
    ($brk:ty) => {
        fn pre_visit_query(
            &mut self,
            _: &mut sqlparser::ast::Query,
        ) -> std::ops::ControlFlow<$brk> {
            self.depth += 1;
            std::ops::ControlFlow::Continue(())
        }

        fn post_visit_query(
            &mut self,
            _: &mut sqlparser::ast::Query,
        ) -> std::ops::ControlFlow<$brk> {
            self.depth -= 1;
            std::ops::ControlFlow::Continue(())
        }
    };
}

mod aggregate;
mod block;
mod distinct_on;
mod from;
mod grouping_sets;
mod leading_function;
mod pushdown;
mod query;
mod scalar;
mod scalar_select;
mod scope;
mod set_ops;
mod subquery;
mod template;
#[cfg(test)]
mod tests;
mod top_k;
mod window;

use std::fmt;

use std::ops::ControlFlow;

use sqlparser::ast::{AccessExpr, Expr as SqlExpr, Statement, VisitMut, VisitorMut};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::optree::{CollectedSubquery, Node, OpTree, UniqueKey};
use scope::{Frame, Scope, Syms};

/// What the analyzer needs to know about the database.
pub trait Catalog {
    /// A relation named in FROM (schema as written, or None when unqualified).
    fn relation(&self, schema: Option<&str>, name: &str) -> Option<Relation>;
    /// Whether a function (name as written, possibly schema-qualified like "pg_catalog.sum") is an aggregate.
    fn is_aggregate(&self, name: &str) -> bool;
    /// The column sets of table `relid` that no two rows share (its unique indexes that are valid,
    /// immediate, not partial and over plain columns; NULLs aside, which equal nothing).
    fn unique_keys(&self, _relid: u32) -> Vec<Vec<String>> {
        Vec::new()
    }
    /// Whether the catalog has `pgtrickle._window_ranks` (rank() and its kin): a 0.1.0 catalog
    /// until `ALTER EXTENSION pg_trickle UPDATE`, and a 0.2.0 one made before it, lack it.
    fn has_window_ranks(&self) -> bool {
        true
    }
    /// The SQL types of the columns a query returns (as `format_type` prints them, with
    /// ` COLLATE "schema"."name"` after one whose collation is not its type's default), or None when
    /// it cannot be described.
    fn column_types(&self, _query: &str) -> Option<Vec<String>> {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    /// A base table: its OID, schema, name, and ALL its column names in order.
    Table {
        relid: u32,
        schema: String,
        name: String,
        columns: Vec<String>,
    },
    /// A view: its normalised definition (a SELECT in the same normalised style), to be analysed in place
    /// as if it were a subquery in FROM with that alias.
    View { definition: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnalyzeError {
    /// A construct the differential engine does not support. The string NAMES the construct for users,
    /// e.g. "LIMIT", "window function row_number()", "NATURAL JOIN", "recursive CTE", "subquery in the SELECT list".
    Unsupported(String),
    /// The SQL could not be parsed or resolved (should not happen for PostgreSQL-normalised input).
    Invalid(String),
}

impl fmt::Display for AnalyzeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnalyzeError::Unsupported(what) => {
                write!(f, "{what} is not supported in a stream table's query")
            }
            AnalyzeError::Invalid(why) => write!(f, "invalid defining query: {why}"),
        }
    }
}

impl std::error::Error for AnalyzeError {}

type Result<T> = std::result::Result<T, AnalyzeError>;

fn unsupported<T>(what: impl Into<String>) -> Result<T> {
    Err(AnalyzeError::Unsupported(what.into()))
}

fn invalid<T>(why: impl Into<String>) -> Result<T> {
    Err(AnalyzeError::Invalid(why.into()))
}

/// Analyses a normalised SELECT into an OpTree.
pub fn analyze(sql: &str, catalog: &dyn Catalog) -> std::result::Result<OpTree, AnalyzeError> {
    let mut query = parse(sql)?;
    let mut analyzer = Analyzer::new(catalog);
    let distinct_on = distinct_on::rewrite_top(&mut query, &analyzer)?;
    let windows_on_top = window::rewrite(&mut query, &analyzer)?;
    if distinct_on || windows_on_top {
        analyzer.collected_subqueries.push(CollectedSubquery {
            query: format!(
                "SELECT * FROM ({}) AS pgt_collected",
                sql.trim().trim_end_matches(';')
            ),
            expanded: windows_on_top,
        });
    }
    let top_k = top_k::take(&mut query)?;
    let top = analyzer.query(&query)?;
    // A refill of the window runs the defining query, which breaks ties among the subquery's rows as
    // its plan meets them, where the tree's own rule (`full_from_tree`) may have chosen others.
    if top_k.is_some() && !analyzer.collected_subqueries.is_empty() {
        return unsupported(
            "ORDER BY ... LIMIT over a subquery, CTE or view with DISTINCT ON or window functions",
        );
    }
    if let Some(key) = top_k
        .iter()
        .flat_map(|t| &t.order)
        .find(|k| k.column >= top.names.len())
    {
        return Err(AnalyzeError::Invalid(format!(
            "ORDER BY position {} is not in the select list",
            key.column + 1
        )));
    }
    let tree = OpTree {
        root: top.node,
        ctes: analyzer.ctes,
        output_names: top.names,
        top_k,
        unique_keys: analyzer.unique_keys.into_inner(),
        full_from_tree: !analyzer.collected_subqueries.is_empty(),
        collected_subqueries: analyzer.collected_subqueries,
    };
    // Table functions and VALUES lists alone: rows no change could reach.
    if tree.tables().is_empty() {
        return unsupported("a query that reads no table (only table functions or VALUES lists)");
    }
    Ok(tree)
}

/// Whether the query names a table with `ONLY` (after FROM, JOIN or a comma in a FROM list), by its
/// tokens: string literals and quoted names that spell ONLY do not count.
fn reads_only(sql: &str) -> bool {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return false;
    };
    let words: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    words.windows(2).any(|pair| {
        let before = match pair[0] {
            Token::Word(w) => {
                w.quote_style.is_none() && matches!(w.keyword, Keyword::FROM | Keyword::JOIN)
            }
            Token::Comma => true,
            _ => false,
        };
        matches!(pair[1], Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::ONLY)
            && before
    })
}

/// How many operators one expression may chain at one level of parentheses. sqlparser reads
/// `a AND b AND c ...` into a tree one level deeper per operator (its recursion limit counts only
/// parentheses and subqueries): 30,000 `AND`s were read, 100,000 overflowed the backend's stack.
const MAX_CHAINED_OPERATORS: usize = 10_000;

/// The most operators (AND, OR and symbols other than `,` `.` `::` `;`) between two commas or
/// clause keywords at one level of parentheses: a bound on how deep sqlparser's tree of any one
/// expression in `tokens` is.
fn longest_operator_chain(tokens: &[TokenWithSpan]) -> usize {
    let mut levels = vec![0usize];
    let mut longest = 0;
    for t in tokens {
        let current = levels.last_mut().expect("the outermost level stays");
        match &t.token {
            Token::LParen | Token::LBracket => levels.push(0),
            Token::RParen | Token::RBracket => {
                if levels.len() > 1 {
                    levels.pop();
                }
            }
            Token::Comma | Token::SemiColon => *current = 0,
            Token::Word(w) if w.quote_style.is_none() => match w.keyword {
                Keyword::AND
                | Keyword::OR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::LIKE
                | Keyword::ILIKE => *current += 1,
                Keyword::SELECT
                | Keyword::FROM
                | Keyword::WHERE
                | Keyword::ON
                | Keyword::GROUP
                | Keyword::HAVING
                | Keyword::ORDER
                | Keyword::WHEN
                | Keyword::THEN
                | Keyword::ELSE
                | Keyword::UNION
                | Keyword::INTERSECT
                | Keyword::EXCEPT => *current = 0,
                _ => {}
            },
            Token::Word(_)
            | Token::Number(..)
            | Token::Whitespace(_)
            | Token::Period
            | Token::DoubleColon
            | Token::SingleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::DollarQuotedString(_)
            | Token::Placeholder(_)
            | Token::Char(_) => {}
            _ => *current += 1,
        }
        longest = longest.max(*levels.last().expect("the outermost level stays"));
    }
    longest
}

/// Parses one SELECT (a view's definition or the defining query).
fn parse(sql: &str) -> Result<sqlparser::ast::Query> {
    // The expression templates use these characters as markers; real queries never contain them.
    if sql.contains([template::MARK_OPEN, template::MARK_CLOSE]) {
        return unsupported("control characters U+0001/U+0002 in the query text");
    }
    // The parser's default recursion limit (50) bounds how deeply parentheses and subqueries nest,
    // and the chain check below how long an operator chain is: together they bound how deep every
    // later recursion (the visitor, Display, Drop, this analyzer) goes. Deeper input could
    // overflow a backend's stack, which PostgreSQL's max_stack_depth does not watch for Rust.
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql.trim().trim_end_matches(';'))
        .tokenize_with_location()
        .map_err(|e| AnalyzeError::Invalid(e.to_string()))?;
    if longest_operator_chain(&tokens) > MAX_CHAINED_OPERATORS {
        return unsupported(format!(
            "an expression chaining more than {MAX_CHAINED_OPERATORS} operators (AND, OR, +, ...) at one level"
        ));
    }
    let statements = Parser::new(&dialect)
        .with_tokens_with_locations(with_trim_characters(without_lateral_before_functions(
            tokens,
        )))
        .parse_statements()
        .map_err(|e| match e {
            ParserError::RecursionLimitExceeded => {
                AnalyzeError::Unsupported("expressions or subqueries nested too deeply".into())
            }
            // sqlparser 0.61 cannot parse PostgreSQL's `(expr COLLATE "C")`: name the construct.
            e if e.to_string().contains("COLLATE") => AnalyzeError::Unsupported("COLLATE".into()),
            // Nor `FROM ONLY t`, `JOIN ONLY t`.
            _ if reads_only(sql) => AnalyzeError::Unsupported(
                "FROM ONLY (a table read without its inheritance children)".into(),
            ),
            // Nor these forms of grouping sets (PostgreSQL prints them so).
            _ if sql.contains("GROUP BY DISTINCT ") => {
                AnalyzeError::Unsupported("GROUP BY DISTINCT".into())
            }
            _ if sql.contains("GROUPING SETS (")
                && (sql.contains("ROLLUP(") || sql.contains("CUBE(")) =>
            {
                AnalyzeError::Unsupported("ROLLUP or CUBE inside GROUPING SETS".into())
            }
            // Nor `FETCH FIRST n ROWS WITH TIES` (PostgreSQL prints `FETCH FIRST (n) ...`).
            _ if sql.contains(" ROWS WITH TIES") => {
                AnalyzeError::Unsupported("FETCH FIRST ... WITH TIES".into())
            }
            // Nor several functions in one `ROWS FROM (...)` (one alone is printed without it).
            _ if sql.contains("ROWS FROM(") => {
                AnalyzeError::Unsupported("ROWS FROM (...) with more than one function".into())
            }
            // Nor a whole row as a value: PostgreSQL prints `SELECT t FROM t` as `t.*::t`.
            _ if sql.contains(".*::") => AnalyzeError::Unsupported(
                "whole-row reference (a table's row as a value: SELECT t FROM t)".into(),
            ),
            e => AnalyzeError::Invalid(match near_error(sql.trim(), &e.to_string()) {
                Some(near) => format!("could not parse the query near \"{near}\": {e}"),
                None => format!("could not parse the query: {e}"),
            }),
        })?;
    match <[Statement; 1]>::try_from(statements) {
        Ok([Statement::Query(mut query)]) => {
            let _ = query.visit(&mut ColumnFirst);
            set_ops::rewrite(&mut query)?;
            Ok(*query)
        }
        _ => invalid("expected a single SELECT statement"),
    }
}

/// The text around where sqlparser stopped (its message ends `at Line: L, Column: C`), so that the
/// error points into the query the user wrote rather than at a line of PostgreSQL's printing of it.
fn near_error(sql: &str, message: &str) -> Option<String> {
    let (_, at) = message.rsplit_once(" at Line: ")?;
    let (line, column) = at.split_once(", Column: ")?;
    let line: usize = line.trim().parse().ok()?;
    let column: usize = column.trim().parse().ok()?;
    let text: Vec<char> = sql.lines().nth(line.checked_sub(1)?)?.chars().collect();
    let start = column.saturating_sub(1).min(text.len());
    // Up to 30 characters before it and 40 from it, cut at whitespace before.
    let window = start.saturating_sub(30);
    let from = match window {
        0 => 0,
        _ => text[window..start]
            .iter()
            .position(|c| c.is_whitespace())
            .map_or(window, |i| window + i + 1),
    };
    let to = (start + 40).min(text.len());
    let near: String = text[from..to].iter().collect();
    let near = near.trim();
    (!near.is_empty()).then(|| near.to_string())
}

/// Parses one expression the analyser restates (a rewrite's own text).
fn parse_expr(sql: &str) -> Result<SqlExpr> {
    let mut expr = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| AnalyzeError::Invalid(format!("could not restate {sql}: {e}")))?;
    // As `parse` does for the whole query: `t.c[1]` is column `t.c`, subscripted.
    let _ = expr.visit(&mut ColumnFirst);
    Ok(expr)
}

/// PostgreSQL prints a table function that reads earlier FROM items as `LATERAL f(..) [WITH
/// ORDINALITY] a(..)`, and sqlparser reads `LATERAL f(..)` without `WITH ORDINALITY`. For a function
/// in FROM, LATERAL is implied (PostgreSQL's documentation says so), so it is dropped before a
/// function's name; `LATERAL (subquery)` keeps it.
fn without_lateral_before_functions(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let next_word = |i: usize| {
        tokens[i + 1..]
            .iter()
            .find(|t| !matches!(t.token, Token::Whitespace(_)))
            .is_some_and(|t| matches!(t.token, Token::Word(_)))
    };
    let lateral: Vec<bool> = (0..tokens.len())
        .map(|i| {
            matches!(&tokens[i].token, Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::LATERAL)
                && next_word(i)
        })
        .collect();
    tokens
        .into_iter()
        .zip(lateral)
        .filter_map(|(token, lateral)| (!lateral).then_some(token))
        .collect()
}

/// PostgreSQL prints `trim(s)` as `TRIM(BOTH FROM s)`, which sqlparser cannot read without the
/// characters to trim: they are written in, `TRIM(BOTH ' ' FROM s)`, the same function.
fn with_trim_characters(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let word = |t: &TokenWithSpan, k: Keyword| matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.keyword == k);
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    for token in tokens {
        if word(&token, Keyword::FROM) {
            // The tokens before FROM, whitespace left out: TRIM ( BOTH|LEADING|TRAILING.
            let seen: Vec<&TokenWithSpan> = out
                .iter()
                .rev()
                .filter(|t| !matches!(t.token, Token::Whitespace(_)))
                .take(3)
                .collect();
            if let [side, paren, trim] = seen.as_slice() {
                if word(trim, Keyword::TRIM)
                    && matches!(paren.token, Token::LParen)
                    && [Keyword::BOTH, Keyword::LEADING, Keyword::TRAILING]
                        .iter()
                        .any(|&k| word(side, k))
                {
                    out.push(TokenWithSpan::wrap(Token::SingleQuotedString(" ".into())));
                    out.push(TokenWithSpan::wrap(Token::Whitespace(
                        sqlparser::tokenizer::Whitespace::Space,
                    )));
                }
            }
        }
        out.push(token);
    }
    out
}

/// sqlparser reads a subscripted column, `t.c[1]` (as PostgreSQL prints it), as the name `t` with
/// the accesses `.c` and `[1]`. The analyser finds columns as `t.c` names: this makes the column
/// the root of the access, `(t.c)[1]`, which prints the same.
struct ColumnFirst;

impl VisitorMut for ColumnFirst {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
        if let SqlExpr::CompoundFieldAccess { root, access_chain } = expr {
            if let (
                SqlExpr::Identifier(table),
                Some(AccessExpr::Dot(SqlExpr::Identifier(column))),
            ) = (root.as_ref(), access_chain.first())
            {
                **root = SqlExpr::CompoundIdentifier(vec![table.clone(), column.clone()]);
                access_chain.remove(0);
            }
        }
        ControlFlow::Continue(())
    }
}

/// A query (or query block) turned into a node, with its output column names.
struct Analyzed {
    node: Node,
    names: Vec<String>,
}

/// A CTE visible by name, and where its body went in `OpTree::ctes`.
struct CteName {
    name: String,
    id: usize,
    columns: Vec<String>,
    /// `name AS (query)`, for a query that reads it to be described on its own (`collected_subqueries`).
    sql: String,
}

/// Views may nest; a limit turns a catalog cycle into an error instead of a stack overflow.
const MAX_VIEW_DEPTH: usize = 64;

/// State of one analysis. Query blocks are analysed recursively; `frames` is the chain of blocks
/// being read (innermost last), which is what a column reference can see.
struct Analyzer<'c> {
    catalog: &'c dyn Catalog,
    /// `OpTree::ctes`, in the order the CTEs were analysed.
    ctes: Vec<Node>,
    /// CTEs in scope, innermost last.
    cte_names: Vec<CteName>,
    /// Every block's FROM items, by scope id (never shrinks, so ids stay valid).
    scopes: Vec<Scope>,
    frames: Vec<Frame>,
    syms: Syms,
    view_depth: usize,
    /// `OpTree::unique_keys`: the keys the reading relies on (noted while reading subqueries, which
    /// is done through `&self`).
    unique_keys: std::cell::RefCell<Vec<UniqueKey>>,
    /// `OpTree::collected_subqueries`.
    collected_subqueries: Vec<CollectedSubquery>,
}

impl<'c> Analyzer<'c> {
    fn new(catalog: &'c dyn Catalog) -> Self {
        Analyzer {
            catalog,
            ctes: Vec::new(),
            cte_names: Vec::new(),
            scopes: Vec::new(),
            frames: Vec::new(),
            syms: Syms::default(),
            view_depth: 0,
            unique_keys: Default::default(),
            collected_subqueries: Vec::new(),
        }
    }

    /// Analyses a view's definition on its own: it cannot see the CTEs or blocks around its use.
    fn view(&mut self, definition: &str) -> Result<Analyzed> {
        if self.view_depth >= MAX_VIEW_DEPTH {
            return invalid("views nested too deeply (a cycle in the catalog?)");
        }
        let query = parse(definition)?;
        let cte_names = std::mem::take(&mut self.cte_names);
        let frames = std::mem::take(&mut self.frames);
        self.view_depth += 1;
        let result = self.subquery(&query);
        self.view_depth -= 1;
        self.cte_names = cte_names;
        self.frames = frames;
        result
    }
}
