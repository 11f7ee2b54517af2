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

-- Removes change capture (triggers, trigger functions, buffer) from sources that no DIFFERENTIAL stream
-- table reads any more.
CREATE FUNCTION pgtrickle._cdc_gc() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.relname, pg_catalog.substring(c.relname, '^changes_([0-9]+)$')::oid AS source
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'pgtrickle_changes' AND c.relkind = 'r' AND c.relname ~ '^changes_[0-9]+$'
    LOOP
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables st USING (pgt_id)
             WHERE d.source_relid = r.source AND st.effective_mode = 'DIFFERENTIAL');
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid = r.source) THEN
            EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS pgtrickle_capture_ins ON %s', r.source::pg_catalog.regclass);
            EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS pgtrickle_capture_upd ON %s', r.source::pg_catalog.regclass);
            EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS pgtrickle_capture_del ON %s', r.source::pg_catalog.regclass);
            EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS pgtrickle_capture_trunc ON %s', r.source::pg_catalog.regclass);
        END IF;
        EXECUTE pg_catalog.format('DROP TABLE pgtrickle_changes.%I', r.relname);
        EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS pgtrickle_changes.%I()', 'capture_' || r.source);
        EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS pgtrickle_changes.%I()', 'truncated_' || r.source);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pgtrickle._cdc_gc() FROM PUBLIC;

-- Keeps capture in step with ALTER TABLE on sources (see src/cdc: added columns are captured too;
-- dropped or retyped ones make dependents reinitialise, which re-checks their queries).
CREATE FUNCTION pgtrickle._on_ddl_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    IF pg_catalog.to_regclass('pgtrickle.pgt_dependencies') IS NULL THEN
        RETURN;
    END IF;
    FOR r IN
        SELECT DISTINCT c.objid
          FROM pg_catalog.pg_event_trigger_ddl_commands() c
         WHERE c.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
           AND EXISTS (SELECT 1 FROM pgtrickle.pgt_dependencies d WHERE d.source_relid = c.objid)
    LOOP
        PERFORM pgtrickle._source_altered(r.objid);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pgtrickle._on_ddl_end() FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle._source_altered(oid) FROM PUBLIC;
CREATE EVENT TRIGGER pgtrickle_ddl_end ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION pgtrickle._on_ddl_end();

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
    -- Only when a stream table went: the capture clean-up's own DROPs then do not recurse.
    IF FOUND THEN
        PERFORM pgtrickle._cdc_gc();
    END IF;
END
$$;
REVOKE ALL ON FUNCTION pgtrickle._on_sql_drop() FROM PUBLIC;
CREATE EVENT TRIGGER pgtrickle_sql_drop ON sql_drop EXECUTE FUNCTION pgtrickle._on_sql_drop();
