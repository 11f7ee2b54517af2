//! A database with stream tables, dumped with pg_dump and restored into another database: the
//! restored catalog holds the old OIDs, so its rows must never be refreshed (one could name another
//! table); the documented clean-up then lets the stream tables be created again.

use pg_trickle_e2e::{wait_until, TestDb};
use std::process::Command;
use std::time::Duration;

const TOTALS: &str = "SELECT grp, count(*) AS n, sum(v) AS total FROM src GROUP BY grp";

#[test]
fn a_restored_catalog_is_never_refreshed_and_can_be_cleaned_up() {
    let mut source = TestDb::new("dump_source");
    source.exec(
        "CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL);
         INSERT INTO src SELECT g, g % 4, g FROM generate_series(1, 40) g;",
    );
    source.exec(&format!("SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1s', 'DIFFERENTIAL')"));
    source.exec("SELECT pgtrickle.create_stream_table('copy', 'SELECT id, v FROM src', '1s', 'FULL')");

    // The target has bystander tables before the restore: a stale OID might name one of them.
    let mut target = TestDb::without_extension("dump_target");
    target.exec(
        "CREATE TABLE bystander_a (x int); INSERT INTO bystander_a SELECT generate_series(1, 10);
         CREATE TABLE bystander_b (x int); INSERT INTO bystander_b SELECT generate_series(1, 10);",
    );
    let dump = Command::new("/usr/lib/postgresql/15/bin/pg_dump").arg("-d").arg(source.conninfo()).output().unwrap();
    assert!(dump.status.success(), "pg_dump: {}", String::from_utf8_lossy(&dump.stderr));
    let mut restore = Command::new("/usr/lib/postgresql/15/bin/psql")
        .args(["-q", "-X", "-d", &target.conninfo()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    restore.stdin.take().unwrap().write_all(&dump.stdout).unwrap();
    let out = restore.wait_with_output().unwrap();
    println!("restore messages:\n{}", String::from_utf8_lossy(&out.stderr));

    // The scheduler finds the restored rows due: each goes to ERROR, and nothing is written. (The
    // launcher notices a database that gained pg_trickle on its own rounds: allow for them.)
    let refused = wait_until(Duration::from_secs(90), || {
        target.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE status = 'ERROR' AND last_error LIKE '%restored from a dump%'") == 2
    });
    let states: Vec<String> = target
        .rows("SELECT pgt_id || ' ' || status || ' ' || coalesce(last_error, '-') FROM pgtrickle.pgt_stream_tables", &[])
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(refused, "restored catalog rows were not refused: {states:?}");
    for t in ["bystander_a", "bystander_b"] {
        assert_eq!(target.value::<i64>(&format!("SELECT count(*) FROM {t}")), 10, "{t}");
    }
    target.assert_matches_query("totals", TOTALS);

    // The clean-up OPERATIONS.md documents, then the stream tables are created again.
    target.exec(
        "DELETE FROM pgtrickle.pgt_stream_tables;
         SELECT pgtrickle._cdc_gc();
         DROP TABLE totals, copy;
         DO $$ DECLARE v record; BEGIN
           FOR v IN SELECT c.oid::regclass AS q FROM pg_class c WHERE c.relnamespace = 'pgtrickle_queries'::regnamespace LOOP
             EXECUTE format('DROP VIEW %s', v.q);
           END LOOP;
         END $$;",
    );
    target.exec(&format!("SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', 'DIFFERENTIAL')"));
    target.exec("INSERT INTO src VALUES (100, 1, 1); UPDATE src SET v = 0 WHERE id = 3;");
    target.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    assert_eq!(target.last_refresh("totals").0, "DIFFERENTIAL");
    target.assert_matches_query("totals", TOTALS);
    // No capture is left over from the dump: one buffer, the new one.
    assert_eq!(target.value::<i64>("SELECT count(*) FROM pg_tables WHERE schemaname = 'pgtrickle_changes'"), 1);
}
