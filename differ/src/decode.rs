//! Body decoding: content encodings first, then the content type decides how to compare.

use crate::rules::Rules;
use shadowdiff_model::{header_value, Headers};
use std::borrow::Cow;
use std::io::Read;

/// How a body is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// JSON (or NDJSON): parsed and diffed structurally.
    Json,
    /// `application/x-www-form-urlencoded`: turned into an object of value arrays and diffed
    /// structurally.
    Form,
    /// Text (including XML): line diff.
    Text,
    /// HTML: parsed into a tree of elements, text and attributes and diffed structurally.
    Html,
    /// Bytes that are not text: a difference shows only the two sizes.
    Binary,
}

/// Decoding failures; the engine turns them into notes and falls back to comparing raw bytes.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is not valid data for one of its content encodings.
    #[error("content-encoding `{encoding}` could not be decoded: {message}")]
    Encoding {
        /// The encoding that failed, as the header names it.
        encoding: String,
        /// The decoder's error.
        message: String,
    },
    /// Decoding would exceed `max_decoded_bytes` (a decompression bomb, or just too big).
    #[error("decoded body is over the {limit}-byte limit")]
    TooLarge {
        /// The rules' `max_decoded_bytes`.
        limit: usize,
    },
    /// An encoding the differ does not decode (only gzip, deflate and br are).
    #[error("content-encoding `{0}` is not supported")]
    Unsupported(String),
}

/// Undo `Content-Encoding` (gzip, deflate, br; several in order), bounded by the rules' limit.
pub fn decode_content<'a>(
    headers: &Headers,
    body: &'a [u8],
    rules: &Rules,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    let Some(encodings) = header_value(headers, "content-encoding") else {
        return Ok(Cow::Borrowed(body));
    };
    let mut data: Cow<'a, [u8]> = Cow::Borrowed(body);
    // Encodings are listed in the order they were applied; undo them in reverse.
    for encoding in encodings.split(',').map(str::trim).rev() {
        let limit = rules.max_decoded_bytes;
        let decoded = match encoding.to_ascii_lowercase().as_str() {
            "" | "identity" => continue,
            "gzip" | "x-gzip" => read_bounded(flate2::read::MultiGzDecoder::new(&data[..]), limit),
            "deflate" => {
                // RFC 9110 deflate is zlib; some servers send raw deflate.
                read_bounded(flate2::read::ZlibDecoder::new(&data[..]), limit)
                    .or_else(|_| read_bounded(flate2::read::DeflateDecoder::new(&data[..]), limit))
            }
            "br" => read_bounded(
                brotli_decompressor::Decompressor::new(&data[..], 4096),
                limit,
            ),
            other => return Err(DecodeError::Unsupported(other.to_string())),
        };
        data = Cow::Owned(decoded.map_err(|e| match e {
            ReadError::TooLarge => DecodeError::TooLarge { limit },
            ReadError::Io(message) => DecodeError::Encoding {
                encoding: encoding.to_string(),
                message,
            },
        })?);
    }
    Ok(data)
}

enum ReadError {
    TooLarge,
    Io(String),
}

fn read_bounded(reader: impl Read, limit: usize) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ReadError::Io(e.to_string()))?;
    if out.len() > limit {
        return Err(ReadError::TooLarge);
    }
    Ok(out)
}

/// Format from `Content-Type`, falling back to sniffing the first byte.
pub fn body_format(headers: &Headers, body: &[u8]) -> BodyFormat {
    if let Some(ct) = header_value(headers, "content-type") {
        let ct = ct.to_ascii_lowercase();
        let mime = ct.split(';').next().unwrap_or("").trim();
        if mime.ends_with("/json") || mime.ends_with("+json") || mime == "application/x-ndjson" {
            return BodyFormat::Json;
        }
        if mime == "application/x-www-form-urlencoded" {
            return BodyFormat::Form;
        }
        if mime == "text/html" || mime == "application/xhtml+xml" {
            return BodyFormat::Html;
        }
        if mime.starts_with("text/") || mime.ends_with("/xml") || mime.ends_with("+xml") {
            return BodyFormat::Text;
        }
        if !mime.is_empty() && std::str::from_utf8(body).is_err() {
            return BodyFormat::Binary;
        }
    }
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | Some(b'[') => BodyFormat::Json,
        _ if std::str::from_utf8(body).is_ok() => BodyFormat::Text,
        _ => BodyFormat::Binary,
    }
}

/// Form bodies as a JSON object of value arrays, so they get a structural diff.
pub(crate) fn form_to_json(body: &[u8]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let mut it = pair.splitn(2, |&b| b == b'=');
        let key = shadowdiff_model::secrets::percent_decode(it.next().unwrap_or_default());
        let value = shadowdiff_model::secrets::percent_decode(it.next().unwrap_or_default());
        if let serde_json::Value::Array(values) = map
            .entry(key)
            .or_insert_with(|| serde_json::Value::Array(Vec::new()))
        {
            values.push(serde_json::Value::String(value));
        }
    }
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_and_brotli_bodies_are_decoded() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"a\":1}").unwrap();
        let gz = gz.finish().unwrap();
        let headers = vec![("content-encoding".to_string(), "gzip".to_string())];
        let out = decode_content(&headers, &gz, &Rules::default()).unwrap();
        assert_eq!(&out[..], b"{\"a\":1}");

        let headers = vec![("content-encoding".to_string(), "gzip".to_string())];
        assert!(decode_content(&headers, b"not gzip", &Rules::default()).is_err());
    }

    #[test]
    fn decompression_bombs_are_bounded() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b'a'; 20 * 1024 * 1024]).unwrap();
        let gz = gz.finish().unwrap();
        let headers = vec![("content-encoding".to_string(), "gzip".to_string())];
        let err = decode_content(&headers, &gz, &Rules::default()).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { .. }));
    }

    #[test]
    fn formats_from_content_type_and_sniffing() {
        let h = |ct: &str| vec![("content-type".to_string(), ct.to_string())];
        assert_eq!(
            body_format(&h("application/problem+json"), b"{}"),
            BodyFormat::Json
        );
        assert_eq!(
            body_format(&h("text/html; charset=utf-8"), b"<p>"),
            BodyFormat::Html
        );
        assert_eq!(body_format(&vec![], b" [1]"), BodyFormat::Json);
        assert_eq!(body_format(&vec![], b"hello"), BodyFormat::Text);
        assert_eq!(
            body_format(&h("image/png"), b"\x89PNG\xff"),
            BodyFormat::Binary
        );
    }

    #[test]
    fn form_bodies_become_objects() {
        let v = form_to_json(b"a=1&b=x+y&a=%41&bad=%zz&trail=%4");
        assert_eq!(
            v,
            serde_json::json!({"a": ["1", "A"], "b": ["x y"], "bad": ["%zz"], "trail": ["%4"]})
        );
    }
}
