//! The Envoy tap importer on arbitrary bytes, read as two files (split where the first byte
//! says) so that streamed segments are joined across files:
//! - it never panics;
//! - every imported exchange's request has a method (a valid HTTP token) and a URI;
//! - the request's framing agrees with its body: no `transfer-encoding`, and a
//!   `content-length` only when it is the body's length;
//! - what a skip says is printable: no control character from the file reaches a terminal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowdiff_sources::envoy::Reader;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(input.len());
    let mut reader = Reader::new("fuzz");
    reader.read(&input[..at], Path::new("tap_1.json"));
    reader.read(&input[at..], Path::new("tap_2.json"));
    let out = reader.finish();
    for e in &out.exchanges {
        let r = &e.request;
        assert!(!r.method.is_empty(), "no method: {e:?}");
        assert!(
            http::Method::from_bytes(r.method.as_bytes()).is_ok(),
            "{e:?}"
        );
        assert!(!r.uri.is_empty(), "no uri: {e:?}");
        let len = r.body.bytes.len().to_string();
        for (name, value) in &r.headers {
            assert_ne!(name, "transfer-encoding", "{e:?}");
            if name == "content-length" {
                assert_eq!(value.trim(), len, "{e:?}");
            }
        }
    }
    for s in &out.skipped {
        let said = s.to_string();
        assert!(!said.chars().any(char::is_control), "{said:?}");
    }
});
