//! The side-effect guard: which requests may be replayed at all.
//!
//! A request is replayed only if every method it could be executed as is allowed for its route:
//! the method on the wire and each method an override names (`X-HTTP-Method-Override` and its
//! kin, `?_method=`, a form body's `_method`). A read with a body is treated as a possible
//! write too, unless its route opts in with `bodies = true`.

use serde::{Deserialize, Serialize};
use shadowdiff_model::secrets::query_pairs;
use shadowdiff_model::{header_value, HttpRequest, RoutePattern, RoutePatternError};

/// Methods that cannot change state, replayed by default.
pub const SAFE_METHODS: &[&str] = &["GET", "HEAD", "OPTIONS"];

/// Headers with which frameworks let a client run a request as another method, as they are
/// usually spelled (matched case-insensitively).
pub const METHOD_OVERRIDE_HEADERS: &[&str] = &[
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
];

/// The query or form parameter Rails, Laravel, Symfony and method-override middlewares read.
pub const METHOD_OVERRIDE_PARAM: &str = "_method";

/// `[[replay.allow]]`: a write the user declares safe to replay (e.g. a POST search endpoint),
/// or, with `bodies = true`, a read whose request body is harmless (e.g. a GET search with a
/// JSON query).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Route template as inferred or declared, e.g. `/search` or `/carts/{id}/quote`.
    pub route: String,
    /// GET/HEAD/OPTIONS only: replay requests of this route that carry a body.
    #[serde(default)]
    pub bodies: bool,
}

/// The side-effect guard: safe methods, plus the [`AllowRule`]s. The default allows safe
/// methods only.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allow: Vec<Allowed>,
}

#[derive(Debug, Clone)]
struct Allowed {
    method: String,
    route: RoutePattern,
    bodies: bool,
}

/// Why an allow rule is refused; `index` is its place in `[[replay.allow]]`.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The route is not a valid route pattern.
    #[error("replay.allow[{index}]: {source}")]
    Route {
        /// The rule's index.
        index: usize,
        /// Why the pattern does not parse.
        source: RoutePatternError,
    },
    /// The method is empty or not letters.
    #[error("replay.allow[{index}]: method `{method}` is not an HTTP method")]
    Method {
        /// The rule's index.
        index: usize,
        /// The method as given.
        method: String,
    },
    /// `bodies = true` on a method that is not a safe one.
    #[error("replay.allow[{index}]: `bodies = true` applies to GET, HEAD and OPTIONS only (an allowed {method} is replayed with its body already)")]
    BodiesOnWrite {
        /// The rule's index.
        index: usize,
        /// The method, upper case.
        method: String,
    },
}

/// Why the guard refused a request; `kind` labels the metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// What gave the request away as a possible write.
    pub kind: BlockKind,
    /// Shown in the report's `blocked_reasons`.
    pub reason: String,
}

/// What made the guard refuse a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Its method is not safe and not allowed for its route.
    Method,
    /// A method override names a method not allowed for its route.
    MethodOverride,
    /// A safe method with a body, on a route without `bodies = true`.
    Body,
}

impl BlockKind {
    /// The `reason` label of the blocked metric (`method`, `method_override`, `body`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Method => "method",
            Self::MethodOverride => "method_override",
            Self::Body => "body",
        }
    }
}

impl Policy {
    /// Checks and compiles the allow rules.
    pub fn new(rules: &[AllowRule]) -> Result<Self, PolicyError> {
        let mut allow = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let method = rule.method.to_ascii_uppercase();
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(PolicyError::Method {
                    index,
                    method: rule.method.clone(),
                });
            }
            if rule.bodies && !SAFE_METHODS.contains(&method.as_str()) {
                return Err(PolicyError::BodiesOnWrite { index, method });
            }
            let route = RoutePattern::parse(&rule.route)
                .map_err(|source| PolicyError::Route { index, source })?;
            allow.push(Allowed {
                method,
                route,
                bodies: rule.bodies,
            });
        }
        Ok(Self { allow })
    }

    /// `None` when a request with this method (and no override or body) may be replayed;
    /// otherwise why not.
    pub fn check(&self, method: &str, route: &str) -> Option<String> {
        let method = method.to_ascii_uppercase();
        if self.method_allowed(&method, route) {
            return None;
        }
        Some(format!(
            "method {method} may write; not replayed (allow it per route in [[replay.allow]])"
        ))
    }

    /// `None` when `request` may be replayed; otherwise the first reason it may write.
    pub fn check_request(&self, request: &HttpRequest, route: &str) -> Option<Blocked> {
        let method = request.method.to_ascii_uppercase();
        if let Some(reason) = self.check(&method, route) {
            return Some(Blocked {
                kind: BlockKind::Method,
                reason,
            });
        }
        for (source, named) in method_overrides(request) {
            let named_upper = named.to_ascii_uppercase();
            if !self.method_allowed(&named_upper, route) {
                return Some(Blocked {
                    kind: BlockKind::MethodOverride,
                    reason: format!(
                        "method override {} may write; not replayed (allow {} per route in [[replay.allow]])",
                        source.describe(&named),
                        printable(&named_upper),
                    ),
                });
            }
        }
        if SAFE_METHODS.contains(&method.as_str())
            && has_body(request)
            && !self
                .allow
                .iter()
                .any(|a| a.bodies && a.method == method && a.route.template() == route)
        {
            return Some(Blocked {
                kind: BlockKind::Body,
                reason: format!(
                    "{method} with a request body may write; not replayed (allow it per route with bodies = true in [[replay.allow]])"
                ),
            });
        }
        None
    }

    fn method_allowed(&self, method: &str, route: &str) -> bool {
        SAFE_METHODS.contains(&method)
            || self
                .allow
                .iter()
                .any(|a| a.method == method && a.route.template() == route)
    }
}

/// Where a method override was found.
enum OverrideSource {
    Header(&'static str),
    Query,
    FormBody,
}

impl OverrideSource {
    fn describe(&self, named: &str) -> String {
        let named = printable(named);
        match self {
            Self::Header(name) => format!("{name}: {named}"),
            Self::Query => format!("{METHOD_OVERRIDE_PARAM}={named} in the query"),
            Self::FormBody => format!("{METHOD_OVERRIDE_PARAM}={named} in the form body"),
        }
    }
}

/// Every method the request names besides its own. A header may list several (`GET, DELETE`)
/// or appear twice; each one counts, since the server may read any of them.
fn method_overrides(request: &HttpRequest) -> Vec<(OverrideSource, String)> {
    let mut found = Vec::new();
    for header in METHOD_OVERRIDE_HEADERS {
        for (name, value) in &request.headers {
            if name.eq_ignore_ascii_case(header) {
                for named in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                    found.push((OverrideSource::Header(header), named.to_string()));
                }
            }
        }
    }
    if let Some((_, query)) = request.uri.split_once('?') {
        for (name, value) in query_pairs(query) {
            if name.eq_ignore_ascii_case(METHOD_OVERRIDE_PARAM) && !value.trim().is_empty() {
                found.push((OverrideSource::Query, value.trim().to_string()));
            }
        }
    }
    for value in form_body_overrides(request) {
        found.push((OverrideSource::FormBody, value));
    }
    found
}

/// `_method` fields of an urlencoded or multipart form body.
fn form_body_overrides(request: &HttpRequest) -> Vec<String> {
    let body = &request.body.bytes;
    if body.is_empty() {
        return Vec::new();
    }
    let content_type = header_value(&request.headers, "content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = String::from_utf8_lossy(body);
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return query_pairs(&text)
            .into_iter()
            .filter(|(n, v)| n.eq_ignore_ascii_case(METHOD_OVERRIDE_PARAM) && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
            .collect();
    }
    if content_type.starts_with("multipart/form-data") {
        // A part `Content-Disposition: form-data; name="_method"`, its value after the blank
        // line. Found by text rather than a full multipart parser: a miss here would only
        // matter for a write route already allowed in [[replay.allow]].
        let mut values = Vec::new();
        let needle = format!("name=\"{METHOD_OVERRIDE_PARAM}\"");
        let lower = text.to_ascii_lowercase();
        let mut from = 0;
        while let Some(at) = lower[from..].find(&needle) {
            let start = from + at + needle.len();
            from = start;
            let Some(blank) = text[start..].find("\r\n\r\n") else {
                break;
            };
            let value_start = start + blank + 4;
            let value_end = text[value_start..]
                .find("\r\n")
                .map_or(text.len(), |e| value_start + e);
            let value = text[value_start..value_end].trim();
            if !value.is_empty() {
                values.push(value.to_string());
            }
        }
        return values;
    }
    Vec::new()
}

/// A body was sent, or declared: a captured body can be empty while the head says otherwise
/// (e.g. a body the tap did not keep), and the declaration alone tells the intent.
fn has_body(request: &HttpRequest) -> bool {
    if !request.body.bytes.is_empty() || request.body.full_len > 0 {
        return true;
    }
    for (name, value) in &request.headers {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return true;
        }
        if name.eq_ignore_ascii_case("content-length") && value.trim().parse::<u64>() != Ok(0) {
            return true;
        }
    }
    false
}

/// A client-chosen value as it may appear in a reason: visible ASCII, at most 32 characters,
/// so a hostile override cannot flood the report with long or odd text.
fn printable(value: &str) -> String {
    let mut out: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    if out.is_empty() {
        out.push('?');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowdiff_model::Body;

    fn rule(method: &str, route: &str, bodies: bool) -> AllowRule {
        AllowRule {
            method: method.into(),
            route: route.into(),
            bodies,
        }
    }

    fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            uri: uri.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Body::complete(body.to_vec()),
        }
    }

    /// Method, headers, body.
    type BodyCase<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [u8]);

    fn reason(p: &Policy, r: &HttpRequest, route: &str) -> Option<(BlockKind, String)> {
        p.check_request(r, route).map(|b| (b.kind, b.reason))
    }

    #[test]
    fn only_safe_methods_by_default_and_allowed_routes() {
        let p = Policy::new(&[rule("post", "/search", false)]).unwrap();
        assert!(p.check("GET", "/x").is_none());
        assert!(p.check("HEAD", "/x").is_none());
        assert!(p.check("OPTIONS", "/x").is_none());
        assert!(p.check("POST", "/search").is_none());
        for m in ["POST", "PUT", "PATCH", "DELETE"] {
            assert!(p.check(m, "/users/{id}").unwrap().contains(m));
        }
    }

    #[test]
    fn each_override_header_naming_a_write_blocks_a_read() {
        let p = Policy::default();
        for header in [
            "X-HTTP-Method-Override",
            "x-http-method",
            "X-METHOD-OVERRIDE",
        ] {
            for named in ["DELETE", "delete", "PUT", "PATCH", "POST", "GET, DELETE"] {
                let r = request("GET", "/items/3", &[(header, named)], b"");
                let (kind, why) = reason(&p, &r, "/items/{id}")
                    .unwrap_or_else(|| panic!("{header}: {named} was let through"));
                assert_eq!(kind, BlockKind::MethodOverride);
                let canonical = METHOD_OVERRIDE_HEADERS
                    .iter()
                    .find(|h| h.eq_ignore_ascii_case(header))
                    .unwrap();
                assert!(
                    why.starts_with(&format!("method override {canonical}: ")),
                    "{why}"
                );
                assert!(why.contains("may write"), "{why}");
            }
        }
        let r = request(
            "GET",
            "/items/3",
            &[("X-HTTP-Method-Override", "DELETE")],
            b"",
        );
        assert_eq!(
            reason(&p, &r, "/items/{id}").unwrap().1,
            "method override X-HTTP-Method-Override: DELETE may write; not replayed (allow DELETE per route in [[replay.allow]])"
        );
        // Garbage is not a safe method either, and is shown tamed.
        let r = request("HEAD", "/x", &[("x-http-method", "FROB\u{7f}")], b"");
        assert!(reason(&p, &r, "/x")
            .unwrap()
            .1
            .contains("X-HTTP-Method: FROB "));
    }

    #[test]
    fn query_and_form_method_overrides_block() {
        let p = Policy::new(&[rule("POST", "/forms", false)]).unwrap();
        for uri in [
            "/items/3?_method=DELETE",
            "/items/3?a=1&_METHOD=put",
            "/items/3?%5Fmethod=PATCH",
            "/items/3?a=1;_method=DELETE",
        ] {
            let (kind, why) = reason(&p, &request("GET", uri, &[], b""), "/items/{id}")
                .unwrap_or_else(|| panic!("{uri} was let through"));
            assert_eq!(kind, BlockKind::MethodOverride);
            assert!(why.contains("in the query may write"), "{why}");
        }
        let form = [("content-type", "application/x-www-form-urlencoded")];
        let r = request("POST", "/forms", &form, b"a=1&_method=DELETE");
        let why = reason(&p, &r, "/forms").unwrap().1;
        assert!(
            why.starts_with("method override _method=DELETE in the form body may write"),
            "{why}"
        );
        let multipart = [("content-type", "multipart/form-data; boundary=b")];
        let body =
            b"--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nPUT\r\n--b--\r\n";
        let r = request("POST", "/forms", &multipart, body);
        assert!(reason(&p, &r, "/forms")
            .unwrap()
            .1
            .contains("_method=PUT in the form body"));
        // The allowed POST without an override, and a form without `_method`, go through.
        assert!(reason(&p, &request("POST", "/forms", &form, b"a=1"), "/forms").is_none());
    }

    #[test]
    fn overrides_naming_reads_or_allowed_writes_are_replayed() {
        let p = Policy::new(&[rule("DELETE", "/carts/{id}", false)]).unwrap();
        for named in ["GET", "head", "OPTIONS", ""] {
            let r = request(
                "GET",
                "/x?_method=GET",
                &[("X-HTTP-Method-Override", named)],
                b"",
            );
            assert!(reason(&p, &r, "/x").is_none(), "{named}");
        }
        let r = request("GET", "/carts/1", &[("X-HTTP-Method", "DELETE")], b"");
        assert!(reason(&p, &r, "/carts/{id}").is_none());
        assert!(reason(&p, &r, "/items/{id}").is_some());
    }

    #[test]
    fn reads_with_a_body_are_blocked_unless_the_route_opts_in() {
        let p = Policy::new(&[rule("GET", "/search", true), rule("POST", "/q", false)]).unwrap();
        let cases: [BodyCase<'_>; 6] = [
            ("GET", &[], b"{\"delete\":true}"),
            ("HEAD", &[], b"x"),
            ("OPTIONS", &[], b"x"),
            ("GET", &[("Content-Length", "12")], b""),
            ("GET", &[("content-length", "junk")], b""),
            ("GET", &[("Transfer-Encoding", "chunked")], b""),
        ];
        for (method, headers, body) in cases {
            let r = request(method, "/items/3", headers, body);
            let (kind, why) = reason(&p, &r, "/items/{id}")
                .unwrap_or_else(|| panic!("{method} {headers:?} {body:?} was let through"));
            assert_eq!(kind, BlockKind::Body);
            assert_eq!(
                why,
                format!("{method} with a request body may write; not replayed (allow it per route with bodies = true in [[replay.allow]])")
            );
            // The route that opted in (for GET only).
            let on_search = reason(&p, &request(method, "/search", headers, body), "/search");
            assert_eq!(
                on_search.is_none(),
                method == "GET",
                "{method} {on_search:?}"
            );
        }
        // A body cut at capture still counts; an explicit empty one does not.
        let mut r = request("GET", "/items/3", &[("content-length", "0")], b"");
        assert!(reason(&p, &r, "/items/{id}").is_none());
        r.body = Body::partial(bytes::Bytes::new(), 10, true);
        assert!(reason(&p, &r, "/items/{id}").is_some());
        // An allowed write carries its body as before.
        assert!(reason(&p, &request("POST", "/q", &[], b"{}"), "/q").is_none());
    }

    #[test]
    fn bad_rules_say_which() {
        let e = Policy::new(&[rule("POST", "search", false)]).unwrap_err();
        assert!(e.to_string().starts_with("replay.allow[0]"), "{e}");
        let e = Policy::new(&[rule("GET", "/a", true), rule("POST", "/b", true)]).unwrap_err();
        assert!(
            e.to_string().starts_with("replay.allow[1]") && e.to_string().contains("bodies"),
            "{e}"
        );
        let parsed: AllowRule =
            serde_json::from_str(r#"{"method":"GET","route":"/s","bodies":true}"#).unwrap();
        assert!(parsed.bodies);
        let parsed: AllowRule = serde_json::from_str(r#"{"method":"POST","route":"/s"}"#).unwrap();
        assert!(!parsed.bodies);
    }
}
