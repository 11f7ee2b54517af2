//! What refreshes cost, and AUTO's choice between DIFFERENTIAL and FULL made from it — pure Rust, so
//! it is unit-tested without a server (and the external worker can share it).
//!
//! Per stream table, `pgtrickle.pgt_cost_model_summary` keeps the measured durations of its FULL and
//! DIFFERENTIAL refreshes (see [`CostSummary`]). A DIFFERENTIAL refresh is modelled as
//! `fixed + per_change × changes`, fitted by least squares over recent refreshes with exponentially
//! decaying weights; a FULL refresh as one number, an exponentially weighted moving average. AUTO
//! refreshes FULL only when the predicted DIFFERENTIAL cost of the batch exceeds the measured FULL
//! cost by more than [`FULL_MARGIN`]; until the measurements allow a prediction, the fixed ratio
//! `pg_trickle.full_refresh_ratio` of the sources' rows decides ([`by_ratio`]).

/// Weight of the newest refresh in the moving averages once `1 / ALPHA` refreshes are measured (before,
/// every refresh weighs the same: plain means). 0.2 follows a change of workload within ~10 refreshes.
pub const ALPHA: f64 = 0.2;
/// DIFFERENTIAL refreshes measured before their fit is used.
pub const MIN_DIFFERENTIAL_SAMPLES: i64 = 3;
/// The batch sizes must vary by at least this coefficient of variation (standard deviation / mean)
/// before a per-change cost is fitted: with batches of one size, fixed and per-change cost cannot be
/// told apart.
pub const MIN_BATCH_SPREAD: f64 = 0.1;
/// A measurement counts in the averages and the fit as at most this many times what they predicted
/// (never less than [`OUTLIER_FLOOR_MS`]): a refresh that waited for a lock, or ran during a
/// checkpoint, must not make one action look expensive for long. A real change of cost still gets
/// through, by up to this factor per refresh. Totals and last durations keep the measured value.
pub const OUTLIER_FACTOR: f64 = 4.0;
pub const OUTLIER_FLOOR_MS: f64 = 1.0;
/// AUTO refreshes FULL only when the predicted DIFFERENTIAL cost exceeds the measured FULL cost times
/// this: DIFFERENTIAL is preferred when the two are close (a FULL refresh also rewrites every row).
pub const FULL_MARGIN: f64 = 1.25;

/// One row of `pgtrickle.pgt_cost_model_summary` (without its key and `stats_reset`). Durations in
/// milliseconds, measured on the server from the start of a refresh to its end.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CostSummary {
    pub full_refreshes: i64,
    pub full_total_ms: f64,
    pub full_last_ms: Option<f64>,
    /// Exponentially weighted moving average of FULL refreshes: what AUTO compares against.
    pub full_ewma_ms: Option<f64>,
    pub differential_refreshes: i64,
    pub differential_total_ms: f64,
    /// Change rows applied by DIFFERENTIAL refreshes, in total.
    pub differential_changes: i64,
    pub differential_last_ms: Option<f64>,
    pub differential_last_changes: Option<i64>,
    /// The fit AUTO predicts with; NULL until [`MIN_DIFFERENTIAL_SAMPLES`] refreshes with varying
    /// batch sizes are measured.
    pub differential_fixed_ms: Option<f64>,
    pub differential_ms_per_change: Option<f64>,
    /// The fit's state: exponentially weighted means, variance and covariance of (changes, ms).
    pub fit_mean_changes: f64,
    pub fit_mean_ms: f64,
    pub fit_var_changes: f64,
    pub fit_cov_changes_ms: f64,
}

/// The weight of the `n`-th observation (1-based): plain mean first, then exponential decay.
fn weight(n: i64) -> f64 {
    (1.0 / n.max(1) as f64).max(ALPHA)
}

/// A duration as it is recorded: finite and not negative (a clock step back counts as 0).
fn clean_ms(ms: f64) -> f64 {
    if ms.is_finite() && ms > 0.0 {
        ms
    } else {
        0.0
    }
}

/// `ms`, at most [`OUTLIER_FACTOR`] times the `expected` duration (see there).
fn capped(ms: f64, expected: f64) -> f64 {
    ms.min(OUTLIER_FACTOR * expected.max(OUTLIER_FLOOR_MS))
}

impl CostSummary {
    /// Adds a FULL refresh that took `ms`.
    pub fn observe_full(&mut self, ms: f64) {
        let ms = clean_ms(ms);
        self.full_refreshes += 1;
        self.full_total_ms += ms;
        self.full_last_ms = Some(ms);
        let a = weight(self.full_refreshes);
        let old = self.full_ewma_ms.filter(|v| v.is_finite() && *v >= 0.0);
        let counted = old.map_or(ms, |old| capped(ms, old));
        let old = old.unwrap_or(counted);
        self.full_ewma_ms = Some(old + a * (counted - old));
    }

    /// Adds a DIFFERENTIAL refresh of a batch of `changes` change rows that took `ms`, and refits.
    pub fn observe_differential(&mut self, changes: i64, ms: f64) {
        let ms = clean_ms(ms);
        let changes = changes.max(0);
        self.differential_refreshes += 1;
        self.differential_total_ms += ms;
        self.differential_changes = self.differential_changes.saturating_add(changes);
        self.differential_last_ms = Some(ms);
        self.differential_last_changes = Some(changes);
        // Exponentially weighted mean and (co)variance, updated incrementally (with weight 1/n this is
        // Welford's exact running mean and population variance).
        let a = weight(self.differential_refreshes);
        // Without a fit, the mean so far is what a batch as large as the mean one is expected to cost
        // (AUTO's bound then), and a larger batch proportionally more.
        let expected = self.predict_differential_ms(changes).or_else(|| {
            let mean = self.fit_mean_changes;
            let scale = if mean.is_finite() && mean > 0.0 {
                (changes as f64 / mean).max(1.0)
            } else {
                1.0
            };
            (self.differential_refreshes > 1).then_some(self.fit_mean_ms * scale)
        });
        let counted = expected.map_or(ms, |e| capped(ms, e));
        let (x, y) = (changes as f64, counted);
        if !(self.fit_mean_changes.is_finite()
            && self.fit_mean_ms.is_finite()
            && self.fit_var_changes.is_finite()
            && self.fit_cov_changes_ms.is_finite())
        {
            (
                self.fit_mean_changes,
                self.fit_mean_ms,
                self.fit_var_changes,
                self.fit_cov_changes_ms,
            ) = (x, y, 0.0, 0.0);
        }
        let (dx, dy) = (x - self.fit_mean_changes, y - self.fit_mean_ms);
        self.fit_mean_changes += a * dx;
        self.fit_mean_ms += a * dy;
        self.fit_var_changes = (1.0 - a) * (self.fit_var_changes + a * dx * dx);
        self.fit_cov_changes_ms = (1.0 - a) * (self.fit_cov_changes_ms + a * dx * dy);
        match self.fit() {
            Some((fixed, per_change)) => {
                self.differential_fixed_ms = Some(fixed);
                self.differential_ms_per_change = Some(per_change);
            }
            None => {
                self.differential_fixed_ms = None;
                self.differential_ms_per_change = None;
            }
        }
    }

    /// `(fixed ms, ms per change)` from the fit's state, when enough refreshes with varying batch sizes
    /// were measured. Neither is negative: a negative slope (noise) becomes a constant cost, a negative
    /// intercept a cost proportional to the batch.
    fn fit(&self) -> Option<(f64, f64)> {
        if self.differential_refreshes < MIN_DIFFERENTIAL_SAMPLES {
            return None;
        }
        let (mx, my, vx) = (
            self.fit_mean_changes,
            self.fit_mean_ms,
            self.fit_var_changes,
        );
        if !(mx > 0.0 && vx.is_finite() && vx.sqrt() >= MIN_BATCH_SPREAD * mx) {
            return None;
        }
        let slope = self.fit_cov_changes_ms / vx;
        if !slope.is_finite() {
            return None;
        }
        let (fixed, per_change) = if slope < 0.0 {
            (my, 0.0)
        } else if my - slope * mx < 0.0 {
            (0.0, my / mx)
        } else {
            (my - slope * mx, slope)
        };
        Some((fixed.max(0.0), per_change.max(0.0)))
    }

    /// A lower bound on a DIFFERENTIAL refresh of `changes` change rows from the measured mean alone,
    /// for when batches of one size allow no fit: a cost that grows with the batch is at least the
    /// mean for a batch as large as the mean one, and at least its share of it for a smaller one
    /// (all of it per change). None before [`MIN_DIFFERENTIAL_SAMPLES`] refreshes.
    pub fn differential_ms_at_least(&self, changes: i64) -> Option<f64> {
        if self.differential_refreshes < MIN_DIFFERENTIAL_SAMPLES
            || !(self.fit_mean_ms.is_finite() && self.fit_mean_ms >= 0.0)
        {
            return None;
        }
        let mean = self.fit_mean_changes;
        let share = if mean.is_finite() && mean > 0.0 {
            (changes.max(0) as f64 / mean).min(1.0)
        } else {
            1.0
        };
        Some(self.fit_mean_ms * share)
    }

    /// The predicted duration of a DIFFERENTIAL refresh of `changes` change rows, if the fit exists.
    pub fn predict_differential_ms(&self, changes: i64) -> Option<f64> {
        let fixed = self
            .differential_fixed_ms
            .filter(|v| v.is_finite() && *v >= 0.0)?;
        let per_change = self
            .differential_ms_per_change
            .filter(|v| v.is_finite() && *v >= 0.0)?;
        Some(fixed + per_change * changes.max(0) as f64)
    }
}

/// What AUTO does with a non-empty batch, and the reason recorded in the refresh history.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoDecision {
    pub full: bool,
    pub reason: String,
}

/// AUTO's choice from the measured costs, or — when they do not allow a prediction yet — why not
/// (to be said by the fallback rule).
pub fn by_measured_cost(
    summary: Option<&CostSummary>,
    changes: i64,
) -> Result<AutoDecision, String> {
    let Some(s) = summary else {
        return Err("no refresh measured yet".into());
    };
    let full_ms = s.full_ewma_ms.filter(|v| v.is_finite() && *v >= 0.0);
    let predicted = s.predict_differential_ms(changes);
    if let (Some(full_ms), None) = (full_ms, predicted) {
        if let Some(low) = s
            .differential_ms_at_least(changes)
            .filter(|low| *low > full_ms * FULL_MARGIN)
        {
            return Ok(AutoDecision {
                full: true,
                reason: format!(
                    "AUTO chose FULL: differential refreshes of about {} took {} on average, so at least {} for {} > measured full {} (x{FULL_MARGIN})",
                    plural(s.fit_mean_changes.round() as i64, "change"),
                    ms(s.fit_mean_ms),
                    ms(low),
                    plural(changes, "change"),
                    ms(full_ms)
                ),
            });
        }
    }
    let (Some(full_ms), Some(predicted)) = (full_ms, predicted) else {
        let mut missing = Vec::new();
        if full_ms.is_none() || s.full_refreshes < 1 {
            missing.push("no FULL refresh measured".to_string());
        }
        if predicted.is_none() {
            missing.push(if s.differential_refreshes < MIN_DIFFERENTIAL_SAMPLES {
                format!(
                    "{} of {MIN_DIFFERENTIAL_SAMPLES} DIFFERENTIAL refreshes measured",
                    s.differential_refreshes
                )
            } else {
                "DIFFERENTIAL batch sizes too uniform to fit a per-change cost".to_string()
            });
        }
        return Err(missing.join(", "));
    };
    let changes_text = plural(changes, "change");
    let model = format!(
        "model {} + {} per change",
        ms(s.differential_fixed_ms.unwrap_or(0.0)),
        ms(s.differential_ms_per_change.unwrap_or(0.0))
    );
    Ok(if predicted > full_ms * FULL_MARGIN {
        AutoDecision {
            full: true,
            reason: format!(
                "AUTO chose FULL: predicted differential {} for {changes_text} > measured full {} (x{FULL_MARGIN}); {model}",
                ms(predicted),
                ms(full_ms)
            ),
        }
    } else {
        AutoDecision {
            full: false,
            reason: format!(
                "AUTO kept DIFFERENTIAL: predicted {} for {changes_text} <= measured full {} (x{FULL_MARGIN}); {model}",
                ms(predicted),
                ms(full_ms)
            ),
        }
    })
}

/// The fallback before costs are measured: FULL when the batch holds more than `ratio` of the
/// sources' estimated rows (`source_rows`, from `pg_class.reltuples`; 0 when never analysed, which
/// keeps DIFFERENTIAL). `unmeasured` says why the measured costs could not decide.
pub fn by_ratio(changes: i64, source_rows: f64, ratio: f64, unmeasured: &str) -> AutoDecision {
    let rows = if source_rows.is_finite() {
        source_rows.max(0.0)
    } else {
        0.0
    };
    let changes_text = plural(changes, "change");
    if rows <= 0.0 {
        return AutoDecision {
            full: false,
            reason: format!("AUTO kept DIFFERENTIAL ({unmeasured}; the sources have no row estimate for pg_trickle.full_refresh_ratio)"),
        };
    }
    let full = changes as f64 > ratio * rows;
    let verdict = if full {
        "AUTO chose FULL"
    } else {
        "AUTO kept DIFFERENTIAL"
    };
    let relation = if full { "exceed" } else { "within" };
    AutoDecision {
        full,
        reason: format!(
            "{verdict} by pg_trickle.full_refresh_ratio ({unmeasured}): {changes_text} {relation} {ratio} of the sources' ~{rows:.0} rows"
        ),
    }
}

fn plural(n: i64, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// Milliseconds for people: whole above 100, one decimal above 1, three significant digits below.
fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 1.0 {
        format!("{v:.1} ms")
    } else if v == 0.0 {
        "0 ms".into()
    } else {
        let digits = (2 - v.log10().floor() as i32).clamp(0, 9) as usize;
        format!("{v:.digits$} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(fixed: f64, per_change: f64, full: f64) -> CostSummary {
        CostSummary {
            full_refreshes: 3,
            full_ewma_ms: Some(full),
            differential_refreshes: 10,
            differential_fixed_ms: Some(fixed),
            differential_ms_per_change: Some(per_change),
            ..Default::default()
        }
    }

    #[test]
    fn full_cost_is_a_moving_average_that_starts_as_the_first_measurement() {
        let mut s = CostSummary::default();
        s.observe_full(100.0);
        assert_eq!(s.full_ewma_ms, Some(100.0));
        s.observe_full(200.0);
        assert_eq!(s.full_ewma_ms, Some(150.0)); // plain mean while n < 1/ALPHA
        for _ in 0..100 {
            s.observe_full(300.0);
        }
        assert!((s.full_ewma_ms.unwrap() - 300.0).abs() < 1e-6);
        assert_eq!(s.full_refreshes, 102);
        assert_eq!(s.full_total_ms, 100.0 + 200.0 + 100.0 * 300.0);
        assert_eq!(s.full_last_ms, Some(300.0));
    }

    #[test]
    fn a_linear_cost_is_recovered_exactly() {
        let mut s = CostSummary::default();
        for (i, changes) in [1, 10, 100, 5, 1000, 50, 2, 20000, 7]
            .into_iter()
            .enumerate()
        {
            s.observe_differential(changes, 3.0 + 0.02 * changes as f64);
            if (i as i64) + 1 < MIN_DIFFERENTIAL_SAMPLES {
                assert_eq!(s.differential_fixed_ms, None);
            }
        }
        assert!(
            (s.differential_fixed_ms.unwrap() - 3.0).abs() < 1e-6,
            "{s:?}"
        );
        assert!(
            (s.differential_ms_per_change.unwrap() - 0.02).abs() < 1e-9,
            "{s:?}"
        );
        assert!((s.predict_differential_ms(50_000).unwrap() - 1003.0).abs() < 1e-3);
        assert_eq!(s.differential_refreshes, 9);
        assert_eq!(
            s.differential_changes,
            1 + 10 + 100 + 5 + 1000 + 50 + 2 + 20000 + 7
        );
        assert_eq!(s.differential_last_changes, Some(7));
    }

    #[test]
    fn the_fit_follows_a_change_of_cost() {
        let mut s = CostSummary::default();
        let sizes = [1, 100, 10, 1000, 3];
        for i in 0..20 {
            let n = sizes[i % sizes.len()];
            s.observe_differential(n, 2.0 + 0.01 * n as f64);
        }
        for i in 0..60 {
            let n = sizes[i % sizes.len()];
            s.observe_differential(n, 5.0 + 0.1 * n as f64);
        }
        assert!(
            (s.differential_ms_per_change.unwrap() - 0.1).abs() < 1e-3,
            "{s:?}"
        );
        assert!(
            (s.differential_fixed_ms.unwrap() - 5.0).abs() < 0.1,
            "{s:?}"
        );
    }

    #[test]
    fn a_refresh_that_waited_moves_the_model_only_a_little() {
        let mut s = CostSummary::default();
        for n in [1, 10, 100, 1000, 5, 50] {
            s.observe_differential(n, 2.0 + 0.01 * n as f64);
        }
        for _ in 0..5 {
            s.observe_full(200.0);
        }
        // A one-change refresh that waited 10 s for a lock; a FULL refresh that waited 60 s.
        s.observe_differential(1, 10_000.0);
        s.observe_full(60_000.0);
        assert_eq!(s.differential_last_ms, Some(10_000.0));
        assert!(s.differential_total_ms > 10_000.0);
        assert_eq!(s.full_last_ms, Some(60_000.0));
        // Counted as at most 4x the prediction: 8.04 ms for the one change, 800 ms for FULL.
        assert!(s.predict_differential_ms(1).unwrap() < 5.0, "{s:?}");
        assert!(
            (s.full_ewma_ms.unwrap() - (200.0 + ALPHA * 600.0)).abs() < 1e-9,
            "{s:?}"
        );
        assert!(!by_measured_cost(Some(&s), 100).unwrap().full);
        // A lasting change of cost is followed, by up to 4x per refresh.
        for _ in 0..30 {
            s.observe_full(5_000.0);
        }
        assert!((s.full_ewma_ms.unwrap() - 5_000.0).abs() < 50.0, "{s:?}");
    }

    #[test]
    fn batches_of_one_size_give_no_fit() {
        let mut s = CostSummary::default();
        for _ in 0..50 {
            s.observe_differential(1, 4.0);
        }
        assert_eq!(s.differential_fixed_ms, None);
        assert_eq!(s.differential_ms_per_change, None);
        let s = CostSummary {
            full_refreshes: 1,
            full_ewma_ms: Some(10.0),
            ..s
        };
        let why = by_measured_cost(Some(&s), 1_000_000).unwrap_err();
        assert!(why.contains("too uniform"), "{why}");
    }

    #[test]
    fn batches_of_one_size_that_cost_more_than_full_choose_full() {
        // TPC-H Q15's case: every batch about 100 changes and 50 ms, FULL 20 ms.
        let mut s = CostSummary::default();
        for _ in 0..3 {
            s.observe_differential(100, 50.0);
        }
        assert_eq!(s.differential_fixed_ms, None);
        let s = CostSummary {
            full_refreshes: 1,
            full_ewma_ms: Some(20.0),
            ..s
        };
        let chosen = by_measured_cost(Some(&s), 100).unwrap();
        assert!(chosen.full, "{chosen:?}");
        assert!(
            chosen
                .reason
                .contains("about 100 changes took 50.0 ms on average"),
            "{}",
            chosen.reason
        );
        // A larger batch: the same mean is a lower bound.
        assert!(by_measured_cost(Some(&s), 10_000).unwrap().full);
        // A batch of 40 costs at least 20 ms (all of it per change): not enough to prefer FULL; the
        // fallback rule decides.
        assert!(by_measured_cost(Some(&s), 40)
            .unwrap_err()
            .contains("too uniform"));
        // One refresh that waited for a lock counts as at most 4x the mean: DIFFERENTIAL stays.
        let mut slow_once = CostSummary {
            full_refreshes: 1,
            full_ewma_ms: Some(20.0),
            ..Default::default()
        };
        for ms in [10.0, 10.0, 10_000.0] {
            slow_once.observe_differential(100, ms);
        }
        assert!(slow_once.fit_mean_ms <= 20.0 + 1e-9, "{slow_once:?}");
        assert!(
            by_measured_cost(Some(&slow_once), 100).is_err(),
            "{slow_once:?}"
        );
        // A batch far larger than the first is not cut down to the first one's cost.
        let mut growing = CostSummary::default();
        growing.observe_differential(1, 1.0);
        growing.observe_differential(10_000, 500.0);
        assert!((growing.fit_mean_ms - 250.5).abs() < 1e-9, "{growing:?}");
        // Two refreshes are not enough to say.
        let mut two = CostSummary {
            full_refreshes: 1,
            full_ewma_ms: Some(1.0),
            ..Default::default()
        };
        two.observe_differential(100, 50.0);
        two.observe_differential(100, 50.0);
        assert!(by_measured_cost(Some(&two), 100).is_err());
    }

    #[test]
    fn noise_never_makes_costs_negative() {
        // Bigger batches faster (noise): a constant cost.
        let mut s = CostSummary::default();
        for (n, ms) in [(1, 10.0), (100, 5.0), (10, 8.0), (1000, 2.0)] {
            s.observe_differential(n, ms);
        }
        assert_eq!(s.differential_ms_per_change, Some(0.0));
        assert!(s.differential_fixed_ms.unwrap() > 0.0);
        // A steep line through small batches would have a negative intercept: proportional instead.
        let mut s = CostSummary::default();
        for (n, ms) in [(10, 1.0), (20, 50.0), (30, 100.0)] {
            s.observe_differential(n, ms);
        }
        assert_eq!(s.differential_fixed_ms, Some(0.0));
        assert!(s.differential_ms_per_change.unwrap() > 0.0);
        // Nonsense input is recorded as 0 ms.
        s.observe_differential(-5, f64::NAN);
        assert!(s.differential_total_ms.is_finite() && s.fit_mean_ms.is_finite());
        s.observe_full(f64::INFINITY);
        assert_eq!(s.full_last_ms, Some(0.0));
    }

    #[test]
    fn full_only_when_the_prediction_exceeds_the_measured_full_cost_with_margin() {
        let s = measured(2.0, 0.5, 100.0);
        // 2 + 0.5 * 1 = 2.5 ms.
        let small = by_measured_cost(Some(&s), 1).unwrap();
        assert!(!small.full);
        assert_eq!(
            small.reason,
            "AUTO kept DIFFERENTIAL: predicted 2.5 ms for 1 change <= measured full 100 ms (x1.25); model 2.0 ms + 0.500 ms per change"
        );
        // 2 + 0.5 * 1000 = 502 ms.
        let huge = by_measured_cost(Some(&s), 1000).unwrap();
        assert!(huge.full);
        assert_eq!(
            huge.reason,
            "AUTO chose FULL: predicted differential 502 ms for 1000 changes > measured full 100 ms (x1.25); model 2.0 ms + 0.500 ms per change"
        );
        // The margin: 120 ms predicted against 100 ms measured stays DIFFERENTIAL; 130 ms does not.
        assert!(!by_measured_cost(Some(&s), 236).unwrap().full);
        assert!(by_measured_cost(Some(&s), 256).unwrap().full);
    }

    #[test]
    fn without_measurements_the_fallback_decides_and_says_why() {
        assert_eq!(
            by_measured_cost(None, 5).unwrap_err(),
            "no refresh measured yet"
        );
        let s = CostSummary {
            full_refreshes: 1,
            full_ewma_ms: Some(50.0),
            differential_refreshes: 1,
            ..Default::default()
        };
        assert_eq!(
            by_measured_cost(Some(&s), 5).unwrap_err(),
            "1 of 3 DIFFERENTIAL refreshes measured"
        );
        let s = CostSummary {
            full_refreshes: 0,
            differential_refreshes: 10,
            differential_fixed_ms: Some(1.0),
            differential_ms_per_change: Some(1.0),
            ..Default::default()
        };
        assert_eq!(
            by_measured_cost(Some(&s), 5).unwrap_err(),
            "no FULL refresh measured"
        );

        let d = by_ratio(80, 101.0, 0.5, "no FULL refresh measured");
        assert!(d.full);
        assert_eq!(d.reason, "AUTO chose FULL by pg_trickle.full_refresh_ratio (no FULL refresh measured): 80 changes exceed 0.5 of the sources' ~101 rows");
        let d = by_ratio(10, 101.0, 0.5, "why");
        assert!(!d.full);
        assert!(
            d.reason.starts_with(
                "AUTO kept DIFFERENTIAL by pg_trickle.full_refresh_ratio (why): 10 changes within"
            ),
            "{}",
            d.reason
        );
        // Never analysed: no estimate, stay DIFFERENTIAL.
        let d = by_ratio(1_000_000, 0.0, 0.5, "why");
        assert!(!d.full);
        assert!(d.reason.contains("no row estimate"), "{}", d.reason);
    }

    #[test]
    fn the_measured_rule_overrides_the_ratio_once_there_are_measurements() {
        // A cheap per-change cost: a batch the ratio would send to FULL stays DIFFERENTIAL.
        let s = measured(1.0, 0.001, 500.0);
        assert!(by_ratio(80_000, 100_000.0, 0.5, "").full);
        assert!(!by_measured_cost(Some(&s), 80_000).unwrap().full);
        // An expensive one: a batch the ratio would keep goes FULL.
        let s = measured(1.0, 10.0, 500.0);
        assert!(!by_ratio(100, 100_000.0, 0.5, "").full);
        assert!(by_measured_cost(Some(&s), 100).unwrap().full);
    }

    #[test]
    fn milliseconds_read_well() {
        assert_eq!(ms(812.4), "812 ms");
        assert_eq!(ms(4.25), "4.2 ms");
        assert_eq!(ms(0.0163), "0.0163 ms");
        assert_eq!(ms(0.5), "0.500 ms");
        assert_eq!(ms(0.0), "0 ms");
    }
}
