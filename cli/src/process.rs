//! What every command's process shares: logging flags, the async runtime, signals, the summary
//! line. (Commands depend on this module, never on each other's.)

use anyhow::Context;
use clap::{Args, ValueEnum};
use shadowdiff_pipeline::stages::PipelineStats;
use shadowdiff_pipeline::LogFormat;

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

/// `--log-format`, shared by every command that logs.
#[derive(Args)]
pub(crate) struct LogArgs {
    /// Log format on stderr.
    #[arg(
        long = "log-format",
        value_enum,
        env = "SHADOWDIFF_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormatArg,
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
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = tokio::signal::ctrl_c().await;
            return;
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
