//! Live check of the CPU-burn detector on real processes: a shell spinning in a tight loop and
//! a sleeping one, sampled from `/proc/<pid>/stat` (utime + stime deltas) by a small sampler
//! written here, then judged by the real detector and the real decision engine.

#![cfg(target_os = "linux")]

use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use sentry::decide::{DecisionEngine, Policy};
use sentry::detect::cpu::{CpuBurnConfig, CpuBurnDetector};
use sentry::detect::progress::ProgressSignals;
use sentry::model::{Action, Evidence, FindingKind, Sample};

/// Kills and reaps the child even when an assertion fails first.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(script: &str) -> Reaped {
    let child = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start sh -c {script:?}: {e}"));
    Reaped(child)
}

/// Cumulative CPU time of one process in microseconds, from fields 14 and 15 of its stat line.
fn cpu_time_us(pid: u32, ticks_per_s: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/stat: {e}"));
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("malformed stat line: {stat}"));
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let ticks: u64 = fields
        .get(11..=12)
        .unwrap_or_else(|| panic!("stat line has too few fields: {stat}"))
        .iter()
        .map(|f| {
            f.parse::<u64>()
                .unwrap_or_else(|e| panic!("bad tick count {f:?}: {e}"))
        })
        .sum();
    ticks * 1_000_000 / ticks_per_s
}

/// Cumulative syscalls (read + write families) from `/proc/<pid>/io`, when readable.
fn syscalls(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some(field("syscr:")? + field("syscw:")?)
}

/// Samples `pid` every 200 ms for `total`, feeding each sample to a CPU-burn detector with a
/// short window; returns the samples and the last finding.
fn sample_and_detect(
    pid: u32,
    total: Duration,
    config: CpuBurnConfig,
) -> (Vec<Sample>, Option<sentry::model::Finding>) {
    // SAFETY: sysconf takes no pointers; it only reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(ticks > 0, "sysconf(_SC_CLK_TCK) failed");
    let ticks = ticks as u64;
    let mut detector = CpuBurnDetector::new(config);
    let start = Instant::now();
    let mut prev = (Duration::ZERO, cpu_time_us(pid, ticks));
    let mut samples = Vec::new();
    let mut last = None;
    while start.elapsed() < total {
        sleep(Duration::from_millis(200));
        let at = start.elapsed();
        let usage = cpu_time_us(pid, ticks);
        let dt = at.saturating_sub(prev.0).as_secs_f64();
        let cpu_pct = (usage - prev.1) as f64 / 1e6 / dt * 100.0;
        prev = (at, usage);
        let sample = Sample {
            at,
            cpu_pct,
            cpu_usage_us: usage,
            pids: 1,
            syscalls: syscalls(pid),
            ..Sample::default()
        };
        last = detector.observe(&sample, &ProgressSignals::default());
        samples.push(sample);
    }
    (samples, last)
}

/// A short window so the test takes seconds; a low threshold because this machine is shared
/// with parallel compilers and a spinning shell may get well under a full core.
fn live_config() -> CpuBurnConfig {
    CpuBurnConfig {
        threshold_pct: 20.0,
        window_s: 2.0,
        min_busy_fraction: 0.7,
        ..CpuBurnConfig::default()
    }
}

#[test]
fn spinning_shell_is_found_burning_cpu() {
    let child = spawn("while :; do :; done");
    let (samples, finding) = sample_and_detect(child.0.id(), Duration::from_secs(3), live_config());
    let mean = samples.iter().map(|s| s.cpu_pct).sum::<f64>() / samples.len() as f64;
    let finding = finding.unwrap_or_else(|| {
        panic!(
            "a spinning shell must be found; measured CPU per sample: {:?}",
            samples
                .iter()
                .map(|s| s.cpu_pct.round())
                .collect::<Vec<_>>()
        )
    });
    eprintln!(
        "spinning shell: {} (score {:.2}); {:?}",
        finding.summary, finding.score, finding.reasons
    );
    assert_eq!(finding.kind, FindingKind::CpuBurn);
    assert!(
        finding.score >= 0.4,
        "unvetoed burn, score {}",
        finding.score
    );
    let Evidence::Resource(e) = &finding.evidence else {
        panic!("resource evidence expected, got {:?}", finding.evidence)
    };
    assert!(
        e.value > 20.0,
        "window mean {} (run mean {mean:.0}%)",
        e.value
    );
    if samples.iter().all(|s| s.syscalls.is_some()) {
        assert!(
            finding.reasons.iter().any(|r| r.contains("tight loop")),
            "a shell loop of builtins makes no syscalls: {:?}",
            finding.reasons
        );
    }

    // Burn alone, however sustained, is at most an alert under the default policy.
    let mut engine = DecisionEngine::new(Policy::default());
    let decisions: Vec<_> = (0..10)
        .map(|i| engine.decide(Duration::from_secs(i), std::slice::from_ref(&finding)))
        .collect();
    assert!(decisions.iter().all(|d| d.action <= Action::Alert));
}

#[test]
fn sleeping_process_is_not_burning() {
    let child = spawn("sleep 30");
    let (samples, finding) = sample_and_detect(child.0.id(), Duration::from_secs(3), live_config());
    assert_eq!(finding, None, "a sleeping process was reported as burning");
    let peak = samples.iter().map(|s| s.cpu_pct).fold(0.0, f64::max);
    assert!(
        peak < 5.0,
        "sleep measured at {peak:.1}% CPU: the sampler is wrong"
    );
}
