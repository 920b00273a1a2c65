//! The unprivileged capture backend: the command runs on a pseudo-terminal in its own session
//! (so it still line-buffers and keeps its colours), sentry reads its output from the PTY and
//! copies it to its own stdout, and samples CPU, memory and I/O of the process tree from the
//! OS's process table (`/proc` on Linux; libproc on macOS, where the mode is called "macos").
//!
//! One thread per run starts the command, reads its terminal, samples the tree, notices the
//! direct child's exit, kills and reaps whatever the command left behind, reads the last of
//! its output and reports the end. Everything it sees goes out as [`Observation`]s.
//!
//! Compared with the kernel backend: output is what reached the terminal (one chunk per read,
//! fd 1, the direct child's pid), not each `write()`; a process that leaves the tree before
//! it is ever seen and clears its environment can escape; nothing needs privileges.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::pty::{self, Pty, PtyChild, PtyError, PtyOptions, Session};
use super::spawn::{self, SpawnError};
use super::tree::{ProcessTable, RunTree, RUN_MARKER_VAR};
use super::{CaptureRun, CaptureTotals, Observation, RunEnd, RunSpec, TreeControl};
use crate::model::{OutputChunk, Sample};

#[cfg(target_os = "linux")]
type Table = ProcfsTable;
#[cfg(target_os = "macos")]
type Table = super::macos::LibprocTable;

/// How many observations may wait for the consumer before the run's thread blocks (and the
/// command blocks on its full terminal: back-pressure, nothing lost).
const CHANNEL_DEPTH: usize = 4096;

/// Longest wait between two looks at the direct child (output wakes the thread at once;
/// this only bounds how late a silent command's exit is noticed). 25 ms rather than 10 ms
/// halves sentry's own CPU on a quiet command (`cargo xtask bench detect-live --mode fallback`).
const EXIT_CHECK: Duration = Duration::from_millis(25);

/// How long the leftovers of a finished command get to die after SIGKILL.
const KILL_PATIENCE: Duration = Duration::from_secs(5);

/// How long the last output may take to arrive once every process is gone.
const DRAIN_PATIENCE: Duration = Duration::from_secs(2);

/// Why the fallback backend could not start the command.
#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    /// The command could not be started (127: not found, 126: not executable).
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// No pseudo-terminal could be created.
    #[error(transparent)]
    Pty(PtyError),
    /// `/proc` is missing.
    #[error(
        "/proc is not mounted, and fallback mode reads the process tree, CPU and memory from \
         it: mount it (`mount -t proc proc /proc`) or run sentry where it is available"
    )]
    NoProcfs,
    /// Another system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        source: io::Error,
    },
}

impl From<PtyError> for FallbackError {
    fn from(err: PtyError) -> Self {
        match err {
            PtyError::Spawn(spawn) => FallbackError::Spawn(spawn),
            other => FallbackError::Pty(other),
        }
    }
}

/// `/proc` as the tree logic sees it.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcfsTable;

#[cfg(target_os = "linux")]
impl ProcessTable for ProcfsTable {
    fn children(&self, pid: i32) -> Vec<i32> {
        super::procfs::children(pid)
    }

    fn info(&self, pid: i32) -> Option<super::tree::ProcInfo> {
        super::procfs::stat(pid).map(|st| super::tree::ProcInfo {
            ppid: st.ppid,
            pgid: st.pgrp,
            start: st.start_ticks,
            zombie: st.is_zombie(),
        })
    }

    fn carries(&self, pid: i32, entry: &[u8]) -> bool {
        super::procfs::environ_contains(pid, entry)
    }

    fn group(&self, _pgid: i32) -> Vec<i32> {
        Vec::new()
    }

    fn figures(&self, pids: &[i32]) -> super::tree::Figures {
        let stats = super::procfs::sum_over(pids);
        super::tree::Figures {
            processes: stats.processes,
            cpu_us: stats.cpu_total_us(),
            mem_bytes: Some(stats.rss_bytes),
            // `rchar`, as in kernel mode: a compressor reading a file that sits in the page
            // cache moves no storage bytes (`read_bytes` stays 0) but is making progress.
            io_read_bytes: stats.io.map(|io| io.rchar),
            io_write_bytes: stats.io.map(|io| io.write_bytes),
        }
    }
}

/// Handle to act on a running tree from other threads.
#[derive(Debug, Clone)]
pub struct Control {
    tree: Arc<RunTree<Table>>,
}

impl TreeControl for Control {
    fn pid(&self) -> i32 {
        self.tree.leader()
    }

    fn has_ended(&self) -> bool {
        self.tree.leader_reaped()
    }

    fn signal(&self, signal: Signal) {
        self.tree.signal_leader(signal);
    }

    fn signal_tree(&self, signal: Signal) {
        self.tree.signal_all(signal);
    }

    fn kill_tree(&self) -> io::Result<()> {
        // The run's thread reaps the direct child and reports the end; here it is enough that
        // nothing is left running.
        self.tree.kill_all(KILL_PATIENCE);
        Ok(())
    }

    fn set_paused(&self, paused: bool) -> io::Result<()> {
        self.tree.set_paused(paused);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("process group {}", self.tree.leader())
    }
}

/// A command running under the fallback (PTY) backend.
pub struct FallbackRun {
    observations: Receiver<Observation>,
    control: Control,
    thread: Option<JoinHandle<()>>,
}

impl FallbackRun {
    /// Starts the command on a PTY with sentry's terminal attached (output copied to stdout,
    /// stdin forwarded when it is a terminal) and begins streaming.
    pub fn start(spec: &RunSpec) -> Result<FallbackRun, FallbackError> {
        FallbackRun::start_with(spec, PtyOptions::default())
    }

    /// Like [`FallbackRun::start`], with the terminal plumbing chosen by the caller.
    pub fn start_with(spec: &RunSpec, options: PtyOptions) -> Result<FallbackRun, FallbackError> {
        let program = spec.command.first().ok_or(SpawnError::Empty)?.clone();
        let resolved = spawn::resolve(&program)?;
        let table = host_table()?;
        become_subreaper()?;
        let size = if options.follow_window_size {
            pty::host_window_size()
        } else {
            None
        };
        let pty = Pty::open(size.as_ref())?;
        let marker = next_marker();
        let command = child_command(&resolved, &spec.command, &marker);

        let started = Instant::now();
        let (tx, rx) = mpsc::sync_channel(CHANNEL_DEPTH);
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let interval = spec.sample_interval;
        let thread = std::thread::Builder::new()
            .name("sentry-pty".into())
            .spawn(move || {
                // The child is started here, not by the caller: PR_SET_PDEATHSIG ties it to
                // the thread that created it, and this one lives exactly as long as the run.
                let Some((tree, session)) =
                    start_child(command, &program, pty, options, table, marker, &ready_tx)
                else {
                    return;
                };
                let _ = ready_tx.send(Ok(Arc::clone(&tree)));
                drop(ready_tx);
                Drain::new(tree, tx, started, interval).run(session);
            })
            .map_err(|source| FallbackError::Io {
                what: "cannot start the capture thread",
                source,
            })?;
        let tree = match ready_rx.recv() {
            Ok(Ok(tree)) => tree,
            Ok(Err(err)) => {
                let _ = thread.join();
                return Err(err);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(FallbackError::Io {
                    what: "the capture thread ended while starting the command",
                    source: io::Error::other("capture thread exited"),
                });
            }
        };
        Ok(FallbackRun {
            observations: rx,
            control: Control { tree },
            thread: Some(thread),
        })
    }
}

impl CaptureRun for FallbackRun {
    fn observations(&self) -> &Receiver<Observation> {
        &self.observations
    }

    fn control(&self) -> Arc<dyn TreeControl> {
        Arc::new(self.control.clone())
    }

    fn mode(&self) -> &'static str {
        if cfg!(target_os = "macos") {
            "macos"
        } else {
            "fallback"
        }
    }
}

impl Drop for FallbackRun {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // If the consumer stopped early, kill the tree so the thread finishes, then wait
            // for it: it reaps everything and restores the terminal.
            if !self.control.has_ended() {
                let _ = self.control.kill_tree();
            }
            while self.observations.recv().is_ok() {}
            let _ = thread.join();
        }
    }
}

#[cfg(target_os = "linux")]
fn host_table() -> Result<Table, FallbackError> {
    if !std::path::Path::new("/proc/self/stat").exists() {
        return Err(FallbackError::NoProcfs);
    }
    Ok(ProcfsTable)
}

#[cfg(target_os = "macos")]
fn host_table() -> Result<Table, FallbackError> {
    Ok(super::macos::LibprocTable::new())
}

/// Makes orphans of sentry's descendants (a daemon's double fork) re-parent to sentry
/// instead of init, so they can be found, killed and reaped. macOS has no such thing.
#[cfg(target_os = "linux")]
fn become_subreaper() -> Result<(), FallbackError> {
    nix::sys::prctl::set_child_subreaper(true).map_err(|errno| FallbackError::Io {
        what: "cannot make sentry a child subreaper (prctl PR_SET_CHILD_SUBREAPER)",
        source: errno.into(),
    })
}

#[cfg(target_os = "macos")]
fn become_subreaper() -> Result<(), FallbackError> {
    Ok(())
}

/// A marker unique to this run among all runs of all sentry processes: `<pid>.<n>`.
fn next_marker() -> String {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    format!("{}.{n}", std::process::id())
}

fn child_command(program: &Path, argv: &[OsString], marker: &str) -> Command {
    let mut command = Command::new(program);
    if let Some(arg0) = argv.first() {
        command.arg0(arg0);
    }
    command.args(argv.iter().skip(1));
    crate::capture::spawn::strip_secrets(&mut command);
    command.env(RUN_MARKER_VAR, marker);
    command
}

type Ready = SyncSender<Result<Arc<RunTree<Table>>, FallbackError>>;

/// Starts the child and its terminal session; on failure reports through `ready`.
fn start_child(
    command: Command,
    program: &OsString,
    pty: Pty,
    options: PtyOptions,
    table: Table,
    marker: String,
    ready: &Ready,
) -> Option<(Arc<RunTree<Table>>, Session)> {
    let PtyChild { master, child } = match pty::spawn(command, program, pty) {
        Ok(child) => child,
        Err(err) => {
            let _ = ready.send(Err(err.into()));
            return None;
        }
    };
    let Ok(pid) = i32::try_from(child.id()) else {
        let _ = ready.send(Err(FallbackError::Io {
            what: "child pid out of range",
            source: io::Error::from_raw_os_error(libc::ERANGE),
        }));
        return None;
    };
    // The tree reaps the child by pid (with its rusage); std's handle is not needed.
    drop(child);
    let entry = format!("{RUN_MARKER_VAR}={marker}").into_bytes();
    let tree = Arc::new(RunTree::new(table, pid, entry));
    match Session::new(master, options) {
        Ok(session) => Some((tree, session)),
        Err(source) => {
            tree.kill_all(KILL_PATIENCE);
            let deadline = Instant::now() + KILL_PATIENCE;
            while tree.reap_leader().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            tree.close();
            let _ = ready.send(Err(FallbackError::Io {
                what: "cannot set up the command's terminal",
                source,
            }));
            None
        }
    }
}

/// Turns terminal reads into output chunks and counts them.
struct Emitter {
    tx: SyncSender<Observation>,
    started: Instant,
    pid: u32,
    chunks: u64,
    bytes: u64,
}

impl Emitter {
    fn output(&mut self, bytes: &[u8]) {
        self.chunks += 1;
        self.bytes += bytes.len() as u64;
        // A closed receiver means the consumer is gone; keep going for the counts.
        let _ = self.tx.send(Observation::Output(OutputChunk {
            pid: self.pid,
            fd: 1,
            at: self.started.elapsed(),
            bytes: bytes.to_vec(),
            written_len: bytes.len() as u64,
        }));
    }
}

/// The per-run thread: reads, samples, waits, cleans up.
struct Drain {
    tree: Arc<RunTree<Table>>,
    emitter: Emitter,
    interval: Duration,
    /// Cumulative CPU of the tree at the last sample, and when.
    last_cpu: (u64, Instant),
}

impl Drain {
    fn new(
        tree: Arc<RunTree<Table>>,
        tx: SyncSender<Observation>,
        started: Instant,
        interval: Duration,
    ) -> Drain {
        let pid = u32::try_from(tree.leader()).unwrap_or(0);
        Drain {
            tree,
            emitter: Emitter {
                tx,
                started,
                pid,
                chunks: 0,
                bytes: 0,
            },
            interval,
            last_cpu: (0, started),
        }
    }

    fn run(mut self, mut session: Session) {
        let started = self.emitter.started;
        // The first sample comes early so that even a short run has one taken while its
        // processes are alive (peaks of memory and pids).
        let mut next_sample = started + self.interval.min(Duration::from_millis(50));
        let status: ExitStatus = loop {
            let now = Instant::now();
            let timeout = next_sample.saturating_duration_since(now).min(EXIT_CHECK);
            session.pump(timeout, &mut |bytes| self.emitter.output(bytes));
            if Instant::now() >= next_sample {
                self.sample();
                next_sample = Instant::now() + self.interval;
            }
            if let Some(status) = self.tree.reap_leader() {
                break status;
            }
        };
        // sentry's terminal goes back to normal as soon as the command is gone.
        session.stop_input();

        // The direct child is gone; anything left in the tree would run on unsupervised.
        let leftover_pids = self.tree.kill_all(KILL_PATIENCE);
        // Now nothing holds the terminal: read to its end.
        if !session.drain(Instant::now() + DRAIN_PATIENCE, &mut |bytes| {
            self.emitter.output(bytes)
        }) {
            eprintln!(
                "sentry: the command's terminal stayed open {} s after its processes were \
                 gone (a process outside the tree holds it); its last output may be missing",
                DRAIN_PATIENCE.as_secs()
            );
        }
        drop(session);
        let cpu_usage_us = self.sample();
        self.tree.close();
        let totals = CaptureTotals {
            events_captured: self.emitter.chunks,
            bytes_captured: self.emitter.bytes,
            events_lost: 0,
            writes_total: self.emitter.chunks,
            write_bytes_total: self.emitter.bytes,
            cpu_usage_us,
            ..CaptureTotals::default()
        };
        let _ = self.emitter.tx.send(Observation::Ended(RunEnd {
            status,
            totals,
            leftover_pids,
        }));
    }

    /// Measures the tree and sends a sample; returns the cumulative CPU.
    fn sample(&mut self) -> u64 {
        let pids: Vec<i32> = self.tree.reap().iter().map(|m| m.pid).collect();
        let figures = self.tree.table().figures(&pids);
        let (departed_cpu, (departed_read, departed_write)) = self.tree.departed();
        let now = Instant::now();
        let (last_usage, last_at) = self.last_cpu;
        // Never backwards: a process reaped between two looks can blur the sum for a moment.
        let usage = last_usage.max(departed_cpu.saturating_add(figures.cpu_us));
        let wall_us = now.duration_since(last_at).as_micros() as f64;
        let cpu_pct = if wall_us > 0.0 {
            (usage - last_usage) as f64 / wall_us * 100.0
        } else {
            0.0
        };
        self.last_cpu = (usage, now);
        let _ = self.emitter.tx.send(Observation::Sample(Sample {
            at: now.duration_since(self.emitter.started),
            cpu_pct,
            cpu_usage_us: usage,
            cpu_pressure_some_avg10: None,
            // An empty tree has no resident memory to speak of: unknown, not a made-up zero.
            mem_bytes: figures.mem_bytes.filter(|_| !pids.is_empty()),
            pids: figures.processes,
            io_read_bytes: io_or_departed(figures.io_read_bytes, &pids, departed_read),
            io_write_bytes: io_or_departed(figures.io_write_bytes, &pids, departed_write),
            syscalls: None,
            writes: self.emitter.chunks,
            write_bytes: self.emitter.bytes,
        }));
        usage
    }
}

/// Storage I/O of the live processes plus what the reaped ones did; once nothing is left,
/// the reaped ones' alone.
fn io_or_departed(live: Option<u64>, pids: &[i32], departed: u64) -> Option<u64> {
    let live = if pids.is_empty() { Some(0) } else { live };
    live.map(|bytes| bytes.saturating_add(departed))
}
