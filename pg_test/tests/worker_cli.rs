//! The external worker binary: --help, a clear error when the server is unreachable or lacks the
//! extension, and a successful check against a server that has it.

use pg_trickle_e2e::{worker_binary, TestDb};
use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(worker_binary());
    cmd.args(args);
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGTRICKLE_DSN",
        "PGCONNECT_TIMEOUT",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run pg_trickle_worker")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_describes_the_connection_options() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.contains("--dsn"), "{help}");
    assert!(help.contains("PGHOST"), "{help}");
}

#[test]
fn an_unreachable_server_is_a_clear_error() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(
        &[
            "--check",
            "--dsn",
            &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot connect to PostgreSQL at host=127.0.0.1 port={port}"
        )),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn a_database_without_the_extension_is_a_clear_error() {
    let db = TestDb::without_extension("worker_noext");
    let out = run(&["--check", "--dsn", &db.conninfo()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("the pg_trickle extension is not installed"),
        "{err}"
    );
    assert!(err.contains("CREATE EXTENSION pg_trickle"), "{err}");
}

#[test]
fn pg_environment_variables_are_honoured() {
    let db = TestDb::new("worker_env");
    let port = pg_trickle_e2e::cluster().port.to_string();
    let out = run(
        &["--check"],
        &[
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", &port),
            ("PGUSER", "postgres"),
            ("PGDATABASE", &db.name),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("pg_trickle {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        text(&out.stdout)
    );
}
