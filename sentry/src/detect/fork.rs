//! Fork-storm detection: the number of live processes in the tree keeps climbing, or stays
//! above an absolute ceiling, for a whole window.
//!
//! A parallel build spawns many short-lived compilers at once and they exit again: the count
//! spikes and falls back. Measuring the troughs of successive slices of the window (and the
//! minimum over the window for the ceiling) tells such spikes from a storm, whose troughs rise.

use serde::{Deserialize, Serialize};

use crate::detect::window::{duration_from_secs, secs, slice_minima, TimeWindow};
use crate::model::{Evidence, Finding, FindingKind, ResourceEvidence, Sample};

/// Slices the window is cut into for the trough-based growth rate.
const SLICES: usize = 4;

/// Thresholds of the fork-storm detector (`[fork]` in the policy file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForkStormConfig {
    /// Sustained growth of the live-process count, in processes per second.
    pub growth_per_s: f64,
    /// Live-process count that, held for the whole window, is a finding by itself.
    pub max_pids: u32,
    /// Length of the window, in seconds.
    pub window_s: f64,
}

impl Default for ForkStormConfig {
    fn default() -> Self {
        Self {
            growth_per_s: 20.0,
            max_pids: 1000,
            window_s: 10.0,
        }
    }
}

/// Watches the live-process count.
#[derive(Debug, Clone)]
pub struct ForkStormDetector {
    config: ForkStormConfig,
    window: TimeWindow<u32>,
}

impl ForkStormDetector {
    /// A detector with the given thresholds.
    pub fn new(config: ForkStormConfig) -> Self {
        let window = TimeWindow::new(duration_from_secs(config.window_s));
        Self { config, window }
    }

    /// Forgets all history (the command was restarted).
    pub fn reset(&mut self) {
        self.window.clear();
    }

    /// Feeds one sample.
    pub fn observe(&mut self, sample: &Sample) -> Option<Finding> {
        self.window.push(sample.at, sample.pids);
        if !self.window.is_full() {
            return None;
        }
        let cfg = &self.config;
        let floor = self.window.iter().map(|(_, p)| *p).min()?;
        let span = secs(self.window.covered());

        let mut score: f64 = 0.0;
        let mut reasons = Vec::new();
        let mut evidence = None;
        if cfg.max_pids > 0 && floor > cfg.max_pids {
            let excess = (floor as f64 / cfg.max_pids as f64 - 1.0).clamp(0.0, 1.0);
            score = 0.5 + 0.3 * excess;
            reasons.push(format!(
                "at least {floor} live processes for {span:.0} s (ceiling {})",
                cfg.max_pids
            ));
            evidence = Some(("pids", floor as f64, cfg.max_pids as f64));
        }
        if let Some(rate) = self.trough_growth_rate().filter(|r| *r >= cfg.growth_per_s) {
            let excess = (rate / cfg.growth_per_s.max(f64::EPSILON) - 1.0).clamp(0.0, 1.0);
            let s = 0.5 + 0.3 * excess;
            score = if evidence.is_some() {
                (score.max(s) + 0.1).min(0.9)
            } else {
                s
            };
            reasons.push(format!(
                "live processes rising {rate:.0}/s over {span:.0} s ({} -> {})",
                self.window.first().map_or(0, |e| e.1),
                sample.pids
            ));
            evidence.get_or_insert(("pids_growth_per_s", rate, cfg.growth_per_s));
        }
        let (metric, value, threshold) = evidence?;
        Some(Finding {
            kind: FindingKind::ForkStorm,
            score,
            at: sample.at,
            summary: reasons.join("; "),
            reasons,
            evidence: Evidence::Resource(ResourceEvidence {
                metric: metric.to_string(),
                value,
                threshold,
                window_s: span,
            }),
        })
    }

    /// Growth rate of the slice troughs, when every trough is at least the one before.
    fn trough_growth_rate(&self) -> Option<f64> {
        let minima = slice_minima(&self.window, SLICES, |p| Some(f64::from(*p)));
        if minima.len() < SLICES || minima.windows(2).any(|w| w[1].1 < w[0].1) {
            return None;
        }
        let (t0, m0) = minima[0];
        let (t1, m1) = minima[minima.len() - 1];
        let dt = secs(t1.saturating_sub(t0));
        (dt > 0.0 && m1 > m0).then(|| (m1 - m0) / dt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(millis_step: u64, steps: u64, pids: impl Fn(u64) -> u32) -> Option<Finding> {
        let mut d = ForkStormDetector::new(ForkStormConfig::default());
        let mut last = None;
        for i in 0..steps {
            let s = Sample {
                at: Duration::from_millis(i * millis_step),
                pids: pids(i),
                ..Sample::default()
            };
            last = d.observe(&s);
        }
        last
    }

    #[test]
    fn fork_storm_is_found_by_its_growth() {
        // +50 processes per second for 15 s, sampled every 500 ms.
        let f = run(500, 30, |i| 1 + i as u32 * 25);
        let f = f.unwrap_or_else(|| panic!("50 pids/s growth must be found"));
        assert_eq!(f.kind, FindingKind::ForkStorm);
        assert!(f.score >= 0.5, "score {}", f.score);
        assert!(f.summary.contains("rising"), "{}", f.summary);
    }

    #[test]
    fn parallel_build_spikes_are_healthy() {
        // make -j32: bursts of 33 processes for a second out of every three, back to 1.
        let f = run(250, 200, |i| if (i / 4) % 3 == 0 { 33 } else { 1 });
        assert_eq!(f, None);
        // A one-off spike of 400 compiler processes that then finish.
        let f = run(250, 200, |i| if (40..48).contains(&i) { 400 } else { 3 });
        assert_eq!(f, None);
    }

    #[test]
    fn sustained_huge_count_is_found_without_growth() {
        let f = run(500, 30, |_| 1500);
        let f = f.unwrap_or_else(|| panic!("1500 pids for 15 s must be found"));
        assert!(f.summary.contains("at least 1500"), "{}", f.summary);
    }

    #[test]
    fn steady_moderate_count_is_healthy() {
        assert_eq!(run(500, 60, |i| 50 + (i % 3) as u32), None);
    }

    #[test]
    fn slow_growth_is_healthy() {
        // A worker pool that adds one process a second.
        assert_eq!(run(1000, 60, |i| 1 + i as u32), None);
    }
}
