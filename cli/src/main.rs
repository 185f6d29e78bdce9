//! `shadowdiff`: shadow-traffic diffing. See `shadowdiff --help`.

mod dist_cmd;
mod flags;
mod import_cmd;
mod process;
mod report_cmd;
mod run_cmd;
mod sandbox_cmd;
mod serve_cmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "shadowdiff",
    version,
    about = "Compare how a new build answers production traffic with how the running build does.",
    long_about = "Compare how a new build answers production traffic with how the running build does.\n\n\
        `shadowdiff demo` shows it end to end with nothing installed. `shadowdiff run` puts a tap in \
        front of your service, replays each request to candidate builds (reads only, by default), \
        diffs the answers and stores the findings; `shadowdiff report` reads them back."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline in one process: tap, replay, diff, embedded store.
    Run(Box<run_cmd::RunArgs>),
    /// Start demo control, candidate and secondary services, send bounded traffic through the
    /// pipeline and print the report.
    Demo(run_cmd::DemoArgs),
    /// Print the report of stored results (embedded store or ClickHouse).
    Report(report_cmd::ReportArgs),
    /// Egress sandbox: the forward proxy candidates use for outbound calls; passes reads to
    /// allowlisted hosts, blocks writes and records them per exchange id.
    Sandbox(Box<sandbox_cmd::SandboxArgs>),
    /// Replay recorded traffic (Envoy tap traces, GoReplay files) to candidates, diff and store
    /// it like `run` does, and print a summary.
    Import(Box<import_cmd::ImportArgs>),
    /// Distributed tap: tee proxy in front of the control, publishing exchanges to Kafka.
    Capture(Box<dist_cmd::CaptureArgs>),
    /// Distributed replayer: consumer-group member replaying exchanges to candidates.
    Replay(Box<dist_cmd::ReplayStageArgs>),
    /// Distributed differ: consumer-group member writing diff rows to ClickHouse.
    Diff(Box<dist_cmd::DiffStageArgs>),
    /// Create or upgrade the ClickHouse schema (also done when `diff` starts).
    Migrate(dist_cmd::MigrateArgs),
    /// Exit 0 when every endpoint is within the mismatch budget, 1 when one is not, 2 when
    /// undecided (too few samples, store unreachable). For CI and canary analysis.
    Gate(dist_cmd::GateArgs),
    /// Serve the gate and the report over HTTP for canary analysis (Argo Rollouts, Flagger)
    /// and dashboards: GET /gate, /gate/webhook, /report, /healthz, /readyz, /metrics.
    Serve(Box<serve_cmd::ServeArgs>),
}

/// mimalloc instead of glibc's malloc: the tap allocates each exchange's copy on a serving
/// thread and frees it on a pipeline thread, where glibc spent about 1,200 instructions per
/// 3 KB body copy alone (callgrind; docs/performance-journal.md, section 7).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // The matches travel with the parsed flags: a command lays over its file only the flags
    // that were given, which only the matches can tell from clap's defaults.
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let sub = matches
        .subcommand()
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    // `import envoy|goreplay`: its flags sit one level further down.
    let import = sub.subcommand().map(|(_, m)| m.clone()).unwrap_or_default();
    let result = match cli.command {
        Command::Run(args) => run_cmd::run(*args, &sub),
        Command::Demo(args) => run_cmd::demo(args),
        Command::Report(args) => report_cmd::report(args),
        Command::Sandbox(args) => sandbox_cmd::sandbox(*args),
        Command::Import(args) => import_cmd::import(*args, &import),
        Command::Capture(args) => dist_cmd::capture(*args, &sub),
        Command::Replay(args) => dist_cmd::replay(*args, &sub),
        Command::Diff(args) => dist_cmd::diff(*args, &sub),
        Command::Migrate(args) => dist_cmd::migrate(args),
        Command::Gate(args) => dist_cmd::gate_cmd(args),
        Command::Serve(args) => serve_cmd::serve(*args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_chain(&error));
            std::process::ExitCode::from(2)
        }
    }
}

/// The error and its causes, each said once: many errors repeat their source in their own
/// message, which `{:#}` would print twice.
fn error_chain(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn an_error_chain_says_each_cause_once() {
        #[derive(Debug)]
        struct Repeats(std::io::Error);
        impl std::fmt::Display for Repeats {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "admin request failed: {}", self.0)
            }
        }
        impl std::error::Error for Repeats {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let inner = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
        let error = anyhow::Error::new(Repeats(inner)).context("cannot reach Kafka at b:9092");
        assert_eq!(
            super::error_chain(&error),
            "cannot reach Kafka at b:9092: admin request failed: timed out"
        );
    }

    /// Every subcommand's flags are consistent (unique ids, valid defaults), checked by clap.
    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
