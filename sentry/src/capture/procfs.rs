//! Process figures from Linux `/proc`, without privileges: the process tree under a pid and
//! the CPU time, resident memory and I/O summed over a set of processes. The fallback backend
//! samples a run's tree with it; the kernel backend can sum over its cgroup's processes.
//!
//! Every read tolerates a process that exits half-way: it simply drops out of the figures.
//! Nothing here signals or waits for processes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io;
use std::path::Path;
use std::sync::OnceLock;

use nix::unistd::{sysconf, SysconfVar};

/// The fields of `/proc/<pid>/stat` that sentry uses (times in clock ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id.
    pub pid: i32,
    /// State letter (`R`, `S`, `D`, `T`, `Z`, …).
    pub state: char,
    /// Parent's pid.
    pub ppid: i32,
    /// Process group id.
    pub pgrp: i32,
    /// Session id.
    pub session: i32,
    /// User-mode CPU time of the process (all its threads, live and exited).
    pub utime: u64,
    /// Kernel-mode CPU time of the process.
    pub stime: u64,
    /// User-mode CPU time of its children that it has waited for.
    pub cutime: u64,
    /// Kernel-mode CPU time of its children that it has waited for.
    pub cstime: u64,
    /// Start time after boot in clock ticks; with the pid it identifies a process over time
    /// (a reused pid has a later start time).
    pub start_ticks: u64,
    /// Resident set size in pages.
    pub rss_pages: u64,
}

impl ProcStat {
    /// Whether the process has exited and waits to be reaped.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Parses the text of `/proc/<pid>/stat`. The command name may contain spaces and
/// parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text.get(..open)?.trim().parse().ok()?;
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // `rest[0]` is field 3 (state) of proc(5); field N is `rest[N - 3]`.
    let field = |n: usize| rest.get(n - 3).copied();
    let num = |n: usize| field(n).and_then(|f| f.parse::<u64>().ok());
    let int = |n: usize| field(n).and_then(|f| f.parse::<i32>().ok());
    Some(ProcStat {
        pid,
        state: field(3)?.chars().next()?,
        ppid: int(4)?,
        pgrp: int(5)?,
        session: int(6)?,
        utime: num(14)?,
        stime: num(15)?,
        // cutime/cstime are signed in the kernel's format but never negative in practice.
        cutime: field(16)?.parse::<i64>().ok()?.max(0) as u64,
        cstime: field(17)?.parse::<i64>().ok()?.max(0) as u64,
        start_ticks: num(22)?,
        rss_pages: field(24)?.parse::<i64>().ok()?.max(0) as u64,
    })
}

/// Reads `/proc/<pid>/stat`; `None` when the process does not exist (any more).
pub fn stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The I/O counters of `/proc/<pid>/io`, cumulative over the life of the process, its exited
/// threads and the children it has waited for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Bytes fetched from storage (page-cache hits are not counted).
    pub read_bytes: u64,
    /// Bytes sent towards storage (counted when pages are dirtied).
    pub write_bytes: u64,
    /// Bytes passed to `read()`-like calls, whatever the file (terminals and pipes too).
    pub rchar: u64,
    /// Bytes passed to `write()`-like calls, whatever the file (terminals and pipes too).
    pub wchar: u64,
}

impl IoCounters {
    fn add(&mut self, other: &IoCounters) {
        self.read_bytes = self.read_bytes.saturating_add(other.read_bytes);
        self.write_bytes = self.write_bytes.saturating_add(other.write_bytes);
        self.rchar = self.rchar.saturating_add(other.rchar);
        self.wchar = self.wchar.saturating_add(other.wchar);
    }
}

/// Parses the text of `/proc/<pid>/io`.
pub fn parse_io(text: &str) -> Option<IoCounters> {
    let value = |key: &str| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim().parse::<u64>().ok())?
        })
    };
    Some(IoCounters {
        read_bytes: value("read_bytes")?,
        write_bytes: value("write_bytes")?,
        rchar: value("rchar")?,
        wchar: value("wchar")?,
    })
}

/// What reading `/proc/<pid>/io` gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoRead {
    /// The counters.
    Counters(IoCounters),
    /// The file exists but this process may not read it (another user's process, a setuid
    /// or non-dumpable program, or a kernel without task I/O accounting).
    Unreadable,
    /// The process is gone.
    Gone,
}

/// Reads `/proc/<pid>/io`.
pub fn io(pid: i32) -> IoRead {
    match fs::read_to_string(format!("/proc/{pid}/io")) {
        Ok(text) => parse_io(&text).map_or(IoRead::Unreadable, IoRead::Counters),
        Err(err) if is_gone(&err) => IoRead::Gone,
        Err(_) => IoRead::Unreadable,
    }
}

fn is_gone(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ESRCH)
}

/// Clock ticks per second of the times in `/proc/<pid>/stat` (`sysconf(_SC_CLK_TCK)`).
pub fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as u64,
        // USER_HZ is 100 on every Linux architecture that sentry builds for.
        _ => 100,
    })
}

/// The page size that `rss` in `/proc/<pid>/stat` counts in.
pub fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| match sysconf(SysconfVar::PAGE_SIZE) {
        Ok(Some(size)) if size > 0 => size as u64,
        _ => 4096,
    })
}

/// Converts clock ticks to microseconds.
pub fn ticks_to_us(ticks: u64) -> u64 {
    let per_s = clock_ticks_per_second();
    (u128::from(ticks) * 1_000_000 / u128::from(per_s)) as u64
}

/// Whether this kernel has `/proc/<pid>/task/<tid>/children` (`CONFIG_PROC_CHILDREN`, on in
/// every mainstream distribution kernel); without it children are found by scanning `/proc`.
fn has_children_files() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        let pid = std::process::id();
        Path::new(&format!("/proc/{pid}/task/{pid}/children")).exists()
    })
}

/// The direct children of `pid` (of all its threads). Empty when the process is gone.
pub fn children(pid: i32) -> Vec<i32> {
    if !has_children_files() {
        return parent_map().remove(&pid).unwrap_or_default();
    }
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut kids = Vec::new();
    for task in tasks.flatten() {
        let Ok(text) = fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        kids.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    kids
}

/// The pid of every process in `/proc` now.
pub fn pids() -> io::Result<impl Iterator<Item = i32>> {
    Ok(fs::read_dir("/proc")?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok())))
}

/// Every process's children, from one scan of `/proc`.
fn parent_map() -> HashMap<i32, Vec<i32>> {
    let mut map: HashMap<i32, Vec<i32>> = HashMap::new();
    for pid in pids().into_iter().flatten() {
        if let Some(stat) = stat(pid) {
            map.entry(stat.ppid).or_default().push(pid);
        }
    }
    map
}

/// `root` and all its descendants that exist now (zombies included), parents before their
/// children. Empty when `root` does not exist.
pub fn tree_of(root: i32) -> Vec<i32> {
    if !Path::new(&format!("/proc/{root}")).exists() {
        return Vec::new();
    }
    let scanned = (!has_children_files()).then(parent_map);
    let mut seen = HashSet::from([root]);
    let mut order = vec![root];
    let mut queue = VecDeque::from([root]);
    while let Some(pid) = queue.pop_front() {
        let kids = match &scanned {
            Some(map) => map.get(&pid).cloned().unwrap_or_default(),
            None => children(pid),
        };
        for kid in kids {
            // A pid can show up twice when it is re-parented during the walk.
            if seen.insert(kid) {
                order.push(kid);
                queue.push_back(kid);
            }
        }
    }
    order
}

/// Figures summed over a set of processes at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Processes that are alive (not zombies).
    pub processes: u32,
    /// Zombies among the listed pids (exited, not yet reaped).
    pub zombies: u32,
    /// User + system CPU time of the listed processes, in microseconds.
    pub cpu_time_us: u64,
    /// User + system CPU time of the children they have waited for, in microseconds. Adding
    /// it to `cpu_time_us` keeps the total from dropping when a short-lived child (a compiler
    /// under `make`) exits and is reaped inside the tree.
    pub reaped_children_cpu_us: u64,
    /// Resident memory in bytes (shared pages are counted once per process, like `top`'s RES
    /// column summed).
    pub rss_bytes: u64,
    /// I/O counters summed; `None` when any listed process's counters are unreadable, since a
    /// partial sum would read as a drop in I/O.
    pub io: Option<IoCounters>,
}

impl TreeStats {
    /// CPU time of the processes and of the children they reaped, in microseconds.
    pub fn cpu_total_us(&self) -> u64 {
        self.cpu_time_us.saturating_add(self.reaped_children_cpu_us)
    }
}

/// Sums the figures of `pids` (for example a cgroup's processes, or [`tree_of`] a root).
/// Processes that no longer exist are skipped.
pub fn sum_over(pids: &[i32]) -> TreeStats {
    let mut stats = TreeStats::default();
    let mut own_ticks = 0u64;
    let mut children_ticks = 0u64;
    let mut rss_pages = 0u64;
    let mut io_sum = Some(IoCounters::default());
    let mut seen = HashSet::with_capacity(pids.len());
    for &pid in pids {
        if !seen.insert(pid) {
            continue;
        }
        let Some(st) = stat(pid) else {
            continue;
        };
        if st.is_zombie() {
            stats.zombies += 1;
        } else {
            stats.processes += 1;
        }
        own_ticks = own_ticks.saturating_add(st.utime + st.stime);
        children_ticks = children_ticks.saturating_add(st.cutime + st.cstime);
        rss_pages = rss_pages.saturating_add(st.rss_pages);
        match io(pid) {
            IoRead::Counters(counters) => {
                if let Some(sum) = io_sum.as_mut() {
                    sum.add(&counters);
                }
            }
            IoRead::Unreadable => io_sum = None,
            IoRead::Gone => {}
        }
    }
    stats.cpu_time_us = ticks_to_us(own_ticks);
    stats.reaped_children_cpu_us = ticks_to_us(children_ticks);
    stats.rss_bytes = rss_pages.saturating_mul(page_size());
    stats.io = if pids.is_empty() { None } else { io_sum };
    stats
}

/// Whether the environment `pid` started with contains the entry `KEY=VALUE` exactly.
/// `false` when it cannot be read (another user's process, a zombie).
pub fn environ_contains(pid: i32, entry: &[u8]) -> bool {
    fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|&b| b == 0).any(|e| e == entry))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// Kills and reaps a test child even when an assertion fails.
    struct Reaped(Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn pid_of(child: &Child) -> i32 {
        i32::try_from(child.id()).expect("pid fits in i32")
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let text = "4242 (a) b (c)) S 1 4242 4242 34816 4242 4194304 100 0 0 0 250 30 7 3 20 0 \
                    1 0 123456 1000000 789 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1";
        let st = parse_stat(text).expect("parses");
        assert_eq!(st.pid, 4242);
        assert_eq!(st.state, 'S');
        assert_eq!((st.ppid, st.pgrp, st.session), (1, 4242, 4242));
        assert_eq!((st.utime, st.stime, st.cutime, st.cstime), (250, 30, 7, 3));
        assert_eq!(st.start_ticks, 123456);
        assert_eq!(st.rss_pages, 789);
        assert!(parse_stat("garbage").is_none());
        assert!(
            parse_stat("12 (x) S 1").is_none(),
            "truncated stat must not parse"
        );
    }

    #[test]
    fn parses_io() {
        let text = "rchar: 10\nwchar: 20\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\n\
                    write_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(
            parse_io(text),
            Some(IoCounters {
                read_bytes: 4096,
                write_bytes: 8192,
                rchar: 10,
                wchar: 20
            })
        );
        assert_eq!(parse_io("rchar: 1\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = i32::try_from(std::process::id()).expect("pid fits in i32");
        let st = stat(me).expect("own stat");
        assert_eq!(st.pid, me);
        assert!(st.rss_pages > 0);
        assert!(matches!(io(me), IoRead::Counters(_)), "own io is readable");
        assert_eq!(stat(i32::MAX), None, "no such pid");
        assert_eq!(io(i32::MAX), IoRead::Gone);
        assert!(tree_of(i32::MAX).is_empty());
        assert!(clock_ticks_per_second() >= 1);
        assert_eq!(ticks_to_us(clock_ticks_per_second() * 3), 3_000_000);
    }

    #[test]
    fn finds_children_and_grandchildren() {
        // sh starts two sleeps (one of them through a nested sh) and waits.
        let child = Command::new("sh")
            .args(["-c", "sleep 30 & sh -c 'sleep 30 & wait' & wait"])
            .stdin(Stdio::null())
            .spawn()
            .expect("sh starts");
        let child = Reaped(child);
        let root = pid_of(&child.0);
        wait_until("a tree of 4 processes", || tree_of(root).len() == 4);
        let tree = tree_of(root);
        assert_eq!(tree[0], root, "root comes first: {tree:?}");
        let kids = children(root);
        assert_eq!(kids.len(), 2, "two direct children: {kids:?}");
        for pid in &tree[1..] {
            let st = stat(*pid).expect("member exists");
            assert!(tree.contains(&st.ppid), "parent of {pid} is in the tree");
        }
        let stats = sum_over(&tree);
        assert_eq!(stats.processes, 4);
        assert_eq!(stats.zombies, 0);
        assert!(stats.rss_bytes > 0);
        assert!(stats.io.is_some(), "own processes' io is readable");
    }

    /// Time the process has spent on a CPU, from the scheduler (nanoseconds, main thread).
    fn schedstat_ns(pid: i32) -> u64 {
        let text = fs::read_to_string(format!("/proc/{pid}/schedstat")).expect("schedstat");
        text.split_whitespace()
            .next()
            .and_then(|f| f.parse().ok())
            .expect("schedstat starts with the run time")
    }

    #[test]
    fn cpu_time_agrees_with_the_scheduler() {
        // A spinning single-threaded shell: the ticks of /proc/<pid>/stat converted to µs must
        // match the scheduler's own nanosecond count (to within a few ticks), however loaded
        // the machine is.
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .spawn()
            .expect("sh starts");
        let child = Reaped(child);
        let pid = pid_of(&child.0);
        std::thread::sleep(Duration::from_millis(500));
        let low = schedstat_ns(pid) / 1000;
        let ours = sum_over(&[pid]).cpu_time_us;
        let high = schedstat_ns(pid) / 1000;
        assert!(high > 0, "the child ran");
        let tick_us = ticks_to_us(1);
        assert!(
            ours + 3 * tick_us >= low && ours <= high + tick_us,
            "stat says {ours} µs, the scheduler {low}..{high} µs"
        );
    }

    #[test]
    fn sums_memory_of_a_child_that_allocates() {
        // python3 is not guaranteed; `head -c` into a shell variable is: 64 MiB of memory.
        let child = Command::new("sh")
            .args([
                "-c",
                "x=$(head -c 67108864 /dev/zero | tr '\\0' a); sleep 30",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("sh starts");
        let child = Reaped(child);
        let pid = pid_of(&child.0);
        wait_until("the shell to hold 64 MiB", || {
            sum_over(&tree_of(pid)).rss_bytes >= 60 << 20
        });
    }

    #[test]
    fn keeps_the_figures_of_children_reaped_inside_the_tree() {
        // The inner sh burns CPU and writes 1 MiB, then exits and is reaped by the outer sh:
        // its figures must move to the outer sh's instead of vanishing from the sums.
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("out");
        let inner = format!(
            "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; head -c 1048576 /dev/zero > \"{}\"",
            file.display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &format!("sh -c '{inner}'; echo done; sleep 30")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let child = Reaped(child);
        let root = pid_of(&child.0);
        let mut line = String::new();
        io::BufRead::read_line(&mut io::BufReader::new(stdout), &mut line).expect("reads");
        assert_eq!(line.trim(), "done");
        wait_until("sh to start sleep", || tree_of(root).len() == 2);
        let stats = sum_over(&tree_of(root));
        assert!(
            stats.reaped_children_cpu_us >= 10_000,
            "the inner sh's CPU is kept: {stats:?}"
        );
        let io = stats.io.expect("own processes' io is readable");
        assert!(io.wchar >= 1 << 20, "the 1 MiB written is kept: {stats:?}");
    }

    #[test]
    fn finds_run_markers_in_the_environment() {
        let child = Command::new("sleep")
            .arg("30")
            .env("SENTRY_TEST_MARK", "abc")
            .stdin(Stdio::null())
            .spawn()
            .expect("sleep starts");
        let child = Reaped(child);
        let pid = pid_of(&child.0);
        // The parent may resume before exec has laid out the new environment.
        wait_until("the environment to be readable", || {
            environ_contains(pid, b"SENTRY_TEST_MARK=abc")
        });
        assert!(!environ_contains(pid, b"SENTRY_TEST_MARK=ab"));
        assert!(!environ_contains(i32::MAX, b"SENTRY_TEST_MARK=abc"));
    }
}
