//! Envoy HTTP tap traces, as JSON written by the tap filter's `file_per_tap` sink (or its admin
//! endpoint) with `format: JSON_BODY_AS_BYTES` or `JSON_BODY_AS_STRING`:
//!
//! - buffered: `{"http_buffered_trace": {"request": {...}, "response": {...}}}` (or the bare
//!   trace), one exchange each;
//! - streamed (`streaming: true`): `{"http_streamed_trace_segment": {"trace_id": ..., ...}}`
//!   segments each carrying one piece — `request_headers`, `request_body_chunk`,
//!   `request_trailers`, `response_headers`, `response_body_chunk` or `response_trailers` —
//!   spread over several JSON values of a file, or several files, and joined by `trace_id`
//!   (a number, or a string as protobuf's JSON writes 64-bit integers).
//!
//! A file may hold several JSON values one after the other. Headers are
//! `[{"key": ..., "value": ...}]` (non-UTF-8 values in `raw_value`, base64) with the
//! pseudo-headers `:method`, `:path`, `:authority` (request) and `:status` (response).
//! Trailers are read but not kept: the replayer sends none and reads none of the candidates', so
//! a recorded one could only make a false difference.
//!
//! The request's framing headers are made to agree with the body the trace carries (tap output
//! often keeps `content-length` with a shorter body, or none): see `frame_request`.

use super::{content, frame_request, id_at, now_ms, read, ImportError, Imported, Skipped};
use base64::Engine as _;
use serde::Deserialize;
use shadowdiff_model::{Body, Exchange, HttpRequest, HttpResponse, SCHEMA_VERSION};
use std::collections::HashMap;
use std::path::Path;

/// Skip reasons ([`Skipped::reason`]).
const TRUNCATED: &str = "truncated";
const NOT_A_TRACE: &str = "not a tap trace";
const NO_REQUEST: &str = "no request";
const BAD_REQUEST: &str = "bad request";
const BAD_RESPONSE: &str = "bad response";

/// One JSON value of a file: Envoy's `TraceWrapper`, or a bare buffered trace or segment.
#[derive(Deserialize)]
struct Wrapper {
    #[serde(default)]
    http_buffered_trace: Option<Trace>,
    #[serde(default)]
    http_streamed_trace_segment: Option<Segment>,
    #[serde(default)]
    request: Option<Message>,
    #[serde(default)]
    response: Option<Message>,
    /// A bare segment (no wrapper).
    #[serde(flatten)]
    segment: Segment,
}

#[derive(Deserialize)]
struct Trace {
    #[serde(default)]
    request: Option<Message>,
    #[serde(default)]
    response: Option<Message>,
}

#[derive(Deserialize, Default)]
struct Message {
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    body: Option<TraceBody>,
}

#[derive(Deserialize, Default)]
struct Segment {
    #[serde(default)]
    trace_id: Option<TraceId>,
    #[serde(default)]
    request_headers: Option<HeaderMap>,
    #[serde(default)]
    request_body_chunk: Option<TraceBody>,
    #[serde(default)]
    request_trailers: Option<HeaderMap>,
    #[serde(default)]
    response_headers: Option<HeaderMap>,
    #[serde(default)]
    response_body_chunk: Option<TraceBody>,
    #[serde(default)]
    response_trailers: Option<HeaderMap>,
}

/// A `uint64`: a JSON number, or a string as protobuf's JSON mapping writes it.
#[derive(Deserialize)]
#[serde(untagged)]
enum TraceId {
    Number(u64),
    Text(String),
}

impl TraceId {
    fn key(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(t) => t.trim().to_string(),
        }
    }
}

/// `config.core.v3.HeaderMap`.
#[derive(Deserialize, Default)]
struct HeaderMap {
    #[serde(default)]
    headers: Vec<Header>,
}

#[derive(Deserialize)]
struct Header {
    key: String,
    #[serde(default)]
    value: Option<String>,
    /// Newer Envoy versions put non-UTF-8 values here, base64.
    #[serde(default)]
    raw_value: Option<String>,
}

#[derive(Deserialize)]
struct TraceBody {
    #[serde(default)]
    as_bytes: Option<String>,
    #[serde(default)]
    as_string: Option<String>,
    #[serde(default)]
    truncated: bool,
}

/// Reads every trace in the given files; streamed segments are joined across all of them.
pub fn import_files(
    paths: &[std::path::PathBuf],
    experiment: &str,
) -> Result<Imported, ImportError> {
    let mut reader = Reader::new(experiment);
    for path in paths {
        let bytes = read(path)?;
        reader.read(&bytes, path);
    }
    Ok(reader.finish())
}

/// Parses the traces of one file's content (gzipped or not); its streamed segments are joined
/// among themselves only.
pub fn parse(bytes: &[u8], origin: &Path, experiment: &str) -> Imported {
    let mut reader = Reader::new(experiment);
    reader.read(bytes, origin);
    reader.finish()
}

/// Reads files one after the other: buffered traces become exchanges at once, streamed segments
/// wait for the rest of their trace until [`Reader::finish`].
pub struct Reader {
    experiment: String,
    out: Imported,
    /// Streamed traces in the order their first segment came.
    streams: Vec<Stream>,
    /// Trace id → its stream in `streams` (the latest, when an id is used again).
    by_id: HashMap<String, usize>,
}

/// A streamed trace being put together.
#[derive(Default)]
struct Stream {
    /// Where its first segment was.
    at: String,
    request: Option<Vec<Header>>,
    request_body: Chunks,
    response: Option<Vec<Header>>,
    response_body: Chunks,
}

/// Body chunks of a streamed message, joined.
#[derive(Default)]
struct Chunks {
    bytes: Vec<u8>,
    truncated: bool,
    /// The first chunk that could not be decoded.
    error: Option<String>,
}

impl Chunks {
    fn push(&mut self, chunk: TraceBody) {
        match decode(chunk) {
            Ok((bytes, truncated)) => {
                self.bytes.extend_from_slice(&bytes);
                self.truncated |= truncated;
            }
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }
}

impl Reader {
    /// A reader making exchanges for `experiment`.
    pub fn new(experiment: &str) -> Self {
        Self {
            experiment: experiment.to_string(),
            out: Imported::default(),
            streams: Vec::new(),
            by_id: HashMap::new(),
        }
    }

    /// Reads the JSON values of one file (`origin` names it in skip reasons).
    pub fn read(&mut self, raw: &[u8], origin: &Path) {
        let content = content(raw);
        let stream = serde_json::Deserializer::from_slice(&content.bytes).into_iter::<Wrapper>();
        for (i, item) in stream.enumerate() {
            let at = format!("{} trace {}", origin.display(), i + 1);
            let w = match item {
                Ok(w) => w,
                Err(e) => {
                    let skip = if e.is_eof() {
                        let mut why = format!("the file ends inside this JSON value ({e})");
                        if let Some(d) = &content.damaged {
                            why = format!("{why}; {d}");
                        }
                        Skipped::new(at, TRUNCATED, &why)
                    } else {
                        Skipped::new(at, NOT_A_TRACE, &e.to_string())
                    };
                    self.out.skipped.push(skip);
                    return; // The rest of the stream cannot be resynchronised.
                }
            };
            self.value(w, at);
        }
        if let Some(d) = content.damaged {
            self.out
                .skipped
                .push(Skipped::new(origin.display().to_string(), TRUNCATED, &d));
        }
    }

    fn value(&mut self, w: Wrapper, at: String) {
        let segment = match (w.http_streamed_trace_segment, w.segment.trace_id.is_some()) {
            (Some(s), _) => Some(s),
            (None, true) => Some(w.segment),
            (None, false) => None,
        };
        if let Some(s) = segment {
            return self.segment(s, at);
        }
        let (request, response) = match w.http_buffered_trace {
            Some(t) => (t.request, t.response),
            None => (w.request, w.response),
        };
        let exchange = match request {
            None => Err(Skipped::new(at, NO_REQUEST, "the trace has no request")),
            Some(request) => message(request, BAD_REQUEST, &at).and_then(|request| {
                let response = response
                    .map(|r| message(r, BAD_RESPONSE, &at))
                    .transpose()?;
                to_exchange(request, response, &self.experiment, &at)
            }),
        };
        match exchange {
            Ok(e) => self.out.exchanges.push(e),
            Err(skip) => self.out.skipped.push(skip),
        }
    }

    fn segment(&mut self, s: Segment, at: String) {
        let Some(id) = s.trace_id.as_ref().map(TraceId::key) else {
            let why = "a streamed segment without a trace_id";
            return self.out.skipped.push(Skipped::new(at, NOT_A_TRACE, why));
        };
        // An id seen again with new request headers is a new trace (ids are unique to one
        // Envoy and its lifetime only).
        let reused = s.request_headers.is_some()
            && self
                .by_id
                .get(&id)
                .is_some_and(|&i| self.streams[i].request.is_some());
        let i = match self.by_id.get(&id) {
            Some(&i) if !reused => i,
            _ => {
                self.streams.push(Stream {
                    at: format!("{at} (trace_id {id})"),
                    ..Stream::default()
                });
                self.by_id.insert(id, self.streams.len() - 1);
                self.streams.len() - 1
            }
        };
        let stream = &mut self.streams[i];
        if let Some(h) = s.request_headers {
            stream.request = Some(h.headers);
        }
        if let Some(b) = s.request_body_chunk {
            stream.request_body.push(b);
        }
        if let Some(h) = s.response_headers {
            stream.response = Some(h.headers);
        }
        if let Some(b) = s.response_body_chunk {
            stream.response_body.push(b);
        }
        // Trailers are read and dropped (see the module's documentation).
        let _ = (s.request_trailers, s.response_trailers);
    }

    /// The exchanges and skips of everything read; streamed traces are put together now, in
    /// the order their first segment came.
    pub fn finish(mut self) -> Imported {
        for s in std::mem::take(&mut self.streams) {
            match self.assemble(s) {
                Ok(e) => self.out.exchanges.push(e),
                Err(skip) => self.out.skipped.push(skip),
            }
        }
        self.out
    }

    fn assemble(&self, s: Stream) -> Result<Exchange, Skipped> {
        let at = s.at;
        let Some(headers) = s.request else {
            let why = "no request_headers segment for this trace_id in the files read";
            return Err(Skipped::new(at, NO_REQUEST, why));
        };
        let request = parts(&headers, s.request_body, BAD_REQUEST, &at)?;
        let response = s
            .response
            .map(|h| parts(&h, s.response_body, BAD_RESPONSE, &at))
            .transpose()?;
        to_exchange(request, response, &self.experiment, &at)
    }
}

/// A message's headers (lower-case names, pseudo-headers included) and body.
struct Parts {
    headers: Vec<(String, String)>,
    body: Body,
}

fn message(m: Message, reason: &'static str, at: &str) -> Result<Parts, Skipped> {
    let headers = headers_of(&m.headers).map_err(|why| Skipped::new(at, reason, &why))?;
    let (bytes, truncated) = match m.body {
        Some(b) => decode(b).map_err(|why| Skipped::new(at, reason, &why))?,
        None => (Vec::new(), false),
    };
    Ok(Parts {
        body: body(bytes, truncated, &headers),
        headers,
    })
}

fn parts(
    headers: &[Header],
    chunks: Chunks,
    reason: &'static str,
    at: &str,
) -> Result<Parts, Skipped> {
    let headers = headers_of(headers).map_err(|why| Skipped::new(at, reason, &why))?;
    if let Some(why) = chunks.error {
        return Err(Skipped::new(at, reason, &why));
    }
    Ok(Parts {
        body: body(chunks.bytes, chunks.truncated, &headers),
        headers,
    })
}

/// A body as the trace carries it. Envoy does not say how long a truncated body was: the
/// message's `content-length`, when it says more than was kept, is its length, else the kept
/// length is a lower bound.
fn body(bytes: Vec<u8>, truncated: bool, headers: &[(String, String)]) -> Body {
    let kept = bytes.len() as u64;
    let full_len = if truncated {
        headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
            .filter(|&n| n > kept)
            .unwrap_or(kept)
    } else {
        kept
    };
    Body::partial(bytes, full_len, truncated)
}

fn to_exchange(
    request: Parts,
    response: Option<Parts>,
    experiment: &str,
    at: &str,
) -> Result<Exchange, Skipped> {
    let bad_request = |why: &str| Skipped::new(at, BAD_REQUEST, why);
    let mut headers = request.headers;
    let method = take_pseudo(&mut headers, ":method")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad_request("no :method"))?
        .to_ascii_uppercase();
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        return Err(bad_request(&format!(":method `{method}` is not a method")));
    }
    let path = take_pseudo(&mut headers, ":path")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad_request("no :path"))?;
    if let Some(authority) = take_pseudo(&mut headers, ":authority") {
        if !headers.iter().any(|(n, _)| n == "host") {
            headers.insert(0, ("host".to_string(), authority));
        }
    }
    headers.retain(|(n, _)| !n.starts_with(':'));
    frame_request(&mut headers, &request.body);
    let control = match response {
        Some(r) => {
            let bad_response = |why: &str| Skipped::new(at, BAD_RESPONSE, why);
            let mut headers = r.headers;
            let status =
                take_pseudo(&mut headers, ":status").ok_or_else(|| bad_response("no :status"))?;
            let status = status
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|s| (100..1000).contains(s))
                .ok_or_else(|| bad_response(&format!(":status `{status}` is not a status")))?;
            headers.retain(|(n, _)| !n.starts_with(':'));
            Some(HttpResponse {
                status,
                headers,
                body: r.body,
                latency_us: 0,
            })
        }
        None => None,
    };
    Ok(Exchange {
        schema_version: SCHEMA_VERSION,
        id: id_at(0),
        captured_at_ms: now_ms(),
        source: "envoy-tap".to_string(),
        experiment: experiment.to_string(),
        request: HttpRequest {
            method,
            uri: path,
            headers,
            body: request.body,
        },
        control,
        redactions: Vec::new(),
        sample_rate: 1.0,
    })
}

fn headers_of(headers: &[Header]) -> Result<Vec<(String, String)>, String> {
    headers
        .iter()
        .map(|h| {
            // With `always_print_primitive_fields` both are written, one of them empty.
            let value = match (h.value.as_deref(), h.raw_value.as_deref()) {
                (Some(v), _) if !v.is_empty() => v.to_string(),
                (_, Some(raw)) if !raw.is_empty() => String::from_utf8_lossy(
                    &base64::engine::general_purpose::STANDARD
                        .decode(raw)
                        .map_err(|e| format!("header {}: raw_value is not base64: {e}", h.key))?,
                )
                .into_owned(),
                _ => String::new(),
            };
            Ok((h.key.to_ascii_lowercase(), value))
        })
        .collect()
}

fn take_pseudo(headers: &mut Vec<(String, String)>, name: &str) -> Option<String> {
    let i = headers.iter().position(|(n, _)| n == name)?;
    Some(headers.remove(i).1)
}

/// A trace body's bytes and whether Envoy cut it.
fn decode(b: TraceBody) -> Result<(Vec<u8>, bool), String> {
    let bytes = match (b.as_bytes, b.as_string) {
        (Some(encoded), _) => base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map_err(|e| format!("body as_bytes is not base64: {e}"))?,
        (None, Some(s)) => s.into_bytes(),
        (None, None) => Vec::new(),
    };
    Ok((bytes, b.truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Imported {
        parse(text.as_bytes(), Path::new("t.json"), "e")
    }

    #[test]
    fn wrapper_and_bare_traces_with_both_body_forms() {
        let text = r#"
        {"http_buffered_trace": {
          "request": {"headers": [{"key": ":authority", "value": "api.local"},
                                  {"key": ":path", "value": "/users/7?x=1"},
                                  {"key": ":method", "value": "POST"},
                                  {"key": "content-type", "value": "application/json"}],
                      "body": {"as_bytes": "eyJhIjoxfQ==", "truncated": false}},
          "response": {"headers": [{"key": ":status", "value": "201"},
                                   {"key": "content-type", "value": "application/json"}],
                       "body": {"as_string": "{\"ok\":true}"}}}}
        {"request": {"headers": [{"key": ":method", "value": "GET"}, {"key": ":path", "value": "/h"}]}}
        "#;
        let out = one(text);
        assert!(out.skipped.is_empty(), "{:?}", out.skipped);
        assert_eq!(out.exchanges.len(), 2);
        let e = &out.exchanges[0];
        assert_eq!(
            (e.request.method.as_str(), e.request.uri.as_str()),
            ("POST", "/users/7?x=1")
        );
        assert_eq!(&e.request.body.bytes[..], b"{\"a\":1}");
        assert_eq!(e.request_header("host"), Some("api.local"));
        assert!(e.request.headers.iter().all(|(n, _)| !n.starts_with(':')));
        let c = e.control.as_ref().unwrap();
        assert_eq!((c.status, &c.body.bytes[..]), (201, &b"{\"ok\":true}"[..]));
        assert_eq!(e.source, "envoy-tap");
        assert!(out.exchanges[1].control.is_none());
    }

    #[test]
    fn bad_traces_are_skipped_with_a_reason() {
        let out = one(
            r#"{"http_buffered_trace": {"request": {"headers": [{"key": ":path", "value": "/"}]}}}
            {"http_buffered_trace": {"response": {"headers": [{"key": ":status", "value": "200"}]}}}
            {"request": {"headers": [{"key": ":method", "value": "G T"}, {"key": ":path", "value": "/"}]}}
            {"request": {"headers": [{"key": ":method", "value": "GET"}, {"key": ":path", "value": "/"}]},
             "response": {"headers": [{"key": ":status", "value": "abc"}]}}
            {"request": {"headers": [{"key": ":method", "value": "GET"}, {"key": ":path", "value": "/"}],
                         "body": {"as_bytes": "%%%"}}}
            [1, 2]"#,
        );
        assert!(out.exchanges.is_empty());
        let said: Vec<String> = out.skipped.iter().map(ToString::to_string).collect();
        let reasons: Vec<&str> = out.skipped.iter().map(|s| s.reason).collect();
        assert_eq!(
            reasons,
            [
                BAD_REQUEST,
                NO_REQUEST,
                BAD_REQUEST,
                BAD_RESPONSE,
                BAD_REQUEST,
                NOT_A_TRACE
            ],
            "{said:#?}"
        );
        assert!(said[0].contains(":method"), "{said:?}");
        assert!(said[4].contains("base64"), "{said:?}");
        // Cut inside a value: truncated.
        let out = one(r#"{"request": {"headers": [{"key": ":method", "val"#);
        assert_eq!(out.skipped[0].reason, TRUNCATED, "{:?}", out.skipped);
    }

    #[test]
    fn trace_ids_are_printed_escaped() {
        // Found by the import_envoy fuzz target: a trace id is the file's text, in `at`.
        let out = one(
            r#"{"http_streamed_trace_segment": {"trace_id": "1\u001b[2J\u007f",
                "response_headers": {"headers": []}}}"#,
        );
        assert_eq!(out.skipped.len(), 1);
        let said = out.skipped[0].to_string();
        assert!(!said.chars().any(char::is_control), "{said:?}");
        assert!(said.contains("trace_id 1\\u{1b}[2J\\u{7f}"), "{said}");
    }

    #[test]
    fn raw_values_are_read_when_value_is_empty() {
        let out = one(r#"{"request": {"headers": [
            {"key": ":method", "value": "", "raw_value": "R0VU"},
            {"key": ":path", "value": "/", "raw_value": ""}]}}"#);
        assert!(out.skipped.is_empty(), "{:?}", out.skipped);
        assert_eq!(out.exchanges[0].request.method, "GET");
    }
}
