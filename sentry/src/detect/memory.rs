//! Memory-growth detection: the tree's resident memory passed an absolute limit, or kept
//! growing at a steep slope across the whole window.
//!
//! Growth is measured on the minima of successive slices of the window, so a garbage
//! collector's sawtooth (allocate, collect, allocate) does not look like a leak while a leak
//! that also has a sawtooth (troughs creeping up) still does.

use serde::{Deserialize, Serialize};

use crate::detect::cpu::human_bytes;
use crate::detect::window::{duration_from_secs, secs, slice_minima, TimeWindow};
use crate::model::{Evidence, Finding, FindingKind, ResourceEvidence, Sample};

/// Slices the window is cut into for the trough-based slope.
const SLICES: usize = 4;
/// A trough may sit this fraction below the previous one and still count as "not falling":
/// allocators return a little memory now and then even while leaking.
const TROUGH_TOLERANCE: f64 = 0.02;

/// Thresholds of the memory-growth detector (`[memory]` in the policy file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryGrowthConfig {
    /// Resident bytes of the whole tree above which a finding is raised; unset = no limit.
    pub limit_bytes: Option<u64>,
    /// Sustained growth rate of the troughs, in bytes per second, that counts as a leak.
    pub slope_bytes_per_s: f64,
    /// Troughs must have grown by at least this many bytes across the window.
    pub min_growth_bytes: u64,
    /// Length of the window, in seconds.
    pub window_s: f64,
}

impl Default for MemoryGrowthConfig {
    fn default() -> Self {
        Self {
            limit_bytes: None,
            slope_bytes_per_s: 4.0 * 1024.0 * 1024.0,
            min_growth_bytes: 128 * 1024 * 1024,
            window_s: 60.0,
        }
    }
}

/// Watches resident memory for a limit breach or sustained growth.
#[derive(Debug, Clone)]
pub struct MemoryGrowthDetector {
    config: MemoryGrowthConfig,
    window: TimeWindow<u64>,
}

impl MemoryGrowthDetector {
    /// A detector with the given thresholds.
    pub fn new(config: MemoryGrowthConfig) -> Self {
        let window = TimeWindow::new(duration_from_secs(config.window_s));
        Self { config, window }
    }

    /// Forgets all history (the command was restarted).
    pub fn reset(&mut self) {
        self.window.clear();
    }

    /// Feeds one sample. A sample without a memory reading adds nothing to the window
    /// (unknown is not zero) but the verdict on the readings so far still stands.
    pub fn observe(&mut self, sample: &Sample) -> Option<Finding> {
        if let Some(mem) = sample.mem_bytes {
            self.window.push(sample.at, mem);
        }
        let mem = self.window.last()?.1;
        let cfg = &self.config;

        let over_limit = cfg.limit_bytes.filter(|limit| mem > *limit);
        let slope = self.trough_slope();
        let leaking = slope.filter(|(rate, growth, _)| {
            *rate >= cfg.slope_bytes_per_s && *growth >= cfg.min_growth_bytes as f64
        });

        let mut reasons = Vec::new();
        let mut score: f64 = 0.0;
        if let Some(limit) = over_limit {
            let excess = (mem as f64 / limit.max(1) as f64 - 1.0).clamp(0.0, 1.0);
            score = score.max(0.6 + 0.2 * excess);
            reasons.push(format!(
                "resident memory {} is above the limit of {}",
                human_bytes(mem),
                human_bytes(limit)
            ));
        }
        if let Some((rate, growth, monotone)) = leaking {
            let excess = (rate / cfg.slope_bytes_per_s.max(f64::EPSILON) - 1.0).clamp(0.0, 1.0);
            let s = 0.4 + 0.2 * excess + if monotone { 0.1 } else { 0.0 };
            score = if over_limit.is_some() {
                (score.max(s) + 0.1).min(0.9)
            } else {
                s
            };
            reasons.push(format!(
                "memory troughs grew {} at {}/s over {:.0} s{}",
                human_bytes(growth as u64),
                human_bytes(rate as u64),
                secs(self.window.covered()),
                if monotone { ", every slice higher" } else { "" }
            ));
        }
        if reasons.is_empty() {
            return None;
        }
        let (metric, value, threshold) = match (over_limit, leaking) {
            (Some(limit), _) => ("mem_bytes", mem as f64, limit as f64),
            (None, Some((rate, _, _))) => ("mem_growth_bytes_per_s", rate, cfg.slope_bytes_per_s),
            (None, None) => return None,
        };
        Some(Finding {
            kind: FindingKind::MemoryGrowth,
            score,
            at: sample.at,
            summary: reasons.join("; "),
            reasons,
            evidence: Evidence::Resource(ResourceEvidence {
                metric: metric.to_string(),
                value,
                threshold,
                window_s: secs(self.window.covered()),
            }),
        })
    }

    /// Growth rate of the troughs across a full window: `(bytes/s, bytes grown, every slice
    /// higher than the one before)`. `None` until the window is full or when the troughs fell.
    fn trough_slope(&self) -> Option<(f64, f64, bool)> {
        if !self.window.is_full() {
            return None;
        }
        let minima = slice_minima(&self.window, SLICES, |m| Some(*m as f64));
        if minima.len() < SLICES {
            return None;
        }
        let mut strictly = true;
        for pair in minima.windows(2) {
            let (prev, next) = (pair[0].1, pair[1].1);
            if next < prev * (1.0 - TROUGH_TOLERANCE) {
                return None;
            }
            strictly &= next > prev;
        }
        let (t0, m0) = minima[0];
        let (t1, m1) = minima[minima.len() - 1];
        let growth = m1 - m0;
        let dt = secs(t1.saturating_sub(t0));
        if growth <= 0.0 || dt <= 0.0 {
            return None;
        }
        Some((growth / dt, growth, strictly))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MIB: u64 = 1024 * 1024;

    fn run(
        cfg: MemoryGrowthConfig,
        secs: u64,
        mem: impl Fn(u64) -> Option<u64>,
    ) -> Option<Finding> {
        let mut d = MemoryGrowthDetector::new(cfg);
        let mut last = None;
        for t in 0..secs {
            let s = Sample {
                at: Duration::from_secs(t),
                mem_bytes: mem(t),
                ..Sample::default()
            };
            last = d.observe(&s);
        }
        last
    }

    #[test]
    fn steady_leak_is_found_with_its_slope() {
        let f = run(MemoryGrowthConfig::default(), 90, |t| {
            Some(200 * MIB + t * 10 * MIB)
        });
        let f = f.unwrap_or_else(|| panic!("10 MiB/s for 90 s is a leak"));
        assert!((0.5..=0.71).contains(&f.score), "score {}", f.score);
        let Evidence::Resource(e) = &f.evidence else {
            panic!("resource evidence expected")
        };
        assert_eq!(e.metric, "mem_growth_bytes_per_s");
        assert!(
            (e.value / MIB as f64 - 10.0).abs() < 0.5,
            "slope {}",
            e.value
        );
        assert!(f.summary.contains("every slice higher"), "{}", f.summary);
    }

    #[test]
    fn gc_sawtooth_is_not_a_leak() {
        // Allocates 100 MiB/s, collected back to 500 MiB every 10 s.
        let f = run(MemoryGrowthConfig::default(), 300, |t| {
            Some(500 * MIB + (t % 10) * 100 * MIB)
        });
        assert_eq!(f, None);
    }

    #[test]
    fn leak_under_a_sawtooth_is_still_found() {
        let f = run(MemoryGrowthConfig::default(), 200, |t| {
            Some(500 * MIB + t * 6 * MIB + (t % 7) * 80 * MIB)
        });
        assert!(f.is_some(), "troughs rising 6 MiB/s must be found");
    }

    #[test]
    fn slow_or_small_growth_is_healthy() {
        assert_eq!(
            run(MemoryGrowthConfig::default(), 300, |t| Some(
                100 * MIB + t * MIB
            )),
            None
        );
        // A warm-up that grows fast but stops: the window sees a plateau.
        let f = run(MemoryGrowthConfig::default(), 200, |t| {
            Some(100 * MIB + t.min(30) * 20 * MIB)
        });
        assert_eq!(f, None);
    }

    #[test]
    fn limit_is_enforced_on_the_latest_reading() {
        let cfg = MemoryGrowthConfig {
            limit_bytes: Some(1024 * MIB),
            ..MemoryGrowthConfig::default()
        };
        let f = run(cfg.clone(), 5, |_| Some(1500 * MIB));
        let f = f.unwrap_or_else(|| panic!("1.5 GiB above a 1 GiB limit must be found"));
        assert!(f.score >= 0.6 && f.score <= 0.8, "score {}", f.score);
        assert!(
            f.summary.contains("above the limit of 1.0 GiB"),
            "{}",
            f.summary
        );
        assert_eq!(run(cfg, 5, |_| Some(900 * MIB)), None);
    }

    #[test]
    fn limit_and_leak_together_score_higher_than_either() {
        let cfg = MemoryGrowthConfig {
            limit_bytes: Some(512 * MIB),
            ..MemoryGrowthConfig::default()
        };
        let both = run(cfg.clone(), 90, |t| Some(600 * MIB + t * 10 * MIB));
        let limit_only = run(cfg, 90, |_| Some(1500 * MIB));
        let (b, l) = (
            both.map_or(0.0, |f| f.score),
            limit_only.map_or(0.0, |f| f.score),
        );
        assert!(b > l, "limit+leak {b} should exceed limit alone {l}");
    }

    #[test]
    fn missing_readings_are_skipped_not_zero() {
        // Every other reading unavailable: a zero would fake a sawtooth, skipping keeps the
        // leak visible; and no readings at all yields nothing.
        let f = run(MemoryGrowthConfig::default(), 120, |t| {
            (t % 2 == 0).then_some(300 * MIB + t * 10 * MIB)
        });
        assert!(f.is_some());
        assert_eq!(run(MemoryGrowthConfig::default(), 120, |_| None), None);
    }
}
