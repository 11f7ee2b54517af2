//! PostgreSQL's own errors pass through pg_trickle's Rust code: its ProcessUtility hook sees every
//! utility statement in every database, and SPI runs users' queries. pgrx carries such an error
//! across Rust frames as a panic, and with `RUST_BACKTRACE` in the server's environment its panic hook
//! captured a Rust backtrace that ended up in the error's DETAIL: fifty lines of pg_trickle's
//! internals, sent to every client whose `CREATE TABLE` failed. A Rust backtrace belongs to a
//! panic of pg_trickle's own code only.

use pg_trickle_e2e::cluster::with_rust_backtrace_in_server;
use pg_trickle_e2e::TestDb;

#[test]
fn postgres_errors_carry_no_rust_backtrace_even_with_rust_backtrace_set() {
    with_rust_backtrace_in_server();
    let mut db = TestDb::new("backtraces");
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1)");
    db.exec(
        "SELECT pgtrickle.create_stream_table('st', 'SELECT id, v FROM t', '1h', 'DIFFERENTIAL')",
    );
    for (sql, code, detail) in [
        // Through the ProcessUtility hook, unrelated to stream tables.
        ("CREATE TABLE t (x int)", "42P07", None),
        // Through the hook, with PostgreSQL's own DETAIL, which must be kept as it is.
        (
            "CREATE TABLE u (id int REFERENCES t); INSERT INTO u VALUES (2)",
            "23503",
            Some("Key (id)=(2) is not present in table \"t\"."),
        ),
        // Through SPI inside pg_trickle's functions.
        (
            "SELECT pgtrickle.create_stream_table('bad', 'SELECT 1/0 AS x FROM t', '1h', 'FULL')",
            "22012",
            None,
        ),
    ] {
        let e = db.error(sql);
        assert_eq!(e.code, code, "{sql}: {e:?}");
        assert!(
            !format!("{e:?}").contains("pgrx_pg_sys") && !format!("{e:?}").contains("backtrace"),
            "{sql}: a Rust backtrace reached the client: {e:?}"
        );
        if let Some(detail) = detail {
            assert_eq!(e.detail.as_deref(), Some(detail), "{sql}");
        }
    }
    // Refreshes still work, and an error pg_trickle raises itself keeps its hint.
    db.exec("UPDATE t SET v = 2; SELECT pgtrickle.refresh_stream_table('st')");
    db.assert_matches_query("st", "SELECT id, v FROM t");
    let e = db.error("SELECT pgtrickle.refresh_stream_table('nope')");
    assert!(e.hint.is_some(), "{e:?}");
    assert!(!format!("{e:?}").contains("pgrx_pg_sys"), "{e:?}");
    // The panic that carried that error left a backtrace behind in pgrx; PostgreSQL's next error in
    // this session must not pick it up (it did: a failed GRANT showed fifty lines of the refresh).
    // A stream table another one reads: pg_trickle's DDL on it runs its own event trigger again,
    // whose error then crosses two layers of Rust frames.
    db.exec("SELECT pgtrickle.create_stream_table('st_reader', 'SELECT count(*) AS n FROM st', '1h', 'DIFFERENTIAL')");
    for sql in [
        "ALTER TABLE st ADD COLUMN extra int",
        "GRANT SELECT ON no_such_table TO PUBLIC",
        "SELECT pgtrickle.create_stream_table('bad2', 'SELECT x FROM no_such_table', '1h', 'FULL')",
        "CREATE TABLE t (x int)",
    ] {
        let e = db.error(sql);
        assert!(
            !format!("{e:?}").contains("backtrace") && !format!("{e:?}").contains("visit"),
            "{sql}: a stale Rust backtrace reached the client: {e:?}"
        );
    }
}
