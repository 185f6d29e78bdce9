//! GoReplay `.gor` files: records each followed by a separator line `🐵🙈🙉`, each starting
//! with a meta line `TYPE ID TIMESTAMP_NS LATENCY_NS` — type `1` a request, `2` the original
//! response, `3` a response GoReplay got when replaying (ignored) — followed by the raw HTTP/1
//! message. Requests and responses are paired by id, across all the files of one import (GoReplay
//! splits a recording into `name_0.gor`, `name_1.gor`, … and a pair may straddle two).
//!
//! Edges of files recorded by others:
//! - `.gor.gz`: GoReplay gzips a file whose name ends in `.gz`; gzip is recognised by its magic
//!   bytes. A cut gzip stream keeps what was decoded.
//! - CRLF line endings (a recording that went through a Windows checkout or editor): the meta
//!   and separator lines end in `\r\n`; they are read the same as `\n` files. A body whose own
//!   line ends were converted too is restored when its `Content-Length` (or its chunk sizes) says
//!   so.
//! - A file cut short: the last record has no separator line after it. It is skipped as
//!   `truncated`, so a partly written separator never becomes body bytes. (A separator line
//!   without its final newline, at the very end of a file, still counts.)

use super::{content, frame_request, id_at, printable_bytes, read, ImportError, Imported, Skipped};
use shadowdiff_model::{Body, Exchange, HttpRequest, HttpResponse, SCHEMA_VERSION};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What GoReplay writes after every record: the monkeys on a line of their own.
pub const SEPARATOR: &[u8] = "\n🐵🙈🙉\n".as_bytes();
const MONKEYS: &[u8] = "🐵🙈🙉".as_bytes();
const MAX_HEADERS: usize = 256;

/// Skip reasons ([`Skipped::reason`]).
const TRUNCATED: &str = "truncated";
const BAD_META: &str = "bad meta line";
const BAD_REQUEST: &str = "bad request";
const BAD_RESPONSE: &str = "bad response";
const UNKNOWN_TYPE: &str = "unknown record type";
const NO_REQUEST: &str = "no request";
const DUPLICATE: &str = "duplicate response";

/// Reads one `.gor` (or `.gor.gz`) file.
pub fn import_file(path: &Path, experiment: &str) -> Result<Imported, ImportError> {
    import_files(&[path.to_path_buf()], experiment)
}

/// Reads `.gor` (or `.gor.gz`) files, pairing requests and responses across all of them.
pub fn import_files(paths: &[PathBuf], experiment: &str) -> Result<Imported, ImportError> {
    let mut records = Records::default();
    for path in paths {
        let bytes = read(path)?;
        records.read(&bytes, &path.display().to_string());
    }
    Ok(records.pair(experiment))
}

/// Parses a whole `.gor` file's content (gzipped or not).
pub fn parse(bytes: &[u8], origin: &str, experiment: &str) -> Imported {
    let mut records = Records::default();
    records.read(bytes, origin);
    records.pair(experiment)
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

/// Requests in file order, responses by id, until [`Records::pair`].
#[derive(Default)]
struct Records {
    requests: Vec<(String, u64, HttpRequest)>,
    /// Id → (order read, where, response).
    responses: HashMap<String, (usize, String, HttpResponse)>,
    skipped: Vec<Skipped>,
}

impl Records {
    fn read(&mut self, raw: &[u8], origin: &str) {
        let content = content(raw);
        let mut damage_told = false;
        for (i, (record, terminated)) in split_records(&content.bytes).into_iter().enumerate() {
            let at = format!("{origin} record {}", i + 1);
            if record.iter().all(u8::is_ascii_whitespace) {
                continue; // Blank lines between or after records.
            }
            if !terminated {
                self.unterminated(record, at, content.damaged.as_deref());
                damage_told = true;
                continue;
            }
            self.record(record, at);
        }
        // A gzip stream cut exactly between two records: every record read is whole, but the
        // file lost some.
        if let (Some(d), false) = (&content.damaged, damage_told) {
            self.skipped.push(Skipped::new(origin, TRUNCATED, d));
        }
    }

    /// The last piece of a file, with no separator after it: cut short, or not GoReplay at all.
    fn unterminated(&mut self, record: &[u8], at: String, damaged: Option<&str>) {
        if !matches!(record.first(), Some(b'1'..=b'3')) {
            let line = record.split(|&b| b == b'\n').next().unwrap_or_default();
            let why = format!(
                "`{}` is not `TYPE ID TIMESTAMP LATENCY` (not a GoReplay file?)",
                printable_bytes(line, 60)
            );
            self.skipped.push(Skipped::new(at, BAD_META, &why));
            return;
        }
        let mut why = format!(
            "the file ends inside this record ({} bytes), before its `🐵🙈🙉` line",
            record.len()
        );
        if let Some(d) = damaged {
            why = format!("{why}; {d}");
        }
        self.skipped.push(Skipped::new(at, TRUNCATED, &why));
    }

    /// One record that was followed by its separator line (`record` ends with the separator's
    /// leading line end).
    fn record(&mut self, record: &[u8], at: String) {
        let Some(nl) = record.iter().position(|&b| b == b'\n') else {
            return; // Not reached: a terminated record ends with `\n`.
        };
        let line = &record[..nl];
        // GoReplay writes `\n`; a meta line ending in `\r\n` means the whole file was converted.
        let crlf = line.ends_with(b"\r");
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(m) = std::str::from_utf8(line).ok().and_then(meta) else {
            let why = format!(
                "`{}` is not `TYPE ID TIMESTAMP LATENCY`",
                printable_bytes(line, 60)
            );
            self.skipped.push(Skipped::new(at, BAD_META, &why));
            return;
        };
        // The separator's leading line end is not part of the message.
        let mut end = record.len() - 1;
        if crlf && end > nl && record[end - 1] == b'\r' {
            end -= 1;
        }
        let payload = if end > nl {
            &record[nl + 1..end]
        } else {
            &[][..]
        };
        match m.kind {
            1 => match parse_request(payload, crlf) {
                Ok(r) => self.requests.push((m.id.to_string(), m.ts_ns, r)),
                Err(why) => self.skipped.push(Skipped::new(at, BAD_REQUEST, &why)),
            },
            2 => match parse_response(payload, m.latency_ns, crlf) {
                Ok(r) => {
                    if self.responses.contains_key(m.id) {
                        let why = format!("a response with id {} was read before", m.id);
                        self.skipped.push(Skipped::new(at, DUPLICATE, &why));
                    } else {
                        let order = self.responses.len();
                        self.responses.insert(m.id.to_string(), (order, at, r));
                    }
                }
                Err(why) => self.skipped.push(Skipped::new(at, BAD_RESPONSE, &why)),
            },
            3 => {}
            k => self
                .skipped
                .push(Skipped::new(at, UNKNOWN_TYPE, &format!("type {k}"))),
        }
    }

    fn pair(mut self, experiment: &str) -> Imported {
        let mut out = Imported {
            exchanges: Vec::with_capacity(self.requests.len()),
            skipped: std::mem::take(&mut self.skipped),
        };
        for (id, ts_ns, request) in self.requests {
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
                control: self.responses.remove(&id).map(|(_, _, r)| r),
                redactions: Vec::new(),
                sample_rate: 1.0,
            });
        }
        // Responses whose request is in none of the files read.
        let mut orphans: Vec<(usize, String, String)> = self
            .responses
            .into_iter()
            .map(|(id, (order, at, _))| (order, at, id))
            .collect();
        orphans.sort();
        for (_, at, id) in orphans {
            let why = format!("response {id} has no request in the files read");
            out.skipped.push(Skipped::new(at, NO_REQUEST, &why));
        }
        out
    }
}

/// The file's records, each with whether a separator line followed it. A separator line is the
/// monkeys at the start of a line and followed by `\n`, `\r\n` or the end of the file (as
/// GoReplay's own reader, which reads line by line). A terminated record keeps the separator's
/// leading line end; the last piece, if no separator followed it, is returned unterminated.
fn split_records(bytes: &[u8]) -> Vec<(&[u8], bool)> {
    let mut out = Vec::new();
    let (mut start, mut from) = (0, 0);
    while let Some(rel) = find(&bytes[from..], MONKEYS) {
        let at = from + rel;
        let after = &bytes[at + MONKEYS.len()..];
        let line_start = at == 0 || bytes[at - 1] == b'\n';
        let line_end = if after.starts_with(b"\r\n") {
            Some(2)
        } else if after.starts_with(b"\n") {
            Some(1)
        } else if after.is_empty() || after == b"\r" {
            // The last line of a file, its line end missing or cut after the `\r`.
            Some(after.len())
        } else {
            None
        };
        match line_end {
            Some(eol) if line_start => {
                out.push((&bytes[start..at], true));
                start = at + MONKEYS.len() + eol;
                from = start;
            }
            _ => from = at + 1,
        }
    }
    if start < bytes.len() {
        out.push((&bytes[start..], false));
    }
    out
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

fn parse_request(payload: &[u8], crlf: bool) -> Result<HttpRequest, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(payload) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("the request head is incomplete".into()),
        Err(e) => return Err(format!("not HTTP/1: {e}")),
    };
    let method = req.method.ok_or("the request has no method")?.to_string();
    let path = req.path.ok_or("the request has no path")?;
    // Absolute-form targets (proxies) keep only path and query.
    let uri = match path.parse::<http::Uri>() {
        Ok(u) if u.authority().is_some() => u
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
            .to_string(),
        _ => path.to_string(),
    };
    if uri.is_empty() {
        return Err("the request has no path".into());
    }
    let mut headers = headers_of(req.headers);
    let body = decode_body(&headers, &payload[head..], crlf);
    frame_request(&mut headers, &body);
    Ok(HttpRequest {
        method,
        uri,
        headers,
        body,
    })
}

fn parse_response(payload: &[u8], latency_ns: u64, crlf: bool) -> Result<HttpResponse, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(payload) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("the response head is incomplete".into()),
        Err(e) => return Err(format!("not HTTP/1: {e}")),
    };
    let status = resp.code.ok_or("the response has no status")?;
    let headers = headers_of(resp.headers);
    let body = decode_body(&headers, &payload[head..], crlf);
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
/// (GoReplay cuts at its own limit), or chunked and cut, is kept and marked truncated. In a
/// CRLF-converted file (`crlf`) the body's own `\n`s may have become `\r\n`: when the recorded
/// framing fits the body with them turned back, and not as it is, that is the body.
fn decode_body(headers: &[(String, String)], raw: &[u8], crlf: bool) -> Body {
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut result = dechunk(raw);
        if crlf && !matches!(result, Chunks::Complete(_)) {
            if let Chunks::Complete(body) = dechunk(&crlf_to_lf(raw)) {
                result = Chunks::Complete(body);
            }
        }
        return match result {
            Chunks::Complete(body) => Body::complete(body),
            Chunks::Cut(body) => {
                let len = body.len() as u64;
                Body::partial(body, len + 1, true)
            }
        };
    }
    let declared = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.trim().parse::<u64>().ok());
    let Some(n) = declared else {
        return Body::complete(raw.to_vec());
    };
    if crlf && raw.len() as u64 != n {
        let lf = crlf_to_lf(raw);
        if lf.len() as u64 == n {
            return Body::complete(lf);
        }
    }
    match usize::try_from(n) {
        Ok(n) if n <= raw.len() => Body::complete(raw[..n].to_vec()),
        _ => Body::partial(raw.to_vec(), n, true),
    }
}

/// A de-chunked body: whole (the last chunk was read), or cut (the data ran out, or a chunk
/// line was not one) with what came before.
enum Chunks {
    Complete(Vec<u8>),
    Cut(Vec<u8>),
}

/// De-chunks `raw` (trailers ignored). Chunk lines end in `\r\n`, or `\n` once a CRLF file's
/// line ends are turned back.
fn dechunk(raw: &[u8]) -> Chunks {
    let mut out = Vec::new();
    let mut rest = raw;
    loop {
        let Some(eol) = rest.iter().position(|&b| b == b'\n') else {
            return Chunks::Cut(out);
        };
        let line = rest[..eol].strip_suffix(b"\r").unwrap_or(&rest[..eol]);
        let digits = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(digits.trim_ascii())
            .ok()
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|d| usize::from_str_radix(d, 16).ok());
        let Some(size) = size else {
            return Chunks::Cut(out);
        };
        rest = &rest[eol + 1..];
        if size == 0 {
            return Chunks::Complete(out);
        }
        if rest.len() < size {
            out.extend_from_slice(rest);
            return Chunks::Cut(out);
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        rest = match (rest.strip_prefix(b"\r\n"), rest.strip_prefix(b"\n")) {
            (Some(r), _) | (None, Some(r)) => r,
            (None, None) => return Chunks::Cut(out),
        };
    }
}

/// `raw` with every `\r\n` turned into `\n`.
fn crlf_to_lf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, &b) in raw.iter().enumerate() {
        if !(b == b'\r' && raw.get(i + 1) == Some(&b'\n')) {
            out.push(b);
        }
    }
    out
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
            ("2 e 0 0", "HTTP/1.1 200 OK\r\n\r\n"),
        ]);
        let out = parse(&file, "t.gor", "e");
        let reasons: Vec<&str> = out.skipped.iter().map(|s| s.reason).collect();
        assert_eq!(
            reasons,
            [BAD_META, BAD_REQUEST, NO_REQUEST],
            "{:?}",
            out.skipped
        );
        assert_eq!(out.exchanges.len(), 1);
        assert!(out.exchanges[0].control.is_none());
    }

    #[test]
    fn separators_are_whole_lines() {
        // The monkeys inside a line, or followed by more on their line, are body bytes.
        let body = "x 🐵🙈🙉\n🐵🙈🙉 y";
        let file = gor(&[(
            "1 a 0 0",
            &format!(
                "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )]);
        let out = parse(&file, "t.gor", "e");
        assert!(out.skipped.is_empty(), "{:?}", out.skipped);
        assert_eq!(&out.exchanges[0].request.body.bytes[..], body.as_bytes());
        // Two separator lines in a row, or a file that starts with one, make no record.
        let mut file = SEPARATOR[1..].to_vec();
        file.extend(gor(&[("1 a 0 0", "GET / HTTP/1.1\r\n\r\n")]));
        file.extend_from_slice(&SEPARATOR[1..]);
        let out = parse(&file, "t.gor", "e");
        assert_eq!(
            (out.exchanges.len(), out.skipped.len()),
            (1, 0),
            "{:?}",
            out.skipped
        );
    }

    #[test]
    fn chunked_bodies_cut_or_malformed_are_truncated() {
        let h = [("transfer-encoding".to_string(), "chunked".to_string())];
        let b = decode_body(&h, b"3\r\nabc\r\n0\r\n\r\n", false);
        assert_eq!((&b.bytes[..], b.truncated), (&b"abc"[..], false));
        let b = decode_body(&h, b"3;ext=1\r\nabc\r\n2\r\nde", false);
        assert_eq!((&b.bytes[..], b.truncated), (&b"abcde"[..], true));
        let b = decode_body(&h, b"zz\r\nabc", false);
        assert_eq!((&b.bytes[..], b.truncated), (&b""[..], true));
        let b = decode_body(&h, b"ffffffffffffffffffff\r\nabc", false);
        assert!(b.truncated);
    }
}
