//! Creating stream tables while others write, refresh and clean up, with real concurrent sessions:
//! no change is lost between a new stream table's initial population and its first delta, and two
//! sessions installing capture on one source take turns.

use pg_trickle_e2e::{wait_until, TestDb};
use std::time::Duration;

const TOTALS: &str = "SELECT grp, count(*) AS n, sum(v) AS total FROM src GROUP BY grp";
const ROWS: &str = "SELECT id, grp, v FROM src WHERE v > 0";

fn source_db(name: &str) -> TestDb {
    let mut db = TestDb::new(name);
    db.exec(
        "CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v numeric NOT NULL);
             INSERT INTO src SELECT g, g % 5, g FROM generate_series(1, 50) g;",
    );
    db
}

/// Waits until some other session waits for an advisory lock.
fn someone_waits_for_a_lock(db: &mut TestDb) {
    let waiting = wait_until(Duration::from_secs(10), || {
        db.value::<i64>("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            > 0
    });
    assert!(waiting, "the second session never waited");
}

#[test]
fn two_sessions_creating_stream_tables_over_one_new_source_take_turns() {
    let mut db = source_db("race_concurrent_create");
    let mut first = db.connect();
    first
        .batch_execute(&format!("BEGIN; SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', 'DIFFERENTIAL');"))
        .unwrap();
    let conninfo = db.conninfo();
    let second = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&conninfo, postgres::NoTls).unwrap();
        c.batch_execute(&format!(
            "SELECT pgtrickle.create_stream_table('rows', '{ROWS}', '1h', 'AUTO')"
        ))
    });
    someone_waits_for_a_lock(&mut db);
    first.batch_execute("COMMIT").unwrap();
    second.join().unwrap().expect("the second create failed");

    for (st, query) in [("totals", TOTALS), ("rows", ROWS)] {
        assert_eq!(
            db.value::<String>(&format!(
                "SELECT refresh_mode FROM pgtrickle.stream_tables WHERE table_name = '{st}'"
            )),
            "DIFFERENTIAL"
        );
        db.exec("INSERT INTO src VALUES (100, 1, 7); UPDATE src SET v = -v WHERE id = 3; DELETE FROM src WHERE id IN (4, 100);");
        db.exec(&format!("SELECT pgtrickle.refresh_stream_table('{st}')"));
        assert_eq!(db.last_refresh(st).0, "DIFFERENTIAL");
        db.assert_matches_query(st, query);
    }
}

#[test]
fn a_create_whose_snapshot_predates_a_write_still_gets_that_write() {
    let mut db = source_db("race_repeatable_read_create");
    let mut creator = db.connect();
    // The creator's snapshot is taken before the write commits; capture does not exist yet.
    creator
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM src;")
        .unwrap();
    db.exec("INSERT INTO src VALUES (200, 2, 20); DELETE FROM src WHERE id = 1;");
    creator
        .batch_execute(&format!("SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', 'DIFFERENTIAL'); COMMIT;"))
        .unwrap();
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    let (action, reason) = db.last_refresh("totals");
    assert_eq!(action, "FULL");
    assert!(reason.contains("REPEATABLE READ"), "{reason}");
    db.assert_matches_query("totals", TOTALS);
    db.exec("UPDATE src SET v = 0 WHERE id = 200");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(db.last_refresh("totals").0, "DIFFERENTIAL");
    db.assert_matches_query("totals", TOTALS);
}

#[test]
fn a_clean_up_never_deletes_change_rows_a_stream_table_being_created_has_not_seen() {
    let mut db = source_db("race_cleanup_during_create");
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('rows', '{ROWS}', '1h', 'DIFFERENTIAL')"
    ));
    // A session holds the consumers lock of src (as a refresh of another consumer does while it
    // deletes applied change rows: here a consumer being created) while a second one is created.
    let mut cleaner = db.connect();
    cleaner
        .batch_execute(&format!(
            "BEGIN; SELECT pgtrickle.create_stream_table('third', '{ROWS}', '1h', 'DIFFERENTIAL');"
        ))
        .unwrap();
    let (created_tx, created_rx) = std::sync::mpsc::channel::<()>();
    let (commit_tx, commit_rx) = std::sync::mpsc::channel::<()>();
    let conninfo = db.conninfo();
    let creator = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&conninfo, postgres::NoTls).unwrap();
        c.batch_execute(&format!("BEGIN; SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', 'DIFFERENTIAL');"))
            .unwrap();
        created_tx.send(()).unwrap();
        commit_rx.recv().unwrap();
        c.batch_execute("COMMIT").unwrap();
    });
    std::thread::sleep(Duration::from_millis(300));
    cleaner.batch_execute("COMMIT").unwrap();
    created_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the create did not finish");
    // The new stream table is populated (uncommitted) when a write commits and the first consumer
    // applies it and cleans up.
    db.exec("INSERT INTO src VALUES (300, 3, 30); UPDATE src SET grp = 4 WHERE id = 10;");
    db.exec("SELECT pgtrickle.refresh_stream_table('rows')");
    db.assert_matches_query("rows", ROWS);
    commit_tx.send(()).unwrap();
    creator.join().unwrap();
    // The new stream table's population predates the write: it must still find its change rows.
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(db.last_refresh("totals").0, "DIFFERENTIAL");
    db.assert_matches_query("totals", TOTALS);
    // Once every consumer has applied them, the rows go.
    db.exec("SELECT pgtrickle.refresh_stream_table('third')");
    db.exec("SELECT pgtrickle.refresh_stream_table('rows')");
    db.wait_for_cleanups();
    let buffer: String =
        db.value("SELECT format('pgtrickle_changes.changes_%s', 'src'::regclass::oid)");
    assert_eq!(
        db.value::<i64>(&format!("SELECT count(*) FROM {buffer}")),
        0
    );
}

/// A manual refresh in READ COMMITTED counts its batch, then applies a delta that leaves out the
/// sources with no changes. A source written between the two must not slip through: the refresh
/// reads one snapshot from count to apply, and the write is the next refresh's.
#[test]
fn a_write_to_an_unchanged_source_between_the_count_and_the_apply_is_not_lost() {
    const JOINED: &str = "SELECT a.id, a.k, b.label FROM a JOIN b ON b.k = a.k";
    let mut db = TestDb::new("race_read_committed_prune");
    db.exec("CREATE TABLE a (id int PRIMARY KEY, k int NOT NULL); CREATE TABLE b (k int NOT NULL, label text NOT NULL);
             INSERT INTO a SELECT g, g % 4 FROM generate_series(1, 20) g; INSERT INTO b VALUES (0, 'zero'), (1, 'one');");
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('joined', '{JOINED}', '1h', 'DIFFERENTIAL')"
    ));
    db.exec("INSERT INTO a VALUES (100, 1)");
    // The apply waits for this lock on the stream table, after the batch count (a: 1 change, b: none).
    let mut blocker = db.connect();
    blocker
        .batch_execute("BEGIN; LOCK TABLE joined IN SHARE MODE;")
        .unwrap();
    let conninfo = db.conninfo();
    let refresher = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&conninfo, postgres::NoTls).unwrap();
        c.batch_execute("SET default_transaction_isolation = 'read committed'; SELECT pgtrickle.refresh_stream_table('joined')")
    });
    let waiting = wait_until(Duration::from_secs(10), || {
        db.value::<i64>(
            "SELECT count(*) FROM pg_locks WHERE relation = 'joined'::regclass AND NOT granted",
        ) > 0
    });
    assert!(waiting, "the refresh never waited for the stream table");
    // Meanwhile b, counted as unchanged, gets rows that join with a's.
    db.exec("INSERT INTO b VALUES (2, 'two'), (1, 'uno')");
    blocker.batch_execute("COMMIT").unwrap();
    refresher.join().unwrap().expect("the refresh failed");
    assert_eq!(db.last_refresh("joined").0, "DIFFERENTIAL");
    db.exec("SELECT pgtrickle.refresh_stream_table('joined')");
    assert_eq!(db.last_refresh("joined").0, "DIFFERENTIAL");
    db.assert_matches_query("joined", JOINED);
}
