//! The 22 TPC-H queries as DIFFERENTIAL stream tables over generated data (scale factor 0.01): each is
//! accepted, and after every round of refresh functions and key updates each refreshes DIFFERENTIALly
//! and equals its query as a multiset. A failing query prints how to reproduce it.

use pg_trickle_e2e::tpch::{self, QUERIES};
use pg_trickle_e2e::TestDb;

const SCALE_FACTOR: &str = "0.01";
const ROUNDS: i64 = 3;

fn reproduction(name: &str, sql: &str, round: i64, done: &[String]) -> String {
    format!(
        "to reproduce: scripts/tpch-data {SCALE_FACTOR} <dir>; load it into the schema of pg_test/src/tpch.rs; \
         SELECT pgtrickle.create_stream_table('{name}', $q${sql}$q$, '1h', 'DIFFERENTIAL'); then run rounds 1..{round} \
         of tpch::changes, refreshing after each. Round {round} was:\n{}",
        done.join(";\n")
    )
}

#[test]
fn every_tpch_query_is_maintained_exactly() {
    let mut db = TestDb::new("tpch");
    tpch::load(&mut db, SCALE_FACTOR);

    let mut accepted = Vec::new();
    for query in &QUERIES {
        db.exec(&format!(
            "SELECT pgtrickle.create_stream_table('{}', $q${}$q$, '1h', 'DIFFERENTIAL')",
            query.name, query.sql
        ));
        let diff = db.multiset_diff(query.name, query.sql);
        assert!(
            diff.is_empty(),
            "{} differs from its query after creation:\n{}",
            query.name,
            diff.join("\n")
        );
        accepted.push(query);
    }

    // Each stream table's contents, to show the rounds change every one of them.
    let contents = |db: &mut TestDb, name: &str| -> String {
        db.value(&format!(
            "SELECT coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM {name} x"
        ))
    };
    let initial: Vec<String> = accepted.iter().map(|q| contents(&mut db, q.name)).collect();
    let mut changed = vec![false; accepted.len()];
    for round in 1..=ROUNDS {
        let changes = tpch::changes(round);
        for statement in &changes {
            db.exec(statement);
        }
        for (i, query) in accepted.iter().enumerate() {
            db.exec(&format!(
                "SELECT pgtrickle.refresh_stream_table('{}')",
                query.name
            ));
            let (action, reason) = db.last_refresh(query.name);
            assert!(
                action == "DIFFERENTIAL" || action == "NO_DATA",
                "{} round {round}: {action} ({reason})\n{}",
                query.name,
                reproduction(query.name, query.sql, round, &changes)
            );
            let diff = db.multiset_diff(query.name, query.sql);
            assert!(
                diff.is_empty(),
                "{} differs from its query after round {round}:\n{}\n{}",
                query.name,
                diff.join("\n"),
                reproduction(query.name, query.sql, round, &changes)
            );
            changed[i] |= contents(&mut db, query.name) != initial[i];
        }
    }
    let unchanged: Vec<&str> = accepted
        .iter()
        .zip(&changed)
        .filter(|(_, c)| !**c)
        .map(|(q, _)| q.name)
        .collect();
    assert!(
        unchanged.is_empty(),
        "the rounds never changed {unchanged:?}: they prove nothing about them"
    );
}
