//! Runs a [`RefreshPlan`] through SPI, in the current transaction.

use crate::catalog::stream_tables::StreamTable;
use crate::dvm::plan::{Param, RefreshPlan, StepOutput};
use crate::error::{PgtError, PgtResult};
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
    OutOfStep { expected: i64, actual: i64 },
}

impl From<PgtError> for PlanError {
    fn from(e: PgtError) -> Self {
        PlanError::Failed(e)
    }
}

pub fn execute(plan: &RefreshPlan, st: &StreamTable) -> PgtResult<Applied> {
    try_execute(plan, st).map_err(|e| match e {
        PlanError::Failed(e) => e,
        PlanError::OutOfStep { expected, actual } => {
            PgtError::internal(format!("refresh plan applied {actual} rows, expected {expected}"))
        }
    })
}

pub fn try_execute(plan: &RefreshPlan, st: &StreamTable) -> Result<Applied, PlanError> {
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
                let Some((done, expected)) = row.into_iter().next() else { continue };
                if done.rows_deleted != expected {
                    return Err(PlanError::OutOfStep { expected, actual: done.rows_deleted });
                }
                applied = Some(done);
            }
        }
    }
    applied.ok_or_else(|| PlanError::Failed(PgtError::internal(format!("refresh plan {:?} reported no outcome", plan.action))))
}
