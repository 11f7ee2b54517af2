//! A fresh database per test, and the assertions tests make against it.

use crate::cluster::cluster;
use postgres::types::ToSql;
use postgres::{Client, Row};

pub struct TestDb {
    pub name: String,
    pub client: Client,
}

/// A notice, warning or debug message from the server.
#[derive(Debug, Clone)]
pub struct Notice {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

/// What a connection made by [`TestDb::connect_keeping_notices`] has received so far.
pub type Notices = std::sync::Arc<std::sync::Mutex<Vec<Notice>>>;

/// A server error as the tests inspect it.
#[derive(Debug, Clone)]
pub struct DbError {
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// `routine, file:line` as psql's `LOCATION:` shows it.
    pub location: String,
}

impl TestDb {
    /// Creates database `name` (replacing one left by an earlier run) with pg_trickle installed.
    pub fn new(name: &str) -> TestDb {
        let mut db = TestDb::without_extension(name);
        db.exec("CREATE EXTENSION pg_trickle");
        db
    }

    pub fn without_extension(name: &str) -> TestDb {
        let mut admin = cluster()
            .try_connect("postgres")
            .expect("connect to postgres");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap();
        TestDb::existing(name)
    }

    /// A connection to a database that already exists (made by another test step).
    pub fn existing(name: &str) -> TestDb {
        TestDb {
            name: name.to_string(),
            client: cluster()
                .try_connect(name)
                .expect("connect to test database"),
        }
    }

    /// A second connection to the same database.
    pub fn connect(&self) -> Client {
        cluster().try_connect(&self.name).unwrap()
    }

    /// A new connection to this database that keeps every notice and warning the server sends it
    /// (and debug messages, under `client_min_messages = debug1`).
    pub fn connect_keeping_notices(&self) -> (Client, Notices) {
        let kept = Notices::default();
        let sink = kept.clone();
        let mut config: postgres::Config = self.conninfo().parse().unwrap();
        config.notice_callback(move |n| {
            sink.lock().unwrap().push(Notice {
                severity: n.severity().to_string(),
                code: n.code().code().to_string(),
                message: n.message().to_string(),
                detail: n.detail().map(str::to_string),
                hint: n.hint().map(str::to_string),
            })
        });
        (config.connect(postgres::NoTls).unwrap(), kept)
    }

    pub fn conninfo(&self) -> String {
        cluster().conninfo(&self.name)
    }

    pub fn exec(&mut self, sql: &str) {
        if let Err(e) = self.client.batch_execute(sql) {
            panic!("{sql}\nfailed: {:?}", as_db_error(&e));
        }
    }

    pub fn rows(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<Row> {
        self.client
            .query(sql, params)
            .unwrap_or_else(|e| panic!("{sql}\nfailed: {:?}", as_db_error(&e)))
    }

    /// The first column of the only row.
    pub fn value<T: for<'a> postgres::types::FromSql<'a>>(&mut self, sql: &str) -> T {
        let row = self
            .client
            .query_one(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}\nfailed: {:?}", as_db_error(&e)));
        row.get(0)
    }

    /// The pid of this database's pg_trickle scheduler, waiting up to 15 s for one to start. That is
    /// shorter than the launcher's periodic probe (30 s), so a lost start request shows as `None`.
    pub fn scheduler_pid(&mut self) -> Option<i32> {
        let sql = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_trickle coordinator' AND datname = current_database()";
        let mut pid = None;
        crate::wait_until(std::time::Duration::from_secs(15), || {
            pid = self.rows(sql, &[]).first().map(|r| r.get(0));
            pid.is_some()
        });
        pid
    }

    /// The pid of the coordinator serving this database (its pool shows in `pool_status`), waiting
    /// up to 15 s for one: a coordinator process shows in pg_stat_activity before it serves.
    pub fn serving_coordinator(&mut self) -> Option<i32> {
        let sql = "SELECT p.coordinator_pid FROM pgtrickle.pool_status p
                     JOIN pg_stat_activity a ON a.pid = p.coordinator_pid AND a.backend_type = 'pg_trickle coordinator'";
        let mut pid = None;
        crate::wait_until(std::time::Duration::from_secs(15), || {
            pid = self.rows(sql, &[]).first().map(|r| r.get(0));
            pid.is_some()
        });
        pid
    }

    /// Waits (up to 15 s) until the coordinator has run the clean-ups manual refreshes left it: the
    /// change rows they applied are deleted after they commit, in a transaction of its own.
    pub fn wait_for_cleanups(&mut self) {
        let sql = "SELECT coalesce((SELECT pending_cleanups FROM pgtrickle.pool_status), 0)";
        let done = crate::wait_until(std::time::Duration::from_secs(15), || {
            self.value::<i32>(sql) == 0
        });
        assert!(done, "the coordinator still owes clean-ups after 15 s");
    }

    /// A database with table `src` (half of its rows the owner's, by `who`) and a role of its own —
    /// the returned name, after the database; roles are cluster-wide and tests run in parallel — who
    /// may read src.
    pub fn with_reader(name: &str) -> (TestDb, String) {
        let mut db = TestDb::new(name);
        let alice = format!("{name}_alice");
        db.fresh_role(&alice);
        db.exec(&format!(
            "CREATE TABLE src (id int PRIMARY KEY, who text NOT NULL, v int NOT NULL);
             INSERT INTO src SELECT g, CASE WHEN g % 2 = 0 THEN '{alice}' ELSE 'carol' END, g FROM generate_series(1, 20) g;
             GRANT SELECT ON src TO {alice};"
        ));
        (db, alice)
    }

    /// Creates login role `role` afresh (dropping one, and what it owns here, left by an earlier run).
    /// Roles are cluster-wide and tests run in parallel: name it after the test.
    pub fn fresh_role(&mut self, role: &str) {
        self.exec(&format!(
            "DO $$ BEGIN
               IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                 EXECUTE 'DROP OWNED BY {role} CASCADE'; DROP ROLE {role};
               END IF;
             END $$;
             CREATE ROLE {role} LOGIN;"
        ));
    }

    /// Runs `sql`, which must fail, and returns the error.
    pub fn error(&mut self, sql: &str) -> DbError {
        match self.client.batch_execute(sql) {
            Ok(()) => panic!("expected an error from: {sql}"),
            Err(e) => as_db_error(&e).unwrap_or_else(|| panic!("not a server error: {e}")),
        }
    }

    /// Rows in which the stream table (its visible columns: hidden `__pgt_` columns excluded) and its
    /// query differ, as a multiset (EXCEPT ALL both ways), rendered as text; empty when they are equal.
    pub fn multiset_diff(&mut self, stream_table: &str, query: &str) -> Vec<String> {
        self.multiset_diff_with(stream_table, query, &|sql: &str| sql.to_string())
    }

    /// The action and reason of the stream table's latest refresh, from the refresh history.
    pub fn last_refresh(&mut self, stream_table: &str) -> (String, String) {
        let rows = self.rows(
            "SELECT h.action, coalesce(h.reason, '') FROM pgtrickle.pgt_refresh_history h
               JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
              WHERE s.pgt_relid = $1::text::regclass ORDER BY h.refresh_id DESC LIMIT 1",
            &[&stream_table],
        );
        (rows[0].get(0), rows[0].get(1))
    }

    /// Like [`assert_matches_query`], but rows are compared by their text: values that are equal but
    /// print differently (`1.5` and `1.50`, `-0` and `0`, `'1 day'` and `'24 hours'`) differ.
    pub fn assert_shows_what_query_shows(&mut self, stream_table: &str, query: &str) {
        // The whole row under an alias no column has: `x::text` would read a column named x.
        let text = |sql: &str| format!("SELECT \"pgt row\"::text FROM ({sql}) AS \"pgt row\"");
        let diff = self.multiset_diff_with(stream_table, query, &text);
        assert!(
            diff.is_empty(),
            "{stream_table} does not show what its query shows:\n{}",
            diff.join("\n")
        );
    }

    fn multiset_diff_with(
        &mut self,
        stream_table: &str,
        query: &str,
        wrap: &dyn Fn(&str) -> String,
    ) -> Vec<String> {
        let columns: String = self.value(&format!(
            "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
              WHERE attrelid = '{}'::regclass AND attnum > 0 AND NOT attisdropped AND attname NOT LIKE '\\_\\_pgt\\_%'",
            stream_table.replace('\'', "''")
        ));
        let (st, q) = (
            wrap(&format!("SELECT {columns} FROM {stream_table}")),
            wrap(query),
        );
        let sql = format!(
            "SELECT 'only in stream table: ' || \"pgt row\"::text FROM (({st}) EXCEPT ALL ({q})) AS \"pgt row\"
             UNION ALL
             SELECT 'only in query: ' || \"pgt row\"::text FROM (({q}) EXCEPT ALL ({st})) AS \"pgt row\""
        );
        self.rows(&sql, &[])
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect()
    }

    /// Refreshes `stream_table` by hand and asserts that it refreshed DIFFERENTIAL (no FULL fallback
    /// or repair) and shows what `query` shows (by text); `step` names the changes before it.
    pub fn assert_refreshes_differentially(&mut self, stream_table: &str, query: &str, step: &str) {
        self.exec(&format!(
            "SELECT pgtrickle.refresh_stream_table('{}')",
            stream_table.replace('\'', "''")
        ));
        assert_eq!(
            self.last_refresh(stream_table).0,
            "DIFFERENTIAL",
            "{stream_table} after {step}"
        );
        self.assert_shows_what_query_shows(stream_table, query);
    }

    pub fn assert_matches_query(&mut self, stream_table: &str, query: &str) {
        let diff = self.multiset_diff(stream_table, query);
        assert!(
            diff.is_empty(),
            "{stream_table} differs from its query:\n{}",
            diff.join("\n")
        );
    }
}

pub fn as_db_error(e: &postgres::Error) -> Option<DbError> {
    e.as_db_error().map(|d| DbError {
        code: d.code().code().to_string(),
        message: d.message().to_string(),
        detail: d.detail().map(str::to_string),
        hint: d.hint().map(str::to_string),
        location: format!(
            "{}, {}:{}",
            d.routine().unwrap_or(""),
            d.file().unwrap_or(""),
            d.line().unwrap_or(0)
        ),
    })
}
