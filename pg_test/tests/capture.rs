//! Change capture beyond plain DML on the named table: writes aimed at partitions, partitions and
//! inheritance children that come and go, replication-role writes, capture triggers disabled or
//! dropped by hand. Each change must reach the stream table — differentially where capture saw it,
//! through a FULL reinitialisation where it could not — and never be silently lost.

use pg_trickle_e2e::{wait_until, TestDb};
use std::time::Duration;

const TOTALS: &str = "SELECT grp, count(*) AS n, sum(v) AS total FROM src GROUP BY grp";

fn refresh(db: &mut TestDb) -> (String, String) {
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    db.last_refresh("totals")
}

fn refresh_exact(db: &mut TestDb) -> String {
    let (action, reason) = refresh(db);
    db.assert_matches_query("totals", TOTALS);
    format!("{action}: {reason}")
}

/// Capture triggers not in their own mode: statement triggers fire in origin sessions (O), TRUNCATE
/// always (A), row triggers under replica role only (R).
const MISCONFIGURED_TRIGGERS: &str = "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgtrickle\\_capture\\_%'
    AND tgenabled <> CASE WHEN tgname LIKE '%\\_trunc' THEN 'A' WHEN tgname LIKE '%\\_row' THEN 'R' ELSE 'O' END";

fn partitioned_db(name: &str) -> TestDb {
    let mut db = TestDb::new(name);
    db.exec(
        "CREATE TABLE src (id int, grp int NOT NULL, v numeric NOT NULL) PARTITION BY RANGE (id);
         CREATE TABLE src_1 PARTITION OF src FOR VALUES FROM (0) TO (1000);
         -- A partition whose columns are in another order than its parent's.
         CREATE TABLE src_2 (v numeric NOT NULL, grp int NOT NULL, id int);
         ALTER TABLE src ATTACH PARTITION src_2 FOR VALUES FROM (1000) TO (2000);
         INSERT INTO src SELECT g, g % 7, g FROM generate_series(1, 1999) g;",
    );
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', 'DIFFERENTIAL')"
    ));
    db
}

#[test]
fn writes_aimed_directly_at_partitions_are_captured() {
    let mut db = partitioned_db("capture_partition_dml");
    db.exec(
        "INSERT INTO src_1 VALUES (0, 100, 5);
         UPDATE src_2 SET v = v + 1 WHERE id < 1100;
         DELETE FROM src_1 WHERE id < 50;
         INSERT INTO src VALUES (1500, 101, 7);",
    );
    let done = refresh_exact(&mut db);
    assert!(done.starts_with("DIFFERENTIAL"), "{done}");
}

#[test]
fn partitions_created_attached_detached_or_dropped_keep_the_stream_table_exact() {
    let mut db = partitioned_db("capture_partition_ddl");
    // A new, empty partition: captured from its first row, no reinitialisation needed.
    db.exec("CREATE TABLE src_3 PARTITION OF src FOR VALUES FROM (2000) TO (3000); INSERT INTO src_3 VALUES (2001, 200, 1);");
    let done = refresh_exact(&mut db);
    assert!(done.starts_with("DIFFERENTIAL"), "{done}");
    db.exec("UPDATE src_3 SET v = 2");
    assert!(refresh_exact(&mut db).starts_with("DIFFERENTIAL"));

    // A table with rows attached as a partition: its rows arrive without any INSERT.
    db.exec(
        "CREATE TABLE src_4 (id int, grp int NOT NULL, v numeric NOT NULL);
         INSERT INTO src_4 SELECT g, 300, 1 FROM generate_series(3000, 3010) g;
         ALTER TABLE src ATTACH PARTITION src_4 FOR VALUES FROM (3000) TO (4000);",
    );
    let done = refresh_exact(&mut db);
    assert!(
        done.starts_with(
            "FULL: reinitialised: capture of \"public\".\"src\" was re-armed: a partition"
        ),
        "{done}"
    );
    db.exec("DELETE FROM src_4 WHERE id = 3000");
    assert!(refresh_exact(&mut db).starts_with("DIFFERENTIAL"));

    // Detached: its rows leave without any DELETE; writes to it afterwards are not the source's.
    db.exec("ALTER TABLE src DETACH PARTITION src_4");
    assert!(refresh_exact(&mut db).starts_with("FULL"));
    db.exec("INSERT INTO src_4 VALUES (5000, 300, 9)");
    let done = refresh_exact(&mut db);
    assert!(
        done.starts_with("NO_DATA"),
        "writes to a detached table are not captured: {done}"
    );

    // Dropped: likewise.
    db.exec("DROP TABLE src_3");
    let done = refresh_exact(&mut db);
    assert_eq!(done, "FULL: reinitialised: a capture trigger of public.src was dropped (with a partition, or by hand)");
    db.exec("INSERT INTO src_1 VALUES (1, 1, 1)");
    assert!(refresh_exact(&mut db).starts_with("DIFFERENTIAL"));
}

#[test]
fn inheritance_children_are_captured_whichever_table_a_write_names() {
    let mut db = TestDb::new("capture_inheritance");
    db.exec(
        "CREATE TABLE src (id int, grp int NOT NULL, v numeric NOT NULL);
         CREATE TABLE old_child (note text) INHERITS (src);
         INSERT INTO src SELECT g, g % 3, g FROM generate_series(1, 30) g;
         INSERT INTO old_child SELECT g, g % 3, g, 'x' FROM generate_series(31, 40) g;",
    );
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', 'DIFFERENTIAL')"
    ));
    // A child created later, empty: captured from its first row.
    db.exec("CREATE TABLE child (extra text) INHERITS (src); INSERT INTO child VALUES (99, 1, 1000, 'x');");
    assert!(refresh_exact(&mut db).starts_with("DIFFERENTIAL"));
    // Through the parent (the parent's transition tables hold the children's rows), and directly.
    db.exec(
        "UPDATE src SET v = v * 2 WHERE id IN (5, 35, 99);
         DELETE FROM src WHERE id = 36;
         UPDATE old_child SET grp = 9 WHERE id = 37;
         DELETE FROM ONLY src WHERE id = 6;",
    );
    assert!(refresh_exact(&mut db).starts_with("DIFFERENTIAL"));
    // A table with rows made a child: its rows arrive unseen, so FULL once; NO INHERIT likewise.
    db.exec(
        "CREATE TABLE adopted (id int, grp int NOT NULL, v numeric NOT NULL);
         INSERT INTO adopted VALUES (500, 2, 7);
         ALTER TABLE adopted INHERIT src;",
    );
    assert!(refresh_exact(&mut db).starts_with("FULL"));
    db.exec("ALTER TABLE adopted NO INHERIT src");
    assert!(refresh_exact(&mut db).starts_with("FULL"));
    db.exec("INSERT INTO adopted VALUES (501, 2, 7)");
    assert!(refresh_exact(&mut db).starts_with("NO_DATA"));
    // FROM ONLY: the engine's parser does not read it. DIFFERENTIAL says so by name, and AUTO reads
    // it FULL, exactly: the parent's own rows, none of its children's.
    let only = "SELECT id, v FROM ONLY src";
    let e = db.error(&format!(
        "SELECT pgtrickle.create_stream_table('only_rows', '{only}', '1h', 'DIFFERENTIAL')"
    ));
    assert_eq!(e.code, "0A000", "{e:?}");
    assert!(
        e.message
            .contains("FROM ONLY (a table read without its inheritance children)"),
        "{e:?}"
    );
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('only_rows', '{only}', '1h', 'AUTO');
         UPDATE src SET v = v + 1; INSERT INTO child VALUES (98, 1, 1, 'y');
         SELECT pgtrickle.refresh_stream_table('only_rows');"
    ));
    db.assert_matches_query("only_rows", only);
    assert!(
        db.value::<String>("SELECT effective_mode || ': ' || mode_reason FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = 'only_rows'::regclass")
            .starts_with("FULL: "),
    );
}

#[test]
fn a_partition_as_a_source_is_read_in_full_and_says_why() {
    let mut db = partitioned_db("capture_partition_source");
    let e = db.error("SELECT pgtrickle.create_stream_table('p1', 'SELECT grp, v FROM src_1', '1h', 'DIFFERENTIAL')");
    assert_eq!(e.code, "0A000", "{e:?}");
    assert!(
        e.message
            .contains("partition or inheritance child of public.src"),
        "{e:?}"
    );
    db.exec("SELECT pgtrickle.create_stream_table('p1', 'SELECT grp, v FROM src_1', '1h', 'AUTO')");
    db.exec("INSERT INTO src VALUES (5, 5, 5)");
    db.exec("SELECT pgtrickle.refresh_stream_table('p1')");
    db.assert_matches_query("p1", "SELECT grp, v FROM src_1");
}

#[test]
fn writes_under_replica_role_are_captured() {
    let mut db = partitioned_db("capture_replica_role");
    // What logical replication's apply worker and `pg_restore --disable-triggers` sessions do.
    db.exec(
        "SET session_replication_role = replica;
         INSERT INTO src VALUES (10, 50, 1);
         UPDATE src_2 SET v = 0 WHERE id = 1001;
         RESET session_replication_role;",
    );
    let done = refresh_exact(&mut db);
    assert!(done.starts_with("DIFFERENTIAL"), "{done}");
}

#[test]
fn disabled_capture_means_full_refreshes_until_it_is_enabled_again() {
    let mut db = partitioned_db("capture_disabled");
    db.exec("ALTER TABLE src DISABLE TRIGGER ALL; ALTER TABLE src_1 DISABLE TRIGGER ALL;");
    db.exec("INSERT INTO src VALUES (11, 60, 1); INSERT INTO src_1 VALUES (12, 60, 2);");
    let done = refresh_exact(&mut db);
    assert!(done.contains("capture on a source is disabled"), "{done}");
    db.exec("DELETE FROM src WHERE id = 11");
    assert!(refresh_exact(&mut db).contains("capture on a source is disabled"));
    // Enabled again (ENABLE TRIGGER ALL puts every trigger in origin mode): each capture trigger is set
    // back to its own mode, and one more FULL refresh follows.
    db.exec("ALTER TABLE src ENABLE TRIGGER ALL; ALTER TABLE src_1 ENABLE TRIGGER ALL;");
    assert_eq!(db.value::<i64>(MISCONFIGURED_TRIGGERS), 0);
    assert!(refresh_exact(&mut db).starts_with("FULL"));
    db.exec("SET session_replication_role = replica; INSERT INTO src_1 VALUES (13, 61, 3); RESET session_replication_role;");
    assert!(refresh_exact(&mut db).starts_with("DIFFERENTIAL"));
}

#[test]
fn a_capture_trigger_dropped_by_hand_is_re_armed() {
    let mut db = partitioned_db("capture_trigger_dropped");
    db.exec("DROP TRIGGER pgtrickle_capture_ins ON src");
    db.exec("INSERT INTO src VALUES (14, 70, 1)");
    refresh_exact(&mut db);
    let root: i64 = db.value("SELECT 'src'::regclass::oid::bigint");
    db.exec(&format!(
        "DROP TRIGGER pgtrickle_capture_{root}_del ON src_2"
    ));
    db.exec("DELETE FROM src_2 WHERE id = 1002");
    refresh_exact(&mut db);
    db.exec("INSERT INTO src VALUES (15, 71, 1); DELETE FROM src_2 WHERE id = 1003;");
    assert!(refresh_exact(&mut db).starts_with("DIFFERENTIAL"));
}

#[test]
fn writes_applied_by_logical_replication_are_captured() {
    const TABLE: &str =
        "CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v numeric NOT NULL)";
    let mut publisher = TestDb::new("capture_lr_pub");
    publisher.exec(&format!(
        "{TABLE}; INSERT INTO src SELECT g, g % 4, g FROM generate_series(1, 40) g;
         CREATE PUBLICATION pgt_pub FOR TABLE src;"
    ));
    publisher.exec("SELECT pg_create_logical_replication_slot('pgt_capture_lr', 'pgoutput')");
    let mut db = TestDb::new("capture_lr_sub");
    db.exec(TABLE);
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', 'DIFFERENTIAL')"
    ));
    db.exec(&format!(
        "CREATE SUBSCRIPTION pgt_sub CONNECTION '{}' PUBLICATION pgt_pub WITH (create_slot = false, slot_name = 'pgt_capture_lr')",
        publisher.conninfo()
    ));
    let checksum = "SELECT coalesce(sum(hashtext(src::text)), 0)::bigint FROM src";
    let caught_up = |db: &mut TestDb, publisher: &mut TestDb| {
        let want: i64 = publisher.value(checksum);
        assert!(
            wait_until(Duration::from_secs(60), || db.value::<i64>(checksum)
                == want),
            "the subscription did not catch up"
        );
    };
    // The initial copy, then inserts, updates and deletes, each applied by the subscription's worker.
    caught_up(&mut db, &mut publisher);
    let done = refresh_exact(&mut db);
    assert!(done.starts_with("DIFFERENTIAL"), "{done}");
    publisher.exec("INSERT INTO src VALUES (100, 1, 7); UPDATE src SET v = v * 2 WHERE grp = 2; DELETE FROM src WHERE id < 5;");
    caught_up(&mut db, &mut publisher);
    let done = refresh_exact(&mut db);
    assert!(done.starts_with("DIFFERENTIAL"), "{done}");
    // A replicated TRUNCATE reinitialises.
    publisher.exec("TRUNCATE src; INSERT INTO src VALUES (1, 1, 1);");
    caught_up(&mut db, &mut publisher);
    let done = refresh_exact(&mut db);
    assert!(done.starts_with("FULL"), "{done}");
    // Writes of the subscriber's own sessions are still captured once.
    db.exec("INSERT INTO src VALUES (500, 3, 3)");
    let done = refresh_exact(&mut db);
    assert!(done.starts_with("DIFFERENTIAL"), "{done}");
    db.exec("DROP SUBSCRIPTION pgt_sub");
}

#[test]
fn pg_trickles_tables_work_under_a_publication_of_all_tables_which_is_warned_about() {
    let mut db = TestDb::new("capture_pub_all");
    let owner = "capture_pub_owner";
    db.fresh_role(owner);
    db.exec(&format!(
        "CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v numeric NOT NULL);
         INSERT INTO src SELECT g, g % 4, g FROM generate_series(1, 20) g;
         ALTER TABLE src OWNER TO {owner}; GRANT CREATE ON DATABASE capture_pub_all TO {owner};
         SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', 'DIFFERENTIAL');"
    ));
    // Which of pg_trickle's tables have what replica identity: `d` (default: none without a key), `f`.
    let identities = |db: &mut TestDb| -> String {
        db.value(
            "SELECT string_agg(t, ' ' ORDER BY t) FROM (
                SELECT CASE WHEN n.nspname = 'pgtrickle_changes' THEN 'buffer' ELSE c.relname::text END
                       || '=' || c.relreplident::text AS t
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind = 'r' AND (n.nspname = 'pgtrickle_changes' OR c.relname IN ('totals', 'ids', 'ids_full'))) x",
        )
    };
    assert_eq!(
        identities(&mut db),
        "buffer=d totals=d",
        "nothing published: nothing logged"
    );
    let (mut client, notices) = db.connect_keeping_notices();
    let warnings = |notices: &pg_trickle_e2e::Notices| {
        let kept: Vec<_> = notices.lock().unwrap().drain(..).collect();
        kept.into_iter()
            .filter(|n| n.severity == "WARNING")
            .collect::<Vec<_>>()
    };
    // A plain role publishing its own table: nothing to say, nothing to change, and pg_trickle's
    // event trigger (SECURITY DEFINER) does not stand in its way.
    client
        .batch_execute(&format!(
            "SET ROLE {owner}; CREATE PUBLICATION some_tables FOR TABLE src; RESET ROLE;"
        ))
        .unwrap();
    assert!(warnings(&notices).is_empty());
    assert_eq!(identities(&mut db), "buffer=d totals=d");

    // Under the replica role too (as a restore may run).
    client
        .batch_execute(
            "SET session_replication_role = replica; CREATE PUBLICATION \"Every Table\" FOR ALL TABLES; RESET session_replication_role;",
        )
        .unwrap();
    let said = warnings(&notices);
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(said[0].code, "01000");
    assert!(
        said[0]
            .message
            .starts_with("publication \"Every Table\" publishes all tables"),
        "{said:?}"
    );
    assert!(said[0]
        .detail
        .as_deref()
        .unwrap_or_default()
        .contains("pgtrickle_changes"));
    assert!(said[0]
        .hint
        .as_deref()
        .unwrap_or_default()
        .contains("FOR TABLES IN SCHEMA"));
    // Published with its deletes, a table without a replica identity could not be deleted from (nor
    // its buffer cleaned up): pg_trickle's tables get one.
    assert_eq!(identities(&mut db), "buffer=f totals=f");
    db.exec("INSERT INTO src VALUES (100, 9, 1); UPDATE src SET v = v + 1 WHERE grp = 1; DELETE FROM src WHERE grp = 2;");
    assert!(refresh_exact(&mut db).starts_with("DIFFERENTIAL"));
    db.exec("DELETE FROM src WHERE grp = 9");
    assert!(refresh_exact(&mut db).starts_with("DIFFERENTIAL"));

    // A stream table created beside it is said to be published, and works.
    client
        .batch_execute(
            "SELECT pgtrickle.create_stream_table('ids', 'SELECT id, v FROM src', '1h', 'DIFFERENTIAL');
             SELECT pgtrickle.create_stream_table('ids_full', 'SELECT id, v FROM src', '1h', 'FULL');",
        )
        .unwrap();
    assert_eq!(warnings(&notices).len(), 2);
    assert_eq!(identities(&mut db), "buffer=f ids=f ids_full=f totals=f");
    db.exec("UPDATE src SET v = 0 WHERE id < 5; DELETE FROM src WHERE id = 7;");
    for name in ["ids", "ids_full"] {
        db.exec(&format!("SELECT pgtrickle.refresh_stream_table('{name}')"));
        db.assert_matches_query(name, "SELECT id, v FROM src");
    }
    assert_eq!(db.last_refresh("ids").0, "DIFFERENTIAL");
    // A column change that rebuilds the source's capture makes a new buffer, published as well.
    db.exec("ALTER TABLE src ADD COLUMN note text; ALTER TABLE src DROP COLUMN note;");
    assert_eq!(identities(&mut db), "buffer=f ids=f ids_full=f totals=f");
    for round in 0..2 {
        db.exec(&format!(
            "UPDATE src SET v = v + 1 WHERE id = 3; DELETE FROM src WHERE id = {};",
            10 + round
        ));
        refresh_exact(&mut db);
    }
    assert!(db.last_refresh("totals").0 == "DIFFERENTIAL");
    drop(client);

    // Gone the publication, nothing more is said.
    db.exec("DROP PUBLICATION \"Every Table\"");
    let (mut client, notices) = db.connect_keeping_notices();
    client
        .batch_execute("SELECT pgtrickle.create_stream_table('again', 'SELECT id FROM src', '1h')")
        .unwrap();
    assert!(
        warnings(&notices).is_empty(),
        "no such publication any more"
    );

    // Installing pg_trickle beside such a publication says so too.
    let plain = TestDb::without_extension("capture_pub_all_install");
    let (mut client, notices) = plain.connect_keeping_notices();
    client
        .batch_execute(
            "CREATE PUBLICATION a FOR ALL TABLES; CREATE PUBLICATION b FOR ALL TABLES; CREATE EXTENSION pg_trickle;",
        )
        .unwrap();
    let said = warnings(&notices);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0]
            .message
            .starts_with("publications a, b publish all tables"),
        "{said:?}"
    );
}

/// Capture appends to a change buffer below the executor. An index someone creates on a buffer (a
/// superuser chasing a slow refresh, say) must still list every change row: a refresh that reads
/// the buffer through it would otherwise miss changes, silently. Statement and row capture, a bulk
/// statement, partial and expression indexes; amcheck proves each index complete.
#[test]
fn an_index_made_on_a_change_buffer_lists_every_change_row() {
    let mut db = TestDb::new("capture_buffer_index");
    db.exec(
        "CREATE EXTENSION amcheck;
         CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v numeric NOT NULL);
         INSERT INTO src SELECT g, g % 5, g FROM generate_series(1, 100) g;",
    );
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1d', 'DIFFERENTIAL')"
    ));
    let buffer: String = db.value(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'pgtrickle_changes' AND c.relname = 'changes_' || 'src'::regclass::oid",
    );
    db.exec(&format!(
        "CREATE INDEX buffer_xid ON {buffer} (__pgt_xid);
         CREATE INDEX buffer_partial ON {buffer} (grp) WHERE __pgt_w < 0;
         CREATE INDEX buffer_expression ON {buffer} ((v * 2), id);"
    ));
    db.exec(
        "INSERT INTO src VALUES (101, 1, 1);
         UPDATE src SET v = v + 1 WHERE id <= 10;
         DELETE FROM src WHERE id BETWEEN 20 AND 25;
         INSERT INTO src SELECT g, g % 5, g FROM generate_series(1000, 3000) g;
         SET session_replication_role = replica;
         UPDATE src SET grp = 9 WHERE id = 30;
         RESET session_replication_role;",
    );
    let rows: i64 = db.value(&format!("SELECT count(*) FROM {buffer}"));
    assert!(rows > 2000, "{rows} change rows");
    for index in ["buffer_xid", "buffer_partial", "buffer_expression"] {
        db.exec(&format!(
            "SELECT bt_index_check('pgtrickle_changes.{index}'::regclass, heapallindexed => true)"
        ));
    }
    // And a refresh that reads the buffer through an index sees every change. (It does read through
    // one: the batch function offers `__pgt_xid >= xmin(old)` to a B-tree on the transaction id.)
    db.exec("ALTER DATABASE capture_buffer_index SET enable_seqscan = off");
    let mut db = TestDb::existing("capture_buffer_index");
    let scans = "SELECT pg_stat_get_xact_numscans('pgtrickle_changes.buffer_xid'::regclass)";
    db.exec("BEGIN");
    let before: i64 = db.value(scans);
    let done = refresh_exact(&mut db);
    let after: i64 = db.value(scans);
    db.exec("COMMIT");
    assert!(done.starts_with("DIFFERENTIAL"), "{done}");
    assert!(
        after > before,
        "the refresh read {buffer} not through buffer_xid"
    );
}

/// Rows a faster stream table has applied stay in the buffer while a slower one has not: every
/// refresh of the faster one reads past them. explain_stream_table counts them per buffer and, when
/// they are many, names the index on the transaction id that spares it (and creates nothing).
#[test]
fn explain_counts_rows_kept_for_slower_stream_tables_and_names_the_index_for_them() {
    let mut db = TestDb::new("capture_kept_rows");
    db.exec(
        "CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v numeric NOT NULL);
         INSERT INTO src SELECT g, g % 5, g FROM generate_series(1, 100) g;",
    );
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1d', 'DIFFERENTIAL');
         SELECT pgtrickle.create_stream_table('slow', 'SELECT id, v FROM src', '1d', 'DIFFERENTIAL');"
    ));
    // Separate transactions: a refresh in the writing one would be FULL.
    db.exec("INSERT INTO src SELECT g, g % 5, g FROM generate_series(1000, 12999) g");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    let oid: u32 = db.value::<postgres::types::Oid>("SELECT 'src'::regclass::oid");
    let buffer = format!("\"pgtrickle_changes\".\"changes_{oid}\"");
    let explain = |db: &mut TestDb, name: &str| -> String {
        db.value(&format!("SELECT pgtrickle.explain_stream_table('{name}')"))
    };
    let advice = format!("CREATE INDEX ON {buffer} (__pgt_xid);");
    let text = explain(&mut db, "totals");
    assert!(
        text.contains(&format!(
            "Change buffers:\n{buffer} (\"public\".\"src\"): 12000 rows, 12000 of them applied here and kept for slower stream tables\n-- each refresh reads past the kept rows"
        )),
        "{text}"
    );
    assert!(text.contains(&advice), "{text}");
    // A role that may read the stream table but not its source sees no counts of the source's changes.
    db.fresh_role("capture_kept_reader");
    db.exec(
        "GRANT SELECT ON totals TO capture_kept_reader;
         SET ROLE capture_kept_reader",
    );
    let text = explain(&mut db, "totals");
    db.exec("RESET ROLE");
    assert!(text.contains("Operator tree:"), "{text}");
    assert!(!text.contains("Change buffers"), "{text}");
    // The slower one has applied none of them: nothing to advise it.
    let text = explain(&mut db, "slow");
    assert!(
        text.contains("12000 rows, 0 of them applied here"),
        "{text}"
    );
    assert!(!text.contains(&advice), "{text}");
    // Suggested, not made; once it exists, not suggested again.
    assert_eq!(
        db.value::<i64>(&format!(
            "SELECT count(*) FROM pg_index WHERE indrelid = '{buffer}'::regclass"
        )),
        0
    );
    db.exec(&format!("CREATE INDEX ON {buffer} (__pgt_xid)"));
    let text = explain(&mut db, "totals");
    assert!(text.contains("12000 of them applied here"), "{text}");
    assert!(!text.contains(&advice), "{text}");
    // Once the slower one has applied them too, they are gone.
    db.exec("SELECT pgtrickle.refresh_stream_table('slow')");
    db.wait_for_cleanups();
    let text = explain(&mut db, "totals");
    assert!(
        text.contains(&format!("{buffer} (\"public\".\"src\"): 0 rows")),
        "{text}"
    );
}
