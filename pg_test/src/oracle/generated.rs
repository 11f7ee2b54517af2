//! Random defining queries for the oracle: the fixed shapes prove only the combinations someone wrote
//! down, so these combine the same operators at random — joins of every supported kind (inner, left,
//! right and full; equi- and theta conditions; derived grouped tables; a WITH item read twice), WHERE
//! with EXISTS / IN / NOT IN / quantified and correlated scalar subqueries, OR, grouping with every
//! maintained aggregate, HAVING, DISTINCT, UNION [ALL], ORDER BY ... LIMIT. Each query is run like a
//! fixed shape (`may_refuse`: the engine may decline with 0A000, and the run says so), under the
//! oracle's random DML.
//!
//! Only the tables whose values print one way are read (a, b, c: no `1.5`/`1.50` ambiguity for a
//! GROUP BY to pick from), and every aggregate is order-independent, so each query's result is one
//! well-defined multiset.

use super::prng::Rng;
use super::schema::{table, Kind};
use super::shapes::Shape;

/// A column the query can read: its qualified name and kind.
#[derive(Clone)]
struct Col {
    sql: String,
    kind: Kind,
}

struct Gen {
    rng: Rng,
    aliases: usize,
    reads_cte: bool,
}

const SOURCES: [&str; 3] = ["a", "b", "c"];

fn numeric(kind: Kind) -> bool {
    matches!(kind, Kind::Key | Kind::Small | Kind::Amount | Kind::Id)
}

impl Gen {
    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("t{}", self.aliases)
    }

    fn key_of(&mut self, cols: &[Col]) -> String {
        let keys: Vec<&Col> = cols.iter().filter(|c| c.kind == Kind::Key).collect();
        if keys.is_empty() {
            cols[0].sql.clone()
        } else {
            self.rng.pick(&keys).sql.clone()
        }
    }

    fn table_key(&mut self, name: &str) -> String {
        let keys: Vec<&str> = table(name)
            .columns
            .iter()
            .filter(|c| c.kind == Kind::Key)
            .map(|c| c.name)
            .collect();
        self.rng.pick(&keys).to_string()
    }

    /// A FROM item: a source table, a grouped derived table, or a join of the WITH item with itself.
    fn source(&mut self, nested: bool) -> (String, Vec<Col>) {
        let alias = self.alias();
        let roll = self.rng.below(100);
        if !nested && roll < 8 {
            self.reads_cte = true;
            let cols = [("dk", Kind::Key), ("dn", Kind::Small), ("dm", Kind::Small)];
            return (
                format!("(SELECT x.k AS dk, x.n AS dn, y.n AS dm FROM cte_k AS x JOIN cte_k AS y ON x.k = y.k - 1) AS {alias}"),
                cols.iter().map(|(c, k)| Col { sql: format!("{alias}.{c}"), kind: *k }).collect(),
            );
        }
        let name = *self.rng.pick(&SOURCES);
        if !nested && roll < 23 {
            let key = self.table_key(name);
            let sum = table(name)
                .columns
                .iter()
                .find(|c| matches!(c.kind, Kind::Amount | Kind::Small))
                .map_or("count(*)".to_string(), |c| format!("sum({})", c.name));
            return (
                format!("(SELECT {key} AS dk, {sum} AS dv, count(*) AS dn FROM {name} GROUP BY {key}) AS {alias}"),
                vec![
                    Col { sql: format!("{alias}.dk"), kind: Kind::Key },
                    Col { sql: format!("{alias}.dv"), kind: Kind::Amount },
                    Col { sql: format!("{alias}.dn"), kind: Kind::Small },
                ],
            );
        }
        let cols = table(name)
            .columns
            .iter()
            .map(|c| Col {
                sql: format!("{alias}.{}", c.name),
                kind: c.kind,
            })
            .collect();
        (format!("{name} AS {alias}"), cols)
    }

    fn joined_sources(&mut self) -> (String, Vec<Col>) {
        let (mut sql, mut cols) = self.source(false);
        for _ in 0..*self.rng.pick(&[0, 0, 1, 1, 1, 2]) {
            let (right, right_cols) = self.source(true);
            let kind = *self
                .rng
                .pick(&["JOIN", "JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"]);
            let (l, r) = (self.key_of(&cols), self.key_of(&right_cols));
            // PostgreSQL runs FULL JOIN only on conditions it can merge or hash: equalities.
            let on = match self.rng.below(10) {
                _ if kind == "FULL JOIN" => format!("{l} = {r}"),
                0 => format!("{l} <= {r}"),
                1 => format!(
                    "{l} = {r} AND {} IS NOT NULL",
                    self.rng.pick(&right_cols).sql
                ),
                _ => format!("{l} = {r}"),
            };
            sql = format!("{sql} {kind} {right} ON {on}");
            cols.extend(right_cols);
        }
        (sql, cols)
    }

    fn predicate(&mut self, cols: &[Col], top: bool) -> String {
        let col = self.rng.pick(cols).clone();
        let roll = self.rng.below(100);
        if top && roll < 32 {
            let sub = *self.rng.pick(&SOURCES);
            let sk = self.table_key(sub);
            let key = self.key_of(cols);
            return match roll / 4 {
                0 => format!("EXISTS (SELECT 1 FROM {sub} AS sq WHERE sq.{sk} = {key})"),
                1 => format!("NOT EXISTS (SELECT 1 FROM {sub} AS sq WHERE sq.{sk} = {key})"),
                2 => format!("{key} IN (SELECT sq.{sk} FROM {sub} AS sq)"),
                3 => format!("{key} NOT IN (SELECT sq.{sk} FROM {sub} AS sq)"),
                4 => format!(
                    "{key} <> ALL (SELECT sq.{sk} FROM {sub} AS sq WHERE sq.{sk} IS NOT NULL)"
                ),
                5 => format!("{key} = ANY (SELECT sq.{sk} FROM {sub} AS sq)"),
                6 => {
                    format!("{key} >= (SELECT max(sq.{sk}) FROM {sub} AS sq WHERE sq.{sk} = {key})")
                }
                _ => format!(
                    "({} OR {})",
                    self.predicate(cols, false),
                    self.predicate(cols, false)
                ),
            };
        }
        if roll < 45 {
            let not = *self.rng.pick(&["", "NOT "]);
            return format!("{} IS {not}NULL", col.sql);
        }
        let op = *self.rng.pick(&[">", "<", "=", "<>", ">="]);
        let value = match col.kind {
            Kind::Text => "'x'".to_string(),
            Kind::Amount => self.rng.pick(&["0", "1.5", "-1"]).to_string(),
            _ => self.rng.range(0, 5).to_string(),
        };
        format!("{} {op} {value}", col.sql)
    }

    fn aggregate(&mut self, cols: &[Col]) -> String {
        let nums: Vec<Col> = cols.iter().filter(|c| numeric(c.kind)).cloned().collect();
        let texts: Vec<Col> = cols
            .iter()
            .filter(|c| c.kind == Kind::Text)
            .cloned()
            .collect();
        let any = self.rng.pick(cols).sql.clone();
        let num = self.rng.pick(&nums).sql.clone();
        let ordered = if texts.is_empty() || self.rng.chance(50) {
            num.clone()
        } else {
            self.rng.pick(&texts).sql.clone()
        };
        match self.rng.below(11) {
            0 => "count(*)".into(),
            1 => format!("count({any})"),
            2 => format!("sum({num})"),
            3 => format!("avg({num})"),
            4 => format!("min({ordered})"),
            5 => format!("max({ordered})"),
            6 if !texts.is_empty() => {
                let t = self.rng.pick(&texts).sql.clone();
                format!("string_agg({t}, ',' ORDER BY {t})")
            }
            7 => format!("count(DISTINCT {any})"),
            8 => format!("sum(CASE WHEN {num} > 1 THEN {num} ELSE 0 END)"),
            9 => format!("count(*) FILTER (WHERE {num} > 1)"),
            _ => format!("bool_or({num} > 2)"),
        }
    }

    fn order_limit(&mut self, items: usize) -> String {
        if !self.rng.chance(25) {
            return String::new();
        }
        let order: Vec<String> = (1..=items)
            .map(|i| {
                format!(
                    "{i}{}",
                    self.rng
                        .pick(&["", " DESC", " NULLS FIRST", " DESC NULLS LAST"])
                )
            })
            .collect();
        let offset = if self.rng.chance(25) { " OFFSET 1" } else { "" };
        format!(
            " ORDER BY {} LIMIT {}{offset}",
            order.join(", "),
            self.rng.range(1, 6)
        )
    }

    fn query(&mut self) -> String {
        let (from, cols) = self.joined_sources();
        let mut sql = String::new();
        let conditions: Vec<String> = (0..self.rng.below(3))
            .map(|_| self.predicate(&cols, true))
            .collect();
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        if self.rng.chance(45) {
            let keys: Vec<String> = (0..self.rng.below(3))
                .map(|_| {
                    let c = self.rng.pick(&cols).sql.clone();
                    if self.rng.chance(20) {
                        format!("COALESCE({c}::text, '-')")
                    } else {
                        c
                    }
                })
                .collect();
            let mut items = keys.clone();
            for _ in 0..self.rng.range(1, 3) {
                items.push(self.aggregate(&cols));
            }
            let list: Vec<String> = items
                .iter()
                .enumerate()
                .map(|(i, e)| format!("{e} AS c{i}"))
                .collect();
            sql.push_str(&format!("SELECT {} FROM {from}{filter}", list.join(", ")));
            if !keys.is_empty() {
                sql.push_str(&format!(" GROUP BY {}", keys.join(", ")));
                if self.rng.chance(25) {
                    sql.push_str(&format!(" HAVING count(*) > {}", self.rng.range(0, 2)));
                }
            }
            sql.push_str(&self.order_limit(items.len()));
        } else {
            let mut items: Vec<String> = (0..self.rng.range(1, 4))
                .map(|_| self.rng.pick(&cols).sql.clone())
                .collect();
            if self.rng.chance(20) {
                items.push(format!(
                    "COALESCE({}::text, 'none')",
                    self.rng.pick(&cols).sql
                ));
            }
            if self.rng.chance(10) {
                let sub = *self.rng.pick(&SOURCES);
                let sk = self.table_key(sub);
                let key = self.key_of(&cols);
                items.push(format!(
                    "(SELECT max(ss.{sk}) FROM {sub} AS ss WHERE ss.{sk} = {key})"
                ));
            }
            let distinct = if self.rng.chance(20) { "DISTINCT " } else { "" };
            if self.rng.chance(10) {
                // UNION [ALL] with a branch over one table, every column as text.
                let other_name: &str = SOURCES[self.rng.below(SOURCES.len() as u64) as usize];
                let other = table(other_name);
                let list: Vec<String> = items
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("({e})::text AS c{i}"))
                    .collect();
                let branch: Vec<String> = items
                    .iter()
                    .map(|_| format!("({})::text", self.rng.pick(other.columns).name))
                    .collect();
                let set = *self.rng.pick(&["UNION ALL", "UNION"]);
                sql.push_str(&format!(
                    "SELECT {} FROM {from}{filter} {set} SELECT {} FROM {}",
                    list.join(", "),
                    branch.join(", "),
                    other.name
                ));
            } else {
                let list: Vec<String> = items
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("{e} AS c{i}"))
                    .collect();
                sql.push_str(&format!(
                    "SELECT {distinct}{} FROM {from}{filter}",
                    list.join(", ")
                ));
                sql.push_str(&self.order_limit(items.len()));
            }
        }
        if self.reads_cte {
            sql = format!("WITH cte_k AS (SELECT k, count(*) AS n FROM a GROUP BY k) {sql}");
        }
        sql
    }
}

/// `n` random shapes from `seed`, named `gen_<seed>_<i>` (leaked: a shape lives as long as the run).
pub fn shapes(seed: u64, n: usize) -> Vec<&'static Shape> {
    (0..n)
        .map(|i| {
            let mut generator = Gen {
                rng: Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(i as u64)),
                aliases: 0,
                reads_cte: false,
            };
            let query = generator.query();
            let shape = Shape {
                name: Box::leak(format!("gen_{seed}_{i}").into_boxed_str()),
                query: Box::leak(query.into_boxed_str()),
                may_refuse: true,
                upstreams: &[],
            };
            &*Box::leak(Box::new(shape))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_queries_and_they_vary() {
        let (one, two) = (shapes(7, 30), shapes(7, 30));
        assert!(one.iter().zip(&two).all(|(a, b)| a.query == b.query));
        let distinct: std::collections::BTreeSet<&str> = one.iter().map(|s| s.query).collect();
        assert!(distinct.len() >= 28, "{distinct:?}");
        let all: String = one.iter().map(|s| s.query).collect::<Vec<_>>().join("\n");
        for feature in ["FULL JOIN", "GROUP BY", "EXISTS", " IN (", "LIMIT"] {
            assert!(all.contains(feature), "no {feature} in 30 queries:\n{all}");
        }
    }
}
