//! The four resource detectors run side by side over one sample stream, so the supervisor
//! feeds each sample once and gets back every finding it produced.

use crate::detect::cpu::{CpuBurnConfig, CpuBurnDetector};
use crate::detect::fork::{ForkStormConfig, ForkStormDetector};
use crate::detect::memory::{MemoryGrowthConfig, MemoryGrowthDetector};
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
}

impl ResourceDetectors {
    /// All four detectors with the given thresholds.
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
        }
    }

    /// Feeds one sample (and the progress counters at the same moment) to every detector and
    /// returns the findings they raised, in a fixed order (CPU, memory, stall, fork).
    pub fn observe(&mut self, sample: &Sample, progress: &ProgressSignals) -> Vec<Finding> {
        [
            self.cpu.observe(sample, progress),
            self.memory.observe(sample),
            self.stall.observe(sample, progress),
            self.fork.observe(sample),
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
