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

    /// Feeds one sample; samples without a memory reading are skipped (unknown is not zero).
    pub fn observe(&mut self, sample: &Sample) -> Option<Finding> {
        let mem = sample.mem_bytes?;
        self.window.push(sample.at, mem);
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
