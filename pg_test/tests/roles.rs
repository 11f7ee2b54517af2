//! pg_trickle for roles that are not superusers: they create, refresh, alter and drop their own
//! stream tables over tables they may read, never anyone else's, and see only what they may read.

use pg_trickle_e2e::TestDb;

struct Roles {
    alice: String,
    bob: String,
}

/// alice owns `a_src`; `secret` belongs to the superuser and is granted to nobody.
fn setup(name: &str) -> (TestDb, Roles) {
    let mut db = TestDb::new(name);
    let roles = Roles {
        alice: format!("{name}_alice"),
        bob: format!("{name}_bob"),
    };
    for role in [&roles.alice, &roles.bob] {
        db.fresh_role(role);
        db.exec(&format!("GRANT CREATE ON SCHEMA public TO {role}"));
    }
    db.exec(&format!(
        "CREATE TABLE a_src (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL);
         INSERT INTO a_src SELECT g, g % 3, g FROM generate_series(1, 30) g;
         ALTER TABLE a_src OWNER TO {alice};
         CREATE TABLE secret (id int PRIMARY KEY, card text);
         INSERT INTO secret VALUES (1, '4111-1111-1111-1111');",
        alice = roles.alice
    ));
    (db, roles)
}

const TOTALS: &str = "SELECT grp, count(*) AS n, sum(v) AS total FROM a_src GROUP BY grp";

#[test]
fn a_role_without_superuser_uses_its_own_stream_tables_end_to_end() {
    let (mut db, r) = setup("roles_happy_path");
    db.exec(&format!("SET ROLE {}", r.alice));
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', 'DIFFERENTIAL')"
    ));
    db.exec("INSERT INTO a_src VALUES (100, 1, 5); UPDATE a_src SET v = 0 WHERE id = 2;");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    db.assert_matches_query("totals", TOTALS);
    db.exec("SELECT pgtrickle.alter_stream_table('totals', schedule => '5m')");
    assert!(db
        .value::<String>("SELECT pgtrickle.explain_stream_table('totals')")
        .contains("DIFFERENTIAL"));
    assert_eq!(
        db.value::<String>(
            "SELECT refresh_mode FROM pgtrickle.stream_tables WHERE table_name = 'totals'"
        ),
        "DIFFERENTIAL"
    );
    db.exec("RESET ROLE");
    assert_eq!(
        db.value::<String>("SELECT tableowner::text FROM pg_tables WHERE tablename = 'totals'"),
        r.alice
    );
    assert_eq!(db.last_refresh("totals").0, "DIFFERENTIAL");
    db.exec(&format!("SET ROLE {}", r.alice));
    db.exec("SELECT pgtrickle.drop_stream_table('totals')");
    db.exec("RESET ROLE");
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_stream_tables"),
        0
    );
}

#[test]
fn nobody_else_may_touch_a_stream_table_or_read_what_it_may_not() {
    let (mut db, r) = setup("roles_forbidden");
    db.exec(&format!("SET ROLE {}", r.alice));
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', 'DIFFERENTIAL')"
    ));
    db.exec(&format!("SET ROLE {}", r.bob));
    for sql in [
        "SELECT pgtrickle.refresh_stream_table('totals')",
        "SELECT pgtrickle.alter_stream_table('totals', schedule => '1s')",
        "SELECT pgtrickle.drop_stream_table('totals')",
        "SELECT pgtrickle.explain_stream_table('totals')",
    ] {
        let e = db.error(sql);
        assert_eq!(e.code, "42501", "{sql}: {e:?}");
    }
    // Over a table bob may not read: refused in every mode, nothing left behind.
    for mode in ["AUTO", "FULL", "DIFFERENTIAL"] {
        let e = db.error(&format!("SELECT pgtrickle.create_stream_table('cards', 'SELECT id, card FROM secret', '1h', '{mode}')"));
        assert_eq!(e.code, "42501", "{mode}: {e:?}");
        assert_eq!(e.message, "permission denied for table public.secret");
    }
    // Bob sees neither alice's stream table in the catalog view nor the catalog itself, nor the
    // change rows of her source.
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.stream_tables"),
        0
    );
    assert_eq!(
        db.error("SELECT * FROM pgtrickle.pgt_stream_tables").code,
        "42501"
    );
    assert_eq!(
        db.error("INSERT INTO pgtrickle.pgt_dependencies VALUES (1, 'secret'::regclass, 'TABLE')")
            .code,
        "42501"
    );
    // Nor can he forge a write guard (a restore finds a stream table's table by its guard).
    db.exec("CREATE TABLE bobs (x int)");
    let forged = db.error("CREATE TRIGGER pgtrickle_guard BEFORE INSERT ON bobs FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle._guard_stream_table('1')");
    assert_eq!(forged.code, "42501", "{forged:?}");
    db.exec("RESET ROLE");
    let buffer: String =
        db.value("SELECT format('pgtrickle_changes.changes_%s', 'a_src'::regclass::oid)");
    db.exec(&format!("SET ROLE {}", r.bob));
    assert_eq!(db.error(&format!("SELECT * FROM {buffer}")).code, "42501");
    db.exec("RESET ROLE");
    // Alice's stream table is untouched and still hers to refresh.
    db.exec(&format!(
        "SET ROLE {}; SELECT pgtrickle.refresh_stream_table('totals'); RESET ROLE;",
        r.alice
    ));
    db.assert_matches_query("totals", TOTALS);
}

#[test]
fn change_buffers_belong_to_a_nologin_role_that_can_do_nothing_else() {
    let (mut db, r) = setup("roles_capture_role");
    db.exec(&format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON a_src TO {}",
        r.bob
    ));
    db.exec(&format!("SET ROLE {}", r.alice));
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', 'DIFFERENTIAL')"
    ));
    db.exec("RESET ROLE");
    let buffer: String =
        db.value("SELECT format('pgtrickle_changes.changes_%s', 'a_src'::regclass::oid)");

    // Not the first stream table's owner, not the superuser: pgtrickle_capture, which cannot log in
    // and may not read the source.
    assert_eq!(
        db.value::<String>(&format!(
            "SELECT relowner::regrole::text FROM pg_class WHERE oid = '{buffer}'::regclass"
        )),
        "pgtrickle_capture"
    );
    assert_eq!(
        db.value::<String>(
            "SELECT string_agg(DISTINCT proowner::regrole::text || ' definer ' || prosecdef, ', ') FROM pg_proc
              WHERE pronamespace = 'pgtrickle_changes'::regnamespace"
        ),
        "pgtrickle_capture definer true"
    );
    assert!(db.value::<bool>("SELECT NOT rolcanlogin AND NOT rolsuper AND NOT rolbypassrls FROM pg_roles WHERE rolname = 'pgtrickle_capture'"));
    assert!(!db.value::<bool>("SELECT has_table_privilege('pgtrickle_capture', 'a_src', 'SELECT')"));
    // Nothing of the catalog either: a TRUNCATE is a replaced row in its own buffer.
    for (table, privilege) in [
        ("pgtrickle.pgt_stream_tables", "DELETE"),
        ("pgtrickle.pgt_stream_tables", "UPDATE"),
        ("pgtrickle.pgt_stream_tables", "SELECT"),
        ("pgtrickle.pgt_dependencies", "SELECT"),
    ] {
        assert!(
            !db.value::<bool>(&format!(
                "SELECT CASE '{privilege}' WHEN 'DELETE' THEN has_table_privilege('pgtrickle_capture', '{table}', 'DELETE')
                        ELSE has_any_column_privilege('pgtrickle_capture', '{table}', '{privilege}') END"
            )),
            "pgtrickle_capture may {privilege} {table}"
        );
    }

    // The stream table's owner may read the buffer for her refreshes, and nothing more.
    db.exec(&format!("SET ROLE {}", r.alice));
    for sql in [
        format!("DELETE FROM {buffer}"),
        format!("INSERT INTO {buffer} (__pgt_xid, __pgt_w) VALUES ('1', 1)"),
        format!("DROP TABLE {buffer}"),
    ] {
        let e = db.error(&sql);
        assert_eq!(e.code, "42501", "{sql}: {e:?}");
    }

    // Capture works for whoever writes: bob's writes are seen (the capture trigger function needs no
    // rights), and alice's TRUNCATE (the capture role appends a replaced row to its buffer).
    db.exec(&format!("SET ROLE {}", r.bob));
    db.exec("INSERT INTO a_src VALUES (100, 1, 5); UPDATE a_src SET v = v + 1 WHERE id < 5; DELETE FROM a_src WHERE id = 7;");
    db.exec(&format!("SET ROLE {}", r.alice));
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    db.exec("RESET ROLE");
    db.assert_matches_query("totals", TOTALS);
    assert_eq!(db.last_refresh("totals").0, "DIFFERENTIAL");
    db.exec(&format!("SET ROLE {}", r.alice));
    db.exec("TRUNCATE a_src; INSERT INTO a_src VALUES (1, 1, 1);");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    db.exec("RESET ROLE");
    db.assert_matches_query("totals", TOTALS);
    assert_eq!(
        db.last_refresh("totals"),
        ("FULL".into(), r#""public"."a_src" was truncated"#.into())
    );
}

#[test]
fn the_capture_function_writes_only_from_pg_trickles_own_triggers() {
    let (mut db, r) = setup("roles_capture_misuse");
    db.exec(&format!("SET ROLE {}", r.alice));
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', 'DIFFERENTIAL')"
    ));
    db.exec("RESET ROLE");
    let source: i64 = db.value("SELECT 'a_src'::regclass::oid::bigint");
    let buffer = format!("pgtrickle_changes.changes_{source}");
    let captured = |db: &mut TestDb| db.value::<i64>(&format!("SELECT count(*) FROM {buffer}"));

    // bob makes his own table look like a source or one of its partitions: nothing reaches the buffer.
    db.exec(&format!("SET ROLE {}", r.bob));
    db.exec("CREATE TABLE b_own (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL)");
    for name in [
        "pgtrickle_capture_ins".to_string(),
        format!("pgtrickle_capture_{source}_ins"),
    ] {
        db.exec(&format!(
            "CREATE TRIGGER {name} AFTER INSERT ON b_own REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle._capture('{source}')"
        ));
    }
    db.exec("INSERT INTO b_own VALUES (1, 1, 1000000)");
    db.exec("RESET ROLE");
    assert_eq!(captured(&mut db), 0);

    // alice adds a second trigger running it on her own source: every change is still captured once.
    db.exec(&format!("SET ROLE {}", r.alice));
    db.exec(&format!(
        "CREATE TRIGGER again AFTER INSERT ON a_src REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle._capture('{source}')"
    ));
    db.exec("INSERT INTO a_src VALUES (100, 1, 5)");
    db.exec("RESET ROLE");
    assert_eq!(captured(&mut db), 1);
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    db.assert_matches_query("totals", TOTALS);
    assert_eq!(db.last_refresh("totals").0, "DIFFERENTIAL");

    // bob's triggers do not count as the source's capture either: disabled, they do not make alice's
    // refreshes FULL (as a disabled capture trigger of hers would), and re-arming leaves them alone.
    db.exec(&format!("SET ROLE {}", r.bob));
    db.exec(&format!(
        "CREATE TABLE b_two (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL);
         CREATE TRIGGER pgtrickle_capture_ins AFTER INSERT ON b_two REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle._capture('{source}');
         ALTER TABLE b_two DISABLE TRIGGER pgtrickle_capture_ins;"
    ));
    db.exec(&format!("SET ROLE {}", r.alice));
    db.exec("TRUNCATE a_src; INSERT INTO a_src VALUES (1, 1, 1), (2, 2, 2);");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    db.exec("RESET ROLE");
    assert_eq!(db.last_refresh("totals").0, "FULL");
    db.exec(&format!("SET ROLE {}", r.alice));
    db.exec("INSERT INTO a_src VALUES (3, 1, 3)");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    db.exec("RESET ROLE");
    assert_eq!(db.last_refresh("totals").0, "DIFFERENTIAL");
    db.assert_matches_query("totals", TOTALS);

    // Called as a function, it refuses.
    assert_eq!(db.error("SELECT pgtrickle._capture()").code, "55000");
}
