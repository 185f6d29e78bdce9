//! A [`DiffRecord`]'s JSON, written field by field: exactly the bytes `serde_json` writes for
//! the derived `Serialize` (the property test `record_json_is_serde_jsons` holds them equal), at
//! a fraction of the cost. Every exchange makes one or two records, and `serde_json` spent most
//! of the store writer's time escaping: each of a record's twenty-odd keys went through its
//! byte-by-byte string escaper, and so did every value. Here the keys are constant bytes and a
//! string is scanned eight bytes at a time for the few bytes JSON escapes.

use crate::{DiffRecord, Difference, NoiseDifference};

/// Appends `record` as one JSON object to `out`, as `serde_json::to_writer` would.
pub fn encode_record_into(out: &mut Vec<u8>, record: &DiffRecord) {
    out.extend_from_slice(b"{\"schema_version\":");
    number(out, u64::from(record.schema_version));
    out.extend_from_slice(b",\"exchange_id\":");
    string(out, &record.exchange_id);
    out.extend_from_slice(b",\"captured_at_ms\":");
    number(out, record.captured_at_ms);
    out.extend_from_slice(b",\"experiment\":");
    string(out, &record.experiment);
    out.extend_from_slice(b",\"method\":");
    string(out, &record.method);
    out.extend_from_slice(b",\"route\":");
    string(out, &record.route);
    out.extend_from_slice(b",\"target\":");
    string(out, &record.target);
    out.extend_from_slice(b",\"role\":\"");
    out.extend_from_slice(record.role.as_str().as_bytes());
    out.extend_from_slice(b"\",\"outcome\":\"");
    out.extend_from_slice(record.outcome.as_str().as_bytes());
    out.extend_from_slice(b"\",\"control_status\":");
    optional_number(out, record.control_status.map(u64::from));
    out.extend_from_slice(b",\"target_status\":");
    optional_number(out, record.target_status.map(u64::from));
    out.extend_from_slice(b",\"control_latency_us\":");
    optional_number(out, record.control_latency_us);
    out.extend_from_slice(b",\"target_latency_us\":");
    optional_number(out, record.target_latency_us);
    out.extend_from_slice(b",\"differences\":[");
    for (i, difference) in record.differences.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        difference_fields(out, difference);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"noise\":[");
    for (i, NoiseDifference { difference, reason }) in record.noise.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // `#[serde(flatten)]`: the difference's fields, then the reason, in one object.
        difference_fields(out, difference);
        out.extend_from_slice(b",\"reason\":");
        string(out, reason);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"fingerprint\":");
    number(out, record.fingerprint);
    out.extend_from_slice(b",\"detail\":");
    match &record.detail {
        Some(detail) => string(out, detail),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"notes\":");
    strings(out, &record.notes);
    out.extend_from_slice(b",\"side_effects\":");
    strings(out, &record.side_effects);
    out.push(b'}');
}

/// A difference's object up to, not including, its closing brace.
fn difference_fields(out: &mut Vec<u8>, difference: &Difference) {
    out.extend_from_slice(b"{\"path\":");
    string(out, &difference.path);
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(difference.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"control\":");
    optional_string(out, difference.control.as_deref());
    out.extend_from_slice(b",\"candidate\":");
    optional_string(out, difference.candidate.as_deref());
}

fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn optional_number(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => number(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

fn optional_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn strings(out: &mut Vec<u8>, list: &[String]) {
    out.push(b'[');
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
}

/// The bytes of `w` (eight bytes, little-endian) that JSON escapes in a string and that end a
/// run of plain string content: `"`, `\\` or a control character, as their high bits. Bits
/// above the lowest may be false positives (a borrow crossing bytes); the lowest is exact, and so
/// is "none" (each test is the classic zero-byte test). The differ's parser scans strings with it.
#[inline]
pub fn json_string_specials(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let quote = zero(w ^ (ONES * u64::from(b'"')));
    let backslash = zero(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    quote | backslash | control
}

/// `s` as a JSON string, escaped as `serde_json` escapes: `\"`, `\\`, the five short control
/// escapes, `\u00xx` (lowercase hex) for the other control characters, everything else as is.
fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let mut eight = [0; 8];
            eight.copy_from_slice(word);
            if json_string_specials(u64::from_le_bytes(eight)) == 0 {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0x00..=0x1f => 0,
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[run..i]);
        if short != 0 {
            out.extend_from_slice(&[b'\\', short]);
        } else {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
        i += 1;
        run = i;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde(s: &str) -> Vec<u8> {
        serde_json::to_vec(s).expect("a string serializes")
    }

    #[test]
    fn every_byte_below_0x80_is_escaped_as_serde_json_escapes_it() {
        for b in 0u8..0x80 {
            let s = format!("a{}bcdefghij{}", char::from(b), char::from(b));
            let mut out = Vec::new();
            string(&mut out, &s);
            assert_eq!(out, serde(&s), "byte {b:#04x}");
        }
    }

    #[test]
    fn words_with_an_escape_anywhere_are_found() {
        for at in 0..8 {
            for b in [b'"', b'\\', 0, 0x1f] {
                let mut w = *b"abcdefgh";
                w[at] = b;
                assert!(
                    json_string_specials(u64::from_le_bytes(w)) != 0,
                    "{b:#04x} at {at}"
                );
            }
        }
        assert_eq!(
            json_string_specials(u64::from_le_bytes(*b" !#[]~\x7f\xff")),
            0
        );
    }
}
