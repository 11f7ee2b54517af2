//! Real offload with real `pg_trickle_worker` processes (logging in as roles holding only
//! `pgtrickle_worker`): an aggregate kept from stored state over one table is reduced by the worker
//! (binary COPY out, Δ per group computed in the worker, binary COPY back) and applied by the
//! server, exactly; what the server keeps (MIN/MAX) or what the worker cannot compute exactly (a
//! NaN) is refreshed on the server, exactly; `--offload off` leaves everything to the server.

use pg_trickle_e2e::worker::{login_role, Worker};
use pg_trickle_e2e::{wait_until, TestDb};
use std::time::Duration;

const SUMS: &str = "SELECT region, count(*) AS n, sum(amount) AS total, avg(qty) AS avg_qty,
        count(amount) FILTER (WHERE qty > 5) AS big FROM sales WHERE qty > 0 OR qty IS NULL GROUP BY region";
const MAXIMA: &str = "SELECT region, max(qty) AS top FROM sales GROUP BY region";

/// Database `name` with `sales`, the stream tables `sums` (offloadable) and `maxima` (not), both
/// owned by `<name>_owner` and refreshed every second, and the login role `<name>_w`.
fn database(name: &str) -> TestDb {
    let mut db = TestDb::new(name);
    let owner = format!("{name}_owner");
    db.fresh_role(&owner);
    db.exec(&format!(
        "CREATE TABLE sales (id int PRIMARY KEY, region text, amount numeric(12,2), qty int);
         INSERT INTO sales SELECT g, 'r' || (g % 4), (g % 50) / 4.0, g % 9 FROM generate_series(1, 200) g;
         ALTER TABLE sales OWNER TO {owner};
         GRANT CREATE ON SCHEMA public TO {owner};
         SET ROLE {owner};
         SELECT pgtrickle.create_stream_table('sums', $q${SUMS}$q$, '1s', 'DIFFERENTIAL');
         SELECT pgtrickle.create_stream_table('maxima', $q${MAXIMA}$q$, '1s', 'DIFFERENTIAL');
         RESET ROLE;"
    ));
    assert!(
        db.scheduler_pid().is_some(),
        "no coordinator for the database"
    );
    login_role(&mut db, &format!("{name}_w"));
    db
}

fn now(db: &mut TestDb) -> String {
    db.value("SELECT clock_timestamp()::text")
}

/// The reasons of `st`'s successful refreshes by `executor` since `since` that applied changes.
fn reasons_since(db: &mut TestDb, st: &str, since: &str, executor: &str) -> Vec<String> {
    db.rows(
        "SELECT h.reason FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
          WHERE s.pgt_relid = $1::text::regclass AND h.status = 'SUCCESS' AND h.action <> 'NO_DATA'
            AND h.started_at >= $2::text::timestamptz AND h.executed_by = $3
          ORDER BY h.refresh_id",
        &[&st, &since, &executor],
    )
    .iter()
    .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
    .collect()
}

/// Changes `sales` with `dml` and waits until the worker has refreshed both stream tables; the
/// reasons it recorded for `sums`.
fn round(db: &mut TestDb, dml: &str, executor: &str, w: &Worker) -> Vec<String> {
    let since = now(db);
    db.exec(dml);
    let done = wait_until(Duration::from_secs(30), || {
        !reasons_since(db, "sums", &since, executor).is_empty()
            && !reasons_since(db, "maxima", &since, executor).is_empty()
    });
    assert!(
        done,
        "no refresh of both by {executor} after: {dml}\nworker log:\n{}",
        w.log()
    );
    db.assert_matches_query("sums", SUMS);
    db.assert_matches_query("maxima", MAXIMA);
    reasons_since(db, "sums", &since, executor)
}

/// A worker of `db`'s login role (debug log: it says why a batch stays on the server), once the
/// coordinator hands it refreshes (it counts live workers every 5 s; until then it refreshes
/// in-process): its executor name in the history.
fn worker(db: &mut TestDb, name: &str, extra: &[&str]) -> (Worker, String) {
    let mut args = vec!["--log-level", "debug"];
    args.extend_from_slice(extra);
    let w = Worker::start(db, &format!("{name}_w"), &args);
    let by = format!("external worker {}", w.registered_id(db));
    let since = now(db);
    let handed = wait_until(Duration::from_secs(30), || {
        db.exec("UPDATE sales SET qty = qty WHERE id = 200");
        std::thread::sleep(Duration::from_millis(500));
        !reasons_since(db, "sums", &since, &by).is_empty()
            && !reasons_since(db, "maxima", &since, &by).is_empty()
    });
    assert!(
        handed,
        "{by} was never handed both refreshes; log:\n{}",
        w.log()
    );
    (w, by)
}

#[test]
fn a_worker_reduces_aggregate_batches_itself_and_the_server_applies_them_exactly() {
    let mut db = database("woff_flow");
    let (w, by) = worker(&mut db, "woff_flow", &[]);
    let rounds = [
        "UPDATE sales SET qty = qty + 1 WHERE id % 7 = 0; DELETE FROM sales WHERE id % 11 = 0",
        // A group emptied, a new one, a key moved, NULLs in every column.
        "DELETE FROM sales WHERE region = 'r3'; INSERT INTO sales VALUES (1001, 'new', 2.50, 7), (1002, NULL, NULL, NULL);
         UPDATE sales SET region = 'r1' WHERE id % 5 = 0",
        // The emptied group comes back; inserted and deleted in one batch.
        "INSERT INTO sales VALUES (1003, 'r3', 1.25, 6); INSERT INTO sales VALUES (1004, 'gone', 9.99, 1); DELETE FROM sales WHERE id = 1004",
    ];
    for dml in rounds {
        let reasons = round(&mut db, dml, &by, &w);
        assert!(
            reasons
                .iter()
                .all(|r| r.contains("reduced to") && r.contains("by an external worker")),
            "{reasons:?}"
        );
    }
    // A large batch: once both stream tables have applied it, the worker's clean-up after its
    // commit (worker_release) truncates the buffer.
    let buffer: String = db.value("SELECT 'pgtrickle_changes.changes_' || 'sales'::regclass::oid");
    let file: i64 = db.value(&format!(
        "SELECT relfilenode::bigint FROM pg_class WHERE oid = '{buffer}'::regclass"
    ));
    round(&mut db, "INSERT INTO sales SELECT g, 'r' || (g % 4), g % 100, g % 9 FROM generate_series(5001, 35000) g", &by, &w);
    // (Waiting without reading the buffer: a reader's lock would make the clean-up delete instead.)
    let truncated = wait_until(Duration::from_secs(30), || {
        db.value::<i64>(&format!(
            "SELECT relfilenode::bigint FROM pg_class WHERE oid = '{buffer}'::regclass"
        )) != file
    });
    assert!(
        truncated,
        "the applied buffer was not truncated; worker log:\n{}",
        w.log()
    );
    assert_eq!(
        db.value::<i64>(&format!("SELECT count(*) FROM {buffer}")),
        0
    );
    let log = w.log();
    assert!(
        log.contains("offloaded=true") && log.contains("stream_table=public.sums"),
        "{log}"
    );
    // MIN/MAX stays on the server, and the worker says why.
    assert!(
        log.contains("refreshing on the server") && log.contains("MIN/MAX"),
        "{log}"
    );
    let maxima = reasons_since(&mut db, "maxima", "-infinity", &by);
    assert!(
        !maxima.is_empty() && maxima.iter().all(|r| !r.contains("reduced to")),
        "{maxima:?}"
    );
    // The registry says what the worker evaluates itself.
    let operators: String = db.value(&format!(
        "SELECT capabilities->>'local_operators' FROM pgtrickle.pgt_worker_registry WHERE worker_id = '{}'",
        by.trim_start_matches("external worker ")
    ));
    assert_eq!(operators, r#"["filter", "project", "count", "sum", "avg"]"#);
}

#[test]
fn what_a_worker_cannot_compute_exactly_is_refreshed_on_the_server() {
    let mut db = database("woff_nan");
    let (w, by) = worker(&mut db, "woff_nan", &[]);
    round(
        &mut db,
        "UPDATE sales SET qty = qty + 1 WHERE id = 1",
        &by,
        &w,
    );
    // A NaN in the batch: no exact local decimal for it.
    let reasons = round(
        &mut db,
        "UPDATE sales SET amount = 'NaN' WHERE id = 2",
        &by,
        &w,
    );
    assert!(
        reasons.iter().all(|r| !r.contains("reduced to")),
        "{reasons:?}"
    );
    assert!(
        w.log().contains("offload not possible for this batch"),
        "{}",
        w.log()
    );
    // A stored NaN sum must be recomputed, which the server does only with its own snapshot.
    let reasons = round(
        &mut db,
        "UPDATE sales SET qty = qty + 1 WHERE id = 6",
        &by,
        &w,
    );
    assert!(
        reasons.iter().all(|r| !r.contains("reduced to")),
        "{reasons:?}"
    );
    // A TRUNCATE in the batch is one replaced row, which no Δ stands for: the server refreshes FULL.
    let reasons = round(
        &mut db,
        "BEGIN; TRUNCATE sales; INSERT INTO sales SELECT g, 'r' || (g % 4), (g % 50) / 4.0, g % 9 FROM generate_series(1, 150) g; COMMIT",
        &by,
        &w,
    );
    assert!(
        reasons
            .iter()
            .any(|r| r == r#""public"."sales" was truncated"#),
        "{reasons:?}"
    );
    // Once the NaN is gone, batches are reduced by the worker again.
    round(&mut db, "UPDATE sales SET amount = 1 WHERE id = 2", &by, &w);
    let reasons = round(
        &mut db,
        "UPDATE sales SET qty = qty + 1 WHERE id = 10",
        &by,
        &w,
    );
    assert!(
        reasons.iter().all(|r| r.contains("reduced to")),
        "{reasons:?}"
    );
}

/// What `worker_offload` answers for `st`'s job, asked directly as `role` (after `session_sql`):
/// (copy_in, not_offloaded, and what `then` finds in the same transaction). The coordinator
/// refreshes `st` every second meanwhile; an answer "another session is refreshing it" is asked again.
fn ask_offload<R>(
    db: &mut TestDb,
    role: &str,
    st: &str,
    session_sql: &str,
    then: impl FnOnce(&mut postgres::Transaction<'_>) -> R,
) -> (Option<String>, Option<String>, R) {
    let mut session = db.connect();
    for attempt in 1.. {
        let mut tx = session.transaction().unwrap();
        tx.batch_execute(&format!(
            "SELECT pgtrickle.worker_register('00000000-0000-4000-8000-0000000000c1', 'test', 1, NULL);
             INSERT INTO pgtrickle.pgt_worker_jobs (pgt_id) SELECT pgt_id FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = '{st}'::regclass;
             SET LOCAL ROLE {role}; {session_sql}"
        ))
        .unwrap();
        let job = tx.query_one("SELECT job_id, attempt FROM pgtrickle.worker_claim('00000000-0000-4000-8000-0000000000c1')", &[]).unwrap();
        let (job_id, job_attempt): (i64, i32) = (job.get(0), job.get(1));
        let row = tx
            .query_one("SELECT copy_in, not_offloaded FROM pgtrickle.worker_offload('00000000-0000-4000-8000-0000000000c1', $1, $2)", &[&job_id, &job_attempt])
            .unwrap();
        let (copy_in, why): (Option<String>, Option<String>) = (row.get(0), row.get(1));
        if why.as_deref() == Some("another session is refreshing it") && attempt < 100 {
            tx.rollback().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        return (copy_in, why, then(&mut tx));
    }
    unreachable!()
}

#[test]
fn a_worker_s_search_path_does_not_reach_what_the_server_creates_for_it() {
    let mut db = database("woff_path");
    // A type named like the staged table's column types, first on the worker role's search_path:
    // the server must create the staged table with pg_catalog's types regardless.
    db.exec(
        "CREATE SCHEMA evil; CREATE DOMAIN evil.text AS pg_catalog.text CHECK (false);
         GRANT USAGE ON SCHEMA evil TO PUBLIC;
         ALTER ROLE woff_path_w SET search_path = evil, pg_catalog",
    );
    let (w, by) = worker(&mut db, "woff_path", &[]);
    let reasons = round(
        &mut db,
        "UPDATE sales SET qty = qty + 1 WHERE id % 3 = 0",
        &by,
        &w,
    );
    assert!(
        reasons.iter().all(|r| r.contains("reduced to")),
        "{reasons:?}\n{}",
        w.log()
    );
    drop(w);

    // Any client holding pgtrickle_worker may call worker_offload with that search_path: the
    // staged table it creates (as the extension's owner) still has pg_catalog's types.
    let (copy_in, _, foreign) = ask_offload(
        &mut db,
        "woff_path_w",
        "sums",
        "SET LOCAL search_path = evil, pg_catalog",
        |tx| {
            tx.query_one(
            "SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
              WHERE a.attrelid IN (SELECT c.oid FROM pg_catalog.pg_class c
                                    WHERE c.relname::pg_catalog.text OPERATOR(pg_catalog.~~) 'pgt_offload_%'::pg_catalog.text
                                      AND c.relpersistence = 't' AND pg_catalog.pg_table_is_visible(c.oid))
                AND a.attnum > 0 AND t.typnamespace <> 'pg_catalog'::pg_catalog.regnamespace",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
        },
    );
    assert!(copy_in.is_some(), "not offloaded");
    assert_eq!(
        foreign, 0,
        "the staged table has a column of a type outside pg_catalog ({copy_in:?})"
    );
}

#[test]
fn sources_a_worker_must_not_reduce_stay_on_the_server_and_say_why() {
    let mut db = database("woff_refuse");
    login_role(&mut db, "woff_refuse_w");
    let ask = |db: &mut TestDb, st: &str| {
        let (copy_in, why, ()) = ask_offload(db, "woff_refuse_w", st, "", |_| ());
        (copy_in, why)
    };
    let (offloadable, why) = ask(&mut db, "sums");
    assert!(offloadable.is_some(), "sums is not offloaded: {why:?}");
    let (_, why) = ask(&mut db, "maxima");
    assert_eq!(why.as_deref(), Some("not evaluated by workers: MIN/MAX"));
    // Row-level security on the source: the owner's query may not see every change row.
    // (Enabling it reinitialises the stream table: refresh that first.)
    db.exec("ALTER TABLE sales ENABLE ROW LEVEL SECURITY; SELECT pgtrickle.refresh_stream_table('sums')");
    let (_, why) = ask(&mut db, "sums");
    assert_eq!(why.as_deref(), Some("its source has row-level security"));
    // (A source with a nondeterministic collation, whose equal strings may differ in bytes, is refused
    // too; DIFFERENTIAL refuses such sources already, so no stream table reaches that check.)
}

#[test]
fn a_partitioned_source_is_offloaded_exactly() {
    let mut db = database("woff_parts");
    let owner = "woff_parts_owner";
    db.exec(&format!(
        "CREATE TABLE psales (id int, region text, amount numeric(12,2), qty int) PARTITION BY RANGE (id);
         CREATE TABLE psales_low PARTITION OF psales FOR VALUES FROM (MINVALUE) TO (100);
         CREATE TABLE psales_high PARTITION OF psales FOR VALUES FROM (100) TO (MAXVALUE);
         INSERT INTO psales SELECT g, 'r' || (g % 3), g / 4.0, g % 7 FROM generate_series(1, 200) g;
         ALTER TABLE psales OWNER TO {owner}; ALTER TABLE psales_low OWNER TO {owner}; ALTER TABLE psales_high OWNER TO {owner};
         SET ROLE {owner};
         SELECT pgtrickle.create_stream_table('psums', 'SELECT region, count(*) AS n, sum(amount) AS total FROM psales GROUP BY region', '1s', 'DIFFERENTIAL');
         RESET ROLE;"
    ));
    let (w, by) = worker(&mut db, "woff_parts", &[]);
    let query = "SELECT region, count(*) AS n, sum(amount) AS total FROM psales GROUP BY region";
    for dml in [
        "UPDATE psales SET qty = qty + 1, amount = amount + 1 WHERE id % 9 = 0",
        // Rows moving between partitions, and writes aimed at a partition directly.
        "UPDATE psales SET id = id + 100 WHERE id BETWEEN 10 AND 20; DELETE FROM psales_high WHERE id % 10 = 0;
         INSERT INTO psales_low VALUES (0, 'new', 1.25, 1)",
    ] {
        let since = now(&mut db);
        db.exec(dml);
        let done = wait_until(Duration::from_secs(30), || !reasons_since(&mut db, "psums", &since, &by).is_empty());
        assert!(done, "no refresh by {by} after: {dml}\n{}", w.log());
        db.assert_matches_query("psums", query);
        let reasons = reasons_since(&mut db, "psums", &since, &by);
        assert!(reasons.iter().all(|r| r.contains("reduced to")), "{reasons:?}");
    }
}

#[test]
fn with_offload_off_the_server_refreshes_everything() {
    let mut db = database("woff_off");
    let (w, by) = worker(&mut db, "woff_off", &["--offload", "off"]);
    let reasons = round(
        &mut db,
        "UPDATE sales SET qty = qty + 1 WHERE id % 3 = 0",
        &by,
        &w,
    );
    assert!(
        reasons.iter().all(|r| !r.contains("reduced to")),
        "{reasons:?}"
    );
    assert!(!w.log().contains("offloaded=true"), "{}", w.log());
    let operators: String = db.value(&format!(
        "SELECT capabilities->>'local_operators' FROM pgtrickle.pgt_worker_registry WHERE worker_id = '{}'",
        by.trim_start_matches("external worker ")
    ));
    assert_eq!(operators, "[]");
}
