//! Values that are equal but print differently — `1.5` and `1.50`, `'1 day'` and `'24 hours'`, `0`
//! and `-0`, `'A'` and `'a'` under citext — must show in a stream table exactly as its query shows
//! them: a change that only alters a value's representation is a change. And what a refresh
//! computes must not depend on the refreshing session's search_path (citext's `=` lives outside
//! pg_catalog).

use pg_trickle_e2e::TestDb;

fn refresh(db: &mut TestDb, st: &str) -> String {
    db.exec(&format!("SELECT pgtrickle.refresh_stream_table('{st}')"));
    db.last_refresh(st).0
}

fn db(name: &str) -> TestDb {
    let mut db = TestDb::new(name);
    db.exec(
        "CREATE SCHEMA ext; CREATE EXTENSION citext SCHEMA ext;
         SET search_path = public, ext;
         CREATE TABLE t (id int PRIMARY KEY, k int, x numeric, iv interval, f float8, c ext.citext);
         INSERT INTO t VALUES (1, 1, 1.5, '1 day', 0, 'a'), (2, 1, 2.25, '2 hours', 1.5, 'b'),
                              (3, 2, 10, '1 day', -2, 'A'), (4, NULL, NULL, NULL, NULL, NULL);",
    );
    db
}

#[test]
fn a_change_of_representation_alone_reaches_scans_and_joins() {
    let mut db = db("repr_scan");
    const Q: &str = "SELECT id, k, x, iv, f, c FROM t WHERE id > 0";
    const J: &str = "SELECT a.id AS a, b.id AS b, b.x AS x FROM t a JOIN t b ON a.c = b.c";
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('s', '{Q}', '1h', 'DIFFERENTIAL')"
    ));
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('j', '{J}', '1h', 'DIFFERENTIAL')"
    ));
    db.exec(
        "UPDATE t SET x = 1.50 WHERE id = 1;
         UPDATE t SET iv = '24 hours' WHERE id = 3;
         UPDATE t SET f = -f WHERE id = 1;
         UPDATE t SET c = 'B' WHERE id = 2;
         UPDATE t SET x = 10.000 WHERE id = 3;",
    );
    assert_eq!(refresh(&mut db, "s"), "DIFFERENTIAL");
    db.assert_shows_what_query_shows("s", Q);
    assert_eq!(refresh(&mut db, "j"), "DIFFERENTIAL");
    db.assert_shows_what_query_shows("j", J);
    // And back.
    db.exec("UPDATE t SET x = 1.5, f = 0 WHERE id = 1; UPDATE t SET x = 10 WHERE id = 3;");
    assert_eq!(refresh(&mut db, "s"), "DIFFERENTIAL");
    db.assert_shows_what_query_shows("s", Q);
    assert_eq!(refresh(&mut db, "j"), "DIFFERENTIAL");
    db.assert_shows_what_query_shows("j", J);
}

#[test]
fn aggregates_show_the_scale_the_query_shows() {
    let mut db = db("repr_aggregates");
    const Q: &str =
        "SELECT k, count(*) AS n, sum(x) AS sx, avg(x) AS ax, max(iv) AS mi FROM t GROUP BY k";
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('a', '{Q}', '1h', 'DIFFERENTIAL')"
    ));
    // Sums alone (no MIN/MAX whose recomputation would also fix the sum's scale).
    const SUMS: &str = "SELECT k, sum(x) AS sx, avg(x) AS ax FROM t GROUP BY k";
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('s', '{SUMS}', '1h', 'DIFFERENTIAL')"
    ));
    for step in [
        "UPDATE t SET x = 1.500 WHERE id = 1",
        "INSERT INTO t VALUES (5, 1, 0.125, '3 hours', 0, 'c')",
        "DELETE FROM t WHERE id = 5",
        "UPDATE t SET x = 1.5 WHERE id = 1",
        "UPDATE t SET iv = '48 hours' WHERE id = 3",
        "UPDATE t SET iv = '2 days' WHERE id = 3",
    ] {
        db.exec(step);
        let action = refresh(&mut db, "a");
        assert!(action == "DIFFERENTIAL", "{step}: {action}");
        db.assert_shows_what_query_shows("a", Q);
        let action = refresh(&mut db, "s");
        assert!(
            action == "DIFFERENTIAL" || action == "NO_DATA",
            "{step}: {action}"
        );
        db.assert_shows_what_query_shows("s", SUMS);
    }
}

/// Group keys whose equal values print differently: a group shows one member's text, and must show
/// a text some current member has — not a deleted member's. Each step leaves every group with members
/// of one text only (so the query's own output is unambiguous), after the text the stream table showed
/// was deleted.
#[test]
fn group_keys_show_a_current_members_text() {
    let mut db = db("repr_group_keys");
    db.exec("DELETE FROM t; INSERT INTO t VALUES (1, 1, 2.0, '1 day', 0, 'a'), (2, 1, 2, '24 hours', '-0', 'a');");
    const Q: &str = "SELECT x, iv, count(*) AS n, sum(k) AS sk FROM t GROUP BY x, iv";
    const F: &str = "SELECT f, count(*) AS n FROM t GROUP BY f";
    for (name, query) in [("g", Q), ("gf", F)] {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{name}', '{query}', '1h', 'DIFFERENTIAL')"
        ));
    }
    for step in [
        // Whichever member each group showed, delete the first; then replace the other by a third
        // text in one batch.
        "DELETE FROM t WHERE id = 1",
        "BEGIN; INSERT INTO t VALUES (3, 2, 2.000, '1 day', 0, 'a'); DELETE FROM t WHERE id = 2; COMMIT",
        // A new group whose only row was inserted and deleted in one batch with another text.
        "BEGIN; INSERT INTO t VALUES (4, 1, 7.50, '2 days', 1, 'b'); DELETE FROM t WHERE id = 4;
                INSERT INTO t VALUES (5, 1, 7.5, '48 hours', 1, 'b'); COMMIT",
    ] {
        db.exec(step);
        for (name, query) in [("g", Q), ("gf", F)] {
            let action = refresh(&mut db, name);
            assert_eq!(action, "DIFFERENTIAL", "{name} after {step}");
            db.assert_shows_what_query_shows(name, query);
        }
    }
}

#[test]
fn whole_extract_fields_and_rounded_values_group_like_integers() {
    // `EXTRACT(year FROM ...)` and `round(x, 1)` are numeric with a fixed number of decimals: their
    // groups keep their state when a batch deletes from them (TPC-H Q7, Q9), and stay exact, as do
    // sums of rounded values (no hidden largest scale); an epoch of a timestamp (decimals) and of a
    // date (none) next to them, grouped on their own.
    let mut db = TestDb::new("repr_extract");
    db.exec(
        "CREATE TABLE ev (id int PRIMARY KEY, d date, ts timestamp, v numeric(8,2), x numeric);
         INSERT INTO ev SELECT i, date '2020-01-01' + i * 40, timestamp '2020-01-01' + i * interval '7 hours 0.5 seconds',
                               i * 1.25, i / 7.0 FROM generate_series(1, 40) i;",
    );
    const Y: &str = "SELECT EXTRACT(year FROM d) AS y, EXTRACT(quarter FROM ts) AS q, count(*) AS n, sum(v) AS s FROM ev GROUP BY 1, 2";
    const E: &str = "SELECT EXTRACT(epoch FROM ts) AS e, EXTRACT(epoch FROM d) AS de, count(*) AS n FROM ev GROUP BY 1, 2";
    const R: &str = "SELECT round(x, 1) AS r, trunc(x) AS t, count(*) AS n, sum(round(x * 3, 2)) AS s, avg(abs(v)) AS a FROM ev GROUP BY 1, 2";
    for (name, query) in [("by_year", Y), ("by_epoch", E), ("by_round", R)] {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{name}', '{query}', '1h', 'DIFFERENTIAL')"
        ));
    }
    for step in [
        "DELETE FROM ev WHERE id % 3 = 0",
        "BEGIN; UPDATE ev SET d = d + 400, v = v + 1 WHERE id % 5 = 1; DELETE FROM ev WHERE id = 2;
                INSERT INTO ev VALUES (100, '2021-06-01', '2021-06-01 10:00:00.25', 3); COMMIT",
        "UPDATE ev SET x = x * 2 WHERE id % 4 = 0",
        "DELETE FROM ev WHERE d < '2022-01-01'",
    ] {
        db.exec(step);
        for (name, query) in [("by_year", Y), ("by_epoch", E), ("by_round", R)] {
            assert_eq!(
                refresh(&mut db, name),
                "DIFFERENTIAL",
                "{name} after {step}"
            );
            db.assert_shows_what_query_shows(name, query);
        }
    }
}

#[test]
fn citext_groups_and_joins_are_right_under_any_search_path() {
    let mut db = db("repr_search_path");
    // Grouped by a citext key: 'a' and 'A' are one group. string_agg is recomputed per group, count
    // and sum are kept from state: both paths must find the group's rows by citext's = .
    const G: &str = "SELECT lower(c::text) AS c, count(*) AS n, sum(id) AS s, string_agg(id::text, ',' ORDER BY id) AS ids
                       FROM t WHERE c IS NOT NULL GROUP BY c";
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('g', $q${G}$q$, '1h', 'DIFFERENTIAL')"
    ));
    // Refreshed by sessions that cannot see citext at all, or that see a hostile `=` first.
    db.exec(
        "CREATE SCHEMA evil;
         CREATE FUNCTION evil.eq(ext.citext, ext.citext) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
         CREATE OPERATOR evil.= (LEFTARG = ext.citext, RIGHTARG = ext.citext, FUNCTION = evil.eq);",
    );
    for (path, step) in [
        ("public", "INSERT INTO t VALUES (6, 1, 1, '1 hour', 1, 'A')"),
        ("evil, public, ext", "UPDATE t SET c = 'b' WHERE id = 6"),
        ("public", "DELETE FROM t WHERE id = 3"),
        (
            "evil, ext, public",
            "INSERT INTO t VALUES (7, 2, 1, '1 hour', 1, 'B'), (8, 2, 1, '1 hour', 1, 'a')",
        ),
    ] {
        db.exec(step);
        db.exec(&format!("SET search_path = {path}"));
        let action = refresh(&mut db, "g");
        db.exec("SET search_path = public, ext");
        assert_eq!(action, "DIFFERENTIAL", "{path}: {step}");
        db.assert_shows_what_query_shows("g", G);
    }
}

#[test]
fn a_nondeterministic_collation_is_read_in_full_and_says_why() {
    let mut db = TestDb::new("repr_nondeterministic");
    db.exec(
        "CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
         CREATE TABLE n (id int, name text COLLATE nocase);
         INSERT INTO n VALUES (1, 'A'), (2, 'a'), (3, 'b');",
    );
    let e = db.error("SELECT pgtrickle.create_stream_table('ng', 'SELECT name, count(*) AS c FROM n GROUP BY name', '1h', 'DIFFERENTIAL')");
    assert_eq!(e.code, "0A000");
    assert!(
        e.message
            .contains("column name of n with the nondeterministic collation nocase"),
        "{e:?}"
    );
    db.exec("SELECT pgtrickle.create_stream_table('ng', 'SELECT lower(name) AS name, count(*) AS c FROM n GROUP BY name', '1h', 'AUTO')");
    db.exec("INSERT INTO n VALUES (4, 'B'); SELECT pgtrickle.refresh_stream_table('ng');");
    db.assert_shows_what_query_shows(
        "ng",
        "SELECT lower(name) AS name, count(*) AS c FROM n GROUP BY name",
    );
}

/// A nondeterministic collation can come from the query rather than a column: `COLLATE`, a cast to a
/// domain that has one, a view that applies either. Once such a query grouped DIFFERENTIALly: after
/// 'ABC' joined the group of 'abc' and then left it, the stream table still showed 'ABC', a string
/// no row held any more.
#[test]
fn a_nondeterministic_collation_in_the_query_is_read_in_full() {
    let mut db = TestDb::new("repr_nondeterministic_query");
    db.exec(
        "CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
         CREATE DOMAIN nocase_text AS text COLLATE nocase;
         CREATE TABLE d (id int PRIMARY KEY, name text);
         INSERT INTO d VALUES (1, 'abc'), (2, 'x');
         CREATE VIEW d_nocase AS SELECT id, name::nocase_text AS name FROM d;",
    );
    let queries = [
        "SELECT substr(name, 1, 3) COLLATE nocase AS l, count(*) AS c FROM d GROUP BY 1",
        "SELECT DISTINCT name::nocase_text AS l FROM d",
        "SELECT name AS l, count(*) AS c FROM d_nocase GROUP BY name",
        "SELECT id FROM d WHERE name COLLATE nocase IN (SELECT 'ABC' UNION SELECT 'X')",
    ];
    for (i, q) in queries.iter().enumerate() {
        let e = db.error(&format!(
            "SELECT pgtrickle.create_stream_table('nd{i}', $q${q}$q$, '1h', 'DIFFERENTIAL')"
        ));
        assert_eq!(e.code, "0A000", "{q}: {e:?}");
        assert!(
            e.message.contains("the nondeterministic collation nocase"),
            "{q}: {e:?}"
        );
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('nd{i}', $q${q}$q$, '1h', 'AUTO')"
        ));
        assert_eq!(
            db.value::<String>(&format!(
                "SELECT effective_mode FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = 'nd{i}'::regclass"
            )),
            "FULL",
            "{q}"
        );
    }
    for step in [
        "INSERT INTO d VALUES (3, 'ABC')",
        "DELETE FROM d WHERE id = 3",
        "UPDATE d SET name = 'X' WHERE id = 2",
    ] {
        db.exec(step);
        for (i, q) in queries.iter().enumerate() {
            db.exec(&format!("SELECT pgtrickle.refresh_stream_table('nd{i}')"));
            db.assert_shows_what_query_shows(&format!("nd{i}"), q);
        }
    }
}
