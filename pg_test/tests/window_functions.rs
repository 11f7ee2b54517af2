//! Window functions over partitions (`row_number`, `rank`, `dense_rank`, `percent_rank`,
//! `cume_dist`, `ntile`, `lag`, `lead`, `first_value`, aggregates over a whole partition) maintained
//! DIFFERENTIAL: each touched partition computed again. Compared with
//! their query through rows moving between partitions, order keys changing, NULLs, a partition
//! emptied and refilled, a join, a WITH query, the first rows of each partition (the window in a
//! subquery, a CTE, a view); ties in the window's order kept a valid and stable answer; and what
//! stays refused, by name, with AUTO reading it FULL.

use pg_trickle_e2e::TestDb;

const QUERIES: [(&str, &str); 13] = [
    (
        "numbered",
        "SELECT id, p, o, row_number() OVER (PARTITION BY p ORDER BY o DESC NULLS LAST, id) AS rn FROM ev",
    ),
    (
        "neighbours",
        "SELECT id, p, lag(x) OVER (PARTITION BY p ORDER BY o, id) AS prev, lead(x, 2) OVER (PARTITION BY p ORDER BY o, id) AS next2, first_value(id) OVER (PARTITION BY p ORDER BY o, id) AS first FROM ev WHERE v > 2",
    ),
    (
        "shares",
        "SELECT id, p, v, sum(v) OVER (PARTITION BY p) AS total, count(*) OVER (PARTITION BY p) AS n, max(x) OVER (PARTITION BY p) AS hi FROM ev",
    ),
    (
        "joined",
        "SELECT e.id, c.name, lag(e.id) OVER (PARTITION BY c.name ORDER BY e.o, e.id) AS prev FROM ev e JOIN cat c ON c.p = e.p",
    ),
    (
        "offsets",
        "SELECT id, lead(x, 2147483647) OVER (PARTITION BY p ORDER BY o, id) AS far, lag(x, 3) OVER (PARTITION BY p ORDER BY o, id) AS back3, lead(id, 0) OVER (PARTITION BY p ORDER BY o, id) AS same FROM ev",
    ),
    (
        // Peers (rows tied in the order, NULLs among them) share their rank, whatever their order.
        "ranks",
        "SELECT id, p, o, rank() OVER (PARTITION BY p ORDER BY o DESC NULLS FIRST) AS r, dense_rank() OVER (PARTITION BY p ORDER BY o DESC NULLS FIRST) AS d, percent_rank() OVER (PARTITION BY p ORDER BY o DESC NULLS FIRST) AS pr, cume_dist() OVER (PARTITION BY p ORDER BY o DESC NULLS FIRST) AS cd FROM ev",
    ),
    (
        "tiles",
        "SELECT id, p, ntile(3) OVER (PARTITION BY p ORDER BY x, id) AS t3, ntile(40) OVER (PARTITION BY p ORDER BY x, id) AS t40, rank() OVER (PARTITION BY p ORDER BY x, id) AS r FROM ev WHERE v > 1",
    ),
    (
        "from_with",
        "WITH big AS (SELECT id, p, o FROM ev WHERE v > 5) SELECT id, p, row_number() OVER (PARTITION BY p ORDER BY o, id) AS rn FROM big",
    ),
    // The first rows of each partition in one query: the window in a subquery, a CTE, a view.
    (
        "top_two",
        "SELECT s.id, s.p, s.o, s.r FROM (SELECT id, p, o, rank() OVER (PARTITION BY p ORDER BY o DESC NULLS FIRST) AS r FROM ev) s WHERE s.r <= 2",
    ),
    (
        "top_named",
        "WITH firsts AS (SELECT id, p, row_number() OVER (PARTITION BY p ORDER BY x, id) AS rn FROM ev) SELECT c.name, firsts.id FROM firsts JOIN cat c ON c.p = firsts.p WHERE firsts.rn = 1",
    ),
    (
        "top_of_view",
        "SELECT p, count(*) AS n, max(v) AS hi FROM ev_ranked WHERE d <= 3 GROUP BY p",
    ),
    // Only the windowed query's columns are collected: an array over it is the query's own.
    (
        "firsts_listed",
        "SELECT s.p, array_agg(s.id ORDER BY s.id) AS ids FROM (SELECT id, p, rank() OVER (PARTITION BY p ORDER BY o) AS r FROM ev) s WHERE s.r = 1 GROUP BY s.p",
    ),
    // A window in a scalar subquery's FROM is that subquery's, not a window inside an expression.
    (
        "firsts_counted",
        "SELECT c.name, (SELECT count(*) FROM (SELECT id, p, rank() OVER (PARTITION BY p ORDER BY o DESC NULLS FIRST) AS r FROM ev) s WHERE s.p = c.p AND s.r = 1) AS firsts FROM cat c",
    ),
];

#[test]
fn windows_over_partitions_follow_their_query() {
    let mut db = TestDb::new("window_functions");
    db.exec(
        "CREATE TABLE ev (id int PRIMARY KEY, p int, o int, x text, v numeric(8,2));
         INSERT INTO ev SELECT i, i % 5, (i * 7) % 11, 'x' || i, i * 0.75 FROM generate_series(1, 80) i;
         CREATE TABLE cat (p int PRIMARY KEY, name text);
         INSERT INTO cat SELECT i, 'c' || (i % 3) FROM generate_series(0, 4) i;
         CREATE VIEW ev_ranked AS SELECT id, p, v, dense_rank() OVER (PARTITION BY p ORDER BY v DESC NULLS LAST) AS d FROM ev;",
    );
    for (st, query) in QUERIES {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{st}', $q${query}$q$, '1h', 'DIFFERENTIAL')"
        ));
        db.assert_shows_what_query_shows(st, query);
    }
    for step in [
        "UPDATE ev SET o = o + 3 WHERE id % 4 = 0",
        "UPDATE ev SET p = (p + 1) % 5 WHERE id % 6 = 0",
        "DELETE FROM ev WHERE id % 9 = 0; INSERT INTO ev VALUES (200, 2, 5, 'new', 7), (201, NULL, 1, 'n', 3), (202, NULL, NULL, NULL, NULL), (203, 1, NULL, 'z', 9)",
        "DELETE FROM ev WHERE p = 3",
        "INSERT INTO ev SELECT i, 3, i % 4, 'back' || i, i FROM generate_series(300, 310) i",
        "UPDATE cat SET name = 'c9' WHERE p = 1; UPDATE ev SET x = x || '!' WHERE id = 2",
        "UPDATE ev SET v = 0 WHERE id % 5 = 1",
    ] {
        db.exec(step);
        for (st, query) in QUERIES {
            db.assert_refreshes_differentially(st, query, step);
        }
    }
}

/// Rows tied in the window's order are numbered by how they print: a valid numbering, which a
/// partition no change touches keeps, and which a FULL refresh computes alike.
#[test]
fn ties_in_the_order_keep_a_valid_and_stable_numbering() {
    let mut db = TestDb::new("window_functions_ties");
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, grp int, score int);
         INSERT INTO t SELECT i, i % 3, i % 4 FROM generate_series(1, 60) i;
         SELECT pgtrickle.create_stream_table('ranked', 'SELECT id, grp, score, row_number() OVER (PARTITION BY grp ORDER BY score) AS rn FROM t', '1h', 'DIFFERENTIAL');",
    );
    // Valid: the rows of t, each group numbered 1..n, and a higher score never numbered before a lower one.
    let problems = "SELECT 'not the rows of t: ' || x::text FROM ((SELECT id, grp, score FROM ranked EXCEPT ALL SELECT id, grp, score FROM t)
                         UNION ALL (SELECT id, grp, score FROM t EXCEPT ALL SELECT id, grp, score FROM ranked)) x
                    UNION ALL
                    SELECT 'numbering of group ' || grp FROM ranked GROUP BY grp
                     HAVING count(DISTINCT rn) <> count(*) OR min(rn) <> 1 OR max(rn) <> count(*)
                    UNION ALL
                    SELECT 'out of order: ' || a.id || ' before ' || b.id FROM ranked a JOIN ranked b
                        ON a.grp = b.grp AND a.rn < b.rn AND a.score > b.score";
    let check = |db: &mut TestDb, step: &str| {
        let found: Vec<String> = db
            .rows(problems, &[])
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        assert!(found.is_empty(), "{step}: {}", found.join("\n"));
    };
    check(&mut db, "created");
    // Each step refreshed DIFFERENTIAL (a stored row it did not expect would be repaired with FULL).
    let refreshed_after = |db: &mut TestDb, step: &str| {
        db.exec(step);
        db.exec("SELECT pgtrickle.refresh_stream_table('ranked')");
        assert_eq!(db.last_refresh("ranked").0, "DIFFERENTIAL", "{step}");
        check(db, step);
    };
    for step in [
        "UPDATE t SET score = 1 WHERE id % 5 = 0",
        "DELETE FROM t WHERE id % 7 = 0; INSERT INTO t VALUES (100, 0, 1), (101, 1, 1)",
        "UPDATE t SET grp = 2 WHERE id % 8 = 1",
    ] {
        refreshed_after(&mut db, step);
    }
    // A partition the batch does not touch keeps its numbering.
    let others = "SELECT string_agg(id || ':' || rn, ',' ORDER BY id) FROM ranked WHERE grp <> 0";
    let before: String = db.value(others);
    db.exec("UPDATE t SET score = score + 1 WHERE grp = 0");
    db.exec("SELECT pgtrickle.refresh_stream_table('ranked')");
    assert_eq!(db.value::<String>(others), before);
    // A FULL refresh numbers tied rows as the refreshes after it do: they find every stored row
    // they expect.
    db.exec("TRUNCATE t; INSERT INTO t SELECT i, i % 3, i % 4 FROM generate_series(1, 60) i");
    db.exec("SELECT pgtrickle.refresh_stream_table('ranked')");
    assert_eq!(db.last_refresh("ranked").0, "FULL");
    check(&mut db, "after TRUNCATE");
    for step in [
        "UPDATE t SET id = id + 1000 WHERE id % 2 = 0",
        "DELETE FROM t WHERE id % 3 = 0",
    ] {
        refreshed_after(&mut db, step);
    }
}

#[test]
fn what_stays_refused_and_why() {
    let mut db = TestDb::new("window_functions_refused");
    db.exec(
        "CREATE TYPE pr AS (a int, b text);
         CREATE FUNCTION plus_hundred(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT coalesce($1, 0) + 100';
         CREATE AGGREGATE public.ntile(int) (sfunc = plus_hundred, stype = int);
         CREATE TABLE w (id int PRIMARY KEY, g int, o int, tags text[], iv int2vector);
         INSERT INTO w SELECT i, i % 3, i % 5, ARRAY['t' || i], '1 2' FROM generate_series(1, 20) i;",
    );
    for (query, why) in [
        (
            "SELECT id, row_number() OVER (ORDER BY id) AS rn FROM w",
            "a window function over the whole result",
        ),
        (
            "SELECT id, row_number() OVER (PARTITION BY 1 ORDER BY id) AS rn FROM w",
            "a window function over the whole result",
        ),
        (
            "SELECT id, string_agg(tags[1], ',') OVER (PARTITION BY g) AS s FROM w",
            "string_agg() over a partition",
        ),
        (
            "SELECT id, iv, row_number() OVER (PARTITION BY g ORDER BY id) AS rn FROM w",
            "a column of array type (iv int2vector)",
        ),
        (
            "SELECT id, nth_value(id, 2) OVER (PARTITION BY g ORDER BY o) AS r FROM w",
            "window function nth_value()",
        ),
        (
            "SELECT id, ntile(o) OVER (PARTITION BY g ORDER BY o, id) AS t FROM w",
            "ntile() with an argument that is not a positive integer constant",
        ),

        (
            "SELECT id, sum(o) OVER (PARTITION BY g ORDER BY id) AS running FROM w",
            "a running aggregate (sum() OVER (... ORDER BY ...))",
        ),
        (
            "SELECT id, row_number() OVER (PARTITION BY g ORDER BY o, id) - 1 AS r0 FROM w",
            "a window function inside an expression",
        ),
        (
            "SELECT id, tags, row_number() OVER (PARTITION BY g ORDER BY id) AS rn FROM w",
            "a column of array type (tags text[]) under DISTINCT ON or a window function",
        ),
        (
            "SELECT id, ROW(o, id::text)::pr AS c, row_number() OVER (PARTITION BY g ORDER BY id) AS rn FROM w",
            "a column of composite type (c public.pr) under a window function",
        ),
        // A subquery's, a CTE's columns are collected as the query's own are.
        (
            "SELECT s.id FROM (SELECT id, tags, row_number() OVER (PARTITION BY g ORDER BY id) AS rn FROM w) s WHERE s.rn = 1",
            "a column of array type (tags text[]) under DISTINCT ON or a window function",
        ),
        (
            "WITH c AS (SELECT id, ROW(o, id::text)::pr AS c, row_number() OVER (PARTITION BY g ORDER BY id) AS rn FROM w) SELECT id FROM c WHERE rn = 1",
            "a column of composite type (c public.pr) under a window function",
        ),
        (
            "SELECT s.id FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM w) s WHERE s.rn = 1",
            "a window function over the whole result",
        ),
        // A refill of the LIMIT would run the query, which breaks ties in its own way.
        (
            "SELECT s.id, s.r FROM (SELECT id, rank() OVER (PARTITION BY g ORDER BY o) AS r FROM w) s ORDER BY s.r, s.id LIMIT 3",
            "ORDER BY ... LIMIT over a subquery, CTE or view with DISTINCT ON or window functions",
        ),
        (
            "SELECT id FROM w WHERE id IN (SELECT row_number() OVER (PARTITION BY g ORDER BY id) FROM w)",
            "window function row_number() in a UNION branch or in a subquery of an expression",
        ),
    ] {
        let err = db.error(&format!(
            "SELECT pgtrickle.create_stream_table('x', $q${query}$q$, '1h', 'DIFFERENTIAL')"
        ));
        assert_eq!(err.code, "0A000", "{query}: {err:?}");
        assert!(err.message.contains(why), "{query}: {err:?}");
    }
    // A user's aggregate named ntile, found first on the search_path, is not PostgreSQL's ntile.
    db.exec("SET search_path = public, pg_catalog");
    let err = db.error(
        "SELECT pgtrickle.create_stream_table('x', 'SELECT id, ntile(3) OVER (PARTITION BY g ORDER BY o, id) AS t FROM w', '1h', 'DIFFERENTIAL')",
    );
    assert_eq!(err.code, "0A000", "{err:?}");
    assert!(
        err.message
            .contains("window function public.ntile() (only PostgreSQL's own"),
        "{err:?}"
    );
    db.exec("RESET search_path");
    // The rank helper called by hand with what the rewrite never passes: PostgreSQL's errors.
    for (call, code) in [
        (
            "SELECT pgtrickle._window_ranks(ARRAY['(1,1)'::point], 'r')",
            "42883",
        ),
        ("SELECT pgtrickle._window_ranks(ARRAY[1, 2], 'x')", "22023"),
    ] {
        assert_eq!(db.error(call).code, code, "{call}");
    }
    assert_eq!(
        db.value::<String>("SELECT pgtrickle._window_ranks(ARRAY[1, NULL, NULL, 2], 'r')::text"),
        "{1,2,2,4}"
    );
    // Nothing was left half-created, and AUTO reads such a query FULL, exactly.
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_stream_tables"),
        0
    );
    auto_reads_it_full(
        &mut db,
        "whole",
        "SELECT id, row_number() OVER (ORDER BY id) AS rn FROM w",
        "DELETE FROM w WHERE id = 3",
    );
}

/// `ORDER BY ... LIMIT` over a windowed subquery is read FULL by AUTO, and holds its LIMIT's rows
/// from the first refresh on.
#[test]
fn a_limit_over_a_windowed_subquery_is_read_full_and_holds_its_rows() {
    let mut db = TestDb::new("window_functions_limit");
    db.exec(
        "CREATE TABLE w (id int PRIMARY KEY, g int, o int);
         INSERT INTO w SELECT i, i % 4, (i * 7) % 10 FROM generate_series(1, 40) i;",
    );
    auto_reads_it_full(
        &mut db,
        "first3",
        "SELECT s.id, s.g, s.r FROM (SELECT id, g, rank() OVER (PARTITION BY g ORDER BY o DESC) AS r FROM w) s ORDER BY s.r, s.id LIMIT 3",
        "UPDATE w SET o = 100 WHERE id = 40",
    );
    assert_eq!(db.value::<i64>("SELECT count(*) FROM first3"), 3);
}

/// Creates `name` AUTO over `query`, which DIFFERENTIAL refuses: it refreshes FULL, and after
/// `change` shows what the query shows. (The only stream table of the database.)
fn auto_reads_it_full(db: &mut TestDb, name: &str, query: &str, change: &str) {
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('{name}', $q${query}$q$, '1h', 'AUTO')"
    ));
    assert_eq!(
        db.value::<String>("SELECT effective_mode FROM pgtrickle.pgt_stream_tables"),
        "FULL"
    );
    db.exec(&format!(
        "{change}; SELECT pgtrickle.refresh_stream_table('{name}')"
    ));
    db.assert_matches_query(name, query);
}

/// A catalog without `pgtrickle._window_ranks` (a 0.2.0 catalog made before it; `ALTER EXTENSION
/// pg_trickle UPDATE` adds it only to a 0.1.0 one) refuses rank() and its kin DIFFERENTIAL, saying
/// why, and AUTO reads such a query FULL.
#[test]
fn ranks_need_the_catalogs_function() {
    let mut db = TestDb::new("window_functions_old_catalog");
    db.exec(
        "CREATE TABLE s (id int PRIMARY KEY, g int, o int);
         INSERT INTO s SELECT i, i % 3, i % 4 FROM generate_series(1, 30) i;
         ALTER EXTENSION pg_trickle DROP FUNCTION pgtrickle._window_ranks(anyarray, \"char\");
         DROP FUNCTION pgtrickle._window_ranks(anyarray, \"char\");",
    );
    let query = "SELECT id, rank() OVER (PARTITION BY g ORDER BY o) AS r FROM s";
    let err = db.error(&format!(
        "SELECT pgtrickle.create_stream_table('ranked', $q${query}$q$, '1h', 'DIFFERENTIAL')"
    ));
    assert_eq!(err.code, "0A000", "{err:?}");
    assert!(
        err.message
            .contains("rank() with a pg_trickle catalog that lacks pgtrickle._window_ranks"),
        "{err:?}"
    );
    auto_reads_it_full(
        &mut db,
        "ranked",
        query,
        "UPDATE s SET o = 0 WHERE id % 5 = 0",
    );
}
