//! sentry's kernel side: programs on the `write()`/`writev()` syscall tracepoints that send
//! the payloads of the tracked runs' writes to user space through a ring buffer.
//!
//! Everything here is on the hot path of every write of every process on the host, so the
//! order of work is deliberate: the cgroup-id lookup comes first and is all that untracked
//! processes pay (four loads along the task's cgroup pointers and a few array loads the
//! verifier inlines: no hashing, no lock). Tracked writes are counted in per-CPU state (no
//! atomics); they are captured in full while the run's one token bucket (shared by all CPUs,
//! looked at only every few writes once it is empty) has credit, and only counted beyond it.
//! The clock is read at most once per scheduler tick and CPU. Records are reserved in the
//! smallest payload size class that fits and submitted without a wakeup. Programs return 0 (a
//! non-zero return makes the kernel also emit a perf sample per event, which costs as much
//! again).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task_btf,
        bpf_jiffies64, bpf_ktime_get_ns, bpf_probe_read_user, bpf_probe_read_user_buf,
    },
    macros::{map, tracepoint},
    maps::{Array, PerCpuArray, RingBuf},
    programs::TracePointContext,
    EbpfContext,
};
use sentry_common::{
    probe_slot, RunBudget, RunCounters, WriteHeader, WriteRecord, BUDGET_RECHECK_EVERY,
    FLAG_READ_FAILED, MAX_CAPTURE_BYTES, MAX_SUMMED_IOVECS, MAX_TRACKED_CGROUPS,
    PAYLOAD_SIZE_CLASSES, RING_BUFFER_BYTES, SLOT_PROBES, SYSCALL_WRITE, SYSCALL_WRITEV,
};

/// Slot table of tracked cgroup ids (0 = free slot); a cgroup sits at one of its
/// `probe_slot`s, placed there by user space. An array, not a hash map: the verifier inlines
/// array lookups into a bounds check and a load, where a hash lookup costs a jhash and a
/// bucket walk on every write.
#[map(name = "SENTRY_SLOTS")]
static SLOTS: Array<u64> = Array::with_max_entries(MAX_TRACKED_CGROUPS, 0);

/// Per-CPU counters and budget of each tracked run, at its slot's index. Per-CPU array lookups
/// are inlined too (kernel 6.10 and later).
#[map(name = "SENTRY_RUNS")]
static RUNS: PerCpuArray<RunCounters> = PerCpuArray::with_max_entries(MAX_TRACKED_CGROUPS, 0);

/// Capture budget of each tracked run, at its slot's index: one bucket for all CPUs.
#[map(name = "SENTRY_BUDGETS")]
static BUDGETS: Array<RunBudget> = Array::with_max_entries(MAX_TRACKED_CGROUPS, 0);

/// Write records for user space.
#[map(name = "SENTRY_EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BUFFER_BYTES, 0);

/// Offset of `args[0]` in `struct syscall_trace_enter` (8-byte `trace_entry`, the syscall
/// number, padding); each argument is one `unsigned long`.
const ARGS_OFFSET: usize = 16;

/// One `struct iovec` as user space lays it out.
#[repr(C)]
#[derive(Clone, Copy)]
struct IoVec {
    base: u64,
    len: u64,
}

/// Reads syscall argument `n` straight from the tracepoint context (a plain load, cheaper
/// than a probe-read helper call; the verifier allows it within the context's size).
#[inline(always)]
fn arg(ctx: &TracePointContext, n: usize) -> u64 {
    // SAFETY: the context of a syscall-enter tracepoint holds six `unsigned long` arguments
    // at ARGS_OFFSET; n is a constant below 6 at every call site.
    unsafe {
        *(ctx.as_ptr() as *const u8)
            .add(ARGS_OFFSET + n * 8)
            .cast::<u64>()
    }
}

/// Byte offsets of `task_struct.cgroups`, `css_set.dfl_cgrp`, `cgroup.kn` and
/// `kernfs_node.id` in the running kernel, which user space reads from its BTF and sets before
/// loading. Read-only data: the verifier sees the values as constants, as it must for loads
/// through typed kernel pointers. All zero means "use the helper".
#[unsafe(no_mangle)]
static SENTRY_CGROUP_PATH: [u64; 4] = [0; 4];

/// The current task's cgroup v2 id. Where user space gave the path, four loads along it (what
/// the kernel's `task_dfl_cgroup()` and `cgroup_id()` do; the program already runs under the
/// RCU read lock); otherwise `bpf_get_current_cgroup_id`, which takes that lock again and costs
/// about three times as much. Every process on the host pays this on every write.
#[inline(always)]
fn current_cgroup_id() -> u64 {
    // SAFETY: reads of this program's own read-only data.
    let path = unsafe {
        [
            core::ptr::read_volatile(&SENTRY_CGROUP_PATH[0]),
            core::ptr::read_volatile(&SENTRY_CGROUP_PATH[1]),
            core::ptr::read_volatile(&SENTRY_CGROUP_PATH[2]),
            core::ptr::read_volatile(&SENTRY_CGROUP_PATH[3]),
        ]
    };
    if path[0] == 0 {
        return unsafe { bpf_get_current_cgroup_id() };
    }
    // SAFETY: `current` is a trusted task pointer; the verifier checks each load against the
    // kernel's BTF (offset, size and pointer type) and turns it into a fault-safe load.
    unsafe {
        let task = bpf_get_current_task_btf() as *const u8;
        let css_set = core::ptr::read_volatile(task.add(path[0] as usize) as *const *const u8);
        let cgroup = core::ptr::read_volatile(css_set.add(path[1] as usize) as *const *const u8);
        let kn = core::ptr::read_volatile(cgroup.add(path[2] as usize) as *const *const u8);
        core::ptr::read_volatile(kn.add(path[3] as usize) as *const u64)
    }
}

/// The current task's cgroup id, its run's counters on this CPU and its run's budget, if the
/// cgroup is tracked.
#[inline(always)]
fn tracked_run() -> Option<(u64, *mut RunCounters, *mut RunBudget)> {
    let cgroup_id = current_cgroup_id();
    // 0 marks a free slot, so it must never match (no real cgroup has id 0).
    if cgroup_id == 0 {
        return None;
    }
    // Every probe slot is looked at (no early stop at a free one): slots are freed without
    // moving their neighbours, so a gap does not end a cgroup's sequence. A few inlined loads.
    let mut k = 0;
    while k < SLOT_PROBES {
        let slot = probe_slot(cgroup_id, k);
        if let Some(&id) = SLOTS.get(slot) {
            if id == cgroup_id {
                let run = RUNS.get_ptr_mut(slot)?;
                return BUDGETS
                    .get_ptr_mut(slot)
                    .map(|budget| (cgroup_id, run, budget));
            }
        }
        k += 1;
    }
    None
}

#[tracepoint(category = "syscalls", name = "sys_enter_write")]
pub fn sentry_write(ctx: TracePointContext) -> u32 {
    let Some((cgroup_id, run, budget)) = tracked_run() else {
        return 0;
    };
    let count = arg(&ctx, 2);
    on_write(
        run,
        budget,
        cgroup_id,
        arg(&ctx, 0),
        arg(&ctx, 1),
        count,
        count,
        SYSCALL_WRITE,
    );
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_writev")]
pub fn sentry_writev(ctx: TracePointContext) -> u32 {
    let Some((cgroup_id, run, budget)) = tracked_run() else {
        return 0;
    };
    let vec = arg(&ctx, 1) as *const IoVec;
    let vlen = arg(&ctx, 2);
    let mut first = IoVec { base: 0, len: 0 };
    let mut total: u64 = 0;
    let mut i: u32 = 0;
    while i < MAX_SUMMED_IOVECS {
        if u64::from(i) >= vlen {
            break;
        }
        // SAFETY: probe-read of user memory; a bad pointer yields an error, not a fault.
        match unsafe { bpf_probe_read_user(vec.wrapping_add(i as usize)) } {
            Ok(iov) => {
                if i == 0 {
                    first = iov;
                }
                total = total.wrapping_add(iov.len);
            }
            Err(_) => break,
        }
        i += 1;
    }
    on_write(
        run,
        budget,
        cgroup_id,
        arg(&ctx, 0),
        first.base,
        first.len,
        total,
        SYSCALL_WRITEV,
    );
    0
}

/// The benchmark's floor: the cost of merely having a program on the tracepoint.
#[tracepoint(category = "syscalls", name = "sys_enter_write")]
pub fn sentry_floor(_ctx: TracePointContext) -> u32 {
    0
}

/// Counts one write of a tracked run and captures it if the budget and the ring allow.
#[inline(always)]
fn on_write(
    run: *mut RunCounters,
    budget: *mut RunBudget,
    cgroup_id: u64,
    fd: u64,
    buf: u64,
    buf_len: u64,
    written_len: u64,
    syscall: u32,
) {
    // SAFETY: `run` points at this CPU's value in RUNS; programs on one CPU do not nest
    // (the kernel's bpf_prog_active guard), so plain read-modify-write is race-free.
    let run = unsafe { &mut *run };
    run.writes += 1;
    run.write_bytes += written_len;

    // The bucket was empty when this CPU last looked: count only, and look again every
    // BUDGET_RECHECK_EVERY writes. Counted-only writes are the bulk of a write storm, and
    // this path touches nothing shared with other CPUs.
    if run.recheck > 0 {
        run.recheck -= 1;
        run.counted_only += 1;
        run.counted_only_bytes += written_len;
        return;
    }
    // One clock reading per scheduler tick: within a tick the last reading stands (the bucket
    // gains no credit from this CPU, a record's time is at most one tick early).
    let jiffies = unsafe { bpf_jiffies64() };
    if jiffies != run.clock_jiffies || run.clock_ns == 0 {
        run.clock_jiffies = jiffies;
        run.clock_ns = unsafe { bpf_ktime_get_ns() };
    }
    let now = run.clock_ns;
    // SAFETY: `budget` points at the run's value in BUDGETS, shared by all CPUs; a race with
    // another CPU can at worst admit one capture on a token it also spends (RunBudget).
    let budget = unsafe { &mut *budget };
    // Another CPU may have refilled from a later reading than this one: no credit then.
    let elapsed = if now > budget.refill_ns {
        let e = now - budget.refill_ns;
        budget.refill_ns = now;
        e
    } else {
        0
    };
    let refilled = budget.credit_ns.saturating_add(elapsed);
    let credit = if refilled > budget.burst_ns {
        budget.burst_ns
    } else {
        refilled
    };
    if credit < budget.cost_ns {
        budget.credit_ns = credit;
        run.recheck = BUDGET_RECHECK_EVERY - 1;
        run.counted_only += 1;
        run.counted_only_bytes += written_len;
        return;
    }
    budget.credit_ns = credit - budget.cost_ns;

    let pid_tgid = bpf_get_current_pid_tgid();
    let header = WriteHeader {
        cgroup_id,
        ts_ns: now,
        written_len,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        fd: fd as u32,
        captured_len: 0,
        syscall,
        flags: 0,
    };
    let sent = if buf_len <= PAYLOAD_SIZE_CLASSES[0] as u64 {
        emit::<{ PAYLOAD_SIZE_CLASSES[0] }>(header, buf, buf_len as usize)
    } else if buf_len <= PAYLOAD_SIZE_CLASSES[1] as u64 {
        emit::<{ PAYLOAD_SIZE_CLASSES[1] }>(header, buf, buf_len as usize)
    } else if buf_len <= PAYLOAD_SIZE_CLASSES[2] as u64 {
        emit::<{ PAYLOAD_SIZE_CLASSES[2] }>(header, buf, buf_len as usize)
    } else {
        emit::<MAX_CAPTURE_BYTES>(header, buf, buf_len as usize)
    };
    if sent {
        run.captured += 1;
    } else {
        run.ring_full += 1;
    }
}

/// Reserves a record with an `N`-byte payload, fills it and submits it. Returns false when
/// the ring buffer had no room.
#[inline(always)]
fn emit<const N: usize>(mut header: WriteHeader, buf: u64, len: usize) -> bool {
    let Some(mut entry) = EVENTS.reserve::<WriteRecord<N>>(0) else {
        return false;
    };
    let record = entry.as_mut_ptr();
    let len = if len > N { N } else { len };
    // SAFETY: `record` points at N + header bytes reserved in the ring; `len <= N`.
    unsafe {
        let payload = &mut (*record).payload;
        if len > 0 && bpf_probe_read_user_buf(buf as *const u8, &mut payload[..len]).is_err() {
            header.flags |= FLAG_READ_FAILED;
        } else {
            header.captured_len = len as u32;
        }
        (*record).header = header;
    }
    // Never wake the reader: it drains on a 1 ms poll timeout while records arrive (backing
    // off to 20 ms when the ring stays empty), and the budget caps what can
    // arrive in 1 ms far below the ring's size (400k records/s on 2 CPUs ≈ 50 KiB per ms
    // against 4 MiB), whereas a wakeup costs an irq_work per record and asking the ring how
    // full it is costs a helper call per record.
    entry.submit(BPF_RB_NO_WAKEUP.into());
    true
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
