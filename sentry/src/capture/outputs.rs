//! Which captured writes are the command's *output*. The kernel probe sees every `write()` of
//! the tree, to any descriptor: the terminal, but also files it saves and pipes between its own
//! processes (`$(date)`, `producer | consumer`). Only what reaches sentry's own stdout or stderr
//! (the terminal, the CI log) is output for the detectors; the rest is I/O. A write is output
//! when its `(pid, fd)` resolves, in `/proc/PID/fd/FD`, to the same file as sentry's fd 1 or 2.
//!
//! A process may be gone before its writes are drained (a `$(…)` helper lives about a
//! millisecond); then descriptors 1 and 2 count as output, others do not. Classifications are
//! cached for a second of capture time (the records' own timestamps, so that a write storm
//! pays no clock read per record), since a descriptor can be closed and reopened on another
//! file. The latest classification is also kept apart, so that a run of writes by one process
//! to one descriptor (the usual case) pays no hash lookup either.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

/// How long a classification is trusted.
const TTL: Duration = Duration::from_secs(1);

/// Entries beyond which the cache is cleared (a fork storm must not grow it without bound).
const MAX_ENTRIES: usize = 4096;

/// `(st_dev, st_ino)` of an open file, as `stat` on its `/proc/…/fd` link reports it.
type FileId = (u64, u64);

fn file_id(link: &str) -> Option<FileId> {
    fs::metadata(link).ok().map(|m| (m.dev(), m.ino()))
}

/// Classifies `(pid, fd)` pairs as output or not.
#[derive(Debug)]
pub struct OutputFds {
    targets: Vec<FileId>,
    /// Verdicts and when (capture time) they were made.
    cache: HashMap<(u32, u32), (bool, Duration)>,
    /// The latest verdict, checked before the map.
    last: Option<((u32, u32), bool, Duration)>,
}

impl OutputFds {
    /// Reads what sentry's own stdout and stderr are.
    pub fn of_this_process() -> Self {
        let targets = ["/proc/self/fd/1", "/proc/self/fd/2"]
            .iter()
            .filter_map(|l| file_id(l))
            .collect();
        OutputFds {
            targets,
            cache: HashMap::new(),
            last: None,
        }
    }

    /// Whether a write by `pid` to `fd`, captured at `at` (any clock that only moves forward,
    /// in practice the time since the run started), is output.
    pub fn is_output(&mut self, pid: u32, fd: u32, at: Duration) -> bool {
        let key = (pid, fd);
        if let Some((k, verdict, since)) = self.last {
            if k == key && at.saturating_sub(since) < TTL {
                return verdict;
            }
        }
        let fresh = |since: Duration| at.saturating_sub(since) < TTL;
        let (verdict, since) = match self.cache.get(&key) {
            Some(&(verdict, since)) if fresh(since) => (verdict, since),
            _ => {
                let verdict = match file_id(&format!("/proc/{pid}/fd/{fd}")) {
                    Some(id) => self.targets.is_empty() || self.targets.contains(&id),
                    None => fd == 1 || fd == 2,
                };
                if self.cache.len() >= MAX_ENTRIES {
                    self.cache.clear();
                }
                self.cache.insert(key, (verdict, at));
                (verdict, at)
            }
        };
        self.last = Some((key, verdict, since));
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn own_stdout_is_output_and_a_file_is_not() {
        let mut outputs = OutputFds::of_this_process();
        let me = std::process::id();
        assert!(outputs.is_output(me, 1, Duration::ZERO));
        assert!(outputs.is_output(me, 2, Duration::ZERO));
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"x").unwrap();
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd() as u32;
        assert!(
            !outputs.is_output(me, fd, Duration::ZERO),
            "a temporary file is not output"
        );
    }

    #[test]
    fn vanished_processes_fall_back_to_the_standard_descriptors() {
        let mut outputs = OutputFds::of_this_process();
        // Pid 0 never has a /proc entry.
        assert!(outputs.is_output(0, 1, Duration::ZERO));
        assert!(!outputs.is_output(0, 5, Duration::ZERO));
    }

    #[test]
    fn a_verdict_is_trusted_for_a_second_of_capture_time() {
        let mut outputs = OutputFds::of_this_process();
        let me = std::process::id();
        let file = tempfile::NamedTempFile::new().unwrap();
        // A descriptor of this process that is not output, then reopened on stdout's file.
        let fd = unsafe { libc::dup(std::os::fd::AsRawFd::as_raw_fd(file.as_file())) };
        assert!(fd > 2);
        let at = Duration::from_millis;
        assert!(!outputs.is_output(me, fd as u32, at(0)));
        assert!(outputs.is_output(me, 1, at(1)), "another key in between");
        assert_eq!(unsafe { libc::dup2(1, fd) }, fd);
        // Cached, whether it is the latest verdict or only in the map.
        assert!(!outputs.is_output(me, fd as u32, at(500)));
        assert!(!outputs.is_output(me, fd as u32, at(999)));
        // A second after the verdict it is made again, and now the descriptor is output.
        assert!(outputs.is_output(me, fd as u32, at(1000)));
        assert!(outputs.is_output(me, fd as u32, at(1001)));
        unsafe { libc::close(fd) };
    }
}
