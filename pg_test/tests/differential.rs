//! DIFFERENTIAL refresh: exact frontiers under concurrency, the choice of action and its reason, and
//! what source DDL and TRUNCATE do. Query-shape coverage under random workloads is in oracle.rs.

use pg_trickle_e2e::{wait_until, TestDb};
use std::sync::{Arc, Barrier};
use std::time::Duration;

const TOTALS: &str =
    "SELECT customer, count(*) AS n, sum(amount) AS total FROM orders GROUP BY customer";

fn orders_db(name: &str) -> TestDb {
    let mut db = TestDb::new(name);
    db.exec(
        "CREATE TABLE orders (id serial PRIMARY KEY, customer text NOT NULL, amount numeric(10,2) NOT NULL);
         INSERT INTO orders (customer, amount) SELECT 'c' || (g % 5), g FROM generate_series(1, 100) g;",
    );
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', 'DIFFERENTIAL')"
    ));
    db
}

/// Visible columns of the stream table compared with the query, as multisets.
fn assert_exact(db: &mut TestDb) {
    let diff = db.multiset_diff("totals", TOTALS);
    assert!(
        diff.is_empty(),
        "totals differs from its query:\n{}",
        diff.join("\n")
    );
}

fn last_action(db: &mut TestDb) -> (String, String) {
    let rows = db.rows("SELECT action, coalesce(reason, '') FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1", &[]);
    (rows[0].get(0), rows[0].get(1))
}

#[test]
fn a_transaction_that_commits_after_a_refresh_lands_in_the_next_batch_once() {
    let mut db = orders_db("diff_long_txn");
    let mut writer = db.connect();
    // The writer begins and writes first, but commits only after a refresh has completed.
    writer
        .batch_execute("BEGIN; INSERT INTO orders (customer, amount) VALUES ('late', 1000);")
        .unwrap();
    db.exec("INSERT INTO orders (customer, amount) VALUES ('early', 1)");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(last_action(&mut db).0, "DIFFERENTIAL");
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM totals WHERE customer = 'late'"),
        0
    );
    writer.batch_execute("COMMIT").unwrap();

    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_exact(&mut db);
    assert_eq!(
        db.value::<i64>("SELECT n FROM totals WHERE customer = 'late'"),
        1
    );
    // And never again: another refresh finds nothing to do.
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(last_action(&mut db).0, "NO_DATA");
    assert_exact(&mut db);
}

#[test]
fn writes_after_a_refresh_in_the_same_transaction_are_not_lost() {
    let mut db = orders_db("diff_same_txn");
    let mut other = db.connect();
    // Our transaction takes an xid; then a later transaction commits, which pushes the snapshot's
    // xmax past our xid — the case where PostgreSQL reports our own xid as visible to us.
    db.exec("BEGIN; SELECT pg_current_xact_id();");
    other
        .batch_execute("INSERT INTO orders (customer, amount) VALUES ('other', 2)")
        .unwrap();
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    db.exec("INSERT INTO orders (customer, amount) VALUES ('same_txn', 7); COMMIT;");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_exact(&mut db);
    assert_eq!(
        db.value::<i64>("SELECT n FROM totals WHERE customer = 'same_txn'"),
        1
    );
}

#[test]
fn refreshing_in_the_transaction_that_changed_a_source_stays_exact() {
    let mut db = orders_db("diff_own_changes");
    // One call, one transaction: the refresh sees its own uncommitted changes.
    db.exec("INSERT INTO orders (customer, amount) VALUES ('mine', 1); SELECT pgtrickle.refresh_stream_table('totals'); INSERT INTO orders (customer, amount) VALUES ('mine', 2);");
    let (action, reason) = last_action(&mut db);
    assert_eq!(action, "FULL");
    assert!(
        reason.contains("inside the transaction that changed public.orders"),
        "{reason}"
    );
    // The change rows written before and after that refresh share one xid; the next refresh absorbs
    // them all exactly once.
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_exact(&mut db);
    assert_eq!(
        last_action(&mut db),
        ("FULL".into(), "reinitialised: the previous refresh ran inside the transaction that changed public.orders".into())
    );
    db.exec("INSERT INTO orders (customer, amount) VALUES ('mine', 3)");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(last_action(&mut db).0, "DIFFERENTIAL");
    assert_exact(&mut db);
}

/// A stream table and one that reads it, refreshed in one transaction again and again (a DAG
/// refreshed by hand): the reader's refresh runs in the transaction that changed its source (the
/// first one's refresh wrote it), so it is FULL, and FULL again next time. Until 2026-12-05 a
/// reinitialisation in such a transaction did not ask for the FULL after it: the next refresh
/// applied that transaction's change rows a second time.
#[test]
fn a_dag_refreshed_in_one_transaction_again_and_again_stays_exact() {
    let mut db = TestDb::new("diff_dag_one_txn");
    db.exec(
        "CREATE TABLE s (id int PRIMARY KEY, g int, v int);
         INSERT INTO s SELECT i, i % 5, i FROM generate_series(1, 50) i;
         SELECT pgtrickle.create_stream_table('u1', 'SELECT id, g, v FROM s', '1h', 'DIFFERENTIAL');
         SELECT pgtrickle.create_stream_table('u2', 'SELECT g, count(*) AS c, sum(v) AS sv FROM u1 GROUP BY g', '1h', 'DIFFERENTIAL');",
    );
    const READER: &str = "SELECT g, count(*) AS c, sum(v) AS sv FROM s GROUP BY g";
    const BOTH: &str = "BEGIN; SELECT pgtrickle.refresh_stream_table('u1'); SELECT pgtrickle.refresh_stream_table('u2'); COMMIT;";
    // Two rounds in a row: the second one's refresh of u2 is the reinitialisation the first asked
    // for, in a transaction that changed u1 again; then u2 alone.
    for steps in [
        [
            "UPDATE s SET v = v + 1 WHERE id = 1",
            "INSERT INTO s VALUES (100, 1, 1000)",
        ],
        [
            "DELETE FROM s WHERE id % 7 = 0",
            "UPDATE s SET g = 2 WHERE id = 3",
        ],
    ] {
        for step in steps {
            db.exec(step);
            db.exec(BOTH);
            db.assert_matches_query("u2", READER);
        }
        db.exec("SELECT pgtrickle.refresh_stream_table('u2')");
        assert_eq!(
            last_action(&mut db),
            ("FULL".into(), "reinitialised: the previous refresh ran inside the transaction that changed public.u1".into())
        );
        db.assert_matches_query("u2", READER);
        db.exec("INSERT INTO s VALUES (300 + (SELECT count(*) FROM s), 4, 7)");
        db.exec("SELECT pgtrickle.refresh_stream_table('u1')");
        db.exec("SELECT pgtrickle.refresh_stream_table('u2')");
        assert_eq!(last_action(&mut db).0, "DIFFERENTIAL");
        db.assert_matches_query("u2", READER);
    }
}

#[test]
fn concurrent_writers_and_refreshes_lose_and_repeat_nothing() {
    let mut db = orders_db("diff_concurrent");
    let writers = 3;
    let refreshers = 2;
    // Every writer, every refresher and this thread.
    let start = Arc::new(Barrier::new(writers + refreshers + 1));
    let mut handles = Vec::new();
    for w in 0..writers {
        let mut client = db.connect();
        let start = start.clone();
        handles.push(std::thread::spawn(move || {
            start.wait();
            for i in 0..150 {
                let sql = match i % 5 {
                    0 | 1 => format!("INSERT INTO orders (customer, amount) VALUES ('w{w}', {i})"),
                    2 => format!("UPDATE orders SET amount = amount + 1 WHERE id % 7 = {}", (i + w) % 7),
                    3 => format!("UPDATE orders SET customer = 'moved{w}' WHERE id = (SELECT min(id) FROM orders WHERE customer = 'c{}')", i % 5),
                    _ => format!("DELETE FROM orders WHERE id = (SELECT max(id) FROM orders WHERE customer = 'w{w}')"),
                };
                // Some statements run inside longer transactions that straddle refreshes.
                if i % 10 == 0 {
                    client.batch_execute(&format!("BEGIN; {sql}; SELECT pg_sleep(0.02); {sql}; COMMIT;")).unwrap();
                } else {
                    client.batch_execute(&sql).unwrap();
                }
            }
        }));
    }
    // Refreshers racing each other (manual vs manual) while the writers write.
    for _ in 0..refreshers {
        let mut client = db.connect();
        let start = start.clone();
        handles.push(std::thread::spawn(move || {
            start.wait();
            for _ in 0..40 {
                client
                    .batch_execute("SELECT pgtrickle.refresh_stream_table('totals')")
                    .unwrap();
            }
        }));
    }
    start.wait();
    for h in handles {
        h.join().unwrap();
    }
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_exact(&mut db);
    let fallbacks: i64 = db.value("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE action = 'FULL' AND initiated_by <> 'CREATE'");
    assert_eq!(fallbacks, 0, "no refresh fell back to FULL");
}

#[test]
fn a_refresh_with_a_stale_repeatable_read_snapshot_fails_instead_of_applying_twice() {
    let mut db = orders_db("diff_stale_rr");
    let mut stale = db.connect();
    stale
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM orders;")
        .unwrap();
    db.exec("INSERT INTO orders (customer, amount) VALUES ('x', 1)");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    let err = stale
        .batch_execute("SELECT pgtrickle.refresh_stream_table('totals')")
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("40001"), "{err:?}");
    stale.batch_execute("ROLLBACK").unwrap();
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_exact(&mut db);
}

#[test]
fn a_refresh_without_changes_does_no_delta_work() {
    let mut db = orders_db("diff_no_data");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    let (action, reason) = last_action(&mut db);
    assert_eq!(action, "NO_DATA");
    assert_eq!(reason, "no changes since the last refresh");
    let rows: (i64, i64) = {
        let r = db.rows("SELECT rows_inserted, rows_deleted FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1", &[]);
        (r[0].get(0), r[0].get(1))
    };
    assert_eq!(rows, (0, 0));
    // One pass over the change buffer, the batch count: a manual refresh in a transaction that has
    // written nothing does not look for its own changes (it once did, because the refresh's first
    // SPI statement had given the transaction an xid before it asked).
    let buffer: String = db.value("SELECT 'pgtrickle_changes.changes_' || 'orders'::regclass::oid");
    // (The backend's counts since its last statistics flush, which never happens inside a transaction.)
    let scans =
        format!("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relid = '{buffer}'::regclass");
    db.exec("BEGIN");
    let before: i64 = db.value(&scans);
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    let after: i64 = db.value(&scans);
    db.exec("COMMIT");
    assert_eq!(
        after - before,
        1,
        "change buffer scans of a NO_DATA refresh"
    );
}

#[test]
fn a_differential_stream_table_has_statistics_from_its_creation() {
    let mut db = orders_db("diff_analyzed");
    // Analysed (as its owner) right after its initial population: 5 groups. Never analysed is -1.
    let tuples: f32 = db.value("SELECT reltuples FROM pg_class WHERE oid = 'totals'::regclass");
    assert_eq!(tuples, 5.0);
}

#[test]
fn change_buffers_are_emptied_once_every_consumer_has_applied_them() {
    let mut db = orders_db("diff_buffer_gc");
    db.exec("SELECT pgtrickle.create_stream_table('counts', 'SELECT count(*) AS n FROM orders', '1h', 'DIFFERENTIAL')");
    let buffer: String = db.value("SELECT 'pgtrickle_changes.changes_' || 'orders'::regclass::oid");
    db.exec("INSERT INTO orders (customer, amount) SELECT 'gc', g FROM generate_series(1, 50) g");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    db.wait_for_cleanups();
    // `counts` has not consumed them yet: they must stay.
    assert_eq!(
        db.value::<i64>(&format!("SELECT count(*) FROM {buffer}")),
        50
    );
    db.exec("SELECT pgtrickle.refresh_stream_table('counts')");
    db.wait_for_cleanups();
    assert_eq!(
        db.value::<i64>(&format!("SELECT count(*) FROM {buffer}")),
        0
    );
    db.assert_matches_query("counts", "SELECT count(*) AS n FROM orders");
    // Dropping the last consumer removes the capture entirely.
    db.exec("SELECT pgtrickle.drop_stream_table('totals'); SELECT pgtrickle.drop_stream_table('counts');");
    let left: i64 = db.value(
        "SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'pgtrickle_changes'::regnamespace)
              + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgtrickle_capture%')
              + (SELECT count(*) FROM pg_proc WHERE pronamespace = 'pgtrickle_changes'::regnamespace)",
    );
    assert_eq!(left, 0);
}

/// The buffer's relation file: a TRUNCATE gives it a new one, a DELETE does not.
fn relfilenode(db: &mut TestDb, buffer: &str) -> i64 {
    db.value(&format!(
        "SELECT relfilenode::bigint FROM pg_class WHERE oid = '{buffer}'::regclass"
    ))
}

#[test]
fn a_manual_refresh_leaves_the_clean_up_to_the_coordinator_after_its_commit() {
    // Deleting the applied change rows inside the refresh would cost its caller that time, and a
    // TRUNCATE there would lock the buffer, and so the source's writers, until the caller commits —
    // which may be long after the refresh (a function refreshing several, a transaction block).
    let mut db = orders_db("diff_buffer_manual");
    db.exec("SELECT pgtrickle.create_stream_table('counts', 'SELECT count(*) AS n FROM orders', '1h', 'DIFFERENTIAL')");
    assert!(db.serving_coordinator().is_some(), "no coordinator");
    let buffer: String = db.value("SELECT 'pgtrickle_changes.changes_' || 'orders'::regclass::oid");
    let count = |db: &mut TestDb| db.value::<i64>(&format!("SELECT count(*) FROM {buffer}"));
    // Over a megabyte of change rows: what a clean-up in a transaction of its own truncates (unless
    // autovacuum works on the buffer just then: off for this one).
    db.exec(&format!(
        "ALTER TABLE {buffer} SET (autovacuum_enabled = off)"
    ));
    db.exec("INSERT INTO orders (customer, amount) SELECT 'big' || (g % 7), g FROM generate_series(1, 30000) g");
    let file = relfilenode(&mut db, &buffer);
    let mut caller = db.connect();
    caller
        .batch_execute(
            "BEGIN;
             SELECT pgtrickle.refresh_stream_table('totals');
             SELECT pgtrickle.refresh_stream_table('counts');",
        )
        .unwrap();
    // Inside the caller's transaction the applied rows are still there: nothing was deleted.
    let inside: i64 = caller
        .query_one(&format!("SELECT count(*) FROM {buffer}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(inside, 30000);
    db.wait_for_cleanups();
    assert_eq!(
        count(&mut db),
        30000,
        "cleaned up before the refresh committed"
    );
    caller.batch_execute("COMMIT").unwrap();
    db.wait_for_cleanups();
    assert_eq!(count(&mut db), 0);
    assert_ne!(
        relfilenode(&mut db, &buffer),
        file,
        "a large buffer every consumer has applied is truncated, as after a scheduled refresh"
    );
    assert_exact(&mut db);
    db.assert_matches_query("counts", "SELECT count(*) AS n FROM orders");

    // A refresh rolled back leaves nothing to clean up: its rows stay for the next one.
    db.exec("INSERT INTO orders (customer, amount) VALUES ('again', 1), ('again', 2)");
    db.exec("BEGIN; SELECT pgtrickle.refresh_stream_table('totals'); SELECT pgtrickle.refresh_stream_table('counts'); ROLLBACK");
    db.wait_for_cleanups();
    assert_eq!(count(&mut db), 2);

    // Without a coordinator the refresh deletes the rows itself, and never truncates. A terminated
    // coordinator is restarted within seconds (at once when another database asks the launcher for
    // one): an attempt during which one served the database again is rolled back and made again.
    let file = relfilenode(&mut db, &buffer);
    let serving = "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pg_trickle coordinator' AND datname = current_database())";
    let mut inline = false;
    for _ in 0..5 {
        let coordinator = db.serving_coordinator().expect("no coordinator");
        db.exec(&format!("SELECT pg_terminate_backend({coordinator})"));
        assert!(
            wait_until(Duration::from_secs(5), || {
                !db.value::<bool>(&format!(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = {coordinator})"
                ))
            }),
            "the coordinator did not exit"
        );
        db.exec("BEGIN; SELECT pgtrickle.refresh_stream_table('totals'); SELECT pgtrickle.refresh_stream_table('counts')");
        if db.value::<bool>(serving) {
            db.exec("ROLLBACK");
            continue;
        }
        assert_eq!(count(&mut db), 0, "not deleted by the refresh itself");
        db.exec("COMMIT");
        inline = true;
        break;
    }
    assert!(
        inline,
        "a coordinator served the database again during every attempt"
    );
    assert_eq!(
        relfilenode(&mut db, &buffer),
        file,
        "truncated by a manual refresh"
    );
    assert_exact(&mut db);
    db.assert_matches_query("counts", "SELECT count(*) AS n FROM orders");
}

/// TRUNCATE (and ANALYZE) update the buffer's pg_class row, which waits for any open transaction that
/// updated it: a GRANT on the buffer, which any of its readers may make. The clean-up of a buffer
/// over a megabyte then deletes its rows instead, and neither it nor the source's writers wait.
#[test]
fn a_clean_up_does_not_wait_for_an_open_grant_on_a_buffer() {
    let mut db = orders_db("diff_buffer_grant");
    assert!(db.serving_coordinator().is_some(), "no coordinator");
    let buffer: String = db.value("SELECT 'pgtrickle_changes.changes_' || 'orders'::regclass::oid");
    db.exec(&format!(
        "ALTER TABLE {buffer} SET (autovacuum_enabled = off)"
    ));
    db.exec("INSERT INTO orders (customer, amount) SELECT 'big' || (g % 7), g FROM generate_series(1, 30000) g");
    let file = relfilenode(&mut db, &buffer);
    let mut granting = db.connect();
    granting
        .batch_execute(&format!("BEGIN; GRANT SELECT ON {buffer} TO PUBLIC"))
        .unwrap();
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    db.wait_for_cleanups();
    assert_eq!(
        db.value::<i64>(&format!("SELECT count(*) FROM {buffer}")),
        0
    );
    assert_eq!(relfilenode(&mut db, &buffer), file, "truncated");
    db.exec("SET statement_timeout = '5s'; INSERT INTO orders (customer, amount) VALUES ('after', 1); RESET statement_timeout");
    granting.batch_execute("ROLLBACK").unwrap();
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_exact(&mut db);
}

#[test]
fn a_clean_up_never_waits_for_a_lock_on_a_buffer() {
    // The coordinator runs clean-ups between its ticks: one waiting for a buffer's lock (a DDL on
    // its source, LOCK TABLE) would stop the database's scheduling, and one that had truncated a
    // buffer and then waited for another would keep the first one's writers waiting, or deadlock
    // with a session that holds the second and writes the first.
    let mut db = TestDb::new("diff_cleanup_locks");
    db.exec(
        "CREATE TABLE ja (id int PRIMARY KEY, k int NOT NULL, pad text NOT NULL);
         CREATE TABLE jb (k int PRIMARY KEY, name text NOT NULL);
         INSERT INTO jb SELECT g, 'n' || g FROM generate_series(0, 99) g;",
    );
    const JOINED: &str =
        "SELECT jb.name, count(*) AS n FROM ja JOIN jb ON ja.k = jb.k GROUP BY jb.name";
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('jst', '{JOINED}', '1h', 'DIFFERENTIAL')"
    ));
    assert!(db.serving_coordinator().is_some(), "no coordinator");
    let buffer = |db: &mut TestDb, table: &str| -> String {
        db.value(&format!(
            "SELECT 'pgtrickle_changes.changes_' || '{table}'::regclass::oid"
        ))
    };
    let (ja_buffer, jb_buffer) = (buffer(&mut db, "ja"), buffer(&mut db, "jb"));
    let count =
        |db: &mut TestDb, buffer: &str| db.value::<i64>(&format!("SELECT count(*) FROM {buffer}"));
    // Over a megabyte of change rows for ja: its clean-up truncates (unless autovacuum works on the
    // buffer just then: off for this one).
    db.exec(&format!(
        "ALTER TABLE {ja_buffer} SET (autovacuum_enabled = off)"
    ));
    db.exec("INSERT INTO ja SELECT g, g % 100, repeat('x', 30) FROM generate_series(1, 40000) g");
    db.exec("INSERT INTO jb VALUES (100, 'n100')");
    let file = relfilenode(&mut db, &ja_buffer);
    // Another session holds a lock on jb's buffer that a DELETE would wait for (readers pass).
    let mut holder = db.connect();
    holder
        .batch_execute(&format!("BEGIN; LOCK TABLE {jb_buffer} IN SHARE MODE"))
        .unwrap();
    db.exec("SELECT pgtrickle.refresh_stream_table('jst')");
    db.wait_for_cleanups();
    assert_ne!(
        relfilenode(&mut db, &ja_buffer),
        file,
        "ja's buffer not truncated"
    );
    // Truncated, committed and unlocked: ja's writers do not wait.
    db.exec("SET lock_timeout = '2s'; INSERT INTO ja VALUES (50000, 1, 'w'); RESET lock_timeout");
    // jb's applied row is left to a later clean-up.
    assert_eq!(count(&mut db, &jb_buffer), 1);
    holder.batch_execute("COMMIT").unwrap();
    db.exec("SELECT pgtrickle.refresh_stream_table('jst')");
    db.wait_for_cleanups();
    assert_eq!(count(&mut db, &ja_buffer), 0);
    assert_eq!(count(&mut db, &jb_buffer), 0);
    db.assert_matches_query("jst", JOINED);
}

#[test]
fn refreshes_beyond_what_the_coordinators_list_holds_clean_up_themselves() {
    // The clean-ups owed to coordinators live in a list of 1,024 entries for the cluster. A
    // transaction that refreshes more stream tables than fit must not leave the rest undone (nothing
    // would ever run them, and a stream table refreshed only by hand would grow its buffer for good).
    let mut db = TestDb::new("diff_cleanup_capacity");
    db.exec("CREATE TABLE src (id int PRIMARY KEY, v int NOT NULL)");
    const MANY: i32 = 1040;
    db.exec(&format!(
        "DO $$ BEGIN FOR i IN 1..{MANY} LOOP
           PERFORM pgtrickle.create_stream_table('s' || i, 'SELECT count(*) AS n FROM src', '1h', 'DIFFERENTIAL');
         END LOOP; END $$"
    ));
    // Creating a stream table asks the launcher for a coordinator; before one exists, the database
    // may wait for the launcher's next probe (30 s).
    assert!(db.serving_coordinator().is_some(), "no coordinator");
    let buffer: String = db.value("SELECT 'pgtrickle_changes.changes_' || 'src'::regclass::oid");
    db.exec("INSERT INTO src VALUES (1, 1)");
    db.exec(&format!(
        "BEGIN; DO $$ BEGIN FOR i IN 1..{MANY} LOOP PERFORM pgtrickle.refresh_stream_table('s' || i); END LOOP; END $$"
    ));
    // The last refreshes found no room: the last consumer deleted the row every one had applied.
    assert_eq!(
        db.value::<i64>(&format!("SELECT count(*) FROM {buffer}")),
        0,
        "the last refresh left its clean-up to a list with no room"
    );
    db.exec("COMMIT");
    db.wait_for_cleanups();
    assert_eq!(
        db.value::<i64>(&format!("SELECT count(*) FROM {buffer}")),
        0
    );
    db.assert_matches_query(&format!("s{MANY}"), "SELECT count(*) AS n FROM src");
}

#[test]
fn change_buffers_of_a_source_with_many_consumers_are_emptied_by_the_last_one() {
    // More consumers than the clean-up reads frontiers of one by one: the other form of its DELETE.
    let mut db = orders_db("diff_buffer_gc_many");
    for i in 1..=5 {
        db.exec(&format!("SELECT pgtrickle.create_stream_table('c{i}', 'SELECT count(*) AS n FROM orders WHERE id > {i}', '1h', 'DIFFERENTIAL')"));
    }
    let buffer: String = db.value("SELECT 'pgtrickle_changes.changes_' || 'orders'::regclass::oid");
    db.exec("INSERT INTO orders (customer, amount) SELECT 'gc', g FROM generate_series(1, 30) g");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    for i in 1..=4 {
        db.exec(&format!("SELECT pgtrickle.refresh_stream_table('c{i}')"));
        db.wait_for_cleanups();
        assert_eq!(
            db.value::<i64>(&format!("SELECT count(*) FROM {buffer}")),
            30,
            "c5 has not applied them yet"
        );
    }
    db.exec("SELECT pgtrickle.refresh_stream_table('c5')");
    db.wait_for_cleanups();
    assert_eq!(
        db.value::<i64>(&format!("SELECT count(*) FROM {buffer}")),
        0
    );
    for i in 1..=5 {
        db.assert_matches_query(
            &format!("c{i}"),
            &format!("SELECT count(*) AS n FROM orders WHERE id > {i}"),
        );
    }
}

#[test]
fn auto_switches_to_full_for_a_batch_large_relative_to_the_sources() {
    let mut db = TestDb::new("diff_auto_ratio");
    db.exec(
        "CREATE TABLE orders (id serial PRIMARY KEY, customer text NOT NULL, amount numeric(10,2) NOT NULL);
         INSERT INTO orders (customer, amount) SELECT 'c' || (g % 5), g FROM generate_series(1, 100) g;
         ANALYZE orders;",
    );
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', 'AUTO')"
    ));
    db.exec("INSERT INTO orders (customer, amount) VALUES ('small', 1)");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(last_action(&mut db).0, "DIFFERENTIAL");
    db.exec("INSERT INTO orders (customer, amount) SELECT 'big', g FROM generate_series(1, 80) g");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    let (action, reason) = last_action(&mut db);
    assert_eq!(action, "FULL");
    assert!(reason.contains("pg_trickle.full_refresh_ratio"), "{reason}");
    assert_exact(&mut db);
    // The threshold is a setting.
    db.exec("SET pg_trickle.full_refresh_ratio = 100");
    db.exec(
        "INSERT INTO orders (customer, amount) SELECT 'big2', g FROM generate_series(1, 300) g",
    );
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(last_action(&mut db).0, "DIFFERENTIAL");
    assert_exact(&mut db);
}

#[test]
fn auto_picks_full_for_unsupported_queries_and_says_why() {
    let mut db = TestDb::new("diff_auto_unsupported");
    db.exec("CREATE TABLE t (a int, b int); INSERT INTO t VALUES (1, 2), (3, 4);");
    db.client
        .batch_execute("SET client_min_messages = notice")
        .unwrap();
    for (query, construct) in [
        ("SELECT a FROM t LIMIT 1", "LIMIT without ORDER BY"),
        (
            "SELECT a, row_number() OVER (ORDER BY b) AS r FROM t",
            "window",
        ),
        ("SELECT a, random() AS r FROM t", "random()"),
    ] {
        db.exec("DROP TABLE IF EXISTS st");
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('st', '{query}', '1h', 'AUTO')"
        ));
        let (mode, reason): (String, String) = {
            let r = db.rows(
                "SELECT effective_mode, mode_reason FROM pgtrickle.pgt_stream_tables",
                &[],
            );
            (r[0].get(0), r[0].get(1))
        };
        assert_eq!(mode, "FULL", "{query}");
        assert!(reason.contains(construct), "{query}: {reason}");
        // DIFFERENTIAL refuses the same query, naming the construct, and creates nothing.
        db.exec("SELECT pgtrickle.drop_stream_table('st')");
        let err = db.error(&format!(
            "SELECT pgtrickle.create_stream_table('st', '{query}', '1h', 'DIFFERENTIAL')"
        ));
        assert_eq!(err.code, "0A000", "{query}");
        assert!(err.message.contains(construct), "{query}: {}", err.message);
        assert!(err.hint.is_some());
        assert_eq!(
            db.value::<i64>("SELECT count(*) FROM pg_class WHERE relname = 'st'"),
            0
        );
    }
}

#[test]
fn truncating_a_source_makes_the_next_refresh_full() {
    let mut db = orders_db("diff_truncate");
    db.exec("TRUNCATE orders; INSERT INTO orders (customer, amount) VALUES ('after', 5);");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    let (action, reason) = last_action(&mut db);
    assert_eq!(action, "FULL");
    assert!(reason.contains("truncated"), "{reason}");
    assert_exact(&mut db);
    db.exec("INSERT INTO orders (customer, amount) VALUES ('later', 1)");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(last_action(&mut db).0, "DIFFERENTIAL");
    assert_exact(&mut db);

    // TRUNCATE writes nothing a refresh writes: at REPEATABLE READ it does not fail because a refresh
    // committed after the transaction's snapshot.
    let mut writer = db.connect();
    writer
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM orders;")
        .unwrap();
    db.exec("INSERT INTO orders (customer, amount) VALUES ('meanwhile', 2)");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    writer
        .batch_execute(
            "TRUNCATE orders; INSERT INTO orders (customer, amount) VALUES ('rr', 4); COMMIT",
        )
        .unwrap();
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    let (action, reason) = last_action(&mut db);
    assert_eq!(
        (action.as_str(), reason.as_str()),
        ("FULL", r#""public"."orders" was truncated"#)
    );
    assert_exact(&mut db);
}

#[test]
fn adding_an_unused_column_to_a_source_keeps_differential_working() {
    let mut db = orders_db("diff_ddl_add");
    db.exec("INSERT INTO orders (customer, amount) VALUES ('before', 1)");
    db.exec("ALTER TABLE orders ADD COLUMN note text");
    db.exec("INSERT INTO orders (customer, amount, note) VALUES ('after', 2, 'x'); UPDATE orders SET note = 'y' WHERE id < 5;");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(last_action(&mut db).0, "DIFFERENTIAL");
    assert_exact(&mut db);
}

#[test]
fn dropping_a_used_column_puts_the_stream_table_in_error_not_wrong_results() {
    let mut db = orders_db("diff_ddl_drop");
    // Without CASCADE PostgreSQL refuses (the stream table's query view reads the column).
    assert_eq!(
        db.error("ALTER TABLE orders DROP COLUMN amount").code,
        "2BP01"
    );
    db.exec("ALTER TABLE orders DROP COLUMN amount CASCADE");
    let rows = db.rows(
        "SELECT status, last_error FROM pgtrickle.stream_tables",
        &[],
    );
    let (status, error): (String, String) = (rows[0].get(0), rows[0].get(1));
    assert_eq!(status, "ERROR");
    assert!(
        error.contains("public.orders.amount was dropped"),
        "{error}"
    );
    // A manual refresh says why it cannot run.
    let e = db.error("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(e.code, "55000");
    assert!(e.message.contains("amount"), "{e:?}");
    // The scheduler leaves it alone; its old contents stay readable.
    assert!(db.value::<i64>("SELECT count(*) FROM totals") > 0);
}

#[test]
fn a_used_column_cannot_be_retyped_an_unused_one_reinitialises() {
    let mut db = orders_db("diff_ddl_type");
    // Like any view's, a stream table's query keeps the columns it reads from changing type.
    let e = db.error("ALTER TABLE orders ALTER COLUMN amount TYPE numeric(12,3)");
    assert_eq!(e.code, "0A000", "{e:?}");
    assert!(
        e.detail
            .as_deref()
            .unwrap_or("")
            .contains("pgtrickle_queries.q_"),
        "{e:?}"
    );
    assert_eq!(
        write_and_refresh(
            &mut db,
            "UPDATE orders SET amount = amount + 1 WHERE id = 1"
        )
        .0,
        "DIFFERENTIAL"
    );
    // A column the query does not read changes freely; capture follows it with one FULL refresh.
    db.exec(
        "ALTER TABLE orders ADD COLUMN note int; ALTER TABLE orders ALTER COLUMN note TYPE bigint;",
    );
    let retyped = (
        "FULL".to_string(),
        "reinitialised: the columns of \"public\".\"orders\" changed".to_string(),
    );
    assert_eq!(
        write_and_refresh(
            &mut db,
            "UPDATE orders SET amount = amount + 0.01, note = 1 WHERE id = 2"
        ),
        retyped
    );
    assert_eq!(
        write_and_refresh(
            &mut db,
            "UPDATE orders SET amount = amount + 0.01 WHERE id = 3"
        )
        .0,
        "DIFFERENTIAL"
    );

    // The same DDL at REPEATABLE READ, after a refresh committed since the transaction's snapshot:
    // it marks the stream table without updating the row the refresh updated, so it does not fail
    // with 40001.
    let mut migration = db.connect();
    migration
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM orders;")
        .unwrap();
    db.exec("UPDATE orders SET amount = amount + 0.01 WHERE id = 4");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(last_action(&mut db).0, "DIFFERENTIAL");
    migration
        .batch_execute("ALTER TABLE orders ALTER COLUMN note TYPE numeric; COMMIT")
        .unwrap();
    assert_eq!(
        write_and_refresh(
            &mut db,
            "UPDATE orders SET amount = amount + 0.01, note = 2.5 WHERE id = 5"
        ),
        retyped
    );
    // Honoured once: the request is gone, and the next refresh is DIFFERENTIAL again.
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_reinit_requests"),
        0
    );
    assert_eq!(
        write_and_refresh(
            &mut db,
            "UPDATE orders SET amount = amount + 0.01 WHERE id = 6"
        )
        .0,
        "DIFFERENTIAL"
    );
}

/// Runs `write`, refreshes `totals`, checks it against its query and returns the refresh's action and
/// reason.
fn write_and_refresh(db: &mut TestDb, write: &str) -> (String, String) {
    db.exec(write);
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    let done = last_action(db);
    assert_exact(db);
    done
}

#[test]
fn the_scheduler_refreshes_differentially_by_itself() {
    let mut db = orders_db("diff_scheduled");
    db.exec("SELECT pgtrickle.alter_stream_table('totals', schedule => '100ms')");
    db.exec("INSERT INTO orders (customer, amount) VALUES ('sched', 3); DELETE FROM orders WHERE id = 10;");
    assert!(wait_until(Duration::from_secs(30), || db
        .multiset_diff("totals", TOTALS)
        .is_empty()));
    let by: i64 = db.value("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE initiated_by = 'SCHEDULER' AND action = 'DIFFERENTIAL'");
    assert!(by >= 1);
}

#[test]
fn explain_shows_the_mode_the_tree_and_the_delta_sql() {
    let mut db = orders_db("diff_explain");
    let text: String = db.value("SELECT pgtrickle.explain_stream_table('totals')");
    assert!(
        text.contains("Refresh mode: DIFFERENTIAL (requested DIFFERENTIAL)"),
        "{text}"
    );
    assert!(text.contains("Aggregate"), "{text}");
    assert!(
        text.contains("Scan [") && text.contains("public.orders"),
        "{text}"
    );
    assert!(text.contains("INSERT INTO \"public\".\"totals\""), "{text}");
    assert!(
        text.contains("Aggregates: maintained from stored state"),
        "{text}"
    );
    // The batch test, without a count: explain counts no batch.
    assert!(text.contains("pgtrickle._in_batch(b.__pgt_xid, (SELECT pg_catalog.pg_current_snapshot()), (SELECT $1::pg_catalog.pg_snapshot), NULL::bigint)"), "{text}");
}

/// `trim()` as PostgreSQL prints it, `TRIM(BOTH FROM s)`, was unreadable to the parser until
/// 2026-12-05, so every query with it was refused DIFFERENTIAL.
#[test]
fn trim_is_maintained_differentially() {
    let mut db = TestDb::new("diff_trim");
    db.exec(
        "CREATE TABLE words (id int PRIMARY KEY, s text);
         INSERT INTO words SELECT i, '  w' || (i % 4) || repeat(' ', i % 3) FROM generate_series(1, 30) i;",
    );
    const QUERY: &str = "SELECT trim(s) AS t, trim(leading from s) AS l, trim(trailing 'x ' from s) AS r, count(*) AS n FROM words GROUP BY 1, 2, 3";
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('trimmed', $q${QUERY}$q$, '1h', 'DIFFERENTIAL')"
    ));
    for step in [
        "UPDATE words SET s = s || 'x ' WHERE id % 5 = 0",
        "DELETE FROM words WHERE id % 3 = 0; INSERT INTO words VALUES (100, ' w9 ')",
    ] {
        db.exec(step);
        db.assert_refreshes_differentially("trimmed", QUERY, step);
    }
}

/// Every node of the plans `auto_explain` sent as notices while `sql` ran (nested statements
/// included), each with whether it lies below a `Hash` node (the side a hash join builds its table
/// from).
fn plan_nodes(db: &TestDb, sql: &str) -> Vec<(serde_json::Value, bool)> {
    let (mut client, notices) = db.connect_keeping_notices();
    client
        .batch_execute(&format!(
            "LOAD 'auto_explain';
             SET auto_explain.log_min_duration = 0;
             SET auto_explain.log_nested_statements = on;
             SET auto_explain.log_format = json;
             SET auto_explain.log_level = notice;
             {sql}"
        ))
        .unwrap();
    fn walk(node: &serde_json::Value, hashed: bool, out: &mut Vec<(serde_json::Value, bool)>) {
        let hashed = hashed || node["Node Type"] == "Hash";
        for child in node["Plans"].as_array().into_iter().flatten() {
            walk(child, hashed, out);
        }
        out.push((node.clone(), hashed));
    }
    let mut out = Vec::new();
    for notice in notices.lock().unwrap().iter() {
        let Some(at) = notice.message.find("plan:\n{") else {
            continue;
        };
        let plan: serde_json::Value =
            serde_json::from_str(&notice.message[at + "plan:\n".len()..]).unwrap();
        walk(&plan["Plan"], false, &mut out);
    }
    out
}

/// Every estimated row count of a scan of `buffer` in the plans of `sql`'s statements, with the
/// scan's filter.
fn buffer_estimates(db: &TestDb, buffer: &str, sql: &str) -> Vec<(f64, String)> {
    plan_nodes(db, sql)
        .into_iter()
        .filter(|(node, _)| node["Relation Name"] == buffer)
        .map(|(node, _)| {
            let filter = node["Filter"].as_str().unwrap_or_default().to_string();
            (node["Plan Rows"].as_f64().unwrap(), filter)
        })
        .collect()
}

/// The relations scanned below a `Hash` node in the plans of `sql`'s statements.
fn hashed_relations(db: &TestDb, sql: &str) -> Vec<String> {
    plan_nodes(db, sql)
        .into_iter()
        .filter(|(_, hashed)| *hashed)
        .filter_map(|(node, _)| node["Relation Name"].as_str().map(str::to_string))
        .collect()
}

/// A buffer's first clean-up leaves it analysed, before its rows go: without statistics PostgreSQL
/// takes every column of a batch for a skewed one and never hashes it, so a join that reads its
/// partner whole (a batch of at least an eighth of the partner's rows) hashed the partner's every
/// row. With them, it hashes the batch, which the join reads as it is.
#[test]
fn a_buffers_first_clean_up_gives_it_statistics_and_a_join_hashes_the_batch() {
    let mut db = TestDb::new("diff_buffer_statistics");
    let query = "SELECT d.region, count(*) AS n, sum(f.amount) AS total FROM fact f JOIN dim d ON d.id = f.cust GROUP BY d.region";
    db.exec(&format!(
        "CREATE TABLE dim (id int PRIMARY KEY, region text NOT NULL);
         INSERT INTO dim SELECT g, 'r' || (g % 20) FROM generate_series(1, 40000) g;
         CREATE TABLE fact (id int PRIMARY KEY, cust int NOT NULL, amount numeric(10,2));
         INSERT INTO fact SELECT g, 1 + g % 40000, g % 1000 FROM generate_series(1, 50000) g;
         ANALYZE dim; ANALYZE fact;
         SELECT pgtrickle.create_stream_table('regions', '{query}', '1d', 'DIFFERENTIAL');"
    ));
    // The clean-up of a manual refresh is the coordinator's (without one the refresh deletes its
    // rows itself, in its caller's transaction, and analyses nothing).
    assert!(db.serving_coordinator().is_some(), "no coordinator");
    let buffer: String = db.value("SELECT 'changes_' || 'fact'::regclass::oid");
    // Autovacuum would analyse it too, at a moment of its choosing.
    db.exec(&format!(
        "ALTER TABLE pgtrickle_changes.{buffer} SET (autovacuum_enabled = off)"
    ));
    let analysed = |db: &mut TestDb| {
        db.value::<bool>(&format!(
            "SELECT EXISTS (SELECT 1 FROM pg_statistic WHERE starelid = 'pgtrickle_changes.{buffer}'::regclass)"
        ))
    };
    // ANALYZE ends by updating the buffer's pg_class row, which waits for a transaction that updated
    // it: a GRANT left open (any reader of the buffer may make one). The clean-up does not wait.
    let mut granting = db.connect();
    granting
        .batch_execute(&format!(
            "BEGIN; GRANT SELECT ON pgtrickle_changes.{buffer} TO PUBLIC"
        ))
        .unwrap();
    db.exec("UPDATE fact SET amount = amount + 1 WHERE id <= 10");
    db.exec("SELECT pgtrickle.refresh_stream_table('regions')");
    db.wait_for_cleanups();
    assert!(!analysed(&mut db), "analysed past an open GRANT");
    granting.batch_execute("ROLLBACK").unwrap();
    db.assert_matches_query("regions", query);

    // 6,000 change rows against 40,000 rows of dim: dim is read whole.
    let batch = "UPDATE fact SET amount = amount + 1, cust = 1 + (cust + 7) % 40000 WHERE id % 50000 < 3000";

    db.exec(batch);
    db.exec("SELECT pgtrickle.refresh_stream_table('regions')");
    db.wait_for_cleanups();
    assert!(analysed(&mut db), "not analysed by its first clean-up");
    db.assert_matches_query("regions", query);

    db.exec(batch);
    let hashed = hashed_relations(&db, "SELECT pgtrickle.refresh_stream_table('regions')");
    assert_eq!(db.last_refresh("regions").0, "DIFFERENTIAL");
    // (dim is hashed too, in the plan's branch that recomputes a group whose sum became NaN, which
    // never runs here.)
    assert!(
        hashed.contains(&buffer),
        "the batch is not hashed: {hashed:?}"
    );
    db.assert_matches_query("regions", query);
}

/// A refresh tells the planner how many change rows its batch has (`pgtrickle._in_batch` and its
/// planner support): the buffer's scan is estimated at the count rounded to a power of four, here a
/// batch of 20,000 change rows, then one of 2 in a buffer of 20,002 that a second stream table has
/// not applied yet. Without the support both were estimated at a third of the buffer (6,955 rows
/// for the first); with PostgreSQL's visibility functions, at a fixed share of it.
#[test]
fn a_refresh_plans_its_batch_at_the_counted_rows() {
    let mut db = TestDb::new("diff_batch_estimate");
    db.exec(
        "CREATE TABLE items (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL);
         INSERT INTO items SELECT g, g % 100, g FROM generate_series(1, 10000) g;
         SELECT pgtrickle.create_stream_table('item_totals', 'SELECT grp, sum(v) AS s FROM items GROUP BY grp', '1d', 'DIFFERENTIAL');
         SELECT pgtrickle.create_stream_table('item_rows', 'SELECT id, v FROM items', '1d', 'DIFFERENTIAL');
         UPDATE items SET v = v + 1;",
    );
    db.wait_for_cleanups();
    let buffer: String = db.value("SELECT 'changes_' || 'items'::regclass::oid");
    let query = "SELECT grp, sum(v) AS s FROM items GROUP BY grp";
    // A refresh's estimates of its scans of the buffer that were given the batch's count.
    fn refresh_estimates(db: &mut TestDb, buffer: &str) -> Vec<f64> {
        let refresh = "SELECT pgtrickle.refresh_stream_table('item_totals')";
        let rows: Vec<f64> = buffer_estimates(db, buffer, refresh)
            .into_iter()
            .filter(|(_, filter)| filter.contains("_in_batch(") && !filter.contains("NULL::bigint"))
            .map(|(rows, _)| rows)
            .collect();
        assert_eq!(db.last_refresh("item_totals").0, "DIFFERENTIAL");
        assert!(
            !rows.is_empty(),
            "no scan of {buffer} with the batch's count"
        );
        rows
    }
    let large = refresh_estimates(&mut db, &buffer);
    assert!(
        large.iter().all(|rows| (8_192.0..=16_384.0).contains(rows)),
        "20,000 change rows: {large:?}"
    );
    db.exec("UPDATE items SET v = v + 1 WHERE id = 7");
    // The buffer now holds 20,002 rows, all pending for item_rows; the batch is 2 of them.
    let small = refresh_estimates(&mut db, &buffer);
    assert!(
        small.iter().all(|rows| *rows <= 4.0),
        "2 change rows among 20,002: {small:?}"
    );
    db.assert_matches_query("item_totals", query);
}

/// `pgtrickle._in_batch` reads PostgreSQL's `pg_snapshot` layout itself: it decides as the
/// visibility functions do — in the new snapshot and not in the old — on snapshots PostgreSQL made,
/// with in-progress lists empty, short and long, for transaction ids below, inside and above them,
/// and NULLs.
#[test]
fn the_batch_function_decides_as_the_visibility_functions_do() {
    let mut db = TestDb::new("diff_in_batch");
    let long: Vec<String> = (0..40).map(|i| (1000 + 3 * i).to_string()).collect();
    let snapshots = [
        "100:100:".to_string(),
        "100:105:101,103".to_string(),
        "103:110:103,104,108".to_string(),
        "90:120:95,101,110,119".to_string(),
        format!("990:1200:{}", long.join(",")),
    ]
    .map(|t| format!("'{t}'::pg_snapshot"))
    .join(", ");
    let sql = format!(
        "WITH s(t) AS MATERIALIZED (SELECT unnest(ARRAY[{snapshots}, pg_current_snapshot(), NULL])),
              x(xid) AS (SELECT g::text::xid8 FROM generate_series(80, 1210) g UNION ALL SELECT NULL),
              d AS (SELECT pgtrickle._in_batch(x.xid, n.t, o.t, NULL) AS got,
                           coalesce(pg_visible_in_snapshot(x.xid, n.t) AND NOT pg_visible_in_snapshot(x.xid, o.t), false) AS want
                      FROM s AS n, s AS o, x)
         SELECT format('%s %s %s', count(*) FILTER (WHERE got IS DISTINCT FROM want),
                       count(*) FILTER (WHERE want), count(*) FILTER (WHERE NOT want)) FROM d"
    );
    let counts: String = db.value(&sql);
    let parts: Vec<i64> = counts.split(' ').map(|n| n.parse().unwrap()).collect();
    assert_eq!(parts[0], 0, "mismatches, in batch, not: {counts}");
    assert!(parts[1] > 1_000 && parts[2] > 1_000, "{counts}");
    // Large snapshots read from a table, which the function detoasts: 2,000 transactions in
    // progress stored out of line, 300 compressed in the row.
    db.exec(
        "CREATE TABLE big_snapshots (out_of_line pg_snapshot, compressed pg_snapshot);
         ALTER TABLE big_snapshots ALTER out_of_line SET STORAGE EXTERNAL, ALTER compressed SET STORAGE MAIN;
         INSERT INTO big_snapshots
         SELECT (SELECT format('1000:5000:%s', string_agg((1000 + 2 * g)::text, ',' ORDER BY g))
                   FROM generate_series(0, 1999) g)::pg_snapshot,
                (SELECT format('1000:5000:%s', string_agg((1000 + 13 * g)::text, ',' ORDER BY g))
                   FROM generate_series(0, 299) g)::pg_snapshot;",
    );
    let stored: String = db.value(
        "SELECT format('%s %s', pg_column_compression(compressed), pg_relation_size(c.reltoastrelid) > 0)
           FROM big_snapshots, pg_class c WHERE c.oid = 'big_snapshots'::regclass",
    );
    assert_eq!(stored, "pglz t", "how the snapshots are stored");
    let mismatches: i64 = db.value(
        "SELECT count(*) FROM big_snapshots b, generate_series(900, 5100) g, LATERAL (SELECT g::text::xid8 AS xid) x
          WHERE pgtrickle._in_batch(x.xid, b.out_of_line, '900:900:'::pg_snapshot, NULL)
                IS DISTINCT FROM (NOT pg_visible_in_snapshot(x.xid, '900:900:'::pg_snapshot) AND pg_visible_in_snapshot(x.xid, b.out_of_line))
             OR pgtrickle._in_batch(x.xid, '6000:6000:'::pg_snapshot, b.compressed, NULL)
                IS DISTINCT FROM NOT pg_visible_in_snapshot(x.xid, b.compressed)",
    );
    assert_eq!(mismatches, 0);
}

/// The batch function offers an index on its transaction id argument the condition `xid >=
/// xmin(old)` only when the old snapshot is known before the scan: read from the scanned row itself
/// it cannot be an index condition (the query stays right and the server up), while a constant one
/// is (the index is read).
#[test]
fn the_batch_functions_index_condition_takes_only_a_bound_known_before_the_scan() {
    let mut db = TestDb::new("diff_in_batch_index");
    db.exec(
        "CREATE TABLE marks (x xid8 NOT NULL, s pg_snapshot NOT NULL);
         INSERT INTO marks SELECT g::text::xid8, format('%s:%s:', g - 5, g)::pg_snapshot FROM generate_series(10, 5000) g;
         CREATE INDEX marks_x ON marks (x);
         ANALYZE marks;
         SET enable_seqscan = off;",
    );
    // Each row's x is its own snapshot's xmax: not visible in it, so in every row's batch.
    let from_rows: i64 = db.value(
        "SELECT count(*) FROM marks WHERE pgtrickle._in_batch(x, '6000:6000:'::pg_snapshot, s, NULL)",
    );
    assert_eq!(from_rows, 4_991);
    // From the old xmin on, the index returns 1,001 rows; in the batch are 4100 (in progress at the
    // old snapshot) and 4500 on (at or past its xmax): the function still decides each row.
    let constant = "SELECT count(*) FROM marks WHERE pgtrickle._in_batch(x, '6000:6000:'::pg_snapshot, '4000:4500:4100'::pg_snapshot, NULL)";
    assert_eq!(db.value::<i64>(constant), 502);
    let plan: Vec<String> = db
        .rows(&format!("EXPLAIN {constant}"), &[])
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter().any(|l| l.contains("Index Cond: (x >= ")),
        "{plan:?}"
    );
}
