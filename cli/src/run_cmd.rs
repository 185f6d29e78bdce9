use crate::flags::{
    self, AdminArgs, ConfigArg, ControlArgs, DataArg, DiffWorkersArg, ExperimentArg, ReplayArgs,
    ReplayThreadsArg, TapArgs, TlsArgs,
};
use crate::process::{first_signal, runtime, summary_line, LogArgs};
use crate::report_cmd::{print_report, Format};
use anyhow::Context;
use clap::{ArgMatches, Args};
use shadowdiff_pipeline::config::{CandidateConfig, Config};
use shadowdiff_pipeline::demo::{generate_traffic, Build, DemoServer};
use shadowdiff_pipeline::embedded::EmbeddedPipeline;
use shadowdiff_pipeline::init_logging;
use shadowdiff_pipeline::stages::PipelineStats;
use shadowdiff_store::{build_report, EmbeddedStore, ReportQuery};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// `run`: flags win over their `SHADOWDIFF_*` variables, which win over the file, which wins
/// over the defaults shown here.
#[derive(Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub file: ConfigArg,
    #[command(flatten)]
    pub experiment: ExperimentArg,
    #[command(flatten)]
    pub data: DataArg,
    #[command(flatten)]
    pub control: ControlArgs,
    #[command(flatten)]
    pub tap: TapArgs,
    #[command(flatten)]
    pub replay: ReplayArgs,
    #[command(flatten)]
    pub replay_threads: ReplayThreadsArg,
    #[command(flatten)]
    pub diff_workers: DiffWorkersArg,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

impl RunArgs {
    /// The file (or defaults), then every flag or variable that was given.
    pub(crate) fn to_config(&self, matches: &ArgMatches) -> anyhow::Result<Config> {
        flags::load(
            matches,
            &self.file,
            &[
                &self.experiment,
                &self.data,
                &self.control,
                &self.tap,
                &self.replay,
                &self.replay_threads,
                &self.diff_workers,
                &self.tls,
                &self.admin,
            ],
        )
    }
}

pub(crate) fn run(args: RunArgs, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    init_logging(args.log.log_format.into());
    let config = args.to_config(matches)?;
    let settings = config.validate().context("invalid configuration")?;
    let data_dir = settings.common.data_dir.clone();
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
pub(crate) struct DemoArgs {
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

pub(crate) fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
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
