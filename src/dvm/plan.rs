//! A refresh is a *plan*: an ordered list of SQL statements with symbolic parameters. The plan is pure
//! data, so the same plan runs under SPI inside PostgreSQL and over tokio-postgres in the external
//! worker, with the same results.

use serde::{Deserialize, Serialize};

/// A value the executor binds when it runs a step. Positional: the n-th entry is `$n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Param {
    /// The stream table's id (`bigint`).
    PgtId,
    /// The stream table's frontier before this refresh, as `pg_snapshot` text.
    OldFrontier,
}

/// What a step returns, which the executor reads back into the refresh outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepOutput {
    /// Nothing to read.
    None,
    /// One row: `rows_deleted bigint, rows_inserted bigint, snapshot text`, where `snapshot` is the
    /// snapshot the statement read the sources with: the stream table's new frontier.
    Counts,
    /// As `Counts`, plus `expected_deleted bigint`: the copies the delta said to delete. Fewer deleted
    /// means the stream table was out of step with its change log.
    Applied,
    /// The statement's row count is the rows deleted.
    Deleted,
    /// The statement's row count is the rows inserted.
    Inserted,
    /// One row: `snapshot text`, the snapshot the plan read its sources with (see `Counts`).
    Snapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    /// Why this step exists, for explanations and logs.
    pub label: String,
    pub sql: String,
    pub params: Vec<Param>,
    pub output: StepOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefreshAction {
    Full,
    Differential,
    NoData,
}

impl RefreshAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshAction::Full => "FULL",
            RefreshAction::Differential => "DIFFERENTIAL",
            RefreshAction::NoData => "NO_DATA",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshPlan {
    pub action: RefreshAction,
    pub steps: Vec<PlanStep>,
    /// All steps must read with one snapshot, as if they were one statement (their outputs are
    /// `Deleted`, `Inserted` and `Snapshot`). Otherwise each step is one statement that reports for
    /// itself.
    #[serde(default)]
    pub one_snapshot: bool,
    /// Which step only inserts a query's rows, for an executor that can run that query itself and
    /// insert its rows in batches (`INSERT ... SELECT` inserts row by row and never reads in
    /// parallel; see `refresh::full_insert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insert_rows: Option<InsertRows>,
    /// Which step only deletes every row of the stream table (`DELETE FROM <stream table>`), for an
    /// executor that can delete them itself (see `refresh::full_delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_all: Option<usize>,
}

/// Step `step` is `INSERT INTO <stream table> (<columns>) <select>`, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsertRows {
    pub step: usize,
    pub select: String,
    /// The stream table's columns that take the query's columns, in order (unquoted names).
    pub columns: Vec<String>,
}

impl RefreshPlan {
    /// The plan as readable SQL, for explain_stream_table.
    pub fn describe(&self) -> String {
        self.steps
            .iter()
            .enumerate()
            .map(|(i, s)| format!("-- step {}: {}\n{};", i + 1, s.label, s.sql))
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}
