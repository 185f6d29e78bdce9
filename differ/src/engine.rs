//! From a replay result to diff records: compare each target with the control, mask noise.

use crate::compare::compare_responses;
use crate::detect::{volatility, Volatility};
use crate::repeat::RepeatTracker;
use crate::rules::Rules;
use shadowdiff_model::{
    fingerprint, DiffKind, DiffRecord, Difference, HttpResponse, NoiseDifference, Outcome,
    ReplayResult, RouteInferrer, TargetOutcome, TargetRole, SCHEMA_VERSION,
};
use std::collections::HashSet;

/// The differ: [`Differ::diff`] is stateless, any number of them can run side by side. A
/// differ may carry a [`RepeatTracker`] (shared by the threads of one diff stage), which
/// [`Differ::diff_tracked`] feeds.
#[derive(Debug, Clone, Default)]
pub struct Differ {
    rules: Rules,
    routes: RouteInferrer,
    repeats: Option<std::sync::Arc<RepeatTracker>>,
}

impl Differ {
    /// A differ that compares under `rules` and names routes with `routes` (endpoint rules are
    /// looked up by the inferred route).
    pub fn new(rules: Rules, routes: RouteInferrer) -> Self {
        Self {
            rules,
            routes,
            repeats: None,
        }
    }

    /// This differ, learning the control's noise from repeated requests in `tracker`.
    pub fn with_repeats(mut self, tracker: std::sync::Arc<RepeatTracker>) -> Self {
        self.repeats = Some(tracker);
        self
    }

    /// The repeat tracker, when there is one.
    pub fn repeats(&self) -> Option<&RepeatTracker> {
        self.repeats.as_deref()
    }

    /// [`Differ::diff`], plus the control-vs-itself record ([`TargetRole::Repeat`]) when the
    /// tracker has seen an identical request before.
    pub fn diff_tracked(&self, result: &ReplayResult) -> Vec<DiffRecord> {
        let mut records = self.diff(result);
        if let Some(tracker) = &self.repeats {
            let route = match records.first() {
                Some(r) => r.route.clone(),
                None => self.routes.route(&result.exchange.request.uri),
            };
            if let Some(record) = tracker.observe(result, &route, &self.rules) {
                records.push(record);
            }
        }
        records
    }

    /// The rules this differ compares under.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// One record per candidate (and one for the secondary, when there is one).
    pub fn diff(&self, result: &ReplayResult) -> Vec<DiffRecord> {
        let exchange = &result.exchange;
        let route = self.routes.route(&exchange.request.uri);
        let base = DiffRecord {
            schema_version: SCHEMA_VERSION,
            exchange_id: exchange.id.clone(),
            captured_at_ms: exchange.captured_at_ms,
            experiment: exchange.experiment.clone(),
            method: exchange.request.method.clone(),
            route,
            target: String::new(),
            role: TargetRole::Candidate,
            outcome: Outcome::Skipped,
            control_status: None,
            target_status: None,
            control_latency_us: None,
            target_latency_us: None,
            differences: Vec::new(),
            noise: Vec::new(),
            fingerprint: 0,
            detail: None,
            notes: Vec::new(),
            side_effects: result.side_effects.clone(),
        };

        if let Some(reason) = &result.blocked {
            return result
                .candidates
                .iter()
                .map(|name| DiffRecord {
                    target: name.clone(),
                    outcome: Outcome::Blocked,
                    detail: Some(reason.clone()),
                    ..base.clone()
                })
                .collect();
        }

        // Mirror mode has no captured control response: a control replica answered instead.
        let control: Option<&HttpResponse> = exchange.control.as_ref().or_else(|| {
            result
                .outcomes
                .iter()
                .find(|o| o.role == TargetRole::Control)
                .and_then(|o| o.result.as_ref().ok())
        });
        let base = DiffRecord {
            control_status: control.map(|c| c.status),
            control_latency_us: control.map(|c| c.latency_us),
            ..base
        };

        let mut records = Vec::with_capacity(result.outcomes.len());
        let mut secondary_mask: Option<HashSet<(String, shadowdiff_model::DiffKind)>> = None;
        if let Some(secondary) = result
            .outcomes
            .iter()
            .find(|o| o.role == TargetRole::Secondary)
        {
            let record = self.compare_target(&base, control, secondary, None);
            if record.outcome == Outcome::Match || record.outcome == Outcome::Mismatch {
                let mut mask: HashSet<_> = record
                    .differences
                    .iter()
                    .map(|d| (d.path.clone(), d.kind))
                    .collect();
                mask.extend(
                    record
                        .noise
                        .iter()
                        .map(|n| (n.difference.path.clone(), n.difference.kind)),
                );
                secondary_mask = Some(mask);
            }
            records.push(record);
        }
        for outcome in result
            .outcomes
            .iter()
            .filter(|o| o.role == TargetRole::Candidate)
        {
            records.push(self.compare_target(&base, control, outcome, secondary_mask.as_ref()));
        }
        if result.saturated {
            for record in &mut records {
                record
                    .notes
                    .push(shadowdiff_model::SATURATED_NOTE.to_string());
            }
        }
        if result.host_busy {
            // What the replay timed was its own wait for a CPU: no latency beats a wrong one.
            for record in &mut records {
                record.target_latency_us = None;
                record
                    .notes
                    .push(shadowdiff_model::HOST_BUSY_NOTE.to_string());
            }
        }
        records
    }

    fn compare_target(
        &self,
        base: &DiffRecord,
        control: Option<&HttpResponse>,
        target: &TargetOutcome,
        mask: Option<&HashSet<(String, shadowdiff_model::DiffKind)>>,
    ) -> DiffRecord {
        let mut record = DiffRecord {
            target: target.target.clone(),
            role: target.role,
            ..base.clone()
        };
        let response = match &target.result {
            Ok(r) => r,
            Err(e) => {
                record.outcome = Outcome::Error;
                record.detail = Some(format!("{}: {}", e.kind.as_str(), e.message));
                return record;
            }
        };
        record.target_status = Some(response.status);
        record.target_latency_us = Some(response.latency_us);
        let Some(control) = control else {
            record.outcome = Outcome::Skipped;
            record.detail = Some("no control response to compare with".to_string());
            return record;
        };

        let rules = self.rules.for_endpoint(&record.method, &record.route);
        let comparison = compare_responses(control, response, rules);
        record.notes = comparison.notes;
        let (differences, noise) = classify_with(rules, comparison.differences, mask);
        record.fingerprint = fingerprint(&differences);
        record.outcome = if !differences.is_empty() {
            Outcome::Mismatch
        } else if comparison.body_skipped_truncated {
            record.detail = Some("body truncated at capture".to_string());
            Outcome::Skipped
        } else {
            Outcome::Match
        };
        record.differences = differences;
        record.noise = noise;
        record
    }

    /// Splits differences into those that count and those that are noise.
    pub fn classify(
        &self,
        differences: Vec<Difference>,
        mask: Option<&HashSet<(String, shadowdiff_model::DiffKind)>>,
    ) -> (Vec<Difference>, Vec<NoiseDifference>) {
        classify_with(&self.rules, differences, mask)
    }
}

fn classify_with(
    rules: &Rules,
    differences: Vec<Difference>,
    mask: Option<&HashSet<(String, shadowdiff_model::DiffKind)>>,
) -> (Vec<Difference>, Vec<NoiseDifference>) {
    let mut real = Vec::with_capacity(differences.len());
    let mut noise = Vec::new();
    for mut d in differences {
        // The detectors' view of the pair, once. A volatile value in another format is a
        // `format` difference: the secondary masks it only if its own value changed format
        // there too, and no detector calls it noise.
        let volatile = volatility(&d);
        if d.kind == DiffKind::Value && volatile == Volatility::OtherFormat {
            d.kind = DiffKind::Format;
        }
        let reason = if mask.is_some_and(|m| m.contains(&(d.path.clone(), d.kind))) {
            Some("secondary")
        } else if let (true, Volatility::SameFormat(reason)) = (rules.detectors, volatile) {
            Some(reason)
        } else {
            None
        };
        match reason {
            Some(reason) => noise.push(NoiseDifference {
                difference: d,
                reason: reason.to_string(),
            }),
            None => real.push(d),
        }
    }
    (real, noise)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{EndpointRulesConfig, RulesConfig};
    use shadowdiff_model::{Body, Exchange, HttpRequest, Outcome};

    fn response(body: &str) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Body::complete(body.as_bytes().to_vec()),
            latency_us: 1,
        }
    }

    #[test]
    fn a_saturated_replay_marks_every_record_and_others_none() {
        let mut r = result("/x", "{\"a\":1}", "{\"a\":2}");
        r.saturated = true;
        let records = Differ::default().diff(&r);
        assert!(!records.is_empty());
        for record in &records {
            assert!(record
                .notes
                .iter()
                .any(|n| n == shadowdiff_model::SATURATED_NOTE));
        }
        r.saturated = false;
        for record in Differ::default().diff(&r) {
            assert!(record
                .notes
                .iter()
                .all(|n| n != shadowdiff_model::SATURATED_NOTE));
        }
        // Absent on the wire (results written before the field existed): not saturated.
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("saturated"));
        let back: ReplayResult = serde_json::from_str(&json).unwrap();
        assert!(!back.saturated);
    }

    #[test]
    fn a_replay_on_a_busy_host_keeps_its_diff_and_drops_its_latencies() {
        let mut r = result("/x", "{\"a\":1}", "{\"a\":2}");
        let timed = Differ::default().diff(&r);
        assert!(timed.iter().any(|d| d.target_latency_us.is_some()));
        r.host_busy = true;
        let records = Differ::default().diff(&r);
        assert_eq!(records.len(), timed.len());
        for (busy, timed) in records.iter().zip(&timed) {
            assert_eq!(busy.target_latency_us, None);
            assert_eq!(busy.control_latency_us, timed.control_latency_us);
            assert_eq!(
                (busy.outcome, &busy.differences),
                (timed.outcome, &timed.differences)
            );
            assert!(busy
                .notes
                .iter()
                .any(|n| n == shadowdiff_model::HOST_BUSY_NOTE));
        }
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"host_busy\":true"));
        r.host_busy = false;
        assert!(!serde_json::to_string(&r).unwrap().contains("host_busy"));
    }

    fn result(uri: &str, control: &str, candidate: &str) -> ReplayResult {
        ReplayResult {
            schema_version: SCHEMA_VERSION,
            exchange: Exchange {
                schema_version: SCHEMA_VERSION,
                id: "x".into(),
                captured_at_ms: 1,
                source: "test".into(),
                experiment: "e".into(),
                request: HttpRequest {
                    method: "GET".into(),
                    uri: uri.into(),
                    headers: vec![],
                    body: Body::default(),
                },
                control: Some(response(control)),
                redactions: vec![],
                sample_rate: 1.0,
            },
            blocked: None,
            outcomes: vec![TargetOutcome {
                target: "v2".into(),
                role: TargetRole::Candidate,
                result: Ok(response(candidate)),
            }],
            candidates: vec!["v2".into()],
            side_effects: vec![],
            saturated: false,
            host_busy: false,
        }
    }

    #[test]
    fn a_format_change_is_not_masked_by_a_secondary_that_only_changed_the_value() {
        let differ = Differ::default();
        let control = r#"{"at": "2026-11-22T10:00:00.123Z", "n": 1}"#;
        let secondary = r#"{"at": "2026-11-22T10:00:01.456Z", "n": 1}"#;
        let with_secondary = |candidate: &str| {
            let mut r = result("/things/1", control, candidate);
            r.outcomes.push(TargetOutcome {
                target: "secondary".into(),
                role: TargetRole::Secondary,
                result: Ok(response(secondary)),
            });
            differ.diff(&r)
        };
        // Same format, another time: the secondary (and the detector) call it noise.
        let records = with_secondary(r#"{"at": "2026-11-22T10:00:02.789Z", "n": 1}"#);
        let candidate = records
            .iter()
            .find(|r| r.role == TargetRole::Candidate)
            .unwrap();
        assert_eq!(candidate.outcome, Outcome::Match);
        assert_eq!(candidate.noise[0].reason, "secondary");
        // Epoch milliseconds instead: a format difference, whatever the secondary did.
        let records = with_secondary(r#"{"at": 1763805602789, "n": 1}"#);
        let candidate = records
            .iter()
            .find(|r| r.role == TargetRole::Candidate)
            .unwrap();
        assert_eq!(candidate.outcome, Outcome::Mismatch);
        assert_eq!(candidate.differences[0].path, "body.at");
        // A string became a number: that is a type change, reported as such.
        assert_eq!(
            candidate.differences[0].kind,
            shadowdiff_model::DiffKind::Type
        );
        let records = with_secondary(r#"{"at": "2026-11-22 10:00:02", "n": 1}"#);
        let candidate = records
            .iter()
            .find(|r| r.role == TargetRole::Candidate)
            .unwrap();
        assert_eq!(candidate.outcome, Outcome::Mismatch);
        assert_eq!(
            candidate.differences[0].kind,
            shadowdiff_model::DiffKind::Format
        );
        // Without a secondary the detector does not call a format change noise either.
        let alone = differ.diff(&result(
            "/things/1",
            control,
            r#"{"at": "2026-11-22T10:00:02Z", "n": 1}"#,
        ));
        assert_eq!(alone[0].outcome, Outcome::Mismatch);
        assert_eq!(
            alone[0].differences[0].kind,
            shadowdiff_model::DiffKind::Format
        );
    }

    #[test]
    fn endpoint_rules_apply_only_to_their_route() {
        let config = RulesConfig {
            endpoints: vec![EndpointRulesConfig {
                route: "/users/{id}".into(),
                ignore: vec!["body.seen".into()],
                ..EndpointRulesConfig::default()
            }],
            ..RulesConfig::default()
        };
        let differ = Differ::new(Rules::compile(&config).unwrap(), RouteInferrer::default());
        let users = differ.diff(&result("/users/7", r#"{"seen": 1}"#, r#"{"seen": 2}"#));
        assert_eq!(users[0].outcome, Outcome::Match);
        let orders = differ.diff(&result("/orders/7", r#"{"seen": 1}"#, r#"{"seen": 2}"#));
        assert_eq!(orders[0].outcome, Outcome::Mismatch);
        assert_eq!(orders[0].differences[0].path, "body.seen");
    }
}
