//! Automatic noise detectors: values that differ between any two runs of the same build.

use shadowdiff_model::{is_uuid, DiffKind, Difference};

/// What the detectors make of a value or header difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volatility {
    /// Both sides are volatile values of one kind and one format: noise, for this reason.
    SameFormat(&'static str),
    /// Both sides are volatile-looking values, of different formats (see [`format_class`]).
    OtherFormat,
    /// Anything else.
    Neither,
}

/// Classifies a `value` or `header` difference once: both sides' [`format_class`]es, compared.
pub fn volatility(d: &Difference) -> Volatility {
    // Header values too: a header that carries a time or an id of one format on both sides.
    if d.kind != DiffKind::Value && d.kind != DiffKind::Header {
        return Volatility::Neither;
    }
    let (Some(a), Some(b)) = (d.control.as_deref(), d.candidate.as_deref()) else {
        return Volatility::Neither;
    };
    match (format_class(unquote(a)), format_class(unquote(b))) {
        (Some(x), Some(y)) if x == y => Volatility::SameFormat(match x.kind {
            VolatileKind::Timestamp => "detector:timestamp",
            VolatileKind::Uuid => "detector:uuid",
            VolatileKind::Token => "detector:random_id",
        }),
        (Some(_), Some(_)) => Volatility::OtherFormat,
        _ => Volatility::Neither,
    }
}

/// The detector that classifies a difference as volatile, if any: both values of one volatile
/// kind and of one format (see [`format_class`]). A value difference between two formats is
/// not noise; [`format_change`] makes it a `format` difference.
pub fn volatile_reason(d: &Difference) -> Option<&'static str> {
    match volatility(d) {
        Volatility::SameFormat(reason) => Some(reason),
        _ => None,
    }
}

/// A value difference whose two sides are volatile-looking values of different formats (a
/// timestamp's separator, precision, zone or unit; a UUID's case; a token's length or
/// alphabet), as a `format` difference; anything else unchanged. A JSON type change (a string
/// timestamp becoming a number) stays a `type` difference.
pub fn format_change(mut d: Difference) -> Difference {
    if d.kind == DiffKind::Value && volatility(&d) == Volatility::OtherFormat {
        d.kind = DiffKind::Format;
    }
    d
}

/// The kinds of value the detectors know to change between any two runs of one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolatileKind {
    /// A date-time or an epoch time.
    Timestamp,
    /// A UUID.
    Uuid,
    /// A long random identifier or token.
    Token,
}

/// A volatile value's kind and the shape of its text, which two values of one format share
/// however their digits and letters vary: `2026-11-22T10:00:00.123Z` and
/// `2027-01-01T23:59:59.999Z` have one class, `2026-11-22T10:00:00Z` (no fraction),
/// `2026-11-22 10:00:00.123Z` (separator), `2026-11-22T10:00:00.123+01:00` (zone) and
/// `1763805600123` (epoch milliseconds) each another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatClass {
    /// What the value is.
    pub kind: VolatileKind,
    /// Its format, e.g. `iso:-T.3Z`, `epoch:ms`, `uuid:lower`, `token:22:alnum`.
    pub shape: String,
}

/// The format class of a volatile-looking value, or `None` for any other value.
pub fn format_class(s: &str) -> Option<FormatClass> {
    let class = |kind, shape: String| Some(FormatClass { kind, shape });
    if let Some(shape) = timestamp_shape(s) {
        return class(VolatileKind::Timestamp, shape);
    }
    if is_uuid(s) {
        let case = if s.bytes().any(|b| b.is_ascii_uppercase()) {
            if s.bytes().any(|b| b.is_ascii_lowercase()) {
                "mixed"
            } else {
                "upper"
            }
        } else {
            "lower"
        };
        return class(VolatileKind::Uuid, format!("uuid:{case}"));
    }
    if is_random_token(s) {
        return class(VolatileKind::Token, token_shape(s));
    }
    None
}

/// The shape of a timestamp: epoch unit, or the date-time's separators, fraction precision
/// (in steps of milli-, micro-, nanoseconds, since many encoders drop trailing zeros) and zone.
fn timestamp_shape(s: &str) -> Option<String> {
    if !is_timestamp(s) {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Some(if s.len() <= 10 { "epoch:s" } else { "epoch:ms" }.to_string());
    }
    if s.parse::<f64>().is_ok() {
        return Some("epoch:s.frac".to_string());
    }
    let b = s.as_bytes();
    if b.len() == 29 && s.ends_with(" GMT") {
        return Some("http-date".to_string());
    }
    // 2026-11-22T10:00:00[.fff][Z|±hh:mm|±hhmm]
    let mut shape = format!("iso:{}{}", b[4] as char, b[10] as char);
    // Bytes 0..19 are not all checked by `is_timestamp`: never slice inside a character.
    let Some(mut rest) = s.get(19..) else {
        return Some(format!("iso:?{}", s.len()));
    };
    if let Some(fraction) = rest.strip_prefix('.').or_else(|| rest.strip_prefix(',')) {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        let step = match digits {
            0 => "0",
            1..=3 => "3",
            4..=6 => "6",
            _ => "9",
        };
        shape.push_str(&format!("{}{step}", &rest[..1]));
        rest = &fraction[digits..];
    }
    let zone = match rest.as_bytes() {
        [] => "local".to_string(),
        [b'Z' | b'z'] => "Z".to_string(),
        [b'+' | b'-', zone @ ..] => {
            let pattern: String = zone
                .iter()
                .map(|&c| match c {
                    b'0'..=b'9' => '9',
                    b':' => ':',
                    _ => '?',
                })
                .collect();
            format!("±{pattern}")
        }
        other => format!("?{}", other.len()),
    };
    shape.push_str(&zone);
    Some(shape)
}

/// The shape of a random token: its length and alphabet (lower-case hex, upper-case hex, or
/// by the case of its letters). Only what a generator keeps for every token it makes: whether a
/// `+`, `_` or `-` happens to occur varies from one random token to the next.
fn token_shape(s: &str) -> String {
    let hex = |upper: bool| {
        s.bytes().all(|b| {
            b.is_ascii_digit()
                || if upper {
                    (b'A'..=b'F').contains(&b)
                } else {
                    (b'a'..=b'f').contains(&b)
                }
        })
    };
    let (upper, lower) = (
        s.bytes().any(|b| b.is_ascii_uppercase()),
        s.bytes().any(|b| b.is_ascii_lowercase()),
    );
    let alphabet = if hex(false) {
        "hex"
    } else if hex(true) {
        "HEX"
    } else {
        match (upper, lower) {
            (true, true) => "mixed",
            (true, false) => "upper",
            _ => "lower",
        }
    };
    format!("token:{}:{alphabet}", s.len())
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s)
}

/// ISO 8601 / RFC 3339 date-times, HTTP dates, or epoch seconds / milliseconds between 2000 and 2100.
pub fn is_timestamp(s: &str) -> bool {
    if let Ok(n) = s.parse::<u64>() {
        const S_2000: u64 = 946_684_800;
        const S_2100: u64 = 4_102_444_800;
        return (S_2000..S_2100).contains(&n) || (S_2000 * 1000..S_2100 * 1000).contains(&n);
    }
    if let Ok(f) = s.parse::<f64>() {
        return (946_684_800.0..4_102_444_800.0).contains(&f);
    }
    let b = s.as_bytes();
    // 2026-11-22T10:00:00[.fff][Z|±hh:mm]
    if b.len() >= 19
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b' ')
        && b[13] == b':'
        && b[16] == b':'
    {
        return true;
    }
    // Sun, 06 Nov 1994 08:49:37 GMT
    b.len() == 29 && s.ends_with(" GMT") && b[3] == b','
}

/// Long random identifiers and tokens: 16+ chars of [A-Za-z0-9_-] (or hex), mixing letters and
/// digits, with no long runs of one character class like a word would have.
pub fn is_random_token(s: &str) -> bool {
    if s.len() < 16 || s.len() > 512 {
        return false;
    }
    let mut digits = 0;
    let mut letters = 0;
    for b in s.bytes() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'a'..=b'z' | b'A'..=b'Z' => letters += 1,
            b'_' | b'-' | b'+' | b'/' | b'=' | b'.' => {}
            _ => return false,
        }
    }
    // Both classes present, each a meaningful share: words and numbers are not tokens.
    digits * 8 >= s.len() && letters * 8 >= s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_volatile_values() {
        assert!(is_timestamp("2026-11-22T10:00:00Z"));
        assert!(is_timestamp("2026-11-22T10:00:00.123+01:00"));
        assert!(is_timestamp("1763805600"));
        assert!(is_timestamp("1763805600123"));
        assert!(is_timestamp("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert!(!is_timestamp("42"));
        assert!(!is_timestamp("hello"));
        assert!(is_random_token("9f8a7b6c5d4e3f2a1b0c"));
        assert!(is_random_token("req_8fK2mQ9xL3vT7wZ1"));
        assert!(!is_random_token("the-quick-brown-fox"));
        assert!(!is_random_token("12345678901234567890"));
    }

    #[test]
    fn only_value_differences_of_volatile_pairs_are_noise() {
        let d = |a: &str, b: &str, kind| Difference {
            path: "body.x".into(),
            kind,
            control: Some(a.into()),
            candidate: Some(b.into()),
        };
        assert_eq!(
            volatile_reason(&d(
                "\"2026-01-01T00:00:00Z\"",
                "\"2026-01-02T00:00:00Z\"",
                DiffKind::Value
            )),
            Some("detector:timestamp")
        );
        assert_eq!(
            volatile_reason(&d("\"2026-01-01T00:00:00Z\"", "17", DiffKind::Type)),
            None
        );
        assert_eq!(
            volatile_reason(&d("\"alice\"", "\"bob\"", DiffKind::Value)),
            None
        );
    }

    #[test]
    fn one_format_is_noise_and_another_format_is_a_format_difference() {
        let value = |a: &str, b: &str| Difference {
            path: "body.at".into(),
            kind: DiffKind::Value,
            control: Some(format!("\"{a}\"")),
            candidate: Some(format!("\"{b}\"")),
        };
        let same = [
            ("2026-11-22T10:00:00Z", "2027-01-01T23:59:59Z"),
            ("2026-11-22T10:00:00.123Z", "2026-11-22T10:00:01.5Z"),
            (
                "2026-11-22T10:00:00.123456+01:00",
                "2026-11-22T10:00:00.654321-05:00",
            ),
            ("1763805600", "1763805999"),
            ("1763805600123", "1763805600999"),
            (
                "Sun, 06 Nov 1994 08:49:37 GMT",
                "Mon, 07 Nov 1994 08:49:37 GMT",
            ),
            (
                "9b2f4c1e-0d6a-4e8b-9f7a-2c3d4e5f6a7b",
                "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            ),
            ("9f8a7b6c5d4e3f2a1b0c", "0a1b2c3d4e5f6a7b8c9d"),
            ("req_8fK2mQ9xL3vT7wZ1", "req_Zx81Lq0Pm2Vt9Ks3"),
        ];
        for (a, b) in same {
            assert!(volatile_reason(&value(a, b)).is_some(), "{a} / {b}");
            assert_eq!(
                format_change(value(a, b)).kind,
                DiffKind::Value,
                "{a} / {b}"
            );
        }
        let changed = [
            ("2026-11-22T10:00:00Z", "2026-11-22 10:00:00Z"),
            ("2026-11-22T10:00:00Z", "2026-11-22T10:00:00.123Z"),
            ("2026-11-22T10:00:00.123Z", "2026-11-22T10:00:00.123456Z"),
            ("2026-11-22T10:00:00Z", "2026-11-22T10:00:00+00:00"),
            ("2026-11-22T10:00:00+01:00", "2026-11-22T10:00:00+0100"),
            ("2026-11-22T10:00:00Z", "2026-11-22T10:00:00"),
            ("1763805600", "1763805600123"),
            ("2026-11-22T10:00:00Z", "Sun, 06 Nov 1994 08:49:37 GMT"),
            (
                "9b2f4c1e-0d6a-4e8b-9f7a-2c3d4e5f6a7b",
                "9B2F4C1E-0D6A-4E8B-9F7A-2C3D4E5F6A7B",
            ),
            ("9f8a7b6c5d4e3f2a1b0c", "9f8a7b6c5d4e3f2a1b0c9f8a7b6c"),
            ("9f8a7b6c5d4e3f2a1b0c", "9F8A7B6C5D4E3F2A1B0C"),
            (
                "2026-11-22T10:00:00Z",
                "9b2f4c1e-0d6a-4e8b-9f7a-2c3d4e5f6a7b",
            ),
        ];
        for (a, b) in changed {
            assert_eq!(volatile_reason(&value(a, b)), None, "{a} / {b}");
            assert_eq!(
                format_change(value(a, b)).kind,
                DiffKind::Format,
                "{a} / {b}"
            );
        }
        // Ordinary values are left alone.
        assert_eq!(format_change(value("alice", "bob")).kind, DiffKind::Value);
        assert_eq!(
            format_change(value("2026-11-22T10:00:00Z", "alice")).kind,
            DiffKind::Value
        );
    }

    #[test]
    fn header_values_of_one_volatile_format_are_noise() {
        let header = |a: &str, b: &str| Difference {
            path: "headers.x-edge-id".into(),
            kind: DiffKind::Header,
            control: Some(a.into()),
            candidate: Some(b.into()),
        };
        assert_eq!(
            volatile_reason(&header(
                "9b2f4c1e-0d6a-4e8b-9f7a-2c3d4e5f6a7b",
                "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
            )),
            Some("detector:uuid")
        );
        assert_eq!(volatile_reason(&header("v1", "v2")), None);
        // Present on one side only: a real difference.
        let mut missing = header("9b2f4c1e-0d6a-4e8b-9f7a-2c3d4e5f6a7b", "");
        missing.candidate = None;
        assert_eq!(volatile_reason(&missing), None);
    }

    #[test]
    fn format_class_never_slices_inside_a_character() {
        for s in [
            "2026-1é-22T10:00:00Z",
            "2026-11-22Té0:00:00",
            "2026-11-22T10:00:0é",
        ] {
            let _ = format_class(s);
        }
    }
}
