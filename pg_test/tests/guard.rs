//! Stream tables are written only by their refreshes: direct DML and changes to their columns are
//! refused with a clear error and change nothing; pg_trickle's own refreshes and mode changes still
//! work, and harmless DDL (indexes, owner, comments) stays allowed.

use pg_trickle_e2e::TestDb;

const TOTALS: &str = "SELECT grp, count(*) AS n, sum(v) AS total FROM src GROUP BY grp";

fn db_with(name: &str, mode: &str) -> TestDb {
    let mut db = TestDb::new(name);
    db.exec(
        "CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v numeric NOT NULL);
             INSERT INTO src SELECT g, g % 4, g FROM generate_series(1, 40) g;",
    );
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', '{mode}')"
    ));
    db
}

#[test]
fn direct_writes_to_a_stream_table_are_refused_and_change_nothing() {
    for mode in ["DIFFERENTIAL", "FULL"] {
        let mut db = db_with(&format!("guard_dml_{}", mode.to_lowercase()), mode);
        for (sql, op) in [
            (
                "INSERT INTO totals (grp, n, total) VALUES (99, 1, 1)",
                "INSERT",
            ),
            ("UPDATE totals SET total = 0", "UPDATE"),
            ("DELETE FROM totals", "DELETE"),
            ("TRUNCATE totals", "TRUNCATE"),
            (
                "SET session_replication_role = replica; DELETE FROM totals",
                "DELETE",
            ),
        ] {
            let e = db.error(sql);
            db.exec("RESET session_replication_role");
            assert_eq!(e.code, "42809", "{sql}: {e:?}");
            assert_eq!(
                e.message,
                format!("cannot {op} stream table public.totals"),
                "{sql}"
            );
            assert!(
                e.hint
                    .as_deref()
                    .unwrap_or("")
                    .contains("Change its sources"),
                "{e:?}"
            );
            db.assert_matches_query("totals", TOTALS);
        }
        // Refreshes still write.
        db.exec("UPDATE src SET v = v + 1 WHERE id < 5; DELETE FROM src WHERE id = 40;");
        db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
        db.assert_matches_query("totals", TOTALS);
    }
}

#[test]
fn changing_a_stream_tables_columns_is_refused_harmless_ddl_is_not() {
    let mut db = db_with("guard_ddl", "DIFFERENTIAL");
    for sql in [
        "ALTER TABLE totals DROP COLUMN __pgt_row_id",
        "ALTER TABLE totals ALTER COLUMN __pgt_dup TYPE bigint",
        "ALTER TABLE totals RENAME COLUMN total TO sum_v",
        "ALTER TABLE totals DROP COLUMN n",
        "ALTER TABLE totals ADD COLUMN note text",
        // A visible column's type, or its rows rewritten to the same type (until 2026-12-07 both
        // were accepted: `USING 0` zeroed every stored total, and refreshes went on from there).
        "ALTER TABLE totals ALTER COLUMN n TYPE int",
        "ALTER TABLE totals ALTER COLUMN total TYPE numeric USING 0",
    ] {
        let e = db.error(sql);
        assert_eq!(e.code, "42809", "{sql}: {e:?}");
        assert_eq!(
            e.message, "cannot change the columns of stream table \"public\".\"totals\"",
            "{sql}"
        );
    }
    db.exec("CREATE INDEX ON totals (grp); COMMENT ON TABLE totals IS 'per group'; ALTER TABLE totals SET (fillfactor = 90);");
    db.exec("UPDATE src SET grp = 7 WHERE id = 1");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert!(db.last_refresh("totals").0 == "DIFFERENTIAL");
    db.assert_matches_query("totals", TOTALS);
}

#[test]
fn mode_changes_still_reshape_the_stream_table() {
    let mut db = db_with("guard_mode_change", "FULL");
    db.exec("SELECT pgtrickle.alter_stream_table('totals', refresh_mode => 'DIFFERENTIAL')");
    db.exec("UPDATE src SET v = 0 WHERE id = 2");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    let (action, reason) = db.last_refresh("totals");
    assert_eq!(
        (action.as_str(), reason.as_str()),
        (
            "FULL",
            "reinitialised: switched to DIFFERENTIAL: a FULL refresh fills the hidden columns"
        )
    );
    db.exec("UPDATE src SET v = 1 WHERE id = 3");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(db.last_refresh("totals").0, "DIFFERENTIAL");
    db.assert_matches_query("totals", TOTALS);
}

#[test]
fn a_stream_tables_query_view_cannot_be_replaced_renamed_or_dropped() {
    let mut db = db_with("guard_query_view", "DIFFERENTIAL");
    let view: String = db
        .value("SELECT format('pgtrickle_queries.q_%s', pgt_id) FROM pgtrickle.pgt_stream_tables");
    for sql in [
        format!("CREATE OR REPLACE VIEW {view} AS SELECT grp, count(*) AS n, sum(v) + 1 AS total FROM src GROUP BY grp"),
        format!("ALTER VIEW {view} RENAME TO other"),
        format!("ALTER VIEW {view} SET SCHEMA public"),
        format!("ALTER TABLE {view} RENAME TO other"),
        "ALTER SCHEMA pgtrickle_queries RENAME TO elsewhere".to_string(),
        format!("DROP VIEW {view}"),
    ] {
        let e = db.error(&sql);
        assert_eq!(e.code, "42809", "{sql}: {e:?}");
    }
    db.exec("UPDATE src SET v = v + 1 WHERE id = 1");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(db.last_refresh("totals").0, "DIFFERENTIAL");
    db.assert_matches_query("totals", TOTALS);
    // Dropping the stream table takes its view along.
    db.exec("SELECT pgtrickle.drop_stream_table('totals')");
    assert_eq!(
        db.value::<i64>(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'pgtrickle_queries'::regnamespace"
        ),
        0
    );
}

/// What would change a stream table behind its refreshes without touching its column list: made
/// unlogged (crash recovery would empty it and nothing would refill it), a child table inheriting
/// it (whose rows every query of it would show), its write guard dropped — which is put back, as
/// `pg_restore --clean` drops every trigger before its table. (Until 2026-12-07 all were accepted.)
#[test]
fn unlogged_inheritance_and_a_dropped_guard_cannot_slip_past_the_guard() {
    let mut db = db_with("guard_protection", "DIFFERENTIAL");
    let e = db.error("ALTER TABLE totals SET UNLOGGED");
    assert_eq!(e.code, "42809", "{e:?}");
    assert_eq!(
        e.message,
        "cannot make stream table \"public\".\"totals\" unlogged"
    );
    let st = "\"public\".\"totals\"";
    for (sql, message) in [
        ("CREATE TABLE child () INHERITS (totals)", format!("cannot inherit from stream table {st}")),
        (
            "CREATE TABLE child (grp int, n bigint, total numeric); ALTER TABLE child INHERIT totals",
            format!("cannot inherit from stream table {st}"),
        ),
        // A foreign table's too.
        (
            "CREATE FOREIGN DATA WRAPPER nowhere; CREATE SERVER far FOREIGN DATA WRAPPER nowhere;
             CREATE FOREIGN TABLE remote () INHERITS (totals) SERVER far",
            format!("cannot inherit from stream table {st}"),
        ),
        (
            "CREATE FOREIGN DATA WRAPPER nowhere; CREATE SERVER far FOREIGN DATA WRAPPER nowhere;
             CREATE FOREIGN TABLE remote (grp int, n bigint, total numeric) SERVER far;
             ALTER FOREIGN TABLE remote INHERIT totals",
            format!("cannot inherit from stream table {st}"),
        ),
        // Nor a child or partition itself: writes through the parent would pass its guard (found
        // by a review on 2026-12-07).
        (
            "CREATE TABLE parent (grp int, n bigint, total numeric, __pgt_row_id bigint, __pgt_dup int); ALTER TABLE totals INHERIT parent",
            format!("cannot make stream table {st} inherit from another table"),
        ),
        (
            "CREATE TABLE parts (grp int, n bigint, total numeric, __pgt_row_id bigint NOT NULL, __pgt_dup int NOT NULL) PARTITION BY RANGE (grp);
             ALTER TABLE parts ATTACH PARTITION totals FOR VALUES FROM (0) TO (1000)",
            format!("cannot attach stream table {st} as a partition"),
        ),
        // The guard is not renamed or replaced away.
        (
            "ALTER TRIGGER pgtrickle_guard ON totals RENAME TO g2",
            format!("cannot rename the write guard of stream table {st}"),
        ),
        (
            "CREATE FUNCTION nothing() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
             CREATE OR REPLACE TRIGGER pgtrickle_guard BEFORE INSERT ON totals FOR EACH STATEMENT EXECUTE FUNCTION nothing()",
            format!("cannot replace the write guard of stream table {st}"),
        ),
    ] {
        let e = db.error(sql);
        assert_eq!(e.code, "42809", "{sql}: {e:?}");
        assert_eq!(e.message, message, "{sql}");
    }
    // Dropped — by its owner, who may not read pg_trickle's catalog —, the guard is back at once,
    // with a warning that says how to write anyway.
    db.fresh_role("guard_protection_owner");
    db.exec("ALTER TABLE totals OWNER TO guard_protection_owner; GRANT SELECT ON src TO guard_protection_owner");
    let (mut client, notices) = db.connect_keeping_notices();
    client
        .batch_execute(
            "SET ROLE guard_protection_owner; DROP TRIGGER pgtrickle_guard ON totals; RESET ROLE",
        )
        .unwrap();
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.severity == "WARNING" && n.message.contains("was put back")),
        "{:?}",
        notices.lock().unwrap()
    );
    assert_eq!(
        db.error("INSERT INTO totals (grp, n, total) VALUES (99, 1, 1)")
            .code,
        "42809"
    );
    // A table of the user's may still have a trigger of that name — even running the guard's
    // function —, change its columns and drop the trigger: it is not a stream table.
    db.exec(
        "CREATE TABLE mine (x int);
         CREATE FUNCTION nothing() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
         CREATE TRIGGER pgtrickle_guard AFTER INSERT ON mine FOR EACH STATEMENT EXECUTE FUNCTION nothing();
         DROP TRIGGER pgtrickle_guard ON mine;
         CREATE TRIGGER pgtrickle_guard BEFORE INSERT ON mine FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle._guard_stream_table('999');
         ALTER TABLE mine ALTER COLUMN x TYPE bigint;
         DROP TRIGGER pgtrickle_guard ON mine;",
    );
    // The stream table is still refreshed and dropped as ever (its first refresh under the new
    // owner is FULL, re-deciding what it may read).
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    db.exec("UPDATE src SET v = v + 1 WHERE id < 5");
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(db.last_refresh("totals").0, "DIFFERENTIAL");
    db.assert_matches_query("totals", TOTALS);
    db.exec("SELECT pgtrickle.drop_stream_table('totals')");
}
