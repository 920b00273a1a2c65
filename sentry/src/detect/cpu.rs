//! CPU-burn detection: the whole process tree kept the CPU busy for a sustained window while
//! showing no sign of progress.
//!
//! Burn is judged over a time window (not a lifetime average, which hides a loop that starts
//! late and punishes a job that was busy early), as the share of samples above the threshold,
//! so a few low samples (a pause for I/O, a sampling hiccup) do not break a streak. Progress
//! vetoes: novel output lines, file I/O bytes, and a lively syscall rate (a tight loop makes
//! none). Even unvetoed, burn alone is only medium evidence: a numeric job can compute silently
//! for minutes, so the score stays below what the decision engine kills on by itself.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::detect::progress::ProgressSignals;
use crate::detect::window::{counter_delta, duration_from_secs, secs, TimeWindow};
use crate::model::{Evidence, Finding, FindingKind, ResourceEvidence, Sample};

/// Highest score burn reaches without a tight-loop signature (no syscall data, or some).
/// Unvetoed burn starts at 0.5, the default medium band: worth an alert, never a kill.
const SCORE_BURN: f64 = 0.6;
/// Highest score with a tight-loop signature (syscalls known and near zero).
const SCORE_TIGHT_LOOP: f64 = 0.7;
/// Ceiling once progress vetoed the burn: recorded as a near miss, never acted on.
const SCORE_VETOED: f64 = 0.2;

/// Thresholds of the CPU-burn detector (`[cpu]` in the policy file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CpuBurnConfig {
    /// Per-core percent of the whole tree (like `top`, may exceed 100) that counts as busy.
    pub threshold_pct: f64,
    /// Length of the window burn must be sustained over, in seconds.
    pub window_s: f64,
    /// Share of samples in the window that must be busy (0..1); tolerates a few low samples.
    pub min_busy_fraction: f64,
    /// This many novel output lines within the window veto the finding.
    pub novel_lines_veto: u64,
    /// This many bytes of file I/O (read + written) within the window veto the finding.
    pub io_bytes_veto: u64,
    /// A syscall rate (per second) at or above this vetoes the finding, where syscalls are counted.
    pub syscalls_veto_per_s: f64,
    /// A syscall rate below this is the signature of a tight loop and raises the score.
    pub tight_loop_syscalls_per_s: f64,
}

impl Default for CpuBurnConfig {
    fn default() -> Self {
        Self {
            threshold_pct: 90.0,
            window_s: 30.0,
            min_busy_fraction: 0.8,
            novel_lines_veto: 3,
            io_bytes_veto: 256 * 1024,
            syscalls_veto_per_s: 200.0,
            tight_loop_syscalls_per_s: 5.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Point {
    cpu_pct: f64,
    io_bytes: Option<u64>,
    syscalls: Option<u64>,
    novel_lines: u64,
}

/// Watches samples for sustained CPU burn without progress.
#[derive(Debug, Clone)]
pub struct CpuBurnDetector {
    config: CpuBurnConfig,
    window: TimeWindow<Point>,
}

/// Sum of the I/O counters the backend provides; `None` when it provides neither.
pub(crate) fn io_total(sample: &Sample) -> Option<u64> {
    match (sample.io_read_bytes, sample.io_write_bytes) {
        (None, None) => None,
        (r, w) => Some(r.unwrap_or(0).saturating_add(w.unwrap_or(0))),
    }
}

impl CpuBurnDetector {
    /// A detector with the given thresholds.
    pub fn new(config: CpuBurnConfig) -> Self {
        let window = TimeWindow::new(duration_from_secs(config.window_s));
        Self { config, window }
    }

    /// Forgets all history (the command was restarted).
    pub fn reset(&mut self) {
        self.window.clear();
    }

    /// Feeds one sample with the progress counters at the same moment; returns a finding when
    /// the window shows sustained burn. A burn that progress vetoed is still returned, with a
    /// score of at most 0.2 and the veto among its reasons, so the near miss is on record.
    pub fn observe(&mut self, sample: &Sample, progress: &ProgressSignals) -> Option<Finding> {
        let cpu_pct = if sample.cpu_pct.is_finite() {
            sample.cpu_pct.max(0.0)
        } else {
            0.0
        };
        self.window.push(
            sample.at,
            Point {
                cpu_pct,
                io_bytes: io_total(sample),
                syscalls: sample.syscalls,
                novel_lines: progress.novel_lines,
            },
        );
        if !self.window.is_full() {
            return None;
        }
        let cfg = &self.config;
        let n = self.window.len() as f64;
        let busy = self
            .window
            .iter()
            .filter(|(_, p)| p.cpu_pct >= cfg.threshold_pct)
            .count() as f64;
        let busy_fraction = busy / n;
        if busy_fraction < cfg.min_busy_fraction {
            return None;
        }
        let mean_pct = self.window.iter().map(|(_, p)| p.cpu_pct).sum::<f64>() / n;
        let (t0, first) = *self.window.first()?;
        let (t1, last) = *self.window.last()?;
        let span = secs(t1.saturating_sub(t0)).max(f64::EPSILON);

        let novel = last.novel_lines.saturating_sub(first.novel_lines);
        let io = counter_delta(first.io_bytes, last.io_bytes);
        let syscall_rate = counter_delta(first.syscalls, last.syscalls).map(|d| d as f64 / span);

        let mut reasons = vec![format!(
            "CPU averaged {mean_pct:.0}% over {span:.0} s, {:.0}% of samples at or above {:.0}%",
            busy_fraction * 100.0,
            cfg.threshold_pct
        )];
        let mut vetoes = Vec::new();
        if novel >= cfg.novel_lines_veto {
            vetoes.push(format!("{novel} novel output lines in the window"));
        } else {
            reasons.push(format!("only {novel} novel output lines in the window"));
        }
        match io {
            Some(b) if b >= cfg.io_bytes_veto => {
                vetoes.push(format!("{} of file I/O in the window", human_bytes(b)))
            }
            Some(b) => reasons.push(format!("{} of file I/O in the window", human_bytes(b))),
            None => reasons.push("file I/O not measured by this backend".to_string()),
        }
        let mut tight_loop = false;
        match syscall_rate {
            Some(r) if r >= cfg.syscalls_veto_per_s => vetoes.push(format!("{r:.0} syscalls/s")),
            Some(r) if r < cfg.tight_loop_syscalls_per_s => {
                tight_loop = true;
                reasons.push(format!("{r:.1} syscalls/s: a tight loop makes none"));
            }
            Some(r) => reasons.push(format!("{r:.0} syscalls/s")),
            None => reasons.push("syscalls not counted by this backend".to_string()),
        }

        // Heavier burn (several cores) nudges the score up a little; it never makes burn alone
        // decisive, since a parallel numeric job burns several cores too.
        let excess = (mean_pct / cfg.threshold_pct.max(f64::EPSILON) - 1.0).clamp(0.0, 1.0);
        let ceiling = if tight_loop {
            SCORE_TIGHT_LOOP
        } else {
            SCORE_BURN
        };
        let mut score = ceiling - 0.1 + 0.1 * excess;
        let summary;
        if vetoes.is_empty() {
            summary = format!(
                "CPU {mean_pct:.0}% for {span:.0} s without progress ({novel} novel lines)"
            );
        } else {
            score = (score * 0.3).min(SCORE_VETOED);
            summary = format!(
                "CPU {mean_pct:.0}% for {span:.0} s, but progressing: {}",
                vetoes.join(", ")
            );
            reasons.extend(vetoes.into_iter().map(|v| format!("progress: {v}")));
        }
        Some(Finding {
            kind: FindingKind::CpuBurn,
            score,
            at: sample.at,
            summary,
            reasons,
            evidence: Evidence::Resource(ResourceEvidence {
                metric: "cpu_pct".to_string(),
                value: mean_pct,
                threshold: cfg.threshold_pct,
                window_s: span,
            }),
        })
    }

    /// The configured window.
    pub fn window(&self) -> Duration {
        self.window.span()
    }
}

/// Bytes in binary units for human messages ("3.2 MiB").
pub(crate) fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One synthetic second of a run: CPU percent plus cumulative counters.
    fn sample(t: u64, cpu: f64, io: Option<u64>, syscalls: Option<u64>) -> Sample {
        Sample {
            at: Duration::from_secs(t),
            cpu_pct: cpu,
            io_read_bytes: io,
            io_write_bytes: io.map(|_| 0),
            syscalls,
            pids: 1,
            ..Sample::default()
        }
    }

    fn progress(novel: u64) -> ProgressSignals {
        ProgressSignals {
            lines: novel,
            novel_lines: novel,
        }
    }

    /// Runs `secs` one-second samples through a default detector, returning the last result.
    fn run(secs: u64, f: impl Fn(u64) -> (Sample, ProgressSignals)) -> Option<Finding> {
        let mut d = CpuBurnDetector::new(CpuBurnConfig::default());
        let mut last = None;
        for t in 0..secs {
            let (s, p) = f(t);
            last = d.observe(&s, &p);
        }
        last
    }

    #[test]
    fn tight_loop_is_found_with_the_tight_loop_signature() {
        let f = run(40, |t| {
            (sample(t, 99.0, Some(4096), Some(120)), progress(7))
        });
        let f = f.unwrap_or_else(|| panic!("a 40 s tight loop at 99% must be found"));
        assert_eq!(f.kind, FindingKind::CpuBurn);
        assert!((0.6..=0.7).contains(&f.score), "score {}", f.score);
        assert!(
            f.reasons.iter().any(|r| r.contains("tight loop")),
            "{:?}",
            f.reasons
        );
        let Evidence::Resource(e) = &f.evidence else {
            panic!("resource evidence expected, got {:?}", f.evidence)
        };
        assert_eq!(e.metric, "cpu_pct");
        assert!((e.value - 99.0).abs() < 1e-9 && e.threshold == 90.0 && e.window_s >= 27.0);
    }

    #[test]
    fn a_few_low_samples_do_not_break_a_sustained_burn() {
        let f = run(40, |t| {
            let cpu = if t % 10 == 3 { 4.0 } else { 180.0 };
            (sample(t, cpu, None, None), progress(0))
        });
        assert!(f.is_some(), "3 low samples in 30 must not hide the burn");
    }

    #[test]
    fn multi_core_burn_counts_the_whole_tree() {
        let f = run(40, |t| (sample(t, 195.0, None, None), progress(0)));
        let f = f.unwrap_or_else(|| panic!("195% must be found"));
        assert!(f.summary.contains("195%"), "{}", f.summary);
    }

    #[test]
    fn below_threshold_or_intermittent_cpu_is_not_burn() {
        assert_eq!(
            run(60, |t| (sample(t, 60.0, None, None), progress(0))),
            None
        );
        let half = run(60, |t| {
            (
                sample(t, if t % 2 == 0 { 100.0 } else { 10.0 }, None, None),
                progress(0),
            )
        });
        assert_eq!(half, None, "busy half the time is not sustained");
    }

    #[test]
    fn no_verdict_before_the_window_is_covered() {
        assert_eq!(
            run(20, |t| (sample(t, 100.0, None, None), progress(0))),
            None
        );
    }

    #[test]
    fn judged_on_the_window_not_the_lifetime() {
        // Five busy minutes early on, then a quiet minute: a lifetime average would still be
        // high; the window is not.
        let f = run(360, |t| {
            let cpu = if t < 300 { 100.0 } else { 1.0 };
            (sample(t, cpu, None, None), progress(0))
        });
        assert_eq!(f, None);
        // And a loop that only starts late is caught once the window fills.
        let f = run(400, |t| {
            let cpu = if t < 360 { 1.0 } else { 100.0 };
            (sample(t, cpu, None, None), progress(0))
        });
        assert!(f.is_some());
    }

    #[test]
    fn compile_burst_with_progress_is_vetoed() {
        // A parallel build: two cores busy, new lines every second, object files written.
        let f = run(60, |t| {
            (
                sample(t, 190.0, Some(t * 2_000_000), Some(t * 900)),
                progress(t * 2),
            )
        });
        let f = f.unwrap_or_else(|| panic!("the burn itself is still on record"));
        assert!(f.score <= 0.2, "progress must veto, score {}", f.score);
        assert!(
            f.reasons.iter().any(|r| r.starts_with("progress:")),
            "{:?}",
            f.reasons
        );
        assert!(f.summary.contains("progressing"), "{}", f.summary);
    }

    #[test]
    fn each_progress_signal_vetoes_on_its_own() {
        let novel_only = run(40, |t| (sample(t, 100.0, None, None), progress(t)));
        let io_only = run(40, |t| {
            (sample(t, 100.0, Some(t * 100_000), None), progress(0))
        });
        let syscalls_only = run(40, |t| {
            (sample(t, 100.0, None, Some(t * 1000)), progress(0))
        });
        for (name, f) in [
            ("novel", novel_only),
            ("io", io_only),
            ("syscalls", syscalls_only),
        ] {
            let score = f.map_or(1.0, |f| f.score);
            assert!(score <= 0.2, "{name} progress should veto, score {score}");
        }
    }

    #[test]
    fn silent_numeric_job_is_at_most_medium() {
        // Minutes of silent number crunching on two cores, no syscall or I/O data: it may be
        // worth an alert, never a high-confidence kill.
        let f = run(600, |t| (sample(t, 200.0, None, None), progress(3)));
        let f = f.unwrap_or_else(|| panic!("burn without progress is still a finding"));
        assert!((0.5..=0.6).contains(&f.score), "score {}", f.score);
        assert!(
            f.reasons.iter().any(|r| r.contains("not counted")),
            "{:?}",
            f.reasons
        );
    }

    #[test]
    fn unavailable_counters_are_not_zero() {
        let f = run(40, |t| (sample(t, 100.0, None, None), progress(0)));
        let f = f.unwrap_or_else(|| panic!("burn expected"));
        assert!(
            !f.reasons.iter().any(|r| r.contains("tight loop")),
            "{:?}",
            f.reasons
        );
        assert!(
            f.reasons.iter().any(|r| r.contains("I/O not measured")),
            "{:?}",
            f.reasons
        );
    }

    #[test]
    fn garbage_cpu_values_do_not_panic_or_fire() {
        let f = run(40, |t| {
            let cpu = [f64::NAN, f64::INFINITY, -5.0][t as usize % 3];
            (sample(t, cpu, None, None), progress(0))
        });
        assert_eq!(f, None);
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 + 200 * 1024), "3.2 MiB");
    }
}
