//! Upgrading in place: `CREATE EXTENSION pg_trickle VERSION '0.1.0'` (the install script released
//! with 0.1.0, sql/pg_trickle--0.1.0.sql), live stream tables, `ALTER EXTENSION pg_trickle UPDATE`;
//! the stream tables keep refreshing exactly, and the catalog equals a fresh install's.

use pg_trickle_e2e::{wait_until, TestDb};
use std::time::Duration;

const TOTALS: &str = "SELECT customer, count(*) AS n, sum(amount) AS total, min(amount) AS low FROM orders GROUP BY customer";
const BIG: &str = "SELECT o.id, o.customer, o.amount FROM orders o WHERE o.amount > 50";
const COUNTS: &str = "SELECT customer, count(*) AS n FROM orders GROUP BY customer";

/// Everything the extension script makes, described without OIDs: members of the extension,
/// columns, constraints, indexes, function definitions, views, comments, privileges, event
/// triggers, configuration tables. Sorted.
const CATALOG: &str = r#"
WITH ext AS (SELECT oid, extconfig, extcondition FROM pg_extension WHERE extname = 'pg_trickle'),
     rels AS (SELECT c.* FROM pg_class c WHERE c.relnamespace = 'pgtrickle'::regnamespace)
SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_depend d, ext WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
UNION ALL
SELECT format('relation %s kind %s persistence %s acl %s comment %s', relname, relkind, relpersistence, relacl, obj_description(oid, 'pg_class'))
  FROM rels
UNION ALL
SELECT format('column %s.%s #%s %s notnull %s identity %s default %s acl %s comment %s', c.relname, a.attname, a.attnum,
              format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity, pg_get_expr(ad.adbin, ad.adrelid),
              a.attacl, col_description(c.oid, a.attnum))
  FROM rels c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
UNION ALL
SELECT format('constraint %s on %s: %s', conname, conrelid::regclass, pg_get_constraintdef(oid))
  FROM pg_constraint WHERE connamespace = 'pgtrickle'::regnamespace
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN rels c ON c.oid = i.indrelid
UNION ALL
SELECT format('view %s: %s', relname, pg_get_viewdef(oid)) FROM rels WHERE relkind = 'v'
UNION ALL
SELECT format('function %s acl %s comment %s: %s', p.oid::regprocedure, p.proacl, obj_description(p.oid, 'pg_proc'),
              pg_get_functiondef(p.oid))
  FROM pg_proc p WHERE p.pronamespace IN ('pgtrickle'::regnamespace, 'pgtrickle_changes'::regnamespace)
   AND p.proname !~ '^(capture|capture_row|truncated)_[0-9]+$'
UNION ALL
SELECT format('schema %s acl %s comment %s', nspname, nspacl, obj_description(oid, 'pg_namespace'))
  FROM pg_namespace WHERE nspname IN ('pgtrickle', 'pgtrickle_changes')
UNION ALL
SELECT format('event trigger %s on %s tags %s runs %s enabled %s', evtname, evtevent, evttags, evtfoid::regproc, evtenabled)
  FROM pg_event_trigger
UNION ALL
SELECT format('config table %s where %L', cfg::regclass, cond)
  FROM ext, unnest(ext.extconfig, ext.extcondition) AS u(cfg, cond)
ORDER BY 1
"#;

fn catalog(db: &mut TestDb) -> Vec<String> {
    db.rows(CATALOG, &[])
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

fn write_some(db: &mut TestDb, tag: &str) {
    db.exec(&format!(
        "INSERT INTO orders (customer, amount) SELECT '{tag}' || (g % 3), g * 7 % 97 FROM generate_series(1, 20) g;
         UPDATE orders SET amount = amount + 1 WHERE id % 11 = 0;
         DELETE FROM orders WHERE id % 13 = 0;"
    ));
}

fn refresh_and_check(db: &mut TestDb) {
    for (st, query) in [("totals", TOTALS), ("big", BIG), ("counts", COUNTS)] {
        db.exec(&format!("SELECT pgtrickle.refresh_stream_table('{st}')"));
        db.assert_matches_query(st, query);
    }
}

#[test]
fn update_from_0_1_0_keeps_stream_tables_refreshing_and_gives_the_fresh_catalog() {
    let mut db = TestDb::without_extension("upgrade_from_0_1_0");
    db.exec("CREATE EXTENSION pg_trickle VERSION '0.1.0'");
    assert_eq!(
        db.value::<String>("SELECT extversion FROM pg_extension WHERE extname = 'pg_trickle'"),
        "0.1.0"
    );
    assert!(!db.value::<bool>("SELECT to_regclass('pgtrickle.pgt_cost_model_summary') IS NOT NULL"));
    db.exec(
        "CREATE TABLE orders (id serial PRIMARY KEY, customer text COLLATE \"C\" NOT NULL, amount numeric(10,2) NOT NULL);
         INSERT INTO orders (customer, amount) SELECT 'c' || (g % 5), g FROM generate_series(1, 100) g;
         ANALYZE orders;",
    );
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', 'DIFFERENTIAL')"
    ));
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('big', '{BIG}', '1h', 'AUTO')"
    ));
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('counts', '{COUNTS}', '1h', 'FULL')"
    ));

    // The new library works with the 0.1.0 catalog until the update: it records no costs, and AUTO
    // decides by the ratio and says why.
    write_some(&mut db, "before");
    refresh_and_check(&mut db);
    assert_eq!(db.last_refresh("totals").0, "DIFFERENTIAL");
    let (action, reason) = db.last_refresh("big");
    assert_eq!(action, "DIFFERENTIAL");
    assert!(
        reason.contains("no cost summary until ALTER EXTENSION pg_trickle UPDATE"),
        "{reason}"
    );

    // Capture as the 0.1.0 library installed it: no row function, no row trigger.
    let orders: i64 = db.value("SELECT 'orders'::regclass::oid::bigint");
    db.exec(&format!(
        "DROP FUNCTION pgtrickle_changes.capture_row_{orders}() CASCADE"
    ));
    // A buffer as 0.1.0 made it: its columns of the type's default collation, where the source's
    // `customer` is "C" (every refresh grouping by it failed: no collation to compare with).
    db.exec(&format!(
        "ALTER TABLE pgtrickle_changes.changes_{orders} ALTER COLUMN customer TYPE text COLLATE \"default\""
    ));
    db.exec("ALTER EXTENSION pg_trickle UPDATE");
    assert_eq!(
        db.value::<String>(&format!(
            "SELECT attcollation::regcollation::text FROM pg_attribute
              WHERE attrelid = 'pgtrickle_changes.changes_{orders}'::regclass AND attname = 'customer'"
        )),
        "\"C\""
    );
    assert_eq!(
        db.value::<String>("SELECT extversion FROM pg_extension WHERE extname = 'pg_trickle'"),
        "0.2.0"
    );
    assert_eq!(
        env!("CARGO_PKG_VERSION"),
        "0.2.0",
        "a new version needs its update script and this test's expectations"
    );
    assert!(db.value::<bool>("SELECT to_regclass('pgtrickle.pgt_cost_model_summary') IS NOT NULL"));
    // Stream tables made by 0.1.0 are guarded like new ones; capture fires under replica role too.
    assert_eq!(db.error("DELETE FROM counts").code, "42809");
    // Each guard names its stream table, so that a dump can be restored.
    assert_eq!(
        db.value::<i64>(
            "SELECT count(*) FROM pg_trigger t JOIN pgtrickle.pgt_stream_tables s ON s.pgt_relid = t.tgrelid
              WHERE t.tgname = 'pgtrickle_guard' AND encode(t.tgargs, 'escape') = s.pgt_id || '\\000'"
        ),
        3
    );
    assert_eq!(
        db.value::<i64>(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgtrickle\\_%'
               AND tgenabled <> CASE WHEN tgname LIKE '%\\_trunc' OR tgname = 'pgtrickle_guard' THEN 'A'
                                     WHEN tgname LIKE '%\\_row' THEN 'R' ELSE 'O' END"
        ),
        0
    );
    // Row triggers for replication were added to the source captured under 0.1.0, with a function
    // that is the database's, not the extension's (dumps contain it; re-arming may replace it).
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pg_trigger WHERE tgname = 'pgtrickle_capture_row'"),
        1
    );
    assert_eq!(
        db.value::<i64>(
            "SELECT count(*) FROM pg_depend WHERE deptype = 'e'
                AND (objid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'pgtrickle_changes'::regnamespace)
                  OR objid IN (SELECT oid FROM pg_class WHERE relnamespace IN ('pgtrickle_changes'::regnamespace, 'pgtrickle_queries'::regnamespace)))"
        ),
        0
    );

    // Capture made by 0.1.0 (buffers and functions the extension owner's) is handed to the NOLOGIN
    // capture role, as 0.2.0 makes it.
    assert_eq!(
        db.value::<String>(
            "SELECT string_agg(DISTINCT owner, ', ') FROM (
               SELECT relowner::regrole::text AS owner FROM pg_class WHERE relnamespace = 'pgtrickle_changes'::regnamespace AND relkind = 'r'
               UNION ALL SELECT proowner::regrole::text FROM pg_proc WHERE pronamespace = 'pgtrickle_changes'::regnamespace) o"
        ),
        "pgtrickle_capture"
    );

    // The stream tables keep refreshing exactly: once FULL (capture was re-armed: the old triggers
    // may have missed replicated writes), then differentially again, now measured.
    write_some(&mut db, "after");
    refresh_and_check(&mut db);
    let (action, reason) = db.last_refresh("totals");
    assert_eq!(action, "FULL");
    assert!(reason.starts_with("reinitialised: capture of"), "{reason}");
    // The FULL one decided at that refresh that it need not be rewritten while its source is unchanged.
    assert_eq!(
        db.last_refresh("counts"),
        ("FULL".to_string(), "reinitialised: pg_trickle 0.2.0 decides whether refreshes over unchanged sources are skipped".to_string())
    );
    assert!(db.value::<bool>("SELECT skip_unchanged FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = 'counts'::regclass"));
    assert_eq!(db.value::<i64>("SELECT count(*) FROM pg_trigger WHERE tgname = 'pgtrickle_signal_stmt' AND tgrelid = 'orders'::regclass"), 1);
    write_some(&mut db, "after again");
    refresh_and_check(&mut db);
    assert_eq!(db.last_refresh("totals").0, "DIFFERENTIAL");
    assert_eq!(db.last_refresh("big").0, "DIFFERENTIAL");
    // A TRUNCATE of the source, whose re-armed function runs as the capture role (no rights on the
    // catalog), reaches the stream tables as a replaced row.
    db.exec("TRUNCATE orders");
    write_some(&mut db, "truncated");
    refresh_and_check(&mut db);
    assert_eq!(
        db.last_refresh("totals"),
        (
            "FULL".to_string(),
            "\"public\".\"orders\" was truncated".to_string()
        )
    );
    assert_eq!(
        db.value::<i64>(
            "SELECT differential_refreshes FROM pgtrickle.pgt_cost_model_summary
              JOIN pgtrickle.pgt_stream_tables USING (pgt_id) WHERE pgt_relid = 'totals'::regclass"
        ),
        1
    );
    // And the scheduler keeps refreshing them.
    db.exec("SELECT pgtrickle.alter_stream_table('totals', schedule => '1s')");
    write_some(&mut db, "scheduled");
    let refreshed = wait_until(Duration::from_secs(30), || {
        db.value::<i64>(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
              WHERE s.pgt_relid = 'totals'::regclass AND h.initiated_by = 'SCHEDULER' AND h.action = 'DIFFERENTIAL'",
        ) > 0
    });
    assert!(refreshed, "the scheduler did not refresh after the update");
    db.exec("SELECT pgtrickle.alter_stream_table('totals', status => 'SUSPENDED')");
    db.assert_matches_query("totals", TOTALS);

    // The updated catalog is the one a fresh install makes.
    let updated = catalog(&mut db);
    let mut fresh = TestDb::new("upgrade_fresh_0_2_0");
    let fresh = catalog(&mut fresh);
    let only_updated: Vec<_> = updated.iter().filter(|l| !fresh.contains(l)).collect();
    let only_fresh: Vec<_> = fresh.iter().filter(|l| !updated.contains(l)).collect();
    assert!(
        only_updated.is_empty() && only_fresh.is_empty() && updated.len() == fresh.len(),
        "catalog after ALTER EXTENSION UPDATE differs from a fresh install\nonly after update:\n{}\nonly in fresh install:\n{}",
        only_updated.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
        only_fresh.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
    );
    assert!(
        updated
            .iter()
            .any(|l| l.starts_with("config table pgtrickle.pgt_cost_model_summary")),
        "{updated:#?}"
    );
}
