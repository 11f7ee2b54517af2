//! The comparisons: each twin against the defining query and against each other, as multisets over
//! the visible columns; and the refresh history, so a differential twin cannot silently fall back to FULL.

use crate::db::as_db_error;
use postgres::Client;

/// Why a run stopped. `kind` identifies the failure for the shrinker (a smaller log must fail the same
/// way); `detail` is what a person needs to see.
#[derive(Clone, Debug)]
pub struct Failure {
    pub kind: String,
    pub detail: String,
}

impl Failure {
    pub fn sql(statement: &str, e: &postgres::Error) -> Failure {
        let (code, message) = match as_db_error(e) {
            Some(d) => (
                d.code,
                format!(
                    "{}{}",
                    d.message,
                    d.detail
                        .map(|d| format!("\nDETAIL: {d}"))
                        .unwrap_or_default()
                ),
            ),
            None => ("client".into(), e.to_string()),
        };
        // The kind names the statement class (e.g. refresh_stream_table, UPDATE), not its text, so
        // the shrinker keeps the failure while operations around it change.
        let what = match statement.split_once("pgtrickle.") {
            Some((_, call)) => call.split('(').next().unwrap_or(call).to_string(),
            None => statement
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_uppercase(),
        };
        Failure {
            kind: format!("error {code} in {what}"),
            detail: format!("{statement}\nfailed: {code} {message}"),
        }
    }
}

/// The visible columns of `table`, quoted and in order: hidden `__pgt_*` bookkeeping is not content.
pub fn visible_columns(client: &mut Client, table: &str) -> Result<String, Failure> {
    let sql = "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
                WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped
                  AND attname NOT LIKE '\\_\\_pgt\\_%'";
    let row = client
        .query_one(sql, &[&table])
        .map_err(|e| Failure::sql(sql, &e))?;
    Ok(row.get::<_, Option<String>>(0).unwrap_or_default())
}

/// One multiset comparison: `left` and `right` are row sources (a table's columns, or a query).
pub struct Comparison {
    pub left: (String, String),
    pub right: (String, String),
}

/// The SQL that lists rows in one side and not the other (EXCEPT ALL both ways), labelled; empty
/// means equal as multisets. Rows are compared in their text form, as a reader sees them: equal
/// values that print differently (numeric 2.5 and 2.50) are a difference too. Also what the repro
/// script prints.
pub fn diff_sql(c: &Comparison) -> String {
    let ((ln, l), (rn, r)) = (&c.left, &c.right);
    // The whole row under an alias no column has: `x::text` would read a column named x.
    let text = |sql: &str| format!("SELECT \"pgt row\"::text FROM ({sql}) AS \"pgt row\"");
    let (l, r) = (text(l), text(r));
    format!(
        "SELECT 'only in {ln} (vs {rn})' AS side, d.txt FROM (({l}) EXCEPT ALL ({r})) d(txt)
         UNION ALL
         SELECT 'only in {rn} (vs {ln})', d.txt FROM (({r}) EXCEPT ALL ({l})) d(txt)"
    )
}

/// Runs the comparisons in order and returns the number of rows the query produced, or the first
/// comparison that differs with (up to 40 of) its differing rows.
pub fn compare(
    client: &mut Client,
    query: &str,
    comparisons: &[Comparison],
) -> Result<u64, Failure> {
    for c in comparisons {
        let sql = format!("{} ORDER BY 1, 2 LIMIT 41", diff_sql(c));
        let rows = client
            .query(&sql, &[])
            .map_err(|e| Failure::sql(&sql, &e))?;
        if !rows.is_empty() {
            let mut lines: Vec<String> = rows
                .iter()
                .take(40)
                .map(|r| format!("  {}: {}", r.get::<_, String>(0), r.get::<_, String>(1)))
                .collect();
            if rows.len() > 40 {
                lines.push("  ...".into());
            }
            return Err(Failure {
                kind: format!("{} differs from {}", c.left.0, c.right.0),
                detail: format!(
                    "{} differs from {} as a multiset:\n{}",
                    c.left.0,
                    c.right.0,
                    lines.join("\n")
                ),
            });
        }
    }
    let sql = format!("SELECT count(*) FROM ({query}) q");
    let n: i64 = client
        .query_one(&sql, &[])
        .map_err(|e| Failure::sql(&sql, &e))?
        .get(0);
    Ok(n as u64)
}

/// The newest history row of `table`: (action, reason, status).
pub fn last_refresh(client: &mut Client, table: &str) -> Result<(String, String, String), Failure> {
    let sql = "SELECT h.action, coalesce(h.reason, ''), h.status
                 FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
                WHERE s.pgt_relid = $1::text::regclass ORDER BY h.refresh_id DESC LIMIT 1";
    let row = client
        .query_one(sql, &[&table])
        .map_err(|e| Failure::sql(sql, &e))?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// A differential refresh must say so: DIFFERENTIAL or NO_DATA, except right after a TRUNCATE of a
/// source, which must be a FULL refresh that gives its reason.
pub fn no_silent_fallback(
    client: &mut Client,
    table: &str,
    after_truncate: bool,
) -> Result<(), Failure> {
    let (action, reason, status) = last_refresh(client, table)?;
    let ok = status == "SUCCESS"
        && match after_truncate {
            true => action == "FULL" && !reason.trim().is_empty(),
            false => action == "DIFFERENTIAL" || action == "NO_DATA",
        };
    if ok {
        return Ok(());
    }
    let expected = if after_truncate {
        "FULL with a reason (a source was truncated)"
    } else {
        "DIFFERENTIAL or NO_DATA"
    };
    Err(Failure {
        kind: format!("{table} refreshed as {action}"),
        detail: format!("{table}: newest history row is action={action} status={status} reason={reason:?}; expected {expected}"),
    })
}
