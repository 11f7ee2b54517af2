//! Analysing a defining query with PostgreSQL's own parser and analyser.
//!
//! The query is validated (one SELECT; syntax and semantic errors reported by PostgreSQL with their
//! position), then read once more into one analysed tree, by the role answering for it, from which
//! everything else is taken: the output columns with exact types (its target list), the relations
//! it names (its range tables, at any depth), and a normalised text (`pg_get_querydef` with an empty
//! search_path: every name schema-qualified, `*` expanded) that means the same thing whatever
//! search_path a later refresh runs under. pg_trickle never reads a user's text with its own rights:
//! another session may change what a name or a literal means between two readings.

use crate::catalog::HIDDEN_PREFIX;
use crate::error::{position_detail, PgtError, PgtResult, SqlState};
use crate::spi;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::cell::Cell;
use std::ffi::{CStr, CString};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Table,
    PartitionedTable,
    View,
    MatView,
    ForeignTable,
    StreamTable,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Table => "TABLE",
            SourceKind::PartitionedTable => "PARTITIONED_TABLE",
            SourceKind::View => "VIEW",
            SourceKind::MatView => "MATVIEW",
            SourceKind::ForeignTable => "FOREIGN_TABLE",
            SourceKind::StreamTable => "STREAM_TABLE",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SourceRelation {
    pub relid: Oid,
    pub kind: SourceKind,
}

#[derive(Debug, Clone)]
pub struct OutputColumn {
    pub name: String,
    /// Type, typmod and collation as SQL, e.g. `numeric(10,2)` or `text COLLATE "pg_catalog"."C"`.
    pub type_sql: String,
}

#[derive(Debug, Clone)]
pub struct QueryAnalysis {
    pub defining_query: String,
    pub columns: Vec<OutputColumn>,
    pub sources: Vec<SourceRelation>,
    /// Set when the query (views included) calls a function or operator that is not IMMUTABLE: a
    /// description naming the functions found.
    pub non_immutable_functions: Vec<String>,
    /// A nondeterministic collation some expression of the query (views included) compares or
    /// produces under, described: the first table column read under its own such collation
    /// (`column c of t with the nondeterministic collation x`), else the collation (`COLLATE`, a
    /// cast to a domain: `the nondeterministic collation x`).
    pub nondeterministic_collation: Option<String>,
    /// Every relation the query reads, views expanded at any depth (tables, partitioned tables,
    /// materialized views, foreign tables, system catalogs — those have no pg_depend entries).
    pub relations_read: Vec<Oid>,
    /// A set-returning function called in a select list (views included), named as `f()`.
    pub set_returning_in_select_list: Option<String>,
}

/// Where a query's names are read, and who reads its text. Reading a query's text runs code — a
/// literal of a composite type runs its fields' input functions, a domain's CHECK among them — so a
/// text is only ever read with the rights of a role that answers for it, never the extension
/// owner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    /// A stored defining query (schema-qualified, as PostgreSQL printed it with an empty
    /// search_path), read as the owner of its stream table (`privilege::reading_as`): a literal
    /// that ran nothing when the query was created may run a domain's CHECK now (its composite type
    /// gained a field of that domain).
    Stored(Oid),
    /// As the SQL API's caller wrote it: in their search_path, and read with their rights
    /// (`privilege::as_caller`).
    Written,
}

impl Names {
    /// `body`, which parses the query's text, as its writer would.
    fn parse<R>(self, body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
        match self {
            Names::Stored(owner) => super::privilege::reading_as(owner, body),
            Names::Written => super::privilege::as_caller(|| super::fence::reading_as_writer(body)),
        }
    }
}

/// Validates and analyses the stored defining query of a stream table that `owner` owns (its names
/// as stored). Leaves nothing behind.
pub fn analyze(query: &str, owner: Oid) -> PgtResult<QueryAnalysis> {
    analyze_names(query, Names::Stored(owner))
}

/// Validates and analyses a new defining query, its names read as its writer reads them.
pub fn analyze_new(query: &str) -> PgtResult<QueryAnalysis> {
    analyze_names(query, Names::Written)
}

fn analyze_names(query: &str, names: Names) -> PgtResult<QueryAnalysis> {
    let query = query.trim().trim_end_matches(';').trim_end();
    if query.is_empty() {
        return Err(PgtError::new(
            SqlState::InvalidParameterValue,
            "the defining query is empty",
        )
        .hint("Pass a SELECT statement."));
    }
    let reading = read_text(query, names)?;
    check_columns(&reading.columns)?;
    let sources = classify_sources(&reading.named_relations)?;
    let non_immutable_functions = if reading.mutable_functions {
        name_non_immutable_functions(&reading.walked.mutable_functions)?
    } else {
        vec![]
    };
    let (names, types): (Vec<String>, Vec<(Oid, i32, Oid)>) = reading
        .columns
        .iter()
        .map(|(name, t, m, c)| (name.clone(), (*t, *m, *c)))
        .unzip();
    let columns = named_types(names, &types)?;
    let defining_query = reading.defining_query;
    let nondeterministic_collation = match (
        reading.walked.nondeterministic_column,
        reading.walked.nondeterministic_collation,
    ) {
        (Some((table, attnum)), _) => spi::one::<String>(
            "SELECT pg_catalog.format('column %I of %s with the nondeterministic collation %I', a.attname, a.attrelid::pg_catalog.regclass, co.collname)
               FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
              WHERE a.attrelid = $1 AND a.attnum = $2",
            &[table.into(), attnum.into()],
        )?,
        (None, Some(oid)) => spi::one::<String>(
            "SELECT 'the nondeterministic collation ' OPERATOR(pg_catalog.||) oid::pg_catalog.regcollation::text FROM pg_catalog.pg_collation WHERE oid = $1",
            &[oid.into()],
        )?,
        (None, None) => None,
    };

    if columns.is_empty() {
        return Err(PgtError::new(
            SqlState::FeatureNotSupported,
            "the defining query has no output columns",
        )
        .detail("A stream table is a table: it needs at least one column.")
        .hint("Select at least one column."));
    }
    if let Some(c) = columns.iter().find(|c| c.name.starts_with(HIDDEN_PREFIX)) {
        let from_stream_table = sources.iter().any(|s| s.kind == SourceKind::StreamTable);
        return Err(PgtError::new(SqlState::ReservedName, format!("column name \"{}\" is reserved", c.name))
            .detail(format!("Column names starting with \"{HIDDEN_PREFIX}\" are reserved for pg_trickle's hidden columns."))
            .hint(if from_stream_table {
                "Name the columns you want instead of *: stream tables carry hidden columns."
            } else {
                "Rename the column with AS."
            }));
    }
    Ok(QueryAnalysis {
        defining_query,
        columns,
        sources,
        non_immutable_functions,
        nondeterministic_collation,
        relations_read: reading.walked.relations,
        set_returning_in_select_list: match reading.walked.set_returning {
            Some(f) => spi::one::<String>(
                "SELECT $1::pg_catalog.regproc::pg_catalog.text OPERATOR(pg_catalog.||) '()'",
                &[f.into()],
            )?,
            None => None,
        },
    })
}

/// Parses and analyses `query` as `names` says, refusing what is not one SELECT.
fn read_text(query: &str, names: Names) -> PgtResult<Reading> {
    names.parse(|| prepare_reporting_position(query))?;
    check_single_select(query)?;
    names.parse(|| read_tree(query))
}

/// The analysed tree of `query` (one SELECT that parses and analyses), read with the current rights
/// and names: for pg_trickle's query view, read as the stream table's owner.
pub fn parsed_tree(query: &str) -> PgtResult<*mut pg_sys::Query> {
    let c = CString::new(query).map_err(|_| PgtError::internal("query contains a NUL byte"))?;
    // SAFETY: a stored defining query parses and analyses (an error raised anyway unwinds as one).
    Ok(unsafe { analysed(&c) })
}

/// Refuses output columns no table can have, as `CREATE VIEW` would.
fn check_columns(columns: &[(String, Oid, i32, Oid)]) -> PgtResult<()> {
    for (i, (name, t, _, collation)) in columns.iter().enumerate() {
        if columns[..i].iter().any(|(earlier, ..)| earlier == name) {
            return Err(PgtError::new(
                SqlState::DuplicateColumn,
                format!("column \"{name}\" specified more than once"),
            )
            .hint("Name the defining query's columns apart with AS."));
        }
        // SAFETY: catalog cache lookups of a type the analysis just used.
        let (pseudo, collatable) = unsafe {
            (
                pg_sys::get_typtype(*t) as u8 == pg_sys::TYPTYPE_PSEUDO,
                pg_sys::type_is_collatable(*t),
            )
        };
        if pseudo {
            return Err(PgtError::new(
                SqlState::InvalidTableDefinition,
                format!("column \"{name}\" has pseudo-type {}", type_name(*t)),
            )
            .hint("Cast the column to a type a table can hold."));
        }
        if collatable && *collation == Oid::INVALID {
            return Err(PgtError::new(
                SqlState::IndeterminateCollation,
                format!("could not determine which collation to use for column \"{name}\""),
            )
            .hint("Use the COLLATE clause to set the collation explicitly."));
        }
    }
    Ok(())
}

/// `t` as SQL names it.
fn type_name(t: Oid) -> String {
    // SAFETY: a catalog cache lookup; the name is copied at once.
    unsafe { CStr::from_ptr(pg_sys::format_type_be(t)) }
        .to_string_lossy()
        .into_owned()
}

/// The output column types of `sql` (a SELECT) read as `reader` ([`describe_columns`]), as SQL
/// type names.
pub fn describe_types(sql: &str, reader: Oid) -> PgtResult<Vec<String>> {
    Ok(describe_columns(sql, reader)?
        .into_iter()
        .map(|c| c.type_sql)
        .collect())
}

/// The columns `sql` returns, as PostgreSQL types them (as a view of it would have them). `sql` is
/// built by pg_trickle from parts of a defining query — with the text of the views it reads, whose
/// literals no check of the query's own saw — so it is read as `reader`, the role answering for
/// the query (its stream table's owner): reading runs its literals' input functions.
pub fn describe_columns(sql: &str, reader: Oid) -> PgtResult<Vec<OutputColumn>> {
    let c = CString::new(sql).map_err(|_| PgtError::internal("query contains a NUL byte"))?;
    let columns = super::privilege::reading_as(reader, || {
        // PostgreSQL's error, if any, as an error of ours (the callers tell what it rejected).
        Spi::connect(|client| client.prepare(sql, &[]).map(|_| ()))
            .map_err(|e| PgtError::internal(format!("SPI: {e}")))?;
        // SAFETY: the text was just parsed and analysed successfully by SPI, so these calls do
        // not raise; the trees live in the current memory context and are only read.
        Ok(unsafe { output_columns(analysed(&c)) })
    })?;
    let names = columns.iter().map(|(name, ..)| name.clone()).collect();
    let types = columns
        .iter()
        .map(|&(_, t, m, c)| (t, m, c))
        .collect::<Vec<_>>();
    named_types(names, &types)
}

/// The analysed tree of the one statement in `sql` (before rewriting: views not expanded).
///
/// # Safety
/// `sql` parses and analyses without error.
unsafe fn analysed(sql: &CStr) -> *mut pg_sys::Query {
    // SAFETY: see the function's contract: the parser returns one RawStmt.
    unsafe {
        let raw_list = pg_sys::pg_parse_query(sql.as_ptr());
        let raw = (*(*raw_list).elements).ptr_value as *mut pg_sys::RawStmt;
        pg_sys::parse_analyze_fixedparams(
            raw,
            sql.as_ptr(),
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
        )
    }
}

/// (name, type, typmod, collation) of each column an analysed SELECT returns.
///
/// # Safety
/// `query` is a valid analysed query tree.
unsafe fn output_columns(query: *mut pg_sys::Query) -> Vec<(String, Oid, i32, Oid)> {
    // SAFETY: see the function's contract; the target list's entries are TargetEntry nodes.
    unsafe {
        let list = (*query).targetList;
        let length = if list.is_null() { 0 } else { (*list).length };
        (0..length)
            .map(|i| (*(*list).elements.add(i as usize)).ptr_value as *mut pg_sys::TargetEntry)
            .filter(|&entry| !(*entry).resjunk)
            .map(|entry| {
                let expr = (*entry).expr as *mut pg_sys::Node;
                let name = if (*entry).resname.is_null() {
                    "?column?".to_string()
                } else {
                    CStr::from_ptr((*entry).resname)
                        .to_string_lossy()
                        .into_owned()
                };
                (
                    name,
                    pg_sys::exprType(expr),
                    pg_sys::exprTypmod(expr),
                    pg_sys::exprCollation(expr),
                )
            })
            .collect()
    }
}

/// Runs `body` with an empty search_path, so that everything PostgreSQL prints is schema-qualified.
pub fn with_empty_search_path<R>(body: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    crate::refresh::settings::with_search_path("", body)
}

/// What one reading of a query shows: its analysed tree, then rewritten (views expanded).
struct Reading {
    /// The text PostgreSQL prints for the tree with an empty search_path.
    defining_query: String,
    /// (name, type, typmod, collation) of each output column.
    columns: Vec<(String, Oid, i32, Oid)>,
    /// Every relation a range table of the query names (views not expanded), at any depth, in the
    /// order met.
    named_relations: Vec<Oid>,
    /// It calls something that is not IMMUTABLE, by PostgreSQL's own test (contain_mutable_functions),
    /// so views and operators count. pg_depend cannot answer this: built-in functions are pinned and
    /// have no dependency entries.
    mutable_functions: bool,
    /// Its relations and its first nondeterministic collation, at any depth (subqueries, CTEs,
    /// sublinks, views).
    walked: Walked,
}

/// Reads `query` (one SELECT that [`prepare_reporting_position`] accepted) into one analysed tree
/// and takes everything the analysis needs from that tree alone: a second reading could find
/// other objects under the same names.
fn read_tree(query: &str) -> PgtResult<Reading> {
    let c = CString::new(query).map_err(|_| PgtError::internal("query contains a NUL byte"))?;
    // SAFETY: the query was parsed and analysed successfully by SPI just before (an error raised
    // now, by another session's DDL in between, unwinds as one); the trees live in the current
    // memory context.
    unsafe {
        let tree = analysed(&c);
        if (*tree).hasModifyingCTE {
            return Err(PgtError::new(
                SqlState::FeatureNotSupported,
                "the defining query must not modify data",
            )
            .detail("Its WITH clause holds an INSERT, UPDATE, DELETE or MERGE, which every refresh would run again."));
        }
        let mut out = Reading {
            defining_query: String::new(),
            columns: output_columns(tree),
            named_relations: Vec::new(),
            mutable_functions: false,
            walked: Walked::default(),
        };
        collect_named_relations(
            tree as *mut pg_sys::Node,
            (&mut out.named_relations as *mut Vec<Oid>).cast(),
        );
        out.defining_query = printed(tree)?;
        check_printed_calls_the_same(tree, &out.defining_query)?;
        // The rewriter changes the tree in place: last.
        let rewritten = pg_sys::QueryRewrite(tree);
        for i in 0..(*rewritten).length {
            let q = (*(*rewritten).elements.add(i as usize)).ptr_value as *mut pg_sys::Node;
            out.mutable_functions |= pg_sys::contain_mutable_functions(q);
            walk_rewritten(q, (&mut out.walked as *mut Walked).cast());
        }
        Ok(out)
    }
}

/// The text `pg_get_viewdef` would print for a view of an analysed query — every name outside
/// pg_catalog schema-qualified, values printed with the query-text settings — so that the stored
/// text and the query view's read the same.
///
/// # Safety
/// `tree` is a valid analysed query tree (not rewritten); it is left as it was.
unsafe fn printed(tree: *mut pg_sys::Query) -> PgtResult<String> {
    // SAFETY: the function's contract; a copy gets the range table entries PostgreSQL 15 gives a
    // view's rule (`old` and `new`, first: UpdateRangeTableOfViewParse), which decide how names print
    // (columns qualified by their table, an alias `new` renamed); they are read by nothing.
    let view_like = unsafe {
        let copy = pg_sys::copyObjectImpl(tree.cast()) as *mut pg_sys::Query;
        let placeholder = |name: &CStr| {
            let rte = pg_sys::palloc0(std::mem::size_of::<pg_sys::RangeTblEntry>())
                as *mut pg_sys::RangeTblEntry;
            (*rte).type_ = pg_sys::NodeTag::T_RangeTblEntry;
            (*rte).rtekind = pg_sys::RTEKind::RTE_RESULT;
            (*rte).alias = pg_sys::makeAlias(name.as_ptr(), std::ptr::null_mut());
            (*rte).eref = pg_sys::makeAlias(name.as_ptr(), std::ptr::null_mut());
            rte.cast()
        };
        let rtable = pg_sys::lcons(placeholder(c"new"), (*copy).rtable);
        (*copy).rtable = pg_sys::lcons(placeholder(c"old"), rtable);
        pg_sys::ffi::pg_guard_ffi_boundary(|| OffsetVarNodes(copy.cast(), 2, 0));
        copy
    };
    let text = with_empty_search_path(|| {
        crate::refresh::settings::with_query_text_settings(|| {
            // SAFETY: a valid query tree, as above; the text is copied at once.
            Ok(
                unsafe { CStr::from_ptr(pg_sys::pg_get_querydef(view_like, false)) }
                    .to_string_lossy()
                    .into_owned(),
            )
        })
    })?;
    Ok(text.trim().trim_end_matches(';').trim_end().to_string())
}

/// Refuses a query whose printed text calls other functions than the query, read back as a
/// refresh reads it (with the pinned search_path). PostgreSQL prints `IS DISTINCT FROM`, `NULLIF`,
/// `CASE x WHEN`, `JOIN ... USING` and a row's `IN (SELECT ...)` without the operator they use, so
/// its schema is lost: with `citext` in `public`, `a IS DISTINCT FROM b` would be read back as a
/// comparison of `text`, case sensitive, and the stream table would silently differ from its query.
///
/// # Safety
/// `tree` is a valid analysed query tree (not rewritten).
unsafe fn check_printed_calls_the_same(tree: *mut pg_sys::Query, text: &str) -> PgtResult<()> {
    // SAFETY: the function's contract.
    match unsafe { printed_calls_apart(tree, text) }? {
        None => Ok(()),
        Some(problem) => Err(PgtError::new(
            SqlState::FeatureNotSupported,
            format!("the defining query cannot be stored: written out, it {problem}"),
        )
        .detail(LOST_OPERATOR_DETAIL)
        .hint(LOST_OPERATOR_HINT)),
    }
}

const LOST_OPERATOR_DETAIL: &str = "PostgreSQL writes IS DISTINCT FROM, NULLIF, CASE x WHEN, JOIN ... USING and a row's IN (SELECT ...) without the schema of the operator they use, and refreshes read the text with search_path = pg_catalog, pg_temp, where an operator of another schema (such as citext's) is not found by its name.";
const LOST_OPERATOR_HINT: &str = "Write such comparisons with the operator named by its schema, as in a OPERATOR(public.=) b (with IS NULL tests where NULLs must compare as IS DISTINCT FROM does), and joins with ON rather than USING.";

/// Why the differential engine may not read view `view` from its text, if so: read back as a
/// refresh reads it, the text PostgreSQL prints for it calls other functions than the view does
/// (see [`check_printed_calls_the_same`]). A refresh that reads the view by name is not affected.
/// Read as `reader`, the role answering for the query: printing and reading values runs their
/// types' functions.
pub fn view_text_problem(view: Oid, reader: Oid) -> PgtResult<Option<String>> {
    super::privilege::reading_as(reader, || view_text_problem_as_reader(view))
}

fn view_text_problem_as_reader(view: Oid) -> PgtResult<Option<String>> {
    let text = crate::refresh::settings::with_query_text_settings(|| {
        spi::one::<String>(
            "SELECT pg_catalog.pg_get_viewdef($1, false)",
            &[view.into()],
        )
    })?
    .unwrap_or_default();
    // SAFETY: the view's rule action, copied before its relation is closed (the lock is kept to the
    // end of the transaction, as any reader's).
    let tree = unsafe {
        let relation = pg_sys::relation_open(view, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let tree =
            pg_sys::copyObjectImpl(pg_sys::get_view_query(relation).cast()) as *mut pg_sys::Query;
        pg_sys::relation_close(relation, pg_sys::NoLock as pg_sys::LOCKMODE);
        tree
    };
    // SAFETY: a valid analysed query tree.
    let problem = unsafe { printed_calls_apart(tree, text.trim().trim_end_matches(';')) }?;
    Ok(problem.map(|problem| {
        format!(
            "view {}, whose text as PostgreSQL writes it out {problem}: it names no operator's schema in IS DISTINCT FROM, NULLIF, CASE x WHEN or USING (read whole, by its name)",
            relation_name(view)
        )
    }))
}

/// `relid` as `regclass` prints it.
fn relation_name(relid: Oid) -> String {
    spi::one::<String>("SELECT $1::pg_catalog.regclass::text", &[relid.into()])
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// What is wrong with `text` as the printed form of `tree`, if anything: read back as a refresh
/// reads it, it does not parse, or calls other functions (as multisets) than `tree`.
///
/// # Safety
/// `tree` is a valid analysed query tree (not rewritten).
unsafe fn printed_calls_apart(tree: *mut pg_sys::Query, text: &str) -> PgtResult<Option<String>> {
    // SAFETY: the function's contract.
    let written = unsafe { functions_called(tree) };
    let c = CString::new(text).map_err(|_| PgtError::internal("query contains a NUL byte"))?;
    let read_back = crate::refresh::settings::with_search_path(
        crate::refresh::settings::PINNED_SEARCH_PATH,
        || {
            crate::refresh::settings::with_query_text_settings(|| {
                Ok(spi::in_subtransaction(|| {
                    // SAFETY: an error parsing the text unwinds into the subtransaction.
                    Ok(unsafe { functions_called(analysed(&c)) })
                }))
            })
        },
    )?;
    Ok(match read_back {
        Err(message) => Some(format!("does not read back ({message})")),
        Ok(read) => {
            // As multisets (a query may call 100,000 operators).
            let sorted = |calls: Vec<Oid>| {
                let mut calls: Vec<u32> = calls.into_iter().map(Oid::to_u32).collect();
                calls.sort_unstable();
                calls
            };
            super::calls::first_call_apart(&sorted(written), &sorted(read?))
                .map(|f| format!("would not call {} as it does", function_name(f.into())))
        }
    })
}

/// `f` as `regprocedure` prints it, schema-qualified.
fn function_name(f: Oid) -> String {
    // SAFETY: a catalog cache lookup; the name is copied at once.
    unsafe { CStr::from_ptr(pg_sys::format_procedure_qualified(f)) }
        .to_string_lossy()
        .into_owned()
}

/// Every function an analysed query tree calls, at any depth (operators' and casts' functions,
/// aggregates and window functions included), once per call.
///
/// # Safety
/// `tree` is a valid analysed query tree.
unsafe fn functions_called(tree: *mut pg_sys::Query) -> Vec<Oid> {
    let mut found: Vec<Oid> = Vec::new();
    // SAFETY: the function's contract; the walker's context is `found`.
    unsafe {
        collect_functions(tree.cast(), (&mut found as *mut Vec<Oid>).cast());
    }
    found
}

/// Tree walker: [`note_function`] for each node, in queries at any depth.
#[pg_guard]
unsafe extern "C-unwind" fn collect_functions(
    node: *mut pg_sys::Node,
    context: *mut std::ffi::c_void,
) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: `node` is a valid node of an analysed query tree; `context` the caller's Vec<Oid>.
    unsafe {
        if (*node).type_ == pg_sys::NodeTag::T_Query {
            return pg_sys::query_tree_walker(
                node as *mut pg_sys::Query,
                Some(collect_functions),
                context,
                0,
            );
        }
        pg_sys::check_functions_in_node(node, Some(note_function), context);
        pg_sys::expression_tree_walker(node, Some(collect_functions), context)
    }
}

/// [`pg_sys::check_functions_in_node`] callback: pushes `func` onto the `Vec<Oid>` behind `context`.
#[pg_guard]
unsafe extern "C-unwind" fn note_function(func: Oid, context: *mut std::ffi::c_void) -> bool {
    // SAFETY: `context` is the walker's Vec<Oid>.
    unsafe { (*(context as *mut Vec<Oid>)).push(func) };
    false
}

unsafe extern "C-unwind" {
    // rewrite/rewriteManip.h, which pgrx does not bind: adds `offset` to every range table index.
    fn OffsetVarNodes(
        node: *mut pg_sys::Node,
        offset: std::ffi::c_int,
        sublevels_up: std::ffi::c_int,
    );
}

/// Tree walker noting in the `Vec<Oid>` behind `context` every relation a range table entry names,
/// in queries at any depth (subqueries, CTEs, sublinks).
#[pg_guard]
unsafe extern "C-unwind" fn collect_named_relations(
    node: *mut pg_sys::Node,
    context: *mut std::ffi::c_void,
) -> bool {
    use pg_sys::NodeTag::*;
    if node.is_null() {
        return false;
    }
    // SAFETY: `node` is a valid node of an analysed query tree; `context` the caller's Vec<Oid>.
    unsafe {
        match (*node).type_ {
            T_Query => pg_sys::query_tree_walker(
                node as *mut pg_sys::Query,
                Some(collect_named_relations),
                context,
                pg_sys::QTW_EXAMINE_RTES_BEFORE as i32,
            ),
            T_RangeTblEntry => {
                let rte = node as *mut pg_sys::RangeTblEntry;
                let found = &mut *(context as *mut Vec<Oid>);
                if (*rte).rtekind == pg_sys::RTEKind::RTE_RELATION && !found.contains(&(*rte).relid)
                {
                    found.push((*rte).relid);
                }
                false // its subquery, functions and sample are walked next
            }
            _ => pg_sys::expression_tree_walker(node, Some(collect_named_relations), context),
        }
    }
}

/// What [`walk_rewritten`] collects from an analysed query tree.
#[derive(Default)]
struct Walked {
    /// The OID of every relation a range table entry reads.
    relations: Vec<Oid>,
    /// The first expression's nondeterministic collation, result or input (the one its comparison
    /// uses). Such a collation calls strings equal that differ in bytes ('A' and 'a'), which the
    /// engine's row identities and group keys (hashes and record images of the bytes) tell apart.
    nondeterministic_collation: Option<Oid>,
    /// The first table column read under a nondeterministic collation (its own), as (table,
    /// attribute number): named in the refusal rather than the collation alone.
    nondeterministic_column: Option<(Oid, i16)>,
    /// The range tables of the queries being walked, innermost last: what a `Var` refers to.
    rtables: Vec<*mut pg_sys::List>,
    /// The first few functions an expression calls that are not IMMUTABLE (an operator's, a cast's
    /// or a type's output function included), by OID.
    mutable_functions: Vec<Oid>,
    /// The first set-returning function a select list calls (`hasTargetSRFs`), by OID. Functions in
    /// FROM are range table entries, not seen here.
    set_returning: Option<Oid>,
}

/// How many non-immutable functions an error message names at most.
const MUTABLE_FUNCTIONS_NAMED: usize = 4;

/// [`pg_sys::check_functions_in_node`] callback: notes `func` in the [`Walked`] behind `context`
/// when it is not IMMUTABLE. Never stops the check.
#[pg_guard]
unsafe extern "C-unwind" fn note_mutable(func: Oid, context: *mut std::ffi::c_void) -> bool {
    // SAFETY: `context` is the walker's Walked; func_volatile reads the syscache.
    unsafe {
        let walked = &mut *(context as *mut Walked);
        if pg_sys::func_volatile(func) as u8 != pg_sys::PROVOLATILE_IMMUTABLE
            && !walked.mutable_functions.contains(&func)
            && walked.mutable_functions.len() < MUTABLE_FUNCTIONS_NAMED
        {
            walked.mutable_functions.push(func);
        }
    }
    false
}

/// The table column `var` reads, as (table, attribute number), given the range tables of the
/// queries around it (innermost last); None for a system column or another range table entry (a
/// subquery, a join, a CTE).
///
/// # Safety
/// `var` is a valid Var of the innermost query of `rtables`, whose lists are valid.
unsafe fn table_column(rtables: &[*mut pg_sys::List], var: *mut pg_sys::Var) -> Option<(Oid, i16)> {
    // SAFETY: the caller's; the index is checked against the list's length.
    unsafe {
        let level = rtables.len().checked_sub(1 + (*var).varlevelsup as usize)?;
        let rtable = rtables[level];
        let index = (*var).varno - 1;
        if (*var).varattno <= 0 || rtable.is_null() || index < 0 || index >= (*rtable).length {
            return None;
        }
        let rte = (*(*rtable).elements.add(index as usize)).ptr_value as *mut pg_sys::RangeTblEntry;
        ((*rte).rtekind == pg_sys::RTEKind::RTE_RELATION).then(|| ((*rte).relid, (*var).varattno))
    }
}

/// Expression walker noting in the `Option<Oid>` behind `context` the first set-returning function
/// or operator it meets, and stopping there. Subqueries are their own queries: not entered.
#[pg_guard]
unsafe extern "C-unwind" fn find_set_returning(
    node: *mut pg_sys::Node,
    context: *mut std::ffi::c_void,
) -> bool {
    use pg_sys::NodeTag::*;
    if node.is_null() {
        return false;
    }
    // SAFETY: `node` is a valid node of an analysed query tree and `context` the caller's Option.
    unsafe {
        let found = &mut *(context as *mut Option<Oid>);
        match (*node).type_ {
            T_Query => return false,
            T_FuncExpr if (*(node as *mut pg_sys::FuncExpr)).funcretset => {
                *found = Some((*(node as *mut pg_sys::FuncExpr)).funcid);
                return true;
            }
            // (An analysed tree need not have filled in opfuncid yet.)
            T_OpExpr if (*(node as *mut pg_sys::OpExpr)).opretset => {
                *found = Some(pg_sys::get_opcode((*(node as *mut pg_sys::OpExpr)).opno));
                return true;
            }
            _ => {}
        }
        pg_sys::expression_tree_walker(node, Some(find_set_returning), context)
    }
}

/// Tree walker filling the [`Walked`] behind `context`.
#[pg_guard]
unsafe extern "C-unwind" fn walk_rewritten(
    node: *mut pg_sys::Node,
    context: *mut std::ffi::c_void,
) -> bool {
    use pg_sys::NodeTag::*;
    if node.is_null() {
        return false;
    }
    // SAFETY: `node` is a valid node of an analysed query tree and `context` the caller's Walked.
    unsafe {
        let walked = &mut *(context as *mut Walked);
        let tag = (*node).type_;
        if tag == T_Query {
            let query = node as *mut pg_sys::Query;
            if (*query).hasTargetSRFs && walked.set_returning.is_none() {
                pg_sys::expression_tree_walker(
                    (*query).targetList as *mut pg_sys::Node,
                    Some(find_set_returning),
                    (&mut walked.set_returning as *mut Option<Oid>).cast(),
                );
            }
            walked.rtables.push((*query).rtable);
            // A join's alias list names every column of both sides, read or not: not walked. (A Var
            // of a merged USING column refers to the join; its collation is still seen.)
            let done = pg_sys::query_tree_walker(
                query,
                Some(walk_rewritten),
                context,
                (pg_sys::QTW_EXAMINE_RTES_BEFORE | pg_sys::QTW_IGNORE_JOINALIASES) as i32,
            );
            walked.rtables.pop();
            return done;
        }
        if tag == T_Var && walked.nondeterministic_column.is_none() {
            let var = node as *mut pg_sys::Var;
            let collation = (*var).varcollid;
            if collation != Oid::INVALID && !pg_sys::get_collation_isdeterministic(collation) {
                walked.nondeterministic_column = table_column(&walked.rtables, var);
            }
        }
        if tag == T_RangeTblEntry {
            let rte = node as *mut pg_sys::RangeTblEntry;
            // The rewriter turned every view read into a subquery; an entry still naming a view
            // is one of the OLD/NEW placeholders PostgreSQL 15 keeps in a view's rule, read by nothing.
            let view = (*rte).relkind as u8 == pg_sys::RELKIND_VIEW;
            if (*rte).rtekind == pg_sys::RTEKind::RTE_RELATION
                && !view
                && !walked.relations.contains(&(*rte).relid)
            {
                walked.relations.push((*rte).relid);
            }
            return false; // its subquery, functions and security quals are walked next
        }
        if walked.nondeterministic_collation.is_none() {
            // exprCollation raises an error for node types that are not expressions (a TargetEntry,
            // a List, a FromExpr...): ask only these. exprInputCollation answers for any node.
            let has_collation = matches!(
                tag,
                T_Var
                    | T_Const
                    | T_Param
                    | T_Aggref
                    | T_WindowFunc
                    | T_SubscriptingRef
                    | T_FuncExpr
                    | T_OpExpr
                    | T_DistinctExpr
                    | T_NullIfExpr
                    | T_ScalarArrayOpExpr
                    | T_FieldSelect
                    | T_RelabelType
                    | T_CoerceViaIO
                    | T_ArrayCoerceExpr
                    | T_CollateExpr
                    | T_CaseExpr
                    | T_ArrayExpr
                    | T_CoalesceExpr
                    | T_MinMaxExpr
                    | T_CoerceToDomain
            );
            let collations = [
                if has_collation {
                    pg_sys::exprCollation(node)
                } else {
                    Oid::INVALID
                },
                pg_sys::exprInputCollation(node),
            ];
            walked.nondeterministic_collation = collations
                .into_iter()
                .find(|&c| c != Oid::INVALID && !pg_sys::get_collation_isdeterministic(c));
        }
        pg_sys::check_functions_in_node(node, Some(note_mutable), context);
        pg_sys::expression_tree_walker(node, Some(walk_rewritten), context)
    }
}

/// Names for the error message: the non-immutable functions the query calls (`functions`, in the
/// order met), each with its volatility, and as what the query wrote where it did not call it by
/// name: the operator it implements (`||` of text and an integer is the STABLE `textanycat`), the
/// cast (`date_trunc('month', d)` of a date `d` casts it to timestamptz, which depends on TimeZone),
/// or the text conversion of one type (`ts::text` of a timestamptz).
fn name_non_immutable_functions(functions: &[Oid]) -> PgtResult<Vec<String>> {
    let names: Vec<String> = spi::rows(
        "SELECT COALESCE(
                  (SELECT pg_catalog.format('operator %s (%s(), %s)', o.oprname, p.proname, v.volatility) FROM pg_catalog.pg_operator o
                    WHERE o.oprcode = p.oid ORDER BY o.oid LIMIT 1),
                  (SELECT pg_catalog.format('cast from %s to %s (%s(), %s)', c.castsource::pg_catalog.regtype,
                                            c.casttarget::pg_catalog.regtype, p.proname, v.volatility)
                     FROM pg_catalog.pg_cast c WHERE c.castfunc = p.oid ORDER BY c.oid LIMIT 1),
                  (SELECT pg_catalog.format(CASE WHEN t.typoutput = p.oid THEN 'conversion of %s to text (%s(), %s)'
                                                 ELSE 'conversion of text to %s (%s(), %s)' END,
                                            t.oid::pg_catalog.regtype, p.proname, v.volatility)
                     FROM pg_catalog.pg_type t
                    WHERE p.oid IN (t.typoutput, t.typinput) AND t.typtype <> 'd'
                      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type o
                                       WHERE p.oid IN (o.typoutput, o.typinput) AND o.typtype <> 'd' AND o.oid <> t.oid)),
                  pg_catalog.format('function %s() (%s)', p.proname, v.volatility)) AS func
           FROM pg_catalog.unnest($1::pg_catalog.oid[]) WITH ORDINALITY AS f(oid, n)
           JOIN pg_catalog.pg_proc p ON p.oid = f.oid,
                LATERAL (SELECT CASE p.provolatile WHEN 's' THEN 'STABLE' ELSE 'VOLATILE' END AS volatility) v
          ORDER BY f.n",
        &[functions.to_vec().into()],
        |r| spi::col(r, "func"),
    )?;
    Ok(match names.len() {
        0 => vec![
            "a non-immutable function or SQL value (such as CURRENT_TIMESTAMP or CURRENT_USER)"
                .into(),
        ],
        _ => vec![format!("the non-immutable {}", names.join(", "))],
    })
}

thread_local! {
    static ERROR_POSITION: Cell<i32> = const { Cell::new(0) };
}

/// Error-context callback: runs while PostgreSQL still holds the ErrorData, and keeps the position
/// (SPI has already turned a syntax-error position into an internal one by then).
unsafe extern "C-unwind" fn remember_error_position(_arg: *mut std::ffi::c_void) {
    // SAFETY: called by errfinish() with an error being reported, which is what these getters need.
    let pos = unsafe {
        match pg_sys::getinternalerrposition() {
            0 => pg_sys::geterrposition(),
            p => p,
        }
    };
    ERROR_POSITION.with(|c| c.set(pos));
}

/// Parses and analyses the query through SPI (nothing runs). Errors keep PostgreSQL's SQLSTATE and
/// message and gain a pointer into the defining query: pgrx does not carry error positions across
/// its boundary, so they are caught on the way through an error-context callback.
fn prepare_reporting_position(query: &str) -> PgtResult<()> {
    ERROR_POSITION.with(|c| c.set(0));
    let mut callback = pg_sys::ErrorContextCallback {
        previous: std::ptr::null_mut(),
        callback: Some(remember_error_position),
        arg: std::ptr::null_mut(),
    };
    // SAFETY: the callback lives on this frame and is unlinked below on every path (pgrx restores
    // error_context_stack to its value at call time when it converts an error, which includes it).
    unsafe {
        callback.previous = pg_sys::error_context_stack;
        pg_sys::error_context_stack = &mut callback;
    }
    let outcome = PgTryBuilder::new(|| Ok(Spi::connect(|c| c.prepare(query, &[]).map(|_| ()))))
        .catch_others(Err)
        .execute();
    // SAFETY: see above.
    unsafe { pg_sys::error_context_stack = callback.previous };
    match outcome {
        Ok(spi_result) => spi_result.map_err(|e| PgtError::internal(format!("SPI: {e}"))),
        // The transaction is aborted anyway: the caller raises this error.
        Err(CaughtError::PostgresError(report)) => {
            let position = ERROR_POSITION.with(|c| c.get());
            let mut err = PgtError::new(
                SqlState::Passthrough(report.sql_error_code() as i32),
                report.message(),
            );
            let mut detail = report.detail().map(str::to_string).unwrap_or_default();
            if position > 0 {
                if !detail.is_empty() {
                    detail.push('\n');
                }
                detail.push_str(&position_detail(query, position as usize));
            }
            if !detail.is_empty() {
                err = err.detail(detail);
            }
            if let Some(hint) = report.hint() {
                err = err.hint(hint);
            }
            Err(err)
        }
        Err(other) => other.rethrow(),
    }
}

/// One statement, and a plain SELECT (not SELECT INTO, not FOR UPDATE).
fn check_single_select(query: &str) -> PgtResult<()> {
    let c = CString::new(query).map_err(|_| {
        PgtError::new(
            SqlState::InvalidParameterValue,
            "the defining query contains a NUL byte",
        )
    })?;
    // SAFETY: the query was just parsed successfully by SPI, so raw_parser returns a List of RawStmt
    // (allocated in the current memory context) and raises no error. We only read node tags and fields.
    unsafe {
        let list = pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        let count = if list.is_null() { 0 } else { (*list).length };
        if count != 1 {
            return Err(PgtError::new(
                SqlState::InvalidParameterValue,
                "the defining query must be a single SELECT statement",
            )
            .detail(format!("The query contains {count} statements.")));
        }
        let raw = (*(*list).elements).ptr_value as *mut pg_sys::RawStmt;
        let stmt = (*raw).stmt;
        if (*stmt).type_ != pg_sys::NodeTag::T_SelectStmt {
            let tag = CStr::from_ptr(pg_sys::GetCommandTagName(pg_sys::CreateCommandTag(stmt)));
            return Err(PgtError::new(
                SqlState::InvalidParameterValue,
                "the defining query must be a single SELECT statement",
            )
            .detail(format!(
                "The query is {} statement.",
                with_article(&tag.to_string_lossy())
            )));
        }
        let select = stmt as *mut pg_sys::SelectStmt;
        if !(*select).intoClause.is_null() {
            return Err(PgtError::new(
                SqlState::FeatureNotSupported,
                "the defining query must not use SELECT INTO",
            ));
        }
        if !(*select).lockingClause.is_null() {
            return Err(PgtError::new(
                SqlState::FeatureNotSupported,
                "the defining query must not use FOR UPDATE/SHARE",
            ));
        }
    }
    Ok(())
}

/// Every live column of a relation, in order, its type with ` COLLATE schema.name` after it when
/// its collation is not the type's own.
pub fn collated_columns(relid: Oid) -> PgtResult<Vec<OutputColumn>> {
    let columns = spi::rows(
        "SELECT attname::text AS name, atttypid AS t, atttypmod AS m, attcollation AS c
           FROM pg_catalog.pg_attribute
          WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped
          ORDER BY attnum",
        &[relid.into()],
        |r| {
            Ok((
                spi::col::<String>(r, "name")?,
                (
                    spi::col::<Oid>(r, "t")?,
                    spi::col::<i32>(r, "m")?,
                    spi::col::<Oid>(r, "c")?,
                ),
            ))
        },
    )?;
    let (names, types): (Vec<String>, Vec<(Oid, i32, Oid)>) = columns.into_iter().unzip();
    named_types(names, &types)
}

/// Columns named `names`, of the (type, typmod, collation) `types` as SQL: `numeric(12,2)`,
/// `text COLLATE "pg_catalog"."C"` when the collation is not the type's own.
fn named_types(names: Vec<String>, types: &[(Oid, i32, Oid)]) -> PgtResult<Vec<OutputColumn>> {
    // Types and collations outside pg_catalog are named with their schema, whatever the search_path.
    let sql = with_empty_search_path(|| {
        spi::rows(
        "SELECT pg_catalog.format_type(c.t, c.m)
                OPERATOR(pg_catalog.||) CASE WHEN c.c OPERATOR(pg_catalog.<>) 0
                                              AND c.c OPERATOR(pg_catalog.<>) t.typcollation
                     THEN ' COLLATE ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(cn.nspname)
                          OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(co.collname)
                     ELSE '' END AS type_sql
           FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.oid[]), pg_catalog.unnest($2::pg_catalog.int4[]),
                           pg_catalog.unnest($3::pg_catalog.oid[])) WITH ORDINALITY AS c(t, m, c, i)
           JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) c.t
           LEFT JOIN pg_catalog.pg_collation co ON co.oid OPERATOR(pg_catalog.=) c.c
           LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid OPERATOR(pg_catalog.=) co.collnamespace
          ORDER BY c.i",
        &[
            types.iter().map(|t| t.0).collect::<Vec<_>>().into(),
            types.iter().map(|t| t.1).collect::<Vec<_>>().into(),
            types.iter().map(|t| t.2).collect::<Vec<_>>().into(),
        ],
        |r| spi::col::<String>(r, "type_sql"),
    )
    })?;
    if sql.len() != names.len() {
        return Err(PgtError::internal("a column's type vanished"));
    }
    Ok(names
        .into_iter()
        .zip(sql)
        .map(|(name, type_sql)| OutputColumn { name, type_sql })
        .collect())
}

/// The relations a query names (`relids`, from its range tables), each with its kind.
fn classify_sources(relids: &[Oid]) -> PgtResult<Vec<SourceRelation>> {
    let rows = spi::rows(
        "SELECT c.oid AS relid, c.relkind::text AS relkind, c.relpersistence::text AS persistence,
                c.oid::regclass::text AS relname,
                EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables st WHERE st.pgt_relid = c.oid) AS is_stream_table
           FROM pg_catalog.unnest($1::pg_catalog.oid[]) AS r(oid)
           JOIN pg_catalog.pg_class c ON c.oid = r.oid
          ORDER BY 1",
        &[relids.to_vec().into()],
        |r| {
            Ok((
                spi::col::<Oid>(r, "relid")?,
                spi::col::<String>(r, "relkind")?,
                spi::col::<String>(r, "persistence")?,
                spi::col::<String>(r, "relname")?,
                spi::col::<bool>(r, "is_stream_table")?,
            ))
        },
    )?;
    if rows.len() != relids.len() {
        return Err(PgtError::internal("a relation the query reads vanished"));
    }
    rows.into_iter()
        .map(|(relid, relkind, persistence, relname, is_st)| {
            if persistence == "t" {
                return Err(PgtError::new(
                    SqlState::FeatureNotSupported,
                    format!("stream tables cannot read temporary table \"{relname}\""),
                )
                .detail("Background refreshes run in other sessions, which cannot see this session's temporary tables."));
            }
            let kind = match (relkind.as_str(), is_st) {
                (_, true) => SourceKind::StreamTable,
                ("r", _) => SourceKind::Table,
                ("p", _) => SourceKind::PartitionedTable,
                ("v", _) => SourceKind::View,
                ("m", _) => SourceKind::MatView,
                ("f", _) => SourceKind::ForeignTable,
                (other, _) => {
                    return Err(PgtError::new(
                        SqlState::FeatureNotSupported,
                        format!("stream tables cannot read \"{relname}\" (relkind '{other}')"),
                    ))
                }
            };
            Ok(SourceRelation { relid, kind })
        })
        .collect()
}

/// `tag` with "a" or "an" before it, as a command tag is read aloud (`an EXPLAIN`, `an UPDATE`, `a DELETE`).
fn with_article(tag: &str) -> String {
    let vowel = tag.starts_with(['A', 'E', 'I', 'O', 'U']);
    format!("{} {tag}", if vowel { "an" } else { "a" })
}
