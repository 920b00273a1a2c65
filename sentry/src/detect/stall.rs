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
        let busy = !(sample.cpu_pct < self.config.cpu_pct);
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
