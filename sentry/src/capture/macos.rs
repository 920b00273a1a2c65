//! macOS process figures for the PTY backend (mode "macos"): the process tree and CPU, memory
//! and disk I/O summed over it, from libproc (`proc_pidinfo` task and BSD info,
//! `proc_pid_rusage`, the child and process-group pid lists). The terminal side is the same
//! as on Linux ([`super::pty`], [`super::fallback::FallbackRun`]).
//!
//! What macOS does not offer: there is no child subreaper, so a daemon that double-forks is
//! re-parented to launchd; it stays in the tree if it was seen before (or is still in the
//! command's process group), and the process group is signalled as a whole. Another process's
//! environment is not read, so the run marker is not used.

use libproc::bsd_info::BSDInfo;
use libproc::pid_rusage::{pidrusage, RUsageInfoV2};
use libproc::proc_pid::pidinfo;
use libproc::processes::{pids_by_type, ProcFilter};
use libproc::task_info::TaskInfo;

use super::tree::{Figures, ProcInfo, ProcessTable};

/// `SZOMB` from `<sys/proc.h>`: the `pbi_status` of a process that exited and waits to be
/// reaped.
const SZOMB: u32 = 5;

/// libproc as the tree logic sees it.
#[derive(Debug, Clone, Copy)]
pub struct LibprocTable {
    /// Mach absolute time units to nanoseconds: `numer / denom` (1/1 on Intel, 125/3 on Apple
    /// silicon, where libproc's CPU times are in those units, not nanoseconds).
    numer: u32,
    denom: u32,
}

impl Default for LibprocTable {
    fn default() -> Self {
        LibprocTable::new()
    }
}

impl LibprocTable {
    /// Reads the Mach timebase once.
    pub fn new() -> LibprocTable {
        let mut info = mach2::mach_time::mach_timebase_info { numer: 0, denom: 0 };
        // SAFETY: mach_timebase_info fills the struct it is given a valid pointer to.
        let ret = unsafe { mach2::mach_time::mach_timebase_info(&mut info) };
        if ret != 0 || info.numer == 0 || info.denom == 0 {
            return LibprocTable { numer: 1, denom: 1 };
        }
        LibprocTable {
            numer: info.numer,
            denom: info.denom,
        }
    }

    fn mach_to_us(&self, units: u64) -> u64 {
        let ns = u128::from(units) * u128::from(self.numer) / u128::from(self.denom);
        u64::try_from(ns / 1000).unwrap_or(u64::MAX)
    }
}

fn to_pids(list: std::io::Result<Vec<u32>>) -> Vec<i32> {
    list.unwrap_or_default()
        .into_iter()
        .filter_map(|pid| i32::try_from(pid).ok())
        .filter(|&pid| pid > 0)
        .collect()
}

impl ProcessTable for LibprocTable {
    fn children(&self, pid: i32) -> Vec<i32> {
        let Ok(ppid) = u32::try_from(pid) else {
            return Vec::new();
        };
        // The same list as proc_listchildpids (which is proc_listpids(PROC_PPID_ONLY, ppid)).
        to_pids(pids_by_type(ProcFilter::ByParentProcess { ppid }))
    }

    fn info(&self, pid: i32) -> Option<ProcInfo> {
        let bsd: BSDInfo = pidinfo(pid, 0).ok()?;
        Some(ProcInfo {
            ppid: i32::try_from(bsd.pbi_ppid).ok()?,
            pgid: i32::try_from(bsd.pbi_pgid).ok()?,
            start: bsd
                .pbi_start_tvsec
                .saturating_mul(1_000_000)
                .saturating_add(bsd.pbi_start_tvusec),
            zombie: bsd.pbi_status == SZOMB,
        })
    }

    fn carries(&self, _pid: i32, _entry: &[u8]) -> bool {
        false
    }

    fn group(&self, pgid: i32) -> Vec<i32> {
        let Ok(pgrpid) = u32::try_from(pgid) else {
            return Vec::new();
        };
        to_pids(pids_by_type(ProcFilter::ByProgramGroup { pgrpid }))
    }

    fn figures(&self, pids: &[i32]) -> Figures {
        let mut figures = Figures::default();
        let mut cpu_units = 0u64;
        let mut mem = 0u64;
        let mut io = Some((0u64, 0u64));
        for &pid in pids {
            // No task info: the process is gone or a zombie (which has no task any more).
            let Ok(task) = pidinfo::<TaskInfo>(pid, 0) else {
                continue;
            };
            figures.processes += 1;
            cpu_units = cpu_units
                .saturating_add(task.pti_total_user)
                .saturating_add(task.pti_total_system);
            mem = mem.saturating_add(task.pti_resident_size);
            match pidrusage::<RUsageInfoV2>(pid) {
                Ok(usage) => {
                    // The children it has reaped, so a short-lived child's CPU is not lost.
                    cpu_units = cpu_units
                        .saturating_add(usage.ri_child_user_time)
                        .saturating_add(usage.ri_child_system_time);
                    if let Some((read, written)) = io.as_mut() {
                        *read = read.saturating_add(usage.ri_diskio_bytesread);
                        *written = written.saturating_add(usage.ri_diskio_byteswritten);
                    }
                }
                Err(_) => io = None,
            }
        }
        figures.cpu_us = self.mach_to_us(cpu_units);
        figures.mem_bytes = Some(mem);
        if figures.processes > 0 {
            figures.io_read_bytes = io.map(|(read, _)| read);
            figures.io_write_bytes = io.map(|(_, written)| written);
        }
        figures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_this_process() {
        let table = LibprocTable::new();
        let me = i32::try_from(std::process::id()).expect("pid fits in i32");
        let info = table.info(me).expect("own BSD info");
        assert!(!info.zombie);
        let figures = table.figures(&[me]);
        assert_eq!(figures.processes, 1);
        assert!(figures.mem_bytes.is_some_and(|m| m > 0));
    }

    #[test]
    fn converts_mach_units() {
        let table = LibprocTable {
            numer: 125,
            denom: 3,
        };
        assert_eq!(table.mach_to_us(24_000_000), 1_000_000);
    }
}
