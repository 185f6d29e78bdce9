//! The flags of the pipeline commands, grouped by the config section they set, and the one
//! layer that lays them over the file.
//!
//! Every flag names its config key once ([`Layer::layer`]); a flag given on the command line or
//! by its `SHADOWDIFF_*` variable overrides that key of the file, which overrides the defaults
//! ([`Config::load`]). Defaults live in one place, `Config::default()` in the pipeline crate:
//! the flags show them in `--help` from there and never override the file with them. Each
//! command flattens only the groups it uses, so a flag a command would ignore is an error.

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, ValueEnum};
use serde::Serialize;
use shadowdiff_pipeline::config::{
    parse_candidate, CandidateConfig, CaptureMode, Config, ConfigError, Overrides, Pacing,
};
use std::path::PathBuf;
use std::sync::LazyLock;

/// The defaults every flag shows in `--help`.
pub(crate) static DEFAULTS: LazyLock<Config> = LazyLock::new(Config::default);

/// Lays the flags that were given over the config keys they name.
pub(crate) struct Layer<'a> {
    matches: &'a ArgMatches,
    overrides: Overrides,
}

impl<'a> Layer<'a> {
    pub(crate) fn new(matches: &'a ArgMatches) -> Self {
        Self {
            matches,
            overrides: Overrides::default(),
        }
    }

    /// Sets `key` to `value` when the flag `id` was given (on the command line or by its
    /// variable); a value clap filled in from the default leaves the file's value alone.
    pub(crate) fn set<T: Serialize>(
        &mut self,
        id: &str,
        key: &str,
        value: &T,
    ) -> Result<(), ConfigError> {
        match self.matches.value_source(id) {
            Some(ValueSource::CommandLine | ValueSource::EnvVariable) => {
                self.overrides.set(key, value)
            }
            _ => Ok(()),
        }
    }

    /// The file (or the defaults) with the given flags laid over it.
    pub(crate) fn load(self, file: &ConfigArg) -> Result<Config, ConfigError> {
        Config::load(file.config.as_deref(), &self.overrides)
    }
}

/// Something that sets config keys from flags.
pub(crate) trait Flags {
    fn layer(&self, layer: &mut Layer<'_>) -> Result<(), ConfigError>;
}

/// `--config`.
#[derive(Args, Debug)]
pub(crate) struct ConfigArg {
    /// TOML config file (see shadowdiff.example.toml); flags and their variables override it.
    #[arg(long, env = "SHADOWDIFF_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `--experiment`.
#[derive(Args, Debug)]
pub(crate) struct ExperimentArg {
    /// Experiment name under which results are stored.
    #[arg(long, env = "SHADOWDIFF_EXPERIMENT", default_value_t = DEFAULTS.experiment.clone())]
    pub experiment: String,
}

impl Flags for ExperimentArg {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set("experiment", "experiment", &self.experiment)
    }
}

/// `--data`: the embedded store.
#[derive(Args, Debug)]
pub(crate) struct DataArg {
    /// Data directory of the embedded store.
    #[arg(long, env = "SHADOWDIFF_DATA", default_value_os_t = DEFAULTS.data_dir.clone())]
    pub data: PathBuf,
}

impl Flags for DataArg {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set("data", "data_dir", &self.data)
    }
}

/// `--mode` of the tap.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    Tee,
    Mirror,
}

impl From<ModeArg> for CaptureMode {
    fn from(v: ModeArg) -> Self {
        match v {
            ModeArg::Tee => Self::Tee,
            ModeArg::Mirror => Self::Mirror,
        }
    }
}

impl From<CaptureMode> for ModeArg {
    fn from(v: CaptureMode) -> Self {
        match v {
            CaptureMode::Tee => Self::Tee,
            CaptureMode::Mirror => Self::Mirror,
        }
    }
}

/// `--control` and `--mode`: the production service (tee) or a control replica (mirror).
#[derive(Args, Debug)]
pub(crate) struct ControlArgs {
    /// URL of the production service the tap forwards to, e.g. http://127.0.0.1:8081 or
    /// https://api.internal (see --tls-ca-file); in mirror mode a control replica the replayer
    /// asks for the baseline.
    #[arg(long, env = "SHADOWDIFF_CONTROL")]
    pub control: Option<String>,
    /// How requests arrive: `tee` proxies to --control (production) and captures its answer;
    /// `mirror` receives requests mirrored by nginx, Envoy or Istio, answers 202 once read, and
    /// asks --control (then a control replica) for the baseline.
    #[arg(long, value_enum, env = "SHADOWDIFF_MODE", default_value_t = ModeArg::from(DEFAULTS.capture.mode))]
    pub mode: ModeArg,
}

impl Flags for ControlArgs {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set("control", "capture.control", &self.control)?;
        l.set("mode", "capture.mode", &CaptureMode::from(self.mode))
    }
}

/// The tap's own flags (`[capture]`).
#[derive(Args, Debug)]
pub(crate) struct TapArgs {
    /// Address the tap listens on.
    #[arg(long, env = "SHADOWDIFF_LISTEN", default_value_t = DEFAULTS.capture.listen.clone())]
    pub listen: String,
    /// Bodies are copied up to this many bytes.
    #[arg(long, env = "SHADOWDIFF_BODY_LIMIT", default_value_t = DEFAULTS.capture.body_limit)]
    pub body_limit: usize,
    /// Captured exchanges waiting for replay before new ones are dropped.
    #[arg(long, env = "SHADOWDIFF_QUEUE_CAPACITY", default_value_t = DEFAULTS.capture.queue_capacity)]
    pub queue_capacity: usize,
    /// Bytes of captured exchanges held between tap and differ before new exchanges are
    /// dropped (in `capture`, the Kafka producer's local queue).
    #[arg(long, env = "SHADOWDIFF_QUEUE_MAX_BYTES", default_value_t = DEFAULTS.capture.queue_max_bytes)]
    pub queue_max_bytes: u64,
    /// Threads serving the tap's connections, each with its own event loop and connections to
    /// the control, like nginx's workers (0 = one per core).
    #[arg(long = "tap-threads", env = "SHADOWDIFF_TAP_THREADS", default_value_t = DEFAULTS.capture.threads)]
    pub tap_threads: usize,
    /// A client's request head must arrive whole within this many ms of its first byte (and a
    /// new connection must start one within it), else 408 and close.
    #[arg(long = "head-timeout-ms", env = "SHADOWDIFF_HEAD_TIMEOUT_MS", default_value_t = DEFAULTS.capture.head_timeout_ms)]
    pub head_timeout_ms: u64,
    /// Idle kept-alive client connections are closed after this many ms.
    #[arg(long = "keep-alive-timeout-ms", env = "SHADOWDIFF_KEEP_ALIVE_TIMEOUT_MS", default_value_t = DEFAULTS.capture.keep_alive_timeout_ms)]
    pub keep_alive_timeout_ms: u64,
    /// A request body may pause this many ms between reads, else 408 and close.
    #[arg(long = "body-timeout-ms", env = "SHADOWDIFF_BODY_TIMEOUT_MS", default_value_t = DEFAULTS.capture.body_timeout_ms)]
    pub body_timeout_ms: u64,
    /// Client connections served at once; beyond it new ones get 503 and are closed. The
    /// open-files limit must allow twice as many.
    #[arg(long = "max-connections", env = "SHADOWDIFF_MAX_CONNECTIONS", default_value_t = DEFAULTS.capture.max_connections)]
    pub max_connections: usize,
}

impl Flags for TapArgs {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set("listen", "capture.listen", &self.listen)?;
        l.set("body_limit", "capture.body_limit", &self.body_limit)?;
        l.set(
            "queue_capacity",
            "capture.queue_capacity",
            &self.queue_capacity,
        )?;
        l.set(
            "queue_max_bytes",
            "capture.queue_max_bytes",
            &self.queue_max_bytes,
        )?;
        l.set("tap_threads", "capture.threads", &self.tap_threads)?;
        l.set(
            "head_timeout_ms",
            "capture.head_timeout_ms",
            &self.head_timeout_ms,
        )?;
        l.set(
            "keep_alive_timeout_ms",
            "capture.keep_alive_timeout_ms",
            &self.keep_alive_timeout_ms,
        )?;
        l.set(
            "body_timeout_ms",
            "capture.body_timeout_ms",
            &self.body_timeout_ms,
        )?;
        l.set(
            "max_connections",
            "capture.max_connections",
            &self.max_connections,
        )
    }
}

/// The replayer's flags (`[replay]`).
#[derive(Args, Debug)]
pub(crate) struct ReplayArgs {
    /// Candidate build as NAME=URL (http:// or https://); repeat for several. Replaces the
    /// file's candidates.
    #[arg(long = "candidate", env = "SHADOWDIFF_CANDIDATES", value_delimiter = ',', value_parser = parse_candidate)]
    pub candidates: Vec<CandidateConfig>,
    /// Second instance of the control build, to measure noise (A/A). Like --control and
    /// --candidate, http:// or https:// (see --tls-ca-file); or `self`: the control asked a
    /// second time, for safe requests only (GET, HEAD, OPTIONS), at most
    /// --secondary-self-max-rate a second. `self` doubles that read load on the control's
    /// dependencies; a write never reaches the control twice.
    #[arg(long, env = "SHADOWDIFF_SECONDARY")]
    pub secondary: Option<String>,
    /// With --secondary self: safe requests a second asked of the control again (0 = no cap).
    #[arg(long = "secondary-self-max-rate", env = "SHADOWDIFF_SECONDARY_SELF_MAX_RATE", default_value_t = DEFAULTS.replay.secondary_self_max_rate)]
    pub secondary_self_max_rate: u32,
    /// Time each target has to answer, in ms.
    #[arg(long, env = "SHADOWDIFF_TIMEOUT_MS", default_value_t = DEFAULTS.replay.timeout_ms)]
    pub timeout_ms: u64,
    /// Exchanges replayed at once.
    #[arg(long, env = "SHADOWDIFF_CONCURRENCY", default_value_t = DEFAULTS.replay.concurrency)]
    pub concurrency: usize,
    /// When exchanges are replayed: `captured` keeps the gaps between their capture times (a
    /// backlog or a recording reaches the targets at the rate production sent it; pauses over
    /// 250 ms are shortened to that), `asap` as soon as a replay slot is free.
    #[arg(long, value_enum, env = "SHADOWDIFF_PACING", default_value_t = PacingArg::from(DEFAULTS.replay.pacing))]
    pub pacing: PacingArg,
    /// Exchanges replayed per second at most (0 = no cap).
    #[arg(long = "max-rate", env = "SHADOWDIFF_MAX_RATE", default_value_t = DEFAULTS.replay.max_rate)]
    pub max_rate: u32,
}

/// `--pacing`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PacingArg {
    /// Keep the gaps between capture times.
    Captured,
    /// As soon as a replay slot is free.
    Asap,
}

impl From<PacingArg> for Pacing {
    fn from(v: PacingArg) -> Self {
        match v {
            PacingArg::Captured => Self::Captured,
            PacingArg::Asap => Self::Asap,
        }
    }
}

impl From<Pacing> for PacingArg {
    fn from(v: Pacing) -> Self {
        match v {
            Pacing::Captured => Self::Captured,
            Pacing::Asap => Self::Asap,
        }
    }
}

impl Flags for ReplayArgs {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set("candidates", "replay.candidates", &self.candidates)?;
        l.set("secondary", "replay.secondary", &self.secondary)?;
        l.set(
            "secondary_self_max_rate",
            "replay.secondary_self_max_rate",
            &self.secondary_self_max_rate,
        )?;
        l.set("timeout_ms", "replay.timeout_ms", &self.timeout_ms)?;
        l.set("concurrency", "replay.concurrency", &self.concurrency)?;
        l.set("pacing", "replay.pacing", &Pacing::from(self.pacing))?;
        l.set("max_rate", "replay.max_rate", &self.max_rate)
    }
}

/// `--replay-threads`: only where replay runs in the tap's process (`run`).
#[derive(Args, Debug)]
pub(crate) struct ReplayThreadsArg {
    /// Replay threads, each with its own event loop, share of the capture queue and connections
    /// to the targets; raise it when copies are dropped because replay cannot keep up (one
    /// costs least at a steady rate; 0 = one per core).
    #[arg(long = "replay-threads", env = "SHADOWDIFF_REPLAY_THREADS", default_value_t = DEFAULTS.replay.threads)]
    pub replay_threads: usize,
}

impl Flags for ReplayThreadsArg {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set("replay_threads", "replay.threads", &self.replay_threads)
    }
}

/// TLS of outbound https connections (`[tls]`).
#[derive(Args, Debug)]
pub(crate) struct TlsArgs {
    /// PEM file of CA certificates trusted for https:// control, candidates and secondary,
    /// besides the built-in Mozilla roots (a private CA).
    #[arg(long = "tls-ca-file", env = "SHADOWDIFF_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate shown to https:// servers that require mTLS; needs
    /// --tls-client-key.
    #[arg(long = "tls-client-cert", env = "SHADOWDIFF_TLS_CLIENT_CERT")]
    pub tls_client_cert: Option<PathBuf>,
    /// PEM private key of --tls-client-cert.
    #[arg(long = "tls-client-key", env = "SHADOWDIFF_TLS_CLIENT_KEY")]
    pub tls_client_key: Option<PathBuf>,
}

impl Flags for TlsArgs {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set("tls_ca_file", "tls.ca_file", &self.tls_ca_file)?;
        l.set("tls_client_cert", "tls.client_cert", &self.tls_client_cert)?;
        l.set("tls_client_key", "tls.client_key", &self.tls_client_key)
    }
}

/// The admin endpoint and draining (`[admin]`, `[pipeline]`): every long-running process.
#[derive(Args, Debug)]
pub(crate) struct AdminArgs {
    /// Admin address for /metrics, /healthz, /readyz; "" disables.
    #[arg(long, env = "SHADOWDIFF_ADMIN", default_value_t = DEFAULTS.admin.listen.clone())]
    pub admin: String,
    /// Time in-flight work has after SIGTERM, in ms.
    #[arg(long, env = "SHADOWDIFF_SHUTDOWN_GRACE_MS", default_value_t = DEFAULTS.pipeline.shutdown_grace_ms)]
    pub shutdown_grace_ms: u64,
}

impl Flags for AdminArgs {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set("admin", "admin.listen", &self.admin)?;
        l.set(
            "shutdown_grace_ms",
            "pipeline.shutdown_grace_ms",
            &self.shutdown_grace_ms,
        )
    }
}

/// `--kafka`: the brokers (`[kafka] brokers`).
#[derive(Args, Debug)]
pub(crate) struct BrokersArg {
    /// Kafka brokers, comma-separated host:port.
    #[arg(long, env = "SHADOWDIFF_KAFKA")]
    pub kafka: Option<String>,
}

impl Flags for BrokersArg {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set("kafka", "kafka.brokers", &self.kafka)
    }
}

/// `--exchanges-topic`.
#[derive(Args, Debug)]
pub(crate) struct ExchangesTopicArg {
    /// Topic of captured exchanges.
    #[arg(long, env = "SHADOWDIFF_EXCHANGES_TOPIC", default_value_t = DEFAULTS.kafka.exchanges_topic.clone())]
    pub exchanges_topic: String,
}

impl Flags for ExchangesTopicArg {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set(
            "exchanges_topic",
            "kafka.exchanges_topic",
            &self.exchanges_topic,
        )
    }
}

/// `--results-topic`.
#[derive(Args, Debug)]
pub(crate) struct ResultsTopicArg {
    /// Topic of replay results.
    #[arg(long, env = "SHADOWDIFF_RESULTS_TOPIC", default_value_t = DEFAULTS.kafka.results_topic.clone())]
    pub results_topic: String,
}

impl Flags for ResultsTopicArg {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set("results_topic", "kafka.results_topic", &self.results_topic)
    }
}

/// `--group` of `replay`.
#[derive(Args, Debug)]
pub(crate) struct ReplayGroupArg {
    /// Consumer group of the replay processes.
    #[arg(long, env = "SHADOWDIFF_GROUP", default_value_t = DEFAULTS.kafka.replay_group.clone())]
    pub group: String,
    #[command(flatten)]
    pub instance: InstanceIdArg,
}

impl Flags for ReplayGroupArg {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set("group", "kafka.replay_group", &self.group)?;
        self.instance.layer(l)
    }
}

/// `--instance-id`: static group membership.
#[derive(Args, Debug)]
pub(crate) struct InstanceIdArg {
    /// This replica's stable name in its consumer group (KIP-345 static membership): restarted
    /// under the same name it takes its partitions back at once. Unique per replica, e.g. a
    /// StatefulSet pod name.
    #[arg(long = "instance-id", env = "SHADOWDIFF_KAFKA_INSTANCE_ID")]
    pub instance_id: Option<String>,
}

impl Flags for InstanceIdArg {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set("instance_id", "kafka.instance_id", &self.instance_id)
    }
}

/// `--group` of `diff`.
#[derive(Args, Debug)]
pub(crate) struct DiffGroupArg {
    /// Consumer group of the diff processes.
    #[arg(long, env = "SHADOWDIFF_GROUP", default_value_t = DEFAULTS.kafka.diff_group.clone())]
    pub group: String,
    #[command(flatten)]
    pub instance: InstanceIdArg,
}

impl Flags for DiffGroupArg {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set("group", "kafka.diff_group", &self.group)?;
        self.instance.layer(l)
    }
}

/// `[clickhouse]`: the distributed result store.
#[derive(Args, Debug)]
pub(crate) struct ClickHouseArgs {
    /// ClickHouse HTTP URL, e.g. http://127.0.0.1:8123.
    #[arg(long, env = "SHADOWDIFF_CLICKHOUSE")]
    pub clickhouse: Option<String>,
    /// ClickHouse database.
    #[arg(long, env = "SHADOWDIFF_CLICKHOUSE_DATABASE", default_value_t = DEFAULTS.clickhouse.database.clone())]
    pub database: String,
}

impl Flags for ClickHouseArgs {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set("clickhouse", "clickhouse.url", &self.clickhouse)?;
        l.set("database", "clickhouse.database", &self.database)
    }
}

/// `--diff-workers` (`[pipeline] diff_workers`).
#[derive(Args, Debug)]
pub(crate) struct DiffWorkersArg {
    /// Differ threads (0 = one per core).
    #[arg(long = "diff-workers", env = "SHADOWDIFF_DIFF_WORKERS", default_value_t = DEFAULTS.pipeline.diff_workers)]
    pub diff_workers: usize,
}

impl Flags for DiffWorkersArg {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set("diff_workers", "pipeline.diff_workers", &self.diff_workers)
    }
}

/// Loads the config of a command: `file`, then each group's flags that were given.
pub(crate) fn load(
    matches: &ArgMatches,
    file: &ConfigArg,
    groups: &[&dyn Flags],
) -> anyhow::Result<Config> {
    let mut layer = Layer::new(matches);
    for group in groups {
        group.layer(&mut layer)?;
    }
    Ok(layer.load(file)?)
}
