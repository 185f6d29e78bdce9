//! Offline capture inputs: traces recorded by other tools, turned into the same [`Exchange`]
//! records the tap produces (`shadowdiff import`; `shadowdiff_pipeline::offline` replays them).
//! A crate of its own: reading files needs none of the tap's networking.
//!
//! - [`envoy`]: Envoy's HTTP tap filter (`HttpBufferedTrace` JSON, one file per tap, and
//!   `HttpStreamedTraceSegment` JSON, joined by trace id).
//! - [`goreplay`]: GoReplay `.gor` files (requests and their original responses), gzipped or not.
//!
//! Gzipped files are recognised by their magic bytes, whatever their name. A record that cannot
//! be used is skipped with a [`Skipped`] entry; what gets printed of a file's content is escaped
//! and bounded ([`printable`]), so a binary file never floods a terminal.

pub mod envoy;
pub mod goreplay;

use shadowdiff_model::{Body, Exchange};
use std::borrow::Cow;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// What an import read.
#[derive(Debug, Default)]
pub struct Imported {
    /// The exchanges made from the records that could be used.
    pub exchanges: Vec<Exchange>,
    /// Records that could not be used, each with where and why.
    pub skipped: Vec<Skipped>,
}

impl Imported {
    /// The skips counted by reason, in the order each reason first occurred:
    /// `skipped 3: truncated 1, no request 2`; `None` when nothing was skipped.
    pub fn skip_summary(&self) -> Option<String> {
        if self.skipped.is_empty() {
            return None;
        }
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for s in &self.skipped {
            match counts.iter_mut().find(|(r, _)| *r == s.reason) {
                Some((_, n)) => *n += 1,
                None => counts.push((s.reason, 1)),
            }
        }
        let by_reason: Vec<String> = counts.iter().map(|(r, n)| format!("{r} {n}")).collect();
        Some(format!(
            "skipped {}: {}",
            self.skipped.len(),
            by_reason.join(", ")
        ))
    }

    /// Adds another import's exchanges and skips after this one's.
    pub fn extend(&mut self, other: Imported) {
        self.exchanges.extend(other.exchanges);
        self.skipped.extend(other.skipped);
    }
}

/// A record an import could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where: the file and the record (GoReplay) or trace (Envoy) number.
    pub at: String,
    /// Why, in a few words shared by every record skipped for the same cause (`truncated`,
    /// `no request`, `bad request`, …); [`Imported::skip_summary`] counts by it.
    pub reason: &'static str,
    /// What exactly, escaped and bounded (never raw file bytes); may be empty.
    pub detail: String,
}

impl Skipped {
    pub(crate) fn new(at: impl AsRef<str>, reason: &'static str, detail: &str) -> Self {
        Self {
            // A file name, or a trace id from the file, may hold control characters too.
            at: printable(at.as_ref(), MAX_AT),
            reason,
            detail: printable(detail, MAX_DETAIL),
        }
    }
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.detail.is_empty() {
            write!(f, "{}: {}", self.at, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.at, self.reason, self.detail)
        }
    }
}

/// Longest detail kept in a [`Skipped`], in characters.
const MAX_DETAIL: usize = 200;
/// Longest place kept in a [`Skipped`] (a path and a record number), in characters.
const MAX_AT: usize = 400;

/// Why an import stopped (a bad record is skipped instead, see [`Imported::skipped`]).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file or directory could not be read. The OS error is part of the message (and not a
    /// `source`, so that printing the error chain names it once).
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file or directory.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, ImportError> {
    std::fs::read(path).map_err(|error| ImportError::Read {
        path: path.display().to_string(),
        error,
    })
}

/// A file's content, gunzipped when it starts with gzip's magic bytes.
pub(crate) struct Content<'a> {
    /// The bytes to parse.
    pub(crate) bytes: Cow<'a, [u8]>,
    /// Set when the gzip stream is damaged or cut short: what was decoded before is kept.
    pub(crate) damaged: Option<String>,
}

/// Gunzips `raw` if it is gzip (all members, as `gzip -c a b > ab.gz` makes), else borrows it.
pub(crate) fn content(raw: &[u8]) -> Content<'_> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Content {
            bytes: Cow::Borrowed(raw),
            damaged: None,
        };
    }
    let mut decoder = flate2::read::MultiGzDecoder::new(raw);
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let damaged = loop {
        match decoder.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                break Some(format!(
                    "the gzip stream is damaged or cut short after {} decoded bytes ({e})",
                    out.len()
                ))
            }
        }
    };
    Content {
        bytes: Cow::Owned(out),
        damaged,
    }
}

/// `text` fit for one line of a terminal or a log: control characters escaped (`\n`, `\u{1b}`),
/// cut to `max` characters with `…` and the full length appended.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (shown, c) in text.chars().enumerate() {
        if shown >= max {
            out.push_str(&format!("… ({} bytes)", text.len()));
            return out;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Bytes from a file, for a message: UTF-8 text through [`printable`], anything else with its
/// non-ASCII bytes escaped (`\xf0`), both cut to `max` characters.
pub fn printable_bytes(bytes: &[u8], max: usize) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => printable(text, max),
        Err(_) => {
            let escaped = bytes.escape_ascii().to_string();
            let mut out: String = escaped.chars().take(max).collect();
            if out.len() < escaped.len() {
                out.push_str(&format!("… ({} bytes)", bytes.len()));
            }
            out
        }
    }
}

/// Makes a recorded request's framing headers agree with the body it carries, so that the
/// replayer writes the framing of what it sends: `transfer-encoding` goes (the body is held
/// whole, de-chunked), and so does every `content-length` unless it is exactly the body's
/// length. The replayer's HTTP client (hyper) keeps a `content-length` it is given and computes
/// one from the body only when there is none, so a recorded length longer than the body made
/// candidates wait for bytes that never came.
pub(crate) fn frame_request(headers: &mut Vec<(String, String)>, body: &Body) {
    let len = body.bytes.len().to_string();
    let agrees = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .all(|(_, v)| v.trim() == len);
    headers.retain(|(n, _)| {
        !(n.eq_ignore_ascii_case("transfer-encoding")
            || (!agrees && n.eq_ignore_ascii_case("content-length")))
    });
}

/// Files under `paths`: files as given, directories walked (sorted, recursively) for files
/// whose name ends with `.` and one of `extensions` (`json`, `gor.gz`), ignoring case.
pub fn collect_files(paths: &[PathBuf], extensions: &[&str]) -> Result<Vec<PathBuf>, ImportError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|error| ImportError::Read {
            path: p.display().to_string(),
            error,
        })?;
        if meta.is_dir() {
            walk(p, extensions, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) -> Result<(), ImportError> {
    let err = |error| ImportError::Read {
        path: dir.display().to_string(),
        error,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, extensions, out)?;
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| extensions.iter().any(|x| has_extension(n, x)))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Whether `name` ends with `.` + `ext`, ignoring ASCII case (`a.GOR.gz` has `gor.gz`).
fn has_extension(name: &str, ext: &str) -> bool {
    let (n, e) = (name.as_bytes(), ext.as_bytes());
    n.len() > e.len() + 1
        && n[n.len() - e.len() - 1] == b'.'
        && n[n.len() - e.len()..].eq_ignore_ascii_case(e)
}

/// A time-sortable id for an exchange captured at `unix_ns` (UUIDv7 of that time).
pub(crate) fn id_at(unix_ns: u64) -> String {
    if unix_ns == 0 {
        return uuid::Uuid::now_v7().to_string();
    }
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        unix_ns / 1_000_000_000,
        (unix_ns % 1_000_000_000) as u32,
    );
    uuid::Uuid::new_v7(ts).to_string()
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_summary_counts_by_reason_in_order_of_first_occurrence() {
        let mut out = Imported::default();
        assert_eq!(out.skip_summary(), None);
        for reason in ["truncated", "no request", "no request"] {
            out.skipped.push(Skipped::new("f", reason, ""));
        }
        assert_eq!(
            out.skip_summary().as_deref(),
            Some("skipped 3: truncated 1, no request 2")
        );
        assert_eq!(out.skipped[0].to_string(), "f: truncated");
    }

    #[test]
    fn printable_escapes_control_characters_and_bounds_the_length() {
        assert_eq!(printable("a\r\n\u{1b}[2Jb", 100), "a\\r\\n\\u{1b}[2Jb");
        assert_eq!(printable("🐵🙈🙉 ok", 100), "🐵🙈🙉 ok");
        assert_eq!(
            printable(&"x".repeat(300), 10),
            format!("{}… (300 bytes)", "x".repeat(10))
        );
        assert_eq!(
            printable_bytes(b"\x1f\x8b\x08\0ab", 100),
            "\\x1f\\x8b\\x08\\x00ab"
        );
        let long = printable_bytes(&[0xff; 1000], 8);
        assert!(
            long.starts_with("\\xff\\xff") && long.ends_with("… (1000 bytes)"),
            "{long}"
        );
        // A detail never holds raw control bytes.
        let s = Skipped::new("f\n1", "bad meta line", "\u{1b}]0;pwned\u{7}");
        assert!(!s.to_string().chars().any(char::is_control), "{s}");
    }

    #[test]
    fn framing_headers_are_made_to_agree_with_the_body() {
        let h = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        // A recorded length with a shorter body, or none: dropped (the replayer computes one).
        for body in [Body::complete(&b"ab"[..]), Body::default()] {
            let mut headers = h(&[("content-length", "42"), ("content-type", "text/plain")]);
            frame_request(&mut headers, &body);
            assert_eq!(headers, h(&[("content-type", "text/plain")]));
        }
        // A length that matches is kept; transfer-encoding always goes (the body is whole).
        let mut headers = h(&[("Content-Length", "2"), ("transfer-encoding", "chunked")]);
        frame_request(&mut headers, &Body::complete(&b"ab"[..]));
        assert_eq!(headers, h(&[("Content-Length", "2")]));
        // Two lengths that disagree with each other: both go.
        let mut headers = h(&[("content-length", "2"), ("content-length", "3")]);
        frame_request(&mut headers, &Body::complete(&b"ab"[..]));
        assert!(headers.is_empty());
    }

    #[test]
    fn extensions_match_whole_suffixes() {
        assert!(has_extension("a.gor", "gor"));
        assert!(has_extension("a.GOR.gz", "gor.gz"));
        assert!(!has_extension("a.gz", "gor.gz"));
        assert!(!has_extension("agor", "gor"));
        assert!(!has_extension(".gor", "gor"));
    }

    #[test]
    fn gzip_is_recognised_by_its_magic_bytes_and_a_cut_stream_keeps_its_prefix() {
        use std::io::Write as _;
        let text = b"hello gzip ".repeat(1000);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&text).unwrap();
        let gz = enc.finish().unwrap();
        let c = content(&gz);
        assert_eq!((&c.bytes[..], c.damaged.is_none()), (&text[..], true));
        // Two members, as `cat a.gz b.gz` makes.
        let two = [gz.clone(), gz.clone()].concat();
        assert_eq!(content(&two).bytes.len(), 2 * text.len());
        // Cut short: what was decoded is kept, and the damage is said.
        let cut = content(&gz[..gz.len() / 2]);
        assert!(cut.damaged.is_some());
        assert!(text.starts_with(&cut.bytes));
        // Not gzip: borrowed as is.
        assert!(matches!(content(b"plain").bytes, Cow::Borrowed(b"plain")));
    }
}
