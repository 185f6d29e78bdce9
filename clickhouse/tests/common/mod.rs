//! Records for the ClickHouse tests: a varied, deterministic set.
#![allow(dead_code)]

use shadowdiff_model::{
    fingerprint, DiffKind, DiffRecord, Difference, NoiseDifference, Outcome, TargetRole,
    SCHEMA_VERSION,
};

/// Small deterministic generator, so failures reproduce.
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub(crate) fn diff(path: &str, kind: DiffKind) -> Difference {
    Difference {
        path: path.into(),
        kind,
        control: Some("1".into()),
        candidate: if kind == DiffKind::Missing {
            None
        } else {
            Some("2".into())
        },
    }
}

pub(crate) fn noise(path: &str, reason: &str) -> NoiseDifference {
    NoiseDifference {
        difference: diff(path, DiffKind::Value),
        reason: reason.into(),
    }
}

/// A varied set: three endpoints, two candidates and a secondary, every outcome, noise from
/// the A/A secondary and detectors, side effects, missing latencies and statuses.
pub(crate) fn records(n: usize) -> Vec<DiffRecord> {
    let mut rng = Lcg(42);
    let endpoints = [
        ("GET", "/users/{id}"),
        ("GET", "/orders/{id}"),
        ("POST", "/cart"),
    ];
    let mut out = Vec::new();
    for i in 0..n {
        let (method, route) = endpoints[rng.below(3) as usize];
        let id = format!("ex-{i:05}");
        let experiment = if i % 10 == 9 { "exp-b" } else { "exp-a" };
        let captured_at_ms = 1_763_805_600_000 + i as u64 * 7_000;
        for (target, role) in [
            ("v2", TargetRole::Candidate),
            ("v3", TargetRole::Candidate),
            ("aa", TargetRole::Secondary),
        ] {
            if role == TargetRole::Secondary && rng.below(3) == 0 {
                continue;
            }
            let roll = rng.below(100);
            let (outcome, detail) = match roll {
                0..=4 => (
                    Outcome::Error,
                    [Some("timeout: after 2s"), Some("connect: refused"), None]
                        [rng.below(3) as usize],
                ),
                5..=7 => (Outcome::Blocked, Some("method POST not allowed")),
                8..=9 => (Outcome::Skipped, Some("body truncated at capture")),
                _ => (Outcome::Match, None),
            };
            let mut differences = Vec::new();
            let mut noise_list = Vec::new();
            if outcome == Outcome::Match {
                if rng.below(3) == 0 {
                    noise_list.push(noise("body.ts", "secondary"));
                }
                if rng.below(5) == 0 {
                    noise_list.push(noise("headers.date", "detector:timestamp"));
                    noise_list.push(noise("headers.date", "rule:ignore-date"));
                }
                let p = match role {
                    TargetRole::Secondary => 0,
                    _ if target == "v3" => 40,
                    _ => 15,
                };
                if rng.below(100) < p {
                    let k = rng.below(4);
                    differences.push(diff(&format!("body.items[{k}].price"), DiffKind::Value));
                    if k == 3 {
                        differences.push(diff("body.items[0].price", DiffKind::Value));
                    }
                }
                if rng.below(10) == 0 {
                    differences.push(diff("body.user.name", DiffKind::Type));
                    noise_list.push(noise("body.user.name", "secondary"));
                }
                if rng.below(12) == 0 {
                    differences.push(diff("status", DiffKind::Status));
                }
                if role == TargetRole::Secondary && rng.below(20) == 0 {
                    differences.push(diff("body.items[1].price", DiffKind::Value));
                }
            }
            let outcome = if outcome == Outcome::Match && !differences.is_empty() {
                Outcome::Mismatch
            } else {
                outcome
            };
            let status_missing = rng.below(20) == 0;
            let compared = matches!(outcome, Outcome::Match | Outcome::Mismatch);
            out.push(DiffRecord {
                schema_version: SCHEMA_VERSION,
                exchange_id: id.clone(),
                captured_at_ms,
                experiment: experiment.into(),
                method: method.into(),
                route: route.into(),
                target: target.into(),
                role,
                outcome,
                control_status: (!status_missing).then_some(200),
                target_status: if !compared || status_missing {
                    None
                } else if differences.iter().any(|d| d.kind == DiffKind::Status) {
                    Some(500)
                } else {
                    Some(200)
                },
                control_latency_us: (rng.below(10) != 0).then(|| 500 + rng.below(20_000)),
                target_latency_us: compared.then(|| 800 + rng.below(40_000)),
                fingerprint: fingerprint(&differences),
                differences,
                noise: noise_list,
                detail: detail.map(String::from),
                notes: if rng.below(30) == 0 {
                    vec!["compared as text".into()]
                } else if i % 11 == 4 {
                    // Replays that waited for a slot: both stores count them per endpoint.
                    vec![shadowdiff_model::SATURATED_NOTE.into()]
                } else {
                    vec![]
                },
                side_effects: if method == "POST" && rng.below(4) == 0 {
                    vec!["POST payments.internal/charge".into()]
                } else {
                    vec![]
                },
            });
        }
    }
    out
}

/// Records without a secondary, learned from repeats instead: two endpoints whose control
/// changes some fields between identical requests (`TargetRole::Repeat` records, aggregate paths,
/// no values), one candidate regressing a stable field, and one endpoint never repeated (its
/// differences are inconclusive).
pub(crate) fn repeat_records(n: usize) -> Vec<DiffRecord> {
    let mut rng = Lcg(7);
    let endpoints = [
        ("GET", "/catalog/{id}"),
        ("GET", "/accounts/{id}/summary"),
        ("GET", "/never-repeated/{id}"),
    ];
    let mut out = Vec::new();
    for i in 0..n {
        let (method, route) = endpoints[rng.below(3) as usize];
        let id = format!("rp-{i:05}");
        let captured_at_ms = 1_763_900_000_000 + i as u64 * 3_000;
        let base = DiffRecord {
            schema_version: SCHEMA_VERSION,
            exchange_id: id.clone(),
            captured_at_ms,
            experiment: "exp-r".into(),
            method: method.into(),
            route: route.into(),
            target: "v2".into(),
            role: TargetRole::Candidate,
            outcome: Outcome::Match,
            control_status: Some(200),
            target_status: Some(200),
            control_latency_us: Some(900 + rng.below(5_000)),
            target_latency_us: Some(1_200 + rng.below(5_000)),
            differences: Vec::new(),
            noise: Vec::new(),
            fingerprint: 0,
            detail: None,
            notes: Vec::new(),
            side_effects: Vec::new(),
        };
        let mut differences = Vec::new();
        if rng.below(10) < 9 {
            differences.push(diff("body.served_by", DiffKind::Value));
        }
        if rng.below(24) != 0 {
            differences.push(diff("body.tags", DiffKind::Order));
        }
        differences.push(diff("headers.x-span", DiffKind::Header));
        if route == "/accounts/{id}/summary" && i % 3 == 0 {
            differences.push(diff("body.limits.daily", DiffKind::Value));
        }
        let candidate = DiffRecord {
            fingerprint: fingerprint(&differences),
            outcome: Outcome::Mismatch,
            differences,
            ..base.clone()
        };
        out.push(candidate);
        if route == "/never-repeated/{id}" || rng.below(4) == 0 {
            continue;
        }
        // The control against its own earlier answer to the same request.
        let mut differences = Vec::new();
        if rng.below(10) < 9 {
            differences.push(Difference {
                path: "body.served_by".into(),
                kind: DiffKind::Value,
                control: None,
                candidate: None,
            });
        }
        if rng.below(24) != 0 {
            differences.push(Difference {
                path: "body.tags".into(),
                kind: DiffKind::Order,
                control: None,
                candidate: None,
            });
        }
        differences.push(Difference {
            path: "headers.x-span".into(),
            kind: DiffKind::Header,
            control: None,
            candidate: None,
        });
        out.push(DiffRecord {
            target: shadowdiff_model::REPEAT_TARGET.into(),
            role: TargetRole::Repeat,
            outcome: if differences.is_empty() {
                Outcome::Match
            } else {
                Outcome::Mismatch
            },
            control_latency_us: None,
            target_latency_us: None,
            fingerprint: fingerprint(&differences),
            differences,
            ..base
        });
    }
    out
}

/// The report without the parts that depend on record order (which sample shows a signature).
pub(crate) fn comparable(
    mut r: shadowdiff_store::report::Report,
) -> shadowdiff_store::report::Report {
    for e in &mut r.endpoints {
        e.samples.clear();
        for s in &mut e.signatures {
            s.sample.exchange_id.clear();
            s.sample.diff.clear();
            s.sample.differences.clear();
        }
    }
    r
}
