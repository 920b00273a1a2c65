//! Regression against a learned baseline: a job running far past what its recent healthy runs
//! took (wall time or CPU-seconds), the way Jenkins' build-timeout plugin sets an "elastic"
//! limit from recent builds and calls a build "likely stuck" far beyond its estimate.
//!
//! Without enough history there is no baseline and the detector stays silent: one or two runs
//! say nothing about what is normal. A slow day looks the same as a regression from outside,
//! so the finding is alert-level by default (`[combine.caps] regression`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::baseline::Baseline;
use crate::model::{Evidence, Finding, FindingKind, RegressionEvidence, Sample};

/// Thresholds of the regression detector (`[regression]` in the policy file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegressionConfig {
    /// Compare runs with their job's baseline at all.
    pub enabled: bool,
    /// Healthy runs of the same job key needed before there is a baseline.
    pub min_runs: u32,
    /// How many recent healthy runs the baseline is taken from.
    pub history: u32,
    /// "Elastic" limit: a run past this multiple of the median (wall time or CPU) is flagged.
    pub factor: f64,
    /// "Likely stuck": at this multiple the finding reaches its full score.
    pub stuck_factor: f64,
    /// And it must be at least this many seconds past the median, so that a job of a few
    /// hundred milliseconds is not flagged for a scheduler hiccup.
    pub min_excess_s: f64,
}

impl Default for RegressionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_runs: 5,
            history: 20,
            factor: 3.0,
            stuck_factor: 10.0,
            min_excess_s: 5.0,
        }
    }
}

/// Compares a run's wall time and CPU with its job's baseline.
#[derive(Debug, Clone)]
pub struct RegressionDetector {
    config: RegressionConfig,
    baseline: Option<Baseline>,
    /// CPU of the attempts before this one (restarts start the counters again).
    cpu_before_us: u64,
    cpu_us: u64,
}

impl RegressionDetector {
    /// A detector for a run whose job has `baseline` (ignored when its history is shorter
    /// than `config.min_runs`).
    pub fn new(config: RegressionConfig, baseline: Option<Baseline>) -> Self {
        let baseline =
            baseline.filter(|b| config.enabled && b.runs >= config.min_runs && b.runs > 0);
        Self {
            config,
            baseline,
            cpu_before_us: 0,
            cpu_us: 0,
        }
    }

    /// The baseline in use, if the history was long enough.
    pub fn baseline(&self) -> Option<&Baseline> {
        self.baseline.as_ref()
    }

    /// The command was restarted: its CPU counter starts from zero, the time keeps running.
    pub fn restarted(&mut self) {
        self.cpu_before_us += self.cpu_us;
        self.cpu_us = 0;
    }

    /// Feeds one sample; `elapsed` is the wall time since the run (not the attempt) started.
    pub fn observe(&mut self, sample: &Sample, elapsed: Duration) -> Option<Finding> {
        self.cpu_us = self.cpu_us.max(sample.cpu_usage_us);
        let baseline = self.baseline.as_ref()?;
        let wall = elapsed.as_secs_f64();
        let cpu = (self.cpu_before_us + self.cpu_us) as f64 / 1e6;
        let candidates = [
            ("wall_s", "wall time", wall, Some(baseline.median_wall_s)),
            ("cpu_s", "CPU time", cpu, baseline.median_cpu_seconds),
        ];
        let (metric, what, value, median, ratio) = candidates
            .into_iter()
            .filter_map(|(metric, what, value, median)| {
                let median = median.filter(|m| *m > 0.0)?;
                let ratio = value / median;
                let over = ratio >= self.config.factor
                    && value - median >= self.config.min_excess_s.max(0.0);
                over.then_some((metric, what, value, median, ratio))
            })
            .max_by(|a, b| a.4.total_cmp(&b.4))?;

        let span = (self.config.stuck_factor - self.config.factor).max(f64::EPSILON);
        let reach = ((ratio - self.config.factor) / span).clamp(0.0, 1.0);
        // Medium (an alert by default) at the elastic limit, 0.6 when likely stuck.
        let score = 0.5 + 0.1 * reach;
        let rule = if ratio >= self.config.stuck_factor {
            "likely stuck"
        } else {
            "past the elastic limit"
        };
        let summary = format!(
            "{what} {value:.1} s is {ratio:.1}x the median {median:.1} s of the last {} healthy runs ({rule})",
            baseline.runs
        );
        Some(Finding {
            kind: FindingKind::Regression,
            score,
            at: sample.at,
            reasons: vec![
                summary.clone(),
                format!(
                    "flagged from {:.0}x the median (and {:.0} s past it); likely stuck from {:.0}x",
                    self.config.factor, self.config.min_excess_s, self.config.stuck_factor
                ),
            ],
            summary,
            evidence: Evidence::Regression(RegressionEvidence {
                metric: metric.to_string(),
                value,
                median,
                ratio,
                threshold: median * self.config.factor,
                runs: baseline.runs,
                p90_wall_s: baseline.p90_wall_s,
                job_key: baseline.job_key.clone(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline(runs: u32) -> Baseline {
        Baseline {
            job_key: "cmd:make test".into(),
            runs,
            median_wall_s: 2.0,
            median_cpu_seconds: Some(1.0),
            p90_wall_s: 2.4,
        }
    }

    fn sample(t: f64, cpu_s: f64) -> Sample {
        Sample {
            at: Duration::from_secs_f64(t),
            cpu_usage_us: (cpu_s * 1e6) as u64,
            pids: 1,
            ..Sample::default()
        }
    }

    fn first_finding(d: &mut RegressionDetector, cpu_per_s: f64) -> Option<(f64, Finding)> {
        (0..400).find_map(|i| {
            let t = f64::from(i) * 0.1;
            d.observe(&sample(t, t * cpu_per_s), Duration::from_secs_f64(t))
                .map(|f| (t, f))
        })
    }

    #[test]
    fn a_run_far_past_its_median_is_a_regression_with_the_baseline_as_evidence() {
        let mut d = RegressionDetector::new(RegressionConfig::default(), Some(baseline(5)));
        let (t, f) = first_finding(&mut d, 0.1).expect("regression");
        // 3x the 2 s median is 6 s, but it must also be 5 s past it: 7 s.
        assert!((t - 7.0).abs() < 0.11, "fired at {t}");
        assert_eq!(f.kind, FindingKind::Regression);
        assert!((0.5..=0.6).contains(&f.score));
        let Evidence::Regression(e) = &f.evidence else {
            panic!("{:?}", f.evidence)
        };
        assert_eq!(e.metric, "wall_s");
        assert_eq!(e.runs, 5);
        assert!((e.median - 2.0).abs() < 1e-9);
        assert!(f.summary.contains("median 2.0 s"), "{}", f.summary);
        // Likely stuck at 10x: full score.
        let f = d
            .observe(&sample(25.0, 2.5), Duration::from_secs(25))
            .expect("still");
        assert!((f.score - 0.6).abs() < 1e-9, "{}", f.score);
        assert!(f.summary.contains("likely stuck"), "{}", f.summary);
    }

    #[test]
    fn cpu_past_its_median_counts_even_when_the_wall_time_does_not() {
        let mut d = RegressionDetector::new(RegressionConfig::default(), Some(baseline(8)));
        // Two cores busy: 2 CPU-s per second, CPU median 1 s → 3x at 1.5 s, +5 s at 3 s.
        let (t, f) = first_finding(&mut d, 2.0).expect("regression");
        assert!((t - 3.0).abs() < 0.11, "fired at {t}");
        let Evidence::Regression(e) = &f.evidence else {
            panic!()
        };
        assert_eq!(e.metric, "cpu_s");
    }

    #[test]
    fn too_little_history_or_a_disabled_detector_says_nothing() {
        let mut d = RegressionDetector::new(RegressionConfig::default(), Some(baseline(4)));
        assert!(d.baseline().is_none());
        assert!(first_finding(&mut d, 0.0).is_none());
        let off = RegressionConfig {
            enabled: false,
            ..RegressionConfig::default()
        };
        let mut d = RegressionDetector::new(off, Some(baseline(50)));
        assert!(first_finding(&mut d, 0.0).is_none());
        let mut d = RegressionDetector::new(RegressionConfig::default(), None);
        assert!(first_finding(&mut d, 0.0).is_none());
    }

    #[test]
    fn a_run_within_its_usual_time_is_not_flagged() {
        let mut d = RegressionDetector::new(RegressionConfig::default(), Some(baseline(20)));
        for i in 0..60 {
            let t = f64::from(i) * 0.1;
            assert!(d
                .observe(&sample(t, t * 0.1), Duration::from_secs_f64(t))
                .is_none());
        }
    }
}
