//! Runs a [`RefreshPlan`] through SPI, in the current transaction.

use crate::catalog::stream_tables::StreamTable;
use crate::dvm::plan::{Param, RefreshPlan, StepOutput};
use crate::error::{PgtError, PgtResult, SqlState};
use crate::spi;
use pgrx::datum::DatumWithOid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub rows_inserted: i64,
    pub rows_deleted: i64,
    /// The snapshot the plan read its sources with: the new frontier.
    pub snapshot: String,
}

/// Why a plan did not complete normally without an error.
#[derive(Debug)]
pub enum PlanError {
    Failed(PgtError),
    /// The apply deleted `actual` rows where the delta said `expected`: the stream table did not hold
    /// what its change log implies. Nothing is wrong with the data sources; a FULL refresh repairs it.
    OutOfStep {
        expected: i64,
        actual: i64,
    },
}

impl From<PgtError> for PlanError {
    fn from(e: PgtError) -> Self {
        PlanError::Failed(e)
    }
}

pub fn execute(plan: &RefreshPlan, st: &StreamTable) -> PgtResult<Applied> {
    try_execute(plan, st).map_err(|e| match e {
        PlanError::Failed(e) => e,
        PlanError::OutOfStep { expected, actual } => PgtError::internal(format!(
            "refresh plan applied {actual} rows, expected {expected}"
        )),
    })
}

/// Runs the plan's statements as the stream table's owner (see `privilege::as_owner`); pg_trickle's
/// bookkeeping around them stays with the caller.
pub fn try_execute(plan: &RefreshPlan, st: &StreamTable) -> Result<Applied, PlanError> {
    let owner = crate::catalog::stream_tables::owner(st.relid)?;
    // A delta may read only change buffers: check the owner may still read every source itself,
    // and reach it (USAGE on its schema, which PostgreSQL checks when a query names a table). A
    // FULL refresh runs the query, so only what it names is checked as the owner, as PostgreSQL
    // does: the tables under a view it names are read with the view owner's rights (the query
    // view's own dependencies are what the query names). DIFFERENTIAL reads views it may
    // (`catalog::differential`) through their tables' buffers, so it checks them all.
    let denied = spi::rows(
        "SELECT NOT pg_catalog.has_schema_privilege($2, c.relnamespace, 'USAGE') AS schema_denied,
                pg_catalog.quote_ident(n.nspname) AS schema, c.oid::pg_catalog.regclass::text AS source
           FROM pgtrickle.pgt_dependencies d
           JOIN pg_catalog.pg_class c ON c.oid = d.source_relid
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE d.pgt_id = $1
            AND ($3 OR d.source_relid IN (
                    SELECT dep.refobjid FROM pg_catalog.pg_depend dep
                      JOIN pg_catalog.pg_rewrite r ON r.oid = dep.objid
                     WHERE dep.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                       AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                       AND r.ev_class = pg_catalog.to_regclass($4)))
            AND (NOT pg_catalog.has_schema_privilege($2, c.relnamespace, 'USAGE')
                 OR NOT pg_catalog.has_table_privilege($2, c.oid, 'SELECT'))
          ORDER BY 1 DESC, 3 LIMIT 1",
        &[
            st.pgt_id.into(),
            owner.into(),
            (st.effective_mode == "DIFFERENTIAL").into(),
            crate::catalog::query_view::name(st.pgt_id).quoted().as_str().into(),
        ],
        |r| {
            Ok((
                spi::col::<bool>(r, "schema_denied")?,
                spi::col::<String>(r, "schema")?,
                spi::col::<String>(r, "source")?,
            ))
        },
    )?
    .into_iter()
    .next();
    if let Some((schema_denied, schema, source)) = denied {
        let role = crate::catalog::names::role_name(owner)?;
        let (what, grant) = if schema_denied {
            (
                format!("schema {schema}"),
                format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
            )
        } else {
            (
                format!("table {source}"),
                format!("GRANT SELECT ON {source} TO {role}"),
            )
        };
        return Err(PlanError::Failed(
            PgtError::new(
                SqlState::InsufficientPrivilege,
                format!("permission denied for {what}"),
            )
            .detail(format!(
                "Refreshes run as the stream table's owner, {role}, who may not read {source}."
            ))
            .hint(format!(
                "{grant}, or give the stream table to a role that may read it."
            )),
        ));
    }
    if st.effective_mode == "DIFFERENTIAL" {
        if let Some(tree) = st.tree()? {
            let sources: Vec<pgrx::pg_sys::Oid> = tree
                .tables()
                .iter()
                .map(|t| pgrx::pg_sys::Oid::from(t.relid))
                .collect();
            crate::cdc::grant_readers(&sources, owner)?;
        }
    }
    crate::catalog::privilege::as_owner(owner, || run_steps(plan, st))
}

fn run_steps(plan: &RefreshPlan, st: &StreamTable) -> Result<Applied, PlanError> {
    if plan.one_snapshot {
        return Ok(run_on_one_snapshot(plan, st)?);
    }
    let mut applied = None;
    for step in &plan.steps {
        let args: Vec<DatumWithOid> = step
            .params
            .iter()
            .map(|p| match p {
                Param::PgtId => st.pgt_id.into(),
                Param::OldFrontier => st.frontier.clone().into(),
            })
            .collect();
        match step.output {
            StepOutput::None => spi::exec(&step.sql, &args)?,
            StepOutput::Deleted | StepOutput::Inserted | StepOutput::Snapshot => {
                return Err(PlanError::Failed(PgtError::internal(format!(
                    "step {:?} belongs to a one-snapshot plan",
                    step.output
                ))));
            }
            StepOutput::Counts | StepOutput::Applied => {
                let read = |r: &pgrx::spi::SpiHeapTupleData| {
                    let applied = Applied {
                        rows_deleted: spi::col(r, "rows_deleted")?,
                        rows_inserted: spi::col(r, "rows_inserted")?,
                        snapshot: spi::col(r, "snapshot")?,
                    };
                    let expected = if step.output == StepOutput::Applied {
                        spi::col(r, "expected_deleted")?
                    } else {
                        applied.rows_deleted
                    };
                    Ok((applied, expected))
                };
                let row = spi::rows(&step.sql, &args, read)?;
                let Some((done, expected)) = row.into_iter().next() else {
                    continue;
                };
                if done.rows_deleted != expected {
                    return Err(PlanError::OutOfStep {
                        expected,
                        actual: done.rows_deleted,
                    });
                }
                applied = Some(done);
            }
        }
    }
    applied.ok_or_else(|| {
        PlanError::Failed(PgtError::internal(format!(
            "refresh plan {:?} reported no outcome",
            plan.action
        )))
    })
}

/// A plan whose steps share one snapshot (see `RefreshPlan::one_snapshot`); its steps take no
/// parameters.
fn run_on_one_snapshot(plan: &RefreshPlan, st: &StreamTable) -> PgtResult<Applied> {
    if plan.steps.iter().any(|s| !s.params.is_empty()) {
        return Err(PgtError::internal(
            "a one-snapshot plan step has parameters",
        ));
    }
    let statements: Vec<&str> = plan.steps.iter().map(|s| s.sql.as_str()).collect();
    let results = spi::on_one_snapshot(&statements, |i, snapshot| {
        let done = match &plan.insert_rows {
            // SAFETY: SPI is connected and `snapshot` registered (`on_one_snapshot`); the step
            // before this one deleted from the stream table, holding its RowExclusiveLock.
            Some(rows) if rows.step == i => {
                unsafe { super::full_insert::insert(st.relid, rows, snapshot) }?
            }
            // SAFETY: as above; the refresh holds the stream table's claim.
            _ if plan.delete_all == Some(i) => {
                unsafe { super::full_delete::delete_all(st.relid, snapshot) }?
            }
            _ => None,
        };
        Ok(done.map(|rows| spi::SnapshotResult { rows, first: None }))
    })?;
    let (mut deleted, mut inserted, mut snapshot) = (0, 0, None);
    for (step, result) in plan.steps.iter().zip(results) {
        match step.output {
            StepOutput::Deleted => deleted += result.rows as i64,
            StepOutput::Inserted => inserted += result.rows as i64,
            StepOutput::Snapshot => snapshot = result.first,
            _ => {}
        }
    }
    let snapshot = snapshot.ok_or_else(|| {
        PgtError::internal(format!(
            "refresh plan {:?} reported no snapshot",
            plan.action
        ))
    })?;
    Ok(Applied {
        rows_inserted: inserted,
        rows_deleted: deleted,
        snapshot,
    })
}
