//! `shadowdiff import envoy|goreplay`: replay recorded traffic through the embedded stages.

use crate::flags::{
    self, BrokersArg, ConfigArg, DataArg, ExchangesTopicArg, ExperimentArg, Flags, Layer,
    ReplayArgs, TlsArgs,
};
use crate::process::{runtime, LogArgs};
use crate::report_cmd::{print_report, Format};
use anyhow::Context;
use clap::{ArgMatches, Args, Subcommand};
use shadowdiff_pipeline::config::{CaptureMode, Config, ConfigError};
use shadowdiff_pipeline::init_logging;
use shadowdiff_pipeline::offline::replay_offline;
use shadowdiff_pipeline::stages::PipelineStats;
use shadowdiff_sources::{self as import, Imported};
use shadowdiff_store::{build_report, EmbeddedStore, ReportQuery};
use std::path::PathBuf;
use std::process::ExitCode;

/// Shown under `shadowdiff import --help` and each source's `--help`.
const EXIT_STATUS: &str = "Exit status: 0 when at least one exchange was imported (whatever the \
    candidates answered; see the summary and the report), 1 when nothing could be imported (no \
    records, or every record skipped: the skips are counted by reason), 2 on a usage error or a \
    path that cannot be read.";

// Its about text is the `Import` variant's doc comment (main.rs).
#[derive(Args)]
#[command(after_help = EXIT_STATUS)]
pub(crate) struct ImportArgs {
    #[command(subcommand)]
    pub source: ImportSource,
}

#[derive(Subcommand)]
pub(crate) enum ImportSource {
    /// Envoy HTTP tap traces: HttpBufferedTrace JSON and streamed HttpStreamedTraceSegment JSON
    /// (joined by trace_id across files), JSON_BODY_AS_BYTES or JSON_BODY_AS_STRING; files, or
    /// directories of them (*.json, *.json.gz, walked recursively).
    Envoy(ImportOpts),
    /// GoReplay .gor and .gor.gz files (LF or CRLF line endings), or directories of them:
    /// requests paired with their original responses by id across the files.
    Goreplay(ImportOpts),
}

#[derive(Args)]
#[command(after_help = EXIT_STATUS)]
pub(crate) struct ImportOpts {
    /// Files or directories to read.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub file: ConfigArg,
    #[command(flatten)]
    pub experiment: ExperimentArg,
    #[command(flatten)]
    pub data: DataArg,
    #[command(flatten)]
    pub replay: ReplayArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Control replica, asked for requests recorded without a response.
    #[arg(long, env = "SHADOWDIFF_CONTROL")]
    pub control: Option<String>,
    /// Publish the exchanges to Kafka (comma-separated brokers) for `shadowdiff replay` and
    /// `shadowdiff diff` processes, instead of replaying them here.
    #[command(flatten)]
    pub brokers: BrokersArg,
    #[command(flatten)]
    pub exchanges_topic: ExchangesTopicArg,
    /// Print the report of this import after the summary.
    #[arg(long, value_enum)]
    pub report: Option<Format>,
    #[command(flatten)]
    pub log: LogArgs,
}

/// `import --control`: a replica, so the mode is mirror when it is given.
struct ImportControl<'a>(&'a Option<String>);

impl Flags for ImportControl<'_> {
    fn layer(&self, l: &mut Layer<'_>) -> Result<(), ConfigError> {
        l.set("control", "capture.control", self.0)
    }
}

impl ImportOpts {
    fn to_config(&self, matches: &ArgMatches) -> anyhow::Result<Config> {
        let mut c = flags::load(
            matches,
            &self.file,
            &[
                &self.experiment,
                &self.data,
                &self.replay,
                &self.tls,
                &ImportControl(&self.control),
                &self.brokers,
                &self.exchanges_topic,
            ],
        )?;
        // A control replica is only asked for exchanges without a recorded response.
        c.capture.mode = if c.capture.control.is_some() {
            CaptureMode::Mirror
        } else {
            CaptureMode::Tee
        };
        Ok(c)
    }
}

pub(crate) fn import(args: ImportArgs, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    let (kind, opts) = match args.source {
        ImportSource::Envoy(o) => ("envoy", o),
        ImportSource::Goreplay(o) => ("goreplay", o),
    };
    init_logging(opts.log.log_format.into());
    let config = opts.to_config(matches)?;
    let invalid = "invalid configuration";
    let common = config.common().context(invalid)?;
    // Published to Kafka, the candidates are the `replay` processes' business: only `[kafka]`
    // is checked then; replayed here, `[replay]` and `[diff]` are.
    let publish_to = match config.kafka.brokers {
        Some(_) => {
            // The replay processes redact with their key: it must be the same.
            config.shared_redaction_key().context(invalid)?;
            Some(config.kafka().context(invalid)?)
        }
        None => None,
    };
    let stages = match publish_to {
        Some(_) => None,
        None => Some((
            config.replay(&common).context(invalid)?,
            config.diff(&common).context(invalid)?,
        )),
    };
    let experiment = common.experiment.clone();
    // An unreadable path is an error (exit 2, via main); a bad record is a skip.
    let (files, imported): (Vec<PathBuf>, Imported) = match kind {
        "envoy" => {
            let files = import::collect_files(&opts.paths, &["json", "json.gz"])?;
            let imported = import::envoy::import_files(&files, &experiment)?;
            (files, imported)
        }
        _ => {
            let files = import::collect_files(&opts.paths, &["gor", "gor.gz"])?;
            let imported = import::goreplay::import_files(&files, &experiment)?;
            (files, imported)
        }
    };
    for why in &imported.skipped {
        tracing::warn!(%why, "Skipped a record.");
    }
    let skips = imported.skip_summary();
    if imported.exchanges.is_empty() {
        let what = match &skips {
            Some(s) => format!("every record was skipped ({s})"),
            None => format!("no records in {} file(s)", files.len()),
        };
        eprintln!("nothing imported from the {kind} input: {what}");
        return Ok(ExitCode::from(1));
    }
    let total = imported.exchanges.len() as u64;
    let without_control = imported
        .exchanges
        .iter()
        .filter(|e| e.control.is_none())
        .count();
    if without_control > 0 && opts.control.is_none() && config.capture.control.is_none() {
        tracing::warn!(
            without_control,
            "Some records have no response; pass --control URL (a control replica) to compare them."
        );
    }
    if let Some(kafka) = &publish_to {
        let bar = progress_bar(total);
        let delivered = runtime()?.block_on(async {
            let bar = bar.clone();
            shadowdiff_pipeline::distributed::publish_exchanges(
                kafka,
                &common.routes,
                imported.exchanges,
                move |n| bar.set_position(n),
            )
            .await
        })?;
        bar.finish_and_clear();
        println!(
            "published {delivered} {kind} exchanges to `{}` ({} records skipped)",
            kafka.exchanges_topic,
            imported.skipped.len()
        );
        if let Some(s) = &skips {
            println!("{s}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some((replay, diff)) = stages else {
        anyhow::bail!("nothing to do: neither replaying here nor publishing to Kafka");
    };
    let data_dir = common.data_dir.clone();
    let store = EmbeddedStore::open(&data_dir)?;
    let bar = progress_bar(total);
    let stats: std::sync::Arc<PipelineStats> = runtime()?.block_on(async {
        let bar = bar.clone();
        replay_offline(
            &replay,
            &diff,
            common.shutdown_grace,
            imported.exchanges,
            Box::new(store),
            move |n| bar.set_position(n),
        )
        .await
    })?;
    bar.finish_and_clear();
    let g = PipelineStats::get;
    println!(
        "imported {} {kind} exchanges ({} records skipped): replayed {}, blocked {}, compared {}, mismatched {}, candidate errors {}, records written {}",
        total,
        imported.skipped.len(),
        g(&stats.replayed),
        g(&stats.blocked),
        g(&stats.compared),
        g(&stats.mismatched),
        g(&stats.target_errors),
        g(&stats.records_written),
    );
    if let Some(s) = &skips {
        println!("{s}");
    }
    if let Some(format) = opts.report {
        let (records, _) = EmbeddedStore::open(&data_dir)?.read_all()?;
        let query = ReportQuery {
            experiment: Some(experiment),
            ..ReportQuery::default()
        };
        print_report(&build_report(&records, &query), format, "auto", None)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on a terminal; hidden when stderr is not one.
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("import {bar:40} {pos}/{len} exchanges ({eta})")
    {
        bar.set_style(style);
    }
    bar
}
