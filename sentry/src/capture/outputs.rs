//! Which captured writes are the command's *output*. The kernel probe sees every `write()` of
//! the tree, to any descriptor: the terminal, but also files it saves and pipes between its own
//! processes (`$(date)`, `producer | consumer`). Only what reaches sentry's own stdout or stderr
//! (the terminal, the CI log) is output for the detectors; the rest is I/O. A write is output
//! when its `(pid, fd)` resolves, in `/proc/PID/fd/FD`, to the same file as sentry's fd 1 or 2.
//!
//! A process may be gone before its writes are drained (a `$(…)` helper lives about a
//! millisecond); then descriptors 1 and 2 count as output, others do not. Classifications are
//! cached for a second, since a descriptor can be closed and reopened on another file.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

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
    cache: HashMap<(u32, u32), (bool, Instant)>,
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
        }
    }

    /// Whether a write by `pid` to `fd` is output.
    pub fn is_output(&mut self, pid: u32, fd: u32) -> bool {
        let now = Instant::now();
        if let Some((verdict, at)) = self.cache.get(&(pid, fd)) {
            if now.duration_since(*at) < TTL {
                return *verdict;
            }
        }
        let verdict = match file_id(&format!("/proc/{pid}/fd/{fd}")) {
            Some(id) => self.targets.is_empty() || self.targets.contains(&id),
            None => fd == 1 || fd == 2,
        };
        if self.cache.len() >= MAX_ENTRIES {
            self.cache.clear();
        }
        self.cache.insert((pid, fd), (verdict, now));
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
        assert!(outputs.is_output(me, 1));
        assert!(outputs.is_output(me, 2));
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"x").unwrap();
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd() as u32;
        assert!(!outputs.is_output(me, fd), "a temporary file is not output");
    }

    #[test]
    fn vanished_processes_fall_back_to_the_standard_descriptors() {
        let mut outputs = OutputFds::of_this_process();
        // Pid 0 never has a /proc entry.
        assert!(outputs.is_output(0, 1));
        assert!(!outputs.is_output(0, 5));
    }
}
