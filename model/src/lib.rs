//! The records that flow between shadowdiff's stages.
//!
//! These are the versioned record contracts of `docs/contracts.md` (fields, JSON examples,
//! versioning rule):
//! 1. [`Exchange`]: capture → replayer (request + control response).
//! 2. [`ReplayResult`]: replayer → differ (the exchange plus one [`TargetOutcome`] per target).
//! 3. [`DiffRecord`]: differ → store (one per exchange × target).
//!
//! Every record carries [`SCHEMA_VERSION`]; readers reject versions they do not know.

mod body;
mod http_headers;
mod record_json;
pub mod redact;
mod route;
pub mod secrets;

pub use body::{body_hash, fnv1a64, Body};
use body::{fnv1a64_extend, FNV1A64_OFFSET};
pub use http_headers::{
    headers_from_http, headers_to_http, is_hop_by_hop, strip_hop_by_hop, HOP_BY_HOP,
};
pub use record_json::{encode_record_into, json_string_specials};
pub use route::{infer_route, is_uuid, RouteInferrer, RoutePattern, RoutePatternError};

use serde::{Deserialize, Serialize};

/// Version of the exchange / result / diff record envelopes.
pub const SCHEMA_VERSION: u32 = 1;

/// Ordered, multi-valued HTTP headers as (lower-case name, value) pairs.
///
/// Values that are not valid UTF-8 are kept lossily; they are only diffed and replayed.
pub type Headers = Vec<(String, String)>;

/// A captured HTTP request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// The request method (`GET`, `POST`, …).
    pub method: String,
    /// Path and query, as the client sent them (`/users/7?x=1`).
    pub uri: String,
    /// The request headers, in the order they came.
    pub headers: Headers,
    /// The request body.
    pub body: Body,
}

/// A captured or replayed HTTP response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers, in the order they came.
    pub headers: Headers,
    /// The response body.
    pub body: Body,
    /// Time from sending the request to the end of the response body, in microseconds.
    pub latency_us: u64,
}

/// The exchange contract (docs/contracts.md#exchange): one request as it reached production,
/// plus the production answer when known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// Always [`SCHEMA_VERSION`] when written by this build.
    pub schema_version: u32,
    /// Time-sortable id (UUIDv7); also the Kafka key.
    pub id: String,
    /// Unix milliseconds when capture saw the request.
    pub captured_at_ms: u64,
    /// Which tap produced it (`tee`, `mirror`, `envoy-tap`, `goreplay`).
    pub source: String,
    /// Name of the experiment this exchange belongs to.
    pub experiment: String,
    /// The request as it reached production.
    pub request: HttpRequest,
    /// Absent in mirror mode, where the replayer asks a control replica.
    pub control: Option<HttpResponse>,
    /// Header names, query parameters and body paths replaced before the record left the tap
    /// (`request.headers.x-api-key`, `request.query.token`, `request.body.user.password`).
    #[serde(default)]
    pub redactions: Vec<String>,
    /// Fraction of traffic this tap keeps (1.0 = everything).
    pub sample_rate: f64,
}

impl Exchange {
    /// Header value of the request (first match, case-insensitive name).
    pub fn request_header(&self, name: &str) -> Option<&str> {
        header_value(&self.request.headers, name)
    }
}

/// First value of `name` in `headers`, comparing names case-insensitively.
pub fn header_value<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// What a replay target is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetRole {
    /// A build under test.
    Candidate,
    /// A second instance of the control build, used to measure noise (A/A).
    Secondary,
    /// A control replica, asked in mirror mode where the tap saw no response.
    Control,
    /// The control compared with its own earlier answer to an identical request (an A/A
    /// comparison learned from repeated traffic; target `control (repeat)`). Only the differ
    /// makes these records; they carry aggregate paths and no values.
    Repeat,
}

impl TargetRole {
    /// The role's name in records and reports (`candidate`, `secondary`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Candidate => "candidate",
            Self::Secondary => "secondary",
            Self::Control => "control",
            Self::Repeat => "repeat",
        }
    }
}

/// The target name of [`TargetRole::Repeat`] records.
pub const REPEAT_TARGET: &str = "control (repeat)";

/// Why a target gave no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetErrorKind {
    /// No complete answer within the replay timeout.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The request could not be built or sent, or the response was broken or cut off.
    Protocol,
    /// The response body was over a size limit. Part of the contract; this build's replayer
    /// keeps a truncated body instead.
    BodyTooLarge,
}

impl TargetErrorKind {
    /// The kind's name in records, metrics and details (`body_too_large`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Protocol => "protocol",
            Self::BodyTooLarge => "body_too_large",
        }
    }
}

/// Why a target gave no response, as recorded in a [`TargetOutcome`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetError {
    /// The class of failure.
    pub kind: TargetErrorKind,
    /// The failure as text, for people.
    pub message: String,
}

/// One target's answer to a replayed request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetOutcome {
    /// The target's configured name.
    pub target: String,
    /// What the target is for.
    pub role: TargetRole,
    /// The target's response, or why there was none.
    pub result: Result<HttpResponse, TargetError>,
}

/// The replay result contract (docs/contracts.md#replay-result): the exchange plus what every
/// target answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayResult {
    /// Always [`SCHEMA_VERSION`] when written by this build.
    pub schema_version: u32,
    /// The exchange that was replayed, as it was read.
    pub exchange: Exchange,
    /// Set when the side-effect guard refused to replay the request at all.
    pub blocked: Option<String>,
    /// One per target asked; empty when `blocked`.
    pub outcomes: Vec<TargetOutcome>,
    /// Names of the candidates the request was meant for (also when blocked).
    pub candidates: Vec<String>,
    /// Side effects the egress sandbox blocked for this exchange (`METHOD host/path`).
    #[serde(default)]
    pub side_effects: Vec<String>,
    /// Every replay slot was busy when this exchange was due, so it waited: the targets answer
    /// slower than requests arrive, and latencies were measured under the replay's own load.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub saturated: bool,
    /// The replaying process itself was short of CPU while this exchange was in flight (its
    /// runtime woke up late), so the targets' latencies measured that wait too and are not
    /// used: records carry [`HOST_BUSY_NOTE`] and no target latency.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_busy: bool,
}

/// The note a diff record carries when its replay was [`ReplayResult::saturated`]; reports count
/// records with it.
pub const SATURATED_NOTE: &str =
    "replay saturated: every replay slot was busy when this exchange was due";

/// The note a diff record carries when its replay was [`ReplayResult::host_busy`]: the target's
/// latency was not kept. Reports count records with it.
pub const HOST_BUSY_NOTE: &str =
    "replay host busy: the replaying process was short of CPU, so this latency was not timed";

/// Kinds of difference (the diff record contract, docs/contracts.md#diff-record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// Same type, different value.
    Value,
    /// Different JSON types (number vs string, …).
    Type,
    /// Present in the control, absent in the candidate.
    Missing,
    /// Absent in the control, present in the candidate.
    Extra,
    /// Same elements, different order.
    Order,
    /// Arrays of different length.
    Size,
    /// Different status codes.
    Status,
    /// A header's value differs, or it is present on one side only.
    Header,
    /// Non-JSON bodies that differ.
    Text,
    /// Both values are of a recognised volatile kind (a timestamp, a UUID, a random token) but
    /// of different formats: a separator, a precision, a zone designator, epoch seconds against
    /// milliseconds, a case or a length changed. Never noise by detector: clients parse formats.
    Format,
}

impl DiffKind {
    /// The kind's name in records and reports (`value`, `type`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Value => "value",
            Self::Type => "type",
            Self::Missing => "missing",
            Self::Extra => "extra",
            Self::Order => "order",
            Self::Size => "size",
            Self::Status => "status",
            Self::Header => "header",
            Self::Text => "text",
            Self::Format => "format",
        }
    }
}

/// One difference at one path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Difference {
    /// Exact path, array indexes kept: `body.items[3].price`.
    pub path: String,
    /// What kind of difference it is.
    pub kind: DiffKind,
    /// Short rendering of the control's value (`None` when missing).
    pub control: Option<String>,
    /// Short rendering of the candidate's value (`None` when missing).
    pub candidate: Option<String>,
}

impl Difference {
    /// The path with array indexes collapsed, used for aggregation: `body.items[*].price`.
    pub fn aggregate_path(&self) -> String {
        collapse_indexes(&self.path)
    }
}

/// `body.items[3].tags[0]` → `body.items[*].tags[*]`.
pub fn collapse_indexes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    collapse_indexes_with(path, |piece| out.push_str(piece));
    out
}

/// [`collapse_indexes`], handing its output to `emit` in pieces instead of building it (`[` and
/// digits are ASCII, never inside a UTF-8 sequence: the pieces are cut at char boundaries).
fn collapse_indexes_with<'p>(path: &'p str, mut emit: impl FnMut(&'p str)) {
    let bytes = path.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        i += 1;
        if bytes[i - 1] == b'[' && bytes.get(i).is_some_and(u8::is_ascii_digit) {
            emit(path.get(run..i).unwrap_or_default());
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            emit("*");
            run = i;
        }
    }
    emit(path.get(run..).unwrap_or_default());
}

/// A difference that was classified as noise, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NoiseDifference {
    /// The difference itself (its fields are inlined in JSON).
    #[serde(flatten)]
    pub difference: Difference,
    /// `secondary` (A/A mask), `detector:<name>` or `rule:<name>`.
    pub reason: String,
}

/// Outcome of comparing one exchange for one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Compared; no difference outside noise.
    Match,
    /// Compared; at least one difference that is not noise.
    Mismatch,
    /// The target gave no response (timeout, connect, …).
    Error,
    /// The side-effect guard did not replay the request.
    Blocked,
    /// Not compared: a body was truncated at capture, or there was no control response.
    Skipped,
}

impl Outcome {
    /// The outcome's name in records, metrics and reports (`match`, `mismatch`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Match => "match",
            Self::Mismatch => "mismatch",
            Self::Error => "error",
            Self::Blocked => "blocked",
            Self::Skipped => "skipped",
        }
    }
}

/// The diff record contract (docs/contracts.md#diff-record): one row per exchange × target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffRecord {
    /// Always [`SCHEMA_VERSION`] when written by this build.
    pub schema_version: u32,
    /// The exchange's id.
    pub exchange_id: String,
    /// The exchange's capture time, Unix milliseconds.
    pub captured_at_ms: u64,
    /// The exchange's experiment.
    pub experiment: String,
    /// The request method.
    pub method: String,
    /// Route template, e.g. `/users/{id}`.
    pub route: String,
    /// Candidate name (or the secondary's name when `role` is `secondary`).
    pub target: String,
    /// `candidate` or `secondary`.
    pub role: TargetRole,
    /// The result of the comparison.
    pub outcome: Outcome,
    /// The control's status code, when it answered.
    pub control_status: Option<u16>,
    /// The target's status code, when it answered.
    pub target_status: Option<u16>,
    /// The control's latency in microseconds, when it answered.
    pub control_latency_us: Option<u64>,
    /// The target's latency in microseconds, when it answered.
    pub target_latency_us: Option<u64>,
    /// Differences that count against the candidate.
    pub differences: Vec<Difference>,
    /// Differences classified as noise.
    pub noise: Vec<NoiseDifference>,
    /// Hash of the sorted (aggregate path, kind) set of `differences`; 0 when there are none.
    pub fingerprint: u64,
    /// Error kind and message, blocking reason or skip reason.
    pub detail: Option<String>,
    /// Notes from the differ (e.g. "body declared JSON is not valid JSON; compared as text").
    #[serde(default)]
    pub notes: Vec<String>,
    /// Copied from the replay result: writes the egress sandbox blocked (`METHOD host/path`).
    #[serde(default)]
    pub side_effects: Vec<String>,
}

/// Errors decoding a record from bytes.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON that does not fit the record type.
    #[error("record is not valid JSON for this schema: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The record's `schema_version` is not the one this build reads.
    #[error("record has schema version {found}; this build reads version {expected}")]
    UnknownVersion {
        /// The version the record carries.
        found: u32,
        /// [`SCHEMA_VERSION`].
        expected: u32,
    },
}

#[derive(Deserialize)]
struct VersionProbe {
    schema_version: u32,
}

/// Decodes a JSON record, checking its schema version first so that a newer record gets a
/// precise error instead of a confusing field error.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let probe: VersionProbe = serde_json::from_slice(bytes)?;
    if probe.schema_version != SCHEMA_VERSION {
        return Err(DecodeError::UnknownVersion {
            found: probe.schema_version,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(serde_json::from_slice(bytes)?)
}

/// Encodes a record as JSON.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    encode_into(&mut out, record);
    out
}

/// Appends a record as JSON to `out` (a batch's buffer: no buffer of its own, which grew by
/// reallocation from 128 bytes for every record).
pub fn encode_into<T: Serialize>(out: &mut Vec<u8>, record: &T) {
    let start = out.len();
    // Serializing these plain structs cannot fail (every key is a string); if one ever did,
    // nothing of it is left behind.
    if serde_json::to_writer(&mut *out, record).is_err() {
        out.truncate(start);
    }
}

/// Fingerprint of a mismatch: a stable hash of its sorted, de-duplicated (aggregate path, kind) set.
///
/// The hash is FNV-1a over `path \x1f kind \x1e` of each, in order; streamed, so that the
/// common single difference costs no allocation (records and reports compare fingerprints
/// across builds: the value must never change).
pub fn fingerprint(differences: &[Difference]) -> u64 {
    match differences {
        [] => 0,
        [one] => fingerprint_entry(FNV1A64_OFFSET, &one.path, one.kind),
        _ => {
            let mut keys: Vec<(String, DiffKind)> = differences
                .iter()
                .map(|d| (d.aggregate_path(), d.kind))
                .collect();
            keys.sort();
            keys.dedup();
            keys.iter().fold(FNV1A64_OFFSET, |hash, (path, kind)| {
                // Already collapsed: collapsing again changes nothing.
                fingerprint_entry(hash, path, *kind)
            })
        }
    }
}

/// FNV-1a from `hash` over `collapse_indexes(path) \x1f kind \x1e`, without building it.
fn fingerprint_entry(hash: u64, path: &str, kind: DiffKind) -> u64 {
    let mut hash = hash;
    collapse_indexes_with(path, |piece| hash = fnv1a64_extend(hash, piece.as_bytes()));
    hash = fnv1a64_extend(hash, b"\x1f");
    hash = fnv1a64_extend(hash, kind.as_str().as_bytes());
    fnv1a64_extend(hash, b"\x1e")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_only_numeric_indexes() {
        assert_eq!(collapse_indexes("body.a[3].b[10]"), "body.a[*].b[*]");
        assert_eq!(collapse_indexes("body.items[id=7].x"), "body.items[id=7].x");
        assert_eq!(collapse_indexes("status"), "status");
    }

    #[test]
    fn fingerprint_ignores_order_and_indexes() {
        let d = |p: &str, k| Difference {
            path: p.into(),
            kind: k,
            control: None,
            candidate: None,
        };
        let a = fingerprint(&[
            d("body.a[1]", DiffKind::Value),
            d("status", DiffKind::Status),
        ]);
        let b = fingerprint(&[
            d("status", DiffKind::Status),
            d("body.a[7]", DiffKind::Value),
        ]);
        let c = fingerprint(&[
            d("status", DiffKind::Status),
            d("body.a[7]", DiffKind::Type),
        ]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(fingerprint(&[]), 0);
    }

    #[test]
    fn decode_rejects_unknown_version_precisely() {
        let err = decode::<Exchange>(br#"{"schema_version": 99}"#).unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
        let err = decode::<Exchange>(b"not json").unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)));
    }
}
