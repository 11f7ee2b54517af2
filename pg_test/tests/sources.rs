//! Sources that change name or shape, and views as sources: a stream table follows renames of what
//! it reads (tables, schemas, columns), reads through views exactly — TRUNCATEs, clean-ups, DDL and
//! redefinitions of their base tables included — and keeps a view's security semantics.

use pg_trickle_e2e::TestDb;

fn refresh(db: &mut TestDb, st: &str) -> (String, String) {
    db.exec(&format!("SELECT pgtrickle.refresh_stream_table('{st}')"));
    db.last_refresh(st)
}

fn healthy(db: &mut TestDb, st: &str) {
    let rows = db.rows(
        "SELECT status, coalesce(last_error, '') FROM pgtrickle.stream_tables WHERE table_name = $1",
        &[&st],
    );
    let (status, error): (String, String) = (rows[0].get(0), rows[0].get(1));
    assert_eq!((status.as_str(), error.as_str()), ("ACTIVE", ""), "{st}");
}

#[test]
fn renamed_tables_schemas_and_columns_are_followed() {
    let mut db = TestDb::new("sources_renames");
    db.exec(
        "CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v numeric NOT NULL);
         CREATE TABLE dim (grp int PRIMARY KEY, label text NOT NULL);
         INSERT INTO src SELECT g, g % 4, g FROM generate_series(1, 40) g;
         INSERT INTO dim SELECT g, 'g' || g FROM generate_series(0, 3) g;
         CREATE SCHEMA other;",
    );
    db.exec("SELECT pgtrickle.create_stream_table('agg', 'SELECT grp, count(*) AS n, sum(v) AS total FROM src GROUP BY grp', '1h', 'DIFFERENTIAL')");
    db.exec("SELECT pgtrickle.create_stream_table('joined', 'SELECT s.id, d.label, s.v FROM src s JOIN dim d ON d.grp = s.grp', '1h', 'DIFFERENTIAL')");
    let steps: [(&str, &str, &str); 4] = [
        (
            "ALTER TABLE src RENAME TO facts",
            "public.facts",
            "public.dim",
        ),
        (
            "ALTER TABLE facts SET SCHEMA other",
            "other.facts",
            "public.dim",
        ),
        (
            "ALTER SCHEMA other RENAME TO warehouse",
            "warehouse.facts",
            "public.dim",
        ),
        (
            "ALTER TABLE dim RENAME COLUMN label TO title",
            "warehouse.facts",
            "public.dim",
        ),
    ];
    for (ddl, facts, dim) in steps {
        db.exec(ddl);
        let label = if ddl.contains("title") {
            "title"
        } else {
            "label"
        };
        db.exec(&format!("INSERT INTO {facts} VALUES ((SELECT max(id) + 1 FROM {facts}), 1, 5); UPDATE {facts} SET v = v + 1 WHERE id = 3; UPDATE {dim} SET {label} = {label} || '+' WHERE grp = 2;"));
        for (st, query) in [
            ("agg", format!("SELECT grp, count(*) AS n, sum(v) AS total FROM {facts} GROUP BY grp")),
            ("joined", format!("SELECT s.id, d.{label} AS label, s.v FROM {facts} s JOIN {dim} d ON d.grp = s.grp")),
        ] {
            let (action, reason) = refresh(&mut db, st);
            assert!(action == "DIFFERENTIAL" || action == "FULL", "{ddl}: {st}: {action} {reason}");
            db.assert_matches_query(st, &query);
            healthy(&mut db, st);
        }
    }
    // The stored query reads as PostgreSQL reads it now.
    let query: String = db.value("SELECT defining_query FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = 'joined'::regclass");
    assert!(
        query.contains("warehouse.facts") && query.contains("title AS label"),
        "{query}"
    );
}

fn view_db(name: &str) -> TestDb {
    let mut db = TestDb::new(name);
    db.exec(
        "CREATE TABLE base (id int PRIMARY KEY, grp int NOT NULL, v numeric NOT NULL, junk text);
         INSERT INTO base SELECT g, g % 3, g, 'x' FROM generate_series(1, 30) g;
         CREATE VIEW positive AS SELECT id, grp, v FROM base WHERE v > 0;",
    );
    db
}

const BY_GRP: &str = "SELECT grp, count(*) AS n, sum(v) AS total FROM positive GROUP BY grp";
const ROWS: &str = "SELECT id, v FROM positive WHERE grp = 1";

#[test]
fn a_view_source_is_maintained_through_its_base_tables() {
    let mut db = view_db("sources_view_base");
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('by_grp', '{BY_GRP}', '1h', 'DIFFERENTIAL')"
    ));
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('rows1', '{ROWS}', '1h', 'DIFFERENTIAL')"
    ));
    // The base table is a recorded source.
    assert_eq!(
        db.value::<i64>(
            "SELECT count(*) FROM pgtrickle.pgt_dependencies WHERE source_relid = 'base'::regclass"
        ),
        2
    );
    // Two consumers of one view: one applying (and cleaning up) never takes the other's changes.
    db.exec("UPDATE base SET v = -v WHERE id IN (1, 4); INSERT INTO base VALUES (100, 1, 9, 'y');");
    assert_eq!(refresh(&mut db, "by_grp").0, "DIFFERENTIAL");
    assert_eq!(refresh(&mut db, "rows1").0, "DIFFERENTIAL");
    db.assert_matches_query("by_grp", BY_GRP);
    db.assert_matches_query("rows1", ROWS);

    // Dropping an unrelated stream table keeps the base table's capture.
    db.exec("SELECT pgtrickle.create_stream_table('other', 'SELECT id FROM base', '1h', 'DIFFERENTIAL')");
    db.exec("SELECT pgtrickle.drop_stream_table('other')");
    db.exec("DELETE FROM base WHERE id = 7");
    assert_eq!(refresh(&mut db, "rows1").0, "DIFFERENTIAL");
    db.assert_matches_query("rows1", ROWS);

    // A column of the base table the view does not read can go; writes keep working.
    db.exec("ALTER TABLE base DROP COLUMN junk");
    db.exec("INSERT INTO base VALUES (101, 1, 3)");
    for st in ["by_grp", "rows1"] {
        refresh(&mut db, st);
    }
    db.assert_matches_query("by_grp", BY_GRP);
    db.assert_matches_query("rows1", ROWS);

    // TRUNCATE of the base table is seen.
    db.exec("TRUNCATE base; INSERT INTO base VALUES (1, 1, 1);");
    let (action, reason) = refresh(&mut db, "by_grp");
    assert_eq!(action, "FULL", "{reason}");
    assert!(reason.contains("truncated"), "{reason}");
    db.assert_matches_query("by_grp", BY_GRP);
    refresh(&mut db, "rows1");
    db.assert_matches_query("rows1", ROWS);
}

#[test]
fn a_redefined_view_is_followed() {
    let mut db = view_db("sources_view_redefined");
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('by_grp', '{BY_GRP}', '1h', 'DIFFERENTIAL')"
    ));
    db.exec("CREATE OR REPLACE VIEW positive AS SELECT id, grp, v FROM base WHERE v > 10");
    let (action, reason) = refresh(&mut db, "by_grp");
    assert_eq!(
        (action.as_str(), reason.as_str()),
        (
            "FULL",
            "reinitialised: view \"public\".\"positive\" was redefined"
        )
    );
    db.assert_matches_query("by_grp", BY_GRP);
    db.exec("UPDATE base SET v = 11 WHERE id = 2");
    assert_eq!(refresh(&mut db, "by_grp").0, "DIFFERENTIAL");
    db.assert_matches_query("by_grp", BY_GRP);
}

/// A FULL stream table over a view skips refreshes while the tables below are unchanged, by their
/// signal triggers; replacing the view re-armed signals on the view itself, which PostgreSQL
/// refuses ("Views cannot have TRUNCATE triggers"), so nobody could replace it.
#[test]
fn a_view_read_by_a_full_stream_table_can_be_replaced() {
    let mut db = view_db("sources_view_full_reader");
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('by_grp', '{BY_GRP}', '1h', 'FULL')"
    ));
    db.exec(
        "CREATE TABLE other_base (id int PRIMARY KEY, grp int NOT NULL, v numeric NOT NULL);
         INSERT INTO other_base VALUES (1, 1, 5), (2, 2, -5);
         CREATE OR REPLACE VIEW positive AS SELECT id, grp, v FROM other_base WHERE v > 0",
    );
    refresh(&mut db, "by_grp");
    db.assert_matches_query("by_grp", BY_GRP);
    healthy(&mut db, "by_grp");
    // The table the view reads now signals its writes: the next refresh sees them.
    db.exec("INSERT INTO other_base VALUES (3, 1, 7)");
    assert_eq!(refresh(&mut db, "by_grp").0, "FULL");
    db.assert_matches_query("by_grp", BY_GRP);
    let views_triggers: i64 =
        db.value("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'positive'::regclass");
    assert_eq!(views_triggers, 0);
}

#[test]
fn views_whose_security_would_be_bypassed_are_read_whole() {
    let mut db = view_db("sources_view_security");
    db.exec(
        "CREATE VIEW barrier WITH (security_barrier) AS SELECT id, grp, v FROM base WHERE grp = 1;
         CREATE ROLE pgt_view_owner;
         CREATE VIEW theirs AS SELECT id, v FROM base;
         GRANT SELECT ON base TO pgt_view_owner;
         ALTER VIEW theirs OWNER TO pgt_view_owner;
         CREATE VIEW on_theirs AS SELECT id FROM theirs;",
    );
    for (view, why) in [
        ("barrier", "security_barrier"),
        ("theirs", "owned by pgt_view_owner"),
        ("on_theirs", "owned by pgt_view_owner"),
    ] {
        let e = db.error(&format!("SELECT pgtrickle.create_stream_table('d_{view}', 'SELECT id FROM {view}', '1h', 'DIFFERENTIAL')"));
        assert_eq!(e.code, "0A000");
        assert!(e.message.contains(why), "{view}: {e:?}");
        db.exec(&format!("SELECT pgtrickle.create_stream_table('a_{view}', 'SELECT id FROM {view}', '1h', 'AUTO')"));
        assert_eq!(
            db.value::<String>(&format!(
                "SELECT refresh_mode FROM pgtrickle.stream_tables WHERE table_name = 'a_{view}'"
            )),
            "FULL"
        );
    }
    db.exec("DROP OWNED BY pgt_view_owner CASCADE; DROP ROLE pgt_view_owner;");
}

#[test]
fn a_differential_stream_table_over_a_differential_stream_table() {
    let mut db = TestDb::new("sources_stream_on_stream");
    db.exec(
        "CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v numeric NOT NULL);
         INSERT INTO src SELECT g, g % 5, g FROM generate_series(1, 50) g;",
    );
    const UP: &str = "SELECT grp, count(*) AS n, sum(v) AS s FROM src GROUP BY grp";
    const DOWN: &str = "SELECT n, count(*) AS groups, sum(s) AS total FROM up GROUP BY n";
    const PICK: &str = "SELECT grp, s FROM up WHERE s > 200";
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('up', '{UP}', '1h', 'DIFFERENTIAL')"
    ));
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('down', '{DOWN}', '1h', 'DIFFERENTIAL')"
    ));
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('pick', '{PICK}', '1h', 'DIFFERENTIAL')"
    ));
    // AUTO no longer falls back to FULL for a stream table over a stream table.
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('pick_auto', '{PICK}', '1h', 'AUTO')"
    ));
    assert_eq!(
        db.value::<String>(
            "SELECT refresh_mode FROM pgtrickle.stream_tables WHERE table_name = 'pick_auto'"
        ),
        "DIFFERENTIAL"
    );
    for step in [
        "INSERT INTO src VALUES (51, 1, 100)",
        "UPDATE src SET grp = 2 WHERE id IN (3, 8)",
        "DELETE FROM src WHERE grp = 4",
        "TRUNCATE src; INSERT INTO src VALUES (1, 1, 500)",
    ] {
        db.exec(step);
        refresh(&mut db, "up");
        db.assert_matches_query("up", UP);
        for (st, query) in [("down", DOWN), ("pick", PICK)] {
            let (action, reason) = refresh(&mut db, st);
            assert!(
                action == "DIFFERENTIAL" || action == "NO_DATA",
                "{step}: {st}: {action} {reason}"
            );
            db.assert_matches_query(st, query);
        }
    }
    // `SELECT *` over a stream table would take its hidden columns: the error says what to do.
    let e =
        db.error("SELECT pgtrickle.create_stream_table('star', 'SELECT * FROM up', '1h', 'AUTO')");
    assert_eq!(e.code, "42939");
    assert!(
        e.hint.as_deref().unwrap_or("").contains("Name the columns"),
        "{e:?}"
    );
}

/// The change rows of a stream table's buffer: (how many, how many are replaced rows).
fn buffered(db: &mut TestDb, st: &str) -> (i64, i64) {
    // Manual refreshes leave deleting what every reader applied to the coordinator, after they commit.
    db.wait_for_cleanups();
    let relid: u32 = db.value(&format!("SELECT '{st}'::regclass::oid"));
    let rows = db.rows(
        &format!(
            "SELECT count(*), count(*) FILTER (WHERE __pgt_w = 0)
               FROM pgtrickle_changes.changes_{relid}"
        ),
        &[],
    );
    (rows[0].get(0), rows[0].get(1))
}

/// A FULL refresh of a stream table other stream tables read replaces every row. When each reader
/// would refresh FULL for that anyway, the replacement goes uncaptured: one replaced row in the
/// buffer, not a change row per deleted and inserted row, and the readers refresh FULL — at any
/// frontier, one created while the replacement was running included. A reader that stays
/// DIFFERENTIAL (by its mode, or AUTO over a much larger join) keeps every row captured.
#[test]
fn a_full_refresh_of_a_stream_table_read_by_others() {
    let mut db = TestDb::new("sources_full_upstream");
    db.exec(
        "CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v numeric NOT NULL);
         INSERT INTO src SELECT g, g % 7, g FROM generate_series(1, 300) g;
         CREATE TABLE big (id int PRIMARY KEY, up_id int NOT NULL);
         INSERT INTO big SELECT g, 1 + g % 300 FROM generate_series(1, 20000) g;",
    );
    const UP: &str = "SELECT id, grp, v FROM src WHERE v > 10";
    const BY_GRP: &str = "SELECT grp, count(*) AS n, sum(v) AS s FROM up GROUP BY grp";
    const WIDE: &str = "SELECT b.id, u.v FROM big b JOIN up u ON u.id = b.up_id";
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('up', '{UP}', '1h', 'FULL')"
    ));
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('by_grp', '{BY_GRP}', '1h', 'AUTO')"
    ));
    db.exec(&format!("SELECT pgtrickle.create_stream_table('up_count', 'SELECT count(*) AS n FROM up', '1h', 'FULL')"));
    // AUTO decides by pg_class.reltuples until refreshes are measured.
    db.exec("ANALYZE up; ANALYZE big");
    let replaced =
        "\"public\".\"up\" was refreshed FULL and its new contents not captured row by row";

    // Every reader refreshes FULL anyway: one replaced row, and they do.
    db.exec("UPDATE src SET v = v + 1 WHERE id % 10 = 0; DELETE FROM src WHERE id = 42");
    db.exec("SELECT pgtrickle.refresh_stream_table('up')");
    let (action, reason) = db.last_refresh("up");
    assert_eq!(action, "FULL");
    assert!(reason.contains("not captured row by row"), "{reason}");
    assert_eq!(buffered(&mut db, "up"), (1, 1));
    db.assert_matches_query("up", UP);
    let (action, reason) = refresh(&mut db, "by_grp");
    assert_eq!((action.as_str(), reason.as_str()), ("FULL", replaced));
    db.assert_matches_query("by_grp", BY_GRP);
    assert_eq!(buffered(&mut db, "up"), (0, 0));
    assert_eq!(refresh(&mut db, "by_grp").0, "NO_DATA");

    // A reader created while a replacement runs, on the contents before it, refreshes FULL after.
    let mut other = db.connect();
    other
        .batch_execute(
            "BEGIN; UPDATE src SET v = v * 2 WHERE id < 100;
             SELECT pgtrickle.refresh_stream_table('up');",
        )
        .unwrap();
    db.exec("SET lock_timeout = '20s'");
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('by_grp_late', '{BY_GRP}', '1h', 'AUTO')"
    ));
    db.exec("RESET lock_timeout");
    other.batch_execute("COMMIT").unwrap();
    db.assert_matches_query("up", UP);
    assert_eq!(buffered(&mut db, "up"), (1, 1));
    for st in ["by_grp", "by_grp_late"] {
        let (action, reason) = refresh(&mut db, st);
        assert_eq!(
            (action.as_str(), reason.as_str()),
            ("FULL", replaced),
            "{st}"
        );
        db.assert_matches_query(st, BY_GRP);
    }

    // In the replacing transaction itself, a reader sees its own change: FULL now and next time.
    db.exec("BEGIN; UPDATE src SET v = v + 3 WHERE id = 50");
    db.exec("SELECT pgtrickle.refresh_stream_table('up')");
    let (action, reason) = refresh(&mut db, "by_grp");
    assert_eq!(action, "FULL", "{reason}");
    db.assert_matches_query("by_grp", BY_GRP);
    db.exec("COMMIT");
    assert_eq!(refresh(&mut db, "by_grp").0, "FULL");
    db.assert_matches_query("by_grp", BY_GRP);
    refresh(&mut db, "by_grp_late");
    db.assert_matches_query("by_grp_late", BY_GRP);

    // A reader that stays DIFFERENTIAL — AUTO over a join 70 times the size, or by its mode — keeps
    // the rows captured, and applies them.
    for (st, query, mode) in [
        ("wide", WIDE, "AUTO"),
        ("pick", "SELECT id, v FROM up WHERE grp = 3", "DIFFERENTIAL"),
    ] {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{st}', '{query}', '1h', '{mode}')"
        ));
        db.exec("DELETE FROM src WHERE id IN (SELECT min(id) FROM src); UPDATE src SET v = v + 1 WHERE id % 9 = 0");
        db.exec("SELECT pgtrickle.refresh_stream_table('up')");
        let (_, reason) = db.last_refresh("up");
        assert!(!reason.contains("not captured"), "{st}: {reason}");
        let rows: i64 = db.value("SELECT count(*) FROM up");
        let (buffer_rows, replaced_rows) = buffered(&mut db, "up");
        assert_eq!(replaced_rows, 0, "{st}");
        assert!(
            buffer_rows >= 2 * rows,
            "{st}: {buffer_rows} change rows for {rows} rows"
        );
        let (action, reason) = refresh(&mut db, st);
        assert_eq!(action, "DIFFERENTIAL", "{st}: {reason}");
        db.assert_matches_query(st, query);
        for reader in ["by_grp", "by_grp_late"] {
            refresh(&mut db, reader);
            db.assert_matches_query(reader, BY_GRP);
        }
        db.exec(&format!("SELECT pgtrickle.drop_stream_table('{st}')"));
    }
    db.exec("UPDATE src SET v = v + 1 WHERE id = 79");
    db.exec("SELECT pgtrickle.refresh_stream_table('up')");
    assert_eq!(buffered(&mut db, "up"), (1, 1));
    for st in ["by_grp", "by_grp_late"] {
        assert_eq!(refresh(&mut db, st).0, "FULL", "{st}");
        db.assert_matches_query(st, BY_GRP);
    }
    db.exec("SELECT pgtrickle.refresh_stream_table('up_count')");
    db.assert_matches_query("up_count", "SELECT count(*) AS n FROM up");
}

/// PostgreSQL fills a capture trigger's transition table with every row a statement deletes, even
/// when the trigger then records nothing. A replacement left uncaptured must not pay for that: its
/// old rows are deleted without the statement, so no tuplestore of them spills to disk.
#[test]
fn a_replacement_left_uncaptured_keeps_no_copy_of_the_rows_it_deletes() {
    let mut db = TestDb::new("sources_uncaptured_delete");
    db.exec(
        "CREATE TABLE src (id int PRIMARY KEY, v numeric NOT NULL);
         INSERT INTO src SELECT g, g FROM generate_series(1, 20000) g;
         SELECT pgtrickle.create_stream_table('up', 'SELECT id, v FROM src', '1h', 'FULL');
         SELECT pgtrickle.create_stream_table('by_tens', 'SELECT id / 10 AS tens, sum(v) AS s FROM up GROUP BY id / 10', '1h', 'AUTO');
         ANALYZE up;
         UPDATE src SET v = v + 1 WHERE id % 3 = 0;",
    );
    let (mut client, notices) = db.connect_keeping_notices();
    // 20,000 deleted rows are ~1 MB: past a 64 kB work_mem a transition table spills, and says so.
    client
        .batch_execute(
            "SET work_mem = '64kB'; SET log_temp_files = 0; SET client_min_messages = debug1;
             SELECT pgtrickle.refresh_stream_table('up');",
        )
        .unwrap();
    let kept = notices.lock().unwrap().clone();
    assert!(
        kept.iter()
            .any(|n| n.message.contains("FULL refresh deleted 20000 rows itself")),
        "{kept:?}"
    );
    assert!(
        !kept.iter().any(|n| n.message.contains("temporary file")),
        "{kept:?}"
    );
    let (action, reason) = db.last_refresh("up");
    assert_eq!(action, "FULL");
    assert!(reason.contains("not captured row by row"), "{reason}");
    db.assert_matches_query("up", "SELECT id, v FROM src");
    assert_eq!(refresh(&mut db, "by_tens").0, "FULL");
    db.assert_matches_query(
        "by_tens",
        "SELECT id / 10 AS tens, sum(v) AS s FROM up GROUP BY id / 10",
    );
}

#[test]
fn changes_to_nested_views_and_view_options_are_followed() {
    let mut db = view_db("sources_nested_views");
    db.exec("CREATE VIEW low_groups AS SELECT id, grp, v FROM positive WHERE grp < 2");
    const TOP: &str = "SELECT grp, count(*) AS n, sum(v) AS total FROM low_groups GROUP BY grp";
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('t', '{TOP}', '1h', 'AUTO')"
    ));
    assert_eq!(
        db.value::<String>(
            "SELECT refresh_mode FROM pgtrickle.stream_tables WHERE table_name = 't'"
        ),
        "DIFFERENTIAL"
    );
    // The view under the named one is redefined.
    db.exec("CREATE OR REPLACE VIEW positive AS SELECT id, grp, v FROM base WHERE v > 20");
    let (action, reason) = refresh(&mut db, "t");
    assert_eq!(
        (action.as_str(), reason.as_str()),
        (
            "FULL",
            "reinitialised: view \"public\".\"positive\" was redefined"
        )
    );
    db.assert_matches_query("t", TOP);
    // It becomes a security barrier: from now on it is read whole.
    db.exec("ALTER VIEW positive SET (security_barrier = true)");
    let (action, reason) = refresh(&mut db, "t");
    assert_eq!(action, "FULL", "{reason}");
    assert_eq!(
        db.value::<String>(
            "SELECT refresh_mode FROM pgtrickle.stream_tables WHERE table_name = 't'"
        ),
        "FULL"
    );
    db.exec("UPDATE base SET v = 100 WHERE id = 3");
    refresh(&mut db, "t");
    db.assert_matches_query("t", TOP);
}

#[test]
fn a_source_that_becomes_unreadable_for_the_engine_puts_a_differential_stream_table_in_error() {
    let mut db = TestDb::new("sources_become_unsupported");
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1), (2, 2);
         CREATE TABLE p (id int, v int) PARTITION BY RANGE (id);
         CREATE TABLE q (id int, v int) PARTITION BY RANGE (id);
         CREATE TABLE q1 PARTITION OF q FOR VALUES FROM (0) TO (10);
         CREATE FOREIGN DATA WRAPPER pgt_dummy; CREATE SERVER pgt_nowhere FOREIGN DATA WRAPPER pgt_dummy;",
    );
    db.exec(
        "SELECT pgtrickle.create_stream_table('on_t', 'SELECT id, v FROM t', '1h', 'DIFFERENTIAL')",
    );
    db.exec(
        "SELECT pgtrickle.create_stream_table('on_q', 'SELECT id, v FROM q', '1h', 'DIFFERENTIAL')",
    );
    // t becomes a partition: writes through p would bypass t's statement triggers.
    db.exec("ALTER TABLE t DROP CONSTRAINT t_pkey; ALTER TABLE p ATTACH PARTITION t FOR VALUES FROM (0) TO (100)");
    let e = db.error("SELECT pgtrickle.refresh_stream_table('on_t')");
    assert_eq!(e.code, "55000", "{e:?}");
    assert!(
        e.message.contains("partition or inheritance child of p"),
        "{e:?}"
    );
    // q gains a foreign partition, whose writes cannot be captured.
    db.exec(
        "CREATE FOREIGN TABLE q2 PARTITION OF q FOR VALUES FROM (10) TO (20) SERVER pgt_nowhere",
    );
    let e = db.error("SELECT pgtrickle.refresh_stream_table('on_q')");
    assert_eq!(e.code, "55000", "{e:?}");
    assert!(
        e.message
            .contains("foreign-table partition or child public.q2"),
        "{e:?}"
    );
}

#[test]
fn restores_and_drop_owned_get_along_with_the_guards() {
    let mut db = view_db("sources_restore_like");
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('by_grp', '{BY_GRP}', '1h', 'DIFFERENTIAL')"
    ));
    // pg_restore --disable-triggers ends with ENABLE TRIGGER ALL: the guard goes back to ALWAYS.
    db.exec("ALTER TABLE by_grp DISABLE TRIGGER ALL; ALTER TABLE by_grp ENABLE TRIGGER ALL;");
    assert_eq!(
        db.value::<String>(
            "SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'pgtrickle_guard'"
        ),
        "A"
    );
    // DROP OWNED takes a stream table and its query view together.
    db.exec(
        "CREATE ROLE pgt_owner; GRANT USAGE ON SCHEMA pgtrickle_queries TO pgt_owner;
         ALTER TABLE by_grp OWNER TO pgt_owner;",
    );
    let view: String = db
        .value("SELECT format('pgtrickle_queries.q_%s', pgt_id) FROM pgtrickle.pgt_stream_tables");
    db.exec(&format!("ALTER VIEW {view} OWNER TO pgt_owner"));
    db.exec("DROP OWNED BY pgt_owner; DROP ROLE pgt_owner;");
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_stream_tables"),
        0
    );
}

/// pg_trickle's own housekeeping says nothing to the session that caused it: creating, altering
/// and dropping stream tables, and DDL on their sources, which rebuilds capture, leave the client
/// no NOTICE about objects it never made (at the default `client_min_messages`).
#[test]
fn housekeeping_says_nothing_to_the_client() {
    let mut db = TestDb::new("sources_quiet");
    db.exec(
        "CREATE TABLE quiet (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL, note text);
         INSERT INTO quiet SELECT g, g % 3, g, 'n' FROM generate_series(1, 50) g;",
    );
    let (mut client, notices) = db.connect_keeping_notices();
    client
        .batch_execute(
            "SELECT pgtrickle.create_stream_table('quiet_rows', 'SELECT id, v, note FROM quiet', '1d', 'DIFFERENTIAL');
             SELECT pgtrickle.create_stream_table('quiet_totals', 'SELECT grp, sum(v) AS s FROM quiet GROUP BY grp', '1d', 'AUTO');
             SELECT pgtrickle.create_stream_table('quiet_full', 'SELECT count(*) AS n FROM quiet', '1d', 'FULL');
             ALTER TABLE quiet RENAME COLUMN note TO remark;
             ALTER TABLE quiet ADD COLUMN extra int DEFAULT 7;
             ALTER TABLE quiet DROP COLUMN extra;
             UPDATE quiet SET v = v + 1 WHERE id < 10;
             TRUNCATE quiet;
             INSERT INTO quiet VALUES (1, 1, 1, 'x');
             SELECT pgtrickle.refresh_stream_table(t) FROM unnest(ARRAY['quiet_rows', 'quiet_totals', 'quiet_full']) t;
             SELECT pgtrickle.alter_stream_table('quiet_totals', refresh_mode => 'FULL');
             SELECT pgtrickle.drop_stream_table('quiet_rows');
             SELECT pgtrickle.drop_stream_table('quiet_totals');
             SELECT pgtrickle.drop_stream_table('quiet_full');",
        )
        .unwrap();
    let said: Vec<String> = notices
        .lock()
        .unwrap()
        .iter()
        .map(|n| format!("{} {}: {}", n.severity, n.code, n.message))
        .collect();
    assert_eq!(said, Vec::<String>::new());
}

/// The stored defining query is the text PostgreSQL prints for its query view, whatever the shape:
/// pg_trickle prints the query it reads as a view of it would print, so a rename of an unrelated
/// object finds nothing to rebuild. (A single table's columns are qualified, as a view's are; an
/// alias `new` or `old` is renamed, as in a view.)
#[test]
fn the_stored_query_is_its_query_views_text() {
    let mut db = TestDb::new("sources_printed");
    db.exec(
        "CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v numeric NOT NULL);
         INSERT INTO src SELECT g, g % 4, g FROM generate_series(1, 40) g;
         CREATE VIEW evens AS SELECT id, v FROM src WHERE id % 2 = 0;",
    );
    let queries = [
        "SELECT id, v FROM src",
        "SELECT * FROM src WHERE v > 3",
        "SELECT new.id, old.v FROM src new JOIN src old USING (id)",
        "SELECT grp, count(*) AS n, sum(v) FROM src GROUP BY grp",
        "SELECT e.id, s.grp FROM evens e JOIN src s ON s.id = e.id WHERE EXISTS (SELECT 1 FROM src t WHERE t.id = e.id)",
        "WITH c AS (SELECT grp, max(v) AS top FROM src GROUP BY grp) SELECT grp, top FROM c",
        "SELECT id FROM src UNION ALL SELECT id + 100 FROM src",
        "SELECT x, y FROM (VALUES (1, 'a'), (2, 'b')) AS t(x, y)",
        "SELECT id, ('(1,2)'::int4range) AS r, ARRAY[v] AS a FROM src",
    ];
    for (i, query) in queries.iter().enumerate() {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('st{i}', $q${query}$q$, '1h', 'AUTO')"
        ));
    }
    db.exec("SET search_path = ''");
    let differing: Vec<String> = db
        .rows(
            "SELECT st.defining_query || E'\\n<>\\n' || v.text
               FROM pgtrickle.pgt_stream_tables st,
                    LATERAL (SELECT pg_catalog.rtrim(pg_catalog.btrim(pg_catalog.pg_get_viewdef(
                               pg_catalog.format('pgtrickle_queries.q_%s', st.pgt_id)::pg_catalog.regclass)), ';') AS text) v
              WHERE st.defining_query <> v.text",
            &[],
        )
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(differing.is_empty(), "{}", differing.join("\n\n"));
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_stream_tables"),
        queries.len() as i64
    );
}
