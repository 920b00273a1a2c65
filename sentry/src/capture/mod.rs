//! Capture backends: they start the command, observe it from outside and stream what they see
//! as [`Observation`]s (output chunks, periodic samples, and finally how the run ended). The
//! kernel backend (`kernel`) captures `write()`s with an eBPF probe in a dedicated cgroup; the
//! fallback backends run the command on a pseudo-terminal. Backends know nothing about
//! detection or decisions; what the supervisor needs of a running tree is [`TreeControl`].

#[cfg(target_os = "linux")]
pub mod btf;
pub mod cgroup;
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub mod fallback;
#[cfg(target_os = "linux")]
pub mod kernel;
#[cfg(target_os = "macos")]
pub mod macos;
#[cfg(target_os = "linux")]
pub mod outputs;
#[cfg(target_os = "linux")]
pub mod procfs;
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub mod pty;
pub mod spawn;
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub mod tree;

#[cfg(any(target_os = "linux", target_os = "macos"))]
pub use fallback::{FallbackError, FallbackRun};

use std::ffi::OsString;
use std::io;
use std::process::ExitStatus;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::model::{OutputChunk, Sample};

/// Something a backend saw. The stream ends with exactly one [`Observation::Ended`].
#[derive(Debug, Clone)]
pub enum Observation {
    /// Bytes a process of the tree wrote.
    Output(OutputChunk),
    /// A periodic measurement of the tree.
    Sample(Sample),
    /// The command ended and the backend cleaned up; nothing follows.
    Ended(RunEnd),
}

/// How the run ended and what the capture saw overall.
#[derive(Debug, Clone)]
pub struct RunEnd {
    /// The direct child's wait status.
    pub status: ExitStatus,
    /// Capture totals.
    pub totals: CaptureTotals,
    /// Processes still in the tree when the direct child ended (they were killed).
    pub leftover_pids: usize,
}

/// Exact accounting of the run's writes: `writes_total == events_captured +
/// writes_counted_only + events_lost`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureTotals {
    /// Write records received by user space.
    pub events_captured: u64,
    /// Payload bytes received.
    pub bytes_captured: u64,
    /// Writes whose record the kernel could not reserve (ring buffer full).
    pub events_lost: u64,
    /// Every write/writev of the tree.
    pub writes_total: u64,
    /// Bytes asked to be written by all of them.
    pub write_bytes_total: u64,
    /// Writes beyond the capture budget: counted, bytes summed, payload not captured.
    pub writes_counted_only: u64,
    /// Bytes of the counted-only writes.
    pub bytes_counted_only: u64,
    /// Captured writes whose buffer the kernel could not read (recorded with no payload).
    pub read_failures: u64,
    /// Captured writes that went to files or to pipes inside the tree rather than to the
    /// command's stdout/stderr: counted as I/O, not fed to the detectors as output.
    pub writes_not_output: u64,
    /// Captured output chunks the detectors skipped: beyond the analysis budget (100,000 a
    /// second) or because they could not keep up; the capture itself is never held back.
    pub chunks_shed: u64,
    /// Full captures allowed per second, all CPUs together.
    pub capture_budget_per_s: u64,
    /// Cumulative CPU time of the tree in microseconds.
    pub cpu_usage_us: u64,
}

/// What to run and how to observe it.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The command and its arguments (`argv[0]` first).
    pub command: Vec<OsString>,
    /// Full captures allowed per second (all CPUs together) before writes are only counted.
    pub capture_budget_per_s: u64,
    /// Time between samples.
    pub sample_interval: Duration,
    /// Attach the no-op floor program instead of the capture programs (benchmarks only).
    pub floor_probe: bool,
    /// Every output chunk must reach the consumer (`--events` records them all): the kernel
    /// drain then waits for the consumer instead of shedding chunks from analysis.
    pub deliver_all: bool,
}

/// What the supervisor can do to a running tree, whatever the backend. Cheap to share between
/// threads (signal forwarding, the decision loop, later the API).
pub trait TreeControl: Send + Sync + std::fmt::Debug {
    /// The direct child's pid.
    fn pid(&self) -> i32;
    /// Whether the direct child has been reaped (after that, nothing is signalled: its pid may
    /// have been reused).
    fn has_ended(&self) -> bool;
    /// Sends `signal` to the direct child only.
    fn signal(&self, signal: Signal);
    /// Sends `signal` to every process of the tree.
    fn signal_tree(&self, signal: Signal);
    /// Kills every process of the tree at once (`cgroup.kill`, or SIGKILL to each).
    fn kill_tree(&self) -> io::Result<()>;
    /// Freezes (`true`) or thaws (`false`) the whole tree.
    fn set_paused(&self, paused: bool) -> io::Result<()>;
    /// Where the tree lives, for messages: "cgroup /sys/fs/cgroup/…", "process group 1234".
    fn describe(&self) -> String;
}

/// A command running under some backend.
pub trait CaptureRun {
    /// The observation stream; it ends with exactly one [`Observation::Ended`].
    fn observations(&self) -> &Receiver<Observation>;
    /// A handle to act on the tree.
    fn control(&self) -> Arc<dyn TreeControl>;
    /// The mode's name as reported: "kernel", "fallback", "macos".
    fn mode(&self) -> &'static str;
}
