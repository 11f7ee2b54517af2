-- One round of TPC-H's refresh functions, about 0.1% of the orders each; {round} is 1, 2, ...
-- RF1: new orders with their lineitems (copies of existing ones under new keys, a year later).
INSERT INTO orders SELECT o_orderkey + 100000000 * {round}, o_custkey, o_orderstatus, o_totalprice,
       o_orderdate + 365, o_orderpriority, o_clerk, o_shippriority, o_comment
  FROM orders WHERE o_orderkey % 1009 = {round} AND o_orderkey < 100000000;
INSERT INTO lineitem SELECT l_orderkey + 100000000 * {round}, l_partkey, l_suppkey, l_linenumber, l_quantity,
       l_extendedprice, l_discount, l_tax, l_returnflag, l_linestatus, l_shipdate + 365,
       l_commitdate + 365, l_receiptdate + 365, l_shipinstruct, l_shipmode, l_comment
  FROM lineitem WHERE l_orderkey % 1009 = {round} AND l_orderkey < 100000000;
-- RF2: orders deleted with their lineitems.
DELETE FROM lineitem WHERE l_orderkey % 1013 = {round};
DELETE FROM orders WHERE o_orderkey % 1013 = {round};
