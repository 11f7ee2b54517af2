//! What a failure prints: the shrunk log as a script to paste into psql.

use super::check::diff_sql;
use super::runner::{Entry, Runner};

/// A psql script that rebuilds the failing state from nothing and shows the difference: every
/// comparison query at the end must return no rows.
pub fn script(runner: &Runner, log: &[Entry]) -> String {
    let mut out = vec![format!(
        "-- pg_trickle oracle repro: shape {}, differential twin mode {}",
        runner.shape.name, runner.diff_mode
    )];
    let names: Vec<&str> = runner.sources.iter().map(|t| t.name).collect();
    statements(
        &mut out,
        vec![
            "CREATE EXTENSION IF NOT EXISTS pg_trickle".into(),
            format!("DROP TABLE IF EXISTS {} CASCADE", names.join(", ")),
        ],
    );
    statements(&mut out, runner.executor.setup_statements());
    statements(
        &mut out,
        runner.sources.iter().map(|t| t.ddl.to_string()).collect(),
    );
    statements(&mut out, runner.create_statements());
    for (index, op) in log {
        out.push(format!("-- operation {index}"));
        statements(&mut out, runner.statements(*index, op));
    }
    if runner.columns().is_empty() {
        // Creating the twins failed: that is the repro.
        return out.join("\n");
    }
    out.push("-- each comparison must return no rows".into());
    statements(
        &mut out,
        runner.comparisons().iter().map(diff_sql).collect(),
    );
    if runner.diff_mode == "DIFFERENTIAL" {
        out.push("-- must be DIFFERENTIAL or NO_DATA (FULL with a reason right after a TRUNCATE of a source)".into());
        statements(
            &mut out,
            vec![format!(
                "SELECT h.action, h.reason, h.status FROM pgtrickle.pgt_refresh_history h
  JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
 WHERE s.pgt_relid = '{}'::regclass ORDER BY h.refresh_id DESC LIMIT 1",
                runner.twin_d()
            )],
        );
    }
    out.join("\n")
}

fn statements(out: &mut Vec<String>, list: Vec<String>) {
    out.extend(list.into_iter().map(|s| format!("{s};")));
}
