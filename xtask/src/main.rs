//! `cargo xtask …`: every step that cargo alone cannot express: toolchain set-up for the eBPF
//! crate, the full test run that CI calls, and the benchmarks.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmarks: `detect` (corpus quality + throughput), `capture` (cost of capture).
    Bench(bench::BenchArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => bench::run(args),
    }
}
