//! Wires shadowdiff's stages together.
//!
//! - [`config`]: the TOML file, defaults and validation.
//! - [`transport`]: what carries items between stages (memory queues or Kafka) and their
//!   acknowledgements and byte permits.
//! - [`stages`]: replay stage, differ pool and store writer as runners generic over transport.
//! - [`components`]: builds the replayer and the in-process sandbox from the settings.
//! - [`embedded`]: `shadowdiff run`, every stage in one process.
//! - [`offline`]: `shadowdiff import`, recorded exchanges through the same stages.
//! - [`admin`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`demo`]: the demo services and traffic generator.

pub mod admin;
pub mod components;
pub mod config;
pub mod demo;
pub mod distributed;
pub mod embedded;
pub mod offline;
pub mod stages;
mod telemetry;
pub mod transport;

pub use telemetry::{COMPARED, MISMATCHED, QUEUE_DEPTH, STORE_FAILURES, STORE_ROWS, TARGET_ERRORS};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the tracing subscriber (`RUST_LOG` filters; default `info`). Logs go to stderr.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: logs sent to a file or a collector get no escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
