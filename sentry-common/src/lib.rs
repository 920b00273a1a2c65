//! `#[repr(C)]` records, map key/value types and limits shared by the eBPF program
//! (`sentry-ebpf`) and user space (`sentry`). Nothing else lives here: no logic beyond tiny
//! `const fn`s, so that both sides agree on every byte and every limit from one definition.
#![cfg_attr(not(test), no_std)]

/// Most payload bytes captured from one `write()`/`writev()`. Larger writes are captured as a
/// prefix of this many bytes (their full length is still recorded). 4 KiB covers a terminal
/// line, a typical log record and a full stdio buffer flush of an interactive program.
pub const MAX_CAPTURE_BYTES: usize = 4096;

/// Payload sizes the probe reserves in the ring buffer: the smallest class that holds the
/// written bytes is used, so a 20-byte line costs a 64-byte payload, not 4 KiB. The verifier
/// needs a constant reservation size, hence classes rather than the exact length.
pub const PAYLOAD_SIZE_CLASSES: [usize; 4] = [64, 256, 1024, MAX_CAPTURE_BYTES];

/// Size of the write-event ring buffer in bytes (a power of two multiple of the page size).
pub const RING_BUFFER_BYTES: u32 = 4 << 20;

/// How many cgroups (runs, or the cgroups of watched jobs) one probe instance can track at
/// once: the size of its slot table, a power of two. Array slots cost nothing on the write
/// path (the lookup is a bounds check and a load), so the table is sized for a fleet host.
pub const MAX_TRACKED_CGROUPS: u32 = 1024;

/// How many consecutive slots, from a cgroup's home slot on, may hold it (a bounded linear
/// probe). User space refuses to track a cgroup whose probe sequence is full.
pub const SLOT_PROBES: u32 = 4;

/// The home slot of cgroup `id` in the slot table. cgroup ids are kernfs inode numbers handed
/// out in sequence, so their low bits spread runs over the table without hashing.
pub const fn home_slot(id: u64) -> u32 {
    (id as u32) & (MAX_TRACKED_CGROUPS - 1)
}

/// The `k`-th slot (0 ≤ k < [`SLOT_PROBES`]) that may hold cgroup `id`.
pub const fn probe_slot(id: u64, k: u32) -> u32 {
    (home_slot(id) + k) & (MAX_TRACKED_CGROUPS - 1)
}

/// Default capture budget: full captures per second per run, all CPUs together. Beyond it
/// writes are only counted and their bytes summed. 200k/s keeps the probe's cost near the
/// tracepoint floor (measured, see DESIGN.md section 7) while capturing far more than any
/// human-readable output.
pub const DEFAULT_CAPTURE_BUDGET_PER_S: u64 = 200_000;

/// Burst allowance of the budget, in captures: 0.1 s worth at the default rate.
pub const DEFAULT_CAPTURE_BURST: u64 = 20_000;

/// Name of the slot table: array of [`MAX_TRACKED_CGROUPS`] `u64` cgroup ids, 0 = free. A
/// tracked cgroup sits at one of its [`probe_slot`]s; its counters and budget at the same
/// index of [`MAP_RUNS`] and [`MAP_BUDGETS`]. All are arrays so the verifier inlines their
/// lookups (no hashing on the write path).
pub const MAP_SLOTS: &str = "SENTRY_SLOTS";
/// Name of the per-run counters (per-CPU array of [`RunCounters`], indexed by slot).
pub const MAP_RUNS: &str = "SENTRY_RUNS";
/// Name of the per-run capture budgets (array of [`RunBudget`], indexed by slot).
pub const MAP_BUDGETS: &str = "SENTRY_BUDGETS";
/// Name of the ring buffer carrying [`WriteHeader`] + payload records.
pub const MAP_EVENTS: &str = "SENTRY_EVENTS";
/// Read-only global of the probe: byte offsets of `task_struct.cgroups`, `css_set.dfl_cgrp`,
/// `cgroup.kn` and `kernfs_node.id` (`[u64; 4]`, all zero: call the cgroup-id helper).
pub const GLOBAL_CGROUP_PATH: &str = "SENTRY_CGROUP_PATH";
/// Program attached to `syscalls/sys_enter_write`.
pub const PROG_WRITE: &str = "sentry_write";
/// Program attached to `syscalls/sys_enter_writev`.
pub const PROG_WRITEV: &str = "sentry_writev";
/// No-op program (returns 0 at once) used as the benchmark's floor on `sys_enter_write`.
pub const PROG_FLOOR: &str = "sentry_floor";
/// Tracepoint category of the attach points.
pub const TRACEPOINT_CATEGORY: &str = "syscalls";
/// Tracepoint of `write()`.
pub const TRACEPOINT_WRITE: &str = "sys_enter_write";
/// Tracepoint of `writev()`.
pub const TRACEPOINT_WRITEV: &str = "sys_enter_writev";

/// [`WriteHeader::syscall`] value for `write()`.
pub const SYSCALL_WRITE: u32 = 0;
/// [`WriteHeader::syscall`] value for `writev()`.
pub const SYSCALL_WRITEV: u32 = 1;

/// [`WriteHeader::flags`] bit: the kernel refused to read the user buffer (e.g. a page that
/// was not resident); the write is recorded with an empty payload.
pub const FLAG_READ_FAILED: u32 = 1;

/// Header of one ring-buffer record; the payload follows it directly, in a buffer of one of
/// [`PAYLOAD_SIZE_CLASSES`] bytes of which the first `captured_len` are valid.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteHeader {
    /// cgroup v2 id of the writer (the run it belongs to).
    pub cgroup_id: u64,
    /// `CLOCK_MONOTONIC` time of the syscall entry, in nanoseconds, to within one scheduler
    /// tick (the probe reads the clock once per tick per CPU and run; see
    /// [`RunCounters::clock_jiffies`]): never later than the entry, at most 1/HZ earlier.
    pub ts_ns: u64,
    /// Bytes the process asked to write (all iovecs summed for `writev`, up to
    /// [`MAX_SUMMED_IOVECS`]).
    pub written_len: u64,
    /// Process id (thread-group id).
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// File descriptor written to.
    pub fd: u32,
    /// Valid payload bytes that follow the header.
    pub captured_len: u32,
    /// [`SYSCALL_WRITE`] or [`SYSCALL_WRITEV`].
    pub syscall: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
}

/// Byte size of [`WriteHeader`] (the payload starts at this offset).
pub const WRITE_HEADER_BYTES: usize = core::mem::size_of::<WriteHeader>();

/// One ring-buffer record with an `N`-byte payload buffer (`N` one of
/// [`PAYLOAD_SIZE_CLASSES`]).
#[repr(C)]
pub struct WriteRecord<const N: usize> {
    /// What was written, by whom, when.
    pub header: WriteHeader,
    /// The first `header.captured_len` bytes are the payload.
    pub payload: [u8; N],
}

/// Once the budget is spent, the probe looks at the bucket again only on every this many
/// writes of a CPU. Counting stays exact; captures resume at most this many writes after
/// credit returns.
pub const BUDGET_RECHECK_EVERY: u64 = 16;

/// How many iovecs of a `writev()` the probe sums into `written_len`; the payload is taken
/// from the first iovec only. glibc and most runtimes use 2-3 iovecs.
pub const MAX_SUMMED_IOVECS: u32 = 8;

/// Per-run state in the probe, one copy per CPU (no atomics, no shared cache line on the
/// counted path): counters of what happened to every write of the run, and this CPU's view of
/// the run's [`RunBudget`] and of the clock.
///
/// Invariant kept by the probe on each CPU: `writes == captured + counted_only + ring_full`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounters {
    /// Every `write()`/`writev()` of the run.
    pub writes: u64,
    /// Bytes asked to be written by those calls.
    pub write_bytes: u64,
    /// Writes sent to user space as a record.
    pub captured: u64,
    /// Writes over the capture budget: counted and summed only.
    pub counted_only: u64,
    /// Bytes of the counted-only writes.
    pub counted_only_bytes: u64,
    /// Writes whose record could not be reserved because the ring buffer was full.
    pub ring_full: u64,
    /// Counted-only writes left before this CPU looks at the bucket again; non-zero only while
    /// the bucket was empty when it last looked.
    pub recheck: u64,
    /// The latest clock reading on this CPU (`CLOCK_MONOTONIC` ns); 0 = none yet.
    pub clock_ns: u64,
    /// The kernel's `jiffies` when `clock_ns` was read. Reading the clock costs about 75 ns
    /// per capture on the development VM and `jiffies` about a tenth of that, so the probe
    /// reads the clock only when a tick has passed since its last reading.
    pub clock_jiffies: u64,
}

impl RunCounters {
    /// Adds another CPU's counters to these (the clock fields are not summed).
    pub fn accumulate(&mut self, other: &RunCounters) {
        self.writes += other.writes;
        self.write_bytes += other.write_bytes;
        self.captured += other.captured;
        self.counted_only += other.counted_only;
        self.counted_only_bytes += other.counted_only_bytes;
        self.ring_full += other.ring_full;
    }
}

/// The token bucket of a run's capture budget, one for all CPUs (so a writer that migrates, or
/// many threads on many CPUs, share one budget). CPUs update it without atomics: two captures
/// racing on different CPUs may both be admitted on one token, so the budget is a floor the
/// probe keeps to within a few captures, never a ceiling it undercuts.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunBudget {
    /// Credit, in nanoseconds of budget time.
    pub credit_ns: u64,
    /// The clock reading credit was last refilled at (`CLOCK_MONOTONIC` ns); 0 = never.
    pub refill_ns: u64,
    /// Cost of one capture in credit (1e9 / captures per second).
    pub cost_ns: u64,
    /// Credit ceiling (cost × burst).
    pub burst_ns: u64,
}

impl RunBudget {
    /// A full bucket for `per_s` captures per second with a burst of `burst` captures.
    pub const fn new(per_s: u64, burst: u64) -> Self {
        // A zero budget means "never capture": a cost above a ceiling of zero credit.
        let (cost_ns, burst_ns) = match 1_000_000_000u64.checked_div(per_s) {
            Some(cost) => (cost, cost.saturating_mul(burst)),
            None => (u64::MAX, 0),
        };
        RunBudget {
            credit_ns: burst_ns,
            refill_ns: 0,
            cost_ns,
            burst_ns,
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers without padding holes that matter: any bit pattern
    // is a valid value.
    unsafe impl aya::Pod for super::WriteHeader {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RunCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RunBudget {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_starts_full_and_zero_never_admits() {
        let b = RunBudget::new(200_000, 20_000);
        assert_eq!(b.cost_ns, 5_000);
        assert_eq!((b.credit_ns, b.burst_ns), (100_000_000, 100_000_000));
        let none = RunBudget::new(0, 20_000);
        assert!(none.burst_ns < none.cost_ns && none.credit_ns < none.cost_ns);
    }

    #[test]
    fn probe_sequences_stay_in_the_table_and_wrap_around() {
        let last = u64::from(MAX_TRACKED_CGROUPS - 1);
        assert_eq!(home_slot(last), MAX_TRACKED_CGROUPS - 1);
        assert_eq!(probe_slot(last, 1), 0, "the sequence wraps to the start");
        for id in [1u64, 2, 63, 64, 65, 4095, u64::MAX] {
            for k in 0..SLOT_PROBES {
                assert!(probe_slot(id, k) < MAX_TRACKED_CGROUPS);
            }
            assert_eq!(probe_slot(id, 0), home_slot(id));
        }
    }

    #[test]
    fn consecutive_cgroup_ids_get_distinct_home_slots() {
        // Runs created one after another get neighbouring ids: they must not collide.
        let homes: std::collections::BTreeSet<u32> = (1000..1000 + u64::from(MAX_TRACKED_CGROUPS))
            .map(home_slot)
            .collect();
        assert_eq!(homes.len(), MAX_TRACKED_CGROUPS as usize);
    }
}
