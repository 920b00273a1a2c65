//! The resource detectors (and the no-output timeout, which reads the same samples) run side
//! by side over one sample stream, so the supervisor feeds each sample once and gets back
//! every finding it produced.

use crate::detect::cpu::{CpuBurnConfig, CpuBurnDetector};
use crate::detect::fork::{ForkStormConfig, ForkStormDetector};
use crate::detect::memory::{MemoryGrowthConfig, MemoryGrowthDetector};
use crate::detect::no_output::{NoOutputConfig, NoOutputDetector};
use crate::detect::progress::ProgressSignals;
use crate::detect::stall::{StallConfig, StallDetector};
use crate::model::{Finding, Sample};

/// CPU burn, memory growth, stall and fork-storm detectors over the same samples.
#[derive(Debug, Clone)]
pub struct ResourceDetectors {
    cpu: CpuBurnDetector,
    memory: MemoryGrowthDetector,
    stall: StallDetector,
    fork: ForkStormDetector,
    no_output: NoOutputDetector,
}

impl ResourceDetectors {
    /// All four detectors with the given thresholds (the no-output timeout off).
    pub fn new(
        cpu: CpuBurnConfig,
        memory: MemoryGrowthConfig,
        stall: StallConfig,
        fork: ForkStormConfig,
    ) -> Self {
        Self {
            cpu: CpuBurnDetector::new(cpu),
            memory: MemoryGrowthDetector::new(memory),
            stall: StallDetector::new(stall),
            fork: ForkStormDetector::new(fork),
            no_output: NoOutputDetector::new(&NoOutputConfig::default(), 0.0),
        }
    }

    /// Adds the no-output timeout: CPU at or above `cpu_floor_pct` counts as progress.
    pub fn with_no_output(mut self, config: &NoOutputConfig, cpu_floor_pct: f64) -> Self {
        self.no_output = NoOutputDetector::new(config, cpu_floor_pct);
        self
    }

    /// Feeds one sample (and the progress counters at the same moment) to every detector and
    /// returns the findings they raised, in a fixed order (CPU, memory, stall, fork, no output).
    pub fn observe(&mut self, sample: &Sample, progress: &ProgressSignals) -> Vec<Finding> {
        [
            self.cpu.observe(sample, progress),
            self.memory.observe(sample),
            self.stall.observe(sample, progress),
            self.fork.observe(sample),
            self.no_output.observe(sample, progress),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Forgets all history (the command was restarted).
    pub fn reset(&mut self) {
        self.cpu.reset();
        self.memory.reset();
        self.stall.reset();
        self.fork.reset();
        self.no_output.reset();
    }
}

impl Default for ResourceDetectors {
    fn default() -> Self {
        Self::new(
            CpuBurnConfig::default(),
            MemoryGrowthConfig::default(),
            StallConfig::default(),
            ForkStormConfig::default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{DecisionEngine, Policy};
    use crate::model::{Action, FindingKind};
    use proptest::prelude::*;
    use std::time::Duration;

    /// One generated step: ms since the previous sample, CPU %, memory, I/O, syscalls, pids,
    /// new output lines.
    type Step = (u64, f64, Option<u64>, Option<u64>, Option<u64>, u32, u64);

    /// Arbitrary but plausible samples: counters may be unavailable, go backwards (a restart),
    /// CPU may be absurd; time moves forwards by irregular steps.
    fn samples() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            (
                1u64..5000,
                prop_oneof![0.0f64..400.0, Just(f64::NAN), Just(-1.0), Just(1e12)],
                prop::option::of(0u64..1 << 40),
                prop::option::of(0u64..1 << 30),
                prop::option::of(0u64..1 << 20),
                0u32..5000,
                0u64..100,
            ),
            1..300,
        )
    }

    proptest! {
        #[test]
        fn detectors_never_panic_and_resource_signals_alone_never_kill(steps in samples()) {
            let mut d = ResourceDetectors::default();
            let mut engine = DecisionEngine::new(Policy::default());
            let mut at = Duration::ZERO;
            let mut progress = ProgressSignals::default();
            for (dt_ms, cpu, mem, io, sys, pids, lines) in steps {
                at += Duration::from_millis(dt_ms);
                progress.lines += lines;
                let sample = Sample {
                    at,
                    cpu_pct: cpu,
                    mem_bytes: mem,
                    io_read_bytes: io,
                    io_write_bytes: io,
                    syscalls: sys,
                    pids,
                    ..Sample::default()
                };
                let findings = d.observe(&sample, &progress);
                for f in &findings {
                    prop_assert!((0.0..=1.0).contains(&f.score), "{f:?}");
                    prop_assert!(f.kind != FindingKind::OutputLoop);
                    if f.kind == FindingKind::CpuBurn {
                        prop_assert!(f.score <= 0.7, "burn alone scored {}", f.score);
                    }
                }
                let decision = engine.decide(at, &findings);
                prop_assert!(decision.action <= Action::Alert, "{decision:?}");
            }
        }
    }

    #[test]
    fn one_sample_stream_feeds_every_detector() {
        let policy = Policy::from_toml_str(
            "[memory]\nlimit_bytes = 1000\n[fork]\nmax_pids = 10\nwindow_s = 2\n[cpu]\nwindow_s = 2\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut d = policy.resource_detectors();
        let mut kinds = Vec::new();
        for t in 0..5 {
            let s = Sample {
                at: Duration::from_secs(t),
                cpu_pct: 100.0,
                mem_bytes: Some(5000),
                pids: 50,
                ..Sample::default()
            };
            kinds = d
                .observe(&s, &ProgressSignals::default())
                .iter()
                .map(|f| f.kind)
                .collect();
        }
        assert_eq!(
            kinds,
            [
                FindingKind::CpuBurn,
                FindingKind::MemoryGrowth,
                FindingKind::ForkStorm
            ]
        );
        d.reset();
        let s = Sample {
            at: Duration::from_secs(6),
            cpu_pct: 100.0,
            pids: 50,
            ..Sample::default()
        };
        assert!(
            d.observe(&s, &ProgressSignals::default()).is_empty(),
            "reset forgets windows"
        );
    }
}
