use crate::report_cmd::{print_report, Format};
use anyhow::Context;
use clap::{Args, ValueEnum};
use shadowdiff_pipeline::config::{parse_candidate, CandidateConfig, Config};
use shadowdiff_pipeline::demo::{generate_traffic, Build, DemoServer};
use shadowdiff_pipeline::embedded::EmbeddedPipeline;
use shadowdiff_pipeline::stages::PipelineStats;
use shadowdiff_pipeline::{init_logging, LogFormat};
use shadowdiff_store::{build_report, EmbeddedStore, ReportQuery};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(v: LogFormatArg) -> Self {
        match v {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// `--mode` of `run`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    Tee,
    Mirror,
}

impl From<ModeArg> for shadowdiff_pipeline::config::CaptureMode {
    fn from(v: ModeArg) -> Self {
        match v {
            ModeArg::Tee => Self::Tee,
            ModeArg::Mirror => Self::Mirror,
        }
    }
}

/// Flags every replaying command shares (`run`, the distributed stages, `import`).
#[derive(Args)]
pub struct CommonArgs {
    /// TOML config file (see shadowdiff.example.toml).
    #[arg(long, env = "SHADOWDIFF_CONFIG")]
    pub config: Option<PathBuf>,
    /// Candidate build as NAME=URL (http:// or https://); repeat for several. Replaces the
    /// file's candidates.
    #[arg(long = "candidate", env = "SHADOWDIFF_CANDIDATES", value_delimiter = ',', value_parser = parse_candidate)]
    pub candidates: Vec<CandidateConfig>,
    /// Second instance of the control build, to measure noise (A/A). Like --control and
    /// --candidate, http:// or https:// (see --tls-ca-file).
    #[arg(long, env = "SHADOWDIFF_SECONDARY")]
    pub secondary: Option<String>,
    /// Data directory of the embedded store [default: ./shadowdiff-data].
    #[arg(long, env = "SHADOWDIFF_DATA")]
    pub data: Option<PathBuf>,
    /// Experiment name under which results are stored [default: default].
    #[arg(long, env = "SHADOWDIFF_EXPERIMENT")]
    pub experiment: Option<String>,
    /// Time each candidate has to answer, in ms [default: 5000].
    #[arg(long, env = "SHADOWDIFF_TIMEOUT_MS")]
    pub timeout_ms: Option<u64>,
    /// Exchanges replayed at once [default: 64].
    #[arg(long, env = "SHADOWDIFF_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// PEM file of CA certificates trusted for https:// control, candidates and secondary,
    /// besides the built-in Mozilla roots (a private CA) [file: tls.ca_file].
    #[arg(long = "tls-ca-file", env = "SHADOWDIFF_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate shown to https:// servers that require mTLS; needs
    /// --tls-client-key [file: tls.client_cert].
    #[arg(long = "tls-client-cert", env = "SHADOWDIFF_TLS_CLIENT_CERT")]
    pub tls_client_cert: Option<PathBuf>,
    /// PEM private key of --tls-client-cert [file: tls.client_key].
    #[arg(long = "tls-client-key", env = "SHADOWDIFF_TLS_CLIENT_KEY")]
    pub tls_client_key: Option<PathBuf>,
}

impl CommonArgs {
    /// The config file (or defaults) with these flags applied.
    pub fn to_config(&self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if !self.candidates.is_empty() {
            c.replay.candidates = self.candidates.clone();
        }
        if let Some(v) = &self.secondary {
            c.replay.secondary = Some(v.clone());
        }
        if let Some(v) = &self.data {
            c.data_dir = v.clone();
        }
        if let Some(v) = &self.experiment {
            c.experiment = v.clone();
        }
        if let Some(v) = self.timeout_ms {
            c.replay.timeout_ms = v;
        }
        if let Some(v) = self.concurrency {
            c.replay.concurrency = v;
        }
        if let Some(v) = &self.tls_ca_file {
            c.tls.ca_file = Some(v.clone());
        }
        if let Some(v) = &self.tls_client_cert {
            c.tls.client_cert = Some(v.clone());
        }
        if let Some(v) = &self.tls_client_key {
            c.tls.client_key = Some(v.clone());
        }
        Ok(c)
    }
}

/// `--log-format`, shared by every command that logs.
#[derive(Args)]
pub struct LogArgs {
    /// Log format on stderr.
    #[arg(
        long = "log-format",
        value_enum,
        env = "SHADOWDIFF_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormatArg,
}

/// Settings given on the command line win over the environment, which wins over the file.
#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address the tap listens on [default: 127.0.0.1:8080].
    #[arg(long, env = "SHADOWDIFF_LISTEN")]
    pub listen: Option<String>,
    /// URL of the production service the tap forwards to, e.g. http://127.0.0.1:8081 or
    /// https://api.internal (see --tls-ca-file).
    #[arg(long, env = "SHADOWDIFF_CONTROL")]
    pub control: Option<String>,
    /// Admin address for /metrics, /healthz, /readyz [default: 127.0.0.1:9464]; "" disables.
    #[arg(long, env = "SHADOWDIFF_ADMIN")]
    pub admin: Option<String>,
    /// Bodies are copied up to this many bytes [default: 262144].
    #[arg(long, env = "SHADOWDIFF_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// Captured exchanges waiting for replay before new ones are dropped [default: 10000].
    #[arg(long, env = "SHADOWDIFF_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,
    /// Bytes of captured bodies held between tap and differ before new exchanges are dropped
    /// [default: 134217728 = 128 MiB].
    #[arg(long, env = "SHADOWDIFF_QUEUE_MAX_BYTES")]
    pub queue_max_bytes: Option<u64>,
    /// Time in-flight work has after SIGTERM, in ms [default: 10000].
    #[arg(long, env = "SHADOWDIFF_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Threads serving the tap's connections, each with its own event loop and connections to
    /// the control, like nginx's workers [default: 0 = one per core].
    #[arg(long = "tap-threads", env = "SHADOWDIFF_TAP_THREADS")]
    pub tap_threads: Option<usize>,
    /// Replay threads, each with its own event loop, share of the capture queue and connections
    /// to the targets; raise it when copies are dropped because replay cannot keep up (one
    /// costs least at a steady rate) [default: 1; 0 = one per core].
    #[arg(long = "replay-threads", env = "SHADOWDIFF_REPLAY_THREADS")]
    pub replay_threads: Option<usize>,
    /// A client's request head must arrive whole within this many ms of its first byte (and a
    /// new connection must start one within it), else 408 and close [default: 15000].
    #[arg(long = "head-timeout-ms", env = "SHADOWDIFF_HEAD_TIMEOUT_MS")]
    pub head_timeout_ms: Option<u64>,
    /// Idle kept-alive client connections are closed after this many ms [default: 60000].
    #[arg(
        long = "keep-alive-timeout-ms",
        env = "SHADOWDIFF_KEEP_ALIVE_TIMEOUT_MS"
    )]
    pub keep_alive_timeout_ms: Option<u64>,
    /// A request body may pause this many ms between reads, else 408 and close [default: 30000].
    #[arg(long = "body-timeout-ms", env = "SHADOWDIFF_BODY_TIMEOUT_MS")]
    pub body_timeout_ms: Option<u64>,
    /// Client connections served at once; beyond it new ones get 503 and are closed. The
    /// open-files limit must allow twice as many [default: 10000].
    #[arg(long = "max-connections", env = "SHADOWDIFF_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// How requests arrive: `tee` proxies to --control (production) and captures its answer;
    /// `mirror` receives requests mirrored by nginx, Envoy or Istio, answers 202 once read, and
    /// asks --control (then a control replica) for the baseline [default: tee].
    #[arg(long, value_enum, env = "SHADOWDIFF_MODE")]
    pub mode: Option<ModeArg>,
    #[command(flatten)]
    pub log: LogArgs,
}

impl RunArgs {
    /// The file (or defaults), then every flag or variable that was given.
    pub fn to_config(&self) -> anyhow::Result<Config> {
        let mut c = self.common.to_config()?;
        if let Some(v) = &self.listen {
            c.capture.listen = v.clone();
        }
        if let Some(v) = &self.control {
            c.capture.control = Some(v.clone());
        }
        if let Some(v) = &self.admin {
            c.admin.listen = v.clone();
        }
        if let Some(v) = self.body_limit {
            c.capture.body_limit = v;
        }
        if let Some(v) = self.queue_capacity {
            c.capture.queue_capacity = v;
        }
        if let Some(v) = self.queue_max_bytes {
            c.capture.queue_max_bytes = v;
        }
        if let Some(v) = self.shutdown_grace_ms {
            c.pipeline.shutdown_grace_ms = v;
        }
        if let Some(v) = self.tap_threads {
            c.capture.threads = v;
        }
        if let Some(v) = self.replay_threads {
            c.replay.threads = v;
        }
        if let Some(v) = self.head_timeout_ms {
            c.capture.head_timeout_ms = v;
        }
        if let Some(v) = self.keep_alive_timeout_ms {
            c.capture.keep_alive_timeout_ms = v;
        }
        if let Some(v) = self.body_timeout_ms {
            c.capture.body_timeout_ms = v;
        }
        if let Some(v) = self.max_connections {
            c.capture.max_connections = v;
        }
        if let Some(v) = self.mode {
            c.capture.mode = v.into();
        }
        Ok(c)
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Resolves on the first SIGTERM or Ctrl-C; a second one exits at once.
pub(crate) async fn first_signal() {
    wait_signal().await;
    tokio::spawn(async {
        wait_signal().await;
        eprintln!("Second signal: exiting without draining.");
        std::process::exit(130);
    });
}

async fn wait_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(crate) fn summary_line(stats: &PipelineStats) -> String {
    let g = PipelineStats::get;
    format!(
        "captured {} (dropped {} queue full, {} other), replayed {}, blocked {}, compared {}, mismatched {}, candidate errors {}, records written {}",
        g(&stats.captured),
        g(&stats.dropped_queue_full),
        g(&stats.dropped_other),
        g(&stats.replayed),
        g(&stats.blocked),
        g(&stats.compared),
        g(&stats.mismatched),
        g(&stats.target_errors),
        g(&stats.records_written),
    )
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log.log_format.into());
    let config = args.to_config()?;
    let settings = config.validate().context("invalid configuration")?;
    let data_dir = settings.data_dir.clone();
    let store = EmbeddedStore::open(&data_dir)?;
    runtime()?.block_on(async move {
        let pipeline = EmbeddedPipeline::start(settings, Box::new(store)).await?;
        tracing::info!(
            tap = %pipeline.addr,
            admin = ?pipeline.admin_addr,
            sandbox = ?pipeline.sandbox_addr,
            data = %data_dir.display(),
            "Pipeline running; send traffic to the tap. SIGTERM or Ctrl-C drains and stops."
        );
        first_signal().await;
        tracing::info!("Draining.");
        let stats = pipeline.shutdown().await;
        tracing::info!(summary = %summary_line(&stats), "Stopped.");
        eprintln!(
            "Results are in {}; see them with: shadowdiff report --data {}",
            data_dir.display(),
            data_dir.display()
        );
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Args)]
pub struct DemoArgs {
    /// Requests the traffic generator sends.
    #[arg(long, default_value_t = 2000)]
    pub requests: u64,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Data directory; each demo run is stored as its own experiment.
    #[arg(long, default_value = "./shadowdiff-demo-data")]
    pub data: PathBuf,
    /// Run without the secondary (A/A) service, to see what noise looks like unmasked.
    #[arg(long)]
    pub no_secondary: bool,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Write the report to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub log: LogArgs,
}

/// Redraws one progress line on stderr until dropped; draws nothing unless stderr is a terminal.
struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(stats: Arc<PipelineStats>, total: u64) -> Self {
        use std::io::{IsTerminal, Write};
        if !std::io::stderr().is_terminal() {
            return Self { task: None };
        }
        let task = tokio::spawn(async move {
            let g = PipelineStats::get;
            loop {
                let line = format!(
                    "demo: captured {}/{total}, compared {}, mismatched {}",
                    g(&stats.captured),
                    g(&stats.compared),
                    g(&stats.mismatched)
                );
                {
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r\x1b[2K{line}");
                    let _ = err.flush();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self { task: Some(task) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            eprint!("\r\x1b[2K");
        }
    }
}

pub fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log.log_format.into());
    runtime()?.block_on(async move {
        let control = DemoServer::start(Build::Control).await?;
        let candidate = DemoServer::start(Build::Candidate).await?;
        let secondary = if args.no_secondary {
            None
        } else {
            Some(DemoServer::start(Build::Control).await?)
        };
        let experiment = format!("demo-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S"));
        let mut config = Config {
            experiment: experiment.clone(),
            data_dir: args.data.clone(),
            ..Config::default()
        };
        config.capture.listen = "127.0.0.1:0".to_string();
        config.capture.control = Some(control.url());
        config.replay.candidates = vec![CandidateConfig {
            name: "v2".to_string(),
            url: candidate.url(),
        }];
        config.replay.secondary = secondary.as_ref().map(DemoServer::url);
        config.admin.listen = String::new();
        let settings = config.validate()?;
        let store = EmbeddedStore::open(&args.data)?;
        let pipeline = EmbeddedPipeline::start(settings, Box::new(store)).await?;
        eprintln!(
            "demo: control {}, candidate v2 {}{}, tap {}; sending {} requests…",
            control.url(),
            candidate.url(),
            secondary
                .as_ref()
                .map(|s| format!(", secondary {}", s.url()))
                .unwrap_or_default(),
            pipeline.addr,
            args.requests
        );
        let progress = Progress::start(pipeline.stats.clone(), args.requests);
        let traffic = generate_traffic(
            pipeline.addr,
            args.requests,
            args.concurrency,
            Duration::from_secs(60),
        )
        .await;
        drop(progress);
        let stats: Arc<PipelineStats> = pipeline.shutdown().await;
        eprintln!(
            "demo: {} requests in {:.1}s ({} ok, {} failed); {}",
            traffic.sent,
            traffic.elapsed.as_secs_f64(),
            traffic.ok,
            traffic.failed,
            summary_line(&stats)
        );
        control.stop().await;
        candidate.stop().await;
        if let Some(s) = secondary {
            s.stop().await;
        }
        let (records, _) = EmbeddedStore::open(&args.data)?.read_all()?;
        let query = ReportQuery {
            experiment: Some(experiment.clone()),
            ..ReportQuery::default()
        };
        let report = build_report(&records, &query);
        print_report(&report, args.format, "auto", args.out.as_deref())?;
        if let Some(path) = &args.out {
            eprintln!("demo: report written to {}", path.display());
        }
        eprintln!(
            "demo: stored in {}; again with: shadowdiff report --data {} --experiment {experiment}",
            args.data.display(),
            args.data.display()
        );
        Ok(ExitCode::SUCCESS)
    })
}
