//! The source tables and the value domains their columns draw from. Domains are small on purpose:
//! join and group keys collide, MIN/MAX ties happen, and NULL shows up everywhere (~10%).

use super::prng::Rng;

#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    /// Join / group key: 0..=5 or NULL.
    Key,
    /// numeric(10,2): mostly a coarse grid (ties), sometimes anything, or NULL.
    Amount,
    /// Short texts, including '' (not NULL) and NULL.
    Text,
    /// Small int, -3..=10 or NULL.
    Small,
    /// Primary key, 0..=24.
    Id,
    /// Unconstrained numeric: equal values at different scales (1.5, 1.50, -0.0, 0).
    Scaled,
    /// interval: equal spans written differently ('1 day', '24 hours').
    Span,
    /// float8 with both zeros (0 and -0 are equal, and print differently).
    Float,
    /// citext: 'a' and 'A' are equal.
    Ci,
}

pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

pub struct Table {
    pub name: &'static str,
    pub ddl: &'static str,
    pub columns: &'static [Column],
    /// Whether `columns[0]` is a primary key (inserts must not collide).
    pub has_pk: bool,
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, kind }
}

pub const TABLES: [Table; 4] = [
    Table {
        name: "a",
        // With a view over it, read by shapes as TPC-H Q15 reads `revenue0`.
        // `g` and `k` lead indexes (a refresh reads groups keyed by them as one array; b's and c's
        // groups it reads by a semi-join), which (g, v), (k, t) and (k, v) serve MIN/MAX per group.
        ddl: "CREATE TABLE a (k int, g int, v numeric(10,2), t text);
              CREATE INDEX a_g ON a (g); CREATE INDEX a_g_v ON a (g, v);
              CREATE INDEX a_k_t ON a (k, t); CREATE INDEX a_k_v ON a (k, v);
              CREATE VIEW a_totals (k, total) AS SELECT k, sum(v) FROM a GROUP BY k",
        columns: &[col("k", Kind::Key), col("g", Kind::Key), col("v", Kind::Amount), col("t", Kind::Text)],
        has_pk: false,
    },
    Table {
        name: "b",
        ddl: "CREATE TABLE b (k int, lo int, hi int, w numeric(10,2), s text); CREATE INDEX b_s ON b USING hash (s)",
        columns: &[
            col("k", Kind::Key),
            col("lo", Kind::Key),
            col("hi", Kind::Key),
            col("w", Kind::Amount),
            col("s", Kind::Text),
        ],
        has_pk: false,
    },
    Table {
        name: "c",
        ddl: "CREATE TABLE c (id int PRIMARY KEY, k int, q int, name text); CREATE INDEX c_q_name ON c (q, name)",
        columns: &[col("id", Kind::Id), col("k", Kind::Key), col("q", Kind::Small), col("name", Kind::Text)],
        has_pk: true,
    },
    // Values that are equal but print differently: a stream table must show what its query shows.
    // With a view computing a window function (read by `window_top_view`).
    Table {
        name: "r",
        ddl: "CREATE EXTENSION IF NOT EXISTS citext; CREATE TABLE r (id int PRIMARY KEY, k int, x numeric, iv interval, f float8, ci citext); CREATE INDEX r_ci ON r (ci);
              CREATE VIEW r_ranked AS SELECT id, k, ci, dense_rank() OVER (PARTITION BY k ORDER BY ci) AS d FROM r",
        columns: &[
            col("id", Kind::Id),
            col("k", Kind::Key),
            col("x", Kind::Scaled),
            col("iv", Kind::Span),
            col("f", Kind::Float),
            col("ci", Kind::Ci),
        ],
        has_pk: true,
    },
];

pub fn table(name: &str) -> &'static Table {
    TABLES
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no source table {name}"))
}

impl Table {
    /// Every column, for ORDER BY: rows that tie are identical, so "the n-th row" is deterministic
    /// by content even though which physical duplicate it is is not.
    pub fn all_columns(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Columns an UPDATE may change (never the primary key).
    pub fn mutable_columns(&self) -> &'static [Column] {
        if self.has_pk {
            &self.columns[1..]
        } else {
            self.columns
        }
    }
}

/// A random SQL literal for `kind`.
pub fn literal(rng: &mut Rng, kind: Kind) -> String {
    if kind != Kind::Id && rng.chance(10) {
        return "NULL".into();
    }
    match kind {
        Kind::Key => rng.range(0, 5).to_string(),
        Kind::Small => rng.range(-3, 10).to_string(),
        Kind::Id => rng.range(0, 24).to_string(),
        Kind::Text => format!("'{}'", rng.pick(&["x", "y", "z", "xy", ""])),
        Kind::Scaled => rng
            .pick(&[
                "1.5", "1.50", "1.500", "2", "2.0", "0", "-0.0", "0.00", "10.25", "-3",
            ])
            .to_string(),
        Kind::Span => format!(
            "'{}'",
            rng.pick(&[
                "1 day",
                "24 hours",
                "1 day 1 hour",
                "25 hours",
                "0",
                "00:00:00",
                "-1 day"
            ])
        ),
        Kind::Float => rng.pick(&["0", "'-0'", "1.5", "-1.5", "2"]).to_string(),
        Kind::Ci => format!("'{}'", rng.pick(&["a", "A", "b", "B", "ab", "AB"])),
        Kind::Amount => {
            let cents = if rng.chance(85) {
                rng.range(-8, 32) * 125
            } else {
                rng.range(-99_999, 999_999)
            };
            cents_literal(cents)
        }
    }
}

/// A non-NULL literal, for comparisons in predicates.
pub fn plain_literal(rng: &mut Rng, kind: Kind) -> String {
    loop {
        let l = literal(rng, kind);
        if l != "NULL" {
            return l;
        }
    }
}

fn cents_literal(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}
