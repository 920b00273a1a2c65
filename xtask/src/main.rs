//! `cargo xtask …`: every step that cargo alone cannot express: toolchain set-up for the eBPF
//! crate, the web UI's build, the full test run that CI calls, the demo, and the benchmarks.

mod apifuzz;
mod bench;
mod dashboard;
mod demo;
mod served;
mod setup;
mod test;

use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install the eBPF toolchain (nightly rust-src, bpf-linker) where missing.
    Setup,
    /// Run the full check and test suite (what CI runs).
    Test,
    /// Build sentry and show it at work on this machine.
    Demo,
    /// Build the web UI into dashboard/dist (npm ci when needed, then npm run build), which
    /// the sentry build embeds.
    Dashboard,
    /// Benchmarks: `detect` (corpus quality + throughput), `capture` (cost of capture),
    /// `detect-live` (time to catch live runaways, sentry's own overhead).
    Bench(bench::BenchArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup => setup::setup(),
        Task::Test => test::test(),
        Task::Demo => demo::demo(),
        Task::Dashboard => dashboard::build(&setup::workspace_root()),
        Task::Bench(args) => bench::run(args),
    }
}

/// Runs a command with inherited stdio; fails with the command line when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Runs a command and returns its stdout; fails with its stderr when it fails.
pub fn cmd_output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when running as root (the kernel backend and its tests need it).
pub fn is_root() -> bool {
    cmd_output(Command::new("id").arg("-u"))
        .map(|s| s.trim() == "0")
        .unwrap_or(false)
}
