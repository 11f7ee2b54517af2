//! A refresh is a *plan*: an ordered list of SQL statements with symbolic parameters. The plan is pure
//! data, so the same plan runs under SPI inside PostgreSQL and over tokio-postgres in the external
//! worker, with the same results.

use serde::{Deserialize, Serialize};

/// A value the executor binds when it runs a step. Positional: the n-th entry is `$n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Param {
    /// The stream table's id (`bigint`).
    PgtId,
}

/// What a step returns, which the executor reads back into the refresh outcome. A step that
/// reports returns exactly one row whose columns are named after these fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepOutput {
    /// Nothing to read.
    None,
    /// One row: `rows_deleted bigint, rows_inserted bigint, snapshot text` (the statement's snapshot,
    /// which becomes the stream table's new frontier).
    Applied,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    /// Why this step exists, for EXPLAIN-style output and logs.
    pub label: String,
    pub sql: String,
    pub params: Vec<Param>,
    pub output: StepOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefreshAction {
    Full,
}

impl RefreshAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshAction::Full => "FULL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshPlan {
    pub action: RefreshAction,
    pub steps: Vec<PlanStep>,
}
