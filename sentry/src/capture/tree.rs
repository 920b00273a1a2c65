//! The process tree of a run that has no cgroup (the PTY backends): which processes belong to
//! it, signalling all of them, and reaping the ones that end up as sentry's children.
//!
//! The command leads its own session and process group, but processes can leave the group
//! (`setsid`, `setpgid`) and daemons double-fork so that their parent exits. sentry is a
//! child subreaper on Linux, so such orphans are re-parented to sentry instead of init; they
//! are told apart from other children of sentry (other runs' processes) by a marker in the
//! environment the run started with, or by having been seen in the tree before (identified
//! by pid and start time, so a reused pid is never mistaken for a member).
//!
//! What the OS offers is behind [`ProcessTable`]: `/proc` on Linux, libproc on macOS.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// How long [`RunTree::kill_all`] waits before it believes a first look that found nothing.
const EMPTY_RECHECK: Duration = Duration::from_millis(20);

/// Environment variable that marks the processes of a run: `<sentry pid>.<run number>`.
pub const RUN_MARKER_VAR: &str = "SENTRY_RUN_MARKER";

/// A process's identity and state, as the tree logic needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcInfo {
    /// Parent pid.
    pub ppid: i32,
    /// Process group.
    pub pgid: i32,
    /// Start time in the table's own unit; with the pid it identifies the process over time.
    pub start: u64,
    /// Exited and waiting to be reaped.
    pub zombie: bool,
}

/// Figures summed over a set of processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    /// Live (not zombie) processes.
    pub processes: u32,
    /// CPU time in microseconds, including the children those processes have reaped.
    pub cpu_us: u64,
    /// Resident memory in bytes.
    pub mem_bytes: Option<u64>,
    /// Bytes read from storage.
    pub io_read_bytes: Option<u64>,
    /// Bytes written to storage.
    pub io_write_bytes: Option<u64>,
}

/// What the tree logic needs from the operating system's process table.
pub trait ProcessTable: Send + Sync + std::fmt::Debug + 'static {
    /// The direct children of `pid` (empty when it is gone).
    fn children(&self, pid: i32) -> Vec<i32>;
    /// Identity and state of `pid`, `None` when it does not exist.
    fn info(&self, pid: i32) -> Option<ProcInfo>;
    /// Whether `pid` started with the environment entry `entry` (`KEY=VALUE`); `false` when
    /// the table cannot tell.
    fn carries(&self, pid: i32, entry: &[u8]) -> bool;
    /// Members of process group `pgid` that the table can list cheaply (none on Linux, where
    /// the subreaper already keeps them in the tree).
    fn group(&self, pgid: i32) -> Vec<i32>;
    /// Figures summed over `pids`.
    fn figures(&self, pids: &[i32]) -> Figures;
}

/// A member of the tree at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Its pid.
    pub pid: i32,
    /// What the table said about it.
    pub info: ProcInfo,
}

#[derive(Debug, Default)]
struct State {
    leader_reaped: bool,
    closed: bool,
    /// Members seen at the last look: pid -> start time.
    known: HashMap<i32, u64>,
    /// CPU of processes sentry has reaped (with what they had reaped), in microseconds.
    departed_cpu_us: u64,
    /// Storage I/O of processes sentry has reaped, where the table could read it.
    departed_io: (u64, u64),
}

/// The tree of one run: its leader (the direct child, leading its own session and process
/// group) and every process descended from it.
#[derive(Debug)]
pub struct RunTree<T: ProcessTable> {
    table: T,
    leader: i32,
    me: i32,
    marker: Vec<u8>,
    state: Mutex<State>,
}

impl<T: ProcessTable> RunTree<T> {
    /// The tree of the run led by `leader`, whose processes carry `marker` (`KEY=VALUE`) in
    /// their environment.
    pub fn new(table: T, leader: i32, marker: Vec<u8>) -> RunTree<T> {
        RunTree {
            table,
            leader,
            me: nix::unistd::getpid().as_raw(),
            marker,
            state: Mutex::new(State::default()),
        }
    }

    /// The process table.
    pub fn table(&self) -> &T {
        &self.table
    }

    /// The direct child's pid (also its process group and session id).
    pub fn leader(&self) -> i32 {
        self.leader
    }

    /// Whether the direct child has been reaped.
    pub fn leader_reaped(&self) -> bool {
        self.lock().leader_reaped
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the state inconsistent (every update is one store).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The processes of the tree now, parents before children.
    pub fn members(&self) -> Vec<Member> {
        let mut state = self.lock();
        self.collect(&mut state)
    }

    fn collect(&self, state: &mut State) -> Vec<Member> {
        let verified = |pid: i32, known: &HashMap<i32, u64>| {
            known.get(&pid).is_some_and(|start| {
                self.table
                    .info(pid)
                    .is_some_and(|info| info.start == *start)
            })
        };
        let mut roots = Vec::new();
        if !state.leader_reaped {
            roots.push(self.leader);
        }
        for pid in self.table.children(self.me) {
            if pid != self.leader
                && (verified(pid, &state.known) || self.table.carries(pid, &self.marker))
            {
                roots.push(pid);
            }
        }
        for (&pid, _) in state.known.iter() {
            if verified(pid, &state.known) {
                roots.push(pid);
            }
        }
        if !state.leader_reaped || !state.known.is_empty() {
            roots.extend(self.table.group(self.leader));
        }
        let mut seen = HashSet::new();
        let mut members = Vec::new();
        let mut queue: VecDeque<i32> = roots.into_iter().collect();
        while let Some(pid) = queue.pop_front() {
            if !seen.insert(pid) || pid == self.me {
                continue;
            }
            let Some(info) = self.table.info(pid) else {
                continue;
            };
            members.push(Member { pid, info });
            queue.extend(self.table.children(pid));
        }
        state.known = members.iter().map(|m| (m.pid, m.info.start)).collect();
        members
    }

    /// Sends `signal` to the direct child only (nothing once it is reaped).
    pub fn signal_leader(&self, signal: Signal) {
        let state = self.lock();
        if !state.leader_reaped && !state.closed {
            let _ = kill(Pid::from_raw(self.leader), signal);
        }
    }

    /// Sends `signal` to the process group and to every live member, also those that left
    /// the group. Returns the live members found.
    pub fn signal_all(&self, signal: Signal) -> usize {
        let mut state = self.lock();
        if state.closed {
            return 0;
        }
        // Holding the lock keeps sentry's own reaping from freeing an orphan's pid between
        // the look and the kill.
        let members = self.collect(&mut state);
        self.send(&state, &members, signal)
    }

    fn send(&self, state: &State, members: &[Member], signal: Signal) -> usize {
        // The group id is the leader's pid: safe to signal while the leader is unreaped or
        // some member still has it (a pid is not reused while a group carries it).
        if !state.leader_reaped || members.iter().any(|m| m.info.pgid == self.leader) {
            let _ = killpg(Pid::from_raw(self.leader), signal);
        }
        let mut live = 0;
        for member in members.iter().filter(|m| !m.info.zombie) {
            live += 1;
            let _ = kill(Pid::from_raw(member.pid), signal);
        }
        live
    }

    /// Stops (`true`) or continues (`false`) every process of the tree. Forks that race the
    /// first round are caught by a second one.
    pub fn set_paused(&self, paused: bool) {
        let signal = if paused {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        for _ in 0..2 {
            self.signal_all(signal);
        }
    }

    /// SIGKILLs every process of the tree (the leader too, unless reaped) until only zombies
    /// are left or `patience` runs out, reaping the zombies that are sentry's children.
    /// Returns how many live processes there were at first.
    pub fn kill_all(&self, patience: Duration) -> usize {
        let deadline = Instant::now() + patience;
        let mut first = None;
        let mut confirmed_empty = false;
        loop {
            let live = {
                let mut state = self.lock();
                if state.closed {
                    return first.unwrap_or(0);
                }
                let members = self.collect(&mut state);
                let live = if members.iter().any(|m| !m.info.zombie) {
                    self.send(&state, &members, Signal::SIGKILL)
                } else {
                    0
                };
                let _ = self.reap_orphans(&mut state, &members);
                live
            };
            // A first look that finds nothing is taken once more a moment later: an orphan
            // that is between fork and exec as the leader ends has an empty environment for
            // an instant, so the marker that makes it a member cannot be read yet.
            if live == 0 && first.is_none() && !confirmed_empty {
                confirmed_empty = true;
                std::thread::sleep(EMPTY_RECHECK);
                continue;
            }
            let first_live = *first.get_or_insert(live);
            if live == 0 || Instant::now() >= deadline {
                return first_live;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Reaps the tree's zombies that are sentry's own children (orphans re-parented to it);
    /// returns the members left.
    pub fn reap(&self) -> Vec<Member> {
        let mut state = self.lock();
        let mut members = self.collect(&mut state);
        let reaped = self.reap_orphans(&mut state, &members);
        members.retain(|m| !reaped.contains(&m.pid));
        members
    }

    /// Reaps the zombie orphans among `members`; returns their pids.
    fn reap_orphans(&self, state: &mut State, members: &[Member]) -> Vec<i32> {
        let mut reaped = Vec::new();
        for member in members {
            let orphan = member.info.zombie && member.info.ppid == self.me;
            if orphan
                && member.pid != self.leader
                && matches!(self.reap_one(state, member.pid), Wait::Exited { .. })
            {
                reaped.push(member.pid);
            }
        }
        reaped
    }

    /// Reaps `pid` if it has exited, moving its figures to the departed sums.
    fn reap_one(&self, state: &mut State, pid: i32) -> Wait {
        // The zombie's I/O counters are still readable (on Linux); after the wait they are
        // gone, so take them first.
        let io = self.table.figures(&[pid]);
        let wait = wait_nohang(pid);
        if let Wait::Exited { cpu_us, .. } = wait {
            state.departed_cpu_us = state.departed_cpu_us.saturating_add(cpu_us);
            state.departed_io.0 += io.io_read_bytes.unwrap_or(0);
            state.departed_io.1 += io.io_write_bytes.unwrap_or(0);
            state.known.remove(&pid);
        }
        wait
    }

    /// Reaps the direct child if it has exited; its status, once.
    pub fn reap_leader(&self) -> Option<ExitStatus> {
        let mut state = self.lock();
        if state.leader_reaped {
            return None;
        }
        // Cheap check first: most calls find it running.
        if self
            .table
            .info(self.leader)
            .is_some_and(|info| !info.zombie)
        {
            return None;
        }
        let status = match self.reap_one(&mut state, self.leader) {
            Wait::Exited { status, .. } => status,
            Wait::Running => return None,
            // Reaped behind sentry's back (a `waitpid(-1)` elsewhere in the process): the
            // status is lost; report a generic failure rather than wait forever.
            Wait::NotAChild => ExitStatus::from_raw(1 << 8),
        };
        state.leader_reaped = true;
        Some(status)
    }

    /// Stops all signalling: the run is over and its pids may be reused.
    pub fn close(&self) {
        self.lock().closed = true;
    }

    /// Whether [`RunTree::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// CPU microseconds and storage bytes (read, written) of the processes sentry reaped.
    pub fn departed(&self) -> (u64, (u64, u64)) {
        let state = self.lock();
        (state.departed_cpu_us, state.departed_io)
    }
}

/// What `wait4(pid, WNOHANG)` found.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// Exited and reaped now.
    Exited {
        status: ExitStatus,
        /// User + system CPU of the process and of what it had reaped itself.
        cpu_us: u64,
    },
    /// Still running.
    Running,
    /// Not a child of sentry (or reaped already).
    NotAChild,
}

/// `wait4(pid, WNOHANG)`. nix has no `wait4`, and its rusage is what keeps a reaped
/// process's CPU in the run's total.
fn wait_nohang(pid: i32) -> Wait {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to a status int and a rusage struct that outlive the call.
        let ret = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if ret == pid {
            let us = |tv: libc::timeval| {
                (tv.tv_sec.max(0) as u64) * 1_000_000 + (tv.tv_usec.max(0) as u64)
            };
            return Wait::Exited {
                status: ExitStatus::from_raw(status),
                cpu_us: us(usage.ru_utime) + us(usage.ru_stime),
            };
        }
        if ret == 0 {
            return Wait::Running;
        }
        if nix::errno::Errno::last() != nix::errno::Errno::EINTR {
            return Wait::NotAChild;
        }
    }
}
