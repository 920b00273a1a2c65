//! The dedicated cgroup v2 of one run: finding the cgroup2 mount, creating
//! `<cgroup2>/sentry/run-<sentry pid>-<n>`, reading its CPU, pressure, memory and pid figures,
//! killing everything in it and removing it. Works on pure v2 hosts (`/sys/fs/cgroup`) and
//! hybrid ones (`/sys/fs/cgroup/unified`, v1 controllers beside it). It never writes to a
//! cgroup it did not create, except to remove stale `run-*` cgroups of dead sentry processes.

use std::fs;
use std::io::{self, ErrorKind};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Name of the directory under the cgroup2 root that holds sentry's runs.
pub const SENTRY_CGROUP_DIR: &str = "sentry";

/// Why the run's cgroup could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup2 filesystem is mounted.
    #[error(
        "no cgroup v2 filesystem is mounted (looked in /proc/self/mountinfo); kernel mode needs \
         one: mount it with `mount -t cgroup2 none /sys/fs/cgroup/unified` (hybrid hosts) or boot \
         with systemd.unified_cgroup_hierarchy=1"
    )]
    NoCgroup2,
    /// The cgroup filesystem is mounted read-only (typical inside unprivileged containers).
    #[error(
        "cannot create the run's cgroup {path}: the cgroup filesystem is read-only (inside a \
         container, run it with a writable cgroup namespace, e.g. `--cgroupns=private` plus \
         `--privileged`, or use --mode fallback)"
    )]
    ReadOnly {
        /// The directory that could not be created.
        path: PathBuf,
    },
    /// Any other I/O failure on a cgroup file.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Finds the cgroup2 mount point in `/proc/self/mountinfo` (never assumed: it is
/// `/sys/fs/cgroup` on pure v2 hosts and `/sys/fs/cgroup/unified` on hybrid ones).
pub fn cgroup2_root() -> Result<PathBuf, CgroupError> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_err("cannot read", Path::new("/proc/self/mountinfo")))?;
    find_mount(&mountinfo, "cgroup2").ok_or(CgroupError::NoCgroup2)
}

/// Returns the mount point of the first mount of filesystem type `fstype` in a mountinfo text.
pub fn find_mount(mountinfo: &str, fstype: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // Fields: id parent major:minor root mount-point options [optional...] - fstype source ...
        let (left, right) = line.split_once(" - ")?;
        let found = right.split_whitespace().next()?;
        if found != fstype {
            return None;
        }
        let mount_point = left.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_mountinfo(mount_point)))
    })
}

/// How a host mounts its cgroup hierarchies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup2 only ("pure v2", normally at `/sys/fs/cgroup`).
    Unified {
        /// The cgroup2 mount point.
        root: PathBuf,
    },
    /// cgroup2 beside v1 hierarchies (systemd's hybrid mode: cgroup2 at
    /// `/sys/fs/cgroup/unified`, the controllers in v1).
    Hybrid {
        /// The cgroup2 mount point.
        root: PathBuf,
        /// Controllers mounted in v1, in mount order.
        v1_controllers: Vec<String>,
    },
    /// v1 hierarchies only: no cgroup2 to create a run's cgroup in.
    V1Only {
        /// Controllers mounted in v1, in mount order.
        v1_controllers: Vec<String>,
    },
    /// No cgroup filesystem at all.
    None,
}

impl CgroupLayout {
    /// The cgroup2 mount point, where there is one.
    pub fn cgroup2_root(&self) -> Option<&Path> {
        match self {
            CgroupLayout::Unified { root } | CgroupLayout::Hybrid { root, .. } => Some(root),
            CgroupLayout::V1Only { .. } | CgroupLayout::None => None,
        }
    }
}

/// Classifies the cgroup layout of a mountinfo text. The cgroup2 root is the one
/// [`cgroup2_root`] would pick.
pub fn cgroup_layout(mountinfo: &str) -> CgroupLayout {
    let mut v1_mounts = 0;
    let mut v1_controllers: Vec<String> = Vec::new();
    for line in mountinfo.lines() {
        let Some((_, right)) = line.split_once(" - ") else {
            continue;
        };
        // fstype source super-options
        let mut fields = right.split_whitespace();
        if fields.next() != Some("cgroup") {
            continue;
        }
        v1_mounts += 1;
        let options = fields.nth(1).unwrap_or_default();
        for option in options.split(',') {
            // Everything in a v1 mount's options that is not a flag or `name=` is a controller.
            let flag = matches!(
                option,
                "rw" | "ro" | "noprefix" | "clone_children" | "xattr" | "cpuset_v2_mode" | "none"
            );
            if !flag && !option.contains('=') && !v1_controllers.iter().any(|c| c == option) {
                v1_controllers.push(option.to_string());
            }
        }
    }
    match (find_mount(mountinfo, "cgroup2"), v1_mounts) {
        (Some(root), 0) => CgroupLayout::Unified { root },
        (Some(root), _) => CgroupLayout::Hybrid {
            root,
            v1_controllers,
        },
        (None, 0) => CgroupLayout::None,
        (None, _) => CgroupLayout::V1Only { v1_controllers },
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(value) = octal.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Counter so that one sentry process can create several runs.
static RUN_SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// One point-in-time reading of a cgroup's resource files. Missing files give `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupStats {
    /// `usage_usec` from `cpu.stat`: CPU time of everything that ever ran in the cgroup.
    pub cpu_usage_us: u64,
    /// `some avg10` from `cpu.pressure`.
    pub cpu_pressure_some_avg10: Option<f64>,
    /// `memory.current`, or the summed resident memory of the cgroup's processes.
    pub mem_bytes: Option<u64>,
    /// Live processes in the cgroup.
    pub pids: u32,
}

/// A cgroup created for one run; removed (after killing what is left in it) on drop.
#[derive(Debug)]
pub struct RunCgroup {
    path: PathBuf,
    id: u64,
    removed: bool,
}

impl RunCgroup {
    /// Creates `<root>/sentry/run-<pid>-<n>` and enables the memory and pids controllers for it
    /// where the parent offers them (best effort: hybrid hosts have none in v2).
    pub fn create(root: &Path) -> Result<RunCgroup, CgroupError> {
        let parent = root.join(SENTRY_CGROUP_DIR);
        match fs::create_dir(&parent) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
            Err(err) => return Err(classify_mkdir(&parent, err)),
        }
        enable_controllers(root, &parent);
        let n = RUN_SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!("run-{}-{n}", std::process::id()));
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {
                // A leftover of an earlier sentry with our pid; it is dead, so reuse is safe
                // once it is emptied.
                kill_and_remove(&path)?;
                fs::create_dir(&path).map_err(|err| classify_mkdir(&path, err))?;
            }
            Err(err) => return Err(classify_mkdir(&path, err)),
        }
        // The kernel's cgroup id (what bpf_get_current_cgroup_id returns) is the kernfs node
        // id, which is the directory's inode number on 64-bit hosts.
        let id = fs::metadata(&path)
            .map_err(io_err("cannot stat the run's cgroup", &path))?
            .ino();
        Ok(RunCgroup {
            path,
            id,
            removed: false,
        })
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup id the kernel reports for tasks in it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Path of `cgroup.procs`, which a child writes "0" to before exec to enter the cgroup.
    pub fn procs_path(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// Reads CPU, pressure, memory and pid figures.
    pub fn stats(&self) -> CgroupStats {
        read_stats(&self.path)
    }

    /// Pids currently in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        read_pids(&self.path)
    }

    /// Whether any process is still in the cgroup (`cgroup.events` `populated`).
    pub fn populated(&self) -> bool {
        is_populated(&self.path)
    }

    /// Kills every process in the cgroup at once (`cgroup.kill`, or SIGKILL to each pid after
    /// freezing on kernels before 5.14).
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        kill_members(&self.path)
    }

    /// Freezes (`true`) or thaws the whole tree.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let file = self.path.join("cgroup.freeze");
        fs::write(&file, if frozen { "1" } else { "0" }).map_err(io_err("cannot write", &file))
    }

    /// Kills what is left, waits for the cgroup to empty and removes it.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.removed = true;
        kill_and_remove(&self.path)
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if !self.removed {
            if let Err(err) = kill_and_remove(&self.path) {
                eprintln!("sentry: could not remove the run's cgroup: {err}");
            }
        }
    }
}

fn classify_mkdir(path: &Path, err: io::Error) -> CgroupError {
    if err.raw_os_error() == Some(libc::EROFS) {
        CgroupError::ReadOnly {
            path: path.to_path_buf(),
        }
    } else {
        CgroupError::Io {
            what: "cannot create the cgroup",
            path: path.to_path_buf(),
            source: err,
        }
    }
}

/// Enables memory and pids accounting for sentry's runs when the root offers them, so that
/// `memory.current` and `pids.current` exist. Best effort by design: on hybrid hosts the
/// controllers live in v1, and the /proc fallback covers memory.
fn enable_controllers(root: &Path, parent: &Path) {
    let Ok(available) = fs::read_to_string(root.join("cgroup.subtree_control")) else {
        return;
    };
    for controller in ["memory", "pids"] {
        if available.split_whitespace().any(|c| c == controller) {
            let _ = fs::write(
                parent.join("cgroup.subtree_control"),
                format!("+{controller}"),
            );
        }
    }
}

/// Reads the resource files of any cgroup (read-only: watching a cgroup sentry did not
/// create never writes to it). Figures cover the cgroup and its descendants, except `pids`,
/// which counts the processes directly in it.
pub fn stats_at(path: &Path) -> CgroupStats {
    read_stats(path)
}

/// The id the kernel reports for tasks in the cgroup at `path` (its kernfs inode number).
pub fn id_of(path: &Path) -> io::Result<u64> {
    Ok(fs::metadata(path)?.ino())
}

/// `path` and every cgroup below it, parents first. Unreadable subdirectories are skipped.
pub fn subtree(path: &Path) -> Vec<PathBuf> {
    let mut out = vec![path.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = fs::read_dir(&out[i]) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(entry.path());
                }
            }
        }
        i += 1;
    }
    out
}

/// Pids of every process in `path` and the cgroups below it.
pub fn pids_in_subtree(path: &Path) -> Vec<i32> {
    subtree(path).iter().flat_map(|p| read_pids(p)).collect()
}

/// The cgroup v2 directory (under `root`, the cgroup2 mount) that process `pid` is in, from
/// the `0::` line of `/proc/PID/cgroup`. `None` when the process is gone or is in no v2
/// cgroup.
pub fn cgroup_of_pid(root: &Path, pid: i32) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let rel = rel.trim().trim_start_matches('/');
    // A cgroup moved away while we read shows " (deleted)"; treat it as gone.
    if rel.ends_with(" (deleted)") {
        return None;
    }
    Some(if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    })
}

fn read_stats(path: &Path) -> CgroupStats {
    let cpu_usage_us = fs::read_to_string(path.join("cpu.stat"))
        .ok()
        .and_then(|text| keyed_value(&text, "usage_usec"))
        .unwrap_or(0);
    let cpu_pressure_some_avg10 = fs::read_to_string(path.join("cpu.pressure"))
        .ok()
        .and_then(|text| parse_pressure_some_avg10(&text));
    let pids = read_pids(path);
    let mem_bytes = fs::read_to_string(path.join("memory.current"))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .or_else(|| summed_rss(&pids));
    CgroupStats {
        cpu_usage_us,
        cpu_pressure_some_avg10,
        mem_bytes,
        pids: u32::try_from(pids.len()).unwrap_or(u32::MAX),
    }
}

/// Value of `key` in a flat-keyed cgroup file (`key value` per line).
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `avg10` of the `some` line of a PSI file.
pub fn parse_pressure_some_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|line| line.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("avg10="))
        .and_then(|value| value.parse().ok())
}

fn read_pids(path: &Path) -> Vec<i32> {
    fs::read_to_string(path.join("cgroup.procs"))
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Resident memory summed over `pids` from `/proc/<pid>/statm` (shared pages are counted
/// once per process, like `top`'s RES column summed).
fn summed_rss(pids: &[i32]) -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    let mut total = 0u64;
    for pid in pids {
        // A process may exit between reading cgroup.procs and statm: skip it.
        if let Ok(statm) = fs::read_to_string(format!("/proc/{pid}/statm")) {
            if let Some(resident) = statm
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
            {
                total += resident * page;
            }
        }
    }
    Some(total)
}

fn is_populated(path: &Path) -> bool {
    match fs::read_to_string(path.join("cgroup.events")) {
        Ok(text) => keyed_value(&text, "populated") != Some(0),
        Err(_) => !read_pids(path).is_empty(),
    }
}

fn kill_members(path: &Path) -> Result<(), CgroupError> {
    let kill_file = path.join("cgroup.kill");
    if kill_file.exists() {
        return fs::write(&kill_file, "1").map_err(io_err("cannot write", &kill_file));
    }
    // Before Linux 5.14: freeze so nothing forks while we go through the list, then SIGKILL
    // each member (a frozen task still dies of SIGKILL).
    let freeze = path.join("cgroup.freeze");
    let _ = fs::write(&freeze, "1");
    for _ in 0..100 {
        let pids = read_pids(path);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Kills the cgroup's members, waits (up to 5 s) for it to empty, and removes it.
fn kill_and_remove(path: &Path) -> Result<(), CgroupError> {
    if !path.exists() {
        return Ok(());
    }
    if is_populated(path) {
        kill_members(path)?;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
            // EBUSY: dying tasks are still being reaped by their parent.
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(err) => return Err(io_err("cannot remove the cgroup", path)(err)),
        }
    }
}

/// Removes `run-<pid>-<n>` cgroups left by sentry processes that no longer run (killed with
/// SIGKILL, or a crash). Returns how many were removed.
pub fn remove_stale_runs(root: &Path) -> usize {
    let parent = root.join(SENTRY_CGROUP_DIR);
    let Ok(entries) = fs::read_dir(&parent) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner_pid) else {
            continue;
        };
        if pid == std::process::id() || sentry_is_alive(pid) {
            continue;
        }
        if kill_and_remove(&entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The sentry pid in a `run-<pid>-<n>` directory name.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("run-")?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// Whether `pid` is a live sentry process (a reused pid running something else is not).
fn sentry_is_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => comm.trim() == "sentry",
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_on_hybrid_and_pure_hosts() {
        let hybrid = "30 24 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n\
                      31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            find_mount(hybrid, "cgroup2"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let pure =
            "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            find_mount(pure, "cgroup2"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(find_mount(pure, "tracefs"), None);
    }

    /// This machine's mountinfo (a hybrid host), trimmed to the cgroup lines and a neighbour.
    const HYBRID: &str = "\
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A current systemd distribution (pure v2).
    const PURE_V2: &str = "\
23 27 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
35 23 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    /// An old distribution or container with v1 hierarchies only (co-mounted cpu,cpuacct).
    const V1_ONLY: &str = "\
25 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:22 / /sys/fs/cgroup/systemd rw,nosuid shared:10 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
28 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:25 / /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory
30 25 0:26 / /sys/fs/cgroup/pids rw,nosuid shared:14 - cgroup cgroup rw,pids
";

    #[test]
    fn classifies_the_cgroup_layout() {
        assert_eq!(
            cgroup_layout(HYBRID),
            CgroupLayout::Hybrid {
                root: PathBuf::from("/sys/fs/cgroup/unified"),
                v1_controllers: ["cpu", "cpuacct", "memory", "freezer", "pids"]
                    .map(String::from)
                    .to_vec(),
            }
        );
        assert_eq!(
            cgroup_layout(PURE_V2),
            CgroupLayout::Unified {
                root: PathBuf::from("/sys/fs/cgroup")
            }
        );
        assert_eq!(
            cgroup_layout(V1_ONLY),
            CgroupLayout::V1Only {
                v1_controllers: ["cpu", "cpuacct", "memory", "pids"]
                    .map(String::from)
                    .to_vec(),
            }
        );
        assert_eq!(cgroup_layout(V1_ONLY).cgroup2_root(), None);
        assert_eq!(
            cgroup_layout("22 27 0:21 / /proc rw - proc proc rw\n"),
            CgroupLayout::None
        );
    }

    #[test]
    fn unescapes_mount_points_with_spaces() {
        let line = "40 24 0:40 / /mnt/my\\040dir rw - tracefs nodev rw\n";
        assert_eq!(
            find_mount(line, "tracefs"),
            Some(PathBuf::from("/mnt/my dir"))
        );
    }

    #[test]
    fn parses_cpu_stat_and_pressure() {
        let stat = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n";
        assert_eq!(keyed_value(stat, "usage_usec"), Some(123456));
        assert_eq!(keyed_value(stat, "missing"), None);
        let psi = "some avg10=1.50 avg60=0.20 avg300=0.00 total=1234\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_pressure_some_avg10(psi), Some(1.5));
    }

    #[test]
    fn recognises_run_directory_names() {
        assert_eq!(owner_pid("run-4242-0"), Some(4242));
        assert_eq!(owner_pid("run-4242"), None);
        assert_eq!(owner_pid("other"), None);
    }
}
