#![allow(clippy::unwrap_used)]
//! Hostile and oversized inputs: every case returns a clear result (differences and notes) or a
//! clear error, within a generous time bound, without panicking or overflowing the stack.
//!
//! `cargo test` builds these in debug. The sizes are the full ones of the brief (100,000 levels,
//! 1,000,000 elements, 10 MB, a 20 MiB gzip bomb) and the whole file runs in about a second in
//! debug on 2 cores; the bound below is deliberately loose so that a slow CI box never flakes,
//! while a quadratic regression (minutes) still fails.

use shadowdiff_differ::{
    compare_responses, decode_content, Arena, Comparison, DecodeError, Node, Rules, RulesConfig,
};
use shadowdiff_model::{Body, DiffKind, HttpResponse};
use std::io::Write;
use std::time::{Duration, Instant};

/// Generous: the point is "bounded", not a benchmark (debug build, shared 2-core machine).
const BOUND: Duration = Duration::from_secs(60);

fn within<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(took < BOUND, "{what} took {took:?}");
    out
}

fn resp(content_type: &str, body: impl Into<Vec<u8>>) -> HttpResponse {
    resp_with(&[("content-type", content_type)], body)
}

fn resp_with(headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: Body::complete(body.into()),
        latency_us: 1,
    }
}

fn compare(what: &str, a: &HttpResponse, b: &HttpResponse, rules: &Rules) -> Comparison {
    within(what, || compare_responses(a, b, rules))
}

fn kinds(c: &Comparison) -> Vec<(String, DiffKind)> {
    c.differences
        .iter()
        .map(|d| (d.path.clone(), d.kind))
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

// --- nesting ---------------------------------------------------------------------------------

#[test]
fn hundred_thousand_levels_of_nesting_fall_back_to_text() {
    let deep = |inner: &str| format!("{}{inner}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (a, b) = (deep("1"), deep("2"));
    let json = "application/json";

    // Over serde_json's recursion limit (128): not JSON to the differ, compared as text.
    assert!(within("parse", || Node::parse(a.as_bytes(), &Arena::new())
        .is_err()));
    let c = compare(
        "deep",
        &resp(json, a.clone()),
        &resp(json, b),
        &Rules::default(),
    );
    assert_eq!(kinds(&c), vec![("body".to_string(), DiffKind::Text)]);
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("control and candidate bodies declared as JSON but not valid JSON")),
        "{:?}",
        c.notes
    );

    // Equal deep bodies are equal (by hash; nothing is parsed).
    let c = compare(
        "deep equal",
        &resp(json, a.clone()),
        &resp(json, a.clone()),
        &Rules::default(),
    );
    assert!(c.differences.is_empty() && c.notes.is_empty(), "{c:?}");

    // Same value, different whitespace: still over the limit, so a text difference with a note.
    let spaced = a.replace("[[", "[ [");
    let c = compare(
        "deep spaced",
        &resp(json, a),
        &resp(json, spaced),
        &Rules::default(),
    );
    assert_eq!(kinds(&c), vec![("body".to_string(), DiffKind::Text)]);
    assert!(!c.notes.is_empty());
}

#[test]
fn nesting_at_the_parser_limit_is_structural_and_beyond_it_is_text() {
    let nested =
        |depth: usize, leaf: &str| format!("{}{leaf}{}", "[".repeat(depth), "]".repeat(depth));
    let json = "application/json";
    // serde_json accepts 127 nested arrays and refuses 128.
    assert!(Node::parse(nested(127, "1").as_bytes(), &Arena::new()).is_ok());
    assert!(Node::parse(nested(128, "1").as_bytes(), &Arena::new()).is_err());

    let c = compare(
        "127 deep",
        &resp(json, nested(127, "1")),
        &resp(json, nested(127, "2")),
        &Rules::default(),
    );
    assert_eq!(c.differences.len(), 1, "{c:?}");
    assert_eq!(c.differences[0].kind, DiffKind::Value);
    assert!(c.differences[0].path.starts_with("body[0][0]"), "{c:?}");
    assert!(c.notes.is_empty(), "{:?}", c.notes);

    let c = compare(
        "128 deep",
        &resp(json, nested(128, "1")),
        &resp(json, nested(128, "2")),
        &Rules::default(),
    );
    assert_eq!(kinds(&c), vec![("body".to_string(), DiffKind::Text)]);
    assert!(!c.notes.is_empty());
}

// --- size ------------------------------------------------------------------------------------

fn array_text(len: usize, change: Option<usize>) -> String {
    let mut s = String::with_capacity(len * 2 + 2);
    s.push('[');
    for i in 0..len {
        if i > 0 {
            s.push(',');
        }
        s.push(if change == Some(i) { '7' } else { '0' });
    }
    s.push(']');
    s
}

#[test]
fn million_element_arrays_differing_in_one_place() {
    let n = 1_000_000;
    let json = "application/json";
    let a = resp(json, array_text(n, None));
    let b = resp(json, array_text(n, Some(654_321)));
    let c = compare("1M one change", &a, &b, &Rules::default());
    assert_eq!(
        kinds(&c),
        vec![("body[654321]".to_string(), DiffKind::Value)]
    );
    assert_eq!(c.differences[0].control.as_deref(), Some("0"));
    assert_eq!(c.differences[0].candidate.as_deref(), Some("7"));
}

#[test]
fn million_element_arrays_differing_in_length() {
    let n = 1_000_000;
    let json = "application/json";
    let a = resp(json, array_text(n, None));
    let b = resp(json, array_text(n + 1, None));
    // Longer than the aligned-array cap (10,000): one `size` difference, no alignment.
    let c = compare("1M length", &a, &b, &Rules::default());
    assert_eq!(kinds(&c), vec![("body".to_string(), DiffKind::Size)]);
    assert_eq!(c.differences[0].control.as_deref(), Some("1000000"));
    assert_eq!(c.differences[0].candidate.as_deref(), Some("1000001"));
}

#[test]
fn many_differences_are_capped_and_counted() {
    let n = 100_000;
    let a = resp("application/json", array_text(n, None));
    let b = resp("application/json", array_text(n, None).replace('0', "1"));
    let rules = Rules::compile(&RulesConfig {
        max_differences: 10,
        ..RulesConfig::default()
    })
    .unwrap();
    let c = compare("100k differences", &a, &b, &rules);
    assert_eq!(c.differences.len(), 10);
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("99990 more differences not kept")),
        "{:?}",
        c.notes
    );
}

#[test]
fn ten_megabyte_json_bodies() {
    // ~10 MB: 100,000 objects of ~100 bytes, one value changed near the end.
    let doc = |last: &str| {
        let mut s = String::from("{\"items\":[");
        for i in 0..100_000 {
            if i > 0 {
                s.push(',');
            }
            let name = if i == 99_999 { last } else { "unchanged" };
            s.push_str(&format!(
                "{{\"id\":{i},\"name\":\"{name}\",\"pad\":\"{}\"}}",
                "x".repeat(60)
            ));
        }
        s.push_str("]}");
        s
    };
    let (a, b) = (doc("before"), doc("after"));
    assert!(a.len() > 10_000_000, "{}", a.len());
    let c = compare(
        "10 MB JSON",
        &resp("application/json", a),
        &resp("application/json", b),
        &Rules::default(),
    );
    assert_eq!(
        kinds(&c),
        vec![("body.items[99999].name".to_string(), DiffKind::Value)]
    );
}

#[test]
fn ten_megabyte_text_bodies() {
    let line = "the quick brown fox jumps over the lazy dog 0123456789\n";
    let a = line.repeat(10 * 1024 * 1024 / line.len() + 1);
    // Differ only past the 64 KiB line-diff cap: found by the prefix scan, excerpted from there.
    let mut b = a.clone();
    b.push_str("one more line\n");
    let c = compare(
        "10 MB text",
        &resp("text/plain", a.clone()),
        &resp("text/plain", b),
        &Rules::default(),
    );
    assert_eq!(kinds(&c), vec![("body".to_string(), DiffKind::Text)]);
    assert_eq!(c.differences[0].candidate.as_deref(), Some("one more line"));

    // Every line different: bounded by the cap and the text deadline.
    let b = a.replace("fox", "cat");
    let c = compare(
        "10 MB text, all lines",
        &resp("text/plain", a),
        &resp("text/plain", b),
        &Rules::default(),
    );
    assert_eq!(kinds(&c), vec![("body".to_string(), DiffKind::Text)]);
}

// --- encodings and odd values ----------------------------------------------------------------

#[test]
fn invalid_utf8_bodies_declared_json_or_text() {
    let (a, b) = (
        b"{\"a\":\"\xff\xfe\"}".to_vec(),
        b"{\"a\":\"\xff\"}".to_vec(),
    );
    let c = compare(
        "invalid utf-8 json",
        &resp("application/json", a.clone()),
        &resp("application/json", b.clone()),
        &Rules::default(),
    );
    assert_eq!(kinds(&c), vec![("body".to_string(), DiffKind::Text)]);
    assert_eq!(
        c.differences[0].control.as_deref(),
        Some("<10 bytes binary>")
    );
    assert!(c.notes[0].contains("not valid JSON"), "{:?}", c.notes);

    let c = compare(
        "invalid utf-8 text",
        &resp("text/plain; charset=utf-8", a),
        &resp("text/plain; charset=utf-8", b),
        &Rules::default(),
    );
    assert_eq!(kinds(&c), vec![("body".to_string(), DiffKind::Text)]);
    assert_eq!(
        c.differences[0].candidate.as_deref(),
        Some("<9 bytes binary>")
    );
}

#[test]
fn nan_infinity_and_out_of_range_numbers_are_not_json() {
    for (a, b) in [
        ("{\"x\":NaN}", "{\"x\":1}"),
        ("{\"x\":Infinity}", "{\"x\":-Infinity}"),
        ("{\"x\":1e400}", "{\"x\":1}"),
    ] {
        assert!(Node::parse(a.as_bytes(), &Arena::new()).is_err(), "{a}");
        let c = compare(
            "nan",
            &resp("application/json", a),
            &resp("application/json", b),
            &Rules::default(),
        );
        assert_eq!(kinds(&c), vec![("body".to_string(), DiffKind::Text)], "{a}");
        assert!(c.notes[0].contains("not valid JSON"), "{a}: {:?}", c.notes);
    }
}

#[test]
fn negative_zero_tiny_and_integral_floats_compare_as_numbers() {
    for (a, b) in [
        ("{\"x\":-0.0}", "{\"x\":0}"),
        ("{\"x\":-0.0}", "{\"x\":0.0}"),
        ("{\"x\":1}", "{\"x\":1.0}"),
        ("{\"x\":1e-400}", "{\"x\":0}"), // underflows to 0.0, as in serde_json
        ("{\"x\":100}", "{\"x\":1e2}"),
    ] {
        let c = compare(
            "numbers",
            &resp("application/json", a),
            &resp("application/json", b),
            &Rules::default(),
        );
        assert!(
            c.differences.is_empty() && c.notes.is_empty(),
            "{a} vs {b}: {c:?}"
        );
    }
    let c = compare(
        "big ints",
        &resp("application/json", "[9007199254740993]"),
        &resp("application/json", "[9007199254740992]"),
        &Rules::default(),
    );
    assert_eq!(kinds(&c), vec![("body[0]".to_string(), DiffKind::Value)]);
}

#[test]
fn duplicate_keys_keep_the_last_value() {
    let json = "application/json";
    let c = compare(
        "dup equal",
        &resp(json, "{\"a\":1,\"a\":2}"),
        &resp(json, "{\"a\":2}"),
        &Rules::default(),
    );
    assert!(c.differences.is_empty(), "{c:?}");
    let c = compare(
        "dup differs",
        &resp(json, "{\"a\":1,\"b\":0,\"a\":2}"),
        &resp(json, "{\"a\":1,\"b\":0}"),
        &Rules::default(),
    );
    assert_eq!(kinds(&c), vec![("body.a".to_string(), DiffKind::Value)]);
}

/// A gzip stream of `members × 1 MiB` zeros: gzip members concatenate (RFC 1952), so the
/// 20 MiB bomb is built from one compressed MiB instead of deflating 20 MiB in a debug build.
fn zero_bomb(mib: usize) -> Vec<u8> {
    let one = gzip(&vec![0u8; 1024 * 1024]);
    one.repeat(mib)
}

#[test]
fn gzip_bomb_is_bounded_by_max_decoded_bytes() {
    let bomb = zero_bomb(20);
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    let headers = vec![("content-encoding".to_string(), "gzip".to_string())];

    // Default limit: 16 MiB.
    let err = within("bomb", || {
        decode_content(&headers, &bomb, &Rules::default())
    })
    .unwrap_err();
    assert!(
        matches!(err, DecodeError::TooLarge { limit } if limit == 16 * 1024 * 1024),
        "{err}"
    );

    // A lower configured limit stops it sooner.
    let rules = Rules::compile(&RulesConfig {
        max_decoded_bytes: 1024 * 1024,
        ..RulesConfig::default()
    })
    .unwrap();
    let err = within("bomb 1 MiB", || decode_content(&headers, &bomb, &rules)).unwrap_err();
    assert!(
        matches!(err, DecodeError::TooLarge { limit: 1_048_576 }),
        "{err}"
    );

    // Through compare_responses: a note, then the raw bytes are compared.
    let h = [
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    let small = gzip(b"{\"a\":1}");
    let c = compare(
        "bomb compare",
        &resp_with(&h, bomb),
        &resp_with(&h, small),
        &rules,
    );
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("over the 1048576-byte limit; compared raw bytes")),
        "{:?}",
        c.notes
    );
    assert_eq!(kinds(&c), vec![("body".to_string(), DiffKind::Text)]);
}

#[test]
fn truncated_and_invalid_gzip_are_decode_errors_with_a_note() {
    let full = gzip(b"{\"a\":1,\"b\":[1,2,3]}");
    let headers = vec![("content-encoding".to_string(), "gzip".to_string())];
    for bad in [
        &full[..full.len() / 2],
        &full[..full.len() - 4], // trailer cut: length/CRC missing
        b"\x1f\x8b\x08\x00garbage" as &[u8],
        b"not gzip at all",
        b"",
    ] {
        // An empty body declared gzip is an error too (no gzip header).
        let err = decode_content(&headers, bad, &Rules::default()).unwrap_err();
        assert!(
            matches!(err, DecodeError::Encoding { .. }),
            "{bad:?}: {err}"
        );
    }

    let h = [
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    let c = compare(
        "truncated gzip",
        &resp_with(&h, &full[..full.len() / 2]),
        &resp_with(&h, full.clone()),
        &Rules::default(),
    );
    assert!(
        c.notes.iter().any(|n| n.contains("could not be decoded")),
        "{:?}",
        c.notes
    );
    assert_eq!(kinds(&c), vec![("body".to_string(), DiffKind::Text)]);

    let h2 = [
        ("content-type", "application/json"),
        ("content-encoding", "compress"),
    ];
    let c = compare(
        "unsupported",
        &resp_with(&h2, "x"),
        &resp_with(&h2, "y"),
        &Rules::default(),
    );
    assert!(
        c.notes[0].contains("`compress` is not supported"),
        "{:?}",
        c.notes
    );
}
