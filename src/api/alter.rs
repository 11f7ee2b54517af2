use crate::catalog::modes::{RefreshMode, Status};
use crate::catalog::schedule::{format_schedule, parse_schedule};
use crate::catalog::stream_tables;
use crate::error::{OrRaise, PgtResult};
use crate::spi;
use pgrx::prelude::*;

/// Changes a stream table's schedule, refresh mode or status (ACTIVE / SUSPENDED). NULL keeps a setting.
#[pg_extern(schema = "pgtrickle")]
fn alter_stream_table(
    name: &str,
    schedule: default!(Option<&str>, "NULL"),
    refresh_mode: default!(Option<&str>, "NULL"),
    status: default!(Option<&str>, "NULL"),
) {
    alter(name, schedule, refresh_mode, status).or_raise()
}

fn alter(name: &str, schedule: Option<&str>, refresh_mode: Option<&str>, status: Option<&str>) -> PgtResult<()> {
    // Validate everything before changing anything.
    let schedule_ms = schedule.map(parse_schedule).transpose()?;
    let mode = refresh_mode.map(RefreshMode::parse).transpose()?;
    let effective = mode.map(RefreshMode::resolve).transpose()?;
    let status = status.map(Status::parse_settable).transpose()?;
    let st = stream_tables::find(name)?;

    if let Some(ms) = schedule_ms {
        spi::exec(
            "UPDATE pgtrickle.pgt_stream_tables SET schedule = $2, schedule_ms = $3 WHERE pgt_id = $1",
            &[st.pgt_id.into(), format_schedule(ms).into(), ms.into()],
        )?;
    }
    if let (Some(mode), Some(effective)) = (mode, effective) {
        spi::exec(
            "UPDATE pgtrickle.pgt_stream_tables SET refresh_mode = $2, effective_mode = $3 WHERE pgt_id = $1",
            &[st.pgt_id.into(), mode.as_str().into(), effective.as_str().into()],
        )?;
    }
    if let Some(status) = status {
        // Re-activating starts retries afresh instead of at the backed-off interval.
        spi::exec(
            "UPDATE pgtrickle.pgt_stream_tables
                SET status = $2,
                    consecutive_errors = CASE WHEN $2 = 'ACTIVE' THEN 0 ELSE consecutive_errors END
              WHERE pgt_id = $1",
            &[st.pgt_id.into(), status.as_str().into()],
        )?;
    }
    crate::bgworker::request_scheduler();
    Ok(())
}
