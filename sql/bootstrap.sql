-- pg_trickle catalog. Runs first in CREATE EXTENSION (before the functions pgrx generates).
-- The schemas are created here, not through the control file, so that they are members of the
-- extension and DROP EXTENSION removes them.

CREATE SCHEMA pgtrickle;
COMMENT ON SCHEMA pgtrickle IS 'pg_trickle: stream tables and their catalog';

CREATE SCHEMA pgtrickle_changes;
COMMENT ON SCHEMA pgtrickle_changes IS 'pg_trickle: per-source change buffers (internal)';
CREATE SCHEMA pgtrickle_queries;
COMMENT ON SCHEMA pgtrickle_queries IS 'pg_trickle: each stream table''s defining query as a view q_<pgt_id>, which follows renames (internal)';

CREATE TABLE pgtrickle.pgt_stream_tables (
    pgt_id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pgt_relid          oid NOT NULL UNIQUE,
    original_query     text NOT NULL,
    defining_query     text NOT NULL,
    output_columns     text[] NOT NULL,
    schedule           text NOT NULL,
    schedule_ms        bigint NOT NULL CHECK (schedule_ms > 0),
    refresh_mode       text NOT NULL CHECK (refresh_mode IN ('FULL', 'DIFFERENTIAL', 'AUTO')),
    effective_mode     text NOT NULL CHECK (effective_mode IN ('FULL', 'DIFFERENTIAL')),
    status             text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'SUSPENDED', 'ERROR')),
    frontier           pg_snapshot,
    op_tree            jsonb,
    mode_reason        text,
    needs_reinit       boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_refresh_at    timestamptz,
    last_attempt_at    timestamptz,
    consecutive_errors integer NOT NULL DEFAULT 0,
    last_error         text,
    last_error_at      timestamptz,
    reinit_reason      text,
    refresh_started_at timestamptz,
    skip_unchanged     boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE pgtrickle.pgt_stream_tables IS 'pg_trickle: one row per stream table';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.pgt_relid IS 'OID of the storage table (names are looked up from pg_class, so renames are safe)';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.original_query IS 'the defining query as the user wrote it';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.defining_query IS 'the defining query normalised by PostgreSQL: fully schema-qualified, * expanded; independent of search_path';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.refresh_mode IS 'the mode the user asked for (FULL, DIFFERENTIAL, AUTO)';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.effective_mode IS 'the mode refreshes use';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.frontier IS 'snapshot the contents are exact for: every change visible in it has been applied';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.op_tree IS 'the operator tree the differential engine derives deltas from (DIFFERENTIAL only)';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.mode_reason IS 'why the effective mode was chosen (e.g. the construct that ruled out DIFFERENTIAL)';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.needs_reinit IS 'the next refresh must be FULL (reinitialise; reinit_reason says why)';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.reinit_reason IS 'why the next refresh must be FULL: a source truncated, its columns or partitions changed, capture interrupted, a mode switch';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.refresh_started_at IS 'when the scheduled refresh now in flight started (NULL: none); one left set by a crash is recorded as failed when the coordinator starts again';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.skip_unchanged IS 'FULL mode: the refresh is skipped while no source changed (every table the query reads, views included, signals its writes, and the query calls only IMMUTABLE functions)';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.last_refresh_at IS 'start of the last successful refresh';
COMMENT ON COLUMN pgtrickle.pgt_stream_tables.last_attempt_at IS 'start of the last refresh attempt, successful or not';

CREATE TABLE pgtrickle.pgt_dependencies (
    pgt_id       bigint NOT NULL REFERENCES pgtrickle.pgt_stream_tables ON DELETE CASCADE,
    source_relid oid NOT NULL,
    source_kind  text NOT NULL
        CHECK (source_kind IN ('TABLE', 'PARTITIONED_TABLE', 'VIEW', 'MATVIEW', 'FOREIGN_TABLE', 'STREAM_TABLE')),
    PRIMARY KEY (pgt_id, source_relid)
);
CREATE INDEX pgt_dependencies_source_idx ON pgtrickle.pgt_dependencies (source_relid);
COMMENT ON TABLE pgtrickle.pgt_dependencies IS 'pg_trickle: the relations each stream table reads';

CREATE TABLE pgtrickle.pgt_refresh_history (
    refresh_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pgt_id        bigint NOT NULL REFERENCES pgtrickle.pgt_stream_tables ON DELETE CASCADE,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    action        text NOT NULL CHECK (action IN ('FULL', 'DIFFERENTIAL', 'NO_DATA')),
    status        text NOT NULL CHECK (status IN ('SUCCESS', 'FAILED')),
    initiated_by  text NOT NULL CHECK (initiated_by IN ('CREATE', 'MANUAL', 'SCHEDULER')),
    reason        text,
    rows_inserted bigint,
    rows_deleted  bigint,
    error_message text,
    executed_by   text,
    delta_rows    bigint
);
CREATE INDEX pgt_refresh_history_pgt_idx ON pgtrickle.pgt_refresh_history (pgt_id, refresh_id);
CREATE INDEX pgt_refresh_history_finished_idx ON pgtrickle.pgt_refresh_history (finished_at);
COMMENT ON TABLE pgtrickle.pgt_refresh_history IS 'pg_trickle: one row per refresh attempt (pruned after pg_trickle.history_retention_days)';
COMMENT ON COLUMN pgtrickle.pgt_refresh_history.executed_by IS 'who ran the refresh: refresh worker <pid>, coordinator <pid> (in-process, without workers), session <pid> (create_stream_table, refresh_stream_table), or external worker <worker_id> (pg_trickle_worker)';
COMMENT ON COLUMN pgtrickle.pgt_refresh_history.delta_rows IS 'change rows in the batch a DIFFERENTIAL refresh applied (0 for FULL and NO_DATA)';

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

-- pg_dump keeps the catalog's rows.
SELECT pg_catalog.pg_extension_config_dump('pgtrickle.pgt_stream_tables', '');
SELECT pg_catalog.pg_extension_config_dump('pgtrickle.pgt_dependencies', '');
SELECT pg_catalog.pg_extension_config_dump('pgtrickle.pgt_refresh_history', '');
SELECT pg_catalog.pg_extension_config_dump('pgtrickle.pgt_cost_model_summary', '');
