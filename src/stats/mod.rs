//! Refresh statistics: the history of every refresh attempt, and what refreshes cost (the cost model
//! AUTO decides with; pure, so it is compiled and unit-tested without pgrx).

pub mod cost_model;
pub mod percentile;

#[cfg(feature = "pg")]
pub mod cost_summary;
#[cfg(feature = "pg")]
pub mod history;
#[cfg(feature = "pg")]
pub mod lag;
