//! Harness for pg_trickle's end-to-end tests: a throwaway PostgreSQL 15 cluster with pg_trickle
//! preloaded, run by a non-root OS user on its own port and directory, and a fresh database per test.
//!
//! The cluster is started once per test binary and dies with it: postgres runs as a direct child with
//! PR_SET_PDEATHSIG, spawned from a thread that lives as long as the process.

pub mod cluster;
pub mod db;
pub mod oracle;
pub mod tpch;
pub mod worker;

pub use cluster::cluster;
pub use db::{DbError, Notice, Notices, TestDb};

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The debug build of `pg_trickle_worker` (scripts/test builds it before the end-to-end tests).
pub fn worker_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/pg_trickle_worker");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p pg_trickle_worker` (scripts/test does)",
        bin.display()
    );
    bin
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
