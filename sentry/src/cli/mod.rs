//! Command-line parsing and dispatch. Each subcommand lives in its own file and returns the
//! process exit status; errors are printed with their whole context chain.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod analyze;

/// sentry: notices when a command has become a runaway and stops it safely.
#[derive(Debug, Parser)]
#[command(name = "sentry", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Judge recorded logs: one verdict (runaway or healthy) per file.
    Analyze(analyze::AnalyzeArgs),
}

/// Parses the command line, runs the subcommand and maps its outcome to an exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(args) => analyze::run(&args),
    }
}
