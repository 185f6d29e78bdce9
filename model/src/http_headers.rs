//! Conversions between `http` header maps and the model's ordered header list.

use crate::Headers;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one hop, not the message; a proxy must not forward them (RFC 9110 §7.6.1).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` is one of [`HOP_BY_HOP`], compared case-insensitively.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Removes hop-by-hop headers, including those the `Connection` header names, before a proxy
/// forwards a message. Runs on every proxied request and response, so the common case (no
/// hop-by-hop header at all) is one pass over the names with no allocation.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(http::header::CONNECTION) {
        let named: Vec<String> = headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
            .filter(|s| !s.is_empty())
            .collect();
        for name in named {
            headers.remove(name.as_str());
        }
    }
    // `HeaderMap` names are lowercase already, so plain equality (no case folding) will do.
    while let Some(name) = headers
        .keys()
        .find(|k| HOP_BY_HOP.contains(&k.as_str()))
        .cloned()
    {
        headers.remove(name);
    }
}

/// An `http::HeaderMap` as ordered (name, value) pairs; non-UTF-8 values are kept lossily.
pub fn headers_from_http(map: &HeaderMap) -> Headers {
    map.iter()
        .map(|(name, value)| {
            let value = match value.to_str() {
                Ok(v) => v.to_string(),
                Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
            };
            (name.as_str().to_string(), value)
        })
        .collect()
}

/// Model headers back into a `HeaderMap`, skipping hop-by-hop headers and invalid entries.
pub fn headers_to_http(headers: &Headers, skip: impl Fn(&str) -> bool) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if is_hop_by_hop(name) || skip(name) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.append(n, v);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));

        // Without a Connection header: every listed name goes, repeated values included.
        let mut h = HeaderMap::new();
        for name in HOP_BY_HOP {
            h.append(*name, HeaderValue::from_static("a"));
            h.append(*name, HeaderValue::from_static("b"));
        }
        h.append("tee", HeaderValue::from_static("not te"));
        h.append("x-upgrade", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["tee", "x-upgrade"]);
    }
}
