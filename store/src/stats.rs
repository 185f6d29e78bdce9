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
    /// Repeated identical requests whose two control answers differed at this field.
    pub repeat: u64,
    /// Repeated identical requests compared (control against its own earlier answer).
    pub repeat_compared: u64,
}

/// What [`judge`] decides about a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldVerdict {
    /// The candidate differs there more than noise explains.
    Regression,
    /// The differences are noise, or too few exchanges to tell them from noise.
    Noise,
    /// The candidate differs there, but the control's own value was never compared with
    /// itself (no secondary, no repeated identical request), or too few repeats kept it the
    /// same to call it stable: nothing says whether the control changes it too.
    Inconclusive,
}

impl FieldVerdict {
    /// The name reports use: `regression`, `noise` or `inconclusive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Regression => "regression",
            Self::Noise => "noise",
            Self::Inconclusive => "inconclusive",
        }
    }
}

/// What a field's verdict stands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// Control against the secondary (A/A), per request and in rate.
    Secondary,
    /// Control against its own earlier answers to identical requests (A/A learned from
    /// repeated traffic).
    RepeatedRequests,
    /// Every difference was a volatile value of one format (timestamp, UUID, token).
    Detector,
    /// Every difference was noise by a configured rule.
    Rule,
    /// Nothing compared the control with itself.
    None,
}

impl Evidence {
    /// The name reports use: `secondary`, `repeated_requests`, `detector`, `rule`, `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secondary => "secondary",
            Self::RepeatedRequests => "repeated_requests",
            Self::Detector => "detector",
            Self::Rule => "rule",
            Self::None => "none",
        }
    }

    /// The evidence of a field whose every difference was noise for `reason` (the most
    /// frequent per-request noise reason: `secondary`, `detector:…`, anything else a rule).
    pub fn of_noise_reason(reason: Option<&str>) -> Self {
        match reason {
            Some("secondary") => Self::Secondary,
            Some(r) if r.starts_with("detector") => Self::Detector,
            _ => Self::Rule,
        }
    }
}

/// Fewer samples than this on either side cannot separate a regression from noise.
pub const MIN_SAMPLES: u64 = 20;
/// One-sided z for p < 0.005.
pub const Z_CRITICAL: f64 = 2.576;

/// The z a rate must exceed when `family` fields of one endpoint are tested together: the
/// endpoint's chance of a false regression stays at p < 0.005 however many noisy fields it has
/// (Bonferroni: each field is tested at 0.005 / `family`). One field: [`Z_CRITICAL`]; five:
/// 3.09; fifty: 3.72.
pub fn z_critical(family: usize) -> f64 {
    if family <= 1 {
        return Z_CRITICAL;
    }
    let alpha = 0.005 / family as f64;
    // The upper tail falls monotonically: bisect for the z where it equals alpha.
    let (mut low, mut high) = (Z_CRITICAL, 12.0);
    for _ in 0..60 {
        let mid = (low + high) / 2.0;
        if crate::verdicts::normal_upper_tail(mid) > alpha {
            low = mid;
        } else {
            high = mid;
        }
    }
    high
}
/// A field the control kept the same in every repeat is stable when a control that changed it
/// as often as the candidate differs there would have kept it the same in that many repeats
/// with a probability below this.
pub const STABLE_P: f64 = 0.01;

/// Verdict and the reason a person can read.
pub fn judge(e: FieldEvidence, noise_reason: Option<&str>) -> (FieldVerdict, String) {
    let (verdict, _, reason) = judge_field(e, noise_reason);
    (verdict, reason)
}

/// Verdict, the evidence it stands on and the reason a person can read.
///
/// 1. Every difference noise per request ⇒ `noise`, evidence from the noise reason
///    (`secondary`, `detector`, `rule`).
/// 2. A secondary compared this endpoint ⇒ judged against the secondary (evidence
///    `secondary`): never different there ⇒ `regression`; else a z-test of the rates.
/// 3. Else repeated identical requests compared the control with itself ⇒ judged against them
///    (evidence `repeated_requests`): never different in `n` repeats ⇒ `regression` when a
///    control changing it at the candidate's rate `p` would have stayed the same that long
///    with probability `(1 - p)^n` < [`STABLE_P`], else `inconclusive`; different in some ⇒ the
///    same z-test as against a secondary.
/// 4. Else ⇒ `inconclusive` (evidence `none`).
pub fn judge_field(
    e: FieldEvidence,
    noise_reason: Option<&str>,
) -> (FieldVerdict, Evidence, String) {
    judge_field_among(e, noise_reason, 1)
}

/// [`judge_field`] for one of `family` fields of an endpoint that differed beyond per-request
/// noise: its rate tests use [`z_critical`]`(family)`, so an endpoint with many noisy fields is
/// not a regression by the chance of one of them.
pub fn judge_field_among(
    e: FieldEvidence,
    noise_reason: Option<&str>,
    family: usize,
) -> (FieldVerdict, Evidence, String) {
    let z_critical = z_critical(family);
    if e.unmasked == 0 {
        let why = noise_reason.unwrap_or("classified as noise");
        return (
            FieldVerdict::Noise,
            Evidence::of_noise_reason(noise_reason),
            format!("every difference was noise ({why})"),
        );
    }
    if e.noise_compared > 0 {
        let (v, why) = judge_against_secondary(e, z_critical);
        return (v, Evidence::Secondary, why);
    }
    if e.repeat_compared > 0 {
        let (v, why) = judge_against_repeats(e, z_critical);
        return (v, Evidence::RepeatedRequests, why);
    }
    (
        FieldVerdict::Inconclusive,
        Evidence::None,
        format!(
            "differs in {} of {} exchanges; the control was never compared with itself \
             (no secondary, no repeated identical request), so nothing says it is stable",
            e.unmasked, e.compared
        ),
    )
}

fn judge_against_repeats(e: FieldEvidence, z_critical: f64) -> (FieldVerdict, String) {
    let (raw, n) = (e.raw, e.repeat_compared);
    if e.repeat == 0 {
        let p = rate(raw, e.compared).min(1.0);
        let chance = (1.0 - p).powf(n as f64);
        if chance < STABLE_P {
            return (
                FieldVerdict::Regression,
                format!(
                    "differs in {raw} of {}; the control never changed it in {n} repeated \
                     identical requests",
                    e.compared
                ),
            );
        }
        return (
            FieldVerdict::Inconclusive,
            format!(
                "differs in {raw} of {}; the control kept it in {n} repeated identical \
                 requests, too few to call it stable (a control changing it {:.0}% of the \
                 time would do that with probability {:.0}%)",
                e.compared,
                p * 100.0,
                chance * 100.0
            ),
        );
    }
    if e.compared < MIN_SAMPLES || n < MIN_SAMPLES {
        return (
            FieldVerdict::Noise,
            format!(
                "inconclusive: the control changes it between identical requests ({} of {n}) \
                 and fewer than {MIN_SAMPLES} exchanges were compared",
                e.repeat
            ),
        );
    }
    let z = z_score(raw, e.compared, e.repeat, n);
    let (p1, p2) = (rate(raw, e.compared), rate(e.repeat, n));
    if z > z_critical {
        (
            FieldVerdict::Regression,
            format!(
                "raw rate {:.2}% above the control's own rate {:.2}% between identical \
                 requests (z = {z:.1})",
                p1 * 100.0,
                p2 * 100.0
            ),
        )
    } else {
        (
            FieldVerdict::Noise,
            format!(
                "raw rate {:.2}% not distinguishable from the control's own rate {:.2}% \
                 between identical requests (z = {z:.1})",
                p1 * 100.0,
                p2 * 100.0
            ),
        )
    }
}

fn judge_against_secondary(e: FieldEvidence, z_critical: f64) -> (FieldVerdict, String) {
    if e.noise == 0 {
        // Never between control and secondary: a regression when a secondary differing as
        // often as the candidate would have shown it by now (a rare difference against a small
        // A/A sample proves nothing: a timestamp whose encoder drops trailing zeros changes
        // precision once in hundreds of answers).
        let p = rate(e.raw, e.compared).min(1.0);
        let chance = (1.0 - p).powf(e.noise_compared as f64);
        if chance < STABLE_P {
            return (
                FieldVerdict::Regression,
                format!(
                    "differs in {} of {}; never between control and secondary ({} compared)",
                    e.raw, e.compared, e.noise_compared
                ),
            );
        }
        return (
            FieldVerdict::Inconclusive,
            format!(
                "differs in {} of {}; never between control and secondary, but {} compared are \
                 too few to tell (a secondary differing {:.1}% of the time would show nothing \
                 with probability {:.0}%)",
                e.raw,
                e.compared,
                e.noise_compared,
                p * 100.0,
                chance * 100.0
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
    if z > z_critical {
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
            ..FieldEvidence::default()
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
        // Every exchange differs, the secondary never: a regression after three.
        assert_eq!(judge(ev(3, 3, 0, 3), None).0, FieldVerdict::Regression);
        assert_eq!(judge(ev(30, 100, 0, 100), None).0, FieldVerdict::Regression);
    }

    #[test]
    fn a_rare_difference_against_a_small_aa_sample_is_inconclusive_not_a_regression() {
        // A timestamp whose encoder drops trailing zeros changes precision now and then: 2 of
        // 160 against a secondary that happened not to show it in 160.
        let (v, why) = judge(ev(2, 160, 0, 160), None);
        assert_eq!(v, FieldVerdict::Inconclusive, "{why}");
        assert!(why.contains("too few to tell"), "{why}");
        assert_eq!(judge(ev(1, 3, 0, 3), None).0, FieldVerdict::Inconclusive);
        // The same rate against enough A/A comparisons is a regression.
        assert_eq!(
            judge(ev(20, 1600, 0, 1600), None).0,
            FieldVerdict::Regression
        );
    }

    #[test]
    fn fully_masked_field_is_noise_with_reason() {
        let e = FieldEvidence {
            raw: 10,
            unmasked: 0,
            compared: 10,
            noise: 10,
            noise_compared: 10,
            ..FieldEvidence::default()
        };
        let (v, why) = judge(e, Some("secondary"));
        assert_eq!(v, FieldVerdict::Noise);
        assert!(why.contains("secondary"));
    }

    fn repeats(raw: u64, compared: u64, repeat: u64, repeat_compared: u64) -> FieldEvidence {
        FieldEvidence {
            raw,
            unmasked: raw,
            compared,
            repeat,
            repeat_compared,
            ..FieldEvidence::default()
        }
    }

    #[test]
    fn the_critical_z_grows_with_the_fields_tested_together() {
        assert_eq!(z_critical(0), Z_CRITICAL);
        assert_eq!(z_critical(1), Z_CRITICAL);
        for (family, z) in [(2, 2.807), (5, 3.090), (50, 3.719)] {
            assert!(
                (z_critical(family) - z).abs() < 0.002,
                "{family}: {}",
                z_critical(family)
            );
            let tail = crate::verdicts::normal_upper_tail(z_critical(family));
            assert!(
                (tail * family as f64 - 0.005).abs() < 1e-5,
                "{family}: {tail}"
            );
        }
    }

    #[test]
    fn one_chance_excess_among_several_noisy_fields_is_noise_and_a_real_one_is_not() {
        // Found by the suite: an order that two shuffles of 3 items change 5/6 of the time,
        // 56 of 60 against the control's 36 of 50 repeats (z = 3.0): alone a regression at
        // p < 0.005, but one of five noisy fields of the endpoint.
        let chance = repeats(56, 60, 36, 50);
        assert_eq!(judge_field(chance, None).0, FieldVerdict::Regression);
        assert_eq!(judge_field_among(chance, None, 5).0, FieldVerdict::Noise);
        // Always different where the control changes it a third of the time: still found.
        let real = repeats(60, 60, 20, 60);
        assert_eq!(
            judge_field_among(real, None, 50).0,
            FieldVerdict::Regression
        );
        // The same against a secondary.
        let secondary = FieldEvidence {
            noise: 36,
            noise_compared: 50,
            ..chance
        };
        let secondary = FieldEvidence {
            repeat: 0,
            repeat_compared: 0,
            ..secondary
        };
        assert_eq!(judge_field(secondary, None).0, FieldVerdict::Regression);
        assert_eq!(judge_field_among(secondary, None, 5).0, FieldVerdict::Noise);
    }

    #[test]
    fn without_any_aa_comparison_a_difference_is_inconclusive() {
        let (v, evidence, why) = judge_field(ev(10, 10, 0, 0), None);
        assert_eq!((v, evidence), (FieldVerdict::Inconclusive, Evidence::None));
        assert!(why.contains("never compared with itself"), "{why}");
    }

    #[test]
    fn a_field_the_control_kept_in_repeats_is_a_regression_when_the_repeats_are_enough() {
        // Differs every time; one repeat without a change already makes that unlikely noise.
        assert_eq!(
            judge_field(repeats(10, 10, 0, 1), None),
            (
                FieldVerdict::Regression,
                Evidence::RepeatedRequests,
                judge_field(repeats(10, 10, 0, 1), None).2
            )
        );
        // Differs in half: two quiet repeats prove nothing (25%), seven do (0.8%).
        assert_eq!(
            judge_field(repeats(5, 10, 0, 2), None).0,
            FieldVerdict::Inconclusive
        );
        assert_eq!(
            judge_field(repeats(5, 10, 0, 7), None).0,
            FieldVerdict::Regression
        );
    }

    #[test]
    fn a_field_the_control_changes_between_repeats_at_the_same_rate_is_noise() {
        let (v, evidence, _) = judge_field(repeats(40, 40, 19, 20), None);
        assert_eq!(
            (v, evidence),
            (FieldVerdict::Noise, Evidence::RepeatedRequests)
        );
        // Far more often than the control changes it: a regression.
        assert_eq!(
            judge_field(repeats(400, 400, 2, 200), None).0,
            FieldVerdict::Regression
        );
        // The secondary, when there is one, is the baseline.
        let both = FieldEvidence {
            noise: 0,
            noise_compared: 40,
            ..repeats(40, 40, 40, 40)
        };
        assert_eq!(judge_field(both, None).1, Evidence::Secondary);
    }

    #[test]
    fn evidence_of_masked_fields_follows_the_noise_reason() {
        let masked = FieldEvidence {
            raw: 3,
            compared: 3,
            ..FieldEvidence::default()
        };
        assert_eq!(
            judge_field(masked, Some("secondary")).1,
            Evidence::Secondary
        );
        assert_eq!(
            judge_field(masked, Some("detector:uuid")).1,
            Evidence::Detector
        );
        assert_eq!(judge_field(masked, Some("rule:x")).1, Evidence::Rule);
    }
}
