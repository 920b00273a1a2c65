//! A watched job's processes: how they are found, measured and acted on. sentry did not
//! start them and does not own their cgroup, so every action goes through the processes
//! themselves (signals), never through cgroup files: SIGTERM then SIGKILL to stop, SIGSTOP
//! and SIGCONT to pause and resume, each aimed at exactly the job's processes.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::capture::{cgroup, procfs, TreeControl};

/// How a job's processes are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Members {
    /// Every process in this cgroup and the cgroups below it.
    Cgroup(PathBuf),
    /// Every process that carries this environment entry (`NAME=VALUE`), wherever it runs.
    Env(Vec<u8>),
}

impl Members {
    /// The job's live processes, looked up now (never sentry itself or init).
    pub fn pids(&self) -> Vec<i32> {
        let me = std::process::id() as i32;
        let mut pids = match self {
            Members::Cgroup(path) => cgroup::pids_in_subtree(path),
            Members::Env(entry) => super::discover::pids_carrying(entry),
        };
        pids.retain(|&p| p != me && p > 1);
        pids
    }
}

/// Acts on a watched job through its processes.
#[derive(Debug)]
pub struct JobControl {
    members: Members,
    name: String,
    leader: AtomicI32,
    ended: AtomicBool,
}

impl JobControl {
    /// A control for the job `name` whose processes are `members`.
    pub fn new(name: String, members: Members, leader: i32) -> JobControl {
        JobControl {
            members,
            name,
            leader: AtomicI32::new(leader),
            ended: AtomicBool::new(false),
        }
    }

    /// Marks the job as gone: nothing is signalled after this (its pids may be reused).
    pub fn set_ended(&self) {
        self.ended.store(true, Ordering::SeqCst);
    }

    /// The job's processes now.
    pub fn pids(&self) -> Vec<i32> {
        self.members.pids()
    }

    fn signal_each(&self, signal: Signal) -> usize {
        if self.has_ended() {
            return 0;
        }
        let pids = self.pids();
        for &pid in &pids {
            let _ = kill(Pid::from_raw(pid), signal);
        }
        pids.len()
    }
}

impl TreeControl for JobControl {
    fn pid(&self) -> i32 {
        self.leader.load(Ordering::SeqCst)
    }

    fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    fn signal(&self, signal: Signal) {
        if !self.has_ended() {
            let _ = kill(Pid::from_raw(self.pid()), signal);
        }
    }

    fn signal_tree(&self, signal: Signal) {
        self.signal_each(signal);
    }

    fn kill_tree(&self) -> io::Result<()> {
        // A process may fork between the listing and the kill: look again until none is
        // left (each round kills what the last one missed).
        for _ in 0..5 {
            if self.signal_each(Signal::SIGKILL) == 0 {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }

    fn set_paused(&self, paused: bool) -> io::Result<()> {
        self.signal_each(if paused {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        });
        Ok(())
    }

    fn describe(&self) -> String {
        match &self.members {
            Members::Cgroup(path) => {
                format!("{} (processes of cgroup {})", self.name, path.display())
            }
            Members::Env(entry) => format!(
                "{} (processes carrying {})",
                self.name,
                String::from_utf8_lossy(entry)
            ),
        }
    }
}

/// One reading of a job's processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// Live processes.
    pub pids: u32,
    /// CPU time of the job so far, microseconds (never decreases).
    pub cpu_us: u64,
    /// Resident memory of its processes.
    pub rss_bytes: u64,
    /// Bytes passed to `read()`-like calls (`rchar`) so far: reading input is progress.
    pub read_bytes: u64,
    /// Bytes written to storage so far.
    pub write_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    start: u64,
    ppid: i32,
    cpu_us: u64,
    io: (u64, u64),
}

/// Measures a set of processes over time so that the totals include processes that have
/// exited: a process that leaves keeps its last CPU reading in the total unless its parent
/// is in the job (then the parent's reaped-children time takes it over), and its I/O always.
#[derive(Debug, Default)]
pub struct Meter {
    seen: HashMap<i32, Seen>,
    departed_cpu_us: u64,
    departed_io: (u64, u64),
    last: Reading,
}

impl Meter {
    /// Reads `pids` now.
    pub fn read(&mut self, pids: &[i32]) -> Reading {
        let mut now: HashMap<i32, Seen> = HashMap::with_capacity(pids.len());
        let mut rss_pages = 0u64;
        let mut alive = 0u32;
        for &pid in pids {
            let Some(st) = procfs::stat(pid) else {
                continue;
            };
            if !st.is_zombie() {
                alive += 1;
            }
            rss_pages += st.rss_pages;
            let io = match procfs::io(pid) {
                procfs::IoRead::Counters(c) => (c.rchar, c.write_bytes),
                _ => self.seen.get(&pid).map_or((0, 0), |s| s.io),
            };
            now.insert(
                pid,
                Seen {
                    start: st.start_ticks,
                    ppid: st.ppid,
                    cpu_us: procfs::ticks_to_us(st.utime + st.stime + st.cutime + st.cstime),
                    io,
                },
            );
        }
        for (pid, old) in &self.seen {
            let same = now.get(pid).is_some_and(|n| n.start == old.start);
            if same {
                continue;
            }
            if !now.contains_key(&old.ppid) {
                self.departed_cpu_us += old.cpu_us;
            }
            self.departed_io.0 += old.io.0;
            self.departed_io.1 += old.io.1;
        }
        let sum = |f: fn(&Seen) -> u64| now.values().map(f).sum::<u64>();
        let reading = Reading {
            pids: alive,
            cpu_us: (sum(|s| s.cpu_us) + self.departed_cpu_us).max(self.last.cpu_us),
            rss_bytes: rss_pages * procfs::page_size(),
            read_bytes: (sum(|s| s.io.0) + self.departed_io.0).max(self.last.read_bytes),
            write_bytes: (sum(|s| s.io.1) + self.departed_io.1).max(self.last.write_bytes),
        };
        self.seen = now;
        self.last = reading;
        reading
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    #[test]
    fn cpu_of_exited_children_stays_counted_and_signals_reach_only_the_job() {
        let id = format!("members_{}", std::process::id());
        let entry = format!("CI_JOB_ID={id}");
        // The job burns CPU in a child that exits; the shell lives on.
        let mut job = Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 30",
            ])
            .env("CI_JOB_ID", &id)
            .spawn()
            .unwrap();
        let mut bystander = Command::new("sleep").arg("30").spawn().unwrap();
        let members = Members::Env(entry.clone().into_bytes());
        let mut meter = Meter::default();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut reading = Reading::default();
        while Instant::now() < deadline {
            reading = meter.read(&members.pids());
            if reading.cpu_us > 100_000 && reading.pids == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(reading.cpu_us > 100_000, "{reading:?}");
        let control = JobControl::new("job".into(), members, job.id() as i32);
        control.kill_tree().unwrap();
        let status = job.wait().unwrap();
        assert!(!status.success());
        assert!(
            bystander.try_wait().unwrap().is_none(),
            "a process outside the job is untouched"
        );
        let after = meter.read(&control.pids());
        assert!(after.cpu_us >= reading.cpu_us, "totals never drop");
        let _ = bystander.kill();
        let _ = bystander.wait();
    }
}
