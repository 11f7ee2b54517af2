//! Column types whose operators PostgreSQL finds indirectly: `varchar` (through `text`'s operator
//! classes), a domain (through its base type), arrays and composite types. The engine asks the type
//! cache, as GROUP BY and `hash_record_extended` do; a catalog lookup by the exact type once refused
//! every `varchar` output column ("no hash function") and kept `varchar` group keys from stored state.
//! Also composite values the query builds and takes apart, whose type is no source.

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

/// `json` has no equality and no hash function: PostgreSQL cannot GROUP BY it or hash it. Its text
/// is the value itself (json keeps its input verbatim), so the engine consolidates and identifies
/// json values by their text — `{"a":1}` and `{"a": 1}` are different values, as they are to a
/// reader. Once every query that read a json column was refused for DIFFERENTIAL, even one that only
/// grouped by a text field of it ("could not identify an equality operator for type json").
#[test]
fn json_columns_are_maintained_differentially_by_their_text() {
    let mut db = TestDb::new("column_types_json");
    db.exec(
        r#"CREATE TABLE tj (id int PRIMARY KEY, g int, payload json, tags json[]);
           CREATE TABLE kinds (g int PRIMARY KEY, label text);
           INSERT INTO kinds SELECT i, 'kind ' || i FROM generate_series(0, 3) i;
           INSERT INTO tj SELECT i, i % 4, json_build_object('t', i % 3, 'v', i),
                                 ARRAY[json_build_object('i', i % 2)]
             FROM generate_series(1, 40) i;"#,
    );
    let shapes = [
        ("rows_st", "SELECT id, payload, tags FROM tj WHERE g > 0"),
        ("bag_st", "SELECT payload FROM tj"),
        (
            "joined_st",
            "SELECT t.id, t.payload, k.label FROM tj t JOIN kinds k ON k.g = t.g",
        ),
        (
            "by_field_st",
            "SELECT payload->>'t' AS t, count(*) AS n, sum(g) AS s FROM tj GROUP BY payload->>'t'",
        ),
        (
            "texts_st",
            "SELECT g, string_agg(payload::text, ' ' ORDER BY id) AS texts FROM tj GROUP BY g",
        ),
    ];
    for (st, query) in shapes {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{st}', $q${query}$q$, '1h', 'DIFFERENTIAL')"
        ));
    }
    for dml in [
        // Same jsonb value, different json text: a change a reader sees.
        r#"UPDATE tj SET payload = replace(payload::text, ':', ' : ')::json WHERE id % 5 = 0"#,
        "UPDATE tj SET payload = NULL, tags = NULL WHERE id % 7 = 0",
        "DELETE FROM tj WHERE id % 6 = 1",
        // Duplicates of one text, and one of them gone again in the same batch.
        r#"INSERT INTO tj VALUES (100, 1, '{"t":1}', '{}'), (101, 1, '{"t":1}', '{}'), (102, 2, '{"t" :1}', NULL);
           DELETE FROM tj WHERE id = 101"#,
        r#"UPDATE tj SET payload = '{"t":1}' WHERE id = 102"#,
    ] {
        db.exec(dml);
        for (st, query) in shapes {
            db.exec(&format!("SELECT pgtrickle.refresh_stream_table('{st}')"));
            let (action, reason) = db.last_refresh(st);
            assert_eq!(action, "DIFFERENTIAL", "{st} after {dml}: {reason}");
            db.assert_shows_what_query_shows(st, query);
        }
    }
}

/// Subscripts of array and jsonb columns (`t.tags[1]`, `t.tags[1:2]`, `t.doc['k']`) in the select
/// list, a GROUP BY and a WHERE. Until 2026-12-05 the query parser read `t.tags[1]` as something
/// other than a column, so every statement made from it failed: a grouped one could not even be
/// created, in any mode ("missing FROM-clause entry for table"), an ungrouped one was refused
/// DIFFERENTIAL.
#[test]
fn subscripted_columns_are_maintained_differentially() {
    let mut db = TestDb::new("column_types_subscripts");
    db.exec(
        "CREATE TABLE sb (id int PRIMARY KEY, tags text[], n int[], doc jsonb);
         INSERT INTO sb SELECT i, ARRAY['t' || i % 3, 'u' || i % 2], ARRAY[i, i * 2], jsonb_build_object('k', i % 4)
           FROM generate_series(1, 30) i;",
    );
    let queries = [
        (
            "sb_grouped",
            "SELECT tags[1] AS first_tag, count(*) AS c, sum(n[2]) AS s FROM sb GROUP BY tags[1]",
        ),
        (
            "sb_rows",
            "SELECT id, tags[1:2] AS head, doc['k'] AS k FROM sb WHERE n[1] % 2 = 0",
        ),
        (
            "sb_json_groups",
            "SELECT doc['k'] AS k, count(*) AS c FROM sb GROUP BY doc['k']",
        ),
    ];
    for (st, q) in queries {
        for mode in ["DIFFERENTIAL", "AUTO"] {
            let name = format!("{st}_{}", mode.to_lowercase());
            db.exec(&format!(
                "SELECT pgtrickle.create_stream_table('{name}', $q${q}$q$, '1h', '{mode}')"
            ));
            assert_eq!(
                db.value::<String>(&format!(
                    "SELECT effective_mode FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = '{name}'::regclass"
                )),
                "DIFFERENTIAL",
                "{name}"
            );
        }
    }
    for step in [
        "UPDATE sb SET tags[1] = 'x' WHERE id % 5 = 0",
        "UPDATE sb SET n[1] = n[1] + 1, doc = jsonb_set(doc, '{k}', '9') WHERE id % 4 = 1",
        "DELETE FROM sb WHERE id % 7 = 0; INSERT INTO sb VALUES (100, NULL, '{}', NULL), (101, '{}', ARRAY[2], '{\"k\": [1]}')",
    ] {
        db.exec(step);
        for (st, q) in queries {
            let name = format!("{st}_differential");
            db.exec(&format!("SELECT pgtrickle.refresh_stream_table('{name}')"));
            assert_eq!(db.last_refresh(&name).0, "DIFFERENTIAL", "{name}: {step}");
            db.assert_shows_what_query_shows(&name, q);
        }
    }
}

/// A composite value built in the query (`ROW(n, t)::pair`) and taken apart again: the query
/// depends on the composite type's row (a `pg_class` entry of relkind 'c'), which is no relation it
/// reads. Until 2026-12-05 that dependency refused the query in every mode ("stream tables cannot
/// read "pair" (relkind 'c')").
#[test]
fn composites_built_in_the_query_are_not_read_as_sources() {
    let mut db = TestDb::new("column_types_built_composites");
    db.exec(
        "CREATE TYPE pair AS (a int, b text);
         CREATE TABLE cn (id int PRIMARY KEY, n int, t text);
         INSERT INTO cn SELECT i, i * 10, 't' || (i % 3) FROM generate_series(1, 30) i;",
    );
    let queries = [
        (
            "taken_apart",
            "SELECT (p).a, (p).b FROM (SELECT ROW(n, t)::pair AS p FROM cn) s",
        ),
        ("one_field", "SELECT id, (ROW(n, t)::pair).a AS a FROM cn"),
        (
            "grouped",
            "SELECT (ROW(n, t)::pair).b AS b, count(*) AS c FROM cn GROUP BY 1",
        ),
    ];
    for (st, query) in queries {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{st}', $q${query}$q$, '1h', 'DIFFERENTIAL')"
        ));
    }
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('taken_apart_full', $q${}$q$, '1h', 'FULL')",
        queries[0].1
    ));
    let sources: String = db.value(
        "SELECT string_agg(DISTINCT source_relid::regclass::text, ',') FROM pgtrickle.pgt_dependencies",
    );
    assert_eq!(sources, "cn");
    for step in [
        "UPDATE cn SET n = n + 1, t = 't9' WHERE id % 4 = 0",
        "DELETE FROM cn WHERE id % 5 = 0; INSERT INTO cn VALUES (100, NULL, NULL)",
    ] {
        db.exec(step);
        for (st, query) in queries {
            db.assert_refreshes_differentially(st, query, step);
        }
        db.exec("SELECT pgtrickle.refresh_stream_table('taken_apart_full')");
        db.assert_matches_query("taken_apart_full", queries[0].1);
    }
    // The type stays in use: PostgreSQL refuses to drop it while the stream tables read through it.
    let err = db.error("DROP TYPE pair");
    assert_eq!(err.code, "2BP01", "{err:?}");
}

/// A source column with a collation of its own (`text COLLATE "C"`): its change buffer has it too,
/// so a delta's grouping, join and ordering on it compare as the query does (a buffer of the default
/// collation beside it left them without one: an ERROR at every refresh).
#[test]
fn columns_with_their_own_collation_are_maintained_differentially() {
    let mut db = TestDb::new("column_types_collation");
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, code text COLLATE \"C\", label text, v int);
         INSERT INTO t SELECT i, chr(65 + i % 5) || chr(97 + i % 3), 'l' || (i % 4), i FROM generate_series(1, 60) i;",
    );
    let queries = [
        (
            "by_code",
            "SELECT code, count(*) AS n, sum(v) AS total FROM t GROUP BY code",
        ),
        (
            "joined",
            "SELECT a.id, b.id AS other FROM t a JOIN t b ON b.code = a.code AND b.id > a.id + 40",
        ),
        (
            "first_codes",
            "SELECT code, v FROM t ORDER BY code DESC, v LIMIT 4",
        ),
        (
            "rolled_up",
            "SELECT code, label, count(*) AS n FROM t GROUP BY ROLLUP (code, label)",
        ),
    ];
    for (st, query) in queries {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{st}', $q${query}$q$, '1h', 'DIFFERENTIAL')"
        ));
    }
    for step in [
        "UPDATE t SET code = 'Zz' WHERE id % 7 = 0",
        "DELETE FROM t WHERE id % 5 = 1; INSERT INTO t VALUES (100, 'aa', 'l1', 3), (101, NULL, NULL, 4)",
    ] {
        db.exec(step);
        for (st, query) in queries {
            db.assert_refreshes_differentially(st, query, step);
        }
    }
    // The buffer has the column's collation.
    let collation: String = db.value(
        "SELECT a.attcollation::regcollation::text FROM pg_attribute a
          WHERE a.attrelid = ('pgtrickle_changes.changes_' || 't'::regclass::oid)::regclass AND a.attname = 'code'",
    );
    assert_eq!(collation, "\"C\"");
}
