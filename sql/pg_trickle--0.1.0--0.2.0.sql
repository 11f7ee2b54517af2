-- pg_trickle 0.1.0 -> 0.2.0. Run by ALTER EXTENSION pg_trickle UPDATE.
\echo Use "ALTER EXTENSION pg_trickle UPDATE" to load this file. \quit

-- What refreshes cost, per stream table (AUTO decides by it). Identical to its definition in
-- sql/bootstrap.sql; pg_test/tests/upgrade.rs checks that an updated catalog equals a fresh one.
CREATE TABLE pgtrickle.pgt_cost_model_summary (
    pgt_id                     bigint PRIMARY KEY REFERENCES pgtrickle.pgt_stream_tables ON DELETE CASCADE,
    full_refreshes             bigint NOT NULL DEFAULT 0,
    full_total_ms              float8 NOT NULL DEFAULT 0,
    full_last_ms               float8,
    full_ewma_ms               float8,
    differential_refreshes     bigint NOT NULL DEFAULT 0,
    differential_total_ms      float8 NOT NULL DEFAULT 0,
    differential_changes       bigint NOT NULL DEFAULT 0,
    differential_last_ms       float8,
    differential_last_changes  bigint,
    differential_fixed_ms      float8,
    differential_ms_per_change float8,
    fit_mean_changes           float8 NOT NULL DEFAULT 0,
    fit_mean_ms                float8 NOT NULL DEFAULT 0,
    fit_var_changes            float8 NOT NULL DEFAULT 0,
    fit_cov_changes_ms         float8 NOT NULL DEFAULT 0,
    stat_full_refreshes        bigint NOT NULL DEFAULT 0,
    stat_diff_refreshes        bigint NOT NULL DEFAULT 0,
    stat_no_data_refreshes     bigint NOT NULL DEFAULT 0,
    stat_failed_refreshes      bigint NOT NULL DEFAULT 0,
    stat_delta_rows            bigint NOT NULL DEFAULT 0,
    stat_total_ms              float8 NOT NULL DEFAULT 0,
    stat_recent_ms             float8[] NOT NULL DEFAULT '{}',
    stat_recent_next           bigint NOT NULL DEFAULT 0,
    stat_last_refresh_at       timestamptz,
    stats_reset                timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE pgtrickle.pgt_cost_model_summary IS 'pg_trickle: what each stream table''s FULL and DIFFERENTIAL refreshes cost (updated by every refresh that is not NO_DATA); AUTO refreshes FULL only when a batch''s predicted DIFFERENTIAL cost exceeds the measured FULL cost';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.pgt_id IS 'the stream table (pgt_stream_tables.pgt_id)';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.full_refreshes IS 'FULL refreshes measured (including the initial population)';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.full_total_ms IS 'total duration of the FULL refreshes, in milliseconds';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.full_last_ms IS 'duration of the last FULL refresh, in milliseconds';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.full_ewma_ms IS 'measured FULL cost AUTO compares against: exponentially weighted moving average of FULL durations, in milliseconds';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.differential_refreshes IS 'DIFFERENTIAL refreshes measured (NO_DATA refreshes are not counted)';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.differential_total_ms IS 'total duration of the DIFFERENTIAL refreshes, in milliseconds';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.differential_changes IS 'total change rows applied by DIFFERENTIAL refreshes';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.differential_last_ms IS 'duration of the last DIFFERENTIAL refresh, in milliseconds';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.differential_last_changes IS 'change rows in the last DIFFERENTIAL refresh''s batch';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.differential_fixed_ms IS 'fitted fixed cost of a DIFFERENTIAL refresh, in milliseconds (NULL until 3 refreshes with varying batch sizes are measured)';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.differential_ms_per_change IS 'fitted cost per change row of a DIFFERENTIAL refresh, in milliseconds: predicted = fixed + per change x batch size';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.fit_mean_changes IS 'fit state: exponentially weighted mean batch size of DIFFERENTIAL refreshes';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.fit_mean_ms IS 'fit state: exponentially weighted mean DIFFERENTIAL duration, in milliseconds';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.fit_var_changes IS 'fit state: exponentially weighted variance of the batch size';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.fit_cov_changes_ms IS 'fit state: exponentially weighted covariance of batch size and duration';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.stat_full_refreshes IS 'statistics (pg_stat_pgtrickle): successful FULL refreshes since stats_reset';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.stat_diff_refreshes IS 'statistics: successful DIFFERENTIAL refreshes since stats_reset';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.stat_no_data_refreshes IS 'statistics: NO_DATA refreshes (nothing to apply) since stats_reset';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.stat_failed_refreshes IS 'statistics: failed refreshes since stats_reset';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.stat_delta_rows IS 'statistics: change rows applied by DIFFERENTIAL refreshes since stats_reset';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.stat_total_ms IS 'statistics: total duration of the successful refreshes since stats_reset, in milliseconds';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.stat_recent_ms IS 'statistics: durations of the last 128 successful refreshes, in milliseconds (a ring; stat_recent_next is the next slot)';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.stat_recent_next IS 'statistics: refreshes written to stat_recent_ms since stats_reset';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.stat_last_refresh_at IS 'statistics: when the last successful refresh ended';
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.stats_reset IS 'when the statistics (stat_*) started: the first refresh, or the last pg_stat_pgtrickle_reset()';
SELECT pg_catalog.pg_extension_config_dump('pgtrickle.pgt_cost_model_summary', '');

-- Capture sees every write (0.2.0): triggers on partitions and inheritance children, capture and
-- event triggers that fire under session_replication_role = replica, re-armed after DDL. Identical to
-- sql/finalize.sql but for CREATE OR REPLACE.
-- Change capture's trigger function (src/cdc/trigger.rs): every capture trigger of a source, on it
-- and on its partitions and inheritance children, runs it with the source's OID as argument. It
-- captures only from the triggers pg_trickle names so (EXECUTE stays public: whoever installs
-- capture creates the triggers).
CREATE FUNCTION pgtrickle._capture() RETURNS trigger LANGUAGE c AS 'MODULE_PATHNAME', 'pgtrickle_capture';
COMMENT ON FUNCTION pgtrickle._capture() IS 'pg_trickle: appends a statement''s changes to the change buffer of the source given as argument';
-- The signal trigger function (src/cdc/trigger.rs): sources read only by FULL stream tables carry
-- triggers running it, which tell the coordinator the source changed. Only pg_trickle creates them.
CREATE FUNCTION pgtrickle._signal() RETURNS trigger LANGUAGE c AS 'MODULE_PATHNAME', 'pgtrickle_signal';
COMMENT ON FUNCTION pgtrickle._signal() IS 'pg_trickle: tells the coordinator that the source given as argument changed';
REVOKE ALL ON FUNCTION pgtrickle._signal() FROM PUBLIC;

-- The batch predicate (src/cdc/batch.rs): whether a change row's transaction is visible in the new
-- snapshot and not in the old, with planner support that estimates the batch at the row count a
-- refresh has counted (the fourth argument), where PostgreSQL's own functions make any batch look
-- like ~15% of its buffer. Stream tables' owners run it in their refreshes: EXECUTE stays public.
CREATE FUNCTION pgtrickle._in_batch_support(internal) RETURNS internal LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pgtrickle_in_batch_support';
CREATE FUNCTION pgtrickle._in_batch(xid8, pg_catalog.pg_snapshot, pg_catalog.pg_snapshot, bigint) RETURNS boolean
    LANGUAGE c IMMUTABLE PARALLEL SAFE SUPPORT pgtrickle._in_batch_support
    AS 'MODULE_PATHNAME', 'pgtrickle_in_batch';
COMMENT ON FUNCTION pgtrickle._in_batch(xid8, pg_catalog.pg_snapshot, pg_catalog.pg_snapshot, bigint) IS 'pg_trickle: whether a change of this transaction is in the batch after the old snapshot up to the new one; the planner estimates the batch at the given rows';

-- The ranks of a window partition's rows (src/dvm/window_ranks.rs, used by src/dvm/analyze/window.rs):
-- given their ORDER BY keys in the window's order, one element per row, for each row the place of its
-- first peer ('r', rank()), how many sets of peers come up to it ('d', dense_rank()) or the place of
-- its last peer ('e', cume_dist()). Peers are rows whose keys are equal by the element type's default
-- equality, NULLs equal to NULLs, as in a window. Stream tables' owners run it in their refreshes:
-- EXECUTE stays public.
CREATE FUNCTION pgtrickle._window_ranks(keys anyarray, kind "char") RETURNS bigint[]
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgtrickle_window_ranks';
COMMENT ON FUNCTION pgtrickle._window_ranks(anyarray, "char") IS 'pg_trickle: the ranks of a window partition''s rows by their peers, from their ORDER BY keys in order';

-- Requests to reinitialise a stream table, made from inside other transactions (DDL on a source, a
-- dropped capture trigger): appended, never updated, so DDL under REPEATABLE READ does not fail on a
-- refresh's update of the stream table's catalog row. A successful refresh honours the requests it saw
-- and deletes them. No foreign key: its check would lock that row. Not dumped: runtime state (a
-- restored stream table reinitialises anyway).
CREATE TABLE pgtrickle.pgt_reinit_requests (
    request_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pgt_id       bigint NOT NULL,
    reason       text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pgt_reinit_requests_pgt_id ON pgtrickle.pgt_reinit_requests (pgt_id);
COMMENT ON TABLE pgtrickle.pgt_reinit_requests IS 'pg_trickle: stream tables whose next refresh must reinitialise, and why (appended by DDL on their sources)';

-- Removes change capture (buffer, capture triggers, trigger functions and with them their triggers)
-- from sources that no DIFFERENTIAL stream table reads any more.
CREATE OR REPLACE FUNCTION pgtrickle._cdc_gc() RETURNS void
-- client_min_messages: DROP ... IF EXISTS of what an older version never made would tell the user.
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET client_min_messages = warning AS $$
DECLARE
    r record;
    t record;
BEGIN
    FOR r IN
        SELECT c.relname, pg_catalog.substring(c.relname, '^changes_([0-9]+)$')::oid AS source
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'pgtrickle_changes' AND c.relkind = 'r' AND c.relname ~ '^changes_[0-9]+$'
    LOOP
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables st USING (pgt_id)
             WHERE d.source_relid = r.source AND st.effective_mode = 'DIFFERENTIAL');
        EXECUTE pg_catalog.format('DROP TABLE pgtrickle_changes.%I', r.relname);
        FOR t IN
            SELECT tg.tgrelid::pg_catalog.regclass AS rel, tg.tgname FROM pg_catalog.pg_trigger tg
             WHERE tg.tgfoid = pg_catalog.to_regprocedure('pgtrickle._capture()') AND NOT tg.tgisinternal AND tg.tgparentid = 0
               AND tg.tgargs = pg_catalog.convert_to(r.source::text, 'SQL_ASCII') OPERATOR(pg_catalog.||) pg_catalog.decode('00', 'hex')
        LOOP
            EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', t.tgname, t.rel);
        END LOOP;
        EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS pgtrickle_changes.%I() CASCADE', 'capture_' || r.source);
        EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS pgtrickle_changes.%I() CASCADE', 'truncated_' || r.source);
        EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS pgtrickle_changes.%I() CASCADE', 'capture_row_' || r.source);
    END LOOP;
    -- Signal triggers of sources no FULL stream table that skips unchanged sources reads any more.
    FOR t IN
        SELECT tg.tgrelid::pg_catalog.regclass AS rel, tg.tgname FROM pg_catalog.pg_trigger tg
         WHERE tg.tgfoid = pg_catalog.to_regprocedure('pgtrickle._signal()') AND NOT tg.tgisinternal AND tg.tgparentid = 0
           AND NOT EXISTS (
               SELECT 1 FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables st USING (pgt_id)
                WHERE st.skip_unchanged
                  AND tg.tgargs = pg_catalog.convert_to(d.source_relid::text, 'SQL_ASCII') OPERATOR(pg_catalog.||) pg_catalog.decode('00', 'hex'))
    LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', t.tgname, t.rel);
    END LOOP;
    -- Reinitialisation requests of stream tables that are gone.
    DELETE FROM pgtrickle.pgt_reinit_requests q
     WHERE NOT EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables st WHERE st.pgt_id = q.pgt_id);
END
$$;
REVOKE ALL ON FUNCTION pgtrickle._cdc_gc() FROM PUBLIC;

-- Who ran each refresh, and its batch size (0.2.0).
ALTER TABLE pgtrickle.pgt_refresh_history ADD COLUMN executed_by text, ADD COLUMN delta_rows bigint;
COMMENT ON COLUMN pgtrickle.pgt_refresh_history.executed_by IS 'who ran the refresh: refresh worker <pid>, coordinator <pid> (in-process, without workers), session <pid> (create_stream_table, refresh_stream_table), or external worker <worker_id> (pg_trickle_worker)';
COMMENT ON COLUMN pgtrickle.pgt_refresh_history.delta_rows IS 'change rows in the batch a DIFFERENTIAL refresh applied (0 for FULL and NO_DATA)';

-- Why a stream table reinitialises, for the refresh history (0.2.0).
ALTER TABLE pgtrickle.pgt_stream_tables ADD COLUMN reinit_reason text;
ALTER TABLE pgtrickle.pgt_stream_tables ADD COLUMN refresh_started_at timestamptz;
ALTER TABLE pgtrickle.pgt_stream_tables ADD COLUMN skip_unchanged boolean NOT NULL DEFAULT false;
-- Whether a FULL stream table qualifies is decided when it reinitialises (src/catalog/unchanged.rs):
-- its next refresh (FULL anyway) does.
UPDATE pgtrickle.pgt_stream_tables
   SET needs_reinit = true,
       reinit_reason = COALESCE(reinit_reason, 'pg_trickle 0.2.0 decides whether refreshes over unchanged sources are skipped')
 WHERE effective_mode = 'FULL';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.needs_reinit IS 'the next refresh must be FULL (reinitialise; reinit_reason says why)';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.reinit_reason IS 'why the next refresh must be FULL: a source truncated, its columns or partitions changed, capture interrupted, a mode switch';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.refresh_started_at IS 'when the scheduled refresh now in flight started (NULL: none); one left set by a crash is recorded as failed when the coordinator starts again';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.skip_unchanged IS 'FULL mode: the refresh is skipped while no source changed (every table the query reads, views included, signals its writes, and the query calls only IMMUTABLE functions)';

-- Each stream table's defining query as a view that follows renames (0.2.0).
CREATE SCHEMA pgtrickle_queries;
COMMENT ON SCHEMA pgtrickle_queries IS 'pg_trickle: each stream table''s defining query as a view q_<pgt_id>, which follows renames (internal)';

-- New functions of the 0.2.0 library (as the generated install script declares them).
CREATE FUNCTION pgtrickle."_own_write"() RETURNS bool
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'own_write_wrapper';
CREATE FUNCTION pgtrickle."_query_sources_changed"(
	"command_tag" TEXT,
	"relid" oid
) RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'query_sources_changed_wrapper';
CREATE FUNCTION pgtrickle."_create_query_view"(
	"pgt_id" bigint
) RETURNS void
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'create_query_view_wrapper';
CREATE FUNCTION pgtrickle."restore_stream_tables"() RETURNS TABLE (
	"pgt_id" bigint,
	"stream_table" TEXT,
	"outcome" TEXT
)
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'restore_stream_tables_wrapper';
CREATE FUNCTION pgtrickle."_pool_status"() RETURNS TABLE (
	"coordinator_pid" INT,
	"target_workers" INT,
	"max_workers" INT,
	"workers" INT,
	"busy_workers" INT,
	"idle_workers" INT,
	"queued_refreshes" INT,
	"running_refreshes" INT,
	"pending_cleanups" INT,
	"refreshes" bigint,
	"workers_started" bigint,
	"worker_start_failures" bigint,
	"workers_lost" bigint,
	"last_tick_ms" double precision,
	"decided_at" timestamp with time zone,
	"reason" TEXT,
	"cpu_percent" double precision,
	"queue_depth" INT,
	"lag_ratio" double precision,
	"signalled_sources" INT,
	"signal_overflows" bigint
)
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'pool_status_wrapper';
CREATE FUNCTION pgtrickle."_pool_decisions"() RETURNS TABLE (
	"decided_at" timestamp with time zone,
	"target_workers" INT,
	"changed" bool,
	"reason" TEXT,
	"cpu_percent" double precision,
	"queue_depth" INT,
	"busy_workers" INT,
	"workers" INT,
	"lag_ratio" double precision
)
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'pool_decisions_wrapper';
CREATE FUNCTION pgtrickle."_note_change"(
	"source" oid
) RETURNS void
STRICT PARALLEL UNSAFE  
LANGUAGE c
AS 'MODULE_PATHNAME', 'note_change_wrapper';
CREATE FUNCTION pgtrickle."_capture_truncate"(
	"source" oid
) RETURNS void
STRICT PARALLEL UNSAFE  
LANGUAGE c
AS 'MODULE_PATHNAME', 'capture_truncate_wrapper';
CREATE FUNCTION pgtrickle."_percentile"(
	"values" double precision[],
	"p" double precision
) RETURNS double precision
IMMUTABLE STRICT PARALLEL SAFE  
LANGUAGE c
AS 'MODULE_PATHNAME', 'percentile_of_wrapper';
CREATE FUNCTION pgtrickle."_current_lag_ms"(
	"pgt_id" bigint
) RETURNS double precision
STRICT STABLE  
LANGUAGE c
AS 'MODULE_PATHNAME', 'current_lag_ms_wrapper';
CREATE FUNCTION pgtrickle."pg_stat_pgtrickle_reset"(
	"name" TEXT
) RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'reset_one_wrapper';
CREATE FUNCTION pgtrickle."pg_stat_pgtrickle_reset"() RETURNS void
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'reset_all_wrapper';
CREATE FUNCTION pgtrickle."_stream_table_altered"(
	"relid" oid
) RETURNS void
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'stream_table_altered_wrapper';

-- Refuses writes to stream tables other than pg_trickle's own (src/catalog/guard.rs).
CREATE OR REPLACE FUNCTION pgtrickle._guard_stream_table() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT pgtrickle._own_write() THEN
        RAISE EXCEPTION 'cannot % stream table %.%', TG_OP, pg_catalog.quote_ident(TG_TABLE_SCHEMA), pg_catalog.quote_ident(TG_TABLE_NAME)
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'A stream table holds the result of its defining query; only its refreshes write to it.',
                  HINT = 'Change its sources instead (and refresh it with pgtrickle.refresh_stream_table()).';
    END IF;
    RETURN NULL;
END
$$;

-- Keeps capture in step with DDL on sources (see src/cdc): columns added or changed, partitions and
-- inheritance children created, attached or detached, capture triggers disabled or re-enabled.
CREATE OR REPLACE FUNCTION pgtrickle._on_ddl_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    IF pg_catalog.to_regclass('pgtrickle.pgt_dependencies') IS NULL THEN
        RETURN;
    END IF;
    -- The sources among the relations the command touched, their ancestors (a new partition or child
    -- of a source) and their descendants (a source attached below another table), and the sources
    -- whose capture triggers they carry.
    FOR r IN
        WITH RECURSIVE touched(relid) AS (
            SELECT c.objid FROM pg_catalog.pg_event_trigger_ddl_commands() c
             WHERE c.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
        ), up(relid) AS (
            SELECT relid FROM touched
            UNION SELECT i.inhparent FROM pg_catalog.pg_inherits i JOIN up ON i.inhrelid = up.relid
        ), down(relid) AS (
            SELECT relid FROM touched
            UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN down ON i.inhparent = down.relid
        )
        SELECT DISTINCT s.relid FROM (
                   SELECT relid FROM up UNION SELECT relid FROM down
                   -- a former child (NO INHERIT) still carrying a source's triggers
                   UNION SELECT pg_catalog.substring(t.tgname, '^pgtrickle_(?:capture|signal)_([0-9]+)_')::oid
                     FROM pg_catalog.pg_trigger t JOIN touched ON t.tgrelid = touched.relid
                    WHERE t.tgname ~ '^pgtrickle_(capture|signal)_[0-9]+_') s
         WHERE EXISTS (SELECT 1 FROM pgtrickle.pgt_dependencies d WHERE d.source_relid = s.relid)
    LOOP
        PERFORM pgtrickle._source_altered(r.relid);
    END LOOP;
    -- Renamed tables, views, columns or schemas; redefined views (src/catalog/query_view.rs).
    FOR r IN
        SELECT c.command_tag, CASE WHEN c.classid = 'pg_catalog.pg_class'::pg_catalog.regclass THEN c.objid END AS relid
          FROM pg_catalog.pg_event_trigger_ddl_commands() c
    LOOP
        PERFORM pgtrickle._query_sources_changed(r.command_tag, r.relid);
    END LOOP;
    -- Stream tables keep the columns their query and refreshes need.
    FOR r IN
        SELECT DISTINCT c.objid AS relid FROM pg_catalog.pg_event_trigger_ddl_commands() c
         WHERE c.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
           AND EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables st WHERE st.pgt_relid = c.objid)
    LOOP
        PERFORM pgtrickle._stream_table_altered(r.relid);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pgtrickle._on_ddl_end() FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle._source_altered(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle._stream_table_altered(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle._query_sources_changed(text, oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle._create_query_view(bigint) FROM PUBLIC;
-- For superusers only: it re-arms capture for every restored stream table.
REVOKE ALL ON FUNCTION pgtrickle.restore_stream_tables() FROM PUBLIC;
-- Only pg_trickle puts guards on tables (a restore finds stream tables by them): nobody else may
-- create a trigger running it. Firing a trigger needs no EXECUTE right.
REVOKE ALL ON FUNCTION pgtrickle._guard_stream_table() FROM PUBLIC;
DROP EVENT TRIGGER pgtrickle_ddl_end;
CREATE EVENT TRIGGER pgtrickle_ddl_end ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'ALTER VIEW', 'CREATE VIEW', 'ALTER SCHEMA', 'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE')
    EXECUTE FUNCTION pgtrickle._on_ddl_end();
-- Also under session_replication_role = replica (restores, replication apply).
ALTER EVENT TRIGGER pgtrickle_ddl_end ENABLE ALWAYS;

-- Keeps the catalog in step with DROP TABLE / DROP SCHEMA ... CASCADE / DROP OWNED on storage tables,
-- and capture with dropped partitions and capture triggers.
-- (Dropping a *source* is refused by PostgreSQL itself: each storage table depends on its sources in
-- pg_depend, so DROP TABLE source fails unless CASCADE, which drops the stream table too.)
-- SECURITY DEFINER: whoever drops a table must not need rights on the catalog.
CREATE OR REPLACE FUNCTION pgtrickle._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    -- During DROP EXTENSION the catalog goes away with everything else.
    IF pg_catalog.to_regclass('pgtrickle.pgt_stream_tables') IS NULL THEN
        RETURN;
    END IF;
    -- A capture or signal trigger went (with a dropped partition, or dropped by hand): rows may have
    -- gone unseen, so the source's dependents of that family reinitialise (DIFFERENTIAL ones for
    -- capture, FULL ones that skip unchanged sources for signals), and the triggers are re-armed
    -- where the source lives on.
    FOR r IN
        SELECT DISTINCT pg_catalog.substring(d.address_names[3], '^pgtrickle_(capture|signal)_') AS family,
               COALESCE(
                   pg_catalog.substring(d.address_names[3], '^pgtrickle_(?:capture|signal)_([0-9]+)_')::oid,
                   pg_catalog.to_regclass(pg_catalog.quote_ident(d.address_names[1]) || '.'
                                          || pg_catalog.quote_ident(d.address_names[2]))::oid) AS source
          FROM pg_catalog.pg_event_trigger_dropped_objects() d
         WHERE d.object_type = 'trigger' AND d.address_names[3] ~ '^pgtrickle_(capture|signal)_'
    LOOP
        CONTINUE WHEN r.source IS NULL;
        INSERT INTO pgtrickle.pgt_reinit_requests (pgt_id, reason)
        SELECT pgt_id, pg_catalog.format('a %s trigger of %s was dropped (with a partition, or by hand)',
                                         r.family, r.source::pg_catalog.regclass)
          FROM pgtrickle.pgt_stream_tables
         WHERE CASE r.family WHEN 'capture' THEN effective_mode = 'DIFFERENTIAL' ELSE skip_unchanged END
           AND pgt_id IN (SELECT pgt_id FROM pgtrickle.pgt_dependencies WHERE source_relid = r.source);
        PERFORM pgtrickle._source_altered(r.source);
    END LOOP;
    -- A stream table's query view is pg_trickle's: dropped on its own, the stream table would lose
    -- its query.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger_dropped_objects() d
                 JOIN pgtrickle.pgt_stream_tables st ON d.object_name = 'q_' || st.pgt_id
                WHERE d.original AND d.object_type = 'view' AND d.schema_name = 'pgtrickle_queries'
                  -- not with its stream table (DROP OWNED, DROP SCHEMA ... CASCADE)
                  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger_dropped_objects() s
                                   WHERE s.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND s.objid = st.pgt_relid)) THEN
        RAISE EXCEPTION 'cannot drop a stream table''s defining query'
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Drop the stream table with pgtrickle.drop_stream_table() instead.';
    END IF;
    -- A stream table's query view went with a column or relation it reads (DROP ... CASCADE): its
    -- query no longer works.
    UPDATE pgtrickle.pgt_stream_tables st
       SET status = 'ERROR', last_error_at = pg_catalog.clock_timestamp(),
           last_error = pg_catalog.format('%s was dropped with CASCADE, and its defining query with it; drop and re-create the stream table',
               (SELECT pg_catalog.string_agg(o.object_identity, ', ') FROM pg_catalog.pg_event_trigger_dropped_objects() o WHERE o.original))
      FROM pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.object_type = 'view' AND d.schema_name = 'pgtrickle_queries' AND d.object_name = 'q_' || st.pgt_id;
    DELETE FROM pgtrickle.pgt_stream_tables st
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.objsubid = 0
       AND st.pgt_relid = d.objid;
    -- Only when a stream table went: the capture clean-up's own DROPs then do not recurse.
    IF FOUND THEN
        PERFORM pgtrickle._cdc_gc();
    END IF;
END
$$;
REVOKE ALL ON FUNCTION pgtrickle._on_sql_drop() FROM PUBLIC;
ALTER EVENT TRIGGER pgtrickle_sql_drop ENABLE ALWAYS;

-- The role that owns change buffers (0.2.0; identical to sql/finalize.sql) and runs capture (its trigger functions are SECURITY DEFINER):
-- it can log in nowhere, holds no rights on users' tables or pg_trickle's catalog, and may only
-- append to the buffers it owns and signal a change. Roles are shared by the
-- cluster: another database's pg_trickle may have made it already (or be making it right now).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgtrickle_capture') THEN
        CREATE ROLE pgtrickle_capture NOLOGIN;
        COMMENT ON ROLE pgtrickle_capture IS 'pg_trickle: owns change buffers and runs change capture (no login, no rights on user data)';
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
GRANT USAGE ON SCHEMA pgtrickle_changes TO pgtrickle_capture;
GRANT USAGE ON SCHEMA pgtrickle TO pgtrickle_capture;
-- Capture tells the coordinator that a source changed (src/cdc/signal.rs); nobody else needs to.
REVOKE ALL ON FUNCTION pgtrickle._note_change(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrickle._note_change(oid) TO pgtrickle_capture;
-- The row a TRUNCATE leaves in its source's buffer (src/cdc/replaced.rs), likewise.
REVOKE ALL ON FUNCTION pgtrickle._capture_truncate(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrickle._capture_truncate(oid) TO pgtrickle_capture;

-- Re-arm the capture of every source as 0.2.0 installs it. Triggers that were not ENABLE ALWAYS may
-- have missed replicated writes, so each DIFFERENTIAL stream table refreshes FULL once.
-- Re-arming also hands each buffer and capture function to pgtrickle_capture.
SELECT pgtrickle._source_altered(s.source_relid)
  FROM (SELECT DISTINCT source_relid FROM pgtrickle.pgt_dependencies) s;

-- Stream tables made by 0.1.0 get the write guard that 0.2.0 puts on new ones.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT pgt_relid::pg_catalog.regclass AS st, pgt_id FROM pgtrickle.pgt_stream_tables LOOP
        EXECUTE pg_catalog.format('CREATE TRIGGER pgtrickle_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s
                                     FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle._guard_stream_table(%L)', r.st, r.pgt_id);
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER pgtrickle_guard', r.st);
    END LOOP;
END
$$;

-- Stream tables made by 0.1.0 get their query view (made outside the extension, like one made by
-- create_stream_table: it belongs to the stream table, and dumps must contain it).
SELECT pgtrickle._create_query_view(pgt_id) FROM pgtrickle.pgt_stream_tables ORDER BY pgt_id;

-- NULL arguments get a clear error instead of a silent NULL result (0.2.0): no longer STRICT.
ALTER FUNCTION pgtrickle.create_stream_table(text, text, text, text) CALLED ON NULL INPUT;
ALTER FUNCTION pgtrickle.refresh_stream_table(text) CALLED ON NULL INPUT;
ALTER FUNCTION pgtrickle.drop_stream_table(text) CALLED ON NULL INPUT;
ALTER FUNCTION pgtrickle.explain_stream_table(text) CALLED ON NULL INPUT;

-- Each role sees the stream tables it may read (0.2.0): queries and errors can reveal source data;
-- the last refresh and true staleness for people.
CREATE OR REPLACE VIEW pgtrickle.stream_tables WITH (security_barrier) AS
SELECT st.pgt_id,
       n.nspname                         AS schema_name,
       c.relname                         AS table_name,
       st.effective_mode                 AS refresh_mode,
       st.refresh_mode                   AS requested_mode,
       st.schedule,
       st.status,
       st.last_refresh_at,
       -- How far the contents trail the sources: 0 when no committed change waits (src/stats/lag.rs).
       pg_catalog.make_interval(secs => pgtrickle._current_lag_ms(st.pgt_id) / 1000) AS staleness,
       st.consecutive_errors,
       st.last_error,
       st.original_query                 AS query,
       h.action                          AS last_action,
       h.reason                          AS last_reason,
       h.duration_ms                     AS last_duration_ms
  FROM pgtrickle.pgt_stream_tables st
  JOIN pg_catalog.pg_class c ON c.oid = st.pgt_relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN LATERAL (
       SELECT r.action, r.reason, (pg_catalog.date_part('epoch', r.finished_at - r.started_at) * 1000)::float8 AS duration_ms
         FROM pgtrickle.pgt_refresh_history r
        WHERE r.pgt_id = st.pgt_id
        ORDER BY r.refresh_id DESC
        LIMIT 1) h ON true
 -- Each role sees the stream tables it may read: queries and errors can reveal source data.
 WHERE pg_catalog.has_table_privilege(st.pgt_relid, 'SELECT');

-- The refresh worker pool of this database (0.2.0; src/bgworker): its size, load and last sizing decision,
-- and the recent decisions. Nothing in them is data of stream tables: readable by everyone.
CREATE VIEW pgtrickle.pool_status AS SELECT * FROM pgtrickle._pool_status();
COMMENT ON VIEW pgtrickle.pool_status IS 'pg_trickle: this database''s refresh worker pool now (no row without a coordinator): target and running workers, queue, counters, the last sizing decision and why';
CREATE VIEW pgtrickle.pool_decisions AS SELECT * FROM pgtrickle._pool_decisions();
COMMENT ON VIEW pgtrickle.pool_decisions IS 'pg_trickle: the recent sizing decisions of this database''s refresh worker pool, one per coordinator tick, oldest first, with the measurements they were based on';
GRANT SELECT ON pgtrickle.pool_status, pgtrickle.pool_decisions TO PUBLIC;

-- Statistics per stream table (0.2.0; MT-9), as pg_stat_* views are: bigint counters, float8 milliseconds,
-- stats_reset. Counters are kept in pgt_cost_model_summary, updated by each refresh. Rows for the
-- stream tables the reader may read, or all for pg_read_all_stats (pg_monitor): errors reveal data.
CREATE VIEW pgtrickle.pg_stat_pgtrickle WITH (security_barrier) AS
SELECT pgt_id,
       n.nspname                                                       AS schema_name,
       c.relname                                                       AS table_name,
       s.stat_full_refreshes + s.stat_diff_refreshes + s.stat_no_data_refreshes AS total_refreshes,
       s.stat_full_refreshes                                           AS total_full_refreshes,
       s.stat_diff_refreshes                                           AS total_diff_refreshes,
       s.stat_delta_rows                                               AS total_delta_rows_processed,
       s.stat_total_ms / NULLIF(s.stat_full_refreshes + s.stat_diff_refreshes + s.stat_no_data_refreshes, 0) AS avg_refresh_duration_ms,
       pgtrickle._percentile(s.stat_recent_ms, 0.95)                   AS p95_refresh_duration_ms,
       pgtrickle._percentile(s.stat_recent_ms, 0.99)                   AS p99_refresh_duration_ms,
       st.last_refresh_at,
       pgtrickle._current_lag_ms(pgt_id)                               AS current_lag_estimate_ms,
       st.last_error,
       st.last_error_at,
       s.stat_no_data_refreshes                                        AS no_data_refreshes,
       s.stat_failed_refreshes                                         AS failed_refreshes,
       st.status,
       st.effective_mode                                               AS refresh_mode,
       st.schedule_ms,
       s.stats_reset
  FROM pgtrickle.pgt_cost_model_summary s
  JOIN pgtrickle.pgt_stream_tables st USING (pgt_id)
  JOIN pg_catalog.pg_class c ON c.oid = st.pgt_relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE pg_catalog.has_table_privilege(st.pgt_relid, 'SELECT')
    OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE');
COMMENT ON VIEW pgtrickle.pg_stat_pgtrickle IS 'pg_trickle: refresh statistics per stream table (counters since stats_reset, latency over the last 128 refreshes, current lag)';
GRANT SELECT ON pgtrickle.pg_stat_pgtrickle TO PUBLIC;
-- Like pg_stat_reset(): superusers, and whoever they grant it to.
REVOKE ALL ON FUNCTION pgtrickle.pg_stat_pgtrickle_reset() FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle.pg_stat_pgtrickle_reset(text) FROM PUBLIC;

-- External workers (pg_trickle_worker, MT-1): each registers here on start, heartbeats every few
-- seconds on a connection of its own, and says what it can do. A worker that stops marks itself
-- 'stopped'; one silent for longer than pg_trickle.worker_reclaim_timeout is marked 'gone' by the
-- coordinator. A restarted worker is a new worker (a new id). Not dumped: it is runtime state.
CREATE TABLE pgtrickle.pgt_worker_registry (
    worker_id      uuid PRIMARY KEY,
    hostname       text NOT NULL,
    pid            integer NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    last_heartbeat timestamptz NOT NULL DEFAULT now(),
    status         text NOT NULL DEFAULT 'active',
    capabilities   jsonb DEFAULT '{}'
);
COMMENT ON TABLE pgtrickle.pgt_worker_registry IS 'pg_trickle: external workers (pg_trickle_worker) that registered with this database';
COMMENT ON COLUMN pgtrickle.pgt_worker_registry.status IS 'active (heartbeating), stopped (shut down cleanly) or gone (silent past pg_trickle.worker_reclaim_timeout)';
COMMENT ON COLUMN pgtrickle.pgt_worker_registry.capabilities IS 'what the worker says it can do: its version, the operators it evaluates locally';
-- Refresh jobs for external workers (MT-2). While at least one worker is alive the coordinator queues
-- due refreshes here instead of its own pool and wakes workers with NOTIFY pgtrickle_jobs. A worker
-- claims a job (worker_claim: state running, attempt + 1), refreshes it in one transaction
-- (worker_refresh), and that transaction commits only if the attempt is still the job's current one
-- (fencing). A running job whose heartbeat_at is older than pg_trickle.worker_reclaim_timeout is
-- reclaimed (attempt + 1, state reclaimed; the worker's session is terminated if it still holds the
-- stream table's claim) and refreshed in-process. Not dumped: it is runtime state.
CREATE TABLE pgtrickle.pgt_worker_jobs (
    job_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pgt_id       bigint NOT NULL REFERENCES pgtrickle.pgt_stream_tables (pgt_id) ON DELETE CASCADE,
    state        text NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'done', 'failed', 'reclaimed')),
    attempt      integer NOT NULL DEFAULT 0,
    queued_at    timestamptz NOT NULL DEFAULT now(),
    worker_id    uuid,
    backend_pid  integer,
    assigned_at  timestamptz,
    heartbeat_at timestamptz,
    finished_at  timestamptz,
    outcome      text
);
-- One outstanding job per stream table.
CREATE UNIQUE INDEX pgt_worker_jobs_outstanding ON pgtrickle.pgt_worker_jobs (pgt_id) WHERE state IN ('queued', 'running');
COMMENT ON TABLE pgtrickle.pgt_worker_jobs IS 'pg_trickle: refreshes queued for external workers (pg_trickle_worker), while one is alive';
COMMENT ON COLUMN pgtrickle.pgt_worker_jobs.state IS 'queued, running (claimed by worker_id), done, failed, or reclaimed (its worker fell silent; refreshed in-process)';
COMMENT ON COLUMN pgtrickle.pgt_worker_jobs.attempt IS 'fencing number: raised by every claim and reclaim; a worker''s refresh commits only while its attempt is current';
COMMENT ON COLUMN pgtrickle.pgt_worker_jobs.backend_pid IS 'the server process of the worker''s working connection (terminated when the job is reclaimed while it still holds the claim)';
COMMENT ON COLUMN pgtrickle.pgt_worker_jobs.outcome IS 'refreshed, busy (another session held the claim), gone (dropped), broken (now in ERROR) or failed';

-- The oldest queued job, for an active worker: (job, stream table, attempt, name); no row when none.
CREATE FUNCTION pgtrickle.worker_claim(worker_id uuid)
RETURNS TABLE (job_id bigint, pgt_id bigint, attempt integer, stream_table text)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    UPDATE pgtrickle.pgt_worker_jobs j
       SET state = 'running', attempt = j.attempt + 1, worker_id = worker_claim.worker_id,
           backend_pid = pg_backend_pid(), assigned_at = now(), heartbeat_at = now()
     WHERE j.job_id = (
           SELECT q.job_id FROM pgtrickle.pgt_worker_jobs q
            WHERE q.state = 'queued'
              AND EXISTS (SELECT 1 FROM pgtrickle.pgt_worker_registry r
                           WHERE r.worker_id = worker_claim.worker_id AND r.status = 'active')
            ORDER BY q.job_id
            LIMIT 1
              FOR UPDATE SKIP LOCKED)
    RETURNING j.job_id, j.pgt_id, j.attempt,
              (SELECT st.pgt_relid::regclass::text FROM pgtrickle.pgt_stream_tables st WHERE st.pgt_id = j.pgt_id);
$$;
COMMENT ON FUNCTION pgtrickle.worker_claim(uuid) IS 'pg_trickle: an external worker claims the oldest queued refresh job';


-- The role external workers log in with (GRANT pgtrickle_worker TO <login role>): it may register,
-- heartbeat and deregister through these functions, and read the registry; nothing else. Like
-- pgtrickle_capture, it is shared by the cluster and may exist already.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgtrickle_worker') THEN
        CREATE ROLE pgtrickle_worker NOLOGIN;
        COMMENT ON ROLE pgtrickle_worker IS 'pg_trickle: rights of external refresh workers (grant it to the role pg_trickle_worker logs in as)';
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

CREATE FUNCTION pgtrickle.worker_register(worker_id uuid, hostname text, pid integer, capabilities jsonb)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO pgtrickle.pgt_worker_registry (worker_id, hostname, pid, capabilities)
    VALUES (worker_id, hostname, pid, COALESCE(capabilities, '{}'));
$$;
COMMENT ON FUNCTION pgtrickle.worker_register(uuid, text, integer, jsonb) IS 'pg_trickle: an external worker registers (status active)';

-- False when the worker is no longer active (it was marked gone): it must register anew.
CREATE FUNCTION pgtrickle.worker_heartbeat(worker_id uuid)
RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH beat AS (
        UPDATE pgtrickle.pgt_worker_registry r SET last_heartbeat = now()
         WHERE r.worker_id = worker_heartbeat.worker_id AND r.status = 'active'
        RETURNING 1),
    -- Its running jobs too; never waiting for a job row its own refresh is finishing with.
    jobs AS (
        UPDATE pgtrickle.pgt_worker_jobs j SET heartbeat_at = now()
         WHERE j.job_id IN (SELECT q.job_id FROM pgtrickle.pgt_worker_jobs q
                             WHERE q.worker_id = worker_heartbeat.worker_id AND q.state = 'running'
                               FOR UPDATE SKIP LOCKED)
           AND EXISTS (SELECT 1 FROM beat)
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM beat) FROM (SELECT pg_catalog.count(*) FROM jobs) AS touched;
$$;
COMMENT ON FUNCTION pgtrickle.worker_heartbeat(uuid) IS 'pg_trickle: an external worker and its running jobs are alive; false if it was marked gone';

CREATE FUNCTION pgtrickle.worker_stop(worker_id uuid)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    UPDATE pgtrickle.pgt_worker_registry r SET status = 'stopped', last_heartbeat = now()
     WHERE r.worker_id = worker_stop.worker_id AND r.status = 'active';
    -- A job it did not finish goes back to the queue (the next claim raises its attempt).
    UPDATE pgtrickle.pgt_worker_jobs j SET state = 'queued', worker_id = NULL, backend_pid = NULL
     WHERE j.worker_id = worker_stop.worker_id AND j.state = 'running';
$$;
COMMENT ON FUNCTION pgtrickle.worker_stop(uuid) IS 'pg_trickle: an external worker shuts down cleanly';

-- The refresh side of the worker protocol (src/api/worker.rs).
CREATE FUNCTION pgtrickle."worker_refresh"(
	"worker_id" uuid,
	"job_id" bigint,
	"attempt" INT
) RETURNS TABLE (
	"outcome" TEXT,
	"action" TEXT,
	"rows_inserted" bigint,
	"rows_deleted" bigint
)
LANGUAGE c
AS 'MODULE_PATHNAME', 'worker_refresh_wrapper';
CREATE FUNCTION pgtrickle."worker_fail"(
	"worker_id" uuid,
	"job_id" bigint,
	"attempt" INT,
	"message" TEXT
) RETURNS bool
LANGUAGE c
AS 'MODULE_PATHNAME', 'worker_fail_wrapper';
CREATE FUNCTION pgtrickle."worker_offload"(
	"worker_id" uuid,
	"job_id" bigint,
	"attempt" INT
) RETURNS TABLE (
	"plan" TEXT,
	"copy_out" TEXT,
	"copy_in" TEXT,
	"not_offloaded" TEXT
)
LANGUAGE c
AS 'MODULE_PATHNAME', 'worker_offload_wrapper';
CREATE FUNCTION pgtrickle."worker_offload_apply"(
	"worker_id" uuid,
	"job_id" bigint,
	"attempt" INT,
	"changes" bigint
) RETURNS TABLE (
	"outcome" TEXT,
	"action" TEXT,
	"rows_inserted" bigint,
	"rows_deleted" bigint
)
LANGUAGE c
AS 'MODULE_PATHNAME', 'worker_offload_apply_wrapper';
CREATE FUNCTION pgtrickle."worker_release"(
	"worker_id" uuid,
	"pgt_id" bigint
) RETURNS bool
LANGUAGE c
AS 'MODULE_PATHNAME', 'worker_release_wrapper';

REVOKE ALL ON FUNCTION pgtrickle.worker_register(uuid, text, integer, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle.worker_heartbeat(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle.worker_stop(uuid) FROM PUBLIC;
GRANT USAGE ON SCHEMA pgtrickle TO pgtrickle_worker;
GRANT EXECUTE ON FUNCTION pgtrickle.worker_register(uuid, text, integer, jsonb) TO pgtrickle_worker;
GRANT EXECUTE ON FUNCTION pgtrickle.worker_heartbeat(uuid) TO pgtrickle_worker;
GRANT EXECUTE ON FUNCTION pgtrickle.worker_stop(uuid) TO pgtrickle_worker;
GRANT SELECT ON pgtrickle.pgt_worker_registry TO pgtrickle_worker, pg_monitor;
REVOKE ALL ON FUNCTION pgtrickle.worker_claim(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle.worker_refresh(uuid, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle.worker_fail(uuid, bigint, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle.worker_offload(uuid, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle.worker_offload_apply(uuid, bigint, integer, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle.worker_release(uuid, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrickle.worker_claim(uuid) TO pgtrickle_worker;
GRANT EXECUTE ON FUNCTION pgtrickle.worker_refresh(uuid, bigint, integer) TO pgtrickle_worker;
GRANT EXECUTE ON FUNCTION pgtrickle.worker_fail(uuid, bigint, integer, text) TO pgtrickle_worker;
GRANT EXECUTE ON FUNCTION pgtrickle.worker_offload(uuid, bigint, integer) TO pgtrickle_worker;
GRANT EXECUTE ON FUNCTION pgtrickle.worker_offload_apply(uuid, bigint, integer, bigint) TO pgtrickle_worker;
GRANT EXECUTE ON FUNCTION pgtrickle.worker_release(uuid, bigint) TO pgtrickle_worker;
GRANT SELECT ON pgtrickle.pgt_worker_jobs TO pgtrickle_worker, pg_monitor;

-- A publication FOR ALL TABLES publishes pg_trickle's own tables too: its catalog, the change buffers
-- (one per source, named after the source's OID, made as stream tables are created) and the stream
-- tables. PostgreSQL 15 cannot leave a table out of one, and a subscriber that lacks a published table
-- stops applying changes at its first change; so say so where it starts: when such a publication is
-- created, when pg_trickle is installed beside one, and when a stream table is created beside one.
CREATE FUNCTION pgtrickle._warn_if_all_tables_published() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    names text;
    n integer;
BEGIN
    SELECT string_agg(quote_ident(pubname), ', ' ORDER BY pubname), count(*)
      INTO names, n FROM pg_publication WHERE puballtables;
    IF n > 0 THEN
        RAISE WARNING '% % %: pg_trickle''s tables are published with every other',
                CASE WHEN n = 1 THEN 'publication' ELSE 'publications' END, names,
                CASE WHEN n = 1 THEN 'publishes all tables' ELSE 'publish all tables' END
            USING ERRCODE = '01000',
                  DETAIL = 'A publication FOR ALL TABLES includes pg_trickle''s catalog (schema pgtrickle), '
                        || 'its change buffers (schema pgtrickle_changes, one table per source, named after the source''s OID, '
                        || 'created with the first stream table on that source) and every stream table. A subscriber that lacks '
                        || 'one of them stops applying changes at its first change ("logical replication target relation ... '
                        || 'does not exist"); one where pg_trickle is installed would take this database''s catalog rows into its own.',
                  HINT = 'Publish the tables subscribers need with FOR TABLE or FOR TABLES IN SCHEMA instead. A subscriber '
                        || 'with pg_trickle maintains stream tables of its own over the sources it receives.';
    END IF;
END
$$;
-- A published table whose rows are updated or deleted needs a replica identity, or PostgreSQL refuses
-- the UPDATE or DELETE (55000): a refresh, a clean-up of applied change rows, even the creation of a
-- stream table would fail. Change buffers and stream tables have no primary key (a buffer takes rows
-- as fast as writers write them; a stream table's rows may repeat), so those a publication publishes
-- with updates or deletes get REPLICA IDENTITY FULL: the old row is logged whole, which costs WAL
-- only while wal_level = logical. As the extension's owner: buffers belong to pgtrickle_capture,
-- stream tables to their owners.
CREATE FUNCTION pgtrickle._identify_published_tables() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubupdate OR pubdelete) THEN
        RETURN;
    END IF;
    FOR r IN
        SELECT c.oid::regclass AS rel
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND c.relreplident = 'd'
           AND (n.nspname = 'pgtrickle_changes' OR c.oid IN (SELECT pgt_relid FROM pgtrickle.pgt_stream_tables))
           AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
           AND EXISTS (SELECT 1 FROM pg_publication_tables pt JOIN pg_publication p ON p.pubname = pt.pubname
                        WHERE pt.schemaname = n.nspname AND pt.tablename = c.relname
                          AND (p.pubupdate OR p.pubdelete))
    LOOP
        EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', r.rel);
    END LOOP;
END
$$;
-- SECURITY DEFINER: whoever creates or alters a publication (a table's owner may publish it) has it
-- run as the extension's owner.
CREATE FUNCTION pgtrickle._on_publication_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgtrickle._identify_published_tables();
    IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() c JOIN pg_publication p ON p.oid = c.objid
                WHERE c.command_tag = 'CREATE PUBLICATION' AND p.puballtables) THEN
        PERFORM pgtrickle._warn_if_all_tables_published();
    END IF;
END
$$;
REVOKE ALL ON FUNCTION pgtrickle._warn_if_all_tables_published() FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle._identify_published_tables() FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle._on_publication_ddl() FROM PUBLIC;
CREATE EVENT TRIGGER pgtrickle_publication_ddl ON ddl_command_end
    WHEN TAG IN ('CREATE PUBLICATION', 'ALTER PUBLICATION')
    EXECUTE FUNCTION pgtrickle._on_publication_ddl();
-- Also under session_replication_role = replica, as the others.
ALTER EVENT TRIGGER pgtrickle_publication_ddl ENABLE ALWAYS;
SELECT pgtrickle._identify_published_tables();
SELECT pgtrickle._warn_if_all_tables_published();
-- Change buffers take their sources' collations: a buffer's text beside its source's text COLLATE "C"
-- left a delta's join or grouping on that column without a collation (an ERROR at every refresh).
-- Only the collation changes: no rewrite.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT b.oid::pg_catalog.regclass AS buffer, ba.attname,
               pg_catalog.format_type(ba.atttypid, ba.atttypmod) AS type_sql, sa.attcollation::pg_catalog.regcollation AS collation
          FROM pg_catalog.pg_class b
          JOIN pg_catalog.pg_namespace n ON n.oid = b.relnamespace AND n.nspname = 'pgtrickle_changes'
          JOIN pg_catalog.pg_attribute ba ON ba.attrelid = b.oid AND ba.attnum > 0 AND NOT ba.attisdropped
          JOIN pg_catalog.pg_attribute sa
            ON sa.attrelid = pg_catalog.substring(b.relname, '^changes_([0-9]+)$')::pg_catalog.oid
           AND sa.attname = ba.attname AND NOT sa.attisdropped AND sa.atttypid = ba.atttypid
         WHERE b.relkind = 'r' AND b.relname ~ '^changes_[0-9]+$' AND sa.attcollation <> ba.attcollation
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I TYPE %s COLLATE %s',
                                  r.buffer, r.attname, r.type_sql, r.collation);
    END LOOP;
END
$$;
