//! Command-line parsing and dispatch. Each subcommand lives in its own file and returns the
//! process exit status; errors are printed with their whole context chain.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod analyze;
pub mod baselines;
pub mod ci_output_args;
pub mod dashboard;
pub mod demo;
pub mod doctor;
pub mod incidents;
pub mod listing;
pub mod metrics_args;
pub mod notify_args;
pub mod run;
pub mod watch;
pub mod workload;

/// sentry: notices when a command has become a runaway and stops it safely.
#[derive(Debug, Parser)]
#[command(name = "sentry", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command under supervision: `sentry run -- CMD [ARGS…]`.
    Run(Box<run::RunArgs>),
    /// Judge recorded logs: one verdict (runaway or healthy) per file.
    Analyze(analyze::AnalyzeArgs),
    /// Check what this host supports and which mode `sentry run` will use, and why.
    ///
    /// Looks at the kernel version, the eBPF probe in this build, BTF, tracefs, the cgroup
    /// layout and whether sentry may write there, privileges and capabilities, and prints one
    /// line per check (ok, info, warn, fail; what to do when not ok), then the mode `sentry run
    /// --mode auto` will use and the one thing to do to get kernel mode. Changes nothing on the
    /// host: it mounts nothing and creates no cgroup.
    #[command(
        after_help = "Exit status: 0 whatever the host supports (the verdict is in the \
                      output); 1 only if doctor itself fails (its output cannot be written)."
    )]
    Doctor(doctor::DoctorArgs),
    /// Serve the HTTP API (and the web UI) over the store, on a loopback port.
    ///
    /// Prints `listening on http://127.0.0.1:PORT` and a URL carrying the API key after
    /// `#token=`. Every endpoint but /healthz and /readyz needs `Authorization: Bearer KEY`;
    /// the key is made on first use in `api-key` beside the store (0600), and
    /// SENTRY_API_KEY overrides it. GET /openapi.json describes the API.
    #[command(
        after_help = "Exit status: 0 when stopped by Ctrl-C or SIGTERM; 1 when it cannot \
                      serve (port in use, store unusable, bad flags)."
    )]
    Dashboard(dashboard::DashboardArgs),
    /// Supervise work sentry did not start: cgroups, systemd units and the CI jobs on this
    /// host (`sentry watch --discover ci`), alerting by default.
    Watch(Box<watch::WatchArgs>),
    /// The incidents recorded in the evidence store, newest first.
    Incidents(incidents::IncidentsArgs),
    /// What each job usually takes, learned from its healthy runs (regression baselines).
    Baselines(baselines::BaselinesArgs),
    /// A self-contained demonstration: a runaway caught, healthy work left alone, a recovery.
    Demo(demo::DemoArgs),
    /// The programs `sentry demo` supervises (internal).
    #[command(hide = true)]
    Workload(workload::WorkloadArgs),
}

/// Parses the command line, runs the subcommand and maps its outcome to an exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Analyze(args) => analyze::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Dashboard(args) => dashboard::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Incidents(args) => incidents::run(&args),
        Command::Baselines(args) => baselines::run(&args),
        Command::Watch(args) => watch::run(*args),
        Command::Workload(args) => workload::run(&args),
    }
}
