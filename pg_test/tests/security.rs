//! A refresh runs with exactly its owner's rights, whoever starts it (the scheduler's superuser, a
//! superuser's manual refresh): a trigger on the stream table or a function in its query cannot act
//! with more, row-level security on a source holds, and a lost privilege stops the refresh cleanly.
//! (Stream tables are created by a superuser here and handed over with ALTER TABLE ... OWNER TO.)

use pg_trickle_e2e::{wait_until, TestDb};
use std::time::Duration;

/// How many change rows of `source`'s buffer `role` sees (None: as the connection's superuser).
fn buffer_rows_seen(db: &mut TestDb, source: &str, role: Option<&str>) -> i64 {
    let buffer: String = db.value(&format!(
        "SELECT format('pgtrickle_changes.changes_%s', '{source}'::regclass::oid)"
    ));
    if let Some(role) = role {
        db.exec(&format!("SET ROLE {role}"));
    }
    let seen = db.value::<i64>(&format!("SELECT count(*) FROM {buffer}"));
    db.exec("RESET ROLE");
    seen
}

#[test]
fn a_trigger_on_alices_stream_table_runs_as_alice_at_every_refresh() {
    let (mut db, alice) = TestDb::with_reader("security_trigger_trap");
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
    let (mut db, alice) = TestDb::with_reader("security_query_function");
    db.exec("CREATE FUNCTION by_whom(int) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT current_user::text'");
    db.exec("SELECT pgtrickle.create_stream_table('whom', 'SELECT id, by_whom(id) AS by FROM src', '1h', 'FULL')");
    db.exec(&format!("ALTER TABLE whom OWNER TO {alice}"));
    db.exec("SELECT pgtrickle.refresh_stream_table('whom')");
    assert_eq!(db.value::<String>("SELECT DISTINCT by FROM whom"), alice);
}

#[test]
fn row_level_security_on_a_source_holds_for_the_owner() {
    let (mut db, alice) = TestDb::with_reader("security_rls");
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
    let (mut db, alice) = TestDb::with_reader("security_revoke");
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
    db.exec(&format!(
        "GRANT USAGE ON SCHEMA pgtrickle_changes TO {alice}"
    ));
    assert!(
        buffer_rows_seen(&mut db, "src", None) > 0,
        "the superuser sees the pending change row"
    );
    assert_eq!(buffer_rows_seen(&mut db, "src", Some(&alice)), 0);
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

/// USAGE on a source's schema is part of reading it: PostgreSQL checks it when a query names the
/// table, and a delta, which reads only the change buffer, must check it too. (Until 2026-12-07 a
/// DIFFERENTIAL refresh copied rows of a schema its owner had lost USAGE on.)
#[test]
fn a_revoked_schema_usage_stops_the_refresh_and_copies_nothing() {
    let (mut db, alice) = TestDb::with_reader("security_schema_usage");
    db.exec(&format!(
        "CREATE SCHEMA hid; CREATE TABLE hid.t (id int PRIMARY KEY, v int);
         INSERT INTO hid.t VALUES (1, 1), (2, 2);
         GRANT USAGE ON SCHEMA hid TO {alice}; GRANT SELECT ON hid.t TO {alice};"
    ));
    for (name, mode) in [("hst", "DIFFERENTIAL"), ("hst_full", "FULL")] {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{name}', 'SELECT id, v FROM hid.t', '1h', '{mode}');
             ALTER TABLE {name} OWNER TO {alice};
             SELECT pgtrickle.refresh_stream_table('{name}');"
        ));
    }
    db.exec(&format!(
        "REVOKE USAGE ON SCHEMA hid FROM {alice}; INSERT INTO hid.t VALUES (3, 3), (4, 4);"
    ));
    for name in ["hst", "hst_full"] {
        let e = db.error(&format!("SELECT pgtrickle.refresh_stream_table('{name}')"));
        assert_eq!(e.code, "42501", "{e:?}");
        assert_eq!(e.message, "permission denied for schema hid", "{e:?}");
        assert_eq!(
            e.detail.as_deref(),
            Some(
                format!(
                    "Refreshes run as the stream table's owner, {alice}, who may not read hid.t."
                )
                .as_str()
            )
        );
        assert!(
            e.hint
                .as_deref()
                .unwrap_or_default()
                .starts_with(&format!("GRANT USAGE ON SCHEMA hid TO {alice}")),
            "{e:?}"
        );
        assert_eq!(
            db.value::<i64>(&format!("SELECT count(*) FROM {name} WHERE id > 2")),
            0
        );
    }
    // Nor may alice read the change rows waiting in the buffer, though her refreshes could.
    assert_eq!(buffer_rows_seen(&mut db, "hid.t", Some(&alice)), 0);
    assert!(buffer_rows_seen(&mut db, "hid.t", None) > 0);
    db.exec(&format!("GRANT USAGE ON SCHEMA hid TO {alice}"));
    db.exec("SELECT pgtrickle.refresh_stream_table('hst')");
    assert_eq!(db.last_refresh("hst").0, "DIFFERENTIAL");
    db.assert_matches_query("hst", "SELECT id, v FROM hid.t");
}

/// Row-level security applies to an owner that loses BYPASSRLS or SUPERUSER, which no DDL on the
/// source says: the next refresh re-decides as if RLS had been enabled — AUTO reads the table
/// whole, under the owner's policies; DIFFERENTIAL stops with the reason. (Until 2026-12-07 deltas
/// went on copying rows the policies hide from the owner.)
#[test]
fn an_owner_that_loses_bypassrls_or_superuser_is_held_by_row_level_security() {
    let (mut db, alice) = TestDb::with_reader("security_rls_bypass");
    db.exec(
        "ALTER TABLE src ENABLE ROW LEVEL SECURITY;
         CREATE POLICY own_rows ON src FOR SELECT USING (who = current_user);",
    );
    let visible = format!("SELECT id, who, v FROM src WHERE who = '{alice}'");
    for (round, (attribute, name, mode)) in [
        ("BYPASSRLS", "by_auto", "AUTO"),
        ("BYPASSRLS", "by_diff", "DIFFERENTIAL"),
        ("SUPERUSER", "su_auto", "AUTO"),
    ]
    .into_iter()
    .enumerate()
    {
        let (before, hidden, own) = (1000 + round * 10, 1001 + round * 10, 1002 + round * 10);
        db.exec(&format!("ALTER ROLE {alice} {attribute}"));
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{name}', 'SELECT id, who, v FROM src', '1h', '{mode}');
             ALTER TABLE {name} OWNER TO {alice};
             SELECT pgtrickle.refresh_stream_table('{name}');"
        ));
        // Each its own transaction: a refresh in the transaction that changed a source is FULL.
        db.exec(&format!("INSERT INTO src VALUES ({before}, 'carol', 1)"));
        db.exec(&format!("SELECT pgtrickle.refresh_stream_table('{name}')"));
        assert_eq!(
            db.last_refresh(name).0,
            "DIFFERENTIAL",
            "{name}: {:?}",
            db.last_refresh(name)
        );
        db.exec(&format!(
            "ALTER ROLE {alice} NO{attribute};
             INSERT INTO src VALUES ({hidden}, 'carol', 2), ({own}, '{alice}', 3);"
        ));
        // The policies now apply to alice: the change buffer shows her none of its rows (which
        // rows they would hide is not known of a change row).
        assert_eq!(buffer_rows_seen(&mut db, "src", Some(&alice)), 0);
        if mode == "AUTO" {
            db.exec(&format!("SELECT pgtrickle.refresh_stream_table('{name}')"));
            let (action, reason) = db.last_refresh(name);
            assert_eq!(action, "FULL", "{name}");
            assert!(
                reason.contains(&format!(
                    "row-level security of public.src applies to the stream table's owner {alice} now"
                )),
                "{name}: {reason}"
            );
            db.assert_matches_query(name, &visible);
        } else {
            let e = db.error(&format!("SELECT pgtrickle.refresh_stream_table('{name}')"));
            assert_eq!(e.code, "55000", "{e:?}");
            assert!(e.message.contains("row-level security"), "{e:?}");
            assert_eq!(
                db.value::<i64>(&format!("SELECT count(*) FROM {name} WHERE id = {hidden}")),
                0,
                "{name}: the row the policy hides from {alice} was copied"
            );
        }
    }
}

/// A view granted to the owner is read as PostgreSQL reads it: the tables under it with the view
/// owner's rights, as `REFRESH MATERIALIZED VIEW` would. (Until 2026-12-07 a FULL refresh demanded
/// that the owner could read those tables too, and refused such a stream table.)
#[test]
fn a_view_granted_to_the_owner_is_read_with_the_view_owners_rights() {
    let (mut db, alice) = TestDb::with_reader("security_granted_view");
    db.exec(&format!(
        "CREATE SCHEMA hidden; CREATE TABLE hidden.base (id int PRIMARY KEY, v int);
         INSERT INTO hidden.base VALUES (1, 10), (2, 20);
         CREATE VIEW exposed AS SELECT id, v FROM hidden.base WHERE id > 0;
         GRANT SELECT ON exposed TO {alice};"
    ));
    for (name, mode) in [("through_full", "FULL"), ("through_auto", "AUTO")] {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{name}', 'SELECT id, v FROM exposed', '1h', '{mode}');
             ALTER TABLE {name} OWNER TO {alice};"
        ));
        db.exec("INSERT INTO hidden.base VALUES (3, 30) ON CONFLICT DO NOTHING");
        db.exec(&format!("SELECT pgtrickle.refresh_stream_table('{name}')"));
        assert_eq!(db.last_refresh(name).0, "FULL", "{name}");
        db.assert_matches_query(name, "SELECT id, v FROM hidden.base");
    }
    // What the query names is still checked as the owner.
    db.exec(&format!("REVOKE SELECT ON exposed FROM {alice}"));
    let e = db.error("SELECT pgtrickle.refresh_stream_table('through_full')");
    assert_eq!(e.code, "42501", "{e:?}");
    assert_eq!(e.message, "permission denied for table public.exposed");
}

/// pg_trickle's own statements, which run as the extension's owner (a superuser) or in background
/// workers, never call what a user's schema supplies: an operator `=` for oid, bigint or text put
/// before pg_catalog in the search_path of the SQL API's caller (CVE-2018-1058's attack). Until
/// 2026-12-07 such an operator ran as the superuser — a role that could create a schema made
/// itself SUPERUSER with an ALTER TABLE, and left its operator in a change buffer's policy.
#[test]
fn a_callers_search_path_cannot_supply_what_pg_trickle_runs() {
    let (mut db, alice) = TestDb::with_reader("security_search_path");
    db.exec(&format!(
        "GRANT CREATE ON DATABASE security_search_path TO {alice};
         SELECT pgtrickle.create_stream_table('bystander', 'SELECT id, v FROM src', '1h', 'DIFFERENTIAL');"
    ));
    db.exec(&format!("SET ROLE {alice}"));
    db.exec(&format!(
        "CREATE SCHEMA trap;
         CREATE TABLE trap.calls (who text);
         CREATE TABLE trap.mine (id int PRIMARY KEY, v int);
         INSERT INTO trap.mine VALUES (1, 1), (2, 2);
         GRANT SELECT ON trap.mine TO PUBLIC;
         CREATE FUNCTION trap.eq_oid(oid, oid) RETURNS bool LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO trap.calls VALUES (current_user); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
         CREATE FUNCTION trap.eq_int8(bigint, bigint) RETURNS bool LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO trap.calls VALUES (current_user); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
         CREATE FUNCTION trap.eq_text(text, text) RETURNS bool LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO trap.calls VALUES (current_user); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
         CREATE OPERATOR trap.= (leftarg = oid, rightarg = oid, function = trap.eq_oid);
         CREATE OPERATOR trap.= (leftarg = bigint, rightarg = bigint, function = trap.eq_int8);
         CREATE OPERATOR trap.= (leftarg = text, rightarg = text, function = trap.eq_text);
         -- Types named like pg_catalog's, with casts into them that log.
         CREATE TYPE trap.oid AS (x int);
         CREATE FUNCTION trap.to_oid(regclass) RETURNS trap.oid LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO trap.calls VALUES (current_user); RETURN ROW(1)::trap.oid; END $$;
         CREATE CAST (regclass AS trap.oid) WITH FUNCTION trap.to_oid(regclass);
         -- A domain whose CHECK logs, read when a literal of a composite holding it is parsed.
         CREATE FUNCTION trap.check_logs(int) RETURNS bool LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO trap.calls VALUES (current_user); RETURN true; END $$;
         CREATE DOMAIN trap.checked AS int CHECK (trap.check_logs(VALUE));
         CREATE TYPE trap.holder AS (v trap.checked);
         -- A function of the owner's query that points the search_path at the trap for whatever
         -- runs after it in the session.
         CREATE FUNCTION trap.repoint(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
           $$ BEGIN PERFORM pg_catalog.set_config('search_path', 'trap, pg_catalog', false); RETURN $1; END $$;
         GRANT INSERT ON trap.calls TO PUBLIC;
         SET search_path = trap, pg_catalog, public;"
    ));
    // Everything a user does through pg_trickle, and DDL its hook looks at.
    for sql in [
        "SELECT pgtrickle.create_stream_table('trap.lit', $q$SELECT id, ('(1)'::trap.holder).v AS w FROM trap.mine$q$, '1h', 'FULL')",
        "SELECT pgtrickle.refresh_stream_table('trap.lit')",
        "SELECT pgtrickle.create_stream_table('trap.mine_st', 'SELECT id, v FROM trap.mine', '1h', 'DIFFERENTIAL')",
        "SELECT pgtrickle.create_stream_table('trap.repointed', 'SELECT id, trap.repoint(v) AS v FROM trap.mine', '1h', 'FULL')",
        "SELECT pgtrickle.refresh_stream_table('trap.repointed')",
        "SET search_path = trap, pg_catalog, public",
        "INSERT INTO trap.mine VALUES (3, 3)",
        "SELECT pgtrickle.refresh_stream_table('trap.mine_st')",
        "SELECT pgtrickle.alter_stream_table('trap.mine_st', schedule => '2h')",
        "SELECT pgtrickle.explain_stream_table('trap.mine_st')",
        "CREATE TABLE trap.other (c int); ALTER TABLE trap.other ALTER COLUMN c TYPE bigint",
        "CREATE TABLE trap.child () INHERITS (trap.other)",
        "SELECT pgtrickle.drop_stream_table('trap.mine_st')",
    ] {
        db.exec(sql);
    }
    db.exec("RESET search_path; RESET ROLE");
    let strangers: Vec<String> = db
        .rows("SELECT DISTINCT who FROM trap.calls", &[])
        .iter()
        .map(|r| r.get(0))
        .filter(|who: &String| *who != alice)
        .collect();
    assert!(strangers.is_empty(), "the trap ran as {strangers:?}");
    assert!(!db.value::<bool>(&format!(
        "SELECT rolsuper FROM pg_roles WHERE rolname = '{alice}'"
    )));
    // The bystander's buffer policy names no operator of the trap's.
    let policy: String = db.value(
        "SELECT string_agg(pg_get_expr(polqual, polrelid), ' ') FROM pg_policy
          WHERE polrelid = format('pgtrickle_changes.changes_%s', 'src'::regclass::oid)::regclass",
    );
    assert!(!policy.contains("trap"), "{policy}");
    // And the bystander still refreshes exactly.
    db.exec("INSERT INTO src VALUES (500, 'carol', 5)");
    db.exec("SELECT pgtrickle.refresh_stream_table('bystander')");
    assert_eq!(db.last_refresh("bystander").0, "DIFFERENTIAL");
    db.assert_matches_query("bystander", "SELECT id, v FROM src");
}

/// A connection acting as `role` in a database where `role` has made schema `trap`: a function
/// `trap.says(int)` that tells, in a notice, whom it ran as, and a domain `trap.checked` whose
/// CHECK calls it. Notices outlive the rollbacks of failed statements, so they show what ran even
/// where pg_trickle's statement failed. Also returns what the connection has heard.
fn trap_session(db: &mut TestDb, role: &str) -> (postgres::Client, pg_trickle_e2e::Notices) {
    db.exec(&format!("GRANT CREATE ON DATABASE {} TO {role}", db.name));
    let (mut session, heard) = db.connect_keeping_notices();
    session
        .batch_execute(&format!(
            "SET ROLE {role};
             CREATE SCHEMA trap;
             GRANT USAGE ON SCHEMA trap TO PUBLIC;
             CREATE FUNCTION trap.says(int) RETURNS bool LANGUAGE plpgsql AS
               $$ BEGIN RAISE NOTICE 'ran as %', current_user; RETURN true; END $$;
             CREATE DOMAIN trap.checked AS int CHECK (trap.says(VALUE));"
        ))
        .unwrap();
    (session, heard)
}

/// Whom the trap's code ran as, by what every given connection heard.
fn trap_ran_as(heard: &[&pg_trickle_e2e::Notices]) -> Vec<String> {
    heard
        .iter()
        .flat_map(|h| h.lock().unwrap().clone())
        .filter_map(|n| n.message.strip_prefix("ran as ").map(str::to_string))
        .collect()
}

/// Code that runs while pg_trickle reads a query as its writer may run no utility statement: it
/// could change the catalog under the reading. (A review's CHECK, on its second call, replaced the
/// type the writer's reading had checked with one holding a domain, which the superuser's reading
/// of the same text — since removed — then found first; the next review's swapped-in domain
/// checked with built-in functions only, and wrote a server file with `lo_export`.)
#[test]
fn no_users_code_runs_while_a_query_is_read() {
    for (case, payload) in [
        ("function", "trap.text_checked"),
        ("builtins", "trap.builtins_checked"),
    ] {
        let (mut db, alice) = TestDb::with_reader(&format!("security_reading_fence_{case}"));
        let (mut as_alice, heard) = trap_session(&mut db, &alice);
        as_alice
            .batch_execute(&format!(
                "CREATE SCHEMA a; CREATE SCHEMA b; GRANT USAGE ON SCHEMA a, b TO PUBLIC;
                 CREATE TABLE trap.src (id int);
                 INSERT INTO trap.src VALUES (1);
                 CREATE SEQUENCE trap.calls;
                 CREATE DOMAIN trap.builtins_checked AS text
                   CHECK ((('ran as ' || current_user)::int) > 0);
                 CREATE FUNCTION trap.switch(v text) RETURNS bool LANGUAGE plpgsql AS $$
                   BEGIN
                     RAISE NOTICE 'ran as %', current_user;
                     IF nextval('trap.calls') = 2 THEN
                       ALTER TYPE b.t1 ALTER ATTRIBUTE f TYPE text;
                       CREATE TYPE a.t1 AS (f {payload});
                     END IF;
                     RETURN true;
                   END $$;
                 CREATE DOMAIN trap.text_checked AS text CHECK (trap.switch(VALUE));
                 CREATE TYPE b.t1 AS (f trap.text_checked);
                 SET search_path = a, b;"
            ))
            .unwrap();
        let created = as_alice.batch_execute(
            "SELECT pgtrickle.create_stream_table('trap.st', $q$SELECT id, ('(x)'::t1).f AS c FROM trap.src$q$, '1h', 'FULL')",
        );
        let e = pg_trickle_e2e::db::as_db_error(&created.unwrap_err()).unwrap();
        assert_eq!(e.code, "0A000", "{case}: {e:?}");
        assert_eq!(
            e.message, "no utility statement may run while pg_trickle reads a query",
            "{case}"
        );
        let ran_as = trap_ran_as(&[&heard]);
        assert!(
            ran_as.iter().all(|who| *who == alice),
            "{case}: the CHECK ran as {ran_as:?}"
        );
    }
}

/// A superuser's event trigger that runs statements of its own (granting what is created) still
/// runs when pg_trickle creates a stream table, whoever creates it. (pg_trickle's query views are
/// made from a reading of their owner's, not by a statement: no event trigger sees them.)
#[test]
fn a_superusers_event_trigger_runs_while_pg_trickle_reads_a_query() {
    let (mut db, alice) = TestDb::with_reader("security_event_trigger");
    db.exec(
        "CREATE TABLE granted (what text);
         CREATE FUNCTION grant_new() RETURNS event_trigger LANGUAGE plpgsql
           SECURITY DEFINER SET search_path = pg_catalog AS $$
           DECLARE o record;
           BEGIN
             FOR o IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE command_tag IN ('CREATE TABLE', 'CREATE VIEW') LOOP
               EXECUTE format('GRANT SELECT ON %s TO PUBLIC', o.object_identity);
               INSERT INTO public.granted VALUES (o.object_identity);
             END LOOP;
           END $$;
         CREATE EVENT TRIGGER grant_new ON ddl_command_end EXECUTE FUNCTION grant_new();",
    );
    db.exec(&format!(
        "GRANT CREATE ON SCHEMA public TO {alice}; GRANT TRIGGER ON src TO {alice}; SET ROLE {alice};
         SELECT pgtrickle.create_stream_table('mine', 'SELECT id, v FROM src', '1h', 'DIFFERENTIAL');
         RESET ROLE;"
    ));
    db.assert_matches_query("mine", "SELECT id, v FROM src");
    let granted: Vec<String> = db
        .rows("SELECT what FROM granted ORDER BY 1", &[])
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(granted.contains(&"public.mine".to_string()), "{granted:?}");
    db.exec("DROP EVENT TRIGGER grant_new");
}

/// A stored defining query is read again — after a rename, by `alter_stream_table`, by a
/// reinitialisation that a superuser's refresh starts — with its owner's rights, never pg_trickle's:
/// a literal that ran nothing when the query was created can run a domain's CHECK once its type
/// gains a field of that domain. (pg_trickle reads a query only as its writer or owner: another
/// session could change what a literal's type holds between any two readings.)
#[test]
fn a_stored_query_is_read_again_with_its_owners_rights() {
    let (mut db, alice) = TestDb::with_reader("security_stored_query");
    let (mut as_alice, heard) = trap_session(&mut db, &alice);
    as_alice
        .batch_execute(
            "CREATE TYPE trap.pair AS (a int);
             CREATE TABLE trap.mine (id int PRIMARY KEY, v int);
             INSERT INTO trap.mine VALUES (1, 1);
             SELECT pgtrickle.create_stream_table('trap.lit',
               $q$SELECT id, ('(1)'::trap.pair).a AS w FROM trap.mine$q$, '1h', 'DIFFERENTIAL');
             ALTER TYPE trap.pair ADD ATTRIBUTE b trap.checked;",
        )
        .unwrap();
    // The stored text now reads '(1,)'::trap.pair: its NULL field goes through the domain's CHECK.
    as_alice
        .batch_execute(
            "ALTER TABLE trap.mine RENAME TO mine2;
             SELECT pgtrickle.alter_stream_table('trap.lit', refresh_mode => 'FULL');",
        )
        .unwrap();
    let (mut superuser, superuser_heard) = db.connect_keeping_notices();
    superuser
        .batch_execute(
            "SELECT pgtrickle.refresh_stream_table('trap.lit');
             INSERT INTO trap.mine2 VALUES (2, 2);
             SELECT pgtrickle.refresh_stream_table('trap.lit');",
        )
        .unwrap();
    // A literal holding the domain from the start, in a DIFFERENTIAL stream table.
    as_alice
        .batch_execute(
            "SELECT pgtrickle.create_stream_table('trap.held',
               $q$SELECT id, ('(1,2)'::trap.pair).b AS w FROM trap.mine2$q$, '1h', 'DIFFERENTIAL');
             INSERT INTO trap.mine2 VALUES (3, 3);",
        )
        .unwrap();
    superuser
        .batch_execute(
            "SELECT pgtrickle.refresh_stream_table('trap.held');
             SELECT pgtrickle.refresh_stream_table('trap.lit');",
        )
        .unwrap();
    let ran_as = trap_ran_as(&[&heard, &superuser_heard]);
    assert!(!ran_as.is_empty(), "the stored query was never read again");
    assert!(
        ran_as.iter().all(|who| *who == alice),
        "the domain's CHECK ran as {ran_as:?}"
    );
    assert_eq!(db.last_refresh("trap.held").0, "DIFFERENTIAL");
    db.assert_matches_query(
        "trap.lit",
        "SELECT id, ('(1,)'::trap.pair).a AS w FROM trap.mine2",
    );
    db.assert_matches_query(
        "trap.held",
        "SELECT id, ('(1,2)'::trap.pair).b AS w FROM trap.mine2",
    );
}

/// The differential engine reads a view's text into the SQL it builds, and PostgreSQL reads that
/// SQL's literals again: as the stream table's owner, never as pg_trickle (at creation, and at the
/// reinitialisation after the view is redefined, started by a superuser's refresh).
#[test]
fn a_views_literals_are_read_as_the_stream_tables_owner() {
    let (mut db, alice) = TestDb::with_reader("security_view_literal");
    let (mut as_alice, heard) = trap_session(&mut db, &alice);
    as_alice
        .batch_execute(
            "CREATE TYPE trap.pair AS (a int, b trap.checked);
             CREATE TABLE trap.t (id int PRIMARY KEY, v int);
             INSERT INTO trap.t VALUES (1, 1), (2, 2);
             CREATE VIEW trap.v AS SELECT id, v, ('(1,2)'::trap.pair).a AS k FROM trap.t;
             CREATE VIEW trap.plain AS SELECT id, v FROM trap.t;
             SELECT pgtrickle.create_stream_table('trap.over_view', 'SELECT id, v, k FROM trap.v', '1h', 'DIFFERENTIAL');
             SELECT pgtrickle.create_stream_table('trap.over_plain', 'SELECT id, v FROM trap.plain', '1h', 'DIFFERENTIAL');
             CREATE OR REPLACE VIEW trap.plain AS SELECT id, v + (('(1,2)'::trap.pair).a - 1) AS v FROM trap.t;",
        )
        .unwrap();
    as_alice
        .batch_execute("INSERT INTO trap.t VALUES (3, 3)")
        .unwrap();
    let (mut superuser, superuser_heard) = db.connect_keeping_notices();
    superuser
        .batch_execute(
            "SELECT pgtrickle.refresh_stream_table('trap.over_view');
             SELECT pgtrickle.refresh_stream_table('trap.over_plain');",
        )
        .unwrap();
    let ran_as = trap_ran_as(&[&heard, &superuser_heard]);
    assert!(
        ran_as.iter().all(|who| *who == alice),
        "the domain's CHECK ran as {ran_as:?}"
    );
    assert_eq!(db.last_refresh("trap.over_view").0, "DIFFERENTIAL");
    db.assert_matches_query("trap.over_view", "SELECT id, v, k FROM trap.v");
    db.assert_matches_query("trap.over_plain", "SELECT id, v FROM trap.plain");
}

/// A FULL refresh puts back the hidden aggregate state columns it finds missing: as the stream
/// table's owner, since adding a column of a domain with a CHECK checks every row.
#[test]
fn hidden_columns_put_back_by_a_refresh_are_added_as_the_owner() {
    let (mut db, alice) = TestDb::with_reader("security_hidden_column");
    let (mut as_alice, heard) = trap_session(&mut db, &alice);
    as_alice
        .batch_execute(
            "CREATE TABLE trap.src (id int PRIMARY KEY, k trap.checked, v int);
             INSERT INTO trap.src VALUES (1, 1, 1), (2, 2, 2);
             SELECT pgtrickle.create_stream_table('trap.sums',
               'SELECT sum(v) AS s, count(*) AS n FROM trap.src GROUP BY k', '1h', 'DIFFERENTIAL');",
        )
        .unwrap();
    // The group key, which the select list does not show, is kept in a hidden column of its type.
    assert_eq!(
        db.value::<String>("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'trap.sums'::regclass AND attname = '__pgt_k0'"),
        "trap.checked"
    );
    as_alice
        .batch_execute(
            "ALTER TABLE trap.sums DROP COLUMN __pgt_k0;
             INSERT INTO trap.src VALUES (3, 3, 3);",
        )
        .unwrap();
    let (mut superuser, superuser_heard) = db.connect_keeping_notices();
    superuser
        .batch_execute("SELECT pgtrickle.refresh_stream_table('trap.sums')")
        .unwrap();
    let ran_as = trap_ran_as(&[&heard, &superuser_heard]);
    assert!(
        ran_as.iter().all(|who| *who == alice),
        "the domain's CHECK ran as {ran_as:?}"
    );
    db.assert_matches_query(
        "trap.sums",
        "SELECT sum(v) AS s, count(*) AS n FROM trap.src GROUP BY k",
    );
}

/// Change capture keeps a source's new column in its change buffer. Adding a column of a domain to
/// a table with rows checks the domain for each, and the buffer belongs to pg_trickle: the CHECK must
/// not run with pg_trickle's rights — the extension owner's, nor the capture role's, which owns
/// every buffer (found by a review: from there, a trigger on a buffer ran as the superuser).
/// Likewise the change row a TRUNCATE writes.
#[test]
fn a_sources_domain_columns_never_run_as_pg_trickle() {
    let (mut db, alice) = TestDb::with_reader("security_buffer_domain");
    let (mut as_alice, heard) = trap_session(&mut db, &alice);
    as_alice
        .batch_execute(
            "CREATE TABLE trap.src (id int PRIMARY KEY, v int);
             INSERT INTO trap.src VALUES (1, 1), (2, 2);
             SELECT pgtrickle.create_stream_table('trap.mirror', 'SELECT id, v FROM trap.src', '1h', 'DIFFERENTIAL');
             INSERT INTO trap.src VALUES (3, 3);
             ALTER TABLE trap.src ADD COLUMN z trap.checked;
             CREATE TABLE trap.other (id int PRIMARY KEY, v int, x trap.checked);
             INSERT INTO trap.other VALUES (1, 1, 1);
             SELECT pgtrickle.create_stream_table('trap.other_mirror', 'SELECT id, v FROM trap.other', '1h', 'DIFFERENTIAL');",
        )
        .unwrap();
    as_alice
        .batch_execute("TRUNCATE trap.other; INSERT INTO trap.src VALUES (4, 4, 4);")
        .unwrap();
    let (mut superuser, superuser_heard) = db.connect_keeping_notices();
    superuser
        .batch_execute(
            "SELECT pgtrickle.refresh_stream_table('trap.mirror');
             SELECT pgtrickle.refresh_stream_table('trap.other_mirror');",
        )
        .unwrap();
    let ran_as = trap_ran_as(&[&heard, &superuser_heard]);
    assert!(
        ran_as.iter().all(|who| *who == alice),
        "the domain's CHECK ran as {ran_as:?}"
    );
    db.assert_matches_query("trap.mirror", "SELECT id, v FROM trap.src");
    db.assert_matches_query("trap.other_mirror", "SELECT id, v FROM trap.other");
}

/// The caller's search_path is read as the caller reads it wherever pg_trickle reads the caller's
/// names with its own rights: `"$user"` is the caller, and a schema the caller may not use is not
/// searched. (A review made the extension owner's parse find a type the caller's did not: schema
/// `postgres`, the owner's `"$user"`, or a schema whose USAGE its owner revoked from itself.)
#[test]
fn the_callers_search_path_means_the_same_to_pg_trickle() {
    let (mut db, alice) = TestDb::with_reader("security_caller_path");
    let owner: String =
        db.value("SELECT extowner::regrole::text FROM pg_extension WHERE extname = 'pg_trickle'");
    let (mut as_alice, heard) = trap_session(&mut db, &alice);
    as_alice
        .batch_execute(&format!(
            "CREATE SCHEMA {owner};
             CREATE TYPE {owner}.cc AS (a int, b trap.checked);
             CREATE SCHEMA hid;
             CREATE TYPE hid.cc AS (a int, b trap.checked);
             REVOKE USAGE ON SCHEMA hid FROM {alice};
             CREATE SCHEMA mine;
             CREATE TYPE mine.cc AS (a int, b int);
             SET search_path = \"$user\", hid, mine;"
        ))
        .unwrap();
    as_alice
        .batch_execute("SELECT pgtrickle.create_stream_table('mine.st', $$SELECT ('(1,2)'::cc).a AS a$$, '1h', 'FULL')")
        .unwrap();
    let ran_as = trap_ran_as(&[&heard]);
    assert!(
        ran_as.iter().all(|who| *who == alice),
        "the domain's CHECK ran as {ran_as:?}"
    );
    let stored: String = db.value("SELECT defining_query FROM pgtrickle.pgt_stream_tables");
    assert!(stored.contains("mine.cc"), "{stored}");
}

/// A grant of some columns lets the owner's query run, but capture queues whole rows: refused at
/// creation, saying so.
#[test]
fn a_grant_of_some_columns_is_refused_by_name() {
    let (mut db, alice) = TestDb::with_reader("security_column_grant");
    db.exec(&format!(
        "CREATE TABLE wide (id int PRIMARY KEY, v int, secret text);
         GRANT SELECT (id, v) ON wide TO {alice};
         SET ROLE {alice}"
    ));
    let e = db.error("SELECT pgtrickle.create_stream_table('mine', 'SELECT id, v FROM wide', '1h', 'DIFFERENTIAL')");
    db.exec("RESET ROLE");
    assert_eq!(e.code, "42501", "{e:?}");
    assert_eq!(e.message, "permission denied for table public.wide");
    assert!(
        e.detail
            .as_deref()
            .unwrap_or("")
            .contains("Only some columns of public.wide are granted"),
        "{e:?}"
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("Grant SELECT on the whole of public.wide.")
    );
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_stream_tables"),
        0
    );
}

/// ANALYZE of a change buffer (autovacuum's, anyone's) runs as the role owning every buffer, and
/// calls its columns' type code: a range type's `subtype_diff`, which any user may write. Buffers
/// keep no statistics of such columns. (A review made that role put a trigger on another user's
/// buffer this way, which the superuser's clean-up then fired.)
#[test]
fn analyzing_a_change_buffer_runs_no_users_code() {
    let (mut db, alice) = TestDb::with_reader("security_buffer_analyze");
    let (mut as_alice, heard) = trap_session(&mut db, &alice);
    as_alice
        .batch_execute(
            "CREATE FUNCTION trap.diff(x int, y int) RETURNS float8 LANGUAGE plpgsql IMMUTABLE AS
               $$ BEGIN RAISE NOTICE 'ran as %', current_user; RETURN y - x; END $$;
             CREATE TYPE trap.r AS RANGE (subtype = int4, subtype_diff = trap.diff);
             CREATE TABLE trap.t (id int PRIMARY KEY, rr trap.r);
             SELECT pgtrickle.create_stream_table('trap.ranges', 'SELECT id, rr FROM trap.t', '1h', 'DIFFERENTIAL');
             INSERT INTO trap.t SELECT g, trap.r(g, g + 1 + g % 7) FROM generate_series(1, 300) g;",
        )
        .unwrap();
    let buffer: String =
        db.value("SELECT format('pgtrickle_changes.changes_%s', 'trap.t'::regclass::oid)");
    let (mut superuser, superuser_heard) = db.connect_keeping_notices();
    superuser
        .batch_execute(&format!("ANALYZE {buffer}"))
        .unwrap();
    superuser
        .batch_execute("SELECT pgtrickle.refresh_stream_table('trap.ranges')")
        .unwrap();
    let ran_as = trap_ran_as(&[&heard, &superuser_heard]);
    assert!(
        ran_as.iter().all(|who| *who == alice),
        "subtype_diff ran as {ran_as:?}"
    );
    db.assert_matches_query("trap.ranges", "SELECT id, rr FROM trap.t");
}

/// The TRUNCATE functions capture uses run from their triggers only: nobody may make a trigger of
/// their own call one, to append rows to another user's change buffer.
#[test]
fn a_truncate_capture_function_runs_from_its_trigger_only() {
    let (mut db, alice) = TestDb::with_reader("security_truncate_function");
    db.exec("SELECT pgtrickle.create_stream_table('mirror', 'SELECT id, v FROM src', '1h', 'DIFFERENTIAL')");
    let function: String =
        db.value("SELECT format('pgtrickle_changes.truncated_%s', 'src'::regclass::oid)");
    // An owner of a DIFFERENTIAL stream table may use pg_trickle's buffer schema.
    db.exec(&format!(
        "GRANT CREATE ON SCHEMA public TO {alice}; SET ROLE {alice}; CREATE TABLE mine (i int PRIMARY KEY);
         SELECT pgtrickle.create_stream_table('my_mirror', 'SELECT i FROM mine', '1h', 'DIFFERENTIAL')"
    ));
    let e = db.error(&format!(
        "CREATE TRIGGER borrowed AFTER INSERT ON mine FOR EACH ROW EXECUTE FUNCTION {function}()"
    ));
    db.exec("RESET ROLE");
    assert_eq!(e.code, "42501", "{e:?}");
    // The source's own TRUNCATE still makes the stream table refresh FULL, saying why.
    db.exec("TRUNCATE src");
    db.exec("SELECT pgtrickle.refresh_stream_table('mirror')");
    assert_eq!(db.last_refresh("mirror").0, "FULL");
    db.assert_matches_query("mirror", "SELECT id, v FROM src");
}

/// The monitoring views show a reader only the stream tables it may read; a function of the
/// reader's in a WHERE clause must not see the others' rows before that filter does.
#[test]
fn a_readers_function_sees_only_the_rows_the_views_show() {
    let (mut db, alice) = TestDb::with_reader("security_view_barrier");
    db.exec("SELECT pgtrickle.create_stream_table('hidden_st', $$SELECT id, v FROM src WHERE who = 'TOPSECRET'$$, '1h', 'FULL')");
    let (mut as_alice, heard) = trap_session(&mut db, &alice);
    as_alice
        .batch_execute(
            "CREATE FUNCTION trap.peek(a text, b text) RETURNS bool LANGUAGE plpgsql COST 0.0000001 AS
               $$ BEGIN RAISE NOTICE 'peeked % %', a, b; RETURN true; END $$;
             SELECT count(*) FROM pgtrickle.stream_tables WHERE trap.peek(query, last_error);
             SELECT count(*) FROM pgtrickle.pg_stat_pgtrickle WHERE trap.peek(status, last_error);",
        )
        .unwrap();
    let peeked: Vec<String> = heard
        .lock()
        .unwrap()
        .iter()
        .map(|n| n.message.clone())
        .filter(|m| m.starts_with("peeked"))
        .collect();
    assert!(
        peeked.iter().all(|m| !m.contains("TOPSECRET")) && peeked.len() < 2,
        "{peeked:?}"
    );
}

/// A session's own settings never change another user's stored query: `ALTER SCHEMA ... RENAME`
/// by anyone reprints every stored query that follows renames, and a session with
/// `standard_conforming_strings = off` and `DateStyle = 'SQL, DMY'` reprinted them in a form that
/// read back as another query (found by a review).
#[test]
fn a_sessions_settings_never_change_a_stored_query() {
    let (mut db, alice) = TestDb::with_reader("security_query_text");
    let query =
        r"SELECT id, v FROM src WHERE (DATE '2020-01-02' + id) < DATE '2020-01-12' OR who = 'a\b'";
    db.exec(&format!(
        "INSERT INTO src VALUES (100, 'a\\b', 100);
         SELECT pgtrickle.create_stream_table('dated', $q${query}$q$, '1h', 'FULL')"
    ));
    let before: String = db.value("SELECT defining_query FROM pgtrickle.pgt_stream_tables");
    db.exec(&format!(
        "GRANT CREATE ON DATABASE security_query_text TO {alice};
         SET ROLE {alice};
         SET DateStyle = 'SQL, DMY'; SET standard_conforming_strings = off;
         CREATE SCHEMA x; ALTER SCHEMA x RENAME TO y;
         RESET ROLE; RESET DateStyle; RESET standard_conforming_strings;"
    ));
    let after: String = db.value("SELECT defining_query FROM pgtrickle.pgt_stream_tables");
    assert_eq!(after, before);
    db.exec("SELECT pgtrickle.refresh_stream_table('dated')");
    db.assert_matches_query("dated", query);
    // A new query is read as its writer's session reads it: 02/01/2020 is 2 January under DMY.
    db.exec(
        "SET DateStyle = 'SQL, DMY';
         SELECT pgtrickle.create_stream_table('dmy', $q$SELECT id FROM src WHERE DATE '02/01/2020' + id < DATE '12/01/2020'$q$, '1h', 'FULL');
         RESET DateStyle;",
    );
    db.assert_matches_query(
        "dmy",
        "SELECT id FROM src WHERE DATE '2020-01-02' + id < DATE '2020-01-12'",
    );
}

/// pg_trickle's locks are out of reach of the advisory lock functions, which anyone may call: a
/// role holding the keys pg_trickle's locks once had (a stream table's refresh claim, a source's
/// consumers lock) stalls no one's refresh, creation or clean-up. (It did: a manual refresh waited
/// for the role, and the scheduler skipped the stream table at every tick.)
#[test]
fn no_role_can_hold_pg_trickles_locks() {
    let (mut db, alice) = TestDb::with_reader("security_advisory_locks");
    db.exec("SELECT pgtrickle.create_stream_table('bystander', 'SELECT id, v FROM src', '1h', 'DIFFERENTIAL')");
    let pgt_id: i64 = db.value("SELECT pgt_id FROM pgtrickle.pgt_stream_tables");
    let src: i64 = db.value("SELECT 'src'::regclass::oid::bigint");
    let mut as_alice = db.connect();
    as_alice
        .batch_execute(&format!(
            "SET ROLE {alice};
             SELECT pg_advisory_lock({claim}, {pgt_id}), pg_advisory_lock({consumers}, {src}::int),
                    pg_advisory_lock(({claim}::bigint << 32) | {pgt_id}),
                    pg_advisory_lock(({consumers}::bigint << 32) | {src});",
            claim = 0x5047_5452,
            consumers = 0x5047_5443,
        ))
        .unwrap();
    db.exec("SET lock_timeout = '5s'");
    db.exec("INSERT INTO src VALUES (100, 'carol', 100)");
    db.exec("SELECT pgtrickle.refresh_stream_table('bystander')");
    assert_eq!(db.last_refresh("bystander").0, "DIFFERENTIAL");
    db.assert_matches_query("bystander", "SELECT id, v FROM src");
    db.exec("SELECT pgtrickle.create_stream_table('second', 'SELECT id, who FROM src', '1h', 'DIFFERENTIAL')");
    // The scheduler claims it too, and cleans the buffer up after both consumers applied it.
    db.exec("UPDATE src SET v = v + 1 WHERE id = 3");
    db.exec("SELECT pgtrickle.alter_stream_table('bystander', schedule => '1s')");
    let refreshed = wait_until(Duration::from_secs(30), || {
        db.value::<i64>(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
              WHERE s.pgt_relid = 'bystander'::regclass AND h.initiated_by = 'SCHEDULER' AND h.status = 'SUCCESS'",
        ) > 0
    });
    assert!(refreshed, "the scheduler never refreshed the stream table");
    db.assert_matches_query("bystander", "SELECT id, v FROM src");
    db.exec("SELECT pgtrickle.refresh_stream_table('second')");
    db.exec("SELECT pgtrickle.refresh_stream_table('bystander')");
    db.wait_for_cleanups();
    assert_eq!(buffer_rows_seen(&mut db, "src", None), 0);
    drop(as_alice);
}

/// What pg_trickle creates for a caller's stream table with its own rights (change buffers, the
/// row identity index `alter_stream_table` adds) goes to the database's default tablespace, not to
/// one the caller names in `default_tablespace` and may not use; the caller's storage table goes
/// where the caller's setting says, as a materialized view would.
#[test]
fn a_callers_default_tablespace_places_only_the_callers_objects() {
    let (mut db, alice) = TestDb::with_reader("security_tablespace");
    let (granted, forbidden) = (
        format!("{}_granted", db.name),
        format!("{}_forbidden", db.name),
    );
    for ts in [&granted, &forbidden] {
        db.exec(&format!("DROP TABLESPACE IF EXISTS {ts}"));
        db.exec("SET allow_in_place_tablespaces = on");
        db.exec(&format!("CREATE TABLESPACE {ts} LOCATION ''"));
    }
    db.exec(&format!(
        "GRANT CREATE ON SCHEMA public TO {alice}; GRANT CREATE ON TABLESPACE {granted} TO {alice};
         GRANT TRIGGER ON src TO {alice}"
    ));
    db.exec(&format!(
        "SET ROLE {alice};
         CREATE TABLE mine (id int PRIMARY KEY, v int);
         INSERT INTO mine VALUES (1, 1);
         SET default_tablespace = {granted};
         SELECT pgtrickle.create_stream_table('placed', 'SELECT id, v FROM mine', '1h', 'DIFFERENTIAL');
         SET default_tablespace = '';
         SELECT pgtrickle.create_stream_table('later', 'SELECT id, v FROM src', '1h', 'FULL');
         SET default_tablespace = {forbidden};
         SELECT pgtrickle.alter_stream_table('later', refresh_mode => 'DIFFERENTIAL');
         RESET default_tablespace; RESET ROLE;"
    ));
    let placed: Vec<(String, String)> = db
        .rows(
            "SELECT c.relname::text, coalesce(t.spcname::text, '') FROM pg_class c
               LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
              WHERE c.relname IN ('placed', 'later') OR c.relnamespace = 'pgtrickle_changes'::regnamespace
                 OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN ('placed'::regclass, 'later'::regclass))
              ORDER BY 1",
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (relation, tablespace) in &placed {
        // The storage table and its index, created as alice.
        let expected = if relation.starts_with("placed") {
            granted.as_str()
        } else {
            ""
        };
        assert_eq!(tablespace, expected, "{relation}: {placed:?}");
    }
    assert!(placed.len() >= 5, "{placed:?}");
    db.exec("SELECT pgtrickle.drop_stream_table('placed'), pgtrickle.drop_stream_table('later')");
    for ts in [&granted, &forbidden] {
        db.exec(&format!("DROP TABLESPACE {ts}"));
    }
}

/// pg_trickle puts triggers only on tables a stream table's owner may read: not on one a view of
/// the owner's names without the owner being able to read it (an unused CTE), nor on one only
/// another role's view reads. (A role put signal triggers on another's table it could not read,
/// and learnt from its refresh count when that table was written.)
#[test]
fn triggers_go_only_on_tables_the_owner_may_read() {
    let (mut db, alice) = TestDb::with_reader("security_trigger_reach");
    db.exec(&format!(
        "CREATE TABLE secret (id int PRIMARY KEY, s text);
         INSERT INTO secret VALUES (1, 'x');
         CREATE VIEW shared AS SELECT id, v FROM src WHERE v > 0;
         GRANT SELECT ON shared TO {alice};
         REVOKE SELECT ON src FROM {alice};
         CREATE TABLE mine (id int PRIMARY KEY, v int);
         INSERT INTO mine VALUES (1, 1);
         ALTER TABLE mine OWNER TO {alice};
         GRANT CREATE ON SCHEMA public TO {alice};"
    ));
    db.exec(&format!(
        "SET ROLE {alice};
         CREATE VIEW peek AS WITH unused AS (SELECT id FROM secret) SELECT id, v FROM mine;
         CREATE VIEW peek_all AS SELECT m.id, m.v FROM mine m WHERE NOT EXISTS (SELECT 1 FROM secret s WHERE s.id = -m.id);
         SELECT pgtrickle.create_stream_table('over_peek', 'SELECT id, v FROM peek', '1h', 'FULL');
         SELECT pgtrickle.create_stream_table('over_shared', 'SELECT id, v FROM shared', '1h', 'AUTO');
         RESET ROLE;"
    ));
    // Her view that reads the table she may not read cannot be maintained at all.
    db.exec(&format!("SET ROLE {alice}"));
    let e = db.error("SELECT pgtrickle.create_stream_table('over_peek_all', 'SELECT id, v FROM peek_all', '1h', 'AUTO')");
    db.exec("RESET ROLE");
    assert_eq!(e.code, "42501", "{e:?}");
    let triggered: Vec<String> = db
        .rows(
            "SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger
              WHERE NOT tgisinternal AND tgrelid IN ('secret'::regclass, 'src'::regclass) ORDER BY 1",
            &[],
        )
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(triggered.is_empty(), "triggers on {triggered:?}");
    assert_eq!(
        db.value::<String>("SELECT effective_mode FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = 'over_shared'::regclass"),
        "FULL"
    );
    // Both still refresh exactly, whatever changes.
    db.exec("INSERT INTO src VALUES (100, 'carol', 100); INSERT INTO mine VALUES (2, 2)");
    db.exec("SELECT pgtrickle.refresh_stream_table('over_shared'), pgtrickle.refresh_stream_table('over_peek')");
    db.assert_matches_query("over_shared", "SELECT id, v FROM shared");
    db.assert_matches_query("over_peek", "SELECT id, v FROM mine");
}

/// PostgreSQL prints `IS DISTINCT FROM`, `NULLIF`, `CASE x WHEN` and `JOIN ... USING` without the
/// schema of the operator they call, and refreshes read the stored text with search_path =
/// pg_catalog, pg_temp: over `citext` (in `public`) such a query was stored as a case-sensitive
/// comparison of `text`, and the stream table silently differed from its query. It is refused, and
/// nothing is left behind; the same comparisons with the operator named by its schema are kept.
#[test]
fn a_query_whose_stored_text_would_call_another_operator_is_refused() {
    let mut db = TestDb::new("security_lost_operator");
    db.exec(
        "CREATE EXTENSION citext;
         CREATE TABLE c (id int PRIMARY KEY, name citext, other citext);
         CREATE TABLE d (name citext PRIMARY KEY, w int);
         INSERT INTO c VALUES (1, 'Ab', 'ab'), (2, 'x', 'y'), (3, NULL, 'z');
         INSERT INTO d VALUES ('AB', 1), ('X', 2);",
    );
    for (mode, query) in [
        (
            "FULL",
            "SELECT id, name IS DISTINCT FROM other AS differs FROM c",
        ),
        ("AUTO", "SELECT id, NULLIF(name, other) AS n FROM c"),
        (
            "DIFFERENTIAL",
            "SELECT id, CASE name WHEN other THEN 1 ELSE 0 END AS same FROM c",
        ),
        ("DIFFERENTIAL", "SELECT id, w FROM c JOIN d USING (name)"),
    ] {
        let e = db.error(&format!(
            "SELECT pgtrickle.create_stream_table('lost', $${query}$$, '1h', '{mode}')"
        ));
        assert_eq!(e.code, "0A000", "{query}: {e:?}");
        assert!(e.message.contains("citext_eq"), "{query}: {e:?}");
        assert!(
            e.hint
                .as_deref()
                .unwrap_or("")
                .contains("OPERATOR(public.=)"),
            "{e:?}"
        );
    }
    let left: i64 = db.value(
        "SELECT (SELECT count(*) FROM pgtrickle.pgt_stream_tables) + (SELECT count(*) FROM pg_class WHERE relname = 'lost')
              + (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal)",
    );
    assert_eq!(left, 0, "a refused creation left something behind");
    let kept = [
        ("differs", "SELECT id, NOT coalesce(name OPERATOR(public.=) other, name IS NULL AND other IS NULL) AS differs FROM c"),
        ("joined", "SELECT c.id, d.w FROM c JOIN d ON d.name OPERATOR(public.=) c.name"),
    ];
    for (name, query) in kept {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{name}', $${query}$$, '1h', 'DIFFERENTIAL')"
        ));
        db.assert_matches_query(name, query);
    }
    // Case-insensitive both ways: 'Ab' and 'ab' are the same citext, 'x' joins 'X'.
    assert_eq!(
        db.value::<bool>("SELECT differs FROM differs WHERE id = 1"),
        false
    );
    db.exec(
        "UPDATE c SET other = 'AB' WHERE id = 1; UPDATE c SET name = 'X', other = 'x' WHERE id = 2",
    );
    for (name, query) in kept {
        db.assert_refreshes_differentially(name, query, "a change of case");
    }
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM joined WHERE w = 2"),
        1
    );
    // A view's text is what the differential engine reads in its place: such a view is read whole,
    // by its name, which means what its definition means.
    db.exec(
        "CREATE VIEW apart AS SELECT id, name, other FROM c WHERE name IS DISTINCT FROM other;
         CREATE VIEW over_apart AS SELECT id, name FROM apart",
    );
    let e = db.error(
        "SELECT pgtrickle.create_stream_table('lost', 'SELECT id, name FROM over_apart', '1h', 'DIFFERENTIAL')",
    );
    assert_eq!(e.code, "0A000", "{e:?}");
    assert!(e.message.contains("view public.apart"), "{e:?}");
    db.exec("SELECT pgtrickle.create_stream_table('through_view', 'SELECT id, name FROM over_apart', '1h', 'AUTO')");
    db.exec("INSERT INTO c VALUES (10, 'hello', 'HELLO'), (11, 'a', 'b')");
    db.exec("SELECT pgtrickle.refresh_stream_table('through_view')");
    assert_eq!(db.last_refresh("through_view").0, "FULL");
    db.assert_matches_query("through_view", "SELECT id, name FROM over_apart");
    // The text is read back as a refresh reads it, whatever the session's own settings: with
    // standard_conforming_strings off, 'a\\' is an a and a backslash, printed 'a\' (a review
    // found it refused as an unterminated string).
    db.exec("SET standard_conforming_strings = off");
    let query = r"SELECT id, name FROM c WHERE name::text <> 'a\\'";
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('escaped', $${query}$$, '1h', 'DIFFERENTIAL')"
    ));
    db.assert_matches_query("escaped", query);
    db.exec("RESET standard_conforming_strings");
    let stored: String = db.value(
        "SELECT defining_query FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = 'escaped'::regclass",
    );
    assert!(stored.contains(r"'a\'"), "{stored}");
}
