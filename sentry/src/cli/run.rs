//! `sentry run [--mode …] [--report FILE] [--events FILE] -- CMD [ARGS…]`: supervise one
//! command and exit with its status.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::decide::Policy;
use crate::supervise::{self, Mode, RunOptions};

/// Arguments of `sentry run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Capture backend: auto (best available), kernel (eBPF, root) or fallback (PTY).
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: Mode,
    /// Write a JSON report of the run to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write every captured output chunk to FILE as JSON lines (pid, fd, at_ns, written_len,
    /// encoding, data).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Full output captures per second per CPU; beyond it writes are only counted.
    #[arg(long, value_name = "N", default_value_t = sentry_common_budget())]
    pub capture_budget: u64,
    /// Seconds between resource samples.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.25)]
    pub sample_interval: f64,
    /// Detection policy file (TOML; see fixtures/policy/example.toml). Defaults are built in.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Attach the benchmark's no-op probe instead of the capture probe (measures the floor).
    #[arg(long, hide = true)]
    pub bench_floor_probe: bool,
    /// The command to supervise and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[cfg(target_os = "linux")]
fn sentry_common_budget() -> u64 {
    sentry_common::DEFAULT_CAPTURE_BUDGET_PER_S
}

#[cfg(not(target_os = "linux"))]
fn sentry_common_budget() -> u64 {
    200_000
}

/// Runs `sentry run` and returns the exit status to end with.
pub fn run(args: RunArgs) -> ExitCode {
    if !(args.sample_interval.is_finite() && args.sample_interval >= 0.01) {
        eprintln!("sentry: --sample-interval must be at least 0.01 seconds");
        return ExitCode::from(supervise::EXIT_SENTRY_FAILED);
    }
    let policy = match &args.policy {
        Some(path) => match Policy::from_toml_file(path) {
            Ok(policy) => policy,
            Err(err) => {
                eprintln!("sentry: {err}");
                return ExitCode::from(supervise::EXIT_SENTRY_FAILED);
            }
        },
        None => Policy::default(),
    };
    let options = RunOptions {
        policy,
        command: args.command,
        mode: args.mode,
        report: args.report,
        events: args.events,
        capture_budget_per_s: args.capture_budget,
        sample_interval: Duration::from_secs_f64(args.sample_interval),
        floor_probe: args.bench_floor_probe,
    };
    match supervise::run(&options) {
        Ok(outcome) => {
            let report = &outcome.report;
            let ended = match report.signal {
                Some(sig) => format!("killed by signal {sig}"),
                None => format!("exited with {}", report.exit_code),
            };
            eprintln!(
                "sentry: command {ended} after {:.2} s; CPU peaked at {:.0}%; captured {} writes \
                 ({} bytes), {} over budget (counted only), {} lost",
                report.duration_s,
                report.cpu_peak_pct,
                report.events_captured,
                report.bytes_captured,
                report.writes_counted_only,
                report.events_lost
            );
            ExitCode::from(u8::try_from(report.exit_code).unwrap_or(supervise::EXIT_SENTRY_FAILED))
        }
        Err(err) => {
            eprintln!("sentry: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
