//! `GROUP BY ROLLUP`, `CUBE` and `GROUPING SETS` maintained DIFFERENTIAL: one grouped query per set
//! under UNION ALL, the keys a set leaves out NULL, `GROUPING(...)` its constant. Compared with their
//! query through changes of keys and amounts, NULL keys (beside the NULLs of subtotal rows), the
//! table emptied (the grand total's row stays) and refilled; and what stays refused.

use pg_trickle_e2e::TestDb;

const QUERIES: [(&str, &str); 10] = [
    (
        "by_rollup",
        "SELECT region, product, count(*) AS n, sum(amount) AS total, avg(qty) AS avg_qty, GROUPING(region, product) AS level FROM sales GROUP BY ROLLUP (region, product)",
    ),
    (
        "by_cube",
        "SELECT region, product, count(*) AS n, sum(qty) AS q FROM sales GROUP BY CUBE (region, product) HAVING count(*) > 2",
    ),
    (
        "by_sets",
        "SELECT coalesce(region, 'all') AS region, product, count(DISTINCT qty) AS kinds, GROUPING(product) AS g FROM sales GROUP BY GROUPING SETS ((region), (product), ())",
    ),
    (
        "key_beside_rollup",
        "SELECT region, product, qty % 2 AS odd, sum(amount) AS total FROM sales GROUP BY region, ROLLUP (product, qty % 2)",
    ),
    (
        "joined",
        "SELECT r.zone, s.product, count(*) AS n, sum(s.amount) AS total FROM sales s JOIN regions r ON r.region = s.region GROUP BY ROLLUP (r.zone, s.product)",
    ),
    // A kept key that is a function of a key the set leaves out keeps its value.
    (
        "function_key",
        "SELECT upper(product) AS up, product, count(*) AS n FROM sales GROUP BY ROLLUP (upper(product), product)",
    ),
    // Without aggregates: the empty set is one row, and stays one.
    (
        "keys_only",
        "SELECT region, GROUPING(region) AS g FROM sales GROUP BY GROUPING SETS ((region), ())",
    ),
    ("one_row", "SELECT 1 AS one FROM sales HAVING true"),
    (
        "in_subquery",
        "SELECT t.region, t.total FROM (SELECT region, sum(amount) AS total FROM sales GROUP BY ROLLUP (region)) t WHERE t.total > 100",
    ),
    // Without a grand total, a scalar subquery beside the aggregates is read.
    (
        "with_lookup",
        "SELECT region, product, count(*) AS n, (SELECT max(r.zone) FROM regions r) AS top_zone FROM sales GROUP BY GROUPING SETS ((region), (product))",
    ),
];

#[test]
fn grouping_sets_follow_their_query() {
    let mut db = TestDb::new("grouping_sets");
    db.exec(
        "CREATE TABLE sales (id int PRIMARY KEY, region text, product text, amount numeric(10,2), qty int);
         INSERT INTO sales SELECT i, CASE WHEN i % 11 = 0 THEN NULL ELSE 'r' || (i % 4) END, 'p' || (i % 3), i * 1.25, i % 7
           FROM generate_series(1, 120) i;
         CREATE TABLE regions (region text PRIMARY KEY, zone text);
         INSERT INTO regions VALUES ('r0', 'north'), ('r1', 'north'), ('r2', 'south'), ('r3', NULL);",
    );
    for (st, query) in QUERIES {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{st}', $q${query}$q$, '1h', 'DIFFERENTIAL')"
        ));
        db.assert_shows_what_query_shows(st, query);
    }
    for step in [
        "UPDATE sales SET amount = amount + 1.50 WHERE id % 4 = 0",
        "UPDATE sales SET region = 'r9' WHERE id % 6 = 0; UPDATE sales SET product = NULL WHERE id % 10 = 0",
        "DELETE FROM sales WHERE region = 'r1'; INSERT INTO sales VALUES (500, NULL, NULL, NULL, NULL), (501, 'r2', 'p9', 2.50, 3)",
        "UPDATE regions SET zone = 'west' WHERE region = 'r2'; UPDATE sales SET qty = qty + 1 WHERE id % 9 = 2",
        "DELETE FROM sales",
        "INSERT INTO sales SELECT i, 'r' || (i % 2), 'p' || (i % 2), i, i FROM generate_series(1, 9) i",
    ] {
        db.exec(step);
        for (st, query) in QUERIES {
            db.assert_refreshes_differentially(st, query, step);
        }
    }
    // The grand total of an empty table is one row, as in PostgreSQL.
    db.exec("DELETE FROM sales");
    db.assert_refreshes_differentially("by_rollup", QUERIES[0].1, "emptied again");
    assert_eq!(
        db.value::<String>(
            "SELECT n || '/' || level || '/' || coalesce(total::text, 'NULL') FROM by_rollup"
        ),
        "0/3/NULL"
    );
}

#[test]
fn what_stays_refused_and_why() {
    let mut db = TestDb::new("grouping_sets_refused");
    db.exec(
        "CREATE TABLE s (id int PRIMARY KEY, a int, b int, c int, d int, x numeric);
         INSERT INTO s SELECT i, i % 3, i % 5, i % 2, i % 4, i / 4.0 FROM generate_series(1, 30) i;",
    );
    for (query, why) in [
        (
            "SELECT count(*) AS n FROM s GROUP BY CUBE (a, b), CUBE (c, d), CUBE (id, x), CUBE (a, c)",
            "more than 64 grouping sets",
        ),
        (
            "SELECT DISTINCT a, count(*) AS n FROM s GROUP BY ROLLUP (a, b)",
            "DISTINCT over grouping sets",
        ),
        (
            "SELECT a, count(*) AS n FROM s GROUP BY GROUPING SETS ((a), CUBE (b))",
            "ROLLUP or CUBE inside GROUPING SETS",
        ),
        (
            "SELECT a, b, count(*) AS n FROM s GROUP BY DISTINCT ROLLUP (a, b), ROLLUP (a)",
            "GROUP BY DISTINCT",
        ),
        // Which of equal numerics (1.5, 1.50) a max shows cannot be read back under the union.
        (
            "SELECT a, max(x) AS hi FROM s GROUP BY ROLLUP (a)",
            "max() over numeric",
        ),
        (
            "SELECT a, count(*) AS n, (SELECT max(id) FROM s) AS top FROM s GROUP BY ROLLUP (a)",
            "a scalar subquery in the SELECT list or HAVING with a grand total",
        ),
    ] {
        let err = db.error(&format!(
            "SELECT pgtrickle.create_stream_table('x', $q${query}$q$, '1h', 'DIFFERENTIAL')"
        ));
        assert_eq!(err.code, "0A000", "{query}: {err:?}");
        assert!(err.message.contains(why), "{query}: {err:?}");
    }
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_stream_tables"),
        0
    );
    // AUTO reads it FULL, exactly.
    let query = "SELECT a, max(x) AS hi FROM s GROUP BY ROLLUP (a)";
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('hi', $q${query}$q$, '1h', 'AUTO')"
    ));
    assert_eq!(
        db.value::<String>("SELECT effective_mode FROM pgtrickle.pgt_stream_tables"),
        "FULL"
    );
    db.exec("UPDATE s SET x = x * 2 WHERE a = 1; SELECT pgtrickle.refresh_stream_table('hi')");
    db.assert_matches_query("hi", query);
}
