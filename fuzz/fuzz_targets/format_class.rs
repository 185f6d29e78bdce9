//! The differ's format classes of hostile values (`shadowdiff_differ::format_class`, behind the
//! timestamp/UUID/token detectors and the `format` difference kind), against independent
//! parsers: whatever chrono reads as an RFC 3339 date-time (`T` or space separator) is a
//! timestamp to the differ, and whatever the uuid crate reads as a hyphenated UUID is a UUID;
//! the classification of a pair does not depend on which side is the control; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowdiff_differ::{format_class, volatility, VolatileKind};
use shadowdiff_model::{DiffKind, Difference};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\n').unwrap_or((&text, ""));
    for s in [a, b] {
        let class = format_class(s);
        let sep = s.as_bytes().get(10).copied();
        if matches!(sep, Some(b'T' | b' ')) && chrono::DateTime::parse_from_rfc3339(s).is_ok() {
            assert_eq!(
                class.as_ref().map(|c| c.kind),
                Some(VolatileKind::Timestamp),
                "chrono reads {s:?} as RFC 3339"
            );
        }
        let hyphens = s.len() == 36 && [8, 13, 18, 23].iter().all(|&i| s.as_bytes()[i] == b'-');
        if hyphens && uuid::Uuid::try_parse(s).is_ok() {
            assert_eq!(class.map(|c| c.kind), Some(VolatileKind::Uuid), "uuid reads {s:?}");
        }
    }
    let pair = |control: &str, candidate: &str| Difference {
        path: "body.x".into(),
        kind: DiffKind::Value,
        control: Some(format!("\"{control}\"")),
        candidate: Some(format!("\"{candidate}\"")),
    };
    assert_eq!(volatility(&pair(a, b)), volatility(&pair(b, a)), "{a:?} / {b:?}");
});
