//! pg_stat_pgtrickle (MT-9) and what pgtrickle.stream_tables shows: counters that agree exactly with
//! the refresh history, the view's columns in the agreed order, true staleness, resets, and who may
//! see what.

use pg_trickle_e2e::{wait_until, TestDb};
use std::time::Duration;

const TOTALS: &str = "SELECT grp, count(*) AS n, sum(v) AS total FROM src GROUP BY grp";

fn db(name: &str) -> TestDb {
    let mut db = TestDb::new(name);
    db.exec(
        "CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL);
         INSERT INTO src SELECT g, g % 5, g FROM generate_series(1, 100) g;
         CREATE TABLE fail_when (flag bool);
         CREATE FUNCTION checked(x int) RETURNS int LANGUAGE plpgsql AS
           'BEGIN IF EXISTS (SELECT 1 FROM public.fail_when) THEN RAISE EXCEPTION ''told to fail''; END IF; RETURN x; END';",
    );
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', 'DIFFERENTIAL')"
    ));
    db.exec("SELECT pgtrickle.create_stream_table('copy', 'SELECT id, checked(v) AS v FROM src', '1h', 'FULL')");
    db
}

#[test]
fn counters_agree_exactly_with_the_history() {
    let mut db = db("stats_counters");
    for i in 0..3 {
        db.exec(&format!(
            "INSERT INTO src VALUES ({}, 1, 1); UPDATE src SET v = v + 1 WHERE id = {};",
            1000 + i,
            i + 1
        ));
        db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
        db.exec("SELECT pgtrickle.refresh_stream_table('totals')"); // nothing new: NO_DATA
        db.exec("SELECT pgtrickle.refresh_stream_table('copy')");
    }
    // Two scheduled refreshes of `copy` fail.
    db.exec("INSERT INTO fail_when VALUES (true)");
    db.exec("SELECT pgtrickle.alter_stream_table('copy', schedule => '100ms')");
    assert!(wait_until(Duration::from_secs(30), || {
        db.value::<i64>(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE status = 'FAILED'",
        ) >= 2
    }));
    db.exec("SELECT pgtrickle.alter_stream_table('copy', status => 'SUSPENDED')");

    let mismatches = db.rows(
        "WITH h AS (
           SELECT pgt_id,
                  count(*) FILTER (WHERE status = 'SUCCESS') AS total,
                  count(*) FILTER (WHERE status = 'SUCCESS' AND action = 'FULL') AS full,
                  count(*) FILTER (WHERE status = 'SUCCESS' AND action = 'DIFFERENTIAL') AS diff,
                  count(*) FILTER (WHERE status = 'SUCCESS' AND action = 'NO_DATA') AS no_data,
                  count(*) FILTER (WHERE status = 'FAILED') AS failed,
                  coalesce(sum(delta_rows) FILTER (WHERE status = 'SUCCESS'), 0) AS delta
             FROM pgtrickle.pgt_refresh_history GROUP BY pgt_id)
         SELECT s.table_name::text || ': ' || row(s.total_refreshes, s.total_full_refreshes, s.total_diff_refreshes,
                       s.no_data_refreshes, s.failed_refreshes, s.total_delta_rows_processed)::text
                || ' vs history ' || row(h.total, h.full, h.diff, h.no_data, h.failed, h.delta)::text
           FROM pgtrickle.pg_stat_pgtrickle s JOIN h USING (pgt_id)
          WHERE (s.total_refreshes, s.total_full_refreshes, s.total_diff_refreshes, s.no_data_refreshes,
                 s.failed_refreshes, s.total_delta_rows_processed)
                IS DISTINCT FROM (h.total, h.full, h.diff, h.no_data, h.failed, h.delta)",
        &[],
    );
    let mismatches: Vec<String> = mismatches.iter().map(|r| r.get(0)).collect();
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    // The counts themselves: create + 3 + 3 + 3 for totals (DIFFERENTIAL 3, NO_DATA 3).
    assert_eq!(
        db.value::<String>(
            "SELECT row(total_refreshes, total_full_refreshes, total_diff_refreshes, no_data_refreshes, failed_refreshes)::text
               FROM pgtrickle.pg_stat_pgtrickle WHERE table_name = 'totals'"
        ),
        "(7,1,3,3,0)"
    );
    assert!(db.value::<bool>("SELECT failed_refreshes >= 2 AND last_error LIKE '%told to fail%' AND last_error_at IS NOT NULL FROM pgtrickle.pg_stat_pgtrickle WHERE table_name = 'copy'"));
    // Durations: the average is the history's (the same two clock readings per refresh), the
    // percentiles ordered and within the history's range.
    assert!(db.value::<bool>(
        "SELECT abs(s.avg_refresh_duration_ms - h.avg_ms) < 0.001
                AND s.p95_refresh_duration_ms <= s.p99_refresh_duration_ms
                AND s.p99_refresh_duration_ms <= h.max_ms + 0.001
           FROM pgtrickle.pg_stat_pgtrickle s,
                (SELECT avg(date_part('epoch', finished_at - started_at) * 1000) AS avg_ms,
                        max(date_part('epoch', finished_at - started_at) * 1000) AS max_ms
                   FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables st USING (pgt_id)
                  WHERE st.pgt_relid = 'totals'::regclass AND h.status = 'SUCCESS') h
          WHERE s.table_name = 'totals'"
    ));
    // Who ran each refresh.
    let pid: i32 = db.value("SELECT pg_backend_pid()");
    assert_eq!(
        db.value::<String>("SELECT executed_by FROM pgtrickle.pgt_refresh_history WHERE initiated_by = 'MANUAL' ORDER BY refresh_id DESC LIMIT 1"),
        format!("session {pid}")
    );
    assert!(db.value::<bool>(
        "SELECT bool_and(executed_by ~ '^(refresh worker|coordinator) [0-9]+$') FROM pgtrickle.pgt_refresh_history WHERE initiated_by = 'SCHEDULER'"
    ));
}

#[test]
fn the_view_has_the_agreed_columns_first_in_order() {
    let mut db = db("stats_columns");
    let columns: Vec<String> = db
        .rows(
            "SELECT column_name::text || ' ' || data_type FROM information_schema.columns
              WHERE table_schema = 'pgtrickle' AND table_name = 'pg_stat_pgtrickle' ORDER BY ordinal_position",
            &[],
        )
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected = [
        "pgt_id bigint",
        "schema_name name",
        "table_name name",
        "total_refreshes bigint",
        "total_full_refreshes bigint",
        "total_diff_refreshes bigint",
        "total_delta_rows_processed bigint",
        "avg_refresh_duration_ms double precision",
        "p95_refresh_duration_ms double precision",
        "p99_refresh_duration_ms double precision",
        "last_refresh_at timestamp with time zone",
        "current_lag_estimate_ms double precision",
        "last_error text",
        "last_error_at timestamp with time zone",
    ];
    assert_eq!(&columns[..expected.len()], &expected[..]);
    assert!(
        columns.contains(&"stats_reset timestamp with time zone".to_string()),
        "{columns:?}"
    );
}

#[test]
fn lag_is_the_age_of_the_oldest_change_not_applied() {
    let mut db = db("stats_lag");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    let lag = |db: &mut TestDb| {
        db.value::<f64>("SELECT current_lag_estimate_ms FROM pgtrickle.pg_stat_pgtrickle WHERE table_name = 'totals'")
    };
    // Nothing pending: no lag, however long ago the last refresh was.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(lag(&mut db), 0.0);
    assert_eq!(
        db.value::<String>(
            "SELECT staleness::text FROM pgtrickle.stream_tables WHERE table_name = 'totals'"
        ),
        "00:00:00"
    );
    db.exec("INSERT INTO src VALUES (500, 2, 2)");
    std::thread::sleep(Duration::from_millis(300));
    // A committed change waits: at least as old as it is (bounded by the last refresh without
    // track_commit_timestamp).
    assert!(lag(&mut db) >= 300.0);
    assert!(db.value::<bool>("SELECT staleness >= interval '300 ms' FROM pgtrickle.stream_tables WHERE table_name = 'totals'"));
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(lag(&mut db), 0.0);
    // The people's view says what the last refresh did, why and how long it took.
    assert!(db.value::<bool>(
        "SELECT last_action = 'DIFFERENTIAL' AND last_reason LIKE '%change%' AND last_duration_ms >= 0
           FROM pgtrickle.stream_tables WHERE table_name = 'totals'"
    ));
}

#[test]
fn resets_and_who_may_see_and_reset() {
    let mut db = db("stats_reset");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    let before: String = db.value(
        "SELECT stats_reset::text FROM pgtrickle.pg_stat_pgtrickle WHERE table_name = 'totals'",
    );
    db.exec("SELECT pgtrickle.pg_stat_pgtrickle_reset('totals')");
    assert_eq!(
        db.value::<String>(
            "SELECT row(total_refreshes, total_delta_rows_processed, failed_refreshes, p95_refresh_duration_ms IS NULL)::text
               FROM pgtrickle.pg_stat_pgtrickle WHERE table_name = 'totals'"
        ),
        "(0,0,0,t)"
    );
    let after: String = db.value(
        "SELECT stats_reset::text FROM pgtrickle.pg_stat_pgtrickle WHERE table_name = 'totals'",
    );
    assert!(
        after > before,
        "stats_reset did not move: {before} -> {after}"
    );
    // The other stream table kept its counters; the cost model AUTO uses is untouched.
    assert!(
        db.value::<i64>(
            "SELECT total_refreshes FROM pgtrickle.pg_stat_pgtrickle WHERE table_name = 'copy'"
        ) > 0
    );
    assert!(db.value::<i64>("SELECT full_refreshes FROM pgtrickle.pgt_cost_model_summary JOIN pgtrickle.pgt_stream_tables USING (pgt_id) WHERE pgt_relid = 'totals'::regclass") > 0);
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(
        db.value::<i64>(
            "SELECT total_refreshes FROM pgtrickle.pg_stat_pgtrickle WHERE table_name = 'totals'"
        ),
        1
    );
    db.exec("SELECT pgtrickle.pg_stat_pgtrickle_reset()");
    assert_eq!(
        db.value::<i64>("SELECT sum(total_refreshes)::bigint FROM pgtrickle.pg_stat_pgtrickle"),
        0
    );

    // A role that may not read a stream table sees no row of it, nor resets; pg_monitor sees all.
    db.fresh_role("stats_reader");
    db.exec("SET ROLE stats_reader");
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pg_stat_pgtrickle"),
        0
    );
    assert_eq!(
        db.error("SELECT pgtrickle.pg_stat_pgtrickle_reset()").code,
        "42501"
    );
    // Nor gets a stream table's lag by its id (until 2026-12-07 anyone could).
    assert!(db
        .value::<Option<f64>>("SELECT pgtrickle._current_lag_ms(1)")
        .is_none());
    db.exec("RESET ROLE; GRANT pg_monitor TO stats_reader; SET ROLE stats_reader");
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pg_stat_pgtrickle"),
        2
    );
    // Every column, the lag too (the view calls a function as its reader).
    assert!(
        db.value::<i64>(
            "SELECT count(*) FROM pgtrickle.pg_stat_pgtrickle WHERE current_lag_estimate_ms IS NOT NULL"
        ) >= 1
    );
    db.exec("RESET ROLE");
}
