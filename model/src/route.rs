//! Route templates: `/users/42/orders/9f1c…` → `/users/{id}/orders/{id}`.

/// A user-declared route pattern such as `/users/{id}/avatar` or `/files/{*rest}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    template: String,
    segments: Vec<PatternSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternSegment {
    Literal(String),
    /// `{name}`: exactly one segment.
    Param,
    /// `{*name}`: the rest of the path (must be last).
    Rest,
}

/// Why a route pattern does not parse; each variant holds the pattern.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoutePatternError {
    /// The pattern does not start with `/`.
    #[error("route pattern `{0}` must start with `/`")]
    NoLeadingSlash(String),
    /// A `{*rest}` parameter is followed by more segments.
    #[error(
        "route pattern `{0}` has `{{*…}}` before its last segment; a rest parameter must come last"
    )]
    RestNotLast(String),
    /// A `{` without its `}`, an empty `{}`, or braces inside a literal segment.
    #[error("route pattern `{0}` has an unclosed or empty `{{…}}` parameter")]
    BadParam(String),
}

impl RoutePattern {
    /// Parses a template such as `/users/{id}/avatar` or `/files/{*rest}`.
    pub fn parse(template: &str) -> Result<Self, RoutePatternError> {
        if !template.starts_with('/') {
            return Err(RoutePatternError::NoLeadingSlash(template.to_string()));
        }
        let parts: Vec<&str> = template[1..].split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment = if let Some(inner) = part.strip_prefix('{') {
                let name = inner
                    .strip_suffix('}')
                    .filter(|n| !n.is_empty() && *n != "*")
                    .ok_or_else(|| RoutePatternError::BadParam(template.to_string()))?;
                if name.starts_with('*') {
                    if i + 1 != parts.len() {
                        return Err(RoutePatternError::RestNotLast(template.to_string()));
                    }
                    PatternSegment::Rest
                } else {
                    PatternSegment::Param
                }
            } else if part.contains('{') || part.contains('}') {
                return Err(RoutePatternError::BadParam(template.to_string()));
            } else {
                PatternSegment::Literal((*part).to_string())
            };
            segments.push(segment);
        }
        Ok(Self {
            template: template.to_string(),
            segments,
        })
    }

    /// The template as written; it is the route name of the paths it matches.
    pub fn template(&self) -> &str {
        &self.template
    }

    fn matches(&self, path_segments: &[&str]) -> bool {
        let mut i = 0;
        for segment in &self.segments {
            match segment {
                PatternSegment::Rest => return true,
                PatternSegment::Param => {
                    if path_segments.get(i).is_none_or(|s| s.is_empty()) {
                        return false;
                    }
                }
                PatternSegment::Literal(lit) => {
                    if path_segments.get(i) != Some(&lit.as_str()) {
                        return false;
                    }
                }
            }
            i += 1;
        }
        i == path_segments.len()
    }
}

/// Turns request paths into route templates: user patterns first (in order), then inference.
#[derive(Debug, Clone, Default)]
pub struct RouteInferrer {
    patterns: Vec<RoutePattern>,
}

impl RouteInferrer {
    /// An inferrer that tries `patterns` in order before inferring.
    pub fn new(patterns: Vec<RoutePattern>) -> Self {
        Self { patterns }
    }

    /// Route template for a request URI (path + optional query; the query is dropped).
    pub fn route(&self, uri: &str) -> String {
        let path = uri.split(['?', '#']).next().unwrap_or("");
        // Absolute-form URIs (`http://host/path`) are reduced to their path; a path that starts
        // with `/` is a path, whatever it contains.
        let path = match path.find("://") {
            Some(i) if !path.starts_with('/') => {
                path[i + 3..].find('/').map_or("/", |j| &path[i + 3 + j..])
            }
            _ => path,
        };
        // A template this inferrer produced maps to itself.
        if let Some(p) = self.patterns.iter().find(|p| p.template == path) {
            return p.template.clone();
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if let Some(p) = self.patterns.iter().find(|p| p.matches(&segments)) {
            return p.template.clone();
        }
        infer_route(path)
    }
}

/// Route template inferred from a path alone.
pub fn infer_route(path: &str) -> String {
    if path.is_empty() || path == "/" {
        return "/".to_string();
    }
    let mut out = String::with_capacity(path.len());
    for segment in path.trim_start_matches('/').split('/') {
        out.push('/');
        if looks_like_id(segment) {
            out.push_str("{id}");
        } else if looks_like_date(segment) {
            out.push_str("{date}");
        } else {
            out.push_str(segment);
        }
    }
    out
}

fn looks_like_id(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    if is_uuid(s) {
        return true;
    }
    // Long hex (object ids, hashes): 12+ hex digits with at least one digit, so words like
    // `deadbeefcafe` without digits stay literal only if they are all letters.
    s.len() >= 12
        && s.bytes().all(|b| b.is_ascii_hexdigit())
        && s.bytes().any(|b| b.is_ascii_digit())
}

/// `8-4-4-4-12` hex with dashes.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `YYYY-MM-DD` (optionally followed by a time) in a path segment.
fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_ids_uuids_hex_and_dates() {
        let r = RouteInferrer::default();
        assert_eq!(r.route("/users/42?x=1"), "/users/{id}");
        assert_eq!(
            r.route("/o/3f2b1c9e-0a4d-4f7e-9b1a-2c3d4e5f6a7b/items"),
            "/o/{id}/items"
        );
        assert_eq!(r.route("/blobs/5f1d7c3a9b2e4d6f"), "/blobs/{id}");
        assert_eq!(
            r.route("/reports/2026-11-22/summary"),
            "/reports/{date}/summary"
        );
        assert_eq!(r.route("/users/me"), "/users/me");
        assert_eq!(r.route("/"), "/");
        assert_eq!(r.route("http://h:1/a/7"), "/a/{id}");
    }

    #[test]
    fn user_patterns_win_over_inference() {
        let r = RouteInferrer::new(vec![
            RoutePattern::parse("/users/{name}").unwrap(),
            RoutePattern::parse("/static/{*rest}").unwrap(),
        ]);
        assert_eq!(r.route("/users/alice"), "/users/{name}");
        assert_eq!(r.route("/static/a/b/c.js"), "/static/{*rest}");
        assert_eq!(r.route("/users/alice/x"), "/users/alice/x");
    }

    #[test]
    fn bad_patterns_are_rejected_precisely() {
        assert!(matches!(
            RoutePattern::parse("users"),
            Err(RoutePatternError::NoLeadingSlash(_))
        ));
        assert!(matches!(
            RoutePattern::parse("/a/{*rest}/b"),
            Err(RoutePatternError::RestNotLast(_))
        ));
        assert!(matches!(
            RoutePattern::parse("/a/{id"),
            Err(RoutePatternError::BadParam(_))
        ));
    }
}
