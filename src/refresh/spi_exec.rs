//! Runs a [`RefreshPlan`] through SPI, in the current transaction.

use crate::dvm::plan::{Param, RefreshPlan, StepOutput};
use crate::error::{PgtError, PgtResult};
use crate::spi;
use pgrx::datum::DatumWithOid;

pub struct Applied {
    pub rows_inserted: i64,
    pub rows_deleted: i64,
    /// The snapshot the applying statement ran with: the new frontier.
    pub snapshot: String,
}

pub fn execute(plan: &RefreshPlan, pgt_id: i64) -> PgtResult<Applied> {
    let mut applied = None;
    for step in &plan.steps {
        let args: Vec<DatumWithOid> = step.params.iter().map(|p| match p { Param::PgtId => pgt_id.into() }).collect();
        match step.output {
            StepOutput::None => spi::exec(&step.sql, &args)?,
            StepOutput::Applied => {
                let row = spi::rows(&step.sql, &args, |r| {
                    Ok(Applied {
                        rows_deleted: spi::col(r, "rows_deleted")?,
                        rows_inserted: spi::col(r, "rows_inserted")?,
                        snapshot: spi::col(r, "snapshot")?,
                    })
                })?;
                applied = row.into_iter().next();
            }
        }
    }
    applied.ok_or_else(|| PgtError::internal(format!("refresh plan {:?} reported no outcome", plan.action)))
}
