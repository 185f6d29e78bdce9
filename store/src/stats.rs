//! Is a field's difference rate a regression or noise?
//!
//! Diffy calls a field real when the raw (control vs candidate) difference count exceeds the
//! noise (control vs secondary) count by 20% relative and 0.03% of requests absolute. Those
//! thresholds ignore sample size: with 10 requests they flag coin flips, with 10 million they
//! miss a 0.02% regression. shadowdiff uses a one-sided two-proportion z-test instead, with a
//! minimum sample size, so a field is a regression only when the evidence says so.

/// Counts for one endpoint × candidate × field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FieldEvidence {
    /// Exchanges where control and candidate differed at this field (masked ones included).
    pub raw: u64,
    /// Of those, the ones not classified as noise per request (secondary mask, detector).
    pub unmasked: u64,
    /// Exchanges compared between control and candidate.
    pub compared: u64,
    /// Exchanges where control and secondary differed at this field.
    pub noise: u64,
    /// Exchanges compared between control and secondary.
    pub noise_compared: u64,
}

/// What [`judge`] decides about a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldVerdict {
    /// The candidate differs there more than noise explains.
    Regression,
    /// The differences are noise, or too few exchanges to tell them from noise.
    Noise,
}

impl FieldVerdict {
    /// The name reports use: `regression` or `noise`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Regression => "regression",
            Self::Noise => "noise",
        }
    }
}

/// Fewer samples than this on either side cannot separate a regression from noise.
pub const MIN_SAMPLES: u64 = 20;
/// One-sided z for p < 0.005.
pub const Z_CRITICAL: f64 = 2.576;

/// Verdict and the reason a person can read.
pub fn judge(e: FieldEvidence, noise_reason: Option<&str>) -> (FieldVerdict, String) {
    if e.unmasked == 0 {
        let why = noise_reason.unwrap_or("classified as noise");
        return (
            FieldVerdict::Noise,
            format!("every difference was noise ({why})"),
        );
    }
    if e.noise_compared == 0 {
        return (
            FieldVerdict::Regression,
            format!(
                "differs in {} of {} exchanges; no secondary measured noise",
                e.unmasked, e.compared
            ),
        );
    }
    if e.noise == 0 {
        return (
            FieldVerdict::Regression,
            format!(
                "differs in {} of {}; never between control and secondary ({} compared)",
                e.raw, e.compared, e.noise_compared
            ),
        );
    }
    if e.compared < MIN_SAMPLES || e.noise_compared < MIN_SAMPLES {
        return (
            FieldVerdict::Noise,
            format!(
                "inconclusive: field is noisy in A/A and fewer than {MIN_SAMPLES} exchanges were compared"
            ),
        );
    }
    let z = z_score(e.raw, e.compared, e.noise, e.noise_compared);
    let (p1, p2) = (rate(e.raw, e.compared), rate(e.noise, e.noise_compared));
    if z > Z_CRITICAL {
        (
            FieldVerdict::Regression,
            format!(
                "raw rate {:.2}% above noise rate {:.2}% (z = {z:.1})",
                p1 * 100.0,
                p2 * 100.0
            ),
        )
    } else {
        (
            FieldVerdict::Noise,
            format!(
                "raw rate {:.2}% not distinguishable from noise rate {:.2}% (z = {z:.1})",
                p1 * 100.0,
                p2 * 100.0
            ),
        )
    }
}

fn rate(k: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        k as f64 / n as f64
    }
}

/// One-sided two-proportion z statistic (raw rate above noise rate), pooled variance.
pub fn z_score(raw: u64, n1: u64, noise: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 0.0;
    }
    let (p1, p2) = (rate(raw, n1), rate(noise, n2));
    let pooled = (raw + noise) as f64 / (n1 + n2) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return if p1 > p2 { f64::INFINITY } else { 0.0 };
    }
    (p1 - p2) / se
}

/// Diffy's rule, kept as the baseline the tests compare against.
pub fn diffy_is_regression(raw: u64, noise: u64, total: u64) -> bool {
    if total == 0 || raw <= noise {
        return false;
    }
    let relative = (raw - noise) as f64 / noise.max(1) as f64;
    let absolute = (raw - noise) as f64 / total as f64;
    relative > 0.20 && absolute > 0.0003
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(raw: u64, compared: u64, noise: u64, noise_compared: u64) -> FieldEvidence {
        FieldEvidence {
            raw,
            unmasked: raw,
            compared,
            noise,
            noise_compared,
        }
    }

    #[test]
    fn small_samples_do_not_make_regressions_where_diffy_does() {
        // 3 of 10 vs 2 of 10: Diffy flags it (50% relative), the test says inconclusive.
        assert!(diffy_is_regression(3, 2, 10));
        assert_eq!(judge(ev(3, 10, 2, 10), None).0, FieldVerdict::Noise);
    }

    #[test]
    fn equal_rates_at_scale_are_noise_and_clear_excess_is_regression() {
        assert_eq!(
            judge(ev(5_100, 10_000, 5_000, 10_000), None).0,
            FieldVerdict::Noise
        );
        assert_eq!(
            judge(ev(6_000, 10_000, 5_000, 10_000), None).0,
            FieldVerdict::Regression
        );
    }

    #[test]
    fn small_real_regression_at_scale_is_found_where_diffy_misses_it() {
        // 0.02% excess over a quiet field on 2M requests: below Diffy's 0.03% absolute floor.
        let (raw, noise, n) = (600, 200, 2_000_000);
        assert!(!diffy_is_regression(raw, noise, n));
        assert_eq!(
            judge(ev(raw, n, noise, n), None).0,
            FieldVerdict::Regression
        );
    }

    #[test]
    fn a_field_never_noisy_in_aa_is_a_regression_at_once() {
        assert_eq!(judge(ev(1, 3, 0, 3), None).0, FieldVerdict::Regression);
    }

    #[test]
    fn fully_masked_field_is_noise_with_reason() {
        let e = FieldEvidence {
            raw: 10,
            unmasked: 0,
            compared: 10,
            noise: 10,
            noise_compared: 10,
        };
        let (v, why) = judge(e, Some("secondary"));
        assert_eq!(v, FieldVerdict::Noise);
        assert!(why.contains("secondary"));
    }
}
