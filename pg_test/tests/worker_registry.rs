//! External workers in the registry: a real `pg_trickle_worker` process registers with its
//! capabilities, heartbeats on its own connection, survives a dropped connection, is marked gone by
//! the coordinator when it falls silent (SIGSTOP) and registers anew when it wakes, and on SIGTERM marks
//! itself stopped and exits 0 — all as a login role that holds nothing but `pgtrickle_worker`.

use pg_trickle_e2e::worker::{login_role, Worker};
use pg_trickle_e2e::{wait_until, TestDb};
use std::io::{Read, Write};
use std::time::Duration;

/// `GET path` on 127.0.0.1:port: (status code, body), or None when nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        response.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    ))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The registry rows of this process, oldest first: (worker_id, status).
fn rows_of(db: &mut TestDb, pid: i32) -> Vec<(String, String)> {
    db.rows(
        "SELECT worker_id::text, status FROM pgtrickle.pgt_worker_registry WHERE pid = $1 ORDER BY started_at, worker_id",
        &[&pid],
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[test]
fn a_worker_registers_heartbeats_and_stops_cleanly_on_sigterm() {
    let mut db = TestDb::new("wreg_life");
    login_role(&mut db, "wreg_life_w");
    let mut w = Worker::start(&db, "wreg_life_w", &["--log-format", "json"]);
    let pid = w.pid();
    let id = w.registered_id(&mut db);
    let (host, version, operators): (String, String, String) = {
        let r = db.rows(
            "SELECT hostname, capabilities->>'version', (capabilities->'local_operators')::text FROM pgtrickle.pgt_worker_registry WHERE worker_id = $1::text::uuid",
            &[&id],
        );
        (r[0].get(0), r[0].get(1), r[0].get(2))
    };
    assert!(!host.is_empty());
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert_eq!(operators, r#"["filter", "project", "count", "sum", "avg"]"#);

    let beat = |db: &mut TestDb| -> f64 {
        db.value(&format!("SELECT extract(epoch FROM last_heartbeat)::float8 FROM pgtrickle.pgt_worker_registry WHERE worker_id = '{id}'"))
    };
    let first = beat(&mut db);
    assert!(
        wait_until(Duration::from_secs(5), || beat(&mut db) > first),
        "no heartbeat; log:\n{}",
        w.log()
    );
    // Heartbeats come from a second connection of the same role.
    let connections: i64 =
        db.value("SELECT count(*) FROM pg_stat_activity WHERE usename = 'wreg_life_w'");
    assert_eq!(connections, 2);

    w.signal("TERM");
    assert_eq!(
        w.wait_exit(Duration::from_secs(10)),
        Some(0),
        "log:\n{}",
        w.log()
    );
    assert_eq!(
        rows_of(&mut db, pid),
        vec![(id.clone(), "stopped".to_string())]
    );
    let log = w.log();
    for line in log.lines() {
        assert!(
            line.starts_with("{\"ts\":") && line.contains(",\"level\":\"") && line.ends_with('}'),
            "not a JSON log line: {line}"
        );
    }
    assert!(
        log.contains(&format!("\"msg\":\"registered\",\"worker_id\":\"{id}\"")),
        "{log}"
    );
    assert!(log.contains("\"msg\":\"stopped\""), "{log}");
}

#[test]
fn a_lost_connection_is_retried_and_a_silent_worker_is_marked_gone() {
    let mut db = TestDb::new("wreg_faults");
    // This test binary has its own cluster: the short timeout concerns only its workers.
    db.exec("ALTER SYSTEM SET pg_trickle.worker_reclaim_timeout = '2s'");
    db.exec("SELECT pg_reload_conf()");
    // The coordinator marks silent workers gone: make sure this database has one now (creating a
    // stream table asks for it; otherwise the launcher's next probe may be 30 s away).
    db.exec("CREATE TABLE t (x int); SELECT pgtrickle.create_stream_table('st', 'SELECT x FROM t', '1h', 'FULL')");
    assert!(
        db.scheduler_pid().is_some(),
        "no coordinator for the database"
    );
    login_role(&mut db, "wreg_faults_w");
    let w = Worker::start(&db, "wreg_faults_w", &[]);
    let pid = w.pid();
    let first = w.registered_id(&mut db);

    // The server drops both connections: the worker reconnects and registers as a new worker.
    db.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'wreg_faults_w'",
    );
    assert!(
        wait_until(Duration::from_secs(15), || w
            .active_id(&mut db)
            .is_some_and(|id| id != first)),
        "did not register again after losing its connections; log:\n{}",
        w.log()
    );
    let second = w.active_id(&mut db).unwrap();
    assert!(
        w.log().contains("connection to the server lost; retrying"),
        "{}",
        w.log()
    );

    // Frozen past the reclaim timeout: the coordinator marks it gone (it sweeps every 5 s).
    w.signal("STOP");
    let gone = wait_until(Duration::from_secs(20), || {
        rows_of(&mut db, pid)
            .iter()
            .any(|(id, s)| *id == second && s == "gone")
    });
    w.signal("CONT");
    assert!(
        gone,
        "a silent worker was not marked gone: {:?}",
        rows_of(&mut db, pid)
    );
    // Awake again, its next heartbeat is refused and it registers as a new worker.
    assert!(
        wait_until(Duration::from_secs(15), || w
            .active_id(&mut db)
            .is_some_and(|id| id != first && id != second)),
        "did not register again after being marked gone; log:\n{}",
        w.log()
    );
    assert!(w.log().contains("was marked gone"), "{}", w.log());
    db.exec("ALTER SYSTEM RESET pg_trickle.worker_reclaim_timeout");
    db.exec("SELECT pg_reload_conf()");
}

#[test]
fn what_retrying_cannot_fix_ends_the_worker_with_a_clear_error() {
    // A login role without pgtrickle_worker may not register.
    let mut db = TestDb::new("wreg_denied");
    db.exec("DROP ROLE IF EXISTS wreg_denied_w; CREATE ROLE wreg_denied_w LOGIN;");
    let mut w = Worker::start(&db, "wreg_denied_w", &[]);
    assert_eq!(w.wait_exit(Duration::from_secs(15)), Some(1));
    let log = w.log();
    assert!(
        log.contains("permission denied for function worker_register"),
        "{log}"
    );
    assert!(log.contains("SQLSTATE 42501"), "{log}");
    let rows: i64 = db.value("SELECT count(*) FROM pgtrickle.pgt_worker_registry");
    assert_eq!(rows, 0);

    // A database without pg_trickle.
    let plain = TestDb::without_extension("wreg_noext");
    let mut w = Worker::start(&plain, "postgres", &[]);
    assert_eq!(w.wait_exit(Duration::from_secs(15)), Some(1));
    assert!(
        w.log()
            .contains("the pg_trickle extension is not installed"),
        "{}",
        w.log()
    );

    // An extension too old to have the registry: the worker says how to update it.
    let mut old = TestDb::without_extension("wreg_old");
    old.exec("CREATE EXTENSION pg_trickle VERSION '0.1.0'");
    let mut w = Worker::start(&old, "postgres", &[]);
    assert_eq!(w.wait_exit(Duration::from_secs(15)), Some(1));
    assert!(
        w.log().contains("pg_trickle 0.1.0 in the database at")
            && w.log().contains("ALTER EXTENSION pg_trickle UPDATE"),
        "{}",
        w.log()
    );

    // A wrong password: refused, and said so (the right one registers).
    db.exec("DROP ROLE IF EXISTS wreg_pw_w; CREATE ROLE wreg_pw_w LOGIN PASSWORD 'right'; GRANT pgtrickle_worker TO wreg_pw_w;");
    pg_trickle_e2e::cluster().require_password("wreg_pw_w");
    let mut w = Worker::spawn(
        &format!("{} user=wreg_pw_w password=wrong", db.conninfo()),
        "wreg_pw",
        &[],
    );
    assert_eq!(w.wait_exit(Duration::from_secs(15)), Some(1));
    assert!(
        w.log()
            .contains("password authentication failed for user \"wreg_pw_w\"")
            && w.log().contains("28P01"),
        "{}",
        w.log()
    );
    let w = Worker::spawn(
        &format!("{} user=wreg_pw_w password=right", db.conninfo()),
        "wreg_pw",
        &[],
    );
    w.registered_id(&mut db); // the right password
    drop(w);

    // A role that does not exist: the login is refused.
    let mut w = Worker::start(&plain, "wreg_no_such_role", &[]);
    assert_eq!(w.wait_exit(Duration::from_secs(15)), Some(1));
    assert!(w.log().contains("refused"), "{}", w.log());
}

#[test]
fn health_endpoints_say_alive_and_whether_registered() {
    let mut db = TestDb::new("wreg_health");
    login_role(&mut db, "wreg_health_w");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let w = Worker::start(&db, "wreg_health_w", &["--health-addr", &addr]);
    assert!(
        wait_until(Duration::from_secs(10), || http_get(port, "/readyz")
            .is_some_and(|(code, _)| code == 200)),
        "never ready: {:?}; log:\n{}",
        http_get(port, "/readyz"),
        w.log()
    );
    let id = w.active_id(&mut db).unwrap();
    assert_eq!(
        http_get(port, "/readyz").unwrap().1,
        format!("ready: worker {id}\n")
    );
    assert_eq!(http_get(port, "/healthz"), Some((200, "ok\n".to_string())));
    assert_eq!(http_get(port, "/metrics").map(|r| r.0), Some(404));

    // A worker that cannot reach its server is alive but not ready, and says why.
    let (port2, nowhere) = (free_port(), free_port());
    let dsn = format!("host=127.0.0.1 port={nowhere} user=postgres dbname=postgres");
    let mut lost = Worker::spawn(
        &dsn,
        "nowhere",
        &["--health-addr", &format!("127.0.0.1:{port2}")],
    );
    assert!(
        wait_until(Duration::from_secs(10), || http_get(port2, "/readyz")
            .is_some_and(
                |(code, body)| code == 503 && body.contains("not ready:")
            )),
        "{:?}; log:\n{}",
        http_get(port2, "/readyz"),
        lost.log()
    );
    assert_eq!(http_get(port2, "/healthz").map(|r| r.0), Some(200));
    lost.signal("TERM");
    assert_eq!(
        lost.wait_exit(Duration::from_secs(10)),
        Some(0),
        "log:\n{}",
        lost.log()
    );
}
