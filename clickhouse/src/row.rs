use clickhouse::Row;
use serde::{Deserialize, Serialize};
use shadowdiff_model::{
    DiffKind, DiffRecord, Difference, NoiseDifference, Outcome, TargetRole, SCHEMA_VERSION,
};
use std::collections::HashSet;

/// One row of `diff_records`: a [`DiffRecord`] flattened into columns, differences and noise as
/// parallel arrays.
///
/// The `field_*` arrays hold what reports aggregate: each (aggregate path, kind) once per record,
/// first the differences (`field_noise = 0`), then noise not already listed
/// (`field_noise = 1`, with the first noise reason).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct DiffRow {
    /// [`DiffRecord::exchange_id`].
    pub exchange_id: String,
    /// Unix seconds (`DateTime`), the partition key.
    pub captured_at: u32,
    /// [`DiffRecord::captured_at_ms`].
    pub captured_at_ms: u64,
    /// [`DiffRecord::experiment`].
    pub experiment: String,
    /// [`DiffRecord::method`].
    pub method: String,
    /// [`DiffRecord::route`].
    pub route: String,
    /// [`DiffRecord::target`].
    pub target: String,
    /// [`DiffRecord::role`] as text (`candidate`, `secondary`).
    pub role: String,
    /// [`DiffRecord::outcome`] as text (`match`, `mismatch`, …).
    pub outcome: String,
    /// [`DiffRecord::control_status`].
    pub control_status: Option<u16>,
    /// [`DiffRecord::target_status`].
    pub target_status: Option<u16>,
    /// [`DiffRecord::control_latency_us`].
    pub control_latency_us: Option<u64>,
    /// [`DiffRecord::target_latency_us`].
    pub target_latency_us: Option<u64>,
    /// [`DiffRecord::fingerprint`].
    pub fingerprint: u64,
    /// [`DiffRecord::detail`].
    pub detail: Option<String>,
    /// [`DiffRecord::notes`].
    pub notes: Vec<String>,
    /// [`DiffRecord::side_effects`].
    pub side_effects: Vec<String>,
    /// The paths of `differences`, element by element.
    pub diff_path: Vec<String>,
    /// The kinds of `differences`, as text.
    pub diff_kind: Vec<String>,
    /// The control renderings of `differences`.
    pub diff_control: Vec<Option<String>>,
    /// The candidate renderings of `differences`.
    pub diff_candidate: Vec<Option<String>>,
    /// The paths of `noise`, element by element.
    pub noise_path: Vec<String>,
    /// The kinds of `noise`, as text.
    pub noise_kind: Vec<String>,
    /// The control renderings of `noise`.
    pub noise_control: Vec<Option<String>>,
    /// The candidate renderings of `noise`.
    pub noise_candidate: Vec<Option<String>>,
    /// Why each `noise` element is noise.
    pub noise_reason: Vec<String>,
    /// Aggregate paths the reports count, each (path, kind) once.
    pub field_path: Vec<String>,
    /// The kinds of `field_path`, as text.
    pub field_kind: Vec<String>,
    /// 0 for a difference, 1 for noise.
    pub field_noise: Vec<u8>,
    /// The first noise reason, empty for a difference.
    pub field_reason: Vec<String>,
    /// [`DiffRecord::schema_version`].
    pub schema_version: u32,
}

fn parse_role(s: &str) -> TargetRole {
    match s {
        "secondary" => TargetRole::Secondary,
        "control" => TargetRole::Control,
        "repeat" => TargetRole::Repeat,
        _ => TargetRole::Candidate,
    }
}

fn parse_outcome(s: &str) -> Outcome {
    match s {
        "match" => Outcome::Match,
        "mismatch" => Outcome::Mismatch,
        "error" => Outcome::Error,
        "blocked" => Outcome::Blocked,
        _ => Outcome::Skipped,
    }
}

pub(crate) fn parse_kind(s: &str) -> DiffKind {
    match s {
        "type" => DiffKind::Type,
        "missing" => DiffKind::Missing,
        "extra" => DiffKind::Extra,
        "order" => DiffKind::Order,
        "size" => DiffKind::Size,
        "status" => DiffKind::Status,
        "header" => DiffKind::Header,
        "text" => DiffKind::Text,
        "format" => DiffKind::Format,
        _ => DiffKind::Value,
    }
}

impl From<&DiffRecord> for DiffRow {
    fn from(r: &DiffRecord) -> Self {
        let mut field_path = Vec::new();
        let mut field_kind = Vec::new();
        let mut field_noise = Vec::new();
        let mut field_reason = Vec::new();
        let mut counted: HashSet<(String, DiffKind)> = HashSet::new();
        for d in &r.differences {
            let key = (d.aggregate_path(), d.kind);
            if counted.insert(key.clone()) {
                field_path.push(key.0);
                field_kind.push(d.kind.as_str().to_string());
                field_noise.push(0);
                field_reason.push(String::new());
            }
        }
        for n in &r.noise {
            let key = (n.difference.aggregate_path(), n.difference.kind);
            if counted.insert(key.clone()) {
                field_path.push(key.0);
                field_kind.push(n.difference.kind.as_str().to_string());
                field_noise.push(1);
                field_reason.push(n.reason.clone());
            }
        }
        Self {
            exchange_id: r.exchange_id.clone(),
            captured_at: u32::try_from(r.captured_at_ms / 1000).unwrap_or(u32::MAX),
            captured_at_ms: r.captured_at_ms,
            experiment: r.experiment.clone(),
            method: r.method.clone(),
            route: r.route.clone(),
            target: r.target.clone(),
            role: r.role.as_str().to_string(),
            outcome: r.outcome.as_str().to_string(),
            control_status: r.control_status,
            target_status: r.target_status,
            control_latency_us: r.control_latency_us,
            target_latency_us: r.target_latency_us,
            fingerprint: r.fingerprint,
            detail: r.detail.clone(),
            notes: r.notes.clone(),
            side_effects: r.side_effects.clone(),
            diff_path: r.differences.iter().map(|d| d.path.clone()).collect(),
            diff_kind: r
                .differences
                .iter()
                .map(|d| d.kind.as_str().to_string())
                .collect(),
            diff_control: r.differences.iter().map(|d| d.control.clone()).collect(),
            diff_candidate: r.differences.iter().map(|d| d.candidate.clone()).collect(),
            noise_path: r.noise.iter().map(|n| n.difference.path.clone()).collect(),
            noise_kind: r
                .noise
                .iter()
                .map(|n| n.difference.kind.as_str().to_string())
                .collect(),
            noise_control: r
                .noise
                .iter()
                .map(|n| n.difference.control.clone())
                .collect(),
            noise_candidate: r
                .noise
                .iter()
                .map(|n| n.difference.candidate.clone())
                .collect(),
            noise_reason: r.noise.iter().map(|n| n.reason.clone()).collect(),
            field_path,
            field_kind,
            field_noise,
            field_reason,
            schema_version: r.schema_version,
        }
    }
}

impl DiffRow {
    /// The record this row was made from (parallel arrays of unequal length are cut short).
    pub fn to_record(&self) -> DiffRecord {
        let differences = self
            .diff_path
            .iter()
            .zip(&self.diff_kind)
            .zip(self.diff_control.iter().zip(&self.diff_candidate))
            .map(|((path, kind), (control, candidate))| Difference {
                path: path.clone(),
                kind: parse_kind(kind),
                control: control.clone(),
                candidate: candidate.clone(),
            })
            .collect();
        let noise = self
            .noise_path
            .iter()
            .zip(&self.noise_kind)
            .zip(self.noise_control.iter().zip(&self.noise_candidate))
            .zip(&self.noise_reason)
            .map(
                |(((path, kind), (control, candidate)), reason)| NoiseDifference {
                    difference: Difference {
                        path: path.clone(),
                        kind: parse_kind(kind),
                        control: control.clone(),
                        candidate: candidate.clone(),
                    },
                    reason: reason.clone(),
                },
            )
            .collect();
        DiffRecord {
            schema_version: if self.schema_version == 0 {
                SCHEMA_VERSION
            } else {
                self.schema_version
            },
            exchange_id: self.exchange_id.clone(),
            captured_at_ms: self.captured_at_ms,
            experiment: self.experiment.clone(),
            method: self.method.clone(),
            route: self.route.clone(),
            target: self.target.clone(),
            role: parse_role(&self.role),
            outcome: parse_outcome(&self.outcome),
            control_status: self.control_status,
            target_status: self.target_status,
            control_latency_us: self.control_latency_us,
            target_latency_us: self.target_latency_us,
            differences,
            noise,
            fingerprint: self.fingerprint,
            detail: self.detail.clone(),
            notes: self.notes.clone(),
            side_effects: self.side_effects.clone(),
        }
    }
}
