//! Where an outbound call goes, parsed once: the allowlist is checked against this value and the
//! connection is made to this value, so the two cannot disagree (`http://allowed@evil/` once
//! passed the check on `allowed` and connected to `evil`).

use http::uri::{Authority, Uri};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A checked outbound target: normalized host and explicit port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Lower case, without a trailing dot; IPv6 literals canonical and in brackets.
    host: String,
    port: u16,
    /// Port the scheme implies (80 for http, 443 for https and CONNECT).
    default_port: u16,
}

/// Why a request target is refused. `host` is the host the call was aimed at (normalized when
/// it could be), for the side-effect record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// `user@host`: the part a check and a connection could read differently.
    #[error("userinfo in the target refused")]
    Userinfo {
        /// The host after the last `@`.
        host: String,
    },
    /// Characters a DNS name cannot have, an empty label, or a bad IPv6 literal.
    #[error("not a valid host name")]
    Host {
        /// The host, lower case.
        host: String,
    },
    /// A numeric host that is not dotted decimal (`127.1`, `0x7f.0.0.1`, `2130706433`).
    #[error("numeric host not in dotted-decimal form")]
    Numeric {
        /// The host, lower case.
        host: String,
    },
    /// Port 0, or a port that is not a number.
    #[error("port 0 or not a port number")]
    Port {
        /// The normalized host.
        host: String,
    },
    /// An absolute-form target whose scheme is neither `http` nor `https`.
    #[error("scheme is not http or https")]
    Scheme {
        /// The host, lower case.
        host: String,
    },
}

impl TargetError {
    /// The host the call was aimed at, for the side-effect record.
    pub fn host(&self) -> &str {
        match self {
            Self::Userinfo { host }
            | Self::Host { host }
            | Self::Numeric { host }
            | Self::Port { host }
            | Self::Scheme { host } => host,
        }
    }

    /// Userinfo is a policy refusal (403); the rest are malformed targets (400).
    pub fn is_policy(&self) -> bool {
        matches!(self, Self::Userinfo { .. })
    }
}

impl Target {
    /// The target of an absolute-form request (`http://host:port/path`).
    pub fn from_uri(uri: &Uri) -> Option<Result<Self, TargetError>> {
        let authority = uri.authority()?;
        let default_port = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http") => 80,
            Some("https") => 443,
            _ => {
                return Some(Err(TargetError::Scheme {
                    host: authority.host().to_ascii_lowercase(),
                }))
            }
        };
        Some(Self::from_authority(authority, default_port))
    }

    /// The target of `host[:port]`, with `default_port` when none is given.
    pub fn from_authority(authority: &Authority, default_port: u16) -> Result<Self, TargetError> {
        // `Authority::host` is the part after the last `@`: the host a connection would reach.
        let raw = authority.host();
        let host = normalize_host(raw)?;
        if authority.as_str().contains('@') {
            return Err(TargetError::Userinfo { host });
        }
        // `port_u16` is `None` for a port that is not a number (`host:'43`) as well as for no
        // port: only what follows the host decides, and it must be `:digits` or nothing.
        let host_and_port = authority.as_str().rsplit('@').next().unwrap_or_default();
        let after_host = host_and_port.strip_prefix(raw).unwrap_or(host_and_port);
        let port = match after_host.strip_prefix(':') {
            None if after_host.is_empty() => default_port,
            Some("") => default_port,
            Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => digits
                .parse()
                .map_err(|_| TargetError::Port { host: host.clone() })?,
            _ => return Err(TargetError::Port { host }),
        };
        if port == 0 {
            return Err(TargetError::Port { host });
        }
        Ok(Self {
            host,
            port,
            default_port,
        })
    }

    /// The normalized host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The explicit port, or the scheme's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`: what the connection dials.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The `Host` header: the port only when it is not the scheme's.
    pub fn host_header(&self) -> String {
        if self.port == self.default_port {
            self.host.clone()
        } else {
            self.authority()
        }
    }

    /// The host as a socket address wants it (IPv6 without brackets).
    pub fn dial_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }
}

/// One allowlist entry: `host`, `host:port`, `*.domain` or `*.domain:port`, with the host
/// normalized the way targets are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    host: HostRule,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    Exact(String),
    /// `.domain`: any subdomain, not the domain itself.
    Subdomain(String),
}

impl Rule {
    pub(crate) fn parse(entry: &str) -> Option<Self> {
        let entry = entry.trim();
        let (wildcard, rest) = match entry.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, entry),
        };
        if rest.is_empty() || rest.contains(['/', '@', '*']) {
            return None;
        }
        let authority = Authority::from_str(rest).ok()?;
        let host = normalize_host(authority.host()).ok()?;
        let port = match authority.port_u16() {
            Some(0) => return None,
            port => port,
        };
        let host = if wildcard {
            HostRule::Subdomain(format!(".{host}"))
        } else {
            HostRule::Exact(host)
        };
        Some(Self { host, port })
    }

    pub(crate) fn matches(&self, target: &Target) -> bool {
        if self.port.is_some_and(|p| p != target.port) {
            return false;
        }
        match &self.host {
            HostRule::Exact(h) => *h == target.host,
            HostRule::Subdomain(suffix) => target.host.ends_with(suffix.as_str()),
        }
    }
}

/// One spelling per host, or an error for spellings a resolver could read as another host:
/// lower case, one trailing dot dropped, IPv6 canonical in brackets, IPv4 in dotted decimal only
/// (`127.1`, `0x7f.0.0.1`, `2130706433` are refused: `getaddrinfo` reads them as 127.0.0.1),
/// and only the characters of DNS names (no `%`-escapes, no zone ids).
fn normalize_host(raw: &str) -> Result<String, TargetError> {
    let lower = raw.to_ascii_lowercase();
    let invalid = || TargetError::Host {
        host: lower.clone(),
    };
    if let Some(inner) = lower.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(invalid)?;
        let ip: Ipv6Addr = inner.parse().map_err(|_| invalid())?;
        return Ok(format!("[{ip}]"));
    }
    let host = lower.strip_suffix('.').unwrap_or(&lower);
    if host.is_empty()
        || host.split('.').any(str::is_empty)
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(invalid());
    }
    let last = host.rsplit('.').next().unwrap_or(host);
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || last
            .strip_prefix("0x")
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    if numeric {
        // Rust's parser takes dotted decimal only (no octal, hex or short forms).
        let ip: Ipv4Addr = host.parse().map_err(|_| TargetError::Numeric {
            host: host.to_string(),
        })?;
        return Ok(ip.to_string());
    }
    Ok(host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str) -> Result<Target, TargetError> {
        Target::from_uri(&uri.parse().unwrap()).unwrap()
    }

    #[test]
    fn one_spelling_per_host() {
        let t = target("http://API.Internal./x").unwrap();
        assert_eq!((t.host(), t.port()), ("api.internal", 80));
        assert_eq!(t.host_header(), "api.internal");
        let t = target("https://127.0.0.1.:8443/").unwrap();
        assert_eq!(t.authority(), "127.0.0.1:8443");
        let t = target("http://[0:0::1]:9/").unwrap();
        assert_eq!((t.host(), t.dial_host()), ("[::1]", "::1"));
        assert_eq!(t.host_header(), "[::1]:9");
        assert_eq!(target("https://a/").unwrap().port(), 443);
    }

    #[test]
    fn ambiguous_or_hidden_targets_are_refused() {
        for (uri, expect) in [
            ("http://allowed@evil/", "evil"),
            ("http://allowed:1@evil:2/", "evil"),
            ("http://u:p@EVIL./", "evil"),
        ] {
            let e = target(uri).unwrap_err();
            assert!(e.is_policy(), "{uri}");
            assert_eq!(e.host(), expect, "{uri}");
        }
        for uri in [
            "http://127.1/",
            "http://0x7f.0.0.1/",
            "http://2130706433/",
            "http://127.0.0.01/",
            "http://1.2.3.4.5/",
        ] {
            assert!(
                matches!(target(uri), Err(TargetError::Numeric { .. })),
                "{uri}"
            );
        }
        for uri in [
            "http://a%2eb/",
            "http://a..b/",
            "http://a../",
            "http://[fe80::1%25eth0]/",
        ] {
            let Ok(uri) = uri.parse::<Uri>() else {
                continue;
            };
            assert!(Target::from_uri(&uri).unwrap().is_err(), "{uri}");
        }
        assert!(matches!(
            target("ftp://a/"),
            Err(TargetError::Scheme { .. })
        ));
        assert!(matches!(
            target("http://a:0/"),
            Err(TargetError::Port { .. })
        ));
        // Found by the sandbox_target fuzz target: a port that is not a number was read as
        // no port (80).
        for uri in [
            "http://a:'43/",
            "http://a:8o/",
            "http://a:99999/",
            "http://A:A/",
        ] {
            let Ok(uri) = uri.parse::<Uri>() else {
                continue;
            };
            assert!(
                matches!(Target::from_uri(&uri), Some(Err(TargetError::Port { .. }))),
                "{uri}"
            );
        }
        assert_eq!(target("http://a:/").unwrap().port(), 80);
        assert_eq!(target("http://[::1]:8080/").unwrap().port(), 8080);
    }

    #[test]
    fn rules_match_host_and_port() {
        let t = |u: &str| target(u).unwrap();
        let r = Rule::parse("API.internal").unwrap();
        assert!(r.matches(&t("http://api.internal:8080/")));
        let r = Rule::parse("127.0.0.1:9").unwrap();
        assert!(r.matches(&t("http://127.0.0.1:9/")));
        assert!(!r.matches(&t("http://127.0.0.1:10/")));
        let r = Rule::parse("*.example.com").unwrap();
        assert!(r.matches(&t("http://x.example.com/")));
        assert!(!r.matches(&t("http://example.com/")));
        assert!(!r.matches(&t("http://xexample.com/")));
        let r = Rule::parse("*.example.com:443").unwrap();
        assert!(r.matches(&t("https://x.example.com/")));
        assert!(!r.matches(&t("http://x.example.com/")));
        let r = Rule::parse("[::1]:80").unwrap();
        assert!(r.matches(&t("http://[0::1]/")));
        assert!(Rule::parse("localhost.")
            .unwrap()
            .matches(&t("http://localhost/")));
        for bad in [
            "", "http://a", "a/b", "u@a", "*", "*.", "a:0", "127.1", "::1",
        ] {
            assert!(Rule::parse(bad).is_none(), "{bad}");
        }
    }
}
