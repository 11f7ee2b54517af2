//! The refresh worker pool: independent stream tables refresh in parallel in refresh workers, a
//! downstream one only after its upstream's refresh committed; the pool grows
//! with its queue, shrinks when idle, stays small while the CPU is busy, survives a worker killed
//! mid-refresh and a lack of background-worker slots. The pool's settings are the cluster's, so the
//! tests of this binary take turns.

use pg_trickle_e2e::{cluster, wait_until, TestDb};
use std::sync::Mutex;
use std::time::Duration;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn defaults() {
    cluster().alter_system(
        "ALTER SYSTEM RESET pg_trickle.min_workers; ALTER SYSTEM RESET pg_trickle.max_workers;
         ALTER SYSTEM RESET pg_trickle.adaptive_workers;",
    );
}

/// A database whose stream tables' refreshes each take `seconds` (a FULL refresh calls `slow()`).
fn slow_db(name: &str, seconds: f64) -> TestDb {
    let mut db = TestDb::new(name);
    db.exec(&format!(
        "CREATE TABLE src (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO src SELECT g, g FROM generate_series(1, 10) g;
         CREATE FUNCTION slow() RETURNS int LANGUAGE sql AS 'SELECT 1 FROM pg_sleep({seconds})';"
    ));
    db
}

fn status(db: &mut TestDb, column: &str) -> i32 {
    db.value::<i32>(&format!(
        "SELECT coalesce((SELECT {column}::int FROM pgtrickle.pool_status), 0)"
    ))
}

#[test]
fn independent_stream_tables_refresh_in_parallel_and_the_pool_follows_its_queue() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    defaults();
    let mut db = slow_db("pool_parallel", 0.4);
    for i in 0..6 {
        db.exec(&format!("SELECT pgtrickle.create_stream_table('s{i}', 'SELECT sum(v) + slow() AS total FROM src', '1s', 'FULL')"));
    }
    // Six due every second, each taking 0.4 s: the queue is deeper than 2x one worker, so the pool
    // grows (one worker per 3 agreeing ticks).
    assert!(
        wait_until(Duration::from_secs(30), || status(&mut db, "target_workers") >= 2),
        "the pool did not grow: {:?}",
        db.rows("SELECT decided_at::text || ' ' || target_workers || ' ' || reason FROM pgtrickle.pool_decisions", &[])
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    );
    assert!(db.value::<bool>("SELECT count(*) > 0 FROM pgtrickle.pool_decisions WHERE changed AND reason LIKE 'queue above 2x workers%'"));
    // Refreshes of different stream tables overlapped in time, in refresh workers named in
    // pg_stat_activity.
    assert!(wait_until(Duration::from_secs(20), || {
        db.value::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pgtrickle.pgt_refresh_history a JOIN pgtrickle.pgt_refresh_history b
                              ON a.pgt_id < b.pgt_id AND a.started_at < b.finished_at AND b.started_at < a.finished_at
                             WHERE a.initiated_by = 'SCHEDULER' AND b.initiated_by = 'SCHEDULER')",
        )
    }));
    assert!(wait_until(Duration::from_secs(10), || {
        db.value::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pg_trickle refresh worker'
                              AND datname = current_database() AND query ~ '^refresh stream table public.s[0-5]$')",
        )
    }));
    assert_eq!(
        db.value::<i64>(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE status <> 'SUCCESS'"
        ),
        0
    );

    // Nothing due any more: all idle, the pool shrinks back to min_workers (1).
    db.exec("SELECT pgtrickle.alter_stream_table('s' || i, schedule => '1h') FROM generate_series(0, 5) i");
    assert!(wait_until(Duration::from_secs(30), || status(
        &mut db,
        "target_workers"
    ) == 1
        && status(&mut db, "workers") == 1));
    // (On a machine busy with other work the CPU rule may shrink it first: that is a busy CPU, measured.)
    assert!(db.value::<bool>(
        "SELECT count(*) > 0 FROM pgtrickle.pool_decisions
          WHERE changed AND (reason LIKE 'all workers idle%' OR (reason LIKE 'cpu above 70%' AND cpu_percent > 70))"
    ));
    // With no stream table to refresh at all, no worker waits for work.
    db.exec("SELECT pgtrickle.alter_stream_table('s' || i, status => 'SUSPENDED') FROM generate_series(0, 5) i");
    assert!(wait_until(Duration::from_secs(30), || status(
        &mut db, "workers"
    ) == 0));
}

#[test]
fn a_downstream_stream_table_refreshes_after_its_upstream_in_every_round() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    cluster().alter_system("ALTER SYSTEM SET pg_trickle.adaptive_workers = off; ALTER SYSTEM SET pg_trickle.max_workers = 4;");
    let mut db = slow_db("pool_dag", 0.2);
    db.exec("SELECT pgtrickle.create_stream_table('up', 'SELECT src.id, src.v + s.x - 1 AS v FROM src, (SELECT slow() AS x) s', '1s', 'FULL')");
    db.exec("SELECT pgtrickle.create_stream_table('other', 'SELECT count(*) + slow() AS n FROM src', '1s', 'FULL')");
    db.exec("SELECT pgtrickle.create_stream_table('down', 'SELECT sum(v) AS total FROM up', '1s', 'DIFFERENTIAL')");
    for round in 0..4 {
        db.exec(&format!(
            "UPDATE src SET v = v + 1 WHERE id = {}",
            round + 1
        ));
        std::thread::sleep(Duration::from_millis(1200));
    }
    // Fixed pool: max_workers run.
    assert!(wait_until(Duration::from_secs(10), || status(
        &mut db, "workers"
    ) == 4));
    assert_eq!(
        db.value::<String>("SELECT reason FROM pgtrickle.pool_status"),
        "fixed: adaptive_workers is off"
    );
    // Every scheduled refresh of `down` started after the refresh of `up` that preceded it ended.
    let rows = db.rows(
        "SELECT d.started_at::text, (SELECT max(u.finished_at) FROM pgtrickle.pgt_refresh_history u
                                       WHERE u.pgt_id = 1 AND u.started_at < d.started_at)::text,
                (SELECT bool_and(u.finished_at <= d.started_at) FROM pgtrickle.pgt_refresh_history u
                  WHERE u.pgt_id = 1 AND u.started_at < d.started_at) AS ordered
           FROM pgtrickle.pgt_refresh_history d WHERE d.pgt_id = 3 AND d.initiated_by = 'SCHEDULER'",
        &[],
    );
    assert!(
        rows.len() >= 3,
        "too few scheduled refreshes of down: {}",
        rows.len()
    );
    for r in &rows {
        assert!(
            r.get::<_, bool>(2),
            "down refreshed at {} before up finished ({:?})",
            r.get::<_, String>(0),
            r.get::<_, Option<String>>(1)
        );
    }
    assert!(wait_until(Duration::from_secs(15), || db
        .multiset_diff("down", "SELECT sum(v) AS total FROM src")
        .is_empty()));
    db.exec("SELECT pgtrickle.alter_stream_table(t, status => 'SUSPENDED') FROM unnest(ARRAY['up', 'other', 'down']) t");
    defaults();
}

/// The pool shares itself among the stream tables' owners: one role's four slow stream tables keep
/// the queue full (a refresh takes 2 s, each is due every second, one worker), yet another role's
/// stream table, queued behind them, is the next one a worker takes. (First in, first out, it waited
/// for the three queued before it.)
#[test]
fn one_roles_stream_tables_do_not_hold_another_roles_behind_them() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    cluster().alter_system(
        "ALTER SYSTEM SET pg_trickle.adaptive_workers = off; ALTER SYSTEM SET pg_trickle.max_workers = 1;",
    );
    let mut db = slow_db("pool_fair", 2.0);
    let (hog, other) = ("pool_fair_hog", "pool_fair_other");
    for role in [hog, other] {
        db.fresh_role(role);
    }
    db.exec(&format!(
        "CREATE TABLE quiet (v int NOT NULL);
         GRANT CREATE ON SCHEMA public TO {hog}, {other};
         GRANT SELECT ON src TO {hog}; GRANT SELECT, TRIGGER ON quiet TO {other};"
    ));
    db.exec(&format!("SET ROLE {hog}"));
    for i in 0..4 {
        db.exec(&format!("SELECT pgtrickle.create_stream_table('h{i}', 'SELECT sum(v) + slow() AS total FROM src', '1s', 'FULL')"));
    }
    db.exec(&format!("SET ROLE {other}"));
    db.exec("SELECT pgtrickle.create_stream_table('b', 'SELECT count(*) AS n FROM quiet', '1s', 'DIFFERENTIAL')");
    db.exec("RESET ROLE");
    // The hog's stream tables take turns in the one worker.
    assert!(wait_until(Duration::from_secs(30), || {
        db.value::<i64>(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE initiated_by = 'SCHEDULER'",
        ) >= 3
    }));
    let changed_at: String = db.value("SELECT clock_timestamp()::text");
    db.exec("INSERT INTO quiet VALUES (1)");
    assert!(wait_until(Duration::from_secs(30), || db
        .multiset_diff("b", "SELECT count(*) AS n FROM quiet")
        .is_empty()));
    // Started after the change, before b's refresh: the one that was starting as b was queued (a
    // tick may pass first), at most; first in, first out, the three queued before b as well.
    let hog_refreshes_first: i64 = db.value(&format!(
        "SELECT count(*) FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.stream_tables s USING (pgt_id)
          WHERE s.table_name LIKE 'h%' AND h.started_at > '{changed_at}'
            AND h.started_at < (SELECT min(b.started_at) FROM pgtrickle.pgt_refresh_history b
                                  JOIN pgtrickle.stream_tables t USING (pgt_id)
                                 WHERE t.table_name = 'b' AND b.initiated_by = 'SCHEDULER'
                                   AND b.started_at > '{changed_at}')"
    ));
    assert!(
        hog_refreshes_first <= 1,
        "{hog_refreshes_first} of {hog}'s refreshes went first"
    );
    db.exec("SELECT pgtrickle.alter_stream_table(t, status => 'SUSPENDED') FROM unnest(ARRAY['h0', 'h1', 'h2', 'h3', 'b']) t");
    defaults();
}

#[test]
fn a_refresh_worker_killed_mid_refresh_loses_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    defaults();
    let mut db = slow_db("pool_kill", 3.0);
    db.exec("SELECT pgtrickle.create_stream_table('slow_total', 'SELECT sum(v) + slow() AS total FROM src', '1s', 'FULL')");
    db.exec("SELECT pgtrickle.create_stream_table('fast', 'SELECT id, v FROM src', '1s', 'DIFFERENTIAL')");
    db.exec("UPDATE src SET v = v * 10");
    let sql = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_trickle refresh worker' AND query = 'refresh stream table public.slow_total'";
    let mut victim = None;
    assert!(wait_until(Duration::from_secs(20), || {
        victim = db.rows(sql, &[]).first().map(|r| r.get::<_, i32>(0));
        victim.is_some()
    }));
    let lost_before = status(&mut db, "workers_lost");
    assert!(db.value::<bool>(&format!("SELECT pg_terminate_backend({})", victim.unwrap())));
    // The coordinator notices, records the failure, starts another worker, and the next refresh is exact.
    assert!(wait_until(Duration::from_secs(20), || {
        db.value::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pgtrickle.pgt_refresh_history WHERE pgt_id = 1 AND status = 'FAILED'
                              AND error_message LIKE 'the refresh worker running it exited%')",
        )
    }));
    assert!(status(&mut db, "workers_lost") > lost_before);
    db.exec("UPDATE src SET v = v + 1 WHERE id = 1");
    assert!(wait_until(Duration::from_secs(30), || {
        db.multiset_diff("slow_total", "SELECT sum(v) + 1 AS total FROM src")
            .is_empty()
            && db.multiset_diff("fast", "SELECT id, v FROM src").is_empty()
    }));
    assert!(wait_until(Duration::from_secs(10), || status(
        &mut db, "workers"
    ) >= 1));
    db.exec("SELECT pgtrickle.alter_stream_table(t, status => 'SUSPENDED') FROM unnest(ARRAY['slow_total', 'fast']) t");
}

#[test]
fn a_busy_cpu_keeps_the_pool_small() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    defaults();
    let mut db = slow_db("pool_cpu", 0.3);
    for i in 0..6 {
        db.exec(&format!("SELECT pgtrickle.create_stream_table('c{i}', 'SELECT sum(v) + slow() AS total FROM src', '1s', 'FULL')"));
    }
    // Burn every CPU of the machine for a bounded time (statement_timeout), from other sessions.
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let burners: Vec<_> = (0..cpus)
        .map(|_| {
            let conninfo = db.conninfo();
            std::thread::spawn(move || {
                let mut c = postgres::Client::connect(&conninfo, postgres::NoTls).unwrap();
                let _ = c.batch_execute("SET statement_timeout = '12s'; SELECT count(*) FROM generate_series(1, 10000000000)");
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(10));
    let decisions = db.rows(
        "SELECT target_workers, reason, cpu_percent FROM pgtrickle.pool_decisions",
        &[],
    );
    for b in burners {
        b.join().unwrap();
    }
    // A queue that would grow the pool, but the CPU was busy: the pool stayed at min_workers.
    let busy = decisions
        .iter()
        .filter(|r| r.get::<_, String>(1).starts_with("cpu above 70%"))
        .count();
    assert!(
        busy > 0,
        "no tick saw the CPU busy: {:?}",
        decisions
            .iter()
            .map(|r| r.get::<_, Option<f64>>(2))
            .collect::<Vec<_>>()
    );
    assert!(
        decisions.iter().all(|r| r.get::<_, i32>(0) <= 1),
        "the pool grew while the CPU was busy"
    );
    db.exec("SELECT pgtrickle.alter_stream_table('c' || i, status => 'SUSPENDED') FROM generate_series(0, 5) i");
}

#[test]
fn without_free_background_worker_slots_the_pool_uses_what_it_has() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // 64 wanted, max_worker_processes = 64: the pool is clamped (a WARNING), then runs out of slots
    // (another WARNING, once) and keeps refreshing with the workers it got.
    cluster().alter_system("ALTER SYSTEM SET pg_trickle.adaptive_workers = off; ALTER SYSTEM SET pg_trickle.max_workers = 64;");
    let mut db = slow_db("pool_slots", 0.0);
    db.exec(
        "SELECT pgtrickle.create_stream_table('t', 'SELECT id, v FROM src', '1s', 'DIFFERENTIAL')",
    );
    assert!(wait_until(Duration::from_secs(30), || status(
        &mut db,
        "worker_start_failures"
    ) > 0));
    assert_eq!(status(&mut db, "max_workers"), 62);
    db.exec("UPDATE src SET v = -v");
    assert!(wait_until(Duration::from_secs(20), || db
        .multiset_diff("t", "SELECT id, v FROM src")
        .is_empty()));
    let log = cluster().log();
    assert!(
        log.contains(
            "pg_trickle.max_workers = 64 is more than max_worker_processes = 64 leaves free"
        ),
        "no clamp warning"
    );
    assert_eq!(
        log.matches(
            "no background worker slot free for a refresh worker of database \"pool_slots\""
        )
        .count(),
        1,
        "the lack of slots is logged once"
    );
    db.exec("SELECT pgtrickle.alter_stream_table('t', status => 'SUSPENDED')");
    defaults();
    assert!(wait_until(Duration::from_secs(30), || status(
        &mut db, "workers"
    ) == 0));
}

#[test]
fn idle_stream_tables_cost_no_refresh_until_a_source_changes() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    defaults();
    let mut db = slow_db("pool_idle", 0.0);
    db.exec("CREATE TABLE other (id int PRIMARY KEY, v int)");
    for i in 0..10 {
        db.exec(&format!("SELECT pgtrickle.create_stream_table('idle{i}', 'SELECT id, v FROM src WHERE id % 10 = {i}', '1s', 'DIFFERENTIAL')"));
    }
    db.exec("SELECT pgtrickle.create_stream_table('on_other', 'SELECT count(*) AS n FROM other', '1s', 'DIFFERENTIAL')");
    // The coordinator refreshes each once (it does not know what happened before it looked), then
    // nothing: no refresh, no history row, no catalog write.
    let scheduled = |db: &mut TestDb| {
        db.value::<String>(
            "SELECT count(*) || ' ' || coalesce(max(refresh_id), 0) FROM pgtrickle.pgt_refresh_history WHERE initiated_by = 'SCHEDULER'",
        )
    };
    std::thread::sleep(Duration::from_secs(3));
    let before = scheduled(&mut db);
    let attempts: String = db.value("SELECT string_agg(last_attempt_at::text, ',' ORDER BY pgt_id) FROM pgtrickle.pgt_stream_tables");
    // Statements that change no row fire the capture triggers, but wake nothing.
    db.exec("UPDATE src SET v = v WHERE false; DELETE FROM src WHERE id < 0; INSERT INTO src SELECT * FROM src WHERE false;");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        scheduled(&mut db),
        before,
        "idle stream tables were refreshed"
    );
    assert_eq!(db.value::<String>("SELECT string_agg(last_attempt_at::text, ',' ORDER BY pgt_id) FROM pgtrickle.pgt_stream_tables"), attempts);

    // One change to one source: its stream table (and only those reading that source) within one
    // schedule plus a tick.
    db.exec("INSERT INTO other VALUES (1, 1)");
    let changed = std::time::Instant::now();
    assert!(wait_until(Duration::from_secs(5), || db
        .multiset_diff("on_other", "SELECT count(*) AS n FROM other")
        .is_empty()));
    assert!(
        changed.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        changed.elapsed()
    );
    assert_eq!(
        db.value::<i64>(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
              WHERE h.initiated_by = 'SCHEDULER' AND s.pgt_relid::regclass::text LIKE 'idle%'
                AND h.refresh_id > split_part($$BEFORE$$, ' ', 2)::bigint"
                .replace("$$BEFORE$$", &format!("'{before}'"))
                .as_str()
        ),
        0,
        "stream tables over an unchanged source were refreshed"
    );
    // A write inside a transaction that has not committed yet is not waited for; at its commit the
    // stream table follows.
    let mut writer = db.connect();
    writer
        .batch_execute("BEGIN; UPDATE src SET v = v + 100 WHERE id = 3")
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    writer.batch_execute("COMMIT").unwrap();
    assert!(wait_until(Duration::from_secs(5), || db
        .multiset_diff("idle3", "SELECT id, v FROM src WHERE id % 10 = 3")
        .is_empty()));

    // A restarted coordinator knows nothing: every stream table refreshes once, then idles again.
    let pid = db.scheduler_pid().unwrap();
    let before_restart: i64 =
        db.value("SELECT coalesce(max(refresh_id), 0) FROM pgtrickle.pgt_refresh_history");
    db.exec(&format!("SELECT pg_terminate_backend({pid})"));
    assert!(wait_until(Duration::from_secs(20), || {
        db.value::<i64>(&format!(
            "SELECT count(DISTINCT pgt_id) FROM pgtrickle.pgt_refresh_history WHERE initiated_by = 'SCHEDULER' AND refresh_id > {before_restart}"
        )) == 11
    }));
    db.exec("SELECT pgtrickle.alter_stream_table(pgt_relid::regclass::text, status => 'SUSPENDED') FROM pgtrickle.pgt_stream_tables");
}

#[test]
fn repeated_failures_back_off_then_stop_in_error_until_reactivated() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    defaults();
    cluster().alter_system("ALTER SYSTEM SET pg_trickle.max_consecutive_errors = 3");
    let mut db = slow_db("pool_failures", 0.0);
    db.exec(
        "CREATE TABLE fail_when (flag bool);
         CREATE FUNCTION checked(x int) RETURNS int LANGUAGE plpgsql AS
           'BEGIN IF EXISTS (SELECT 1 FROM public.fail_when) THEN RAISE EXCEPTION ''told to fail''; END IF; RETURN x; END';",
    );
    db.exec("SELECT pgtrickle.create_stream_table('fragile', 'SELECT id, public.checked(v) AS v FROM src', '100ms', 'FULL')");
    db.exec("INSERT INTO fail_when VALUES (true)");
    assert!(wait_until(Duration::from_secs(30), || {
        db.value::<String>("SELECT status FROM pgtrickle.pgt_stream_tables") == "ERROR"
    }));
    // Three failures, backing off (the schedule doubled per failure: 200 ms, then 400 ms), the last
    // error kept.
    let attempts: Vec<f64> = db
        .rows(
            "SELECT extract(epoch FROM started_at)::float8 FROM pgtrickle.pgt_refresh_history WHERE status = 'FAILED' ORDER BY refresh_id",
            &[],
        )
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(
        attempts[1] - attempts[0] >= 0.195 && attempts[2] - attempts[1] >= 0.395,
        "no backoff: {attempts:?}"
    );
    assert!(db.value::<bool>("SELECT consecutive_errors = 3 AND last_error LIKE '%told to fail%' FROM pgtrickle.pgt_stream_tables"));
    assert!(cluster()
        .log()
        .contains("failed 3 times in a row and is now in status ERROR"));
    // In ERROR nothing more is tried; once the cause is fixed and it is re-activated, it refreshes.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        db.value::<i64>(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE status = 'FAILED'"
        ),
        3
    );
    db.exec("DELETE FROM fail_when; UPDATE src SET v = v + 7 WHERE id = 1;");
    db.exec("SELECT pgtrickle.alter_stream_table('fragile', status => 'ACTIVE')");
    assert!(wait_until(Duration::from_secs(20), || db
        .multiset_diff("fragile", "SELECT id, v FROM src")
        .is_empty()));
    assert_eq!(
        db.value::<i32>("SELECT consecutive_errors FROM pgtrickle.pgt_stream_tables"),
        0
    );
    db.exec("SELECT pgtrickle.alter_stream_table('fragile', status => 'SUSPENDED')");
    cluster().alter_system("ALTER SYSTEM RESET pg_trickle.max_consecutive_errors");
}
