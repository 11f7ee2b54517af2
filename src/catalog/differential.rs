//! Deciding whether a stream table can be refreshed differentially, and building its OpTree.
//!
//! AUTO takes DIFFERENTIAL when every part of the query is supported, else FULL with a NOTICE naming
//! the construct; DIFFERENTIAL refuses an unsupported query with that name; FULL never asks.

use super::analysis::{describe_types, with_empty_search_path, QueryAnalysis, SourceKind};
use super::modes::RefreshMode;
use super::type_ops::{equality_operator, hashable, less_than_operator};
use crate::dvm::analyze::{self, AnalyzeError, Catalog, Relation};
use crate::dvm::apply::identified_by_text;
use crate::dvm::diff::rules::{equal_values_print_equal, known_to_print_apart, new_sql};
use crate::dvm::diff::stored_groups::{self, StoredGroups};
use crate::dvm::diff::{delta_query, DiffContext};
use crate::dvm::optree::{AggFunc, JoinKind, Node, OpTree};
use crate::dvm::scale;
use crate::error::{PgtError, PgtResult, SqlState};
use crate::spi;
use pgrx::pg_sys::Oid;
use pgrx::prelude::*;
use std::collections::HashMap;

pub struct ModeChoice {
    pub effective: RefreshMode,
    pub tree: Option<OpTree>,
    pub reason: String,
}

/// `owner`: the role that owns (or will own) the stream table, whose rights a read through a view
/// must match. `installer`: the role DIFFERENTIAL must not let add change capture to a table it
/// could not add a trigger to itself — the caller of `create_stream_table` or
/// `alter_stream_table`, the owner when a reinitialisation re-reads the query (a view it reads may
/// read other tables now); None when `restore_stream_tables` (a superuser) re-creates what was
/// there.
pub fn choose_mode(
    analysis: &QueryAnalysis,
    requested: RefreshMode,
    owner: Oid,
    installer: Option<Oid>,
) -> PgtResult<ModeChoice> {
    if requested == RefreshMode::Full {
        return Ok(ModeChoice {
            effective: RefreshMode::Full,
            tree: None,
            reason: "FULL was requested".into(),
        });
    }
    // Capture is installed last (`validate`), once everything else is known to be supported.
    let construct =
        match differential_tree(analysis, owner)? {
            Ok(tree) => {
                if let Some(role) = installer {
                    if let Some(refused) = capture_refused(analysis, requested, role)? {
                        return refused;
                    }
                }
                match validate(&tree, &output_types(analysis), owner)? {
                    Ok(()) => return Ok(ModeChoice {
                        effective: RefreshMode::Differential,
                        tree: Some(tree),
                        reason:
                            "every operator of the query is supported by the differential engine"
                                .into(),
                    }),
                    Err(message) => format!("a delta PostgreSQL rejected ({message})"),
                }
            }
            Err(construct) => construct,
        };
    if requested == RefreshMode::Differential {
        return Err(PgtError::new(
            SqlState::FeatureNotSupported,
            format!("DIFFERENTIAL refresh does not support {construct}"),
        )
        .hint("Use refresh_mode => 'AUTO' (falls back to FULL) or 'FULL'."));
    }
    Ok(full_instead(
        &format!("the differential engine does not support {construct}"),
        format!("FULL because of {construct}"),
    ))
}

/// AUTO's FULL choice, said to the caller (`said`) and recorded (`reason`).
fn full_instead(said: &str, reason: String) -> ModeChoice {
    notice!("pg_trickle: using FULL refresh: {said}");
    ModeChoice {
        effective: RefreshMode::Full,
        tree: None,
        reason,
    }
}

/// The answer to a choice that would add change capture to a table `role` may not add a trigger
/// to (`privilege::first_table_denying_triggers`): 42501 for DIFFERENTIAL, FULL for AUTO.
fn capture_refused(
    analysis: &QueryAnalysis,
    requested: RefreshMode,
    role: Oid,
) -> PgtResult<Option<PgtResult<ModeChoice>>> {
    let denied = super::privilege::first_table_denying_triggers(
        role,
        &analysis.relations_read,
        crate::cdc::is_captured,
    )?;
    let Some(table) = denied else {
        return Ok(None);
    };
    let table = spi::one::<String>("SELECT $1::pg_catalog.regclass::text", &[table.into()])?
        .unwrap_or_default();
    if requested == RefreshMode::Differential {
        return Ok(Some(Err(PgtError::new(
            SqlState::InsufficientPrivilege,
            format!("permission denied to add change capture to table {table}"),
        )
        .detail(format!("A DIFFERENTIAL stream table's changes are captured by triggers on the tables its query reads and on their partitions and inheritance children; {table} has none yet, and adding a trigger to a table takes the TRIGGER privilege on it, as CREATE TRIGGER does."))
        .hint(format!("Grant TRIGGER on {table}, let a role that holds it create the first DIFFERENTIAL stream table over it, or use refresh_mode => 'FULL'.")))));
    }
    let who = spi::one::<String>("SELECT $1::pg_catalog.regrole::text", &[role.into()])?
        .unwrap_or_default();
    let reason = format!("role {who} may not add change capture to table {table} (that takes the TRIGGER privilege on it)");
    Ok(Some(Ok(full_instead(
        &reason,
        format!("FULL because {reason}"),
    ))))
}

/// The SQL types of the query's output columns.
fn output_types(analysis: &QueryAnalysis) -> Vec<String> {
    analysis
        .columns
        .iter()
        .map(|c| c.type_sql.clone())
        .collect()
}

/// Ok(Ok(tree)) when supported (but for what PostgreSQL makes of its delta: `validate`, which
/// installs capture), Ok(Err(construct)) when not.
fn differential_tree(analysis: &QueryAnalysis, owner: Oid) -> PgtResult<Result<OpTree, String>> {
    for source in &analysis.sources {
        let name = spi::one::<String>("SELECT $1::regclass::text", &[source.relid.into()])?
            .unwrap_or_default();
        match source.kind {
            SourceKind::MatView => return Ok(Err(format!("materialized view {name} as a source"))),
            SourceKind::ForeignTable => {
                return Ok(Err(format!("foreign table {name} as a source")))
            }
            SourceKind::Table | SourceKind::StreamTable | SourceKind::PartitionedTable => {
                if let Some(problem) = table_problem(source.relid, Some(owner))? {
                    return Ok(Err(problem));
                }
            }
            SourceKind::View => {
                if let Some(reason) = view_semantics_at_stake(source.relid, Some(owner))? {
                    return Ok(Err(reason));
                }
                if let Some(reason) = view_text_at_stake(source.relid, owner)? {
                    return Ok(Err(reason));
                }
            }
        }
    }
    if let Some(description) = analysis.non_immutable_functions.first() {
        return Ok(Err(description.clone()));
    }
    // One select-list row becomes several: the engine keeps no such operator (in FROM it does).
    if let Some(function) = &analysis.set_returning_in_select_list {
        return Ok(Err(format!(
            "set-returning function {function} in a select list (call it in FROM: `FROM t, LATERAL f(t.x) AS r(x)`)"
        )));
    }
    // A column the query does not read is no obstacle: change rows are consolidated by the columns
    // a delta reads.
    if let Some(what) = &analysis.nondeterministic_collation {
        return Ok(Err(format!("{what} (strings it calls equal, such as 'A' and 'a', differ in bytes, which the engine's row identities tell apart)")));
    }
    for c in &analysis.columns {
        if !hashable(&c.type_sql)? && !identified_by_text(&c.type_sql) {
            return Ok(Err(format!(
                "output column \"{}\" of type {} (no hash function)",
                c.name, c.type_sql
            )));
        }
    }
    if analysis.columns.is_empty() {
        return Ok(Err("a query without output columns".into()));
    }
    let mut tree = match with_empty_search_path(|| {
        Ok(analyze::analyze(
            &analysis.defining_query,
            &PgCatalog { reader: owner },
        ))
    })? {
        Ok(tree) => tree,
        Err(AnalyzeError::Unsupported(construct)) => return Ok(Err(construct)),
        Err(AnalyzeError::Invalid(message)) => {
            return Ok(Err(format!(
                "a query the engine could not read ({message})"
            )))
        }
    };
    // Typing asks PostgreSQL about expressions of the tree: one it rejects is a query the analyser
    // misread, which AUTO reads FULL rather than fail.
    let typed = spi::in_subtransaction(|| {
        fill_scan_types(&mut tree.root)?;
        for cte in tree.ctes.iter_mut() {
            fill_scan_types(cte)?;
        }
        fill_null_types(&tree.clone(), &mut tree.root, owner)?;
        fill_aggregate_types(&tree.clone(), &mut tree.root, owner)?;
        for cte in 0..tree.ctes.len() {
            let mut body = tree.ctes[cte].clone();
            fill_null_types(&tree, &mut body, owner)?;
            tree.ctes[cte] = body;
        }
        Ok(tree)
    });
    let tree = match typed {
        Ok(typed) => typed?,
        Err(message) => {
            return Ok(Err(format!(
                "a query the engine could not read (PostgreSQL rejected an expression of its reading: {message})"
            )))
        }
    };
    // The tables read through views face the same tests as those named directly.
    for table in tree.tables() {
        if let Some(problem) = table_problem(Oid::from(table.relid), Some(owner))? {
            return Ok(Err(problem));
        }
    }
    let output_types = output_types(analysis);
    // The refusals below judge types by name: they see a domain as the type it is over.
    let mut bases = BaseTypes::default();
    let base_tree = bases.of_tree(&tree)?;
    let base_output_types = output_types
        .iter()
        .map(|t| bases.of(t))
        .collect::<PgtResult<Vec<_>>>()?;
    // Read back where the delta will read back: it sees the stream table's own types (a float sum
    // cast to a domain over float8 is not a float to it).
    let read_back = StoredGroups::of(&base_tree, &base_output_types)
        .filter(|_| StoredGroups::of(&tree, &output_types).is_some());
    if let Some(call) = float_sum(&base_tree, read_back.as_ref()) {
        return Ok(Err(call));
    }
    if let Some(what) = stored_groups::unreadable_picks(&base_tree, &base_output_types) {
        return Ok(Err(what));
    }
    // DISTINCT ON and window functions take each column's value from its row with array_agg, which
    // makes an array of arrays of an array column, and window functions expand the arrays again
    // with unnest, which expands a composite into its fields: the columns of each query that has
    // them (the defining query, a subquery, a CTE, a view) are checked.
    for collected in &tree.collected_subqueries {
        let described =
            spi::in_subtransaction(|| super::analysis::describe_columns(&collected.query, owner));
        let columns = match described {
            Ok(columns) => columns?,
            Err(message) => {
                return Ok(Err(format!(
                    "a query the engine could not read (PostgreSQL rejected a subquery with DISTINCT ON or window functions: {message})"
                )))
            }
        };
        let types = columns
            .iter()
            .map(|c| bases.of(&c.type_sql))
            .collect::<PgtResult<Vec<_>>>()?;
        let kinds = column_kinds(&columns, &types)?;
        let refused = kinds.iter().find(|(_, kind)| match kind {
            ColumnKind::Array => true,
            ColumnKind::Composite => collected.expanded,
            ColumnKind::Other => false,
        });
        if let Some((column, kind)) = refused {
            return Ok(Err(if *kind == ColumnKind::Array {
                format!("a column of array type ({column}) under DISTINCT ON or a window function")
            } else {
                format!("a column of composite type ({column}) under a window function")
            }));
        }
    }
    Ok(Ok(tree))
}

/// What collecting a column into an array makes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    /// Collected, an array of arrays (`text[]`, also `int2vector`, whose category is array).
    Array,
    /// Expanded from an array by `unnest`, its fields (a composite, a record).
    Composite,
    Other,
}

/// Each of `columns` (with their base types `types`) as `name type`, and its kind: one query for
/// all of them.
fn column_kinds(
    columns: &[super::analysis::OutputColumn],
    types: &[String],
) -> PgtResult<Vec<(String, ColumnKind)>> {
    // A ` COLLATE` suffix is no part of the type's name.
    let names: Vec<&str> = types
        .iter()
        .map(|t| t.split(" COLLATE ").next().unwrap_or(t))
        .collect();
    let categories = spi::rows(
        "SELECT CASE WHEN t.typcategory = 'A' THEN 'array'
                     WHEN t.typtype = 'c' OR t.oid = 'pg_catalog.record'::pg_catalog.regtype THEN 'composite'
                     ELSE '' END AS kind
           FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS n(name, i)
           LEFT JOIN pg_catalog.pg_type t
             ON t.oid = CASE WHEN n.name LIKE '%[]' OR n.name LIKE '% (a field of %' THEN NULL
                             ELSE pg_catalog.to_regtype(n.name) END
          ORDER BY n.i",
        &[names.clone().into()],
        |r| spi::col::<String>(r, "kind"),
    )?;
    Ok(columns
        .iter()
        .zip(types)
        .zip(names)
        .zip(categories)
        .map(|(((column, t), name), category)| {
            let kind = if name.ends_with("[]") || category == "array" {
                ColumnKind::Array
            } else if name.contains(" (a field of ") || category == "composite" {
                // `BaseTypes` names a composite with a field that prints apart by that field.
                ColumnKind::Composite
            } else {
                ColumnKind::Other
            };
            (format!("{} {t}", column.name), kind)
        })
        .collect())
}

/// The differential engine reads a view's tables directly (it inlines the view), with the refreshing
/// role's rights and without a security barrier. That is the view's meaning only when the view (and
/// every view under it) is the stream table owner's own, or runs with its invoker's rights, and has no
/// security barrier; otherwise the view is read whole, by a FULL refresh.
fn view_semantics_at_stake(view: Oid, owner: Option<Oid>) -> PgtResult<Option<String>> {
    let views = super::with_views_below("SELECT $1::pg_catalog.oid");
    spi::one::<String>(
        &format!(
            "{views}
         SELECT CASE WHEN barrier THEN pg_catalog.format('view %s, which is a security_barrier view (read whole, so its barrier holds)', c.oid::pg_catalog.regclass)
                     ELSE pg_catalog.format('view %s, owned by %s (read whole, with its owner''s rights)', c.oid::pg_catalog.regclass, c.relowner::pg_catalog.regrole) END
           FROM views v JOIN pg_catalog.pg_class c ON c.oid = v.oid,
                LATERAL (SELECT EXISTS (SELECT 1 FROM pg_catalog.unnest(c.reloptions) o WHERE o ~* '^security_barrier=(true|on|yes|1)$') AS barrier,
                                EXISTS (SELECT 1 FROM pg_catalog.unnest(c.reloptions) o WHERE o ~* '^security_invoker=(true|on|yes|1)$') AS invoker) f
          WHERE f.barrier OR (NOT f.invoker AND c.relowner <> COALESCE($2, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER)))
          ORDER BY f.barrier DESC LIMIT 1"
        ),
        &[view.into(), owner.into()],
    )
}

/// The first view at or below `view` whose text the engine may not read in its place
/// (`analysis::view_text_problem`), if any, and why.
fn view_text_at_stake(view: Oid, owner: Oid) -> PgtResult<Option<String>> {
    let views = spi::rows(
        &format!(
            "{} SELECT oid FROM views",
            super::with_views_below("SELECT $1::pg_catalog.oid")
        ),
        &[view.into()],
        |r| spi::col::<Oid>(r, "oid"),
    )?;
    for view in views {
        if let Some(problem) = super::analysis::view_text_problem(view, owner)? {
            return Ok(Some(problem));
        }
    }
    Ok(None)
}

/// Why the engine cannot capture the changes of table `relid`, or may not read them for `owner`, if
/// so.
fn table_problem(relid: Oid, owner: Option<Oid>) -> PgtResult<Option<String>> {
    let name = spi::one::<String>("SELECT $1::pg_catalog.regclass::text", &[relid.into()])?
        .unwrap_or_default();
    // A delta reads the change buffer, which row-level security does not filter: where the policies
    // apply to the owner, only the table itself — read whole, by FULL — gives the owner's rows.
    let row_security = spi::one::<bool>(
        "SELECT c.relrowsecurity AND NOT r.rolsuper AND NOT r.rolbypassrls AND (c.relowner <> r.oid OR c.relforcerowsecurity)
           FROM pg_catalog.pg_class c, pg_catalog.pg_roles r
          WHERE c.oid = $1 AND r.oid = COALESCE($2, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER))",
        &[relid.into(), owner.into()],
    )?;
    if row_security == Some(true) {
        return Ok(Some(format!("table {name}, whose row-level security applies to the stream table's owner (read whole, so its policies hold)")));
    }
    // Capture puts triggers on the table and queues its rows for the owner: only for a table the
    // owner may read itself, not one read through another role's view.
    let readable = spi::one::<bool>(
        "SELECT pg_catalog.has_table_privilege(COALESCE($2, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER)), $1, 'SELECT')",
        &[relid.into(), owner.into()],
    )?;
    if readable != Some(true) {
        return Ok(Some(format!("table {name}, which the stream table's owner may not read itself (read whole, through the views that read it)")));
    }
    if let Some(parent) = parent_of(relid)? {
        return Ok(Some(partition_reason(&name, &parent)));
    }
    if let Some(foreign) = crate::cdc::foreign_descendant(relid)? {
        return Ok(Some(format!("table {name}, which has the foreign-table partition or child {foreign} (its writes cannot be captured)")));
    }
    Ok(None)
}

/// The table `relid` is a partition or an inheritance child of, if any.
fn parent_of(relid: Oid) -> PgtResult<Option<String>> {
    spi::one::<String>(
        "SELECT inhparent::pg_catalog.regclass::text FROM pg_catalog.pg_inherits WHERE inhrelid = $1 LIMIT 1",
        &[relid.into()],
    )
}

/// Writes through the parent fire only the parent's statement triggers, so capture on the table
/// itself would miss them.
fn partition_reason(name: &str, parent: &str) -> String {
    format!("table {name} as a source, which is a partition or inheritance child of {parent} (read {parent} instead)")
}

/// A SUM or AVG over a floating-point argument whose old value a refresh would have to recompute:
/// its last digits depend on the order values are added in (as PostgreSQL's own do), so the
/// recomputed old value need not be the stored one. Not where the aggregate's touched groups are read
/// back from the stream table (`read_back`): there the old rows are the stored ones, and the new
/// ones are sums of the groups' current rows, in the order a recomputation reads them.
fn float_sum(tree: &OpTree, read_back: Option<&StoredGroups>) -> Option<String> {
    let walk = |node: &Node| float_sum_below(node, read_back);
    walk(&tree.root).or_else(|| tree.ctes.iter().find_map(walk))
}

fn float_sum_below(node: &Node, read_back: Option<&StoredGroups>) -> Option<String> {
    if let Node::Aggregate { calls, .. } = node {
        let recomputes_old = !read_back.is_some_and(|groups| groups.regroups(node));
        for call in calls.iter().filter(|_| recomputes_old) {
            let float = ["real", "double precision"]
                .contains(&call.arg_type.split(" COLLATE ").next().unwrap_or(""));
            if float && matches!(call.func, AggFunc::Sum | AggFunc::Avg) {
                let name = if call.func == AggFunc::Sum {
                    "sum"
                } else {
                    "avg"
                };
                return Some(format!(
                    "{name}() over {} where the stream table does not hold its value by the group's keys (a floating-point sum depends on the order values are added in, so a refresh cannot recompute the old value; a top-level GROUP BY that shows its keys and the {name}() is supported)",
                    call.arg_type
                ));
            }
        }
    }
    node.children()
        .into_iter()
        .find_map(|child| float_sum_below(child, read_back))
}

/// Domains' base types, by the domain's name (as `format_type` prints it), looked up once each.
#[derive(Default)]
struct BaseTypes(HashMap<String, String>);

impl BaseTypes {
    /// The type a domain `t` is over, through domains over domains, with the domain's type modifier
    /// (`CREATE DOMAIN price AS numeric(12,2)`: `numeric(12,2)`); an array of a domain gives an array
    /// of its base type; any other type is itself. A ` COLLATE` suffix stays.
    fn of(&mut self, t: &str) -> PgtResult<String> {
        let (name, collate) = match t.split_once(" COLLATE ") {
            Some((name, collation)) => (name, format!(" COLLATE {collation}")),
            None => (t, String::new()),
        };
        if let Some(element) = name.strip_suffix("[]") {
            return Ok(format!("{}[]{collate}", self.of(element)?));
        }
        if name.is_empty() {
            return Ok(t.to_string());
        }
        if let Some(base) = self.0.get(name) {
            return Ok(format!("{base}{collate}"));
        }
        let base = spi::one::<String>(
            "WITH RECURSIVE d (depth, base, mod) AS (
                SELECT 1, t.typbasetype, t.typtypmod FROM pg_catalog.pg_type t
                 WHERE t.oid = pg_catalog.to_regtype($1) AND t.typtype = 'd'
                UNION ALL
                SELECT d.depth + 1, t.typbasetype, CASE WHEN t.typtypmod >= 0 THEN t.typtypmod ELSE d.mod END
                  FROM d JOIN pg_catalog.pg_type t ON t.oid = d.base AND t.typtype = 'd')
             SELECT pg_catalog.format_type(base, mod) FROM d ORDER BY depth DESC LIMIT 1",
            &[name.into()],
        )?
        .unwrap_or_else(|| name.to_string());
        let base = match self.field_printing_apart(&base)? {
            Some(field) => format!("{field} (a field of {base})"),
            None => base,
        };
        self.0.insert(name.to_string(), base.clone());
        Ok(format!("{base}{collate}"))
    }

    /// For a composite type: the base type of a field (at any depth) whose equal values may print
    /// differently (`CREATE TYPE pair AS (a numeric, b text)`: `numeric`). Its name then stands for
    /// the composite's, so a composite is judged as the field that may print apart.
    fn field_printing_apart(&mut self, composite: &str) -> PgtResult<Option<String>> {
        let fields: Vec<String> = spi::rows(
            "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) AS t
               FROM pg_catalog.pg_type t JOIN pg_catalog.pg_attribute a ON a.attrelid = t.typrelid
              WHERE t.oid = pg_catalog.to_regtype($1) AND t.typtype = 'c' AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[composite.into()],
            |r| spi::col(r, "t"),
        )?;
        for field in fields {
            let base = self.of(&field)?;
            if known_to_print_apart(&base) && !equal_values_print_equal(&base) {
                return Ok(Some(base));
            }
        }
        Ok(None)
    }

    /// `tree` with every type it records replaced by its base type.
    fn of_tree(&mut self, tree: &OpTree) -> PgtResult<OpTree> {
        let mut base = tree.clone();
        self.of_node(&mut base.root)?;
        for cte in base.ctes.iter_mut() {
            self.of_node(cte)?;
        }
        Ok(base)
    }

    fn of_node(&mut self, node: &mut Node) -> PgtResult<()> {
        let types: Vec<&mut String> = match node {
            Node::Scan { types, .. } => types.iter_mut().collect(),
            Node::Join { null_types, .. } => null_types.iter_mut().collect(),
            Node::Aggregate {
                key_types, calls, ..
            } => key_types
                .iter_mut()
                .chain(calls.iter_mut().map(|c| &mut c.arg_type))
                .collect(),
            _ => Vec::new(),
        };
        for t in types {
            *t = self.of(t)?;
        }
        node.children_mut()
            .into_iter()
            .try_for_each(|child| self.of_node(child))
    }
}

/// Scans carry their columns' SQL types (what the analyser cannot know), for explanations and for
/// executors that decode change rows themselves.
fn fill_scan_types(node: &mut Node) -> PgtResult<()> {
    if let Node::Scan {
        table,
        columns,
        types,
    } = node
    {
        let all = crate::cdc::table_columns(Oid::from(table.relid))?;
        *types = columns
            .iter()
            .map(|c| {
                all.iter()
                    .find(|(n, _)| n == c)
                    .map(|(_, t)| t.clone())
                    .unwrap_or_default()
            })
            .collect();
    }
    for child in node.children_mut() {
        fill_scan_types(child)?;
    }
    Ok(())
}

/// Aggregates the engine may maintain from stored state need their keys' and arguments' types (for
/// the hidden state columns) and, for MIN/MAX, the argument type's `<` operator; every grouping needs
/// its keys' `=` (to find a group's rows whatever the search_path). Resolved now, the SQL read as
/// `reader` (`analysis::describe_columns`).
fn fill_aggregate_types(tree: &OpTree, node: &mut Node, reader: Oid) -> PgtResult<()> {
    if let Node::Aggregate {
        input,
        group_by,
        calls,
        key_types,
        key_eq,
        ..
    } = node
    {
        let algebraic = calls.iter().any(|c| c.func != AggFunc::Other);
        let render = |e: &crate::dvm::optree::Expr| e.render(&|i| format!("a.c{i}"));
        let mut items: Vec<String> = group_by.iter().map(render).collect();
        let args: Vec<usize> = if algebraic {
            (0..calls.len())
                .filter(|&j| calls[j].arg.is_some())
                .collect()
        } else {
            vec![]
        };
        items.extend(
            args.iter()
                .filter_map(|&j| calls[j].arg.as_ref())
                .map(render),
        );
        if !items.is_empty() {
            let named: Vec<String> = items
                .iter()
                .enumerate()
                .map(|(i, e)| format!("({e}) AS x{i}"))
                .collect();
            let sql = format!(
                "SELECT {} FROM ({}) AS a",
                named.join(", "),
                new_sql(tree, input, &mut DiffContext::default())?
            );
            let types = describe_types(&sql, reader)?;
            let keys = &types[..group_by.len()];
            // All or nothing: without one key's operator the engine matches groups by record equality.
            *key_eq = keys
                .iter()
                .map(|t| equality_operator(t))
                .collect::<PgtResult<Option<Vec<_>>>>()?
                .unwrap_or_default();
            // Every aggregate's key types tell whether its groups may show one of several equal
            // values (`stored_groups`).
            *key_types = keys.to_vec();
            if algebraic {
                // A group's identity is the hash of its keys: without a hash function for one of
                // them, the aggregates are recomputed per group instead (no key types, no state).
                for t in key_types.iter() {
                    if !hashable(t)? {
                        key_types.clear();
                        break;
                    }
                }
                for (k, &j) in args.iter().enumerate() {
                    calls[j].arg_type = types[group_by.len() + k].clone();
                    if calls[j].arg_type == "numeric" {
                        calls[j].fixed_scale = calls[j].arg.as_ref().and_then(|a| {
                            scale::expr_scale(a, &|i| scale::column_scale(tree, input, i))
                        });
                    }
                }
            }
        }
        for call in calls
            .iter_mut()
            .filter(|c| matches!(c.func, AggFunc::Min | AggFunc::Max))
        {
            call.less_than = less_than_operator(&call.arg_type)?.unwrap_or_default();
        }
    }
    for child in node.children_mut() {
        fill_aggregate_types(tree, child, reader)?;
    }
    Ok(())
}

/// Outer joins pad the other side with NULLs, which need that side's column types (the SQL read as
/// `reader`).
fn fill_null_types(tree: &OpTree, node: &mut Node, reader: Oid) -> PgtResult<()> {
    if let Node::Join {
        kind,
        left,
        right,
        null_types,
        ..
    } = node
    {
        if *kind != JoinKind::Inner && null_types.is_empty() {
            // Left then right, as the delta reads them (`JoinKind::preserved_sides`).
            for keeps_left in kind.preserved_sides().iter().rev() {
                let padded = if *keeps_left {
                    right.as_ref()
                } else {
                    left.as_ref()
                };
                if padded.arity() > 0 {
                    let sql = new_sql(tree, padded, &mut DiffContext::default())?;
                    null_types.extend(describe_types(&sql, reader)?);
                }
            }
        }
    }
    for child in node.children_mut() {
        fill_null_types(tree, child, reader)?;
    }
    Ok(())
}

/// Installs change capture on the sources and lets PostgreSQL parse and analyse the delta query with
/// every source changed, in a subtransaction: a type without equality, say, surfaces now instead of at
/// every refresh. On success the capture stays (DIFFERENTIAL needs it); on failure it is rolled back.
/// The delta holds the text of the views the query reads, so it is read as `reader`
/// (`privilege::reading_as`), the role answering for the query.
fn validate(tree: &OpTree, output_types: &[String], reader: Oid) -> PgtResult<Result<(), String>> {
    let cdc = crate::cdc::refresh_context(&tree.tables())?;
    let Some(sql) = delta_query(tree, output_types, &mut DiffContext::new(cdc))? else {
        return Ok(Ok(()));
    };
    Ok(spi::in_subtransaction(|| {
        let tables: Vec<Oid> = tree.tables().iter().map(|t| Oid::from(t.relid)).collect();
        for &t in &tables {
            crate::cdc::ensure_capture(t)?;
        }
        // Its refreshes read the buffers as `reader`, who must reach them to read the delta now.
        crate::cdc::grant_readers(&tables, reader)?;
        super::privilege::reading_as(reader, || {
            Spi::connect(|c| {
                c.prepare(sql.as_str(), &[pgrx::pg_sys::PgBuiltInOids::TEXTOID.into()])
                    .map(|_| ())
            })
            .map_err(|e| PgtError::internal(format!("SPI: {e}")))
        })
    })
    .and_then(|r| r.map_err(|e| e.message)))
}

/// The analyser's view of the catalog, through SPI; SQL it asks about is read as `reader`.
struct PgCatalog {
    reader: Oid,
}

impl Catalog for PgCatalog {
    fn relation(&self, schema: Option<&str>, name: &str) -> Option<Relation> {
        let schema = schema?;
        let row = spi::rows(
            "SELECT c.oid, c.relkind::text AS relkind FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2",
            &[schema.into(), name.into()],
            |r| {
                Ok((
                    spi::col::<Oid>(r, "oid")?,
                    spi::col::<String>(r, "relkind")?,
                ))
            },
        )
        .ok()?
        .into_iter()
        .next()?;
        match row.1.as_str() {
            "r" | "p" => Some(Relation::Table {
                relid: row.0.to_u32(),
                schema: schema.to_string(),
                name: name.to_string(),
                columns: crate::cdc::table_columns(row.0)
                    .ok()?
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect(),
            }),
            "v" => {
                let def: String = crate::refresh::settings::with_query_text_settings(|| {
                    spi::one(
                        "SELECT pg_catalog.pg_get_viewdef($1, false)",
                        &[row.0.into()],
                    )
                })
                .ok()??;
                Some(Relation::View {
                    definition: def.trim().trim_end_matches(';').to_string(),
                })
            }
            _ => None,
        }
    }

    fn unique_keys(&self, relid: u32) -> Vec<Vec<String>> {
        super::depend::unique_indexes(Oid::from(relid))
            .unwrap_or_default()
            .into_iter()
            .map(|(_, columns)| columns)
            .collect()
    }

    fn has_window_ranks(&self) -> bool {
        super::version::has_window_ranks().unwrap_or(false)
    }

    fn column_types(&self, query: &str) -> Option<Vec<String>> {
        spi::in_subtransaction(|| super::analysis::describe_types(query, self.reader))
            .ok()?
            .ok()
    }

    fn is_aggregate(&self, name: &str) -> bool {
        let (schema, func) = match name.rsplit_once('.') {
            Some((s, f)) => (Some(s.trim_matches('"')), f.trim_matches('"')),
            None => (None, name.trim_matches('"')),
        };
        spi::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                             WHERE p.proname = $1 AND p.prokind = 'a' AND ($2::text IS NULL OR n.nspname = $2))",
            &[func.to_lowercase().as_str().into(), schema.map(str::to_lowercase).into()],
        )
        .ok()
        .flatten()
            == Some(true)
    }
}
