//! The defining queries the oracle maintains. Each covers an operator or a combination of them; all
//! output columns are named, and only order-independent aggregates over exact types are used, so the
//! query's result is a well-defined multiset whatever plan PostgreSQL picks.

pub struct Shape {
    pub name: &'static str,
    pub query: &'static str,
    /// The differential engine may refuse this query (SQLSTATE 0A000, a clear "not supported"): such a
    /// shape is then reported as refused instead of failing, and checked in full once it is accepted.
    pub may_refuse: bool,
    /// Stream tables the query reads, created in this order before the twins (each may read the
    /// ones before it), and refreshed before the twins at most refresh points.
    pub upstreams: &'static [Upstream],
}

/// A stream table a shape's query reads: the oracle walks stream tables over stream tables too.
pub struct Upstream {
    pub name: &'static str,
    pub query: &'static str,
    /// FULL; otherwise the differential twin's mode (DIFFERENTIAL, or AUTO when the oracle runs AUTO).
    pub full: bool,
}

const fn shape(name: &'static str, query: &'static str) -> Shape {
    Shape {
        name,
        query,
        may_refuse: false,
        upstreams: &[],
    }
}

/// A shape with operators beyond what the differential engine must support today.
const fn beyond(name: &'static str, query: &'static str) -> Shape {
    Shape {
        name,
        query,
        may_refuse: true,
        upstreams: &[],
    }
}

/// A shape whose query reads the stream tables `upstreams`.
const fn over(name: &'static str, upstreams: &'static [Upstream], query: &'static str) -> Shape {
    Shape {
        name,
        query,
        may_refuse: false,
        upstreams,
    }
}

const fn up(name: &'static str, query: &'static str) -> Upstream {
    Upstream {
        name,
        query,
        full: false,
    }
}

const fn up_full(name: &'static str, query: &'static str) -> Upstream {
    Upstream {
        name,
        query,
        full: true,
    }
}

/// Filtered rows of `a`, as a stream table: read by two shapes.
const UP_ROWS: Upstream = up(
    "up_rows",
    "SELECT k AS k, g AS g, v AS v, t AS t FROM a WHERE v IS NOT NULL",
);

pub const SHAPES: &[Shape] = &[
    // Single table.
    shape("scan", "SELECT k AS k, g AS g, v AS v, t AS t FROM a"),
    shape("filter", "SELECT k AS k, v AS v, t AS t FROM a WHERE v > 10 AND t IS NOT NULL"),
    shape(
        "project",
        "SELECT CASE WHEN v IS NULL THEN 'none' WHEN v > 20 THEN 'big' ELSE 'small' END AS size,
                COALESCE(t, '?') AS t, (k * 10 + COALESCE(g, -1))::bigint AS kg, v * 2 - 1 AS v2,
                (v::int)::text AS vt, NULLIF(k, 0) AS nk FROM a",
    ),
    shape("pk_scan", "SELECT id AS id, k AS k, q * 2 AS q2, upper(name) AS name FROM c WHERE q IS NOT NULL"),
    // Joins.
    shape("join2", "SELECT a.k AS k, a.v AS v, b.w AS w, b.s AS s FROM a JOIN b ON a.k = b.k"),
    shape(
        "join3",
        "SELECT a.k AS k, a.v AS v, b.s AS s, c.id AS id, c.name AS name
           FROM a JOIN b ON a.k = b.k JOIN c ON c.k = a.g",
    ),
    shape("join_between", "SELECT a.g AS g, a.v AS v, b.lo AS lo, b.hi AS hi FROM a JOIN b ON a.g BETWEEN b.lo AND b.hi"),
    shape("join_lt", "SELECT a.k AS ak, c.k AS ck, c.name AS name FROM a JOIN c ON a.k < c.k"),
    shape("join_self", "SELECT x.k AS k, x.v AS v1, y.v AS v2 FROM a x JOIN a y ON x.k = y.k AND x.g < y.g"),
    shape("left_join", "SELECT a.k AS k, a.t AS t, b.w AS w, b.s AS s FROM a LEFT JOIN b ON a.k = b.k"),
    shape("right_join", "SELECT b.k AS k, b.s AS s, c.id AS id, c.name AS name FROM c RIGHT JOIN b ON c.k = b.k"),
    shape("full_join", "SELECT a.g AS g, a.v AS v, c.id AS id, c.q AS q FROM a FULL JOIN c ON a.g = c.k"),
    shape(
        "full_join_grouped",
        "SELECT c.k AS k, count(*) AS n, count(a.v) AS nv, sum(b.w) AS w
           FROM a FULL JOIN c ON a.g = c.k AND a.k = c.q LEFT JOIN b ON b.k = c.id
          WHERE a.t IS DISTINCT FROM 'z' GROUP BY c.k",
    ),
    shape("anti_left_join", "SELECT a.k AS k, a.v AS v FROM a LEFT JOIN c ON c.k = a.k WHERE c.id IS NULL"),
    // Aggregates.
    shape(
        "group_all_aggs",
        "SELECT g AS g, count(*) AS n, count(v) AS nv, sum(v) AS sv, avg(v) AS av, min(v) AS mn, max(v) AS mx
           FROM a GROUP BY g",
    ),
    shape("group_two_keys", "SELECT k AS k, g AS g, count(*) AS n, sum(v) AS sv FROM a GROUP BY k, g"),
    shape(
        "group_text_minmax",
        "SELECT s AS s, count(*) AS n, min(lo) AS lo, max(hi) AS hi, min(s) AS mins, sum(w) AS w FROM b GROUP BY s",
    ),
    shape("having", "SELECT g AS g, count(*) AS n, sum(v) AS sv FROM a GROUP BY g HAVING count(*) > 2 AND sum(v) > 0"),
    shape(
        "agg_filter",
        "SELECT k AS k, count(*) FILTER (WHERE v > 10) AS big, sum(v) FILTER (WHERE t = 'x') AS sx,
                max(v) FILTER (WHERE t IS NULL) AS mx_null FROM a GROUP BY k",
    ),
    shape(
        "global_agg",
        "SELECT count(*) AS n, count(v) AS nv, sum(v) AS sv, avg(v) AS av, min(v) AS mn, max(v) AS mx FROM a",
    ),
    shape("count_distinct", "SELECT k AS k, count(DISTINCT t) AS dt, sum(DISTINCT v) AS dsv FROM a GROUP BY k"),
    shape("agg_of_agg", "SELECT x.n AS n, count(*) AS groups FROM (SELECT g, count(*) AS n FROM a GROUP BY g) x GROUP BY x.n"),
    // Set operations and DISTINCT.
    shape("distinct", "SELECT DISTINCT k AS k, t AS t FROM a"),
    shape("union_all", "SELECT k AS k, v AS amount FROM a UNION ALL SELECT k AS k, w AS amount FROM b"),
    shape("union", "SELECT k AS k, t AS label FROM a UNION SELECT k AS k, s AS label FROM b"),
    beyond("intersect", "SELECT k AS k, t AS label FROM a INTERSECT SELECT k AS k, s AS label FROM b"),
    beyond("except_all", "SELECT k AS k, t AS label FROM a EXCEPT ALL SELECT k AS k, s AS label FROM b"),
    // Subqueries.
    shape(
        "subquery_from",
        "SELECT x.k AS k, x.v2 AS v2 FROM (SELECT k, v * 2 AS v2 FROM a WHERE g IS NOT NULL) x WHERE x.v2 > 5",
    ),
    shape("exists", "SELECT a.k AS k, a.v AS v FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.k = a.k AND b.w > 0)"),
    shape("not_exists", "SELECT b.k AS k, b.s AS s FROM b WHERE NOT EXISTS (SELECT 1 FROM a WHERE a.k = b.k)"),
    shape("in_subquery", "SELECT c.id AS id, c.name AS name FROM c WHERE c.k IN (SELECT g FROM a WHERE v > 5)"),
    shape("not_in_subquery", "SELECT c.id AS id, c.k AS k FROM c WHERE c.k NOT IN (SELECT b.k FROM b WHERE b.s = 'x')"),
    // `<> ALL` is NOT IN (NULLs and all), correlated here; `= ANY` is IN.
    shape(
        "all_and_any_subqueries",
        "SELECT a.k AS k, a.v AS v FROM a WHERE a.g <> ALL (SELECT b.lo FROM b WHERE b.k = a.k) AND a.k = ANY (SELECT c.k FROM c WHERE c.q > 2)",
    ),
    shape(
        "not_in_correlated_pair",
        "SELECT a.k AS k, a.g AS g, a.v AS v FROM a WHERE (a.k, a.g) NOT IN (SELECT b.lo, b.hi FROM b WHERE b.k = a.k OR b.k IS NULL)",
    ),
    shape("scalar_where", "SELECT c.id AS id, c.q AS q FROM c WHERE c.q > (SELECT avg(c2.q) FROM c AS c2)"),
    shape("scalar_select", "SELECT a.k AS k, a.v AS v, (SELECT max(b.w) FROM b) AS top FROM a"),
    shape(
        "scalar_having",
        "SELECT a.g AS g, sum(a.v) AS total FROM a GROUP BY a.g HAVING sum(a.v) > (SELECT avg(b.w) * 3 FROM b)",
    ),
    shape("scalar_grouped_select", "SELECT a.g AS g, count(*) AS n, (SELECT count(*) FROM c) AS of_c FROM a GROUP BY a.g"),
    shape("scalar_correlated_where", "SELECT c.id AS id, c.q AS q FROM c WHERE c.q > (SELECT avg(a.v) FROM a WHERE a.k = c.k)"),
    shape(
        "scalar_correlated_pair",
        "SELECT a.k AS k, a.g AS g, a.v AS v FROM a
          WHERE a.v >= (SELECT max(b.w) * 0.5 FROM b WHERE b.lo = a.k AND b.hi = a.g AND b.s IS NOT NULL)",
    ),
    shape(
        "scalar_in_semi",
        "SELECT c.id AS id, c.name AS name FROM c
          WHERE c.k IN (SELECT b.k FROM b WHERE b.w > (SELECT avg(a.v) FROM a WHERE a.g = b.lo))",
    ),
    shape("scalar_subquery", "SELECT c.id AS id, (SELECT count(*) FROM a WHERE a.k = c.k) AS n FROM c"),
    shape(
        "scalar_correlated_select",
        "SELECT c.id AS id, c.name AS name, (SELECT max(b.w) FROM b WHERE b.lo = c.k AND b.s IS NOT NULL) AS top_w,
                (SELECT sum(a.v) * 2 FROM a WHERE a.k = c.k AND a.g = c.q) AS sv
           FROM c WHERE c.q > 0",
    ),
    // Table functions in FROM, each expanding the rows before it (LATERAL): duplicates, NULLs,
    // empty expansions, a LEFT JOIN LATERAL, a join after the function, values that print differently.
    shape(
        "srf_unnest",
        "SELECT a.k AS k, u.x AS x, a.v AS v FROM a, unnest(ARRAY[a.k, a.g, a.k]) AS u(x) WHERE u.x IS NOT NULL AND a.v > -5",
    ),
    shape(
        "srf_series_grouped",
        "SELECT g.n AS n, count(*) AS n_rows, sum(c.id) AS sid FROM c, generate_series(1, c.q) AS g(n) GROUP BY g.n",
    ),
    shape(
        "srf_left_join",
        "SELECT c.id AS id, s.part AS part FROM c LEFT JOIN LATERAL string_to_table(c.name, 'x') AS s(part) ON s.part <> ''",
    ),
    shape(
        "srf_join_after",
        "SELECT a.k AS k, g.n AS n, b.w AS w FROM a, generate_series(a.k, a.k + 1) AS g(n) JOIN b ON b.k = g.n WHERE b.lo = a.g",
    ),
    shape(
        "srf_values",
        "SELECT c.id AS id, m.label AS label FROM c JOIN (VALUES (0, 'zero'), (1, 'one'), (1, 'uno'), (NULL, 'none')) AS m(q, label) ON m.q = c.q",
    ),
    shape(
        "srf_values_unpivot",
        "SELECT a.k AS k, u.col AS col, u.val AS val FROM a, LATERAL (VALUES ('k', a.k), ('g', a.g), ('none', NULL)) AS u(col, val) WHERE u.val IS DISTINCT FROM 3",
    ),
    // Written first: read after the table they are joined with.
    shape(
        "srf_first_values",
        "SELECT m.label AS label, c.id AS id FROM (VALUES (0, 'zero'), (1, 'one'), (NULL, 'none')) AS m(q, label) JOIN c ON c.q = m.q",
    ),
    shape(
        "srf_first_right",
        "SELECT g.n AS n, a.k AS k, a.v AS v FROM generate_series(1, 4) AS g(n) RIGHT JOIN a ON a.g = g.n",
    ),
    shape(
        "srf_repr",
        "SELECT r.id AS id, u.y AS y, u.i AS i FROM r CROSS JOIN LATERAL unnest(ARRAY[r.x, r.x * 2]) WITH ORDINALITY AS u(y, i) WHERE r.k IS NOT NULL",
    ),
    // Lookups by c's primary key (at most one row each, NULL when missing): read as left joins.
    shape("lookup_select", "SELECT a.k AS k, a.v AS v, (SELECT c.name FROM c WHERE c.id = a.k) AS cname FROM a"),
    shape(
        "lookup_grouped_and_compared",
        "SELECT b.hi AS hi, sum(b.w) AS sw, (SELECT c.q FROM c WHERE c.id = b.hi) AS cq FROM b
          WHERE b.lo < (SELECT c.q + 1 FROM c WHERE c.id = b.k AND c.name IS NOT NULL) GROUP BY b.hi",
    ),
    shape(
        "scalar_correlated_count_where",
        "SELECT c.id AS id, c.q AS q FROM c WHERE c.q >= (SELECT count(*) FROM a WHERE a.k = c.k) AND c.name IS NOT NULL",
    ),
    shape(
        "scalar_correlated_or",
        "SELECT c.id AS id, c.name AS name FROM c WHERE c.q IS NULL OR c.q > (SELECT max(b.w) FROM b WHERE b.k = c.k)",
    ),
    shape(
        "scalar_correlated_self",
        "SELECT a.k AS k, a.g AS g, (SELECT count(*) FROM a a2 WHERE a2.g = a.g) AS same_g,
                (SELECT max(b.w) FROM b WHERE b.k = a.k + 1) AS next_w FROM a",
    ),
    shape(
        "scalar_correlated_derived",
        "SELECT s.k AS k, c.id AS id, (SELECT sum(b.w) FROM b WHERE b.k = s.k) AS sw
           FROM (SELECT DISTINCT k FROM a WHERE v > 0) s LEFT JOIN c ON c.k = s.k
         UNION ALL
         SELECT c.k AS k, c.id AS id, (SELECT min(a.v) FROM a WHERE a.k = c.k) AS sw FROM c",
    ),
    shape(
        "scalar_correlated_having",
        "SELECT a.g AS g, count(*) AS n, sum(a.v) AS sv FROM a GROUP BY a.g
         HAVING count(*) > (SELECT count(*) FROM b WHERE b.lo = a.g) AND sum(a.v) >= (SELECT min(b.w) FROM b WHERE b.hi = a.g)",
    ),
    shape(
        "scalar_correlated_grouped_select",
        "SELECT a.g AS g, sum(a.v) AS sv, (SELECT max(b.w) FROM b WHERE b.hi = a.g) AS top,
                (SELECT count(*) FROM c WHERE c.k = a.g) AS nc FROM a GROUP BY a.g",
    ),
    shape(
        "scalar_correlated_select_join",
        "SELECT DISTINCT a.k AS k, b.w AS w, (SELECT count(*) FROM c WHERE c.k = a.g) AS nc,
                (SELECT avg(c.q) FROM c WHERE c.k = b.lo) AS aq
           FROM a, b WHERE a.k = b.k AND b.hi = a.g",
    ),
    // CTEs.
    shape(
        "cte_once",
        "WITH s AS (SELECT g, sum(v) AS sv FROM a GROUP BY g) SELECT s.g AS g, s.sv AS sv FROM s WHERE s.sv IS NOT NULL",
    ),
    shape(
        "cte_twice",
        "WITH t AS (SELECT k, count(*) AS n FROM a GROUP BY k)
         SELECT t1.k AS k, t1.n AS n, t2.n AS n_next FROM t t1 LEFT JOIN t t2 ON t2.k = t1.k + 1",
    ),
    shape(
        "cte_join",
        "WITH big AS (SELECT k, v FROM a WHERE v > 5)
         SELECT big.k AS k, big.v AS v, b.s AS s FROM big JOIN b ON b.k = big.k",
    ),
    // Combinations.
    shape(
        "join_agg_having",
        "SELECT b.s AS s, count(*) AS n, sum(a.v) AS sv, max(b.w) AS mw
           FROM a JOIN b ON a.k = b.k GROUP BY b.s HAVING count(*) >= 3",
    ),
    shape(
        "join3_agg",
        "SELECT c.name AS name, count(*) AS n, min(a.v) AS mn, sum(b.w) AS sw
           FROM a JOIN b ON a.k = b.k JOIN c ON c.k = b.lo GROUP BY c.name",
    ),
    shape(
        "left_join_agg",
        "SELECT c.id AS id, count(a.k) AS n, sum(a.v) AS sv, max(a.t) AS mt FROM c LEFT JOIN a ON a.k = c.k GROUP BY c.id",
    ),
    shape(
        "agg_over_subquery",
        "SELECT x.bucket AS bucket, count(*) AS n, max(x.v) AS mx
           FROM (SELECT CASE WHEN v < 10 THEN 'low' ELSE 'high' END AS bucket, v FROM a WHERE v IS NOT NULL) x
          GROUP BY x.bucket",
    ),
    shape(
        "union_of_aggs",
        "SELECT 'a' AS src, k AS k, count(*) AS n, sum(v) AS total FROM a GROUP BY k
         UNION ALL SELECT 'b' AS src, k AS k, count(*) AS n, sum(w) AS total FROM b GROUP BY k",
    ),
    shape("distinct_join", "SELECT DISTINCT a.g AS g, b.s AS s FROM a JOIN b ON a.k = b.k"),
    shape(
        "exists_agg",
        "SELECT g AS g, count(*) AS n, min(v) AS mn FROM a
          WHERE EXISTS (SELECT 1 FROM c WHERE c.k = a.k AND c.q > 0) GROUP BY g",
    ),
    shape(
        "cte_join_agg",
        "WITH totals AS (SELECT k, sum(w) AS sw, count(*) AS nb FROM b GROUP BY k)
         SELECT c.id AS id, c.name AS name, totals.sw AS sw, totals.nb AS nb FROM c JOIN totals ON totals.k = c.k",
    ),
    beyond(
        "window",
        "SELECT g AS g, v AS v, sum(v) OVER (PARTITION BY g) AS gsum, rank() OVER (PARTITION BY g ORDER BY v) AS rk FROM a",
    ),
    // Comma joins: WHERE conjuncts become join conditions and filters of single inputs. (Appended, so
    // the shapes above keep their seeds.)
    shape(
        "comma_join3",
        "SELECT a.k AS k, a.v AS v, b.s AS s, c.id AS id FROM a, b, c WHERE a.k = b.k AND c.k = b.lo AND a.v > 5",
    ),
    shape(
        "comma_join_rebracketed",
        "SELECT a.k AS k, b.s AS s, c.name AS name FROM a, b, c WHERE a.g = c.k AND b.k = c.q AND b.w IS NOT NULL",
    ),
    shape(
        "comma_left_join",
        "SELECT a.k AS k, b.w AS w, c.id AS id FROM a LEFT JOIN b ON a.k = b.k, c WHERE c.k = a.g AND b.s IS NULL",
    ),
    // Aggregates maintained from stored state (hidden columns): integer and fixed-scale numeric
    // sums, NULL-only groups, MIN/MAX over ints and text, a key the SELECT list does not show,
    // expressions over aggregates, and a global aggregate; and one that stays a group rescan (a
    // numeric of unbounded scale, where the sum's display scale depends on the remaining rows).
    shape(
        "agg_state_int",
        "SELECT k AS k, count(*) AS n, count(q) AS cq, sum(q) AS sq, avg(q) AS aq, min(q) AS mn, max(name) AS mxn
           FROM c GROUP BY k",
    ),
    shape(
        "agg_state_hidden_key",
        "SELECT sum(v) AS sv, count(*) * 2 AS n2, sum(v) / NULLIF(count(v), 0) AS mean, min(t) AS mt FROM a GROUP BY g, k",
    ),
    shape("agg_state_global", "SELECT count(*) AS n, sum(q) AS sq, avg(q) AS aq, max(q) AS mx, min(name) AS mn FROM c"),
    shape("agg_unbounded_scale", "SELECT g AS g, sum(v / 8) AS s8, avg(v * 1.5) AS a15 FROM a GROUP BY g"),
    // What an offloading worker reduces itself (`PGTRICKLE_ORACLE_EXECUTOR=offload` fails a shape
    // named offload_* that it never offloads): aggregates with filters, text and integer keys,
    // integer and fixed-scale sums, FILTER, a projection through a subquery, a global aggregate; and
    // filtered, projected rows of a table without a key (duplicates).
    shape(
        "offload_group",
        "SELECT g AS g, t AS t, count(*) AS n, count(v) AS nv, sum(v) AS sv, avg(v) AS av, sum(k) AS sk,
                count(*) FILTER (WHERE v > 10 AND t <> 'x') AS big
           FROM a WHERE k > 2 OR t IS NULL GROUP BY g, t",
    ),
    shape(
        "offload_projected",
        "SELECT x.b AS b, count(*) AS n, sum(x.q2) AS s, avg(x.q2) AS a
           FROM (SELECT c.k / 3 AS b, c.q * 2 - c.k AS q2 FROM c WHERE c.q IS NOT NULL) x GROUP BY x.b",
    ),
    shape("offload_global", "SELECT count(*) AS n, sum(q) AS sq, avg(q) AS aq, count(name) AS nn FROM c WHERE q * 2 <> k"),
    shape("offload_rows", "SELECT k AS k, v AS v, t AS t, v * 2 AS v2, k + g AS kg FROM a WHERE k > 2 OR t = 'x'"),
    // Sums of numeric expressions whose every value has one scale (products, differences, literals):
    // the worker's decimals must carry PostgreSQL's scale, as the server keeps no scale state.
    shape(
        "offload_fixed_scale",
        "SELECT g AS g, sum(v * k) AS svk, sum(v * 2 - v) AS s1, sum(v * v) AS s2, avg(v * (100 - k)) AS a,
                sum(k::numeric * 1.50) AS s3, count(*) AS n FROM a GROUP BY g",
    ),
    // Equal values that print differently (table r): changes of representation alone must show.
    shape("repr_scan", "SELECT id AS id, k AS k, x AS x, iv AS iv, f AS f, ci AS ci FROM r WHERE k IS NOT NULL"),
    shape("repr_filter_citext", "SELECT id AS id, x AS x, iv AS iv FROM r WHERE ci = 'a'"),
    shape(
        "repr_group",
        "SELECT k AS k, count(*) AS n, sum(x) AS sx, avg(x) AS ax, sum(iv) AS siv, count(f) AS nf FROM r GROUP BY k",
    ),
    // Float sums (0, -0, halves: exact in any order) over groups the stream table holds by key.
    shape("repr_float_sums", "SELECT k AS k, sum(f) AS sf, avg(f) AS af, count(*) AS n FROM r GROUP BY k"),
    shape("repr_float_global", "SELECT sum(f) AS sf, avg(f) AS af, count(f) AS nf FROM r"),
    shape("repr_citext_group", "SELECT lower(ci::text) AS ci, count(*) AS n, sum(x) AS sx, max(k) AS mk FROM r GROUP BY ci"),
    shape("repr_citext_join", "SELECT a.id AS a, b.id AS b, b.iv AS iv, b.f AS f FROM r a JOIN r b ON a.ci = b.ci AND a.k = b.k"),
    // ORDER BY ... LIMIT (top-K). Each ORDER BY decides every visible column (ties are identical rows,
    // or the key is unique), so the query's first rows are one multiset whatever the plan.
    shape("top_k_rows", "SELECT k AS k, v AS v, t AS t FROM a ORDER BY v DESC NULLS LAST, k, t LIMIT 5"),
    shape("top_k_grouped", "SELECT g AS g, count(*) AS n, sum(v) AS sv FROM a GROUP BY g ORDER BY sv DESC NULLS FIRST, g LIMIT 3"),
    shape(
        "top_k_join",
        "SELECT a.k AS k, b.w AS w, b.s AS s FROM a JOIN b ON a.k = b.k WHERE b.w IS NOT NULL ORDER BY w, k, s LIMIT 4",
    ),
    shape("top_k_pk", "SELECT id AS id, q AS q FROM c ORDER BY q NULLS FIRST, id DESC LIMIT 6"),
    // A window after an OFFSET: changes before it shift it.
    shape("top_k_offset", "SELECT k AS k, v AS v, t AS t FROM a ORDER BY v DESC NULLS LAST, k, t LIMIT 4 OFFSET 3"),
    shape("top_k_pk_offset", "SELECT id AS id, q AS q FROM c ORDER BY q NULLS FIRST, id DESC LIMIT 3 OFFSET 5"),
    // DISTINCT ON: each group's first row. The same rule: the order decides every visible column.
    shape(
        "distinct_on_pk",
        "SELECT DISTINCT ON (q) q AS q, id AS id, name AS name FROM c ORDER BY q, name DESC NULLS LAST, id",
    ),
    shape(
        "distinct_on_join",
        "SELECT DISTINCT ON (a.k, a.g) a.g AS g, a.k AS k, b.w AS w, b.s AS s FROM a JOIN b ON a.k = b.k
          ORDER BY a.k, a.g, b.w DESC NULLS FIRST, b.s",
    ),
    shape("distinct_on_repr", "SELECT DISTINCT ON (k) k AS k, x AS x, id AS id FROM r ORDER BY k, x DESC, id"),
    shape("distinct_on_repr_key", "SELECT DISTINCT ON (x) x AS x, id AS id, iv AS iv FROM r ORDER BY x, id DESC"),
    // INTERSECT and EXCEPT [ALL]: rows counted on both sides, NULLs equal.
    shape("setop_except", "SELECT k AS k, g AS g FROM a EXCEPT SELECT k, lo FROM b"),
    shape("setop_except_all", "SELECT k AS k, t AS t FROM a EXCEPT ALL SELECT k, s FROM b"),
    shape("setop_intersect", "SELECT k AS k, v AS v FROM a INTERSECT SELECT k, w FROM b"),
    shape(
        "setop_intersect_all_nested",
        "SELECT k AS k FROM a INTERSECT ALL (SELECT k FROM b EXCEPT ALL SELECT q FROM c WHERE c.name IS NOT NULL)",
    ),
    // A selective table joined on group keys with grouped subqueries (one with HAVING): each side's
    // delta meets only the other side's groups (TPC-H Q17's form).
    shape(
        "join_grouped_subquery",
        "SELECT c.id AS id, s.sv AS sv, s.n AS n, h.mw AS mw
           FROM c JOIN (SELECT k, sum(v) AS sv, count(*) AS n FROM a GROUP BY k) s ON s.k = c.k
                  LEFT JOIN (SELECT k, max(w) AS mw FROM b GROUP BY k HAVING count(*) > 1) h ON h.k = c.q
          WHERE c.q > 2",
    ),
    // One grouped subquery written twice, once under a global max() (TPC-H Q15's view): its whole
    // result and its delta are computed once and shared.
    shape(
        "grouped_twice_max",
        "SELECT c.id AS id, c.name AS name, r.total AS total
           FROM c JOIN (SELECT k, sum(v) AS total FROM a GROUP BY k) r ON r.k = c.k
          WHERE r.total = (SELECT max(r2.total) FROM (SELECT k, sum(v) AS total FROM a GROUP BY k) r2)",
    ),
    // Sums of numeric expressions: fixed-scale ones keep no scale state (`dvm::scale`), the others
    // their largest input scale; each must show the decimals its query shows.
    shape(
        "agg_fixed_scale",
        "SELECT g AS g, sum(v * 2 - v) AS s1, sum(v * v) AS s2, avg(v + 1) AS av, sum(k::numeric * 1.50) AS s3,
                sum(v / 4) AS s4, count(*) AS n FROM a GROUP BY g",
    ),
    shape(
        "view_twice_max",
        "SELECT c.id AS id, c.name AS name, r.total AS total FROM c, a_totals r
          WHERE r.k = c.k AND r.total = (SELECT max(total) FROM a_totals)",
    ),
    shape(
        "grouped_twice_join",
        "SELECT x.k AS k, x.n AS n, y.n AS next_n, x.sv AS sv
           FROM (SELECT k, count(*) AS n, sum(v) AS sv FROM a GROUP BY k) x
           JOIN (SELECT k, count(*) AS n, sum(v) AS sv FROM a GROUP BY k) y ON y.k = x.k + 1",
    ),
    // Stream tables over stream tables: the upstream's refresh is the downstream's change capture
    // (its own MERGE or FULL rewrite, captured like any writer's), and a refresh point sometimes
    // leaves the upstream stale, which the downstream must follow as it is.
    over(
        "dag_rows_grouped",
        &[UP_ROWS],
        "SELECT g AS g, count(*) AS n, sum(v) AS sv, min(t) AS mt, max(v) AS mv FROM up_rows GROUP BY g",
    ),
    over(
        "dag_full_joined",
        &[up_full("up_bsum", "SELECT k AS k, sum(w) AS w, count(*) AS n FROM b GROUP BY k")],
        "SELECT a.k AS k, a.v AS v, u.w AS w, u.n AS n FROM a JOIN up_bsum u ON u.k = a.k",
    ),
    over(
        "dag_agg_of_agg",
        &[up("up_groups", "SELECT g AS g, count(*) AS n, sum(v) AS sv FROM a GROUP BY g")],
        "SELECT n AS n, count(*) AS groups, sum(sv) AS total FROM up_groups GROUP BY n",
    ),
    // What an offloading worker reduces itself, over a stream table.
    over(
        "offload_dag",
        &[UP_ROWS],
        "SELECT k AS k, count(*) AS n, count(t) AS nt, sum(g) AS sg FROM up_rows WHERE v > 1 GROUP BY k",
    ),
    // Three levels, with duplicate rows in the first (a stream table's rows need not be distinct).
    over(
        "dag_chain",
        &[
            up("up_dups", "SELECT g AS g, t AS t FROM a"),
            up_full("up_distinct", "SELECT DISTINCT g AS g, t AS t FROM up_dups"),
        ],
        "SELECT d.g AS g, d.t AS t, u.n AS n, c.id AS id
           FROM up_distinct d
           JOIN (SELECT g, count(*) AS n FROM up_dups GROUP BY g) u ON u.g IS NOT DISTINCT FROM d.g
           LEFT JOIN c ON c.k = d.g",
    ),
    // Equal values that print differently, passed on by a stream table.
    over(
        "dag_repr",
        &[up("up_repr", "SELECT id AS id, k AS k, x AS x, iv AS iv, f AS f FROM r")],
        "SELECT id AS id, x AS x, iv AS iv, f AS f FROM up_repr WHERE k IS NOT NULL",
    ),
    // Window functions over partitions, each window's order unique (or ties identical in every
    // column shown), so the result is one multiset.
    shape(
        "window_row_number",
        "SELECT id AS id, q AS q, row_number() OVER (PARTITION BY q ORDER BY name DESC NULLS LAST, id) AS rn FROM c",
    ),
    shape(
        "window_offsets",
        "SELECT id AS id, k AS k, lag(name) OVER (PARTITION BY k ORDER BY q NULLS FIRST, id) AS prev,
                lead(id, 2) OVER (PARTITION BY k ORDER BY q NULLS FIRST, id) AS next2,
                first_value(q) OVER (PARTITION BY k ORDER BY q NULLS FIRST, id) AS lowest
           FROM c WHERE id % 7 <> 3",
    ),
    shape(
        "window_partition_aggregates",
        "SELECT k AS k, g AS g, v AS v, sum(v) OVER (PARTITION BY k) AS total, count(*) OVER (PARTITION BY k) AS n,
                max(t) OVER (PARTITION BY k) AS hi
           FROM a",
    ),
    shape(
        "window_repr",
        "SELECT id AS id, x AS x, first_value(x) OVER (PARTITION BY k ORDER BY x, id) AS lo,
                lag(x) OVER (PARTITION BY k ORDER BY x, id) AS prev
           FROM r",
    ),
    // Peers by equality, not by how values print: 1.5 and 1.50 (and NULLs) share a rank, as do 'A'
    // and 'a' (citext). Few distinct values a partition: ties are the common case.
    shape(
        "window_ranks",
        "SELECT id AS id, x AS x,
                rank() OVER (PARTITION BY k ORDER BY x DESC NULLS LAST) AS r,
                dense_rank() OVER (PARTITION BY k ORDER BY x DESC NULLS LAST) AS d,
                percent_rank() OVER (PARTITION BY k ORDER BY x DESC NULLS LAST) AS pr,
                cume_dist() OVER (PARTITION BY k ORDER BY x DESC NULLS LAST) AS cd
           FROM r",
    ),
    shape(
        "window_ranks_ci",
        "SELECT id AS id, ci AS ci, f AS f, rank() OVER (PARTITION BY k ORDER BY ci, f) AS r,
                cume_dist() OVER (PARTITION BY k ORDER BY ci, f) AS cd
           FROM r",
    ),
    shape(
        "window_ntile",
        "SELECT id AS id, ntile(3) OVER (PARTITION BY k ORDER BY iv, id) AS t3,
                ntile(7) OVER (PARTITION BY k ORDER BY iv, id) AS t7,
                rank() OVER (PARTITION BY k ORDER BY iv, id) AS r
           FROM r",
    ),
    shape(
        "window_repr_key",
        "SELECT id AS id, x AS x, row_number() OVER (PARTITION BY x ORDER BY id DESC) AS rn FROM r",
    ),
    // MIN/MAX whose lost extrema are read off an index on (group key, argument): `a (g, v)` and
    // `c (q, name)`, with ties (name repeats), NULL keys and NULL arguments; with a WHERE and a
    // FILTER (`a (k, t)`, `a (k, v)`), they are counted and recomputed from the group's rows.
    shape(
        "minmax_index",
        "SELECT g AS g, count(*) AS n, min(v) AS mn, max(v) AS mx FROM a GROUP BY g",
    ),
    shape(
        "minmax_index_filtered",
        "SELECT k AS k, min(v) FILTER (WHERE t IS NOT NULL) AS mn, max(t) AS mt, count(t) AS nt
           FROM a WHERE v IS DISTINCT FROM 5 GROUP BY k",
    ),
    shape(
        "minmax_index_text",
        "SELECT q AS q, max(name) AS hi, min(name) AS lo, count(*) AS n FROM c GROUP BY q",
    ),
    // The first rows of each partition in one query: the window in a subquery, a CTE or a view
    // (`window_top_view`, schema.rs), filtered, joined and aggregated above it. Ties in `x` (1.5 and
    // 1.50 among them) decide which rows pass `r <= 2`.
    shape(
        "window_top_n",
        "SELECT s.id AS id, s.k AS k, s.x AS x, s.r AS r
           FROM (SELECT id, k, x, rank() OVER (PARTITION BY k ORDER BY x DESC NULLS LAST) AS r FROM r) s
          WHERE s.r <= 2",
    ),
    shape(
        "window_top_n_cte_join",
        "WITH best AS (SELECT id, k, q, row_number() OVER (PARTITION BY q ORDER BY name DESC NULLS LAST, id) AS rn FROM c)
         SELECT best.id AS id, best.rn AS rn, a.g AS g, a.v AS v
           FROM best JOIN a ON a.k = best.k
          WHERE best.rn <= 3",
    ),
    shape(
        "window_top_n_grouped",
        "SELECT s.k AS k, count(*) AS n, sum(s.v) AS total
           FROM (SELECT k, v, dense_rank() OVER (PARTITION BY k ORDER BY v NULLS FIRST) AS d FROM a) s
          WHERE s.d = 1
          GROUP BY s.k",
    ),
    shape(
        "window_top_view",
        "SELECT v.id AS id, v.ci AS ci, v.d AS d FROM r_ranked v WHERE v.d <= 2",
    ),
    // DISTINCT ON in a subquery in FROM and in a CTE, joined and filtered over.
    shape(
        "distinct_on_subquery",
        "SELECT s.k AS k, s.id AS id, a.v AS v
           FROM (SELECT DISTINCT ON (k) k, id FROM c ORDER BY k, name DESC NULLS LAST, id) s
           JOIN a ON a.k = s.k",
    ),
    shape(
        "distinct_on_cte_repr",
        "WITH f AS (SELECT DISTINCT ON (k) k, x, id FROM r ORDER BY k, x DESC NULLS LAST, id)
         SELECT f.k AS k, f.x AS x, f.id AS id FROM f WHERE f.x IS NOT NULL",
    ),
    // Grouping sets: one grouped query per set under UNION ALL, the keys a set leaves out NULL
    // (beside NULL keys of the data), GROUPING() a constant per set; the empty set's row stays when
    // the table empties.
    shape(
        "grouping_rollup",
        "SELECT k AS k, g AS g, count(*) AS n, sum(v) AS total, GROUPING(k, g) AS gr FROM a GROUP BY ROLLUP (k, g)",
    ),
    shape(
        "grouping_cube_having",
        "SELECT k AS k, lo AS lo, count(*) AS n, avg(w) AS aw FROM b GROUP BY CUBE (k, lo) HAVING count(*) > 1",
    ),
    shape(
        "grouping_sets_join",
        "SELECT c.q AS q, a.g AS g, count(*) AS n, sum(a.v) AS total
           FROM c JOIN a ON a.k = c.k
          GROUP BY GROUPING SETS ((c.q), (a.g), ())",
    ),
    // A function or VALUES list first and kept: rows that never change, matched or padded.
    shape(
        "calendar_left_join",
        "SELECT d.day AS day, count(a.v) AS n, sum(a.v) AS total, min(a.v) AS lo
           FROM generate_series(-1, 6) AS d(day) LEFT JOIN a ON a.g = d.day
          GROUP BY d.day",
    ),
    shape(
        "values_full_join",
        "SELECT m.label AS label, c.id AS id, c.q AS q
           FROM (VALUES (0, 'zero'), (1, 'one'), (1, 'uno'), (7, 'seven')) AS m(k, label)
           FULL JOIN c ON c.k = m.k",
    ),
];

/// The shapes whose name equals `filter`, or failing that contains it; all shapes for None.
pub fn select(filter: Option<&str>) -> Vec<(usize, &'static Shape)> {
    let all = SHAPES.iter().enumerate();
    match filter {
        None => all.collect(),
        Some(f) if SHAPES.iter().any(|s| s.name == f) => all.filter(|(_, s)| s.name == f).collect(),
        Some(f) => all.filter(|(_, s)| s.name.contains(f)).collect(),
    }
}
