#!/usr/bin/env python3
"""The measurements behind scripts/bench. Run by scripts/bench against its own throwaway cluster; see
docs/BENCHMARKS.md for what is measured and how.

Every statement is sent with plain `psql` (one session per measured round, `ON_ERROR_STOP`), so nothing but
the PostgreSQL client tools is needed. A timed statement is wrapped as `SELECT bench.time_ms('<stmt>')`:
the function returns the server-side execution time (clock_timestamp() before and after EXECUTE), and
psql's `\\timing` gives the statement's elapsed time as the client sees it (execution + commit + one
loopback round trip). The reported value is the latter; the server time is kept next to it.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

DB = "pgtrickle_bench"

# The shapes of issue #6. `cols` are the query's output columns: the stream table's visible columns
# (its storage also has hidden __pgt_* columns, which the comparison leaves out).
SHAPES = [
    dict(name="filter", title="filter/projection",
         query="SELECT id, amount, qty FROM fact WHERE qty > 5", cols="id, amount, qty"),
    dict(name="join", title="two-table join",
         query="SELECT f.id, f.amount, d.region FROM fact f JOIN dim d ON d.id = f.cust",
         cols="id, amount, region"),
    dict(name="group_by", title="GROUP BY grp (~10,000 groups)",
         query="SELECT grp, count(*) AS n, sum(amount) AS total, avg(qty) AS avg_qty FROM fact GROUP BY grp",
         cols="grp, n, total, avg_qty"),
    dict(name="join_agg", title="join + GROUP BY region, cat (260 groups)",
         query="SELECT d.region, d.cat, count(*) AS n, sum(f.amount) AS total "
               "FROM fact f JOIN dim d ON d.id = f.cust GROUP BY d.region, d.cat",
         cols="region, cat, n, total"),
    dict(name="global_agg", title="global aggregate",
         query="SELECT count(*) AS n, sum(amount) AS total, avg(qty) AS avg_qty FROM fact",
         cols="n, total, avg_qty"),
    dict(name="min_max", title="MIN/MAX per group",
         query="SELECT grp, min(amount) AS lo, max(amount) AS hi FROM fact GROUP BY grp",
         cols="grp, lo, hi"),
]

SIZES = {
    "full": dict(fact=1_000_000, dim=100_000, reps=5, insert_rows=100_000, pgbench_secs=15,
                 pgbench_reps=3, phase_budget_s=75, min_reps=3),
    "quick": dict(fact=20_000, dim=2_000, reps=2, insert_rows=10_000, pgbench_secs=3,
                  pgbench_reps=1, phase_budget_s=None, min_reps=1),
}

CHURN = [("churn_0.1pct", 0.001, 50.0), ("churn_1pct", 0.01, 10.0)]

# Idle stream tables (issue "Pool"): how many, and how long the coordinator is watched while idle.
IDLE = {"full": dict(tables=1000, watch_s=30), "quick": dict(tables=40, watch_s=5)}
IDLE_TICK_TARGET_MS = 20.0      # the coordinator's tick with every stream table idle
IDLE_CPU_TARGET = 0.02          # its CPU, as a share of one core
ONE_CHANGE_TARGET_S = 2.0       # one change visible within one schedule (1 s) plus one tick (1 s)
FAN_OUT_TARGET_S = 10.0         # one UPDATE of a source every idle stream table reads, applied to all
SINGLE_ROW_TARGET_MS = 5.0      # "a refresh of a single changed row costs a few milliseconds"
NO_CHANGE_TARGET_SERVER_MS = 1.0  # "a NO_DATA refresh well under 1 ms of server time"
FULL_TARGET = 1.2               # FULL no slower than 1.2x REFRESH MATERIALIZED VIEW
TPS_TARGET = 0.80               # pgbench TPS with capture / without
# TPC-H (issue "Coverage"): scale factor, and refresh rounds after an untimed warm-up round.
TPCH = {"full": dict(sf="0.1", rounds=3), "quick": dict(sf="0.01", rounds=1)}
TPCH_MEDIAN_TARGET = 10.0       # the median query's DIFFERENTIAL refresh against its matview
INSERT_TARGET = 1.5             # INSERT ... SELECT time with capture / without
# Real offload (issue "Worker"): changed rows per batch, and the aggregates an external worker reduces.
OFFLOAD = {"full": dict(changed=50_000), "quick": dict(changed=2_000)}
OFFLOAD_CPU_TARGET = 0.5        # server CPU per refresh, external worker / in-process
OFFLOAD_SHAPES = [
    ("groups_10k", "SELECT grp, count(*) AS n, sum(amount) AS total, avg(qty) AS avg_qty FROM fact GROUP BY grp",
     "grp, n, total, avg_qty"),
    ("groups_10", "SELECT qty, count(*) AS n, sum(amount) AS total, avg(amount) AS avg_amount FROM fact "
                  "WHERE qty > 0 GROUP BY qty", "qty, n, total, avg_amount"),
    # TPC-H Q1's shape (its "pricing summary report"): eight aggregates, products of the row's
    # columns, a handful of groups — where evaluating each row is most of the work.
    ("pricing_summary", "SELECT qty, count(*) AS n, sum(amount) AS total, sum(amount * qty) AS extended, "
                        "sum(amount * (100 - qty)) AS discounted, sum(amount * (100 - qty) * (100 + qty)) AS charged, "
                        "avg(amount) AS avg_amount, avg(qty) AS avg_qty FROM fact GROUP BY qty",
     "qty, n, total, extended, discounted, charged, avg_amount, avg_qty"),
]
OFFLOAD_ROLE = "pgtrickle_bench_worker"
# A stream table read by another: the filter shape as a FULL stream table, and an AUTO aggregate over it.
DAG_UP = "SELECT id, amount, qty FROM fact WHERE qty > 5"
DAG_READER = "SELECT qty, count(*) AS n, sum(amount) AS total FROM {up} GROUP BY qty"


class BenchError(Exception):
    pass


def log(msg):
    print(f"\033[1m[bench]\033[0m {msg}", file=sys.stderr, flush=True)


def q(s):
    """A SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


def dq(s):
    """A dollar-quoted SQL literal (our statements never contain the tag)."""
    assert "$bench$" not in s
    return "$bench$" + s + "$bench$"


class Psql:
    def __init__(self, bindir, port):
        self.bindir = bindir
        self.port = port
        self.env = dict(os.environ, PGAPPNAME="pg_trickle_bench",
                        PGOPTIONS="-c client_min_messages=warning")
        for k in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGSERVICE"):
            self.env.pop(k, None)

    def conn_args(self, db):
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db]

    def run(self, script, db=DB, what="SQL"):
        """Runs a script in one session; returns stdout. Fails on the first error."""
        cmd = [f"{self.bindir}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"] + self.conn_args(db)
        p = subprocess.run(cmd, input=script, capture_output=True, text=True, env=self.env)
        if p.returncode != 0:
            err = p.stderr.strip() or "(no message)"
            raise BenchError(f"{what} failed (psql exit {p.returncode}):\n{err}{failing_statement(script, err)}")
        return p.stdout

    def value(self, sql, db=DB):
        return self.run(sql + ";\n", db=db).strip()

    def timed(self, script, what):
        """Runs a script in which `@T tag` markers precede `SELECT bench.time_ms(...)` statements;
        returns {tag: [(wall_ms, server_ms), ...]} in order."""
        out = self.run("\\timing on\n" + script, what=what)
        res, pending, server = {}, None, None
        for line in out.splitlines():
            if line.startswith("@T "):
                pending, server = line[3:].strip(), None
                continue
            if pending is None:
                continue
            if server is None and re.fullmatch(r"-?\d+(\.\d+)?(e[-+]?\d+)?", line.strip()):
                server = float(line.strip())
                continue
            m = re.match(r"Time: ([\d.]+) ms", line)
            if m and server is not None:
                res.setdefault(pending, []).append((float(m.group(1)), server))
                pending = None
        return res


def advised_indexes(pg, stream_table, source=None):
    """The CREATE INDEX statements explain_stream_table advises for `stream_table` (an SQL expression
    for its name, over `source` if given), one per line, each once; "" when none."""
    frm = f"{source}, " if source else ""
    return pg.value(rf"""
SELECT string_agg(DISTINCT substring(line FROM 'CREATE INDEX .*;$'), E'\n')
  FROM {frm}regexp_split_to_table(pgtrickle.explain_stream_table({stream_table}), E'\n') AS line
 WHERE line LIKE '-- no index on %'""").strip()


def failing_statement(script, err):
    """The statement psql reported an error for (`psql:<stdin>:LINE: ERROR: ...`), to show with the error."""
    m = re.search(r"psql:<stdin>:(\d+): (ERROR|FATAL)", err)
    if not m:
        return ""
    lines = script.splitlines()
    end = min(int(m.group(1)), len(lines))
    start = end - 1
    while start > 0 and not lines[start - 1].rstrip().endswith(";") and not lines[start - 1].startswith("\\"):
        start -= 1
    stmt = "\n".join(lines[start:end])
    if len(stmt) > 1500:
        stmt = stmt[:1500] + " ..."
    return "\nstatement: " + stmt


def timed_stmt(tag, stmt):
    return f"\\echo @T {tag}\nSELECT bench.time_ms({dq(stmt)});\n"


HELPERS = r"""
CREATE SCHEMA bench;
-- Server-side execution time of one statement, in ms.
CREATE FUNCTION bench.time_ms(stmt text) RETURNS double precision LANGUAGE plpgsql AS $f$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  EXECUTE stmt;
  RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $f$;
-- The stream table's visible columns equal its query as a multiset, or an error. One pass: every distinct
-- row's count in the stream table minus its count in the query must be 0 -- the same test as
-- `st EXCEPT ALL query` and `query EXCEPT ALL st` both empty, at half the cost on large results.
CREATE FUNCTION bench.verify(st regclass, cols text, query text) RETURNS void LANGUAGE plpgsql
SET work_mem = '512MB' SET jit = off AS $f$
DECLARE extra bigint; missing bigint;
BEGIN
  EXECUTE format('SELECT coalesce(sum(d) FILTER (WHERE d > 0), 0), coalesce(-sum(d) FILTER (WHERE d < 0), 0)
                    FROM (SELECT sum(bench_w) AS d FROM (SELECT %1$s, 1 AS bench_w FROM %2$s
                                                   UNION ALL SELECT %1$s, -1 FROM (%3$s) q) u
                           GROUP BY %1$s HAVING sum(bench_w) <> 0) x', cols, st, query)
    INTO extra, missing;
  IF extra <> 0 OR missing <> 0 THEN
    RAISE EXCEPTION 'stream table % disagrees with its query: % row(s) too many, % row(s) missing',
      st, extra, missing USING DETAIL = 'query: ' || query;
  END IF;
END $f$;
-- Polls `visible` (a query returning one boolean) every 10 ms until it is true; returns the
-- milliseconds that took. Each poll sees what committed before it (READ COMMITTED, a new snapshot per
-- statement).
CREATE FUNCTION bench.wait_visible(visible text, timeout_s int) RETURNS double precision LANGUAGE plpgsql AS $f$
DECLARE t0 timestamptz := clock_timestamp(); ok bool;
BEGIN
  LOOP
    EXECUTE visible INTO ok;
    EXIT WHEN ok;
    IF clock_timestamp() - t0 > make_interval(secs => timeout_s) THEN
      RAISE EXCEPTION 'not true after % s: %', timeout_s, visible;
    END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
  RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $f$;
-- Whether a buffer of `st`'s sources holds a row every DIFFERENTIAL consumer has applied: what the
-- clean-up after a refresh deletes.
CREATE FUNCTION bench.applied_left(st regclass) RETURNS boolean LANGUAGE plpgsql AS $f$
DECLARE src oid; left_over bool;
BEGIN
  FOR src IN SELECT d.source_relid FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
              WHERE s.pgt_relid = st AND to_regclass('pgtrickle_changes.changes_' || d.source_relid) IS NOT NULL LOOP
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM pgtrickle_changes.%I b WHERE NOT EXISTS (
                      SELECT 1 FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
                       WHERE d.source_relid = $1 AND s.effective_mode = ''DIFFERENTIAL''
                         AND (s.frontier IS NULL OR NOT pg_visible_in_snapshot(b.__pgt_xid, s.frontier))))',
                   'changes_' || src) INTO left_over USING src;
    IF left_over THEN RETURN true; END IF;
  END LOOP;
  RETURN false;
END $f$;
-- After a manual refresh the coordinator deletes the change rows it applied, in a transaction of its
-- own once the refresh committed (docs/ARCHITECTURE.md, Change capture): waits for that, so that
-- the clean-up does not run beside the next measurement.
CREATE FUNCTION bench.wait_released(st regclass) RETURNS double precision LANGUAGE sql AS
  $f$ SELECT bench.wait_visible(format('SELECT NOT bench.applied_left(%L)', st), 60) $f$;
CREATE FUNCTION bench.last_refresh_id() RETURNS bigint LANGUAGE sql AS
  $f$ SELECT coalesce(max(refresh_id), 0) FROM pgtrickle.pgt_refresh_history $f$;
-- Exactly one refresh of `st` since `after_id`, successful, with the expected action (for an AUTO
-- stream table expected DIFFERENTIAL, AUTO may have chosen FULL by measured cost: the report counts those).
CREATE FUNCTION bench.expect_action(st regclass, after_id bigint, want text) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE n int; r record;
BEGIN
  SELECT count(*) INTO n FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
   WHERE s.pgt_relid = st AND h.refresh_id > after_id;
  SELECT h.action, h.status, h.reason, h.error_message INTO r
    FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
   WHERE s.pgt_relid = st AND h.refresh_id > after_id ORDER BY h.refresh_id DESC LIMIT 1;
  IF n <> 1 THEN
    RAISE EXCEPTION 'expected one refresh of % in pgtrickle.pgt_refresh_history, found %', st, n;
  END IF;
  IF (r.action IS DISTINCT FROM want
      AND NOT (want = 'DIFFERENTIAL' AND r.action = 'FULL' AND r.reason LIKE 'AUTO chose FULL%'))
     OR r.status IS DISTINCT FROM 'SUCCESS' THEN
    RAISE EXCEPTION 'refresh of % was % (%), expected % SUCCESS', st, r.action, r.status, want
      USING DETAIL = 'reason: ' || coalesce(r.reason, '-') || '; error: ' || coalesce(r.error_message, '-');
  END IF;
END $f$;
"""


def median(xs):
    return statistics.median(xs) if xs else None


class Bench:
    def __init__(self, args):
        self.args = args
        self.advised = {}   # shape -> the CREATE INDEX statements explain_stream_table advised
        self.cfg = dict(SIZES[args.mode])
        if args.reps:
            self.cfg["reps"] = args.reps
            self.cfg["pgbench_reps"] = min(args.reps, self.cfg["pgbench_reps"])
            self.cfg["min_reps"] = min(self.cfg["min_reps"], args.reps)
        self.pg = Psql(args.bindir, args.port)
        self.n_fact = self.cfg["fact"]
        self.n_dim = self.cfg["dim"]
        self.n_grp = max(10, self.n_fact // 100)
        self.results = []
        self.seed = 0
        self.notes = []

    # ---------------------------------------------------------------- setup
    def setup(self, load=True):
        pg = self.pg
        pg.run(f"DROP DATABASE IF EXISTS {DB};\nCREATE DATABASE {DB};\n", db="postgres", what="creating the database")
        pg.run("CREATE EXTENSION pg_trickle;\n" + HELPERS, what="creating the extension")
        if self.args.after_create_check:
            path, want = self.args.after_create_check.rsplit(":", 1)
            with open(path, "rb") as f:
                if hashlib.md5(f.read()).hexdigest() != want:
                    raise BenchError("the installed pg_trickle changed while the benchmark started "
                                     "(another build installed over it); run scripts/bench again")
        if not load:
            return
        log(f"loading data: fact {self.n_fact:,} rows ({self.n_grp:,} groups), dim {self.n_dim:,} rows")
        t0 = time.monotonic()
        n, d, g = self.n_fact, self.n_dim, self.n_grp
        pg.run(f"""
SELECT setseed(0.5);
CREATE TABLE dim (id int PRIMARY KEY, region text NOT NULL, cat text NOT NULL);
INSERT INTO dim SELECT i, chr(65 + (i / 10) % 26), 'cat' || (i % 10) FROM generate_series(1, {d}) i;
CREATE TABLE fact (id bigint PRIMARY KEY, cust int NOT NULL, grp int NOT NULL,
                   amount numeric(12,2) NOT NULL, qty int NOT NULL);
INSERT INTO fact
SELECT i, 1 + (random() * {d - 1})::int, 1 + (random() * {g - 1})::int,
       round((random() * 1000)::numeric, 2), (random() * 10)::int
  FROM generate_series(1, {n}) i;
ALTER TABLE fact ADD CONSTRAINT fact_cust_fkey FOREIGN KEY (cust) REFERENCES dim (id);
CREATE INDEX fact_cust_idx ON fact (cust);
CREATE INDEX fact_grp_idx ON fact (grp);
CREATE SEQUENCE fact_id_seq START WITH {n + 1};
VACUUM ANALYZE dim;
VACUUM ANALYZE fact;
""", what="loading data")
        log(f"loaded in {time.monotonic() - t0:.1f} s")

    def machine(self):
        info = {"nproc": os.cpu_count()}
        try:
            with open("/proc/meminfo") as f:
                kb = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
            info["memory_gb"] = round(kb / 1024 / 1024, 1)
        except (OSError, AttributeError):
            info["memory_gb"] = None
        try:
            with open("/proc/cpuinfo") as f:
                m = re.search(r"model name\s*:\s*(.+)", f.read())
            info["cpu"] = m.group(1).strip() if m else None
        except OSError:
            info["cpu"] = None
        info["postgres"] = self.pg.value("SELECT split_part(version(), ' on ', 1)")
        info["settings"] = self.pg.value(
            "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings "
            "WHERE name IN ('shared_buffers', 'work_mem', 'jit', 'synchronous_commit', 'max_wal_size', 'huge_pages')")
        info["loadavg"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
        info["commit"] = self.args.commit
        info["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return info

    # ---------------------------------------------------------------- helpers
    def next_seed(self):
        self.seed += 1
        return f"SELECT setseed({(self.seed * 0.618034) % 1:.6f});\n"

    def churn_sql(self, n):
        """n changed rows of fact in one transaction: about half updates (a quarter of them move to
        another group, a quarter to another customer), a quarter deletes, a quarter inserts."""
        u = n // 2
        d = n // 4
        i = n - u - d
        d_, g_ = self.n_dim, self.n_grp
        parts = ["BEGIN;\n"]
        if u:
            parts.append(f"""UPDATE fact SET amount = round((random() * 1000)::numeric, 2), qty = (random() * 10)::int,
       grp = CASE WHEN random() < 0.25 THEN 1 + (random() * {g_ - 1})::int ELSE grp END,
       cust = CASE WHEN random() < 0.25 THEN 1 + (random() * {d_ - 1})::int ELSE cust END
 WHERE id IN (SELECT id FROM fact ORDER BY random() LIMIT {u});
""")
        if d:
            parts.append(f"DELETE FROM fact WHERE id IN (SELECT id FROM fact ORDER BY random() LIMIT {d});\n")
        if i:
            parts.append(f"""INSERT INTO fact (id, cust, grp, amount, qty)
SELECT nextval('fact_id_seq'), 1 + (random() * {d_ - 1})::int, 1 + (random() * {g_ - 1})::int,
       round((random() * 1000)::numeric, 2), (random() * 10)::int
  FROM generate_series(1, {i});
""")
        parts.append("COMMIT;\n")
        return "".join(parts)

    @staticmethod
    def single_row_sql():
        return """UPDATE fact SET amount = round((random() * 1000)::numeric, 2), qty = (random() * 10)::int
 WHERE id = (SELECT id FROM fact WHERE id >= (SELECT (random() * max(id))::bigint FROM fact) ORDER BY id LIMIT 1);
"""

    def pair(self, rep, st, mv, stmt_st, mv_name=None, refreshed=None):
        """The stream table's refresh and the matview's, alternating which goes first. `st` and `mv`
        tag the timings (`mv` also names the matview unless `mv_name` does; `st` the stream table
        unless `refreshed` does). The clean-up after the refresh is waited for, untimed."""
        tag_st, tag_mv = ("st", "mv") if mv_name is None else (st, mv)
        a = timed_stmt(tag_st, stmt_st) + f"SELECT bench.wait_released({q(refreshed or st)});\n"
        b = timed_stmt(tag_mv, f"REFRESH MATERIALIZED VIEW {mv_name or mv}")
        return a + b if rep % 2 == 0 else b + a

    def record(self, scenario, metric, samples, baseline, changed, target, met, ratio, extra=None):
        wall = [s[0] for s in samples]
        rec = {
            "scenario": scenario,
            "metric": metric,
            "value_ms": round(median(wall), 3),
            "baseline_ms": round(median([b[0] for b in baseline]), 3) if baseline else None,
            "ratio": round(ratio, 3) if ratio is not None else None,
            "sizes": {"fact_rows": self.n_fact, "dim_rows": self.n_dim, "changed_rows": changed},
            "target": target,
            "met": met,
            "reps": len(samples),
            "server_ms": round(median([s[1] for s in samples]), 3),
            "baseline_server_ms": round(median([b[1] for b in baseline]), 3) if baseline else None,
            "samples_ms": [round(x, 3) for x in wall],
            "baseline_samples_ms": [round(b[0], 3) for b in baseline] if baseline else None,
        }
        if self.advised.get(scenario):
            rec["sizes"]["advised_indexes"] = self.advised[scenario]
        if extra:
            rec.update(extra)
        self.results.append(rec)
        return rec

    # ---------------------------------------------------------------- one shape
    def shape(self, sh):
        name, query, cols = sh["name"], sh["query"], sh["cols"]
        st, stf, mv = f"st_{name}", f"stf_{name}", f"mv_{name}"
        reps = self.cfg["reps"]
        pg = self.pg
        log(f"{name}: {query}")
        t0 = time.monotonic()
        pg.run(f"""VACUUM ANALYZE fact;
SELECT pgtrickle.create_stream_table({q(st)}, {dq(query)}, '1d', 'DIFFERENTIAL');
SELECT pgtrickle.create_stream_table({q(stf)}, {dq(query)}, '1d', 'FULL');
CREATE MATERIALIZED VIEW {mv} AS {query};
ANALYZE {st}; ANALYZE {stf}; ANALYZE {mv};
SELECT bench.verify({q(st)}, {q(cols)}, {dq(query)});
SELECT bench.verify({q(stf)}, {q(cols)}, {dq(query)});
""", what=f"{name}: creating the stream tables and the materialized view")
        mode = pg.value(f"SELECT effective_mode FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = {q(st)}::regclass")
        if mode != "DIFFERENTIAL":
            raise BenchError(f"{name}: the DIFFERENTIAL stream table runs in mode {mode}")
        log(f"{name}: created in {time.monotonic() - t0:.1f} s")
        # As an operator would: the indexes explain_stream_table advises (MIN/MAX per group: one on
        # (grp, amount)), for this shape only. REFRESH MATERIALIZED VIEW reads the whole table
        # either way.
        advised = advised_indexes(pg, q(st))
        index_names = []
        if advised:
            for i, stmt in enumerate(advised.splitlines()):
                index_names.append(f"bench_{name}_advised_{i}")
                pg.run(stmt.replace("CREATE INDEX ON", f"CREATE INDEX {index_names[-1]} ON") + "\n",
                       what=f"{name}: creating an advised index")
            log(f"{name}: created the indexes explain_stream_table advises: {advised}")
        self.advised[name] = advised.splitlines() if advised else []

        verify = f"SELECT bench.verify({q(st)}, {q(cols)}, {dq(query)});\n"
        refresh = f"SELECT pgtrickle.refresh_stream_table({q(st)})"
        warm = f"SELECT pgtrickle.refresh_stream_table({q(st)});\nSELECT bench.wait_released({q(st)});\n" \
            f"SELECT count(*) FROM {mv};\n"
        before = "SELECT bench.last_refresh_id() AS before_id \\gset\n"

        def expect(action, tbl=st):
            return f"SELECT bench.expect_action({q(tbl)}, :before_id, '{action}');\n"

        # No change: a refresh with nothing to do (one session, after an untimed warm-up refresh).
        script = warm
        for r in range(reps):
            script += before + self.pair(r, st, mv, refresh) + expect("NO_DATA")
        res = pg.timed(script, f"{name}: no-change refreshes")
        rec = self.record(name, "no_change", res["st"], res["mv"], 0,
                          f"server_ms < {NO_CHANGE_TARGET_SERVER_MS:g}", None,
                          median([x[0] for x in res["mv"]]) / median([x[0] for x in res["st"]]))
        rec["met"] = rec["server_ms"] < NO_CHANGE_TARGET_SERVER_MS
        self.progress(rec)

        # A single changed row (one session; the first round is an untimed warm-up).
        script = self.next_seed() + self.single_row_sql() + warm
        for r in range(reps):
            script += self.single_row_sql() + before + self.pair(r, st, mv, refresh) + expect("DIFFERENTIAL") + verify
        res = pg.timed(script, f"{name}: single-row refreshes")
        rec = self.record(name, "single_row", res["st"], res["mv"], 1,
                          f"server_ms <= {SINGLE_ROW_TARGET_MS:g}", None,
                          median([x[0] for x in res["mv"]]) / median([x[0] for x in res["st"]]))
        rec["met"] = rec["server_ms"] <= SINGLE_ROW_TARGET_MS
        self.progress(rec)

        # Churn: one session per repetition (warm-up refresh, changes, timed refreshes, verification).
        # The warm-up refresh applies a batch of the same size (rows picked at random), so the session has
        # planned the differential statement for a batch of that size, as a refresh worker under a
        # steady write rate has: the statement's text, and its kept plan, depend on the batch's
        # size (docs/BENCHMARKS.md). A no-change warm-up would leave its planning, 3-15 ms in a new
        # backend, inside the timed refresh.
        for metric, frac, target in CHURN:
            n = max(1, round(self.n_fact * frac))
            warm_delta = self.churn_sql(n) + warm
            st_s, mv_s = [], []
            t_phase = time.monotonic()
            for r in range(reps):
                script = self.next_seed() + warm_delta + self.churn_sql(n) + before + \
                    self.pair(r, st, mv, refresh) + expect("DIFFERENTIAL") + verify
                t_rep = time.monotonic()
                res = pg.timed(script, f"{name}: {metric} repetition {r + 1}")
                st_s += res["st"]
                mv_s += res["mv"]
                log(f"{name}: {metric} rep {r + 1}/{reps}: pg_trickle {res['st'][0][0]:.1f} ms, "
                    f"matview {res['mv'][0][0]:.1f} ms (round {time.monotonic() - t_rep:.1f} s)")
                budget = self.cfg["phase_budget_s"]
                if budget and r + 1 < reps and r + 1 >= self.cfg["min_reps"]:
                    spent = time.monotonic() - t_phase
                    if spent + spent / (r + 1) > budget:
                        self.notes.append(f"{name} {metric}: {r + 1} of {reps} repetitions (time budget)")
                        log(f"{name}: {metric}: stopping after {r + 1} repetitions (phase budget {budget} s)")
                        break
            ratio = median([x[0] for x in mv_s]) / median([x[0] for x in st_s])
            rec = self.record(name, metric, st_s, mv_s, n, f"ratio >= {target:g}", ratio >= target, ratio)
            self.progress(rec)

        # FULL: the FULL twin's refresh against REFRESH MATERIALIZED VIEW, on the same data.
        script = f"SELECT pgtrickle.refresh_stream_table({q(stf)});\nSELECT count(*) FROM {mv};\n"
        for r in range(reps):
            script += before + self.pair(r, stf, mv, f"SELECT pgtrickle.refresh_stream_table({q(stf)})") + \
                expect("FULL", stf)
        script += f"SELECT bench.verify({q(stf)}, {q(cols)}, {dq(query)});\n"
        res = pg.timed(script, f"{name}: FULL refreshes")
        ratio = median([x[0] for x in res["st"]]) / median([x[0] for x in res["mv"]])
        rec = self.record(name, "full_refresh", res["st"], res["mv"], 0, f"ratio <= {FULL_TARGET:g}",
                          ratio <= FULL_TARGET, ratio)
        self.progress(rec)

        drops = "".join(f"DROP INDEX {ix};\n" for ix in index_names)
        pg.run(f"SELECT pgtrickle.drop_stream_table({q(st)});\nSELECT pgtrickle.drop_stream_table({q(stf)});\n"
               f"DROP MATERIALIZED VIEW {mv};\n{drops}", what=f"{name}: dropping")
        log(f"{name}: done in {time.monotonic() - t0:.1f} s")

    def progress(self, rec):
        log(f"{rec['scenario']}: {rec['metric']}: {fmt_ms(rec['value_ms'])} vs {fmt_ms(rec['baseline_ms'])} "
            f"-> {fmt_ratio(rec)} (target {rec['target']}: {'met' if rec['met'] else 'NOT met'})")

    # ---------------------------------------------------------------- a FULL stream table read by another
    def dag(self):
        """A FULL stream table that an AUTO stream table reads: its FULL refresh against its twin's,
        which nothing reads (so a reader adds nothing), and the reader's refresh after it against
        REFRESH MATERIALIZED VIEW of the reader's query (the replacement comes as one replaced row, and
        the reader recomputes; docs/ARCHITECTURE.md, Change capture). Then the same upstream read by a
        FULL stream table (which puts signal triggers on it), against the same twin."""
        pg, reps = self.pg, self.cfg["reps"]
        up, alone, reader, mv = "dag_up", "dag_up_alone", "dag_reader", "mv_dag_reader"
        up_f, reader_f = "dag_up_f", "dag_reader_f"
        reader_q = DAG_READER.format(up=up)
        t0 = time.monotonic()
        pg.run(f"""VACUUM ANALYZE fact;
SELECT pgtrickle.create_stream_table({q(up)}, {dq(DAG_UP)}, '1d', 'FULL');
SELECT pgtrickle.create_stream_table({q(alone)}, {dq(DAG_UP)}, '1d', 'FULL');
SELECT pgtrickle.create_stream_table({q(up_f)}, {dq(DAG_UP)}, '1d', 'FULL');
ANALYZE {up};
SELECT pgtrickle.create_stream_table({q(reader)}, {dq(reader_q)}, '1d', 'AUTO');
SELECT pgtrickle.create_stream_table({q(reader_f)}, {dq(DAG_READER.format(up=up_f))}, '1d', 'FULL');
CREATE MATERIALIZED VIEW {mv} AS {reader_q};
""", what="dag: creating the stream tables and the materialized view")
        refresh = lambda st: f"SELECT pgtrickle.refresh_stream_table({q(st)})"
        before = "SELECT bench.last_refresh_id() AS before_id \\gset\n"
        script = f"{refresh(up)};\n{refresh(reader)};\n{refresh(alone)};\n{refresh(up_f)};\nSELECT count(*) FROM {mv};\n"
        scan = lambda *ts: "SELECT " + " + ".join(f"(SELECT count(*) FROM {t})" for t in ts) + " \\g /dev/null\n"
        for r in range(reps):
            ups = [timed_stmt("up", refresh(up)), timed_stmt("alone", refresh(alone)), timed_stmt("up_f", refresh(up_f))]
            ups = ups[r % 3:] + ups[:r % 3]
            # The first scan of a replaced table sets its new rows' hint bits and prunes the old
            # ones: work of the replacement, which whoever read next paid for (the reader or the
            # matview, 20-30 ms; an upstream's own next refresh, whose delete scans it). Done
            # untimed, for every table before it is timed, so each comparison is of like with like.
            script += before + scan(up, alone, up_f) + "".join(ups) + scan(up) + \
                self.pair(r, "reader", "mv", refresh(reader), mv_name=mv, refreshed=reader) + \
                f"SELECT bench.expect_action({q(up)}, :before_id, 'FULL');\n" + \
                f"SELECT bench.expect_action({q(up_f)}, :before_id, 'FULL');\n" + \
                f"SELECT bench.expect_action({q(reader)}, :before_id, 'FULL');\n" + \
                f"SELECT bench.verify({q(reader)}, 'qty, n, total', {dq(reader_q)});\n"
        res = pg.timed(script, "dag: refreshes")
        for metric, tag, base in (("upstream_full_refresh", "up", "alone"),
                                  ("reader_after_upstream_full", "reader", "mv"),
                                  ("upstream_full_refresh_full_reader", "up_f", "alone")):
            ratio = median([x[0] for x in res[tag]]) / median([x[0] for x in res[base]])
            rec = self.record("dag", metric, res[tag], res[base], 0,
                              f"ratio <= {FULL_TARGET:g}", ratio <= FULL_TARGET, ratio)
            self.progress(rec)
        pg.run(f"DROP MATERIALIZED VIEW {mv};\n" + "".join(
            f"SELECT pgtrickle.drop_stream_table({q(st)});\n" for st in (reader, reader_f, up, up_f, alone)), what="dag: dropping")
        log(f"dag: done in {time.monotonic() - t0:.1f} s")

    # ---------------------------------------------------------------- write path
    def write_path(self):
        pg = self.pg
        query = SHAPES[2]["query"]
        cols = SHAPES[2]["cols"]
        log("write path: fact (read by one DIFFERENTIAL stream table) vs fact_plain (an identical copy, no stream table)")
        pg.run(f"""CREATE TABLE fact_plain (LIKE fact INCLUDING ALL);
ALTER TABLE fact_plain ADD CONSTRAINT fact_plain_cust_fkey FOREIGN KEY (cust) REFERENCES dim (id);
INSERT INTO fact_plain SELECT * FROM fact;
VACUUM ANALYZE fact;
VACUUM ANALYZE fact_plain;
SELECT pgtrickle.create_stream_table('wp_st', {dq(query)}, '1d', 'DIFFERENTIAL');
CHECKPOINT;
""", what="write path: setup")
        maxid = int(pg.value("SELECT max(id) FROM fact"))

        # pgbench: single-row UPDATEs by primary key, fixed duration, over loopback TCP.
        secs, reps = self.cfg["pgbench_secs"], self.cfg["pgbench_reps"]
        tps = {"fact": [], "fact_plain": []}
        lat = {"fact": [], "fact_plain": []}
        with tempfile.TemporaryDirectory(prefix="pg_trickle_bench_") as tmp:
            for r in range(reps):
                order = ["fact_plain", "fact"] if r % 2 == 0 else ["fact", "fact_plain"]
                for table in order:
                    path = os.path.join(tmp, f"update_{table}.sql")
                    with open(path, "w") as f:
                        f.write(f"\\set id random(1, {maxid})\n"
                                f"UPDATE {table} SET amount = amount + 0.01 WHERE id = :id;\n")
                    t, l = self.pgbench(path, secs)
                    tps[table].append(t)
                    lat[table].append(l)
                    log(f"write path: pgbench UPDATE on {table}: {t:,.0f} TPS")
        t_with, t_without = median(tps["fact"]), median(tps["fact_plain"])
        ratio = t_with / t_without
        self.results.append({
            "scenario": "write_path", "metric": "pgbench_update_tps",
            "value_ms": round(median(lat["fact"]), 4), "baseline_ms": round(median(lat["fact_plain"]), 4),
            "ratio": round(ratio, 3),
            "sizes": {"fact_rows": self.n_fact, "dim_rows": self.n_dim, "changed_rows": 1},
            "target": f"ratio >= {TPS_TARGET:.2f}", "met": ratio >= TPS_TARGET, "reps": reps,
            "tps": round(t_with, 1), "baseline_tps": round(t_without, 1),
            "tps_samples": [round(x, 1) for x in tps["fact"]],
            "baseline_tps_samples": [round(x, 1) for x in tps["fact_plain"]],
            "note": f"value/baseline are pgbench's mean latency per transaction; ratio = TPS with capture / TPS "
                    f"without; {PGBENCH_CLIENTS} clients, {secs} s per run, synchronous_commit=off",
        })
        self.progress(self.results[-1])

        # INSERT ... SELECT of many rows, with and without capture.
        n = self.cfg["insert_rows"]
        script = ""
        reps_i = self.cfg["reps"]
        for r in range(reps_i):
            base = 1_000_000_000 + r * 10_000_000
            stmts = {}
            for table in ("fact", "fact_plain"):
                stmts[table] = (f"INSERT INTO {table} (id, cust, grp, amount, qty) "
                                f"SELECT {base} + i, 1 + i % {self.n_dim}, 1 + i % {self.n_grp}, "
                                f"(i % 100000) / 100.0, i % 11 FROM generate_series(1, {n}) i")
            order = ["fact_plain", "fact"] if r % 2 == 0 else ["fact", "fact_plain"]
            for table in order:
                script += timed_stmt("with" if table == "fact" else "without", stmts[table])
        res = pg.timed(script, "write path: INSERT ... SELECT")
        w, wo = median([x[0] for x in res["with"]]), median([x[0] for x in res["without"]])
        ratio = w / wo
        rec = self.record("write_path", f"insert_select_{n // 1000}k", res["with"], res["without"], n,
                          f"ratio <= {INSERT_TARGET:g}", ratio <= INSERT_TARGET, ratio)
        self.progress(rec)

        # Capture must have kept up with all of it: one refresh, exact, DIFFERENTIAL.
        pg.run(f"""SELECT bench.last_refresh_id() AS before_id \\gset
SELECT pgtrickle.refresh_stream_table('wp_st');
SELECT bench.expect_action('wp_st', :before_id, 'DIFFERENTIAL');
SELECT bench.verify('wp_st', {q(cols)}, {dq(query)});
SELECT pgtrickle.drop_stream_table('wp_st');
""", what="write path: verifying the stream table after the write-path runs")
        log("write path: the stream table caught up exactly after the runs")

    # ---------------------------------------------------------------- idle stream tables
    def idle(self):
        """Many DIFFERENTIAL stream tables on 1 s schedules (and one FULL one), nothing changing: the
        coordinator must cost (almost) nothing and write nothing — the FULL one is not rewritten; then
        one change, and one change every one of them reads."""
        pg = self.pg
        n, watch = IDLE[self.args.mode]["tables"], IDLE[self.args.mode]["watch_s"]
        log(f"idle: creating {n:,} DIFFERENTIAL stream tables on 1 s schedules over one source")
        t0 = time.monotonic()
        creates = "".join(
            f"SELECT pgtrickle.create_stream_table('idle_{i}', 'SELECT id, v FROM idle_src', '1s', 'DIFFERENTIAL');\n"
            for i in range(n))
        # Statistics taken when every stream table was dropped, as autovacuum may leave them until it
        # analyses again (no rows on the catalog's pages): the tick must not depend on them (a join
        # planned on them once cost 186 ms a tick for these 1,000 stream tables).
        pg.run("CREATE TABLE idle_src (id int PRIMARY KEY, v int NOT NULL);\n"
               "INSERT INTO idle_src SELECT i, i FROM generate_series(1, 100) i;\n"
               "SELECT pgtrickle.create_stream_table('idle_gone', 'SELECT id, v FROM idle_src', '1s', 'DIFFERENTIAL');\n"
               "SELECT pgtrickle.drop_stream_table('idle_gone');\n"
               "ANALYZE pgtrickle.pgt_stream_tables;\nANALYZE pgtrickle.pgt_dependencies;\n"
               "CREATE TABLE one_src (id int PRIMARY KEY, v int NOT NULL);\n"
               "INSERT INTO one_src VALUES (1, 0);\n"
               "SELECT pgtrickle.create_stream_table('idle_one', 'SELECT id, v FROM one_src', '1s', 'DIFFERENTIAL');\n"
               "SELECT pgtrickle.create_stream_table('idle_full', 'SELECT count(*) AS n, sum(v) AS s FROM idle_src', "
               "'1s', 'FULL');\n"
               + creates, what="idle: creating the stream tables")
        log(f"idle: created in {time.monotonic() - t0:.0f} s; turning the coordinator on")
        pg.run("ALTER SYSTEM SET pg_trickle.enabled = on;\nSELECT pg_reload_conf();\n", db="postgres", what="idle: enabling")
        try:
            self.idle_measure(n, watch)
        finally:
            pg.run("ALTER SYSTEM SET pg_trickle.enabled = off;\nSELECT pg_reload_conf();\n", db="postgres",
                   what="idle: disabling")

    def idle_measure(self, n, watch):
        pg = self.pg
        # A coordinator that just started refreshes every stream table once; wait until it is done.
        deadline = time.monotonic() + 600
        while True:
            done = int(pg.value("SELECT count(DISTINCT pgt_id) FROM pgtrickle.pgt_refresh_history "
                                "WHERE initiated_by = 'SCHEDULER'"))
            if done >= n + 2:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"idle: only {done} of {n + 2} stream tables were refreshed once in 10 min")
            time.sleep(1)
        time.sleep(3)
        pid = int(pg.value("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_trickle coordinator' "
                           f"AND datname = '{DB}'"))
        before_id = int(pg.value("SELECT bench.last_refresh_id()"))

        def cpu_ticks():
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks

        hz = os.sysconf("SC_CLK_TCK")
        c0, t0 = cpu_ticks(), time.monotonic()
        ticks = []
        while time.monotonic() - t0 < watch:
            ticks.append(float(pg.value("SELECT last_tick_ms FROM pgtrickle.pool_status")))
            time.sleep(1)
        cpu = (cpu_ticks() - c0) / hz / (time.monotonic() - t0)
        written = int(pg.value(f"SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE refresh_id > {before_id}"))
        full_rewrites = int(pg.value("SELECT count(*) FROM pgtrickle.pgt_refresh_history h "
                                     "JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) "
                                     f"WHERE h.refresh_id > {before_id} AND s.pgt_relid = 'idle_full'::regclass"))
        sizes = {"stream_tables": n + 2, "full_stream_tables": 1, "changed_rows": 0}
        tick = median(ticks)
        self.results.append({
            "scenario": "idle", "metric": "idle_tick", "value_ms": round(tick, 3), "baseline_ms": None,
            "ratio": None, "sizes": sizes, "target": f"value_ms <= {IDLE_TICK_TARGET_MS:g}",
            "met": tick <= IDLE_TICK_TARGET_MS, "reps": len(ticks), "max_ms": round(max(ticks), 3),
            "samples_ms": [round(x, 3) for x in ticks],
            "note": "the coordinator's tick (catalog query, skip decisions, pool sizing): "
                    "pool_status.last_tick_ms, sampled once a second; median"})
        self.progress(self.results[-1])
        self.results.append({
            "scenario": "idle", "metric": "idle_cpu", "value_ms": None, "baseline_ms": None,
            "ratio": round(cpu, 4), "sizes": sizes, "target": f"ratio < {IDLE_CPU_TARGET:g}, no history rows",
            "met": cpu < IDLE_CPU_TARGET and written == 0, "reps": 1, "history_rows_written": written,
            "watched_s": watch,
            "note": "the coordinator's CPU time (/proc/<pid>/stat) over the watch, as a share of one core, "
                    "and the history rows written meanwhile"})
        self.progress(self.results[-1])
        self.results.append({
            "scenario": "idle", "metric": "full_unchanged_rewrites", "value_ms": None, "baseline_ms": None,
            "ratio": None, "sizes": sizes, "target": "no refresh of the FULL stream table", "met": full_rewrites == 0,
            "reps": 1, "refreshes": full_rewrites, "watched_s": watch,
            "note": "refreshes of a FULL stream table on a 1 s schedule whose source did not change, over the watch"})
        self.progress(self.results[-1])

        # One change to one source: visible in its stream table within one schedule plus one tick.
        out = pg.run("UPDATE one_src SET v = v + 1 WHERE id = 1;\n"
                     "SELECT bench.wait_visible("
                     + q("SELECT s.v = o.v FROM idle_one s, one_src o WHERE s.id = 1 AND o.id = 1") + ", 30);\n",
                     what="idle: one change")
        latency = float(out.strip().splitlines()[-1])
        self.results.append({
            "scenario": "idle", "metric": "one_change_visible", "value_ms": round(latency, 1), "baseline_ms": None,
            "ratio": None, "sizes": {"stream_tables": n + 2, "changed_rows": 1},
            "target": f"value_ms <= {ONE_CHANGE_TARGET_S * 1000:g}", "met": latency <= ONE_CHANGE_TARGET_S * 1000,
            "reps": 1, "note": "from the UPDATE's commit until the stream table shows it (schedule 1 s, tick 1 s)"})
        self.progress(self.results[-1])

        # One UPDATE of the source all of them read: applied to every one.
        before_id = int(pg.value("SELECT bench.last_refresh_id()"))
        applied = (f"SELECT count(DISTINCT pgt_id) >= {n} FROM pgtrickle.pgt_refresh_history "
                   f"WHERE refresh_id > {before_id} AND action = 'DIFFERENTIAL' AND status = 'SUCCESS'")
        out = pg.run("UPDATE idle_src SET v = v + 1 WHERE id = 1;\n"
                     f"SELECT bench.wait_visible({q(applied)}, 300);\n", what="idle: one change all of them read")
        fan = float(out.strip().splitlines()[-1])
        self.results.append({
            "scenario": "idle", "metric": "fan_out_applied", "value_ms": round(fan, 1), "baseline_ms": None,
            "ratio": None, "sizes": {"stream_tables": n, "changed_rows": 1},
            "target": f"value_ms <= {FAN_OUT_TARGET_S * 1000:g}", "met": fan <= FAN_OUT_TARGET_S * 1000,
            "reps": 1, "note": f"from the UPDATE's commit until all {n:,} stream tables reading the source applied it"})
        self.progress(self.results[-1])
        pg.run(f"SELECT bench.verify('idle_{n - 1}', 'id, v', 'SELECT id, v FROM idle_src');\n",
               what="idle: verifying a stream table after the fan-out")

    def pgbench(self, script_path, secs):
        cmd = [f"{self.args.bindir}/pgbench", "-n", "-f", script_path, "-c", str(PGBENCH_CLIENTS),
               "-j", str(PGBENCH_CLIENTS), "-T", str(secs)] + self.pg.conn_args(DB)[:-2] + [DB]
        env = dict(self.pg.env, PGOPTIONS="-c synchronous_commit=off -c client_min_messages=warning")
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            raise BenchError(f"pgbench failed (exit {p.returncode}):\n{p.stderr.strip()}\n{p.stdout.strip()}")
        m = re.search(r"tps = ([\d.]+)", p.stdout)
        lm = re.search(r"latency average = ([\d.]+) ms", p.stdout)
        fm = re.search(r"number of failed transactions: (\d+)", p.stdout)
        if not m or not lm:
            raise BenchError(f"cannot read pgbench's output:\n{p.stdout}")
        if fm and int(fm.group(1)) != 0:
            raise BenchError(f"pgbench reported failed transactions:\n{p.stdout}")
        return float(m.group(1)), float(lm.group(1))

    # ---------------------------------------------------------------- TPC-H
    def tpch(self):
        """The 22 TPC-H queries (tpch/queries) as stream tables (AUTO: DIFFERENTIAL where supported)
        and materialized views over generated data; after each round of the refresh functions
        (tpch/refresh.sql, ~0.1% of the orders), every stream table's refresh against its matview's."""
        cfg = TPCH[self.args.mode]
        sf, rounds = cfg["sf"], cfg["rounds"]
        repo, pg = self.args.repo, self.pg
        data = os.path.join(repo, "target", "tpch-data", f"sf{sf}")
        gen = subprocess.run([os.path.join(repo, "scripts", "tpch-data"), sf, data], capture_output=True, text=True)
        if gen.returncode != 0:
            raise BenchError(f"scripts/tpch-data {sf} failed:\n{gen.stderr.strip()}")
        log(f"tpch: loading scale factor {sf}")
        t0 = time.monotonic()
        with open(os.path.join(repo, "tpch", "schema.sql")) as f:
            script = f.read()
        for table in ("region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"):
            script += f"\\copy {table} FROM {q(os.path.join(data, table + '.csv'))} WITH (FORMAT csv, HEADER true)\n"
        pg.run(script + "VACUUM ANALYZE;\n", what="tpch: loading")
        orders = int(pg.value("SELECT count(*) FROM orders"))
        lineitems = int(pg.value("SELECT count(*) FROM lineitem"))
        log(f"tpch: {orders:,} orders, {lineitems:,} lineitems, loaded in {time.monotonic() - t0:.1f} s")

        queries = []
        qdir = os.path.join(repo, "tpch", "queries")
        for name in sorted(os.listdir(qdir)):
            with open(os.path.join(qdir, name)) as f:
                queries.append((name[:-4], f.read().strip()))
        t0 = time.monotonic()
        for name, sql in queries:
            pg.run(f"SELECT pgtrickle.create_stream_table({q('tpch_' + name)}, {dq(sql)}, '1d', 'AUTO');\n"
                   f"CREATE MATERIALIZED VIEW tpch_mv_{name} AS {sql};\n", what=f"tpch: creating {name}")
        log(f"tpch: {len(queries)} stream tables and materialized views created in {time.monotonic() - t0:.1f} s")
        # As an operator would: create the indexes explain_stream_table advises (join keys a delta
        # would otherwise reach by scanning a whole table; all foreign keys here). Both sides run
        # on the same indexed tables.
        self.tpch_indexes = []
        advised = advised_indexes(pg, "s.pgt_relid::regclass::text", "pgtrickle.pgt_stream_tables s")
        if advised:
            t0 = time.monotonic()
            pg.run(advised + "\nANALYZE;\n", what="tpch: creating the advised indexes")
            self.tpch_indexes = [l.replace('"public".', "").replace('"', "")[len("CREATE INDEX ON "):].rstrip(";")
                                 for l in advised.splitlines()]
            log(f"tpch: created the {len(self.tpch_indexes)} indexes explain_stream_table advises "
                f"({', '.join(self.tpch_indexes)}) in {time.monotonic() - t0:.1f} s")
        # Per stream table, in one query: its mode and why, its visible columns, and whether the refresh
        # functions (which write orders and lineitem) touch its sources: the action a refresh must take.
        rows = pg.value(r"""
SELECT string_agg(concat_ws(E'\x1f', c.relname, s.effective_mode, coalesce(s.mode_reason, ''),
         (SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
           WHERE attrelid = s.pgt_relid AND attnum > 0 AND NOT attisdropped AND attname NOT LIKE '\_\_pgt\_%'),
         EXISTS (SELECT 1 FROM pgtrickle.pgt_dependencies d
                  WHERE d.pgt_id = s.pgt_id AND d.source_relid IN ('orders'::regclass, 'lineitem'::regclass))),
       E'\n' ORDER BY c.relname)
  FROM pgtrickle.pgt_stream_tables s JOIN pg_class c ON c.oid = s.pgt_relid
 WHERE c.relname LIKE 'tpch\_q%'""")
        info = {}
        sqls = dict(queries)
        for line in rows.splitlines():
            st, mode, reason, cols, touched = line.split("\x1f")
            name = st[len("tpch_"):]
            want = "FULL" if mode == "FULL" else ("DIFFERENTIAL" if touched == "t" else "NO_DATA")
            info[name] = dict(mode=mode, reason=reason, cols=cols, want=want, sql=sqls[name])
        if sorted(info) != sorted(sqls):
            raise BenchError(f"tpch: stream tables {sorted(info)} do not match the queries {sorted(sqls)}")

        with open(os.path.join(repo, "tpch", "refresh.sql")) as f:
            rf = f.read()
        before = "SELECT bench.last_refresh_id() AS before_id \\gset\n"
        script = ""
        for r in range(rounds + 1):
            script += rf.replace("{round}", str(r + 1))
            for k, (name, sql) in enumerate(queries):
                st, mv, i = f"tpch_{name}", f"tpch_mv_{name}", info[name]
                refresh = f"SELECT pgtrickle.refresh_stream_table({q(st)})"
                if r == 0:  # warm-up: plans made, as in a long-lived refresh worker
                    script += f"{refresh};\nREFRESH MATERIALIZED VIEW {mv};\n"
                else:
                    script += before + self.pair(r + k, f"{name}_st", f"{name}_mv", refresh, mv_name=mv, refreshed=st) + \
                        f"SELECT bench.expect_action({q(st)}, :before_id, '{i['want']}');\n"
                script += f"SELECT bench.verify({q(st)}, {q(i['cols'])}, {dq(sql)});\n"
        t0 = time.monotonic()
        first_id = int(pg.value("SELECT bench.last_refresh_id()"))
        res = pg.timed(script, "tpch: refresh rounds")
        # Refreshes AUTO made FULL by measured cost (DIFFERENTIAL measured slower than FULL).
        auto_full = dict(line.split("|") for line in pg.run(
            "SELECT c.relname, count(*) FILTER (WHERE h.reason LIKE 'AUTO chose FULL%') "
            "FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) "
            f"JOIN pg_class c ON c.oid = s.pgt_relid WHERE h.refresh_id > {first_id} GROUP BY c.relname;\n").split())
        log(f"tpch: {rounds} timed rounds (and a warm-up) in {time.monotonic() - t0:.1f} s")
        ratios = []
        for name, _ in queries:
            i = info[name]
            st_s, mv_s = res[f"{name}_st"], res[f"{name}_mv"]
            ratio = median([x[0] for x in mv_s]) / median([x[0] for x in st_s])
            if i["mode"] == "DIFFERENTIAL":
                ratios.append(ratio)
            rec = self.record(f"tpch_{name}", "tpch_refresh", st_s, mv_s, None, "ratio >= 1", ratio >= 1, ratio,
                              extra={"mode": i["mode"], "mode_reason": i["reason"], "action": i["want"],
                                     "auto_full_refreshes": int(auto_full.get(f"tpch_{name}", 0)),
                                     "scale_factor": sf})
            rec["sizes"] = {"orders": orders, "lineitems": lineitems, "scale_factor": sf, "advised_indexes": self.tpch_indexes}
            self.progress(rec)
        med = median(ratios)
        self.results.append({
            "scenario": "tpch", "metric": "tpch_median_ratio", "value_ms": None, "baseline_ms": None,
            "ratio": round(med, 3), "sizes": {"orders": orders, "lineitems": lineitems, "scale_factor": sf,
                                              "advised_indexes": self.tpch_indexes},
            "target": f"ratio >= {TPCH_MEDIAN_TARGET:g}", "met": med >= TPCH_MEDIAN_TARGET, "reps": rounds,
            "note": f"median over the {len(ratios)} DIFFERENTIAL stream tables of matview time / refresh time"})
        self.progress(self.results[-1])

    # ---------------------------------------------------------------- run
    # ---------------------------------------------------------------- real offload
    def offload(self):
        """Server CPU per refresh of an aggregate over a large batch, refreshed by the scheduler
        in-process and by an external worker that reduces the batch itself: the CPU time of every
        pg_trickle server process involved (coordinator, refresh workers, the worker's sessions),
        read from /proc around each refresh."""
        pg = self.pg
        changed = OFFLOAD[self.args.mode]["changed"]
        pg.run(f"DROP ROLE IF EXISTS {OFFLOAD_ROLE};\nCREATE ROLE {OFFLOAD_ROLE} LOGIN;\n"
               f"GRANT pgtrickle_worker TO {OFFLOAD_ROLE};\n", what="offload: the worker's role")
        pg.run("ALTER SYSTEM SET pg_trickle.enabled = on;\nALTER SYSTEM SET pg_trickle.min_workers = 1;\n"
               "ALTER SYSTEM SET pg_trickle.max_workers = 1;\nSELECT pg_reload_conf();\n",
               db="postgres", what="offload: enabling the scheduler")
        try:
            for name, query, cols in OFFLOAD_SHAPES:
                self.offload_shape(name, query, cols, changed)
        finally:
            pg.run("ALTER SYSTEM RESET pg_trickle.enabled;\nALTER SYSTEM RESET pg_trickle.min_workers;\n"
                   "ALTER SYSTEM RESET pg_trickle.max_workers;\nALTER SYSTEM SET pg_trickle.enabled = off;\n"
                   "SELECT pg_reload_conf();\n", db="postgres", what="offload: disabling the scheduler")

    def offload_shape(self, name, query, cols, changed):
        pg = self.pg
        st = f"off_{name}"
        log(f"offload {name}: {query}")
        pg.run(f"SELECT pgtrickle.create_stream_table({q(st)}, {dq(query)}, '1s', 'DIFFERENTIAL');\n",
               what=f"offload {name}: creating the stream table")
        reps = self.cfg["reps"]
        cpu = {}
        for executor in ("in-process", "external"):
            worker = self.start_worker(st) if executor == "external" else None
            try:
                self.wait_for_executor(st, "external worker %" if worker else "refresh worker %", worker)
                time.sleep(2)  # the last poke's refresh is done before the first measurement
                samples = []
                for _ in range(reps):
                    samples.append(self.offload_refresh(st, query, cols, changed, executor))
                cpu[executor] = samples
            finally:
                if worker:
                    self.stop_worker(worker)
        pg.run(f"SELECT pgtrickle.drop_stream_table({q(st)});\n", what=f"offload {name}: dropping")
        inproc, ext = median(cpu["in-process"]), median(cpu["external"])
        ratio = ext / inproc if inproc > 0 else None
        self.results.append({
            "scenario": f"offload_{name}", "metric": "server_cpu_per_refresh",
            "value_ms": round(ext, 3), "baseline_ms": round(inproc, 3), "ratio": round(ratio, 3) if ratio else None,
            "sizes": {"fact_rows": self.n_fact, "dim_rows": self.n_dim, "changed_rows": changed},
            "target": f"ratio <= {OFFLOAD_CPU_TARGET:g}", "met": ratio is not None and ratio <= OFFLOAD_CPU_TARGET,
            "reps": reps, "samples_ms": [round(x, 3) for x in cpu["external"]],
            "baseline_samples_ms": [round(x, 3) for x in cpu["in-process"]],
            "note": "server CPU time (/proc/<pid>/schedstat) of the pg_trickle processes involved in one scheduled "
                    "refresh: external worker (its two sessions and the coordinator; the batch reduced in the worker) "
                    "against in-process (the coordinator and its refresh worker); medians"})
        self.progress(self.results[-1])

    def start_worker(self, st):
        dsn = f"host=127.0.0.1 port={self.args.port} dbname={DB} user={OFFLOAD_ROLE}"
        log_path = os.path.join(tempfile.gettempdir(), "pg_trickle_bench_worker.log")
        log_file = open(log_path, "w")
        proc = subprocess.Popen([self.args.worker, "--dsn", dsn, "--heartbeat-interval", "1", "--log-level", "debug"],
                                stdout=subprocess.DEVNULL, stderr=log_file)
        proc.log_path = log_path
        return proc

    def stop_worker(self, proc):
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def wait_for_executor(self, st, executor, worker):
        """Pokes the source until the scheduler has `executor` (a LIKE pattern) refresh `st` (it counts
        live external workers every 5 s)."""
        pg = self.pg
        mark = pg.value("SELECT clock_timestamp()")
        deadline = time.monotonic() + 60
        while True:
            # A row that exists: the churn deletes random ones (id 1 among them, now and then).
            pg.run("UPDATE fact SET qty = qty WHERE id = (SELECT min(id) FROM fact);\n")
            time.sleep(0.5)
            n = int(pg.value(f"SELECT count(*) FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s "
                             f"USING (pgt_id) WHERE s.pgt_relid = {q(st)}::regclass AND h.started_at > {q(mark)} "
                             f"AND h.executed_by LIKE {q(executor)} AND h.status = 'SUCCESS'"))
            if n > 0:
                return
            if time.monotonic() > deadline:
                extra = "\n" + self.scheduler_state()
                if worker:
                    with open(worker.log_path) as f:
                        lines = [x for x in f.read().splitlines() if "debug: heartbeat" not in x]
                        extra += "\nworker log (heartbeats left out):\n" + "\n".join(lines[-40:])
                raise BenchError(f"offload: no refresh of {st} by {executor} within 60 s{extra}")

    def scheduler_state(self):
        """What the scheduler and the sessions were doing, for a failure's message."""
        return self.pg.run(
            "\\echo jobs:\nSELECT job_id, pgt_id, state, attempt, worker_id, backend_pid, queued_at, assigned_at, heartbeat_at, outcome "
            "FROM pgtrickle.pgt_worker_jobs ORDER BY job_id DESC LIMIT 5;\n"
            "\\echo workers:\nSELECT worker_id, status, last_heartbeat, now() FROM pgtrickle.pgt_worker_registry;\n"
            "\\echo sessions:\nSELECT pid, backend_type, application_name, state, wait_event_type, wait_event, "
            "pg_catalog.left(query, 200) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid();\n"
            "\\echo waiting locks:\nSELECT pid, locktype, relation::regclass, classid, objid, mode FROM pg_locks WHERE NOT granted;\n"
            "\\echo pool:\nSELECT * FROM pgtrickle.pool_status;\n"
            "\\echo history:\nSELECT refresh_id, pgt_id, action, status, executed_by, started_at FROM pgtrickle.pgt_refresh_history "
            "ORDER BY refresh_id DESC LIMIT 5;\n")

    def involved_pids(self):
        return [int(x) for x in self.pg.run(
            "SELECT pid FROM pg_stat_activity WHERE (backend_type IN ('pg_trickle coordinator', "
            f"'pg_trickle refresh worker') AND datname = {q(DB)}) OR application_name = 'pg_trickle_worker';\n").split()]

    @staticmethod
    def cpu_ns(pid):
        """A process's CPU time in ns (schedstat; the stat ticks where schedstat is missing); 0 if gone."""
        try:
            with open(f"/proc/{pid}/schedstat") as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0

    def offload_refresh(self, st, query, cols, changed, executor):
        """One batch of `changed` rows, refreshed by the scheduler's `executor`: the server CPU (ms) of
        the involved processes from before the change to the refresh's end; checks the result."""
        pg = self.pg
        pids = self.involved_pids()
        before = {pid: self.cpu_ns(pid) for pid in pids}
        mark = pg.value("SELECT clock_timestamp()")
        pg.run(self.next_seed() + self.churn_sql(changed), what="offload: churn")
        deadline = time.monotonic() + 300
        pattern = "external worker %" if executor == "external" else "refresh worker %"
        while True:
            # The refresh whose batch holds the churn (not one of a poke that began before it committed).
            row = pg.value(f"SELECT h.action || '|' || h.executed_by || '|' || coalesce(h.reason, '') "
                           f"FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) "
                           f"WHERE s.pgt_relid = {q(st)}::regclass AND h.started_at > {q(mark)} "
                           f"AND h.status = 'SUCCESS' AND h.delta_rows >= {changed} ORDER BY h.refresh_id LIMIT 1")
            if row:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"offload: {st} was not refreshed within 300 s of a batch")
            time.sleep(0.05)
        # The refresh's own transaction has committed when its history row is visible; its clean-up
        # follows in a transaction of its own (a refresh worker's, or the external worker's
        # worker_release), which takes milliseconds. Waited for, not polled: reading the buffer
        # would make it delete rather than truncate.
        time.sleep(0.3)
        after = {pid: self.cpu_ns(pid) for pid in set(pids) | set(self.involved_pids())}
        action, by, reason = row.split("|", 2)
        if action != "DIFFERENTIAL" or not by.startswith(pattern[:-2]):
            raise BenchError(f"offload: {st} was refreshed {action} by {by}, expected DIFFERENTIAL by {pattern}")
        if executor == "external" and "reduced to" not in reason:
            raise BenchError(f"offload: the external worker did not reduce the batch of {st} itself: {reason}")
        pg.run(f"SELECT bench.verify({q(st)}, {q(cols)}, {dq(query)});\n", what=f"offload: verifying {st}")
        return sum(after[p] - before.get(p, 0) for p in after) / 1e6

    def run(self):
        t0 = time.monotonic()
        only = self.args.only
        self.setup(load=only not in ("idle", "tpch"))
        machine = self.machine()
        if only in (None, "shapes"):
            for sh in SHAPES:
                self.shape(sh)
        if only in (None, "dag"):
            self.dag()
        if only in (None, "write_path"):
            self.write_path()
        if only in (None, "idle"):
            self.idle()
        if only in (None, "tpch"):
            self.tpch()
        if only in (None, "offload"):
            self.offload()
        elapsed = time.monotonic() - t0
        log(f"measurements took {elapsed / 60:.1f} min")
        return machine, elapsed


PGBENCH_CLIENTS = 2


def fmt_ms(v):
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:,.0f} ms"
    if v >= 10:
        return f"{v:.1f} ms"
    return f"{v:.2f} ms"


def fmt_ratio(rec):
    r = rec["ratio"]
    if r is None:
        return "-"
    m = rec["metric"]
    if m in ("full_refresh", "reader_after_upstream_full"):
        return f"{r:.2f}x the matview's time"
    if m.startswith("upstream_full_refresh"):
        return f"{r:.2f}x the time"
    if m == "pgbench_update_tps":
        return f"{r:.2f} of the TPS"
    if m == "idle_cpu":
        return f"{r * 100:.2f}% of a core"
    if m.startswith("insert_select"):
        return f"{r:.2f}x the time"
    if m == "server_cpu_per_refresh":
        return f"{r:.2f}x the server CPU"
    return f"{r:,.1f}x faster" if r >= 1 else f"{r:.2f}x (slower)"


METRIC_TITLES = {
    "no_change": "no change",
    "single_row": "1 changed row",
    "churn_0.1pct": "0.1% changed",
    "churn_1pct": "1% changed",
    "full_refresh": "FULL refresh",
    "pgbench_update_tps": "pgbench 1-row UPDATE",
    "idle_tick": "coordinator tick, all idle",
    "idle_cpu": "coordinator CPU, all idle",
    "one_change_visible": "1 change visible",
    "fan_out_applied": "1 change every one reads, applied",
    "full_unchanged_rewrites": "FULL stream table, source unchanged",
    "tpch_median_ratio": "median query, DIFFERENTIAL",
    "server_cpu_per_refresh": "server CPU per refresh, external worker (offloaded)",
    "upstream_full_refresh": "FULL refresh of the upstream, read by an AUTO stream table",
    "upstream_full_refresh_full_reader": "FULL refresh of the upstream, read by a FULL stream table",
    "reader_after_upstream_full": "the reader's refresh after it",
}


def metric_title(rec):
    m = rec["metric"]
    if m.startswith("insert_select"):
        return f"INSERT ... SELECT {rec['sizes']['changed_rows']:,} rows"
    if m == "tpch_refresh":
        if rec["mode"] == "DIFFERENTIAL":
            auto_full = rec.get("auto_full_refreshes", 0)
            return "DIFFERENTIAL refresh after RF1 + RF2" + (" (no change to its tables)" if rec["action"] == "NO_DATA" else "") + \
                (f" ({auto_full} of {rec['reps']} made FULL by AUTO: measured cheaper)" if auto_full else "")
        return f"FULL refresh after RF1 + RF2 ({rec['mode_reason']})"
    return METRIC_TITLES.get(m, m)


def baseline_title(rec):
    if rec["scenario"] == "idle":
        return "-"
    if rec["scenario"] == "write_path":
        return "without capture"
    if rec["metric"] == "server_cpu_per_refresh":
        return "in-process refresh"
    if rec["metric"].startswith("upstream_full_refresh"):
        return "its twin, read by none"
    return "REFRESH MATERIALIZED VIEW"


def value_cells(r):
    """The pg_trickle and baseline cells of one result, as both tables show them."""
    if r["metric"] == "pgbench_update_tps":
        val, base = f"{r['tps']:,.0f} TPS", f"{r['baseline_tps']:,.0f} TPS"
    elif r["metric"] == "idle_cpu":
        val, base = f"{r['history_rows_written']} history rows", "-"
    elif r["metric"] == "full_unchanged_rewrites":
        val, base = f"{r['refreshes']} refreshes in {r['watched_s']} s", "-"
    elif r["metric"] == "idle_tick":
        val, base = f"{fmt_ms(r['value_ms'])} (max {fmt_ms(r['max_ms'])})", "-"
    else:
        val, base = fmt_ms(r["value_ms"]), fmt_ms(r["baseline_ms"])
    if r["metric"] in ("no_change", "single_row"):
        val += f" ({fmt_ms(r['server_ms'])} server)"
    return val, base


def text_table(results):
    rows = [("shape", "metric", "pg_trickle", "baseline", "ratio", "target", "met")]
    for r in results:
        val, base = value_cells(r)
        rows.append((r["scenario"], metric_title(r), val, base, fmt_ratio(r), r["target"],
                     "yes" if r["met"] else "NO"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(results, machine, cfg, notes, elapsed):
    shapes = {s["name"]: s for s in SHAPES}
    out = []
    out.append(f"Last full run: {machine['date']}, commit `{machine['commit']}`, "
               f"{machine['nproc']} CPUs ({machine.get('cpu') or 'unknown CPU'}), {machine['memory_gb']} GB RAM, "
               f"{machine['postgres']}; load average {machine['loadavg']} when it started (other work on the "
               f"machine adds noise); measurements took {elapsed / 60:.0f} min.")
    out.append(f"fact {cfg['fact']:,} rows, dim {cfg['dim']:,} rows; medians of {cfg['reps']} repetitions "
               f"(write path: {cfg['pgbench_reps']} pgbench runs of {cfg['pgbench_secs']} s per side). "
               f"Server settings: {machine['settings']}.")
    if notes:
        out.append("Fewer repetitions where the phase's time budget ran out: " + "; ".join(notes) + ".")
    out.append("")
    out.append("| shape | metric | pg_trickle | baseline | ratio | target | met |")
    out.append("| --- | --- | ---: | ---: | ---: | --- | --- |")
    for r in results:
        val, base = value_cells(r)
        shape = r["scenario"]
        if shape in shapes:
            advised = r["sizes"].get("advised_indexes")
            shape = f"{shapes[shape]['title']}"
            if advised:
                # The index explain_stream_table advised, as the bench created it for this shape.
                cols = ", ".join(a[a.index("(") + 1:a.rindex(")")].replace('"', "") for a in advised)
                shape += f" (+ advised index on {cols})"
        elif shape == "idle":
            shape = f"{r['sizes']['stream_tables']:,} idle stream tables"
        elif shape.startswith("tpch"):
            which = "" if shape == "tpch" else " " + shape[len("tpch_"):].upper()
            shape = f"TPC-H{which} (SF {r['sizes']['scale_factor']})"
        elif shape.startswith("offload_"):
            shape = f"offload, {shape[len('offload_'):]}"
        elif shape == "dag":
            shape = "FULL stream table read by another"
        else:
            shape = "write path"
        out.append(f"| {shape} | {metric_title(r)} | {val} | {base} | {fmt_ratio(r)} | "
                   f"`{r['target']}` | {'yes' if r['met'] else '**no**'} |")
    out.append("")
    met = sum(1 for r in results if r["met"])
    out.append(f"{met} of {len(results)} targets met. Raw numbers (every sample): "
               f"[bench/results/latest.json](../bench/results/latest.json).")
    return "\n".join(out)


def update_docs(path, block):
    with open(path) as f:
        text = f.read()
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if begin not in text or end not in text:
        raise BenchError(f"{path} lacks the {begin} / {end} markers")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(head + begin + "\n" + block + "\n" + end + tail)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", choices=sorted(SIZES), default="full")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--after-create-check", default=None)
    ap.add_argument("--only", choices=["shapes", "dag", "write_path", "idle", "tpch", "offload"], default=None)
    ap.add_argument("--worker", required=True, help="the pg_trickle_worker binary (the offload part)")
    ap.add_argument("--huge-pages", action="store_true",
                    help="the cluster runs with huge pages: results get their own file, never the docs' table")
    args = ap.parse_args()

    b = Bench(args)
    try:
        machine, elapsed = b.run()
    except BenchError as e:
        log(f"\033[1;31mFAILED\033[0m: {e}")
        sys.exit(1)

    for r in b.results:
        r["run"] = {"mode": args.mode, "commit": machine["commit"], "date": machine["date"]}
    print()
    print(f"pg_trickle benchmark ({args.mode}): fact {b.n_fact:,} rows, dim {b.n_dim:,} rows, "
          f"{b.n_grp:,} groups, medians of up to {b.cfg['reps']} repetitions")
    print(f"machine: {machine['nproc']} CPUs, {machine['memory_gb']} GB RAM, {machine['postgres']}, "
          f"commit {machine['commit']}, load average at start {machine['loadavg']}")
    print("pg_trickle = the stream table's refresh (write path: with change capture); times are statement "
          "times as psql sees them (execution + commit)")
    print()
    print(text_table(b.results))
    print()
    met = sum(1 for r in b.results if r["met"])
    print(f"{met} of {len(b.results)} targets met")

    outdir = os.path.join(args.repo, "bench", "results")
    os.makedirs(outdir, exist_ok=True)
    name = "latest" if args.mode == "full" else "quick"
    if args.only:
        name = f"{args.mode}-{args.only}"
    if args.huge_pages:
        name = f"{name}-huge-pages"
    out = os.path.join(outdir, f"{name}.json")
    with open(out, "w") as f:
        json.dump(b.results, f, indent=2)
        f.write("\n")
    log(f"wrote {os.path.relpath(out, args.repo)}")
    if args.mode == "full" and not args.only and not args.huge_pages:
        path = os.path.join(args.repo, "docs", "BENCHMARKS.md")
        update_docs(path, markdown(b.results, machine, b.cfg, b.notes, elapsed))
        log(f"updated the results table in {os.path.relpath(path, args.repo)}")


if __name__ == "__main__":
    main()
