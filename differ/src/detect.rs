//! Automatic noise detectors: values that differ between any two runs of the same build.

use shadowdiff_model::{is_uuid, DiffKind, Difference};

/// The detector that classifies a difference as volatile, if any.
pub fn volatile_reason(d: &Difference) -> Option<&'static str> {
    if d.kind != DiffKind::Value {
        return None;
    }
    let (a, b) = (d.control.as_deref()?, d.candidate.as_deref()?);
    let (a, b) = (unquote(a), unquote(b));
    if is_timestamp(a) && is_timestamp(b) {
        return Some("detector:timestamp");
    }
    if is_uuid(a) && is_uuid(b) {
        return Some("detector:uuid");
    }
    if is_random_token(a) && is_random_token(b) {
        return Some("detector:random_id");
    }
    None
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
}
