//! `shadowdiff.toml`: every setting, its default, and validation with precise messages.
//!
//! Precedence: command-line flags > `SHADOWDIFF_*` environment variables > the file > defaults.
//! (Flags and their environment variables are declared together in the CLI.)

use serde::{Deserialize, Serialize};
use shadowdiff_differ::{Rules, RulesConfig};
use shadowdiff_model::{RouteInferrer, RoutePattern, TargetRole};
use shadowdiff_replayer::{AllowRule, Policy, Target};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name under which results are stored and reported.
    pub experiment: String,
    /// Where the embedded store keeps results.
    pub data_dir: PathBuf,
    pub capture: CaptureSection,
    pub replay: ReplaySection,
    /// Normalization rules (see the README's "Diff rules").
    pub diff: RulesConfig,
    pub routes: RoutesSection,
    pub pipeline: PipelineSection,
    pub admin: AdminSection,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            experiment: "default".to_string(),
            data_dir: PathBuf::from("./shadowdiff-data"),
            capture: CaptureSection::default(),
            replay: ReplaySection::default(),
            diff: RulesConfig::default(),
            routes: RoutesSection::default(),
            pipeline: PipelineSection::default(),
            admin: AdminSection::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSection {
    /// Address the tap listens on, e.g. `127.0.0.1:8080` (`0.0.0.0:8080` to serve others).
    pub listen: String,
    /// The production service the tap forwards to, e.g. `http://127.0.0.1:8081`.
    pub control: Option<String>,
    /// Bodies are copied up to this many bytes and marked truncated beyond.
    pub body_limit: usize,
    /// Captured exchanges waiting for the replayer; beyond this they are dropped and counted.
    pub queue_capacity: usize,
    /// Forward the client's Host header instead of the control's address.
    pub preserve_host: bool,
    /// Time the control has to answer a client, in milliseconds.
    pub control_timeout_ms: u64,
}

impl Default for CaptureSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_string(),
            control: None,
            body_limit: 256 * 1024,
            queue_capacity: 10_000,
            preserve_host: false,
            control_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateConfig {
    pub name: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplaySection {
    pub candidates: Vec<CandidateConfig>,
    /// A second instance of the control build, to measure noise (A/A).
    pub secondary: Option<String>,
    /// Time each target has for a complete answer, in milliseconds.
    pub timeout_ms: u64,
    /// Exchanges replayed at once.
    pub concurrency: usize,
    pub shadow_header: String,
    pub shadow_header_value: String,
    pub exchange_id_header: String,
    /// Request headers removed before replay.
    pub strip_headers: Vec<String>,
    /// Writes declared safe to replay: `[[replay.allow]] method = "POST", route = "/search"`.
    pub allow: Vec<AllowRule>,
}

impl Default for ReplaySection {
    fn default() -> Self {
        Self {
            candidates: Vec::new(),
            secondary: None,
            timeout_ms: 5_000,
            concurrency: 64,
            shadow_header: "x-shadow".to_string(),
            shadow_header_value: "1".to_string(),
            exchange_id_header: "x-shadow-exchange-id".to_string(),
            strip_headers: vec!["authorization".to_string(), "cookie".to_string()],
            allow: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutesSection {
    /// Route templates that win over inference, e.g. `/users/{name}`.
    pub patterns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// Differ threads; 0 = one per core.
    pub diff_workers: usize,
    /// Replay results waiting for a differ.
    pub result_queue: usize,
    /// Time in-flight work has to finish after SIGTERM, in milliseconds.
    pub shutdown_grace_ms: u64,
}

impl Default for PipelineSection {
    fn default() -> Self {
        Self {
            diff_workers: 0,
            result_queue: 1024,
            shutdown_grace_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// `/metrics`, `/healthz`, `/readyz`; empty to disable.
    pub listen: String,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".to_string(),
        }
    }
}

/// A config problem, with where it is and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

impl Config {
    /// Reads a TOML file; unknown keys are errors, so typos do not pass silently.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })
    }
}

/// Validated settings of the embedded pipeline.
#[derive(Debug, Clone)]
pub struct Settings {
    pub experiment: String,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub control: http::Uri,
    pub body_limit: usize,
    pub queue_capacity: usize,
    pub preserve_host: bool,
    pub control_timeout: Duration,
    pub targets: Vec<Target>,
    pub replay_timeout: Duration,
    pub replay_concurrency: usize,
    pub policy: Policy,
    pub shadow_header: (String, String),
    pub exchange_id_header: String,
    pub strip_headers: Vec<String>,
    pub rules: Rules,
    pub routes: RouteInferrer,
    pub diff_workers: usize,
    pub result_queue: usize,
    pub shutdown_grace: Duration,
    pub admin: Option<SocketAddr>,
}

pub fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            key,
            format!("`{value}` is not an address with a port, such as 127.0.0.1:8080"),
        )
    })
}

fn parse_http_url(key: &str, value: &str) -> Result<http::Uri, ConfigError> {
    let uri: http::Uri = value.parse().map_err(|_| {
        invalid(
            key,
            format!("`{value}` is not a URL; use e.g. http://127.0.0.1:8081"),
        )
    })?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(invalid(
            key,
            format!("`{value}` must be an absolute http:// URL, e.g. http://127.0.0.1:8081 (https is not supported yet; terminate TLS in front of shadowdiff)"),
        ));
    }
    Ok(uri)
}

fn positive(key: &str, v: u64) -> Result<u64, ConfigError> {
    if v == 0 {
        Err(invalid(key, "must be greater than 0"))
    } else {
        Ok(v)
    }
}

impl Config {
    /// Checks everything the embedded pipeline needs and builds its settings.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        if self.experiment.trim().is_empty() {
            return Err(invalid("experiment", "must not be empty"));
        }
        let listen = parse_addr("capture.listen (--listen)", &self.capture.listen)?;
        let control_text = self.capture.control.as_deref().ok_or_else(|| {
            invalid(
                "capture.control (--control)",
                "is required: the URL of the production service, e.g. --control http://127.0.0.1:8081",
            )
        })?;
        let control = parse_http_url("capture.control (--control)", control_text)?;
        let body_limit = positive("capture.body_limit", self.capture.body_limit as u64)? as usize;
        let queue_capacity =
            positive("capture.queue_capacity", self.capture.queue_capacity as u64)? as usize;

        if self.replay.candidates.is_empty() {
            return Err(invalid(
                "replay.candidates (--candidate)",
                "at least one candidate is needed: --candidate NAME=URL, e.g. --candidate v2=http://127.0.0.1:8082",
            ));
        }
        let mut targets = Vec::new();
        for (i, c) in self.replay.candidates.iter().enumerate() {
            let key = format!("replay.candidates[{i}]");
            if c.name.is_empty()
                || !c
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(invalid(
                    &key,
                    format!(
                        "name `{}` must be non-empty letters, digits, `-`, `_` or `.`",
                        c.name
                    ),
                ));
            }
            if c.name == "secondary" || c.name == "control" {
                return Err(invalid(&key, format!("name `{}` is reserved", c.name)));
            }
            if targets.iter().any(|t: &Target| t.name == c.name) {
                return Err(invalid(&key, format!("name `{}` is used twice", c.name)));
            }
            parse_http_url(&format!("{key}.url"), &c.url)?;
            targets.push(
                Target::new(&c.name, TargetRole::Candidate, &c.url)
                    .map_err(|e| invalid(&key, e.to_string()))?,
            );
        }
        if let Some(url) = &self.replay.secondary {
            parse_http_url("replay.secondary (--secondary)", url)?;
            targets.push(
                Target::new("secondary", TargetRole::Secondary, url)
                    .map_err(|e| invalid("replay.secondary", e.to_string()))?,
            );
        }
        let policy =
            Policy::new(&self.replay.allow).map_err(|e| invalid("replay", e.to_string()))?;
        let rules = Rules::compile(&self.diff).map_err(|e| invalid("diff", e.to_string()))?;
        let mut patterns = Vec::new();
        for (i, p) in self.routes.patterns.iter().enumerate() {
            patterns.push(
                RoutePattern::parse(p)
                    .map_err(|e| invalid(&format!("routes.patterns[{i}]"), e.to_string()))?,
            );
        }
        let admin = if self.admin.listen.is_empty() {
            None
        } else {
            Some(parse_addr("admin.listen (--admin)", &self.admin.listen)?)
        };
        let diff_workers = if self.pipeline.diff_workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            self.pipeline.diff_workers
        };
        Ok(Settings {
            experiment: self.experiment.clone(),
            data_dir: self.data_dir.clone(),
            listen,
            control,
            body_limit,
            queue_capacity,
            preserve_host: self.capture.preserve_host,
            control_timeout: Duration::from_millis(positive(
                "capture.control_timeout_ms",
                self.capture.control_timeout_ms,
            )?),
            targets,
            replay_timeout: Duration::from_millis(positive(
                "replay.timeout_ms",
                self.replay.timeout_ms,
            )?),
            replay_concurrency: positive("replay.concurrency", self.replay.concurrency as u64)?
                as usize,
            policy,
            shadow_header: (
                self.replay.shadow_header.clone(),
                self.replay.shadow_header_value.clone(),
            ),
            exchange_id_header: self.replay.exchange_id_header.clone(),
            strip_headers: self.replay.strip_headers.clone(),
            rules,
            routes: RouteInferrer::new(patterns),
            diff_workers,
            result_queue: positive("pipeline.result_queue", self.pipeline.result_queue as u64)?
                as usize,
            shutdown_grace: Duration::from_millis(self.pipeline.shutdown_grace_ms),
            admin,
        })
    }
}

/// Parses `NAME=URL`.
pub fn parse_candidate(s: &str) -> Result<CandidateConfig, String> {
    let (name, url) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=URL, e.g. v2=http://127.0.0.1:8082"))?;
    Ok(CandidateConfig {
        name: name.trim().to_string(),
        url: url.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        let mut c = Config::default();
        c.capture.control = Some("http://127.0.0.1:1".into());
        c.replay.candidates = vec![CandidateConfig {
            name: "v2".into(),
            url: "http://127.0.0.1:2".into(),
        }];
        c
    }

    #[test]
    fn unknown_keys_are_rejected_with_location() {
        let e = Config::from_toml(
            "[capture]\nlisten = \"127.0.0.1:1\"\nbody_limt = 5\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("x.toml") && e.contains("body_limt") && e.contains("line 3"),
            "{e}"
        );
    }

    #[test]
    fn validation_names_the_key_and_the_fix() {
        let mut c = base();
        c.capture.control = Some("ftp://x".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("capture.control") && e.contains("http://"),
            "{e}"
        );

        let mut c = base();
        c.replay.candidates.clear();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("--candidate NAME=URL"), "{e}");

        let mut c = base();
        c.capture.listen = "8080".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("127.0.0.1:8080"));

        let mut c = base();
        c.replay.timeout_ms = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("replay.timeout_ms"));

        assert!(base().validate().is_ok());
    }

    #[test]
    fn full_file_parses() {
        let text = r#"
            experiment = "checkout-v2"
            data_dir = "/tmp/x"
            [capture]
            listen = "127.0.0.1:8080"
            control = "http://127.0.0.1:8081"
            [[replay.candidates]]
            name = "v2"
            url = "http://127.0.0.1:8082"
            [[replay.allow]]
            method = "POST"
            route = "/search"
            [diff]
            ignore = ["body.meta.**"]
            [[diff.arrays]]
            path = "body.items"
            mode = "key"
            key = "id"
            [routes]
            patterns = ["/users/{name}"]
        "#;
        let c = Config::from_toml(text, "t").unwrap();
        let s = c.validate().unwrap();
        assert_eq!(s.experiment, "checkout-v2");
        assert_eq!(s.targets.len(), 1);
    }
}
