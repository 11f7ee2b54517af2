//! Column types whose operators PostgreSQL finds indirectly: `varchar` (through `text`'s operator
//! classes), a domain (through its base type), arrays and composite types. The engine asks the type
//! cache, as GROUP BY and `hash_record_extended` do; a catalog lookup by the exact type once refused
//! every `varchar` output column ("no hash function") and kept `varchar` group keys from stored state.

use pg_trickle_e2e::TestDb;

#[test]
fn varchar_domains_arrays_and_composites_are_maintained_differentially() {
    let mut db = TestDb::new("column_types");
    db.exec(
        "CREATE DOMAIN money2 AS numeric(12,2) CHECK (VALUE >= 0);
         CREATE TYPE pair AS (a int, b text);
         CREATE TABLE t (id int PRIMARY KEY, name varchar(20), code char(3), amount money2, tags varchar(10)[], p pair);
         INSERT INTO t SELECT i, 'name' || (i % 7), 'c' || (i % 3), i * 1.25, ARRAY['x' || (i % 4)], ROW(i % 5, 'b')::pair
           FROM generate_series(1, 60) i;",
    );
    let rows = "SELECT id, name, code, amount, tags, p FROM t WHERE amount > 10";
    let groups = "SELECT name, count(*) AS n, sum(id) AS total, min(name) AS lo, max(code) AS hi FROM t GROUP BY name";
    for (st, query) in [("rows_st", rows), ("groups_st", groups)] {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{st}', $q${query}$q$, '1h', 'DIFFERENTIAL')"
        ));
    }
    let plan: String = db.value("SELECT pgtrickle.explain_stream_table('groups_st')");
    assert!(
        plan.contains("Aggregates: maintained from stored state"),
        "varchar keys keep state:\n{plan}"
    );
    for dml in [
        "UPDATE t SET name = 'renamed', amount = amount + 1 WHERE id % 5 = 0",
        "DELETE FROM t WHERE id % 7 = 1",
        "INSERT INTO t VALUES (100, 'name1', 'c9', 99.99, ARRAY['y'], ROW(1, 'z')), (101, NULL, NULL, NULL, NULL, NULL)",
        "UPDATE t SET tags = tags || 'w'::varchar, p = ROW((p).a + 1, 'c') WHERE id % 3 = 0",
    ] {
        db.exec(dml);
        for (st, query) in [("rows_st", rows), ("groups_st", groups)] {
            db.exec(&format!("SELECT pgtrickle.refresh_stream_table('{st}')"));
            let (action, reason) = db.last_refresh(st);
            assert_eq!(action, "DIFFERENTIAL", "{st} after {dml}: {reason}");
            let diff = db.multiset_diff(st, query);
            assert!(diff.is_empty(), "{st} after {dml}:\n{}", diff.join("\n"));
        }
    }
}
