//! Fleet mode: `sentry watch` supervises work sentry did not start — named cgroups, the
//! cgroup of a pid or of a systemd unit, and the CI jobs it discovers on the host — with the
//! same capture, detectors, decision engine and store as `sentry run`.
//!
//! One probe instance tracks the cgroups of every watched job; one thread drains its ring
//! buffer, hands each write to the job it belongs to (by cgroup when the cgroup is the job's
//! own, by process when jobs share one, as GitHub Actions jobs share the runner's), samples
//! every job, and carries out decisions. Actions go through the job's processes (signals),
//! never through a cgroup sentry did not create; the default action is `alert`.

pub mod ci;
#[cfg(target_os = "linux")]
pub mod discover;
#[cfg(target_os = "linux")]
pub mod members;
pub mod target;
#[cfg(target_os = "linux")]
mod watcher;

#[cfg(target_os = "linux")]
pub use watcher::watch;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use crate::decide::Policy;
use crate::supervise::StoreChoice;

/// What sentry may do to a watched job when the policy calls for a strong action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WatchAction {
    /// Record and report only (the default: sentry did not start the job).
    Alert,
    /// Stop exactly the job's processes: SIGTERM, a grace period, SIGKILL.
    Kill,
    /// Stop (SIGSTOP) exactly the job's processes; resume them with SIGCONT.
    Pause,
}

/// Options of `sentry watch`.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// `--cgroup` paths.
    pub cgroups: Vec<String>,
    /// `--pid`s.
    pub pids: Vec<i32>,
    /// `--unit` names.
    pub units: Vec<String>,
    /// `--discover ci`.
    pub discover_ci: bool,
    /// The strongest action allowed.
    pub action: WatchAction,
    /// Shadow mode: decide and record as if enforcing `action`, but never signal a job.
    pub shadow: bool,
    /// Detection thresholds and decision rules.
    pub policy: Policy,
    /// Time between samples of each job.
    pub sample_interval: Duration,
    /// Full captures per second per tracked cgroup, all CPUs together.
    pub capture_budget_per_s: u64,
    /// Where jobs are recorded.
    pub store: StoreChoice,
    /// Runs that ended longer ago than this are deleted from the store.
    pub retain_days: u32,
    /// Only errors and actions on stderr.
    pub quiet: bool,
    /// Stop watching after this long (tests, benchmarks, one-shot audits).
    pub duration: Option<Duration>,
    /// Set to stop watching (signals, the API server failing).
    pub stop: Arc<AtomicBool>,
    /// Where the metrics exposition is written for node_exporter's textfile collector.
    pub textfile_dir: Option<PathBuf>,
    /// Alerts (Alertmanager, webhooks, Slack) and the events log, when asked for.
    pub notify: Option<crate::notify::NotifyConfig>,
    /// Figures only the watching process knows, for `/metrics` and the textfile.
    pub live: Arc<FleetLive>,
    /// Price of one CPU-hour, to turn each job's CPU-seconds into money.
    pub price_per_cpu_hour: Option<f64>,
}

/// What the watching process knows that the store does not: how many jobs and cgroups it
/// follows right now, and what its capture lost or could not attribute.
#[derive(Debug, Default)]
pub struct FleetLive {
    /// Jobs watched now.
    pub jobs: AtomicU64,
    /// cgroups whose writes the probe captures now.
    pub tracked_cgroups: AtomicU64,
    /// Write records the kernel could not put in the ring buffer (it was full).
    pub ring_lost: AtomicU64,
    /// Writes in tracked cgroups that belonged to no watched job (a runner agent's own).
    pub unattributed: AtomicU64,
    /// Output chunks the detectors skipped (beyond their budget).
    pub shed: AtomicU64,
    /// Whether the eBPF capture is running (1) or the watch sees resources only (0).
    pub capturing: AtomicU64,
}

impl crate::metrics::LiveMetrics for FleetLive {
    fn write(&self, out: &mut String) {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering::Relaxed;
        for (name, kind, help, v) in [
            (
                "sentry_watch_jobs",
                "gauge",
                "Jobs this sentry watch follows now.",
                &self.jobs,
            ),
            (
                "sentry_watch_tracked_cgroups",
                "gauge",
                "cgroups whose writes the eBPF probe captures now.",
                &self.tracked_cgroups,
            ),
            (
                "sentry_watch_capture_enabled",
                "gauge",
                "1 when output is captured by eBPF, 0 when only resources are watched.",
                &self.capturing,
            ),
            (
                "sentry_ring_buffer_lost_total",
                "counter",
                "Write records lost because the ring buffer was full.",
                &self.ring_lost,
            ),
            (
                "sentry_writes_unattributed_total",
                "counter",
                "Writes in watched cgroups that belonged to no watched job.",
                &self.unattributed,
            ),
            (
                "sentry_chunks_shed_total",
                "counter",
                "Output chunks the detectors skipped beyond their analysis budget.",
                &self.shed,
            ),
        ] {
            crate::metrics::header(out, name, kind, help);
            let _ = writeln!(out, "{name} {}", v.load(Relaxed));
        }
    }
}

/// What a watch session saw, for its final summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchSummary {
    /// Jobs watched.
    pub jobs: usize,
    /// Incidents recorded.
    pub incidents: usize,
    /// Jobs sentry stopped.
    pub stopped: usize,
    /// Write records lost because the ring buffer was full.
    pub events_lost: u64,
}

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Nothing to watch.
    #[error("nothing to watch: give --cgroup PATH, --pid PID, --unit NAME or --discover ci")]
    NoTarget,
    /// A target cannot be resolved.
    #[error(transparent)]
    Target(#[from] target::TargetError),
    /// An alert receiver or the events log is unusable.
    #[error("{0}")]
    Notify(String),
    /// This platform has no fleet mode.
    #[error("sentry watch needs Linux (cgroups and /proc)")]
    Unsupported,
    /// Reading other users' processes needs privileges.
    #[error("sentry watch needs root (or CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH to read other processes, plus CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN for output capture); run it with sudo")]
    NotPrivileged,
}

/// `sentry watch` is Linux-only.
#[cfg(not(target_os = "linux"))]
pub fn watch(_options: &WatchOptions) -> Result<WatchSummary, WatchError> {
    Err(WatchError::Unsupported)
}
