//! Refresh jobs on external workers (MT-2): while a worker is alive the coordinator queues due
//! refreshes for it, and the worker refreshes them with the owner's rights; a worker that falls
//! silent mid-refresh (SIGSTOP, kill -9) is fenced out — its session terminated, its attempt
//! superseded — and the coordinator refreshes in-process, so every change is applied exactly once;
//! without workers everything runs in-process again. Real `pg_trickle_worker` processes, logging
//! in as roles that hold nothing but `pgtrickle_worker`.

use pg_trickle_e2e::worker::{login_role, Worker};
use pg_trickle_e2e::{cluster, wait_until, TestDb};
use std::time::Duration;

/// This binary's cluster reclaims after 3 s of silence (workers heartbeat every second here).
fn short_reclaim_timeout() {
    cluster().alter_system("ALTER SYSTEM SET pg_trickle.worker_reclaim_timeout = '3s'");
}

/// `t(id, v)` and stream table `st` over it (owned by `owner`), refreshed every second.
fn source_and_stream_table(db: &mut TestDb, owner: &str) {
    db.fresh_role(owner);
    db.exec(SLOW);
    db.exec(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, v int);
         INSERT INTO t SELECT g, g FROM generate_series(1, 20) g;
         ALTER TABLE t OWNER TO {owner};
         GRANT CREATE ON SCHEMA public TO {owner};
         SET ROLE {owner};
         SELECT pgtrickle.create_stream_table('st', 'SELECT id, slow(v) AS v FROM t', '1s', 'DIFFERENTIAL');
         RESET ROLE;"
    ));
    assert!(
        db.scheduler_pid().is_some(),
        "no coordinator for the database"
    );
}

/// Database `name` with `st` (owned by `<name>_owner`) and the login role `<name>_w` for workers.
fn database_for_workers(name: &str) -> TestDb {
    short_reclaim_timeout();
    let mut db = TestDb::new(name);
    source_and_stream_table(&mut db, &format!("{name}_owner"));
    login_role(&mut db, &format!("{name}_w"));
    db
}

const QUERY: &str = "SELECT id, slow(v) AS v FROM t";

/// `slow(v)` takes 3 s for v = 999 and is `v` otherwise, so a test can keep a refresh running.
const SLOW: &str = "CREATE FUNCTION slow(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
    $$ BEGIN IF x = 999 THEN PERFORM pg_sleep(3); END IF; RETURN x; END $$";

/// Successful refreshes of `st` since `since` (a `clock_timestamp()` text): (action, executed_by).
fn refreshes_since(db: &mut TestDb, since: &str) -> Vec<(String, String)> {
    db.rows(
        "SELECT h.action, h.executed_by FROM pgtrickle.pgt_refresh_history h
           JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
          WHERE s.pgt_relid = 'st'::regclass AND h.status = 'SUCCESS' AND h.started_at >= $1::text::timestamptz
          ORDER BY h.refresh_id",
        &[&since],
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn now(db: &mut TestDb) -> String {
    db.value("SELECT clock_timestamp()::text")
}

/// Waits until `st` has a successful refresh since `since` executed by `executor` (a LIKE pattern).
fn wait_for_refresh_by(db: &mut TestDb, since: &str, executor: &str, log: &str) {
    let pattern = executor.replace('%', "");
    let found = wait_until(Duration::from_secs(30), || {
        refreshes_since(db, since).iter().any(|(action, by)| {
            action != "NO_DATA"
                && if executor.ends_with('%') {
                    by.starts_with(&pattern)
                } else {
                    by == executor
                }
        })
    });
    assert!(
        found,
        "no refresh by {executor} since {since}: {:?}\nworker log:\n{log}",
        refreshes_since(db, since)
    );
}

/// Waits until the coordinator hands this worker refreshes (it counts live workers every 5 s):
/// changes row 20 until a refresh by the worker applied one.
fn wait_until_worker_refreshes(db: &mut TestDb, worker_id: &str, log: impl Fn() -> String) {
    let by = format!("external worker {worker_id}");
    let since = now(db);
    let handed = wait_until(Duration::from_secs(30), || {
        db.exec("UPDATE t SET v = v + 1 WHERE id = 20");
        std::thread::sleep(Duration::from_millis(500));
        refreshes_since(db, &since)
            .iter()
            .any(|(action, b)| action == "DIFFERENTIAL" && *b == by)
    });
    assert!(
        handed,
        "worker {worker_id} was never handed a refresh: {:?}\nworker log:\n{}",
        refreshes_since(db, &since),
        log()
    );
}

/// Whether the worker's working session is inside `worker_refresh` now.
fn refreshing(db: &mut TestDb, role: &str) -> bool {
    let n: i64 = db.value(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}' AND state = 'active' AND query LIKE '%worker_refresh%'"
    ));
    n > 0
}

#[test]
fn a_worker_refreshes_due_stream_tables_and_without_workers_the_coordinator_does() {
    let mut db = database_for_workers("wjobs_flow");
    // A default the worker's refresh transaction must not inherit (its fence re-reads a row its
    // heartbeats update meanwhile).
    db.exec("ALTER ROLE wjobs_flow_w SET default_transaction_isolation = 'repeatable read'");
    let mut w = Worker::start(&db, "wjobs_flow_w", &[]);
    let id = w.registered_id(&mut db);
    wait_until_worker_refreshes(&mut db, &id, || w.log());

    let since = now(&mut db);
    db.exec("UPDATE t SET v = v + 100 WHERE id <= 5; DELETE FROM t WHERE id = 19; INSERT INTO t VALUES (21, 21)");
    wait_for_refresh_by(&mut db, &since, &format!("external worker {id}"), &w.log());
    db.assert_matches_query("st", QUERY);
    let log = w.log();
    assert!(
        log.contains("refreshed")
            && log.contains("stream_table=public.st")
            && log.contains("action=DIFFERENTIAL"),
        "{log}"
    );
    // A refresh longer than a heartbeat (slow(999) takes 3 s): the job row is touched meanwhile.
    let since = now(&mut db);
    db.exec("UPDATE t SET v = 999 WHERE id = 3");
    wait_for_refresh_by(&mut db, &since, &format!("external worker {id}"), &w.log());
    db.assert_matches_query("st", QUERY);
    // The worker ran it as the stream table's owner, with rights on nothing of users' own.
    let denied = db.error("SET ROLE wjobs_flow_w; SELECT count(*) FROM t");
    db.exec("RESET ROLE");
    assert_eq!(denied.code, "42501", "{denied:?}");

    // A clean stop: refreshes return to the coordinator's own workers without anyone's help.
    w.signal("TERM");
    assert_eq!(
        w.wait_exit(Duration::from_secs(15)),
        Some(0),
        "log:\n{}",
        w.log()
    );
    let since = now(&mut db);
    db.exec("UPDATE t SET v = v + 1000 WHERE id = 7");
    wait_for_refresh_by(&mut db, &since, "refresh worker %", "");
    db.assert_matches_query("st", QUERY);
    let outstanding: i64 = db.value(
        "SELECT count(*) FROM pgtrickle.pgt_worker_jobs WHERE state IN ('queued', 'running')",
    );
    assert_eq!(outstanding, 0);
}

/// An external worker's refresh is held to the database's `pg_trickle.refresh_timeout` as the
/// server's own are: the statement_timeout of each job's transaction. A refresh that takes longer
/// fails, is recorded as the worker's failure, and the worker goes on.
#[test]
fn a_workers_refresh_is_held_to_refresh_timeout() {
    let mut db = database_for_workers("wjobs_timeout");
    db.exec("ALTER DATABASE wjobs_timeout SET pg_trickle.refresh_timeout = '1s'");
    let mut w = Worker::start(&db, "wjobs_timeout_w", &[]);
    let id = w.registered_id(&mut db);
    wait_until_worker_refreshes(&mut db, &id, || w.log());

    // slow(999) takes 3 s.
    db.exec("UPDATE t SET v = 999 WHERE id = 3");
    let by = format!("external worker {id}");
    let failed = wait_until(Duration::from_secs(30), || {
        db.value::<i64>(&format!(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history
              WHERE status = 'FAILED' AND executed_by = '{by}'
                AND error_message LIKE 'canceling statement due to statement timeout%'"
        )) > 0
    });
    assert!(
        failed,
        "no refresh of the worker's timed out; log:\n{}",
        w.log()
    );
    // Every attempt at this batch evaluates slow(999) again, so it keeps failing (and backs off)
    // until the limit is raised; the worker itself carries on, heartbeating.
    let (status, errors): (String, i32) = {
        let row = db.rows(
            "SELECT status, consecutive_errors FROM pgtrickle.stream_tables WHERE table_name = 'st'",
            &[],
        );
        (row[0].get(0), row[0].get(1))
    };
    assert_eq!((status.as_str(), errors >= 1), ("ACTIVE", true));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(w.active_id(&mut db), Some(id), "log:\n{}", w.log());
    w.signal("TERM");
    assert_eq!(
        w.wait_exit(Duration::from_secs(15)),
        Some(0),
        "log:\n{}",
        w.log()
    );
}

#[test]
fn a_worker_frozen_mid_refresh_is_fenced_out_and_the_change_applied_once() {
    let mut db = database_for_workers("wjobs_frozen");
    let w = Worker::start(&db, "wjobs_frozen_w", &[]);
    let first = w.registered_id(&mut db);
    wait_until_worker_refreshes(&mut db, &first, || w.log());

    // A refresh that takes 3 s; the worker freezes while the server runs it, its transaction open.
    let since = now(&mut db);
    db.exec("UPDATE t SET v = 999 WHERE id = 1");
    assert!(
        wait_until(Duration::from_secs(20), || refreshing(
            &mut db,
            "wjobs_frozen_w"
        )),
        "the worker never started the refresh; log:\n{}",
        w.log()
    );
    w.signal("STOP");
    // Past the reclaim timeout the coordinator ends the worker's session and refreshes in-process.
    wait_for_refresh_by(&mut db, &since, "refresh worker %", "");
    let (state, attempt): (String, i32) = {
        let r = db.rows(
            "SELECT state, attempt FROM pgtrickle.pgt_worker_jobs ORDER BY job_id DESC LIMIT 1",
            &[],
        );
        (r[0].get(0), r[0].get(1))
    };
    assert_eq!((state.as_str(), attempt), ("reclaimed", 2));
    w.signal("CONT");

    // Awake, its commit is refused (its session is gone); it reconnects as a new worker and carries on.
    assert!(
        wait_until(Duration::from_secs(20), || w
            .active_id(&mut db)
            .is_some_and(|id| id != first)),
        "did not register again; log:\n{}",
        w.log()
    );
    let log = w.log();
    assert!(log.contains("not committed"), "{log}");
    let by_frozen: Vec<_> = refreshes_since(&mut db, &since)
        .into_iter()
        .filter(|(_, by)| by.ends_with(&first))
        .collect();
    assert!(
        by_frozen.is_empty(),
        "the frozen worker's refresh committed: {by_frozen:?}"
    );
    db.assert_matches_query("st", QUERY);
    let second = w.active_id(&mut db).unwrap();
    db.exec("UPDATE t SET v = 5 WHERE id = 1");
    wait_until_worker_refreshes(&mut db, &second, || w.log());
    // That wait's last pokes came after the refresh it saw had begun: the next refreshes apply them.
    let caught_up = wait_until(Duration::from_secs(30), || {
        db.multiset_diff("st", QUERY).is_empty()
    });
    assert!(
        caught_up,
        "st never caught up with its query: {:?}\nworker log:\n{}",
        db.multiset_diff("st", QUERY),
        w.log()
    );
}

#[test]
fn workers_killed_mid_refresh_again_and_again_lose_nothing_and_apply_nothing_twice() {
    let mut db = database_for_workers("wjobs_killed");
    for round in 0..3 {
        let w = Worker::start(&db, "wjobs_killed_w", &[]);
        let id = w.registered_id(&mut db);
        wait_until_worker_refreshes(&mut db, &id, || w.log());

        let since = now(&mut db);
        db.exec(&format!(
            "UPDATE t SET v = 999 WHERE id = {}; INSERT INTO t VALUES ({}, 1)",
            2 + round,
            100 + round
        ));
        assert!(
            wait_until(Duration::from_secs(20), || refreshing(
                &mut db,
                "wjobs_killed_w"
            )),
            "round {round}: no refresh started; log:\n{}",
            w.log()
        );
        w.signal("KILL");
        wait_for_refresh_by(&mut db, &since, "refresh worker %", "");
        db.assert_matches_query("st", QUERY);
        drop(w);
    }
    let reclaimed: i64 =
        db.value("SELECT count(*) FROM pgtrickle.pgt_worker_jobs WHERE state = 'reclaimed'");
    assert_eq!(reclaimed, 3);
}

#[test]
fn a_refresh_commits_only_while_its_attempt_is_current() {
    let mut db = TestDb::new("wjobs_fence");
    db.exec(SLOW);
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1);
         SELECT pgtrickle.create_stream_table('st', 'SELECT id, slow(v) AS v FROM t', '1d', 'DIFFERENTIAL');",
    );
    login_role(&mut db, "wjobs_fence_w");
    let mut worker = pg_trickle_e2e::cluster().try_connect(&db.name).unwrap();
    worker.batch_execute("SET ROLE wjobs_fence_w").unwrap();
    let id = "8d0c1f9e-5c4e-4a53-9d76-2f4f3ad2b001";
    worker
        .batch_execute(&format!(
            "SELECT pgtrickle.worker_register('{id}', 'test', 1, NULL)"
        ))
        .unwrap();
    // A job queued as the coordinator would, claimed by the worker: attempt 1.
    db.exec("INSERT INTO pgtrickle.pgt_worker_jobs (pgt_id) SELECT pgt_id FROM pgtrickle.pgt_stream_tables");
    let claimed = worker
        .query_one(
            &format!("SELECT job_id, attempt FROM pgtrickle.worker_claim('{id}')"),
            &[],
        )
        .unwrap();
    let (job, attempt): (i64, i32) = (claimed.get(0), claimed.get(1));
    assert_eq!(attempt, 1);
    db.exec("UPDATE t SET v = 2");

    // Reclaimed before the worker's refresh: refused at once, nothing applied.
    db.exec(&format!("UPDATE pgtrickle.pgt_worker_jobs SET state = 'reclaimed', attempt = attempt + 1 WHERE job_id = {job}"));
    let refused = worker
        .batch_execute(&format!(
            "SELECT * FROM pgtrickle.worker_refresh('{id}', {job}, 1)"
        ))
        .unwrap_err();
    let e = pg_trickle_e2e::db::as_db_error(&refused).unwrap();
    assert_eq!(e.code, "55000", "{e:?}");
    assert!(e.message.contains("is not worker"), "{e:?}");
    let failed: bool = worker
        .query_one(
            &format!("SELECT pgtrickle.worker_fail('{id}', {job}, 1, 'x')"),
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!failed, "a superseded attempt recorded a failure");
    let v: i32 = db.value("SELECT v FROM st");
    assert_eq!(v, 1);

    // Reclaimed while the worker's refresh transaction is open: its refresh may not commit.
    db.exec(&format!(
        "UPDATE pgtrickle.pgt_worker_jobs SET state = 'queued' WHERE job_id = {job}"
    ));
    let attempt: i32 = worker
        .query_one(
            &format!("SELECT attempt FROM pgtrickle.worker_claim('{id}')"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(attempt, 3);
    worker.batch_execute("BEGIN").unwrap();
    worker
        .batch_execute(&format!(
            "SELECT * FROM pgtrickle.worker_refresh('{id}', {job}, {attempt})"
        ))
        .unwrap();
    // The coordinator's reclaim skips the row the open refresh holds (and ends that session, see
    // a_worker_frozen_mid_refresh_...); the open refresh then commits the job as done, exactly once.
    let skipped: i64 = db.value(&format!(
        "WITH r AS (UPDATE pgtrickle.pgt_worker_jobs SET state = 'reclaimed', attempt = attempt + 1
                     WHERE job_id IN (SELECT job_id FROM pgtrickle.pgt_worker_jobs WHERE job_id = {job} FOR UPDATE SKIP LOCKED)
                    RETURNING 1) SELECT count(*) FROM r"
    ));
    assert_eq!(skipped, 0);
    worker.batch_execute("COMMIT").unwrap();
    let (v, state): (i32, String) = {
        let r = db.rows(&format!("SELECT (SELECT v FROM st), (SELECT state FROM pgtrickle.pgt_worker_jobs WHERE job_id = {job})"), &[]);
        (r[0].get(0), r[0].get(1))
    };
    assert_eq!((v, state.as_str()), (2, "done"));
    let by: String = db.value(
        "SELECT executed_by FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1",
    );
    assert_eq!(by, format!("external worker {id}"));

    // Reclaimed and committed while the worker's refresh runs (slow(999) takes 3 s): the refresh's
    // own transaction finds its attempt superseded when it marks the job done, and rolls back.
    db.exec("UPDATE t SET v = 999");
    db.exec("INSERT INTO pgtrickle.pgt_worker_jobs (pgt_id) SELECT pgt_id FROM pgtrickle.pgt_stream_tables");
    let claimed = worker
        .query_one(
            &format!("SELECT job_id, attempt FROM pgtrickle.worker_claim('{id}')"),
            &[],
        )
        .unwrap();
    let (job, attempt): (i64, i32) = (claimed.get(0), claimed.get(1));
    let late = std::thread::spawn(move || {
        worker.batch_execute(&format!(
            "BEGIN; SELECT * FROM pgtrickle.worker_refresh('{id}', {job}, {attempt}); COMMIT"
        ))
    });
    std::thread::sleep(Duration::from_millis(1000));
    db.exec(&format!("UPDATE pgtrickle.pgt_worker_jobs SET state = 'reclaimed', attempt = attempt + 1 WHERE job_id = {job}"));
    let refused = late.join().unwrap().unwrap_err();
    let e = pg_trickle_e2e::db::as_db_error(&refused).unwrap();
    assert_eq!(e.code, "55000", "{e:?}");
    assert!(
        e.message.contains("was reclaimed while this refresh ran"),
        "{e:?}"
    );
    let v: i32 = db.value("SELECT v FROM st");
    assert_eq!(v, 2, "the superseded refresh was applied");
    db.exec("SELECT pgtrickle.refresh_stream_table('st')");
    db.assert_matches_query("st", QUERY);

    // NULL arguments are refused clearly.
    let e = db.error(&format!(
        "SELECT * FROM pgtrickle.worker_refresh('{id}', NULL, 1)"
    ));
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("22004", "job_id must not be NULL")
    );
    let e = db.error(&format!(
        "SELECT * FROM pgtrickle.worker_offload('{id}', 1, NULL)"
    ));
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("22004", "attempt must not be NULL")
    );
    let e = db.error(&format!(
        "SELECT * FROM pgtrickle.worker_offload_apply('{id}', 1, 1, NULL)"
    ));
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("22004", "changes must not be NULL")
    );
    let e = db.error("SELECT pgtrickle.worker_release(NULL, 1)");
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("22004", "worker_id must not be NULL")
    );
    // The clean-up after a commit: for registered, active workers only.
    let fresh = "8d0c1f9e-5c4e-4a53-9d76-2f4f3ad2b0ff";
    db.exec(&format!(
        "SELECT pgtrickle.worker_register('{fresh}', 'test', 2, NULL)"
    ));
    let released: bool = db.value(&format!(
        "SELECT pgtrickle.worker_release('{fresh}', (SELECT pgt_id FROM pgtrickle.pgt_stream_tables LIMIT 1))"
    ));
    assert!(released, "worker {fresh} is registered and active");
    let released: bool = db.value(
        "SELECT pgtrickle.worker_release(gen_random_uuid(), (SELECT pgt_id FROM pgtrickle.pgt_stream_tables LIMIT 1))",
    );
    assert!(!released, "an unknown worker");
    // A superseded attempt is refused by the offload as by the refresh, and an apply needs an
    // offload of its job in its own transaction.
    let e = db.error(&format!(
        "SELECT * FROM pgtrickle.worker_offload('{id}', {job}, 1)"
    ));
    assert_eq!(e.code, "55000", "{e:?}");
    let e = db.error(&format!(
        "SELECT * FROM pgtrickle.worker_offload_apply('{id}', {job}, 2, 0)"
    ));
    assert_eq!(e.code, "55000", "{e:?}");
    assert!(
        e.message
            .contains("has no offloaded batch in this transaction"),
        "{e:?}"
    );
}

#[test]
fn the_queue_keda_scales_on_is_readable_by_a_pg_monitor_role_alone() {
    let keda = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kubernetes/keda.yaml"
    ))
    .unwrap();
    let query = keda
        .lines()
        .find_map(|l| l.trim().strip_prefix("query: \""))
        .and_then(|q| q.strip_suffix('"'))
        .expect("deploy/kubernetes/keda.yaml has a query");
    let mut db = TestDb::new("wjobs_keda");
    db.fresh_role("wjobs_keda_monitor");
    db.exec("GRANT pg_monitor TO wjobs_keda_monitor");
    let mut keda_session = cluster().try_connect(&db.name).unwrap();
    keda_session
        .batch_execute("SET ROLE wjobs_keda_monitor")
        .unwrap();
    // It runs with pg_monitor's rights alone (a queued job cannot be kept queued here: without a live
    // worker the coordinator takes queued jobs back at once).
    let queued: i64 = keda_session.query_one(query, &[]).unwrap().get(0);
    assert_eq!(queued, 0);
}
