//! A refresh runs with exactly its owner's rights, whoever starts it (the scheduler's superuser, a
//! superuser's manual refresh): a trigger on the stream table or a function in its query cannot act
//! with more, row-level security on a source holds, and a lost privilege stops the refresh cleanly.
//! (Stream tables are created by a superuser here and handed over with ALTER TABLE ... OWNER TO.)

use pg_trickle_e2e::{wait_until, TestDb};
use std::time::Duration;

/// A database with table `src` (half of its rows the owner's, by `who`) and a role of its own — the
/// returned name; roles are cluster-wide and tests run in parallel — who may read src.
fn db(name: &str) -> (TestDb, String) {
    let mut db = TestDb::new(name);
    let alice = format!("{name}_alice");
    db.fresh_role(&alice);
    db.exec(&format!(
        "CREATE TABLE src (id int PRIMARY KEY, who text NOT NULL, v int NOT NULL);
         INSERT INTO src SELECT g, CASE WHEN g % 2 = 0 THEN '{alice}' ELSE 'carol' END, g FROM generate_series(1, 20) g;
         GRANT SELECT ON src TO {alice};"
    ));
    (db, alice)
}

#[test]
fn a_trigger_on_alices_stream_table_runs_as_alice_at_every_refresh() {
    let (mut db, alice) = db("security_trigger_trap");
    db.exec("SELECT pgtrickle.create_stream_table('mine', 'SELECT id, v FROM src', '1h', 'DIFFERENTIAL')");
    db.exec(&format!("ALTER TABLE mine OWNER TO {alice}"));
    // Alice's trap: a trigger on her stream table that promotes whoever runs it.
    db.exec(&format!(
        "CREATE FUNCTION promote() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN EXECUTE 'ALTER ROLE {alice} SUPERUSER'; RETURN NULL; END $$;
         ALTER FUNCTION promote() OWNER TO {alice};
         CREATE TRIGGER trap AFTER INSERT OR UPDATE OR DELETE ON mine FOR EACH STATEMENT EXECUTE FUNCTION promote();
         INSERT INTO src VALUES (100, 'carol', 1);"
    ));
    let superuser = format!("SELECT rolsuper FROM pg_roles WHERE rolname = '{alice}'");
    // A superuser's manual refresh: the trigger runs as alice, who may not do that.
    let e = db.error("SELECT pgtrickle.refresh_stream_table('mine')");
    assert_eq!(e.code, "42501", "{e:?}");
    assert!(!db.value::<bool>(&superuser));
    // The scheduler's refresh likewise fails, and records why.
    db.exec("SELECT pgtrickle.alter_stream_table('mine', schedule => '1s')");
    let failed = wait_until(Duration::from_secs(30), || {
        db.value::<i32>("SELECT consecutive_errors FROM pgtrickle.pgt_stream_tables") > 0
    });
    assert!(failed, "the scheduler never tried");
    assert!(!db.value::<bool>(&superuser));
    let error: String = db.value("SELECT last_error FROM pgtrickle.pgt_stream_tables");
    assert!(error.contains("must be superuser"), "{error}");
    // Without the trap, refreshes work again, as alice.
    db.exec("DROP TRIGGER trap ON mine");
    db.exec("SELECT pgtrickle.refresh_stream_table('mine')");
    db.assert_matches_query("mine", "SELECT id, v FROM src");
}

#[test]
fn functions_in_the_query_run_as_the_owner() {
    let (mut db, alice) = db("security_query_function");
    db.exec("CREATE FUNCTION by_whom(int) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT current_user::text'");
    db.exec("SELECT pgtrickle.create_stream_table('whom', 'SELECT id, by_whom(id) AS by FROM src', '1h', 'FULL')");
    db.exec(&format!("ALTER TABLE whom OWNER TO {alice}"));
    db.exec("SELECT pgtrickle.refresh_stream_table('whom')");
    assert_eq!(db.value::<String>("SELECT DISTINCT by FROM whom"), alice);
}

#[test]
fn row_level_security_on_a_source_holds_for_the_owner() {
    let (mut db, alice) = db("security_rls");
    db.exec(
        "ALTER TABLE src ENABLE ROW LEVEL SECURITY;
         CREATE POLICY own_rows ON src FOR SELECT USING (who = current_user);",
    );
    let others = "SELECT count(*) FROM {st} WHERE who <> current_setting('pgt.alice')";
    db.exec(&format!("SET pgt.alice = '{alice}'"));
    // Created for alice: DIFFERENTIAL would read the change buffer, which no policy filters.
    db.exec("SELECT pgtrickle.create_stream_table('visible', 'SELECT id, who, v FROM src', '1h', 'AUTO')");
    db.exec(&format!("ALTER TABLE visible OWNER TO {alice}"));
    db.exec("UPDATE src SET v = v + 1 WHERE id < 5");
    db.exec("SELECT pgtrickle.refresh_stream_table('visible')");
    assert_eq!(
        db.value::<String>(
            "SELECT refresh_mode FROM pgtrickle.stream_tables WHERE table_name = 'visible'"
        ),
        "FULL"
    );
    assert_eq!(db.value::<i64>(&others.replace("{st}", "visible")), 0);
    assert_eq!(db.value::<i64>("SELECT count(*) FROM visible"), 10);
    // A DIFFERENTIAL stream table of alice's re-decides when RLS is turned on under it.
    db.exec("ALTER TABLE src DISABLE ROW LEVEL SECURITY");
    db.exec(
        "SELECT pgtrickle.create_stream_table('delta', 'SELECT id, who, v FROM src', '1h', 'AUTO')",
    );
    db.exec(&format!("ALTER TABLE delta OWNER TO {alice}"));
    assert_eq!(
        db.value::<String>(
            "SELECT refresh_mode FROM pgtrickle.stream_tables WHERE table_name = 'delta'"
        ),
        "DIFFERENTIAL"
    );
    db.exec("ALTER TABLE src ENABLE ROW LEVEL SECURITY; INSERT INTO src VALUES (200, 'carol', 1);");
    db.exec("SELECT pgtrickle.refresh_stream_table('delta')");
    assert_eq!(
        db.value::<String>(
            "SELECT refresh_mode FROM pgtrickle.stream_tables WHERE table_name = 'delta'"
        ),
        "FULL"
    );
    assert_eq!(db.value::<i64>(&others.replace("{st}", "delta")), 0);
}

#[test]
fn a_revoked_privilege_stops_the_refresh_and_copies_nothing() {
    let (mut db, alice) = db("security_revoke");
    db.exec("SELECT pgtrickle.create_stream_table('mine', 'SELECT id, v FROM src', '1h', 'DIFFERENTIAL')");
    db.exec(&format!("ALTER TABLE mine OWNER TO {alice}"));
    // A new owner re-decides what the engine may read for it: one FULL refresh, then deltas.
    db.exec("SELECT pgtrickle.refresh_stream_table('mine')");
    assert_eq!(
        db.last_refresh("mine"),
        (
            "FULL".into(),
            format!("reinitialised: its owner is now {alice}")
        )
    );
    db.exec("INSERT INTO src VALUES (300, 'carol', 3)");
    db.exec("SELECT pgtrickle.refresh_stream_table('mine')");
    assert_eq!(db.last_refresh("mine").0, "DIFFERENTIAL");
    db.assert_matches_query("mine", "SELECT id, v FROM src");
    db.exec(&format!(
        "REVOKE SELECT ON src FROM {alice}; INSERT INTO src VALUES (301, 'carol', 4);"
    ));
    let e = db.error("SELECT pgtrickle.refresh_stream_table('mine')");
    assert_eq!(e.code, "42501", "{e:?}");
    assert_eq!(e.message, "permission denied for table public.src");
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM mine WHERE id = 301"),
        0
    );
    // Nor may alice read its change rows any more, though her refreshes were let read the buffer.
    let buffer: String =
        db.value("SELECT format('pgtrickle_changes.changes_%s', 'src'::regclass::oid)");
    db.exec(&format!(
        "GRANT USAGE ON SCHEMA pgtrickle_changes TO {alice}"
    ));
    assert!(
        db.value::<i64>(&format!("SELECT count(*) FROM {buffer}")) > 0,
        "the superuser sees the pending change row"
    );
    db.exec(&format!("SET ROLE {alice}"));
    assert_eq!(
        db.value::<i64>(&format!("SELECT count(*) FROM {buffer}")),
        0
    );
    db.exec("RESET ROLE");
    // FULL likewise.
    db.exec("SELECT pgtrickle.alter_stream_table('mine', refresh_mode => 'FULL')");
    assert_eq!(
        db.error("SELECT pgtrickle.refresh_stream_table('mine')")
            .code,
        "42501"
    );
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM mine WHERE id = 301"),
        0
    );
}
