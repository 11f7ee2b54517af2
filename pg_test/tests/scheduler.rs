//! The background scheduler refreshes stream tables by itself, honours SUSPENDED, and survives
//! failing refreshes.

use pg_trickle_e2e::{wait_until, TestDb};
use std::time::Duration;

const SUM_FACTS: &str = "SELECT sum(v) AS s FROM facts";
const ORDERS_QUERY: &str =
    "SELECT customer, count(*) AS n, sum(amount) AS total FROM orders GROUP BY customer";

fn orders_db(name: &str) -> TestDb {
    let mut db = TestDb::new(name);
    db.exec(
        "CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric(10,2) NOT NULL);
         INSERT INTO orders SELECT g, 'c' || (g % 4), g * 1.25 FROM generate_series(1, 200) g;",
    );
    db
}

fn scheduled_refreshes(db: &mut TestDb) -> i64 {
    db.value(
        "SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE initiated_by = 'SCHEDULER' AND status = 'SUCCESS'",
    )
}

#[test]
fn scheduler_refreshes_without_a_manual_call() {
    let mut db = orders_db("sched_auto");
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('order_totals', '{ORDERS_QUERY}', '200ms')"
    ));
    db.assert_matches_query("order_totals", ORDERS_QUERY);

    for round in 0..3 {
        db.exec(&format!(
            "INSERT INTO orders SELECT g, 'round{round}', 1 FROM generate_series(1000 * ({round} + 1), 1000 * ({round} + 1) + 9) g;
             UPDATE orders SET amount = amount + 1 WHERE id % 7 = {round};
             DELETE FROM orders WHERE id % 11 = {round};"
        ));
        let caught_up = wait_until(Duration::from_secs(30), || {
            db.multiset_diff("order_totals", ORDERS_QUERY).is_empty()
        });
        assert!(
            caught_up,
            "round {round}: stream table never caught up: {:?}",
            db.multiset_diff("order_totals", ORDERS_QUERY)
        );
    }
    assert!(
        scheduled_refreshes(&mut db) >= 3,
        "the scheduler, not a manual call, did the refreshes"
    );
    let manual: i64 = db
        .value("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE initiated_by = 'MANUAL'");
    assert_eq!(manual, 0);
}

/// The stream tables of the clean-up test and their queries.
fn consumers() -> Vec<(String, String)> {
    let mut all = vec![("order_totals".to_string(), ORDERS_QUERY.to_string())];
    for i in 1..=4 {
        all.push((
            format!("c{i}"),
            format!("SELECT count(*) AS n FROM orders WHERE id % 5 <> {i}"),
        ));
    }
    all.push(("lagging".into(), "SELECT count(*) AS n FROM orders".into()));
    all
}

#[test]
fn a_scheduled_refresh_cleans_up_after_it_commits_and_truncates_only_what_all_have_applied() {
    let mut db = orders_db("sched_release");
    // Six consumers: more than the clean-up reads frontiers of one by one.
    for (name, query) in consumers() {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{name}', $q${query}$q$, '200ms', 'DIFFERENTIAL')"
        ));
    }
    let buffer: String = db.value("SELECT 'pgtrickle_changes.changes_' || 'orders'::regclass::oid");
    let file = |db: &mut TestDb| -> i64 {
        db.value(&format!(
            "SELECT relfilenode::bigint FROM pg_class WHERE oid = '{buffer}'::regclass"
        ))
    };
    let count = |db: &mut TestDb| db.value::<i64>(&format!("SELECT count(*) FROM {buffer}"));
    let exact = |db: &mut TestDb, skip: &str| {
        consumers()
            .iter()
            .filter(|(n, _)| n != skip)
            .all(|(n, q)| db.multiset_diff(n, q).is_empty())
    };
    // Over a megabyte of change rows. (Waits for a truncation do not read the buffer: a reader's
    // lock makes a clean-up delete instead.)
    let big = |first: i64| {
        format!("INSERT INTO orders SELECT g, 'big', 1 FROM generate_series({first}, {first} + 29999) g")
    };

    // A small batch is deleted by the refresh worker, after the refresh's commit.
    let before = file(&mut db);
    db.exec("INSERT INTO orders SELECT g, 'small', 1 FROM generate_series(100000, 100009) g");
    assert!(wait_until(Duration::from_secs(30), || exact(&mut db, "")
        && count(&mut db) == 0));
    assert_eq!(file(&mut db), before);

    // A large batch one consumer has not applied stays, whole.
    db.exec("SELECT pgtrickle.alter_stream_table('lagging', status => 'SUSPENDED')");
    db.exec(&big(200000));
    assert!(wait_until(Duration::from_secs(30), || exact(
        &mut db, "lagging"
    )));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        file(&mut db),
        before,
        "truncated before every consumer applied it"
    );
    assert_eq!(count(&mut db), 30000);
    // Once it has, the buffer is truncated.
    db.exec("SELECT pgtrickle.alter_stream_table('lagging', status => 'ACTIVE')");
    assert!(wait_until(Duration::from_secs(30), || exact(&mut db, "")
        && file(&mut db) != before));
    assert_eq!(count(&mut db), 0);

    // A writer's uncommitted change rows are in the buffer: deleted around, never truncated away.
    let mut writer = db.connect();
    writer
        .batch_execute("BEGIN; INSERT INTO orders VALUES (999999, 'late', 1)")
        .unwrap();
    let before = file(&mut db);
    db.exec(&big(300000));
    assert!(wait_until(Duration::from_secs(30), || exact(&mut db, "")));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(file(&mut db), before, "truncated under an open writer");
    writer.batch_execute("COMMIT").unwrap();
    assert!(wait_until(Duration::from_secs(30), || exact(&mut db, "")
        && db.value::<i64>(
            "SELECT count(*) FROM order_totals WHERE customer = 'late'"
        ) == 1));
    assert_eq!(
        db.value::<String>("SELECT action FROM pgtrickle.pgt_refresh_history WHERE initiated_by = 'SCHEDULER' AND delta_rows >= 30000 ORDER BY refresh_id DESC LIMIT 1"),
        "DIFFERENTIAL"
    );
}

#[test]
fn suspended_stream_tables_are_left_alone_until_reactivated() {
    let mut db = orders_db("sched_suspend");
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('order_totals', '{ORDERS_QUERY}', '100ms')"
    ));
    db.exec("SELECT pgtrickle.alter_stream_table('order_totals', status => 'SUSPENDED')");
    let status: String = db.value("SELECT status FROM pgtrickle.stream_tables");
    assert_eq!(status, "SUSPENDED");
    let before = scheduled_refreshes(&mut db);
    db.exec("INSERT INTO orders VALUES (9999, 'late', 5)");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        scheduled_refreshes(&mut db),
        before,
        "a suspended stream table was refreshed"
    );
    assert!(!db.multiset_diff("order_totals", ORDERS_QUERY).is_empty());

    db.exec("SELECT pgtrickle.alter_stream_table('order_totals', status => 'active')");
    assert!(wait_until(Duration::from_secs(30), || db
        .multiset_diff("order_totals", ORDERS_QUERY)
        .is_empty()));
}

#[test]
fn a_failing_refresh_is_recorded_and_the_scheduler_survives() {
    let mut db = TestDb::new("sched_failure");
    db.exec(
        "CREATE TABLE knob (divisor int NOT NULL); INSERT INTO knob VALUES (1);
         CREATE TABLE facts (v int NOT NULL); INSERT INTO facts SELECT generate_series(1, 10);",
    );
    let query = "SELECT f.v / k.divisor AS q FROM facts f, knob k";
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('ratios', '{query}', '100ms')"
    ));
    db.exec("SELECT pgtrickle.create_stream_table('healthy', 'SELECT count(*) AS n FROM facts', '100ms')");
    let pid = db
        .scheduler_pid()
        .expect("no scheduler started after the stream tables were created");

    db.exec("UPDATE knob SET divisor = 0");
    let failed = wait_until(Duration::from_secs(30), || {
        db.value::<i32>(
            "SELECT consecutive_errors FROM pgtrickle.stream_tables WHERE table_name = 'ratios'",
        ) >= 2
    });
    assert!(failed, "failures were not recorded");
    let last_error: String =
        db.value("SELECT last_error FROM pgtrickle.stream_tables WHERE table_name = 'ratios'");
    assert!(last_error.contains("division by zero"), "{last_error}");
    let failed_history: i64 = db.value(
        "SELECT count(*) FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.stream_tables s USING (pgt_id)
          WHERE s.table_name = 'ratios' AND h.status = 'FAILED' AND h.error_message LIKE '%division by zero%'",
    );
    assert!(failed_history >= 1);

    // The other stream table keeps being refreshed meanwhile, by the same scheduler process.
    db.exec("INSERT INTO facts VALUES (11)");
    assert!(wait_until(Duration::from_secs(30), || db
        .multiset_diff("healthy", "SELECT count(*) AS n FROM facts")
        .is_empty()));
    assert_eq!(
        db.scheduler_pid(),
        Some(pid),
        "the scheduler restarted instead of surviving the failure"
    );

    // Fixing the cause heals the stream table (backoff is at most a few seconds at these error counts).
    db.exec("UPDATE knob SET divisor = 1");
    assert!(wait_until(Duration::from_secs(60), || db
        .multiset_diff("ratios", query)
        .is_empty()));
    assert!(wait_until(Duration::from_secs(10), || {
        db.value::<i32>(
            "SELECT consecutive_errors FROM pgtrickle.stream_tables WHERE table_name = 'ratios'",
        ) == 0
    }));
}

/// A database whose background refreshes may take at most `limit` (its coordinator and workers
/// start after the setting, with the extension).
fn limited_db(name: &str, limit: &str) -> TestDb {
    let mut db = TestDb::without_extension(name);
    db.exec(&format!(
        "ALTER DATABASE \"{name}\" SET pg_trickle.refresh_timeout = '{limit}'"
    ));
    db.exec(
        "CREATE EXTENSION pg_trickle;
         CREATE TABLE knob (secs float8 NOT NULL); INSERT INTO knob VALUES (0);
         CREATE FUNCTION nap(float8) RETURNS int LANGUAGE sql AS 'SELECT 1 FROM pg_sleep($1)';",
    );
    db
}

fn status_and_error(db: &mut TestDb, table: &str) -> (String, i32, String) {
    let row = db.rows(
        "SELECT status, consecutive_errors, coalesce(last_error, '') FROM pgtrickle.stream_tables WHERE table_name = $1",
        &[&table],
    );
    (row[0].get(0), row[0].get(1), row[0].get(2))
}

/// A scheduled refresh that runs past `pg_trickle.refresh_timeout` is canceled: it rolls back, is
/// recorded as a failure that says why, backs off, and the same workers go on refreshing the others.
/// (`statement_timeout` never reached background refreshes: a query that slept kept a worker, or
/// the coordinator itself, for as long as it slept.)
#[test]
fn a_scheduled_refresh_longer_than_refresh_timeout_is_canceled_and_recorded() {
    let mut db = limited_db("sched_timeout", "300ms");
    db.exec(
        "CREATE TABLE facts (v int NOT NULL); INSERT INTO facts SELECT generate_series(1, 10);
         CREATE TABLE other (v int NOT NULL);",
    );
    let slow_query = "SELECT f.v, nap(k.secs) AS napped FROM facts f, knob k";
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('slow', '{slow_query}', '100ms')"
    ));
    db.exec("SELECT pgtrickle.create_stream_table('healthy', 'SELECT count(*) AS n FROM other', '100ms')");
    let pid = db
        .scheduler_pid()
        .expect("no scheduler started after the stream tables were created");

    // Each row now sleeps 5 s: a refresh would take 50 s.
    db.exec("UPDATE knob SET secs = 5; INSERT INTO facts VALUES (11)");
    let canceled = wait_until(Duration::from_secs(30), || {
        status_and_error(&mut db, "slow").1 >= 1
    });
    assert!(
        canceled,
        "no failure recorded: {:?}",
        status_and_error(&mut db, "slow")
    );
    let (status, _, last_error) = status_and_error(&mut db, "slow");
    assert_eq!(status, "ACTIVE", "{last_error}");
    assert!(
        last_error.starts_with("canceling statement due to statement timeout (a scheduled refresh may run for at most pg_trickle.refresh_timeout, 300 ms;"),
        "{last_error}"
    );
    let took: f64 = db.value(
        "SELECT extract(epoch FROM h.finished_at - h.started_at)::float8 FROM pgtrickle.pgt_refresh_history h
           JOIN pgtrickle.stream_tables s USING (pgt_id)
          WHERE s.table_name = 'slow' AND h.status = 'FAILED' ORDER BY h.refresh_id LIMIT 1",
    );
    assert!(
        took < 4.0,
        "the refresh ran for {took} s: it was not canceled"
    );
    // Rolled back: the stream table still shows what it showed before the change.
    db.assert_matches_query(
        "slow",
        "SELECT v, 1 AS napped FROM generate_series(1, 10) v",
    );

    // The workers and the coordinator survive the cancels, and the others keep being refreshed.
    db.exec("INSERT INTO other VALUES (1)");
    assert!(wait_until(Duration::from_secs(30), || db
        .multiset_diff("healthy", "SELECT count(*) AS n FROM other")
        .is_empty()));
    assert_eq!(db.scheduler_pid(), Some(pid), "the coordinator restarted");

    // Fast again: the next scheduled refresh (backoff is a few seconds at these error counts) works.
    db.exec("UPDATE knob SET secs = 0");
    assert!(wait_until(Duration::from_secs(60), || db
        .multiset_diff("slow", slow_query)
        .is_empty()));
    assert!(wait_until(Duration::from_secs(10), || {
        status_and_error(&mut db, "slow").1 == 0
    }));
}

/// A query that catches the cancel (PL/pgSQL's `EXCEPTION WHEN query_canceled`, which `WHEN OTHERS`
/// does not include) and goes on cannot outrun `pg_trickle.refresh_timeout`: as long again after the
/// cancel (at least a second), its process ends, which nothing catches; the pool replaces the
/// worker, the refresh is recorded as failed, and the other stream tables keep being refreshed.
/// (The timer fired once: such a query ran as long as it liked, and was recorded as a success.)
#[test]
fn a_query_that_catches_the_cancel_still_cannot_outrun_refresh_timeout() {
    let mut db = limited_db("sched_timeout_caught", "300ms");
    db.exec(
        "CREATE FUNCTION stubborn(x int) RETURNS int LANGUAGE plpgsql AS $$
         DECLARE until timestamptz := clock_timestamp() + (SELECT secs FROM public.knob) * interval '1 s';
         BEGIN
           WHILE clock_timestamp() < until LOOP
             BEGIN PERFORM pg_sleep(0.1); EXCEPTION WHEN query_canceled THEN NULL; END;
           END LOOP;
           RETURN x;
         END $$;
         CREATE TABLE facts (v int NOT NULL); INSERT INTO facts VALUES (1);
         CREATE TABLE other (v int NOT NULL);",
    );
    db.exec("SELECT pgtrickle.create_stream_table('stubborn', 'SELECT stubborn(v) AS v FROM facts', '100ms', 'FULL')");
    db.exec("SELECT pgtrickle.create_stream_table('healthy', 'SELECT count(*) AS n FROM other', '100ms')");
    // A refresh would now take 30 s, catching every cancel.
    db.exec("UPDATE knob SET secs = 30; INSERT INTO facts VALUES (2)");
    let failed = wait_until(Duration::from_secs(20), || {
        status_and_error(&mut db, "stubborn").1 >= 1
    });
    assert!(
        failed,
        "the refresh outran its limit: {:?}",
        db.rows(
            "SELECT action || ' ' || status || ' ' || (finished_at - started_at)::text FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id",
            &[]
        )
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
    );
    let (status, _, last_error) = status_and_error(&mut db, "stubborn");
    assert_eq!(status, "ACTIVE", "{last_error}");
    db.assert_matches_query("stubborn", "SELECT 1 AS v");
    db.exec("INSERT INTO other VALUES (1)");
    assert!(wait_until(Duration::from_secs(30), || db
        .multiset_diff("healthy", "SELECT count(*) AS n FROM other")
        .is_empty()));
    db.exec("UPDATE knob SET secs = 0");
    assert!(wait_until(Duration::from_secs(60), || db
        .multiset_diff("stubborn", "SELECT v FROM facts")
        .is_empty()));
}

/// The limit covers the whole job, its start included: a refresh worker that waits to mark its
/// stream table in flight (the owner holds the catalog row in an open `alter_stream_table`) gives up
/// at the limit and tries again later, rather than waiting as long as the owner likes (with as many
/// open transactions, a role kept as many workers).
#[test]
fn a_job_waiting_to_start_is_canceled_at_the_limit_too() {
    let mut db = limited_db("sched_timeout_start", "300ms");
    db.exec(
        "CREATE TABLE facts (v int NOT NULL); INSERT INTO facts VALUES (1);
         SELECT pgtrickle.create_stream_table('held', 'SELECT count(*) AS n FROM facts', '100ms');",
    );
    let mut holder = db.connect();
    holder
        .batch_execute("BEGIN; SELECT pgtrickle.alter_stream_table('held', schedule => '200ms')")
        .unwrap();
    db.exec("INSERT INTO facts VALUES (2)");
    // Held for 3 s: no refresh worker may wait on it for more than the limit (and a tick) at a time.
    let mut longest = 0.0f64;
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        longest = longest.max(db.value::<f64>(
            "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - query_start)), 0)::float8
               FROM pg_stat_activity
              WHERE backend_type = 'pg_trickle refresh worker' AND datname = current_database()
                AND wait_event_type = 'Lock' AND query LIKE 'refresh stream table %held'",
        ));
        std::thread::sleep(Duration::from_millis(100));
    }
    holder.batch_execute("COMMIT").unwrap();
    assert!(
        longest < 1.5,
        "a refresh worker waited {longest} s for the held catalog row"
    );
    assert!(wait_until(Duration::from_secs(30), || db
        .multiset_diff("held", "SELECT count(*) AS n FROM facts")
        .is_empty()));
}

/// A reinitialisation canceled by `pg_trickle.refresh_timeout` (here: waiting for a lock another
/// session holds on the stream table) rolls back whole: the reason to reinitialise (a TRUNCATE of
/// the source) survives every canceled attempt, the stream table stays ACTIVE, and once the lock is
/// gone a FULL refresh for that reason makes it exact.
#[test]
fn a_canceled_reinitialisation_is_retried_not_lost() {
    let mut db = limited_db("sched_timeout_reinit", "300ms");
    db.exec(
        "CREATE TABLE src (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO src VALUES (1, 1), (2, 2);
         SELECT pgtrickle.create_stream_table('st', 'SELECT id, v FROM src', '100ms', 'DIFFERENTIAL');",
    );
    let mut holder = db.connect();
    holder
        .batch_execute("BEGIN; LOCK TABLE st IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    db.exec("TRUNCATE src; INSERT INTO src VALUES (3, 3)");
    let canceled = wait_until(Duration::from_secs(30), || {
        status_and_error(&mut db, "st").1 >= 2
    });
    let (status, _, last_error) = status_and_error(&mut db, "st");
    assert!(canceled, "no canceled refreshes: {last_error}");
    assert_eq!(status, "ACTIVE", "{last_error}");
    assert!(
        last_error.starts_with("canceling statement due to statement timeout (a scheduled refresh"),
        "{last_error}"
    );

    holder.batch_execute("COMMIT").unwrap();
    assert!(wait_until(Duration::from_secs(60), || {
        status_and_error(&mut db, "st").1 == 0
    }));
    let first_success: Vec<(String, String)> = db
        .rows(
            "SELECT action, coalesce(reason, '') FROM pgtrickle.pgt_refresh_history
              WHERE initiated_by = 'SCHEDULER' AND status = 'SUCCESS' ORDER BY refresh_id LIMIT 1",
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        first_success,
        [(
            "FULL".to_string(),
            "\"public\".\"src\" was truncated".to_string()
        )]
    );
    db.assert_matches_query("st", "SELECT id, v FROM src");
}

#[test]
fn upstream_stream_tables_refresh_before_downstream_ones() {
    let mut db = orders_db("sched_dag");
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('order_totals', '{ORDERS_QUERY}', '100ms')"
    ));
    let downstream = "SELECT sum(n) AS orders, sum(total) AS revenue FROM order_totals";
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('grand_total', '{downstream}', '100ms')"
    ));
    db.exec("INSERT INTO orders SELECT g, 'dag', 2 FROM generate_series(5000, 5099) g");
    let expected =
        format!("SELECT sum(n) AS orders, sum(total) AS revenue FROM ({ORDERS_QUERY}) t");
    assert!(wait_until(Duration::from_secs(30), || db
        .multiset_diff("grand_total", &expected)
        .is_empty()));
}

#[test]
fn a_scheduler_starts_for_an_extension_created_in_the_same_transaction() {
    let mut db = TestDb::without_extension("sched_one_xact");
    // The sleep lets the launcher notice the new database and start a probe scheduler, which finds
    // no (committed) extension and exits; the request posted at commit must still start a real one.
    db.exec(&format!(
        "BEGIN;
         CREATE EXTENSION pg_trickle;
         CREATE TABLE facts (v int NOT NULL);
         SELECT pgtrickle.create_stream_table('total', '{SUM_FACTS}', '100ms');
         SELECT pg_sleep(2);
         COMMIT;"
    ));
    assert!(
        db.scheduler_pid().is_some(),
        "no scheduler started after the transaction committed"
    );
    db.exec("INSERT INTO facts SELECT generate_series(1, 10)");
    assert!(wait_until(Duration::from_secs(15), || db
        .multiset_diff("total", SUM_FACTS)
        .is_empty()));
}

#[test]
fn a_terminated_scheduler_is_restarted_promptly() {
    let mut db = TestDb::new("sched_terminated");
    db.exec("CREATE TABLE facts (v int NOT NULL)");
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('total', '{SUM_FACTS}', '100ms')"
    ));
    // Only a coordinator that serves the extension is restarted promptly; one killed while it is still
    // checking for the extension counts as a probe (retried after 30 s). It serves once its pool
    // shows in pool_status.
    let serving = "SELECT p.coordinator_pid FROM pgtrickle.pool_status p
                     JOIN pg_stat_activity a ON a.pid = p.coordinator_pid AND a.backend_type = 'pg_trickle coordinator'";
    let mut pid = db
        .serving_coordinator()
        .expect("no coordinator serves the database");
    // Twice: the first restart may also be owed to the start request create_stream_table posted.
    for round in 0..2 {
        db.exec(&format!("SELECT pg_terminate_backend({pid})"));
        let old = pid;
        let came_back = wait_until(Duration::from_secs(15), || {
            db.scheduler_pid().is_some_and(|p| p != old)
        });
        assert!(
            came_back,
            "round {round}: the scheduler was not restarted before the periodic probe"
        );
        assert!(
            wait_until(Duration::from_secs(15), || {
                pid = db
                    .rows(serving, &[])
                    .iter()
                    .map(|r| r.get::<_, i32>(0))
                    .find(|&p| p != old)
                    .unwrap_or(0);
                pid != 0
            }),
            "round {round}: the new coordinator never served"
        );
        db.exec(&format!("INSERT INTO facts VALUES ({round})"));
        assert!(wait_until(Duration::from_secs(15), || db
            .multiset_diff("total", SUM_FACTS)
            .is_empty()));
    }
}

/// The change signals have room for 4096 sources in the whole cluster: a source no stream table
/// reads any more leaves them (after a margin of 10 s since its last signal), a source one still
/// reads keeps its place however long it has been quiet, and stream tables follow their sources
/// as before.
#[test]
fn a_source_no_stream_table_reads_any_more_leaves_the_change_signals() {
    let mut db = TestDb::new("sched_signals");
    db.exec(
        "CREATE TABLE kept (id int PRIMARY KEY, v int NOT NULL);
         CREATE TABLE gone (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO kept VALUES (1, 1); INSERT INTO gone VALUES (1, 1);",
    );
    db.exec("SELECT pgtrickle.create_stream_table('on_kept', 'SELECT id, v FROM kept', '1s', 'DIFFERENTIAL')");
    db.exec("SELECT pgtrickle.create_stream_table('on_gone', 'SELECT id, v FROM gone', '1s', 'DIFFERENTIAL')");
    db.serving_coordinator()
        .expect("no coordinator serves the database");
    let signalled = |db: &mut TestDb| {
        db.value::<i32>(
            "SELECT coalesce((SELECT signalled_sources FROM pgtrickle.pool_status), -1)",
        )
    };
    db.exec("UPDATE kept SET v = 2; UPDATE gone SET v = 2;");
    assert_eq!(signalled(&mut db), 2);
    // A test cluster signals a few dozen sources: far from the 4096 that fill the map.
    let overflows: i64 = db.value("SELECT signal_overflows FROM pgtrickle.pool_status");
    assert_eq!(overflows, 0, "the change signals overflowed");

    db.exec("SELECT pgtrickle.drop_stream_table('on_gone')");
    assert!(
        wait_until(Duration::from_secs(30), || signalled(&mut db) == 1),
        "the dropped stream table's source kept its change signal: {}",
        signalled(&mut db)
    );
    // Quiet for longer than the margin, and still read: kept.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(signalled(&mut db), 1);
    db.exec("UPDATE kept SET v = 3; UPDATE gone SET v = 3;");
    assert!(wait_until(Duration::from_secs(10), || db
        .multiset_diff("on_kept", "SELECT id, v FROM kept")
        .is_empty()));
    assert_eq!(signalled(&mut db), 1);
}

/// A prepared transaction's changes are signalled at PREPARE TRANSACTION, before they are visible:
/// a scheduled refresh that runs while it is prepared does not see them, and no later write may be
/// needed for the stream table to follow the COMMIT PREPARED.
#[test]
fn a_change_committed_by_commit_prepared_reaches_the_stream_table() {
    let mut db = TestDb::new("sched_prepared");
    db.exec(
        "CREATE TABLE src (id int PRIMARY KEY, v int NOT NULL); INSERT INTO src VALUES (1, 1);",
    );
    db.exec("SELECT pgtrickle.create_stream_table('follows', 'SELECT id, v FROM src', '1s', 'DIFFERENTIAL')");
    db.serving_coordinator()
        .expect("no coordinator serves the database");
    let scheduled = |db: &mut TestDb| {
        db.value::<i64>(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE initiated_by = 'SCHEDULER'",
        )
    };
    let mut writer = db.connect();
    writer
        .batch_execute(
            "BEGIN; INSERT INTO src VALUES (2, 2); PREPARE TRANSACTION 'sched_prepared_1'",
        )
        .unwrap();
    // A scheduled refresh while it is prepared: it cannot see the row yet.
    let before = scheduled(&mut db);
    assert!(
        wait_until(Duration::from_secs(10), || scheduled(&mut db) > before),
        "no scheduled refresh while a transaction was prepared"
    );
    db.assert_matches_query("follows", "SELECT id, v FROM src");
    writer
        .batch_execute("COMMIT PREPARED 'sched_prepared_1'")
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || db
            .multiset_diff("follows", "SELECT id, v FROM src")
            .is_empty()),
        "the committed prepared transaction's row never reached the stream table"
    );
}
