//! Which requests the tap copies, decided from the request head alone, before any body byte is
//! copied: filters (method, path prefix or glob, header) and a sampling rate that is consistent
//! per user when keyed by a header or query parameter (the same user is always in or always out).

use shadowdiff_model::fnv1a64;

/// What makes sampling consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleKey {
    /// Value of this request header (e.g. `x-user-id`).
    Header(String),
    /// Value of this query parameter (e.g. `user`).
    Query(String),
}

/// Sampling and filter settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleConfig {
    /// Share of matching requests kept, in percent (0–100).
    pub percent: f64,
    /// Hash this value instead of drawing at random; requests without it are drawn at random.
    pub key: Option<SampleKey>,
    /// Keep only these methods (upper case); empty keeps all.
    pub methods: Vec<String>,
    /// Keep only paths matching one of these: a prefix (`/api/`) or a glob with `*` (`/users/*/orders`).
    pub paths: Vec<String>,
    /// Keep only requests carrying each of these headers: `name` (present) or `name=value`.
    pub headers: Vec<String>,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            percent: 100.0,
            key: None,
            methods: Vec::new(),
            paths: Vec::new(),
            headers: Vec::new(),
        }
    }
}

/// Why a [`SampleConfig`] cannot make a [`Sampler`]; each variant holds the bad value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SampleError {
    /// The percentage is not within 0 to 100.
    #[error("percent must be between 0 and 100, got {0}")]
    Percent(String),
    /// A header filter is not `NAME` or `NAME=VALUE`.
    #[error("header filter `{0}` must be NAME or NAME=VALUE with a valid header name")]
    Header(String),
    /// A path filter does not start with `/`.
    #[error("path filter `{0}` must start with `/`")]
    Path(String),
}

/// Decides per request head whether the tap copies the exchange. Cheap: no allocation on the
/// unkeyed path, one hash on the keyed path.
#[derive(Debug, Clone)]
pub struct Sampler {
    /// Kept share scaled to `0..=SCALE`.
    threshold: u64,
    rate: f64,
    key: Option<SampleKey>,
    methods: Vec<String>,
    paths: Vec<String>,
    headers: Vec<(http::HeaderName, Option<String>)>,
}

const SCALE: u64 = 1_000_000;

impl Sampler {
    /// Checks the filters and the percentage.
    pub fn new(config: &SampleConfig) -> Result<Self, SampleError> {
        if !(0.0..=100.0).contains(&config.percent) || config.percent.is_nan() {
            return Err(SampleError::Percent(config.percent.to_string()));
        }
        let mut headers = Vec::new();
        for h in &config.headers {
            let (name, value) = match h.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
                None => (h.trim(), None),
            };
            let name = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| SampleError::Header(h.clone()))?;
            headers.push((name, value));
        }
        for p in &config.paths {
            if !p.starts_with('/') {
                return Err(SampleError::Path(p.clone()));
            }
        }
        let rate = config.percent / 100.0;
        Ok(Self {
            threshold: (rate * SCALE as f64).round() as u64,
            rate,
            key: config.key.clone(),
            methods: config
                .methods
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            paths: config.paths.clone(),
            headers,
        })
    }

    /// Fraction of matching traffic kept (1.0 = everything), recorded in each exchange.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// True when every request is kept: callers may skip [`Sampler::keep`] entirely.
    pub fn keeps_everything(&self) -> bool {
        self.threshold >= SCALE
            && self.methods.is_empty()
            && self.paths.is_empty()
            && self.headers.is_empty()
    }

    /// Whether to copy this request's exchange.
    pub fn keep(&self, method: &http::Method, uri: &http::Uri, headers: &http::HeaderMap) -> bool {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == method.as_str()) {
            return false;
        }
        if !self.paths.is_empty() && !self.paths.iter().any(|p| path_matches(p, uri.path())) {
            return false;
        }
        for (name, value) in &self.headers {
            let ok = match value {
                None => headers.contains_key(name),
                Some(v) => headers
                    .get_all(name)
                    .iter()
                    .any(|h| h.as_bytes() == v.as_bytes()),
            };
            if !ok {
                return false;
            }
        }
        if self.threshold >= SCALE {
            return true;
        }
        if self.threshold == 0 {
            return false;
        }
        let keyed = match &self.key {
            Some(SampleKey::Header(name)) => headers.get(name.as_str()).map(|v| v.as_bytes()),
            Some(SampleKey::Query(name)) => uri.query().and_then(|q| query_value(q, name)),
            None => None,
        };
        let draw = match keyed {
            Some(value) => fnv1a64(value),
            None => rand::random::<u64>(),
        };
        draw % SCALE < self.threshold
    }
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a [u8]> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v.as_bytes())
    })
}

/// A pattern without `*` is a prefix; with `*`, a glob where `*` matches within one segment
/// and `**` across segments.
fn path_matches(pattern: &str, path: &str) -> bool {
    if !pattern.contains('*') {
        return path.starts_with(pattern);
    }
    glob(pattern.as_bytes(), path.as_bytes())
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => {
            let (rest, cross) = if p.get(1) == Some(&b'*') {
                (&p[2..], true)
            } else {
                (&p[1..], false)
            };
            for i in 0..=s.len() {
                if glob(rest, &s[i..]) {
                    return true;
                }
                if i < s.len() && !cross && s[i] == b'/' {
                    return false;
                }
            }
            false
        }
        Some(c) => s.first() == Some(c) && glob(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(uri: &str, headers: &[(&str, &str)]) -> (http::Uri, http::HeaderMap) {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        (uri.parse().unwrap(), map)
    }

    #[test]
    fn filters_by_method_path_and_header() {
        let s = Sampler::new(&SampleConfig {
            methods: vec!["get".into()],
            paths: vec!["/api/".into(), "/users/*/orders".into()],
            headers: vec!["x-tenant=acme".into()],
            ..SampleConfig::default()
        })
        .unwrap();
        let get = http::Method::GET;
        let (u, h) = head("/api/x", &[("x-tenant", "acme")]);
        assert!(s.keep(&get, &u, &h));
        assert!(!s.keep(&http::Method::POST, &u, &h));
        let (u, h) = head("/users/7/orders", &[("x-tenant", "acme")]);
        assert!(s.keep(&get, &u, &h));
        let (u, h) = head("/users/7/x/orders", &[("x-tenant", "acme")]);
        assert!(!s.keep(&get, &u, &h));
        let (u, h) = head("/api/x", &[("x-tenant", "other")]);
        assert!(!s.keep(&get, &u, &h));
        assert!(!s.keeps_everything());
    }

    #[test]
    fn keyed_sampling_is_consistent_and_near_the_rate() {
        let s = Sampler::new(&SampleConfig {
            percent: 30.0,
            key: Some(SampleKey::Query("user".into())),
            ..SampleConfig::default()
        })
        .unwrap();
        let mut kept = 0;
        for user in 0..2000 {
            let (u, h) = head(&format!("/x?a=1&user=u{user}"), &[]);
            let first = s.keep(&http::Method::GET, &u, &h);
            for _ in 0..3 {
                assert_eq!(s.keep(&http::Method::GET, &u, &h), first, "user {user}");
            }
            kept += usize::from(first);
        }
        assert!((450..750).contains(&kept), "kept {kept} of 2000 at 30%");

        let by_header = Sampler::new(&SampleConfig {
            percent: 50.0,
            key: Some(SampleKey::Header("x-user".into())),
            ..SampleConfig::default()
        })
        .unwrap();
        let (u, h) = head("/x", &[("x-user", "alice")]);
        let first = by_header.keep(&http::Method::GET, &u, &h);
        assert!((0..20).all(|_| by_header.keep(&http::Method::GET, &u, &h) == first));
    }

    #[test]
    fn extremes_and_bad_settings() {
        let none = Sampler::new(&SampleConfig {
            percent: 0.0,
            ..SampleConfig::default()
        })
        .unwrap();
        let (u, h) = head("/", &[]);
        assert!(!none.keep(&http::Method::GET, &u, &h));
        assert!(Sampler::new(&SampleConfig::default())
            .unwrap()
            .keeps_everything());
        assert!(Sampler::new(&SampleConfig {
            percent: 101.0,
            ..SampleConfig::default()
        })
        .is_err());
        assert!(Sampler::new(&SampleConfig {
            paths: vec!["api".into()],
            ..SampleConfig::default()
        })
        .is_err());
    }
}
