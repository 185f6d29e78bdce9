//! `shadowdiff`: shadow-traffic diffing. See `shadowdiff --help`.

mod report_cmd;
mod run_cmd;

use clap::{Parser, Subcommand};

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
    /// Print the report of stored results.
    Report(report_cmd::ReportArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run_cmd::run(*args),
        Command::Demo(args) => run_cmd::demo(args),
        Command::Report(args) => report_cmd::report(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
