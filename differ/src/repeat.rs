//! The control's own noise, learned from identical requests repeated over time.
//!
//! Without a secondary nothing compares the control with itself. But production traffic
//! repeats: the same `GET /products/7?lang=de` arrives again a minute later. When it does, the
//! control's two answers to one request are an A/A comparison, free of extra load: a field that
//! differs between them is the control's own noise; a field that stayed the same is stable.
//!
//! [`RepeatTracker`] keeps, per request identity (experiment, method, path and query, the
//! request headers that vary answers — `Accept`, `Accept-Encoding`, `Accept-Language`,
//! `Content-Type`, `Authorization`, `Cookie` and those the control's `Vary` names — and the
//! request body's hash), a compact fingerprint of the control's last answer: per aggregate path
//! (`body.items[*].price`, `headers.x-served-by`, `status`) a type mask and 64-bit hashes of the
//! values (for arrays also of their lengths and of their elements as a multiset). Never a body,
//! never a value. When the request comes again, the two fingerprints are compared and the
//! differing `(aggregate path, kind)` become one [`TargetRole::Repeat`] record (target
//! [`REPEAT_TARGET`]), which the stores count beside the secondary's records.
//!
//! Memory is bounded: at most `requests` fingerprints (two generations of `requests / 2`: a hit
//! moves a fingerprint to the young one, a full young generation replaces the old one), each of
//! at most `fields` paths of 40 bytes, plus at most [`MAX_NAMES`] path names of at most
//! [`MAX_NAME_LEN`] bytes (names are needed only for paths that disappear). With the defaults
//! (4,096 × 256) that is at most 40 MiB + 4 MiB, and typically a tenth of it.

use crate::compare::compared_headers;
use crate::decode::{body_format, decode_content, form_to_json, BodyFormat};
use crate::html::parse_tree;
use crate::json::{hash_node, write_key, write_markup_key};
use crate::node::{with_arena, Node};
use crate::rules::Rules;
use serde::{Deserialize, Serialize};
use shadowdiff_model::{
    fingerprint, DiffKind, DiffRecord, Difference, Exchange, HttpResponse, Outcome, ReplayResult,
    TargetRole, REPEAT_TARGET, SCHEMA_VERSION,
};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

/// `[diff.repeats]`: learning the control's noise from repeated identical requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepeatConfig {
    /// Compare the control's answers to identical requests (on by default).
    pub enabled: bool,
    /// Requests whose last control answer is remembered (as a fingerprint, never the body).
    pub requests: usize,
    /// Aggregate paths fingerprinted per answer; the rest of a larger answer is not tracked.
    pub fields: usize,
}

impl Default for RepeatConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            requests: 4096,
            fields: 256,
        }
    }
}

/// Most `requests` a tracker may be configured with.
pub const MAX_REPEAT_REQUESTS: usize = 1_000_000;
/// Most `fields` a tracker may be configured with.
pub const MAX_REPEAT_FIELDS: usize = 65_536;
/// Path names remembered at most (for reporting a path that disappeared).
pub const MAX_NAMES: usize = 16_384;
/// Paths longer than this are not tracked.
pub const MAX_NAME_LEN: usize = 256;
/// Nesting beyond this is hashed as one value.
const MAX_DEPTH: usize = 128;

/// Request headers that make two requests to one URL different requests.
const KEY_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "content-type",
    "authorization",
    "cookie",
];

const NULL: u8 = 1;
const BOOL: u8 = 2;
const NUMBER: u8 = 4;
const STRING: u8 = 8;
const ARRAY: u8 = 16;
const OBJECT: u8 = 32;
const DEEP: u8 = 64;
/// A body compared as text or bytes, or a header or the status: compared by value only.
const OPAQUE: u8 = 128;

/// One aggregate path of an answer's fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    path: u64,
    /// The JSON types seen at the path (bits above).
    tag: u8,
    /// Scalars: their hashes in document order; arrays: their elements' hashes in order.
    value: u64,
    /// Arrays: their lengths, in order.
    lens: u64,
    /// Arrays: their elements as multisets, in order.
    set: u64,
}

/// The fingerprint of one control answer, as remembered.
#[derive(Debug, Clone)]
struct Fingerprint {
    /// Hash of the exchange id: a redelivered exchange is not its own repeat.
    exchange: u64,
    /// [`raw_key`] of the answer: equal bytes need no parse.
    raw: u64,
    status: u16,
    /// More paths than `fields`: paths that are absent may just not have been kept.
    partial: bool,
    /// Sorted by path hash.
    fields: Box<[Field]>,
}

/// A fingerprint as built, with its path names.
#[derive(Debug, Default)]
struct Built {
    status: u16,
    partial: bool,
    fields: Vec<(String, Field)>,
}

/// Remembers the control's last answer per request identity and compares a repeat with it.
/// Shared by a diff stage's differ threads.
pub struct RepeatTracker {
    config: RepeatConfig,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    young: HashMap<u64, Fingerprint>,
    old: HashMap<u64, Fingerprint>,
    names: HashMap<u64, Box<str>>,
}

impl std::fmt::Debug for RepeatTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepeatTracker")
            .field("config", &self.config)
            .field("requests", &self.len())
            .finish()
    }
}

impl RepeatTracker {
    /// A tracker of at most `config.requests` requests (at least 2) and `config.fields` paths
    /// per answer (at least 1).
    pub fn new(config: RepeatConfig) -> Self {
        let config = RepeatConfig {
            requests: config.requests.clamp(2, MAX_REPEAT_REQUESTS),
            fields: config.fields.clamp(1, MAX_REPEAT_FIELDS),
            ..config
        };
        Self {
            config,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Requests remembered now (never more than `config.requests`).
    pub fn len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.young.len() + inner.old.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Path names remembered now (never more than [`MAX_NAMES`]).
    pub fn names(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.names.len()
    }

    /// Paths kept at most per remembered answer.
    pub fn fields_per_request(&self) -> usize {
        self.config.fields
    }

    /// Looks at the control's answer of a replayed exchange: remembers its fingerprint and, when
    /// an identical request was seen before, returns the control-vs-itself record.
    pub fn observe(&self, result: &ReplayResult, route: &str, rules: &Rules) -> Option<DiffRecord> {
        if !self.config.enabled || result.blocked.is_some() || result.outcomes.is_empty() {
            return None;
        }
        let exchange = &result.exchange;
        let control = exchange.control.as_ref().or_else(|| {
            result
                .outcomes
                .iter()
                .find(|o| o.role == TargetRole::Control)
                .and_then(|o| o.result.as_ref().ok())
        })?;
        if control.body.truncated {
            return None;
        }
        let key = request_key(exchange, control)?;
        let rules = rules.for_endpoint(&exchange.request.method, route);
        let (id, raw) = (hash_str(&exchange.id), raw_key(control, rules));
        let (earlier_status, differences) = match self.peek(key, id, raw) {
            Peek::Redelivered => return None,
            Peek::Unchanged(status) => (status, Vec::new()),
            Peek::New | Peek::Changed => {
                let built = fingerprint_response(control, rules, self.config.fields);
                self.remember(key, id, raw, &built, rules)?
            }
        };
        let differences: Vec<Difference> = differences
            .into_iter()
            .map(|(path, kind)| Difference {
                path,
                kind,
                control: None,
                candidate: None,
            })
            .collect();
        Some(DiffRecord {
            schema_version: SCHEMA_VERSION,
            exchange_id: exchange.id.clone(),
            captured_at_ms: exchange.captured_at_ms,
            experiment: exchange.experiment.clone(),
            method: exchange.request.method.clone(),
            route: route.to_string(),
            target: REPEAT_TARGET.to_string(),
            role: TargetRole::Repeat,
            outcome: if differences.is_empty() {
                Outcome::Match
            } else {
                Outcome::Mismatch
            },
            control_status: Some(earlier_status),
            target_status: Some(control.status),
            control_latency_us: None,
            target_latency_us: None,
            fingerprint: fingerprint(&differences),
            differences,
            noise: Vec::new(),
            detail: None,
            notes: Vec::new(),
            side_effects: Vec::new(),
        })
    }

    /// Where an answer stands against the one remembered for its request.
    fn peek(&self, key: u64, exchange: u64, raw: u64) -> Peek {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let inner = &mut *inner;
        let Some(mut previous) = inner.young.remove(&key).or_else(|| inner.old.remove(&key)) else {
            return Peek::New;
        };
        let peek = if previous.exchange == exchange {
            // Delivered again: neither a repeat nor newer.
            Peek::Redelivered
        } else if previous.raw == raw {
            // The same bytes as last time: nothing to parse, nothing changed.
            previous.exchange = exchange;
            Peek::Unchanged(previous.status)
        } else {
            Peek::Changed
        };
        self.put(inner, key, previous);
        peek
    }

    /// Puts a fingerprint in the young generation, which replaces the old one when full.
    fn put(&self, inner: &mut Inner, key: u64, fingerprint: Fingerprint) {
        if inner.young.len() >= self.config.requests / 2 && !inner.young.contains_key(&key) {
            inner.old = std::mem::take(&mut inner.young);
        }
        inner.old.remove(&key);
        inner.young.insert(key, fingerprint);
    }

    /// Stores `built` for `key`; returns the earlier answer's status and the differences from
    /// it, if one is remembered (and is not the same exchange delivered again).
    fn remember(
        &self,
        key: u64,
        exchange: u64,
        raw: u64,
        built: &Built,
        rules: &Rules,
    ) -> Option<(u16, Vec<(String, DiffKind)>)> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let inner = &mut *inner;
        let previous = inner.young.remove(&key).or_else(|| inner.old.remove(&key));
        if let Some(p) = previous.as_ref().filter(|p| p.exchange == exchange) {
            // Delivered again meanwhile (by another differ thread).
            let p = p.clone();
            self.put(inner, key, p);
            return None;
        }
        for (name, field) in &built.fields {
            if inner.names.len() >= MAX_NAMES {
                break;
            }
            inner
                .names
                .entry(field.path)
                .or_insert_with(|| name.as_str().into());
        }
        let differences = previous
            .as_ref()
            .map(|p| (p.status, compare(p, built, &inner.names, rules)));
        let mut fields: Vec<Field> = built.fields.iter().map(|(_, f)| *f).collect();
        fields.sort_unstable_by_key(|f| f.path);
        self.put(
            inner,
            key,
            Fingerprint {
                exchange,
                raw,
                status: built.status,
                partial: built.partial,
                fields: fields.into_boxed_slice(),
            },
        );
        differences
    }
}

/// Where an answer stands against the one remembered for its request ([`RepeatTracker::peek`]).
enum Peek {
    /// No answer remembered.
    New,
    /// The same exchange again.
    Redelivered,
    /// The same status, compared headers and body bytes; the earlier status.
    Unchanged(u16),
    /// Something may differ: fingerprint and compare.
    Changed,
}

/// A hash of what the differ compares of an answer, before any parsing: status, the headers it
/// compares and the body's hash. Equal means the fingerprints would be equal.
fn raw_key(response: &HttpResponse, rules: &Rules) -> u64 {
    let mut h = Fnv::new();
    h.u64(u64::from(response.status));
    h.u64(response.body.hash);
    h.u64(response.body.full_len);
    // Names in order, values of one name in the order they came (as the differ groups them).
    for (name, value) in compared_headers(&response.headers, rules) {
        h.str(&name);
        if !rules.presence_only_headers.iter().any(|p| *p == name) {
            h.str(value);
        }
    }
    h.0
}

/// The identity of a request: two requests with the same identity are asked the same thing.
/// `None` when the control says its answer varies with anything (`Vary: *`).
fn request_key(exchange: &Exchange, control: &HttpResponse) -> Option<u64> {
    let request = &exchange.request;
    let mut h = Fnv::new();
    h.str(&exchange.experiment);
    h.str(&request.method);
    h.str(&request.uri);
    let mut names: Vec<Cow<'_, str>> = KEY_HEADERS.iter().map(|s| Cow::Borrowed(*s)).collect();
    for (name, value) in &control.headers {
        if name.eq_ignore_ascii_case("vary") {
            for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                if v == "*" {
                    return None;
                }
                names.push(Cow::Owned(v.to_ascii_lowercase()));
            }
        }
    }
    names.sort();
    names.dedup();
    for name in &names {
        h.str(name);
        for (n, v) in &request.headers {
            if n.eq_ignore_ascii_case(name) {
                h.str(v);
            }
        }
    }
    h.u64(request.body.hash);
    h.u64(request.body.full_len);
    Some(h.0)
}

/// The fingerprint of an answer under `rules` (headers they skip are skipped), at most
/// `max_fields` paths.
fn fingerprint_response(response: &HttpResponse, rules: &Rules, max_fields: usize) -> Built {
    let mut w = Walker {
        built: Built {
            status: response.status,
            ..Built::default()
        },
        index: HashMap::new(),
        max_fields,
        markup: false,
    };
    // Headers, grouped as the differ groups them.
    let headers = compared_headers(&response.headers, rules);
    for group in headers.chunk_by(|x, y| x.0 == y.0) {
        let name = &group[0].0;
        let mut h = Fnv::new();
        if !rules.presence_only_headers.iter().any(|p| *p == *name) {
            group.iter().for_each(|(_, value)| h.str(value));
        }
        let path = format!("headers.{name}");
        if let Some(f) = w.entry(&path) {
            f.tag = OPAQUE;
            f.value = h.0;
        }
    }
    let body = &response.body.bytes;
    if body.is_empty() {
        return w.built;
    }
    let decoded = decode_content(&response.headers, body, rules);
    let bytes: &[u8] = match &decoded {
        Ok(b) => b,
        Err(_) => body,
    };
    let opaque = |w: &mut Walker| {
        if let Some(f) = w.entry("body") {
            f.tag = OPAQUE;
            f.value = hash_bytes(bytes);
        }
    };
    match body_format(&response.headers, bytes) {
        BodyFormat::Json => with_arena(|arena| match Node::parse(bytes, arena) {
            Ok(node) => w.visit(&node, &mut "body".to_string(), 0),
            Err(_) => opaque(&mut w),
        }),
        BodyFormat::Form => {
            let value = form_to_json(bytes);
            with_arena(|arena| {
                w.visit(&Node::from_value(&value, arena), &mut "body".to_string(), 0)
            })
        }
        BodyFormat::Html => with_arena(|arena| match parse_tree(bytes, arena) {
            Ok(tree) => {
                w.markup = true;
                w.visit(&tree.root, &mut "body".to_string(), 0);
            }
            Err(_) => opaque(&mut w),
        }),
        BodyFormat::Text | BodyFormat::Binary => opaque(&mut w),
    }
    w.built
}

struct Walker {
    built: Built,
    index: HashMap<String, usize>,
    max_fields: usize,
    markup: bool,
}

impl Walker {
    /// The field of `path`, added if there is room.
    fn entry(&mut self, path: &str) -> Option<&mut Field> {
        if path.len() > MAX_NAME_LEN {
            return None;
        }
        let i = match self.index.get(path) {
            Some(&i) => i,
            None => {
                if self.built.fields.len() >= self.max_fields {
                    self.built.partial = true;
                    return None;
                }
                let i = self.built.fields.len();
                self.built.fields.push((
                    path.to_string(),
                    Field {
                        path: hash_str(path),
                        tag: 0,
                        value: 0,
                        lens: 0,
                        set: 0,
                    },
                ));
                self.index.insert(path.to_string(), i);
                i
            }
        };
        self.built.fields.get_mut(i).map(|(_, f)| f)
    }

    fn visit(&mut self, node: &Node<'_>, path: &mut String, depth: usize) {
        let Some(field) = self.entry(path) else {
            return;
        };
        match node {
            Node::Array(items) if depth < MAX_DEPTH => {
                let (mut ordered, mut set) = (Fnv::new(), 0u64);
                for item in items.iter() {
                    let h = hash_node(item);
                    ordered.u64(h);
                    set = set.wrapping_add(avalanche(h));
                }
                field.tag |= ARRAY;
                field.value = mix(field.value, ordered.0);
                field.lens = mix(field.lens, items.len() as u64);
                field.set = mix(field.set, set);
                let len = path.len();
                path.push_str("[*]");
                for item in items.iter() {
                    self.visit(item, path, depth + 1);
                }
                path.truncate(len);
            }
            Node::Object(entries) if depth < MAX_DEPTH => {
                field.tag |= OBJECT;
                let len = path.len();
                for (key, value) in entries.iter() {
                    if self.markup {
                        write_markup_key(path, key);
                    } else {
                        write_key(path, key);
                    }
                    self.visit(value, path, depth + 1);
                    path.truncate(len);
                }
            }
            other => {
                field.tag |= match other {
                    Node::Null => NULL,
                    Node::Bool(_) => BOOL,
                    Node::Number(_) => NUMBER,
                    Node::String(_) => STRING,
                    _ => DEEP,
                };
                field.value = mix(field.value, hash_node(other));
            }
        }
    }
}

/// What differs between a remembered answer and a new one, as (aggregate path, kind), the way
/// the differ would name it: the status (bodies then not compared), headers, and per body path
/// a `type`, a `size` (with `extra` and `missing` at its elements), an `order` of the same
/// elements, a `value`, or a `missing`/`extra` path; nothing below a path that already differs
/// in type, size, order or presence.
fn compare(
    old: &Fingerprint,
    new: &Built,
    names: &HashMap<u64, Box<str>>,
    rules: &Rules,
) -> Vec<(String, DiffKind)> {
    let status_differs = old.status != new.status;
    let in_body =
        |path: &str| path == "body" || path.starts_with("body.") || path.starts_with("body[");
    let one_sided = !(old.partial || new.partial);
    let mut found: Vec<(String, DiffKind)> = Vec::new();
    if status_differs {
        found.push(("status".to_string(), DiffKind::Status));
    }
    let mut seen: HashSet<u64> = HashSet::with_capacity(new.fields.len());
    for (path, f) in &new.fields {
        seen.insert(f.path);
        if status_differs && in_body(path) {
            continue;
        }
        let header = path.starts_with("headers.");
        let Ok(i) = old.fields.binary_search_by_key(&f.path, |o| o.path) else {
            if header {
                found.push((path.clone(), DiffKind::Header));
            } else if one_sided {
                found.push((path.clone(), DiffKind::Extra));
            }
            continue;
        };
        let o = &old.fields[i];
        if header {
            if o.value != f.value {
                found.push((path.clone(), DiffKind::Header));
            }
        } else if o.tag == OPAQUE && f.tag == OPAQUE {
            if o.value != f.value {
                found.push((path.clone(), DiffKind::Text));
            }
        } else if o.tag != f.tag {
            found.push((path.clone(), DiffKind::Type));
        } else if f.tag & ARRAY != 0 && o.lens != f.lens {
            found.push((path.clone(), DiffKind::Size));
        } else if f.tag & ARRAY != 0 && o.set == f.set && o.value != f.value {
            found.push((path.clone(), DiffKind::Order));
        } else if f.tag & (ARRAY | OBJECT) == 0 && o.value != f.value {
            found.push((path.clone(), DiffKind::Value));
        }
    }
    for o in old.fields.iter().filter(|o| !seen.contains(&o.path)) {
        let Some(path) = names.get(&o.path) else {
            continue;
        };
        if status_differs && in_body(path) {
            continue;
        }
        if path.starts_with("headers.") {
            found.push((path.to_string(), DiffKind::Header));
        } else if one_sided {
            found.push((path.to_string(), DiffKind::Missing));
        }
    }
    found.sort();
    // Below a path that differs as a whole, the differ reports nothing more.
    let mut whole: Vec<String> = Vec::new();
    let mut out: Vec<(String, DiffKind)> = Vec::new();
    for (path, kind) in found {
        let below = whole.iter().any(|p| {
            path.len() > p.len()
                && path.starts_with(p.as_str())
                && matches!(path.as_bytes()[p.len()], b'.' | b'[' | b'@')
        });
        if below || rules.is_ignored(&path) {
            continue;
        }
        match kind {
            DiffKind::Size => {
                // The differ aligns arrays of other lengths: elements come and go.
                out.push((format!("{path}[*]"), DiffKind::Extra));
                out.push((format!("{path}[*]"), DiffKind::Missing));
                whole.push(path.clone());
            }
            DiffKind::Type | DiffKind::Order | DiffKind::Missing | DiffKind::Extra => {
                whole.push(path.clone());
            }
            _ => {}
        }
        out.push((path, kind));
    }
    out.sort();
    out.truncate(rules.max_differences);
    out
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.write(s.as_bytes());
    }

    fn u64(&mut self, x: u64) {
        self.write(&x.to_le_bytes());
    }
}

fn hash_str(s: &str) -> u64 {
    let mut h = Fnv::new();
    h.str(s);
    h.0
}

fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.write(b);
    h.0
}

/// SplitMix64's finalizer: spreads a hash so that sums of several stay distinct.
fn avalanche(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn mix(acc: u64, x: u64) -> u64 {
    avalanche(acc ^ avalanche(x.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowdiff_model::{Body, HttpRequest, TargetOutcome};

    fn response(headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Body::complete(body.as_bytes().to_vec()),
            latency_us: 1,
        }
    }

    fn result(id: &str, uri: &str, control: HttpResponse) -> ReplayResult {
        ReplayResult {
            schema_version: SCHEMA_VERSION,
            exchange: Exchange {
                schema_version: SCHEMA_VERSION,
                id: id.into(),
                captured_at_ms: 1,
                source: "test".into(),
                experiment: "e".into(),
                request: HttpRequest {
                    method: "GET".into(),
                    uri: uri.into(),
                    headers: vec![("accept".into(), "application/json".into())],
                    body: Body::default(),
                },
                control: Some(control.clone()),
                redactions: vec![],
                sample_rate: 1.0,
            },
            blocked: None,
            outcomes: vec![TargetOutcome {
                target: "v2".into(),
                role: TargetRole::Candidate,
                result: Ok(control),
            }],
            candidates: vec!["v2".into()],
            side_effects: vec![],
            saturated: false,
            host_busy: false,
        }
    }

    fn json(body: &str) -> HttpResponse {
        response(&[("content-type", "application/json")], body)
    }

    fn kinds(record: &DiffRecord) -> Vec<(String, DiffKind)> {
        record
            .differences
            .iter()
            .map(|d| (d.path.clone(), d.kind))
            .collect()
    }

    #[test]
    fn a_repeat_names_what_the_control_changed_and_nothing_else() {
        let t = RepeatTracker::new(RepeatConfig::default());
        let rules = Rules::default();
        let first = json(
            r#"{"id": 7, "host": "api-3", "tags": ["a", "b", "c"], "items": [{"p": 1.5}, {"p": 2}],
               "stable": {"name": "x"}}"#,
        );
        assert!(t
            .observe(&result("1", "/x/7", first), "/x/{id}", &rules)
            .is_none());
        let second = json(
            r#"{"id": 7, "host": "api-9", "tags": ["c", "a", "b"], "items": [{"p": 1.5}, {"p": 2.01}],
               "stable": {"name": "x"}}"#,
        );
        let r = t
            .observe(&result("2", "/x/7", second), "/x/{id}", &rules)
            .expect("a repeat");
        assert_eq!(
            (r.role, r.target.as_str()),
            (TargetRole::Repeat, REPEAT_TARGET)
        );
        assert_eq!(r.outcome, Outcome::Mismatch);
        assert_eq!(
            kinds(&r),
            vec![
                ("body.host".to_string(), DiffKind::Value),
                ("body.items[*].p".to_string(), DiffKind::Value),
                ("body.tags".to_string(), DiffKind::Order),
            ]
        );
        // No value is kept or shown.
        assert!(r
            .differences
            .iter()
            .all(|d| d.control.is_none() && d.candidate.is_none()));
        // The same answer again: a match.
        let third = json(
            r#"{"id": 7, "host": "api-9", "tags": ["c", "a", "b"], "items": [{"p": 1.5}, {"p": 2.01}],
               "stable": {"name": "x"}}"#,
        );
        let r = t
            .observe(&result("3", "/x/7", third), "/x/{id}", &rules)
            .expect("a repeat");
        assert_eq!(r.outcome, Outcome::Match);
    }

    #[test]
    fn sizes_types_presence_headers_and_status_are_named_like_the_differ_names_them() {
        let t = RepeatTracker::new(RepeatConfig::default());
        let rules = Rules::default();
        let a = response(
            &[
                ("content-type", "application/json"),
                ("x-span", "ab12"),
                ("date", "now"),
            ],
            r#"{"list": [1, 2], "n": 1, "gone": {"deep": 1}, "s": "x"}"#,
        );
        t.observe(&result("1", "/y", a), "/y", &rules);
        let b = response(
            &[
                ("content-type", "application/json"),
                ("x-span", "cd34"),
                ("date", "later"),
            ],
            r#"{"list": [1, 2, 3], "n": "1", "new": true, "s": "x"}"#,
        );
        let r = t.observe(&result("2", "/y", b), "/y", &rules).unwrap();
        assert_eq!(
            kinds(&r),
            vec![
                ("body.gone".to_string(), DiffKind::Missing),
                ("body.list".to_string(), DiffKind::Size),
                ("body.list[*]".to_string(), DiffKind::Missing),
                ("body.list[*]".to_string(), DiffKind::Extra),
                ("body.n".to_string(), DiffKind::Type),
                ("body.new".to_string(), DiffKind::Extra),
                ("headers.x-span".to_string(), DiffKind::Header),
            ]
        );
        let mut c = json(r#"{"error": "x"}"#);
        c.status = 503;
        let r = t.observe(&result("3", "/y", c), "/y", &rules).unwrap();
        assert_eq!((r.control_status, r.target_status), (Some(200), Some(503)));
        assert!(kinds(&r).contains(&("status".to_string(), DiffKind::Status)));
        assert!(
            kinds(&r).iter().all(|(p, _)| !p.starts_with("body")),
            "{r:?}"
        );
    }

    #[test]
    fn the_same_bytes_again_match_whatever_volatile_headers_say() {
        let t = RepeatTracker::new(RepeatConfig::default());
        let rules = Rules::default();
        let at = |date: &str| {
            response(
                &[("content-type", "application/json"), ("date", date)],
                r#"{"a": [1, 2], "b": "x"}"#,
            )
        };
        t.observe(&result("1", "/z", at("Mon")), "/z", &rules);
        let r = t
            .observe(&result("2", "/z", at("Tue")), "/z", &rules)
            .unwrap();
        assert_eq!((r.outcome, r.differences.len()), (Outcome::Match, 0));
        // A change after an unchanged repeat is still found against the remembered paths.
        let changed = json(r#"{"a": [1, 2], "b": "y"}"#);
        let r = t
            .observe(&result("3", "/z", changed), "/z", &rules)
            .unwrap();
        assert_eq!(kinds(&r), vec![("body.b".to_string(), DiffKind::Value)]);
    }

    #[test]
    fn different_requests_are_not_repeats_and_a_redelivery_is_not_its_own_repeat() {
        let t = RepeatTracker::new(RepeatConfig::default());
        let rules = Rules::default();
        assert!(t
            .observe(&result("1", "/a?q=1", json("{\"v\":1}")), "/a", &rules)
            .is_none());
        assert!(t
            .observe(&result("2", "/a?q=2", json("{\"v\":2}")), "/a", &rules)
            .is_none());
        let mut other_language = result("3", "/a?q=1", json("{\"v\":3}"));
        other_language
            .exchange
            .request
            .headers
            .push(("accept-language".into(), "de".into()));
        assert!(t.observe(&other_language, "/a", &rules).is_none());
        // Redelivered exchange 2: not a repeat of itself.
        assert!(t
            .observe(&result("2", "/a?q=2", json("{\"v\":2}")), "/a", &rules)
            .is_none());
        assert!(t
            .observe(&result("4", "/a?q=2", json("{\"v\":2}")), "/a", &rules)
            .is_some());
        // Vary: * answers are never compared.
        let vary = response(&[("content-type", "application/json"), ("vary", "*")], "{}");
        assert!(t
            .observe(&result("5", "/b", vary.clone()), "/b", &rules)
            .is_none());
        assert!(t.observe(&result("6", "/b", vary), "/b", &rules).is_none());
    }

    #[test]
    fn memory_stays_bounded_however_many_requests_and_fields_come() {
        let t = RepeatTracker::new(RepeatConfig {
            enabled: true,
            requests: 100,
            fields: 16,
        });
        let rules = Rules::default();
        for i in 0..10_000u64 {
            // Every request another URL, every answer many distinct paths.
            let body: String = format!(
                "{{{}}}",
                (0..64)
                    .map(|k| format!("\"k{}_{k}\": {k}", i % 700))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            t.observe(
                &result(&i.to_string(), &format!("/r/{i}"), json(&body)),
                "/r/{id}",
                &rules,
            );
            assert!(t.len() <= 100, "{} requests remembered", t.len());
        }
        assert!(t.names() <= MAX_NAMES);
        let inner = t.inner.lock().unwrap();
        for f in inner.young.values().chain(inner.old.values()) {
            assert!(f.fields.len() <= 16);
            assert!(f.partial);
        }
    }

    #[test]
    fn fingerprints_differ_where_values_differ_and_never_hold_a_body() {
        let rules = Rules::default();
        let secret = "a-value-that-must-not-be-kept-0123456789";
        let a = fingerprint_response(
            &json(&format!(r#"{{"s": "{secret}", "n": 1}}"#)),
            &rules,
            256,
        );
        let b = fingerprint_response(
            &json(&format!(r#"{{"s": "{secret}!", "n": 1}}"#)),
            &rules,
            256,
        );
        let get = |x: &Built, p: &str| x.fields.iter().find(|(n, _)| n == p).map(|(_, f)| *f);
        assert_ne!(
            get(&a, "body.s").unwrap().value,
            get(&b, "body.s").unwrap().value
        );
        assert_eq!(get(&a, "body.n"), get(&b, "body.n"));
        // 1 and 1.0 are one value, as for the differ.
        let c = fingerprint_response(&json(r#"{"s": "x", "n": 1.0}"#), &rules, 256);
        assert_eq!(get(&a, "body.n"), get(&c, "body.n"));
        // What is kept is hashes and path names: the value is nowhere.
        let t = RepeatTracker::new(RepeatConfig::default());
        t.observe(
            &result("1", "/s", json(&format!(r#"{{"s": "{secret}"}}"#))),
            "/s",
            &rules,
        );
        let debug = format!("{:?}", t.inner.lock().unwrap().young);
        assert!(!debug.contains(secret), "{debug}");
        let names: Vec<String> = t
            .inner
            .lock()
            .unwrap()
            .names
            .values()
            .map(|n| n.to_string())
            .collect();
        assert!(names.iter().all(|n| !n.contains(secret)), "{names:?}");
    }

    #[test]
    fn html_and_text_bodies_are_fingerprinted_too() {
        let t = RepeatTracker::new(RepeatConfig::default());
        let rules = Rules::default();
        let page = |title: &str, nonce: &str| {
            response(
                &[("content-type", "text/html")],
                &format!(
                    "<html><head><title>{title}</title><script nonce=\"{nonce}\"></script></head></html>"
                ),
            )
        };
        t.observe(&result("1", "/p", page("Shop", "n1")), "/p", &rules);
        let r = t
            .observe(&result("2", "/p", page("Shop", "n2")), "/p", &rules)
            .unwrap();
        assert_eq!(
            kinds(&r),
            vec![("body.html.head.script@nonce".to_string(), DiffKind::Value)]
        );
        let text = |s: &str| response(&[("content-type", "text/plain")], s);
        t.observe(&result("3", "/t", text("one")), "/t", &rules);
        let r = t
            .observe(&result("4", "/t", text("two")), "/t", &rules)
            .unwrap();
        assert_eq!(kinds(&r), vec![("body".to_string(), DiffKind::Text)]);
    }
}
