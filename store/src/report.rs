//! The report contract (docs/contracts.md#report), computed from diff records.

use crate::stats::{judge_field_among, FieldEvidence, FieldVerdict};
use crate::verdicts::LatencyHistogram;
use serde::{Deserialize, Serialize};
use shadowdiff_model::{DiffKind, DiffRecord, Outcome, TargetRole};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Which records a report covers.
#[derive(Debug, Clone, Default)]
pub struct ReportQuery {
    /// Only this experiment; every experiment when absent.
    pub experiment: Option<String>,
    /// Unix ms, inclusive.
    pub since_ms: Option<u64>,
    /// Unix ms, exclusive.
    pub until_ms: Option<u64>,
    /// Only endpoints whose `METHOD route` contains this text.
    pub endpoint: Option<String>,
    /// Sample diffs kept per endpoint; 0 means the default, 3.
    pub samples: usize,
}

impl ReportQuery {
    /// Whether the record falls in the query (experiment, time window, endpoint filter).
    pub fn matches(&self, r: &DiffRecord) -> bool {
        self.experiment.as_ref().is_none_or(|e| *e == r.experiment)
            && self.since_ms.is_none_or(|s| r.captured_at_ms >= s)
            && self.until_ms.is_none_or(|u| r.captured_at_ms < u)
            && self
                .endpoint
                .as_ref()
                .is_none_or(|e| format!("{} {}", r.method, r.route).contains(e.as_str()))
    }
}

/// The report (docs/contracts.md#report): what CI jobs read and the gate decides on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The experiment asked for, or every experiment in the data, comma-separated.
    pub experiment: String,
    /// Capture times of the records covered.
    pub window: Window,
    /// Counts over all endpoints.
    pub totals: Totals,
    /// One per method × route × candidate, regressions first.
    pub endpoints: Vec<EndpointReport>,
}

/// First and last capture time of the records a report covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// The earliest capture time (RFC 3339, UTC); `None` when nothing matched.
    pub from: Option<String>,
    /// The latest capture time (RFC 3339, UTC); `None` when nothing matched.
    pub to: Option<String>,
}

/// Report-wide counts; all but `exchanges` count exchange × candidate pairs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Distinct exchanges seen.
    pub exchanges: u64,
    /// Exchange × candidate pairs compared.
    pub compared: u64,
    /// Compared pairs with differences that are not noise.
    pub mismatched: u64,
    /// Candidate errors (timeouts, refused connections, …).
    pub errors: u64,
    /// Exchange × candidate pairs the side-effect guard did not replay.
    pub blocked: u64,
    /// Not compared (truncated body, no control response).
    pub skipped: u64,
}

/// One method × route × candidate of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointReport {
    /// HTTP method.
    pub method: String,
    /// Route template, e.g. `/users/{id}`.
    pub route: String,
    /// Candidate target name.
    pub candidate: String,
    /// Exchanges compared with the control.
    pub compared: u64,
    /// Compared exchanges with differences that are not noise.
    pub mismatched: u64,
    /// Candidate errors (timeouts, refused connections, …).
    pub errors: u64,
    /// Exchanges the side-effect guard did not replay.
    pub blocked: u64,
    /// Exchanges not compared (truncated body, no control response).
    pub skipped: u64,
    /// Replays that waited because every replay slot was busy: the candidate (or the secondary)
    /// answered slower than requests arrived, so its latency was measured under the replay's
    /// own load. Raise `replay.concurrency`, lower `replay.max_rate`, or give the target more room.
    #[serde(default)]
    pub saturated: u64,
    /// Replays timed while the replaying process was short of CPU: their latencies were not
    /// used (they measured the replay's own wait), so the latency verdict stands on the rest.
    #[serde(default)]
    pub host_busy: u64,
    /// `regression`, `inconclusive`, `noisy` or `clean`: a regressed field, latency or error
    /// rate makes it a regression; otherwise a field without A/A evidence (`inconclusive`)
    /// makes it inconclusive.
    pub verdict: String,
    /// What made the verdict.
    pub verdict_reason: String,
    /// Fields that differed, regressions first, then by count.
    pub fields: Vec<FieldReport>,
    /// Control × candidate status codes of the compared exchanges.
    pub status: Vec<StatusPair>,
    /// Latency percentiles of the compared exchanges.
    pub latency_ms: Latency,
    /// Whether the candidate is slower than its baseline (the secondary, else the control).
    #[serde(default)]
    pub latency_verdict: crate::verdicts::LatencyVerdict,
    /// Whether the candidate fails (errors, 5xx) more often than the control.
    #[serde(default)]
    pub error_rate: crate::verdicts::ErrorRateVerdict,
    /// Up to `ReportQuery::samples` mismatched exchanges, each of a different signature.
    pub samples: Vec<Sample>,
    /// Most frequent mismatch signatures.
    pub signatures: Vec<Signature>,
    /// Candidate error kinds with counts.
    pub error_kinds: Vec<Count>,
    /// Why the side-effect guard blocked exchanges, with counts.
    pub blocked_reasons: Vec<Count>,
    /// Writes the egress sandbox blocked for this endpoint's candidate.
    pub side_effects: Vec<Count>,
}

impl EndpointReport {
    /// The sentence a report prints when at least 1% of this endpoint's replays waited for a
    /// replay slot (a few waits in a burst do not change what latencies say).
    pub fn saturation_warning(&self) -> Option<String> {
        self.replays_if_one_percent(self.saturated).map(|replays| {
            format!(
                "replay saturated: {} of {replays} replays waited because every replay slot was busy; \
                 the candidate answered slower than requests arrived, so its latency was measured \
                 under the replay's own load (raise replay.concurrency, lower replay.max_rate, or \
                 give the target more room)",
                self.saturated,
            )
        })
    }

    /// The sentence a report prints when at least 1% of this endpoint's replays were timed
    /// while the replaying process was short of CPU.
    pub fn host_busy_warning(&self) -> Option<String> {
        self.replays_if_one_percent(self.host_busy).map(|replays| {
            format!(
                "replay host busy: {} of {replays} replays ran while the replaying process was \
                 short of CPU; their latencies were not used (the latency verdict stands on the \
                 others; give the replay more CPU or run it apart from busy neighbours)",
                self.host_busy,
            )
        })
    }

    /// The endpoint's replays (at least `marked`), when `marked` of them are at least 1%.
    fn replays_if_one_percent(&self, marked: u64) -> Option<u64> {
        let replays = self.compared + self.errors + self.skipped;
        (marked > 0 && marked * 100 >= replays).then(|| replays.max(marked))
    }
}

/// One field (aggregate path × difference kind) of an endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldReport {
    /// Aggregate path (indexes as `[*]`).
    pub path: String,
    /// Difference kind, e.g. `value`, `type`, `missing`.
    pub kind: String,
    /// Exchanges where the field differed between control and candidate.
    pub count: u64,
    /// Exchanges where it differed between control and secondary (or, without a secondary,
    /// repeated identical requests whose control answers differed there), or was classified
    /// noise.
    pub noise_count: u64,
    /// `regression`, `noise` or `inconclusive` ([`FieldVerdict`]).
    pub verdict: String,
    /// Why, with the counts behind it.
    pub reason: String,
    /// What the verdict stands on ([`crate::stats::Evidence`]): `secondary`,
    /// `repeated_requests`, `detector`, `rule` or `none`. Empty in reports written before it
    /// existed.
    #[serde(default)]
    pub evidence: String,
}

/// How often the control answered one status and the candidate another (or the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusPair {
    /// The control's status code.
    pub control: u16,
    /// The candidate's status code.
    pub candidate: u16,
    /// Compared exchanges with this pair.
    pub count: u64,
}

/// Nearest-rank latency percentiles, in milliseconds; 0 when nothing was compared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median control latency.
    pub control_p50: f64,
    /// 99th percentile control latency.
    pub control_p99: f64,
    /// Median candidate latency.
    pub candidate_p50: f64,
    /// 99th percentile candidate latency.
    pub candidate_p99: f64,
}

/// One mismatched exchange shown as an example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The exchange, to look it up in the store.
    pub exchange_id: String,
    /// The differences as text (see [`render_diff`]), noise lines marked `~`.
    pub diff: String,
    /// The sample's differences as structured data (exact paths), for side-by-side views.
    #[serde(default)]
    pub differences: Vec<shadowdiff_model::Difference>,
}

/// A mismatch fingerprint: exchanges that differ at the same fields in the same ways.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    /// Hex of the fingerprint.
    pub fingerprint: String,
    /// Mismatched exchanges with this fingerprint.
    pub count: u64,
    /// The sorted `path kind` set the fingerprint stands for.
    pub fields: Vec<String>,
    /// The first exchange seen with this fingerprint.
    pub sample: Sample,
}

/// A name with how often it occurred, most frequent first in lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// The error kind, blocking reason or side effect.
    pub name: String,
    /// How many exchanges it concerned.
    pub count: u64,
}

/// Renders a record's differences as the sample diff text.
pub fn render_diff(r: &DiffRecord) -> String {
    let mut out = String::new();
    let quote = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".to_string());
    for d in &r.differences {
        out.push_str(&format!(
            "{} [{}]: {} → {}\n",
            d.path,
            d.kind.as_str(),
            quote(&d.control),
            quote(&d.candidate)
        ));
    }
    for n in &r.noise {
        let d = &n.difference;
        out.push_str(&format!(
            "~ {} [{}] noise ({}): {} → {}\n",
            d.path,
            d.kind.as_str(),
            n.reason,
            quote(&d.control),
            quote(&d.candidate)
        ));
    }
    for note in &r.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out.trim_end().to_string()
}

#[derive(Default)]
struct FieldAcc {
    raw: u64,
    unmasked: u64,
    noise_reasons: BTreeMap<String, u64>,
}

#[derive(Default)]
struct EndpointAcc {
    compared: u64,
    mismatched: u64,
    errors: u64,
    blocked: u64,
    skipped: u64,
    saturated: u64,
    host_busy: u64,
    fields: BTreeMap<(String, DiffKind), FieldAcc>,
    status: BTreeMap<(u16, u16), u64>,
    control_latency: Vec<u64>,
    candidate_latency: Vec<u64>,
    samples: Vec<Sample>,
    signatures: HashMap<u64, (u64, Vec<String>, Sample)>,
    error_kinds: BTreeMap<String, u64>,
    blocked_reasons: BTreeMap<String, u64>,
    side_effects: BTreeMap<String, u64>,
}

#[derive(Default)]
struct SecondaryAcc {
    compared: u64,
    fields: HashMap<(String, DiffKind), u64>,
    latency: LatencyHistogram,
}

/// Which of two records for the same (exchange, target, role) counts, when an exchange was
/// delivered, replayed and diffed more than once (at-least-once delivery) and the copies differ:
/// the smaller by this order. It looks at the records only, never at when or in which order
/// they arrived, so every store and every reader picks the same one: the most severe outcome
/// (mismatch, then error, match, blocked, skipped), then the lowest fingerprint, target status
/// and target latency. A regression seen in one of the copies is not hidden by a clean one.
/// ClickHouse applies the same order before `LIMIT 1 BY` (`clickhouse/src/report.rs`).
pub fn redelivery_order(a: &DiffRecord, b: &DiffRecord) -> std::cmp::Ordering {
    fn key(r: &DiffRecord) -> (u8, u64, u16, u64) {
        let rank = match r.outcome {
            Outcome::Mismatch => 0,
            Outcome::Error => 1,
            Outcome::Match => 2,
            Outcome::Blocked => 3,
            Outcome::Skipped => 4,
        };
        (
            rank,
            r.fingerprint,
            r.target_status.unwrap_or(0),
            r.target_latency_us.unwrap_or(0),
        )
    }
    key(a).cmp(&key(b))
}

/// Builds the report from records. Each (exchange, target, role) counts once, however often it
/// was delivered; when its copies differ, [`redelivery_order`] picks the one that counts.
pub fn build_report<'a>(
    records: impl IntoIterator<Item = &'a DiffRecord>,
    query: &ReportQuery,
) -> Report {
    let records: Vec<&DiffRecord> = records.into_iter().filter(|r| query.matches(r)).collect();
    // The copy that counts for each key; the records are then read in their stored order.
    let mut chosen: HashMap<(&str, &str, TargetRole), &DiffRecord> = HashMap::new();
    for &r in &records {
        chosen
            .entry((&r.exchange_id, &r.target, r.role))
            .and_modify(|c| {
                if redelivery_order(r, c).is_lt() {
                    *c = r;
                }
            })
            .or_insert(r);
    }
    let mut seen: HashSet<(&str, &str, TargetRole)> = HashSet::new();
    let mut exchanges: HashSet<&str> = HashSet::new();
    let mut experiments: BTreeMap<&str, ()> = BTreeMap::new();
    let mut endpoints: BTreeMap<(String, String, String), EndpointAcc> = BTreeMap::new();
    let mut secondaries: HashMap<(String, String), SecondaryAcc> = HashMap::new();
    let mut repeats: HashMap<(String, String), SecondaryAcc> = HashMap::new();
    let (mut from, mut to) = (u64::MAX, 0u64);
    let mut totals = Totals::default();
    let max_samples = if query.samples == 0 { 3 } else { query.samples };

    for r in records {
        let key = (r.exchange_id.as_str(), r.target.as_str(), r.role);
        if !chosen.get(&key).is_some_and(|c| std::ptr::eq(*c, r)) || !seen.insert(key) {
            continue;
        }
        exchanges.insert(&r.exchange_id);
        experiments.insert(&r.experiment, ());
        from = from.min(r.captured_at_ms);
        to = to.max(r.captured_at_ms);
        let endpoint_key = (r.method.clone(), r.route.clone());

        if matches!(r.role, TargetRole::Secondary | TargetRole::Repeat) {
            if matches!(r.outcome, Outcome::Match | Outcome::Mismatch) {
                // The control against the secondary, or against its own earlier answer to an
                // identical request: both are A/A, counted apart.
                let acc = if r.role == TargetRole::Secondary {
                    secondaries.entry(endpoint_key).or_default()
                } else {
                    repeats.entry(endpoint_key).or_default()
                };
                acc.compared += 1;
                if let Some(us) = r.target_latency_us {
                    acc.latency.add(us);
                }
                let mut keys: HashSet<(String, DiffKind)> = HashSet::new();
                for d in r
                    .differences
                    .iter()
                    .chain(r.noise.iter().map(|n| &n.difference))
                {
                    keys.insert((d.aggregate_path(), d.kind));
                }
                for k in keys {
                    *acc.fields.entry(k).or_default() += 1;
                }
            }
            continue;
        }

        let acc = endpoints
            .entry((endpoint_key.0, endpoint_key.1, r.target.clone()))
            .or_default();
        match r.outcome {
            Outcome::Match | Outcome::Mismatch => {
                acc.compared += 1;
                totals.compared += 1;
                if r.outcome == Outcome::Mismatch {
                    acc.mismatched += 1;
                    totals.mismatched += 1;
                }
                if let (Some(c), Some(t)) = (r.control_status, r.target_status) {
                    *acc.status.entry((c, t)).or_default() += 1;
                }
                acc.control_latency.extend(r.control_latency_us);
                acc.candidate_latency.extend(r.target_latency_us);
                record_fields(acc, r, max_samples);
            }
            Outcome::Error => {
                acc.errors += 1;
                totals.errors += 1;
                let kind = r
                    .detail
                    .as_deref()
                    .and_then(|d| d.split(':').next())
                    .unwrap_or("error");
                *acc.error_kinds.entry(kind.to_string()).or_default() += 1;
            }
            Outcome::Blocked => {
                acc.blocked += 1;
                totals.blocked += 1;
                let reason = r.detail.clone().unwrap_or_else(|| "blocked".to_string());
                *acc.blocked_reasons.entry(reason).or_default() += 1;
            }
            Outcome::Skipped => {
                acc.skipped += 1;
                totals.skipped += 1;
            }
        }
        for effect in &r.side_effects {
            *acc.side_effects.entry(effect.clone()).or_default() += 1;
        }
        if r.notes
            .iter()
            .any(|n| n == shadowdiff_model::SATURATED_NOTE)
        {
            acc.saturated += 1;
        }
        if r.notes
            .iter()
            .any(|n| n == shadowdiff_model::HOST_BUSY_NOTE)
        {
            acc.host_busy += 1;
        }
    }
    totals.exchanges = exchanges.len() as u64;

    let mut out: Vec<EndpointReport> = endpoints
        .into_iter()
        .map(|((method, route, candidate), acc)| {
            let secondary = secondaries.get(&(method.clone(), route.clone()));
            let repeat = repeats.get(&(method.clone(), route.clone()));
            finish_endpoint(method, route, candidate, acc, secondary, repeat)
        })
        .collect();
    out.sort_by(|a, b| {
        severity(&a.verdict)
            .cmp(&severity(&b.verdict))
            .then(b.mismatched.cmp(&a.mismatched))
            .then(a.route.cmp(&b.route))
            .then(a.method.cmp(&b.method))
            .then(a.candidate.cmp(&b.candidate))
    });

    let fmt = |ms: u64| {
        chrono::DateTime::from_timestamp_millis(ms as i64)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
    };
    Report {
        experiment: query
            .experiment
            .clone()
            .unwrap_or_else(|| experiments.keys().copied().collect::<Vec<_>>().join(",")),
        window: Window {
            from: if to == 0 { None } else { fmt(from) },
            to: if to == 0 { None } else { fmt(to) },
        },
        totals,
        endpoints: out,
    }
}

/// How reports order endpoint verdicts: regression, inconclusive, noisy, then clean. Every
/// store sorts with it.
pub fn severity(verdict: &str) -> u8 {
    match verdict {
        "regression" => 0,
        "inconclusive" => 1,
        "noisy" => 2,
        _ => 3,
    }
}

fn field_rank(verdict: &str) -> u8 {
    match verdict {
        "regression" => 0,
        "inconclusive" => 1,
        _ => 2,
    }
}

fn record_fields(acc: &mut EndpointAcc, r: &DiffRecord, max_samples: usize) {
    // Count each (path, kind) once per exchange, however many array elements differed.
    let mut counted: HashSet<(String, DiffKind)> = HashSet::new();
    for d in &r.differences {
        let key = (d.aggregate_path(), d.kind);
        if counted.insert(key.clone()) {
            let f = acc.fields.entry(key).or_default();
            f.raw += 1;
            f.unmasked += 1;
        }
    }
    for n in &r.noise {
        let key = (n.difference.aggregate_path(), n.difference.kind);
        if counted.insert(key.clone()) {
            let f = acc.fields.entry(key).or_default();
            f.raw += 1;
            *f.noise_reasons.entry(n.reason.clone()).or_default() += 1;
        }
    }
    if r.outcome == Outcome::Mismatch {
        let sample = Sample {
            exchange_id: r.exchange_id.clone(),
            diff: render_diff(r),
            differences: r.differences.clone(),
        };
        let sig = acc.signatures.entry(r.fingerprint).or_insert_with(|| {
            let mut fields: Vec<String> = r
                .differences
                .iter()
                .map(|d| format!("{} {}", d.aggregate_path(), d.kind.as_str()))
                .collect();
            fields.sort();
            fields.dedup();
            (0, fields, sample.clone())
        });
        sig.0 += 1;
        // Samples prefer distinct signatures, so three samples show three causes.
        if acc.samples.len() < max_samples && sig.0 == 1 {
            acc.samples.push(sample);
        }
    }
}

/// One field's row: the verdict of `stats::judge_field_among` and the counts a reader sees.
/// `family`: how many fields of the endpoint differed beyond per-request noise
/// ([`tested_fields`]). Every store builds field rows with this, so their reports agree.
pub fn field_report(
    path: &str,
    kind: DiffKind,
    evidence: FieldEvidence,
    top_noise_reason: Option<&str>,
    family: usize,
) -> FieldReport {
    let (verdict, basis, reason) = judge_field_among(evidence, top_noise_reason, family);
    // The A/A count the verdict was judged against: the secondary's, else the repeats'.
    let aa = if evidence.noise_compared > 0 {
        evidence.noise
    } else {
        evidence.repeat
    };
    FieldReport {
        path: path.to_string(),
        kind: kind.as_str().to_string(),
        count: evidence.raw,
        noise_count: aa.max(evidence.raw - evidence.unmasked),
        verdict: verdict.as_str().to_string(),
        reason,
        evidence: basis.as_str().to_string(),
    }
}

/// How many of an endpoint's fields (their unmasked difference counts) are judged by a rate
/// test: the family size of [`field_report`].
pub fn tested_fields(unmasked: impl IntoIterator<Item = u64>) -> usize {
    unmasked.into_iter().filter(|&n| n > 0).count().max(1)
}

/// Orders an endpoint's fields (regressions first, then inconclusive ones, then by count) and
/// decides its verdict and the reason for it. Shared by every store.
///
/// Any regressed field ⇒ `regression`; else any inconclusive field (it differs and nothing
/// compared the control with itself there) ⇒ `inconclusive`; else any field ⇒ `noisy`; else
/// `clean`.
pub fn endpoint_verdict(
    fields: &mut [FieldReport],
    compared: u64,
    errors: u64,
) -> (String, String) {
    fields.sort_by(|a, b| {
        field_rank(&a.verdict)
            .cmp(&field_rank(&b.verdict))
            .then(b.count.cmp(&a.count))
            .then(a.path.cmp(&b.path))
    });
    let regressions: Vec<&FieldReport> = fields
        .iter()
        .filter(|f| f.verdict == FieldVerdict::Regression.as_str())
        .collect();
    let inconclusive: Vec<&FieldReport> = fields
        .iter()
        .filter(|f| f.verdict == FieldVerdict::Inconclusive.as_str())
        .collect();
    let (verdict, reason) = if let Some(first) = regressions.first() {
        (
            "regression",
            format!(
                "{} field(s) regressed, e.g. {} [{}]: {}",
                regressions.len(),
                first.path,
                first.kind,
                first.reason
            ),
        )
    } else if let Some(first) = inconclusive.first() {
        (
            "inconclusive",
            format!(
                "{} field(s) differ without A/A evidence (no secondary, and no repeated \
                 identical request showed the control stable there), e.g. {} [{}]: {}",
                inconclusive.len(),
                first.path,
                first.kind,
                first.reason
            ),
        )
    } else if !fields.is_empty() {
        (
            "noisy",
            format!("{} field(s) differ, all classified as noise", fields.len()),
        )
    } else if compared > 0 {
        (
            "clean",
            format!("{compared} exchanges compared, no differences"),
        )
    } else {
        ("clean", "nothing compared".to_string())
    };
    let reason = if errors > 0 {
        format!("{reason}; {errors} candidate error(s)")
    } else {
        reason
    };
    (verdict.to_string(), reason)
}

fn finish_endpoint(
    method: String,
    route: String,
    candidate: String,
    acc: EndpointAcc,
    secondary: Option<&SecondaryAcc>,
    repeat: Option<&SecondaryAcc>,
) -> EndpointReport {
    let family = tested_fields(acc.fields.values().map(|f| f.unmasked));
    let mut fields: Vec<FieldReport> = acc
        .fields
        .iter()
        .map(|((path, kind), f)| {
            let aa = secondary.map_or(0, |s| {
                s.fields.get(&(path.clone(), *kind)).copied().unwrap_or(0)
            });
            let top_reason = f
                .noise_reasons
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(r, _)| r.as_str());
            field_report(
                path,
                *kind,
                FieldEvidence {
                    raw: f.raw,
                    unmasked: f.unmasked,
                    compared: acc.compared,
                    noise: aa,
                    noise_compared: secondary.map_or(0, |s| s.compared),
                    repeat: repeat.map_or(0, |s| {
                        s.fields.get(&(path.clone(), *kind)).copied().unwrap_or(0)
                    }),
                    repeat_compared: repeat.map_or(0, |s| s.compared),
                },
                top_reason,
                family,
            )
        })
        .collect();
    let (verdict, verdict_reason) = endpoint_verdict(&mut fields, acc.compared, acc.errors);
    let histogram = |latencies: &[u64]| {
        let mut h = LatencyHistogram::default();
        latencies.iter().for_each(|&us| h.add(us));
        h
    };
    let latency_verdict = crate::verdicts::latency_verdict(
        &histogram(&acc.control_latency),
        &histogram(&acc.candidate_latency),
        secondary.map(|s| &s.latency),
        crate::verdicts::DEFAULT_LATENCY_RATIO,
    );
    let status: Vec<StatusPair> = acc
        .status
        .iter()
        .map(|(&(control, candidate), &count)| StatusPair {
            control,
            candidate,
            count,
        })
        .collect();
    let error_rate = crate::verdicts::error_rate_from(&status, acc.compared, acc.errors);
    let (verdict, verdict_reason) = crate::verdicts::with_endpoint_verdicts(
        verdict,
        verdict_reason,
        &latency_verdict,
        &error_rate,
    );

    let mut signatures: Vec<Signature> = acc
        .signatures
        .into_iter()
        .map(|(fp, (count, fields, sample))| Signature {
            fingerprint: format!("{fp:016x}"),
            count,
            fields,
            sample,
        })
        .collect();
    signatures.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    signatures.truncate(5);

    let counts = |m: BTreeMap<String, u64>| {
        let mut v: Vec<Count> = m
            .into_iter()
            .map(|(name, count)| Count { name, count })
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
        v
    };

    EndpointReport {
        method,
        route,
        candidate,
        compared: acc.compared,
        mismatched: acc.mismatched,
        errors: acc.errors,
        blocked: acc.blocked,
        saturated: acc.saturated,
        host_busy: acc.host_busy,
        skipped: acc.skipped,
        verdict,
        verdict_reason,
        fields,
        status,
        latency_verdict,
        error_rate,
        latency_ms: Latency {
            control_p50: percentile_ms(acc.control_latency.clone(), 0.50),
            control_p99: percentile_ms(acc.control_latency, 0.99),
            candidate_p50: percentile_ms(acc.candidate_latency.clone(), 0.50),
            candidate_p99: percentile_ms(acc.candidate_latency, 0.99),
        },
        samples: acc.samples,
        signatures,
        error_kinds: counts(acc.error_kinds),
        blocked_reasons: counts(acc.blocked_reasons),
        side_effects: counts(acc.side_effects),
    }
}

/// Nearest-rank percentile of microsecond samples, in milliseconds (3 decimals).
pub fn percentile_ms(mut us: Vec<u64>, q: f64) -> f64 {
    if us.is_empty() {
        return 0.0;
    }
    us.sort_unstable();
    let rank = ((q * us.len() as f64).ceil() as usize).clamp(1, us.len());
    (us[rank - 1] as f64 / 1000.0 * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowdiff_model::{Difference, NoiseDifference, SCHEMA_VERSION};

    fn rec(
        id: &str,
        target: &str,
        role: TargetRole,
        diffs: &[(&str, DiffKind)],
        noise: &[&str],
    ) -> DiffRecord {
        let differences: Vec<Difference> = diffs
            .iter()
            .map(|(p, k)| Difference {
                path: p.to_string(),
                kind: *k,
                control: Some("1".into()),
                candidate: Some("2".into()),
            })
            .collect();
        DiffRecord {
            schema_version: SCHEMA_VERSION,
            exchange_id: id.into(),
            captured_at_ms: 1_763_805_600_000,
            experiment: "e".into(),
            method: "GET".into(),
            route: "/users/{id}".into(),
            target: target.into(),
            role,
            outcome: if differences.is_empty() {
                Outcome::Match
            } else {
                Outcome::Mismatch
            },
            control_status: Some(200),
            target_status: Some(200),
            control_latency_us: Some(1_000),
            target_latency_us: Some(3_000),
            fingerprint: shadowdiff_model::fingerprint(&differences),
            differences,
            noise: noise
                .iter()
                .map(|p| NoiseDifference {
                    difference: Difference {
                        path: p.to_string(),
                        kind: DiffKind::Value,
                        control: None,
                        candidate: None,
                    },
                    reason: "secondary".into(),
                })
                .collect(),
            detail: None,
            notes: vec![],
            side_effects: vec![],
        }
    }

    #[test]
    fn duplicates_count_once_and_verdicts_follow_fields() {
        let r1 = rec(
            "1",
            "v2",
            TargetRole::Candidate,
            &[("body.items[0].price", DiffKind::Value)],
            &["body.ts"],
        );
        let r2 = rec(
            "2",
            "v2",
            TargetRole::Candidate,
            &[("body.items[3].price", DiffKind::Value)],
            &["body.ts"],
        );
        let r3 = rec("3", "v2", TargetRole::Candidate, &[], &["body.ts"]);
        let r4 = rec(
            "4",
            "v2",
            TargetRole::Candidate,
            &[("body.items[1].price", DiffKind::Value)],
            &["body.ts"],
        );
        let mut records = vec![r1.clone(), r1, r2, r3, r4];
        let without_repeat = build_report(&records, &ReportQuery::default());
        let e = &without_repeat.endpoints[0];
        assert_eq!(e.verdict, "inconclusive", "{}", e.verdict_reason);
        assert_eq!(
            (e.fields[0].verdict.as_str(), e.fields[0].evidence.as_str()),
            ("inconclusive", "none")
        );
        // The control answered identical requests the same way before: the price is stable.
        for id in ["1", "2", "3", "4"] {
            records.push(rec(
                id,
                shadowdiff_model::REPEAT_TARGET,
                TargetRole::Repeat,
                &[],
                &[],
            ));
        }
        let report = build_report(&records, &ReportQuery::default());
        assert_eq!(report.totals.exchanges, 4);
        assert_eq!(report.totals.compared, 4);
        assert_eq!(report.totals.mismatched, 3);
        let e = &report.endpoints[0];
        assert_eq!(e.verdict, "regression");
        let price = e
            .fields
            .iter()
            .find(|f| f.path == "body.items[*].price")
            .unwrap();
        assert_eq!(
            (price.count, price.verdict.as_str(), price.evidence.as_str()),
            (3, "regression", "repeated_requests")
        );
        let ts = e.fields.iter().find(|f| f.path == "body.ts").unwrap();
        assert_eq!(
            (
                ts.count,
                ts.noise_count,
                ts.verdict.as_str(),
                ts.evidence.as_str()
            ),
            (4, 4, "noise", "secondary")
        );
        assert_eq!(e.signatures[0].count, 3);
        assert_eq!(e.latency_ms.candidate_p99, 3.0);
    }

    #[test]
    fn noise_only_endpoint_is_noisy_and_empty_is_clean() {
        let records = vec![rec("1", "v2", TargetRole::Candidate, &[], &["body.ts"])];
        assert_eq!(
            build_report(&records, &ReportQuery::default()).endpoints[0].verdict,
            "noisy"
        );
        let records = vec![rec("1", "v2", TargetRole::Candidate, &[], &[])];
        assert_eq!(
            build_report(&records, &ReportQuery::default()).endpoints[0].verdict,
            "clean"
        );
    }

    #[test]
    fn repeats_the_control_changed_make_a_field_noise_and_are_not_candidates() {
        let mut records = Vec::new();
        for i in 0..25 {
            let id = i.to_string();
            records.push(rec(
                &id,
                "v2",
                TargetRole::Candidate,
                &[
                    ("body.host", DiffKind::Value),
                    ("body.total", DiffKind::Value),
                ],
                &[],
            ));
            // The control changes the host between identical requests, never the total.
            records.push(rec(
                &id,
                shadowdiff_model::REPEAT_TARGET,
                TargetRole::Repeat,
                &[("body.host", DiffKind::Value)],
                &[],
            ));
        }
        let report = build_report(&records, &ReportQuery::default());
        assert_eq!(report.endpoints.len(), 1, "repeat records are no candidate");
        assert_eq!(report.totals.compared, 25);
        let e = &report.endpoints[0];
        let field = |p: &str| e.fields.iter().find(|f| f.path == p).unwrap();
        assert_eq!(
            (
                field("body.host").verdict.as_str(),
                field("body.host").noise_count
            ),
            ("noise", 25)
        );
        assert_eq!(field("body.host").evidence, "repeated_requests");
        assert_eq!(field("body.total").verdict, "regression");
        assert_eq!(e.verdict, "regression");
        // The latency baseline is not the repeats (they carry no latency).
        assert_eq!(e.latency_verdict.baseline, "control");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(v.clone(), 0.5), 50.0);
        assert_eq!(percentile_ms(v, 0.99), 99.0);
    }
}
