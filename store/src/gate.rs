//! The rollout gate: does a report let a canary proceed?
//!
//! Pure and store-independent: it reads only the [`Report`] contract.
//!
//! Rules, per endpoint × candidate selected by [`GateConfig::endpoint`]:
//! - **mismatch rate** = `mismatched / compared`: every exchange whose candidate answer differed
//!   outside per-request noise. It fails the gate when above `max_mismatch_rate` and the
//!   report's verdict for the endpoint is `regression`; an endpoint whose differing fields are
//!   all judged noise (`noisy`) agrees with the report and passes.
//! - **error rate** (when `max_error_rate` is set) = `errors / (compared + errors)`. Fails when
//!   above the bound.
//! - An endpoint with fewer than `min_compared` compared exchanges cannot fail or pass: it makes
//!   the outcome undecided (unless another endpoint fails).
//! - **Inconclusive fields** (they differ, and nothing compared the control with itself there:
//!   no secondary, no repeated identical request, see `stats::judge_field`) are neither noise nor
//!   regressions: an endpoint whose mismatch rate is above `max_mismatch_rate` and that has no
//!   regressed field but inconclusive ones makes the outcome undecided, not pass (its verdict
//!   is `inconclusive`). Below the bound it passes: even if every inconclusive difference were
//!   a regression, the bound holds.
//! - No endpoint selected at all is undecided.
//!
//! Failures win over undecided, undecided wins over pass. The CLI maps pass / fail / undecided
//! to exit codes 0 / 1 / 2.

use crate::report::{EndpointReport, Report};
use serde::{Deserialize, Serialize};

/// What the gate requires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// Largest acceptable `mismatched / compared` per endpoint, as a fraction (0.01 = 1%).
    pub max_mismatch_rate: f64,
    /// Compared exchanges an endpoint needs before it can pass or fail.
    #[serde(default = "default_min_compared")]
    pub min_compared: u64,
    /// Only endpoints whose `METHOD route` contains this text.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Only this candidate.
    #[serde(default)]
    pub candidate: Option<String>,
    /// Largest acceptable failure rate per endpoint (transport errors and 5xx where the
    /// control answered below 500, per request replayed); unchecked when absent. An error-rate
    /// verdict of `regression` fails the gate whatever this bound.
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// Largest acceptable candidate p50 or p99 over its baseline's (the secondary's, else the
    /// control's), counted only when the candidate is significantly slower (Mann–Whitney);
    /// unchecked when absent.
    #[serde(default)]
    pub max_latency_ratio: Option<f64>,
}

fn default_min_compared() -> u64 {
    100
}

impl GateConfig {
    /// A gate on the mismatch rate alone, over every endpoint and candidate, with the default
    /// `min_compared` (100).
    pub fn new(max_mismatch_rate: f64) -> Self {
        Self {
            max_mismatch_rate,
            min_compared: default_min_compared(),
            endpoint: None,
            candidate: None,
            max_error_rate: None,
            max_latency_ratio: None,
        }
    }

    fn selects(&self, e: &EndpointReport) -> bool {
        self.endpoint
            .as_ref()
            .is_none_or(|f| format!("{} {}", e.method, e.route).contains(f.as_str()))
            && self.candidate.as_ref().is_none_or(|c| *c == e.candidate)
    }
}

/// The gate's decision, with the reasons a person reads in the CI log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "reasons", rename_all = "snake_case")]
pub enum GateOutcome {
    /// Every selected endpoint met the requirements.
    Pass,
    /// At least one endpoint broke a bound; one reason per broken bound.
    Fail(Vec<String>),
    /// Nothing failed, but some endpoint had too few compared exchanges, or none was selected.
    Undecided(Vec<String>),
}

fn rate(k: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        k as f64 / n as f64
    }
}

/// Decides pass / fail / undecided for `report` under `config`.
pub fn gate(report: &Report, config: &GateConfig) -> GateOutcome {
    let mut failures = Vec::new();
    let mut undecided = Vec::new();
    let mut selected = 0usize;
    for e in report.endpoints.iter().filter(|e| config.selects(e)) {
        selected += 1;
        let name = format!("{} {} ({})", e.method, e.route, e.candidate);
        if e.compared < config.min_compared {
            undecided.push(format!(
                "{name}: {} compared, fewer than the {} required",
                e.compared, config.min_compared
            ));
            continue;
        }
        let mismatch_rate = rate(e.mismatched, e.compared);
        // Only fields the report calls a regression can fail on mismatches: mismatches whose
        // fields the statistics classify as noise never block a rollout.
        let fields_regressed = e.fields.iter().any(|f| f.verdict == "regression");
        let inconclusive = e
            .fields
            .iter()
            .filter(|f| f.verdict == "inconclusive")
            .count();
        if !fields_regressed && inconclusive > 0 && mismatch_rate > config.max_mismatch_rate {
            undecided.push(format!(
                "{name}: mismatch rate {:.3}% ({} of {}) above {:.3}%, but {inconclusive} \
                 field(s) are inconclusive: the control was never compared with itself there \
                 (run a secondary, --secondary self, or let identical requests repeat); {}",
                mismatch_rate * 100.0,
                e.mismatched,
                e.compared,
                config.max_mismatch_rate * 100.0,
                e.verdict_reason
            ));
        }
        if fields_regressed && mismatch_rate > config.max_mismatch_rate {
            failures.push(format!(
                "{name}: mismatch rate {:.3}% ({} of {}) above {:.3}%; {}",
                mismatch_rate * 100.0,
                e.mismatched,
                e.compared,
                config.max_mismatch_rate * 100.0,
                e.verdict_reason
            ));
        }
        let errors = &e.error_rate;
        if errors.verdict == "regression" {
            failures.push(format!("{name}: error rate regressed: {}", errors.reason));
        } else if let Some(max) = config.max_error_rate {
            if errors.rate > max {
                failures.push(format!(
                    "{name}: error rate {:.3}% ({} of {}) above {:.3}%",
                    errors.rate * 100.0,
                    errors.failures,
                    errors.requests,
                    max * 100.0
                ));
            }
        }
        if let Some(max) = config.max_latency_ratio {
            let latency = &e.latency_verdict;
            let ratio = latency.p50_ratio.max(latency.p99_ratio);
            if latency.verdict != "inconclusive"
                && latency.p_value < crate::verdicts::LATENCY_P
                && ratio > max
            {
                failures.push(format!(
                    "{name}: latency {ratio:.2}× the {}'s, above {max:.2}×: {}",
                    latency.baseline, latency.reason
                ));
            }
        }
    }
    if selected == 0 {
        undecided.push(match &config.endpoint {
            Some(f) => format!("no endpoint matches `{f}`"),
            None => "the report has no endpoints".to_string(),
        });
    }
    if !failures.is_empty() {
        GateOutcome::Fail(failures)
    } else if !undecided.is_empty() {
        GateOutcome::Undecided(undecided)
    } else {
        GateOutcome::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Latency, Totals, Window};

    fn endpoint(route: &str, compared: u64, mismatched: u64, errors: u64) -> EndpointReport {
        EndpointReport {
            method: "GET".into(),
            route: route.into(),
            candidate: "v2".into(),
            compared,
            mismatched,
            errors,
            blocked: 0,
            skipped: 0,
            saturated: 0,
            host_busy: 0,
            verdict: if mismatched > 0 {
                "regression"
            } else {
                "clean"
            }
            .into(),
            verdict_reason: "r".into(),
            fields: if mismatched > 0 {
                vec![crate::report::FieldReport {
                    path: "body.x".into(),
                    kind: "value".into(),
                    count: mismatched,
                    noise_count: 0,
                    verdict: "regression".into(),
                    reason: "r".into(),
                    evidence: "secondary".into(),
                }]
            } else {
                vec![]
            },
            status: vec![],
            latency_ms: Latency::default(),
            latency_verdict: Default::default(),
            error_rate: crate::verdicts::error_rate_from(&[], compared, errors),
            samples: vec![],
            signatures: vec![],
            error_kinds: vec![],
            blocked_reasons: vec![],
            side_effects: vec![],
        }
    }

    fn report(endpoints: Vec<EndpointReport>) -> Report {
        Report {
            experiment: "e".into(),
            window: Window {
                from: None,
                to: None,
            },
            totals: Totals::default(),
            endpoints,
        }
    }

    #[test]
    fn noisy_endpoints_never_fail_on_mismatches() {
        let mut noisy = endpoint("/search", 100, 40, 0);
        noisy.verdict = "noisy".into();
        noisy.fields[0].verdict = "noise".into();
        assert_eq!(
            gate(
                &report(vec![noisy]),
                &GateConfig {
                    min_compared: 10,
                    ..GateConfig::new(0.01)
                }
            ),
            GateOutcome::Pass
        );
    }

    #[test]
    fn pass_fail_and_undecided() {
        let cfg = GateConfig {
            min_compared: 10,
            max_error_rate: Some(0.1),
            ..GateConfig::new(0.05)
        };
        assert_eq!(
            gate(&report(vec![endpoint("/a", 100, 5, 0)]), &cfg),
            GateOutcome::Pass
        );
        assert!(matches!(
            gate(&report(vec![endpoint("/a", 100, 6, 0)]), &cfg),
            GateOutcome::Fail(_)
        ));
        assert!(matches!(
            gate(&report(vec![endpoint("/a", 100, 0, 20)]), &cfg),
            GateOutcome::Fail(_)
        ));
        assert!(matches!(
            gate(&report(vec![endpoint("/a", 9, 9, 0)]), &cfg),
            GateOutcome::Undecided(_)
        ));
        assert!(matches!(
            gate(&report(vec![]), &cfg),
            GateOutcome::Undecided(_)
        ));
        // A failing endpoint wins over one without enough data.
        let both = report(vec![endpoint("/a", 9, 0, 0), endpoint("/b", 100, 50, 0)]);
        assert!(matches!(gate(&both, &cfg), GateOutcome::Fail(r) if r.len() == 1));
    }

    #[test]
    fn latency_and_error_rate_verdicts_fail_the_gate() {
        let cfg = GateConfig {
            min_compared: 10,
            max_latency_ratio: Some(2.0),
            ..GateConfig::new(0.5)
        };
        let mut slow = endpoint("/slow", 100, 0, 0);
        slow.latency_verdict = crate::verdicts::LatencyVerdict {
            verdict: "regression".into(),
            reason: "slower".into(),
            baseline: "control".into(),
            p50_ratio: 3.0,
            p99_ratio: 2.5,
            p_value: 1e-9,
        };
        assert!(
            matches!(gate(&report(vec![slow.clone()]), &cfg), GateOutcome::Fail(r) if r[0].contains("latency 3.00×"))
        );
        // Under the gate's ratio, or not significant: passes.
        slow.latency_verdict.p50_ratio = 1.5;
        slow.latency_verdict.p99_ratio = 1.5;
        assert_eq!(gate(&report(vec![slow.clone()]), &cfg), GateOutcome::Pass);
        // 5xx from the candidate on 5% of requests, none from the control.
        let mut failing = endpoint("/pay", 200, 0, 0);
        failing.status = vec![
            crate::report::StatusPair {
                control: 200,
                candidate: 200,
                count: 190,
            },
            crate::report::StatusPair {
                control: 200,
                candidate: 503,
                count: 10,
            },
        ];
        failing.error_rate = crate::verdicts::error_rate_from(&failing.status, 200, 0);
        assert!(
            matches!(gate(&report(vec![failing]), &cfg), GateOutcome::Fail(r) if r[0].contains("error rate regressed"))
        );
    }

    #[test]
    fn an_inconclusive_endpoint_above_the_bound_is_undecided_not_pass() {
        let cfg = GateConfig {
            min_compared: 10,
            ..GateConfig::new(0.05)
        };
        let mut e = endpoint("/a", 100, 40, 0);
        e.verdict = "inconclusive".into();
        e.fields[0].verdict = "inconclusive".into();
        e.fields[0].evidence = "none".into();
        assert!(
            matches!(gate(&report(vec![e.clone()]), &cfg), GateOutcome::Undecided(r) if r[0].contains("inconclusive"))
        );
        // Within the bound whatever those fields are: passes.
        e.mismatched = 3;
        assert_eq!(gate(&report(vec![e]), &cfg), GateOutcome::Pass);
    }

    #[test]
    fn endpoint_filter_selects() {
        let cfg = GateConfig {
            min_compared: 1,
            endpoint: Some("GET /b".into()),
            ..GateConfig::new(0.0)
        };
        let r = report(vec![endpoint("/a", 10, 10, 0), endpoint("/b", 10, 0, 0)]);
        assert_eq!(gate(&r, &cfg), GateOutcome::Pass);
        let cfg = GateConfig {
            endpoint: Some("/nope".into()),
            ..cfg
        };
        assert!(matches!(gate(&r, &cfg), GateOutcome::Undecided(_)));
    }
}
