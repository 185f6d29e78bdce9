//! `compare_responses` on arbitrary status, headers and bodies.
//!
//! Layout: [status hi, status lo, header selector, split...] then the two bodies split at the
//! first NUL. The selector picks content types and encodings that reach every decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowdiff_differ::{compare_responses, Rules, RulesConfig};
use shadowdiff_model::{Body, HttpResponse};

const TYPES: &[&str] = &[
    "application/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "text/html",
];
const ENCODINGS: &[&str] = &["identity", "gzip", "deflate", "br"];

fn headers(selector: u8, extra: &[u8]) -> Vec<(String, String)> {
    let mut h = vec![(
        "content-type".to_string(),
        TYPES[usize::from(selector & 3)].to_string(),
    )];
    if selector & 4 != 0 {
        h.push((
            "content-encoding".to_string(),
            ENCODINGS[usize::from(selector >> 3 & 3)].to_string(),
        ));
    }
    if selector & 0x20 != 0 {
        h.push((
            "X-Custom".to_string(),
            String::from_utf8_lossy(extra).into_owned(),
        ));
        h.push(("set-cookie".to_string(), "s=1".to_string()));
    }
    h
}

fuzz_target!(|data: &[u8]| {
    let [s1, s2, sel_a, sel_b, rest @ ..] = data else {
        return;
    };
    let (a, b) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, rest),
    };
    let status = |x: u8| 100 + u16::from(x % 5) * 100;
    let control = HttpResponse {
        status: status(*s1),
        headers: headers(*sel_a, &a[..a.len().min(8)]),
        body: Body::complete(a.to_vec()),
        latency_us: 1,
    };
    let candidate = HttpResponse {
        status: if s2 & 1 == 0 {
            control.status
        } else {
            status(*s2)
        },
        headers: headers(*sel_b, &b[..b.len().min(8)]),
        body: Body::complete(b.to_vec()),
        latency_us: 1,
    };
    let rules = Rules::compile(&RulesConfig {
        max_decoded_bytes: 1 << 20,
        max_differences: 20,
        ..RulesConfig::default()
    })
    .unwrap_or_default();
    let c = compare_responses(&control, &candidate, &rules);
    assert!(c.differences.len() <= 20);
    let same = compare_responses(&control, &control, &rules);
    assert!(same.differences.is_empty(), "{same:?}");
});
