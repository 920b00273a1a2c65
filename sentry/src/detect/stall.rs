//! Stall detection: no output, (almost) no CPU and no I/O for a long time, as when a command
//! hangs on a lock, a dead network peer or an interactive prompt nobody will answer.
//!
//! A stall is worth an alert, not a kill: a job legitimately waiting for a slow service looks
//! the same from outside. The score therefore stays in alert territory however long it lasts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::detect::cpu::io_total;
use crate::detect::progress::ProgressSignals;
use crate::detect::window::{duration_from_secs, secs};
use crate::model::{Evidence, Finding, FindingKind, ResourceEvidence, Sample};

/// Thresholds of the stall detector (`[stall]` in the policy file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StallConfig {
    /// Seconds without any activity before a finding is raised.
    pub idle_s: f64,
    /// CPU (per-core percent of the tree) below which a sample counts as idle.
    pub cpu_pct: f64,
}

impl Default for StallConfig {
    fn default() -> Self {
        // Five minutes: half of what CI services allow for silence, since sentry also knows
        // the CPU and I/O are idle, which a silence timer cannot.
        Self {
            idle_s: 300.0,
            cpu_pct: 2.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Activity {
    lines: u64,
    writes: u64,
    io: Option<u64>,
    syscalls: Option<u64>,
    pids: u32,
}

/// Watches for the absence of any activity.
#[derive(Debug, Clone)]
pub struct StallDetector {
    config: StallConfig,
    last: Option<Activity>,
    last_active: Duration,
}

impl StallDetector {
    /// A detector with the given thresholds.
    pub fn new(config: StallConfig) -> Self {
        Self {
            config,
            last: None,
            last_active: Duration::ZERO,
        }
    }

    /// Forgets all history (the command was restarted).
    pub fn reset(&mut self) {
        self.last = None;
        self.last_active = Duration::ZERO;
    }

    /// Feeds one sample with the progress counters at the same moment.
    pub fn observe(&mut self, sample: &Sample, progress: &ProgressSignals) -> Option<Finding> {
        let now = Activity {
            lines: progress.lines,
            writes: sample.writes,
            io: io_total(sample),
            syscalls: sample.syscalls,
            pids: sample.pids,
        };
        // Any change in any counter is a sign of life; so is CPU above the idle floor. The
        // first sample starts the idle clock rather than claiming the run was idle before it.
        let busy = sample.cpu_pct >= self.config.cpu_pct;
        if self.last.is_none_or(|prev| prev != now) || busy || sample.at < self.last_active {
            self.last_active = sample.at;
        }
        self.last = Some(now);

        let idle = sample.at.saturating_sub(self.last_active);
        let limit = duration_from_secs(self.config.idle_s);
        if idle < limit || limit.is_zero() {
            return None;
        }
        let ratio = secs(idle) / secs(limit);
        // 0.5 at the limit (medium: an alert by default), reaching 0.6 at four times it; never
        // more, since a job waiting on a slow service looks exactly like this.
        let score = (0.5 + 0.1 * ((ratio - 1.0) / 3.0).clamp(0.0, 1.0)).min(0.6);
        let summary = format!(
            "no output, CPU below {:.0}% and no I/O for {:.0} s",
            self.config.cpu_pct,
            secs(idle)
        );
        Some(Finding {
            kind: FindingKind::Stall,
            score,
            at: sample.at,
            reasons: vec![
                summary.clone(),
                format!(
                    "{} live processes, {} lines so far",
                    sample.pids, progress.lines
                ),
            ],
            summary,
            evidence: Evidence::Resource(ResourceEvidence {
                metric: "idle_s".to_string(),
                value: secs(idle),
                threshold: self.config.idle_s,
                window_s: secs(idle),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        secs: u64,
        f: impl Fn(u64) -> (Sample, ProgressSignals),
    ) -> (Option<Finding>, Option<u64>) {
        let mut d = StallDetector::new(StallConfig::default());
        let mut last = None;
        let mut first_at = None;
        for t in 0..secs {
            let (s, p) = f(t);
            last = d.observe(&s, &p);
            if last.is_some() && first_at.is_none() {
                first_at = Some(t);
            }
        }
        (last, first_at)
    }

    fn idle(t: u64) -> Sample {
        Sample {
            at: Duration::from_secs(t),
            cpu_pct: 0.3,
            pids: 2,
            io_read_bytes: Some(10),
            io_write_bytes: Some(20),
            writes: 5,
            ..Sample::default()
        }
    }

    #[test]
    fn hung_process_is_an_alert_level_stall() {
        let (f, first) = run(1300, |t| (idle(t), ProgressSignals::default()));
        assert_eq!(first, Some(300), "fires when idle for idle_s");
        let f = f.unwrap_or_else(|| panic!("stall expected"));
        assert_eq!(f.kind, FindingKind::Stall);
        assert!((0.5..=0.6).contains(&f.score), "score {}", f.score);
        assert!(f.summary.contains("no output"), "{}", f.summary);
    }

    #[test]
    fn silent_cpu_work_is_not_a_stall() {
        let (f, _) = run(1000, |t| {
            let mut s = idle(t);
            s.cpu_pct = 100.0;
            (s, ProgressSignals::default())
        });
        assert_eq!(f, None);
    }

    #[test]
    fn occasional_output_or_io_resets_the_clock() {
        let (f, _) = run(1000, |t| {
            (
                idle(t),
                ProgressSignals {
                    lines: t / 200,
                    novel_lines: 0,
                },
            )
        });
        assert_eq!(f, None, "a line every 200 s is not a 300 s stall");
        let (f, _) = run(1000, |t| {
            let mut s = idle(t);
            s.io_write_bytes = Some(t / 250);
            (s, ProgressSignals::default())
        });
        assert_eq!(f, None, "I/O every 250 s is activity");
    }

    #[test]
    fn stall_after_activity_counts_from_the_last_activity() {
        let (_, first) = run(800, |t| {
            let mut s = idle(t);
            s.cpu_pct = if t < 100 { 50.0 } else { 0.0 };
            (s, ProgressSignals::default())
        });
        assert_eq!(first, Some(399));
    }
}
