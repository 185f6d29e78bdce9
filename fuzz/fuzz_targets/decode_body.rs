//! `decode_content` + `body_format` on arbitrary headers and bytes: never panics, never returns
//! more than `max_decoded_bytes`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowdiff_differ::{body_format, decode_content, Rules, RulesConfig};

const ENCODINGS: &[&str] = &[
    "gzip",
    "x-gzip",
    "deflate",
    "br",
    "identity",
    "gzip, br",
    "deflate,gzip",
    "",
    " , ",
    "GZIP",
    "compress",
    "br, br",
];
const TYPES: &[&str] = &[
    "application/json",
    "application/problem+json; charset=utf-8",
    "application/x-www-form-urlencoded",
    "text/html",
    "text/plain",
    "image/png",
    "",
    ";",
    "APPLICATION/JSON",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let mut headers = Vec::new();
    if selector & 0x80 != 0 {
        let e = ENCODINGS[usize::from(selector & 0x0f) % ENCODINGS.len()];
        headers.push(("Content-Encoding".to_string(), e.to_string()));
    }
    if selector & 0x40 != 0 {
        let t = TYPES[usize::from(selector >> 4 & 0x03) * 3 % TYPES.len()];
        headers.push(("content-type".to_string(), t.to_string()));
    }
    let limit = 1 << 20;
    let rules = Rules::compile(&RulesConfig {
        max_decoded_bytes: limit,
        ..RulesConfig::default()
    })
    .unwrap_or_default();
    if let Ok(decoded) = decode_content(&headers, body, &rules) {
        assert!(decoded.len() <= limit.max(body.len()));
        let _ = body_format(&headers, &decoded);
    }
    let _ = body_format(&headers, body);
});
