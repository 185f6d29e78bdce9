//! `shadowdiff.toml`: every setting, its default, and validation with precise messages.
//!
//! Precedence: command-line flags > `SHADOWDIFF_*` environment variables > the file > defaults.
//! (Flags and their environment variables are declared together in the CLI.)

use serde::{Deserialize, Serialize};
use shadowdiff_differ::{Rules, RulesConfig};
use shadowdiff_model::secrets::{SECRET_HEADERS, SECRET_QUERY_PARAMS};
use shadowdiff_model::{RouteInferrer, RoutePattern, TargetRole};
use shadowdiff_net::tls::{ClientTls, TlsFiles};
use shadowdiff_replayer::{AllowRule, Policy, Target};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole file, every key defaulted. [`Config::validate`] and the per-stage methods
/// ([`Config::common`], [`Config::tap`], …) turn it into the settings each command uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name under which results are stored and reported.
    pub experiment: String,
    /// Where the embedded store keeps results.
    pub data_dir: PathBuf,
    /// The tap.
    pub capture: CaptureSection,
    /// The targets and how requests are replayed to them.
    pub replay: ReplaySection,
    /// Normalization rules (see the README's "Diff rules").
    pub diff: RulesConfig,
    /// Declared route templates.
    pub routes: RoutesSection,
    /// The differ pool, its queue and the shutdown grace.
    pub pipeline: PipelineSection,
    /// The metrics and health endpoint.
    pub admin: AdminSection,
    /// The egress sandbox `shadowdiff run` starts in-process (off unless `listen` is set).
    pub sandbox: SandboxSection,
    /// Transport between the stages of the distributed deployment.
    pub kafka: KafkaSection,
    /// Result store of the distributed deployment.
    pub clickhouse: ClickHouseSection,
    /// TLS of outbound `https://` connections (control, candidates, secondary).
    pub tls: TlsSection,
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
            sandbox: SandboxSection::default(),
            kafka: KafkaSection::default(),
            clickhouse: ClickHouseSection::default(),
            tls: TlsSection::default(),
        }
    }
}

/// `[capture]`: where the tap listens, what it forwards to, and its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSection {
    /// Address the tap listens on, e.g. `127.0.0.1:8080` (`0.0.0.0:8080` to serve others).
    pub listen: String,
    /// The production service the tap forwards to, e.g. `http://127.0.0.1:8081` (or
    /// `https://…`, see `[tls]`).
    pub control: Option<String>,
    /// Bodies are copied up to this many bytes and marked truncated beyond.
    pub body_limit: usize,
    /// Captured exchanges waiting for the replayer; beyond this they are dropped and counted.
    pub queue_capacity: usize,
    /// Bytes (bodies, headers, URIs) of the exchanges between the tap and the differ — queued,
    /// being replayed, or waiting for a differ; beyond this new exchanges are dropped and counted
    /// (`queue_full`), so memory stays bounded whatever the body sizes. In `capture --kafka` it
    /// bounds the producer's local queue instead.
    pub queue_max_bytes: u64,
    /// Forward the client's Host header instead of the control's address.
    pub preserve_host: bool,
    /// Threads that serve the tap's connections, each with its own event loop and its own
    /// connections to the control (like nginx's `worker_processes`); 0 = one per core.
    pub threads: usize,
    /// Time the control has for a whole exchange (request, response head and body), in
    /// milliseconds: before the response head the client gets a 504, after it a cut.
    pub control_timeout_ms: u64,
    /// A client's request head must arrive whole within this time of its first byte (a new
    /// connection must start one within it), in milliseconds; else 408 and close. nginx:
    /// `client_header_timeout` 60 s.
    pub head_timeout_ms: u64,
    /// An idle kept-alive client connection is closed after this time, in milliseconds.
    /// nginx: `keepalive_timeout` 75 s.
    pub keep_alive_timeout_ms: u64,
    /// A request body may pause this long between reads, in milliseconds; else 408 and close.
    /// nginx: `client_body_timeout` 60 s.
    pub body_timeout_ms: u64,
    /// Client connections served at once by the process; beyond it a new connection is
    /// answered 503 and closed (`refused_total{reason="connection_limit"}`). Each also holds a
    /// connection to the control: the open-files limit must allow twice as many.
    pub max_connections: usize,
    /// `tee` (proxy in front of the control) or `mirror` (receive mirrored requests; `control`
    /// is then a control replica the replayer asks).
    pub mode: CaptureMode,
    /// Which requests are copied.
    pub sampling: SamplingSection,
    /// Secrets replaced before an exchange leaves the tap.
    pub redaction: RedactionSection,
}

impl Default for CaptureSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_string(),
            control: None,
            body_limit: 256 * 1024,
            queue_capacity: 10_000,
            queue_max_bytes: 128 * 1024 * 1024,
            preserve_host: false,
            threads: 0,
            control_timeout_ms: 30_000,
            head_timeout_ms: 15_000,
            keep_alive_timeout_ms: 60_000,
            body_timeout_ms: 30_000,
            max_connections: 10_000,
            mode: CaptureMode::Tee,
            sampling: SamplingSection::default(),
            redaction: RedactionSection::default(),
        }
    }
}

/// `[[replay.candidates]]`: one build under test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateConfig {
    /// Name in records and reports: letters, digits, `-`, `_`, `.`; not `secondary` or
    /// `control`.
    pub name: String,
    /// Base URL, `http://` or `https://`.
    pub url: String,
}

/// `[replay]`: the targets and how requests are replayed to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplaySection {
    /// The builds under test; at least one.
    pub candidates: Vec<CandidateConfig>,
    /// A second instance of the control build, to measure noise (A/A); or `self`: the control
    /// itself asked a second time, for safe requests only (GET, HEAD, OPTIONS without a body
    /// or a method override), at most `secondary_self_max_rate` a second. `self` doubles the
    /// read load those requests put on the control and its dependencies (databases, caches,
    /// downstream services); a write never reaches the control twice.
    pub secondary: Option<String>,
    /// With `secondary = "self"`: safe requests a second asked of the control again, per
    /// replay stage (0 = no cap).
    pub secondary_self_max_rate: u32,
    /// Time each target has for a complete answer, in milliseconds.
    pub timeout_ms: u64,
    /// Exchanges replayed at once (over all replay threads).
    pub concurrency: usize,
    /// Replay threads, each a single-threaded runtime with its own share of the capture queue
    /// and its own connections to the targets; 0 = one per core. One replays tens of thousands
    /// of exchanges a second and costs least at a steady rate; raise it when copies are dropped
    /// because replay cannot keep up.
    pub threads: usize,
    /// Header added to every replayed request, so targets can tell shadow traffic.
    pub shadow_header: String,
    /// The value of `shadow_header`.
    pub shadow_header_value: String,
    /// Header carrying the exchange id on replayed requests; the egress sandbox attributes
    /// side effects by it.
    pub exchange_id_header: String,
    /// More request headers removed before replay, on top of the credential headers of
    /// `shadowdiff_model::secrets::SECRET_HEADERS`.
    pub strip_headers: Vec<String>,
    /// More query parameters removed before replay, on top of
    /// `shadowdiff_model::secrets::SECRET_QUERY_PARAMS`.
    pub strip_query: Vec<String>,
    /// Strip only `strip_headers` and `strip_query`, not the default lists.
    pub replace_default_secrets: bool,
    /// Writes declared safe to replay: `[[replay.allow]] method = "POST", route = "/search"`.
    pub allow: Vec<AllowRule>,
    /// Synthetic tenant credentials set after stripping: `authorization = "Bearer synthetic"`.
    pub credentials: std::collections::BTreeMap<String, String>,
    /// Synthetic query parameter values, set where a replayed request has the parameter:
    /// `api_key = "synthetic-key"`.
    pub query_credentials: std::collections::BTreeMap<String, String>,
    /// A standalone `shadowdiff sandbox` to ask for blocked side effects, e.g.
    /// `http://127.0.0.1:3128`.
    pub sandbox_url: Option<String>,
    /// When exchanges read from Kafka or a recording are replayed: `captured` keeps the gaps
    /// between their capture times (a backlog is replayed at the rate it was captured, not all
    /// at once; pauses over 250 ms are shortened to that), `asap` as soon as a replay slot is
    /// free. Live traffic in `run` is paced by its arrival.
    pub pacing: Pacing,
    /// Exchanges replayed per second at most, by this replay stage (0 = no cap).
    pub max_rate: u32,
}

/// When the replay stage sends exchanges (`replay.pacing`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    /// Keep the gaps between capture times: a backlog (Kafka after an outage, a recording) is
    /// replayed at the rate production sent it, so latencies compare like with like.
    #[default]
    Captured,
    /// As fast as the replay slots allow.
    Asap,
}

impl Default for ReplaySection {
    fn default() -> Self {
        Self {
            candidates: Vec::new(),
            secondary: None,
            secondary_self_max_rate: 10,
            timeout_ms: 5_000,
            concurrency: 64,
            threads: 1,
            shadow_header: shadowdiff_capture::DEFAULT_SHADOW_MARKERS[0].to_string(),
            shadow_header_value: "1".to_string(),
            exchange_id_header: shadowdiff_capture::DEFAULT_SHADOW_MARKERS[1].to_string(),
            strip_headers: Vec::new(),
            strip_query: Vec::new(),
            replace_default_secrets: false,
            allow: Vec::new(),
            credentials: std::collections::BTreeMap::new(),
            query_credentials: std::collections::BTreeMap::new(),
            sandbox_url: None,
            pacing: Pacing::default(),
            max_rate: 0,
        }
    }
}

/// `[routes]`: declared route templates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutesSection {
    /// Route templates that win over inference, e.g. `/users/{name}`.
    pub patterns: Vec<String>,
}

/// `[pipeline]`: the differ pool, its queue and the shutdown grace.
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

/// `[admin]`: the metrics and health endpoint.
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

/// `[kafka]`: the transport between the stages of the distributed deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    /// Comma-separated `host:port` brokers (or --kafka).
    pub brokers: Option<String>,
    /// Topic of captured exchanges (capture → replay).
    pub exchanges_topic: String,
    /// Topic of replay results (replay → diff).
    pub results_topic: String,
    /// Consumer group of `shadowdiff replay` processes.
    pub replay_group: String,
    /// Consumer group of `shadowdiff diff` processes.
    pub diff_group: String,
    /// This replica's stable name in its consumer group (KIP-345 static membership): a
    /// `replay` or `diff` restarted under the same name takes its partitions back at once.
    /// Unique per replica, e.g. a StatefulSet pod name; unset, members are dynamic.
    pub instance_id: Option<String>,
    /// Partitions of topics shadowdiff creates (existing topics are left as they are).
    pub partitions: i32,
    /// Send undecodable records to `<topic>.dlq`.
    pub dead_letter: bool,
    /// Largest record produced; bigger exchanges are sent with truncated bodies.
    pub message_max_bytes: usize,
    /// How long a producer waits to fill a batch, in milliseconds (librdkafka `linger.ms`).
    pub linger_ms: u64,
    /// A consumer that misses heartbeats this long leaves its group, in milliseconds
    /// (librdkafka `session.timeout.ms`).
    pub session_timeout_ms: u64,
    /// Longest a consumer's fetch waits at the broker, in milliseconds (librdkafka
    /// `fetch.wait.max.ms`; on Kafka only an idle consumer waits).
    pub fetch_wait_max_ms: u64,
    /// Most bytes one fetch returns per partition (librdkafka `max.partition.fetch.bytes`).
    pub max_partition_fetch_bytes: u64,
    /// Extra librdkafka options for every client, e.g. `"security.protocol" = "ssl"`.
    pub options: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaSection {
    fn default() -> Self {
        let producer = shadowdiff_kafka::ProducerConfig::new("", "");
        let consumer = shadowdiff_kafka::ConsumerConfig::new("", "", "");
        Self {
            brokers: None,
            exchanges_topic: "shadowdiff.exchanges".to_string(),
            results_topic: "shadowdiff.results".to_string(),
            replay_group: "shadowdiff-replay".to_string(),
            diff_group: "shadowdiff-diff".to_string(),
            instance_id: None,
            partitions: 6,
            dead_letter: true,
            // The Kafka crate's own defaults, written once there.
            message_max_bytes: producer.message_max_bytes,
            linger_ms: producer.linger_ms.into(),
            session_timeout_ms: consumer.session_timeout_ms.into(),
            fetch_wait_max_ms: consumer.fetch_wait_max_ms.into(),
            max_partition_fetch_bytes: consumer.max_partition_fetch_bytes.into(),
            options: Default::default(),
        }
    }
}

/// `[clickhouse]`: the result store of the distributed deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseSection {
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123` (or --clickhouse).
    pub url: Option<String>,
    /// Database holding shadowdiff's tables (or --database).
    pub database: String,
    /// User to log in as; ClickHouse's `default` user when absent.
    pub user: Option<String>,
    /// Password of `user`.
    pub password: Option<String>,
    /// Rows per insert at most; a batch is also sent after `batch_linger_ms`.
    pub batch_rows: usize,
    /// How long a batch waits for more rows, in milliseconds.
    pub batch_linger_ms: u64,
    /// Upper bound on one insert (sending and committing), in milliseconds.
    pub insert_timeout_ms: u64,
    /// Partition of the tables `migrate` creates: `day` or `month` (existing tables keep theirs).
    pub partition: shadowdiff_clickhouse::Partition,
    /// Days result rows are kept (ClickHouse 19.6 and later); forever when absent.
    pub ttl_days: Option<u32>,
    /// Days the per-minute aggregates are kept; forever when absent.
    pub minutes_ttl_days: Option<u32>,
}

impl Default for ClickHouseSection {
    fn default() -> Self {
        // The ClickHouse crate's own defaults, written once there.
        let crate_defaults = shadowdiff_clickhouse::ClickHouseConfig::new("");
        Self {
            url: None,
            database: crate_defaults.database,
            insert_timeout_ms: crate_defaults.insert_timeout_ms,
            partition: crate_defaults.partition,
            ttl_days: crate_defaults.ttl_days,
            minutes_ttl_days: crate_defaults.minutes_ttl_days,
            user: None,
            password: None,
            batch_rows: 5_000,
            batch_linger_ms: 200,
        }
    }
}

/// How requests reach the tap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMode {
    /// A proxy in front of the control: request and control response are captured.
    #[default]
    Tee,
    /// A receiver of mirrored requests (nginx `mirror`, Envoy/Istio mirroring): answers 202 at
    /// once; a control replica is asked for the control response.
    Mirror,
}

/// `[capture.sampling]`: which requests are copied, decided from the request head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingSection {
    /// Share of (matching) requests copied, in percent.
    pub percent: f64,
    /// Sample consistently by this request header's value (same user always in or out).
    pub key_header: Option<String>,
    /// Sample consistently by this query parameter's value.
    pub key_query: Option<String>,
    /// Copy only these methods; empty copies all.
    pub methods: Vec<String>,
    /// Copy only these paths: prefixes (`/api/`) or globs (`/users/*/orders`).
    pub paths: Vec<String>,
    /// Copy only requests with these headers: `name` or `name=value`.
    pub headers: Vec<String>,
}

impl Default for SamplingSection {
    fn default() -> Self {
        Self {
            percent: 100.0,
            key_header: None,
            key_query: None,
            methods: Vec::new(),
            paths: Vec::new(),
            headers: Vec::new(),
        }
    }
}

/// `[capture.redaction]`: secrets replaced by a keyed hash before an exchange leaves the tap.
/// The credential headers and query parameters of `shadowdiff_model::secrets` are redacted
/// unless `replace_default_secrets`; Authorization, Proxy-Authorization, Cookie and Set-Cookie
/// always are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionSection {
    /// HMAC key; else `SHADOWDIFF_REDACTION_KEY`; else a random key per process (hashes then
    /// compare equal only within one run).
    pub key: Option<String>,
    /// More header names to redact.
    pub headers: Vec<String>,
    /// More query parameter names to redact.
    pub query: Vec<String>,
    /// Redact only `headers`, `query` and the four always-redacted headers.
    pub replace_default_secrets: bool,
    /// Dotted JSON body paths to redact; `*` matches any key or element: `cards.*.number`.
    pub body_paths: Vec<String>,
}

/// `[tls]`: how outbound `https://` connections (the tap's to the control, the replayer's to
/// candidates, the secondary and a control replica) are secured. The server's certificate is
/// checked against the built-in Mozilla roots plus `ca_file`, for the URL's host (also the TLS
/// server name); the Host header is unchanged. Every file is PEM and is checked at start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// CA certificates trusted besides the built-in roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (chain) for servers that require mTLS; needs `client_key`.
    pub client_cert: Option<PathBuf>,
    /// Private key of `client_cert` (PKCS#8, RSA or EC).
    pub client_key: Option<PathBuf>,
}

impl TlsSection {
    /// Reads and checks the files; the error names the key.
    pub fn load(&self) -> Result<ClientTls, ConfigError> {
        if self == &Self::default() {
            return Ok(ClientTls::default());
        }
        ClientTls::load(&TlsFiles {
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        })
        .map_err(|e| {
            let key = e.file().key();
            let flag = key.replace('_', "-");
            invalid(&format!("tls.{key} (--tls-{flag})"), e.to_string())
        })
    }
}

/// `[sandbox]`: the egress sandbox `shadowdiff run` starts in-process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSection {
    /// Address of the forward proxy candidates use as HTTP_PROXY, e.g. `127.0.0.1:3128`;
    /// empty (the default) starts no sandbox.
    pub listen: String,
    /// Hosts reads may reach: `host`, `host:port` or `*.domain`.
    pub allow: Vec<String>,
    /// Hosts declared write-safe, the only ones CONNECT may tunnel to (same forms as `allow`);
    /// writes inside a tunnel are neither blocked nor recorded.
    pub allow_tunnel: Vec<String>,
    /// Answer `GET /side-effects/{id}` to every peer, not only 127.0.0.1 and ::1.
    pub lookup_any_peer: bool,
    /// Canned responses file (TOML, or JSON by `.json` extension).
    pub canned: Option<PathBuf>,
    /// Status of the answer to a blocked write.
    pub block_status: u16,
    /// Seconds a recorded side effect waits to be collected.
    pub log_ttl_secs: u64,
    /// Exchanges the side-effect log holds at most.
    pub log_capacity: usize,
}

impl Default for SandboxSection {
    fn default() -> Self {
        Self {
            listen: String::new(),
            allow: Vec::new(),
            allow_tunnel: Vec::new(),
            lookup_any_peer: false,
            canned: None,
            block_status: 403,
            log_ttl_secs: 60,
            log_capacity: 100_000,
        }
    }
}

/// The in-process sandbox of `shadowdiff run`.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// Address of the forward proxy.
    pub listen: SocketAddr,
    /// What it lets through, what it answers, and the exchange id header it reads.
    pub config: shadowdiff_sandbox::SandboxConfig,
    /// How long a recorded side effect waits to be collected.
    pub log_ttl: Duration,
    /// Exchanges the side-effect log holds at most.
    pub log_capacity: usize,
}

/// A config problem, with where it is and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file (or the command line's values) is not TOML of the expected shape.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file, or `the command line`.
        path: String,
        /// The TOML parser's message, with the line when there is one.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, with its flag when it has one: `replay.timeout_ms`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

impl CaptureSection {
    /// The tap's client timeouts and connection limit, each validated with its key.
    fn tap_limits(&self) -> Result<shadowdiff_capture::TapLimits, ConfigError> {
        let millis = |key: &str, v: u64| -> Result<Duration, ConfigError> {
            Ok(Duration::from_millis(positive(key, v)?))
        };
        Ok(shadowdiff_capture::TapLimits {
            head_timeout: millis("capture.head_timeout_ms", self.head_timeout_ms)?,
            keep_alive_timeout: millis(
                "capture.keep_alive_timeout_ms",
                self.keep_alive_timeout_ms,
            )?,
            body_timeout: millis("capture.body_timeout_ms", self.body_timeout_ms)?,
            max_connections: positive("capture.max_connections", self.max_connections as u64)?
                as usize,
        })
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

    /// Parses TOML text; `origin` names it in errors. Unknown keys are errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// The defaults, then the file (when given), then `overrides` (flags and their `SHADOWDIFF_*`
    /// variables): one layering for every command. The file is checked on its own first, so
    /// its errors name its line.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let origin = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: origin.clone(),
                    source,
                })?;
                Self::from_toml(&text, &origin)?;
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Parse {
                    path: origin,
                    message: e.to_string().trim_end().to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        merge(&mut table, overrides.0.clone());
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: "the command line".to_string(),
                message: e.to_string().trim_end().to_string(),
            })
    }
}

/// Values given on the command line (or by their `SHADOWDIFF_*` variables), by config key:
/// `replay.timeout_ms`. [`Config::load`] lays them over the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides(toml::Table);

impl Overrides {
    /// Sets `key` (dotted, e.g. `capture.listen`) to `value`.
    pub fn set(&mut self, key: &str, value: impl Serialize) -> Result<(), ConfigError> {
        let value = toml::Value::try_from(value).map_err(|e| invalid(key, e.to_string()))?;
        let mut parts = key.split('.').peekable();
        let mut table = &mut self.0;
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                table.insert(part.to_string(), value);
                return Ok(());
            }
            let entry = table
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => return Err(invalid(key, "is set twice, once as a value")),
            };
        }
        Err(invalid(key, "is not a config key"))
    }

    /// The keys set, dotted, in order.
    pub fn keys(&self) -> Vec<String> {
        fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    toml::Value::Table(inner) => walk(&key, inner, out),
                    _ => out.push(key),
                }
            }
        }
        let mut out = Vec::new();
        walk("", &self.0, &mut out);
        out
    }
}

/// Lays `top` over `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) => merge(b, t),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// What every command shares, validated: the experiment, the routes, the admin endpoint, the
/// shutdown grace and the redactor (the tap redacts requests, the replayer responses).
#[derive(Debug, Clone)]
pub struct CommonSettings {
    /// Name under which results are stored and reported; not empty.
    pub experiment: String,
    /// Where the embedded store keeps results.
    pub data_dir: PathBuf,
    /// `[routes]` patterns first, then inference.
    pub routes: RouteInferrer,
    /// Address of `/metrics`, `/healthz` and `/readyz`; `None` when `admin.listen` is empty.
    pub admin: Option<SocketAddr>,
    /// Time in-flight work has to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// The keyed redactor of `[capture.redaction]`.
    pub redactor: shadowdiff_model::redact::Redactor,
}

/// `[capture]` validated: the tap's settings. [`TapSettings::build`] makes the tap.
#[derive(Debug, Clone)]
pub struct TapSettings {
    /// Stamped on every exchange.
    pub experiment: String,
    /// Address the tap listens on.
    pub listen: SocketAddr,
    /// The production service (tee mode) or the control replica the replayer asks (mirror).
    pub control: http::Uri,
    /// Bodies are copied up to this many bytes and marked truncated beyond.
    pub body_limit: usize,
    /// Captured exchanges waiting for the replayer.
    pub queue_capacity: usize,
    /// Bytes in flight between the tap and the differ (the byte budget; in `capture --kafka`
    /// the producer's local queue).
    pub queue_max_bytes: u64,
    /// Forward the client's Host header instead of the control's address.
    pub preserve_host: bool,
    /// Serving threads (0 in the file is resolved to the core count here).
    pub threads: usize,
    /// Time the control has for a whole exchange.
    pub control_timeout: Duration,
    /// The tap's client timeouts and connection limit.
    pub limits: shadowdiff_capture::TapLimits,
    /// Tee proxy or mirror receiver.
    pub mode: CaptureMode,
    /// Which requests are copied (`[capture.sampling]`).
    pub sampler: shadowdiff_capture::sample::Sampler,
    /// Redacts requests and control responses before they leave the tap.
    pub redactor: shadowdiff_model::redact::Redactor,
    /// Trust and client certificate of the connection to an https control (`[tls]`).
    pub tls: ClientTls,
    /// Headers only shadowdiff may set, stripped from clients' requests.
    pub shadow_markers: Vec<String>,
}

/// `[replay]` (with `[tls]`, `[routes]` and, in mirror mode, the control replica of
/// `[capture]`) validated. [`ReplaySettings::build`] makes the replayer.
#[derive(Debug, Clone)]
pub struct ReplaySettings {
    /// The candidates, then the secondary, then (mirror mode) the control replica.
    pub targets: Vec<Target>,
    /// Time each target has for a complete answer.
    pub timeout: Duration,
    /// Exchanges replayed at once (over all replay threads).
    pub concurrency: usize,
    /// Replay threads of the embedded pipeline (0 in the file is resolved to the core count).
    pub threads: usize,
    /// Response bodies are kept up to this many bytes (`capture.body_limit`).
    pub body_limit: usize,
    /// Captured exchanges waiting for the replayer (`capture.queue_capacity`).
    pub queue_capacity: usize,
    /// Bytes a Kafka-fed replay stage holds at most (`capture.queue_max_bytes`).
    pub queue_max_bytes: u64,
    /// The side-effect guard: safe methods, plus the writes of `[[replay.allow]]`.
    pub policy: Policy,
    /// Header name and value added to every replayed request.
    pub shadow_header: (String, String),
    /// Header carrying the exchange id, so the egress sandbox can attribute side effects.
    pub exchange_id_header: String,
    /// Every header stripped before replay (defaults and configured).
    pub strip_headers: Vec<String>,
    /// Every query parameter stripped before replay (defaults and configured).
    pub strip_query: Vec<String>,
    /// Synthetic credential headers (lower-case name, value), set after stripping.
    pub credentials: Vec<(String, String)>,
    /// Synthetic query parameter values, set where a replayed request has the parameter.
    pub query_credentials: Vec<(String, String)>,
    /// Routes of requests, which `[[replay.allow]]` rules match.
    pub routes: RouteInferrer,
    /// Secrets in the targets' responses are redacted like the tap redacts the control's.
    pub redactor: shadowdiff_model::redact::Redactor,
    /// A standalone sandbox to ask for side effects (`replay.sandbox_url`).
    pub sandbox_url: Option<http::Uri>,
    /// The egress sandbox `run` and `import` start in this process (`[sandbox]`).
    pub sandbox: Option<SandboxSettings>,
    /// When exchanges are sent (`replay.pacing`).
    pub pacing: Pacing,
    /// Exchanges per second at most (`replay.max_rate`, 0 = no cap).
    pub max_rate: u32,
}

/// `[diff]` and `[pipeline]` validated: the rules, the differ pool and its queue.
/// [`DiffSettings::build`] makes the differ.
#[derive(Debug, Clone)]
pub struct DiffSettings {
    /// The compiled `[diff]` rules.
    pub rules: Rules,
    /// Gives each diff record its `route`.
    pub routes: RouteInferrer,
    /// Differ threads (0 in the file is resolved to the core count here).
    pub workers: usize,
    /// Replay results waiting for a differ.
    pub result_queue: usize,
    /// Bytes a Kafka-fed diff stage holds at most (`capture.queue_max_bytes`).
    pub queue_max_bytes: u64,
    /// Learning the control's noise from repeated identical requests (`[diff.repeats]`).
    pub repeats: shadowdiff_differ::RepeatConfig,
}

/// `[kafka]` validated: the transport of the distributed deployment.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` brokers.
    pub brokers: String,
    /// Topic of captured exchanges (capture → replay).
    pub exchanges_topic: String,
    /// Topic of replay results (replay → diff); not the exchanges topic.
    pub results_topic: String,
    /// Consumer group of `shadowdiff replay` processes.
    pub replay_group: String,
    /// Consumer group of `shadowdiff diff` processes.
    pub diff_group: String,
    /// Partitions of topics shadowdiff creates.
    pub partitions: i32,
    /// Send undecodable records to `<topic>.dlq`.
    pub dead_letter: bool,
    /// Largest record produced; bigger exchanges are sent with truncated bodies.
    pub message_max_bytes: usize,
    /// How long a producer waits to fill a batch (librdkafka `linger.ms`).
    pub linger: Duration,
    /// A consumer that misses heartbeats this long leaves its group.
    pub session_timeout: Duration,
    /// Longest a consumer's fetch waits at the broker.
    pub fetch_wait_max: Duration,
    /// Most bytes one fetch returns per partition.
    pub max_partition_fetch_bytes: u32,
    /// Extra librdkafka options for every client.
    pub options: std::collections::BTreeMap<String, String>,
    /// This replica's static member name, if any (`kafka.instance_id`).
    pub instance_id: Option<String>,
}

/// `[clickhouse]` validated: the result store of the distributed deployment.
#[derive(Debug, Clone)]
pub struct ClickHouseSettings {
    /// Where the store is, how to log in, and the insert timeout.
    pub config: shadowdiff_clickhouse::ClickHouseConfig,
    /// Rows per insert at most, and how long a batch waits for more.
    pub batch: BatchSettings,
}

/// When the store writer writes a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// A batch is written once it holds this many rows…
    pub rows: usize,
    /// …or this long after its first row arrived.
    pub linger: Duration,
}

/// Everything `shadowdiff run` needs: every stage in one process.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// What every command shares.
    pub common: CommonSettings,
    /// The tap.
    pub tap: TapSettings,
    /// The replayer.
    pub replay: ReplaySettings,
    /// The differ pool.
    pub diff: DiffSettings,
}

/// A `host:port` socket address; the error names `key`.
pub fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            key,
            format!("`{value}` is not an address with a port, such as 127.0.0.1:8080"),
        )
    })
}

/// A URL shadowdiff connects to: `http://` or `https://` (secured by `[tls]`).
fn parse_http_url(key: &str, value: &str) -> Result<http::Uri, ConfigError> {
    let uri = parse_url(key, value)?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err(invalid(
            key,
            format!(
                "`{value}` must be an absolute http:// or https:// URL, e.g. http://127.0.0.1:8081"
            ),
        ));
    }
    Ok(uri)
}

/// A URL served over plain HTTP only (the standalone sandbox's side-effect lookup).
fn parse_plain_http_url(key: &str, value: &str) -> Result<http::Uri, ConfigError> {
    let uri = parse_url(key, value)?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(invalid(
            key,
            format!("`{value}` must be an absolute http:// URL, e.g. http://127.0.0.1:3128"),
        ));
    }
    Ok(uri)
}

fn parse_url(key: &str, value: &str) -> Result<http::Uri, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            key,
            format!("`{value}` is not a URL; use e.g. http://127.0.0.1:8081"),
        )
    })
}

fn at_most(key: &str, v: usize, max: usize) -> Result<usize, ConfigError> {
    if v > max {
        Err(invalid(
            key,
            format!("must be at most {max} (0 = one per core)"),
        ))
    } else {
        Ok(v)
    }
}

fn within(key: &str, v: u64, range: std::ops::RangeInclusive<u64>) -> Result<u64, ConfigError> {
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(invalid(
            key,
            format!("must be between {} and {}", range.start(), range.end()),
        ))
    }
}

fn positive(key: &str, v: u64) -> Result<u64, ConfigError> {
    if v == 0 {
        Err(invalid(key, "must be greater than 0"))
    } else {
        Ok(v)
    }
}

/// Resolves `0 = one per core`.
fn per_core(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    }
}

impl Config {
    /// Everything `shadowdiff run` needs: every section of every stage.
    pub fn validate(&self) -> Result<RunSettings, ConfigError> {
        let common = self.common()?;
        Ok(RunSettings {
            tap: self.tap(&common)?,
            replay: self.replay(&common)?,
            diff: self.diff(&common)?,
            common,
        })
    }

    /// `experiment`, `data_dir`, `[routes]`, `[admin]`, `[pipeline] shutdown_grace_ms` and
    /// `[capture.redaction]`: what every command uses.
    pub fn common(&self) -> Result<CommonSettings, ConfigError> {
        use shadowdiff_model::redact::{RedactionConfig, Redactor, REDACTION_KEY_ENV};
        if self.experiment.trim().is_empty() {
            return Err(invalid("experiment", "must not be empty"));
        }
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
        let r = &self.capture.redaction;
        let key = match r.key.clone().filter(|k| !k.is_empty()) {
            Some(k) => k.into_bytes(),
            None => match std::env::var(REDACTION_KEY_ENV) {
                Ok(k) if !k.is_empty() => k.into_bytes(),
                _ => uuid::Uuid::new_v4().as_bytes().to_vec(),
            },
        };
        let redactor = Redactor::new(&RedactionConfig {
            key,
            headers: r.headers.clone(),
            query: r.query.clone(),
            replace_default_secrets: r.replace_default_secrets,
            body_paths: r.body_paths.clone(),
        })
        .map_err(|e| invalid("capture.redaction", e.to_string()))?;
        Ok(CommonSettings {
            experiment: self.experiment.clone(),
            data_dir: self.data_dir.clone(),
            routes: RouteInferrer::new(patterns),
            admin,
            shutdown_grace: Duration::from_millis(self.pipeline.shutdown_grace_ms),
            redactor,
        })
    }

    /// Checks that the redaction key is shared: set in the file or in
    /// `SHADOWDIFF_REDACTION_KEY`. Stages whose hashes must match other processes' (`capture` and
    /// `replay` over Kafka, `import --kafka`) call it; without it each process would draw a
    /// random key, the same secret would hash differently in each, and control and candidate
    /// answers would differ wherever a secret was redacted.
    pub fn shared_redaction_key(&self) -> Result<(), ConfigError> {
        use shadowdiff_model::redact::REDACTION_KEY_ENV;
        let in_file = self
            .capture
            .redaction
            .key
            .as_deref()
            .is_some_and(|k| !k.is_empty());
        let in_env = std::env::var(REDACTION_KEY_ENV).is_ok_and(|k| !k.is_empty());
        if in_file || in_env {
            return Ok(());
        }
        Err(invalid(
            "capture.redaction.key",
            format!(
                "is required when capture and replay run as separate processes: set it (or \
                 {REDACTION_KEY_ENV}) to the same secret in every capture and replay process; \
                 with a random key per process the same secret hashes differently in each"
            ),
        ))
    }

    /// The control URL, required.
    fn control(&self) -> Result<http::Uri, ConfigError> {
        let text = self.capture.control.as_deref().ok_or_else(|| {
            invalid(
                "capture.control (--control)",
                "is required: the URL of the production service, e.g. --control http://127.0.0.1:8081",
            )
        })?;
        parse_http_url("capture.control (--control)", text)
    }

    /// `[capture]` (with `[tls]` for an https control): the tap's settings.
    pub fn tap(&self, common: &CommonSettings) -> Result<TapSettings, ConfigError> {
        use shadowdiff_capture::sample::{SampleConfig, SampleKey, Sampler};
        let listen = parse_addr("capture.listen (--listen)", &self.capture.listen)?;
        let control = self.control()?;
        let tls = self.tls.load()?;
        let s = &self.capture.sampling;
        let key = match (&s.key_header, &s.key_query) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "capture.sampling",
                    "set key_header or key_query, not both",
                ))
            }
            (Some(h), None) => Some(SampleKey::Header(h.to_ascii_lowercase())),
            (None, Some(q)) => Some(SampleKey::Query(q.clone())),
            (None, None) => None,
        };
        let sampler = Sampler::new(&SampleConfig {
            percent: s.percent,
            key,
            methods: s.methods.clone(),
            paths: s.paths.clone(),
            headers: s.headers.clone(),
        })
        .map_err(|e| invalid("capture.sampling", e.to_string()))?;
        Ok(TapSettings {
            experiment: common.experiment.clone(),
            listen,
            control,
            body_limit: positive("capture.body_limit", self.capture.body_limit as u64)? as usize,
            queue_capacity: positive("capture.queue_capacity", self.capture.queue_capacity as u64)?
                as usize,
            queue_max_bytes: positive("capture.queue_max_bytes", self.capture.queue_max_bytes)?,
            preserve_host: self.capture.preserve_host,
            threads: per_core(at_most("capture.threads", self.capture.threads, 1024)?),
            control_timeout: Duration::from_millis(positive(
                "capture.control_timeout_ms",
                self.capture.control_timeout_ms,
            )?),
            limits: self.capture.tap_limits()?,
            mode: self.capture.mode,
            sampler,
            redactor: common.redactor.clone(),
            tls,
            shadow_markers: vec![
                self.replay.shadow_header.clone(),
                self.replay.exchange_id_header.clone(),
            ],
        })
    }

    /// `[replay]`, `[tls]`, `[sandbox]` and, in mirror mode, the control replica of
    /// `capture.control`: the replayer's settings.
    pub fn replay(&self, common: &CommonSettings) -> Result<ReplaySettings, ConfigError> {
        let tls = self.tls.load()?;
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
                Target::new(&c.name, TargetRole::Candidate, &c.url, &tls)
                    .map_err(|e| invalid(&key, e.to_string()))?,
            );
        }
        if self.replay.secondary.as_deref() == Some("self") {
            // The control itself, asked again for safe requests only (see ReplaySection).
            let control = self.control()?;
            targets.push(
                Target::control_as_secondary(
                    &control.to_string(),
                    &tls,
                    self.replay.secondary_self_max_rate,
                )
                .map_err(|e| invalid("replay.secondary", e.to_string()))?,
            );
        } else if let Some(url) = &self.replay.secondary {
            parse_http_url("replay.secondary (--secondary)", url)?;
            targets.push(
                Target::new("secondary", TargetRole::Secondary, url, &tls)
                    .map_err(|e| invalid("replay.secondary", e.to_string()))?,
            );
        }
        if self.capture.mode == CaptureMode::Mirror {
            // In mirror mode the tap sees no response: `control` is a replica the replayer asks.
            let control = self.control()?;
            targets.push(
                Target::new("control", TargetRole::Control, &control.to_string(), &tls)
                    .map_err(|e| invalid("capture.control (--control)", e.to_string()))?,
            );
        }
        let policy =
            Policy::new(&self.replay.allow).map_err(|e| invalid("replay", e.to_string()))?;
        let mut credentials = Vec::new();
        for (name, value) in &self.replay.credentials {
            let key = format!("replay.credentials.{name}");
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(invalid(&key, "is not a valid header name"));
            }
            if http::HeaderValue::from_str(value).is_err() {
                return Err(invalid(
                    &key,
                    "value must be visible ASCII (no newlines or control characters)",
                ));
            }
            credentials.push((name.to_ascii_lowercase(), value.clone()));
        }
        let sandbox_url = match &self.replay.sandbox_url {
            Some(url) => Some(parse_plain_http_url("replay.sandbox_url", url)?),
            None => None,
        };
        let sandbox = self.sandbox(sandbox_url.is_some())?;
        Ok(ReplaySettings {
            targets,
            timeout: Duration::from_millis(positive("replay.timeout_ms", self.replay.timeout_ms)?),
            concurrency: positive("replay.concurrency", self.replay.concurrency as u64)? as usize,
            threads: per_core(at_most("replay.threads", self.replay.threads, 256)?),
            body_limit: positive("capture.body_limit", self.capture.body_limit as u64)? as usize,
            queue_capacity: positive("capture.queue_capacity", self.capture.queue_capacity as u64)?
                as usize,
            queue_max_bytes: positive("capture.queue_max_bytes", self.capture.queue_max_bytes)?,
            policy,
            shadow_header: (
                self.replay.shadow_header.clone(),
                self.replay.shadow_header_value.clone(),
            ),
            exchange_id_header: self.replay.exchange_id_header.clone(),
            strip_headers: secret_list(
                SECRET_HEADERS,
                &self.replay.strip_headers,
                self.replay.replace_default_secrets,
            ),
            strip_query: secret_list(
                SECRET_QUERY_PARAMS,
                &self.replay.strip_query,
                self.replay.replace_default_secrets,
            ),
            credentials,
            query_credentials: self.query_credentials()?,
            routes: common.routes.clone(),
            redactor: common.redactor.clone(),
            sandbox_url,
            sandbox,
            pacing: self.replay.pacing,
            max_rate: self.replay.max_rate,
        })
    }

    /// `[diff]` and `[pipeline]`: the differ pool's settings.
    pub fn diff(&self, common: &CommonSettings) -> Result<DiffSettings, ConfigError> {
        Ok(DiffSettings {
            rules: Rules::compile(&self.diff).map_err(|e| invalid("diff", e.to_string()))?,
            routes: common.routes.clone(),
            workers: per_core(at_most(
                "pipeline.diff_workers",
                self.pipeline.diff_workers,
                1024,
            )?),
            result_queue: positive("pipeline.result_queue", self.pipeline.result_queue as u64)?
                as usize,
            queue_max_bytes: positive("capture.queue_max_bytes", self.capture.queue_max_bytes)?,
            repeats: self.diff.repeats.clone(),
        })
    }

    /// `[kafka]`: the distributed deployment's transport.
    pub fn kafka(&self) -> Result<KafkaSettings, ConfigError> {
        let k = &self.kafka;
        let brokers = match k.brokers.as_deref().map(str::trim) {
            Some(b) if !b.is_empty() => b.to_string(),
            _ => {
                return Err(invalid(
                    "kafka.brokers (--kafka)",
                    "is required: comma-separated host:port list, e.g. --kafka 127.0.0.1:9092",
                ))
            }
        };
        for broker in brokers.split(',').map(str::trim) {
            let port = broker.rsplit_once(':').map(|(_, p)| p);
            if broker.is_empty() || port.is_none_or(|p| p.parse::<u16>().is_err()) {
                return Err(invalid(
                    "kafka.brokers (--kafka)",
                    format!("`{broker}` is not host:port, e.g. 127.0.0.1:9092"),
                ));
            }
        }
        let topic = |key: &str, name: &str| -> Result<String, ConfigError> {
            // Kafka's own rule: 1-249 of [a-zA-Z0-9._-], not `.` or `..`.
            let ok = !name.is_empty()
                && name.len() <= 249
                && name != "."
                && name != ".."
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if ok {
                Ok(name.to_string())
            } else {
                Err(invalid(
                    key,
                    format!("`{name}` is not a Kafka topic name (1-249 of letters, digits, `.`, `_`, `-`)"),
                ))
            }
        };
        let group = |key: &str, name: &str| -> Result<String, ConfigError> {
            if name.trim().is_empty() {
                Err(invalid(key, "must not be empty"))
            } else {
                Ok(name.to_string())
            }
        };
        let exchanges_topic = topic(
            "kafka.exchanges_topic (--exchanges-topic)",
            &k.exchanges_topic,
        )?;
        let results_topic = topic("kafka.results_topic (--results-topic)", &k.results_topic)?;
        if exchanges_topic == results_topic {
            return Err(invalid(
                "kafka.results_topic",
                format!("must differ from kafka.exchanges_topic (both are `{results_topic}`)"),
            ));
        }
        if !(1..=10_000).contains(&k.partitions) {
            return Err(invalid(
                "kafka.partitions",
                format!("{} is out of range: 1 to 10000", k.partitions),
            ));
        }
        if k.message_max_bytes < 1_000 || k.message_max_bytes > 1_000_000_000 {
            return Err(invalid(
                "kafka.message_max_bytes",
                format!(
                    "{} is out of range: 1000 to 1000000000 (librdkafka's bounds)",
                    k.message_max_bytes
                ),
            ));
        }
        if k.linger_ms > 900_000 {
            return Err(invalid(
                "kafka.linger_ms",
                "must be at most 900000 (librdkafka's bound)",
            ));
        }
        for name in k.options.keys() {
            if name.trim().is_empty() || name.contains(char::is_whitespace) {
                return Err(invalid(
                    &format!("kafka.options.{name}"),
                    "is not a librdkafka property name",
                ));
            }
        }
        Ok(KafkaSettings {
            brokers,
            exchanges_topic,
            results_topic,
            replay_group: group("kafka.replay_group (--group)", &k.replay_group)?,
            diff_group: group("kafka.diff_group (--group)", &k.diff_group)?,
            partitions: k.partitions,
            dead_letter: k.dead_letter,
            message_max_bytes: k.message_max_bytes,
            linger: Duration::from_millis(k.linger_ms),
            session_timeout: Duration::from_millis(
                positive("kafka.session_timeout_ms", k.session_timeout_ms)?
                    .clamp(1, u32::MAX as u64),
            ),
            fetch_wait_max: Duration::from_millis(within(
                "kafka.fetch_wait_max_ms",
                k.fetch_wait_max_ms,
                1..=300_000,
            )?),
            max_partition_fetch_bytes: within(
                "kafka.max_partition_fetch_bytes",
                k.max_partition_fetch_bytes,
                1024..=1_000_000_000,
            )? as u32,
            options: k.options.clone(),
            instance_id: match k.instance_id.as_deref().map(str::trim) {
                Some("") => {
                    return Err(invalid(
                        "kafka.instance_id (--instance-id)",
                        "must not be empty; leave it unset for dynamic membership",
                    ))
                }
                other => other.map(str::to_string),
            },
        })
    }

    /// `[clickhouse]`: the distributed deployment's result store.
    pub fn clickhouse(&self) -> Result<ClickHouseSettings, ConfigError> {
        let c = &self.clickhouse;
        let key = "clickhouse.url (--clickhouse)";
        let url = c.url.as_deref().map(str::trim).unwrap_or_default();
        if url.is_empty() {
            return Err(invalid(
                key,
                "is required: the ClickHouse HTTP URL, e.g. --clickhouse http://127.0.0.1:8123",
            ));
        }
        let uri = parse_http_url(key, url)?;
        if uri.path() != "/" || uri.query().is_some() {
            return Err(invalid(
                key,
                format!("`{url}` must be the server's base URL without a path, e.g. http://127.0.0.1:8123"),
            ));
        }
        let database = &c.database;
        if database.is_empty()
            || !database
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || database.as_bytes()[0].is_ascii_digit()
        {
            return Err(invalid(
                "clickhouse.database (--database)",
                format!("`{database}` is not a plain ClickHouse identifier (letters, digits, `_`, not starting with a digit)"),
            ));
        }
        let mut config = shadowdiff_clickhouse::ClickHouseConfig::new(url.trim_end_matches('/'))
            .with_database(database.clone());
        config.user = c.user.clone();
        config.password = c.password.clone();
        config.insert_timeout_ms = positive("clickhouse.insert_timeout_ms", c.insert_timeout_ms)?;
        config.partition = c.partition;
        for (key, days) in [
            ("clickhouse.ttl_days", c.ttl_days),
            ("clickhouse.minutes_ttl_days", c.minutes_ttl_days),
        ] {
            if let Some(days) = days {
                positive(key, u64::from(days))?;
            }
        }
        config.ttl_days = c.ttl_days;
        config.minutes_ttl_days = c.minutes_ttl_days;
        Ok(ClickHouseSettings {
            config,
            batch: BatchSettings {
                rows: positive("clickhouse.batch_rows", c.batch_rows as u64)? as usize,
                linger: Duration::from_millis(positive(
                    "clickhouse.batch_linger_ms",
                    c.batch_linger_ms,
                )?),
            },
        })
    }

    /// `[replay.query_credentials]`, checked.
    fn query_credentials(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let mut out = Vec::new();
        for (name, value) in &self.replay.query_credentials {
            if name.trim().is_empty() {
                return Err(invalid(
                    "replay.query_credentials",
                    "a parameter name must not be empty",
                ));
            }
            out.push((name.clone(), value.clone()));
        }
        Ok(out)
    }

    /// `[sandbox]`: the in-process egress sandbox, if `listen` is set.
    fn sandbox(&self, standalone: bool) -> Result<Option<SandboxSettings>, ConfigError> {
        if self.sandbox.listen.is_empty() {
            return Ok(None);
        }
        if standalone {
            return Err(invalid(
                "replay.sandbox_url",
                "set either [sandbox] listen (a sandbox in this process) or replay.sandbox_url (a standalone `shadowdiff sandbox`), not both",
            ));
        }
        let listen = parse_addr("sandbox.listen", &self.sandbox.listen)?;
        let canned = match &self.sandbox.canned {
            Some(path) => shadowdiff_sandbox::Canned::from_file(path)
                .map_err(|e| invalid("sandbox.canned", e.to_string()))?,
            None => shadowdiff_sandbox::Canned::default(),
        };
        if http::StatusCode::from_u16(self.sandbox.block_status).is_err() {
            return Err(invalid(
                "sandbox.block_status",
                format!(
                    "{} is not an HTTP status; use e.g. 403",
                    self.sandbox.block_status
                ),
            ));
        }
        Ok(Some(SandboxSettings {
            listen,
            config: shadowdiff_sandbox::SandboxConfig {
                allow: self.sandbox.allow.clone(),
                allow_tunnel: self.sandbox.allow_tunnel.clone(),
                lookup_any_peer: self.sandbox.lookup_any_peer,
                canned,
                block_status: self.sandbox.block_status,
                exchange_id_header: self.replay.exchange_id_header.clone(),
                upstream_timeout: Duration::from_millis(self.replay.timeout_ms.max(1)),
            },
            log_ttl: Duration::from_secs(positive(
                "sandbox.log_ttl_secs",
                self.sandbox.log_ttl_secs,
            )?),
            log_capacity: positive("sandbox.log_capacity", self.sandbox.log_capacity as u64)?
                as usize,
        }))
    }
}

impl TapSettings {
    /// `host:port` of the control for the readiness check; the port is the scheme's when the
    /// URL has none (`https://api.internal` is `api.internal:443`).
    pub fn control_addr(&self) -> String {
        host_and_port(&self.control)
    }

    /// The tee proxy's settings.
    pub fn tee_config(&self) -> shadowdiff_capture::TeeConfig {
        shadowdiff_capture::TeeConfig {
            control: self.control.clone(),
            tls: self.tls.clone(),
            body_limit: self.body_limit,
            experiment: self.experiment.clone(),
            preserve_host: self.preserve_host,
            control_timeout: self.control_timeout,
            limits: self.limits.clone(),
            shadow_markers: self.shadow_markers.clone(),
        }
    }

    /// The mirror receiver's settings.
    pub fn mirror_config(&self) -> shadowdiff_capture::mirror::MirrorConfig {
        shadowdiff_capture::mirror::MirrorConfig {
            body_limit: self.body_limit,
            experiment: self.experiment.clone(),
            body_timeout: self.control_timeout,
        }
    }
}

impl DiffSettings {
    /// The differ of these rules and routes, with a repeat tracker of its own (one per diff
    /// stage: the embedded pipeline's, or one per `shadowdiff diff` process) unless
    /// `diff.repeats.enabled = false`.
    pub fn build(&self) -> shadowdiff_differ::Differ {
        let differ = shadowdiff_differ::Differ::new(self.rules.clone(), self.routes.clone());
        if self.repeats.enabled {
            differ.with_repeats(std::sync::Arc::new(shadowdiff_differ::RepeatTracker::new(
                self.repeats.clone(),
            )))
        } else {
            differ
        }
    }
}

impl KafkaSettings {
    /// The first broker, for the readiness check.
    pub fn first_broker(&self) -> String {
        self.brokers
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    }

    /// A producer to `topic` with these settings.
    pub fn producer(&self, topic: &str) -> shadowdiff_kafka::ProducerConfig {
        let mut c = shadowdiff_kafka::ProducerConfig::new(&self.brokers, topic);
        c.message_max_bytes = self.message_max_bytes;
        c.linger_ms = self.linger.as_millis().min(u32::MAX as u128) as u32;
        c.librdkafka_options = self.options.clone();
        c
    }

    /// A consumer of `topic` in `group` with these settings (and its dead-letter topic).
    pub fn consumer(&self, topic: &str, group: &str) -> shadowdiff_kafka::ConsumerConfig {
        let mut c = shadowdiff_kafka::ConsumerConfig::new(&self.brokers, topic, group);
        if self.dead_letter {
            c = c.with_default_dead_letter_topic();
        }
        c.session_timeout_ms = self.session_timeout.as_millis().min(u32::MAX as u128) as u32;
        c.fetch_wait_max_ms = self.fetch_wait_max.as_millis().min(u32::MAX as u128) as u32;
        c.max_partition_fetch_bytes = self.max_partition_fetch_bytes;
        c.group_instance_id = self.instance_id.clone();
        c.librdkafka_options = self.options.clone();
        c
    }

    /// Creates the exchanges and results topics (and their dead-letter topics) if missing.
    pub async fn ensure_topics(&self) -> Result<(), shadowdiff_kafka::Error> {
        let mut list = vec![
            (self.exchanges_topic.clone(), self.partitions),
            (self.results_topic.clone(), self.partitions),
        ];
        if self.dead_letter {
            list.push((
                shadowdiff_kafka::dead_letter_topic(&self.exchanges_topic),
                1,
            ));
            list.push((shadowdiff_kafka::dead_letter_topic(&self.results_topic), 1));
        }
        let refs: Vec<(&str, i32)> = list.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        shadowdiff_kafka::ensure_topics(&self.brokers, &refs).await
    }
}

impl ClickHouseSettings {
    /// `host:port` of the server, for the readiness check.
    pub fn addr(&self) -> String {
        // Validated as an http(s) URL by `Config::clickhouse`.
        self.config
            .url
            .parse::<http::Uri>()
            .map(|uri| host_and_port(&uri))
            .unwrap_or_else(|_| self.config.url.clone())
    }
}

/// `host:port` of a URL for a TCP readiness check; the port is the scheme's when the URL has
/// none (`https://api.internal` is `api.internal:443`).
fn host_and_port(uri: &http::Uri) -> String {
    let host = uri.host().unwrap_or_default();
    let default = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let port = uri.port_u16().unwrap_or(default);
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The default list (unless replaced) and the configured names, lower case, without repeats.
fn secret_list(defaults: &[&str], configured: &[String], replace_defaults: bool) -> Vec<String> {
    let defaults: &[&[&str]] = if replace_defaults { &[] } else { &[defaults] };
    shadowdiff_model::secrets::merged_names(defaults, configured)
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

        let mut c = base();
        c.capture.threads = 5000;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("capture.threads") && e.contains("at most 1024"),
            "{e}"
        );

        assert!(base().validate().is_ok());
    }

    #[test]
    fn replay_threads_default_to_one_and_are_bounded() {
        assert_eq!(base().validate().unwrap().replay.threads, 1);
        let mut c = base();
        c.replay.threads = 0;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        assert_eq!(c.validate().unwrap().replay.threads, cores);
        c.replay.threads = 300;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("replay.threads") && e.contains("at most 256"),
            "{e}"
        );
    }

    #[test]
    fn tap_threads_default_to_one_per_core() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        assert_eq!(base().validate().unwrap().tap.threads, cores);
        let mut c = base();
        c.capture.threads = 3;
        assert_eq!(c.validate().unwrap().tap.threads, 3);
    }

    #[test]
    fn source_and_sandbox_settings_validate_precisely() {
        let text = r#"
            [capture]
            control = "http://127.0.0.1:1"
            mode = "mirror"
            [capture.sampling]
            percent = 10.0
            key_query = "user"
            [capture.redaction]
            key = "k"
            body_paths = ["card.number"]
            [[replay.candidates]]
            name = "v2"
            url = "http://127.0.0.1:2"
            [replay.credentials]
            authorization = "Bearer synthetic"
            [sandbox]
            listen = "127.0.0.1:0"
            allow = ["rates.internal"]
        "#;
        let s = Config::from_toml(text, "t").unwrap().validate().unwrap();
        assert_eq!(s.tap.mode, CaptureMode::Mirror);
        assert!(s
            .replay
            .targets
            .iter()
            .any(|t| t.role == TargetRole::Control && t.name == "control"));
        assert_eq!(s.tap.sampler.rate(), 0.1);
        assert!(s.replay.sandbox.is_some());

        let check = |f: &dyn Fn(&mut Config), expect: &str| {
            let mut c = base();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(expect), "{e}");
        };
        check(
            &|c| c.capture.sampling.percent = 150.0,
            "capture.sampling: percent",
        );
        check(
            &|c| {
                c.capture.sampling.key_header = Some("x".into());
                c.capture.sampling.key_query = Some("y".into());
            },
            "not both",
        );
        check(
            &|c| c.capture.redaction.body_paths = vec!["a..b".into()],
            "capture.redaction",
        );
        check(
            &|c| {
                c.replay.credentials.insert("bad header".into(), "x".into());
            },
            "replay.credentials.bad header",
        );
        check(
            &|c| c.replay.sandbox_url = Some("ftp://x".into()),
            "replay.sandbox_url",
        );
        check(
            &|c| {
                c.sandbox.listen = "127.0.0.1:0".into();
                c.replay.sandbox_url = Some("http://127.0.0.1:3".into());
            },
            "not both",
        );
        check(
            &|c| {
                c.sandbox.listen = "127.0.0.1:0".into();
                c.sandbox.block_status = 42;
            },
            "sandbox.block_status",
        );
        check(&|c| c.sandbox.listen = "3128".into(), "sandbox.listen");
        let e = Config::from_toml("[capture]\nmode = \"span\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tee") && e.contains("mirror"), "{e}");
    }

    #[test]
    fn secondary_self_is_the_control_asked_again_and_repeats_are_bounded() {
        let mut c = base();
        c.replay.secondary = Some("self".into());
        let s = c.validate().unwrap();
        let secondary = s
            .replay
            .targets
            .iter()
            .find(|t| t.role == TargetRole::Secondary)
            .unwrap();
        assert!(secondary.is_self_secondary());
        assert_eq!(secondary.base, s.tap.control);
        assert_eq!(Config::default().replay.secondary_self_max_rate, 10);
        let toml = "[replay]\nsecondary = \"self\"\nsecondary_self_max_rate = 3\n\
                    [diff.repeats]\nrequests = 100\nfields = 16\n";
        let c = Config::from_toml(toml, "t").unwrap();
        assert_eq!(c.replay.secondary_self_max_rate, 3);
        assert_eq!((c.diff.repeats.requests, c.diff.repeats.fields), (100, 16));
        let mut c = base();
        c.diff.repeats.requests = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("diff.repeats.requests"), "{e}");
    }

    #[test]
    fn https_urls_are_accepted_and_tls_files_checked_at_start() {
        let mut c = base();
        c.capture.control = Some("https://api.internal".into());
        c.replay.candidates[0].url = "https://v2.internal:8443".into();
        c.replay.secondary = Some("https://secondary.internal".into());
        let s = c.validate().unwrap();
        assert_eq!(s.tap.control.scheme_str(), Some("https"));
        assert_eq!(
            s.tap.tee_config().control.to_string(),
            "https://api.internal/"
        );
        assert!(!s.tap.tls.has_client_certificate());

        // The standalone sandbox's lookup is plain http only.
        let mut c = base();
        c.replay.sandbox_url = Some("https://127.0.0.1:3128".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("replay.sandbox_url") && e.contains("http://"),
            "{e}"
        );

        use shadowdiff_net::testing::{write, TestCa};
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("config CA");
        let (one, other) = (ca.client(), ca.client());
        let check = |f: &dyn Fn(&mut TlsSection), expect: &[&str]| {
            let mut c = base();
            f(&mut c.tls);
            let e = c.validate().unwrap_err().to_string();
            assert!(expect.iter().all(|x| e.contains(x)), "{e}");
        };
        check(
            &|t| t.ca_file = Some(dir.path().join("missing.pem")),
            &["tls.ca_file (--tls-ca-file)", "missing.pem", "No such file"],
        );
        let junk = write(dir.path(), "junk.pem", "not PEM");
        check(
            &|t| t.ca_file = Some(junk.clone()),
            &["tls.ca_file", "junk.pem", "not PEM"],
        );
        let cert = write(dir.path(), "one.pem", &one.cert_pem);
        let wrong_key = write(dir.path(), "other.key", &other.key_pem);
        check(
            &|t| {
                t.client_cert = Some(cert.clone());
                t.client_key = Some(wrong_key.clone());
            },
            &[
                "tls.client_key (--tls-client-key)",
                "does not match",
                "one.pem",
            ],
        );
        check(
            &|t| t.client_cert = Some(cert.clone()),
            &["tls.client_cert", "client_key"],
        );

        let text = format!(
            "[capture]\ncontrol = \"https://127.0.0.1:1\"\n[[replay.candidates]]\nname = \"v2\"\nurl = \"https://127.0.0.1:2\"\n[tls]\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
            write(dir.path(), "ca.pem", &ca.cert_pem()).display(),
            cert.display(),
            write(dir.path(), "one.key", &one.key_pem).display(),
        );
        let s = Config::from_toml(&text, "t").unwrap().validate().unwrap();
        assert!(s.tap.tls.has_client_certificate());
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
        assert_eq!(s.common.experiment, "checkout-v2");
        assert_eq!(s.replay.targets.len(), 1);
    }

    #[test]
    fn secret_lists_extend_the_defaults_or_replace_them() {
        let text = r#"
            [capture]
            control = "http://127.0.0.1:1"
            [capture.redaction]
            key = "k"
            query = ["promo"]
            [[replay.candidates]]
            name = "v2"
            url = "http://127.0.0.1:2"
            [replay]
            strip_headers = ["X-Tenant-Secret"]
            strip_query = ["Promo"]
            [replay.query_credentials]
            api_key = "synthetic key"
            [[replay.allow]]
            method = "GET"
            route = "/search"
            bodies = true
        "#;
        let s = Config::from_toml(text, "t").unwrap().validate().unwrap();
        for h in SECRET_HEADERS {
            assert!(s.replay.strip_headers.contains(&h.to_string()), "{h}");
        }
        assert!(s
            .replay
            .strip_headers
            .contains(&"x-tenant-secret".to_string()));
        for q in SECRET_QUERY_PARAMS {
            assert!(s.replay.strip_query.contains(&q.to_string()), "{q}");
        }
        assert!(s.replay.strip_query.contains(&"promo".to_string()));
        assert_eq!(
            s.replay.query_credentials,
            vec![("api_key".to_string(), "synthetic key".to_string())]
        );
        // The defaults apply with no [replay] section at all.
        assert_eq!(
            base().validate().unwrap().replay.strip_headers.len(),
            SECRET_HEADERS.len()
        );

        let mut c = base();
        c.replay.replace_default_secrets = true;
        c.replay.strip_headers = vec!["authorization".into()];
        c.replay.strip_query = vec!["token".into()];
        let s = c.validate().unwrap();
        assert_eq!(s.replay.strip_headers, vec!["authorization"]);
        assert_eq!(s.replay.strip_query, vec!["token"]);

        let mut c = base();
        c.replay.query_credentials.insert(" ".into(), "x".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("replay.query_credentials"), "{e}");
        let e = Config::from_toml(
            "[[replay.allow]]\nmethod = \"POST\"\nroute = \"/a\"\nbodies = true\n",
            "t",
        )
        .unwrap();
        let mut c = base();
        c.replay.allow = e.replay.allow;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("replay.allow[0]") && e.contains("bodies"), "{e}");
    }

    #[test]
    fn flags_lay_over_the_file_key_by_key_and_keep_its_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            "[capture]\ncontrol = \"http://127.0.0.1:1\"\nbody_limit = 5\n[replay]\ntimeout_ms = 7\n",
        )
        .unwrap();
        let mut o = Overrides::default();
        o.set("replay.timeout_ms", 9u64).unwrap();
        o.set(
            "replay.candidates",
            vec![CandidateConfig {
                name: "v2".into(),
                url: "http://127.0.0.1:2".into(),
            }],
        )
        .unwrap();
        o.set("capture.mode", CaptureMode::Mirror).unwrap();
        assert_eq!(
            o.keys(),
            vec!["capture.mode", "replay.candidates", "replay.timeout_ms"]
        );
        let c = Config::load(Some(&path), &o).unwrap();
        assert_eq!(c.replay.timeout_ms, 9, "the flag wins");
        assert_eq!(c.capture.body_limit, 5, "the file's other keys stay");
        assert_eq!(c.capture.control.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(c.capture.mode, CaptureMode::Mirror);
        assert_eq!(c.replay.candidates.len(), 1);
        assert_eq!(c.replay.concurrency, Config::default().replay.concurrency);
        // No file: flags over the defaults.
        let c = Config::load(None, &o).unwrap();
        assert_eq!(c.replay.timeout_ms, 9);
        assert_eq!(c.capture.body_limit, Config::default().capture.body_limit);
        // The file's own errors still name its line.
        std::fs::write(&path, "[replay]\ntimeout_ms = \"soon\"\n").unwrap();
        let e = Config::load(Some(&path), &o).unwrap_err().to_string();
        assert!(e.contains("s.toml") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn each_stage_validates_only_its_sections() {
        // `diff` needs neither a control nor candidates: no placeholder URL involved.
        let mut c = Config::default();
        c.kafka.brokers = Some("127.0.0.1:9092".into());
        c.clickhouse.url = Some("http://127.0.0.1:8123".into());
        let common = c.common().unwrap();
        assert!(c.diff(&common).is_ok());
        assert!(c.kafka().is_ok());
        assert!(c.clickhouse().is_ok());
        assert!(c
            .tap(&common)
            .unwrap_err()
            .to_string()
            .starts_with("capture.control"));
        assert!(c
            .replay(&common)
            .unwrap_err()
            .to_string()
            .starts_with("replay.candidates"));
        // `capture` needs a control but no candidate.
        c.capture.control = Some("http://127.0.0.1:1".into());
        assert!(c.tap(&common).is_ok());
    }

    #[test]
    fn kafka_and_clickhouse_sections_validate_precisely() {
        let base = || {
            let mut c = Config::default();
            c.kafka.brokers = Some("127.0.0.1:9092".into());
            c.clickhouse.url = Some("http://127.0.0.1:8123".into());
            c
        };
        let kafka_err = |f: &dyn Fn(&mut Config)| {
            let mut c = base();
            f(&mut c);
            c.kafka().unwrap_err().to_string()
        };
        let clickhouse_err = |f: &dyn Fn(&mut Config)| {
            let mut c = base();
            f(&mut c);
            c.clickhouse().unwrap_err().to_string()
        };
        let cases: Vec<(String, &str)> = vec![
            (
                kafka_err(&|c| c.kafka.brokers = None),
                "kafka.brokers (--kafka): is required",
            ),
            (
                kafka_err(&|c| c.kafka.brokers = Some("  ".into())),
                "kafka.brokers (--kafka): is required",
            ),
            (
                kafka_err(&|c| c.kafka.brokers = Some("localhost".into())),
                "`localhost` is not host:port",
            ),
            (
                kafka_err(&|c| c.kafka.brokers = Some("a:1,b:x".into())),
                "`b:x` is not host:port",
            ),
            (
                kafka_err(&|c| c.kafka.exchanges_topic = "a b".into()),
                "kafka.exchanges_topic",
            ),
            (
                kafka_err(&|c| c.kafka.results_topic = c.kafka.exchanges_topic.clone()),
                "must differ",
            ),
            (
                kafka_err(&|c| c.kafka.replay_group = " ".into()),
                "kafka.replay_group",
            ),
            (kafka_err(&|c| c.kafka.partitions = 0), "kafka.partitions"),
            (
                kafka_err(&|c| c.kafka.message_max_bytes = 10),
                "kafka.message_max_bytes",
            ),
            (
                kafka_err(&|c| c.kafka.linger_ms = 1_000_000),
                "kafka.linger_ms",
            ),
            (
                kafka_err(&|c| c.kafka.session_timeout_ms = 0),
                "kafka.session_timeout_ms",
            ),
            (
                kafka_err(&|c| c.kafka.instance_id = Some(" ".into())),
                "kafka.instance_id",
            ),
            (
                kafka_err(&|c| c.kafka.fetch_wait_max_ms = 0),
                "kafka.fetch_wait_max_ms: must be between 1 and 300000",
            ),
            (
                kafka_err(&|c| c.kafka.max_partition_fetch_bytes = 10),
                "kafka.max_partition_fetch_bytes",
            ),
            (
                kafka_err(&|c| {
                    c.kafka.options.insert("bad key".into(), "1".into());
                }),
                "kafka.options.bad key",
            ),
            (
                clickhouse_err(&|c| c.clickhouse.url = None),
                "clickhouse.url (--clickhouse): is required",
            ),
            (
                clickhouse_err(&|c| c.clickhouse.url = Some("127.0.0.1:8123".into())),
                "clickhouse.url",
            ),
            (
                clickhouse_err(&|c| c.clickhouse.url = Some("http://h:8123/db".into())),
                "without a path",
            ),
            (
                clickhouse_err(&|c| c.clickhouse.database = "my-db".into()),
                "clickhouse.database",
            ),
            (
                clickhouse_err(&|c| c.clickhouse.batch_rows = 0),
                "clickhouse.batch_rows",
            ),
            (
                clickhouse_err(&|c| c.clickhouse.batch_linger_ms = 0),
                "clickhouse.batch_linger_ms",
            ),
            (
                clickhouse_err(&|c| c.clickhouse.insert_timeout_ms = 0),
                "clickhouse.insert_timeout_ms",
            ),
            (
                clickhouse_err(&|c| c.clickhouse.ttl_days = Some(0)),
                "clickhouse.ttl_days",
            ),
            (
                clickhouse_err(&|c| c.clickhouse.minutes_ttl_days = Some(0)),
                "clickhouse.minutes_ttl_days",
            ),
        ];
        for (error, expect) in cases {
            assert!(error.contains(expect), "{error:?} lacks {expect:?}");
        }
        // Keys the crates had but the file could not set reach their configs.
        let mut c = base();
        c.kafka.linger_ms = 20;
        c.kafka.session_timeout_ms = 30_000;
        c.kafka.fetch_wait_max_ms = 100;
        c.kafka.max_partition_fetch_bytes = 1 << 20;
        c.clickhouse.insert_timeout_ms = 5_000;
        c.clickhouse.partition = shadowdiff_clickhouse::Partition::Month;
        c.clickhouse.ttl_days = Some(90);
        let clickhouse = c.clickhouse().unwrap().config;
        assert_eq!(
            (
                clickhouse.partition,
                clickhouse.ttl_days,
                clickhouse.minutes_ttl_days
            ),
            (shadowdiff_clickhouse::Partition::Month, Some(90), None)
        );
        let kafka = c.kafka().unwrap();
        assert_eq!(kafka.producer("t").linger_ms, 20);
        assert_eq!(kafka.consumer("t", "g").session_timeout_ms, 30_000);
        assert_eq!(kafka.consumer("t", "g").fetch_wait_max_ms, 100);
        assert_eq!(kafka.consumer("t", "g").max_partition_fetch_bytes, 1 << 20);
        assert_eq!(kafka.consumer("t", "g").group_instance_id, None);
        c.kafka.instance_id = Some("replay-0".into());
        assert_eq!(
            c.kafka()
                .unwrap()
                .consumer("t", "g")
                .group_instance_id
                .as_deref(),
            Some("replay-0")
        );
        assert_eq!(c.clickhouse().unwrap().config.insert_timeout_ms, 5_000);
        assert_eq!(c.clickhouse().unwrap().addr(), "127.0.0.1:8123");
    }

    #[test]
    fn the_readiness_check_gets_the_control_port_of_its_scheme() {
        let addr = |url: &str| {
            let mut c = Config::default();
            c.capture.control = Some(url.into());
            let common = c.common().unwrap();
            c.tap(&common).unwrap().control_addr()
        };
        assert_eq!(addr("http://127.0.0.1:8081"), "127.0.0.1:8081");
        assert_eq!(addr("https://api.internal"), "api.internal:443");
        assert_eq!(addr("http://api.internal/base"), "api.internal:80");
        assert_eq!(addr("http://[::1]:9"), "[::1]:9");
    }
}
