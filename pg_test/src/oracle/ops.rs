//! The operation log: random DML against the sources, and refresh points. Every operation is valid in
//! any table state (no PK collisions, scalar subqueries may be NULL), so any subset of a log replays.

use super::prng::Rng;
use super::schema::{literal, plain_literal, Kind, Table};

#[derive(Clone, Debug)]
pub enum Op {
    /// One autocommitted DML statement.
    Dml(String),
    /// Several DML statements in one explicit transaction, committed or rolled back.
    Txn {
        stmts: Vec<String>,
        commit: bool,
    },
    Truncate(&'static str),
    /// Refresh both twins, then compare. In REPEATABLE READ, as the scheduler refreshes (a manual
    /// refresh outside a transaction runs in READ COMMITTED, which the engine treats differently).
    Refresh {
        repeatable_read: bool,
    },
}

impl Op {
    /// Whether the twins are refreshed (and so compared) by this operation.
    pub fn refreshes(&self) -> bool {
        matches!(self, Op::Refresh { .. })
    }

    /// A transaction as separate operations (for the shrinker: a shorter repro reads better
    /// without transaction boundaries that do not matter).
    pub fn split(&self) -> Option<Vec<Op>> {
        let Op::Txn { stmts, .. } = self else {
            return None;
        };
        Some(stmts.iter().cloned().map(Op::Dml).collect())
    }

    /// The statements that carry it out, sent one by one; `twins` are refreshed in order, each by the
    /// statement `refresh` makes for it.
    pub fn statements(&self, twins: &[&str], refresh: &dyn Fn(&str) -> String) -> Vec<String> {
        match self {
            Op::Dml(sql) => vec![sql.clone()],
            Op::Truncate(table) => vec![format!("TRUNCATE {table}")],
            Op::Refresh { repeatable_read } => {
                let refresh = twins.iter().map(|t| refresh(t));
                match repeatable_read {
                    false => refresh.collect(),
                    true => std::iter::once("BEGIN ISOLATION LEVEL REPEATABLE READ".to_string())
                        .chain(refresh)
                        .chain(["COMMIT".into()])
                        .collect(),
                }
            }
            Op::Txn { stmts, commit } => {
                let end = if *commit { "COMMIT" } else { "ROLLBACK" };
                std::iter::once("BEGIN".to_string())
                    .chain(stmts.iter().cloned())
                    .chain([end.into()])
                    .collect()
            }
        }
    }
}

pub struct Generator {
    rng: Rng,
    sources: Vec<&'static Table>,
    until_refresh: u64,
}

impl Generator {
    pub fn new(seed: u64, sources: Vec<&'static Table>) -> Generator {
        let mut generator = Generator {
            rng: Rng::new(seed),
            sources,
            until_refresh: 0,
        };
        generator.until_refresh = generator.refresh_gap();
        generator
    }

    /// Operations until the next refresh point: usually 5..=40, sometimes none at all (a refresh
    /// with nothing to do is a case of its own).
    fn refresh_gap(&mut self) -> u64 {
        if self.rng.chance(5) {
            0
        } else {
            self.rng.range(5, 40) as u64
        }
    }

    /// The next operation; `sizes[i]` is the current row count of `sources[i]` (it steers the mix of
    /// inserts and deletes so tables stay small enough for joins, and never empty for long).
    pub fn next(&mut self, sizes: &[i64]) -> Op {
        if self.until_refresh == 0 {
            self.until_refresh = self.refresh_gap();
            return Op::Refresh {
                repeatable_read: self.rng.chance(30),
            };
        }
        self.until_refresh -= 1;
        let roll = self.rng.below(1000);
        if roll < 3 {
            let t = *self.rng.pick(&self.sources);
            return Op::Truncate(t.name);
        }
        if roll < 43 {
            let stmts = (0..self.rng.range(2, 4)).map(|_| self.dml(sizes)).collect();
            return Op::Txn {
                stmts,
                commit: self.rng.chance(80),
            };
        }
        Op::Dml(self.dml(sizes))
    }

    fn dml(&mut self, sizes: &[i64]) -> String {
        let i = self.rng.below(self.sources.len() as u64) as usize;
        let (t, size) = (self.sources[i], sizes[i]);
        let weights: [u64; 3] = match size {
            ..=29 => [70, 20, 10],
            81.. => [20, 25, 55],
            _ => [50, 30, 20],
        };
        match self.rng.weighted(&weights) {
            0 => self.insert(t, size),
            1 => self.update(t, size),
            _ => self.delete(t, size),
        }
    }

    fn row(&mut self, t: &Table) -> String {
        let values: Vec<String> = t
            .columns
            .iter()
            .map(|c| literal(&mut self.rng, c.kind))
            .collect();
        format!("({})", values.join(", "))
    }

    fn offset(&mut self, size: i64) -> u64 {
        self.rng.below(size.max(1) as u64)
    }

    fn insert(&mut self, t: &Table, size: i64) -> String {
        let (name, cols) = (t.name, t.all_columns());
        let on_conflict = if t.has_pk {
            " ON CONFLICT (id) DO NOTHING"
        } else {
            ""
        };
        match self.rng.weighted(&[50, 25, 20, 5]) {
            0 => format!("INSERT INTO {name} ({cols}) VALUES {}{on_conflict}", self.row(t)),
            1 => {
                let rows: Vec<String> = (0..self.rng.range(2, 6)).map(|_| self.row(t)).collect();
                format!("INSERT INTO {name} ({cols}) VALUES {}{on_conflict}", rows.join(", "))
            }
            // An exact duplicate of an existing row (a fresh id where there is a key).
            2 if t.has_pk => {
                let (id, rest) = (literal(&mut self.rng, Kind::Id), cols.split_once(", ").unwrap().1);
                let n = self.offset(size);
                format!("INSERT INTO {name} ({cols}) SELECT {id}, {rest} FROM {name} ORDER BY id OFFSET {n} LIMIT 1{on_conflict}")
            }
            2 => format!("INSERT INTO {name} ({cols}) SELECT {cols} FROM {name} ORDER BY {cols} OFFSET {} LIMIT 1", self.offset(size)),
            _ if t.has_pk => {
                let sets: Vec<String> = t.mutable_columns().iter().map(|c| format!("{0} = EXCLUDED.{0}", c.name)).collect();
                format!("INSERT INTO {name} ({cols}) VALUES {} ON CONFLICT (id) DO UPDATE SET {}", self.row(t), sets.join(", "))
            }
            // Duplicates a whole slice of the table, while it is small.
            _ if size < 40 => format!("INSERT INTO {name} ({cols}) SELECT {cols} FROM {name} WHERE {}", self.predicate(t)),
            _ => format!("INSERT INTO {name} ({cols}) VALUES {}", self.row(t)),
        }
    }

    fn update(&mut self, t: &Table, size: i64) -> String {
        let mut cols: Vec<_> = t.mutable_columns().iter().collect();
        let n = if self.rng.chance(25) { 2 } else { 1 };
        let mut sets = Vec::new();
        for _ in 0..n {
            let c = cols.remove(self.rng.below(cols.len() as u64) as usize);
            let value = match self.rng.weighted(&[45, 10, 30, 15]) {
                0 => literal(&mut self.rng, c.kind),
                1 => "NULL".into(),
                2 => match c.kind {
                    Kind::Key => format!("({} + 1) % 6", c.name),
                    Kind::Small | Kind::Id => format!("{} + 1", c.name),
                    Kind::Amount => self
                        .rng
                        .pick(&["{} + 1.25", "-{}", "{} - 20"])
                        .replace("{}", c.name),
                    Kind::Text => format!("CASE {} WHEN 'x' THEN 'y' ELSE 'x' END", c.name),
                    // The same values, printed differently.
                    Kind::Scaled => self
                        .rng
                        .pick(&["{} * 1.0", "round({}, 0)", "{} + 0.000", "trim_scale({})"])
                        .replace("{}", c.name),
                    Kind::Span => self
                        .rng
                        .pick(&["justify_hours({})", "{} + '0 s'", "{} * 24 / 24"])
                        .replace("{}", c.name),
                    Kind::Float => format!("-{}", c.name),
                    Kind::Ci => self
                        .rng
                        .pick(&["upper({})::citext", "lower({})::citext"])
                        .replace("{}", c.name),
                },
                // Rewrites rows without changing them.
                _ => c.name.to_string(),
            };
            sets.push(format!("{} = {value}", c.name));
        }
        format!(
            "UPDATE {} SET {} WHERE {}",
            t.name,
            sets.join(", "),
            self.target(t, size)
        )
    }

    fn delete(&mut self, t: &Table, size: i64) -> String {
        let name = t.name;
        let group = *self.rng.pick(&group_columns(t));
        let target = match self.rng.weighted(&[25, 35, 10, 10, 20]) {
            0 => self.predicate(t),
            1 => self.target(t, size),
            // The last row of every group that has one left.
            2 => format!(
                "{group} IN (SELECT {group} FROM {name} GROUP BY {group} HAVING count(*) = 1)"
            ),
            3 => format!(
                "{group} IS NOT DISTINCT FROM {}",
                literal(
                    &mut self.rng,
                    t.columns.iter().find(|c| c.name == group).unwrap().kind
                )
            ),
            _ => self.extreme(t),
        };
        format!("DELETE FROM {name} WHERE {target}")
    }

    /// Which rows an UPDATE (or DELETE) hits: a predicate, one row, or the current MIN/MAX.
    fn target(&mut self, t: &Table, size: i64) -> String {
        match self.rng.weighted(&[50, 30, 20]) {
            0 => self.predicate(t),
            1 => format!(
                "ctid = (SELECT ctid FROM {0} ORDER BY {1} OFFSET {2} LIMIT 1)",
                t.name,
                t.all_columns(),
                self.offset(size)
            ),
            _ => self.extreme(t),
        }
    }

    /// Rows holding the MIN or MAX of a column, overall or per group.
    fn extreme(&mut self, t: &Table) -> String {
        let f = *self.rng.pick(&["min", "max"]);
        let value = *self.rng.pick(&value_columns(t));
        if self.rng.chance(70) {
            format!("{value} = (SELECT {f}({value}) FROM {})", t.name)
        } else {
            let groups: Vec<&str> = group_columns(t)
                .into_iter()
                .filter(|g| *g != value)
                .collect();
            let group = *self.rng.pick(&groups);
            format!(
                "({group}, {value}) IN (SELECT {group}, {f}({value}) FROM {} GROUP BY {group})",
                t.name
            )
        }
    }

    fn predicate(&mut self, t: &Table) -> String {
        let first = self.atom(t);
        match self.rng.weighted(&[55, 35, 10]) {
            0 => first,
            1 => format!("{first} AND {}", self.atom(t)),
            _ => format!("({first} OR {})", self.atom(t)),
        }
    }

    fn atom(&mut self, t: &Table) -> String {
        let c = self.rng.pick(t.columns);
        let (name, rng) = (c.name, &mut self.rng);
        let lit = plain_literal(rng, c.kind);
        match (c.kind, rng.below(4)) {
            (_, 0) => format!("{name} IS NULL"),
            (_, 1) => format!("{name} = {lit}"),
            (Kind::Text, 2) => format!("{name} <> {lit}"),
            (Kind::Text, _) => format!("{name} LIKE 'x%'"),
            (Kind::Amount, 2) => format!("{name} BETWEEN {lit} AND {}", plain_literal(rng, c.kind)),
            (_, 2) => format!("{name} IN ({lit}, {})", plain_literal(rng, c.kind)),
            _ => format!("{name} > {lit}"),
        }
    }
}

/// Columns that work as grouping keys (small domains).
fn group_columns(t: &Table) -> Vec<&'static str> {
    t.columns
        .iter()
        .filter(|c| matches!(c.kind, Kind::Key | Kind::Text))
        .map(|c| c.name)
        .collect()
}

/// Columns whose MIN/MAX is interesting to delete or move.
fn value_columns(t: &Table) -> Vec<&'static str> {
    t.columns
        .iter()
        .filter(|c| {
            matches!(
                c.kind,
                Kind::Amount | Kind::Small | Kind::Text | Kind::Scaled | Kind::Span | Kind::Float
            )
        })
        .map(|c| c.name)
        .collect()
}
