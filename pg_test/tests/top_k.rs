//! ORDER BY ... LIMIT k maintained DIFFERENTIALly: the window moves by the delta alone when it can,
//! is refilled from the defining query when deletions leave too few known rows, and stays a valid
//! answer when rows tie at the cut-off (which tied rows PostgreSQL returns is its choice, so ties
//! are checked by what any answer must satisfy, not against one run of the query). `DISTINCT ON`,
//! the first row of each group, likewise.

use pg_trickle_e2e::TestDb;

/// The latest refresh's action, rows deleted and rows inserted.
fn last(db: &mut TestDb, st: &str) -> (String, i64, i64) {
    let rows = db.rows(
        "SELECT h.action, h.rows_deleted, h.rows_inserted FROM pgtrickle.pgt_refresh_history h
           JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
          WHERE s.pgt_relid = $1::text::regclass ORDER BY h.refresh_id DESC LIMIT 1",
        &[&st],
    );
    (rows[0].get(0), rows[0].get(1), rows[0].get(2))
}

fn refresh(db: &mut TestDb, st: &str, step: &str) -> (i64, i64) {
    db.exec(&format!("SELECT pgtrickle.refresh_stream_table('{st}')"));
    let (action, deleted, inserted) = last(db, st);
    assert_eq!(action, "DIFFERENTIAL", "{step}");
    (deleted, inserted)
}

/// Asserts that `problems` (a query of one text column, a row per way the answer is not valid)
/// returns nothing.
fn assert_valid(db: &mut TestDb, problems: &str, step: &str) {
    let problems: Vec<String> = db
        .rows(problems, &[])
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    assert!(
        problems.is_empty(),
        "{step}: not a valid answer:\n{}",
        problems.join("\n")
    );
}

/// `ties` holds a valid answer of `SELECT id, score FROM t ORDER BY score DESC LIMIT 4`: the right
/// number of rows, all of them rows of t, and no row of t it left out scoring higher than one it kept.
fn assert_valid_answer(db: &mut TestDb, step: &str) {
    assert_valid(
        db,
        "SELECT 'count ' || (SELECT count(*) FROM ties) || ', expected ' || least(4, (SELECT count(*) FROM t))
              WHERE (SELECT count(*) FROM ties) <> least(4, (SELECT count(*) FROM t))
             UNION ALL
             SELECT 'not a row of t: ' || x::text FROM (SELECT id, score FROM ties EXCEPT ALL SELECT id, score FROM t) x
             UNION ALL
             SELECT 'left out but scores higher: ' || x::text
               FROM (SELECT id, score FROM t EXCEPT ALL SELECT id, score FROM ties) x
              WHERE x.score > (SELECT min(score) FROM ties)",
        step,
    );
}

#[test]
fn ties_at_the_cut_off_stay_a_valid_answer_through_deletes_inserts_and_refills() {
    let mut db = TestDb::new("top_k_ties");
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, score int NOT NULL);
         INSERT INTO t SELECT i, i % 5 FROM generate_series(1, 40) i;
         SELECT pgtrickle.create_stream_table('ties', 'SELECT id, score FROM t ORDER BY score DESC LIMIT 4', '1h', 'DIFFERENTIAL');",
    );
    assert_valid_answer(&mut db, "created");

    // Eight rows score 4 and the window holds four of them. Deleting two of those leaves the window
    // two rows it knows of: it refills from the query, which may return any four of the other six.
    db.exec("DELETE FROM t WHERE id IN (SELECT id FROM ties ORDER BY id LIMIT 2)");
    refresh(&mut db, "ties", "two window rows deleted");
    assert_valid_answer(&mut db, "two window rows deleted");

    // A row above every other: it enters, one row at the cut-off leaves, nothing is recomputed.
    db.exec("INSERT INTO t VALUES (100, 9)");
    assert_eq!(
        refresh(&mut db, "ties", "a new best row"),
        (1, 1),
        "one row in, one out"
    );
    assert_valid_answer(&mut db, "a new best row");

    // A row that ties with the cut-off: the window may keep what it has.
    db.exec("INSERT INTO t VALUES (101, 4)");
    refresh(&mut db, "ties", "a tie at the cut-off");
    assert_valid_answer(&mut db, "a tie at the cut-off");

    // Rows of the window lowered below it, and a row from far below raised into it, in one batch.
    db.exec("UPDATE t SET score = 0 WHERE id IN (SELECT id FROM ties WHERE id <> 100 ORDER BY id LIMIT 2); UPDATE t SET score = 7 WHERE id = 1");
    refresh(&mut db, "ties", "moved out and in");
    assert_valid_answer(&mut db, "moved out and in");

    // Down to fewer rows than the limit, to nothing, and back.
    db.exec("DELETE FROM t WHERE id > 3");
    refresh(&mut db, "ties", "three rows left");
    assert_valid_answer(&mut db, "three rows left");
    db.exec("DELETE FROM t");
    refresh(&mut db, "ties", "emptied");
    assert_valid_answer(&mut db, "emptied");
    db.exec("INSERT INTO t SELECT i, i % 3 FROM generate_series(1, 10) i");
    refresh(&mut db, "ties", "refilled from inserts alone");
    assert_valid_answer(&mut db, "refilled from inserts alone");
}

#[test]
fn a_window_that_holds_the_whole_query_never_reads_it_again() {
    let mut db = TestDb::new("top_k_small");
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, g int, v numeric(10,2));
         INSERT INTO t VALUES (1, 1, 1.50), (2, 1, NULL), (3, 2, 7.25);
         SELECT pgtrickle.create_stream_table('per_g',
           'SELECT g, sum(v) AS s, count(*) AS n FROM t GROUP BY g ORDER BY s NULLS FIRST, g LIMIT 10', '1h', 'DIFFERENTIAL');
         SELECT pgtrickle.create_stream_table('nothing', 'SELECT id FROM t ORDER BY id LIMIT 0', '1h', 'DIFFERENTIAL');",
    );
    let query =
        "SELECT g, sum(v) AS s, count(*) AS n FROM t GROUP BY g ORDER BY s NULLS FIRST, g LIMIT 10";
    for (step, change) in [
        ("a NULL sum", "INSERT INTO t VALUES (4, 3, NULL)"),
        ("a group's only row deleted", "DELETE FROM t WHERE id = 3"),
        (
            "a scale change of an equal sum",
            "UPDATE t SET v = 1.5 WHERE id = 1",
        ),
        (
            "many groups, more than the limit",
            "INSERT INTO t SELECT i, i % 25, i FROM generate_series(10, 200) i",
        ),
    ] {
        db.exec(change);
        refresh(&mut db, "per_g", step);
        db.assert_shows_what_query_shows("per_g", query);
        refresh(&mut db, "nothing", step);
        let n: i64 = db.value("SELECT count(*) FROM nothing");
        assert_eq!(n, 0, "{step}: LIMIT 0");
    }
}

#[test]
fn explain_shows_the_window_and_the_forms_not_maintained_are_refused_by_name() {
    let mut db = TestDb::new("top_k_refusals");
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v int);
         SELECT pgtrickle.create_stream_table('top3', 'SELECT id, v FROM t ORDER BY v DESC, id LIMIT 3', '1h', 'DIFFERENTIAL');",
    );
    let plan: String = db.value("SELECT pgtrickle.explain_stream_table('top3')");
    assert!(
        plan.contains("Top-K: the first 3 rows by v DESC, id."),
        "{plan}"
    );
    for (query, construct) in [
        (
            "SELECT id, v FROM t ORDER BY v OFFSET 2",
            "OFFSET without LIMIT",
        ),
        ("SELECT id, v FROM t LIMIT 3", "LIMIT without ORDER BY"),
        (
            "SELECT id FROM t ORDER BY v LIMIT 3",
            "ORDER BY t.v with LIMIT",
        ),
        (
            "SELECT s.id FROM (SELECT id FROM t ORDER BY v LIMIT 3) s",
            "does not support LIMIT",
        ),
    ] {
        let e = db.error(&format!(
            "SELECT pgtrickle.create_stream_table('refused', '{query}', '1h', 'DIFFERENTIAL')"
        ));
        assert_eq!(e.code, "0A000", "{query}: {e:?}");
        assert!(e.message.contains(construct), "{query}: {}", e.message);
    }
    // AUTO takes them FULL and says why.
    db.exec("SELECT pgtrickle.create_stream_table('auto_offset', 'SELECT id, v FROM t ORDER BY v OFFSET 2', '1h', 'AUTO')");
    let why: String = db.value("SELECT effective_mode || ': ' || mode_reason FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = 'auto_offset'::regclass");
    assert!(why.starts_with("FULL: ") && why.contains("OFFSET"), "{why}");
}

#[test]
fn a_window_after_an_offset_shifts_when_rows_before_it_come_and_go() {
    const PAGE: &str = "SELECT id, score FROM t ORDER BY score DESC, id LIMIT 5 OFFSET 10";
    let mut db = TestDb::new("top_k_offset");
    db.exec(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, score int NOT NULL);
         INSERT INTO t SELECT i, i * 10 FROM generate_series(1, 40) i;
         SELECT pgtrickle.create_stream_table('page', '{PAGE}', '1h', 'DIFFERENTIAL');"
    ));
    let plan: String = db.value("SELECT pgtrickle.explain_stream_table('page')");
    assert!(
        plan.contains("Top-K: the rows 11 to 15 by score DESC, id."),
        "{plan}"
    );
    // Ranks 11-15 are ids 30-26. A change after the window moves nothing.
    db.exec("UPDATE t SET score = 5 WHERE id = 2");
    assert_eq!(
        refresh(&mut db, "page", "a change after the window"),
        (0, 0)
    );
    db.assert_shows_what_query_shows("page", PAGE);
    for (step, change) in [
        (
            "a row inserted before the window",
            "INSERT INTO t VALUES (100, 1000)",
        ),
        (
            "a row before the window deleted",
            "DELETE FROM t WHERE id = 40",
        ),
        (
            "a row before the window lowered into it",
            "UPDATE t SET score = 275 WHERE id = 39",
        ),
        (
            "a row tying the window's first",
            "INSERT INTO t VALUES (101, 300)",
        ),
        (
            "rows of the window deleted",
            "DELETE FROM t WHERE id IN (27, 28)",
        ),
        (
            "a row after the window raised into it",
            "UPDATE t SET score = 265 WHERE id = 3",
        ),
        ("fewer rows than the offset", "DELETE FROM t WHERE id > 8"),
        (
            "rows again",
            "INSERT INTO t SELECT i, i FROM generate_series(200, 230) i",
        ),
    ] {
        db.exec(change);
        refresh(&mut db, "page", step);
        db.assert_shows_what_query_shows("page", PAGE);
    }
}

/// `latest` holds a valid answer of `SELECT DISTINCT ON (dev) dev, ts, status FROM r ORDER BY dev,
/// ts DESC`, whose ORDER BY ties: one row per device, each a row of `r` with its device's latest ts.
fn assert_one_latest_row_per_device(db: &mut TestDb, step: &str) {
    assert_valid(
        db,
        "SELECT 'devices ' || (SELECT count(*) FROM latest) || ', expected ' || (SELECT count(DISTINCT dev) FROM r)
              WHERE (SELECT count(*) FROM latest) <> (SELECT count(DISTINCT dev) FROM r)
             UNION ALL
             SELECT 'not a latest row of r: ' || l::text FROM latest l
              WHERE NOT EXISTS (SELECT 1 FROM r WHERE r.dev = l.dev AND r.ts = l.ts
                                   AND r.status IS NOT DISTINCT FROM l.status
                                   AND r.ts = (SELECT max(ts) FROM r x WHERE x.dev = r.dev))",
        step,
    );
}

#[test]
fn distinct_on_keeps_each_groups_first_row_and_tied_rows_stay_a_valid_answer() {
    let mut db = TestDb::new("top_k_distinct_on");
    db.exec(
        "CREATE TABLE r (id int PRIMARY KEY, dev text, ts int, status text, val numeric);
         INSERT INTO r SELECT i, 'd' || (i % 9), i % 13, CASE WHEN i % 4 = 0 THEN NULL ELSE 's' || (i % 3) END, (i % 7) / 2.0
           FROM generate_series(1, 400) i;
         CREATE VIEW firsts AS SELECT DISTINCT ON (dev) dev, val, id FROM r ORDER BY dev, val DESC, id;",
    );
    // A unique order (the id breaks ties): compared with the query, by text.
    let exact = [
        (
            "first_by_id",
            "SELECT DISTINCT ON (dev) dev, ts, status, id FROM r ORDER BY dev, ts DESC, id",
        ),
        (
            "two_keys",
            "SELECT DISTINCT ON (dev, status) status, dev, val, id FROM r WHERE val > 0.5 ORDER BY dev, status NULLS FIRST, val DESC, id",
        ),
        // A key whose equal values print differently (1.5, 1.50): the query shows the first row's.
        (
            "repr_key",
            "SELECT DISTINCT ON (val) val, id, status FROM r ORDER BY val, id DESC",
        ),
        (
            "expr_key",
            "SELECT DISTINCT ON (upper(dev)) upper(dev) AS d, val, id FROM r ORDER BY upper(dev), val, id DESC",
        ),
        // In a subquery in FROM, a CTE, a view: filtered and joined over.
        (
            "in_subquery",
            "SELECT s.dev, s.id FROM (SELECT DISTINCT ON (dev) dev, ts, status, id FROM r ORDER BY dev, ts DESC, id) s WHERE s.status IS NOT NULL",
        ),
        (
            "in_cte",
            "WITH f AS (SELECT DISTINCT ON (status) status, id FROM r ORDER BY status NULLS FIRST, id DESC) SELECT f.status, f.id, r.dev FROM f JOIN r ON r.id = f.id",
        ),
        (
            "in_view",
            "SELECT v.dev, v.val, count(*) AS n FROM firsts v JOIN r ON r.val = v.val GROUP BY v.dev, v.val",
        ),
    ];
    for (st, query) in exact {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{st}', '{}', '1h', 'DIFFERENTIAL')",
            query.replace('\'', "''")
        ));
    }
    // Ties in the order (several rows of a device share its latest ts).
    db.exec(
        "SELECT pgtrickle.create_stream_table('latest', 'SELECT DISTINCT ON (dev) dev, ts, status FROM r ORDER BY dev, ts DESC', '1h', 'DIFFERENTIAL')",
    );
    assert_one_latest_row_per_device(&mut db, "created");
    let steps = [
        "UPDATE r SET ts = ts + 5 WHERE id % 10 = 0",
        "DELETE FROM r WHERE id % 23 = 0; INSERT INTO r VALUES (1000, 'd1', 100, NULL, 3), (1001, 'dnew', 1, 'x', 1.50)",
        // Equal values that print differently are a change of the row shown.
        "UPDATE r SET val = 1.5 WHERE val = 1.50",
        "UPDATE r SET dev = 'd2' WHERE dev = 'd1'; DELETE FROM r WHERE id = 1000; UPDATE r SET status = NULL WHERE id % 3 = 0",
        "DELETE FROM r WHERE dev = 'd3'",
    ];
    for step in steps {
        db.exec(step);
        for (st, query) in exact {
            db.assert_refreshes_differentially(st, query, step);
        }
        db.exec("SELECT pgtrickle.refresh_stream_table('latest')");
        assert_eq!(db.last_refresh("latest").0, "DIFFERENTIAL", "{step}");
        assert_one_latest_row_per_device(&mut db, step);
    }
    // A FULL refresh picks among tied rows as the refreshes after it do, so they never find a
    // stored row other than the one they expect (which they would repair with FULL).
    db.exec("TRUNCATE r");
    db.exec("INSERT INTO r SELECT i, 'd' || (i % 5), i % 3, 's' || (i % 7), i FROM generate_series(1, 200) i");
    db.exec("SELECT pgtrickle.refresh_stream_table('latest')");
    assert_eq!(db.last_refresh("latest").0, "FULL");
    for step in [
        "UPDATE r SET status = 'z' || id WHERE id % 4 = 0",
        "DELETE FROM r WHERE id % 9 = 0",
        "UPDATE r SET ts = 2 WHERE id % 11 = 0",
    ] {
        db.exec(step);
        db.exec("SELECT pgtrickle.refresh_stream_table('latest')");
        assert_eq!(db.last_refresh("latest").0, "DIFFERENTIAL", "{step}");
        assert_one_latest_row_per_device(&mut db, step);
    }
}

#[test]
fn distinct_on_forms_not_maintained_are_refused_by_name() {
    let mut db = TestDb::new("top_k_distinct_on_refused");
    db.exec(
        "CREATE TABLE r (id int PRIMARY KEY, dev text, ts int, tags text[]);
         CREATE VIEW latest AS SELECT DISTINCT ON (dev) dev, ts FROM r ORDER BY dev, ts DESC, id;",
    );
    for (query, why) in [
        (
            "SELECT DISTINCT ON (dev) ts FROM r ORDER BY dev, ts",
            "DISTINCT ON (r.dev) without r.dev in the select list",
        ),
        (
            "SELECT DISTINCT ON (dev) dev, ts FROM r ORDER BY dev, ts LIMIT 5",
            "DISTINCT ON with LIMIT or OFFSET",
        ),
        (
            "SELECT DISTINCT ON (dev) dev, count(*) AS n FROM r GROUP BY dev, ts ORDER BY dev",
            "DISTINCT ON over aggregates or window functions",
        ),
        (
            "SELECT dev FROM r WHERE id IN (SELECT DISTINCT ON (dev) id FROM r ORDER BY dev, ts)",
            "DISTINCT ON in a subquery of an expression",
        ),
        // The first row's value is taken with array_agg, which makes arrays of arrays: in a
        // subquery too, where the query does not show the column.
        (
            "SELECT DISTINCT ON (dev) dev, tags FROM r ORDER BY dev, ts DESC",
            "a column of array type (tags text[]) under DISTINCT ON",
        ),
        (
            "SELECT s.dev FROM (SELECT DISTINCT ON (dev) dev, tags FROM r ORDER BY dev, ts DESC) s",
            "a column of array type (tags text[]) under DISTINCT ON",
        ),
    ] {
        let err = db.error(&format!(
            "SELECT pgtrickle.create_stream_table('x', '{query}', '1h', 'DIFFERENTIAL')"
        ));
        assert_eq!(err.code, "0A000", "{query}: {err:?}");
        assert!(err.message.contains(why), "{query}: {err:?}");
    }
    // AUTO reads them FULL; a view's DISTINCT ON is read as the query's own.
    db.exec(
        "SELECT pgtrickle.create_stream_table('auto', 'SELECT s.dev FROM (SELECT DISTINCT ON (dev) dev, tags FROM r ORDER BY dev, ts DESC) s', '1h', 'AUTO')",
    );
    assert_eq!(
        db.value::<String>("SELECT effective_mode FROM pgtrickle.pgt_stream_tables"),
        "FULL"
    );
    db.exec(
        "SELECT pgtrickle.create_stream_table('from_view', 'SELECT dev, ts FROM latest', '1h', 'DIFFERENTIAL')",
    );
}

#[test]
fn distinct_on_picks_alike_in_every_session_and_all_null_composite_keys_are_one_group() {
    let mut db = TestDb::new("top_k_distinct_on_sessions");
    db.exec(
        "CREATE TYPE pair AS (a numeric(6,2), b text);
         CREATE TABLE cs (id int PRIMARY KEY, p pair, g int, d date, o int);
         INSERT INTO cs VALUES (1, ROW(NULL, NULL), 1, '2020-01-02', 0), (2, NULL, 1, '2020-02-01', 0),
                               (3, ROW(1, NULL), 3, '2020-01-02', 0), (4, ROW(1, 'x'), 3, '2020-01-02', 1);",
    );
    const BY_KEY: &str = "SELECT DISTINCT ON (p) p, id FROM cs ORDER BY p, id DESC";
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('by_key', '{BY_KEY}', '1h', 'DIFFERENTIAL');
         SELECT pgtrickle.create_stream_table('by_date', 'SELECT DISTINCT ON (g) g, d FROM cs ORDER BY g, o', '1h', 'DIFFERENTIAL');"
    ));
    // Rows tie in `o`; the tie is broken by the rows' text, which a session's DateStyle changes.
    db.exec("SET DateStyle = 'German, DMY'");
    db.exec("INSERT INTO cs VALUES (5, ROW(NULL, NULL), 2, '2020-01-02', 0), (6, NULL, 2, '2020-02-01', 0)");
    db.exec("SELECT pgtrickle.refresh_stream_table('by_date')");
    db.exec("RESET DateStyle");
    db.exec("DELETE FROM cs WHERE id = 6");
    db.exec("SELECT pgtrickle.refresh_stream_table('by_date')");
    assert_eq!(db.last_refresh("by_date").0, "DIFFERENTIAL");
    let stale: i64 = db.value(
        "SELECT count(*) FROM by_date b WHERE NOT EXISTS (SELECT 1 FROM cs WHERE cs.g = b.g AND cs.d = b.d)",
    );
    assert_eq!(stale, 0, "a row of by_date that no row of cs has");
    // ROW(NULL, NULL) IS NULL, and equals itself: one group, found by each refresh.
    for step in [
        "UPDATE cs SET id = id + 10",
        "INSERT INTO cs VALUES (7, ROW(NULL, NULL), 1, '2021-01-01', 2), (8, NULL, 1, '2021-01-01', 2)",
        "DELETE FROM cs WHERE id IN (11, 17)",
    ] {
        db.exec(step);
        db.assert_refreshes_differentially("by_key", BY_KEY, step);
    }
}
