//! Database-level DDL that needs a database without other sessions works although a pg_trickle
//! scheduler is connected to it: the scheduler steps aside, as autovacuum does, and comes back.

use pg_trickle_e2e::{cluster, wait_until, TestDb};
use postgres::Client;
use std::time::Duration;

const TOTAL: &str = "SELECT count(*) AS n, sum(v) AS s FROM facts";

/// A database with a stream table refreshed every 100 ms and a running scheduler.
fn scheduled_db(name: &str) -> TestDb {
    let mut db = TestDb::new(name);
    db.exec(
        "CREATE TABLE facts (v int NOT NULL); INSERT INTO facts SELECT generate_series(1, 10);",
    );
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('total', '{TOTAL}', '100ms')"
    ));
    assert!(db.scheduler_pid().is_some(), "no scheduler started");
    db
}

fn admin() -> Client {
    cluster().try_connect("postgres").unwrap()
}

fn database_exists(admin: &mut Client, name: &str) -> bool {
    admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&name],
        )
        .unwrap()
        .get(0)
}

/// The stream table in `db` still follows its source: the scheduler is back and refreshing.
fn assert_still_refreshed(db: &mut TestDb) {
    assert!(
        db.scheduler_pid().is_some(),
        "the scheduler did not come back"
    );
    db.exec("INSERT INTO facts VALUES (100)");
    assert!(
        wait_until(Duration::from_secs(15), || db
            .multiset_diff("total", TOTAL)
            .is_empty()),
        "not refreshed"
    );
}

#[test]
fn drop_database_needs_no_force_while_a_scheduler_runs() {
    drop(scheduled_db("ddl_drop"));
    let mut admin = admin();
    admin
        .batch_execute("DROP DATABASE ddl_drop")
        .expect("DROP DATABASE without FORCE");
    assert!(!database_exists(&mut admin, "ddl_drop"));
}

#[test]
fn a_database_owner_without_superuser_can_drop_it() {
    let mut admin = admin();
    admin
        .batch_execute("DROP ROLE IF EXISTS ddl_owner; CREATE ROLE ddl_owner LOGIN")
        .unwrap();
    drop(scheduled_db("ddl_owned"));
    admin
        .batch_execute("ALTER DATABASE ddl_owned OWNER TO ddl_owner")
        .unwrap();
    let conninfo = cluster()
        .conninfo("postgres")
        .replace("user=postgres", "user=ddl_owner");
    let mut owner = Client::connect(&conninfo, postgres::NoTls).unwrap();
    owner
        .batch_execute("DROP DATABASE ddl_owned")
        .expect("DROP DATABASE by its owner");
    assert!(!database_exists(&mut admin, "ddl_owned"));
}

#[test]
fn a_drop_database_that_fails_gives_the_scheduler_back() {
    let mut db = scheduled_db("ddl_drop_fails");
    let before = db.scheduler_pid();
    // Our own session is still connected, so PostgreSQL refuses the DROP (after its 5 s wait).
    let err = admin()
        .batch_execute("DROP DATABASE ddl_drop_fails")
        .expect_err("DROP must fail while a user is connected");
    assert_eq!(err.code().map(|c| c.code()), Some("55006"), "{err}");
    assert_ne!(
        db.scheduler_pid(),
        before,
        "the scheduler was not stopped for the DROP"
    );
    assert_still_refreshed(&mut db);
}

#[test]
fn renaming_a_database_keeps_its_stream_tables_refreshing() {
    let mut admin = admin();
    admin
        .batch_execute("DROP DATABASE IF EXISTS ddl_renamed WITH (FORCE)")
        .unwrap();
    drop(scheduled_db("ddl_rename"));
    admin
        .batch_execute("ALTER DATABASE ddl_rename RENAME TO ddl_renamed")
        .expect("rename while a scheduler runs");
    let mut renamed = TestDb::existing("ddl_renamed");
    assert_still_refreshed(&mut renamed);
}

#[test]
fn a_database_with_stream_tables_can_be_a_template() {
    let mut admin = admin();
    admin
        .batch_execute("DROP DATABASE IF EXISTS ddl_copy WITH (FORCE)")
        .unwrap();
    drop(scheduled_db("ddl_template"));
    admin
        .batch_execute("CREATE DATABASE ddl_copy TEMPLATE ddl_template")
        .expect("copy while a scheduler runs");
    // The copy carries the catalog, the change capture and the buffers, and gets its own scheduler.
    let mut copy = TestDb::existing("ddl_copy");
    assert_still_refreshed(&mut copy);
    assert_still_refreshed(&mut TestDb::existing("ddl_template"));
}

#[test]
fn moving_a_database_to_another_tablespace_keeps_its_stream_tables_refreshing() {
    let mut admin = admin();
    admin
        .batch_execute("DROP DATABASE IF EXISTS ddl_move WITH (FORCE)")
        .unwrap();
    admin
        .batch_execute("DROP TABLESPACE IF EXISTS ddl_space")
        .unwrap();
    let location = cluster().server_owned_dir("ddl_space");
    admin
        .batch_execute(&format!(
            "CREATE TABLESPACE ddl_space LOCATION '{}'",
            location.display()
        ))
        .unwrap();
    drop(scheduled_db("ddl_move"));
    admin
        .batch_execute("ALTER DATABASE ddl_move SET TABLESPACE ddl_space")
        .expect("move while a scheduler runs");
    assert_still_refreshed(&mut TestDb::existing("ddl_move"));
}
