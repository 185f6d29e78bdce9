//! Redaction of exchanges: secrets in headers, query parameters and JSON bodies are replaced
//! by a keyed hash (`redacted:` + 16 hex digits of HMAC-SHA256), so equal secrets still compare
//! equal and nothing readable is stored or transported. The tap applies it before an exchange
//! leaves it (`shadowdiff_capture::redact::RedactingSink`), the replayer to target responses.
//!
//! Here, beside [`crate::secrets`] (the default header and query lists, the same ones the
//! replayer strips) and the records it edits, because it is a pure function of an
//! [`Exchange`]: whoever redacts needs the records, not the tap's networking. Its three
//! dependencies (hmac, sha2, hex) are small pure-Rust crates.

use crate::secrets::{
    edit_query, merged_names, NameSet, QueryEdit, SECRET_HEADERS, SECRET_QUERY_PARAMS,
    SECRET_RESPONSE_HEADERS,
};
use crate::{Body, Exchange, Headers, HttpResponse};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Headers redacted even when the default lists are replaced (request and response).
pub const DEFAULT_REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// Prefix of every redacted value.
pub const REDACTED_PREFIX: &str = "redacted:";

/// Environment variable holding the HMAC key when the config has none.
pub const REDACTION_KEY_ENV: &str = "SHADOWDIFF_REDACTION_KEY";

/// What to redact and with which key; [`Redactor::new`] checks it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactionConfig {
    /// HMAC key. The same key on every tap keeps hashes comparable across taps and restarts.
    pub key: Vec<u8>,
    /// Extra header names to redact, besides [`DEFAULT_REDACTED_HEADERS`] and (unless
    /// `replace_default_secrets`) [`SECRET_HEADERS`].
    pub headers: Vec<String>,
    /// Extra query parameter names to redact, besides (unless `replace_default_secrets`)
    /// [`SECRET_QUERY_PARAMS`].
    pub query: Vec<String>,
    /// Redact only [`DEFAULT_REDACTED_HEADERS`] and the lists above, not the model's defaults.
    pub replace_default_secrets: bool,
    /// Dotted JSON body paths; `*` matches any key or array element: `user.password`,
    /// `cards.*.number`.
    pub body_paths: Vec<String>,
}

/// Why a [`RedactionConfig`] cannot make a [`Redactor`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedactError {
    /// The key is empty.
    #[error("the redaction key is empty; set capture.redaction.key or {REDACTION_KEY_ENV}")]
    EmptyKey,
    /// A body path is empty or has an empty segment.
    #[error("body path `{0}` is not a dotted path such as `user.password` or `cards.*.number`")]
    BadPath(String),
}

/// Replaces secrets in an exchange. Cheap when no body paths are configured: headers only, no
/// JSON parsing.
#[derive(Clone)]
pub struct Redactor {
    mac: Hmac<Sha256>,
    headers: NameSet,
    query: NameSet,
    paths: Vec<Vec<String>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("headers", &self.headers)
            .field("query", &self.query)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// Builds the header, query and body path lists from `config`.
    pub fn new(config: &RedactionConfig) -> Result<Self, RedactError> {
        if config.key.is_empty() {
            return Err(RedactError::EmptyKey);
        }
        let mac = Hmac::<Sha256>::new_from_slice(&config.key).map_err(|_| RedactError::EmptyKey)?;
        let defaults: &[&[&str]] = if config.replace_default_secrets {
            &[DEFAULT_REDACTED_HEADERS]
        } else {
            &[
                DEFAULT_REDACTED_HEADERS,
                SECRET_HEADERS,
                SECRET_RESPONSE_HEADERS,
            ]
        };
        let headers = NameSet::new(&merged_names(defaults, &config.headers));
        let query_defaults: &[&[&str]] = if config.replace_default_secrets {
            &[]
        } else {
            &[SECRET_QUERY_PARAMS]
        };
        let query = NameSet::new(&merged_names(query_defaults, &config.query));
        let mut paths = Vec::new();
        for p in &config.body_paths {
            let segments: Vec<String> = p.split('.').map(str::to_string).collect();
            if p.is_empty() || segments.iter().any(String::is_empty) {
                return Err(RedactError::BadPath(p.clone()));
            }
            paths.push(segments);
        }
        Ok(Self {
            mac,
            headers,
            query,
            paths,
        })
    }

    /// `redacted:` and the first 16 hex digits of HMAC-SHA256(key, value).
    pub fn hash(&self, value: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(value);
        let digest = mac.finalize().into_bytes();
        format!("{REDACTED_PREFIX}{}", hex::encode(&digest[..8]))
    }

    /// Redacts in place and appends what was replaced to `exchange.redactions`
    /// (`request.headers.authorization`, `response.body.user.password`, …).
    pub fn redact(&self, exchange: &mut Exchange) {
        let mut names = std::mem::take(&mut exchange.redactions);
        self.redact_headers(&mut exchange.request.headers, "request", &mut names);
        self.redact_query(&mut exchange.request.uri, &mut names);
        if !self.paths.is_empty() {
            self.redact_body(&mut exchange.request.body, "request", &mut names);
        }
        if let Some(response) = exchange.control.as_mut() {
            self.redact_headers(&mut response.headers, "response", &mut names);
            if !self.paths.is_empty() {
                self.redact_body(&mut response.body, "response", &mut names);
            }
        }
        exchange.redactions = names;
    }

    /// Redacts a replayed target's response the same way as the control's, so a redacted
    /// control value and the candidate's equal raw value still compare equal.
    pub fn redact_response(&self, response: &mut HttpResponse) {
        let mut names = Vec::new();
        self.redact_headers(&mut response.headers, "response", &mut names);
        if !self.paths.is_empty() {
            self.redact_body(&mut response.body, "response", &mut names);
        }
    }

    fn redact_headers(&self, headers: &mut Headers, side: &str, names: &mut Vec<String>) {
        for (name, value) in headers.iter_mut() {
            if self.headers.contains(name) && !value.starts_with(REDACTED_PREFIX) {
                *value = self.hash(value.as_bytes());
                push_unique(
                    names,
                    format!("{side}.headers.{}", name.to_ascii_lowercase()),
                );
            }
        }
    }

    fn redact_query(&self, uri: &mut String, names: &mut Vec<String>) {
        if self.query.is_empty() || !uri.contains('?') {
            return;
        }
        let redacted = edit_query(uri, |name, value| {
            if value.is_empty() || value.starts_with(REDACTED_PREFIX) || !self.query.contains(name)
            {
                return QueryEdit::Keep;
            }
            push_unique(
                names,
                format!("request.query.{}", name.to_ascii_lowercase()),
            );
            QueryEdit::Replace(self.hash(value.as_bytes()))
        });
        if let Some(redacted) = redacted {
            *uri = redacted;
        }
    }

    fn redact_body(&self, body: &mut Body, side: &str, names: &mut Vec<String>) {
        if body.bytes.is_empty() {
            return;
        }
        let first = body.bytes.iter().find(|b| !b.is_ascii_whitespace());
        if !matches!(first, Some(b'{') | Some(b'[')) {
            return; // Not JSON: body paths do not apply.
        }
        if body.truncated {
            // A cut JSON body cannot be parsed, so its secrets cannot be found: drop it.
            *body = Body::partial(bytes::Bytes::new(), body.full_len, true);
            push_unique(names, format!("{side}.body"));
            return;
        }
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&body.bytes) else {
            return;
        };
        let mut hit = Vec::new();
        for path in &self.paths {
            self.redact_path(&mut value, path, &mut String::new(), &mut hit);
        }
        if hit.is_empty() {
            return;
        }
        for h in hit {
            push_unique(names, format!("{side}.body.{h}"));
        }
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        *body = Body::complete(bytes);
    }

    fn redact_path(
        &self,
        value: &mut serde_json::Value,
        path: &[String],
        at: &mut String,
        hit: &mut Vec<String>,
    ) {
        let Some((first, rest)) = path.split_first() else {
            if !value.is_null()
                && !value
                    .as_str()
                    .is_some_and(|s| s.starts_with(REDACTED_PREFIX))
            {
                let original = match &*value {
                    serde_json::Value::String(s) => s.clone().into_bytes(),
                    other => other.to_string().into_bytes(),
                };
                *value = serde_json::Value::String(self.hash(&original));
                hit.push(at.clone());
            }
            return;
        };
        let len = at.len();
        let mut descend = |key: &str, child: &mut serde_json::Value, at: &mut String| {
            if !at.is_empty() {
                at.push('.');
            }
            at.push_str(key);
            self.redact_path(child, rest, at, hit);
            at.truncate(len);
        };
        match value {
            serde_json::Value::Object(map) => {
                if first == "*" {
                    for (k, child) in map.iter_mut() {
                        descend(k, child, at);
                    }
                } else if let Some(child) = map.get_mut(first.as_str()) {
                    descend(first, child, at);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, child) in items.iter_mut().enumerate() {
                    if first == "*" || first.parse::<usize>().ok() == Some(i) {
                        descend(&i.to_string(), child, at);
                    }
                }
            }
            _ => {}
        }
    }
}

fn push_unique(names: &mut Vec<String>, name: String) {
    if !names.contains(&name) {
        names.push(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HttpRequest, SCHEMA_VERSION};

    fn redactor(paths: &[&str]) -> Redactor {
        Redactor::new(&RedactionConfig {
            key: b"k".to_vec(),
            headers: vec!["X-Custom-Secret".into()],
            body_paths: paths.iter().map(|p| p.to_string()).collect(),
            ..RedactionConfig::default()
        })
        .unwrap()
    }

    /// A known answer, computed independently (Python's `hmac` module): the hash is a pure
    /// function of key and value, so every process with the same key hashes a secret the same.
    #[test]
    fn the_hash_is_hmac_sha256_truncated_to_16_hex_digits() {
        let r = Redactor::new(&RedactionConfig {
            key: b"shadowdiff-known-answer".to_vec(),
            ..RedactionConfig::default()
        })
        .unwrap();
        // python3 -c "import hmac,hashlib; print(hmac.new(b'shadowdiff-known-answer',
        //   b'Bearer secret-token-123', hashlib.sha256).hexdigest()[:16])"
        assert_eq!(
            r.hash(b"Bearer secret-token-123"),
            "redacted:5fc983c3539f8b80"
        );
    }

    fn exchange(body: &str) -> Exchange {
        Exchange {
            schema_version: SCHEMA_VERSION,
            id: "1".into(),
            captured_at_ms: 0,
            source: "tee".into(),
            experiment: "e".into(),
            request: HttpRequest {
                method: "POST".into(),
                uri: "/login".into(),
                headers: vec![
                    ("authorization".into(), "Bearer abc".into()),
                    ("x-custom-secret".into(), "k1".into()),
                    ("accept".into(), "*/*".into()),
                ],
                body: Body::complete(body.as_bytes().to_vec()),
            },
            control: Some(HttpResponse {
                status: 200,
                headers: vec![("set-cookie".into(), "s=1".into())],
                body: Body::complete(&b"{\"token\":\"t\"}"[..]),
                latency_us: 1,
            }),
            redactions: vec![],
            sample_rate: 1.0,
        }
    }

    #[test]
    fn headers_and_paths_become_keyed_hashes() {
        let r = redactor(&["user.password", "cards.*.number", "token"]);
        let mut e = exchange(
            r#"{"user":{"name":"a","password":"p"},"cards":[{"number":"4111"},{"number":"4222"}]}"#,
        );
        r.redact(&mut e);
        let auth = &e.request.headers[0].1;
        assert!(
            auth.starts_with("redacted:") && auth.len() == 9 + 16,
            "{auth}"
        );
        assert_eq!(auth, &r.hash(b"Bearer abc"));
        assert!(e.request.headers[1].1.starts_with("redacted:"));
        assert_eq!(e.request.headers[2].1, "*/*");
        let body: serde_json::Value = serde_json::from_slice(&e.request.body.bytes).unwrap();
        assert_eq!(body["user"]["name"], "a");
        assert_eq!(body["user"]["password"], r.hash(b"p").as_str());
        assert_eq!(body["cards"][1]["number"], r.hash(b"4222").as_str());
        let text = String::from_utf8_lossy(&e.request.body.bytes).to_string();
        assert!(!text.contains("4111") && !text.contains("\"p\""), "{text}");
        assert_eq!(
            e.redactions,
            vec![
                "request.headers.authorization",
                "request.headers.x-custom-secret",
                "request.body.user.password",
                "request.body.cards.0.number",
                "request.body.cards.1.number",
                "response.headers.set-cookie",
                "response.body.token",
            ]
        );
        // Idempotent, and equal secrets hash equal under the same key.
        let again = e.clone();
        r.redact(&mut e);
        assert_eq!(e.request, again.request);
        let other = redactor(&[]);
        assert_eq!(other.hash(b"x"), r.hash(b"x"));
    }

    #[test]
    fn non_json_bodies_are_left_and_cut_json_is_dropped() {
        let r = redactor(&["password"]);
        let mut e = exchange("password=p");
        r.redact(&mut e);
        assert_eq!(&e.request.body.bytes[..], b"password=p");
        let mut e = exchange("{\"password\":\"p");
        e.request.body = Body::partial(e.request.body.bytes.clone(), 100, true);
        r.redact(&mut e);
        assert!(e.request.body.bytes.is_empty() && e.request.body.truncated);
        assert!(e.redactions.contains(&"request.body".to_string()));
    }

    #[test]
    fn bad_settings_are_precise() {
        assert_eq!(
            Redactor::new(&RedactionConfig::default()).unwrap_err(),
            RedactError::EmptyKey
        );
        let e = Redactor::new(&RedactionConfig {
            key: b"k".to_vec(),
            body_paths: vec!["a..b".into()],
            ..RedactionConfig::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("a..b"));
    }

    #[test]
    fn every_default_secret_header_and_query_parameter_is_redacted() {
        let r = redactor(&[]);
        let mut e = exchange("");
        e.request.headers = SECRET_HEADERS
            .iter()
            .enumerate()
            .map(|(i, h)| (h.to_ascii_uppercase(), format!("secret-h{i}")))
            .collect();
        e.request
            .headers
            .push(("x-amz-date".into(), "20240101T000000Z".into()));
        let query: Vec<String> = SECRET_QUERY_PARAMS
            .iter()
            .enumerate()
            .map(|(i, q)| format!("{}=secret-q{i}", q.to_ascii_uppercase()))
            .collect();
        e.request.uri = format!("/login?page=2&{}&%74oken=secret-enc", query.join("&"));
        r.redact(&mut e);
        let all = format!("{:?}", e.request);
        assert!(!all.contains("secret-"), "{all}");
        assert!(all.contains("20240101T000000Z") && e.request.uri.starts_with("/login?page=2&"));
        assert!(e
            .request
            .uri
            .contains(&format!("TOKEN={}", r.hash(b"secret-q0"))));
        for q in SECRET_QUERY_PARAMS {
            assert!(e.redactions.contains(&format!("request.query.{q}")), "{q}");
        }
        for h in SECRET_HEADERS {
            assert!(
                e.redactions.contains(&format!("request.headers.{h}")),
                "{h}"
            );
        }
        // Idempotent: a second tap (or the offline replay) leaves hashes alone.
        let once = e.request.clone();
        r.redact(&mut e);
        assert_eq!(e.request, once);
    }

    #[test]
    fn default_lists_can_be_extended_or_replaced() {
        let r = Redactor::new(&RedactionConfig {
            key: b"k".to_vec(),
            headers: vec!["X-Tenant-Secret".into()],
            query: vec!["Promo".into()],
            replace_default_secrets: true,
            ..RedactionConfig::default()
        })
        .unwrap();
        let mut e = exchange("");
        e.request.uri = "/x?promo=p1&key=k1".into();
        e.request.headers = vec![
            ("x-tenant-secret".into(), "t1".into()),
            ("x-api-key".into(), "a1".into()),
            ("cookie".into(), "c1".into()),
        ];
        r.redact(&mut e);
        assert_eq!(e.request.uri, format!("/x?promo={}&key=k1", r.hash(b"p1")));
        assert!(e.request.headers[0].1.starts_with(REDACTED_PREFIX));
        assert_eq!(
            e.request.headers[1].1, "a1",
            "replaced: x-api-key no longer listed"
        );
        assert!(
            e.request.headers[2].1.starts_with(REDACTED_PREFIX),
            "always redacted"
        );
    }
}
