//! In-process tests (`cargo pgrx test`), run inside a PostgreSQL with pg_trickle preloaded.
//! End-to-end behaviour over real connections lives in pg_test/.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql).expect("query").expect("a row")
    }

    /// Rows in which the results of `stored` and `query` differ as multisets.
    fn diff(stored: &str, query: &str) -> i64 {
        count(&format!(
            "SELECT count(*) FROM ((({stored}) EXCEPT ALL ({query})) UNION ALL (({query}) EXCEPT ALL ({stored}))) d"
        ))
    }

    #[pg_test]
    fn the_launcher_runs_because_the_library_is_preloaded() {
        assert_eq!(
            count(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_trickle launcher'"
            ),
            1
        );
    }

    #[pg_test]
    fn create_populates_and_refresh_catches_up() {
        Spi::run(
            "CREATE TABLE pt_src (g int, v numeric);
             INSERT INTO pt_src SELECT i % 5, i FROM generate_series(1, 100) i;
             SELECT pgtrickle.create_stream_table('pt_sums', 'SELECT g, sum(v) AS s, count(*) AS n FROM pt_src GROUP BY g', '1h', 'FULL');",
        )
        .unwrap();
        let q = "SELECT g, sum(v) AS s, count(*) AS n FROM pt_src GROUP BY g";
        assert_eq!(diff("SELECT * FROM pt_sums", q), 0);
        Spi::run("DELETE FROM pt_src WHERE g = 0; INSERT INTO pt_src VALUES (7, 1), (7, NULL);")
            .unwrap();
        assert!(diff("SELECT * FROM pt_sums", q) > 0);
        Spi::run("SELECT pgtrickle.refresh_stream_table('pt_sums')").unwrap();
        assert_eq!(diff("SELECT * FROM pt_sums", q), 0);
    }

    #[pg_test]
    fn every_refresh_records_history_and_a_frontier() {
        Spi::run(
            "CREATE TABLE pt_h (n int);
             SELECT pgtrickle.create_stream_table('pt_h_copy', 'SELECT n FROM pt_h', '1h', 'FULL');
             SELECT pgtrickle.refresh_stream_table('pt_h_copy');",
        )
        .unwrap();
        let by = Spi::get_one::<String>(
            "SELECT string_agg(h.initiated_by || ':' || h.action || ':' || h.status, ',' ORDER BY h.refresh_id)
               FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
              WHERE s.pgt_relid = 'pt_h_copy'::regclass",
        )
        .unwrap()
        .unwrap();
        assert_eq!(by, "CREATE:FULL:SUCCESS,MANUAL:FULL:SUCCESS");
        assert_eq!(
            count("SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE frontier IS NOT NULL AND last_refresh_at IS NOT NULL"),
            count("SELECT count(*) FROM pgtrickle.pgt_stream_tables")
        );
    }

    #[pg_test]
    fn storage_tables_depend_on_sources_and_the_extension() {
        Spi::run(
            "CREATE TABLE pt_dep (n int);
             SELECT pgtrickle.create_stream_table('pt_dep_st', 'SELECT n FROM pt_dep', '1h');",
        )
        .unwrap();
        let deps = Spi::get_one::<String>(
            "SELECT string_agg(CASE d.refclassid WHEN 'pg_class'::regclass THEN d.refobjid::regclass::text
                                                ELSE (SELECT extname FROM pg_extension WHERE oid = d.refobjid) END
                               || ':' || d.deptype::text, ',' ORDER BY d.refclassid)
               FROM pg_depend d
              WHERE d.classid = 'pg_class'::regclass AND d.objid = 'pt_dep_st'::regclass
                AND d.refclassid IN ('pg_class'::regclass, 'pg_extension'::regclass)",
        )
        .unwrap()
        .unwrap();
        assert_eq!(deps, "pt_dep:n,pg_trickle:n");
        Spi::run("SELECT pgtrickle.drop_stream_table('pt_dep_st')").unwrap();
        assert_eq!(count("SELECT count(*) FROM pg_depend WHERE refobjid = 'pt_dep'::regclass AND classid = 'pg_class'::regclass"), 0);
    }

    /// Each #[pg_test] is one transaction: the case where the refreshing transaction changed the source
    /// itself. The refresh must still be exact (FULL now) and leave a FULL for the next one.
    #[pg_test]
    fn a_refresh_over_its_own_uncommitted_changes_is_full_and_exact() {
        Spi::run(
            "CREATE TABLE pt_own (n int);
             SELECT pgtrickle.create_stream_table('pt_own_st', 'SELECT n FROM pt_own', '1h', 'DIFFERENTIAL');
             INSERT INTO pt_own VALUES (1), (2);
             SELECT pgtrickle.refresh_stream_table('pt_own_st');",
        )
        .unwrap();
        assert_eq!(diff("SELECT n FROM pt_own_st", "SELECT n FROM pt_own"), 0);
        let reason = Spi::get_one::<String>(
            "SELECT h.action || ': ' || h.reason FROM pgtrickle.pgt_refresh_history h
               JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
              WHERE s.pgt_relid = 'pt_own_st'::regclass ORDER BY h.refresh_id DESC LIMIT 1",
        )
        .unwrap()
        .unwrap();
        // (The test harness's search_path decides the schema the table landed in.)
        assert!(
            reason.starts_with("FULL: FULL inside the transaction that changed "),
            "{reason}"
        );
        assert!(
            reason.ends_with(".pt_own; FULL again next time"),
            "{reason}"
        );
        assert_eq!(
            count("SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE needs_reinit"),
            1
        );
    }

    #[pg_test]
    fn auto_chooses_differential_for_supported_queries() {
        Spi::run(
            "CREATE TABLE pt_auto (k int, v numeric);
             SELECT pgtrickle.create_stream_table('pt_auto_st', 'SELECT k, sum(v) AS s FROM pt_auto GROUP BY k', '1h');",
        )
        .unwrap();
        let mode = Spi::get_one::<String>(
            "SELECT effective_mode FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = 'pt_auto_st'::regclass",
        )
        .unwrap()
        .unwrap();
        assert_eq!(mode, "DIFFERENTIAL");
        // INSERT, UPDATE, DELETE and TRUNCATE statement triggers, and the row trigger for replication.
        assert_eq!(count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'pt_auto'::regclass AND tgname LIKE 'pgtrickle_capture%'"), 5);
    }

    #[pg_test(error = "unknown refresh mode \"SOMETIMES\"")]
    fn unknown_modes_are_errors() {
        Spi::run(
            "SELECT pgtrickle.create_stream_table('pt_bad', 'SELECT 1 AS a', '1m', 'SOMETIMES')",
        )
        .unwrap();
    }

    #[pg_test(error = "invalid schedule \"fortnightly\"")]
    fn unknown_schedules_are_errors() {
        Spi::run("SELECT pgtrickle.create_stream_table('pt_bad', 'SELECT 1 AS a', 'fortnightly')")
            .unwrap();
    }

    #[pg_test(error = "the defining query must be a single SELECT statement")]
    fn non_select_queries_are_errors() {
        Spi::run("SELECT pgtrickle.create_stream_table('pt_bad', 'UPDATE pg_class SET relname = relname')").unwrap();
    }

    /// An error inside `spi::in_subtransaction` is an answer: it comes back as its message, and the
    /// transaction goes on.
    #[pg_test]
    fn an_error_inside_a_subtransaction_is_an_answer() {
        let answered = crate::spi::in_subtransaction(|| crate::spi::exec("SELECT 1 / 0", &[]));
        assert!(
            matches!(&answered, Err(m) if m.contains("division by zero")),
            "{answered:?}"
        );
        assert_eq!(count("SELECT 1"), 1);
    }

    /// A cancel is no answer (a refresh canceled there once took it for a broken query): it goes
    /// through, as PL/pgSQL's `WHEN OTHERS` never catches one.
    #[pg_test(error = "canceled in a subtransaction")]
    fn a_cancel_inside_a_subtransaction_goes_through() {
        let answered = crate::spi::in_subtransaction(|| {
            crate::spi::exec(
                "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'query_canceled', MESSAGE = 'canceled in a subtransaction'; END $$",
                &[],
            )
        });
        panic!("the cancel came back as an answer: {answered:?}");
    }

    /// So does a transient error returned rather than raised.
    #[pg_test(error = "could not serialize, returned")]
    fn a_transient_error_returned_in_a_subtransaction_goes_through() {
        use crate::error::{PgtError, SqlState};
        let answered = crate::spi::in_subtransaction(|| -> crate::error::PgtResult<()> {
            Err(PgtError::new(
                SqlState::SerializationFailure,
                "could not serialize, returned",
            ))
        });
        panic!("the error came back as an answer: {answered:?}");
    }
}
