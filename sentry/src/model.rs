//! The plain values that stages hand to each other: capture produces [`Sample`]s and
//! [`OutputChunk`]s, detect turns them into [`Finding`]s, decide into [`Decision`]s, and a
//! decision that acts becomes an [`Incident`]. No stage reaches into another's internals.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Bytes one process wrote to one file descriptor in one `write()`/`writev()` (or one PTY read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// Thread-group id (the process id as users see it).
    pub pid: u32,
    /// File descriptor written to (1 = stdout, 2 = stderr; PTY capture reports 1).
    pub fd: u32,
    /// Time since the run started.
    pub at: Duration,
    /// The captured payload; may be a prefix of what was written (see `written_len`).
    pub bytes: Vec<u8>,
    /// How many bytes the process asked to write; larger than `bytes.len()` when the capture
    /// truncated the payload.
    pub written_len: u64,
}

/// One periodic measurement of the supervised process tree. Fields a backend cannot provide
/// are `None`, never a made-up zero.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Time since the run started.
    pub at: Duration,
    /// CPU of the whole tree over the last interval, per-core percent like `top` (may exceed 100).
    pub cpu_pct: f64,
    /// Cumulative CPU time of the tree, in microseconds.
    pub cpu_usage_us: u64,
    /// `some avg10` from the cgroup's `cpu.pressure`, when available.
    pub cpu_pressure_some_avg10: Option<f64>,
    /// Resident memory of the tree in bytes.
    pub mem_bytes: Option<u64>,
    /// Number of live processes in the tree.
    pub pids: u32,
    /// Cumulative bytes read from storage/files by the tree.
    pub io_read_bytes: Option<u64>,
    /// Cumulative bytes written to storage/files by the tree.
    pub io_write_bytes: Option<u64>,
    /// Cumulative syscalls made by the tree, where the backend counts them.
    pub syscalls: Option<u64>,
    /// Cumulative `write()` calls observed on captured fds.
    pub writes: u64,
    /// Cumulative bytes of those writes.
    pub write_bytes: u64,
}

/// What a detector noticed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A periodic sequence of output templates.
    OutputLoop,
    /// Sustained CPU without progress.
    CpuBurn,
    /// Memory growing past a limit or at a steep slope.
    MemoryGrowth,
    /// No output, CPU or I/O for a long time.
    Stall,
    /// The process count growing fast.
    ForkStorm,
    /// No output and no CPU or I/O progress for the user's `--no-output-timeout`.
    NoOutput,
    /// Running far past this job's learned baseline (its usual duration or CPU).
    Regression,
}

impl FindingKind {
    /// Human wording used in summaries ("output loop").
    pub fn label(self) -> &'static str {
        match self {
            FindingKind::OutputLoop => "output loop",
            FindingKind::CpuBurn => "CPU burn",
            FindingKind::MemoryGrowth => "memory growth",
            FindingKind::Stall => "stall",
            FindingKind::ForkStorm => "fork storm",
            FindingKind::NoOutput => "no-output timeout",
            FindingKind::Regression => "regression",
        }
    }
}

/// Evidence for an output loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LoopEvidence {
    /// Cycle length in logical lines.
    pub period: usize,
    /// How many times the cycle was seen back to back.
    pub repeats: usize,
    /// The normalised templates of one cycle.
    pub pattern: Vec<String>,
    /// One raw occurrence of the cycle (redacted before it leaves the process).
    pub example: Vec<String>,
    /// 1-based logical line number where the loop began.
    pub first_line: u64,
    /// 1-based logical line number of the last line seen in the loop.
    pub last_line: u64,
}

/// Evidence for a resource finding (CPU, memory, stall, fork storm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourceEvidence {
    /// What was measured, e.g. `cpu_pct`, `mem_bytes`, `pids`, `idle_s`.
    pub metric: String,
    /// The observed value (average or latest, as `note` says).
    pub value: f64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// The window the value was taken over, in seconds.
    pub window_s: f64,
}

/// Evidence for a regression against the job's learned baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegressionEvidence {
    /// What was compared: `wall_s` or `cpu_s`.
    pub metric: String,
    /// This run's figure so far, seconds.
    pub value: f64,
    /// The baseline's median, seconds.
    pub median: f64,
    /// `value / median`.
    pub ratio: f64,
    /// The elastic limit it crossed (`median × factor`), seconds.
    pub threshold: f64,
    /// How many healthy runs the baseline comes from.
    pub runs: u32,
    /// The baseline's 90th percentile of wall time, seconds.
    pub p90_wall_s: f64,
    /// The job key the history belongs to.
    pub job_key: String,
}

/// The evidence behind a finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Evidence {
    /// An output loop.
    Loop(LoopEvidence),
    /// A resource measurement.
    Resource(ResourceEvidence),
    /// A run against its job's baseline.
    Regression(RegressionEvidence),
}

/// One detector's verdict at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// What kind of runaway this points at.
    pub kind: FindingKind,
    /// 0 = no sign, 1 = certain runaway.
    pub score: f64,
    /// Time since the run started.
    pub at: Duration,
    /// Why, in one human sentence ("period 3, 57 repeats, 2 error lines per cycle").
    pub summary: String,
    /// Signals that weighed towards runaway or progress, for the record.
    pub reasons: Vec<String>,
    /// The data behind it.
    pub evidence: Evidence,
}

/// What sentry does about the tree.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing to do.
    Continue,
    /// Record and print; leave the child alone.
    Alert,
    /// Freeze the tree until resumed.
    Pause,
    /// Stop the whole tree.
    Kill,
    /// Kill, then start the command again (with backoff and a budget).
    Restart,
}

impl Action {
    /// Lower-case name as used in reports, flags and policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Continue => "continue",
            Action::Alert => "alert",
            Action::Pause => "pause",
            Action::Kill => "kill",
            Action::Restart => "restart",
        }
    }
}

/// What the decision engine concluded at one moment, with everything behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Time since the run started.
    pub at: Duration,
    /// What to do.
    pub action: Action,
    /// 0..1 confidence that the tree is a runaway.
    pub confidence: f64,
    /// Human reasons, strongest first.
    pub reasons: Vec<String>,
    /// The findings this decision was taken on.
    pub findings: Vec<Finding>,
}

/// A decision that did something (alert or stronger), as recorded and reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Incident {
    /// The leading finding's kind.
    pub kind: FindingKind,
    /// Seconds from the run's start to detection.
    pub detected_after_s: f64,
    /// What was done.
    pub action: Action,
    /// The leading finding's score.
    pub score: f64,
    /// The decision engine's confidence that the tree is a runaway.
    #[serde(default)]
    pub confidence: f64,
    /// One-line human summary.
    pub summary: String,
    /// What came of the action: "alerted", "stopped", "paused", "restarted (attempt 2)",
    /// "gave up after 3 restarts", or why an action could not be carried out.
    #[serde(default)]
    pub outcome: String,
    /// Which attempt of the command (1 = the first start; restarts count up).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// The decision's reasons, strongest first.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The leading finding's evidence.
    pub evidence: Evidence,
    /// True when sentry ran in shadow mode: `action` is what enforcement would have done,
    /// and nothing touched the command.
    #[serde(default)]
    pub shadow: bool,
}

fn first_attempt() -> u32 {
    1
}
