//! Scheduling decisions as pure functions of time and state, so they are unit-tested without sleeping.

/// After this many consecutive failures the retry delay stops growing.
const MAX_BACKOFF_DOUBLINGS: u32 = 6;
/// Never wait longer than this between retries of a failing stream table.
const MAX_BACKOFF_MS: i64 = 3_600_000;

/// How long after its last attempt a stream table is due again. A healthy stream table is due one
/// schedule after its last refresh; a failing one backs off exponentially (schedule * 2^errors, capped),
/// so a broken query does not burn a worker every tick.
pub fn retry_interval_ms(schedule_ms: i64, consecutive_errors: i32) -> i64 {
    if consecutive_errors <= 0 {
        return schedule_ms;
    }
    let doublings = (consecutive_errors as u32).min(MAX_BACKOFF_DOUBLINGS);
    schedule_ms
        .saturating_mul(1i64 << doublings)
        .min(MAX_BACKOFF_MS.max(schedule_ms))
}

/// Whether a stream table is due: never attempted, or older than its (backed-off) interval.
pub fn is_due(
    now_ms: i64,
    last_attempt_ms: Option<i64>,
    schedule_ms: i64,
    consecutive_errors: i32,
) -> bool {
    match last_attempt_ms {
        None => true,
        Some(last) => {
            now_ms.saturating_sub(last) >= retry_interval_ms(schedule_ms, consecutive_errors)
        }
    }
}

/// Which queued refresh a free worker takes. `queued` holds each queued refresh's owner, in queue
/// order; `running` each running one's; `last_served(owner)` says when a worker last took one of that
/// owner's (a sequence number, 0 for never). The owner with the fewest running goes first, then the
/// one served least recently, then the queue's order: one role's many stream tables (slow ones, on
/// short schedules) can neither keep every worker nor hold another role's refreshes behind them.
pub fn next_in_queue(
    queued: &[u32],
    running: &[u32],
    last_served: impl Fn(u32) -> u64,
) -> Option<usize> {
    let served = |owner: u32| running.iter().filter(|&&o| o == owner).count();
    queued
        .iter()
        .enumerate()
        .min_by_key(|&(i, &owner)| (served(owner), last_served(owner), i))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_worker_goes_to_the_least_served_owner_then_first_in_first_out() {
        let never = |_| 0;
        assert_eq!(next_in_queue(&[], &[1], never), None);
        // One owner: first in, first out.
        assert_eq!(next_in_queue(&[7, 7, 7], &[7, 7], never), Some(0));
        // Owner 7 runs two, owner 9 none: 9's first queued goes next, wherever it is queued.
        assert_eq!(next_in_queue(&[7, 7, 9, 7, 9], &[7, 7], never), Some(2));
        // As many running: the owner served least recently, then the queue's order.
        let recent = |owner| if owner == 7 { 40 } else { 0 };
        assert_eq!(next_in_queue(&[7, 7, 9], &[], recent), Some(2));
        assert_eq!(next_in_queue(&[7, 7, 9], &[9], recent), Some(0));
        assert_eq!(next_in_queue(&[9, 7], &[7, 9], never), Some(0));
        // Fewer running outranks being served recently.
        assert_eq!(next_in_queue(&[9, 7], &[9, 9], recent), Some(1));
    }

    #[test]
    fn healthy_tables_are_due_once_per_schedule() {
        assert!(is_due(10_000, None, 5_000, 0));
        assert!(!is_due(10_000, Some(6_000), 5_000, 0));
        assert!(is_due(11_000, Some(6_000), 5_000, 0));
    }

    #[test]
    fn failing_tables_back_off_exponentially_with_a_cap() {
        assert_eq!(retry_interval_ms(1_000, 1), 2_000);
        assert_eq!(retry_interval_ms(1_000, 3), 8_000);
        assert_eq!(retry_interval_ms(1_000, 50), 64_000);
        assert_eq!(retry_interval_ms(600_000, 10), 3_600_000);
        // A schedule longer than the cap is never shortened by backing off.
        assert_eq!(retry_interval_ms(86_400_000, 2), 86_400_000);
        assert!(!is_due(10_000, Some(6_000), 1_000, 3));
        assert!(is_due(14_000, Some(6_000), 1_000, 3));
    }
}
