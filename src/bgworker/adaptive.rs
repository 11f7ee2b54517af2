//! Adaptive sizing of the refresh worker pool (MT-10): once per tick the coordinator measures, and
//! this decides how many refresh workers should run. A pure function of injected measurements, so
//! every rule, the hysteresis and the bounds are unit-tested without a server.
//!
//! Rules, first match wins:
//! 1. CPU utilisation above 70% → one worker fewer (refreshes must not starve the OLTP load), and
//!    no rule grows the pool meanwhile;
//! 2. CDC lag above 5x a schedule → up to max_workers (stream tables are falling behind);
//! 3. queue depth above 2x the workers → one more;
//! 4. every worker idle and nothing queued → down to min_workers.
//!
//! A change needs 3 consecutive agreeing measurements (a different or no proposal starts the count
//! again), so a burst or one noisy CPU sample never makes the pool oscillate. Bounds apply at once.

/// Utilisation (0..1) above which the pool shrinks.
pub const CPU_HIGH: f64 = 0.70;
/// Lag, in multiples of a stream table's schedule, above which the pool grows to its maximum.
pub const LAG_HIGH: f64 = 5.0;
/// Queue depth, per worker, above which the pool grows.
pub const QUEUE_PER_WORKER: u32 = 2;
/// Consecutive agreeing measurements a change needs.
pub const AGREEING: u8 = 3;

/// What the coordinator measured this tick.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Measurement {
    /// CPU utilisation of the machine or container, 0..1; None before two samples exist.
    pub cpu: Option<f64>,
    /// Refreshes due and not yet started.
    pub queue_depth: u32,
    /// Refresh workers running a refresh now.
    pub busy: u32,
    /// The largest staleness among ACTIVE stream tables, in multiples of their schedule.
    pub lag_ratio: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
}

/// Why the target is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No rule applies.
    Steady,
    /// adaptive_workers is off: the pool is fixed at max_workers.
    Fixed,
    /// min_workers / max_workers moved the target.
    Bounds,
    CpuBusy,
    Lagging,
    QueueDeep,
    Idle,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Steady => "steady",
            Reason::Fixed => "fixed: adaptive_workers is off",
            Reason::Bounds => "bounds: min_workers/max_workers",
            Reason::CpuBusy => "cpu above 70%",
            Reason::Lagging => "lag above 5x schedule",
            Reason::QueueDeep => "queue above 2x workers",
            Reason::Idle => "all workers idle",
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Reason {
        [
            Reason::Steady,
            Reason::Fixed,
            Reason::Bounds,
            Reason::CpuBusy,
            Reason::Lagging,
            Reason::QueueDeep,
            Reason::Idle,
        ]
        .into_iter()
        .find(|r| r.code() == code)
        .unwrap_or(Reason::Steady)
    }
}

/// One tick's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub target: u32,
    /// The rule that applies this tick (it changes the target only on its third agreeing tick).
    pub reason: Reason,
    /// How many consecutive ticks that rule has applied (0 for Steady, Fixed, Bounds, and a busy
    /// CPU at min_workers, which only holds the pool where it is).
    pub agreeing: u8,
    /// Whether the target changed this tick.
    pub changed: bool,
}

/// The pool's size and the proposal being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizer {
    target: u32,
    pending: Option<(Reason, u8)>,
}

impl Sizer {
    /// A new pool starts at its minimum (or at max when not adaptive, which the first decision sets).
    pub fn new(bounds: Bounds) -> Sizer {
        Sizer {
            target: bounds.min.min(bounds.max),
            pending: None,
        }
    }

    pub fn target(&self) -> u32 {
        self.target
    }

    pub fn decide(&mut self, m: &Measurement, bounds: Bounds, adaptive: bool) -> Decision {
        let (min, max) = (bounds.min.min(bounds.max), bounds.max);
        if !adaptive {
            self.pending = None;
            return self.set(max, Reason::Fixed, 0);
        }
        if self.target < min || self.target > max {
            self.pending = None;
            return self.set(self.target.clamp(min, max), Reason::Bounds, 0);
        }
        let cpu_busy = m.cpu.is_some_and(|c| c > CPU_HIGH);
        if cpu_busy && self.target <= min {
            // Already as small as allowed, and no rule may grow the pool while the CPU is busy.
            self.pending = None;
            return self.set(self.target, Reason::CpuBusy, 0);
        }
        let proposal = if cpu_busy {
            Some((Reason::CpuBusy, self.target - 1))
        } else if m.lag_ratio > LAG_HIGH && self.target < max {
            Some((Reason::Lagging, max))
        } else if m.queue_depth > QUEUE_PER_WORKER * self.target.max(1) && self.target < max {
            Some((Reason::QueueDeep, self.target + 1))
        } else if m.busy == 0 && m.queue_depth == 0 && self.target > min {
            Some((Reason::Idle, min))
        } else {
            None
        };
        let Some((reason, to)) = proposal else {
            self.pending = None;
            return self.set(self.target, Reason::Steady, 0);
        };
        let agreeing = match self.pending {
            Some((r, n)) if r == reason => n.saturating_add(1),
            _ => 1,
        };
        if agreeing >= AGREEING {
            self.pending = None;
            return self.set(to, reason, agreeing);
        }
        self.pending = Some((reason, agreeing));
        self.set(self.target, reason, agreeing)
    }

    fn set(&mut self, target: u32, reason: Reason, agreeing: u8) -> Decision {
        let changed = target != self.target;
        self.target = target;
        Decision {
            target,
            reason,
            agreeing,
            changed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds { min: 1, max: 8 };

    fn m(cpu: Option<f64>, queue_depth: u32, busy: u32, lag_ratio: f64) -> Measurement {
        Measurement {
            cpu,
            queue_depth,
            busy,
            lag_ratio,
        }
    }

    /// Feeds the same measurement `n` times and returns the last decision.
    fn feed(s: &mut Sizer, x: Measurement, n: usize) -> Decision {
        let mut last = None;
        for _ in 0..n {
            last = Some(s.decide(&x, B, true));
        }
        last.unwrap()
    }

    #[test]
    fn a_deep_queue_adds_one_worker_after_three_agreeing_ticks() {
        let mut s = Sizer::new(B);
        let deep = m(Some(0.2), 5, 1, 0.0);
        assert_eq!(
            s.decide(&deep, B, true),
            Decision {
                target: 1,
                reason: Reason::QueueDeep,
                agreeing: 1,
                changed: false
            }
        );
        assert_eq!(s.decide(&deep, B, true).agreeing, 2);
        assert_eq!(
            s.decide(&deep, B, true),
            Decision {
                target: 2,
                reason: Reason::QueueDeep,
                agreeing: 3,
                changed: true
            }
        );
        // With two workers 5 queued is still above 2x: counting starts again for the next one.
        assert_eq!(
            s.decide(&deep, B, true),
            Decision {
                target: 2,
                reason: Reason::QueueDeep,
                agreeing: 1,
                changed: false
            }
        );
        // Exactly 2x the workers is not above it.
        assert_eq!(
            feed(&mut s, m(Some(0.2), 4, 2, 0.0), 5).reason,
            Reason::Steady
        );
        assert_eq!(s.target(), 2);
    }

    #[test]
    fn a_busy_cpu_removes_one_worker_and_wins_over_a_deep_queue() {
        let mut s = Sizer {
            target: 4,
            pending: None,
        };
        let busy_and_deep = m(Some(0.85), 50, 4, 0.0);
        assert_eq!(
            feed(&mut s, busy_and_deep, 3),
            Decision {
                target: 3,
                reason: Reason::CpuBusy,
                agreeing: 3,
                changed: true
            }
        );
        assert_eq!(feed(&mut s, busy_and_deep, 3).target, 2);
        assert_eq!(feed(&mut s, busy_and_deep, 3).target, 1);
        // Never below min_workers, and no growth while the CPU is busy, however deep the queue.
        assert_eq!(
            feed(&mut s, busy_and_deep, 10),
            Decision {
                target: 1,
                reason: Reason::CpuBusy,
                agreeing: 0,
                changed: false
            }
        );
        // 70% itself is not above the threshold.
        let mut s = Sizer {
            target: 4,
            pending: None,
        };
        assert_eq!(
            feed(&mut s, m(Some(0.70), 0, 4, 0.0), 5),
            Decision {
                target: 4,
                reason: Reason::Steady,
                agreeing: 0,
                changed: false
            }
        );
    }

    #[test]
    fn lag_grows_the_pool_to_its_maximum() {
        let mut s = Sizer::new(B);
        let lagging = m(Some(0.3), 1, 1, 6.0);
        assert_eq!(feed(&mut s, lagging, 2).target, 1);
        assert_eq!(
            s.decide(&lagging, B, true),
            Decision {
                target: 8,
                reason: Reason::Lagging,
                agreeing: 3,
                changed: true
            }
        );
        // 5x exactly is not above it.
        let mut s = Sizer::new(B);
        assert_eq!(feed(&mut s, m(Some(0.3), 1, 1, 5.0), 5).target, 1);
        // A busy CPU wins over lag.
        let mut s = Sizer {
            target: 4,
            pending: None,
        };
        assert_eq!(feed(&mut s, m(Some(0.9), 1, 4, 50.0), 3).target, 3);
    }

    #[test]
    fn idleness_shrinks_to_min_workers() {
        let mut s = Sizer {
            target: 6,
            pending: None,
        };
        let idle = m(Some(0.05), 0, 0, 0.0);
        assert_eq!(feed(&mut s, idle, 2).target, 6);
        assert_eq!(
            s.decide(&idle, B, true),
            Decision {
                target: 1,
                reason: Reason::Idle,
                agreeing: 3,
                changed: true
            }
        );
        // At min_workers idleness changes nothing.
        assert_eq!(s.decide(&idle, B, true).reason, Reason::Steady);
        // One busy worker is not idle.
        let mut s = Sizer {
            target: 6,
            pending: None,
        };
        assert_eq!(feed(&mut s, m(Some(0.05), 0, 1, 0.0), 5).target, 6);
    }

    #[test]
    fn disagreeing_measurements_never_change_the_target() {
        let mut s = Sizer {
            target: 4,
            pending: None,
        };
        let up = m(Some(0.2), 20, 4, 0.0);
        let down = m(Some(0.95), 0, 4, 0.0);
        let idle = m(Some(0.1), 0, 0, 0.0);
        let quiet = m(Some(0.3), 1, 1, 0.0);
        for x in [
            up, up, down, down, up, idle, idle, quiet, up, up, down, down, idle, up, up, quiet,
        ]
        .iter()
        .cycle()
        .take(64)
        {
            assert!(!s.decide(x, B, true).changed, "{x:?}");
        }
        assert_eq!(s.target(), 4);
    }

    #[test]
    fn bounds_apply_at_once_and_fixed_mode_runs_max_workers() {
        let mut s = Sizer {
            target: 6,
            pending: Some((Reason::QueueDeep, 2)),
        };
        let quiet = m(Some(0.3), 1, 1, 0.0);
        let narrow = Bounds { min: 1, max: 3 };
        assert_eq!(
            s.decide(&quiet, narrow, true),
            Decision {
                target: 3,
                reason: Reason::Bounds,
                agreeing: 0,
                changed: true
            }
        );
        let raised = Bounds { min: 5, max: 8 };
        assert_eq!(s.decide(&quiet, raised, true).target, 5);
        assert_eq!(
            s.decide(&quiet, raised, false),
            Decision {
                target: 8,
                reason: Reason::Fixed,
                agreeing: 0,
                changed: true
            }
        );
        assert_eq!(s.decide(&m(Some(0.99), 0, 0, 0.0), raised, false).target, 8);
        // min above max: max wins.
        let mut s = Sizer::new(Bounds { min: 9, max: 4 });
        assert_eq!(s.target(), 4);
        assert_eq!(s.decide(&quiet, Bounds { min: 9, max: 4 }, true).target, 4);
    }

    #[test]
    fn no_cpu_sample_yet_is_not_a_busy_cpu() {
        let mut s = Sizer {
            target: 3,
            pending: None,
        };
        assert_eq!(feed(&mut s, m(None, 1, 1, 0.0), 5).target, 3);
    }

    #[test]
    fn reasons_round_trip_through_their_codes() {
        for r in [
            Reason::Steady,
            Reason::Fixed,
            Reason::Bounds,
            Reason::CpuBusy,
            Reason::Lagging,
            Reason::QueueDeep,
            Reason::Idle,
        ] {
            assert_eq!(Reason::from_code(r.code()), r);
        }
    }
}
