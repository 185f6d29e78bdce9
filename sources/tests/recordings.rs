//! The importers on the shapes of recordings made by other people (issue 19, item 4): GoReplay
//! files converted to CRLF, cut short, gzipped; Envoy tap traces whose request keeps a
//! `content-length` the body does not have, and streamed traces split over files.
#![allow(clippy::unwrap_used)]

use shadowdiff_model::Exchange;
use shadowdiff_sources::{envoy, goreplay, Imported};
use std::io::Write as _;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// GoReplay

const REQUEST_BODY: &str =
    "{\n  \"items\": [\n    {\"sku\": \"A-1\", \"qty\": 2}\n  ],\n  \"coupon\": null\n}\n";
const RESPONSE_BODY: &str = "{\n  \"order\": 7731,\n  \"status\": \"created\"\n}";

/// A request with a pretty-printed JSON body (its `\n`s are body bytes) and its response, as
/// `gor --input-raw :80 --input-raw-track-response --output-file` writes them: meta line, raw
/// HTTP/1 message (CRLF head), `\n🐵🙈🙉\n`.
fn two_records() -> (Vec<u8>, usize) {
    let request = format!(
        "1 c3d60a0b7f0000017e1bc3a6 1593687438153418000 0\n\
         POST /api/v1/orders?source=web HTTP/1.1\r\n\
         Host: shop.example.com\r\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:78.0) Gecko/20100101 Firefox/78.0\r\n\
         Accept: application/json\r\n\
         Content-Type: application/json\r\n\
         Content-Length: {}\r\n\
         \r\n\
         {REQUEST_BODY}",
        REQUEST_BODY.len()
    );
    let response = format!(
        "2 c3d60a0b7f0000017e1bc3a6 1593687438161511000 8093000\n\
         HTTP/1.1 201 Created\r\n\
         Content-Type: application/json; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         Date: Thu, 02 Jul 2020 10:57:18 GMT\r\n\
         \r\n\
         {RESPONSE_BODY}",
        RESPONSE_BODY.len()
    );
    let mut file = request.into_bytes();
    file.extend_from_slice(goreplay::SEPARATOR);
    let first_end = file.len();
    file.extend_from_slice(response.as_bytes());
    file.extend_from_slice(goreplay::SEPARATOR);
    (file, first_end)
}

/// A longer recording: a chunked response whose chunks hold `\n`s, a GET without a body, a
/// response GoReplay got when replaying (type 3).
fn recording() -> Vec<u8> {
    let (mut file, _) = two_records();
    let chunked = "[\n  {\"id\": 1},\n  {\"id\": 2}\n]";
    let (a, b) = chunked.split_at(9);
    let records = [
        "1 d4e71b1c7f0000017e1bc3a7 1593687438200000000 0\n\
         GET /api/v1/orders?page=2 HTTP/1.1\r\nHost: shop.example.com\r\nAccept: */*\r\n\r\n"
            .to_string(),
        format!(
            "2 d4e71b1c7f0000017e1bc3a7 1593687438204000000 4000000\n\
             HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        ),
        "3 d4e71b1c7f0000017e1bc3a7 1593687438300000000 1000000\n\
         HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]"
            .to_string(),
    ];
    for r in records {
        file.extend_from_slice(r.as_bytes());
        file.extend_from_slice(goreplay::SEPARATOR);
    }
    file
}

/// What `unix2dos` or a Windows checkout (`core.autocrlf`) does: every `\n` not already after a
/// `\r` becomes `\r\n`.
fn to_crlf(lf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lf.len() + lf.len() / 8);
    for (i, &b) in lf.iter().enumerate() {
        if b == b'\n' && (i == 0 || lf[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// An exchange without its id (random bits of a UUIDv7), for comparing two imports.
fn content_of(e: &Exchange) -> String {
    let mut e = e.clone();
    e.id.clear();
    serde_json::to_string(&e).unwrap()
}

fn reasons(out: &Imported) -> Vec<&'static str> {
    out.skipped.iter().map(|s| s.reason).collect()
}

#[test]
fn goreplay_crlf_file_parses_like_the_lf_file() {
    let lf = recording();
    let crlf = to_crlf(&lf);
    assert_ne!(lf, crlf);
    let from_lf = goreplay::parse(&lf, "lf.gor", "e");
    let from_crlf = goreplay::parse(&crlf, "crlf.gor", "e");
    assert!(from_lf.skipped.is_empty(), "{:?}", from_lf.skipped);
    assert!(from_crlf.skipped.is_empty(), "{:?}", from_crlf.skipped);
    assert_eq!(from_lf.exchanges.len(), 2);
    let lf_exchanges: Vec<String> = from_lf.exchanges.iter().map(content_of).collect();
    let crlf_exchanges: Vec<String> = from_crlf.exchanges.iter().map(content_of).collect();
    assert_eq!(lf_exchanges, crlf_exchanges);
    // And both are right: the body's own line ends are restored, the separator is not in it.
    let order = &from_crlf.exchanges[0];
    assert_eq!(&order.request.body.bytes[..], REQUEST_BODY.as_bytes());
    let control = order.control.as_ref().unwrap();
    assert_eq!(
        (control.status, &control.body.bytes[..]),
        (201, RESPONSE_BODY.as_bytes())
    );
    let page = from_crlf.exchanges[1].control.as_ref().unwrap();
    assert_eq!(&page.body.bytes[..], b"[\n  {\"id\": 1},\n  {\"id\": 2}\n]");
    assert!(!page.body.truncated);
}

/// Cuts the 2-record file at every byte (LF, CRLF, gzipped): never a panic, never a body holding
/// a piece of the separator, every record whose separator line was written still imported, and
/// the record cut short skipped as `truncated`.
#[test]
fn goreplay_file_cut_at_every_byte() {
    for crlf in [false, true] {
        let (lf, lf_first_end) = two_records();
        let (file, first_end) = if crlf {
            (to_crlf(&lf), to_crlf(&lf[..lf_first_end]).len())
        } else {
            (lf, lf_first_end)
        };
        // A separator line counts once its monkeys are written (its line end may be missing).
        let eol = if crlf { 2 } else { 1 };
        for cut in 0..=file.len() {
            let out = goreplay::parse(&file[..cut], "cut.gor", "e");
            let first_whole = cut >= first_end - eol;
            let second_whole = cut >= file.len() - eol;
            let at_boundary = cut == 0 || (first_whole && cut <= first_end) || second_whole;
            let label = format!("crlf {crlf}, cut at {cut} of {}", file.len());
            assert_eq!(
                out.exchanges.len(),
                usize::from(first_whole),
                "{label}: {:?}",
                out.skipped
            );
            let expected: &[&str] = if at_boundary { &[] } else { &["truncated"] };
            assert_eq!(reasons(&out), expected, "{label}: {:?}", out.skipped);
            if let Some(e) = out.exchanges.first() {
                assert_eq!(
                    &e.request.body.bytes[..],
                    REQUEST_BODY.as_bytes(),
                    "{label}"
                );
                assert!(!e.request.body.truncated, "{label}");
                match &e.control {
                    Some(c) => {
                        assert!(second_whole, "{label}");
                        assert_eq!(&c.body.bytes[..], RESPONSE_BODY.as_bytes(), "{label}");
                    }
                    None => assert!(!second_whole, "{label}"),
                }
            }
        }
    }
    // Gzipped, cut anywhere: what decodes is parsed the same way.
    let (lf, _) = two_records();
    let gz = gzip(&lf);
    for cut in 0..=gz.len() {
        let out = goreplay::parse(&gz[..cut], "cut.gor.gz", "e");
        for e in &out.exchanges {
            assert_eq!(
                &e.request.body.bytes[..],
                REQUEST_BODY.as_bytes(),
                "gz cut at {cut}"
            );
            if let Some(c) = &e.control {
                assert_eq!(
                    &c.body.bytes[..],
                    RESPONSE_BODY.as_bytes(),
                    "gz cut at {cut}"
                );
            }
        }
        // The gzip trailer (8 bytes) is past the last record: cut there, all was decoded.
        if cut > 1 && cut < gz.len() {
            assert!(
                reasons(&out).contains(&"truncated"),
                "gz cut at {cut}: {:?}",
                out.skipped
            );
        }
    }
}

#[test]
fn goreplay_gz_is_decompressed_and_binary_is_never_printed() {
    let file = recording();
    let out = goreplay::parse(&gzip(&file), "requests_0.gor.gz", "e");
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
    assert_eq!(out.exchanges.len(), 2);
    // `cat a.gz b.gz`: both members are read.
    let two = [gzip(&file), gzip(&file)].concat();
    assert_eq!(goreplay::parse(&two, "x.gor.gz", "e").exchanges.len(), 4);
    // Not GoReplay at all (a zip, an executable): one bounded, escaped reason.
    let mut binary = b"PK\x03\x04\x14\x00\x08\x00\x08\x00\x1b[2J\x07".to_vec();
    binary.extend((0..=255u8).cycle().take(64 * 1024));
    let out = goreplay::parse(&binary, "capture.gor", "e");
    assert_eq!(reasons(&out), ["bad meta line"]);
    let said = out.skipped[0].to_string();
    assert!(said.len() < 400, "{said}");
    assert!(!said.chars().any(char::is_control), "{said:?}");
    assert!(said.contains("\\u{1b}[2J\\u{7}"), "{said}");
}

#[test]
fn goreplay_pairs_across_the_files_of_a_split_recording() {
    // `--output-file requests.gor` rolls over into requests_0.gor, requests_1.gor, …: a request
    // at the end of one file may have its response at the start of the next.
    let (file, first_end) = two_records();
    let dir = tempfile::tempdir().unwrap();
    let paths = [
        dir.path().join("requests_0.gor"),
        dir.path().join("requests_1.gor.gz"),
    ];
    std::fs::write(&paths[0], &file[..first_end]).unwrap();
    std::fs::write(&paths[1], gzip(&file[first_end..])).unwrap();
    let files =
        shadowdiff_sources::collect_files(&[dir.path().to_path_buf()], &["gor", "gor.gz"]).unwrap();
    assert_eq!(files, paths);
    let out = goreplay::import_files(&files, "e").unwrap();
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
    assert_eq!(out.exchanges.len(), 1);
    assert!(out.exchanges[0].control.is_some());
    // Read alone, the second file's response has no request.
    let alone = goreplay::import_file(&paths[1], "e").unwrap();
    assert_eq!(reasons(&alone), ["no request"]);
}

// ---------------------------------------------------------------------------------------------
// Envoy

/// `file_per_tap` output as Envoy writes it: pretty-printed, `always_print_primitive_fields`
/// (empty `raw_value`s, `truncated: false`, empty trailers).
fn buffered(request_headers: &str, request_body: Option<&str>) -> String {
    let body = request_body.map_or(String::new(), |b| format!(",\n   \"body\": {b}"));
    format!(
        r#"{{
 "http_buffered_trace": {{
  "request": {{
   "headers": [
    {{"key": ":authority", "value": "api.example.com", "raw_value": ""}},
    {{"key": ":path", "value": "/v1/upload?bucket=7", "raw_value": ""}},
    {{"key": ":method", "value": "POST", "raw_value": ""}},
    {{"key": ":scheme", "value": "http", "raw_value": ""}},
    {{"key": "user-agent", "value": "curl/7.68.0", "raw_value": ""}},
    {{"key": "content-type", "value": "application/json", "raw_value": ""}},
    {request_headers}
    {{"key": "x-forwarded-proto", "value": "http", "raw_value": ""}},
    {{"key": "x-request-id", "value": "5f5a8e4c-3b0a-4d5e-9b1e-1f2d3c4b5a69", "raw_value": ""}}
   ]{body},
   "trailers": []
  }},
  "response": {{
   "headers": [
    {{"key": ":status", "value": "200", "raw_value": ""}},
    {{"key": "content-type", "value": "application/json", "raw_value": ""}},
    {{"key": "content-length", "value": "11", "raw_value": ""}},
    {{"key": "x-envoy-upstream-service-time", "value": "3", "raw_value": ""}}
   ],
   "body": {{"truncated": false, "as_bytes": "eyJvayI6dHJ1ZX0="}},
   "trailers": []
  }}
 }}
}}
"#
    )
}

fn header<'a>(e: &'a Exchange, name: &str) -> Vec<&'a str> {
    e.request
        .headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn envoy_request_framing_agrees_with_the_body_the_trace_carries() {
    let cl = |n: usize| format!(r#"{{"key": "content-length", "value": "{n}", "raw_value": ""}},"#);
    let te = r#"{"key": "transfer-encoding", "value": "chunked", "raw_value": ""},"#;
    let text = [
        // content-length kept, no body at all.
        buffered(&cl(512), None),
        // content-length kept, an empty body.
        buffered(&cl(512), Some(r#"{"truncated": false, "as_bytes": ""}"#)),
        // content-length kept, a shorter body ("{\"a\":1}").
        buffered(
            &cl(512),
            Some(r#"{"truncated": false, "as_bytes": "eyJhIjoxfQ=="}"#),
        ),
        // chunked on the wire, held whole.
        buffered(
            te,
            Some(r#"{"truncated": false, "as_string": "{\"a\":1}"}"#),
        ),
        // the length the body has: kept.
        buffered(
            &cl(7),
            Some(r#"{"truncated": false, "as_string": "{\"a\":1}"}"#),
        ),
        // cut by the tap's max_buffered_rx_bytes: truncated, its length from content-length.
        buffered(
            &cl(4096),
            Some(r#"{"truncated": true, "as_string": "{\"a\":1"}"#),
        ),
    ]
    .concat();
    let out = envoy::parse(text.as_bytes(), Path::new("tap_1.json"), "e");
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
    let e = &out.exchanges;
    assert_eq!(e.len(), 6);
    for (i, x) in e.iter().enumerate() {
        assert!(header(x, "transfer-encoding").is_empty(), "trace {i}");
        let lengths = header(x, "content-length");
        let len = x.request.body.bytes.len().to_string();
        assert!(
            lengths.iter().all(|l| *l == len),
            "trace {i}: {lengths:?} for {len} bytes"
        );
        assert_eq!(x.request_header("host"), Some("api.example.com"));
        assert_eq!(header(x, "x-request-id").len(), 1);
    }
    assert!(header(&e[0], "content-length").is_empty() && e[0].request.body.bytes.is_empty());
    assert!(header(&e[1], "content-length").is_empty());
    assert_eq!(&e[2].request.body.bytes[..], b"{\"a\":1}");
    assert!(header(&e[2], "content-length").is_empty());
    assert_eq!(&e[3].request.body.bytes[..], b"{\"a\":1}");
    assert_eq!(header(&e[4], "content-length"), ["7"]);
    let cut = &e[5].request.body;
    assert_eq!(
        (cut.truncated, cut.full_len, cut.bytes.len()),
        (true, 4096, 6)
    );
    // The response is left as recorded.
    let c = e[0].control.as_ref().unwrap();
    assert_eq!((c.status, &c.body.bytes[..]), (200, &b"{\"ok\":true}"[..]));
}

/// Streamed segments as `file_per_tap` with `streaming: true` writes them: one JSON value per
/// segment, `trace_id` a string (protobuf JSON's uint64).
fn segment(id: &str, piece: &str) -> String {
    format!(
        "{{\n \"http_streamed_trace_segment\": {{\n  \"trace_id\": \"{id}\",\n  {piece}\n }}\n}}\n"
    )
}

fn headers(list: &[(&str, &str)]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|(k, v)| format!(r#"{{"key": "{k}", "value": "{v}"}}"#))
        .collect();
    format!(r#"{{"headers": [{}]}}"#, items.join(", "))
}

#[test]
fn envoy_streamed_traces_are_joined_by_trace_id_across_values_and_files() {
    let post = headers(&[
        (":authority", "api.example.com"),
        (":path", "/v1/orders"),
        (":method", "POST"),
        ("content-type", "application/json"),
        ("content-length", "17"),
    ]);
    let get = headers(&[
        (":authority", "api.example.com"),
        (":path", "/v1/orders/9"),
        (":method", "GET"),
    ]);
    let ok = headers(&[(":status", "201"), ("content-type", "application/json")]);
    let grpc_status = headers(&[("grpc-status", "0")]);
    // tap_11.json: traces 11 and 12 interleaved, 11's request body in two chunks (both body
    // forms), a request trailer; tap_11b.json: 11's response, in two chunks, and its trailers.
    let first = [
        segment("11", &format!(r#""request_headers": {post}"#)),
        segment("12", &format!(r#""request_headers": {get}"#)),
        segment(
            "11",
            r#""request_body_chunk": {"as_bytes": "eyJza3UiOiAi", "truncated": false}"#,
        ),
        segment("12", &format!(r#""response_headers": {ok}"#)),
        segment("11", r#""request_body_chunk": {"as_string": "QS0xIn0="}"#),
        segment("11", &format!(r#""request_trailers": {grpc_status}"#)),
        segment(
            "12",
            r#""response_body_chunk": {"as_string": "{\"id\":9}"}"#,
        ),
    ]
    .concat();
    let second = [
        segment("11", &format!(r#""response_headers": {ok}"#)),
        segment(
            "11",
            r#""response_body_chunk": {"as_string": "{\"order\":"}"#,
        ),
        segment("11", r#""response_body_chunk": {"as_string": "7731}"}"#),
        segment("11", &format!(r#""response_trailers": {grpc_status}"#)),
        // Only the response of trace 13 was in the files read.
        segment("13", &format!(r#""response_headers": {ok}"#)),
    ]
    .concat();
    let dir = tempfile::tempdir().unwrap();
    let paths = [
        dir.path().join("tap_11.json"),
        dir.path().join("tap_11b.json"),
    ];
    std::fs::write(&paths[0], &first).unwrap();
    std::fs::write(&paths[1], &second).unwrap();
    let out = envoy::import_files(&paths, "e").unwrap();
    assert_eq!(reasons(&out), ["no request"], "{:?}", out.skipped);
    assert!(
        out.skipped[0].to_string().contains("trace_id 13"),
        "{}",
        out.skipped[0]
    );
    assert_eq!(out.exchanges.len(), 2);
    let (order, fetch) = (&out.exchanges[0], &out.exchanges[1]);
    assert_eq!(
        (order.request.method.as_str(), order.request.uri.as_str()),
        ("POST", "/v1/orders")
    );
    assert_eq!(&order.request.body.bytes[..], b"{\"sku\": \"QS0xIn0=");
    // 17 bytes carried, 17 declared: the length stays; trailers are not kept as headers.
    assert_eq!(header(order, "content-length"), ["17"]);
    assert!(header(order, "grpc-status").is_empty());
    let c = order.control.as_ref().unwrap();
    assert_eq!(
        (c.status, &c.body.bytes[..]),
        (201, &b"{\"order\":7731}"[..])
    );
    assert!(c.headers.iter().all(|(n, _)| n != "grpc-status"));
    assert_eq!(fetch.request.uri, "/v1/orders/9");
    assert_eq!(
        &fetch.control.as_ref().unwrap().body.bytes[..],
        b"{\"id\":9}"
    );

    // The same segments in one file, trace ids as numbers, gzipped: the same exchanges.
    let numbers = [first, second]
        .concat()
        .replace("\"trace_id\": \"", "\"trace_id\": ")
        .replace("\",\n  \"re", ",\n  \"re");
    let one = envoy::parse(&gzip(numbers.as_bytes()), Path::new("tap.json.gz"), "e");
    let same: Vec<String> = one.exchanges.iter().map(content_of).collect();
    let before: Vec<String> = out.exchanges.iter().map(content_of).collect();
    assert_eq!(same.len(), 2, "{:?}", one.skipped);
    // Ids and capture times come from the import's clock: compare the requests and responses.
    let strip = |s: &String| {
        s.split("\"request\"")
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        same.iter().map(strip).collect::<Vec<_>>(),
        before.iter().map(strip).collect::<Vec<_>>()
    );

    // A trace id used again by a restarted Envoy starts a new trace.
    let again = [
        segment("5", &format!(r#""request_headers": {get}"#)),
        segment("5", &format!(r#""request_headers": {get}"#)),
        segment("5", &format!(r#""response_headers": {ok}"#)),
    ]
    .concat();
    let out = envoy::parse(again.as_bytes(), Path::new("t.json"), "e");
    assert_eq!(out.exchanges.len(), 2);
    assert!(out.exchanges[0].control.is_none() && out.exchanges[1].control.is_some());
}

#[test]
fn envoy_trace_file_cut_short_is_truncated() {
    let text = buffered("", Some(r#"{"truncated": false, "as_string": "{}"}"#)).repeat(2);
    for cut in [text.len() / 2 + 3, text.len() - 3] {
        let out = envoy::parse(&text.as_bytes()[..cut], Path::new("tap.json"), "e");
        assert_eq!(out.exchanges.len(), 1);
        assert_eq!(reasons(&out), ["truncated"], "{:?}", out.skipped);
    }
}
