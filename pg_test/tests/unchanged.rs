//! FULL stream tables whose sources did not change are not rewritten: every table their query
//! reads (through views and partitions too) signals its writes, whatever route a write takes —
//! and what cannot signal (a function like now(), a materialized view) is refreshed every schedule.

use pg_trickle_e2e::{wait_until, TestDb};
use std::time::{Duration, Instant};

const OVER_VIEW: &str = "SELECT grp, count(*) AS n, sum(v) AS total FROM big_values GROUP BY grp";
const OVER_PARTITIONS: &str = "SELECT id, v FROM parted";
const DOWNSTREAM: &str = "SELECT count(*) AS groups FROM over_view";

/// Scheduled refreshes of `stream_table` so far.
fn scheduled(db: &mut TestDb, stream_table: &str) -> i64 {
    db.value(&format!(
        "SELECT count(*) FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
          WHERE s.pgt_relid = '{stream_table}'::regclass AND h.initiated_by = 'SCHEDULER'"
    ))
}

/// Waits until `stream_table` shows what `query` shows, within one schedule (1 s) plus a tick and
/// some slack for a busy machine.
fn follows(db: &mut TestDb, stream_table: &str, query: &str, what: &str) {
    let start = Instant::now();
    let caught_up = wait_until(Duration::from_secs(5), || {
        db.multiset_diff(stream_table, query).is_empty()
    });
    assert!(
        caught_up,
        "{stream_table} did not follow {what}: {:?}",
        db.multiset_diff(stream_table, query)
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{stream_table} took {:?} to follow {what}",
        start.elapsed()
    );
}

#[test]
fn a_full_stream_table_over_unchanged_sources_is_not_rewritten_and_sees_every_write() {
    let mut db = TestDb::new("unchanged_full");
    db.exec(
        "CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL);
         INSERT INTO src SELECT g, g % 4, g FROM generate_series(1, 40) g;
         CREATE VIEW big_values AS SELECT * FROM src WHERE v > 5;
         CREATE TABLE parted (id int NOT NULL, v int) PARTITION BY RANGE (id);
         CREATE TABLE part1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
         INSERT INTO part1 VALUES (1, 10), (2, 20);",
    );
    for (name, query) in [
        ("over_view", OVER_VIEW),
        ("over_partitions", OVER_PARTITIONS),
        ("downstream", DOWNSTREAM),
    ] {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{name}', '{query}', '1s', 'FULL')"
        ));
    }
    db.exec("SELECT pgtrickle.create_stream_table('clock', 'SELECT id, now() AS seen FROM src', '1s', 'FULL')");
    assert_eq!(
        db.value::<String>("SELECT string_agg(pgt_relid::regclass::text || '=' || skip_unchanged, ',' ORDER BY pgt_id) FROM pgtrickle.pgt_stream_tables"),
        "over_view=true,over_partitions=true,downstream=true,clock=false"
    );

    // After one scheduled refresh each (the coordinator cannot know what happened before it looked),
    // the three over unchanged sources are left alone; the one calling now() is not.
    assert!(wait_until(Duration::from_secs(10), || [
        "over_view",
        "over_partitions",
        "downstream"
    ]
    .iter()
    .all(|st| scheduled(&mut db, st) >= 1)));
    std::thread::sleep(Duration::from_secs(2));
    let before: Vec<i64> = ["over_view", "over_partitions", "downstream", "clock"]
        .iter()
        .map(|st| scheduled(&mut db, st))
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    let after: Vec<i64> = ["over_view", "over_partitions", "downstream", "clock"]
        .iter()
        .map(|st| scheduled(&mut db, st))
        .collect();
    assert_eq!(
        &after[..3],
        &before[..3],
        "stream tables over unchanged sources were rewritten"
    );
    assert!(
        after[3] >= before[3] + 2,
        "a stream table calling now() must refresh every schedule: {before:?} -> {after:?}"
    );
    // Idle, it trails its sources by nothing, however long ago its last refresh started.
    let lag = |db: &mut TestDb, st: &str| {
        db.value::<f64>(&format!("SELECT current_lag_estimate_ms FROM pgtrickle.pg_stat_pgtrickle WHERE table_name = '{st}'"))
    };
    assert_eq!(lag(&mut db, "over_view"), 0.0);

    // A write to the table under the view reaches it, and the stream table reading it.
    db.exec("INSERT INTO src VALUES (41, 1, 1000)");
    follows(&mut db, "over_view", OVER_VIEW, "an INSERT under its view");
    follows(
        &mut db,
        "downstream",
        DOWNSTREAM,
        "its upstream stream table",
    );
    db.exec("UPDATE src SET grp = 9 WHERE id = 10");
    follows(
        &mut db,
        "downstream",
        DOWNSTREAM,
        "an UPDATE two levels down",
    );

    // Writes straight into a partition, and under the replica role (replication apply, restores).
    db.exec("INSERT INTO part1 VALUES (3, 30)");
    follows(
        &mut db,
        "over_partitions",
        OVER_PARTITIONS,
        "an INSERT into a partition",
    );
    db.exec("SET session_replication_role = replica; DELETE FROM part1 WHERE id = 1; RESET session_replication_role;");
    follows(
        &mut db,
        "over_partitions",
        OVER_PARTITIONS,
        "a DELETE under the replica role",
    );
    // Rows that come and go without DML: an attached partition, a dropped one, a detached one.
    db.exec("CREATE TABLE part2 (id int NOT NULL, v int); INSERT INTO part2 VALUES (150, 5);");
    db.exec("ALTER TABLE parted ATTACH PARTITION part2 FOR VALUES FROM (100) TO (200)");
    follows(
        &mut db,
        "over_partitions",
        OVER_PARTITIONS,
        "an attached partition",
    );
    db.exec("INSERT INTO part2 VALUES (160, 6)");
    follows(
        &mut db,
        "over_partitions",
        OVER_PARTITIONS,
        "an INSERT into the attached partition",
    );
    db.exec("DROP TABLE part2");
    follows(
        &mut db,
        "over_partitions",
        OVER_PARTITIONS,
        "a dropped partition",
    );
    db.exec("ALTER TABLE parted DETACH PARTITION part1");
    follows(
        &mut db,
        "over_partitions",
        OVER_PARTITIONS,
        "a detached partition",
    );
    db.exec("INSERT INTO part1 VALUES (7, 70); ALTER TABLE parted ATTACH PARTITION part1 FOR VALUES FROM (0) TO (100);");
    follows(
        &mut db,
        "over_partitions",
        OVER_PARTITIONS,
        "a partition attached again",
    );
    db.exec("TRUNCATE part1");
    follows(&mut db, "over_partitions", OVER_PARTITIONS, "a TRUNCATE");

    // A disabled trigger signals nothing: refreshed every schedule until it is enabled again.
    db.exec("ALTER TABLE part1 DISABLE TRIGGER ALL");
    db.exec("INSERT INTO part1 VALUES (4, 40)");
    follows(
        &mut db,
        "over_partitions",
        OVER_PARTITIONS,
        "an INSERT with the triggers disabled",
    );
    db.exec("INSERT INTO part1 VALUES (5, 50)");
    follows(
        &mut db,
        "over_partitions",
        OVER_PARTITIONS,
        "a second INSERT with the triggers disabled",
    );
    db.exec("ALTER TABLE part1 ENABLE TRIGGER ALL");
    db.exec("INSERT INTO part1 VALUES (6, 60)");
    follows(
        &mut db,
        "over_partitions",
        OVER_PARTITIONS,
        "an INSERT with the triggers enabled again",
    );
    std::thread::sleep(Duration::from_secs(2));
    let idle = scheduled(&mut db, "over_partitions");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        scheduled(&mut db, "over_partitions"),
        idle,
        "idle again once its triggers are enabled"
    );

    // A committed change it has not applied yet is lag.
    db.exec("SELECT pgtrickle.alter_stream_table('over_view', status => 'SUSPENDED')");
    db.exec("INSERT INTO src VALUES (42, 2, 2000)");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        lag(&mut db, "over_view") >= 100.0,
        "a pending change shows no lag"
    );

    // Signal triggers go with the last stream table that needs them.
    db.exec("SELECT pgtrickle.drop_stream_table('over_partitions')");
    assert_eq!(db.value::<i64>("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgtrickle_signal%' AND tgrelid IN ('parted'::regclass, 'part1'::regclass)"), 0);
    db.exec("SELECT pgtrickle.alter_stream_table('over_view', refresh_mode => 'DIFFERENTIAL')");
    assert_eq!(db.value::<i64>("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgtrickle_signal%' AND tgrelid = 'src'::regclass"), 0);
    db.exec("SELECT pgtrickle.alter_stream_table(t, status => 'SUSPENDED') FROM unnest(ARRAY['over_view', 'downstream', 'clock']) t");
}

/// A FULL stream table that another FULL stream table reads carries signal triggers, which a FULL
/// refresh writing its rows itself (refresh/full_insert.rs, full_delete.rs) does not fire: the refresh
/// signals the change itself, so the reader is not skipped — and the triggers do not push the refresh
/// back onto `INSERT ... SELECT` and `DELETE`, which took twice as long on the bench's data.
#[test]
fn a_full_stream_table_read_by_another_writes_its_rows_itself_and_signals_them() {
    const UP: &str = "SELECT id, v FROM src WHERE v > 2";
    const DOWN: &str = "SELECT count(*) AS n, sum(v) AS total FROM up";
    let mut db = TestDb::new("unchanged_signalled_full");
    db.exec(&format!(
        "CREATE TABLE src (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO src SELECT g, g FROM generate_series(1, 30) g;
         SELECT pgtrickle.create_stream_table('up', '{UP}', '1h', 'FULL');
         SELECT pgtrickle.create_stream_table('down', '{DOWN}', '1s', 'FULL');"
    ));
    assert_eq!(
        db.value::<String>("SELECT string_agg(tgname::text, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'up'::regclass"),
        "pgtrickle_guard,pgtrickle_signal_row,pgtrickle_signal_stmt"
    );
    // Skipped while `up` is unchanged, after its first scheduled refresh.
    assert!(wait_until(Duration::from_secs(10), || scheduled(
        &mut db, "down"
    ) >= 1));

    db.exec("UPDATE src SET v = v + 100 WHERE id % 4 = 0; DELETE FROM src WHERE id = 5");
    let (mut client, notices) = db.connect_keeping_notices();
    client
        .batch_execute(
            "SET client_min_messages = debug1; SELECT pgtrickle.refresh_stream_table('up');",
        )
        .unwrap();
    let kept = notices.lock().unwrap().clone();
    for said in [
        "FULL refresh deleted 28 rows itself",
        "FULL refresh inserted 27 rows itself (query read serially)",
    ] {
        assert!(
            kept.iter().any(|n| n.message.contains(said)),
            "{said}: {kept:?}"
        );
    }
    db.assert_matches_query("up", UP);
    follows(&mut db, "down", DOWN, "its upstream's FULL refresh");
}

#[test]
fn what_cannot_signal_its_writes_is_refreshed_every_schedule() {
    let mut db = TestDb::new("unchanged_unsignalled");
    db.exec(
        "CREATE TABLE src (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO src SELECT g, g FROM generate_series(1, 10) g;
         CREATE MATERIALIZED VIEW snapshot AS SELECT * FROM src;
         CREATE FUNCTION stable_limit() RETURNS int STABLE LANGUAGE sql AS 'SELECT 5';",
    );
    db.exec("SELECT pgtrickle.create_stream_table('from_matview', 'SELECT id, v FROM snapshot', '1s', 'FULL')");
    db.exec("SELECT pgtrickle.create_stream_table('with_stable', 'SELECT id, v FROM src WHERE v > stable_limit()', '1s', 'FULL')");
    db.exec("SELECT pgtrickle.create_stream_table('from_catalog', 'SELECT count(*) AS n FROM pg_catalog.pg_class WHERE relname = ''src''', '1s', 'FULL')");
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE skip_unchanged"),
        0
    );
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgtrickle_signal%'"),
        0
    );
    // A REFRESH MATERIALIZED VIEW fires no trigger, and the stream table still follows it.
    db.exec("INSERT INTO src VALUES (11, 11); REFRESH MATERIALIZED VIEW snapshot;");
    follows(
        &mut db,
        "from_matview",
        "SELECT id, v FROM snapshot",
        "a REFRESH MATERIALIZED VIEW",
    );
    db.exec("SELECT pgtrickle.alter_stream_table(t, status => 'SUSPENDED') FROM unnest(ARRAY['from_matview', 'with_stable', 'from_catalog']) t");
}

#[test]
fn writes_applied_by_logical_replication_reach_a_full_stream_table() {
    const TABLE: &str = "CREATE TABLE src (id int PRIMARY KEY, v int NOT NULL)";
    const QUERY: &str = "SELECT count(*) AS n, sum(v) AS total FROM src";
    let mut publisher = TestDb::new("unchanged_lr_pub");
    publisher.exec(&format!(
        "{TABLE}; INSERT INTO src SELECT g, g FROM generate_series(1, 40) g; CREATE PUBLICATION pgt_pub FOR TABLE src;"
    ));
    publisher.exec("SELECT pg_create_logical_replication_slot('pgt_unchanged_lr', 'pgoutput')");
    let mut db = TestDb::new("unchanged_lr_sub");
    db.exec(TABLE);
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{QUERY}', '1s', 'FULL')"
    ));
    assert!(db.value::<bool>("SELECT skip_unchanged FROM pgtrickle.pgt_stream_tables"));
    db.exec(&format!(
        "CREATE SUBSCRIPTION pgt_sub CONNECTION '{}' PUBLICATION pgt_pub WITH (create_slot = false, slot_name = 'pgt_unchanged_lr')",
        publisher.conninfo()
    ));
    let checksum = "SELECT coalesce(sum(hashtext(src::text)), 0)::bigint FROM src";
    let applied = |db: &mut TestDb, publisher: &mut TestDb, what: &str| {
        let want: i64 = publisher.value(checksum);
        assert!(
            wait_until(Duration::from_secs(60), || db.value::<i64>(checksum)
                == want),
            "the subscription did not catch up"
        );
        follows(db, "totals", QUERY, what);
    };
    // The initial copy, then each kind of write, applied by the subscription's worker (which fires
    // row triggers only, and TRUNCATE's statement triggers).
    applied(&mut db, &mut publisher, "the initial copy");
    publisher.exec("INSERT INTO src VALUES (100, 7)");
    applied(&mut db, &mut publisher, "a replicated INSERT");
    publisher.exec("UPDATE src SET v = v * 2 WHERE id % 4 = 2");
    applied(&mut db, &mut publisher, "a replicated UPDATE");
    publisher.exec("DELETE FROM src WHERE id < 5");
    applied(&mut db, &mut publisher, "a replicated DELETE");
    publisher.exec("TRUNCATE src; INSERT INTO src VALUES (1, 1);");
    applied(&mut db, &mut publisher, "a replicated TRUNCATE");
    db.exec("DROP SUBSCRIPTION pgt_sub");
    db.exec("SELECT pgtrickle.alter_stream_table('totals', status => 'SUSPENDED')");
}
