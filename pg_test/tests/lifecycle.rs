//! Creating, refreshing, altering and dropping stream tables, and what DROP does to everything around them.

use pg_trickle_e2e::{Notices, TestDb};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[test]
fn create_refresh_drop_round_trip() {
    let mut db = TestDb::new("life_roundtrip");
    db.exec(
        "CREATE TABLE t (k int, v text); INSERT INTO t VALUES (1, 'a'), (1, 'a'), (2, NULL);
         SELECT pgtrickle.create_stream_table('dupes', 'SELECT k, v FROM t', '1h', 'FULL');",
    );
    // Duplicates and NULLs survive: compared as a multiset, not by count.
    db.assert_matches_query("dupes", "SELECT k, v FROM t");
    db.exec("INSERT INTO t VALUES (1, 'a'), (3, 'c'); DELETE FROM t WHERE k = 2;");
    assert!(
        !db.multiset_diff("dupes", "SELECT k, v FROM t").is_empty(),
        "a 1h schedule must not have refreshed yet"
    );
    db.exec("SELECT pgtrickle.refresh_stream_table('dupes')");
    db.assert_matches_query("dupes", "SELECT k, v FROM t");
    let (action, initiated): (String, String) = {
        let r = db.rows("SELECT action, initiated_by FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1", &[]);
        (r[0].get(0), r[0].get(1))
    };
    assert_eq!((action.as_str(), initiated.as_str()), ("FULL", "MANUAL"));

    db.exec("SELECT pgtrickle.drop_stream_table('dupes')");
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pg_class WHERE relname = 'dupes'"),
        0
    );
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_stream_tables"),
        0
    );
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_dependencies"),
        0
    );
    // The source is free to go now.
    db.exec("DROP TABLE t");
}

#[test]
fn storage_has_the_query_columns_and_types() {
    let mut db = TestDb::new("life_types");
    db.exec(
        "CREATE TABLE src (id bigint, price numeric(12,3), name varchar(20), tags text[], at timestamptz);
         INSERT INTO src VALUES (1, 1.5, 'x', '{a,b}', '2024-01-01 00:00+00');
         SELECT pgtrickle.create_stream_table('typed', 'SELECT id, price, name, tags, at, price * 2 AS doubled FROM src');",
    );
    // varchar, arrays and numeric expressions are all maintained DIFFERENTIALly (AUTO).
    let mode: String = db.value("SELECT effective_mode FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = 'typed'::regclass");
    assert_eq!(mode, "DIFFERENTIAL");
    let cols: Vec<(String, String)> = db
        .rows(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attrelid = 'typed'::regclass AND attnum > 0 AND NOT attisdropped AND attname NOT LIKE '\\_\\_pgt\\_%'
              ORDER BY attnum",
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expect = [
        ("id", "bigint"),
        ("price", "numeric(12,3)"),
        ("name", "character varying(20)"),
        ("tags", "text[]"),
        ("at", "timestamp with time zone"),
        ("doubled", "numeric"),
    ];
    assert_eq!(
        cols,
        expect
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn awkward_identifiers_are_quoted_everywhere() {
    let mut db = TestDb::new("life_quoting");
    db.exec(
        r#"CREATE SCHEMA "Sales Dept";
           CREATE TABLE "Sales Dept"."Order ""Lines""" ("Line Id" int, "Amount$" numeric, "select" text);
           INSERT INTO "Sales Dept"."Order ""Lines""" VALUES (1, 10, 'x'), (2, 20, 'y'), (3, 5, 'x');
           SELECT pgtrickle.create_stream_table(
               '"Sales Dept"."Totals ""by"" Kind"',
               'SELECT "select" AS "Kind Of", sum("Amount$") AS "Sum $" FROM "Sales Dept"."Order ""Lines""" GROUP BY "select"',
               '1s');"#,
    );
    let q = r#"SELECT "select" AS "Kind Of", sum("Amount$") AS "Sum $" FROM "Sales Dept"."Order ""Lines""" GROUP BY "select""#;
    db.assert_matches_query(r#""Sales Dept"."Totals ""by"" Kind""#, q);
    db.exec(r#"INSERT INTO "Sales Dept"."Order ""Lines""" VALUES (4, 1, 'z')"#);
    db.exec(r#"SELECT pgtrickle.refresh_stream_table('"Sales Dept"."Totals ""by"" Kind"')"#);
    db.assert_matches_query(r#""Sales Dept"."Totals ""by"" Kind""#, q);
    db.exec(r#"SELECT pgtrickle.alter_stream_table('"Sales Dept"."Totals ""by"" Kind"', schedule => '2m')"#);
    db.exec(r#"SELECT pgtrickle.drop_stream_table('"Sales Dept"."Totals ""by"" Kind"')"#);
}

#[test]
fn the_defining_query_does_not_depend_on_search_path() {
    let mut db = TestDb::new("life_search_path");
    db.exec(
        "CREATE SCHEMA app; CREATE TABLE app.items (n int); INSERT INTO app.items VALUES (1), (2);
         SET search_path = app, public;
         SELECT pgtrickle.create_stream_table('public.item_count', 'SELECT count(*) AS c FROM items', '1h');
         RESET search_path;",
    );
    // A session (like the scheduler's) whose search_path does not contain `app` still refreshes it.
    db.exec(
        "INSERT INTO app.items VALUES (3); SELECT pgtrickle.refresh_stream_table('item_count');",
    );
    assert_eq!(db.value::<i64>("SELECT c FROM item_count"), 3);
    let stored: String = db.value("SELECT defining_query FROM pgtrickle.pgt_stream_tables");
    assert!(stored.contains("app.items"), "{stored}");
}

#[test]
fn readers_never_see_an_empty_or_partial_stream_table() {
    let mut db = TestDb::new("life_readers");
    db.exec(
        "CREATE TABLE big (n int); INSERT INTO big SELECT generate_series(1, 20000);
         SELECT pgtrickle.create_stream_table('big_copy', 'SELECT n FROM big', '1h', 'FULL');",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let mut client = db.connect();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = client
                    .query_one("SELECT count(*) FROM big_copy", &[])
                    .unwrap()
                    .get(0);
                seen.push(n);
            }
            seen
        })
    };
    for _ in 0..15 {
        db.exec("SELECT pgtrickle.refresh_stream_table('big_copy')");
    }
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|&n| n == 20000),
        "a reader saw a partial table: {:?}",
        seen.iter().filter(|&&n| n != 20000).collect::<Vec<_>>()
    );
}

#[test]
fn dropping_a_source_needs_cascade_which_removes_the_stream_table() {
    let mut db = TestDb::new("life_drop_source");
    db.exec(
        "CREATE TABLE src (n int); INSERT INTO src VALUES (1);
         SELECT pgtrickle.create_stream_table('st', 'SELECT n FROM src', '1h');
         SELECT pgtrickle.create_stream_table('st2', 'SELECT n FROM st', '1h');",
    );
    let err = db.error("DROP TABLE src");
    assert_eq!(err.code, "2BP01");
    assert!(err
        .detail
        .unwrap()
        .contains("table st depends on table src"));
    assert!(err.hint.unwrap().contains("CASCADE"));
    // Dropping a stream table another one reads is refused the same way, naming the reader (not its
    // query view) and a way out the function has (it takes no CASCADE).
    let err = db.error("SELECT pgtrickle.drop_stream_table('st')");
    assert_eq!(err.code, "2BP01");
    assert_eq!(
        err.message,
        "cannot drop stream table \"public\".\"st\" because other stream tables read it"
    );
    assert_eq!(err.detail.as_deref(), Some("Read by: public.st2."));
    assert_eq!(
        err.hint.as_deref(),
        Some("Drop those first, or drop all of them with DROP TABLE \"public\".\"st\" CASCADE.")
    );
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_stream_tables"),
        2
    );

    db.exec("DROP TABLE src CASCADE");
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_stream_tables"),
        0
    );
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_dependencies"),
        0
    );
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pg_class WHERE relname IN ('st', 'st2')"),
        0
    );
}

#[test]
fn dropping_the_storage_table_directly_cleans_the_catalog() {
    let mut db = TestDb::new("life_drop_storage");
    db.exec(
        "CREATE TABLE src (n int);
         SELECT pgtrickle.create_stream_table('st', 'SELECT n FROM src', '1h');
         DROP TABLE st;",
    );
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_stream_tables"),
        0
    );
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_refresh_history"),
        0
    );
}

#[test]
fn drop_extension_removes_everything_it_created() {
    let mut db = TestDb::new("life_drop_extension");
    db.exec(
        "CREATE TABLE src (n int); INSERT INTO src VALUES (1);
         SELECT pgtrickle.create_stream_table('st', 'SELECT n FROM src', '1h');",
    );
    // Plain DROP EXTENSION lists what depends on it, like any extension whose objects are in use.
    let err = db.error("DROP EXTENSION pg_trickle");
    assert_eq!(err.code, "2BP01");
    assert!(err
        .detail
        .unwrap()
        .contains("table st depends on extension pg_trickle"));

    db.exec("DROP EXTENSION pg_trickle CASCADE");
    let leftovers: i64 = db.value(
        "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname IN ('pgtrickle', 'pgtrickle_changes'))
              + (SELECT count(*) FROM pg_class WHERE relname = 'st')
              + (SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'pgtrickle%')
              + (SELECT count(*) FROM pg_proc WHERE proname LIKE '%stream_table%')",
    );
    assert_eq!(leftovers, 0);
    // The source is untouched, and the extension can come back.
    assert_eq!(db.value::<i64>("SELECT count(*) FROM src"), 1);
    db.exec("CREATE EXTENSION pg_trickle; SELECT pgtrickle.create_stream_table('st', 'SELECT n FROM src', '1h');");
    db.assert_matches_query("st", "SELECT n FROM src");
}

#[test]
fn the_listing_view_shows_mode_schedule_status_and_staleness() {
    let mut db = TestDb::new("life_listing");
    db.exec(
        "CREATE TABLE src (n int);
         SELECT pgtrickle.create_stream_table('st', 'SELECT n FROM src', '90s', 'auto');
         SELECT pgtrickle.alter_stream_table('st', schedule => '2m', refresh_mode => 'FULL');",
    );
    let rows = db.rows(
        "SELECT schema_name::text, table_name::text, refresh_mode, requested_mode, schedule, status,
                last_refresh_at IS NOT NULL, staleness < interval '1 minute'
           FROM pgtrickle.stream_tables",
        &[],
    );
    let r = &rows[0];
    assert_eq!(r.get::<_, String>(0), "public");
    assert_eq!(r.get::<_, String>(1), "st");
    assert_eq!(r.get::<_, String>(2), "FULL");
    assert_eq!(r.get::<_, String>(3), "FULL");
    assert_eq!(r.get::<_, String>(4), "2m");
    assert_eq!(r.get::<_, String>(5), "ACTIVE");
    assert!(r.get::<_, bool>(6));
    assert!(r.get::<_, bool>(7));
}

#[test]
fn a_full_refresh_reads_in_parallel_where_the_planner_would_and_fills_every_index() {
    let mut db = TestDb::new("life_parallel_full");
    let owner = "life_parallel_owner";
    db.fresh_role(owner);
    let query = "SELECT g, count(*) AS n, sum(v) AS total, max(s) AS longest FROM t GROUP BY g";
    db.exec(&format!(
        "CREATE TABLE t (g int, v numeric, s text);
         INSERT INTO t SELECT i % 50, CASE WHEN i % 7 = 0 THEN NULL ELSE (i % 13) * 1.50 END, md5(i::text)
           FROM generate_series(1, 5000) i;
         INSERT INTO t VALUES (NULL, 1.5, repeat('long ', 20000));
         GRANT SELECT, TRIGGER ON t TO {owner}; GRANT CREATE ON SCHEMA public TO {owner};"
    ));
    let (mut client, notices) = db.connect_keeping_notices();
    // Parallel plans for every query, as the planner picks them for large sources; a refresh runs as
    // the stream table's owner, a plain role here.
    client
        .batch_execute(&format!(
            "SET force_parallel_mode = on; SET client_min_messages = debug1; SET ROLE {owner};
             SELECT pgtrickle.create_stream_table('totals_full', '{query}', '1h', 'FULL');
             SELECT pgtrickle.create_stream_table('totals_diff', '{query}', '1h', 'DIFFERENTIAL');
             CREATE UNIQUE INDEX ON totals_full (g);
             CREATE INDEX ON totals_full (total) WHERE n > 90;"
        ))
        .unwrap();
    let parallel = |notices: &Notices| {
        let mut kept = notices.lock().unwrap();
        let n = kept
            .iter()
            .filter(|n| {
                n.message
                    .contains("FULL refresh inserted 51 rows itself (query read in parallel)")
            })
            .count();
        kept.clear();
        n
    };
    // Both creations filled their table that way, the DIFFERENTIAL one with its hidden state.
    assert_eq!(parallel(&notices), 2);
    db.exec("UPDATE t SET v = v + 1 WHERE g = 3; DELETE FROM t WHERE g = 4; INSERT INTO t VALUES (50, 2.50, 'x')");
    client
        .batch_execute(
            "SELECT pgtrickle.refresh_stream_table('totals_full');
             SELECT pgtrickle.refresh_stream_table('totals_diff');",
        )
        .unwrap();
    assert_eq!(parallel(&notices), 1, "the FULL refresh");
    assert_eq!(db.last_refresh("totals_diff").0, "DIFFERENTIAL");
    db.assert_shows_what_query_shows("totals_full", query);
    db.assert_shows_what_query_shows("totals_diff", query);
    // The rows are in the stream table's indexes too: read through them alone.
    let through_index = |db: &mut TestDb, sql: &str| -> Vec<String> {
        db.exec("SET enable_seqscan = off; SET enable_bitmapscan = off");
        let rows = db.rows(sql, &[]);
        db.exec("RESET enable_seqscan; RESET enable_bitmapscan");
        rows.iter()
            .map(|r| format!("{:?}", r.get::<_, Option<i32>>(0)))
            .collect()
    };
    let groups = through_index(&mut db, "SELECT g FROM totals_full WHERE g >= 0 ORDER BY g");
    let expected: Vec<String> = (0..=50)
        .filter(|g| *g != 4)
        .map(|g| format!("Some({g})"))
        .collect();
    assert_eq!(groups, expected);
    let partial = through_index(
        &mut db,
        "SELECT g FROM totals_full WHERE n > 90 AND total > 0 ORDER BY total, g",
    );
    assert_eq!(
        partial,
        db.rows(
            &format!("SELECT g FROM ({query}) q WHERE n > 90 AND total > 0 ORDER BY total, g"),
            &[]
        )
        .iter()
        .map(|r| format!("{:?}", r.get::<_, Option<i32>>(0)))
        .collect::<Vec<_>>()
    );

    // A user's trigger on the stream table must fire as for any INSERT or DELETE: the statements
    // run instead.
    db.exec(&format!(
        "CREATE TABLE fired (op text); GRANT INSERT ON fired TO {owner};
         CREATE FUNCTION note_write() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO public.fired VALUES (TG_OP); RETURN NULL; END $$;
         CREATE TRIGGER note AFTER INSERT OR DELETE ON totals_full FOR EACH STATEMENT EXECUTE FUNCTION note_write();"
    ));
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('totals_full')")
        .unwrap();
    assert!(
        !notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.message.contains("rows itself")),
        "not with a trigger of the user's"
    );
    assert_eq!(
        db.value::<String>("SELECT string_agg(op, ',' ORDER BY op) FROM fired"),
        "DELETE,INSERT"
    );
    db.assert_shows_what_query_shows("totals_full", query);
}

#[test]
fn a_full_refresh_inserts_rows_as_the_query_yields_them_and_fails_cleanly() {
    let mut db = TestDb::new("life_serial_full");
    let query = "SELECT g, v, s FROM t WHERE g <> 3";
    db.exec(
        "CREATE TABLE t (g int, v numeric, s text);
         INSERT INTO t SELECT i % 50, CASE WHEN i % 7 = 0 THEN NULL ELSE (i % 13) * 1.50 END, md5(i::text)
           FROM generate_series(1, 3000) i;
         INSERT INTO t VALUES (NULL, 1.5, repeat('long ', 20000));",
    );
    let (mut client, notices) = db.connect_keeping_notices();
    client
        .batch_execute(&format!(
            "SET client_min_messages = debug1;
             SELECT pgtrickle.create_stream_table('rows_full', '{query}', '1h', 'FULL');
             CREATE INDEX ON rows_full (g);"
        ))
        .unwrap();
    db.exec("UPDATE t SET v = v * 2 WHERE g = 5; DELETE FROM t WHERE g = 6");
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('rows_full')")
        .unwrap();
    let expected: i64 = db.value(&format!("SELECT count(*) FROM ({query}) q"));
    let said = format!("FULL refresh inserted {expected} rows itself (query read serially)");
    let kept = notices.lock().unwrap().clone();
    let serial = kept
        .iter()
        .filter(|n| n.message.contains("rows itself (query read serially)"));
    assert_eq!(serial.count(), 2, "the creation and the refresh: {kept:?}");
    assert!(kept.iter().any(|n| n.message.contains(&said)), "{kept:?}");
    // The old rows went the same way: the 2,940 the creation inserted (g = 3 and NULL left out).
    assert!(
        kept.iter()
            .any(|n| n.message.contains("FULL refresh deleted 2940 rows itself")),
        "{kept:?}"
    );
    db.assert_shows_what_query_shows("rows_full", query);

    // Deleted as a DELETE deletes: a transaction whose snapshot is older than the refresh keeps
    // seeing the old rows after the refresh commits (a TRUNCATE would show it an empty table).
    let contents = |c: &mut postgres::Client| -> String {
        c.query_one(
            "SELECT string_agg(format('%s|%s|%s', g, v, md5(s)), ',' ORDER BY g, v, s) FROM rows_full",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let mut reader = db.connect();
    reader
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .unwrap();
    let before_refresh = contents(&mut reader);
    db.exec("UPDATE t SET v = v + 1 WHERE g = 7");
    // (An exclusive lock, as a TRUNCATE would take, would wait for the reader: fail instead.)
    client
        .batch_execute(
            "SET lock_timeout = '10s'; SELECT pgtrickle.refresh_stream_table('rows_full'); RESET lock_timeout;",
        )
        .unwrap();
    assert_eq!(contents(&mut reader), before_refresh);
    reader.batch_execute("COMMIT").unwrap();
    assert_ne!(contents(&mut reader), before_refresh);
    db.assert_shows_what_query_shows("rows_full", query);
    db.exec("SET enable_seqscan = off; SET enable_bitmapscan = off");
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM rows_full WHERE g = 5"),
        60
    );
    db.exec("RESET enable_seqscan; RESET enable_bitmapscan");

    // An error while rows are inserted (a unique index the new result breaks) fails the refresh with
    // PostgreSQL's error and leaves the stream table as it was.
    db.exec("DELETE FROM t WHERE g IS NULL OR g > 0");
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('rows_full')")
        .unwrap();
    db.exec("CREATE UNIQUE INDEX rows_full_g ON rows_full (g) WHERE g > 0");
    db.assert_shows_what_query_shows("rows_full", query);
    db.exec("INSERT INTO t VALUES (9, 1, 'a'), (9, 2, 'b')");
    let before: i64 = db.value("SELECT count(*) FROM rows_full");
    let err = client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('rows_full')")
        .unwrap_err();
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("23505"),
        "{err:?}"
    );
    assert_eq!(db.value::<i64>("SELECT count(*) FROM rows_full"), before);
    db.exec("DELETE FROM t WHERE v = 2");
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('rows_full')")
        .unwrap();
    db.assert_shows_what_query_shows("rows_full", query);
}

/// A FULL refresh deletes a stream table's old rows itself (refresh/full_delete.rs), but as a
/// `DELETE` would for logical decoding: refused while the table publishes deletes without a replica
/// identity (which could not be decoded), and decoded row by row with one.
#[test]
fn a_full_refresh_of_a_published_stream_table_publishes_its_deletes() {
    let mut db = TestDb::new("life_published_full");
    let query = "SELECT g, v FROM t";
    db.exec(&format!(
        "CREATE TABLE t (g int, v numeric);
         INSERT INTO t SELECT i, i * 1.5 FROM generate_series(1, 40) i;
         SELECT pgtrickle.create_stream_table('published', '{query}', '1h', 'FULL');
         CREATE PUBLICATION published_pub FOR TABLE published;"
    ));
    db.exec("UPDATE t SET v = v + 1 WHERE g <= 5");
    // A stream table's replica identity is FULL from the start; its owner may take it away.
    assert_eq!(
        db.value::<String>(
            "SELECT relreplident::text FROM pg_class WHERE oid = 'published'::regclass"
        ),
        "f"
    );
    db.exec("ALTER TABLE published REPLICA IDENTITY NOTHING");
    let err = db
        .client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('published')")
        .unwrap_err();
    let e = err.as_db_error().expect("a database error");
    assert_eq!(e.code().code(), "55000", "{e:?}");
    assert!(e.message().contains("replica identity"), "{e:?}");
    assert_eq!(
        db.value::<String>("SELECT sum(v)::text FROM published"),
        "1230.0"
    );

    db.exec("ALTER TABLE published REPLICA IDENTITY FULL");
    db.exec("SELECT 1 FROM pg_create_logical_replication_slot('published_slot', 'test_decoding')");
    // Decoding reads flushed WAL only (the test cluster commits asynchronously).
    let (mut client, notices) = db.connect_keeping_notices();
    let refreshed = client.batch_execute(
        "SET synchronous_commit = on; SET client_min_messages = debug1;
         SELECT pgtrickle.refresh_stream_table('published');",
    );
    let decoded: Vec<String> = db
        .rows(
            "SELECT data FROM pg_logical_slot_get_changes('published_slot', NULL, NULL)
              WHERE data LIKE 'table public.published: DELETE:%'",
            &[],
        )
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Dropped before anything is asserted: a slot left behind would hold back the whole cluster.
    db.exec("SELECT pg_drop_replication_slot('published_slot')");
    refreshed.unwrap();
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.message.contains("FULL refresh deleted 40 rows itself")),
        "the rows were not deleted by the refresh itself"
    );
    db.assert_shows_what_query_shows("published", query);
    assert_eq!(decoded.len(), 40, "{decoded:?}");
    assert!(
        decoded
            .iter()
            .any(|d| d.ends_with("g[integer]:7 v[numeric]:10.5")),
        "{decoded:?}"
    );
}

/// A FULL refresh writes a stream table's rows itself only where `INSERT` and `DELETE` would do no
/// more than write them (refresh/direct_writes.rs). Where they would do more — a rule, a trigger of
/// the user's under a name like pg_trickle's — the statements run, and do it.
#[test]
fn a_full_refresh_runs_the_statements_where_they_do_more_than_write_rows() {
    let mut db = TestDb::new("life_full_statements");
    let query = "SELECT a FROM t";
    db.exec(
        "CREATE TABLE t (a int); INSERT INTO t SELECT generate_series(1, 10);
         CREATE TABLE deleted_log (a int);
         CREATE FUNCTION log_deleted() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO public.deleted_log VALUES (OLD.a); RETURN NULL; END $$;",
    );
    // (A stream table with an inheritance child, or as a partition, is refused since 2026-12-07:
    // tests/guard.rs.)
    for st in ["with_rule", "with_named"] {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{st}', '{query}', '1h', 'FULL')"
        ));
    }
    db.exec(
        "CREATE RULE keep_deleted AS ON DELETE TO with_rule DO ALSO INSERT INTO deleted_log VALUES (old.a);
         CREATE TRIGGER pgtrickle_signal_row AFTER DELETE ON with_named FOR EACH ROW EXECUTE FUNCTION log_deleted();",
    );
    let (mut client, notices) = db.connect_keeping_notices();
    client
        .batch_execute("SET client_min_messages = debug1")
        .unwrap();
    let refresh = |client: &mut postgres::Client, st: &str| {
        notices.lock().unwrap().clear();
        let done = client.batch_execute(&format!("SELECT pgtrickle.refresh_stream_table('{st}')"));
        let itself = notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.message.contains("rows itself"));
        assert!(!itself, "{st} was written without its statements");
        done
    };

    // The rule and the user's trigger see each deleted row: 10 each.
    db.exec("UPDATE t SET a = a + 10 WHERE a = 10");
    refresh(&mut client, "with_rule").unwrap();
    refresh(&mut client, "with_named").unwrap();
    assert_eq!(
        db.value::<String>("SELECT string_agg(a::text, ',' ORDER BY a) FROM (SELECT a, count(*) FROM deleted_log GROUP BY a) c WHERE count = 2"),
        "1,2,3,4,5,6,7,8,9,10"
    );
    db.assert_shows_what_query_shows("with_rule", query);
    db.assert_shows_what_query_shows("with_named", query);
}

/// Only refreshes write a stream table; with its guard disabled, another transaction can update a
/// row the FULL refresh is about to delete. The refresh then fails as a serialization failure
/// (40001), which callers retry — not as an internal error — and changes nothing.
#[test]
fn a_full_refresh_meeting_a_concurrent_update_fails_to_be_retried() {
    let mut db = TestDb::new("life_full_concurrent");
    let query = "SELECT a FROM t";
    db.exec(&format!(
        "CREATE TABLE t (a int); INSERT INTO t SELECT generate_series(1, 10);
         SELECT pgtrickle.create_stream_table('contested', '{query}', '1h', 'FULL');
         ALTER TABLE contested DISABLE TRIGGER pgtrickle_guard;"
    ));
    let mut writer = db.connect();
    writer
        .batch_execute("BEGIN; UPDATE contested SET a = a WHERE a = 3")
        .unwrap();
    let mut refresher = db.connect();
    let refresh = std::thread::spawn(move || {
        refresher.batch_execute("SELECT pgtrickle.refresh_stream_table('contested')")
    });
    // The refresh waits for the writer's row lock, then finds the row updated.
    let waiting = pg_trickle_e2e::wait_until(std::time::Duration::from_secs(20), || {
        db.value::<i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%refresh_stream_table(''contested'')%'",
        ) == 1
    });
    assert!(waiting, "the refresh never waited for the writer");
    writer.batch_execute("COMMIT").unwrap();
    let err = refresh.join().unwrap().unwrap_err();
    let e = err.as_db_error().expect("a database error");
    assert_eq!(e.code().code(), "40001", "{e:?}");
    assert!(e.message().contains("another transaction updated"), "{e:?}");
    db.assert_shows_what_query_shows("contested", query);
    db.exec("SELECT pgtrickle.refresh_stream_table('contested')");
    db.assert_shows_what_query_shows("contested", query);
}

/// Rows of pg_trickle's catalog read so far by every session (sequential and index fetches).
fn catalog_rows_read(db: &mut TestDb) -> i64 {
    db.exec("SELECT pg_stat_force_next_flush()");
    db.value(
        "SELECT sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0))::bigint FROM pg_stat_user_tables
          WHERE schemaname = 'pgtrickle' AND relname IN ('pgt_stream_tables', 'pgt_dependencies')",
    )
}

/// Statistics taken when every stream table had been dropped say the catalog is empty until
/// autovacuum analyses it again; creating many stream tables on them must still read the catalog in
/// proportion to the stream tables, not their square (a join planned on them read the dependencies
/// once per stream table: 100 ms per create with 1,000 stream tables over one source).
#[test]
fn creating_a_stream_table_reads_the_catalog_in_proportion_on_statistics_of_an_empty_catalog() {
    const N: i64 = 200;
    let mut db = TestDb::new("life_stale_statistics");
    db.exec(
        "CREATE TABLE src (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO src SELECT g, g FROM generate_series(1, 10) g;
         SELECT pgtrickle.create_stream_table('gone', 'SELECT id, v FROM src', '1h', 'DIFFERENTIAL');
         SELECT pgtrickle.drop_stream_table('gone');
         ALTER TABLE pgtrickle.pgt_stream_tables SET (autovacuum_enabled = false);
         ALTER TABLE pgtrickle.pgt_dependencies SET (autovacuum_enabled = false);
         ANALYZE pgtrickle.pgt_stream_tables, pgtrickle.pgt_dependencies;",
    );
    let creates: String = (0..N)
        .map(|i| format!("SELECT pgtrickle.create_stream_table('st_{i}', 'SELECT id, v FROM src', '1h', 'DIFFERENTIAL');"))
        .collect();
    db.exec(&creates);
    assert_eq!(
        db.value::<f32>(
            "SELECT reltuples FROM pg_class WHERE oid = 'pgtrickle.pgt_dependencies'::regclass"
        ),
        0.0,
        "the statistics must still say the catalog is empty"
    );
    let before = catalog_rows_read(&mut db);
    db.exec("SELECT pgtrickle.create_stream_table('one_more', 'SELECT id, v FROM src', '1h', 'DIFFERENTIAL')");
    let read = catalog_rows_read(&mut db) - before;
    // About 4,000 rows (the coordinator's ticks, which read every stream table, included); the
    // joins read 104,517, N rows for each of N.
    assert!(
        read < 100 * N,
        "one create_stream_table read {read} catalog rows with {N} stream tables"
    );
    db.assert_matches_query("one_more", "SELECT id, v FROM src");
}
