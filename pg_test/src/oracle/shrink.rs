//! Delta debugging over the operation log: remove chunks (halving their size when none can go) while
//! the failure persists, down to a log from which no single operation can be removed.

use std::time::{Duration, Instant};

pub struct Shrunk<T> {
    pub log: Vec<T>,
    pub tries: usize,
    /// False when the time budget ran out before the log was 1-minimal.
    pub minimal: bool,
}

/// `fails(candidate)` replays a candidate log and returns how many of its entries it took to fail the
/// same way (so everything after that is dropped at once), or None if it passed.
pub fn shrink<T: Clone>(
    log: Vec<T>,
    budget: Duration,
    mut fails: impl FnMut(&[T]) -> Option<usize>,
) -> Shrunk<T> {
    let started = Instant::now();
    let mut current = log;
    let mut chunks = 2usize;
    let mut tries = 0;
    while !current.is_empty() {
        let size = current.len().div_ceil(chunks.min(current.len()));
        let mut reduced = false;
        for start in (0..current.len()).step_by(size) {
            if started.elapsed() > budget {
                return Shrunk {
                    log: current,
                    tries,
                    minimal: false,
                };
            }
            let candidate: Vec<T> = current[..start]
                .iter()
                .chain(&current[(start + size).min(current.len())..])
                .cloned()
                .collect();
            tries += 1;
            if let Some(n) = fails(&candidate) {
                current = candidate[..n].to_vec();
                chunks = (chunks - 1).max(2);
                reduced = true;
                break;
            }
        }
        if !reduced {
            if size == 1 {
                break;
            }
            chunks = (chunks * 2).min(current.len());
        }
    }
    Shrunk {
        log: current,
        tries,
        minimal: true,
    }
}
