//! What refreshes cost (`pgtrickle.pgt_cost_model_summary`) and AUTO's choice made from it. No
//! assertion depends on how long anything takes: where a decision is checked, the summary is seeded
//! with known numbers first (as a superuser may).

use pg_trickle_e2e::TestDb;

const TOTALS: &str =
    "SELECT customer, count(*) AS n, sum(amount) AS total FROM orders GROUP BY customer";

fn orders_db(name: &str, mode: &str) -> TestDb {
    let mut db = TestDb::new(name);
    db.exec(
        "CREATE TABLE orders (id serial PRIMARY KEY, customer text NOT NULL, amount numeric(10,2) NOT NULL);
         INSERT INTO orders (customer, amount) SELECT 'c' || (g % 5), g FROM generate_series(1, 100) g;
         ANALYZE orders;",
    );
    db.exec(&format!(
        "SELECT pgtrickle.create_stream_table('totals', '{TOTALS}', '1h', '{mode}')"
    ));
    db
}

fn refresh(db: &mut TestDb) -> (String, String) {
    db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
    let rows = db.rows(
        "SELECT action, coalesce(reason, '') FROM pgtrickle.pgt_refresh_history
          WHERE pgt_id = (SELECT pgt_id FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = 'totals'::regclass)
          ORDER BY refresh_id DESC LIMIT 1",
        &[],
    );
    (rows[0].get(0), rows[0].get(1))
}

/// (full_refreshes, differential_refreshes, differential_changes) of the stream table `totals`.
fn counters(db: &mut TestDb) -> (i64, i64, i64) {
    let rows = db.rows(
        "SELECT full_refreshes, differential_refreshes, differential_changes FROM pgtrickle.pgt_cost_model_summary
          WHERE pgt_id = (SELECT pgt_id FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = 'totals'::regclass)",
        &[],
    );
    assert_eq!(rows.len(), 1, "one summary row per stream table");
    (rows[0].get(0), rows[0].get(1), rows[0].get(2))
}

/// The summary row as text with its xmin: any write to it changes this.
/// The cost model's part of the summary (not the statistics counters, which every refresh adds to).
fn cost_model(db: &mut TestDb) -> String {
    db.value(
        "SELECT row(full_refreshes, full_total_ms, full_last_ms, full_ewma_ms, differential_refreshes,
                    differential_total_ms, differential_changes, differential_last_ms, differential_last_changes,
                    differential_fixed_ms, differential_ms_per_change, fit_mean_changes, fit_mean_ms,
                    fit_var_changes, fit_cov_changes_ms)::text
           FROM pgtrickle.pgt_cost_model_summary",
    )
}

/// Sets the measured costs to known numbers (a superuser may; refreshes then decide by them).
fn seed(db: &mut TestDb, fixed_ms: f64, ms_per_change: f64, full_ms: f64) {
    db.exec(&format!(
        "UPDATE pgtrickle.pgt_cost_model_summary
            SET full_refreshes = 3, full_ewma_ms = {full_ms},
                differential_refreshes = 10, differential_fixed_ms = {fixed_ms}, differential_ms_per_change = {ms_per_change}"
    ));
}

#[test]
fn full_and_differential_refreshes_are_measured_and_no_data_only_counts() {
    let mut db = orders_db("cost_measured", "DIFFERENTIAL");
    // The initial population is a FULL refresh.
    assert_eq!(counters(&mut db), (1, 0, 0));
    let (full_total, full_last, full_ewma): (f64, f64, f64) = {
        let r = db.rows("SELECT full_total_ms, full_last_ms, full_ewma_ms FROM pgtrickle.pgt_cost_model_summary", &[]);
        (r[0].get(0), r[0].get(1), r[0].get(2))
    };
    assert!(full_total >= 0.0 && full_last == full_total && full_ewma == full_last);

    db.exec("INSERT INTO orders (customer, amount) SELECT 'new', g FROM generate_series(1, 5) g");
    assert_eq!(refresh(&mut db).0, "DIFFERENTIAL");
    assert_eq!(counters(&mut db), (1, 1, 5));
    db.exec("UPDATE orders SET amount = amount + 1 WHERE id <= 3"); // 3 updates = 6 change rows
    assert_eq!(refresh(&mut db).0, "DIFFERENTIAL");
    assert_eq!(counters(&mut db), (1, 2, 11));
    let (last_changes, last_ms, total_ms): (i64, f64, f64) = {
        let r = db.rows(
            "SELECT differential_last_changes, differential_last_ms, differential_total_ms FROM pgtrickle.pgt_cost_model_summary",
            &[],
        );
        (r[0].get(0), r[0].get(1), r[0].get(2))
    };
    assert_eq!(last_changes, 6);
    assert!(last_ms >= 0.0 && total_ms >= last_ms);

    // An idle refresh leaves the cost model as it is; it is only counted (pg_stat_pgtrickle).
    let before = cost_model(&mut db);
    assert_eq!(refresh(&mut db).0, "NO_DATA");
    assert_eq!(refresh(&mut db).0, "NO_DATA");
    assert_eq!(cost_model(&mut db), before);
    assert_eq!(
        db.value::<i64>("SELECT stat_no_data_refreshes FROM pgtrickle.pgt_cost_model_summary"),
        2
    );

    // A FULL refresh of a FULL stream table counts as FULL.
    db.exec("SELECT pgtrickle.alter_stream_table('totals', refresh_mode => 'FULL')");
    assert_eq!(refresh(&mut db).0, "FULL");
    assert_eq!(counters(&mut db).0, 2);
    db.assert_matches_query("totals", TOTALS);

    // The summary goes with its stream table.
    db.exec("SELECT pgtrickle.drop_stream_table('totals')");
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM pgtrickle.pgt_cost_model_summary"),
        0
    );
}

#[test]
fn auto_uses_the_ratio_until_costs_are_measured_and_says_so() {
    let mut db = orders_db("cost_fallback", "AUTO");
    db.exec("INSERT INTO orders (customer, amount) VALUES ('small', 1)");
    let (action, reason) = refresh(&mut db);
    assert_eq!(action, "DIFFERENTIAL");
    assert!(
        reason.contains("AUTO kept DIFFERENTIAL by pg_trickle.full_refresh_ratio (0 of 3 DIFFERENTIAL refreshes measured)"),
        "{reason}"
    );
    db.exec("INSERT INTO orders (customer, amount) SELECT 'big', g FROM generate_series(1, 80) g");
    let (action, reason) = refresh(&mut db);
    assert_eq!(action, "FULL");
    assert!(
        reason.starts_with("AUTO chose FULL by pg_trickle.full_refresh_ratio (1 of 3 DIFFERENTIAL refreshes measured): 80 changes exceed 0.5"),
        "{reason}"
    );
    db.assert_matches_query("totals", TOTALS);
}

#[test]
fn auto_picks_full_only_when_the_predicted_differential_cost_exceeds_the_measured_full_cost() {
    let mut db = orders_db("cost_auto", "AUTO");
    // The summary row exists since the initial population (a FULL refresh).
    assert_eq!(counters(&mut db), (1, 0, 0));

    // Measured: 2 ms + 0.5 ms per change; FULL 100 ms. The ratio would refresh any batch FULL, but
    // the measurements decide: one change is predicted at 2.5 ms.
    seed(&mut db, 2.0, 0.5, 100.0);
    db.exec("SET pg_trickle.full_refresh_ratio = 0");
    db.exec("INSERT INTO orders (customer, amount) VALUES ('one', 7)");
    let (action, reason) = refresh(&mut db);
    assert_eq!(action, "DIFFERENTIAL");
    assert_eq!(
        reason,
        "1 change in the batch; AUTO kept DIFFERENTIAL: predicted 2.5 ms for 1 change <= measured full 100 ms (x1.25); model 2.0 ms + 0.500 ms per change"
    );
    db.assert_matches_query("totals", TOTALS);

    // 1000 changes are predicted at 502 ms: FULL, although the ratio would keep DIFFERENTIAL.
    seed(&mut db, 2.0, 0.5, 100.0);
    db.exec("SET pg_trickle.full_refresh_ratio = 1000");
    db.exec(
        "INSERT INTO orders (customer, amount) SELECT 'many', g FROM generate_series(1, 1000) g",
    );
    let (action, reason) = refresh(&mut db);
    assert_eq!(action, "FULL");
    assert_eq!(
        reason,
        "AUTO chose FULL: predicted differential 502 ms for 1000 changes > measured full 100 ms (x1.25); model 2.0 ms + 0.500 ms per change"
    );
    db.assert_matches_query("totals", TOTALS);

    // A DIFFERENTIAL stream table never switches, whatever the costs say.
    db.exec("SELECT pgtrickle.alter_stream_table('totals', refresh_mode => 'DIFFERENTIAL')");
    seed(&mut db, 2.0, 0.5, 100.0);
    db.exec(
        "INSERT INTO orders (customer, amount) SELECT 'more', g FROM generate_series(1, 1000) g",
    );
    let (action, reason) = refresh(&mut db);
    assert_eq!(
        (action.as_str(), reason.as_str()),
        ("DIFFERENTIAL", "1000 changes in the batch")
    );
    db.assert_matches_query("totals", TOTALS);
}

#[test]
fn real_measurements_fit_a_model_that_decides() {
    let mut db = orders_db("cost_fit", "AUTO");
    // Keep the fallback on DIFFERENTIAL while batches of varying size are measured.
    db.exec("SET pg_trickle.full_refresh_ratio = 1000");
    for n in [1, 10, 100] {
        db.exec(&format!(
            "INSERT INTO orders (customer, amount) SELECT 'n{n}', g FROM generate_series(1, {n}) g"
        ));
        assert_eq!(refresh(&mut db).0, "DIFFERENTIAL");
    }
    let (fixed, per_change): (Option<f64>, Option<f64>) = {
        let r = db.rows("SELECT differential_fixed_ms, differential_ms_per_change FROM pgtrickle.pgt_cost_model_summary", &[]);
        (r[0].get(0), r[0].get(1))
    };
    assert!(
        fixed.is_some_and(|v| v >= 0.0) && per_change.is_some_and(|v| v >= 0.0),
        "{fixed:?} {per_change:?}"
    );
    // From now on the measurements decide (which way depends on this machine's timings).
    db.exec("INSERT INTO orders (customer, amount) SELECT 'n5', g FROM generate_series(1, 5) g");
    let (action, reason) = refresh(&mut db);
    if action == "FULL" {
        assert!(
            reason.starts_with("AUTO chose FULL: predicted differential "),
            "{reason}"
        );
    } else {
        assert_eq!(action, "DIFFERENTIAL");
        assert!(
            reason.starts_with("5 changes in the batch; AUTO kept DIFFERENTIAL: predicted "),
            "{reason}"
        );
    }
    db.assert_matches_query("totals", TOTALS);
}
