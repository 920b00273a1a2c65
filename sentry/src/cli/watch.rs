//! `sentry watch`: supervise work sentry did not start — cgroups, the cgroup of a pid or of a
//! systemd unit, and the CI jobs on this host — and serve the API, dashboard and metrics of
//! what it watches on one loopback port.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::decide::Policy;
use crate::fleet::{self, WatchAction, WatchOptions};
use crate::supervise::{self, StoreChoice};

/// Where CI jobs are discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Discover {
    /// GitHub Actions, GitLab Runner, Buildkite and Jenkins jobs, by their environment.
    Ci,
}

/// `sentry watch` options.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// A cgroup v2 to watch as one job: absolute, or relative to the cgroup2 mount
    /// (repeatable).
    #[arg(long = "cgroup", value_name = "PATH")]
    pub cgroups: Vec<String>,
    /// Watch the cgroup this process is in (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<i32>,
    /// Watch a systemd unit's control group (repeatable).
    #[arg(long = "unit", value_name = "NAME")]
    pub units: Vec<String>,
    /// Discover jobs and follow them as they come and go.
    #[arg(long, value_enum)]
    pub discover: Option<Discover>,
    /// Price of one CPU-hour (any currency): each job's cost is recorded in it.
    #[arg(long, value_name = "PRICE", env = "SENTRY_PRICE_PER_CPU_HOUR", value_parser = super::run::parse_price)]
    pub price_per_cpu_hour: Option<f64>,
    /// The strongest action sentry may take on a runaway job: `alert` (default), or `kill` /
    /// `pause`, which act on exactly the job's processes (never the runner or other jobs).
    #[arg(long, value_enum, default_value = "alert")]
    pub action: WatchAction,
    /// Shadow mode: decide and record as if enforcing --action, but never signal a job;
    /// incidents say what would have been done.
    #[arg(long)]
    pub shadow: bool,
    /// Stop (under --action) a job that has written nothing AND made no CPU or I/O progress
    /// for DUR (e.g. 90s, 10m, 1h; plain numbers are seconds), as for `sentry run`.
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub no_output_timeout: Option<String>,
    /// Detection policy file (TOML), as for `sentry run`.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Seconds between samples of each job.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.5)]
    pub sample_interval: f64,
    /// Full write captures per second for each watched cgroup, all CPUs together.
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    pub capture_budget: u64,
    /// Stop watching after this many seconds (default: until Ctrl-C or SIGTERM).
    #[arg(long = "for", value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Port of the API, dashboard and /metrics (0 for any free one).
    #[arg(long, default_value_t = 3001)]
    pub port: u16,
    /// Address to listen on (loopback unless --allow-remote).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Allow a non-loopback --bind.
    #[arg(long)]
    pub allow_remote: bool,
    /// Also accept this Host header (repeatable), e.g. the address Prometheus scrapes.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
    /// Also accept this browser origin (repeatable).
    #[arg(long = "allow-origin", value_name = "URL")]
    pub allow_origins: Vec<String>,
    /// Do not serve the API (record to the store only).
    #[arg(long)]
    pub no_api: bool,
    /// Write the metrics exposition to DIR/sentry.prom for node_exporter's textfile collector.
    #[arg(long, value_name = "DIR")]
    pub textfile_dir: Option<PathBuf>,
    /// The evidence store.
    #[arg(long, value_name = "PATH", env = "SENTRY_DB")]
    pub db: Option<PathBuf>,
    /// Record nothing (no store, so no API either): alerts, the events log and the textfile
    /// only.
    #[arg(long, conflicts_with = "db")]
    pub no_db: bool,
    /// Delete runs that ended more than this many days ago.
    #[arg(long, value_name = "DAYS", default_value_t = crate::store::DEFAULT_RETAIN_DAYS)]
    pub retain_days: u32,
    /// Only errors and actions on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Alerts and the events log.
    #[command(flatten)]
    pub notify: super::notify_args::NotifyArgs,
}

/// Runs `sentry watch`.
pub fn run(args: WatchArgs) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("sentry watch: {msg}");
        ExitCode::from(supervise::EXIT_SENTRY_FAILED)
    };
    if !(args.sample_interval.is_finite() && args.sample_interval >= 0.05) {
        return fail("--sample-interval must be at least 0.05 seconds".into());
    }
    if let Some(d) = args.duration {
        if !(d.is_finite() && d > 0.0) {
            return fail("--for must be a positive number of seconds".into());
        }
    }
    if let Some(dir) = &args.textfile_dir {
        if !dir.is_dir() {
            return fail(format!(
                "--textfile-dir {}: no such directory (node_exporter's --collector.textfile.directory must exist)",
                dir.display()
            ));
        }
    }
    let mut policy = match &args.policy {
        Some(path) => match Policy::from_toml_file(path) {
            Ok(policy) => policy,
            Err(err) => return fail(err.to_string()),
        },
        None => Policy::default(),
    };
    if let Some(text) = &args.no_output_timeout {
        match crate::detect::no_output::parse_duration(text) {
            Ok(secs) => policy.no_output.timeout_s = Some(secs),
            Err(err) => return fail(format!("--no-output-timeout {err}")),
        }
    }
    let db = match (&args.db, args.no_db) {
        (_, true) => None,
        (Some(p), false) => Some(p.clone()),
        (None, false) => crate::store::default_path().ok(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let live = Arc::new(fleet::FleetLive::default());
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(err) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            return fail(format!("cannot watch for signals: {err}"));
        }
    }
    let server = match (&db, args.no_api) {
        (Some(db), false) => {
            // The store must exist before the server opens it.
            if let Err(err) = crate::store::Store::open(db) {
                return fail(format!("the store is unusable: {err}"));
            }
            let dash = super::dashboard::DashboardArgs {
                port: args.port,
                bind: args.bind,
                allow_remote: args.allow_remote,
                db: Some(db.clone()),
                allow_hosts: args.allow_hosts.clone(),
                allow_origins: args.allow_origins.clone(),
                open: false,
                heartbeat: 15.0,
            };
            match super::dashboard::serve_in_background(dash, Arc::clone(&stop), live.clone()) {
                Ok(handle) => Some(handle),
                Err(err) => return fail(format!("cannot start the API server: {err}")),
            }
        }
        _ => None,
    };
    let options = WatchOptions {
        cgroups: args.cgroups,
        pids: args.pids,
        units: args.units,
        discover_ci: args.discover == Some(Discover::Ci),
        action: args.action,
        shadow: args.shadow,
        policy,
        sample_interval: Duration::from_secs_f64(args.sample_interval),
        capture_budget_per_s: args.capture_budget,
        store: match (db, args.no_db) {
            (_, true) => StoreChoice::Off,
            (Some(p), false) => StoreChoice::Path(p),
            (None, false) => StoreChoice::Default,
        },
        retain_days: args.retain_days,
        quiet: args.quiet,
        duration: args.duration.map(Duration::from_secs_f64),
        stop: Arc::clone(&stop),
        textfile_dir: args.textfile_dir,
        notify: args.notify.enabled_config(),
        live,
        price_per_cpu_hour: args.price_per_cpu_hour,
    };
    // A server that fails to start (port in use) stops the watch too.
    let watcher_stop = Arc::clone(&stop);
    let outcome = fleet::watch(&options);
    watcher_stop.store(true, Ordering::SeqCst);
    let served = server.map(|h| h.join());
    let summary = match outcome {
        Ok(summary) => summary,
        Err(err) => return fail(err.to_string()),
    };
    if let Some(Ok(Err(err))) = served {
        return fail(format!("the API server failed: {err:#}"));
    }
    if !args.quiet {
        eprintln!(
            "sentry watch: watched {} job(s): {} incident(s), {} stopped, {} write record(s) lost",
            summary.jobs, summary.incidents, summary.stopped, summary.events_lost
        );
    }
    ExitCode::SUCCESS
}
