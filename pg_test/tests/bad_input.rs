//! Every kind of bad input gets a clear error (SQLSTATE, message, hint) and leaves nothing behind.

use pg_trickle_e2e::{DbError, TestDb};

/// Everything a failed call could leave behind, as one comparable string.
fn footprint(db: &mut TestDb) -> String {
    db.value(
        "SELECT concat_ws(' ',
            'relations', (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'),
            'triggers', (SELECT count(*) FROM pg_trigger),
            'depends', (SELECT count(*) FROM pg_depend),
            'types', (SELECT count(*) FROM pg_type),
            'stream_tables', (SELECT count(*) FROM pgtrickle.pgt_stream_tables),
            'dependencies', (SELECT count(*) FROM pgtrickle.pgt_dependencies),
            'history', (SELECT count(*) FROM pgtrickle.pgt_refresh_history),
            'settings', (SELECT string_agg(schedule || refresh_mode || status, ',') FROM pgtrickle.pgt_stream_tables))",
    )
}

fn setup(name: &str) -> TestDb {
    let mut db = TestDb::new(name);
    db.exec(
        "CREATE TABLE orders (id int PRIMARY KEY, amount numeric);
         INSERT INTO orders VALUES (1, 10), (2, 0);
         SELECT pgtrickle.create_stream_table('existing', 'SELECT id FROM orders', '1h');",
    );
    db
}

/// Runs `sql`, checks the SQLSTATE and that nothing changed, and returns the error for more checks.
fn rejected(db: &mut TestDb, sql: &str, code: &str) -> DbError {
    let before = footprint(db);
    let err = db.error(sql);
    assert_eq!(err.code, code, "{sql}: {err:?}");
    assert_eq!(footprint(db), before, "{sql} left something behind");
    err
}

#[test]
fn invalid_sql_reports_postgres_error_with_its_position() {
    let mut db = setup("bad_sql");
    let err = rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('x', 'SELECT id FORM orders')",
        "42601",
    );
    assert_eq!(err.message, "syntax error at or near \"orders\"");
    assert_eq!(
        err.detail.unwrap(),
        "In the defining query, line 1:\nSELECT id FORM orders\n               ^"
    );

    let err = rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('x', E'SELECT id\\n  FROM orders\\n WHERE nope = 1')",
        "42703",
    );
    assert_eq!(err.message, "column \"nope\" does not exist");
    assert_eq!(
        err.detail.unwrap(),
        "In the defining query, line 3:\n WHERE nope = 1\n       ^"
    );
}

#[test]
fn missing_tables_are_named() {
    let mut db = setup("bad_missing_table");
    let err = rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('x', 'SELECT * FROM no_such_table')",
        "42P01",
    );
    assert_eq!(err.message, "relation \"no_such_table\" does not exist");
    assert!(err.detail.unwrap().contains("^"));
}

#[test]
fn only_a_single_plain_select_is_accepted() {
    let mut db = setup("bad_not_select");
    for (query, detail) in [
        ("DELETE FROM orders", "The query is a DELETE statement."),
        (
            "INSERT INTO orders VALUES (3, 1)",
            "The query is an INSERT statement.",
        ),
        (
            "CREATE TABLE y (a int)",
            "The query is a CREATE TABLE statement.",
        ),
        (
            "SELECT 1 AS a; SELECT 2 AS b",
            "The query contains 2 statements.",
        ),
    ] {
        let err = rejected(
            &mut db,
            &format!("SELECT pgtrickle.create_stream_table('x', '{query}')"),
            "22023",
        );
        assert_eq!(
            err.message,
            "the defining query must be a single SELECT statement"
        );
        assert_eq!(err.detail.as_deref(), Some(detail));
    }
    rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('x', 'SELECT * FROM orders FOR UPDATE')",
        "0A000",
    );
    rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('x', 'SELECT * INTO newtab FROM orders')",
        "0A000",
    );
    rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('x', '  ')",
        "22023",
    );
    // A data-modifying WITH would run again at every refresh.
    let err = rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('x', 'WITH gone AS (DELETE FROM orders RETURNING id) SELECT id FROM gone', '1h', 'FULL')",
        "0A000",
    );
    assert_eq!(err.message, "the defining query must not modify data");
    // The DELETEs were analysed, never run.
    assert_eq!(db.value::<i64>("SELECT count(*) FROM orders"), 2);
}

#[test]
fn names_that_exist_already_are_refused() {
    let mut db = setup("bad_duplicate");
    let err = rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('orders', 'SELECT 1 AS a')",
        "42P07",
    );
    assert_eq!(err.message, "relation \"public\".\"orders\" already exists");
    assert!(err.hint.is_some());
    rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('existing', 'SELECT 1 AS a')",
        "42P07",
    );
    rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('public.existing', 'SELECT 1 AS a')",
        "42P07",
    );
}

#[test]
fn unknown_modes_and_schedules_are_refused_with_a_hint() {
    let mut db = setup("bad_mode_schedule");
    let err = rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('x', 'SELECT 1 AS a', '1m', 'EVENTUALLY')",
        "22023",
    );
    assert_eq!(err.message, "unknown refresh mode \"EVENTUALLY\"");
    assert_eq!(
        err.hint.unwrap(),
        "Valid refresh modes are FULL, DIFFERENTIAL and AUTO."
    );
    for schedule in ["5 parsecs", "0s", "-1s", "", "1.5s", "10"] {
        let err = rejected(
            &mut db,
            &format!("SELECT pgtrickle.create_stream_table('x', 'SELECT 1 AS a', '{schedule}')"),
            "22023",
        );
        assert!(err.message.contains(&format!("\"{schedule}\"")), "{err:?}");
        assert!(err.hint.unwrap().contains("'500ms'"));
    }
}

#[test]
fn differential_refuses_what_it_cannot_maintain_and_changes_nothing() {
    let mut db = setup("bad_differential");
    for (query, construct) in [
        ("SELECT id, random() AS r FROM orders", "function random() (VOLATILE)"),
        // The function that is not IMMUTABLE is named, not one that shares a name with it:
        // `||` of text and an integer is the STABLE textanycat(); `extract` over a timestamp is
        // IMMUTABLE (over timestamptz it is not), and until 2026-12-05 it was the one named.
        (
            "SELECT id, extract(epoch FROM ''2026-01-01''::timestamp) AS e, ''#'' || id AS label FROM orders",
            "the non-immutable operator || (textanycat(), STABLE)",
        ),
        (
            "SELECT id, clock_timestamp() AS t, now() AS n FROM orders",
            "the non-immutable function clock_timestamp() (VOLATILE), function now() (STABLE)",
        ),
        // What the query wrote rather than what it called: a cast PostgreSQL added (date_trunc has
        // no date form, so a date is cast to timestamptz) and a conversion to text.
        (
            "SELECT id, date_trunc(''month'', ''2026-01-01''::date + id) AS m FROM orders",
            "cast from date to timestamp with time zone (timestamptz(), STABLE)",
        ),
        (
            "SELECT id, ''2026-01-01 00:00+00''::timestamptz::text AS t FROM orders",
            "conversion of timestamp with time zone to text (timestamptz_out(), STABLE)",
        ),
        ("SELECT id FROM orders LIMIT 1", "LIMIT without ORDER BY"),
        (
            "SELECT id FROM orders ORDER BY id OFFSET 2",
            "OFFSET without LIMIT",
        ),
        (
            "SELECT id, row_number() OVER (ORDER BY amount) AS r FROM orders",
            "window function",
        ),
    ] {
        let err = rejected(
            &mut db,
            &format!("SELECT pgtrickle.create_stream_table('x', '{query}', '1m', 'DIFFERENTIAL')"),
            "0A000",
        );
        assert!(
            err.message
                .starts_with("DIFFERENTIAL refresh does not support"),
            "{err:?}"
        );
        assert!(err.message.contains(construct), "{err:?}");
        assert!(err.hint.unwrap().contains("AUTO"));
    }
    // Switching an existing stream table over is refused the same way, and changes nothing.
    db.exec("SELECT pgtrickle.create_stream_table('rnd', 'SELECT id, random() AS r FROM orders', '1h', 'FULL')");
    rejected(
        &mut db,
        "SELECT pgtrickle.alter_stream_table('rnd', refresh_mode => 'DIFFERENTIAL')",
        "0A000",
    );
}

#[test]
fn unknown_stream_tables_are_named_in_errors() {
    let mut db = setup("bad_unknown_st");
    for call in ["refresh_stream_table", "drop_stream_table"] {
        let err = rejected(
            &mut db,
            &format!("SELECT pgtrickle.{call}('nope')"),
            "42P01",
        );
        assert_eq!(err.message, "stream table \"nope\" does not exist");
        assert!(err.hint.unwrap().contains("pgtrickle.stream_tables"));
        let err = rejected(
            &mut db,
            &format!("SELECT pgtrickle.{call}('orders')"),
            "42809",
        );
        assert_eq!(err.message, "\"orders\" is not a stream table");
        let err = rejected(
            &mut db,
            &format!("SELECT pgtrickle.{call}('mydb.public.orders')"),
            "42602",
        );
        assert_eq!(
            err.message,
            "improper qualified name (too many dotted names): mydb.public.orders"
        );
        let err = rejected(
            &mut db,
            &format!("SELECT pgtrickle.{call}('\"unterminated')"),
            "22023",
        );
        assert_eq!(
            err.message,
            "string is not a valid identifier: \"\"unterminated\""
        );
        let err = rejected(
            &mut db,
            &format!("SELECT pgtrickle.{call}('nowhere.orders')"),
            "42P01",
        );
        assert_eq!(
            err.message,
            "stream table \"nowhere.orders\" does not exist"
        );
    }
    rejected(
        &mut db,
        "SELECT pgtrickle.alter_stream_table('nope', schedule => '5s')",
        "42P01",
    );
    assert_eq!(db.value::<i64>("SELECT count(*) FROM orders"), 2);
}

#[test]
fn alter_validates_everything_before_changing_anything() {
    let mut db = setup("bad_alter");
    let err = rejected(
        &mut db,
        "SELECT pgtrickle.alter_stream_table('existing', schedule => '5s', status => 'PAUSED')",
        "22023",
    );
    assert_eq!(err.message, "invalid status \"PAUSED\"");
    rejected(
        &mut db,
        "SELECT pgtrickle.alter_stream_table('existing', status => 'ERROR')",
        "22023",
    );
    rejected(
        &mut db,
        "SELECT pgtrickle.alter_stream_table('existing', schedule => 'soon')",
        "22023",
    );
    rejected(
        &mut db,
        "SELECT pgtrickle.alter_stream_table('existing', refresh_mode => 'FAST')",
        "22023",
    );
}

#[test]
fn bad_names_are_refused() {
    let mut db = setup("bad_names");
    rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('a.b.c', 'SELECT 1 AS a')",
        "42602",
    );
    rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('\"unterminated', 'SELECT 1 AS a')",
        "22023",
    );
    rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('', 'SELECT 1 AS a')",
        "42602",
    );
    let err = rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('nowhere.x', 'SELECT 1 AS a')",
        "3F000",
    );
    assert_eq!(err.message, "schema \"nowhere\" does not exist");
    let err = rejected(
        &mut db,
        "SET search_path = ''; SELECT pgtrickle.create_stream_table('x', 'SELECT 1 AS a')",
        "3F000",
    );
    db.exec("RESET search_path");
    assert_eq!(err.message, "no schema has been selected to create in");
    // Never temporary: named pg_temp, the session's temp schema by name, or pg_temp first on
    // search_path. (Until 2026-12-07 the last two were created, and left a catalog row behind when
    // the session ended that broke every later ALTER SCHEMA ... RENAME.)
    db.exec("CREATE TEMP TABLE scratch (n int)");
    let temp: String =
        db.value("SELECT nspname::text FROM pg_namespace WHERE oid = pg_my_temp_schema()");
    for sql in [
        "SELECT pgtrickle.create_stream_table('pg_temp.x', 'SELECT id FROM orders')".to_string(),
        format!("SELECT pgtrickle.create_stream_table('{temp}.x', 'SELECT id FROM orders')"),
        "SET search_path = pg_temp, public; SELECT pgtrickle.create_stream_table('x', 'SELECT id FROM orders')".to_string(),
    ] {
        let err = rejected(&mut db, &sql, "0A000");
        db.exec("RESET search_path");
        assert_eq!(err.message, "a stream table cannot be created in a temporary schema", "{sql}");
    }
}

#[test]
fn hidden_column_names_and_temporary_sources_are_refused() {
    let mut db = setup("bad_reserved");
    let err = rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('x', 'SELECT id AS __pgt_row_id FROM orders')",
        "42939",
    );
    assert!(err.hint.unwrap().contains("AS"));
    db.exec("CREATE TEMP TABLE scratch (n int)");
    let err = rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('x', 'SELECT n FROM scratch')",
        "0A000",
    );
    assert!(err.message.contains("temporary table"), "{err:?}");
    // Nor the session's other temporary objects: the session's end would drop the query's view.
    db.exec(
        "CREATE FUNCTION pg_temp.twice(numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2';
         CREATE DOMAIN pg_temp.money_amount AS numeric;",
    );
    for (query, object) in [
        (
            "SELECT id, pg_temp.twice(amount) AS a FROM orders",
            "function pg_temp_",
        ),
        (
            "SELECT id, (amount::pg_temp.money_amount)::numeric AS a FROM orders",
            "type pg_temp.money_amount",
        ),
    ] {
        let err = rejected(
            &mut db,
            &format!("SELECT pgtrickle.create_stream_table('x', '{query}', '1h', 'FULL')"),
            "0A000",
        );
        assert!(
            err.message.contains("cannot depend on temporary objects"),
            "{err:?}"
        );
        assert!(err.message.contains(object), "{err:?}");
    }
    rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('x', 'SELECT id, id FROM orders')",
        "42701",
    );
    // Columns no table can have, refused as CREATE VIEW refuses them.
    let err = rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('x', 'SELECT ROW(id, amount) AS r FROM orders')",
        "42P16",
    );
    assert_eq!(err.message, "column \"r\" has pseudo-type record");
    let err = rejected(
        &mut db,
        r#"SELECT pgtrickle.create_stream_table('x', $q$SELECT a.s || b.s AS both FROM (SELECT id::text COLLATE "C" AS s FROM orders) a, (SELECT id::text COLLATE "POSIX" AS s FROM orders) b$q$)"#,
        "42P22",
    );
    assert!(
        err.hint.as_deref().unwrap_or("").contains("COLLATE"),
        "{err:?}"
    );
}

#[test]
fn a_query_that_fails_while_populating_leaves_nothing() {
    let mut db = setup("bad_populate");
    let err = rejected(
        &mut db,
        "SELECT pgtrickle.create_stream_table('x', 'SELECT 100 / amount AS r FROM orders')",
        "22012",
    );
    assert_eq!(err.message, "division by zero");
}

#[test]
fn null_arguments_are_refused_by_name() {
    let mut db = setup("bad_input_nulls");
    for (sql, argument) in [
        (
            "SELECT pgtrickle.create_stream_table(NULL, 'SELECT id FROM orders')",
            "name",
        ),
        ("SELECT pgtrickle.create_stream_table('x', NULL)", "query"),
        (
            "SELECT pgtrickle.create_stream_table('x', 'SELECT id FROM orders', NULL)",
            "schedule",
        ),
        (
            "SELECT pgtrickle.create_stream_table('x', 'SELECT id FROM orders', '1m', NULL)",
            "refresh_mode",
        ),
        ("SELECT pgtrickle.refresh_stream_table(NULL)", "name"),
        ("SELECT pgtrickle.drop_stream_table(NULL)", "name"),
        ("SELECT pgtrickle.explain_stream_table(NULL)", "name"),
        ("SELECT pgtrickle.alter_stream_table(NULL)", "name"),
        (
            "SELECT pgtrickle.alter_stream_table(NULL, schedule => '1m')",
            "name",
        ),
    ] {
        let e = rejected(&mut db, sql, "22004");
        assert_eq!(e.message, format!("{argument} must not be NULL"), "{sql}");
        // Errors point at pg_trickle's code for the call, not at its error module.
        assert!(
            e.location.starts_with("pg_trickle, ") && !e.location.contains("error.rs"),
            "{sql}: {}",
            e.location
        );
    }
}

#[test]
fn a_query_without_columns_is_refused_in_every_mode() {
    let mut db = setup("bad_input_no_columns");
    for mode in ["AUTO", "FULL", "DIFFERENTIAL"] {
        let e = rejected(
            &mut db,
            &format!(
                "SELECT pgtrickle.create_stream_table('x', 'SELECT FROM orders', '1m', '{mode}')"
            ),
            "0A000",
        );
        assert_eq!(e.message, "the defining query has no output columns");
    }
}

#[test]
fn a_manual_refresh_of_a_broken_stream_table_fails_and_says_why() {
    let mut db = setup("bad_input_broken_refresh");
    db.exec("SELECT pgtrickle.create_stream_table('doubled', 'SELECT id, amount * 2 AS a FROM orders', '1h', 'DIFFERENTIAL')");
    // A column its query reads is dropped (CASCADE takes the query's view along): it cannot be
    // refreshed any more.
    db.exec("ALTER TABLE orders DROP COLUMN amount CASCADE");
    // The error rolls back whatever the refresh wrote, the status included: no warning may claim
    // otherwise (until 2026-12-07 one said "is now in status ERROR").
    let status = "SELECT status || ': ' || coalesce(last_error, '') FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = 'doubled'::regclass";
    let before: String = db.value(status);
    let (mut client, notices) = db.connect_keeping_notices();
    let e = client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('doubled')")
        .expect_err("a broken stream table refreshed");
    let e = e.as_db_error().expect("a server error").clone();
    assert_eq!(e.code().code(), "55000", "{e:?}");
    assert!(
        notices.lock().unwrap().is_empty(),
        "{:?}",
        notices.lock().unwrap()
    );
    assert_eq!(db.value::<String>(status), before);
    let e = db.error("SELECT pgtrickle.refresh_stream_table('doubled')");
    assert_eq!(e.code, "55000", "{e:?}");
    assert!(
        e.message
            .starts_with("stream table \"doubled\" cannot be refreshed: "),
        "{e:?}"
    );
    assert!(e.message.contains("amount"), "{e:?}");
    assert_eq!(
        e.hint.as_deref(),
        Some("Drop the stream table and create it again for its sources as they are now.")
    );

    // The query still works, but DIFFERENTIAL may no longer read a source: the way out is a mode
    // that reads it whole, not a new stream table.
    db.exec(
        "CREATE VIEW big_orders AS SELECT id FROM orders WHERE id > 1;
         SELECT pgtrickle.create_stream_table('from_view', 'SELECT id FROM big_orders', '1h', 'DIFFERENTIAL');
         ALTER VIEW big_orders SET (security_barrier = true)",
    );
    let e = db.error("SELECT pgtrickle.refresh_stream_table('from_view')");
    assert_eq!(e.code, "55000", "{e:?}");
    assert!(
        e.message.starts_with(
            "stream table \"from_view\" cannot be refreshed: a source of this stream table changed and it no longer qualifies for DIFFERENTIAL refresh: "
        ),
        "{e:?}"
    );
    let hint = e.hint.clone().unwrap_or_default();
    assert!(
        hint.contains(
            "pgtrickle.alter_stream_table('from_view', refresh_mode => 'FULL', status => 'ACTIVE')"
        ),
        "{e:?}"
    );
    // The hint's way out works.
    db.exec("SELECT pgtrickle.alter_stream_table('from_view', refresh_mode => 'FULL', status => 'ACTIVE')");
    db.exec("SELECT pgtrickle.refresh_stream_table('from_view')");
    db.assert_matches_query("from_view", "SELECT id FROM big_orders");
}

/// A query whose expression chains many thousands of operators is maintained FULL, not read by the
/// differential engine, whose parser would build a tree as deep as the chain (100,000 `AND`s
/// overflowed the backend's stack: every session of the server restarted).
#[test]
fn a_very_long_operator_chain_is_refreshed_full() {
    let mut db = setup("bad_long_chain");
    let chain = (1..=100_000)
        .map(|i| format!("id <> {}", i + 100))
        .collect::<Vec<_>>()
        .join(" AND ");
    let query = format!("SELECT id, amount FROM orders WHERE {chain}");
    let err = rejected(
        &mut db,
        &format!("SELECT pgtrickle.create_stream_table('x', '{query}', '1h', 'DIFFERENTIAL')"),
        "0A000",
    );
    assert!(
        err.message.contains("chaining more than 10000 operators"),
        "{err:?}"
    );
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('x', '{query}', '1h', 'AUTO')"
    ));
    let (mode, reason): (String, String) = {
        let rows = db.rows(
            "SELECT effective_mode, mode_reason FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = 'x'::regclass",
            &[],
        );
        (rows[0].get(0), rows[0].get(1))
    };
    assert_eq!(mode, "FULL", "{reason}");
    assert!(
        reason.contains("chaining more than 10000 operators"),
        "{reason}"
    );
    db.exec("INSERT INTO orders VALUES (3, 7)");
    db.exec("SELECT pgtrickle.refresh_stream_table('x')");
    db.assert_matches_query("x", "SELECT id, amount FROM orders");
}
