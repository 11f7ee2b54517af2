//! External workers across a database restart, and two workers at once: they reconnect and carry on
//! (as new workers), the coordinator hands them refreshes again, and no stream table is ever refreshed
//! by two of them at the same time. Its own test binary: it restarts the cluster.

use pg_trickle_e2e::worker::{login_role, Worker};
use pg_trickle_e2e::{cluster, wait_until, TestDb};
use std::time::Duration;

const STREAM_TABLES: [&str; 4] = ["st1", "st2", "st3", "st4"];

/// Successful refreshes by external workers registered after `since`, per stream table.
fn refreshed_by_workers_since(db: &mut TestDb, since: &str) -> i64 {
    db.value(&format!(
        "SELECT count(DISTINCT h.pgt_id) FROM pgtrickle.pgt_refresh_history h
          WHERE h.status = 'SUCCESS' AND h.action = 'DIFFERENTIAL' AND h.started_at >= '{since}'
            AND h.executed_by IN (SELECT 'external worker ' || worker_id FROM pgtrickle.pgt_worker_registry
                                   WHERE started_at >= '{since}')"
    ))
}

/// Changes `t` until every stream table was refreshed by a worker registered after `since`.
fn wait_until_workers_refresh_all(db: &mut TestDb, since: &str, logs: &dyn Fn() -> String) {
    let all = wait_until(Duration::from_secs(60), || {
        db.exec("UPDATE t SET v = v + 1 WHERE id % 7 = 0");
        std::thread::sleep(Duration::from_millis(500));
        refreshed_by_workers_since(db, since) == STREAM_TABLES.len() as i64
    });
    assert!(
        all,
        "not every stream table was refreshed by a worker since {since}\nworker logs:\n{}",
        logs()
    );
}

#[test]
fn workers_carry_on_after_a_restart_and_never_refresh_one_stream_table_at_once() {
    cluster().alter_system("ALTER SYSTEM SET pg_trickle.worker_reclaim_timeout = '3s'");
    let mut db = TestDb::new("wrestart");
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, g FROM generate_series(1, 100) g;");
    for st in STREAM_TABLES {
        db.exec(&format!("SELECT pgtrickle.create_stream_table('{st}', 'SELECT id, v FROM t WHERE id % 4 <> {}', '1s', 'DIFFERENTIAL')", st.len()));
    }
    assert!(
        db.scheduler_pid().is_some(),
        "no coordinator for the database"
    );
    login_role(&mut db, "wrestart_w");
    let workers = [
        Worker::start(&db, "wrestart_w", &[]),
        Worker::start(&db, "wrestart_w", &[]),
    ];
    let logs = || {
        workers
            .iter()
            .map(|w| w.log())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let since: String = db.value("SELECT (clock_timestamp() - interval '1 min')::text");
    wait_until_workers_refresh_all(&mut db, &since, &logs);

    cluster().restart_immediate();
    let mut db = TestDb::existing("wrestart");
    assert!(
        db.scheduler_pid().is_some(),
        "no coordinator after the restart"
    );
    let since: String = db.value("SELECT clock_timestamp()::text");
    wait_until_workers_refresh_all(&mut db, &since, &logs);
    for w in &workers {
        assert!(
            w.log().contains("connection to the server lost; retrying"),
            "{}",
            w.log()
        );
    }
    for st in STREAM_TABLES {
        let query: String = db.value(&format!(
            "SELECT defining_query FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = '{st}'::regclass"
        ));
        // The last change of the loop is applied within a schedule or two.
        let caught_up = wait_until(Duration::from_secs(20), || {
            db.multiset_diff(st, &query).is_empty()
        });
        assert!(
            caught_up,
            "{st} differs from its query: {:?}",
            db.multiset_diff(st, &query)
        );
    }
    // No two refreshes of one stream table overlapped, whoever ran them.
    let overlaps: i64 = db.value(
        "SELECT count(*) FROM pgtrickle.pgt_refresh_history a JOIN pgtrickle.pgt_refresh_history b
            ON a.pgt_id = b.pgt_id AND a.refresh_id < b.refresh_id
           AND tstzrange(a.started_at, a.finished_at) && tstzrange(b.started_at, b.finished_at)
         WHERE a.status = 'SUCCESS' AND b.status = 'SUCCESS'",
    );
    assert_eq!(overlaps, 0);
    let by_two: i64 = db.value(
        "SELECT count(DISTINCT executed_by) FROM pgtrickle.pgt_refresh_history WHERE executed_by LIKE 'external worker %'",
    );
    assert!(by_two >= 2, "only one worker ever refreshed: {by_two}");
}
