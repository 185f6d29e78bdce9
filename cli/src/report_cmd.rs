use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use shadowdiff_store::{build_report, EmbeddedStore, Report, ReportQuery};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Format {
    /// For a terminal: fits 80 columns, colour only on a terminal.
    Text,
    /// The report contract (docs/contracts.md#report), for CI jobs and the gate.
    Json,
    /// One self-contained HTML page (no external assets), e.g. with --out report.html.
    Html,
}

/// Where stored results are read from: the embedded store, or ClickHouse.
#[derive(Args)]
pub(crate) struct StoreArgs {
    /// Data directory of the embedded store.
    #[arg(long, env = "SHADOWDIFF_DATA", default_value = "./shadowdiff-data")]
    pub data: PathBuf,
    /// Read results from ClickHouse (the distributed deployment) instead of --data, e.g.
    /// http://127.0.0.1:8123.
    #[arg(long, env = "SHADOWDIFF_CLICKHOUSE")]
    pub clickhouse: Option<String>,
    /// ClickHouse database.
    #[arg(
        long,
        env = "SHADOWDIFF_CLICKHOUSE_DATABASE",
        default_value = "shadowdiff"
    )]
    pub database: String,
}

impl StoreArgs {
    pub(crate) fn load(&self, query: &ReportQuery) -> anyhow::Result<Report> {
        load_report(
            &self.data,
            self.clickhouse.as_deref(),
            &self.database,
            query,
        )
    }
}

#[derive(Args)]
pub(crate) struct ReportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Write the report to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Only this experiment.
    #[arg(long, env = "SHADOWDIFF_EXPERIMENT")]
    pub experiment: Option<String>,
    /// Only results captured since then: a duration ago (`90s`, `30m`, `6h`, `2d`) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only results captured before then (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Only endpoints whose `METHOD /route` contains this text.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Sample diffs per endpoint.
    #[arg(long, default_value_t = 3)]
    pub samples: usize,
    /// Colour: auto (only on a terminal), always, never.
    #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,
}

/// `90s`, `30m`, `6h`, `2d` ago, or an RFC 3339 time, as Unix milliseconds.
pub(crate) fn parse_time(flag: &str, value: &str) -> anyhow::Result<u64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(t.timestamp_millis().max(0) as u64);
    }
    let (number, unit) = value.split_at(
        value
            .trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .len(),
    );
    let n: u64 = number.parse().ok().filter(|_| !unit.is_empty()).with_context(|| {
        format!("{flag} `{value}`: use a duration like 30m, 6h, 2d or a time like 2026-11-22T10:00:00Z")
    })?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("{flag} `{value}`: unit `{unit}` is not one of s, m, h, d"),
    };
    let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
    Ok(now.saturating_sub(seconds * 1000))
}

pub(crate) fn query_from(args: &ReportArgs) -> anyhow::Result<ReportQuery> {
    Ok(ReportQuery {
        experiment: args.experiment.clone(),
        since_ms: args
            .since
            .as_deref()
            .map(|v| parse_time("--since", v))
            .transpose()?,
        until_ms: args
            .until
            .as_deref()
            .map(|v| parse_time("--until", v))
            .transpose()?,
        endpoint: args.endpoint.clone(),
        samples: args.samples,
    })
}

/// Prints the report to stdout, or writes it to `out` (never coloured there).
pub(crate) fn print_report(
    report: &Report,
    format: Format,
    color: &str,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let rendered = match format {
        Format::Json => serde_json::to_string_pretty(report)? + "\n",
        Format::Html => shadowdiff_store::html::render_html(report),
        Format::Text => {
            let color = match color {
                "always" => true,
                "never" => false,
                _ => {
                    out.is_none()
                        && std::io::stdout().is_terminal()
                        && std::env::var_os("NO_COLOR").is_none()
                }
            };
            shadowdiff_store::text::render_text(report, color)
        }
    };
    match out {
        Some(path) => std::fs::write(path, rendered)
            .with_context(|| format!("cannot write the report to {}", path.display()))?,
        None => print!("{rendered}"),
    }
    Ok(())
}

/// The report from ClickHouse when `clickhouse` is given, else from the embedded store.
pub(crate) fn load_report(
    data: &Path,
    clickhouse: Option<&str>,
    database: &str,
    query: &ReportQuery,
) -> anyhow::Result<Report> {
    if let Some(url) = clickhouse {
        let store = clickhouse_store(url, database)?;
        let runtime = crate::process::runtime()?;
        return runtime.block_on(async {
            if let Some(wanted) = &query.experiment {
                let known = store.experiments().await.with_context(|| {
                    format!("cannot read the experiments from ClickHouse at {url}")
                })?;
                check_experiment(wanted, &known)?;
            }
            store
                .report(query)
                .await
                .with_context(|| format!("cannot read the report from ClickHouse at {url}"))
        });
    }
    if !data.is_dir() {
        bail!(
            "data directory {} does not exist; run `shadowdiff run` or `shadowdiff demo` first, or pass --data DIR",
            data.display()
        );
    }
    let store = EmbeddedStore::open(data)?;
    let (records, stats) = store.read_all()?;
    if stats.unreadable > 0 {
        eprintln!(
            "warning: {} unreadable record(s) skipped in {}",
            stats.unreadable,
            data.display()
        );
    }
    if let Some(wanted) = &query.experiment {
        let mut known: Vec<String> = records.iter().map(|r| r.experiment.clone()).collect();
        known.sort();
        known.dedup();
        check_experiment(wanted, &known)?;
    }
    Ok(build_report(&records, query))
}

/// The ClickHouse store at `url`, checked like `[clickhouse]` (report, gate, migrate).
pub(crate) fn clickhouse_store(
    url: &str,
    database: &str,
) -> anyhow::Result<shadowdiff_clickhouse::ClickHouseStore> {
    let mut file = shadowdiff_pipeline::config::Config::default();
    file.clickhouse.url = Some(url.to_string());
    file.clickhouse.database = database.to_string();
    let settings = file.clickhouse().context("invalid configuration")?;
    Ok(shadowdiff_clickhouse::ClickHouseStore::new(
        &settings.config,
    )?)
}

/// Checks a database name as `[clickhouse] database` is checked, without a server.
pub(crate) fn check_database_name(database: &str) -> anyhow::Result<()> {
    clickhouse_store("http://127.0.0.1:8123", database).map(|_| ())
}

/// An experiment nobody stored results for is a mistake (a typo, the wrong store), not an
/// empty report: say so and name the ones there are.
fn check_experiment(wanted: &str, known: &[String]) -> anyhow::Result<()> {
    if known.iter().any(|k| k == wanted) {
        return Ok(());
    }
    if known.is_empty() {
        bail!("no results for experiment `{wanted}`: the store holds no results yet");
    }
    bail!(
        "no results for experiment `{wanted}`; the store has: {}",
        known.join(", ")
    )
}

pub(crate) fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let query = query_from(&args)?;
    let report = args.store.load(&query)?;
    print_report(&report, args.format, &args.color, args.out.as_deref())?;
    if let Some(path) = &args.out {
        eprintln!("Report written to {}.", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
