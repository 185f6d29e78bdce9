//! The distributed deployment's commands: capture, replay, diff (Kafka, ClickHouse), migrate
//! and gate.

use crate::flags::{
    self, AdminArgs, BrokersArg, ClickHouseArgs, ConfigArg, ControlArgs, DiffGroupArg,
    DiffWorkersArg, ExchangesTopicArg, ExperimentArg, ReplayArgs, ReplayGroupArg, ResultsTopicArg,
    TapArgs, TlsArgs,
};
use crate::process::{first_signal, runtime, summary_line, LogArgs};
use crate::report_cmd::{parse_time, StoreArgs};
use anyhow::Context;
use clap::{ArgMatches, Args};
use shadowdiff_pipeline::distributed::{self, with_shutdown};
use shadowdiff_pipeline::init_logging;
use shadowdiff_store::gate::{gate, GateConfig, GateOutcome};
use shadowdiff_store::ReportQuery;
use std::process::ExitCode;

/// `capture`: the tap, publishing to Kafka.
#[derive(Args)]
pub(crate) struct CaptureArgs {
    #[command(flatten)]
    pub file: ConfigArg,
    #[command(flatten)]
    pub experiment: ExperimentArg,
    #[command(flatten)]
    pub control: ControlArgs,
    #[command(flatten)]
    pub tap: TapArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub brokers: BrokersArg,
    #[command(flatten)]
    pub exchanges_topic: ExchangesTopicArg,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// `replay`: a consumer-group member replaying exchanges to candidates.
#[derive(Args)]
pub(crate) struct ReplayStageArgs {
    #[command(flatten)]
    pub file: ConfigArg,
    #[command(flatten)]
    pub control: ControlArgs,
    #[command(flatten)]
    pub replay: ReplayArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub brokers: BrokersArg,
    #[command(flatten)]
    pub exchanges_topic: ExchangesTopicArg,
    #[command(flatten)]
    pub results_topic: ResultsTopicArg,
    #[command(flatten)]
    pub group: ReplayGroupArg,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// `diff`: a consumer-group member writing diff rows to ClickHouse.
#[derive(Args)]
pub(crate) struct DiffStageArgs {
    #[command(flatten)]
    pub file: ConfigArg,
    #[command(flatten)]
    pub brokers: BrokersArg,
    #[command(flatten)]
    pub results_topic: ResultsTopicArg,
    #[command(flatten)]
    pub group: DiffGroupArg,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub diff_workers: DiffWorkersArg,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// Runs a stage until SIGTERM or Ctrl-C, then prints its summary.
fn until_signal<F, Fut>(stage: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<
        Output = Result<
            std::sync::Arc<shadowdiff_pipeline::stages::PipelineStats>,
            distributed::DistributedError,
        >,
    >,
{
    runtime()?.block_on(async move {
        let stats = with_shutdown(first_signal(), stage).await?;
        tracing::info!(summary = %summary_line(&stats), "Stopped.");
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn capture(args: CaptureArgs, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    init_logging(args.log.log_format.into());
    let config = flags::load(
        matches,
        &args.file,
        &[
            &args.experiment,
            &args.control,
            &args.tap,
            &args.tls,
            &args.brokers,
            &args.exchanges_topic,
            &args.admin,
        ],
    )?;
    let invalid = "invalid configuration";
    config.shared_redaction_key().context(invalid)?;
    let common = config.common().context(invalid)?;
    let tap = config.tap(&common).context(invalid)?;
    let kafka = config.kafka().context(invalid)?;
    until_signal(|shutdown| distributed::run_capture(common, tap, kafka, shutdown, None))
}

pub(crate) fn replay(args: ReplayStageArgs, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    init_logging(args.log.log_format.into());
    let config = flags::load(
        matches,
        &args.file,
        &[
            &args.control,
            &args.replay,
            &args.tls,
            &args.brokers,
            &args.exchanges_topic,
            &args.results_topic,
            &args.group,
            &args.admin,
        ],
    )?;
    let invalid = "invalid configuration";
    config.shared_redaction_key().context(invalid)?;
    let common = config.common().context(invalid)?;
    // In mirror mode --control is the replica that answers in production's place.
    let replay = config.replay(&common).context(invalid)?;
    let kafka = config.kafka().context(invalid)?;
    until_signal(|shutdown| distributed::run_replay(common, replay, kafka, shutdown))
}

pub(crate) fn diff(args: DiffStageArgs, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    init_logging(args.log.log_format.into());
    let config = flags::load(
        matches,
        &args.file,
        &[
            &args.brokers,
            &args.results_topic,
            &args.group,
            &args.clickhouse,
            &args.diff_workers,
            &args.admin,
        ],
    )?;
    let invalid = "invalid configuration";
    let common = config.common().context(invalid)?;
    let diff = config.diff(&common).context(invalid)?;
    let kafka = config.kafka().context(invalid)?;
    let clickhouse = config.clickhouse().context(invalid)?;
    until_signal(|shutdown| distributed::run_diff(common, diff, kafka, clickhouse, shutdown))
}

#[derive(Args)]
pub(crate) struct MigrateArgs {
    /// ClickHouse HTTP URL, e.g. http://127.0.0.1:8123 (not needed with --print-sql).
    #[arg(
        long,
        env = "SHADOWDIFF_CLICKHOUSE",
        required_unless_present = "print_sql"
    )]
    pub clickhouse: Option<String>,
    /// ClickHouse database.
    #[arg(long, env = "SHADOWDIFF_CLICKHOUSE_DATABASE", default_value_t = flags::DEFAULTS.clickhouse.database.clone())]
    pub database: String,
    /// Print the schema as SQL instead of applying it, for review or to apply by hand
    /// (deploy/clickhouse/ holds both flavours for the default database).
    #[arg(long)]
    pub print_sql: bool,
    /// The server the printed SQL is for: `18.16` (up to 19.8: plain String columns) or
    /// `current` (19.9 and later: LowCardinality). `migrate` itself asks the server.
    #[arg(long, value_enum, default_value_t = FlavorArg::Current, requires = "print_sql")]
    pub flavor: FlavorArg,
    /// Partition of the tables migrate creates: one per day or per month. Tables that exist keep
    /// theirs.
    #[arg(long, value_enum, default_value_t = PartitionArg::Day)]
    pub partition: PartitionArg,
    /// Keep result rows this many days (ClickHouse TTL; 19.6 and later); forever when absent.
    /// Applied on every migrate, so a new value replaces the old.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "print_sql")]
    pub ttl_days: Option<u32>,
    /// Keep the per-minute aggregates (diff_minutes) this many days; forever when absent.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "print_sql")]
    pub minutes_ttl_days: Option<u32>,
}

/// `--partition` of `migrate`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum PartitionArg {
    Day,
    Month,
}

impl From<PartitionArg> for shadowdiff_clickhouse::Partition {
    fn from(p: PartitionArg) -> Self {
        match p {
            PartitionArg::Day => Self::Day,
            PartitionArg::Month => Self::Month,
        }
    }
}

/// `--flavor` of `migrate --print-sql`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum FlavorArg {
    /// ClickHouse 18.16 up to 19.8.
    #[value(name = "18.16")]
    Legacy,
    /// ClickHouse 19.9 and later.
    Current,
}

pub(crate) fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    if args.print_sql {
        let flavor = match args.flavor {
            FlavorArg::Legacy => shadowdiff_clickhouse::Flavor::Legacy,
            FlavorArg::Current => shadowdiff_clickhouse::Flavor::Modern,
        };
        crate::report_cmd::check_database_name(&args.database)?;
        let options = shadowdiff_clickhouse::SchemaOptions {
            flavor,
            partition: args.partition.into(),
        };
        print!(
            "{}",
            shadowdiff_clickhouse::schema_sql(&args.database, &options)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let clickhouse_url = args.clickhouse.clone().unwrap_or_default();
    let mut file = shadowdiff_pipeline::config::Config::default();
    file.clickhouse.url = Some(clickhouse_url.clone());
    file.clickhouse.database = args.database.clone();
    file.clickhouse.partition = args.partition.into();
    file.clickhouse.ttl_days = args.ttl_days;
    file.clickhouse.minutes_ttl_days = args.minutes_ttl_days;
    let settings = file.clickhouse().context("invalid configuration")?;
    let store = shadowdiff_clickhouse::ClickHouseStore::new(&settings.config)?;
    runtime()?.block_on(async move {
        let version = store
            .server_version()
            .await
            .with_context(|| format!("ClickHouse at {clickhouse_url} is not reachable"))?;
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
pub(crate) struct GateArgs {
    /// Largest acceptable mismatched/compared per endpoint, as a fraction (0.01 = 1%).
    #[arg(long)]
    pub max_mismatch_rate: f64,
    /// Compared exchanges an endpoint needs before it can pass or fail.
    #[arg(long, default_value_t = 100)]
    pub min_compared: u64,
    /// Largest acceptable failure rate per endpoint (transport errors and 5xx the control did
    /// not answer, per request replayed); unchecked when absent. An error-rate regression (the
    /// candidate fails significantly more than the control) fails the gate anyway.
    #[arg(long)]
    pub max_error_rate: Option<f64>,
    /// Largest acceptable candidate p50 or p99 latency over its baseline's (the secondary's,
    /// else the control's), counted when the candidate is significantly slower; unchecked when
    /// absent. E.g. 1.5.
    #[arg(long)]
    pub max_latency_ratio: Option<f64>,
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
pub(crate) fn gate_cmd(args: GateArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.max_mismatch_rate) {
        anyhow::bail!(
            "--max-mismatch-rate {} must be a fraction between 0 and 1 (0.01 = 1%)",
            args.max_mismatch_rate
        );
    }
    if let Some(ratio) = args.max_latency_ratio {
        if !(ratio.is_finite() && ratio >= 1.0) {
            anyhow::bail!("--max-latency-ratio {ratio} must be 1 or more (1.5 = 50% slower)");
        }
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
        max_latency_ratio: args.max_latency_ratio,
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
