#![allow(clippy::unwrap_used)]
//! Property tests: the invariants a team relies on when it trusts the differ.
//!
//! * a value never differs from itself, whatever the rules;
//! * formatting (pretty vs compact) is not a difference;
//! * `diff(a, b)` and `diff(b, a)` report the same aggregate paths with mirrored kinds;
//! * route and path normalization are idempotent;
//! * the borrowed parser accepts exactly what `serde_json` accepts, with the same tree.
//!
//! Run with more cases: `PROPTEST_CASES=5000 cargo test -p shadowdiff-differ --test properties`.

use proptest::prelude::*;
use serde_json::{Map, Value};
use shadowdiff_differ::{
    compare_responses, diff_json, Arena, ArrayRuleConfig, Node, Rules, RulesConfig, ScrubConfig,
    Tolerance,
};
use shadowdiff_model::{
    collapse_indexes, infer_route, Body, DiffKind, Difference, HttpResponse, RouteInferrer,
    RoutePattern,
};
use std::collections::BTreeSet;

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Strings with unicode, JSON escapes, control characters and surrogate-pair characters.
fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9_ -]{0,8}",
        2 => "\\PC{0,12}",
        1 => prop::collection::vec(
            prop::sample::select(vec![
                "\"", "\\", "/", "\n", "\r", "\t", "\u{0}", "\u{1f}", "\u{7f}", "é", "€", "😀",
                "\u{2028}", "\u{fffd}", "a", "ID", "id",
            ]),
            0..8
        )
        .prop_map(|parts| parts.concat()),
    ]
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "c", "id", "items", "meta"]).prop_map(String::from),
        1 => arb_string(),
    ]
}

/// Any JSON value: bounded depth (5) and size.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Values from a small domain, so that two independent draws share keys, elements and shapes.
fn arb_small_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0i64..3).prop_map(Value::from),
        prop::sample::select(vec![0.5, 1.0, 2.5, 1e16]).prop_map(Value::from),
        prop::sample::select(vec!["x", "X", "y", "2026-01-01T00:00:00Z", "7"])
            .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec!["a", "b", "id", "items"]).prop_map(String::from),
                    inner
                ),
                0..4
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

const GLOBS: &[&str] = &[
    "body",
    "body.a",
    "body.*",
    "body.**",
    "body.**.b",
    "body.items",
    "body.items[*]",
    "body.items[*].a",
    "body[*]",
    "body.*.id",
    "headers.x-*",
];

fn arb_globs() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(GLOBS).prop_map(String::from), 0..3)
}

fn arb_rules_config() -> impl Strategy<Value = RulesConfig> {
    let arrays = prop::collection::vec(
        (
            prop::sample::select(GLOBS),
            prop::sample::select(vec!["ordered", "set", "key"]),
            prop::sample::select(vec!["id", "a"]),
        )
            .prop_map(|(path, mode, key)| ArrayRuleConfig {
                path: path.to_string(),
                mode: mode.to_string(),
                key: (mode == "key").then(|| key.to_string()),
            }),
        0..3,
    );
    let scrub = prop::collection::vec(
        prop::sample::select(vec![("\\d+", "<n>"), ("(?i)x", "_")]).prop_map(|(p, r)| {
            ScrubConfig {
                pattern: p.to_string(),
                replacement: r.to_string(),
                paths: vec![],
            }
        }),
        0..2,
    );
    (
        arb_globs(),
        arb_globs(),
        any::<bool>(),
        prop::sample::select(vec![0.0, 0.5, 1.0]),
        prop::sample::select(vec![0.0, 0.1]),
        arrays,
        scrub,
        any::<bool>(),
    )
        .prop_map(
            |(
                ignore,
                case_insensitive,
                null_equals_missing,
                absolute,
                relative,
                arrays,
                scrub,
                detectors,
            )| RulesConfig {
                ignore,
                case_insensitive,
                null_equals_missing,
                tolerance: Tolerance { absolute, relative },
                arrays,
                scrub,
                detectors,
                ..RulesConfig::default()
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn json_response(body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![(
            "content-type".to_string(),
            "application/json; charset=utf-8".to_string(),
        )],
        body: Body::complete(body),
        latency_us: 1,
    }
}

/// Asserts that `diff(v, v)` produced nothing.
fn assert_self_diff_empty(
    v: &Value,
    config: &RulesConfig,
    differences: &[Difference],
) -> Result<(), TestCaseError> {
    prop_assert!(
        differences.is_empty(),
        "a value differs from itself: {differences:?}\nvalue: {v}\nrules: {config:?}"
    );
    Ok(())
}

fn mirrored(kind: DiffKind) -> DiffKind {
    match kind {
        DiffKind::Missing => DiffKind::Extra,
        DiffKind::Extra => DiffKind::Missing,
        other => other,
    }
}

fn aggregate_set(d: &[Difference], mirror: bool) -> BTreeSet<(String, DiffKind)> {
    d.iter()
        .map(|d| {
            let kind = if mirror { mirrored(d.kind) } else { d.kind };
            (collapse_indexes(&d.path), kind)
        })
        .collect()
}

/// Checks `diff(a, b)` against `diff(b, a)`: same aggregate paths, kinds mirrored.
fn assert_symmetric(ab: &[Difference], ba: &[Difference]) -> Result<(), TestCaseError> {
    prop_assert_eq!(aggregate_set(ab, false), aggregate_set(ba, true));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    // No regression file in the shared tree: the minimal cases found so far are explicit tests below.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_value_never_differs_from_itself_under_default_rules(v in arb_json()) {
        let d = diff_json(&v, &v, &Rules::default(), "body");
        prop_assert!(d.is_empty(), "{d:?} for {v}");
    }

    #[test]
    fn a_value_never_differs_from_itself_under_any_rules(
        v in prop_oneof![arb_json(), arb_small_json()],
        config in arb_rules_config(),
    ) {
        let rules = Rules::compile(&config).unwrap();
        let d = diff_json(&v, &v, &rules, "body");
        assert_self_diff_empty(&v, &config, &d)?;
    }

    #[test]
    fn formatting_is_not_a_difference(
        v in prop_oneof![arb_json(), arb_small_json()],
        config in arb_rules_config(),
    ) {
        let rules = Rules::compile(&config).unwrap();
        let compact = serde_json::to_vec(&v).unwrap();
        let pretty = serde_json::to_vec_pretty(&v).unwrap();

        let same = compare_responses(&json_response(compact.clone()), &json_response(compact.clone()), &rules);
        prop_assert!(same.differences.is_empty() && same.notes.is_empty(), "{same:?}");

        let cmp = compare_responses(&json_response(compact), &json_response(pretty), &rules);
        prop_assert!(cmp.notes.is_empty(), "unexpected notes {:?} for {v}", cmp.notes);
        assert_self_diff_empty(&v, &config, &cmp.differences)?;
    }

    #[test]
    fn diff_is_symmetric_up_to_missing_and_extra(
        a in arb_small_json(),
        b in arb_small_json(),
        config in arb_rules_config(),
    ) {
        let rules = Rules::compile(&config).unwrap();
        let ab = diff_json(&a, &b, &rules, "body");
        let ba = diff_json(&b, &a, &rules, "body");
        if ab.len() < config.max_differences && ba.len() < config.max_differences {
            assert_symmetric(&ab, &ba)
                .map_err(|e| TestCaseError::fail(format!("{e}\na = {a}\nb = {b}\nrules = {config:?}")))?;
        }
    }

    #[test]
    fn diff_is_symmetric_through_compare_responses(
        a in arb_small_json(),
        b in arb_small_json(),
        config in arb_rules_config(),
    ) {
        let rules = Rules::compile(&config).unwrap();
        let (ra, rb) = (
            json_response(serde_json::to_vec(&a).unwrap()),
            json_response(serde_json::to_vec_pretty(&b).unwrap()),
        );
        let ab = compare_responses(&ra, &rb, &rules).differences;
        let ba = compare_responses(&rb, &ra, &rules).differences;
        if ab.len() < config.max_differences && ba.len() < config.max_differences {
            assert_symmetric(&ab, &ba)
                .map_err(|e| TestCaseError::fail(format!("{e}\na = {a}\nb = {b}")))?;
        }
    }

    #[test]
    fn infer_route_is_idempotent(path in arb_path()) {
        let once = infer_route(&path);
        prop_assert_eq!(infer_route(&once), once.clone(), "path {:?}", path);
    }

    #[test]
    fn collapse_indexes_is_idempotent(path in "(\\.?[a-z\\[\\]\"*0-9]{0,4}){0,6}") {
        let once = collapse_indexes(&path);
        prop_assert_eq!(collapse_indexes(&once), once.clone(), "path {:?}", path);
    }

    #[test]
    fn route_inferrer_with_patterns_is_idempotent_on_its_templates(
        patterns in prop::collection::vec(arb_pattern(), 0..4),
        path in arb_path(),
    ) {
        let parsed: Vec<RoutePattern> = patterns.iter().filter_map(|p| RoutePattern::parse(p).ok()).collect();
        let routes = RouteInferrer::new(parsed);
        let template = routes.route(&path);
        let again = routes.route(&template);
        prop_assert_eq!(again, template, "patterns {:?} path {:?}", patterns, path);
    }

    #[test]
    fn node_parse_accepts_exactly_what_serde_json_accepts_on_bytes(bytes in arb_jsonish_bytes()) {
        let serde = serde_json::from_slice::<Value>(&bytes);
        let arena = Arena::new();
        let node = Node::parse(&bytes, &arena);
        match (&serde, &node) {
            (Ok(v), Ok(n)) => prop_assert_eq!(&Node::from_value(v, &arena), n),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "serde_json {:?} but Node {:?} on {:?}",
                serde.as_ref().map(|_| ()), node.as_ref().map(|_| ()), String::from_utf8_lossy(&bytes)),
        }
    }

    #[test]
    fn node_parse_accepts_exactly_what_serde_json_accepts_on_any_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        prop_assert_eq!(
            serde_json::from_slice::<Value>(&bytes).is_ok(),
            Node::parse(&bytes, &Arena::new()).is_ok(),
            "{:?}", bytes
        );
    }

    #[test]
    fn node_parse_equals_node_from_value_on_json_text(v in arb_json(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_vec_pretty(&v).unwrap() } else { serde_json::to_vec(&v).unwrap() };
        let reparsed: Value = serde_json::from_slice(&text).unwrap();
        let arena = Arena::new();
        let node = Node::parse(&text, &arena).unwrap();
        prop_assert_eq!(&Node::from_value(&reparsed, &arena), &node);
        // Integers and strings survive the text exactly; floats up to serde_json's parser.
        if !text.contains(&b'.') && !text.contains(&b'e') && !text.contains(&b'E') {
            prop_assert_eq!(&Node::from_value(&v, &arena), &node);
        }
    }
}

fn arb_path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        prop::sample::select(vec![
            "users",
            "me",
            "42",
            "0",
            "v1",
            "{id}",
            "{date}",
            "{*rest}",
            "s",
            "a",
            "b",
            "",
            "2026-11-22",
            "2026-11-22T10:00",
            "5f1d7c3a9b2e4d6f",
            "deadbeefcafe",
            "3f2b1c9e-0a4d-4f7e-9b1a-2c3d4e5f6a7b",
            "é",
            "%20",
        ])
        .prop_map(String::from),
        "[a-z0-9{}*-]{1,6}",
    ];
    (
        prop::sample::select(vec!["", "", "http://h:1", "https://x.y"]),
        prop::collection::vec(segment, 0..5),
        any::<bool>(),
        "(\\?[a-z=&]{0,5})?",
    )
        .prop_map(|(origin, segments, trailing, query)| {
            let mut p = format!("{origin}/{}", segments.join("/"));
            if trailing && p.len() > 1 {
                p.push('/');
            }
            p.push_str(&query);
            p
        })
}

fn arb_pattern() -> impl Strategy<Value = String> {
    let segment = prop::sample::select(vec![
        "users", "me", "s", "a", "{id}", "{name}", "{x}", "{*rest}", "{*r}", "42",
    ]);
    prop::collection::vec(segment, 0..4).prop_map(|s| format!("/{}", s.join("/")))
}

/// Bytes that are often almost JSON: tokens glued together, sometimes with junk.
fn arb_jsonish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop::sample::select(vec![
        &b"{"[..],
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b" ",
        b"\n",
        b"\"a\"",
        b"\"a\":1",
        b"\"\\u00e9\"",
        b"\"\\ud800\"",
        b"\"\\ud83d\\ude00\"",
        b"\"\\x\"",
        b"\"\xff\"",
        b"\"\t\"",
        b"1",
        b"-0",
        b"-0.0",
        b"01",
        b"1.",
        b"1e400",
        b"-1e400",
        b"1e-400",
        b"18446744073709551616",
        b"-9223372036854775809",
        b"NaN",
        b"Infinity",
        b"true",
        b"null",
        b"nul",
        b"\xef\xbb\xbf",
    ]);
    prop::collection::vec(token, 0..16).prop_map(|t| t.concat())
}

// ---------------------------------------------------------------------------------------------
// Minimal cases of the bugs the properties found (fixed in 691df30); kept as regression tests.
// ---------------------------------------------------------------------------------------------

fn key_rules(path: &str) -> Rules {
    Rules::compile(&RulesConfig {
        arrays: vec![ArrayRuleConfig {
            path: path.to_string(),
            mode: "key".to_string(),
            key: Some("id".to_string()),
        }],
        ..RulesConfig::default()
    })
    .unwrap()
}

#[test]
fn regression_key_mode_array_self_diff_empty_when_elements_lack_the_key() {
    let v = serde_json::json!({"items": [1, {"name": "x"}]});
    let d = diff_json(&v, &v, &key_rules("body.items"), "body");
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn regression_key_mode_array_self_diff_empty_when_keys_repeat() {
    let v = serde_json::json!({"items": [{"id": 1, "v": 1}, {"id": 1, "v": 2}]});
    let d = diff_json(&v, &v, &key_rules("body.items"), "body");
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn regression_route_rest_template_maps_to_itself() {
    let routes = RouteInferrer::new(vec![
        RoutePattern::parse("/s/{x}").unwrap(),
        RoutePattern::parse("/s/{*r}").unwrap(),
    ]);
    let template = routes.route("/s/a/b");
    assert_eq!(template, "/s/{*r}");
    assert_eq!(routes.route(&template), template);
}

#[test]
fn regression_length_change_alignment_is_symmetric() {
    let (a, b) = (serde_json::json!([1, 1, 1]), serde_json::json!([2, 1]));
    let ab = diff_json(&a, &b, &Rules::default(), "body");
    let ba = diff_json(&b, &a, &Rules::default(), "body");
    // Was: ab = size, body[0] value 1→2, body[1] missing; ba = size, missing 2, two extra 1s.
    assert_eq!(
        aggregate_set(&ab, false),
        aggregate_set(&ba, true),
        "{ab:?}\n{ba:?}"
    );
}

#[test]
fn regression_route_of_absolute_uri_is_idempotent() {
    // Only the first `://` is an authority; the path's own `://` is cut again on the 2nd pass.
    let routes = RouteInferrer::default();
    let template = routes.route("http://h/a://b/c");
    assert_eq!(routes.route(&template), template);
}

// ---------------------------------------------------------------------------------------------
// Format classes: two values made by one formatter are one format; two formatters, two formats
// ---------------------------------------------------------------------------------------------

/// The date-time formats services emit, each a function of (seconds since 2001, nanoseconds).
fn formatted(format: usize, secs: u64, nanos: u32) -> String {
    let days = secs / 86_400;
    let (y, m, d) = (2001 + days / 372, 1 + (days / 31) % 12, 1 + days % 28);
    let (hh, mm, ss) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let date = format!("{y:04}-{m:02}-{d:02}");
    let time = format!("{hh:02}:{mm:02}:{ss:02}");
    match format {
        0 => format!("{date}T{time}Z"),
        1 => format!("{date}T{time}.{:03}Z", nanos / 1_000_000),
        2 => format!("{date}T{time}.{:06}+02:00", nanos / 1_000),
        3 => format!("{date} {time}"),
        4 => format!("{}", 978_307_200 + secs),
        5 => format!(
            "{}",
            (978_307_200 + secs) * 1000 + u64::from(nanos / 1_000_000)
        ),
        _ => format!("{date}T{time}.{nanos:09}-0500"),
    }
}

fn value_difference(a: &str, b: &str) -> Difference {
    Difference {
        path: "body.at".into(),
        kind: DiffKind::Value,
        control: Some(format!("\"{a}\"")),
        candidate: Some(format!("\"{b}\"")),
    }
}

proptest! {
    #[test]
    fn one_formatter_is_noise_two_formatters_are_a_format_change(
        f in 0usize..7, g in 0usize..7,
        s1 in 0u64..3_000_000_000, s2 in 0u64..3_000_000_000,
        n1 in 0u32..1_000_000_000, n2 in 0u32..1_000_000_000,
    ) {
        let (a, b) = (formatted(f, s1, n1), formatted(g, s2, n2));
        prop_assume!(a != b);
        let d = shadowdiff_differ::format_change(value_difference(&a, &b));
        if f == g {
            prop_assert_eq!(d.kind, DiffKind::Value, "{} / {}", a, b);
            prop_assert!(shadowdiff_differ::volatile_reason(&d).is_some(), "{} / {}", a, b);
        } else {
            prop_assert_eq!(d.kind, DiffKind::Format, "{} / {}", a, b);
        }
    }

    #[test]
    fn random_tokens_of_one_generator_are_one_format(
        a in "[A-Z][a-z][0-9]{3}[A-Za-z0-9_-]{17}", b in "[A-Z][a-z][0-9]{3}[A-Za-z0-9_-]{17}",
    ) {
        // Mixed-case tokens with a fair share of letters and digits, as the detector wants.
        prop_assume!(shadowdiff_differ::is_random_token(&a) && shadowdiff_differ::is_random_token(&b));
        prop_assume!(a != b);
        let d = shadowdiff_differ::format_change(value_difference(&a, &b));
        prop_assert_eq!(d.kind, DiffKind::Value);
    }

    #[test]
    fn format_class_takes_any_text(s in "\\PC{0,40}") {
        let _ = shadowdiff_differ::format_class(&s);
        let _ = shadowdiff_differ::format_change(value_difference(&s, "2026-11-22T10:00:00Z"));
    }
}
