//! `sentry run [OPTIONS] -- CMD [ARGS…]`: supervise one command, act on runaways, and exit
//! with its status (or 124 when sentry stopped it). The flags here are shorthands that
//! override the policy (built-in defaults, then `--policy FILE`, then the flags).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::decide::Policy;
use crate::model::Action;
use crate::supervise::{self, Mode, RunOptions, StoreChoice};

/// What `--action` may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StrongAction {
    /// Record and print, leave the command alone.
    Alert,
    /// Freeze the tree until `kill -USR1 <sentry pid>` resumes it.
    Pause,
    /// Stop the whole tree (SIGTERM, then SIGKILL after 2 s).
    Kill,
    /// Stop it and start it again, with backoff, up to --max-restarts times.
    Restart,
}

impl From<StrongAction> for Action {
    fn from(a: StrongAction) -> Action {
        match a {
            StrongAction::Alert => Action::Alert,
            StrongAction::Pause => Action::Pause,
            StrongAction::Kill => Action::Kill,
            StrongAction::Restart => Action::Restart,
        }
    }
}

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
    /// Full output captures per second for the run, all CPUs together; beyond it writes are only
    /// counted.
    #[arg(long, value_name = "N", default_value_t = sentry_common_budget())]
    pub capture_budget: u64,
    /// Seconds between resource samples.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.25)]
    pub sample_interval: f64,
    /// Detection policy file (TOML; see fixtures/policy/example.toml). Defaults are built in.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// What to do with a high-confidence runaway (default: the policy's, built in: kill).
    /// Ambiguous findings are always alerts only.
    #[arg(long, value_enum, value_name = "ACTION")]
    pub action: Option<StrongAction>,
    /// Enforce a CPU limit: the whole tree above PCT per-core percent (200 = two cores) for
    /// the window, without output or I/O progress, gets the --action. Without it, silent CPU
    /// burn is only alerted (a numeric job may compute silently for minutes).
    #[arg(long, value_name = "PCT")]
    pub max_cpu: Option<f64>,
    /// Window in seconds over which CPU burn must be sustained (default 30).
    #[arg(long, value_name = "SECS")]
    pub window: Option<f64>,
    /// Enforce a memory limit on the tree's resident memory (e.g. 512M, 2G, 1.5GiB): above
    /// it, the tree gets the --action.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<u64>,
    /// Stop the command (the --action) when it has written nothing AND made no CPU or I/O
    /// progress for DUR (e.g. 90s, 10m, 1h; plain numbers are seconds). A silent job that
    /// computes, compresses or writes files is left alone. Off by default.
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub no_output_timeout: Option<String>,
    /// Shadow mode: decide and record everything as if enforcing, but never signal, pause,
    /// kill or restart the command; incidents say what would have been done.
    #[arg(long)]
    pub shadow: bool,
    /// How many times --action restart may restart the command before giving up.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub max_restarts: u32,
    /// Evidence store (SQLite) to record the run in, for `sentry dashboard` and `sentry
    /// incidents` (default: $XDG_DATA_HOME/sentry/sentry.db, ~/.local/share/sentry/sentry.db;
    /// under sudo, the invoking user's).
    #[arg(long, value_name = "PATH", env = "SENTRY_DB")]
    pub db: Option<PathBuf>,
    /// Record nothing in the evidence store (the run cannot be seen or controlled from the
    /// dashboard).
    #[arg(long, conflicts_with = "db")]
    pub no_db: bool,
    /// Delete runs that ended more than DAYS days ago from the store (checked at start).
    #[arg(long, value_name = "DAYS", default_value_t = crate::store::DEFAULT_RETAIN_DAYS)]
    pub retain_days: u32,
    /// Print only incidents and errors: no banner, live status line or summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// Alert receivers and the events log.
    #[command(flatten)]
    pub notify: super::notify_args::NotifyArgs,
    /// Attach the benchmark's no-op probe instead of the capture probe (measures the floor).
    #[arg(long, hide = true)]
    pub bench_floor_probe: bool,
    #[command(flatten)]
    pub metrics: super::metrics_args::MetricsArgs,
    /// The verdict for CI: GitHub Actions, GitLab CI, Buildkite.
    #[command(flatten)]
    pub ci: super::ci_output_args::CiOutputArgs,
    /// Price of one CPU-hour (any currency): the report, summary and store give the run's
    /// cost in it.
    #[arg(long, value_name = "PRICE", env = "SENTRY_PRICE_PER_CPU_HOUR", value_parser = parse_price)]
    pub price_per_cpu_hour: Option<f64>,
    /// Groups this run with earlier runs of the same job for baselines and metrics (default:
    /// the CI job inside CI, else the command line).
    #[arg(long, value_name = "KEY", env = "SENTRY_JOB_KEY")]
    pub job_key: Option<String>,
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
    let policy = match apply_flags(policy, &args) {
        Ok(policy) => policy,
        Err(err) => {
            eprintln!("sentry: {err}");
            return ExitCode::from(supervise::EXIT_SENTRY_FAILED);
        }
    };
    if let Err(err) = args.metrics.check() {
        eprintln!("sentry: {err}");
        return ExitCode::from(supervise::EXIT_SENTRY_FAILED);
    }
    let store_path = match (args.no_db, &args.db) {
        (true, _) => None,
        (false, Some(path)) => Some(path.clone()),
        (false, None) => crate::store::default_path().ok(),
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
        max_restarts: args.max_restarts,
        quiet: args.quiet,
        store: match (args.no_db, args.db) {
            (true, _) => StoreChoice::Off,
            (false, Some(path)) => StoreChoice::Path(path),
            (false, None) => StoreChoice::Default,
        },
        retain_days: args.retain_days,
        notify: args.notify.enabled_config(),
        shadow: args.shadow,
        price_per_cpu_hour: args.price_per_cpu_hour,
        job_key: args.job_key,
        ci: args.ci.options(),
    };
    match supervise::run(&options) {
        Ok(outcome) => {
            args.metrics
                .after_run(&outcome.report, store_path.as_deref());
            ExitCode::from(
                u8::try_from(outcome.report.exit_code).unwrap_or(supervise::EXIT_SENTRY_FAILED),
            )
        }
        Err(err) => {
            eprintln!("sentry: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// Applies the command-line shorthands on top of the policy, and checks the result.
fn apply_flags(mut policy: Policy, args: &RunArgs) -> Result<Policy, String> {
    let strong: Action = match args.action {
        Some(a) => {
            let a = Action::from(a);
            // The flag wins over the policy file, per-kind overrides included.
            policy.actions.high = a;
            for per_kind in [
                &mut policy.actions.output_loop,
                &mut policy.actions.cpu_burn,
                &mut policy.actions.memory_growth,
                &mut policy.actions.stall,
                &mut policy.actions.fork_storm,
                &mut policy.actions.no_output,
            ] {
                if per_kind.high.is_some() {
                    per_kind.high = Some(a);
                }
            }
            a
        }
        None => policy.actions.high,
    };
    if let Some(pct) = args.max_cpu {
        if !(pct.is_finite() && pct > 0.0) {
            return Err(format!(
                "--max-cpu {pct}: give a positive per-core percent, e.g. 90 or 250"
            ));
        }
        policy.cpu.threshold_pct = pct;
        // An explicit limit is the user's own rule: sustained burn past it, without
        // progress (a medium-confidence CPU finding), gets the strong action.
        policy.actions.cpu_burn.medium = Some(strong);
        policy.actions.cpu_burn.high = Some(strong);
    }
    if let Some(window) = args.window {
        if !(window.is_finite() && window >= 1.0) {
            return Err(format!("--window {window}: give at least 1 second"));
        }
        policy.cpu.window_s = window;
    }
    if let Some(limit) = args.max_memory {
        policy.memory.limit_bytes = Some(limit);
        policy.actions.memory_growth.medium = Some(strong);
        policy.actions.memory_growth.high = Some(strong);
    }
    if let Some(text) = &args.no_output_timeout {
        let secs = crate::detect::no_output::parse_duration(text)
            .map_err(|e| format!("--no-output-timeout {e}"))?;
        policy.no_output.timeout_s = Some(secs);
    }
    let problems = policy.problems();
    if let Some((key, problem)) = problems.first() {
        return Err(format!("invalid setting {key}: {problem}"));
    }
    Ok(policy)
}

/// Parses a price per CPU-hour: a finite number, zero or more.
pub fn parse_price(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok(p),
        _ => Err(format!(
            "`{text}` is not a price: give a number of zero or more, e.g. 0.05"
        )),
    }
}

/// Parses `512M`, `2G`, `1.5GiB`, `1048576` (bytes; K/M/G/T are binary multiples, as in
/// `ulimit` and cgroup files).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        format!("{text:?} is not a size: use a number with an optional unit, e.g. 512M or 2G")
    })?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0_f64.powi(4),
        other => {
            return Err(format!(
                "{text:?}: unknown size unit {other:?} (use K, M, G or T)"
            ))
        }
    };
    let bytes = value * mult;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("64kb"), Ok(64 << 10));
        assert!(parse_size("ten").unwrap_err().contains("not a size"));
        assert!(parse_size("5X").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("0").is_err());
    }
}
