-- pg_trickle views and event triggers. Runs last in CREATE EXTENSION.

CREATE VIEW pgtrickle.stream_tables AS
SELECT st.pgt_id,
       n.nspname                         AS schema_name,
       c.relname                         AS table_name,
       st.effective_mode                 AS refresh_mode,
       st.refresh_mode                   AS requested_mode,
       st.schedule,
       st.status,
       st.last_refresh_at,
       pg_catalog.now() - st.last_refresh_at AS staleness,
       st.consecutive_errors,
       st.last_error,
       st.original_query                 AS query
  FROM pgtrickle.pgt_stream_tables st
  JOIN pg_catalog.pg_class c ON c.oid = st.pgt_relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace;
COMMENT ON VIEW pgtrickle.stream_tables IS 'pg_trickle: stream tables for people: mode, schedule, status, last refresh, staleness';
GRANT USAGE ON SCHEMA pgtrickle TO PUBLIC;
GRANT SELECT ON pgtrickle.stream_tables TO PUBLIC;

-- Keeps the catalog in step with DROP TABLE / DROP SCHEMA ... CASCADE / DROP OWNED on storage tables.
-- (Dropping a *source* is refused by PostgreSQL itself: each storage table depends on its sources in
-- pg_depend, so DROP TABLE source fails unless CASCADE, which drops the stream table too.)
-- SECURITY DEFINER: whoever drops a table must not need rights on the catalog.
CREATE FUNCTION pgtrickle._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- During DROP EXTENSION the catalog goes away with everything else.
    IF pg_catalog.to_regclass('pgtrickle.pgt_stream_tables') IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM pgtrickle.pgt_stream_tables st
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.objsubid = 0
       AND st.pgt_relid = d.objid;
END
$$;
REVOKE ALL ON FUNCTION pgtrickle._on_sql_drop() FROM PUBLIC;
CREATE EVENT TRIGGER pgtrickle_sql_drop ON sql_drop EXECUTE FUNCTION pgtrickle._on_sql_drop();
