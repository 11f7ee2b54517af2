//! The monitoring configuration shipped in monitoring/ works with the real tool: Debian's
//! prometheus-postgres-exporter (installed by scripts/setup), run as a role with pg_monitor against a
//! test database with the shipped queries file, scraped over loopback, shows each stream table's
//! refresh counters and lag with the values pg_stat_pgtrickle shows, and the pool's.

use pg_trickle_e2e::{cluster, wait_until, TestDb};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const EXPORTER: &str = "/usr/bin/prometheus-postgres-exporter";

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scrape(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// The value of `metric` for the stream table `table`, from an exposition-format body.
fn value(body: &str, metric: &str, table: &str) -> Option<f64> {
    body.lines()
        .filter(|l| {
            l.starts_with(&format!("{metric}{{")) && l.contains(&format!("table_name=\"{table}\""))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn the_shipped_exporter_queries_show_what_the_view_shows() {
    assert!(
        std::path::Path::new(EXPORTER).exists(),
        "{EXPORTER} is missing: run scripts/setup"
    );
    let mut db = TestDb::new("monitoring_exporter");
    db.exec(
        "CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL);
         INSERT INTO src SELECT g, g % 3, g FROM generate_series(1, 30) g;",
    );
    db.exec("SELECT pgtrickle.create_stream_table('totals', 'SELECT grp, sum(v) AS total FROM src GROUP BY grp', '1h', 'DIFFERENTIAL')");
    db.exec("SELECT pgtrickle.create_stream_table('copy', 'SELECT id, v FROM src', '1h', 'FULL')");
    for i in 0..3 {
        db.exec(&format!("UPDATE src SET v = v + 1 WHERE id = {}", i + 1));
        db.exec("SELECT pgtrickle.refresh_stream_table('totals'); SELECT pgtrickle.refresh_stream_table('copy');");
    }
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')"); // NO_DATA
    db.fresh_role("monitoring_exporter_role");
    db.exec("GRANT pg_monitor TO monitoring_exporter_role");

    let queries = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../monitoring/prometheus/pg_trickle_queries.yaml");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dsn = format!(
        "postgresql://monitoring_exporter_role@127.0.0.1:{}/monitoring_exporter?sslmode=disable",
        cluster().port
    );
    let _exporter = Exporter(
        Command::new(EXPORTER)
            .env("DATA_SOURCE_NAME", &dsn)
            .arg(format!("--extend.query-path={}", queries.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--disable-settings-metrics")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-postgres-exporter"),
    );
    let mut body = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            body = scrape(port).unwrap_or_default();
            body.contains("pg_trickle_total_refreshes{")
        }),
        "no pg_trickle metrics scraped:\n{}",
        body.lines()
            .filter(|l| l.contains("pg_trickle") || l.contains("error"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Counters and lag per stream table, as the view shows them (nothing changes meanwhile).
    for table in ["totals", "copy"] {
        for (metric, column) in [
            ("pg_trickle_total_refreshes", "total_refreshes"),
            ("pg_trickle_total_full_refreshes", "total_full_refreshes"),
            ("pg_trickle_total_diff_refreshes", "total_diff_refreshes"),
            ("pg_trickle_no_data_refreshes", "no_data_refreshes"),
            ("pg_trickle_failed_refreshes", "failed_refreshes"),
            (
                "pg_trickle_total_delta_rows_processed",
                "total_delta_rows_processed",
            ),
        ] {
            let expected: i64 = db.value(&format!("SELECT {column}::bigint FROM pgtrickle.pg_stat_pgtrickle WHERE table_name = '{table}'"));
            let scraped = value(&body, metric, table);
            assert_eq!(scraped, Some(expected as f64), "{metric} of {table}");
        }
    }
    assert_eq!(
        value(&body, "pg_trickle_total_refreshes", "totals"),
        Some(5.0),
        "create, 3 DIFFERENTIAL, 1 NO_DATA"
    );
    assert_eq!(
        value(&body, "pg_trickle_schedule_ms", "totals"),
        Some(3_600_000.0)
    );
    // Lag: nothing pending for the DIFFERENTIAL one, nor for the FULL one (its source signalled no
    // change since its last refresh).
    assert_eq!(
        value(&body, "pg_trickle_current_lag_estimate_ms", "totals"),
        Some(0.0)
    );
    assert_eq!(
        value(&body, "pg_trickle_current_lag_estimate_ms", "copy"),
        Some(0.0)
    );
    assert!(body
        .lines()
        .any(|l| l.starts_with("# TYPE pg_trickle_total_refreshes counter")));
    assert!(body
        .lines()
        .any(|l| l.starts_with("# TYPE pg_trickle_current_lag_estimate_ms gauge")));
    // A pending change shows as lag (a FULL stream table's is bounded by its last refresh's start).
    db.exec("UPDATE src SET v = v + 1 WHERE id = 10");
    std::thread::sleep(Duration::from_millis(300));
    assert!(wait_until(Duration::from_secs(20), || {
        body = scrape(port).unwrap_or_default();
        ["totals", "copy"].iter().all(|t| {
            value(&body, "pg_trickle_current_lag_estimate_ms", t).is_some_and(|v| v >= 300.0)
        })
    }));
    // The pool's metrics are there too, once the database's coordinator runs (it starts on its own).
    assert!(
        wait_until(Duration::from_secs(30), || {
            body = scrape(port).unwrap_or_default();
            body.lines()
                .any(|l| l.starts_with("pg_trickle_pool_workers"))
        }),
        "no pool metrics"
    );
    // The change signals: `src` was written and is read, so it holds a place; nothing overflowed.
    let pool_metric = |body: &str, name: &str| {
        body.lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert!(
        pool_metric(&body, "pg_trickle_pool_signalled_sources").is_some_and(|v| v >= 1.0),
        "no signalled_sources metric:\n{body}"
    );
    assert_eq!(
        pool_metric(&body, "pg_trickle_pool_signal_overflows"),
        Some(0.0)
    );
}
