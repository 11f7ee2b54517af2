//! The correctness oracle: every shape of defining query is maintained by two stream tables (a
//! differential twin and a FULL twin) while a seeded random DML sequence runs against its sources;
//! at every refresh point both must equal the query as multisets. See docs/ORACLE.md.

pub mod check;
pub mod generated;
pub mod offload;
pub mod ops;
pub mod prng;
pub mod report;
pub mod runner;
pub mod schema;
pub mod shapes;
pub mod shrink;

use runner::Runner;
use shapes::Shape;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Config {
    /// Refresh mode of the `_d` twins.
    pub diff_mode: String,
    /// Who refreshes the twins at a refresh point.
    pub executor: runner::Executor,
    pub ops: usize,
    pub base_seed: u64,
    /// Seeds per shape: shape i runs base_seed + i + 1000 * round, for each round.
    pub seeds: u64,
    pub filter: Option<String>,
    pub threads: usize,
    pub shrink_budget: Duration,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    env(name)
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

impl Config {
    pub fn from_env() -> Config {
        let soak = env("PGTRICKLE_ORACLE_SOAK").is_some_and(|v| v != "0");
        Config {
            diff_mode: env("PGTRICKLE_ORACLE_DIFF_MODE")
                .unwrap_or_else(|| "DIFFERENTIAL".into())
                .to_uppercase(),
            executor: match env("PGTRICKLE_ORACLE_EXECUTOR").as_deref() {
                None | Some("session") => runner::Executor::Session,
                Some("external") => runner::Executor::ExternalWorker,
                Some("offload") => runner::Executor::Offloading,
                Some(other) => {
                    panic!("PGTRICKLE_ORACLE_EXECUTOR={other}: use session, external or offload")
                }
            },
            ops: env_number("PGTRICKLE_ORACLE_OPS", if soak { 50_000 } else { 2_000 }),
            base_seed: env_number("PGTRICKLE_ORACLE_SEED", 20_261_123),
            seeds: if soak { 5 } else { 1 },
            filter: env("PGTRICKLE_ORACLE_SHAPE"),
            threads: env_number("PGTRICKLE_ORACLE_THREADS", 3).max(1),
            shrink_budget: Duration::from_secs(env_number("PGTRICKLE_ORACLE_SHRINK_SECS", 300)),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "oracle: differential twin mode {}, refreshed by {}, {} ops x {} seed(s) per shape, base seed {}, {} thread(s){}",
            self.diff_mode,
            self.executor.describe(),
            self.ops,
            self.seeds,
            self.base_seed,
            self.threads,
            self.filter.as_ref().map(|f| format!(", shapes matching {f:?}")).unwrap_or_default()
        )
    }
}

pub struct ShapeResult {
    pub index: usize,
    pub summary: String,
    pub failure: Option<String>,
}

/// Runs every selected shape, `threads` at a time, each in its own database. Only the first failure
/// is shrunk (shrinking is slow); the others are reported with their seed and operation index.
pub fn run_all(cfg: &Config) -> Vec<ShapeResult> {
    let selected = shapes::select(cfg.filter.as_deref());
    assert!(
        !selected.is_empty(),
        "no shape matches PGTRICKLE_ORACLE_SHAPE={:?}",
        cfg.filter
    );
    run_shapes(cfg, &selected)
}

/// Runs `selected` (index, shape) on `cfg.threads` threads; results in index order.
pub fn run_shapes(cfg: &Config, selected: &[(usize, &'static Shape)]) -> Vec<ShapeResult> {
    let (next, may_shrink, results) = (
        AtomicUsize::new(0),
        AtomicBool::new(true),
        Mutex::new(Vec::new()),
    );
    std::thread::scope(|scope| {
        for _ in 0..cfg.threads.min(selected.len()) {
            scope.spawn(|| {
                while let Some(&(index, shape)) = selected.get(next.fetch_add(1, Ordering::Relaxed))
                {
                    let result = run_shape(cfg, index, shape, &may_shrink);
                    println!("{}", result.summary);
                    results.lock().unwrap().push(result);
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|r| r.index);
    results
}

fn run_shape(
    cfg: &Config,
    index: usize,
    shape: &'static Shape,
    may_shrink: &AtomicBool,
) -> ShapeResult {
    let started = Instant::now();
    let mut runner = Runner::new(&format!("oracle_{}", shape.name), shape, &cfg.diff_mode);
    runner.executor = cfg.executor;
    let (mut ops, mut found) = (0, None);
    for round in 0..cfg.seeds {
        let seed = cfg.base_seed + index as u64 + 1000 * round;
        let (log, failed) = runner.run(seed, cfg.ops);
        ops += log.len();
        if let Some((at, failure)) = failed {
            found = Some(Found {
                seed_offset: index as u64,
                seed,
                log,
                at,
                failure,
            });
            break;
        }
    }
    // Before shrinking, whose replays count too.
    let (refreshes, rows, offloaded) = (runner.refreshes, runner.rows_checked, runner.offloaded);
    let mut status = "ok".to_string();
    let failure = match found {
        Some(found)
            if shape.may_refuse
                && found.at.is_none()
                && found.failure.kind == "error 0A000 in create_stream_table" =>
        {
            let message = found
                .failure
                .detail
                .lines()
                .find_map(|l| l.strip_prefix("failed: "))
                .unwrap_or_default();
            status = format!("refused by {} mode: {message}", cfg.diff_mode);
            None
        }
        Some(found) => {
            status = "FAILED".into();
            Some(failure_report(cfg, &mut runner, found, may_shrink))
        }
        // A shape written for offloading that was never offloaded proves nothing about it.
        None if cfg.executor == runner::Executor::Offloading
            && shape.name.starts_with("offload_")
            && offloaded == 0 =>
        {
            status = "FAILED: never offloaded".into();
            Some(format!("shape {}: no refresh of its differential twin was offloaded (see the server's not_offloaded reason)", shape.name))
        }
        None => None,
    };
    runner.drop_database();
    if cfg.executor == runner::Executor::Offloading {
        status = format!("{status}  ({offloaded} offloaded)");
    }
    let summary = format!(
        "oracle: {:<18} ops {:>6}  refreshes {:>5}  rows checked {:>9}  {:>6.1}s  {}",
        shape.name,
        ops,
        refreshes,
        rows,
        started.elapsed().as_secs_f64(),
        status
    );
    ShapeResult {
        index,
        summary,
        failure,
    }
}

/// A failing run: its seed (and how far that is from the base seed), log, where and how it failed.
struct Found {
    seed_offset: u64,
    seed: u64,
    log: Vec<runner::Entry>,
    at: Option<usize>,
    failure: check::Failure,
}

fn failure_report(
    cfg: &Config,
    runner: &mut Runner,
    found: Found,
    may_shrink: &AtomicBool,
) -> String {
    let Found {
        seed_offset,
        seed,
        log,
        at,
        failure,
    } = found;
    let name = runner.shape.name;
    let mut out = format!(
        "=== shape {name}: seed {seed}, differential twin mode {}\n",
        runner.diff_mode
    );
    let Some(at) = at else {
        out += &format!(
            "failed while creating the stream tables:\n{}\n\n{}\n",
            failure.detail,
            report::script(runner, &[])
        );
        return out;
    };
    let op = runner.statements(at, &log[at].1).join("; ");
    out += &format!("failed at operation {at}: {op}\n{}\n", failure.detail);
    out += &format!(
        "reproduce: PGTRICKLE_ORACLE_SHAPE={name} PGTRICKLE_ORACLE_SEED={} PGTRICKLE_ORACLE_OPS={} PGTRICKLE_ORACLE_DIFF_MODE={} \
         PGTRICKLE_ORACLE_EXECUTOR={} CARGO_TARGET_DIR=/tmp/target_oracle cargo test -p pg_trickle_e2e --test oracle every_shape -- --nocapture\n",
        seed - seed_offset,
        at + 1,
        cfg.diff_mode,
        cfg.executor.env_value()
    );
    if !may_shrink.swap(false, Ordering::Relaxed) {
        out += "not shrunk (only the first failure of a run is): run the line above to shrink it\n";
        return out;
    }
    let started = Instant::now();
    let total = log.len();
    let shrunk = match shrink_failure(runner, log, &failure.kind, cfg.shrink_budget) {
        Ok(shrunk) => shrunk,
        Err(why) => return out + &why + "\n",
    };
    out += &format!(
        "shrunk from {total} to {} operations in {} replays, {:.0}s{}\n",
        shrunk.log.len(),
        shrunk.tries,
        started.elapsed().as_secs_f64(),
        if shrunk.minimal {
            ""
        } else {
            " (time budget reached; not minimal)"
        }
    );
    if let Err((_, f)) = runner.replay(&shrunk.log) {
        out += &format!("{}\n", f.detail);
    }
    out += &format!(
        "--- script (paste into psql on a database with pg_trickle) ---\n{}\n",
        report::script(runner, &shrunk.log)
    );
    out
}

/// Shrinks a failing log to one that fails with the same kind, then splits what transactions are left
/// where that still fails, and shrinks again. Refuses (saying why) when replaying the whole log from
/// scratch does not fail that way: shrinking would then chase noise.
pub fn shrink_failure(
    runner: &mut Runner,
    log: Vec<runner::Entry>,
    kind: &str,
    budget: Duration,
) -> Result<shrink::Shrunk<runner::Entry>, String> {
    let started = Instant::now();
    match runner.replay(&log) {
        Err((_, f)) if f.kind == kind => {}
        Err((_, f)) => {
            return Err(format!(
                "not shrunk: replaying the log from scratch fails differently:\n{}",
                f.detail
            ))
        }
        Ok(()) => return Err(
            "not shrunk: replaying the log from scratch passes (is the failure timing-dependent?)"
                .into(),
        ),
    }
    let mut fails = |candidate: &[runner::Entry]| match runner.replay(candidate) {
        Err((n, f)) if f.kind == kind => Some(n),
        _ => None,
    };
    let mut shrunk = shrink::shrink(log, budget, &mut fails);
    let mut split = false;
    for i in (0..shrunk.log.len()).rev() {
        let Some(parts) = shrunk.log[i].1.split() else {
            continue;
        };
        let index = shrunk.log[i].0;
        let mut candidate = shrunk.log.clone();
        candidate.splice(i..=i, parts.into_iter().map(|op| (index, op)));
        shrunk.tries += 1;
        if let Some(n) = fails(&candidate) {
            candidate.truncate(n);
            shrunk.log = candidate;
            split = true;
        }
    }
    if split && shrunk.minimal {
        let again = shrink::shrink(
            shrunk.log,
            budget.saturating_sub(started.elapsed()),
            &mut fails,
        );
        shrunk = shrink::Shrunk {
            tries: shrunk.tries + again.tries,
            ..again
        };
    }
    Ok(shrunk)
}
