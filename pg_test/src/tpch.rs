//! TPC-H for the tests: the schema, data from a generator (`scripts/tpch-data`, tpchgen-cli from
//! PyPI), the 22 queries with the specification's validation parameters (a trailing ORDER BY without
//! LIMIT dropped: a stream table is a set of rows), and the refresh functions that change the data.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use crate::TestDb;

/// The eight tables, with their primary keys, and Q15's view.
pub const SCHEMA: &str = include_str!("../../tpch/schema.sql");

/// One round of the refresh functions (RF1, RF2), `{round}` to be replaced.
const REFRESH_FUNCTIONS: &str = include_str!("../../tpch/refresh.sql");

const TABLES: [&str; 8] = [
    "region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem",
];

/// One TPC-H query: its name and text. All 22 are maintained DIFFERENTIALly.
pub struct Query {
    pub name: &'static str,
    pub sql: &'static str,
}

const fn q(name: &'static str, sql: &'static str) -> Query {
    Query { name, sql }
}

pub const QUERIES: [Query; 22] = [
    q("q01", include_str!("../../tpch/queries/q01.sql")),
    q("q02", include_str!("../../tpch/queries/q02.sql")),
    q("q03", include_str!("../../tpch/queries/q03.sql")),
    q("q04", include_str!("../../tpch/queries/q04.sql")),
    q("q05", include_str!("../../tpch/queries/q05.sql")),
    q("q06", include_str!("../../tpch/queries/q06.sql")),
    q("q07", include_str!("../../tpch/queries/q07.sql")),
    q("q08", include_str!("../../tpch/queries/q08.sql")),
    q("q09", include_str!("../../tpch/queries/q09.sql")),
    q("q10", include_str!("../../tpch/queries/q10.sql")),
    q("q11", include_str!("../../tpch/queries/q11.sql")),
    q("q12", include_str!("../../tpch/queries/q12.sql")),
    q("q13", include_str!("../../tpch/queries/q13.sql")),
    q("q14", include_str!("../../tpch/queries/q14.sql")),
    q("q15", include_str!("../../tpch/queries/q15.sql")),
    q("q16", include_str!("../../tpch/queries/q16.sql")),
    q("q17", include_str!("../../tpch/queries/q17.sql")),
    q("q18", include_str!("../../tpch/queries/q18.sql")),
    q("q19", include_str!("../../tpch/queries/q19.sql")),
    q("q20", include_str!("../../tpch/queries/q20.sql")),
    q("q21", include_str!("../../tpch/queries/q21.sql")),
    q("q22", include_str!("../../tpch/queries/q22.sql")),
];

/// Creates the schema in `db` and loads TPC-H data at scale factor `sf` (generated once per scale
/// factor under target/tpch-data/).
pub fn load(db: &mut TestDb, sf: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join(format!("target/tpch-data/sf{sf}"));
    let status = Command::new(root.join("scripts/tpch-data"))
        .arg(sf)
        .arg(&dir)
        .status()
        .expect("run scripts/tpch-data");
    assert!(
        status.success(),
        "scripts/tpch-data {sf} {} failed",
        dir.display()
    );
    db.exec(SCHEMA);
    for table in TABLES {
        let data = std::fs::read(dir.join(format!("{table}.csv"))).expect("read generated data");
        let mut copy = db
            .client
            .copy_in(&format!(
                "COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)"
            ))
            .unwrap();
        copy.write_all(&data).unwrap();
        copy.finish()
            .unwrap_or_else(|e| panic!("loading {table}: {e}"));
    }
    db.exec("VACUUM ANALYZE");
}

/// One round of changes, `round` = 1, 2, ...: the TPC-H refresh functions (`tpch/refresh.sql`: RF1,
/// new orders with their lineitems; RF2, orders deleted with their lineitems), about 0.1% of the
/// orders each, then updates of measures, join keys and grouping keys. Each statement is its own
/// transaction.
/// Q3's orders by revenue, best first.
const Q3_ORDER: &str = "SELECT l_orderkey FROM customer, orders, lineitem
    WHERE c_mktsegment = 'BUILDING' AND c_custkey = o_custkey AND l_orderkey = o_orderkey
      AND o_orderdate < date '1995-03-15' AND l_shipdate > date '1995-03-15'
    GROUP BY l_orderkey ORDER BY sum(l_extendedprice * (1 - l_discount)) DESC, l_orderkey";

pub fn changes(round: i64) -> Vec<String> {
    let sql: Vec<&str> = REFRESH_FUNCTIONS
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect();
    let mut statements: Vec<String> = sql
        .join("\n")
        .replace("{round}", &round.to_string())
        .split(';')
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .collect();
    statements.extend([
        // Measures, join keys, grouping keys.
        format!(
            "UPDATE lineitem SET l_quantity = l_quantity + 7, l_extendedprice = l_extendedprice * 1.05,
                    l_discount = 0.06, l_shipdate = l_shipdate - 30 WHERE l_orderkey % 499 = {round}"
        ),
        format!("UPDATE lineitem SET l_suppkey = l_suppkey % 100 + 1 WHERE l_orderkey % 701 = {round}"),
        format!("UPDATE orders SET o_orderpriority = '1-URGENT', o_custkey = o_custkey % 1000 + 1 WHERE o_orderkey % 211 = {round}"),
        format!("UPDATE customer SET c_mktsegment = 'BUILDING', c_acctbal = c_acctbal + 100 WHERE c_custkey % 89 = {round}"),
        format!("UPDATE part SET p_brand = 'Brand#23', p_container = 'MED BOX', p_name = left(p_name, 40) || ' green' WHERE p_partkey % 97 = {round}"),
        format!("UPDATE supplier SET s_nationkey = (s_nationkey + 1) % 25, s_comment = left(s_comment, 60) || ' Customer Complaints' WHERE s_suppkey % 13 = {round}"),
        format!("UPDATE part SET p_type = 'ECONOMY ANODIZED STEEL' WHERE p_partkey % 101 = {round}"),
        // Q20: more forest parts, and suppliers moving to Canada.
        format!("UPDATE part SET p_name = 'forest ' || left(p_name, 40) WHERE p_partkey % 103 = {round}"),
        format!("UPDATE supplier SET s_nationkey = 3 WHERE s_suppkey % 11 = {round}"),
        // One supplier's first quarter of 1996 grows past every other's (Q15's top supplier).
        format!(
            "UPDATE lineitem SET l_extendedprice = l_extendedprice + 50000
              WHERE l_suppkey = {round} AND l_shipdate >= date '1996-01-01' AND l_shipdate < date '1996-04-01'"
        ),
        format!("UPDATE partsupp SET ps_supplycost = ps_supplycost + 1, ps_availqty = ps_availqty / 2 WHERE ps_partkey % 53 = {round}"),
        // Q3's top ten: an order from below them doubles its revenue, and one of them loses its
        // lineitems (the window refills from the query).
        format!("UPDATE lineitem SET l_extendedprice = l_extendedprice * 2 WHERE l_orderkey = ({Q3_ORDER} OFFSET {} LIMIT 1)", 10 + round),
        format!("DELETE FROM lineitem WHERE l_orderkey = ({Q3_ORDER} OFFSET {round} LIMIT 1)"),
    ]);
    statements
}
