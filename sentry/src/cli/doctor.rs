//! `sentry doctor [--json]`: what this host offers the capture backends (kernel version, the
//! eBPF probe in this build, BTF, tracefs, the cgroup layout, privileges), which mode
//! `sentry run --mode auto` will pick, and the one thing to do to get kernel mode.
//!
//! It only looks: it mounts nothing, creates no cgroup and loads no program, so it is safe to
//! run anywhere, as anyone. The verdict comes from the checks `sentry run` makes itself
//! ([`HostAccess::check`], the cgroup2 mount, tracefs, the run's cgroup) in the order it makes
//! them, so the reason given is the first obstacle a run would meet.
//!
//! Exit status: 0 whatever the host supports (the verdict is in the output); 1 only when
//! doctor itself fails, i.e. its output cannot be written.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

#[cfg(target_os = "linux")]
pub use linux::{assess, CgroupFacts, ChildCgroup, HostFacts};

/// Arguments of `sentry doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the checks and the verdict as one JSON object (`checks[]` with `name`, `status`,
    /// `detail`, `hint`; `mode`, `reason`, `fix`).
    #[arg(long)]
    pub json: bool,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// What kernel mode needs is there.
    Ok,
    /// For the record; changes nothing about the mode.
    Info,
    /// Kernel mode works, with a limitation (or only once something else is fixed).
    Warn,
    /// Kernel mode cannot run here until this is fixed.
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Info => "info",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One line of the diagnosis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable identifier (`kernel`, `ebpf-probe`, `btf`, …).
    pub name: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it, when the status is not `ok`.
    pub hint: Option<String>,
}

/// The whole diagnosis, as `--json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// Every check, in the order they are printed.
    pub checks: Vec<Check>,
    /// What `sentry run --mode auto` will use: `kernel`, `fallback`, or `none` (no backend
    /// for this platform).
    pub mode: &'static str,
    /// Why not kernel mode: the first obstacle a run would meet (absent in kernel mode).
    pub reason: Option<String>,
    /// The one thing to do to get kernel mode (absent in kernel mode).
    pub fix: Option<String>,
}

/// Runs `sentry doctor` and returns the exit status to end with.
pub fn run(args: &DoctorArgs) -> ExitCode {
    let diagnosis = diagnose();
    let mut out = io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &diagnosis)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        out.write_all(render(&diagnosis).as_bytes())
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // `sentry doctor | head` is not a failure.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sentry doctor: cannot write the diagnosis: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(target_os = "linux")]
fn diagnose() -> Diagnosis {
    assess(&HostFacts::read())
}

#[cfg(not(target_os = "linux"))]
fn diagnose() -> Diagnosis {
    Diagnosis {
        checks: vec![Check {
            name: "os",
            status: Status::Info,
            detail: format!(
                "{} {}: sentry doctor checks Linux hosts (kernel, BTF, tracefs, cgroups); kernel \
                 mode is Linux-only",
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
            hint: None,
        }],
        mode: "fallback",
        reason: Some(
            "kernel mode exists only on Linux; sentry run uses the PTY fallback here".to_string(),
        ),
        fix: None,
    }
}

/// The human-readable diagnosis: one line per check (status, name, what was found, and
/// after `→` what to do), then the verdict.
pub fn render(diagnosis: &Diagnosis) -> String {
    let width = diagnosis
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for check in &diagnosis.checks {
        text.push_str(&format!(
            "{:<4}  {:<width$}  {}",
            check.status.label(),
            check.name,
            check.detail
        ));
        if let Some(hint) = &check.hint {
            text.push_str(" → ");
            text.push_str(hint);
        }
        text.push('\n');
    }
    text.push('\n');
    let reason = diagnosis.reason.as_deref().unwrap_or("unknown");
    match diagnosis.mode {
        "kernel" => text.push_str("sentry run will use: kernel (eBPF write capture in a cgroup)\n"),
        "fallback" => {
            text.push_str(&format!(
                "sentry run will use: fallback (PTY + /proc): {reason}\n"
            ));
        }
        _ => text.push_str(&format!("sentry run cannot run here: {reason}\n")),
    }
    if let Some(fix) = &diagnosis.fix {
        text.push_str(&format!("to get kernel mode: {fix}\n"));
    }
    text
}

/// The numeric part of a kernel release (`uname -r`): "6.8.0-45-generic" → (6, 8, 0).
/// A missing patch level reads as 0; `None` when there is no major.minor.
pub fn parse_release(release: &str) -> Option<(u32, u32, u32)> {
    let numeric = release
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?;
    let mut parts = numeric.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs;
    use std::path::{Path, PathBuf};

    use nix::sys::statvfs::{statvfs, FsFlags};
    use nix::unistd::{access, AccessFlags};

    use super::{parse_release, Check, Diagnosis, Status};
    use crate::capture::cgroup::{cgroup_layout, CgroupError, CgroupLayout, SENTRY_CGROUP_DIR};
    use crate::capture::kernel::{
        missing_capabilities, probe_cgroup_id_path, tracefs_mount, HostAccess, KernelError,
        BTF_PATH, KERNEL_CAPABILITIES, TRACEFS_PATH,
    };

    /// The BPF ring buffer the probe streams writes through.
    const RINGBUF_SINCE: (u32, u32, u32) = (5, 8, 0);
    /// `cgroup.kill`: the whole tree killed in one write.
    const CGROUP_KILL_SINCE: (u32, u32, u32) = (5, 14, 0);
    /// `cgroup.freeze`: pause, and the kill fallback before 5.14.
    const CGROUP_FREEZE_SINCE: (u32, u32, u32) = (5, 2, 0);

    /// Everything doctor reads from the host, before judging any of it.
    #[derive(Debug, Clone)]
    pub struct HostFacts {
        /// `uname` system name.
        pub sysname: String,
        /// `uname` release.
        pub release: String,
        /// `uname` machine.
        pub machine: String,
        /// `PRETTY_NAME` of /etc/os-release.
        pub distro: Option<String>,
        /// Build, privileges and BTF, as `sentry run` checks them.
        pub access: HostAccess,
        /// The user name of the effective uid.
        pub user: Option<String>,
        /// /proc/self/mountinfo.
        pub mountinfo: String,
        /// Whether the kernel knows tracefs (/proc/filesystems).
        pub tracefs_supported: bool,
        /// The cgroup2 root, when there is one.
        pub cgroup: Option<CgroupFacts>,
        /// `kernel.unprivileged_bpf_disabled`.
        pub unprivileged_bpf_disabled: Option<String>,
        /// /sys/kernel/security/lockdown, e.g. "[none] integrity confidentiality".
        pub lockdown: Option<String>,
        /// How to name this binary in a command line.
        pub exe: String,
        /// Where the probe finds a task's cgroup id in this kernel's BTF (byte offsets of
        /// `task_struct.cgroups`, `css_set.dfl_cgrp`, `cgroup.kn`, `kernfs_node.id`), or why not.
        pub cgroup_id_path: Result<[u64; 4], String>,
    }

    /// What doctor sees of the cgroup2 root.
    #[derive(Debug, Clone)]
    pub struct CgroupFacts {
        /// The root's `cgroup.controllers`.
        pub controllers: Option<String>,
        /// The directory a run's cgroup is created in: `<root>/sentry`, or the root while
        /// that does not exist yet.
        pub target: PathBuf,
        /// Whether the cgroup2 filesystem is mounted read-only (statvfs `ST_RDONLY`).
        pub read_only: bool,
        /// Whether `target` passes `access(W_OK)`.
        pub writable: bool,
        /// An existing child cgroup of the root (the root itself has neither file).
        pub child: Option<ChildCgroup>,
    }

    /// Which of the files kernel mode acts through a child cgroup has.
    #[derive(Debug, Clone)]
    pub struct ChildCgroup {
        /// The child looked at.
        pub path: PathBuf,
        /// `cgroup.kill` exists.
        pub kill: bool,
        /// `cgroup.freeze` exists.
        pub freeze: bool,
    }

    impl HostFacts {
        /// Reads the host. Nothing is created, mounted or loaded.
        pub fn read() -> HostFacts {
            let (sysname, release, machine) = match nix::sys::utsname::uname() {
                Ok(uts) => (
                    uts.sysname().to_string_lossy().into_owned(),
                    uts.release().to_string_lossy().into_owned(),
                    uts.machine().to_string_lossy().into_owned(),
                ),
                Err(_) => ("Linux".into(), "unknown".into(), String::new()),
            };
            let access = HostAccess::read();
            let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(access.euid))
                .ok()
                .flatten()
                .map(|u| u.name);
            let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let cgroup = cgroup_layout(&mountinfo)
                .cgroup2_root()
                .map(CgroupFacts::read);
            // Unreadable means unknown; assume the kernel has it rather than blame it.
            let tracefs_supported = fs::read_to_string("/proc/filesystems").map_or(true, |t| {
                t.lines()
                    .any(|l| l.split_whitespace().last() == Some("tracefs"))
            });
            HostFacts {
                sysname,
                release,
                machine,
                distro: fs::read_to_string("/etc/os-release")
                    .ok()
                    .and_then(|text| os_release_name(&text)),
                access,
                user,
                mountinfo,
                tracefs_supported,
                cgroup,
                unprivileged_bpf_disabled: read_trimmed(
                    "/proc/sys/kernel/unprivileged_bpf_disabled",
                ),
                lockdown: read_trimmed("/sys/kernel/security/lockdown"),
                exe: std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "sentry".into()),
                cgroup_id_path: probe_cgroup_id_path().map_err(|e| e.to_string()),
            }
        }
    }

    impl CgroupFacts {
        fn read(root: &Path) -> CgroupFacts {
            let runs = root.join(SENTRY_CGROUP_DIR);
            let target = if runs.is_dir() {
                runs.clone()
            } else {
                root.to_path_buf()
            };
            // Prefer sentry's own directory; else any child, in a stable order.
            let child = if runs.is_dir() {
                Some(runs)
            } else {
                fs::read_dir(root).ok().and_then(|entries| {
                    let mut dirs: Vec<PathBuf> = entries
                        .flatten()
                        .map(|e| e.path())
                        .filter(|p| p.is_dir())
                        .collect();
                    dirs.sort();
                    dirs.into_iter().next()
                })
            };
            CgroupFacts {
                controllers: read_trimmed(root.join("cgroup.controllers")),
                read_only: statvfs(root).is_ok_and(|s| s.flags().contains(FsFlags::ST_RDONLY)),
                writable: access(&target, AccessFlags::W_OK).is_ok(),
                target,
                child: child.map(|path| ChildCgroup {
                    kill: path.join("cgroup.kill").exists(),
                    freeze: path.join("cgroup.freeze").exists(),
                    path,
                }),
            }
        }
    }

    fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
        fs::read_to_string(path).ok().map(|t| t.trim().to_string())
    }

    fn os_release_name(text: &str) -> Option<String> {
        let value = text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME="))?;
        Some(value.trim().trim_matches('"').to_string())
    }

    fn version_text(v: (u32, u32, u32)) -> String {
        format!("{}.{}", v.0, v.1)
    }

    /// Judges the facts: one check per line, and the mode `sentry run --mode auto` will use.
    pub fn assess(facts: &HostFacts) -> Diagnosis {
        let version = parse_release(&facts.release);
        let layout = cgroup_layout(&facts.mountinfo);
        let tracefs = tracefs_mount(&facts.mountinfo);
        let mut checks = vec![
            kernel_check(facts, version),
            probe_check(facts),
            btf_check(facts),
            tracefs_check(facts, tracefs.as_deref()),
            layout_check(&layout, facts.cgroup.as_ref()),
        ];
        if let (Some(root), Some(cgroup)) = (layout.cgroup2_root(), facts.cgroup.as_ref()) {
            checks.push(write_check(facts, root, cgroup));
            checks.push(kill_freeze_check(root, cgroup, version));
        }
        checks.push(privileges_check(facts));
        checks.push(bpf_sysctl_check(facts));
        checks.push(lockdown_check(facts));
        match first_obstacle(facts, version, &layout, tracefs.as_deref()) {
            None => Diagnosis {
                checks,
                mode: "kernel",
                reason: None,
                fix: None,
            },
            Some((reason, fix)) => Diagnosis {
                checks,
                mode: "fallback",
                reason: Some(reason),
                fix: Some(fix),
            },
        }
    }

    fn sudo_run(facts: &HostFacts) -> String {
        format!("sudo {} run -- CMD", facts.exe)
    }

    /// The first thing that stops kernel mode, in the order `sentry run` meets them, with the
    /// one thing to do about it.
    fn first_obstacle(
        facts: &HostFacts,
        version: Option<(u32, u32, u32)>,
        layout: &CgroupLayout,
        tracefs: Option<&Path>,
    ) -> Option<(String, String)> {
        if let Err(err) = facts.access.check() {
            let fix = match err {
                KernelError::NotBuilt => {
                    "run `cargo xtask setup`, then rebuild sentry (`cargo build --release -p \
                     sentry`)"
                        .to_string()
                }
                KernelError::NoBtf => "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y".into(),
                _ => sudo_run(facts),
            };
            return Some((err.to_string(), fix));
        }
        let Some(root) = layout.cgroup2_root() else {
            let fix = match layout {
                CgroupLayout::V1Only { .. } => {
                    "sudo mkdir -p /sys/fs/cgroup/unified && sudo mount -t cgroup2 none \
                     /sys/fs/cgroup/unified"
                }
                _ => "sudo mount -t cgroup2 none /sys/fs/cgroup",
            };
            return Some((CgroupError::NoCgroup2.to_string(), fix.into()));
        };
        if tracefs.is_none() && !facts.tracefs_supported {
            return Some((
                format!(
                    "tracefs is not mounted and this kernel has no tracefs to mount at \
                     {TRACEFS_PATH} (it is not in /proc/filesystems); the probe attaches to \
                     tracepoints through it"
                ),
                "boot a kernel built with CONFIG_TRACING=y".into(),
            ));
        }
        if let Some(v) = version.filter(|v| *v < RINGBUF_SINCE) {
            return Some((
                format!(
                    "Linux {} has no BPF ring buffer, which the probe streams writes through \
                     (Linux {}+)",
                    version_text(v),
                    version_text(RINGBUF_SINCE)
                ),
                format!("boot Linux {} or newer", version_text(RINGBUF_SINCE)),
            ));
        }
        let cgroup = facts.cgroup.as_ref()?;
        if cgroup.read_only {
            let err = CgroupError::ReadOnly {
                path: root.join(SENTRY_CGROUP_DIR),
            };
            return Some((
                err.to_string(),
                "run the container with `--cgroupns=private --privileged`".into(),
            ));
        }
        if !cgroup.writable {
            let fix = if facts.access.euid == 0 {
                format!(
                    "find what denies root writing to {} (a security module?)",
                    cgroup.target.display()
                )
            } else {
                sudo_run(facts)
            };
            return Some((
                format!(
                    "cannot create the run's cgroup: {} is not writable by uid {}",
                    cgroup.target.display(),
                    facts.access.euid
                ),
                fix,
            ));
        }
        None
    }

    fn kernel_check(facts: &HostFacts, version: Option<(u32, u32, u32)>) -> Check {
        let mut host = format!("{} {}", facts.sysname, facts.release);
        if !facts.machine.is_empty() {
            host.push(' ');
            host.push_str(&facts.machine);
        }
        if let Some(distro) = &facts.distro {
            host.push_str(&format!(" ({distro})"));
        }
        let (status, detail, hint) = match version {
            None => (
                Status::Warn,
                format!("{host}: release not understood"),
                Some(format!(
                    "kernel mode needs Linux {}+; check `uname -r`",
                    version_text(RINGBUF_SINCE)
                )),
            ),
            Some(v) if v < RINGBUF_SINCE => (
                Status::Fail,
                format!(
                    "{host}: no BPF ring buffer (Linux {}+)",
                    version_text(RINGBUF_SINCE)
                ),
                Some(format!(
                    "kernel mode needs Linux {} or newer",
                    version_text(RINGBUF_SINCE)
                )),
            ),
            Some(v) if v < CGROUP_KILL_SINCE => (
                Status::Warn,
                format!(
                    "{host}: BPF ring buffer (Linux {}+) but no cgroup.kill (Linux {}+)",
                    version_text(RINGBUF_SINCE),
                    version_text(CGROUP_KILL_SINCE)
                ),
                Some(
                    "kernel mode works: sentry kills a tree by freezing it and signalling each \
                     process; Linux 5.14+ kills it in one step"
                        .into(),
                ),
            ),
            Some(_) => (
                Status::Ok,
                format!(
                    "{host}: BPF ring buffer (Linux {}+) and cgroup.kill (Linux {}+)",
                    version_text(RINGBUF_SINCE),
                    version_text(CGROUP_KILL_SINCE)
                ),
                None,
            ),
        };
        Check {
            name: "kernel",
            status,
            detail,
            hint,
        }
    }

    fn probe_check(facts: &HostFacts) -> Check {
        if facts.access.built_with_probe {
            Check {
                name: "ebpf-probe",
                status: Status::Ok,
                detail: "built into this binary".into(),
                hint: None,
            }
        } else {
            Check {
                name: "ebpf-probe",
                status: Status::Fail,
                detail: "this binary was built without the eBPF probe (no eBPF toolchain at \
                         build time)"
                    .into(),
                hint: Some("run `cargo xtask setup` and rebuild".into()),
            }
        }
    }

    fn btf_check(facts: &HostFacts) -> Check {
        if !facts.access.btf {
            return Check {
                name: "btf",
                status: Status::Fail,
                detail: format!("{BTF_PATH} is missing: the kernel exposes no BTF"),
                hint: Some(
                    "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y (standard on current \
                     Debian/Ubuntu/Fedora kernels)"
                        .into(),
                ),
            };
        }
        match &facts.cgroup_id_path {
            Ok([cgroups, dfl_cgrp, kn, id]) => Check {
                name: "btf",
                status: Status::Ok,
                detail: format!(
                    "{BTF_PATH} present; the probe reads a writer's cgroup id along \
                     task_struct.cgroups (+{cgroups}), css_set.dfl_cgrp (+{dfl_cgrp}), \
                     cgroup.kn (+{kn}), kernfs_node.id (+{id})"
                ),
                hint: None,
            },
            Err(why) => Check {
                name: "btf",
                status: Status::Info,
                detail: format!(
                    "{BTF_PATH} present, but the probe cannot read cgroup ids from it ({why}): \
                     it calls bpf_get_current_cgroup_id on every write instead (slower, same answers)"
                ),
                hint: None,
            },
        }
    }

    fn tracefs_check(facts: &HostFacts, mounted: Option<&Path>) -> Check {
        let (status, detail, hint) = match mounted {
            Some(point) => (Status::Ok, format!("mounted at {}", point.display()), None),
            None if !facts.tracefs_supported => (
                Status::Fail,
                "not mounted, and this kernel has no tracefs (/proc/filesystems)".into(),
                Some("boot a kernel built with CONFIG_TRACING=y".into()),
            ),
            None if facts.access.euid == 0 => (
                Status::Ok,
                format!("not mounted; sentry mounts it at {TRACEFS_PATH} when a run starts"),
                None,
            ),
            None => (
                Status::Warn,
                "not mounted, and mounting it needs root".into(),
                Some(format!(
                    "`{}` mounts it itself (or: `sudo mount -t tracefs nodev {TRACEFS_PATH}`)",
                    sudo_run(facts)
                )),
            ),
        };
        Check {
            name: "tracefs",
            status,
            detail,
            hint,
        }
    }

    fn controllers_text(cgroup: Option<&CgroupFacts>) -> String {
        match cgroup.and_then(|c| c.controllers.as_deref()) {
            Some("") => " (no controllers)".into(),
            Some(list) => format!(" (controllers: {list})"),
            None => String::new(),
        }
    }

    fn layout_check(layout: &CgroupLayout, cgroup: Option<&CgroupFacts>) -> Check {
        let (status, detail, hint) = match layout {
            CgroupLayout::Unified { root } => (
                Status::Ok,
                format!(
                    "pure cgroup v2 at {}{}",
                    root.display(),
                    controllers_text(cgroup)
                ),
                None,
            ),
            CgroupLayout::Hybrid {
                root,
                v1_controllers,
            } => (
                Status::Ok,
                format!(
                    "hybrid: cgroup2 at {}{}, v1 controllers beside it ({})",
                    root.display(),
                    controllers_text(cgroup),
                    v1_controllers.join(" ")
                ),
                None,
            ),
            CgroupLayout::V1Only { v1_controllers } => (
                Status::Fail,
                format!(
                    "cgroup v1 only ({}): no cgroup2 to create a run's cgroup in",
                    v1_controllers.join(" ")
                ),
                Some(
                    "mount cgroup2 beside v1: `sudo mkdir -p /sys/fs/cgroup/unified && sudo \
                     mount -t cgroup2 none /sys/fs/cgroup/unified`, or boot with \
                     systemd.unified_cgroup_hierarchy=1"
                        .into(),
                ),
            ),
            CgroupLayout::None => (
                Status::Fail,
                "no cgroup filesystem is mounted".into(),
                Some("`sudo mount -t cgroup2 none /sys/fs/cgroup`".into()),
            ),
        };
        Check {
            name: "cgroup-layout",
            status,
            detail,
            hint,
        }
    }

    fn write_check(facts: &HostFacts, root: &Path, cgroup: &CgroupFacts) -> Check {
        let target = cgroup.target.display();
        let (status, detail, hint) = if cgroup.read_only {
            (
                Status::Fail,
                format!("{} is mounted read-only", root.display()),
                Some(
                    "inside a container, give it a writable cgroup namespace \
                     (`--cgroupns=private --privileged`)"
                        .into(),
                ),
            )
        } else if !cgroup.writable {
            let hint = if facts.access.euid == 0 {
                "find what denies root writing there (a security module?)".to_string()
            } else {
                format!("creating cgroups needs root: `{}`", sudo_run(facts))
            };
            (
                Status::Fail,
                format!("{target} is not writable by uid {}", facts.access.euid),
                Some(hint),
            )
        } else {
            let runs = root.join(SENTRY_CGROUP_DIR);
            let detail = if cgroup.target == runs {
                format!("{target} is writable: each run's cgroup is made there, removed after")
            } else {
                format!(
                    "{target} is writable: sentry makes {} there for its runs' cgroups",
                    runs.display()
                )
            };
            (Status::Ok, detail, None)
        };
        Check {
            name: "cgroup-write",
            status,
            detail,
            hint,
        }
    }

    fn kill_freeze_check(
        root: &Path,
        cgroup: &CgroupFacts,
        version: Option<(u32, u32, u32)>,
    ) -> Check {
        let (kill, freeze, seen) = match &cgroup.child {
            Some(child) => (
                child.kill,
                child.freeze,
                format!("in {}", child.path.display()),
            ),
            // No child to look at: the kernel version tells (the root has neither file).
            None => match version {
                Some(v) => (
                    v >= CGROUP_KILL_SINCE,
                    v >= CGROUP_FREEZE_SINCE,
                    format!(
                        "judged from Linux {}: {} has no child cgroup to look at",
                        version_text(v),
                        root.display()
                    ),
                ),
                None => {
                    return Check {
                        name: "cgroup-kill-freeze",
                        status: Status::Info,
                        detail: format!(
                            "unknown: {} has no child cgroup to look at and the kernel release \
                             is not understood",
                            root.display()
                        ),
                        hint: None,
                    }
                }
            },
        };
        let (status, detail, hint) = match (kill, freeze) {
            (true, true) => (
                Status::Ok,
                format!("cgroup.kill and cgroup.freeze present ({seen})"),
                None,
            ),
            (false, true) => (
                Status::Warn,
                format!("cgroup.freeze present, no cgroup.kill ({seen})"),
                Some(
                    "sentry kills a tree by freezing it and signalling each process; Linux \
                     5.14+ kills it in one step"
                        .into(),
                ),
            ),
            (_, false) => (
                Status::Warn,
                format!("no cgroup.freeze ({seen}): runs cannot be paused"),
                Some("pause needs Linux 5.2+, one-step kill Linux 5.14+".into()),
            ),
        };
        Check {
            name: "cgroup-kill-freeze",
            status,
            detail,
            hint,
        }
    }

    fn privileges_check(facts: &HostFacts) -> Check {
        let euid = facts.access.euid;
        let who = match &facts.user {
            Some(name) => format!("euid {euid} ({name})"),
            None => format!("euid {euid}"),
        };
        let missing = missing_capabilities(facts.access.cap_eff);
        let all = KERNEL_CAPABILITIES.map(|(_, name)| name).join(", ");
        let (status, detail, hint) = match (euid == 0, missing.is_empty()) {
            (_, true) => (Status::Ok, format!("{who}, with {all}"), None),
            (true, false) => (
                Status::Warn,
                format!("{who} but without {}", missing.join(", ")),
                Some(
                    "a restricted container? loading the probe will likely be refused; run it \
                     with --privileged"
                        .into(),
                ),
            ),
            (false, false) => (
                Status::Fail,
                format!("{who}, without {}", missing.join(", ")),
                Some(format!("kernel mode needs root: `{}`", sudo_run(facts))),
            ),
        };
        Check {
            name: "privileges",
            status,
            detail,
            hint,
        }
    }

    fn bpf_sysctl_check(facts: &HostFacts) -> Check {
        let detail = match facts.unprivileged_bpf_disabled.as_deref() {
            Some("0") => "kernel.unprivileged_bpf_disabled = 0: unprivileged users may load BPF \
                          programs (sentry's tracepoint probe still needs privileges)"
                .to_string(),
            Some(value @ ("1" | "2")) => format!(
                "kernel.unprivileged_bpf_disabled = {value}: loading BPF programs needs \
                 privileges (sentry's probe needs them anyway)"
            ),
            Some(value) => format!("kernel.unprivileged_bpf_disabled = {value}"),
            None => "kernel.unprivileged_bpf_disabled is unreadable".into(),
        };
        Check {
            name: "unprivileged-bpf",
            status: Status::Info,
            detail,
            hint: None,
        }
    }

    /// The active lockdown mode is the bracketed word: "[none] integrity confidentiality".
    fn lockdown_mode(text: &str) -> Option<&str> {
        let start = text.find('[')? + 1;
        let end = start + text[start..].find(']')?;
        Some(&text[start..end])
    }

    fn lockdown_check(facts: &HostFacts) -> Check {
        let securityfs = facts
            .mountinfo
            .lines()
            .filter_map(|l| l.split_once(" - "))
            .any(|(_, right)| right.split_whitespace().next() == Some("securityfs"));
        let (status, detail, hint) = match facts.lockdown.as_deref().map(lockdown_mode) {
            Some(Some("confidentiality")) => (
                Status::Warn,
                "confidentiality: the kernel refuses tracefs access and BPF reads of kernel \
                 memory, so loading the probe will likely fail"
                    .to_string(),
                Some("boot with lockdown=integrity or none".to_string()),
            ),
            Some(Some(mode)) => (
                Status::Info,
                format!("{mode} (sentry's tracepoint probe works under it)"),
                None,
            ),
            Some(None) => (Status::Info, "not understood".into(), None),
            None if securityfs => (
                Status::Info,
                "none (this kernel has no lockdown LSM)".into(),
                None,
            ),
            None => (
                Status::Info,
                "unknown: securityfs is not mounted at /sys/kernel/security".into(),
                None,
            ),
        };
        Check {
            name: "lockdown",
            status,
            detail,
            hint,
        }
    }

    #[cfg(test)]
    pub(super) mod fixtures {
        use super::*;

        /// This machine as root: hybrid cgroups, BTF, tracefs mounted, the probe built in.
        pub fn root_on_hybrid_host() -> HostFacts {
            HostFacts {
                sysname: "Linux".into(),
                release: "6.18.44-fc-v857".into(),
                machine: "x86_64".into(),
                distro: Some("Debian GNU/Linux 12 (bookworm)".into()),
                access: HostAccess {
                    built_with_probe: true,
                    euid: 0,
                    cap_eff: 0x0000_01ff_feff_ffff,
                    btf: true,
                },
                user: Some("root".into()),
                mountinfo: "\
22 27 0:21 / /proc rw,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 23 0:13 / /sys/kernel/tracing rw,relatime - tracefs nodev rw
"
                .into(),
                tracefs_supported: true,
                cgroup: Some(CgroupFacts {
                    controllers: Some("hugetlb".into()),
                    target: "/sys/fs/cgroup/unified/sentry".into(),
                    read_only: false,
                    writable: true,
                    child: Some(ChildCgroup {
                        path: "/sys/fs/cgroup/unified/sentry".into(),
                        kill: true,
                        freeze: true,
                    }),
                }),
                unprivileged_bpf_disabled: Some("2".into()),
                lockdown: None,
                exe: "/usr/local/bin/sentry".into(),
                cgroup_id_path: Ok([2376, 112, 256, 96]),
            }
        }

        /// The same host as `nobody`.
        pub fn nobody_on_hybrid_host() -> HostFacts {
            let mut facts = root_on_hybrid_host();
            facts.access.euid = 65534;
            facts.access.cap_eff = 0;
            facts.user = Some("nobody".into());
            if let Some(cgroup) = facts.cgroup.as_mut() {
                cgroup.writable = false;
            }
            facts
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kernel_releases() {
        assert_eq!(parse_release("6.18.44-fc-v857"), Some((6, 18, 44)));
        assert_eq!(parse_release("5.15.0-91-generic"), Some((5, 15, 0)));
        assert_eq!(parse_release("6.8.0-rc1+"), Some((6, 8, 0)));
        assert_eq!(parse_release("4.19"), Some((4, 19, 0)));
        assert_eq!(parse_release("5.4.0.1-custom"), Some((5, 4, 0)));
        assert_eq!(parse_release("6"), None);
        assert_eq!(parse_release("unknown"), None);
        assert_eq!(parse_release(""), None);
        assert!(parse_release("5.7.19") < Some((5, 8, 0)));
        assert!(parse_release("5.10.0") >= Some((5, 8, 0)));
    }

    #[test]
    fn renders_hints_only_for_checks_that_are_not_ok() {
        let diagnosis = Diagnosis {
            checks: vec![
                Check {
                    name: "btf",
                    status: Status::Ok,
                    detail: "present".into(),
                    hint: None,
                },
                Check {
                    name: "privileges",
                    status: Status::Fail,
                    detail: "euid 1000".into(),
                    hint: Some("use sudo".into()),
                },
            ],
            mode: "fallback",
            reason: Some("not root".into()),
            fix: Some("sudo sentry run -- CMD".into()),
        };
        assert_eq!(
            render(&diagnosis),
            "ok    btf         present\n\
             fail  privileges  euid 1000 → use sudo\n\
             \n\
             sentry run will use: fallback (PTY + /proc): not root\n\
             to get kernel mode: sudo sentry run -- CMD\n"
        );
    }

    #[cfg(target_os = "linux")]
    mod linux {
        use super::super::linux::fixtures::*;
        use super::super::*;
        use crate::capture::cgroup::CgroupError;

        fn check<'a>(diagnosis: &'a Diagnosis, name: &str) -> &'a Check {
            diagnosis
                .checks
                .iter()
                .find(|c| c.name == name)
                .unwrap_or_else(|| panic!("no check {name} in {diagnosis:#?}"))
        }

        #[test]
        fn root_on_a_hybrid_host_gets_kernel_mode() {
            let diagnosis = assess(&root_on_hybrid_host());
            assert_eq!(diagnosis.mode, "kernel", "{diagnosis:#?}");
            assert_eq!(diagnosis.reason, None);
            let layout = check(&diagnosis, "cgroup-layout");
            assert!(
                layout
                    .detail
                    .starts_with("hybrid: cgroup2 at /sys/fs/cgroup/unified"),
                "{layout:?}"
            );
            insta::assert_snapshot!(render(&diagnosis));
        }

        #[test]
        fn nobody_gets_the_fallback_for_lack_of_privileges() {
            let diagnosis = assess(&nobody_on_hybrid_host());
            assert_eq!(diagnosis.mode, "fallback");
            let reason = diagnosis.reason.as_deref().unwrap_or_default();
            assert!(
                reason.contains("needs root") && reason.contains("no CAP_BPF"),
                "the reason should be the privileges, got: {reason}"
            );
            assert_eq!(
                diagnosis.fix.as_deref(),
                Some("sudo /usr/local/bin/sentry run -- CMD")
            );
            assert_eq!(check(&diagnosis, "privileges").status, Status::Fail);
            assert_eq!(check(&diagnosis, "cgroup-write").status, Status::Fail);
            insta::assert_snapshot!(render(&diagnosis));
        }

        #[test]
        fn a_build_without_the_probe_says_to_run_setup() {
            let mut facts = root_on_hybrid_host();
            facts.access.built_with_probe = false;
            let diagnosis = assess(&facts);
            assert_eq!(diagnosis.mode, "fallback");
            assert!(diagnosis
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("built without its eBPF probe")));
            let probe = check(&diagnosis, "ebpf-probe");
            assert_eq!(probe.status, Status::Fail);
            assert_eq!(
                probe.hint.as_deref(),
                Some("run `cargo xtask setup` and rebuild")
            );
        }

        #[test]
        fn a_kernel_without_the_cgroup_id_path_keeps_kernel_mode_on_the_helper() {
            let diagnosis = assess(&root_on_hybrid_host());
            let btf = check(&diagnosis, "btf");
            assert_eq!(btf.status, Status::Ok);
            assert!(
                btf.detail.contains("task_struct.cgroups (+2376)"),
                "{btf:?}"
            );

            let mut facts = root_on_hybrid_host();
            facts.cgroup_id_path = Err("struct css_set has no member dfl_cgrp".into());
            let diagnosis = assess(&facts);
            assert_eq!(diagnosis.mode, "kernel", "{diagnosis:#?}");
            let btf = check(&diagnosis, "btf");
            assert_eq!(btf.status, Status::Info);
            assert!(
                btf.detail.contains("no member dfl_cgrp")
                    && btf.detail.contains("bpf_get_current_cgroup_id"),
                "{btf:?}"
            );
        }

        #[test]
        fn a_v1_only_host_needs_cgroup2() {
            let mut facts = root_on_hybrid_host();
            facts.mountinfo = facts
                .mountinfo
                .lines()
                .filter(|l| !l.contains("cgroup2"))
                .map(|l| format!("{l}\n"))
                .collect();
            facts.cgroup = None;
            let diagnosis = assess(&facts);
            assert_eq!(diagnosis.mode, "fallback");
            assert_eq!(
                diagnosis.reason,
                Some(CgroupError::NoCgroup2.to_string()),
                "the reason should be run's own cgroup2 error"
            );
            assert_eq!(check(&diagnosis, "cgroup-layout").status, Status::Fail);
            assert!(diagnosis.checks.iter().all(|c| c.name != "cgroup-write"));
        }

        #[test]
        fn an_old_kernel_lacks_the_ring_buffer_and_cgroup_kill() {
            let mut facts = root_on_hybrid_host();
            facts.release = "5.4.0-150-generic".into();
            if let Some(cgroup) = facts.cgroup.as_mut() {
                cgroup.child = None;
            }
            let diagnosis = assess(&facts);
            assert_eq!(diagnosis.mode, "fallback");
            assert!(diagnosis
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("no BPF ring buffer")));
            assert_eq!(check(&diagnosis, "kernel").status, Status::Fail);
            let kill = check(&diagnosis, "cgroup-kill-freeze");
            assert_eq!(kill.status, Status::Warn, "{kill:?}");
            assert!(kill.detail.contains("judged from Linux 5.4"), "{kill:?}");
        }

        #[test]
        fn a_read_only_cgroup_mount_blocks_kernel_mode() {
            let mut facts = root_on_hybrid_host();
            if let Some(cgroup) = facts.cgroup.as_mut() {
                cgroup.read_only = true;
            }
            let diagnosis = assess(&facts);
            assert_eq!(diagnosis.mode, "fallback");
            assert!(diagnosis
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("read-only")));
        }

        #[test]
        fn root_mounts_tracefs_but_nobody_cannot() {
            let mut facts = root_on_hybrid_host();
            facts.mountinfo = facts
                .mountinfo
                .lines()
                .filter(|l| !l.contains("tracefs"))
                .map(|l| format!("{l}\n"))
                .collect();
            let diagnosis = assess(&facts);
            assert_eq!(diagnosis.mode, "kernel");
            let tracefs = check(&diagnosis, "tracefs");
            assert_eq!(tracefs.status, Status::Ok);
            assert!(tracefs.detail.contains("sentry mounts it"), "{tracefs:?}");

            facts.access.euid = 1000;
            let tracefs = check(&assess(&facts), "tracefs").clone();
            assert_eq!(tracefs.status, Status::Warn);
            assert!(tracefs.detail.contains("needs root"), "{tracefs:?}");
        }

        #[test]
        fn json_has_the_documented_shape() {
            let value = serde_json::to_value(assess(&nobody_on_hybrid_host()))
                .expect("a diagnosis serialises");
            assert_eq!(value["mode"], "fallback");
            assert!(value["reason"].is_string());
            let checks = value["checks"].as_array().expect("checks is an array");
            for check in checks {
                for key in ["name", "status", "detail", "hint"] {
                    assert!(check.get(key).is_some(), "{key} missing in {check}");
                }
            }
            assert!(checks
                .iter()
                .any(|c| c["name"] == "privileges" && c["status"] == "fail"));
        }
    }
}
