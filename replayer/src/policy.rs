//! The side-effect guard: which requests may be replayed at all.

use serde::{Deserialize, Serialize};
use shadowdiff_model::{RoutePattern, RoutePatternError};

/// Methods that cannot change state, replayed by default.
pub const SAFE_METHODS: &[&str] = &["GET", "HEAD", "OPTIONS"];

/// `[[replay.allow]]`: a write the user declares safe to replay (e.g. a POST search endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Route template as inferred or declared, e.g. `/search` or `/carts/{id}/quote`.
    pub route: String,
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    allow: Vec<(String, RoutePattern)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("replay.allow[{index}]: {source}")]
    Route {
        index: usize,
        source: RoutePatternError,
    },
    #[error("replay.allow[{index}]: method `{method}` is not an HTTP method")]
    Method { index: usize, method: String },
}

impl Policy {
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
            let pattern = RoutePattern::parse(&rule.route)
                .map_err(|source| PolicyError::Route { index, source })?;
            allow.push((method, pattern));
        }
        Ok(Self { allow })
    }

    /// `None` when the request may be replayed; otherwise why not.
    pub fn check(&self, method: &str, route: &str) -> Option<String> {
        let method = method.to_ascii_uppercase();
        if SAFE_METHODS.contains(&method.as_str()) {
            return None;
        }
        if self
            .allow
            .iter()
            .any(|(m, p)| *m == method && p.template() == route)
        {
            return None;
        }
        Some(format!(
            "method {method} may write; not replayed (allow it per route in [[replay.allow]])"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_methods_by_default_and_allowed_routes() {
        let p = Policy::new(&[AllowRule {
            method: "post".into(),
            route: "/search".into(),
        }])
        .unwrap();
        assert!(p.check("GET", "/x").is_none());
        assert!(p.check("HEAD", "/x").is_none());
        assert!(p.check("OPTIONS", "/x").is_none());
        assert!(p.check("POST", "/search").is_none());
        for m in ["POST", "PUT", "PATCH", "DELETE"] {
            assert!(p.check(m, "/users/{id}").unwrap().contains(m));
        }
    }

    #[test]
    fn bad_rules_say_which() {
        let e = Policy::new(&[AllowRule {
            method: "POST".into(),
            route: "search".into(),
        }])
        .unwrap_err();
        assert!(e.to_string().starts_with("replay.allow[0]"), "{e}");
    }
}
