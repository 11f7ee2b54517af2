//! Refresh statistics: the history of every refresh attempt.

pub mod history;
