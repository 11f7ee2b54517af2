//! Rows are identified by what they show, not by equality: a change that only alters a value's
//! representation (`1.5` → `1.50`, `'1 day'` → `'24 hours'`) reaches the stream table, through the
//! plain apply, an aggregate recomputed per group, and an aggregate kept from stored state — and
//! without a FULL repair.

use pg_trickle_e2e::TestDb;

/// Rows of the stream table and of its query compared as text, both ways.
fn text_diff(db: &mut TestDb, st: &str, columns: &str, query: &str) -> Vec<String> {
    let sql = format!(
        "SELECT 'only in stream table: ' || x FROM (SELECT ROW({columns})::text AS x FROM {st} EXCEPT ALL SELECT ROW({columns})::text FROM ({query}) q) a
         UNION ALL
         SELECT 'only in query: ' || x FROM (SELECT ROW({columns})::text AS x FROM ({query}) q EXCEPT ALL SELECT ROW({columns})::text FROM {st}) b"
    );
    db.rows(&sql, &[]).iter().map(|r| r.get(0)).collect()
}

#[test]
fn changes_of_representation_only_are_applied() {
    let mut db = TestDb::new("identity_repr");
    db.exec(
        "CREATE TABLE r (id int PRIMARY KEY, g int, v numeric, i interval);
         INSERT INTO r VALUES (1, 1, 1.5, '1 day'), (2, 1, 2.25, '2 days'), (3, 2, 7, '1 hour');",
    );
    let shapes = [
        ("plain", "SELECT id, v, i FROM r", "id, v, i"),
        // count(DISTINCT ...) has no rule from stored state: every touched group is recomputed.
        (
            "recomputed",
            "SELECT g, sum(v) AS s, max(i) AS mi, count(DISTINCT i) AS di FROM r GROUP BY g",
            "g, s, mi, di",
        ),
        (
            "from_state",
            "SELECT g, min(v) AS lo, count(*) AS n FROM r GROUP BY g",
            "g, lo, n",
        ),
        (
            "sums_from_state",
            "SELECT g, sum(v) AS s, avg(v) AS a FROM r GROUP BY g",
            "g, s, a",
        ),
    ];
    for (st, query, _) in shapes {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{st}', '{query}', '1h', 'DIFFERENTIAL')"
        ));
    }
    for st in ["from_state", "sums_from_state"] {
        let plan: String = db.value(&format!("SELECT pgtrickle.explain_stream_table('{st}')"));
        assert!(plan.contains("maintained from stored state"), "{plan}");
    }
    let plan: String = db.value("SELECT pgtrickle.explain_stream_table('recomputed')");
    assert!(!plan.contains("maintained from stored state"), "{plan}");

    for (step, dml) in [
        (
            "1.5 -> 1.50 and 1 day -> 24 hours",
            "UPDATE r SET v = 1.50, i = '24 hours' WHERE id = 1",
        ),
        ("7 -> 7.000", "UPDATE r SET v = 7.000 WHERE id = 3"),
        (
            "back again",
            "UPDATE r SET v = 1.5, i = '1 day' WHERE id = 1",
        ),
    ] {
        db.exec(dml);
        for (st, query, columns) in shapes {
            db.exec(&format!("SELECT pgtrickle.refresh_stream_table('{st}')"));
            let (action, reason) = db.last_refresh(st);
            assert_eq!(action, "DIFFERENTIAL", "{step}: {st}: {reason}");
            let diff = text_diff(&mut db, st, columns, query);
            assert!(
                diff.is_empty(),
                "{step}: {st} shows other values than its query:\n{}",
                diff.join("\n")
            );
        }
    }
}

/// A group's minimum has two equal copies that print differently; the one it shows is deleted. The
/// stored minimum must become the copy that remains (the counted copies are equal ones, not
/// identical ones, so the group is recomputed).
#[test]
fn deleting_the_shown_copy_of_a_tied_extremum_shows_the_remaining_one() {
    const LOWEST: &str = "SELECT g, min(v) AS lo, max(i) AS hi, count(*) AS n FROM r GROUP BY g";
    let mut db = TestDb::new("identity_tied_extremum");
    db.exec(
        "CREATE TABLE r (id serial PRIMARY KEY, g int, v numeric, i interval);
             INSERT INTO r (g, v, i) VALUES (1, 2.0, '1 hour');",
    );
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('lowest', '{LOWEST}', '1h', 'DIFFERENTIAL')"
    ));
    for (step, dml) in [
        (
            "a new minimum",
            "INSERT INTO r (g, v, i) VALUES (1, 1.5, '1 day')",
        ),
        (
            "an equal copy that prints differently",
            "INSERT INTO r (g, v, i) VALUES (1, 1.50, '24 hours')",
        ),
        (
            "the shown copies deleted",
            "DELETE FROM r WHERE v::text = '1.5' OR i::text = '1 day'",
        ),
    ] {
        db.exec(dml);
        db.exec("SELECT pgtrickle.refresh_stream_table('lowest')");
        let (action, reason) = db.last_refresh("lowest");
        assert_eq!(action, "DIFFERENTIAL", "{step}: {reason}");
        if step == "the shown copies deleted" {
            let diff = text_diff(&mut db, "lowest", "g, lo, hi, n", LOWEST);
            assert!(
                diff.is_empty(),
                "{step}: the stream table shows a value no row holds:\n{}",
                diff.join("\n")
            );
        }
    }
}

/// A sum shows as many decimals as its most precise input: over `numeric` without a declared scale
/// they vary, and the sum must drop the extra decimals when the most precise input leaves; over an
/// expression whose every value has the same scale (`v * v` over numeric(10,2): four decimals) they
/// cannot, and the engine keeps no scale state for it (`dvm::scale`).
#[test]
fn a_sum_shows_the_decimals_of_its_most_precise_remaining_input() {
    const SUMS: &str = "SELECT g, sum(x) AS sx, avg(x) AS ax, sum(v * v) AS vv, sum(v * 2 - v) AS v1 FROM r GROUP BY g";
    let mut db = TestDb::new("identity_sum_scale");
    db.exec(
        "CREATE TABLE r (id int PRIMARY KEY, g int, x numeric, v numeric(10,2));
         INSERT INTO r VALUES (1, 1, 1.5, 1.10), (2, 1, 1.50, 2), (3, 2, 7, 0.5);",
    );
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('sums', '{SUMS}', '1h', 'DIFFERENTIAL')"
    ));
    let hidden: i64 = db.value(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = 'sums'::regclass AND attname LIKE '__pgt_a%' AND NOT attisdropped",
    );
    // One state per aggregate, and a largest input scale for sum(x) and avg(x) only.
    assert_eq!(hidden, 6, "no scale state for v * v or v * 2 - v");
    for (step, dml) in [
        (
            "the most precise input leaves",
            "DELETE FROM r WHERE id = 2",
        ),
        (
            "a more precise one comes",
            "INSERT INTO r VALUES (4, 1, 0.125, 3.33)",
        ),
        ("and leaves again", "UPDATE r SET x = 0.1 WHERE id = 4"),
    ] {
        db.exec(dml);
        db.exec("SELECT pgtrickle.refresh_stream_table('sums')");
        let (action, reason) = db.last_refresh("sums");
        assert_eq!(action, "DIFFERENTIAL", "{step}: {reason}");
        let diff = text_diff(&mut db, "sums", "g, sx, ax, vv, v1", SUMS);
        assert!(diff.is_empty(), "{step}:\n{}", diff.join("\n"));
    }
}
