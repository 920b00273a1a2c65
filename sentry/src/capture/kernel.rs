//! The kernel capture backend: the command runs in a dedicated cgroup v2 that it enters
//! before `exec` (so not even its first write is missed), an eBPF probe on the
//! `write()`/`writev()` tracepoints captures what processes of that cgroup write, and the
//! cgroup's own files give CPU, pressure, memory and pids. The child keeps its real
//! stdin/stdout/stderr: a TTY stays a TTY.
//!
//! One thread per run drains the ring buffer (on `poll` with a 1 ms timeout while records
//! arrive, backing off to 20 ms while the ring stays empty, in batches), samples the cgroup,
//! notices the child's exit, kills whatever is left of the tree, and removes the cgroup.
//! Everything it sees goes out as [`Observation`]s on a channel.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cgroup::{self, CgroupError, RunCgroup};
use super::outputs::OutputFds;
use super::spawn::{self, SpawnError};
use super::{CaptureRun, CaptureTotals, Observation, RunEnd, RunSpec, TreeControl};
use crate::model::{OutputChunk, Sample};

/// Where tracefs is mounted when it is not mounted yet (aya looks there).
pub const TRACEFS_PATH: &str = "/sys/kernel/tracing";

/// How many observations may wait for the consumer before the drain thread blocks (and the
/// ring buffer, not sentry's memory, absorbs the backlog, with exact loss accounting). A
/// bounded std channel allocates its slots up front: 65,536 of them cost 9 MiB of RSS, 4,096
/// cost about half a MiB and still hold several hundred milliseconds of fast output.
const CHANNEL_DEPTH: usize = 1 << 12;

/// The drain's shortest poll timeout, while records keep arriving, and the longest it backs
/// off to while the ring stays empty. The probe never wakes the reader (see sentry-ebpf), so this
/// timeout is the drain's only clock: 1 ms keeps a 4 MiB ring far from full at the capture
/// budget, and backing off to 20 ms when idle cuts a quiet run's wake-ups from ~1,000 to
/// ~50 per second (sentry's own CPU on a quiet command: 4% of a core before, measured by
/// `cargo xtask bench detect-live`). After an idle spell the first 20 ms of a burst wait in
/// the ring, which holds them (and any overflow is counted exactly in `events_lost`).
const DRAIN_BUSY: Duration = Duration::from_millis(1);
const DRAIN_IDLE_MAX: Duration = Duration::from_millis(20);

/// Why the kernel backend cannot run here, or failed while starting.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The build had no eBPF toolchain.
    #[error(
        "this sentry was built without its eBPF probe (the eBPF toolchain was missing at build \
         time), so kernel mode is unavailable: run `cargo xtask setup` and rebuild"
    )]
    NotBuilt,
    /// Not root and lacking the capabilities.
    #[error(
        "kernel mode needs root, or the capabilities CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN, to \
         load the eBPF probe and create cgroups; this process (uid {uid}) has {missing}: rerun \
         with sudo (e.g. `sudo -E sentry run …`)"
    )]
    NotPrivileged {
        /// Effective uid.
        uid: u32,
        /// Which capabilities are missing, in words.
        missing: String,
    },
    /// No kernel BTF.
    #[error(
        "the kernel exposes no BTF type information (/sys/kernel/btf/vmlinux is missing); kernel \
         mode needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (standard on current \
         Debian/Ubuntu/Fedora kernels)"
    )]
    NoBtf,
    /// tracefs absent and cannot be mounted.
    #[error(
        "tracefs is not mounted and mounting it at {path} failed ({source}); mount it by hand: \
         `mount -t tracefs nodev {path}`"
    )]
    Tracefs {
        /// Where it was to be mounted.
        path: PathBuf,
        /// The mount error.
        source: nix::Error,
    },
    /// The run's cgroup could not be set up.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The probe could not be loaded or attached.
    #[error("cannot {what} the eBPF probe: {detail}")]
    Probe {
        /// load / attach / configure.
        what: &'static str,
        /// The loader's error chain.
        detail: String,
    },
    /// The probe's slot table has no room for the run's cgroup.
    #[error(
        "the eBPF probe cannot track cgroup {cgroup_id}: its {probes} slots from slot {home} on \
         all hold other runs (the probe tracks at most {max} cgroups); end some runs and retry"
    )]
    NoFreeSlot {
        /// The cgroup that was to be tracked.
        cgroup_id: u64,
        /// Its home slot.
        home: u32,
        /// How many slots from home were tried.
        probes: u32,
        /// Size of the slot table.
        max: u32,
    },
    /// The command could not be started.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// Other system failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        source: io::Error,
    },
}

impl KernelError {
    /// True when the host (build, privileges, kernel features) rules kernel mode out, as
    /// opposed to a failure of this particular run.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            KernelError::NotBuilt
                | KernelError::NotPrivileged { .. }
                | KernelError::NoBtf
                | KernelError::Tracefs { .. }
                | KernelError::Cgroup(CgroupError::NoCgroup2 | CgroupError::ReadOnly { .. })
        )
    }
}

fn probe_error(what: &'static str) -> impl FnOnce(&dyn std::fmt::Display) -> KernelError {
    move |err| KernelError::Probe {
        what,
        detail: err.to_string(),
    }
}

/// Where the kernel publishes its BTF type information (the probe's CO-RE relocations need it).
pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// The capabilities kernel mode needs when not root, with their bit numbers in `CapEff`, in
/// the order messages name them.
pub const KERNEL_CAPABILITIES: [(u32, &str); 3] =
    [(39, "CAP_BPF"), (38, "CAP_PERFMON"), (21, "CAP_SYS_ADMIN")];

/// What kernel mode needs to know about the host before it loads anything: the build,
/// the privileges and BTF. Read once by [`HostAccess::read`]; judged by [`HostAccess::check`],
/// which `sentry run` and `sentry doctor` share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAccess {
    /// Whether this binary embeds the eBPF probe.
    pub built_with_probe: bool,
    /// Effective uid.
    pub euid: u32,
    /// Effective capability mask (`CapEff` of /proc/self/status; 0 when unreadable).
    pub cap_eff: u64,
    /// Whether kernel BTF exists at [`BTF_PATH`].
    pub btf: bool,
}

impl HostAccess {
    /// Reads this process's view of the host.
    pub fn read() -> HostAccess {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        HostAccess {
            built_with_probe: built_with_probe(),
            euid: nix::unistd::geteuid().as_raw(),
            cap_eff: parse_cap_eff(&status).unwrap_or(0),
            btf: Path::new(BTF_PATH).exists(),
        }
    }

    /// Checks what kernel mode needs, in the order a user would fix it: a build with the
    /// probe, privileges, BTF. tracefs and cgroups are checked when they are used.
    pub fn check(&self) -> Result<(), KernelError> {
        if !self.built_with_probe {
            return Err(KernelError::NotBuilt);
        }
        // Root passes on its uid alone: a container's root that lacks one of them fails
        // later, when the kernel refuses the load (doctor warns about it beforehand).
        if self.euid != 0 {
            let missing = missing_capabilities(self.cap_eff);
            if !missing.is_empty() {
                return Err(KernelError::NotPrivileged {
                    uid: self.euid,
                    missing: format!("no {}", missing.join(", no ")),
                });
            }
        }
        if !self.btf {
            return Err(KernelError::NoBtf);
        }
        Ok(())
    }
}

/// Checks what kernel mode needs of this host (see [`HostAccess::check`]).
pub fn check_host() -> Result<(), KernelError> {
    HostAccess::read().check()
}

#[cfg(sentry_ebpf)]
static PROBE_OBJECT: Option<&[u8]> = Some(aya::include_bytes_aligned!(concat!(
    env!("OUT_DIR"),
    "/sentry-probe"
)));
#[cfg(not(sentry_ebpf))]
static PROBE_OBJECT: Option<&[u8]> = None;

/// Whether this binary embeds the eBPF probe.
pub fn built_with_probe() -> bool {
    PROBE_OBJECT.is_some()
}

/// The effective capability mask in the text of `/proc/<pid>/status` (its `CapEff:` line).
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// Names of the [`KERNEL_CAPABILITIES`] that an effective mask lacks.
pub fn missing_capabilities(cap_eff: u64) -> Vec<&'static str> {
    KERNEL_CAPABILITIES
        .into_iter()
        .filter(|(bit, _)| cap_eff & (1u64 << bit) == 0)
        .map(|(_, name)| name)
        .collect()
}

/// Where tracefs is mounted among the places aya looks, per a mountinfo text.
pub fn tracefs_mount(mountinfo: &str) -> Option<PathBuf> {
    const PLACES: [&str; 2] = [TRACEFS_PATH, "/sys/kernel/debug/tracing"];
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let point = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next() == Some("tracefs") && PLACES.contains(&point))
            .then(|| PathBuf::from(point))
    })
}

/// Mounts tracefs at /sys/kernel/tracing unless it is mounted where aya looks for it.
pub fn ensure_tracefs() -> Result<(), KernelError> {
    let mountinfo =
        fs::read_to_string("/proc/self/mountinfo").map_err(|source| KernelError::Io {
            what: "cannot read /proc/self/mountinfo",
            source,
        })?;
    if tracefs_mount(&mountinfo).is_some() {
        return Ok(());
    }
    nix::mount::mount(
        Some("nodev"),
        TRACEFS_PATH,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|source| KernelError::Tracefs {
        path: PathBuf::from(TRACEFS_PATH),
        source,
    })
}

/// How the probe finds a writer's cgroup id: `auto` (the default: along the task's pointers
/// where this kernel's BTF and verifier allow, else the helper), `btf` (the pointers or fail),
/// `helper` (`bpf_get_current_cgroup_id`). An escape hatch, and how the tests pin each path.
pub const CGROUP_ID_ENV: &str = "SENTRY_PROBE_CGROUP_ID";

/// Where the probe finds the current task's cgroup id in this kernel, from its BTF.
pub fn probe_cgroup_id_path() -> Result<super::btf::CgroupIdPath, super::btf::BtfError> {
    let bytes = fs::read(BTF_PATH)
        .map_err(|e| super::btf::BtfError::from(format!("cannot read {BTF_PATH}: {e}")))?;
    super::btf::cgroup_id_path(&bytes)
}

/// The loaded and attached probe with its maps and the slots this instance assigned. One
/// instance tracks any number of cgroups (up to the slot table's size): `sentry run` tracks
/// its run's cgroup, `sentry watch` every cgroup its targets live in.
pub(crate) struct Probe {
    // Keeps the programs attached; dropping it detaches them.
    _ebpf: aya::Ebpf,
    runs: aya::maps::PerCpuArray<aya::maps::MapData, sentry_common::RunCounters>,
    budgets: aya::maps::Array<aya::maps::MapData, sentry_common::RunBudget>,
    slots: aya::maps::Array<aya::maps::MapData, u64>,
    /// Write records of every tracked cgroup.
    pub(crate) events: aya::maps::RingBuf<aya::maps::MapData>,
    ncpus: usize,
    /// (cgroup id, slot) of every run tracked through this instance.
    tracked: Vec<(u64, u32)>,
}

impl Probe {
    pub(crate) fn load(floor: bool) -> Result<Probe, KernelError> {
        use sentry_common as common;

        let object = PROBE_OBJECT.ok_or(KernelError::NotBuilt)?;
        ensure_tracefs()?;
        // Where the task's cgroup id lives in this kernel, so the probe can read it without a
        // helper call. A kernel whose types do not fit, or a verifier that refuses the loads,
        // leaves the probe on the helper: slower per write, the same answers.
        let lookup = std::env::var(CGROUP_ID_ENV).unwrap_or_default();
        let mut ebpf = match lookup.as_str() {
            "helper" => Self::load_programs(object, [0; 4], floor)?,
            "btf" => {
                let path = probe_cgroup_id_path().map_err(|e| KernelError::Probe {
                    what: "load",
                    detail: format!("{CGROUP_ID_ENV}=btf: {e}"),
                })?;
                Self::load_programs(object, path, floor)?
            }
            // Types that do not fit are `sentry doctor`'s to report; a verifier that refuses
            // loads the types allow is unexpected, so it is said on every run.
            "" | "auto" => match probe_cgroup_id_path() {
                Ok(path) => Self::load_programs(object, path, floor).or_else(|e| {
                    eprintln!(
                        "sentry: the kernel refused the probe's cgroup-id loads ({}); it calls \
                         bpf_get_current_cgroup_id instead (slower per write, the same captures)",
                        e.to_string().lines().next().unwrap_or_default()
                    );
                    Self::load_programs(object, [0; 4], floor)
                })?,
                Err(_) => Self::load_programs(object, [0; 4], floor)?,
            },
            other => {
                return Err(KernelError::Probe {
                    what: "load",
                    detail: format!("{CGROUP_ID_ENV}={other:?} is not one of auto, btf, helper"),
                })
            }
        };
        let runs = aya::maps::PerCpuArray::try_from(take_map(&mut ebpf, common::MAP_RUNS)?)
            .map_err(|e| probe_error("open")(&e))?;
        let budgets = aya::maps::Array::try_from(take_map(&mut ebpf, common::MAP_BUDGETS)?)
            .map_err(|e| probe_error("open")(&e))?;
        let slots = aya::maps::Array::try_from(take_map(&mut ebpf, common::MAP_SLOTS)?)
            .map_err(|e| probe_error("open")(&e))?;
        let events = aya::maps::RingBuf::try_from(take_map(&mut ebpf, common::MAP_EVENTS)?)
            .map_err(|e| probe_error("open")(&e))?;
        let ncpus = aya::util::nr_cpus().map_err(|(what, e)| KernelError::Probe {
            what: "size",
            detail: format!("{what}: {e}"),
        })?;
        Ok(Probe {
            _ebpf: ebpf,
            runs,
            budgets,
            slots,
            events,
            ncpus,
            tracked: Vec::new(),
        })
    }

    /// Loads the object with `path` as the probe's cgroup-id path (all zero: use the helper),
    /// then loads and attaches its programs (the floor's alone for `floor`).
    fn load_programs(
        object: &[u8],
        path: super::btf::CgroupIdPath,
        floor: bool,
    ) -> Result<aya::Ebpf, KernelError> {
        use sentry_common as common;

        let mut ebpf = aya::EbpfLoader::new()
            .override_global(common::GLOBAL_CGROUP_PATH, &path, true)
            .load(object)
            .map_err(|e| probe_error("load")(&e))?;
        let programs: &[(&str, &str)] = if floor {
            &[(common::PROG_FLOOR, common::TRACEPOINT_WRITE)]
        } else {
            &[
                (common::PROG_WRITE, common::TRACEPOINT_WRITE),
                (common::PROG_WRITEV, common::TRACEPOINT_WRITEV),
            ]
        };
        // Every program is verified before any is attached.
        for (name, _) in programs {
            tracepoint_mut(&mut ebpf, name)?
                .load()
                .map_err(|e| probe_error("load")(&error_chain(&e)))?;
        }
        for (name, tracepoint) in programs {
            tracepoint_mut(&mut ebpf, name)?
                .attach(common::TRACEPOINT_CATEGORY, tracepoint)
                .map_err(|e| probe_error("attach")(&error_chain(&e)))?;
        }
        Ok(ebpf)
    }

    pub(crate) fn track(&mut self, cgroup_id: u64, budget_per_s: u64) -> Result<(), KernelError> {
        let slot = self.free_slot(cgroup_id)?;
        let values = aya::maps::PerCpuValues::try_from(vec![
            sentry_common::RunCounters::default();
            self.ncpus
        ])
        .map_err(|e| probe_error("configure")(&e))?;
        self.runs
            .set(slot, values, 0)
            .map_err(|e| probe_error("configure")(&e))?;
        let budget =
            sentry_common::RunBudget::new(budget_per_s, sentry_common::DEFAULT_CAPTURE_BURST);
        self.budgets
            .set(slot, budget, 0)
            .map_err(|e| probe_error("configure")(&e))?;
        // The counters must be fresh before the slot lets the run's writes through.
        self.slots
            .set(slot, cgroup_id, 0)
            .map_err(|e| probe_error("configure")(&e))?;
        self.tracked.push((cgroup_id, slot));
        Ok(())
    }

    /// The first free slot of `cgroup_id`'s probe sequence.
    fn free_slot(&self, cgroup_id: u64) -> Result<u32, KernelError> {
        use sentry_common::{home_slot, probe_slot, MAX_TRACKED_CGROUPS, SLOT_PROBES};
        // The probe reads 0 as "free", so id 0 (which no real cgroup has) cannot be tracked.
        if cgroup_id == 0 {
            return Err(KernelError::Probe {
                what: "configure",
                detail: "cgroup id 0 cannot be tracked".into(),
            });
        }
        for k in 0..SLOT_PROBES {
            let slot = probe_slot(cgroup_id, k);
            let held = self
                .slots
                .get(&slot, 0)
                .map_err(|e| probe_error("configure")(&e))?;
            if held == 0 {
                return Ok(slot);
            }
            if held == cgroup_id {
                return Err(KernelError::Probe {
                    what: "configure",
                    detail: format!("cgroup {cgroup_id} is already tracked (slot {slot})"),
                });
            }
        }
        Err(KernelError::NoFreeSlot {
            cgroup_id,
            home: home_slot(cgroup_id),
            probes: SLOT_PROBES,
            max: MAX_TRACKED_CGROUPS,
        })
    }

    /// Waits up to `timeout` for records in the ring buffer.
    pub(crate) fn wait_for_events(&self, timeout: Duration) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.events.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::ZERO);
        // EINTR or a spurious error only means we drain a little early.
        let _ = poll(&mut fds, timeout);
    }

    fn slot_of(&self, cgroup_id: u64) -> Option<u32> {
        self.tracked
            .iter()
            .find(|(id, _)| *id == cgroup_id)
            .map(|(_, slot)| *slot)
    }

    pub(crate) fn untrack(&mut self, cgroup_id: u64) {
        let Some(slot) = self.slot_of(cgroup_id) else {
            return;
        };
        // Freeing the slot stops the probe counting the cgroup; its counters stay until the
        // slot's next run overwrites them. A failure leaves the slot taken in this instance's
        // maps only, which die with it.
        let _ = self.slots.set(slot, 0, 0);
        self.tracked.retain(|(id, _)| *id != cgroup_id);
    }

    pub(crate) fn counters(&self, cgroup_id: u64) -> sentry_common::RunCounters {
        let mut total = sentry_common::RunCounters::default();
        let Some(slot) = self.slot_of(cgroup_id) else {
            return total;
        };
        if let Ok(per_cpu) = self.runs.get(&slot, 0) {
            for cpu in per_cpu.iter() {
                total.accumulate(cpu);
            }
        }
        total
    }
}

/// Program `name` of the loaded object, as the tracepoint program it must be.
fn tracepoint_mut<'a>(
    ebpf: &'a mut aya::Ebpf,
    name: &str,
) -> Result<&'a mut aya::programs::TracePoint, KernelError> {
    ebpf.program_mut(name)
        .ok_or_else(|| KernelError::Probe {
            what: "find",
            detail: format!("program {name} is not in the object"),
        })?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| probe_error("load")(&e))
}

/// Takes map `name` out of the loaded object.
fn take_map(ebpf: &mut aya::Ebpf, name: &str) -> Result<aya::maps::Map, KernelError> {
    ebpf.take_map(name).ok_or_else(|| KernelError::Probe {
        what: "find",
        detail: format!("map {name} is not in the object"),
    })
}

/// Renders an error with its sources (aya's top-level messages are terse; the verifier log
/// is in the source).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Loading the probe parses the kernel's BTF and the object file, which leaves several MiB
/// of freed heap that glibc keeps mapped; giving it back keeps sentry's resident memory for
/// the rest of a possibly hours-long run at what it uses (measured: -7.5 MiB).
pub(crate) fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Current `CLOCK_MONOTONIC` in nanoseconds (the probe's `bpf_ktime_get_ns` clock).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Handle to act on a running tree from other threads (signal forwarding, kill, pause).
#[derive(Debug, Clone)]
pub struct Control {
    pid: i32,
    cgroup: PathBuf,
    ended: Arc<AtomicBool>,
}

impl Control {
    /// The run's cgroup directory.
    pub fn cgroup_path(&self) -> &Path {
        &self.cgroup
    }

    fn procs(&self) -> Vec<i32> {
        fs::read_to_string(self.cgroup.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .collect()
    }
}

impl TreeControl for Control {
    fn pid(&self) -> i32 {
        self.pid
    }

    fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    fn signal(&self, signal: Signal) {
        if !self.has_ended() {
            let _ = kill(Pid::from_raw(self.pid), signal);
        }
    }

    fn signal_tree(&self, signal: Signal) {
        for pid in self.procs() {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    fn kill_tree(&self) -> io::Result<()> {
        let kill_file = self.cgroup.join("cgroup.kill");
        if kill_file.exists() {
            return match fs::write(&kill_file, "1") {
                // The cgroup was removed: the run has ended and nothing is left to kill.
                Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            };
        }
        // Kernels before 5.14 have no cgroup.kill: freeze, kill each, thaw (a frozen tree
        // cannot fork a new member between the read and the kills).
        let _ = self.set_paused(true);
        self.signal_tree(Signal::SIGKILL);
        let _ = self.set_paused(false);
        Ok(())
    }

    fn set_paused(&self, paused: bool) -> io::Result<()> {
        fs::write(
            self.cgroup.join("cgroup.freeze"),
            if paused { "1" } else { "0" },
        )
    }

    fn describe(&self) -> String {
        format!("cgroup {}", self.cgroup.display())
    }
}

/// A command running under the kernel backend.
pub struct KernelRun {
    observations: Receiver<Observation>,
    control: Control,
    thread: Option<JoinHandle<()>>,
}

impl KernelRun {
    /// Checks the host, loads the probe, creates the run's cgroup, starts the command in it
    /// and begins streaming. The caller's thread must outlive the run: the child is bound to
    /// it by `PR_SET_PDEATHSIG`.
    pub fn start(spec: &RunSpec) -> Result<KernelRun, KernelError> {
        check_host()?;
        let program = spec.command.first().ok_or(SpawnError::Empty)?.clone();
        // Resolve first: a missing command must not cost a probe load.
        let resolved = spawn::resolve(&program)?;
        let root = cgroup::cgroup2_root()?;
        cgroup::remove_stale_runs(&root);
        let mut probe = Probe::load(spec.floor_probe)?;
        release_freed_memory();
        let run_cgroup = RunCgroup::create(&root)?;
        probe.track(run_cgroup.id(), spec.capture_budget_per_s)?;

        let start_ns = monotonic_ns();
        let started = Instant::now();
        let child = match spawn_in_cgroup(&resolved, &spec.command, &run_cgroup) {
            Ok(child) => child,
            Err(err) => {
                probe.untrack(run_cgroup.id());
                return Err(err);
            }
        };
        let pid = i32::try_from(child.id()).map_err(|_| KernelError::Io {
            what: "child pid out of range",
            source: io::Error::from_raw_os_error(libc::ERANGE),
        })?;
        let ended = Arc::new(AtomicBool::new(false));
        let control = Control {
            pid,
            cgroup: run_cgroup.path().to_path_buf(),
            ended: Arc::clone(&ended),
        };
        let (tx, rx) = mpsc::sync_channel(CHANNEL_DEPTH);
        let drain = Drain {
            probe,
            cgroup: run_cgroup,
            child,
            tx,
            start_ns,
            started,
            sample_interval: spec.sample_interval,
            budget: spec.capture_budget_per_s,
            ended,
            totals: CaptureTotals::default(),
            last_cpu: (0, started),
            io: IoTally::default(),
            outputs: OutputFds::of_this_process(),
            analysis: AnalysisBudget::new(),
            deliver_all: spec.deliver_all,
        };
        let thread = std::thread::Builder::new()
            .name("sentry-capture".into())
            .spawn(move || drain.run())
            .map_err(|source| KernelError::Io {
                what: "cannot start the capture thread",
                source,
            })?;
        Ok(KernelRun {
            observations: rx,
            control,
            thread: Some(thread),
        })
    }
}

impl CaptureRun for KernelRun {
    fn observations(&self) -> &Receiver<Observation> {
        &self.observations
    }

    fn control(&self) -> Arc<dyn TreeControl> {
        Arc::new(self.control.clone())
    }

    fn mode(&self) -> &'static str {
        "kernel"
    }
}

impl Drop for KernelRun {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // If the consumer stopped early, kill the tree so the thread finishes, then wait
            // for it: it removes the cgroup.
            if !self.control.has_ended() {
                let _ = self.control.kill_tree();
            }
            // Drain what is left so a blocked sender can finish.
            while self.observations.recv().is_ok() {}
            let _ = thread.join();
        }
    }
}

/// Starts `argv` from `program` with the child entering `cgroup` before exec, dying with
/// sentry (PDEATHSIG), and without sentry's own secrets in its environment.
fn spawn_in_cgroup(
    program: &Path,
    argv: &[OsString],
    cgroup: &RunCgroup,
) -> Result<Child, KernelError> {
    let procs_path = cgroup.procs_path();
    // Opened here (O_CLOEXEC by std) so the child only needs write(2), which is
    // async-signal-safe, between fork and exec.
    let procs = File::options()
        .write(true)
        .open(&procs_path)
        .map_err(|source| {
            KernelError::Cgroup(CgroupError::Io {
                what: "cannot open",
                path: procs_path.clone(),
                source,
            })
        })?;
    let procs_fd = procs.as_fd().as_raw_fd();
    let parent = std::process::id();
    let mut command = Command::new(program);
    if let Some(arg0) = argv.first() {
        command.arg0(arg0);
    }
    command.args(&argv[1..]);
    crate::capture::spawn::strip_secrets(&mut command);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (write, prctl, getppid); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // "0" moves the writing process itself into the cgroup.
            if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // sentry may have died between fork and prctl; then nobody supervises us.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|err| KernelError::Spawn(SpawnError::from_exec(&argv[0], err)))?;
    drop(procs);
    Ok(child)
}

/// The per-run thread: drains, samples, waits, cleans up.
struct Drain {
    probe: Probe,
    cgroup: RunCgroup,
    child: Child,
    tx: SyncSender<Observation>,
    start_ns: u64,
    started: Instant,
    sample_interval: Duration,
    budget: u64,
    ended: Arc<AtomicBool>,
    totals: CaptureTotals,
    last_cpu: (u64, Instant),
    io: IoTally,
    outputs: OutputFds,
    analysis: AnalysisBudget,
    deliver_all: bool,
}

/// How many output chunks per 100 ms the detectors are given. A loop shows within a few
/// hundred lines, and the detectors cost about 1 µs a line on this project's VM: analysing
/// every one of a million writes a second would take a whole core away from the command.
/// When the command keeps every core busy (a writer piped into a reader on two cores), every
/// line analysed is taken from it: at 100,000 chunks a second `cargo xtask bench capture`
/// measured the piped writer at 1.46x the floor, at 25,000 at 1.25x (12 interleaved rounds).
/// 2,500 per 100 ms still holds 39 repeats of the longest cycle looked for (64 lines). The
/// window keeps the analysed chunks contiguous, so lines stay whole and a cycle stays a cycle.
const ANALYSIS_PER_WINDOW: u32 = 2_500;
const ANALYSIS_WINDOW: Duration = Duration::from_millis(100);

/// Admits output chunks to analysis, [`ANALYSIS_PER_WINDOW`] per window of output time. The
/// windows run on the chunks' own capture times (the probe's clock), not on a clock read per
/// chunk: beyond the budget every record of a write storm asks, and a clock read each was a
/// visible share of the drain's time.
#[derive(Debug, Default)]
pub(crate) struct AnalysisBudget {
    window_start: Duration,
    admitted: u32,
}

impl AnalysisBudget {
    pub(crate) fn new() -> Self {
        AnalysisBudget::default()
    }

    /// Whether the chunk captured at `at` (since the run's start) is analysed.
    pub(crate) fn admit(&mut self, at: Duration) -> bool {
        if self.admitted >= ANALYSIS_PER_WINDOW {
            if at.saturating_sub(self.window_start) < ANALYSIS_WINDOW {
                return false;
            }
            self.window_start = at;
            self.admitted = 0;
        }
        self.admitted += 1;
        true
    }
}

/// Cumulative I/O of every process the tree ever had, from `/proc/PID/io`: a process's last
/// reading is kept after it exits, so the totals never go down.
#[derive(Debug, Default)]
struct IoTally {
    last: std::collections::HashMap<i32, IoTotals>,
}

/// Bytes read by `read()`-like calls (`rchar`: files, pipes, sockets; reading input is
/// progress), bytes written to storage (`write_bytes`), and read+write syscalls.
#[derive(Debug, Default, Clone, Copy)]
struct IoTotals {
    read_bytes: u64,
    write_bytes: u64,
    syscalls: u64,
}

impl IoTally {
    fn update(&mut self, pids: &[i32]) -> IoTotals {
        for &pid in pids {
            if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/io")) {
                let get = |key: &str| cgroup::keyed_value(&text, key).unwrap_or(0);
                self.last.insert(
                    pid,
                    IoTotals {
                        read_bytes: get("rchar:"),
                        write_bytes: get("write_bytes:"),
                        syscalls: get("syscr:") + get("syscw:"),
                    },
                );
            }
        }
        self.last
            .values()
            .fold(IoTotals::default(), |a, b| IoTotals {
                read_bytes: a.read_bytes + b.read_bytes,
                write_bytes: a.write_bytes + b.write_bytes,
                syscalls: a.syscalls + b.syscalls,
            })
    }
}

impl Drain {
    fn run(mut self) {
        // The first sample comes early so that even a short run has one taken while its
        // processes are alive (peaks of memory and pids).
        let mut next_sample = self.started + self.sample_interval.min(Duration::from_millis(50));
        let mut timeout = DRAIN_BUSY;
        let status = loop {
            self.wait_for_events(timeout);
            // Halve the timeout when records came, double it when none did: a sustained
            // stream converges on DRAIN_BUSY within a few rounds, a sparse writer (a
            // compressor's occasional block) does not keep the drain at 1,000 wake-ups/s.
            timeout = if self.drain() > 0 {
                (timeout / 2).max(DRAIN_BUSY)
            } else {
                (timeout * 2).min(DRAIN_IDLE_MAX)
            };
            if Instant::now() >= next_sample {
                self.sample();
                next_sample = Instant::now() + self.sample_interval;
            }
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {}
                Err(_) => break None,
            }
        };
        self.ended.store(true, Ordering::SeqCst);

        // The direct child is gone; anything left in the tree would run on unsupervised.
        let leftover_pids = self.cgroup.pids().len();
        if leftover_pids > 0 {
            let _ = self.cgroup.kill_all();
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.cgroup.populated() && Instant::now() < deadline {
                self.drain();
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        // Every write entered the ring before its process ended; drain until it is empty.
        while self.drain() > 0 {}
        self.sample();
        let counters = self.probe.counters(self.cgroup.id());
        self.probe.untrack(self.cgroup.id());
        self.totals.writes_total = counters.writes;
        self.totals.write_bytes_total = counters.write_bytes;
        self.totals.writes_counted_only = counters.counted_only;
        self.totals.bytes_counted_only = counters.counted_only_bytes;
        self.totals.events_lost = counters.ring_full;
        self.totals.capture_budget_per_s = self.budget;
        let Drain {
            cgroup, tx, totals, ..
        } = self;
        if let Err(err) = cgroup.remove() {
            eprintln!("sentry: {err}");
        }
        let status = match status {
            Some(status) => status,
            // try_wait only fails if the child was reaped elsewhere; report a generic failure.
            None => std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
        };
        let _ = tx.send(Observation::Ended(RunEnd {
            status,
            totals,
            leftover_pids,
        }));
    }

    fn wait_for_events(&self, timeout: Duration) {
        self.probe.wait_for_events(timeout);
    }

    /// Takes every record out of the ring; returns how many. A record's payload is copied
    /// out only when it goes to the detectors: in a write storm most records are counted and
    /// shed, and a copy each was an allocation and a free per record.
    fn drain(&mut self) -> usize {
        let mut n = 0;
        while let Some(item) = self.probe.events.next() {
            n += 1;
            let Some(record) = Record::parse(&item) else {
                continue;
            };
            let at = record.at(self.start_ns);
            let (pid, fd) = (record.header.tgid, record.header.fd);
            self.totals.events_captured += 1;
            self.totals.bytes_captured += record.payload.len() as u64;
            if record.read_failed() {
                self.totals.read_failures += 1;
            }
            if !self.outputs.is_output(pid, fd, at) {
                self.totals.writes_not_output += 1;
                continue;
            }
            // Never wait for the detectors: a drain that blocks lets the ring fill and
            // loses records. Beyond the analysis budget, or when they fall behind, chunks
            // are shed from analysis and counted; the capture stays exact. A closed
            // receiver means the consumer is gone; keep draining for the counts.
            if self.deliver_all {
                // Recording every chunk was asked for (`--events`): wait for the consumer;
                // the ring absorbs the backlog, and what it cannot hold is counted lost.
                let _ = self.tx.send(Observation::Output(record.chunk(at)));
            } else if !self.analysis.admit(at) {
                self.totals.chunks_shed += 1;
            } else if let Err(mpsc::TrySendError::Full(_)) =
                self.tx.try_send(Observation::Output(record.chunk(at)))
            {
                self.totals.chunks_shed += 1;
            }
        }
        n
    }

    fn sample(&mut self) {
        let stats = self.cgroup.stats();
        let now = Instant::now();
        let (last_usage, last_at) = self.last_cpu;
        let wall_us = now.duration_since(last_at).as_micros() as f64;
        let cpu_pct = if wall_us > 0.0 {
            stats.cpu_usage_us.saturating_sub(last_usage) as f64 / wall_us * 100.0
        } else {
            0.0
        };
        self.last_cpu = (stats.cpu_usage_us, now);
        self.totals.cpu_usage_us = stats.cpu_usage_us;
        let counters = self.probe.counters(self.cgroup.id());
        let io = self.io.update(&self.cgroup.pids());
        let _ = self.tx.send(Observation::Sample(Sample {
            at: now.duration_since(self.started),
            cpu_pct,
            cpu_usage_us: stats.cpu_usage_us,
            cpu_pressure_some_avg10: stats.cpu_pressure_some_avg10,
            mem_bytes: stats.mem_bytes,
            pids: stats.pids,
            io_read_bytes: Some(io.read_bytes),
            io_write_bytes: Some(io.write_bytes),
            syscalls: Some(io.syscalls),
            writes: counters.writes,
            write_bytes: counters.write_bytes,
        }));
    }
}

/// One ring record, read in place.
pub(crate) struct Record<'a> {
    pub(crate) header: sentry_common::WriteHeader,
    pub(crate) payload: &'a [u8],
}

impl<'a> Record<'a> {
    /// The header and captured payload of a record; `None` for a malformed one.
    pub(crate) fn parse(record: &'a [u8]) -> Option<Record<'a>> {
        use sentry_common::{WriteHeader, WRITE_HEADER_BYTES};
        if record.len() < WRITE_HEADER_BYTES {
            return None;
        }
        // SAFETY: WriteHeader is plain #[repr(C)] integers, valid for any bit pattern, and the
        // record holds at least its size; read_unaligned copes with any alignment.
        let header: WriteHeader = unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
        let end = WRITE_HEADER_BYTES.checked_add(header.captured_len as usize)?;
        let payload = record.get(WRITE_HEADER_BYTES..end)?;
        Some(Record { header, payload })
    }

    /// When the write was made, relative to `start_ns` on the probe's clock.
    pub(crate) fn at(&self, start_ns: u64) -> Duration {
        Duration::from_nanos(self.header.ts_ns.saturating_sub(start_ns))
    }

    /// Whether the kernel could not read the written buffer.
    pub(crate) fn read_failed(&self) -> bool {
        self.header.flags & sentry_common::FLAG_READ_FAILED != 0
    }

    /// The write as an output chunk (the payload copied out).
    pub(crate) fn chunk(&self, at: Duration) -> OutputChunk {
        OutputChunk {
            pid: self.header.tgid,
            fd: self.header.fd,
            at,
            bytes: self.payload.to_vec(),
            written_len: self.header.written_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_analysis_budget_runs_on_the_chunks_own_times() {
        let mut budget = AnalysisBudget::new();
        let ms = Duration::from_millis;
        let admitted = (0..ANALYSIS_PER_WINDOW + 500)
            .filter(|_| budget.admit(ms(10)))
            .count();
        assert_eq!(admitted, ANALYSIS_PER_WINDOW as usize);
        // Still inside the window (and a record from another CPU stamped a little earlier).
        assert!(!budget.admit(ms(99)));
        assert!(!budget.admit(ms(5)));
        // 100 ms of output time after the window opened, a new one opens.
        assert!(budget.admit(ms(100)));
        let more = (0..ANALYSIS_PER_WINDOW)
            .filter(|_| budget.admit(ms(150)))
            .count();
        assert_eq!(more, ANALYSIS_PER_WINDOW as usize - 1);
        assert!(!budget.admit(ms(199)));
        assert!(budget.admit(ms(200)));
    }

    #[test]
    fn reads_capeff_and_names_the_missing_capabilities() {
        let status = "Name:\tsentry\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\n\
                      CapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n";
        let root = parse_cap_eff(status).expect("CapEff is parsed");
        assert_eq!(root, 0x0000_01ff_feff_ffff);
        assert!(missing_capabilities(root).is_empty());

        let nobody = parse_cap_eff("CapEff:\t0000000000000000\n").expect("CapEff is parsed");
        assert_eq!(
            missing_capabilities(nobody),
            ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN"]
        );
        // CAP_SYS_ADMIN alone (bit 21), as in an old-style privileged container.
        assert_eq!(missing_capabilities(0x20_0000), ["CAP_BPF", "CAP_PERFMON"]);
        // CAP_BPF + CAP_PERFMON (bits 39 and 38).
        assert_eq!(missing_capabilities(0xc0_0000_0000), ["CAP_SYS_ADMIN"]);
        assert_eq!(parse_cap_eff("CapPrm:\t0\n"), None);
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
    }

    #[test]
    fn host_check_names_the_first_thing_to_fix() {
        let ok = HostAccess {
            built_with_probe: true,
            euid: 0,
            cap_eff: 0,
            btf: true,
        };
        assert!(ok.check().is_ok(), "root passes on uid alone");
        let unbuilt = HostAccess {
            built_with_probe: false,
            ..ok.clone()
        };
        assert!(matches!(unbuilt.check(), Err(KernelError::NotBuilt)));
        let nobody = HostAccess {
            euid: 65534,
            btf: false,
            ..ok.clone()
        };
        match nobody.check() {
            Err(KernelError::NotPrivileged { uid, missing }) => {
                assert_eq!(uid, 65534);
                assert_eq!(missing, "no CAP_BPF, no CAP_PERFMON, no CAP_SYS_ADMIN");
            }
            other => panic!("expected NotPrivileged before NoBtf, got {other:?}"),
        }
        let capable = HostAccess {
            euid: 1000,
            cap_eff: 0xc0_0020_0000,
            ..ok.clone()
        };
        assert!(
            capable.check().is_ok(),
            "the three capabilities stand in for root"
        );
        let no_btf = HostAccess { btf: false, ..ok };
        assert!(matches!(no_btf.check(), Err(KernelError::NoBtf)));
    }

    #[test]
    fn finds_tracefs_only_where_aya_looks() {
        let mounted = "42 23 0:13 / /sys/kernel/tracing rw,relatime - tracefs nodev rw\n";
        assert_eq!(
            tracefs_mount(mounted),
            Some(PathBuf::from("/sys/kernel/tracing"))
        );
        let debugfs = "43 30 0:13 / /sys/kernel/debug/tracing rw - tracefs nodev rw\n";
        assert_eq!(
            tracefs_mount(debugfs),
            Some(PathBuf::from("/sys/kernel/debug/tracing"))
        );
        let elsewhere = "44 23 0:13 / /mnt/trace rw - tracefs nodev rw\n";
        assert_eq!(tracefs_mount(elsewhere), None);
        assert_eq!(
            tracefs_mount("22 27 0:21 / /proc rw - proc proc rw\n"),
            None
        );
    }
}
