//! TPC-H for the tests: the schema, data from a generator (`scripts/tpch-data`, tpchgen-cli from
//! PyPI), the 22 queries with the specification's validation parameters (a trailing ORDER BY without
//! LIMIT dropped: a stream table is a set of rows), and the refresh functions that change the data.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use crate::TestDb;

/// The eight tables, with their primary keys.
pub const SCHEMA: &str = "
CREATE TABLE region (r_regionkey integer PRIMARY KEY, r_name char(25) NOT NULL, r_comment varchar(152));
CREATE TABLE nation (n_nationkey integer PRIMARY KEY, n_name char(25) NOT NULL, n_regionkey integer NOT NULL,
                     n_comment varchar(152));
CREATE TABLE supplier (s_suppkey integer PRIMARY KEY, s_name char(25) NOT NULL, s_address varchar(40) NOT NULL,
                       s_nationkey integer NOT NULL, s_phone char(15) NOT NULL, s_acctbal numeric(15,2) NOT NULL,
                       s_comment varchar(101) NOT NULL);
CREATE TABLE customer (c_custkey integer PRIMARY KEY, c_name varchar(25) NOT NULL, c_address varchar(40) NOT NULL,
                       c_nationkey integer NOT NULL, c_phone char(15) NOT NULL, c_acctbal numeric(15,2) NOT NULL,
                       c_mktsegment char(10) NOT NULL, c_comment varchar(117) NOT NULL);
CREATE TABLE part (p_partkey integer PRIMARY KEY, p_name varchar(55) NOT NULL, p_mfgr char(25) NOT NULL,
                   p_brand char(10) NOT NULL, p_type varchar(25) NOT NULL, p_size integer NOT NULL,
                   p_container char(10) NOT NULL, p_retailprice numeric(15,2) NOT NULL, p_comment varchar(23) NOT NULL);
CREATE TABLE partsupp (ps_partkey integer NOT NULL, ps_suppkey integer NOT NULL, ps_availqty integer NOT NULL,
                       ps_supplycost numeric(15,2) NOT NULL, ps_comment varchar(199) NOT NULL,
                       PRIMARY KEY (ps_partkey, ps_suppkey));
CREATE TABLE orders (o_orderkey integer PRIMARY KEY, o_custkey integer NOT NULL, o_orderstatus char(1) NOT NULL,
                     o_totalprice numeric(15,2) NOT NULL, o_orderdate date NOT NULL, o_orderpriority char(15) NOT NULL,
                     o_clerk char(15) NOT NULL, o_shippriority integer NOT NULL, o_comment varchar(79) NOT NULL);
CREATE TABLE lineitem (l_orderkey integer NOT NULL, l_partkey integer NOT NULL, l_suppkey integer NOT NULL,
                       l_linenumber integer NOT NULL, l_quantity numeric(15,2) NOT NULL,
                       l_extendedprice numeric(15,2) NOT NULL, l_discount numeric(15,2) NOT NULL,
                       l_tax numeric(15,2) NOT NULL, l_returnflag char(1) NOT NULL, l_linestatus char(1) NOT NULL,
                       l_shipdate date NOT NULL, l_commitdate date NOT NULL, l_receiptdate date NOT NULL,
                       l_shipinstruct char(25) NOT NULL, l_shipmode char(10) NOT NULL, l_comment varchar(44) NOT NULL,
                       PRIMARY KEY (l_orderkey, l_linenumber));
CREATE INDEX ON lineitem (l_partkey, l_suppkey);
CREATE INDEX ON orders (o_custkey);
-- Q15's view.
CREATE VIEW revenue0 (supplier_no, total_revenue) AS
  SELECT l_suppkey, sum(l_extendedprice * (1 - l_discount)) FROM lineitem
   WHERE l_shipdate >= date '1996-01-01' AND l_shipdate < date '1996-04-01' GROUP BY l_suppkey;
";

const TABLES: [&str; 8] = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"];

/// One TPC-H query: its text, and what DIFFERENTIAL mode says when it refuses it (None: accepted).
pub struct Query {
    pub name: &'static str,
    pub sql: &'static str,
    pub refused: Option<&'static str>,
}

const fn q(name: &'static str, sql: &'static str) -> Query {
    Query { name, sql, refused: None }
}

const fn refused(name: &'static str, construct: &'static str, sql: &'static str) -> Query {
    Query { name, sql, refused: Some(construct) }
}

pub const QUERIES: [Query; 22] = [
    q("q01", "SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty, sum(l_extendedprice) AS sum_base_price,
              sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
              sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge, avg(l_quantity) AS avg_qty,
              avg(l_extendedprice) AS avg_price, avg(l_discount) AS avg_disc, count(*) AS count_order
         FROM lineitem WHERE l_shipdate <= date '1998-09-02'
        GROUP BY l_returnflag, l_linestatus"),
    refused("q02", "LIMIT", "SELECT s_acctbal, s_name, n_name, p_partkey, p_mfgr, s_address, s_phone, s_comment
         FROM part, supplier, partsupp, nation, region
        WHERE p_partkey = ps_partkey AND s_suppkey = ps_suppkey AND p_size = 15 AND p_type LIKE '%BRASS'
          AND s_nationkey = n_nationkey AND n_regionkey = r_regionkey AND r_name = 'EUROPE'
          AND ps_supplycost = (SELECT min(ps_supplycost) FROM partsupp, supplier, nation, region
                                WHERE p_partkey = ps_partkey AND s_suppkey = ps_suppkey AND s_nationkey = n_nationkey
                                  AND n_regionkey = r_regionkey AND r_name = 'EUROPE')
        ORDER BY s_acctbal DESC, n_name, s_name, p_partkey LIMIT 100"),
    refused("q03", "LIMIT", "SELECT l_orderkey, sum(l_extendedprice * (1 - l_discount)) AS revenue, o_orderdate, o_shippriority
         FROM customer, orders, lineitem
        WHERE c_mktsegment = 'BUILDING' AND c_custkey = o_custkey AND l_orderkey = o_orderkey
          AND o_orderdate < date '1995-03-15' AND l_shipdate > date '1995-03-15'
        GROUP BY l_orderkey, o_orderdate, o_shippriority ORDER BY revenue DESC, o_orderdate LIMIT 10"),
    q("q04", "SELECT o_orderpriority, count(*) AS order_count FROM orders
        WHERE o_orderdate >= date '1993-07-01' AND o_orderdate < date '1993-10-01'
          AND EXISTS (SELECT * FROM lineitem WHERE l_orderkey = o_orderkey AND l_commitdate < l_receiptdate)
        GROUP BY o_orderpriority"),
    q("q05", "SELECT n_name, sum(l_extendedprice * (1 - l_discount)) AS revenue
         FROM customer, orders, lineitem, supplier, nation, region
        WHERE c_custkey = o_custkey AND l_orderkey = o_orderkey AND l_suppkey = s_suppkey AND c_nationkey = s_nationkey
          AND s_nationkey = n_nationkey AND n_regionkey = r_regionkey AND r_name = 'ASIA'
          AND o_orderdate >= date '1994-01-01' AND o_orderdate < date '1995-01-01'
        GROUP BY n_name"),
    q("q06", "SELECT sum(l_extendedprice * l_discount) AS revenue FROM lineitem
        WHERE l_shipdate >= date '1994-01-01' AND l_shipdate < date '1995-01-01'
          AND l_discount BETWEEN 0.05 AND 0.07 AND l_quantity < 24"),
    q("q07", "SELECT supp_nation, cust_nation, l_year, sum(volume) AS revenue FROM (
           SELECT n1.n_name AS supp_nation, n2.n_name AS cust_nation, extract(year FROM l_shipdate) AS l_year,
                  l_extendedprice * (1 - l_discount) AS volume
             FROM supplier, lineitem, orders, customer, nation n1, nation n2
            WHERE s_suppkey = l_suppkey AND o_orderkey = l_orderkey AND c_custkey = o_custkey
              AND s_nationkey = n1.n_nationkey AND c_nationkey = n2.n_nationkey
              AND ((n1.n_name = 'FRANCE' AND n2.n_name = 'GERMANY') OR (n1.n_name = 'GERMANY' AND n2.n_name = 'FRANCE'))
              AND l_shipdate BETWEEN date '1995-01-01' AND date '1996-12-31') AS shipping
        GROUP BY supp_nation, cust_nation, l_year"),
    q("q08", "SELECT o_year, sum(CASE WHEN nation = 'BRAZIL' THEN volume ELSE 0 END) / sum(volume) AS mkt_share FROM (
           SELECT extract(year FROM o_orderdate) AS o_year, l_extendedprice * (1 - l_discount) AS volume,
                  n2.n_name AS nation
             FROM part, supplier, lineitem, orders, customer, nation n1, nation n2, region
            WHERE p_partkey = l_partkey AND s_suppkey = l_suppkey AND l_orderkey = o_orderkey AND o_custkey = c_custkey
              AND c_nationkey = n1.n_nationkey AND n1.n_regionkey = r_regionkey AND r_name = 'AMERICA'
              AND s_nationkey = n2.n_nationkey AND o_orderdate BETWEEN date '1995-01-01' AND date '1996-12-31'
              AND p_type = 'ECONOMY ANODIZED STEEL') AS all_nations
        GROUP BY o_year"),
    q("q09", "SELECT nation, o_year, sum(amount) AS sum_profit FROM (
           SELECT n_name AS nation, extract(year FROM o_orderdate) AS o_year,
                  l_extendedprice * (1 - l_discount) - ps_supplycost * l_quantity AS amount
             FROM part, supplier, lineitem, partsupp, orders, nation
            WHERE s_suppkey = l_suppkey AND ps_suppkey = l_suppkey AND ps_partkey = l_partkey AND p_partkey = l_partkey
              AND o_orderkey = l_orderkey AND s_nationkey = n_nationkey AND p_name LIKE '%green%') AS profit
        GROUP BY nation, o_year"),
    refused("q10", "LIMIT", "SELECT c_custkey, c_name, sum(l_extendedprice * (1 - l_discount)) AS revenue, c_acctbal, n_name,
              c_address, c_phone, c_comment
         FROM customer, orders, lineitem, nation
        WHERE c_custkey = o_custkey AND l_orderkey = o_orderkey AND o_orderdate >= date '1993-10-01'
          AND o_orderdate < date '1994-01-01' AND l_returnflag = 'R' AND c_nationkey = n_nationkey
        GROUP BY c_custkey, c_name, c_acctbal, c_phone, n_name, c_address, c_comment
        ORDER BY revenue DESC LIMIT 20"),
    q("q11", "SELECT ps_partkey, sum(ps_supplycost * ps_availqty) AS value FROM partsupp, supplier, nation
        WHERE ps_suppkey = s_suppkey AND s_nationkey = n_nationkey AND n_name = 'GERMANY'
        GROUP BY ps_partkey
       HAVING sum(ps_supplycost * ps_availqty) > (SELECT sum(ps_supplycost * ps_availqty) * 0.0001
                                                    FROM partsupp, supplier, nation
                                                   WHERE ps_suppkey = s_suppkey AND s_nationkey = n_nationkey
                                                     AND n_name = 'GERMANY')"),
    q("q12", "SELECT l_shipmode,
              sum(CASE WHEN o_orderpriority = '1-URGENT' OR o_orderpriority = '2-HIGH' THEN 1 ELSE 0 END) AS high_line_count,
              sum(CASE WHEN o_orderpriority <> '1-URGENT' AND o_orderpriority <> '2-HIGH' THEN 1 ELSE 0 END) AS low_line_count
         FROM orders, lineitem
        WHERE o_orderkey = l_orderkey AND l_shipmode IN ('MAIL', 'SHIP') AND l_commitdate < l_receiptdate
          AND l_shipdate < l_commitdate AND l_receiptdate >= date '1994-01-01' AND l_receiptdate < date '1995-01-01'
        GROUP BY l_shipmode"),
    q("q13", "SELECT c_count, count(*) AS custdist FROM (
           SELECT c_custkey, count(o_orderkey) FROM customer
             LEFT OUTER JOIN orders ON c_custkey = o_custkey AND o_comment NOT LIKE '%special%requests%'
            GROUP BY c_custkey) AS c_orders (c_custkey, c_count)
        GROUP BY c_count"),
    q("q14", "SELECT 100.00 * sum(CASE WHEN p_type LIKE 'PROMO%' THEN l_extendedprice * (1 - l_discount) ELSE 0 END)
              / sum(l_extendedprice * (1 - l_discount)) AS promo_revenue
         FROM lineitem, part
        WHERE l_partkey = p_partkey AND l_shipdate >= date '1995-09-01' AND l_shipdate < date '1995-10-01'"),
    q("q15", "SELECT s_suppkey, s_name, s_address, s_phone, total_revenue FROM supplier, revenue0
        WHERE s_suppkey = supplier_no AND total_revenue = (SELECT max(total_revenue) FROM revenue0)"),
    q("q16", "SELECT p_brand, p_type, p_size, count(DISTINCT ps_suppkey) AS supplier_cnt FROM partsupp, part
        WHERE p_partkey = ps_partkey AND p_brand <> 'Brand#45' AND p_type NOT LIKE 'MEDIUM POLISHED%'
          AND p_size IN (49, 14, 23, 45, 19, 3, 36, 9)
          AND ps_suppkey NOT IN (SELECT s_suppkey FROM supplier WHERE s_comment LIKE '%Customer%Complaints%')
        GROUP BY p_brand, p_type, p_size"),
    q("q17", "SELECT sum(l_extendedprice) / 7.0 AS avg_yearly FROM lineitem, part
        WHERE p_partkey = l_partkey AND p_brand = 'Brand#23' AND p_container = 'MED BOX'
          AND l_quantity < (SELECT 0.2 * avg(l_quantity) FROM lineitem WHERE l_partkey = p_partkey)"),
    refused("q18", "LIMIT", "SELECT c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice, sum(l_quantity)
         FROM customer, orders, lineitem
        WHERE o_orderkey IN (SELECT l_orderkey FROM lineitem GROUP BY l_orderkey HAVING sum(l_quantity) > 300)
          AND c_custkey = o_custkey AND o_orderkey = l_orderkey
        GROUP BY c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice
        ORDER BY o_totalprice DESC, o_orderdate LIMIT 100"),
    q("q19", "SELECT sum(l_extendedprice * (1 - l_discount)) AS revenue FROM lineitem, part
        WHERE (p_partkey = l_partkey AND p_brand = 'Brand#12' AND p_container IN ('SM CASE', 'SM BOX', 'SM PACK', 'SM PKG')
               AND l_quantity >= 1 AND l_quantity <= 1 + 10 AND p_size BETWEEN 1 AND 5
               AND l_shipmode IN ('AIR', 'AIR REG') AND l_shipinstruct = 'DELIVER IN PERSON')
           OR (p_partkey = l_partkey AND p_brand = 'Brand#23' AND p_container IN ('MED BAG', 'MED BOX', 'MED PKG', 'MED PACK')
               AND l_quantity >= 10 AND l_quantity <= 10 + 10 AND p_size BETWEEN 1 AND 10
               AND l_shipmode IN ('AIR', 'AIR REG') AND l_shipinstruct = 'DELIVER IN PERSON')
           OR (p_partkey = l_partkey AND p_brand = 'Brand#34' AND p_container IN ('LG CASE', 'LG BOX', 'LG PACK', 'LG PKG')
               AND l_quantity >= 20 AND l_quantity <= 20 + 10 AND p_size BETWEEN 1 AND 15
               AND l_shipmode IN ('AIR', 'AIR REG') AND l_shipinstruct = 'DELIVER IN PERSON')"),
    q("q20", "SELECT s_name, s_address FROM supplier, nation
        WHERE s_suppkey IN (SELECT ps_suppkey FROM partsupp
                             WHERE ps_partkey IN (SELECT p_partkey FROM part WHERE p_name LIKE 'forest%')
                               AND ps_availqty > (SELECT 0.5 * sum(l_quantity) FROM lineitem
                                                   WHERE l_partkey = ps_partkey AND l_suppkey = ps_suppkey
                                                     AND l_shipdate >= date '1994-01-01' AND l_shipdate < date '1995-01-01'))
          AND s_nationkey = n_nationkey AND n_name = 'CANADA'"),
    refused("q21", "LIMIT", "SELECT s_name, count(*) AS numwait FROM supplier, lineitem l1, orders, nation
        WHERE s_suppkey = l1.l_suppkey AND o_orderkey = l1.l_orderkey AND o_orderstatus = 'F'
          AND l1.l_receiptdate > l1.l_commitdate
          AND EXISTS (SELECT * FROM lineitem l2 WHERE l2.l_orderkey = l1.l_orderkey AND l2.l_suppkey <> l1.l_suppkey)
          AND NOT EXISTS (SELECT * FROM lineitem l3 WHERE l3.l_orderkey = l1.l_orderkey AND l3.l_suppkey <> l1.l_suppkey
                                                       AND l3.l_receiptdate > l3.l_commitdate)
          AND s_nationkey = n_nationkey AND n_name = 'SAUDI ARABIA'
        GROUP BY s_name ORDER BY numwait DESC, s_name LIMIT 100"),
    q("q22", "SELECT cntrycode, count(*) AS numcust, sum(c_acctbal) AS totacctbal FROM (
           SELECT substring(c_phone FROM 1 FOR 2) AS cntrycode, c_acctbal FROM customer
            WHERE substring(c_phone FROM 1 FOR 2) IN ('13', '31', '23', '29', '30', '18', '17')
              AND c_acctbal > (SELECT avg(c_acctbal) FROM customer
                                WHERE c_acctbal > 0.00 AND substring(c_phone FROM 1 FOR 2) IN ('13', '31', '23', '29', '30', '18', '17'))
              AND NOT EXISTS (SELECT * FROM orders WHERE o_custkey = c_custkey)) AS custsale
        GROUP BY cntrycode"),
];

/// Creates the schema in `db` and loads TPC-H data at scale factor `sf` (generated once per scale
/// factor under target/tpch-data/).
pub fn load(db: &mut TestDb, sf: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join(format!("target/tpch-data/sf{sf}"));
    let status = Command::new(root.join("scripts/tpch-data")).arg(sf).arg(&dir).status().expect("run scripts/tpch-data");
    assert!(status.success(), "scripts/tpch-data {sf} {} failed", dir.display());
    db.exec(SCHEMA);
    for table in TABLES {
        let data = std::fs::read(dir.join(format!("{table}.csv"))).expect("read generated data");
        let mut copy = db.client.copy_in(&format!("COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)")).unwrap();
        copy.write_all(&data).unwrap();
        copy.finish().unwrap_or_else(|e| panic!("loading {table}: {e}"));
    }
    db.exec("VACUUM ANALYZE");
}

/// One round of changes, `round` = 1, 2, ...: the TPC-H refresh functions (RF1: new orders with their
/// lineitems; RF2: orders deleted with their lineitems), about 0.1% of the orders each, then updates
/// of measures, join keys and grouping keys. Each statement is its own transaction.
pub fn changes(round: i64) -> Vec<String> {
    let new_keys = 100_000_000 * round;
    vec![
        // RF1: copies of existing orders under new keys, dated a year later, with their lineitems.
        format!(
            "INSERT INTO orders SELECT o_orderkey + {new_keys}, o_custkey, o_orderstatus, o_totalprice,
                    o_orderdate + 365, o_orderpriority, o_clerk, o_shippriority, o_comment
               FROM orders WHERE o_orderkey % 1009 = {round} AND o_orderkey < 100000000"
        ),
        format!(
            "INSERT INTO lineitem SELECT l_orderkey + {new_keys}, l_partkey, l_suppkey, l_linenumber, l_quantity,
                    l_extendedprice, l_discount, l_tax, l_returnflag, l_linestatus, l_shipdate + 365,
                    l_commitdate + 365, l_receiptdate + 365, l_shipinstruct, l_shipmode, l_comment
               FROM lineitem WHERE l_orderkey % 1009 = {round} AND l_orderkey < 100000000"
        ),
        // RF2: orders deleted with their lineitems.
        format!("DELETE FROM lineitem WHERE l_orderkey % 1013 = {round}"),
        format!("DELETE FROM orders WHERE o_orderkey % 1013 = {round}"),
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
    ]
}
