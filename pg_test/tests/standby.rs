//! pg_trickle where nothing may be written: reading its state writes nothing (no transaction id,
//! no commit record), so a hot standby shows every view; refreshing there is refused clearly; and a
//! promoted standby maintains the stream tables it received, FULL for one whose unlogged source the
//! standby never had.

use pg_trickle_e2e::worker::Worker;
use pg_trickle_e2e::{cluster, wait_until, TestDb};
use std::time::Duration;

/// Every query an operator runs to look at pg_trickle: its views and the explanation of a stream table.
fn reads(db: &mut TestDb, explained: &[&str]) -> Vec<String> {
    let views: Vec<String> = db
        .rows(
            "SELECT format('SELECT * FROM %s', c.oid::regclass) FROM pg_class c
              WHERE c.relnamespace = 'pgtrickle'::regnamespace AND c.relkind = 'v' ORDER BY 1",
            &[],
        )
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(views.len() >= 4, "{views:?}");
    views
        .into_iter()
        .chain(
            explained
                .iter()
                .map(|st| format!("SELECT pgtrickle.explain_stream_table('{st}')")),
        )
        .collect()
}

fn setup(db: &mut TestDb) {
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, g int, v int);
         CREATE UNLOGGED TABLE u (id int PRIMARY KEY, v int);
         INSERT INTO t SELECT i, i % 3, i FROM generate_series(1, 30) i;
         INSERT INTO u SELECT i, i FROM generate_series(1, 5) i;
         SELECT pgtrickle.create_stream_table('st_rows', 'SELECT id, v FROM t WHERE v > 3', '1h', 'DIFFERENTIAL');
         SELECT pgtrickle.create_stream_table('st_sum', 'SELECT g, count(*) AS n, sum(v) AS s FROM t GROUP BY g', '1h', 'DIFFERENTIAL');
         SELECT pgtrickle.create_stream_table('st_full', 'SELECT g, max(v) AS m FROM t GROUP BY g', '1h', 'FULL');
         SELECT pgtrickle.create_stream_table('st_u', 'SELECT id, v FROM u', '1h', 'DIFFERENTIAL');
         UPDATE t SET v = v + 1 WHERE id % 4 = 0;",
    );
    db.exec("SELECT pgtrickle.refresh_stream_table('st_rows')");
}

#[test]
fn reading_pg_trickles_state_assigns_no_transaction_id() {
    let mut db = TestDb::new("standby_reads");
    setup(&mut db);
    let reads = reads(&mut db, &["st_rows", "st_sum", "st_full"]);
    db.exec("BEGIN");
    for sql in &reads {
        db.rows(sql, &[]);
    }
    let xid: Option<String> = db.value("SELECT pg_current_xact_id_if_assigned()::text");
    db.exec("COMMIT");
    assert_eq!(
        xid, None,
        "reading pg_trickle's state assigned a transaction id: {reads:?}"
    );
}

#[test]
fn a_hot_standby_shows_stream_tables_and_a_promoted_one_maintains_them() {
    let mut db = TestDb::new("standby_replica");
    setup(&mut db);
    // A change the standby receives with its change rows, applied by nobody yet.
    db.exec("UPDATE t SET v = v * 10 WHERE id < 6; DELETE FROM t WHERE id = 30");
    let lsn: String = db.value("SELECT pg_current_wal_lsn()::text");

    let standby = cluster().start_standby("replica");
    let mut sdb = TestDb {
        name: db.name.clone(),
        client: standby.try_connect(&db.name).unwrap(),
    };
    let replayed = wait_until(Duration::from_secs(60), || {
        sdb.value::<bool>(&format!(
            "SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"
        ))
    });
    assert!(
        replayed,
        "standby did not catch up; log:\n{}",
        standby.log()
    );

    // Everything an operator reads works on the standby.
    for sql in reads(&mut sdb, &["st_rows", "st_sum", "st_full", "st_u"]) {
        if let Err(e) = sdb.client.query(sql.as_str(), &[]) {
            panic!("on the standby, {sql} failed: {e:?}");
        }
    }
    let stored = |db: &mut TestDb| -> Vec<String> {
        db.rows(
            "SELECT format('%s %s', id, v) FROM st_rows ORDER BY id",
            &[],
        )
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let (on_primary, on_standby) = (stored(&mut db), stored(&mut sdb));
    assert_eq!(
        on_standby, on_primary,
        "a standby shows what the primary stored"
    );

    // An external worker pointed at the standby says why it waits, and keeps trying.
    let on_standby = format!(
        "host=127.0.0.1 port={} user=postgres dbname={}",
        standby.port, db.name
    );
    let worker = Worker::spawn(&on_standby, "standby", &[]);
    let waits = wait_until(Duration::from_secs(15), || {
        worker.log().contains("the server does not accept writes")
    });
    assert!(waits, "worker log:\n{}", worker.log());

    // `--check` fails there, and passes with both servers listed and target_session_attrs=read-write.
    let check = |dsn: &str| {
        std::process::Command::new(pg_trickle_e2e::worker_binary())
            .args(["--check", "--dsn", dsn])
            .output()
            .unwrap()
    };
    let out = check(&on_standby);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("does not accept writes") && said.contains("target_session_attrs"),
        "{said}"
    );
    let either = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname={} target_session_attrs=read-write",
        standby.port,
        cluster().port,
        db.name
    );
    let out = check(&either);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Changing anything there is refused, saying why.
    for sql in [
        "SELECT pgtrickle.refresh_stream_table('st_rows')",
        "SELECT pgtrickle.create_stream_table('st_new', 'SELECT id FROM t', '1h', 'FULL')",
        "SELECT pgtrickle.alter_stream_table('st_rows', schedule => '1s')",
        "SELECT pgtrickle.drop_stream_table('st_rows')",
    ] {
        let e = sdb.error(sql);
        assert_eq!(e.code, "25006", "{sql}: {e:?}");
        assert!(e.message.contains("standby"), "{sql}: {e:?}");
    }

    // Promoted, it maintains them: the waiting change differentially, the unlogged source (empty
    // here: a standby never has an unlogged table's rows) by FULL.
    standby.promote();
    let mut pdb = TestDb {
        name: db.name.clone(),
        client: standby.try_connect(&db.name).unwrap(),
    };
    for (st, query, action) in [
        ("st_rows", "SELECT id, v FROM t WHERE v > 3", "DIFFERENTIAL"),
        (
            "st_sum",
            "SELECT g, count(*) AS n, sum(v) AS s FROM t GROUP BY g",
            "DIFFERENTIAL",
        ),
        ("st_full", "SELECT g, max(v) AS m FROM t GROUP BY g", "FULL"),
        ("st_u", "SELECT id, v FROM u", "FULL"),
    ] {
        pdb.exec(&format!("SELECT pgtrickle.refresh_stream_table('{st}')"));
        let (done, reason) = pdb.last_refresh(st);
        assert_eq!(done, action, "{st}: {reason}");
        pdb.assert_matches_query(st, query);
    }
    let (_, reason) = pdb.last_refresh("st_u");
    assert!(reason.contains("unlogged"), "{reason}");
    // The waiting worker comes in on its own.
    let registered = wait_until(Duration::from_secs(40), || {
        worker.active_id(&mut pdb).is_some()
    });
    assert!(registered, "worker log:\n{}", worker.log());
    // And its scheduler runs.
    pdb.exec(
        "SELECT pgtrickle.alter_stream_table('st_rows', schedule => '1s');
         UPDATE t SET v = 100 WHERE id = 7",
    );
    let scheduled = wait_until(Duration::from_secs(30), || {
        pdb.value::<bool>("SELECT EXISTS (SELECT 1 FROM st_rows WHERE id = 7 AND v = 100)")
    });
    assert!(
        scheduled,
        "no scheduled refresh on the promoted server; log:\n{}",
        standby.log()
    );
    pdb.assert_matches_query("st_rows", "SELECT id, v FROM t WHERE v > 3");
}
