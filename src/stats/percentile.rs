//! Percentiles of a stream table's recent refresh durations (pg_stat_pgtrickle's p95 and p99).

/// The `p` percentile (0..=1) of `values`, interpolating linearly between the closest ranks as
/// PostgreSQL's `percentile_cont` does. NaN values are ignored; None without any value.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() || !(0.0..=1.0).contains(&p) {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = p * (sorted.len() - 1) as f64;
    let (below, above) = (rank.floor() as usize, rank.ceil() as usize);
    let fraction = rank - below as f64;
    Some(sorted[below] + (sorted[above] - sorted[below]) * fraction)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_interpolate_between_ranks_like_percentile_cont() {
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        // percentile_cont(0.95) over 1..100 is 95.05; 0.99 is 99.01; the median 50.5.
        assert!((percentile(&hundred, 0.95).unwrap() - 95.05).abs() < 1e-9);
        assert!((percentile(&hundred, 0.99).unwrap() - 99.01).abs() < 1e-9);
        assert_eq!(percentile(&hundred, 0.5), Some(50.5));
        assert_eq!(percentile(&hundred, 0.0), Some(1.0));
        assert_eq!(percentile(&hundred, 1.0), Some(100.0));
    }

    #[test]
    fn order_does_not_matter_and_outliers_show_in_the_tail() {
        let mut durations = vec![2.0; 97];
        durations.extend([400.0, 3.0, 900.0]);
        durations.reverse();
        assert_eq!(percentile(&durations, 0.5), Some(2.0));
        assert!((percentile(&durations, 0.99).unwrap() - 405.0).abs() < 1e-9);
    }

    #[test]
    fn few_values_none_and_nan() {
        assert_eq!(percentile(&[7.5], 0.99), Some(7.5));
        assert_eq!(percentile(&[1.0, 3.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[], 0.95), None);
        assert_eq!(percentile(&[f64::NAN, 4.0], 0.95), Some(4.0));
        assert_eq!(percentile(&[1.0], 1.5), None);
    }
}
