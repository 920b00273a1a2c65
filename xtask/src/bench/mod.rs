//! `cargo xtask bench …`: the benchmarks whose figures go into BENCHMARKS.md. `detect` measures
//! the detector's quality on the labelled corpus and its throughput; `capture` measures what the
//! kernel capture path costs a write-heavy child and a realistic workload; `detect-live` times
//! how fast `sentry run` catches live runaways and what it costs while watching a quiet command;
//! `api` loads the HTTP API; `dashboard` times the web UI in headless Chromium; `ci` times how
//! soon a CI job's summary and annotations follow its end.
//! All drive the `sentry` binary as a process: xtask never links the `sentry` crate.

mod api;
mod capture;
mod ci;
mod dashboard;
mod detect;
mod fleet;
mod live;
mod manifest;
mod stats;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

/// Arguments of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    which: Which,
}

#[derive(Debug, Subcommand)]
enum Which {
    /// Recall, false positives and detection latency on fixtures/corpus, then throughput.
    Detect(detect::DetectArgs),
    /// Cost of capture on a write-heavy child and on a realistic workload (needs root).
    Capture(capture::CaptureArgs),
    /// Time to detect live output loops and silent spins under `sentry run`, and sentry's own
    /// CPU and memory over a quiet command (needs root).
    DetectLive(live::LiveArgs),
    /// `sentry watch --discover ci` over 50 concurrent CI jobs (a fifth runaway): detection
    /// times, false alarms, losses, and sentry's own CPU and memory from 1 to 200 jobs
    /// (needs root).
    Fleet(fleet::FleetArgs),
    /// Requests/s and latency of the HTTP API (`wrk`), and memory for 100 SSE clients.
    Api(api::ApiArgs),
    /// The web UI in headless Chromium: gzipped size, first paint, charting 10,000 samples live.
    Dashboard(dashboard::DashboardArgs),
    /// How soon after a CI job's command ends its GitHub job summary and annotations are
    /// written (`sentry run --ci-output github`; target 1 s).
    Ci(ci::CiArgs),
}

/// Runs the chosen benchmark; an error means a target was missed or the bench could not run.
pub fn run(args: BenchArgs) -> Result<()> {
    let root = workspace_root()?;
    match args.which {
        Which::Detect(a) => detect::run(&root, a),
        Which::Capture(a) => capture::run(&root, a),
        Which::DetectLive(a) => live::run(&root, a),
        Which::Api(a) => api::run(&root, a),
        Which::Fleet(a) => fleet::run(&root, a),
        Which::Dashboard(a) => dashboard::run(&root, a),
        Which::Ci(a) => ci::run(&root, a),
    }
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map(Path::to_path_buf).context(
        "xtask's manifest directory has no parent; run it as `cargo xtask` from the workspace",
    )
}

/// Builds `sentry` in release mode and returns the binary's path, or the one given.
fn sentry_binary(root: &Path, given: Option<PathBuf>, build: bool) -> Result<PathBuf> {
    if let Some(p) = given {
        if !p.is_file() {
            bail!("--sentry {}: no such file", p.display());
        }
        return Ok(p);
    }
    if build {
        eprintln!("building sentry (release)…");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "--package",
                "sentry",
                "--bin",
                "sentry",
            ])
            .current_dir(root)
            .status()
            .context("cannot run cargo to build sentry")?;
        if !status.success() {
            bail!("`cargo build --release -p sentry` failed ({status}); fix the build first");
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release").join("sentry");
    if !bin.is_file() {
        bail!(
            "{} does not exist; build it with `cargo build --release -p sentry` or drop --no-build",
            bin.display()
        );
    }
    Ok(bin)
}
