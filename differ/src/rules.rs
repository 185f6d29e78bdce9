//! Normalization rules: what the user writes in `[diff]` and the compiled form the engine uses.

use crate::glob::PathGlob;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Headers that differ between any two instances of the same build, or between two responses
/// of one: what servers, tracing systems, proxies and CDNs add per response. Ignored unless the
/// user lists them under `compare_headers`. Header values that are timestamps, UUIDs or tokens
/// of one format are noise by detector too (`detect::volatile_reason`).
pub const DEFAULT_VOLATILE_HEADERS: &[&str] = &[
    "date",
    "server",
    // Request ids.
    "x-request-id",
    "x-correlation-id",
    "request-id",
    "x-trace-id",
    // W3C Trace Context and Baggage, B3 (Zipkin), Jaeger, Datadog, Google Cloud.
    "traceparent",
    "tracestate",
    "baggage",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "uber-trace-id",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "x-datadog-origin",
    "x-cloud-trace-context",
    "x-guploader-uploadid",
    // AWS (ALB, API Gateway, S3, CloudFront), Azure (Front Door, ARM).
    "x-amzn-trace-id",
    "x-amzn-requestid",
    "x-amz-request-id",
    "x-amz-id-2",
    "x-amz-apigw-id",
    "x-amz-cf-id",
    "x-amz-cf-pop",
    "x-ms-request-id",
    "x-ms-correlation-request-id",
    "x-ms-routing-request-id",
    "x-azure-ref",
    "x-msedge-ref",
    // Cloudflare, Fastly, Varnish, Akamai.
    "cf-ray",
    "cf-cache-status",
    "cf-request-id",
    "nel",
    "report-to",
    "x-served-by",
    "x-cache",
    "x-cache-hits",
    "x-timer",
    "x-fastly-request-id",
    "fastly-debug-digest",
    "x-varnish",
    "akamai-grn",
    "x-akamai-request-id",
    // Proxies and gateways (Envoy, Kong) and timing.
    "via",
    "x-envoy-upstream-service-time",
    "x-kong-upstream-latency",
    "x-kong-proxy-latency",
    "x-kong-request-id",
    "x-runtime",
    "x-response-time",
    "server-timing",
    // Caching metadata that changes with time, not with the build.
    "age",
    "expires",
    "etag",
    "last-modified",
    "connection",
    "keep-alive",
    "transfer-encoding",
    // The body diff already covers a length change; a bare length header adds nothing.
    "content-length",
    "content-encoding",
];

/// Headers whose presence is compared but whose values are not (they carry sessions, nonces).
pub(crate) const DEFAULT_PRESENCE_ONLY_HEADERS: &[&str] = &["set-cookie"];

/// How arrays at a path are compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArrayMode {
    /// Element by element; a pure reordering is reported once as `order`.
    Ordered,
    /// As a multiset: order never matters.
    Set,
    /// Elements matched by the value of a key field (`items[id]`).
    Key(String),
}

/// `[[diff.arrays]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayRuleConfig {
    /// Path glob of the array, e.g. `body.items` or `body.**.tags`.
    pub path: String,
    /// `ordered`, `set` or `key`.
    pub mode: String,
    /// Key field when `mode = "key"`.
    pub key: Option<String>,
}

/// `[[diff.scrub]]` entry: a regex whose matches are replaced in strings before comparing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrubConfig {
    /// The regex (`regex` crate syntax); every match is replaced.
    pub pattern: String,
    /// What each match becomes, on both sides; `<scrubbed>` by default.
    #[serde(default = "default_scrub_replacement")]
    pub replacement: String,
    /// Limit to these path globs; all string values when empty.
    #[serde(default)]
    pub paths: Vec<String>,
}

fn default_scrub_replacement() -> String {
    "<scrubbed>".to_string()
}

/// `[diff.tolerance]`: numbers within either bound compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    /// Equal when `|a - b| <= absolute`; 0 turns the bound off.
    #[serde(default)]
    pub absolute: f64,
    /// Equal when `|a - b| <= relative * max(|a|, |b|)`; 0 turns the bound off.
    #[serde(default)]
    pub relative: f64,
}

/// The `[diff]` section of the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Path globs whose differences are ignored (`body.meta.**`, `headers.x-*`).
    pub ignore: Vec<String>,
    /// Extra headers to ignore, on top of the volatile defaults.
    pub ignore_headers: Vec<String>,
    /// Volatile-by-default headers to compare anyway.
    pub compare_headers: Vec<String>,
    /// Treat `null` and a missing key as equal.
    pub null_equals_missing: bool,
    /// Path globs whose strings compare case-insensitively.
    pub case_insensitive: Vec<String>,
    /// Bounds within which numbers compare equal; exact by default.
    pub tolerance: Tolerance,
    /// How arrays at given paths are compared; the first matching rule wins, else ordered.
    pub arrays: Vec<ArrayRuleConfig>,
    /// Regex replacements applied to strings before they are compared.
    pub scrub: Vec<ScrubConfig>,
    /// Classify differing timestamps, UUIDs and random tokens as noise.
    pub detectors: bool,
    /// Deadline for one text diff, in milliseconds.
    pub text_deadline_ms: u64,
    /// At most this many differences are kept per exchange (the rest are counted in a note).
    pub max_differences: usize,
    /// Decoding a body to more than this many bytes stops; the raw bytes are compared instead
    /// and a note says so.
    pub max_decoded_bytes: usize,
    /// Rules for one endpoint, on top of these: `[[diff.endpoints]] route = "/users/{id}"`.
    pub endpoints: Vec<EndpointRulesConfig>,
    /// Learning the control's own noise from identical requests repeated over time
    /// (`[diff.repeats]`, see `RepeatTracker`).
    pub repeats: crate::repeat::RepeatConfig,
}

/// `[[diff.endpoints]]`: list settings extend the defaults above; the others replace them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointRulesConfig {
    /// Route template as reports show it, e.g. `/users/{id}`.
    pub route: String,
    /// HTTP method; every method when absent.
    pub method: Option<String>,
    /// More path globs to ignore, on top of the default `ignore`.
    pub ignore: Vec<String>,
    /// More headers to ignore, on top of the default `ignore_headers`.
    pub ignore_headers: Vec<String>,
    /// More volatile headers to compare, on top of the default `compare_headers`.
    pub compare_headers: Vec<String>,
    /// More case-insensitive path globs, on top of the default `case_insensitive`.
    pub case_insensitive: Vec<String>,
    /// Array rules tried before the default ones.
    pub arrays: Vec<ArrayRuleConfig>,
    /// Scrub rules applied after the default ones.
    pub scrub: Vec<ScrubConfig>,
    /// Replaces the default `null_equals_missing` when set.
    pub null_equals_missing: Option<bool>,
    /// Replaces the default `tolerance` when set.
    pub tolerance: Option<Tolerance>,
    /// Replaces the default `detectors` when set.
    pub detectors: Option<bool>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            ignore: Vec::new(),
            ignore_headers: Vec::new(),
            compare_headers: Vec::new(),
            null_equals_missing: false,
            case_insensitive: Vec::new(),
            tolerance: Tolerance::default(),
            arrays: Vec::new(),
            scrub: Vec::new(),
            detectors: true,
            text_deadline_ms: 2,
            max_differences: 100,
            max_decoded_bytes: 16 * 1024 * 1024,
            endpoints: Vec::new(),
            repeats: crate::repeat::RepeatConfig::default(),
        }
    }
}

impl EndpointRulesConfig {
    /// The defaults with this endpoint's settings applied.
    fn merged_onto(&self, base: &RulesConfig) -> RulesConfig {
        let extend = |a: &[String], b: &[String]| a.iter().chain(b).cloned().collect::<Vec<_>>();
        RulesConfig {
            ignore: extend(&base.ignore, &self.ignore),
            ignore_headers: extend(&base.ignore_headers, &self.ignore_headers),
            compare_headers: extend(&base.compare_headers, &self.compare_headers),
            case_insensitive: extend(&base.case_insensitive, &self.case_insensitive),
            // Endpoint array rules come first so that they win over default ones.
            arrays: self.arrays.iter().chain(&base.arrays).cloned().collect(),
            scrub: base.scrub.iter().chain(&self.scrub).cloned().collect(),
            null_equals_missing: self.null_equals_missing.unwrap_or(base.null_equals_missing),
            tolerance: self.tolerance.unwrap_or(base.tolerance),
            detectors: self.detectors.unwrap_or(base.detectors),
            endpoints: Vec::new(),
            ..base.clone()
        }
    }
}

/// A rule that does not make sense, with where it is.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// An array rule whose `mode` is not `ordered`, `set` or `key`.
    #[error("diff.arrays[{index}]: mode `{mode}` is not one of ordered, set, key")]
    BadArrayMode {
        /// Position of the rule in `diff.arrays`.
        index: usize,
        /// The mode as written.
        mode: String,
    },
    /// An array rule with `mode = "key"` but no `key`.
    #[error("diff.arrays[{index}]: mode `key` needs `key = \"<field>\"`")]
    MissingArrayKey {
        /// Position of the rule in `diff.arrays`.
        index: usize,
    },
    /// A scrub rule whose pattern does not compile.
    #[error("diff.scrub[{index}]: invalid regex `{pattern}`: {source}")]
    BadRegex {
        /// Position of the rule in `diff.scrub`.
        index: usize,
        /// The pattern as written.
        pattern: String,
        /// Why the regex crate refused it.
        source: regex::Error,
    },
    /// A tolerance bound (named: `absolute` or `relative`) that is negative, NaN or infinite.
    #[error("diff.tolerance: {0} must be a finite number >= 0")]
    BadTolerance(&'static str),
    /// `[diff.repeats]` bounds out of range.
    #[error("diff.repeats.{key} must be between 1 and {max} (it bounds the memory of the repeat tracker)")]
    BadRepeats {
        /// `requests` or `fields`.
        key: &'static str,
        /// The largest value allowed.
        max: usize,
    },
    /// `max_differences = 0`: every difference would be dropped.
    #[error("diff.max_differences must be at least 1")]
    NoDifferencesKept,
    /// An endpoint whose `route` is not a route template (does not start with `/`).
    #[error("diff.endpoints[{index}]: route `{route}` must be a route template starting with `/`, e.g. /users/{{id}}")]
    BadEndpointRoute {
        /// Position of the endpoint in `diff.endpoints`.
        index: usize,
        /// The route as written.
        route: String,
    },
    /// An endpoint's rules, merged onto the defaults, are invalid.
    #[error("diff.endpoints[{index}] ({route}): {source}")]
    Endpoint {
        /// Position of the endpoint in `diff.endpoints`.
        index: usize,
        /// The endpoint's route.
        route: String,
        /// What is wrong with the merged rules.
        source: Box<RulesError>,
    },
}

/// Rules ready for the engine.
#[derive(Debug, Clone)]
pub struct Rules {
    pub(crate) ignore: Vec<PathGlob>,
    pub(crate) ignored_headers: Vec<String>,
    pub(crate) presence_only_headers: Vec<String>,
    pub(crate) null_equals_missing: bool,
    pub(crate) case_insensitive: Vec<PathGlob>,
    pub(crate) tolerance: Tolerance,
    pub(crate) arrays: Vec<(PathGlob, ArrayMode)>,
    pub(crate) scrub: Vec<(regex::Regex, String, Vec<PathGlob>)>,
    pub(crate) detectors: bool,
    pub(crate) text_deadline: Duration,
    pub(crate) max_differences: usize,
    pub(crate) max_decoded_bytes: usize,
    /// (method, route, rules) for endpoints with their own rules.
    pub(crate) endpoints: std::sync::Arc<Vec<(Option<String>, String, Rules)>>,
}

impl Default for Rules {
    fn default() -> Self {
        // The default config is valid by construction.
        Self::compile(&RulesConfig::default()).unwrap_or_else(|_| unreachable!())
    }
}

impl Rules {
    /// Validates `config` and compiles it, with each endpoint's rules merged onto the defaults.
    pub fn compile(config: &RulesConfig) -> Result<Self, RulesError> {
        let mut rules = Self::compile_one(config)?;
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for (index, e) in config.endpoints.iter().enumerate() {
            if !e.route.starts_with('/') {
                return Err(RulesError::BadEndpointRoute {
                    index,
                    route: e.route.clone(),
                });
            }
            let merged = e.merged_onto(config);
            let compiled = Self::compile_one(&merged).map_err(|source| RulesError::Endpoint {
                index,
                route: e.route.clone(),
                source: Box::new(source),
            })?;
            endpoints.push((
                e.method.as_ref().map(|m| m.to_ascii_uppercase()),
                e.route.clone(),
                compiled,
            ));
        }
        rules.endpoints = std::sync::Arc::new(endpoints);
        Ok(rules)
    }

    /// Whether the header `name` (lower case) is never compared (a volatile header, or one the
    /// config ignores).
    pub(crate) fn ignores_header(&self, name: &str) -> bool {
        self.ignored_headers
            .binary_search_by(|h| h.as_str().cmp(name))
            .is_ok()
    }

    /// The rules for one endpoint: its own when configured (first match), else these.
    pub fn for_endpoint(&self, method: &str, route: &str) -> &Rules {
        self.endpoints
            .iter()
            .find(|(m, r, _)| {
                r == route && m.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
            })
            .map_or(self, |(_, _, rules)| rules)
    }

    fn compile_one(config: &RulesConfig) -> Result<Self, RulesError> {
        let lower = |v: &[String]| v.iter().map(|h| h.to_ascii_lowercase()).collect::<Vec<_>>();
        let compare = lower(&config.compare_headers);
        let mut ignored_headers: Vec<String> = DEFAULT_VOLATILE_HEADERS
            .iter()
            .map(|h| h.to_string())
            .filter(|h| !compare.contains(h))
            .collect();
        ignored_headers.extend(lower(&config.ignore_headers));
        // Sorted: every header of every response is looked up here (`ignores_header`).
        ignored_headers.sort_unstable();
        ignored_headers.dedup();
        let presence_only_headers = DEFAULT_PRESENCE_ONLY_HEADERS
            .iter()
            .map(|h| h.to_string())
            .filter(|h| !compare.contains(h))
            .collect();

        let mut arrays = Vec::new();
        for (index, rule) in config.arrays.iter().enumerate() {
            let mode = match rule.mode.as_str() {
                "ordered" => ArrayMode::Ordered,
                "set" => ArrayMode::Set,
                "key" => ArrayMode::Key(
                    rule.key
                        .clone()
                        .ok_or(RulesError::MissingArrayKey { index })?,
                ),
                other => {
                    return Err(RulesError::BadArrayMode {
                        index,
                        mode: other.to_string(),
                    })
                }
            };
            arrays.push((PathGlob::new(&rule.path), mode));
        }

        let mut scrub = Vec::new();
        for (index, s) in config.scrub.iter().enumerate() {
            let re = regex::Regex::new(&s.pattern).map_err(|source| RulesError::BadRegex {
                index,
                pattern: s.pattern.clone(),
                source,
            })?;
            let paths = s.paths.iter().map(|p| PathGlob::new(p)).collect();
            scrub.push((re, s.replacement.clone(), paths));
        }

        let t = config.tolerance;
        if !(t.absolute.is_finite() && t.absolute >= 0.0) {
            return Err(RulesError::BadTolerance("absolute"));
        }
        if !(t.relative.is_finite() && t.relative >= 0.0) {
            return Err(RulesError::BadTolerance("relative"));
        }
        if config.max_differences == 0 {
            return Err(RulesError::NoDifferencesKept);
        }
        let repeats = &config.repeats;
        if !(1..=crate::repeat::MAX_REPEAT_REQUESTS).contains(&repeats.requests) {
            return Err(RulesError::BadRepeats {
                key: "requests",
                max: crate::repeat::MAX_REPEAT_REQUESTS,
            });
        }
        if !(1..=crate::repeat::MAX_REPEAT_FIELDS).contains(&repeats.fields) {
            return Err(RulesError::BadRepeats {
                key: "fields",
                max: crate::repeat::MAX_REPEAT_FIELDS,
            });
        }

        Ok(Self {
            ignore: config.ignore.iter().map(|p| PathGlob::new(p)).collect(),
            ignored_headers,
            presence_only_headers,
            null_equals_missing: config.null_equals_missing,
            case_insensitive: config
                .case_insensitive
                .iter()
                .map(|p| PathGlob::new(p))
                .collect(),
            tolerance: t,
            arrays,
            scrub,
            detectors: config.detectors,
            text_deadline: Duration::from_millis(config.text_deadline_ms.max(1)),
            max_differences: config.max_differences,
            max_decoded_bytes: config.max_decoded_bytes,
            endpoints: std::sync::Arc::new(Vec::new()),
        })
    }

    /// True when a difference at this aggregate path is ignored by a user rule.
    pub fn is_ignored(&self, aggregate_path: &str) -> bool {
        self.ignore.iter().any(|g| g.matches(aggregate_path))
    }

    /// Whether volatile-value detectors classify differences as noise.
    pub fn detectors(&self) -> bool {
        self.detectors
    }

    pub(crate) fn array_mode(&self, aggregate_path: &str) -> &ArrayMode {
        self.arrays
            .iter()
            .find(|(g, _)| g.matches(aggregate_path))
            .map_or(&ArrayMode::Ordered, |(_, m)| m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rules_say_where() {
        let mut c = RulesConfig::default();
        c.arrays.push(ArrayRuleConfig {
            path: "body.x".into(),
            mode: "bag".into(),
            key: None,
        });
        let e = Rules::compile(&c).unwrap_err().to_string();
        assert!(e.contains("diff.arrays[0]") && e.contains("bag"), "{e}");

        let mut c = RulesConfig::default();
        c.scrub.push(ScrubConfig {
            pattern: "(".into(),
            replacement: "x".into(),
            paths: vec![],
        });
        let e = Rules::compile(&c).unwrap_err().to_string();
        assert!(e.contains("diff.scrub[0]"), "{e}");
    }

    #[test]
    fn endpoint_rules_extend_defaults_and_say_where_they_are_wrong() {
        let c = RulesConfig {
            ignore: vec!["body.a".into()],
            endpoints: vec![EndpointRulesConfig {
                route: "/users/{id}".into(),
                method: Some("get".into()),
                ignore: vec!["body.b".into()],
                null_equals_missing: Some(true),
                ..EndpointRulesConfig::default()
            }],
            ..RulesConfig::default()
        };
        let r = Rules::compile(&c).unwrap();
        let users = r.for_endpoint("GET", "/users/{id}");
        assert!(
            users.is_ignored("body.a") && users.is_ignored("body.b") && users.null_equals_missing
        );
        let other = r.for_endpoint("POST", "/users/{id}");
        assert!(other.is_ignored("body.a") && !other.is_ignored("body.b"));

        let mut bad = c.clone();
        bad.endpoints[0].arrays.push(ArrayRuleConfig {
            path: "body.x".into(),
            mode: "key".into(),
            key: None,
        });
        let e = Rules::compile(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with("diff.endpoints[0] (/users/{id}): diff.arrays[0]"),
            "{e}"
        );
        let mut bad = c;
        bad.endpoints[0].route = "users".into();
        assert!(Rules::compile(&bad)
            .unwrap_err()
            .to_string()
            .contains("diff.endpoints[0]"));
    }

    #[test]
    fn compare_headers_removes_from_volatile_list() {
        let c = RulesConfig {
            compare_headers: vec!["Date".into()],
            ..RulesConfig::default()
        };
        let r = Rules::compile(&c).unwrap();
        assert!(!r.ignored_headers.iter().any(|h| h == "date"));
        assert!(r.ignored_headers.iter().any(|h| h == "server"));
    }
}
