//! Endpoint-level verdicts beyond the fields: latency (is the candidate slower than its
//! baseline?) and error rate (does the candidate fail more often than the control?). Both
//! stores compute them from the same summaries (latency histograms, counts) with these
//! functions, so the embedded and the ClickHouse report agree to the digit.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Latencies needed on each side before a latency verdict is more than `inconclusive`.
pub const MIN_LATENCIES: u64 = 20;
/// One-sided p-value under which the candidate's latencies count as shifted upward.
pub const LATENCY_P: f64 = 0.001;
/// Default effect-size floor: the candidate's p50 or p99 must be at least this many times its
/// baseline's for a significant shift to be a regression (a real 2% is not an alarm).
pub const DEFAULT_LATENCY_RATIO: f64 = 1.25;
/// A slower quantile must also be at least this much slower, in milliseconds: sub-millisecond
/// services differ by more than 25% from one host or hop to the next.
pub const MIN_LATENCY_DELTA_MS: f64 = 1.0;
/// Without a secondary the baseline is the control as the tap measured it, on production's
/// path, while the replayer measures the candidate on its own (another hop, its own queueing
/// on a busy host): only an effect this many times larger, and…
pub const CONTROL_BASELINE_RATIO: f64 = 2.0;
/// …this many milliseconds more, is judged a regression then.
pub const CONTROL_BASELINE_DELTA_MS: f64 = 5.0;
/// Requests needed before an error-rate verdict is more than `inconclusive`.
pub const MIN_REQUESTS: u64 = 20;
/// Error-rate regression: one-sided two-proportion z above this (p < 0.01)…
pub const ERROR_Z: f64 = 2.326;
/// …and the candidate's rate at least this much above the control's (one percentage point).
pub const ERROR_FLOOR: f64 = 0.01;

/// Log-scale buckets per doubling of latency: each about 9% wide.
const BUCKETS_PER_DOUBLING: f64 = 8.0;

/// Latencies as counts per log-scale bucket. Bucketed so that ClickHouse can sum them in SQL
/// (`latency_bucket_sql`) without sending every latency to the report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHistogram {
    counts: BTreeMap<u32, u64>,
}

impl LatencyHistogram {
    /// The bucket of a latency in microseconds.
    pub fn bucket(us: u64) -> u32 {
        ((us.max(1) as f64).log2() * BUCKETS_PER_DOUBLING).floor() as u32
    }

    /// The same bucket as ClickHouse SQL over the expression `us` (microseconds).
    pub fn bucket_sql(us: &str) -> String {
        format!("toUInt32(floor(log2(toFloat64(greatest({us}, 1))) * {BUCKETS_PER_DOUBLING}))")
    }

    /// Adds one latency, in microseconds.
    pub fn add(&mut self, us: u64) {
        *self.counts.entry(Self::bucket(us)).or_default() += 1;
    }

    /// Adds `n` latencies of bucket `bucket`.
    pub fn add_bucket(&mut self, bucket: u32, n: u64) {
        *self.counts.entry(bucket).or_default() += n;
    }

    /// Latencies counted.
    pub fn count(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The nearest-rank quantile `q`, as its bucket's geometric middle, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let n = self.count();
        if n == 0 {
            return 0.0;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (&bucket, &count) in &self.counts {
            seen += count;
            if seen >= rank {
                let middle = (f64::from(bucket) + 0.5) / BUCKETS_PER_DOUBLING;
                return 2f64.powf(middle) / 1000.0;
            }
        }
        0.0
    }
}

/// The latency verdict of an endpoint × candidate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyVerdict {
    /// `regression`, `ok` or `inconclusive`.
    pub verdict: String,
    /// Why, with the numbers.
    pub reason: String,
    /// What the candidate was compared with: `secondary` (replayed from the same place, so
    /// network and host cost the same) when one ran, else `control` (measured at the tap).
    pub baseline: String,
    /// Candidate p50 / baseline p50 (bucketed, ±5%).
    pub p50_ratio: f64,
    /// Candidate p99 / baseline p99 (bucketed, ±5%).
    pub p99_ratio: f64,
    /// One-sided Mann–Whitney U p-value that the candidate is slower.
    pub p_value: f64,
}

/// Mann–Whitney U, one-sided (the candidate's latencies are stochastically larger), with the
/// normal approximation, the tie correction of the variance (every bucket is a tie group) and a
/// continuity correction. Kayenta judges canaries the same way.
pub fn mann_whitney_greater(candidate: &LatencyHistogram, baseline: &LatencyHistogram) -> f64 {
    let (n1, n2) = (candidate.count() as f64, baseline.count() as f64);
    if n1 == 0.0 || n2 == 0.0 {
        return 1.0;
    }
    let mut buckets: Vec<u32> = candidate
        .counts
        .keys()
        .chain(baseline.counts.keys())
        .copied()
        .collect();
    buckets.sort_unstable();
    buckets.dedup();
    let (mut u, mut below, mut ties) = (0.0, 0.0, 0.0);
    for b in buckets {
        let c = *candidate.counts.get(&b).unwrap_or(&0) as f64;
        let k = *baseline.counts.get(&b).unwrap_or(&0) as f64;
        // Each candidate latency beats the baseline's below it, and ties half of its bucket.
        u += c * (below + 0.5 * k);
        below += k;
        let t = c + k;
        ties += t * t * t - t;
    }
    let n = n1 + n2;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if variance <= 0.0 {
        return 1.0;
    }
    let z = (u - n1 * n2 / 2.0 - 0.5) / variance.sqrt();
    normal_upper_tail(z)
}

/// P(Z > z) for a standard normal Z.
pub fn normal_upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' `erfcc`, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Judges the candidate's latencies against the secondary's when a secondary gave enough of
/// them, else against the control's: a regression needs both a significant upward shift (p <
/// [`LATENCY_P`]) and an effect of at least `min_ratio` at p50 or p99.
pub fn latency_verdict(
    control: &LatencyHistogram,
    candidate: &LatencyHistogram,
    secondary: Option<&LatencyHistogram>,
    min_ratio: f64,
) -> LatencyVerdict {
    let (baseline_name, baseline) = match secondary {
        Some(s) if s.count() >= MIN_LATENCIES => ("secondary", s),
        _ => ("control", control),
    };
    let ratio = |q: f64| {
        let b = baseline.quantile_ms(q);
        if b > 0.0 {
            candidate.quantile_ms(q) / b
        } else {
            0.0
        }
    };
    let (p50_ratio, p99_ratio) = (round3(ratio(0.5)), round3(ratio(0.99)));
    let (floor_ratio, floor_ms) = if baseline_name == "secondary" {
        (min_ratio, MIN_LATENCY_DELTA_MS)
    } else {
        (
            min_ratio.max(CONTROL_BASELINE_RATIO),
            CONTROL_BASELINE_DELTA_MS,
        )
    };
    let slower_by = |q: f64, r: f64| {
        r >= floor_ratio && candidate.quantile_ms(q) - baseline.quantile_ms(q) >= floor_ms
    };
    let effect = slower_by(0.5, p50_ratio) || slower_by(0.99, p99_ratio);
    let verdict = |verdict: &str, p_value: f64, reason: String| LatencyVerdict {
        verdict: verdict.to_string(),
        reason,
        baseline: baseline_name.to_string(),
        p50_ratio,
        p99_ratio,
        p_value,
    };
    let (n_candidate, n_baseline) = (candidate.count(), baseline.count());
    if n_candidate < MIN_LATENCIES || n_baseline < MIN_LATENCIES {
        return verdict(
            "inconclusive",
            1.0,
            format!(
                "{n_candidate} candidate and {n_baseline} {baseline_name} latencies; \
                 {MIN_LATENCIES} of each are needed"
            ),
        );
    }
    let p = mann_whitney_greater(candidate, baseline);
    let p_shown = if p < 1e-12 { 0.0 } else { round_sig(p) };
    let numbers = format!(
        "p50 {p50_ratio:.2}×, p99 {p99_ratio:.2}× the {baseline_name}'s, \
         Mann–Whitney p = {p_shown:.2e} over {n_candidate}/{n_baseline}"
    );
    if p < LATENCY_P && effect {
        verdict(
            "regression",
            p_shown,
            format!("slower: {numbers} (floor {floor_ratio:.2}× and {floor_ms} ms)"),
        )
    } else if p < LATENCY_P {
        verdict(
            "ok",
            p_shown,
            format!("slower but under the {floor_ratio:.2}× / {floor_ms} ms floor: {numbers}"),
        )
    } else {
        verdict("ok", p_shown, format!("not slower: {numbers}"))
    }
}

/// The error-rate verdict of an endpoint × candidate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorRateVerdict {
    /// `regression`, `ok` or `inconclusive`.
    pub verdict: String,
    /// Why, with the numbers.
    pub reason: String,
    /// Candidate failures (transport errors and 5xx where the control answered below 500) per
    /// request replayed.
    pub rate: f64,
    /// 95% Wilson score interval of `rate`.
    pub low: f64,
    /// Upper end of that interval.
    pub high: f64,
    /// The control's 5xx rate over the same compared requests.
    pub control_rate: f64,
    /// Candidate failures counted.
    pub failures: u64,
    /// Requests replayed to the candidate (compared + errors).
    pub requests: u64,
}

/// 95% Wilson score interval of `k` successes in `n`.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p, z) = (n as f64, k as f64 / n as f64, 1.959_964);
    let centre = p + z * z / (2.0 * n);
    let margin = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    let denominator = 1.0 + z * z / n;
    (
        ((centre - margin) / denominator).max(0.0),
        ((centre + margin) / denominator).min(1.0),
    )
}

/// Judges the candidate's failures (`failures` of `requests`) against the control's 5xx
/// (`control_failures` of `control_requests`): a regression needs a one-sided two-proportion z
/// above [`ERROR_Z`] and a rate at least [`ERROR_FLOOR`] above the control's.
pub fn error_rate_verdict(
    failures: u64,
    requests: u64,
    control_failures: u64,
    control_requests: u64,
) -> ErrorRateVerdict {
    let rate = |k: u64, n: u64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let (r, c) = (
        rate(failures, requests),
        rate(control_failures, control_requests),
    );
    let (low, high) = wilson(failures, requests);
    let verdict = |verdict: &str, reason: String| ErrorRateVerdict {
        verdict: verdict.to_string(),
        reason,
        rate: round6(r),
        low: round6(low),
        high: round6(high),
        control_rate: round6(c),
        failures,
        requests,
    };
    let numbers = format!(
        "{failures} of {requests} failed ({:.2}%, 95% CI {:.2}–{:.2}%), control {:.2}%",
        r * 100.0,
        low * 100.0,
        high * 100.0,
        c * 100.0
    );
    if requests < MIN_REQUESTS || control_requests < MIN_REQUESTS {
        return verdict(
            "inconclusive",
            format!("{numbers}; {MIN_REQUESTS} requests on each side are needed"),
        );
    }
    let z = crate::stats::z_score(failures, requests, control_failures, control_requests);
    if z > ERROR_Z && r - c >= ERROR_FLOOR {
        verdict("regression", format!("fails more: {numbers}"))
    } else {
        verdict("ok", numbers)
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Two significant digits, so that both stores print the same p-value.
fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let magnitude = 10f64.powi(x.abs().log10().floor() as i32 - 1);
    (x / magnitude).round() * magnitude
}

/// The candidate's failures and the control's 5xx from an endpoint's status pairs: a candidate
/// failure is a transport error or a 5xx where the control answered below 500.
pub fn error_rate_from(
    status: &[crate::report::StatusPair],
    compared: u64,
    errors: u64,
) -> ErrorRateVerdict {
    let candidate_5xx: u64 = status
        .iter()
        .filter(|s| s.candidate >= 500 && s.control < 500)
        .map(|s| s.count)
        .sum();
    let control_5xx: u64 = status
        .iter()
        .filter(|s| s.control >= 500)
        .map(|s| s.count)
        .sum();
    error_rate_verdict(
        errors + candidate_5xx,
        compared + errors,
        control_5xx,
        compared,
    )
}

/// An endpoint's verdict once latency and error rate are judged too: either one's regression
/// makes the endpoint a regression, and the reason says which.
pub fn with_endpoint_verdicts(
    verdict: String,
    reason: String,
    latency: &LatencyVerdict,
    errors: &ErrorRateVerdict,
) -> (String, String) {
    let mut extra = Vec::new();
    if errors.verdict == "regression" {
        extra.push(format!("error rate: {}", errors.reason));
    }
    if latency.verdict == "regression" {
        extra.push(format!("latency: {}", latency.reason));
    }
    if extra.is_empty() {
        return (verdict, reason);
    }
    if verdict == "regression" {
        (verdict, format!("{reason}; {}", extra.join("; ")))
    } else {
        (
            "regression".to_string(),
            format!("{} (fields: {reason})", extra.join("; ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(latencies_us: impl IntoIterator<Item = u64>) -> LatencyHistogram {
        let mut h = LatencyHistogram::default();
        for us in latencies_us {
            h.add(us);
        }
        h
    }

    /// Deterministic spread around `centre_us` (±30%).
    fn spread(centre_us: u64, n: u64) -> Vec<u64> {
        (0..n)
            .map(|i| centre_us * (70 + (i * 37) % 61) / 100)
            .collect()
    }

    #[test]
    fn a_sub_millisecond_difference_is_not_a_regression() {
        let v = latency_verdict(
            &histogram(spread(200, 500)),
            &histogram(spread(600, 500)),
            None,
            DEFAULT_LATENCY_RATIO,
        );
        assert_eq!(v.verdict, "ok", "{}", v.reason);
    }

    #[test]
    fn a_candidate_three_times_slower_is_a_latency_regression() {
        let control = histogram(spread(2_000, 200));
        let candidate = histogram(spread(6_000, 200));
        let v = latency_verdict(&control, &candidate, None, DEFAULT_LATENCY_RATIO);
        assert_eq!(v.verdict, "regression", "{}", v.reason);
        assert!(v.p50_ratio > 2.5 && v.p50_ratio < 3.5, "{v:?}");
        assert_eq!(v.baseline, "control");
    }

    #[test]
    fn a_real_two_percent_shift_is_not_an_alarm_and_equal_is_not_slower() {
        let control = histogram(spread(10_000, 5_000));
        let candidate = histogram(spread(10_200, 5_000));
        let v = latency_verdict(&control, &candidate, None, DEFAULT_LATENCY_RATIO);
        assert_eq!(v.verdict, "ok", "{}", v.reason);
        let same = latency_verdict(&control, &control.clone(), None, DEFAULT_LATENCY_RATIO);
        assert_eq!(same.verdict, "ok");
        assert!(same.p_value > 0.4, "{same:?}");
    }

    #[test]
    fn the_secondary_is_the_baseline_when_it_ran() {
        // Replayed targets pay a network hop the control (measured at the tap) does not: the
        // candidate is as fast as the secondary, so it is not slower.
        let control = histogram(spread(1_000, 100));
        let secondary = histogram(spread(8_000, 100));
        let candidate = histogram(spread(8_000, 100));
        let v = latency_verdict(
            &control,
            &candidate,
            Some(&secondary),
            DEFAULT_LATENCY_RATIO,
        );
        assert_eq!(
            (v.verdict.as_str(), v.baseline.as_str()),
            ("ok", "secondary")
        );
        let alone = latency_verdict(&control, &candidate, None, DEFAULT_LATENCY_RATIO);
        assert_eq!(alone.verdict, "regression");
    }

    #[test]
    fn against_a_secondary_a_smaller_slowdown_counts_than_against_the_control() {
        // 1.6× and 3 ms slower: judged against the secondary (same path), not against the
        // control measured elsewhere.
        let baseline = histogram(spread(5_000, 300));
        let candidate = histogram(spread(8_000, 300));
        let with = latency_verdict(
            &baseline,
            &candidate,
            Some(&baseline),
            DEFAULT_LATENCY_RATIO,
        );
        assert_eq!(with.verdict, "regression", "{}", with.reason);
        let without = latency_verdict(&baseline, &candidate, None, DEFAULT_LATENCY_RATIO);
        assert_eq!(without.verdict, "ok", "{}", without.reason);
    }

    #[test]
    fn few_latencies_are_inconclusive() {
        let v = latency_verdict(
            &histogram(spread(1_000, 10)),
            &histogram(spread(9_000, 10)),
            None,
            DEFAULT_LATENCY_RATIO,
        );
        assert_eq!(v.verdict, "inconclusive");
    }

    #[test]
    fn the_test_matches_the_exact_u_statistic_without_ties() {
        // Latencies in distinct buckets: U is the plain count of (candidate > baseline) pairs.
        let a = [1u64, 3, 5, 7, 9].map(|x| 1u64 << (x + 4));
        let b = [2u64, 4, 6, 8, 10].map(|x| 1u64 << (x + 4));
        let p = mann_whitney_greater(&histogram(b), &histogram(a));
        // U = 15 of 25 pairs; mean 12.5, sd sqrt(25*11/12) = 4.787; z = (15-12.5-0.5)/4.787.
        let expected = normal_upper_tail(2.0 / (25.0f64 * 11.0 / 12.0).sqrt());
        assert!((p - expected).abs() < 1e-9, "{p} vs {expected}");
    }

    #[test]
    fn normal_tail_is_accurate() {
        assert!((normal_upper_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_upper_tail(1.959_964) - 0.025).abs() < 1e-6);
        assert!((normal_upper_tail(3.090_232) - 0.001).abs() < 1e-6);
        assert!((normal_upper_tail(-1.644_854) - 0.95).abs() < 1e-6);
    }

    #[test]
    fn a_few_percent_of_5xx_is_an_error_rate_regression() {
        let v = error_rate_verdict(8, 200, 0, 200);
        assert_eq!(v.verdict, "regression", "{}", v.reason);
        assert!(v.low > 0.0 && v.high < 0.1 && v.low < v.rate && v.rate < v.high);
        // The control failing as often is not the candidate's regression.
        assert_eq!(error_rate_verdict(8, 200, 7, 200).verdict, "ok");
        // One failure in 5,000 is significant at no level worth an alarm.
        assert_eq!(error_rate_verdict(1, 5_000, 0, 5_000).verdict, "ok");
        assert_eq!(error_rate_verdict(3, 10, 0, 10).verdict, "inconclusive");
    }

    #[test]
    fn wilson_interval_matches_known_values() {
        let (low, high) = wilson(8, 200);
        assert!(
            (low - 0.0204).abs() < 5e-4 && (high - 0.0771).abs() < 5e-4,
            "{low} {high}"
        );
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }
}
