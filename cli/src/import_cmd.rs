//! `shadowdiff import envoy|goreplay`: replay recorded traffic through the embedded stages.

use crate::report_cmd::{print_report, Format};
use crate::run_cmd::{runtime, CommonArgs, LogArgs};
use anyhow::Context;
use clap::{Args, Subcommand};
use shadowdiff_pipeline::config::{CaptureMode, Config, Needs};
use shadowdiff_pipeline::init_logging;
use shadowdiff_pipeline::offline::replay_offline;
use shadowdiff_pipeline::stages::PipelineStats;
use shadowdiff_sources::{self as import, Imported};
use shadowdiff_store::{build_report, EmbeddedStore, ReportQuery};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub source: ImportSource,
}

#[derive(Subcommand)]
pub enum ImportSource {
    /// Envoy HTTP tap traces: HttpBufferedTrace JSON files (JSON_BODY_AS_BYTES or
    /// JSON_BODY_AS_STRING), or directories of them (*.json, walked recursively).
    Envoy(ImportOpts),
    /// GoReplay .gor files: requests paired with their original responses by id.
    Goreplay(ImportOpts),
}

#[derive(Args)]
pub struct ImportOpts {
    /// Files or directories to read.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Control replica, asked for requests recorded without a response.
    #[arg(long, env = "SHADOWDIFF_CONTROL")]
    pub control: Option<String>,
    /// Publish the exchanges to Kafka (comma-separated brokers) for `shadowdiff replay` and
    /// `shadowdiff diff` processes, instead of replaying them here.
    #[arg(long, env = "SHADOWDIFF_KAFKA")]
    pub kafka: Option<String>,
    /// Topic of captured exchanges, with --kafka [default: shadowdiff.exchanges].
    #[arg(long, env = "SHADOWDIFF_EXCHANGES_TOPIC")]
    pub exchanges_topic: Option<String>,
    /// Print the report of this import after the summary.
    #[arg(long, value_enum)]
    pub report: Option<Format>,
    #[command(flatten)]
    pub log: LogArgs,
}

impl ImportOpts {
    fn to_config(&self) -> anyhow::Result<Config> {
        let mut c = self.common.to_config()?;
        if let Some(v) = &self.control {
            c.capture.control = Some(v.clone());
        }
        // A control replica is only asked for exchanges without a recorded response.
        c.capture.mode = if c.capture.control.is_some() {
            CaptureMode::Mirror
        } else {
            CaptureMode::Tee
        };
        if let Some(v) = &self.kafka {
            c.kafka.brokers = Some(v.clone());
        }
        if let Some(v) = &self.exchanges_topic {
            c.kafka.exchanges_topic = v.clone();
        }
        // `import` serves nothing: no tap, no admin port.
        c.capture.listen = "127.0.0.1:0".to_string();
        c.admin.listen = String::new();
        Ok(c)
    }
}

pub fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let (kind, opts) = match args.source {
        ImportSource::Envoy(o) => ("envoy", o),
        ImportSource::Goreplay(o) => ("goreplay", o),
    };
    init_logging(opts.log.log_format.into());
    let config = opts.to_config()?;
    // Published to Kafka, the candidates are the `replay` processes' business.
    let settings = config
        .validate_for(Needs {
            control: false,
            candidates: opts.kafka.is_none(),
        })
        .context("invalid configuration")?;
    let experiment = settings.experiment.clone();
    let imported: Imported = match kind {
        "envoy" => {
            let files = import::collect_files(&opts.paths, &["json"])?;
            import::envoy::import_files(&files, &experiment)?
        }
        _ => {
            let files = import::collect_files(&opts.paths, &["gor"])?;
            let mut all = Imported::default();
            for f in &files {
                let one = import::goreplay::import_file(f, &experiment)?;
                all.exchanges.extend(one.exchanges);
                all.skipped.extend(one.skipped);
            }
            all
        }
    };
    for why in &imported.skipped {
        tracing::warn!(why, "Skipped a record.");
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
    if opts.kafka.is_some() {
        let bar = progress_bar(total);
        let delivered = runtime()?.block_on(async {
            let bar = bar.clone();
            shadowdiff_pipeline::distributed::publish_exchanges(
                &config.kafka,
                &settings.routes,
                imported.exchanges,
                move |n| bar.set_position(n),
            )
            .await
        })?;
        bar.finish_and_clear();
        println!(
            "published {delivered} {kind} exchanges to `{}` ({} records skipped)",
            config.kafka.exchanges_topic,
            imported.skipped.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let data_dir = settings.data_dir.clone();
    let store = EmbeddedStore::open(&data_dir)?;
    let bar = progress_bar(total);
    let stats: std::sync::Arc<PipelineStats> = runtime()?.block_on(async {
        let bar = bar.clone();
        replay_offline(&settings, imported.exchanges, Box::new(store), move |n| {
            bar.set_position(n)
        })
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
