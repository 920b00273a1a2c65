//! `--discover ci`: the CI jobs running on this host, found by the variables their processes
//! carry (see [`super::ci`]) and followed as they come and go. Each scan lists `/proc`; only a
//! process not seen before (a new pid, or a reused one with a new start time) has its
//! environment read, so a scan of a busy host costs a directory listing and a few reads.

use std::collections::{BTreeSet, HashMap};
use std::fs;

use super::ci::{self, CiJob};
use crate::capture::procfs;

/// What changed since the last scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A job's first process appeared.
    Started(CiJob),
    /// A job's last process is gone.
    Ended(String),
}

#[derive(Debug, Clone)]
struct Known {
    start: u64,
    /// The key (`ci:id`) of the job the process belongs to.
    job: Option<String>,
}

/// The jobs on this host and their processes.
#[derive(Debug, Default)]
pub struct CiScan {
    procs: HashMap<i32, Known>,
    jobs: HashMap<String, Job>,
    /// Processes never attributed: sentry itself and its ancestors (a `sentry watch` started
    /// from a job's shell must not watch itself).
    exclude: BTreeSet<i32>,
}

#[derive(Debug)]
struct Job {
    info: CiJob,
    pids: BTreeSet<i32>,
}

/// The key a job is tracked under.
pub fn key_of(job: &CiJob) -> String {
    format!("{}:{}", job.ci, job.id)
}

impl CiScan {
    /// A scanner that never attributes this process or its ancestors.
    pub fn new() -> CiScan {
        let mut exclude = BTreeSet::new();
        let mut pid = std::process::id() as i32;
        while pid > 1 && exclude.insert(pid) {
            match procfs::stat(pid) {
                Some(st) => pid = st.ppid,
                None => break,
            }
        }
        CiScan {
            exclude,
            ..CiScan::default()
        }
    }

    /// Lists `/proc`, attributes new processes, forgets departed ones, and says which jobs
    /// started and ended.
    pub fn scan(&mut self) -> Vec<Change> {
        let mut changes = Vec::new();
        // An unreadable /proc says nothing about the jobs: no change.
        let Ok(pids) = procfs::pids() else {
            return changes;
        };
        let mut alive: BTreeSet<i32> = BTreeSet::new();
        for pid in pids {
            // A process seen before that belongs to no job is not read again: most of a
            // host's processes are that, and a scan must stay a directory listing. (A pid
            // reused between two scans by a new job's process is found when it writes, or
            // through its children.)
            if self.procs.get(&pid).is_some_and(|k| k.job.is_none()) {
                alive.insert(pid);
                continue;
            }
            // An exited process waiting to be reaped (its runner may never reap it) has left
            // its job.
            let Some(st) = procfs::stat(pid).filter(|st| !st.is_zombie()) else {
                continue;
            };
            if let Some(change) = self.observe(pid, st.start_ticks, st.ppid) {
                changes.push(change);
            }
            if self.procs.contains_key(&pid) {
                alive.insert(pid);
            }
        }
        let gone: Vec<i32> = self
            .procs
            .keys()
            .filter(|p| !alive.contains(p))
            .copied()
            .collect();
        for pid in gone {
            self.forget(pid);
        }
        let ended: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.pids.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for key in ended {
            self.jobs.remove(&key);
            changes.push(Change::Ended(key));
        }
        changes
    }

    /// Attributes `pid` now (a writer the last scan has not seen yet): the key of the job it
    /// belongs to, if any, and the job's [`Change::Started`] when this is its first process
    /// (the next scan will not announce it again).
    pub fn classify(&mut self, pid: i32) -> (Option<String>, Option<Change>) {
        let change = procfs::stat(pid)
            .filter(|st| !st.is_zombie())
            .and_then(|st| self.observe(pid, st.start_ticks, st.ppid));
        let key = self.procs.get(&pid).and_then(|k| k.job.clone());
        (key, change)
    }

    /// The live processes of job `key`.
    pub fn pids_of(&self, key: &str) -> Vec<i32> {
        self.jobs
            .get(key)
            .map(|j| j.pids.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether `pid` is a live process of some job.
    pub fn is_known(&self, pid: i32) -> bool {
        self.procs.get(&pid).is_some_and(|k| k.job.is_some())
    }

    /// Jobs currently seen.
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Looks at one live pid (started at `start`, child of `ppid`); a new process is attributed
    /// to its parent's job, or else from its environment.
    fn observe(&mut self, pid: i32, start: u64, ppid: i32) -> Option<Change> {
        if self.exclude.contains(&pid) {
            return None;
        }
        if let Some(known) = self.procs.get(&pid) {
            if known.start == start {
                return None;
            }
            // The pid was reused by a new process.
            self.forget(pid);
        }
        // A child of a job's process is that job's (whatever it did to its environment), and
        // is attributed without reading its environment: CI jobs fork hundreds of short-lived
        // processes a second.
        if let Some(key) = self.procs.get(&ppid).and_then(|k| k.job.clone()) {
            if let Some(job) = self.jobs.get_mut(&key) {
                job.pids.insert(pid);
                self.procs.insert(
                    pid,
                    Known {
                        start,
                        job: Some(key),
                    },
                );
                return None;
            }
        }
        let job = fs::read(format!("/proc/{pid}/environ"))
            .ok()
            .and_then(|env| ci::from_environ(&env));
        let mut change = None;
        let key = job.map(|info| {
            let key = key_of(&info);
            let entry = self.jobs.entry(key.clone()).or_insert_with(|| {
                change = Some(Change::Started(info.clone()));
                Job {
                    info,
                    pids: BTreeSet::new(),
                }
            });
            entry.pids.insert(pid);
            key
        });
        self.procs.insert(pid, Known { start, job: key });
        change
    }

    fn forget(&mut self, pid: i32) {
        if let Some(Known { job: Some(key), .. }) = self.procs.remove(&pid) {
            if let Some(job) = self.jobs.get_mut(&key) {
                job.pids.remove(&pid);
            }
        }
    }

    /// The job's description (labels), while it is seen.
    pub fn job(&self, key: &str) -> Option<&CiJob> {
        self.jobs.get(key).map(|j| &j.info)
    }
}

/// Every live process that carries the job marker `entry` (`NAME=VALUE`) in its environment:
/// a fresh look at `/proc`, for acting on a job (the scan's view may be a second old).
pub fn pids_carrying(entry: &[u8]) -> Vec<i32> {
    let me = std::process::id() as i32;
    procfs::pids()
        .into_iter()
        .flatten()
        .filter(|&pid| pid != me && pid > 1 && procfs::environ_contains(pid, entry))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn scan_until(scan: &mut CiScan, what: impl Fn(&[Change]) -> bool) -> Vec<Change> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut all = Vec::new();
        while Instant::now() < deadline {
            all.extend(scan.scan());
            if what(&all) {
                return all;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        all
    }

    #[test]
    fn jobs_are_found_grouped_and_followed_to_their_end() {
        let id = format!("test_{}", std::process::id());
        let mut scan = CiScan::new();
        scan.scan();
        // A job of two processes (a shell and its sleep), and an unrelated process.
        let mut job = Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .env("RUNNER_TRACKING_ID", &id)
            .env("GITHUB_REPOSITORY", "acme/app")
            .env("GITHUB_JOB", "unit")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut other = Command::new("sleep").arg("30").spawn().unwrap();
        let key = format!("github:{id}");
        let changes = scan_until(&mut scan, |c| {
            c.iter()
                .any(|c| matches!(c, Change::Started(j) if j.id == id))
        });
        let started: Vec<&CiJob> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Started(j) if j.id == id => Some(j),
                _ => None,
            })
            .collect();
        assert_eq!(started.len(), 1, "one job, announced once: {changes:?}");
        assert_eq!(started[0].labels["repository"], "acme/app");
        // Wait until the sleep has been forked, then both are the job's.
        let deadline = Instant::now() + Duration::from_secs(5);
        while scan.pids_of(&key).len() < 2 && Instant::now() < deadline {
            scan.scan();
            std::thread::sleep(Duration::from_millis(20));
        }
        let pids = scan.pids_of(&key);
        assert!(pids.contains(&(job.id() as i32)), "{pids:?}");
        assert_eq!(pids.len(), 2, "the shell and its sleep: {pids:?}");
        assert!(!pids.contains(&(other.id() as i32)));
        let carrying = pids_carrying(format!("RUNNER_TRACKING_ID={id}").as_bytes());
        assert_eq!(carrying.len(), 2, "{carrying:?}");

        for pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = job.wait();
        let changes = scan_until(&mut scan, |c| c.contains(&Change::Ended(key.clone())));
        assert!(changes.contains(&Change::Ended(key.clone())), "{changes:?}");
        assert!(scan.pids_of(&key).is_empty());
        let _ = other.kill();
        let _ = other.wait();
    }

    #[test]
    fn sentry_itself_is_never_a_job() {
        let scan = CiScan::new();
        assert!(scan.exclude.contains(&(std::process::id() as i32)));
    }
}
