//! Capture that sees every write to a source, whatever route it takes:
//! - **partitions and inheritance children**: a statement trigger fires only for the table a
//!   statement names, so DML aimed directly at a partition would bypass the root's triggers. Every
//!   descendant of a source carries member triggers that run the root's capture function (columns
//!   are taken by name, so a partition's own column order does not matter). Writes through the root
//!   fire only the root's triggers, whose transition tables hold the rows of every partition.
//! - **replication and restores**: PostgreSQL's logical replication apply fires row triggers only,
//!   and sessions under `session_replication_role = replica` fire only ALWAYS and REPLICA triggers.
//!   So each plain table (a source, its partitions, its children) also has a row trigger, ENABLE
//!   REPLICA, capturing the same change rows one at a time; the statement triggers stay plain
//!   ENABLE, so every write is captured exactly once in either role. TRUNCATE triggers are ALWAYS.
//! - **changed membership or trigger state** (ATTACH/DETACH PARTITION, a new child with rows, a
//!   dropped partition, a capture trigger disabled, dropped or re-enabled in another mode by hand):
//!   re-armed at once, and the dependents reinitialise with a FULL refresh, because rows may have
//!   come or gone unseen. While a capture trigger stays disabled, every refresh of its dependents is
//!   FULL.
//!
//! Tables that FULL stream tables with `skip_unchanged` read carry *signal* triggers as well
//! ([`Family::Signal`], catalog/unchanged.rs): no buffer, they only tell the coordinator that the
//! table changed (signal.rs), so a FULL stream table whose sources did not change is not rewritten.
//! The same rules place them: the source and every descendant, a statement trigger (ALWAYS) and a
//! row trigger (REPLICA, for replication apply).

use super::{capture_function, native_capture_function, row_capture_function, truncate_function};
use crate::dvm::sql::{quote_ident, quote_literal};
use crate::error::PgtResult;
use crate::spi;
use pgrx::pg_sys::Oid;

/// Capture triggers (a change buffer per source) or signal triggers (no buffer: FULL stream tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Capture,
    Signal,
}

impl Family {
    fn prefix(self) -> &'static str {
        match self {
            Family::Capture => "pgtrickle_capture",
            Family::Signal => "pgtrickle_signal",
        }
    }

    fn kinds(self) -> &'static [Kind] {
        match self {
            Family::Capture => &CAPTURE,
            Family::Signal => &SIGNAL,
        }
    }

    /// The trigger function all triggers of this family run but TRUNCATE capture (None: a 0.1.0
    /// catalog, where capture runs PL/pgSQL functions of each source's own).
    fn native_function(self) -> PgtResult<Option<Oid>> {
        match self {
            Family::Capture => native_capture_function(),
            Family::Signal => spi::one::<Oid>(
                "SELECT pg_catalog.to_regprocedure('pgtrickle._signal()')::oid",
                &[],
            ),
        }
    }
}

/// One trigger: its name suffix, how it is created (on `{on}`), and the state it must be in.
struct Kind {
    suffix: &'static str,
    create: &'static str,
    /// `pg_trigger.tgenabled`: O fires in origin sessions, R only under replica role, A always.
    state: &'static str,
    /// A row trigger: only on tables that hold rows (a partitioned table's partitions have their own).
    row: bool,
}

const CAPTURE: [Kind; 5] = [
    Kind { suffix: "ins", create: "AFTER INSERT ON {on} REFERENCING NEW TABLE AS pgt_new FOR EACH STATEMENT", state: "O", row: false },
    Kind {
        suffix: "upd",
        create: "AFTER UPDATE ON {on} REFERENCING OLD TABLE AS pgt_old NEW TABLE AS pgt_new FOR EACH STATEMENT",
        state: "O",
        row: false,
    },
    Kind { suffix: "del", create: "AFTER DELETE ON {on} REFERENCING OLD TABLE AS pgt_old FOR EACH STATEMENT", state: "O", row: false },
    Kind { suffix: "trunc", create: "AFTER TRUNCATE ON {on} FOR EACH STATEMENT", state: "A", row: false },
    Kind { suffix: "row", create: "AFTER INSERT OR UPDATE OR DELETE ON {on} FOR EACH ROW", state: "R", row: true },
];

/// No transition tables: a signal costs a writer one trigger call per statement. (A statement that
/// changed no row signals too; that costs a refresh, never a missed change.)
const SIGNAL: [Kind; 2] = [
    Kind {
        suffix: "stmt",
        create: "AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {on} FOR EACH STATEMENT",
        state: "A",
        row: false,
    },
    Kind {
        suffix: "row",
        create: "AFTER INSERT OR UPDATE OR DELETE ON {on} FOR EACH ROW",
        state: "R",
        row: true,
    },
];

/// The triggers `table` (the source or one of its descendants) carries for `source`.
fn kinds_for(family: Family, relkind: &str) -> impl Iterator<Item = &'static Kind> + '_ {
    family
        .kinds()
        .iter()
        .filter(move |k| !k.row || relkind == "r")
}

/// A trigger's name: the source's own keep their historic names; a descendant's name the source, so
/// a partition that is a source itself can carry both sets.
fn trigger_name(family: Family, source: Oid, table: Oid, kind: &Kind) -> String {
    if source == table {
        format!("{}_{}", family.prefix(), kind.suffix)
    } else {
        format!("{}_{}_{}", family.prefix(), source.to_u32(), kind.suffix)
    }
}

/// Whether `name` is one of the capture trigger names pg_trickle gives `table` for `source` (the
/// capture trigger function captures only from those, trigger.rs).
pub(super) fn is_capture_trigger(source: Oid, table: Oid, name: &str) -> bool {
    CAPTURE
        .iter()
        .filter(|k| k.suffix != "trunc")
        .any(|k| trigger_name(Family::Capture, source, table, k) == name)
}

/// Whether `name` is one of the capture triggers pg_trickle gives a source on itself.
pub fn own_capture_trigger(source: Oid, name: &str) -> bool {
    own_name(Family::Capture, source, source, name)
}

/// Whether `name` is one of the signal triggers pg_trickle gives a source on itself.
pub fn own_signal_trigger(source: Oid, name: &str) -> bool {
    own_name(Family::Signal, source, source, name)
}

/// Whether `name` is one of the names pg_trickle gives the triggers of `family` for `source` on `table`.
fn own_name(family: Family, source: Oid, table: Oid, name: &str) -> bool {
    family
        .kinds()
        .iter()
        .any(|k| trigger_name(family, source, table, k) == name)
}

/// The functions a source's triggers of one family run. Capture: the capture trigger function (with
/// the source as argument) and the source's own TRUNCATE function — or, in a 0.1.0 catalog, PL/pgSQL
/// capture functions of the source's own. Signal: the signal trigger function.
struct Functions {
    family: Family,
    source: Oid,
    /// `pgtrickle._capture()`, if the catalog has it.
    native: Option<Oid>,
    /// The source's own trigger functions that exist.
    own: Vec<Oid>,
    complete: bool,
}

impl Functions {
    fn of(family: Family, source: Oid) -> PgtResult<Functions> {
        let native = family.native_function()?;
        if family == Family::Signal {
            return Ok(Functions {
                family,
                source,
                native,
                own: Vec::new(),
                complete: native.is_some(),
            });
        }
        let names: Vec<String> = [
            truncate_function(source),
            capture_function(source),
            row_capture_function(source),
        ]
        .iter()
        .map(|f| format!("{}()", f.quoted()))
        .collect();
        let found: Vec<Option<Oid>> = spi::rows(
            "SELECT pg_catalog.to_regprocedure(f)::oid AS oid FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(f, n) ORDER BY n",
            &[names.into()],
            |r| r.get_by_name::<Oid, _>("oid"),
        )?;
        let complete =
            found[0].is_some() && (native.is_some() || found.iter().all(Option::is_some));
        Ok(Functions {
            family,
            source,
            native,
            own: found.into_iter().flatten().collect(),
            complete,
        })
    }

    /// What a trigger of `kind` executes.
    fn call(&self, kind: &Kind) -> String {
        if self.family == Family::Signal {
            return format!(
                "pgtrickle._signal({})",
                quote_literal(&self.source.to_u32().to_string())
            );
        }
        match (kind.suffix, self.native) {
            ("trunc", _) => format!("{}()", truncate_function(self.source)),
            (_, Some(_)) => format!(
                "pgtrickle._capture({})",
                quote_literal(&self.source.to_u32().to_string())
            ),
            ("row", None) => format!("{}()", row_capture_function(self.source)),
            (_, None) => format!("{}()", capture_function(self.source)),
        }
    }

    /// (relation, name, state) of every trigger of the family for the source (clones excluded). Only
    /// those with pg_trickle's names: anyone may make a trigger running `pgtrickle._capture()` (it
    /// then captures nothing), and such a trigger must not count as the source's.
    fn triggers(&self) -> PgtResult<Vec<(Oid, String, String)>> {
        let all: Vec<(Oid, String, String)> = spi::rows(
            &format!(
                "SELECT tgrelid, tgname::text AS name, tgenabled::text AS state FROM pg_catalog.pg_trigger
                  WHERE NOT tgisinternal AND tgparentid = 0
                    AND (tgfoid = ANY($1) OR (tgfoid = $2 AND tgargs = {}))
                  ORDER BY 1, 2",
                trigger_argument("$3")
            ),
            &[self.own.clone().into(), self.native.unwrap_or(pgrx::pg_sys::InvalidOid).into(), vec![self.source].into()],
            |r| Ok((spi::col(r, "tgrelid")?, spi::col(r, "name")?, spi::col(r, "state")?)),
        )?;
        Ok(all
            .into_iter()
            .filter(|(table, name, _)| own_name(self.family, self.source, *table, name))
            .collect())
    }
}

/// Whether `source` itself has the family's trigger for it (its members are rearmed by DDL).
pub fn armed(family: Family, source: Oid) -> PgtResult<bool> {
    Ok(Functions::of(family, source)?
        .triggers()?
        .iter()
        .any(|(table, _, _)| *table == source))
}

/// SQL for the `tgargs` of a capture trigger for each source of the `oid[]` expression `sources`
/// (a set: compare with `=` for one source, `IN` for several): the OID as text, NUL-terminated.
fn trigger_argument(sources: &str) -> String {
    format!(
        "ANY (SELECT pg_catalog.convert_to(s::text, 'SQL_ASCII') OPERATOR(pg_catalog.||) pg_catalog.decode('00', 'hex') FROM pg_catalog.unnest({sources}::pg_catalog.oid[]) AS s)"
    )
}

fn set_state(on: &str, name: &str, state: &str) -> PgtResult<()> {
    let mode = match state {
        "A" => "ENABLE ALWAYS",
        "R" => "ENABLE REPLICA",
        _ => "ENABLE",
    };
    spi::exec(
        &format!("ALTER TABLE {on} {mode} TRIGGER {}", quote_ident(name)),
        &[],
    )
}

/// Brings the triggers of `family` for `source` in line with its current descendants and trigger
/// states (also on first install, `installing`). Returns whether changes may have been missed (the
/// dependents must reinitialise).
pub(super) fn rearm(family: Family, source: Oid, installing: bool) -> PgtResult<bool> {
    let functions = Functions::of(family, source)?;
    if !functions.complete {
        // Capture from before the row trigger existed is rebuilt by the caller (see cdc::source_altered).
        return Ok(false);
    }
    let mut lossy = false;
    let members = std::iter::once((source, relkind(source)?))
        .chain(descendants(source)?)
        .collect::<Vec<_>>();
    let armed = functions.triggers()?;
    for (table, kind) in &members {
        let on = regclass(*table)?;
        let have: Vec<&(Oid, String, String)> =
            armed.iter().filter(|(rel, _, _)| rel == table).collect();
        let mut created = false;
        for k in kinds_for(family, kind) {
            let name = trigger_name(family, source, *table, k);
            if have.iter().any(|(_, n, _)| *n == name) {
                continue;
            }
            let spec = k.create.replace("{on}", &on);
            spi::exec(
                &format!(
                    "CREATE TRIGGER {} {spec} EXECUTE FUNCTION {}",
                    quote_ident(&name),
                    functions.call(k)
                ),
                &[],
            )?;
            set_state(&on, &name, k.state)?;
            created = true;
        }
        // Some of its triggers were gone (dropped by hand), or a member with rows joined.
        if created && !installing && (!have.is_empty() || *table == source || has_rows(*table)?) {
            lossy = true;
        }
    }
    for (table, name, _) in armed
        .iter()
        .filter(|(rel, _, _)| !members.iter().any(|(m, _)| m == rel))
    {
        // Detached or no longer inheriting: its rows left the source unseen.
        spi::exec(
            &format!(
                "DROP TRIGGER IF EXISTS {} ON {}",
                quote_ident(name),
                regclass(*table)?
            ),
            &[],
        )?;
        lossy = true;
    }
    // A disabled trigger is the user's choice (refreshes are FULL until it is enabled again); any
    // other state than its own is set back.
    for (table, name, state) in functions.triggers()? {
        let Some(kind) = family
            .kinds()
            .iter()
            .find(|k| name.ends_with(&format!("_{}", k.suffix)))
        else {
            continue;
        };
        if state == "D" {
            lossy = true;
        } else if state != kind.state {
            set_state(&regclass(table)?, &name, kind.state)?;
            lossy = true;
        }
    }
    Ok(lossy)
}

/// Whether a trigger of `family` of one of `sources` is disabled: their changes are not captured (a
/// refresh must be FULL) or not signalled (a refresh must not be skipped).
pub fn suspended(family: Family, sources: &[Oid]) -> PgtResult<bool> {
    for &source in sources {
        let members: Vec<Oid> = std::iter::once(source)
            .chain(descendants(source)?.into_iter().map(|(t, _)| t))
            .collect();
        if Functions::of(family, source)?
            .triggers()?
            .iter()
            .any(|(table, _, state)| state == "D" && members.contains(table))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Drops the triggers running the trigger function of `family` for `source`, on any table.
pub(super) fn drop_native_triggers(family: Family, source: Oid) -> PgtResult<()> {
    drop_triggers(family, &[source], true)
}

/// Drops the signal triggers of every source but `keep`, on any table (after a restore: the dumped
/// ones name the OIDs of the dumped database).
pub(super) fn drop_signals_except(keep: &[Oid]) -> PgtResult<()> {
    drop_triggers(Family::Signal, keep, false)
}

/// Drops the triggers running the trigger function of `family` whose source is among `sources`
/// (`among`) or not (`!among`).
fn drop_triggers(family: Family, sources: &[Oid], among: bool) -> PgtResult<()> {
    let Some(function) = family.native_function()? else {
        return Ok(());
    };
    let triggers: Vec<(Oid, String)> = spi::rows(
        &format!(
            "SELECT tgrelid, tgname::text AS name FROM pg_catalog.pg_trigger
              WHERE tgfoid = $2 AND NOT tgisinternal AND tgparentid = 0
                AND (tgargs = {}) = $3
              ORDER BY 1, 2",
            trigger_argument("$1")
        ),
        &[sources.to_vec().into(), function.into(), among.into()],
        |r| Ok((spi::col(r, "tgrelid")?, spi::col(r, "name")?)),
    )?;
    for (table, name) in triggers {
        spi::exec(
            &format!(
                "DROP TRIGGER IF EXISTS {} ON {}",
                quote_ident(&name),
                regclass(table)?
            ),
            &[],
        )?;
    }
    Ok(())
}

/// The partitions and inheritance children of `source` that get its triggers, at any depth.
pub fn descendant_tables(source: Oid) -> PgtResult<Vec<Oid>> {
    Ok(descendants(source)?
        .into_iter()
        .map(|(relid, _)| relid)
        .collect())
}

/// Every partition or inheritance child below `source`, at any depth, that can hold or route rows,
/// with its relkind.
fn descendants(source: Oid) -> PgtResult<Vec<(Oid, String)>> {
    spi::rows(
        "WITH RECURSIVE tree(relid) AS (
             SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent = $1
             UNION
             SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree t ON i.inhparent = t.relid)
         SELECT t.relid, c.relkind::text AS relkind FROM tree t JOIN pg_catalog.pg_class c ON c.oid = t.relid
          WHERE c.relkind IN ('r', 'p') ORDER BY 1",
        &[source.into()],
        |r| Ok((spi::col::<Oid>(r, "relid")?, spi::col::<String>(r, "relkind")?)),
    )
}

/// A foreign table among the source's partitions or children, if any: its writes cannot be
/// captured (no transition tables, no trigger on the remote side).
pub fn foreign_descendant(source: Oid) -> PgtResult<Option<String>> {
    first_of_families(&[source], false, "c.relkind = 'f'")
}

/// An unlogged table among `sources`, their partitions and children, if any: crash recovery empties
/// those without firing a trigger.
pub fn unlogged_member(sources: &[Oid]) -> PgtResult<Option<String>> {
    first_of_families(sources, true, "c.relpersistence = 'u'")
}

/// The first, by name, of the partitions and inheritance children of `sources` at any depth (and of
/// the sources themselves, `with_sources`) whose `pg_class` row `c` meets `condition`.
fn first_of_families(
    sources: &[Oid],
    with_sources: bool,
    condition: &str,
) -> PgtResult<Option<String>> {
    spi::one::<String>(
        &format!(
            "WITH RECURSIVE tree(relid) AS (
                 SELECT s FROM pg_catalog.unnest($1::pg_catalog.oid[]) AS s WHERE $2
                 UNION
                 SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent = ANY ($1::pg_catalog.oid[])
                 UNION
                 SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree t ON i.inhparent = t.relid)
             SELECT c.oid::pg_catalog.regclass::text FROM tree t JOIN pg_catalog.pg_class c ON c.oid = t.relid
              WHERE {condition} ORDER BY 1 LIMIT 1"
        ),
        &[sources.to_vec().into(), with_sources.into()],
    )
}

fn relkind(table: Oid) -> PgtResult<String> {
    Ok(spi::one::<String>(
        "SELECT relkind::text FROM pg_catalog.pg_class WHERE oid = $1",
        &[table.into()],
    )?
    .unwrap_or_default())
}

fn regclass(table: Oid) -> PgtResult<String> {
    Ok(
        spi::one::<String>("SELECT $1::pg_catalog.regclass::text", &[table.into()])?
            .unwrap_or_default(),
    )
}

fn has_rows(table: Oid) -> PgtResult<bool> {
    Ok(spi::one::<bool>(
        &format!("SELECT EXISTS (SELECT 1 FROM ONLY {})", regclass(table)?),
        &[],
    )? == Some(true))
}
