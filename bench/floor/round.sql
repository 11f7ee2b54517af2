-- The writes one batch needs, each right after a REFRESH MATERIALIZED VIEW of the filter shape (as the
-- bench's rounds leave the caches); psql prints each statement's time. The batch's size comes as psql
-- variables: a 0.1% batch is -v deleted=361 -v inserted=307 -v groups=1050, a 1% batch
-- -v deleted=3610 -v inserted=3070 -v groups=6300.
\timing on
SELECT array_agg(rid) AS del FROM (SELECT rid FROM floor_rows TABLESAMPLE SYSTEM (1) ORDER BY random() LIMIT :deleted) s \gset
SELECT array_agg(rid) AS upd FROM (SELECT rid FROM floor_groups ORDER BY random() LIMIT :groups) s \gset
REFRESH MATERIALIZED VIEW mv_floor;
BEGIN;
DELETE FROM floor_rows WHERE rid = ANY (:'del'::bigint[]);
INSERT INTO floor_rows SELECT 2000000 + i, 1.5, 7, hashint8(2000000 + i + (random()*1e9)::bigint) FROM generate_series(1, :inserted) i;
COMMIT;
REFRESH MATERIALIZED VIEW mv_floor;
BEGIN;
UPDATE floor_groups SET n = n + 1, total = total + 1.25, avg_qty = avg_qty WHERE rid = ANY (:'upd'::bigint[]);
COMMIT;
