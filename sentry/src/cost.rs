//! What a run or watched job cost: CPU-seconds, memory GB-seconds and peak, I/O bytes, the
//! fraction of its wall time it sat idle, and, with a price per CPU-hour, money.
//!
//! The meter integrates samples as they arrive (trapezoids for memory, interval by interval
//! for idleness), so a job's cost is current while it runs and needs no second pass.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::Sample;

/// CPU (per-core percent of the whole tree) below which an interval counts as idle when it
/// also produced no output and no I/O: the stall detector's default floor.
pub const IDLE_CPU_PCT: f64 = 2.0;

/// Bytes in a gigabyte for GB-seconds (decimal, as cloud price lists use).
const GB: f64 = 1e9;

/// What one run or job cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunCost {
    /// Wall time, seconds.
    pub wall_s: f64,
    /// CPU time of the whole tree, seconds (user + system).
    pub cpu_seconds: f64,
    /// Resident memory integrated over time, GB-seconds (`null` when memory was not measured).
    pub mem_gb_seconds: Option<f64>,
    /// Peak resident memory of the tree, bytes.
    pub mem_peak_bytes: Option<u64>,
    /// Bytes read from storage by the tree (`null` when not measured).
    pub io_read_bytes: Option<u64>,
    /// Bytes written to storage by the tree (`null` when not measured).
    pub io_write_bytes: Option<u64>,
    /// Fraction of the sampled time with no output, no I/O and CPU below 2% of a core (0..1).
    pub idle_fraction: f64,
    /// The price per CPU-hour the money figure uses (`--price-per-cpu-hour`).
    pub price_per_cpu_hour: Option<f64>,
    /// `cpu_seconds / 3600 × price_per_cpu_hour`, when a price is set.
    pub cost: Option<f64>,
}

impl RunCost {
    /// Sets the price and the money figure it gives.
    pub fn priced(mut self, price_per_cpu_hour: Option<f64>) -> Self {
        self.price_per_cpu_hour = price_per_cpu_hour;
        self.cost = price_per_cpu_hour.map(|p| self.cpu_seconds / 3600.0 * p);
        self
    }

    /// One human line: "12.3 CPU-s, 0.41 GB-s memory (peak 80 MiB), 3 MiB I/O, 40% idle, 9.1 s".
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("{:.1} CPU-s", self.cpu_seconds)];
        if let Some(gbs) = self.mem_gb_seconds {
            let peak = self
                .mem_peak_bytes
                .map(|p| format!(" (peak {})", crate::detect::cpu::human_bytes(p)))
                .unwrap_or_default();
            parts.push(format!("{gbs:.2} GB-s memory{peak}"));
        }
        if self.io_read_bytes.is_some() || self.io_write_bytes.is_some() {
            parts.push(format!(
                "{} read, {} written",
                crate::detect::cpu::human_bytes(self.io_read_bytes.unwrap_or(0)),
                crate::detect::cpu::human_bytes(self.io_write_bytes.unwrap_or(0))
            ));
        }
        parts.push(format!("{:.0}% idle", self.idle_fraction * 100.0));
        parts.push(format!("{:.1} s wall", self.wall_s));
        if let (Some(cost), Some(price)) = (self.cost, self.price_per_cpu_hour) {
            parts.push(format!("cost {cost:.4} at {price} per CPU-hour"));
        }
        parts.join(", ")
    }
}

/// Accumulates a [`RunCost`] from samples.
#[derive(Debug, Clone, Default)]
pub struct CostMeter {
    last: Option<Point>,
    mem_byte_seconds: f64,
    mem_measured: bool,
    mem_peak: Option<u64>,
    sampled_s: f64,
    idle_s: f64,
    cpu_us: u64,
    /// CPU of attempts that ended (restarts start the tree's counters from zero again).
    cpu_us_before: u64,
    io_read: Option<u64>,
    io_write: Option<u64>,
    io_before: (u64, u64),
}

#[derive(Debug, Clone, Copy)]
struct Point {
    at: Duration,
    mem: Option<u64>,
    writes: u64,
    io: Option<u64>,
    lines: u64,
}

impl CostMeter {
    /// A meter with nothing measured yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one sample and the logical output lines seen so far.
    pub fn observe(&mut self, sample: &Sample, lines: u64) {
        let point = Point {
            at: sample.at,
            mem: sample.mem_bytes,
            writes: sample.writes,
            io: crate::detect::cpu::io_total(sample),
            lines,
        };
        if let Some(prev) = self.last {
            let dt = sample.at.saturating_sub(prev.at).as_secs_f64();
            if dt > 0.0 {
                if let (Some(a), Some(b)) = (prev.mem, point.mem) {
                    self.mem_byte_seconds += (a as f64 + b as f64) / 2.0 * dt;
                }
                self.sampled_s += dt;
                let quiet = point.lines == prev.lines
                    && point.writes == prev.writes
                    && point.io == prev.io
                    && sample.cpu_pct < IDLE_CPU_PCT;
                if quiet {
                    self.idle_s += dt;
                }
            }
        }
        if let Some(mem) = sample.mem_bytes {
            self.mem_measured = true;
            self.mem_peak = Some(self.mem_peak.map_or(mem, |m| m.max(mem)));
        }
        self.cpu_us = self.cpu_us.max(sample.cpu_usage_us);
        if let Some(r) = sample.io_read_bytes {
            self.io_read = Some(self.io_read.unwrap_or(0).max(r));
        }
        if let Some(w) = sample.io_write_bytes {
            self.io_write = Some(self.io_write.unwrap_or(0).max(w));
        }
        self.last = Some(point);
    }

    /// The command was restarted: its counters start again from zero, what was used is kept.
    pub fn restarted(&mut self) {
        self.cpu_us_before += self.cpu_us;
        self.cpu_us = 0;
        self.io_before.0 += self.io_read.take().unwrap_or(0);
        self.io_before.1 += self.io_write.take().unwrap_or(0);
        self.last = None;
    }

    /// Raises the CPU total to a figure measured elsewhere (the backend's final accounting),
    /// never lowering it.
    pub fn cpu_at_least(&mut self, total_us: u64) {
        let now = self.cpu_us_before + self.cpu_us;
        if total_us > now {
            self.cpu_us += total_us - now;
        }
    }

    /// CPU-seconds so far.
    pub fn cpu_seconds(&self) -> f64 {
        (self.cpu_us_before + self.cpu_us) as f64 / 1e6
    }

    /// The cost so far, for a run `wall` long.
    pub fn cost(&self, wall: Duration) -> RunCost {
        let io = |now: Option<u64>, before: u64| match (now, before) {
            (None, 0) => None,
            (n, b) => Some(n.unwrap_or(0) + b),
        };
        RunCost {
            wall_s: wall.as_secs_f64(),
            cpu_seconds: self.cpu_seconds(),
            mem_gb_seconds: self.mem_measured.then(|| self.mem_byte_seconds / GB),
            mem_peak_bytes: self.mem_peak,
            io_read_bytes: io(self.io_read, self.io_before.0),
            io_write_bytes: io(self.io_write, self.io_before.1),
            idle_fraction: if self.sampled_s > 0.0 {
                (self.idle_s / self.sampled_s).clamp(0.0, 1.0)
            } else {
                0.0
            },
            price_per_cpu_hour: None,
            cost: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, cpu: f64, mem: u64, cpu_us: u64, io: u64) -> Sample {
        Sample {
            at: Duration::from_secs_f64(t),
            cpu_pct: cpu,
            cpu_usage_us: cpu_us,
            mem_bytes: Some(mem),
            pids: 1,
            io_read_bytes: Some(io),
            io_write_bytes: Some(0),
            ..Sample::default()
        }
    }

    #[test]
    fn memory_integrates_and_idle_time_is_the_quiet_share() {
        let mut m = CostMeter::new();
        // 10 s at 1 GB: busy for the first 4 s (I/O advancing), idle for the last 6.
        for t in 0..=10u64 {
            let io = t.min(4) * 1000;
            let cpu = if t <= 4 { 50.0 } else { 0.5 };
            m.observe(&sample(t as f64, cpu, 1_000_000_000, t * 100_000, io), 0);
        }
        let c = m.cost(Duration::from_secs(10)).priced(Some(0.36));
        assert!((c.mem_gb_seconds.unwrap() - 10.0).abs() < 1e-9, "{c:?}");
        assert!((c.idle_fraction - 0.6).abs() < 1e-9, "{c:?}");
        assert!((c.cpu_seconds - 1.0).abs() < 1e-9);
        assert_eq!(c.io_read_bytes, Some(4000));
        assert!((c.cost.unwrap() - 0.0001).abs() < 1e-12, "{c:?}");
        assert!(c.summary().contains("60% idle"), "{}", c.summary());
    }

    #[test]
    fn restarts_keep_what_earlier_attempts_used() {
        let mut m = CostMeter::new();
        m.observe(&sample(0.0, 100.0, 10, 0, 0), 0);
        m.observe(&sample(1.0, 100.0, 10, 1_000_000, 500), 0);
        m.restarted();
        m.observe(&sample(2.0, 100.0, 10, 0, 0), 0);
        m.observe(&sample(3.0, 100.0, 10, 2_000_000, 100), 0);
        let c = m.cost(Duration::from_secs(3));
        assert!((c.cpu_seconds - 3.0).abs() < 1e-9, "{c:?}");
        assert_eq!(c.io_read_bytes, Some(600));
        m.cpu_at_least(3_500_000);
        assert!((m.cpu_seconds() - 3.5).abs() < 1e-9);
        m.cpu_at_least(1_000_000);
        assert!((m.cpu_seconds() - 3.5).abs() < 1e-9, "never lowered");
    }

    #[test]
    fn unmeasured_memory_and_io_stay_unknown() {
        let mut m = CostMeter::new();
        let s = Sample {
            at: Duration::from_secs(1),
            ..Sample::default()
        };
        m.observe(&s, 0);
        let c = m.cost(Duration::from_secs(1));
        assert_eq!(c.mem_gb_seconds, None);
        assert_eq!(c.io_read_bytes, None);
        assert_eq!(c.cost, None);
    }
}
