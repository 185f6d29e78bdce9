//! Envoy HTTP tap traces: `HttpBufferedTrace` as JSON, as written by the tap filter's
//! `file_per_tap` sink with `format: JSON_BODY_AS_BYTES` or `JSON_BODY_AS_STRING`.
//!
//! Both the wrapper (`{"http_buffered_trace": {...}}`) and a bare trace are read; a file may hold
//! one trace or several concatenated. Headers are `[{"key": ..., "value": ...}]` with the
//! pseudo-headers `:method`, `:path`, `:authority` (request) and `:status` (response).

use super::{id_at, now_ms, read, ImportError, Imported};
use base64::Engine as _;
use serde::Deserialize;
use shadowdiff_model::{Body, Exchange, HttpRequest, HttpResponse, SCHEMA_VERSION};
use std::path::Path;

#[derive(Deserialize)]
struct Wrapper {
    http_buffered_trace: Option<Trace>,
    #[serde(default)]
    request: Option<Message>,
    #[serde(default)]
    response: Option<Message>,
}

#[derive(Deserialize)]
struct Trace {
    request: Option<Message>,
    response: Option<Message>,
}

#[derive(Deserialize, Default)]
struct Message {
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    body: Option<TraceBody>,
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

/// Reads every trace in the given files.
pub fn import_files(
    paths: &[std::path::PathBuf],
    experiment: &str,
) -> Result<Imported, ImportError> {
    let mut out = Imported::default();
    for path in paths {
        let bytes = read(path)?;
        parse_into(&bytes, path, experiment, &mut out);
    }
    Ok(out)
}

/// Parses the traces in `bytes` (one file's content).
pub fn parse_into(bytes: &[u8], origin: &Path, experiment: &str, out: &mut Imported) {
    let stream = serde_json::Deserializer::from_slice(bytes).into_iter::<Wrapper>();
    for (i, item) in stream.enumerate() {
        let where_ = format!("{} trace {}", origin.display(), i + 1);
        let w = match item {
            Ok(w) => w,
            Err(e) => {
                out.skipped
                    .push(format!("{where_}: not an HttpBufferedTrace: {e}"));
                return; // The rest of the stream cannot be resynchronised.
            }
        };
        let (request, response) = match w.http_buffered_trace {
            Some(t) => (t.request, t.response),
            None => (w.request, w.response),
        };
        match to_exchange(request, response, experiment) {
            Ok(e) => out.exchanges.push(e),
            Err(why) => out.skipped.push(format!("{where_}: {why}")),
        }
    }
}

fn to_exchange(
    request: Option<Message>,
    response: Option<Message>,
    experiment: &str,
) -> Result<Exchange, String> {
    let request = request.ok_or("trace has no request")?;
    let mut headers = headers_of(&request)?;
    let method = take_pseudo(&mut headers, ":method").ok_or("request has no :method")?;
    let path = take_pseudo(&mut headers, ":path").ok_or("request has no :path")?;
    if let Some(authority) = take_pseudo(&mut headers, ":authority") {
        if !headers.iter().any(|(n, _)| n == "host") {
            headers.insert(0, ("host".to_string(), authority));
        }
    }
    headers.retain(|(n, _)| !n.starts_with(':'));
    let control = match response {
        Some(r) => {
            let mut headers = headers_of(&r)?;
            let status = take_pseudo(&mut headers, ":status")
                .ok_or("response has no :status")?
                .parse::<u16>()
                .map_err(|_| "response :status is not a number")?;
            headers.retain(|(n, _)| !n.starts_with(':'));
            Some(HttpResponse {
                status,
                headers,
                body: body_of(r.body)?,
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
            method: method.to_ascii_uppercase(),
            uri: path,
            headers,
            body: body_of(request.body)?,
        },
        control,
        redactions: Vec::new(),
        sample_rate: 1.0,
    })
}

fn headers_of(m: &Message) -> Result<Vec<(String, String)>, String> {
    m.headers
        .iter()
        .map(|h| {
            let value = match (&h.value, &h.raw_value) {
                (Some(v), _) => v.clone(),
                (None, Some(raw)) => String::from_utf8_lossy(
                    &base64::engine::general_purpose::STANDARD
                        .decode(raw)
                        .map_err(|e| format!("header {}: raw_value is not base64: {e}", h.key))?,
                )
                .into_owned(),
                (None, None) => String::new(),
            };
            Ok((h.key.to_ascii_lowercase(), value))
        })
        .collect()
}

fn take_pseudo(headers: &mut Vec<(String, String)>, name: &str) -> Option<String> {
    let i = headers.iter().position(|(n, _)| n == name)?;
    Some(headers.remove(i).1)
}

fn body_of(body: Option<TraceBody>) -> Result<Body, String> {
    let Some(b) = body else {
        return Ok(Body::default());
    };
    let bytes = match (b.as_bytes, b.as_string) {
        (Some(encoded), _) => base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map_err(|e| format!("body as_bytes is not base64: {e}"))?,
        (None, Some(s)) => s.into_bytes(),
        (None, None) => Vec::new(),
    };
    let len = bytes.len() as u64;
    // Envoy does not say how long a truncated body was; the kept length is a lower bound.
    Ok(Body::partial(bytes, len, b.truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut out = Imported::default();
        parse_into(text.as_bytes(), Path::new("t.json"), "e", &mut out);
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
        let mut out = Imported::default();
        parse_into(
            br#"{"http_buffered_trace": {"request": {"headers": [{"key": ":path", "value": "/"}]}}}"#,
            Path::new("t.json"),
            "e",
            &mut out,
        );
        assert!(out.exchanges.is_empty());
        assert!(out.skipped[0].contains(":method"), "{:?}", out.skipped);
    }
}
