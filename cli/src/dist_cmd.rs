//! The distributed deployment's commands: capture, replay, diff (Kafka, ClickHouse), migrate
//! and gate.

use crate::report_cmd::{parse_time, StoreArgs};
use crate::run_cmd::{first_signal, runtime, summary_line, RunArgs};
use anyhow::Context;
use clap::Args;
use shadowdiff_pipeline::config::{CaptureMode, Config, Needs};
use shadowdiff_pipeline::distributed::{self, with_shutdown};
use shadowdiff_pipeline::init_logging;
use shadowdiff_store::gate::{gate, GateConfig, GateOutcome};
use shadowdiff_store::ReportQuery;
use std::process::ExitCode;

/// Flags of the Kafka/ClickHouse stages, on top of the `run` flags.
#[derive(Args)]
pub struct StageArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Kafka brokers, comma-separated host:port.
    #[arg(long, env = "SHADOWDIFF_KAFKA")]
    pub kafka: Option<String>,
    /// ClickHouse HTTP URL (diff), e.g. http://127.0.0.1:8123.
    #[arg(long, env = "SHADOWDIFF_CLICKHOUSE")]
    pub clickhouse: Option<String>,
    /// ClickHouse database [default: shadowdiff].
    #[arg(long, env = "SHADOWDIFF_CLICKHOUSE_DATABASE")]
    pub database: Option<String>,
    /// Topic of captured exchanges [default: shadowdiff.exchanges].
    #[arg(long, env = "SHADOWDIFF_EXCHANGES_TOPIC")]
    pub exchanges_topic: Option<String>,
    /// Topic of replay results [default: shadowdiff.results].
    #[arg(long, env = "SHADOWDIFF_RESULTS_TOPIC")]
    pub results_topic: Option<String>,
    /// Consumer group of this stage [default: shadowdiff-replay / shadowdiff-diff].
    #[arg(long, env = "SHADOWDIFF_GROUP")]
    pub group: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Capture,
    Replay,
    Diff,
}

impl StageArgs {
    fn to_config(&self, stage: Stage) -> anyhow::Result<Config> {
        let mut c = self.run.to_config()?;
        if let Some(v) = &self.kafka {
            c.kafka.brokers = Some(v.clone());
        }
        if let Some(v) = &self.clickhouse {
            c.clickhouse.url = Some(v.clone());
        }
        if let Some(v) = &self.database {
            c.clickhouse.database = v.clone();
        }
        if let Some(v) = &self.exchanges_topic {
            c.kafka.exchanges_topic = v.clone();
        }
        if let Some(v) = &self.results_topic {
            c.kafka.results_topic = v.clone();
        }
        if let Some(v) = &self.group {
            match stage {
                Stage::Replay => c.kafka.replay_group = v.clone(),
                Stage::Diff => c.kafka.diff_group = v.clone(),
                Stage::Capture => {}
            }
        }
        Ok(c)
    }
}

fn stage(args: StageArgs, stage: Stage) -> anyhow::Result<ExitCode> {
    init_logging(args.run.log.log_format.into());
    let config = args.to_config(stage)?;
    let needs = match stage {
        Stage::Capture => Needs {
            control: config.capture.mode == CaptureMode::Tee,
            candidates: false,
        },
        // In mirror mode --control is the replica that answers in production's place.
        Stage::Replay => Needs {
            control: config.capture.mode == CaptureMode::Mirror,
            candidates: true,
        },
        Stage::Diff => Needs {
            control: false,
            candidates: false,
        },
    };
    let settings = config
        .validate_for(needs)
        .context("invalid configuration")?;
    distributed::brokers(&config.kafka).context("invalid configuration")?;
    if stage == Stage::Diff {
        distributed::clickhouse_config(&config.clickhouse).context("invalid configuration")?;
    }
    let (kafka, clickhouse) = (config.kafka.clone(), config.clickhouse.clone());
    runtime()?.block_on(async move {
        let stats = with_shutdown(first_signal(), |shutdown| async move {
            match stage {
                Stage::Capture => distributed::run_capture(settings, kafka, shutdown, None).await,
                Stage::Replay => distributed::run_replay(settings, kafka, shutdown).await,
                Stage::Diff => distributed::run_diff(settings, kafka, clickhouse, shutdown).await,
            }
        })
        .await?;
        tracing::info!(summary = %summary_line(&stats), "Stopped.");
        Ok(ExitCode::SUCCESS)
    })
}

pub fn capture(args: StageArgs) -> anyhow::Result<ExitCode> {
    stage(args, Stage::Capture)
}

pub fn replay(args: StageArgs) -> anyhow::Result<ExitCode> {
    stage(args, Stage::Replay)
}

pub fn diff(args: StageArgs) -> anyhow::Result<ExitCode> {
    stage(args, Stage::Diff)
}

#[derive(Args)]
pub struct MigrateArgs {
    /// ClickHouse HTTP URL, e.g. http://127.0.0.1:8123.
    #[arg(long, env = "SHADOWDIFF_CLICKHOUSE")]
    pub clickhouse: String,
    /// ClickHouse database.
    #[arg(
        long,
        env = "SHADOWDIFF_CLICKHOUSE_DATABASE",
        default_value = "shadowdiff"
    )]
    pub database: String,
}

pub fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let section = shadowdiff_pipeline::config::ClickHouseSection {
        url: Some(args.clickhouse.clone()),
        database: args.database.clone(),
        ..Default::default()
    };
    let config = distributed::clickhouse_config(&section)?;
    let store = shadowdiff_clickhouse::ClickHouseStore::new(&config)?;
    runtime()?.block_on(async move {
        let version = store
            .server_version()
            .await
            .with_context(|| format!("ClickHouse at {} is not reachable", args.clickhouse))?;
        let applied = store.migrate().await?;
        let all = store.applied_migrations().await?;
        if applied.is_empty() {
            println!(
                "ClickHouse {version}: schema of `{}` is current (migrations {all:?}).",
                args.database
            );
        } else {
            println!(
                "ClickHouse {version}: applied migrations {applied:?} to `{}`.",
                args.database
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Args)]
pub struct GateArgs {
    /// Largest acceptable mismatched/compared per endpoint, as a fraction (0.01 = 1%).
    #[arg(long)]
    pub max_mismatch_rate: f64,
    /// Compared exchanges an endpoint needs before it can pass or fail.
    #[arg(long, default_value_t = 100)]
    pub min_compared: u64,
    /// Largest acceptable errors/(compared+errors) per endpoint; unchecked when absent.
    #[arg(long)]
    pub max_error_rate: Option<f64>,
    /// Only endpoints whose `METHOD /route` contains this text.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Only this candidate.
    #[arg(long)]
    pub candidate: Option<String>,
    /// Only this experiment.
    #[arg(long, env = "SHADOWDIFF_EXPERIMENT")]
    pub experiment: Option<String>,
    /// Only results since then (`30m`, `6h`, `2d` or an RFC 3339 time).
    #[arg(long)]
    pub since: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Exit 0 when every selected endpoint is within budget, 1 when one is not, 2 when the gate
/// cannot decide (too few samples, store unreachable, bad flags).
pub fn gate_cmd(args: GateArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.max_mismatch_rate) {
        anyhow::bail!(
            "--max-mismatch-rate {} must be a fraction between 0 and 1 (0.01 = 1%)",
            args.max_mismatch_rate
        );
    }
    let query = ReportQuery {
        experiment: args.experiment.clone(),
        since_ms: args
            .since
            .as_deref()
            .map(|v| parse_time("--since", v))
            .transpose()?,
        until_ms: None,
        endpoint: None,
        samples: 1,
    };
    let report = args.store.load(&query)?;
    let config = GateConfig {
        max_mismatch_rate: args.max_mismatch_rate,
        min_compared: args.min_compared,
        endpoint: args.endpoint.clone(),
        candidate: args.candidate.clone(),
        max_error_rate: args.max_error_rate,
    };
    match gate(&report, &config) {
        GateOutcome::Pass => {
            println!("PASS: every endpoint is within budget.");
            Ok(ExitCode::SUCCESS)
        }
        GateOutcome::Fail(reasons) => {
            println!("FAIL:");
            for r in reasons {
                println!("  {r}");
            }
            Ok(ExitCode::from(1))
        }
        GateOutcome::Undecided(reasons) => {
            println!("UNDECIDED:");
            for r in reasons {
                println!("  {r}");
            }
            Ok(ExitCode::from(2))
        }
    }
}
