//! GoReplay `.gor` files: records separated by a `🐵🙈🙉` line, each starting with a meta line
//! `TYPE ID TIMESTAMP_NS LATENCY_NS` — type `1` a request, `2` the original response, `3` a
//! response GoReplay got when replaying (ignored) — followed by the raw HTTP/1 message.
//! Requests and responses are paired by id.

use super::{id_at, read, ImportError, Imported};
use shadowdiff_model::{Body, Exchange, HttpRequest, HttpResponse, SCHEMA_VERSION};
use std::collections::HashMap;
use std::path::Path;

const SEPARATOR: &[u8] = "\n🐵🙈🙉\n".as_bytes();
const MAX_HEADERS: usize = 256;

/// Reads one `.gor` file.
pub fn import_file(path: &Path, experiment: &str) -> Result<Imported, ImportError> {
    let bytes = read(path)?;
    Ok(parse(&bytes, &path.display().to_string(), experiment))
}

struct Meta<'a> {
    kind: u8,
    id: &'a str,
    ts_ns: u64,
    latency_ns: u64,
}

fn meta(line: &str) -> Option<Meta<'_>> {
    let mut it = line.split_ascii_whitespace();
    let kind = it.next()?.parse().ok()?;
    let id = it.next()?;
    let ts_ns = it.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    let latency_ns = it.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    Some(Meta {
        kind,
        id,
        ts_ns,
        latency_ns,
    })
}

/// Parses a whole `.gor` file's content.
pub fn parse(bytes: &[u8], origin: &str, experiment: &str) -> Imported {
    let mut out = Imported::default();
    // Requests in file order; responses by id.
    let mut requests: Vec<(String, u64, HttpRequest)> = Vec::new();
    let mut responses: HashMap<String, HttpResponse> = HashMap::new();
    for (i, record) in split_records(bytes).enumerate() {
        let where_ = format!("{origin} record {}", i + 1);
        let Some(nl) = record.iter().position(|&b| b == b'\n') else {
            if !record.iter().all(u8::is_ascii_whitespace) {
                out.skipped.push(format!("{where_}: no meta line"));
            }
            continue;
        };
        let line = String::from_utf8_lossy(&record[..nl]);
        let Some(m) = meta(line.trim_end_matches('\r')) else {
            out.skipped.push(format!(
                "{where_}: meta line `{line}` is not `TYPE ID TIMESTAMP LATENCY`"
            ));
            continue;
        };
        let payload = &record[nl + 1..];
        match m.kind {
            1 => match parse_request(payload) {
                Ok(r) => requests.push((m.id.to_string(), m.ts_ns, r)),
                Err(why) => out.skipped.push(format!("{where_}: {why}")),
            },
            2 => match parse_response(payload, m.latency_ns) {
                Ok(r) => {
                    responses.insert(m.id.to_string(), r);
                }
                Err(why) => out.skipped.push(format!("{where_}: {why}")),
            },
            3 => {}
            k => out
                .skipped
                .push(format!("{where_}: unknown record type {k}")),
        }
    }
    for (id, ts_ns, request) in requests {
        out.exchanges.push(Exchange {
            schema_version: SCHEMA_VERSION,
            id: id_at(ts_ns),
            captured_at_ms: if ts_ns == 0 {
                super::now_ms()
            } else {
                ts_ns / 1_000_000
            },
            source: "goreplay".to_string(),
            experiment: experiment.to_string(),
            request,
            control: responses.remove(&id),
            redactions: Vec::new(),
            sample_rate: 1.0,
        });
    }
    out
}

fn split_records(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match find(rest, SEPARATOR) {
            Some(at) => {
                let record = &rest[..at];
                rest = &rest[at + SEPARATOR.len()..];
                Some(record)
            }
            None => {
                // The last record may end with the separator without its final newline.
                let record = rest
                    .strip_suffix(&SEPARATOR[..SEPARATOR.len() - 1])
                    .unwrap_or(rest);
                rest = &[];
                Some(record)
            }
        }
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn headers_of(parsed: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    parsed
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

fn parse_request(payload: &[u8]) -> Result<HttpRequest, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(payload) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("request head is incomplete".into()),
        Err(e) => return Err(format!("request is not HTTP/1: {e}")),
    };
    let method = req.method.ok_or("request has no method")?.to_string();
    let path = req.path.ok_or("request has no path")?;
    // Absolute-form targets (proxies) keep only path and query.
    let uri = match path.parse::<http::Uri>() {
        Ok(u) if u.authority().is_some() => u
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        _ => path.to_string(),
    };
    let headers = headers_of(req.headers);
    let body = decode_body(&headers, &payload[head..])?;
    Ok(HttpRequest {
        method,
        uri,
        headers,
        body,
    })
}

fn parse_response(payload: &[u8], latency_ns: u64) -> Result<HttpResponse, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(payload) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("response head is incomplete".into()),
        Err(e) => return Err(format!("response is not HTTP/1: {e}")),
    };
    let status = resp.code.ok_or("response has no status")?;
    let headers = headers_of(resp.headers);
    let body = decode_body(&headers, &payload[head..])?;
    Ok(HttpResponse {
        status,
        headers: headers
            .into_iter()
            .filter(|(n, _)| n != "transfer-encoding")
            .collect(),
        body,
        latency_us: latency_ns / 1_000,
    })
}

/// The body as sent; chunked bodies are de-chunked. A body shorter than its Content-Length
/// (GoReplay cuts at its own limit) is kept and marked truncated.
fn decode_body(headers: &[(String, String)], raw: &[u8]) -> Result<Body, String> {
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = raw;
        loop {
            match httparse::parse_chunk_size(rest) {
                Ok(httparse::Status::Complete((at, size))) => {
                    if size == 0 {
                        return Ok(Body::complete(out));
                    }
                    let size = usize::try_from(size).map_err(|_| "chunk too large")?;
                    let data = &rest[at..];
                    if data.len() < size {
                        out.extend_from_slice(data);
                        let len = out.len() as u64;
                        return Ok(Body::partial(out, len + 1, true));
                    }
                    out.extend_from_slice(&data[..size]);
                    rest = data[size..].strip_prefix(b"\r\n").unwrap_or(&data[size..]);
                }
                _ => {
                    let len = out.len() as u64;
                    return Ok(Body::partial(out, len + 1, true));
                }
            }
        }
    }
    let declared = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if (raw.len() as u64) < n => Ok(Body::partial(raw.to_vec(), n, true)),
        Some(n) => Ok(Body::complete(raw[..n as usize].to_vec())),
        None => Ok(Body::complete(raw.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gor(records: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (meta, msg) in records {
            out.extend_from_slice(meta.as_bytes());
            out.push(b'\n');
            out.extend_from_slice(msg.as_bytes());
            out.extend_from_slice(SEPARATOR);
        }
        out
    }

    #[test]
    fn pairs_requests_and_responses_by_id() {
        let file = gor(&[
            ("1 aaa 1700000000000000000 0", "POST /search?q=1 HTTP/1.1\r\nHost: api\r\nContent-Length: 7\r\n\r\n{\"q\":1}"),
            ("1 bbb 1700000000100000000 0", "GET /users/7 HTTP/1.1\r\nHost: api\r\n\r\n"),
            ("2 bbb 1700000000105000000 5000000", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n5\r\n{\"id\"\r\n3\r\n:7}\r\n0\r\n\r\n"),
            ("3 bbb 1700000000105000000 1", "HTTP/1.1 500 Oops\r\n\r\n"),
            ("2 aaa 1700000000002000000 2000000", "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
        ]);
        let out = parse(&file, "t.gor", "e");
        assert!(out.skipped.is_empty(), "{:?}", out.skipped);
        assert_eq!(out.exchanges.len(), 2);
        let a = &out.exchanges[0];
        assert_eq!(
            (a.request.method.as_str(), a.request.uri.as_str()),
            ("POST", "/search?q=1")
        );
        assert_eq!(&a.request.body.bytes[..], b"{\"q\":1}");
        assert_eq!(a.captured_at_ms, 1_700_000_000_000);
        let ac = a.control.as_ref().unwrap();
        assert_eq!(
            (ac.status, &ac.body.bytes[..], ac.latency_us),
            (201, &b"ok"[..], 2000)
        );
        let b = &out.exchanges[1];
        let bc = b.control.as_ref().unwrap();
        assert_eq!((bc.status, &bc.body.bytes[..]), (200, &b"{\"id\":7}"[..]));
        assert!(a.id < b.id, "ids sort by capture time");
        assert_eq!(b.source, "goreplay");
    }

    #[test]
    fn bad_records_are_skipped_and_unpaired_requests_kept() {
        let file = gor(&[
            ("x y", "GET / HTTP/1.1\r\n\r\n"),
            ("1 c 0 0", "NOT HTTP\r\n"),
            ("1 d 0 0", "GET /only HTTP/1.1\r\nHost: a\r\n\r\n"),
        ]);
        let out = parse(&file, "t.gor", "e");
        assert_eq!(out.skipped.len(), 2, "{:?}", out.skipped);
        assert_eq!(out.exchanges.len(), 1);
        assert!(out.exchanges[0].control.is_none());
    }
}
