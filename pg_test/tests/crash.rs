//! Crashes in the middle of refreshes: a refresh worker killed with SIGKILL (PostgreSQL resets every
//! process: crash recovery), and `pg_ctl stop -m immediate` during parallel refreshes, then a start.
//! Either way the refreshes' transactions are gone, and when the coordinator starts again it records
//! them as failed ("interrupted") and refreshes again — nothing lost, nothing applied twice, no stream
//! table wedged. And what crash recovery does to unlogged sources, emptying them behind capture's
//! back, is noticed. (Its own binary, the tests taking turns: a crash takes every connection down.)

use pg_trickle_e2e::{cluster, wait_until, TestDb};
use std::sync::Mutex;
use std::time::Duration;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const TOTALS: &str = "SELECT grp, count(*) AS n, sum(v) AS total FROM src GROUP BY grp";

/// A database with `src` (1,000 rows) and `slow()`, which takes 4 s. The test cluster commits
/// asynchronously, so a crash may lose the last commits — among them in-flight marks
/// (docs/OPERATIONS.md); here they are durable, as they are by default.
fn crash_db(name: &str) -> TestDb {
    let mut db = TestDb::new(name);
    db.exec(&format!(
        "ALTER DATABASE {name} SET synchronous_commit = on"
    ));
    db.exec(
        "CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL);
         INSERT INTO src SELECT g, g % 7, g FROM generate_series(1, 1000) g;
         CREATE FUNCTION slow() RETURNS int LANGUAGE sql AS 'SELECT 0 FROM pg_sleep(4)';",
    );
    db
}

#[test]
fn a_refresh_worker_killed_with_sigkill_mid_refresh_loses_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut db = crash_db("crash_kill9");
    db.exec("SELECT pgtrickle.create_stream_table('slow_copy', 'SELECT src.id, src.v + s.x AS v FROM src, (SELECT public.slow() AS x) s', '1s', 'FULL')");
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1s', 'DIFFERENTIAL')"
    ));
    // Changes keep coming while the slow refresh runs.
    db.exec("UPDATE src SET v = v + 1 WHERE id % 10 = 0; DELETE FROM src WHERE id % 97 = 0; INSERT INTO src VALUES (5000, 1, 1)");

    let sql = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_trickle refresh worker' AND query = 'refresh stream table public.slow_copy'";
    let mut victim = None;
    // A worker refreshes it, and the refresh is marked in flight (committed before it starts).
    assert!(wait_until(Duration::from_secs(30), || {
        victim = db.rows(sql, &[]).first().map(|r| r.get::<_, i32>(0));
        victim.is_some() && db.value::<bool>("SELECT refresh_started_at IS NOT NULL FROM pgtrickle.pgt_stream_tables WHERE pgt_id = 1")
    }));
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: signalling a process of the test's own cluster.
    assert_eq!(unsafe { libc::kill(victim.unwrap(), libc::SIGKILL) }, 0);
    drop(db);

    // The server resets and comes back; so do the launcher and the coordinator.
    std::thread::sleep(Duration::from_millis(500));
    assert!(wait_until(Duration::from_secs(60), || cluster()
        .try_connect("crash_kill9")
        .is_ok()));
    let mut db = TestDb::existing("crash_kill9");
    assert!(
        wait_until(Duration::from_secs(60), || {
            db.value::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pgtrickle.pgt_refresh_history WHERE pgt_id = 1 AND status = 'FAILED'
                                  AND error_message LIKE 'interrupted: %')",
            )
        }),
        "the interrupted refresh was not recorded: {:?}",
        db.rows("SELECT status || ' ' || coalesce(error_message, '') FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id", &[])
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    );
    // Every stream table is exact after its next refresh, and keeps refreshing.
    db.exec("UPDATE src SET v = v * 2 WHERE id < 50");
    assert!(wait_until(Duration::from_secs(60), || {
        db.multiset_diff("totals", TOTALS).is_empty()
            && db
                .multiset_diff("slow_copy", "SELECT id, v FROM src")
                .is_empty()
    }));
    assert!(db.value::<bool>("SELECT bool_and(refresh_started_at IS NULL OR status = 'ACTIVE') FROM pgtrickle.pgt_stream_tables"));
    db.exec("SELECT pgtrickle.alter_stream_table(t, status => 'SUSPENDED') FROM unnest(ARRAY['slow_copy', 'totals']) t");
}

#[test]
fn an_immediate_shutdown_during_parallel_refreshes_loses_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    cluster().alter_system("ALTER SYSTEM SET pg_trickle.min_workers = 3");
    let mut db = crash_db("crash_immediate");
    for name in ["slow_a", "slow_b"] {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{name}', 'SELECT src.id, src.v + s.x AS v FROM src, (SELECT public.slow() AS x) s', '1s', 'FULL')"
        ));
    }
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1s', 'DIFFERENTIAL')"
    ));
    db.exec("UPDATE src SET v = v + 1 WHERE id % 10 = 0; DELETE FROM src WHERE id % 97 = 0; INSERT INTO src VALUES (5000, 1, 1)");
    // Both slow ones refreshing at once, in two workers, both marked in flight.
    assert!(wait_until(Duration::from_secs(60), || {
        db.value::<i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_trickle refresh worker'
                AND query IN ('refresh stream table public.slow_a', 'refresh stream table public.slow_b')",
        ) == 2
            && db.value::<i64>(
                "SELECT count(*) FROM pgtrickle.pgt_stream_tables
                  WHERE refresh_started_at IS NOT NULL AND pgt_relid::regclass::text IN ('slow_a', 'slow_b')",
            ) == 2
    }));
    drop(db);
    cluster().restart_immediate();

    let mut db = TestDb::existing("crash_immediate");
    // Both slow ones are recorded; so is `totals` if its short refresh happened to be in flight too.
    assert!(
        wait_until(Duration::from_secs(60), || {
            db.value::<i64>(
                "SELECT count(DISTINCT h.pgt_id) FROM pgtrickle.pgt_refresh_history h
                   JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
                  WHERE h.status = 'FAILED' AND h.error_message LIKE 'interrupted: %'
                    AND s.pgt_relid::regclass::text IN ('slow_a', 'slow_b')",
            ) == 2
        }),
        "interrupted refreshes were not recorded: {:?}",
        db.rows(
            "SELECT s.pgt_relid::regclass::text || ' ' || h.status || ' ' || coalesce(h.error_message, '')
               FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
              ORDER BY h.refresh_id",
            &[]
        )
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
    );
    db.exec("UPDATE src SET v = v * 3 WHERE id < 30");
    assert!(wait_until(Duration::from_secs(60), || {
        db.multiset_diff("totals", TOTALS).is_empty()
            && db
                .multiset_diff("slow_a", "SELECT id, v FROM src")
                .is_empty()
            && db
                .multiset_diff("slow_b", "SELECT id, v FROM src")
                .is_empty()
    }));
    db.exec("SELECT pgtrickle.alter_stream_table(t, status => 'SUSPENDED') FROM unnest(ARRAY['slow_a', 'slow_b', 'totals']) t");
    cluster().alter_system("ALTER SYSTEM RESET pg_trickle.min_workers");
}

/// Refreshes each stream table and checks it against its query.
fn refresh_exact(db: &mut TestDb, shapes: &[(&str, &str)], when: &str) {
    for (name, query) in shapes {
        db.exec(&format!("SELECT pgtrickle.refresh_stream_table('{name}')"));
        assert_eq!(
            db.multiset_diff(name, query),
            Vec::<String>::new(),
            "{name} {when}"
        );
    }
}

/// Crash recovery empties every unlogged table (PostgreSQL resets it from its init fork) and no
/// trigger fires: a DIFFERENTIAL stream table over one would keep the rows its source lost, and
/// every later batch would be applied to them. The first refresh after a restart recomputes each
/// stream table that reads an unlogged table (directly, or through a partition or a child), and
/// only those.
#[test]
fn crash_recovery_emptying_an_unlogged_source_is_not_missed() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut db = crash_db("crash_unlogged");
    db.exec(
        "CREATE UNLOGGED TABLE u (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL);
         INSERT INTO u SELECT g, g % 3, g FROM generate_series(1, 100) g;
         CREATE TABLE parts (id int NOT NULL, v int NOT NULL) PARTITION BY RANGE (id);
         CREATE TABLE parts_logged PARTITION OF parts FOR VALUES FROM (0) TO (100);
         CREATE UNLOGGED TABLE parts_unlogged PARTITION OF parts FOR VALUES FROM (100) TO (200);
         INSERT INTO parts SELECT g, g FROM generate_series(90, 110) g;",
    );
    let shapes = [
        ("u_rows", "SELECT id, v FROM u"),
        (
            "u_totals",
            "SELECT grp, count(*) AS n, sum(v) AS total FROM u GROUP BY grp",
        ),
        ("u_count", "SELECT count(*) AS n, sum(v) AS total FROM u"),
        ("parts_rows", "SELECT id, v FROM parts"),
        ("logged_rows", "SELECT id, v FROM src WHERE id <= 10"),
    ];
    for (name, query) in shapes {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{name}', '{query}', '1d', 'DIFFERENTIAL')"
        ));
    }
    db.exec("INSERT INTO u VALUES (1000, 1, 1); DELETE FROM u WHERE id = 5; UPDATE parts SET v = -v WHERE id IN (95, 105)");
    refresh_exact(&mut db, &shapes, "before the crash");
    drop(db);
    cluster().restart_immediate();

    let mut db = TestDb::existing("crash_unlogged");
    assert_eq!(
        db.value::<i64>("SELECT (SELECT count(*) FROM u) + (SELECT count(*) FROM parts_unlogged)"),
        0,
        "crash recovery left the unlogged tables' rows"
    );
    // A change after the crash, too: the recomputed result includes it.
    db.exec("INSERT INTO u VALUES (7, 1, 70)");
    refresh_exact(&mut db, &shapes, "after the crash");
    let after: Vec<(String, String, String)> = db
        .rows(
            "SELECT st.pgt_relid::regclass::text, h.action, coalesce(h.reason, '')
               FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables st USING (pgt_id)
              WHERE h.started_at > pg_postmaster_start_time() ORDER BY 1",
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected = [
        (
            "logged_rows",
            "NO_DATA",
            "no changes since the last refresh",
        ),
        ("parts_rows", "FULL", "such as public.parts_unlogged "),
        ("u_count", "FULL", "unlogged tables such as public.u "),
        ("u_rows", "FULL", "unlogged tables such as public.u "),
        ("u_totals", "FULL", "unlogged tables such as public.u "),
    ];
    assert_eq!(after.len(), expected.len(), "{after:?}");
    for ((name, action, reason), (want_name, want_action, want_reason)) in
        after.iter().zip(expected)
    {
        assert_eq!(
            (name.as_str(), action.as_str()),
            (want_name, want_action),
            "{after:?}"
        );
        assert!(reason.contains(want_reason), "{name}: {reason}");
    }
    // The next refresh is DIFFERENTIAL again.
    db.exec("DELETE FROM u WHERE id = 7");
    db.exec("SELECT pgtrickle.refresh_stream_table('u_totals')");
    assert_eq!(
        db.value::<String>(
            "SELECT action FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1"
        ),
        "DIFFERENTIAL"
    );
    assert_eq!(
        db.multiset_diff("u_totals", shapes[1].1),
        Vec::<String>::new()
    );
}
