//! Carrying out an operation log against one shape's twins, checking at every refresh point.

use super::check::{compare, no_silent_fallback, visible_columns, Comparison, Failure};
use super::ops::{Generator, Op};
use super::schema::{table, Table, TABLES};
use super::shapes::Shape;
use crate::TestDb;
use postgres::Client;

/// A log entry: the operation and its index in the original (unshrunk) log.
pub type Entry = (usize, Op);

/// Who refreshes the twins at a refresh point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    /// `refresh_stream_table`, in the runner's session.
    Session,
    /// The external worker protocol, in the runner's session: a worker registers, the twin's job is
    /// queued, and the worker claims and refreshes it (`worker_claim`, `worker_refresh`) as a role
    /// that holds only `pgtrickle_worker`. One DO block per twin, so the coordinator never sees the
    /// worker or the job.
    ExternalWorker,
    /// As `ExternalWorker`, but the runner reduces batches the server hands out a local plan for,
    /// as an offloading worker does (`offload.rs`): between refresh points only (a refresh inside
    /// the runner's own transaction runs on the server, as `ExternalWorker`).
    Offloading,
}

/// The first line of an offloading refresh point's statement: the rest refreshes on the server (what
/// a repro script runs).
const OFFLOAD_MARK: &str = "-- the oracle offloads this refresh of ";

/// The role the external executor refreshes as.
const ORACLE_WORKER_ROLE: &str = "pgtrickle_oracle_worker";

impl Executor {
    pub fn describe(self) -> &'static str {
        match self {
            Executor::Session => "refresh_stream_table",
            Executor::ExternalWorker => "the external worker protocol (worker_claim, worker_refresh)",
            Executor::Offloading => "the external worker protocol, offloading (worker_offload, binary COPY, worker_offload_apply)",
        }
    }

    pub fn env_value(self) -> &'static str {
        match self {
            Executor::Session => "session",
            Executor::ExternalWorker => "external",
            Executor::Offloading => "offload",
        }
    }

    /// What a database needs before the twins are refreshed this way.
    pub fn setup_statements(self) -> Vec<String> {
        match self {
            Executor::Session => Vec::new(),
            // Roles are the cluster's, and shapes run in parallel: whoever comes first creates it.
            Executor::ExternalWorker | Executor::Offloading => vec![format!(
                "DO $$ BEGIN CREATE ROLE {ORACLE_WORKER_ROLE} NOLOGIN IN ROLE pgtrickle_worker;
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            )],
        }
    }

    fn refresh(self, twin: &str) -> String {
        match self {
            Executor::Session => format!("SELECT pgtrickle.refresh_stream_table('{twin}')"),
            Executor::Offloading => format!("{OFFLOAD_MARK}{twin}\n{}", Executor::ExternalWorker.refresh(twin)),
            Executor::ExternalWorker => format!(
                "DO $pgt$
DECLARE w uuid := gen_random_uuid(); j record; r record;
BEGIN
  PERFORM pgtrickle.worker_register(w, 'oracle', pg_backend_pid(), NULL);
  INSERT INTO pgtrickle.pgt_worker_jobs (pgt_id) SELECT pgt_id FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = '{twin}'::regclass;
  SET LOCAL ROLE {ORACLE_WORKER_ROLE};
  SELECT * INTO STRICT j FROM pgtrickle.worker_claim(w);
  SELECT * INTO STRICT r FROM pgtrickle.worker_refresh(w, j.job_id, j.attempt);
  PERFORM pgtrickle.worker_stop(w);
  RESET ROLE;
  DELETE FROM pgtrickle.pgt_worker_jobs WHERE job_id = j.job_id;
  DELETE FROM pgtrickle.pgt_worker_registry WHERE worker_id = w;
END $pgt$"
            ),
        }
    }
}

pub struct Runner {
    db_name: String,
    db: Option<TestDb>,
    pub shape: &'static Shape,
    pub diff_mode: String,
    pub executor: Executor,
    /// Planted bug for the harness's own self-check: after every refresh point whose original index is
    /// at least this, one row of the differential twin is deleted.
    pub corrupt_from: Option<usize>,
    pub sources: Vec<&'static Table>,
    /// The tables (not stream tables) the twins read themselves: a TRUNCATE of one of these, and
    /// only these, may make the differential twin's next refresh FULL.
    direct_sources: Vec<&'static Table>,
    columns: String,
    truncated: bool,
    /// Whether the upstreams were refreshed after the last change to their sources.
    upstreams_fresh: bool,
    /// Each upstream's visible columns, quoted, in `shape.upstreams` order.
    upstream_columns: Vec<String>,
    pub refreshes: u64,
    pub rows_checked: u64,
    /// Refreshes of the differential twin the runner reduced itself (the offloading executor).
    pub offloaded: u64,
    /// Inside a transaction the runner began (an offloading refresh then runs on the server).
    in_txn: bool,
}

impl Runner {
    /// A runner whose every (re)start is a new database `db_name`.
    pub fn new(db_name: &str, shape: &'static Shape, diff_mode: &str) -> Runner {
        Runner {
            db_name: db_name.to_string(),
            db: None,
            shape,
            diff_mode: diff_mode.to_uppercase(),
            executor: Executor::Session,
            corrupt_from: None,
            sources: Vec::new(),
            direct_sources: Vec::new(),
            columns: String::new(),
            truncated: false,
            upstreams_fresh: true,
            upstream_columns: Vec::new(),
            refreshes: 0,
            rows_checked: 0,
            offloaded: 0,
            in_txn: false,
        }
    }

    pub fn twin_d(&self) -> String {
        format!("{}_d", self.shape.name)
    }

    pub fn twin_f(&self) -> String {
        format!("{}_f", self.shape.name)
    }

    /// The visible columns, quoted; empty until the twins have been created.
    pub fn columns(&self) -> &str {
        &self.columns
    }

    pub fn client(&mut self) -> &mut Client {
        &mut self.db.as_mut().expect("the runner has been reset").client
    }

    /// Drops the database, which frees its scheduler worker for other databases.
    pub fn drop_database(mut self) {
        self.db = None;
        if let Ok(mut admin) = crate::cluster().try_connect("postgres") {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.db_name
            ));
        }
    }

    /// The calls that create the upstreams and both twins (the same text the repro script prints).
    pub fn create_statements(&self) -> Vec<String> {
        let create = |name: &str, query: &str, mode: &str| {
            format!("SELECT pgtrickle.create_stream_table('{name}', $q${query}$q$, '1h', '{mode}')")
        };
        let upstreams = self.shape.upstreams.iter().map(|u| {
            let mode = if u.full { "FULL" } else { &self.diff_mode };
            create(u.name, u.query, mode)
        });
        upstreams
            .chain([
                create(&self.twin_d(), self.shape.query, &self.diff_mode),
                create(&self.twin_f(), self.shape.query, "FULL"),
            ])
            .collect()
    }

    /// Whether the refresh point at original log index `index` refreshes the upstreams before the
    /// twins: three in four do; the others leave them stale, and the twins must follow them as they
    /// are. By index, so a shrunk log keeps each refresh point's choice.
    fn refreshes_upstreams(index: usize) -> bool {
        index % 4 != 3
    }

    /// A new database with empty sources and newly created twins, compared once. A new database
    /// rather than dropped tables: nothing carries over (change buffers, history, session caches), and
    /// no DROP machinery of the extension is involved.
    pub fn reset(&mut self) -> Result<(), Failure> {
        self.db = None;
        self.db = Some(TestDb::new(&self.db_name));
        // A hung refresh becomes a failure (57014) instead of a hung test run.
        self.exec("SET statement_timeout = '120s'")?;
        for s in self.executor.setup_statements() {
            self.exec(&s)?;
        }
        for t in &TABLES {
            self.exec(t.ddl)?;
        }
        // Until the catalog says which tables the query reads, a repro script needs them all. (Views
        // the query reads are dependencies too; they come with their table's DDL.)
        self.sources = TABLES.iter().collect();
        self.columns.clear();
        self.upstream_columns.clear();
        for s in self.create_statements() {
            self.exec(&s)?;
        }
        // The tables the twins read, directly and through the upstreams (level 0: directly).
        let sql = format!(
            "WITH RECURSIVE reads (relid, level) AS (
               SELECT d.source_relid, 0 FROM pgtrickle.pgt_dependencies d
                 JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) WHERE s.pgt_relid = '{}'::regclass
               UNION
               SELECT d.source_relid, r.level + 1 FROM reads r
                 JOIN pgtrickle.pgt_stream_tables s ON s.pgt_relid = r.relid
                 JOIN pgtrickle.pgt_dependencies d ON d.pgt_id = s.pgt_id)
             SELECT string_agg(DISTINCT c.relname, ','),
                    coalesce(string_agg(DISTINCT c.relname, ',') FILTER (WHERE r.level = 0), '')
               FROM reads r JOIN pg_class c ON c.oid = r.relid
              WHERE c.relkind = 'r' AND NOT EXISTS (
                    SELECT FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_relid = r.relid)",
            self.twin_f()
        );
        let row = self
            .client()
            .query_one(&sql, &[])
            .map_err(|e| Failure::sql(&sql, &e))?;
        let (sources, direct): (String, String) = (row.get(0), row.get(1));
        self.sources = sources.split(',').map(table).collect();
        self.direct_sources = direct
            .split(',')
            .filter(|s| !s.is_empty())
            .map(table)
            .collect();
        let (d, f) = (self.twin_d(), self.twin_f());
        self.columns = visible_columns(self.client(), &f)?;
        let columns_d = visible_columns(self.client(), &d)?;
        if columns_d != self.columns {
            return Err(Failure {
                kind: "visible columns differ".into(),
                detail: format!(
                    "{d} has visible columns ({columns_d}), {f} has ({})",
                    self.columns
                ),
            });
        }
        for u in self.shape.upstreams {
            let columns = visible_columns(self.client(), u.name)?;
            self.upstream_columns.push(columns);
        }
        self.truncated = false;
        self.upstreams_fresh = true;
        self.compare()
    }

    /// The statements `op` (at original index `index`) is carried out with, planted corruption included.
    pub fn statements(&self, index: usize, op: &Op) -> Vec<String> {
        let (d, f) = (self.twin_d(), self.twin_f());
        let refresh = |twin: &str| self.executor.refresh(twin);
        // The upstreams each in a transaction of their own, before the refresh point's: a refresh in
        // the transaction that wrote its source is FULL by design (docs/SQL_REFERENCE.md), so this
        // keeps the differential twin's refreshes DIFFERENTIAL.
        let mut out: Vec<String> = match op.refreshes() && Self::refreshes_upstreams(index) {
            true => self
                .shape
                .upstreams
                .iter()
                .map(|u| refresh(u.name))
                .collect(),
            false => Vec::new(),
        };
        out.extend(op.statements(&[&d, &f], &refresh));
        if op.refreshes() && self.corrupt_from.is_some_and(|n| index >= n) {
            out.push(tamper(
                &d,
                &format!("DELETE FROM {d} WHERE ctid IN (SELECT ctid FROM {d} LIMIT 1)"),
            ));
        }
        out
    }

    pub fn apply(&mut self, index: usize, op: &Op) -> Result<(), Failure> {
        for s in self.statements(index, op) {
            self.exec(&s)?;
        }
        if let Op::Truncate(t) = op {
            self.truncated |= self.direct_sources.iter().any(|s| s.name == *t);
        }
        if !op.refreshes() {
            self.upstreams_fresh = false;
            return Ok(());
        }
        if Self::refreshes_upstreams(index) {
            self.upstreams_fresh = true;
        }
        self.compare()?;
        if self.diff_mode == "DIFFERENTIAL" {
            let (d, truncated) = (self.twin_d(), self.truncated);
            no_silent_fallback(self.client(), &d, truncated)?;
        }
        self.truncated = false;
        self.refreshes += 1;
        Ok(())
    }

    /// Both twins against the query, then against each other; first each upstream against its
    /// query, when they have been refreshed since their sources last changed.
    pub fn comparisons(&self) -> Vec<Comparison> {
        let (d, f, q) = (self.twin_d(), self.twin_f(), self.shape.query.to_string());
        let cols = &self.columns;
        let side = |t: &str| (t.to_string(), format!("SELECT {cols} FROM {t}"));
        let upstreams = self
            .shape
            .upstreams
            .iter()
            .zip(&self.upstream_columns)
            .filter(|_| self.upstreams_fresh)
            .map(|(u, cols)| Comparison {
                left: (u.name.to_string(), format!("SELECT {cols} FROM {}", u.name)),
                right: (format!("the query of {}", u.name), u.query.to_string()),
            });
        upstreams
            .chain([
                Comparison {
                    left: side(&d),
                    right: ("the query".into(), q.clone()),
                },
                Comparison {
                    left: side(&f),
                    right: ("the query".into(), q),
                },
                Comparison {
                    left: side(&d),
                    right: side(&f),
                },
            ])
            .collect()
    }

    pub fn compare(&mut self) -> Result<(), Failure> {
        let comparisons = self.comparisons();
        let query = self.shape.query;
        self.rows_checked += compare(self.client(), query, &comparisons)?;
        Ok(())
    }

    /// Row counts of the sources, in `self.sources` order.
    pub fn sizes(&mut self) -> Vec<i64> {
        let counts: Vec<String> = self
            .sources
            .iter()
            .map(|t| format!("(SELECT count(*) FROM {})", t.name))
            .collect();
        let sql = format!("SELECT ARRAY[{}]::bigint[]", counts.join(", "));
        self.client()
            .query_one(&sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    fn exec(&mut self, sql: &str) -> Result<(), Failure> {
        if let Some(twin) = sql
            .strip_prefix(OFFLOAD_MARK)
            .and_then(|rest| rest.lines().next())
        {
            if !self.in_txn {
                let (twin, d) = (twin.to_string(), self.twin_d());
                let refreshed =
                    super::offload::refresh(self.client(), &twin, ORACLE_WORKER_ROLE, sql)
                        .map_err(|(statement, e)| Failure::sql(&statement, &e))?;
                if twin == d && refreshed == super::offload::Refreshed::Offloaded {
                    self.offloaded += 1;
                }
                return Ok(());
            }
        }
        if sql.starts_with("BEGIN") {
            self.in_txn = true;
        } else if sql == "COMMIT" || sql == "ROLLBACK" {
            self.in_txn = false;
        }
        self.client()
            .batch_execute(sql)
            .map_err(|e| Failure::sql(sql, &e))
    }

    /// Generates and applies `ops` operations from `seed`, plus a final refresh point if needed.
    /// Returns the log, and any failure with the log index it happened at (None: while creating).
    pub fn run(&mut self, seed: u64, ops: usize) -> (Vec<Entry>, Option<(Option<usize>, Failure)>) {
        let mut log: Vec<Entry> = Vec::new();
        if let Err(f) = self.reset() {
            return (log, Some((None, f)));
        }
        let mut generator = Generator::new(seed, self.sources.clone());
        for i in 0..=ops {
            let op = if i < ops {
                let sizes = self.sizes();
                generator.next(&sizes)
            } else if log.last().is_some_and(|(_, op)| op.refreshes()) {
                break;
            } else {
                Op::Refresh {
                    repeatable_read: false,
                }
            };
            let result = self.apply(i, &op);
            log.push((i, op));
            if let Err(f) = result {
                return (log, Some((Some(i), f)));
            }
        }
        (log, None)
    }

    /// Replays `log` from scratch; on failure, how many entries it took (0: while creating).
    pub fn replay(&mut self, log: &[Entry]) -> Result<(), (usize, Failure)> {
        self.reset().map_err(|f| (0, f))?;
        for (n, (index, op)) in log.iter().enumerate() {
            self.apply(*index, op).map_err(|f| (n + 1, f))?;
        }
        Ok(())
    }
}

/// `statement` writing directly to the stream table `table`, past the guard that refuses such writes
/// (what the oracle's self-tests plant to prove they would notice).
pub fn tamper(table: &str, statement: &str) -> String {
    format!(
        "ALTER TABLE {table} DISABLE TRIGGER pgtrickle_guard; {statement}; ALTER TABLE {table} ENABLE ALWAYS TRIGGER pgtrickle_guard"
    )
}
