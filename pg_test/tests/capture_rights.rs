//! Who may put change capture on a table: adding a trigger locks the table against its writers until
//! the transaction ends and costs each write from then on, so pg_trickle does it only for a role that
//! could add a trigger itself (the TRIGGER privilege), wherever capture would go.

use pg_trickle_e2e::TestDb;

/// Change capture and signals are triggers on a source, and adding one takes a lock that holds off
/// every writer of the table until the transaction ends: a role that may only read a table must
/// not be able to do that through pg_trickle (an open transaction that created a stream table held
/// every writer of its source). It needs the TRIGGER privilege, as `CREATE TRIGGER` does, unless
/// the table has pg_trickle's triggers already.
#[test]
fn only_a_role_that_may_add_triggers_puts_capture_on_a_table() {
    let (mut db, alice) = TestDb::with_reader("security_capture_needs_trigger");
    db.exec(&format!(
        "CREATE TABLE watched (id int PRIMARY KEY, v int);
         INSERT INTO watched VALUES (1, 1), (2, 2);
         GRANT SELECT ON watched TO {alice};
         GRANT CREATE ON SCHEMA public TO {alice};"
    ));
    let triggers_on = |db: &mut TestDb, table: &str| -> Vec<String> {
        db.rows(
            &format!("SELECT tgname::text FROM pg_trigger WHERE NOT tgisinternal AND tgrelid = '{table}'::regclass ORDER BY 1"),
            &[],
        )
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    db.exec(&format!("SET ROLE {alice}"));
    let e = db.error(
        "SELECT pgtrickle.create_stream_table('diff_src', 'SELECT id, v FROM src', '1h', 'DIFFERENTIAL')",
    );
    assert_eq!(e.code, "42501", "{e:?}");
    assert!(e.message.contains("src"), "{e:?}");
    assert!(e.hint.as_deref().unwrap_or("").contains("TRIGGER"), "{e:?}");
    // AUTO falls back to FULL, and takes no lock that writers wait for, inside an open transaction.
    db.exec(
        "BEGIN;
         SELECT pgtrickle.create_stream_table('auto_src', 'SELECT id, v FROM src', '1h', 'AUTO');
         SELECT pgtrickle.create_stream_table('full_src', 'SELECT id, v FROM src', '1h', 'FULL');",
    );
    let held: Vec<String> = db
        .rows(
            "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND relation = 'src'::regclass
               AND mode NOT IN ('AccessShareLock', 'RowShareLock') ORDER BY 1",
            &[],
        )
        .iter()
        .map(|r| r.get(0))
        .collect();
    db.exec("COMMIT; RESET ROLE");
    assert!(held.is_empty(), "a reader held {held:?} on src");
    assert!(triggers_on(&mut db, "src").is_empty());
    let modes: Vec<(String, String, bool)> = db
        .rows(
            "SELECT effective_mode, mode_reason, skip_unchanged FROM pgtrickle.pgt_stream_tables
              WHERE pgt_relid IN ('auto_src'::regclass, 'full_src'::regclass) ORDER BY pgt_relid::regclass::text",
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(modes[0].0, "FULL");
    assert!(modes[0].1.contains("TRIGGER privilege"), "{modes:?}");
    assert!(
        !modes[0].2 && !modes[1].2,
        "signals armed for a reader: {modes:?}"
    );
    // Switching to DIFFERENTIAL later is refused the same way.
    db.exec(&format!("SET ROLE {alice}"));
    let e =
        db.error("SELECT pgtrickle.alter_stream_table('full_src', refresh_mode => 'DIFFERENTIAL')");
    db.exec("RESET ROLE");
    assert_eq!(e.code, "42501", "{e:?}");
    assert!(triggers_on(&mut db, "src").is_empty());
    // The FULL stream tables still refresh exactly.
    db.exec("INSERT INTO src VALUES (100, 'carol', 100)");
    db.exec("SELECT pgtrickle.refresh_stream_table('auto_src'), pgtrickle.refresh_stream_table('full_src')");
    db.assert_matches_query("auto_src", "SELECT id, v FROM src");
    db.assert_matches_query("full_src", "SELECT id, v FROM src");

    // With TRIGGER granted she may; on a table captured already she needs nothing more than SELECT.
    db.exec(&format!(
        "GRANT TRIGGER ON watched TO {alice};
         SELECT pgtrickle.create_stream_table('by_owner', 'SELECT id, v FROM src', '1h', 'DIFFERENTIAL');
         SET ROLE {alice};
         SELECT pgtrickle.create_stream_table('diff_watched', 'SELECT id, v FROM watched', '1h', 'DIFFERENTIAL');
         SELECT pgtrickle.create_stream_table('diff_src', 'SELECT id, v FROM src', '1h', 'DIFFERENTIAL');
         SELECT pgtrickle.alter_stream_table('full_src', refresh_mode => 'DIFFERENTIAL');
         RESET ROLE;
         SELECT pgtrickle.refresh_stream_table('full_src');"
    ));
    assert!(!triggers_on(&mut db, "watched").is_empty());
    db.exec("UPDATE src SET v = v + 1 WHERE id <= 3; UPDATE watched SET v = 10 WHERE id = 1");
    for (table, query) in [
        ("diff_watched", "SELECT id, v FROM watched"),
        ("diff_src", "SELECT id, v FROM src"),
        ("full_src", "SELECT id, v FROM src"),
    ] {
        db.assert_refreshes_differentially(table, query, "after the grant");
    }
}

/// The TRIGGER privilege is asked for wherever capture would go: on each partition and
/// inheritance child of a source (as `CREATE TRIGGER` on a partitioned table asks), and on a table
/// a view starts to read when its owner redefines it (the stream table's next refresh would have
/// armed capture there, holding the table's writers off in the owner's transaction).
#[test]
fn capture_reaches_no_member_or_redefined_views_table_without_the_trigger_privilege() {
    let (mut db, alice) = TestDb::with_reader("security_capture_members");
    db.exec(&format!(
        "CREATE TABLE parted (id int, v int) PARTITION BY RANGE (id);
         CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (0) TO (100);
         INSERT INTO parted VALUES (1, 1);
         CREATE TABLE parent (id int, v int); CREATE TABLE child () INHERITS (parent);
         GRANT SELECT, TRIGGER ON parted, parent TO {alice};
         GRANT SELECT ON parted_low, child TO {alice};
         CREATE SCHEMA hers AUTHORIZATION {alice};"
    ));
    db.exec(&format!("SET ROLE {alice}"));
    for (source, member) in [("parted", "parted_low"), ("parent", "child")] {
        let e = db.error(&format!(
            "SELECT pgtrickle.create_stream_table('hers.over_{source}', 'SELECT id, v FROM {source}', '1h', 'DIFFERENTIAL')"
        ));
        assert_eq!(e.code, "42501", "{e:?}");
        assert!(e.message.contains(member), "{e:?}");
    }
    db.exec(
        "CREATE TABLE hers.seed (id int PRIMARY KEY, v int);
         CREATE VIEW hers.w AS SELECT id, v FROM hers.seed;
         SELECT pgtrickle.create_stream_table('hers.over_w', 'SELECT id, v FROM hers.w', '1h', 'DIFFERENTIAL');
         CREATE OR REPLACE VIEW hers.w AS SELECT id, v FROM public.src;",
    );
    let e = db.error("SELECT pgtrickle.refresh_stream_table('hers.over_w')");
    db.exec("RESET ROLE");
    assert_eq!(e.code, "55000", "{e:?}");
    assert!(
        e.message
            .contains("permission denied to add change capture to table public.src"),
        "{e:?}"
    );
    let triggered: i64 = db.value(
        "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal
           AND tgrelid IN ('src'::regclass, 'parted'::regclass, 'parted_low'::regclass, 'parent'::regclass, 'child'::regclass)",
    );
    assert_eq!(triggered, 0);
    // A superuser's refresh is refused the same way (the owner's rights decide); FULL reads the
    // view whole.
    let e = db.error("SELECT pgtrickle.refresh_stream_table('hers.over_w')");
    assert!(e.message.contains("TRIGGER"), "{e:?}");
    db.exec("SELECT pgtrickle.alter_stream_table('hers.over_w', refresh_mode => 'FULL', status => 'ACTIVE')");
    db.exec("SELECT pgtrickle.refresh_stream_table('hers.over_w')");
    db.assert_matches_query("hers.over_w", "SELECT id, v FROM hers.w");
}
