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
COMMENT ON COLUMN pgtrickle.pgt_cost_model_summary.stats_reset IS 'when these statistics started (the first measured refresh, or the last reset)';
SELECT pg_catalog.pg_extension_config_dump('pgtrickle.pgt_cost_model_summary', '');
