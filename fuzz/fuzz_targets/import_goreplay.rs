//! The GoReplay importer on arbitrary bytes (plain or gzipped, LF or CRLF, cut anywhere):
//! - it never panics;
//! - every imported exchange's request has a method and a URI;
//! - no body holds a separator line (`\n🐵🙈🙉\n`, or its CRLF form) — unless chunked framing
//!   joined one from pieces, which is the body's own content;
//! - what a skip says is printable: no control character from the file reaches a terminal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowdiff_sources::goreplay::{parse, SEPARATOR};

const CRLF_SEPARATOR: &[u8] = "\n🐵🙈🙉\r\n".as_bytes();

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let out = parse(data, "fuzz.gor", "fuzz");
    // Gzipped input is checked on what it decodes to only through the other properties; a
    // chunked body may legitimately join the monkeys from two chunks.
    let framing_may_join =
        data.starts_with(&[0x1f, 0x8b]) || contains(&data.to_ascii_lowercase(), b"chunked");
    for e in &out.exchanges {
        assert!(!e.request.method.is_empty(), "no method: {e:?}");
        assert!(!e.request.uri.is_empty(), "no uri: {e:?}");
        if framing_may_join {
            continue;
        }
        let mut bodies = vec![&e.request.body.bytes[..]];
        if let Some(c) = &e.control {
            bodies.push(&c.body.bytes[..]);
        }
        for body in bodies {
            assert!(
                !contains(body, SEPARATOR) && !contains(body, CRLF_SEPARATOR),
                "a separator in a body: {body:?}"
            );
        }
    }
    for s in &out.skipped {
        let said = s.to_string();
        assert!(!said.chars().any(char::is_control), "{said:?}");
    }
});
