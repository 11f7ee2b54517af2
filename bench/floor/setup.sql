-- The floor (docs/BENCHMARKS.md): copies of the filter shape's and GROUP BY grp's results, each with a
-- bigint identity column and a B-tree index on it, as a stream table has. Run on the bench cluster
-- left by scripts/bench --only shapes --keep, then round.sql a few times (its header says how).
\set QUIET on
DROP TABLE IF EXISTS floor_rows, floor_groups;
CREATE TABLE floor_rows AS SELECT id, amount, qty, hashint8(id)::bigint AS rid FROM fact WHERE qty > 5;
CREATE INDEX ON floor_rows (rid);
CREATE TABLE floor_groups AS SELECT grp, count(*) AS n, sum(amount) AS total, avg(qty) AS avg_qty, hashint4(grp)::bigint AS rid FROM fact GROUP BY grp;
CREATE INDEX ON floor_groups (rid);
ALTER TABLE floor_groups SET (fillfactor = 50);
VACUUM ANALYZE floor_rows; VACUUM ANALYZE floor_groups;
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_floor AS SELECT id, amount, qty FROM fact WHERE qty > 5;
\timing on
\set QUIET off
