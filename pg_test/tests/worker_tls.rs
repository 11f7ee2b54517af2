//! `pg_trickle_worker` over TLS (rustls): the cluster gets a certificate for `localhost` signed by a
//! test CA (openssl), and the worker connects with libpq's `sslmode`s — encrypted with `require`,
//! checked with `verify-ca` and `verify-full` against `sslrootcert` — and refuses, exiting 1 with the
//! reason, a certificate signed by another CA or, with `verify-full`, naming another host. Its own
//! test binary: it turns on `ssl` for the cluster.

use pg_trickle_e2e::worker::{login_role, Worker};
use pg_trickle_e2e::{cluster, wait_until, TestDb};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn openssl(dir: &Path, args: &str) {
    let ok = Command::new("bash")
        .arg("-c")
        .arg(format!("cd '{}' && openssl {args}", dir.display()))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// A CA, a server certificate it signed for DNS name `localhost` only, and an unrelated CA.
fn certificates(dir: &Path) {
    let ca =
        "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign";
    openssl(dir, &format!("req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca {ca}"));
    openssl(dir, &format!("req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 2 -subj /CN=other-ca {ca}"));
    openssl(
        dir,
        "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost",
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(dir, "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext");
    // The server reads its key only if it owns it and nobody else may read it.
    let owner = std::fs::metadata(dir).unwrap();
    for file in ["server.key", "server.pem"] {
        std::os::unix::fs::chown(dir.join(file), Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    std::fs::set_permissions(
        dir.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
}

/// Whether every session of `role` is encrypted (and there is one).
fn encrypted(db: &mut TestDb, role: &str) -> bool {
    let (sessions, ssl): (i64, i64) = {
        let r = db.rows(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = $1",
            &[&role],
        );
        (r[0].get(0), r[0].get(1))
    };
    sessions > 0 && sessions == ssl
}

#[test]
fn workers_connect_over_tls_and_refuse_certificates_sslmode_refuses() {
    let dir = cluster().server_owned_dir("tls");
    certificates(&dir);
    cluster().alter_system(&format!(
        "ALTER SYSTEM SET ssl_cert_file = '{0}/server.pem'; ALTER SYSTEM SET ssl_key_file = '{0}/server.key'; ALTER SYSTEM SET ssl = on",
        dir.display()
    ));
    let mut db = TestDb::new("wtls");
    let port: i32 = db.value("SELECT current_setting('port')::int");
    let ca = dir.join("ca.pem").display().to_string();
    let other = dir.join("other.pem").display().to_string();
    let dsn =
        |host: &str, tls: &str| format!("host={host} port={port} dbname=wtls user=wtls_w {tls}");

    let accepted = [
        ("require", dsn("127.0.0.1", "sslmode=require")),
        (
            "verify-ca",
            dsn("127.0.0.1", &format!("sslmode=verify-ca sslrootcert={ca}")),
        ),
        (
            "verify-full",
            format!(
                "postgresql://wtls_w@localhost:{port}/wtls?sslmode=verify-full&sslrootcert={ca}"
            ),
        ),
    ];
    login_role(&mut db, "wtls_w");
    for (mode, dsn) in &accepted {
        let mut w = Worker::spawn(dsn, "wtls", &[]);
        let registered = wait_until(Duration::from_secs(10), || {
            let n: i64 = db.value(&format!("SELECT count(*) FROM pgtrickle.pgt_worker_registry WHERE pid = {} AND status = 'active'", w.pid()));
            n > 0
        });
        assert!(registered, "{mode}: not registered; log:\n{}", w.log());
        assert!(
            encrypted(&mut db, "wtls_w"),
            "{mode}: a session of the worker is not encrypted"
        );
        w.signal("TERM");
        assert_eq!(
            w.wait_exit(Duration::from_secs(10)),
            Some(0),
            "{mode}: log:\n{}",
            w.log()
        );
    }

    let refused = [
        (
            "another CA",
            dsn(
                "localhost",
                &format!("sslmode=verify-full sslrootcert={other}"),
            ),
            "UnknownIssuer",
        ),
        (
            "another host name",
            dsn(
                "127.0.0.1",
                &format!("sslmode=verify-full sslrootcert={ca}"),
            ),
            "certificate not valid for name \"127.0.0.1\"",
        ),
    ];
    for (what, dsn, why) in &refused {
        let mut w = Worker::spawn(dsn, "wtls", &[]);
        assert_eq!(
            w.wait_exit(Duration::from_secs(15)),
            Some(1),
            "{what}: log:\n{}",
            w.log()
        );
        let log = w.log();
        assert!(
            log.contains("presented a certificate that sslmode and sslrootcert refuse")
                && log.contains(why),
            "{what}: {log}"
        );
    }
    // verify-full without a root certificate is a usage error, said before connecting.
    let mut w = Worker::spawn(&dsn("localhost", "sslmode=verify-full"), "wtls", &[]);
    assert_eq!(w.wait_exit(Duration::from_secs(10)), Some(1));
    assert!(
        w.log()
            .contains("sslmode=verify-full needs the root certificate"),
        "{}",
        w.log()
    );
}
