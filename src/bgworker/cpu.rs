//! CPU utilisation as the server's container sees it, for the pool's sizing rule.
//!
//! cgroup v2 first (`/sys/fs/cgroup/cpu.stat` usage_usec over wall time times the CPUs `cpu.max`
//! allows — a container limited to 1.5 CPUs is busy at 1.5 CPU-seconds per second), else the whole
//! machine from `/proc/stat` (busy jiffies over all jiffies). Utilisation is over the interval between
//! two samples; the first sample gives none.

use std::time::Instant;

const CGROUP_STAT: &str = "/sys/fs/cgroup/cpu.stat";
const CGROUP_MAX: &str = "/sys/fs/cgroup/cpu.max";
const PROC_STAT: &str = "/proc/stat";

/// Cumulative CPU use and the capacity it is measured against, in the same unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub used: f64,
    pub capacity: f64,
}

/// Utilisation between two samples, clamped to 0..1; None if no capacity passed.
pub fn utilisation(before: Sample, after: Sample) -> Option<f64> {
    let capacity = after.capacity - before.capacity;
    (capacity > 0.0).then(|| ((after.used - before.used) / capacity).clamp(0.0, 1.0))
}

/// The aggregate `cpu` line of /proc/stat: (busy, total) jiffies. Busy excludes idle and iowait;
/// guest time is already counted in user and nice.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// `usage_usec` of a cgroup v2 cpu.stat.
pub fn parse_cgroup_usage_usec(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

/// The CPUs a cgroup v2 `cpu.max` ("max 100000" or "150000 100000") allows, given the machine's.
pub fn parse_cgroup_cpus(text: &str, machine_cpus: f64) -> f64 {
    let mut parts = text.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|p| p.parse::<f64>().ok()),
    ) {
        (Some(quota), Some(period)) if quota != "max" && period > 0.0 => quota
            .parse::<f64>()
            .map(|q| (q / period).min(machine_cpus))
            .unwrap_or(machine_cpus),
        _ => machine_cpus,
    }
}

/// Reads samples from the system, remembering the previous one.
pub struct Sampler {
    started: Instant,
    previous: Option<Sample>,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler {
            started: Instant::now(),
            previous: None,
        }
    }
}

impl Sampler {
    /// Utilisation since the previous call (None on the first call, or if nothing is readable).
    pub fn measure(&mut self) -> Option<f64> {
        let now = self.read()?;
        let out = self.previous.and_then(|before| utilisation(before, now));
        self.previous = Some(now);
        out
    }

    fn read(&self) -> Option<Sample> {
        if let Ok(stat) = std::fs::read_to_string(CGROUP_STAT) {
            let used = parse_cgroup_usage_usec(&stat)? as f64;
            let machine = std::thread::available_parallelism()
                .map(|n| n.get() as f64)
                .unwrap_or(1.0);
            let cpus = std::fs::read_to_string(CGROUP_MAX)
                .map(|t| parse_cgroup_cpus(&t, machine))
                .unwrap_or(machine);
            let wall_usec = self.started.elapsed().as_secs_f64() * 1e6;
            return Some(Sample {
                used,
                capacity: wall_usec * cpus,
            });
        }
        let (busy, total) = parse_proc_stat(&std::fs::read_to_string(PROC_STAT).ok()?)?;
        Some(Sample {
            used: busy as f64,
            capacity: total as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_counts_everything_but_idle_and_iowait_as_busy() {
        let text = "cpu  100 20 30 800 50 0 0 0 0 0\ncpu0 50 10 15 400 25 0 0 0 0 0\nintr 1\n";
        assert_eq!(parse_proc_stat(text), Some((150, 1000)));
        let before = Sample {
            used: 150.0,
            capacity: 1000.0,
        };
        let after = Sample {
            used: 225.0,
            capacity: 1100.0,
        };
        assert_eq!(utilisation(before, after), Some(0.75));
        assert_eq!(utilisation(after, after), None);
        assert_eq!(parse_proc_stat("intr 1\n"), None);
    }

    #[test]
    fn cgroup_limits_are_read_as_cpus() {
        assert_eq!(
            parse_cgroup_usage_usec("usage_usec 123456\nuser_usec 1\n"),
            Some(123_456)
        );
        assert_eq!(parse_cgroup_cpus("max 100000\n", 2.0), 2.0);
        assert_eq!(parse_cgroup_cpus("150000 100000\n", 2.0), 1.5);
        assert_eq!(
            parse_cgroup_cpus("400000 100000\n", 2.0),
            2.0,
            "a quota above the machine is the machine"
        );
        // 1.5 CPU-seconds used in one second of a 1.5-CPU container: fully busy.
        let before = Sample {
            used: 0.0,
            capacity: 0.0,
        };
        let after = Sample {
            used: 1.5e6,
            capacity: 1e6 * 1.5,
        };
        assert_eq!(utilisation(before, after), Some(1.0));
    }

    #[test]
    fn the_first_sample_gives_no_utilisation() {
        let mut s = Sampler::default();
        assert_eq!(s.measure(), None);
        let second = s.measure();
        assert!(
            second.is_none_or(|u| (0.0..=1.0).contains(&u)),
            "{second:?}"
        );
    }
}
