//! A database with stream tables, dumped with pg_dump and restored into another database: the
//! restored catalog holds the old OIDs, so its rows are never refreshed as they are (one could name
//! another table); `pgtrickle.restore_stream_tables()` then ties them to their tables again.

use pg_trickle_e2e::{wait_until, TestDb};
use std::process::Command;
use std::time::Duration;

const TOTALS: &str = "SELECT grp, count(*) AS n, sum(v) AS total FROM src GROUP BY grp";
const BIG: &str = "SELECT grp, total FROM totals WHERE total > 100";
const COPY: &str = "SELECT id, v FROM src";
const ALICES: &str = "SELECT grp, max(v) AS top FROM src GROUP BY grp";

fn dump_into(source: &TestDb, target: &TestDb) {
    let dump = Command::new("/usr/lib/postgresql/15/bin/pg_dump")
        .arg("-d")
        .arg(source.conninfo())
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let mut restore = Command::new("/usr/lib/postgresql/15/bin/psql")
        .args([
            "-q",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &target.conninfo(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    restore
        .stdin
        .take()
        .unwrap()
        .write_all(&dump.stdout)
        .unwrap();
    let out = restore.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "restore failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check_all(db: &mut TestDb, alice: &str) {
    db.assert_matches_query("totals", TOTALS);
    db.assert_matches_query("big", BIG);
    db.assert_matches_query("copy_renamed", COPY);
    db.assert_matches_query("alices", ALICES);
    let owner: String =
        db.value("SELECT tableowner::text FROM pg_tables WHERE tablename = 'alices'");
    assert_eq!(owner, alice);
}

#[test]
fn a_restored_database_gets_its_stream_tables_back() {
    // The target first: its previous run's objects would keep the role from being dropped.
    let mut target = TestDb::without_extension("dump_target");
    let mut source = TestDb::new("dump_source");
    let alice = "dump_alice";
    source.fresh_role(alice);
    source.exec(&format!(
        "CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL);
         INSERT INTO src SELECT g, g % 4, g FROM generate_series(1, 40) g;
         GRANT SELECT ON src TO {alice}; GRANT CREATE ON SCHEMA public TO {alice};"
    ));
    source.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1s', 'DIFFERENTIAL')"
    ));
    source.exec(&format!(
        "SELECT pgtrickle.create_stream_table('big', '{BIG}', '1s', 'DIFFERENTIAL')"
    ));
    source.exec(&format!(
        "SELECT pgtrickle.create_stream_table('copy', '{COPY}', '1s', 'FULL')"
    ));
    // Renamed before the dump: the restore finds it by its guard, not by name.
    source.exec("ALTER TABLE copy RENAME TO copy_renamed");
    source.exec(&format!(
        "SET ROLE {alice}; SELECT pgtrickle.create_stream_table('alices', '{ALICES}', '1s', 'DIFFERENTIAL'); RESET ROLE;"
    ));
    // Unapplied changes at dump time: the restored contents are older than the sources.
    source.exec("SELECT pgtrickle.alter_stream_table(t, status => 'SUSPENDED') FROM unnest(ARRAY['totals', 'big', 'copy_renamed', 'alices']) t");
    source.exec("INSERT INTO src VALUES (41, 1, 1000); DELETE FROM src WHERE id = 2;");

    // The target has bystander tables before the restore: a stale OID might name one of them.
    target.exec(
        "CREATE TABLE bystander_a (x int); INSERT INTO bystander_a SELECT generate_series(1, 10);
         CREATE TABLE bystander_b (x int); INSERT INTO bystander_b SELECT generate_series(1, 10);",
    );
    source.exec("SELECT pgtrickle.alter_stream_table(t, status => 'ACTIVE') FROM unnest(ARRAY['totals', 'big'])  t");
    dump_into(&source, &target);

    // The scheduler finds the active restored rows due: each goes to ERROR, and nothing is written.
    // (The launcher notices a database that gained pg_trickle on its own rounds: allow for them.)
    let refused = wait_until(Duration::from_secs(90), || {
        target.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE status = 'ERROR' AND last_error LIKE '%restored from a dump%'") >= 1
    });
    assert!(refused, "restored catalog rows were not refused");
    for t in ["bystander_a", "bystander_b"] {
        assert_eq!(
            target.value::<i64>(&format!("SELECT count(*) FROM {t}")),
            10,
            "{t}"
        );
    }

    // Only a superuser may restore.
    target.exec(&format!("SET ROLE {alice}"));
    assert_eq!(
        target
            .error("SELECT * FROM pgtrickle.restore_stream_tables()")
            .code,
        "42501"
    );
    target.exec("RESET ROLE");

    let restored_at: i64 =
        target.value("SELECT coalesce(max(refresh_id), 0) FROM pgtrickle.pgt_refresh_history");
    let outcomes: Vec<String> = target
        .rows("SELECT stream_table || ': ' || outcome FROM pgtrickle.restore_stream_tables() ORDER BY pgt_id", &[])
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        outcomes,
        [
            r#""public"."totals": restored (DIFFERENTIAL): its next refresh is FULL"#,
            r#""public"."big": restored (DIFFERENTIAL): its next refresh is FULL"#,
            r#""public"."copy_renamed": restored (FULL): its next refresh is FULL"#,
            r#""public"."alices": restored (DIFFERENTIAL): its next refresh is FULL"#,
        ]
    );
    // Twice is harmless: nothing is left to restore.
    assert_eq!(
        target.value::<i64>("SELECT count(*) FROM pgtrickle.restore_stream_tables()"),
        0
    );
    // Suspended stay suspended; the others are active again.
    assert_eq!(
        target.value::<String>(
            "SELECT string_agg(status, ',' ORDER BY pgt_id) FROM pgtrickle.pgt_stream_tables"
        ),
        "ACTIVE,ACTIVE,SUSPENDED,SUSPENDED"
    );
    // No capture is left over from the dump: a buffer for each source read differentially (src, and
    // totals, which big reads), owned by the capture role.
    assert_eq!(
        target.value::<String>(
            "SELECT string_agg(relname || ' ' || relowner::regrole::text, ',' ORDER BY relname) FROM pg_class
              WHERE relnamespace = 'pgtrickle_changes'::regnamespace AND relkind = 'r'"
        ),
        target.value::<String>(
            "SELECT string_agg('changes_' || oid || ' pgtrickle_capture', ',' ORDER BY 'changes_' || oid)
               FROM pg_class WHERE oid IN ('src'::regclass, 'totals'::regclass)"
        )
    );

    // The dumped signal triggers (copy_renamed is FULL and skips refreshes while src is unchanged)
    // named the dumped database's OID of src: the restore re-made them for the OID it has here.
    assert_eq!(
        target.value::<String>(
            "SELECT string_agg(DISTINCT tgrelid::regclass::text || ' ' || split_part(encode(tgargs, 'escape'), '\\000', 1), ',')
               FROM pg_trigger WHERE tgfoid = 'pgtrickle._signal()'::regprocedure"
        ),
        target.value::<String>("SELECT 'src ' || 'src'::regclass::oid::text")
    );
    assert!(target.value::<bool>("SELECT skip_unchanged FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = 'copy_renamed'::regclass"));

    // Each one refreshes FULL once (the changes the dump held cannot be told apart), then with deltas.
    // (The active ones may be refreshed by the coordinator first: the first refresh after the restore
    // that applied anything is the one that must be FULL, whoever ran it. A scheduled attempt that
    // failed and applied nothing does not count; it is printed, to be seen if this ever fails.)
    target.exec("SELECT pgtrickle.alter_stream_table(t, status => 'ACTIVE', schedule => '1h') FROM unnest(ARRAY['totals', 'big', 'copy_renamed', 'alices']) t");
    for st in ["totals", "big", "copy_renamed", "alices"] {
        target.exec(&format!("SELECT pgtrickle.refresh_stream_table('{st}')"));
        for failed in target.rows(
            &format!(
                "SELECT coalesce(h.executed_by, '?') || ': ' || coalesce(h.error_message, h.status) FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
                  WHERE s.pgt_relid = '{st}'::regclass AND h.refresh_id > {restored_at} AND h.status <> 'SUCCESS'"
            ),
            &[],
        ) {
            eprintln!("{st}: a failed refresh attempt after the restore: {}", failed.get::<_, String>(0));
        }
        let first: String = target.value(&format!(
            "SELECT h.action || ': ' || h.reason FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
              WHERE s.pgt_relid = '{st}'::regclass AND h.refresh_id > {restored_at} AND h.status = 'SUCCESS'
              ORDER BY h.refresh_id LIMIT 1"
        ));
        // `totals` is read by other stream tables, all waiting for their own FULL refresh: its new
        // contents need not be captured row by row, and its history says so.
        let uncaptured = if st == "totals" {
            "; its new contents are not captured row by row: every stream table reading it refreshes FULL"
        } else {
            ""
        };
        assert_eq!(
            first,
            format!("FULL: reinitialised: restored from a dump{uncaptured}"),
            "{st}"
        );
    }
    check_all(&mut target, alice);
    target.exec("INSERT INTO src VALUES (100, 1, 1); UPDATE src SET v = 0 WHERE id = 3; DELETE FROM src WHERE id = 5;");
    for st in ["totals", "big", "copy_renamed", "alices"] {
        target.exec(&format!("SELECT pgtrickle.refresh_stream_table('{st}')"));
    }
    for st in ["totals", "big", "alices"] {
        assert_eq!(target.last_refresh(st).0, "DIFFERENTIAL", "{st}");
    }
    check_all(&mut target, alice);
    // Alice refreshes her own, as its owner.
    target.exec(&format!(
        "SET ROLE {alice}; SELECT pgtrickle.refresh_stream_table('alices'); RESET ROLE;"
    ));

    // New stream tables get new ids; dropping a restored one works as for any other.
    target.exec("SELECT pgtrickle.create_stream_table('later', 'SELECT count(*) AS n FROM src', '1h', 'DIFFERENTIAL')");
    assert!(target.value::<bool>(
        "SELECT pgt_id > 4 FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = 'later'::regclass"
    ));
    target.exec("SELECT pgtrickle.drop_stream_table('big')");
    assert_eq!(
        target.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_stream_tables"),
        4
    );
}

/// A partitioned source and one with an inheritance child restore without an error: their
/// capture triggers, re-enabled by the dump, name the old database's OIDs, which must not be taken
/// for sources to keep in step (until 2026-12-07 each such trigger failed the restore, under
/// `ON_ERROR_STOP`, with "relation ... has no pg_class row").
#[test]
fn sources_with_partitions_and_children_restore_without_errors() {
    let mut target = TestDb::without_extension("dump_members_target");
    let mut source = TestDb::new("dump_members_source");
    source.exec(
        "CREATE TABLE parted (id int, grp int, v int) PARTITION BY RANGE (id);
         CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
         CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (100) TO (200);
         INSERT INTO parted SELECT g, g % 3, g FROM generate_series(1, 150) g;
         CREATE TABLE parent (id int, v int); CREATE TABLE kid () INHERITS (parent);
         INSERT INTO parent VALUES (1, 1); INSERT INTO kid VALUES (2, 2);
         SELECT pgtrickle.create_stream_table('by_grp', 'SELECT grp, count(*) AS n, sum(v) AS s FROM parted GROUP BY grp', '1h', 'DIFFERENTIAL');
         SELECT pgtrickle.create_stream_table('family', 'SELECT id, v FROM parent', '1h', 'DIFFERENTIAL');",
    );
    dump_into(&source, &target);
    target.exec("SELECT * FROM pgtrickle.restore_stream_tables()");
    target.exec("INSERT INTO parted VALUES (5, 2, 5), (150, 0, 7); DELETE FROM parted WHERE id = 1; INSERT INTO kid VALUES (3, 3)");
    for (name, query) in [
        (
            "by_grp",
            "SELECT grp, count(*) AS n, sum(v) AS s FROM parted GROUP BY grp",
        ),
        ("family", "SELECT id, v FROM parent"),
    ] {
        target.exec(&format!("SELECT pgtrickle.refresh_stream_table('{name}')"));
        target.assert_matches_query(name, query);
    }
}
