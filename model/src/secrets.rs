//! Credentials that must never reach a candidate or the store. The tap redacts these (keyed
//! hash) and the replayer strips them; both start from the lists here, so they cannot drift.
//! Names are lower case and compared case-insensitively.

/// Request headers that carry credentials, tokens or request signatures.
pub const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    // API keys
    "x-api-key",
    "api-key",
    "x-api-token",
    "x-api-secret",
    "x-goog-api-key",
    "x-functions-key",           // Azure Functions
    "ocp-apim-subscription-key", // Azure API Management
    "dd-api-key",                // Datadog
    "dd-application-key",
    // Tokens and sessions
    "x-auth-token",
    "x-access-token",
    "x-refresh-token",
    "x-session-token",
    "x-id-token",
    "x-client-secret",
    "x-vault-token",
    "private-token", // GitLab
    "x-gitlab-token",
    "x-shopify-access-token",
    "x-amz-security-token",
    "x-amz-credential",
    // Tokens a proxy in front of the service forwards (oauth2-proxy, AWS ALB, IAP, Azure).
    "x-forwarded-access-token",
    "x-auth-request-access-token",
    "x-amzn-oidc-accesstoken",
    "x-amzn-oidc-data",
    "x-goog-iap-jwt-assertion",
    "cf-access-jwt-assertion",
    "x-ms-token-aad-access-token",
    "x-ms-token-aad-id-token",
    "x-ms-token-aad-refresh-token",
    "x-jwt-assertion",
    // CSRF tokens are bound to a session.
    "x-csrf-token",
    "x-xsrf-token",
    "x-csrftoken",
    // Request signatures (webhooks): a valid signature is a credential for that request.
    "x-signature",
    "x-hub-signature",
    "x-hub-signature-256",
    "x-slack-signature",
    "x-twilio-signature",
    "stripe-signature",
];

/// Response headers that carry credentials (redacted at the tap, never replayed).
pub const SECRET_RESPONSE_HEADERS: &[&str] = &["set-cookie"];

/// Query parameters that carry credentials, tokens or signatures (matched after
/// percent-decoding the name). `key` and `code` are generic names, listed because API keys
/// and OAuth authorization codes travel under them; see docs/side-effects.md to narrow this.
pub const SECRET_QUERY_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth_token",
    "private_token",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "sig",
    "signature",
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "auth",
    "session",
    "sessionid",
    "jsessionid",
    "phpsessid",
    "code",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
];

/// The default lists, then the configured names (trimmed, lower case), without repeats or
/// empty names: how every secret list (tap redaction, replay stripping) is made from config.
pub fn merged_names(defaults: &[&[&str]], configured: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let configured = configured.iter().map(|n| n.trim().to_ascii_lowercase());
    for name in defaults
        .iter()
        .flat_map(|list| list.iter().map(|n| n.to_string()))
        .chain(configured)
    {
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Names matched ignoring ASCII case, looked up by length first: a header or parameter name
/// is checked against the few listed names of its length instead of every listed name (the
/// default secret lists hold about 50; every header of every exchange is looked up, on the
/// tap's serving threads and on every replay).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameSet {
    /// Index: name length in bytes.
    by_len: Vec<Vec<String>>,
}

impl NameSet {
    /// The set of `names` (empty names ignored, repeats kept once).
    pub fn new<S: AsRef<str>>(names: &[S]) -> Self {
        let mut set = Self::default();
        for name in names.iter().map(AsRef::as_ref) {
            if name.is_empty() || set.contains(name) {
                continue;
            }
            if set.by_len.len() <= name.len() {
                set.by_len.resize_with(name.len() + 1, Vec::new);
            }
            set.by_len[name.len()].push(name.to_ascii_lowercase());
        }
        set
    }

    /// Whether `name` is in the set, ignoring ASCII case.
    pub fn contains(&self, name: &str) -> bool {
        self.by_len
            .get(name.len())
            .is_some_and(|same| same.iter().any(|n| n.eq_ignore_ascii_case(name)))
    }

    /// Whether the set has no name.
    pub fn is_empty(&self) -> bool {
        self.by_len.is_empty()
    }

    /// How many names it holds.
    pub fn len(&self) -> usize {
        self.by_len.iter().map(Vec::len).sum()
    }
}

/// Percent-decodes a query or form component (`+` is a space); invalid escapes stay as they
/// are. One decoder for the tap, the replayer and the differ's form bodies.
pub fn percent_decode(s: impl AsRef<[u8]>) -> String {
    let bytes = s.as_ref();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes a query value: everything but unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The decoded `(name, value)` pairs of a query string or form body (`a=1&b=2`). Both `&`
/// and `;` separate pairs, since some servers accept either.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split(['&', ';'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

/// What to do with one query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryEdit {
    /// Leave the pair as it is.
    Keep,
    /// Remove the pair.
    Drop,
    /// Replace the value with this one (already percent-encoded).
    Replace(String),
}

/// Rewrites the query of `uri` (`/path?a=1&b=2`) pair by pair; `decide` gets the decoded name
/// and the raw value. `None` when nothing changed, so the common case does not allocate.
pub fn edit_query(uri: &str, mut decide: impl FnMut(&str, &str) -> QueryEdit) -> Option<String> {
    let (path, query) = uri.split_once('?')?;
    let mut out = String::with_capacity(uri.len());
    out.push_str(path);
    let mut changed = false;
    let mut kept = 0;
    let mut rest = query;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let pair = &rest[..end];
        let separator = rest[end..].chars().next();
        if !pair.is_empty() {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let edit = decide(&percent_decode(name), value);
            let written = match &edit {
                QueryEdit::Keep => Some(pair.to_string()),
                QueryEdit::Drop => None,
                QueryEdit::Replace(v) => Some(format!("{name}={v}")),
            };
            changed |= edit != QueryEdit::Keep;
            if let Some(w) = written {
                out.push(if kept == 0 { '?' } else { '&' });
                out.push_str(&w);
                kept += 1;
            }
        }
        match separator {
            Some(c) => rest = &rest[end + c.len_utf8()..],
            None => break,
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `name` is in `list`, compared case-insensitively: the plain lookup [`NameSet`]
    /// must agree with (the product uses `NameSet`).
    fn is_listed<S: AsRef<str>>(list: &[S], name: &str) -> bool {
        list.iter().any(|s| s.as_ref().eq_ignore_ascii_case(name))
    }

    #[test]
    fn lists_are_lower_case_and_unique() {
        for list in [SECRET_HEADERS, SECRET_RESPONSE_HEADERS, SECRET_QUERY_PARAMS] {
            for (i, name) in list.iter().enumerate() {
                assert_eq!(*name, name.to_ascii_lowercase());
                assert!(!list[..i].contains(name), "{name} twice");
            }
        }
        assert!(is_listed(SECRET_HEADERS, "X-Api-Key"));
        assert!(!is_listed(SECRET_HEADERS, "x-amz-date"));
        // The bucketed set says what the list says, for every listed name and near misses.
        let set = NameSet::new(SECRET_HEADERS);
        assert_eq!(set.len(), SECRET_HEADERS.len());
        for name in SECRET_HEADERS {
            let upper = name.to_ascii_uppercase();
            let longer = format!("{name}x");
            for probe in [name.to_string(), upper, longer, name[1..].to_string()] {
                assert_eq!(
                    set.contains(&probe),
                    is_listed(SECRET_HEADERS, &probe),
                    "{probe}"
                );
            }
        }
        assert!(!set.contains("") && NameSet::new::<&str>(&[]).is_empty());
    }

    #[test]
    fn query_names_are_decoded_and_values_kept_or_replaced() {
        assert_eq!(percent_decode("%74oken+x%zz%4"), "token x%zz%4");
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
        assert_eq!(
            query_pairs("_method=DELETE;a=%41&b"),
            vec![
                ("_method".to_string(), "DELETE".to_string()),
                ("a".to_string(), "A".to_string()),
                ("b".to_string(), String::new()),
            ]
        );
        let secret = |name: &str, _: &str| {
            if name.eq_ignore_ascii_case("token") {
                QueryEdit::Drop
            } else if name == "api_key" {
                QueryEdit::Replace("synthetic".into())
            } else {
                QueryEdit::Keep
            }
        };
        assert_eq!(
            edit_query("/a?TOKEN=s&x=1;%74oken=s&api_key=k&&y", secret).as_deref(),
            Some("/a?x=1&api_key=synthetic&y")
        );
        assert_eq!(edit_query("/a?token=s", secret).as_deref(), Some("/a"));
        assert_eq!(edit_query("/a?x=1", secret), None);
        assert_eq!(edit_query("/a", secret), None);
    }
}
