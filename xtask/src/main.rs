//! `cargo xtask …`: every step that cargo alone cannot express: toolchain set-up for the eBPF
//! crate, the full test run that CI calls, and the benchmarks.

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
