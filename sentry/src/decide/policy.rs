//! The policy: every threshold, window, confidence level and action the detectors and the
//! decision engine use, with built-in defaults and a TOML file users can write.
//!
//! Loading is strict: an unknown key (usually a typo that would otherwise silently keep the
//! default) or a value out of range is an error naming the key, the file and the line.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::detect::cpu::CpuBurnConfig;
use crate::detect::fork::ForkStormConfig;
use crate::detect::memory::MemoryGrowthConfig;
use crate::detect::no_output::{NoOutputConfig, MAX_TIMEOUT_S};
use crate::detect::regression::RegressionConfig;
use crate::detect::resource::ResourceDetectors;
use crate::detect::stall::StallConfig;
use crate::model::{Action, FindingKind};

/// Everything that tunes detection and decisions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Confidence levels that separate high, medium and low (`[confidence]`).
    pub confidence: ConfidenceLevels,
    /// Persistence before escalation and cool-down before de-escalation (`[hysteresis]`).
    pub hysteresis: Hysteresis,
    /// How findings combine into one confidence (`[combine]`).
    pub combine: CombineRules,
    /// Which confidence level leads to which action, with per-kind overrides (`[actions]`).
    pub actions: ActionPolicy,
    /// CPU-burn thresholds (`[cpu]`).
    pub cpu: CpuBurnConfig,
    /// Memory-growth thresholds (`[memory]`).
    pub memory: MemoryGrowthConfig,
    /// Stall thresholds (`[stall]`).
    pub stall: StallConfig,
    /// Fork-storm thresholds (`[fork]`).
    pub fork: ForkStormConfig,
    /// Regression against the job's learned baseline (`[regression]`).
    pub regression: RegressionConfig,
    /// The no-output timeout (`[no_output]`), off unless `timeout_s` is set.
    pub no_output: NoOutputConfig,
}

/// Confidence levels, each the lower bound of its band (0..1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfidenceLevels {
    /// At or above: high confidence (killed by default).
    pub high: f64,
    /// At or above: medium confidence (alerted by default).
    pub medium: f64,
    /// At or above: low confidence, a near miss that is recorded but left alone.
    pub low: f64,
}

impl Default for ConfidenceLevels {
    fn default() -> Self {
        Self {
            high: 0.85,
            medium: 0.5,
            low: 0.25,
        }
    }
}

/// Hysteresis: how long a level must hold before it acts, and before it is let go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hysteresis {
    /// Consecutive evaluations a level must be reached in before escalating to it.
    pub persist_evaluations: u32,
    /// Minimum seconds from the first of those evaluations to the escalation.
    pub persist_s: f64,
    /// Seconds a level must have been absent before de-escalating from it.
    pub cooldown_s: f64,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Self {
            persist_evaluations: 3,
            persist_s: 1.0,
            cooldown_s: 30.0,
        }
    }
}

/// Highest confidence each kind of finding reaches on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KindCaps {
    /// Output loop (its own score already weighs errors, repeats and progress).
    pub output_loop: f64,
    /// CPU burn: a numeric job can burn silently, so alone it never reaches high.
    pub cpu_burn: f64,
    /// Memory growth.
    pub memory_growth: f64,
    /// Stall: waiting on a slow service looks the same, so alert at most.
    pub stall: f64,
    /// Fork storm.
    pub fork_storm: f64,
    /// No-output timeout: the user asked for it, so it reaches high (stopped by default).
    pub no_output: f64,
    /// Regression against the job's baseline: a slow day looks the same, so alert at most.
    pub regression: f64,
}

impl Default for KindCaps {
    fn default() -> Self {
        Self {
            output_loop: 1.0,
            cpu_burn: 0.6,
            memory_growth: 0.75,
            stall: 0.6,
            fork_storm: 0.8,
            no_output: 1.0,
            regression: 0.6,
        }
    }
}

impl KindCaps {
    /// The cap for one kind.
    pub fn get(&self, kind: FindingKind) -> f64 {
        match kind {
            FindingKind::OutputLoop => self.output_loop,
            FindingKind::CpuBurn => self.cpu_burn,
            FindingKind::MemoryGrowth => self.memory_growth,
            FindingKind::Stall => self.stall,
            FindingKind::ForkStorm => self.fork_storm,
            FindingKind::NoOutput => self.no_output,
            FindingKind::Regression => self.regression,
        }
    }
}

/// Rules that turn several findings into one confidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CombineRules {
    /// An output loop at least this strong, corroborated by burn, is a high-confidence runaway.
    pub loop_min_score: f64,
    /// A CPU, memory or fork finding at least this strong corroborates an output loop.
    pub burn_min_score: f64,
    /// Highest confidence from resource findings without an output loop, however many agree.
    pub resource_only_cap: f64,
    /// Highest confidence per kind on its own (`[combine.caps]`).
    pub caps: KindCaps,
}

impl Default for CombineRules {
    fn default() -> Self {
        Self {
            loop_min_score: 0.5,
            burn_min_score: 0.4,
            resource_only_cap: 0.8,
            caps: KindCaps::default(),
        }
    }
}

/// Actions for the three confidence levels; `None` falls back to the general setting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LevelActions {
    /// Action at high confidence.
    pub high: Option<Action>,
    /// Action at medium confidence.
    pub medium: Option<Action>,
    /// Action at low confidence.
    pub low: Option<Action>,
}

/// Which confidence level leads to which action (`[actions]`), with per-kind overrides keyed
/// by the leading finding's kind (`[actions.stall]` …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionPolicy {
    /// Action at high confidence.
    pub high: Action,
    /// Action at medium confidence.
    pub medium: Action,
    /// Action at low confidence.
    pub low: Action,
    /// Overrides when an output loop leads.
    pub output_loop: LevelActions,
    /// Overrides when CPU burn leads.
    pub cpu_burn: LevelActions,
    /// Overrides when memory growth leads.
    pub memory_growth: LevelActions,
    /// Overrides when a stall leads.
    pub stall: LevelActions,
    /// Overrides when a fork storm leads.
    pub fork_storm: LevelActions,
    /// Overrides when the no-output timeout leads.
    pub no_output: LevelActions,
    /// Overrides when a regression against the baseline leads.
    pub regression: LevelActions,
}

impl Default for ActionPolicy {
    fn default() -> Self {
        // The explicit safety rule: only a high-confidence runaway is stopped by default.
        Self {
            high: Action::Kill,
            medium: Action::Alert,
            low: Action::Continue,
            output_loop: LevelActions::default(),
            cpu_burn: LevelActions::default(),
            memory_growth: LevelActions::default(),
            stall: LevelActions::default(),
            fork_storm: LevelActions::default(),
            no_output: LevelActions::default(),
            regression: LevelActions::default(),
        }
    }
}

/// A confidence band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Below the low bound: nothing worth recording as a near miss.
    None,
    /// A near miss: recorded, left alone by default.
    Low,
    /// Ambiguous: alerted by default.
    Medium,
    /// A runaway: stopped by default.
    High,
}

impl Level {
    /// Lower-case name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ActionPolicy {
    /// The action for a level when `kind` leads the decision.
    pub fn for_level(&self, level: Level, kind: Option<FindingKind>) -> Action {
        let over = kind.map(|k| match k {
            FindingKind::OutputLoop => &self.output_loop,
            FindingKind::CpuBurn => &self.cpu_burn,
            FindingKind::MemoryGrowth => &self.memory_growth,
            FindingKind::Stall => &self.stall,
            FindingKind::ForkStorm => &self.fork_storm,
            FindingKind::NoOutput => &self.no_output,
            FindingKind::Regression => &self.regression,
        });
        match level {
            Level::None => Action::Continue,
            Level::Low => over.and_then(|o| o.low).unwrap_or(self.low),
            Level::Medium => over.and_then(|o| o.medium).unwrap_or(self.medium),
            Level::High => over.and_then(|o| o.high).unwrap_or(self.high),
        }
    }
}

impl ConfidenceLevels {
    /// The band a confidence falls in.
    pub fn level(&self, confidence: f64) -> Level {
        if confidence >= self.high {
            Level::High
        } else if confidence >= self.medium {
            Level::Medium
        } else if confidence >= self.low {
            Level::Low
        } else {
            Level::None
        }
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not fit the policy schema.
    #[error("{origin}{}: {}{message}", line.map(|l| format!(":{l}")).unwrap_or_default(), key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
    Invalid {
        /// The file name, or `<policy>` for a string.
        origin: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// Dotted key path (`cpu.threshold_pct`), when known.
        key: Option<String>,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl Policy {
    /// Reads and validates a policy file; keys it does not set keep their defaults.
    pub fn from_toml_file(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        parse(&text, &path.display().to_string())
    }

    /// Parses and validates a policy from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Policy, PolicyError> {
        parse(text, "<policy>")
    }

    /// The resource detectors configured by this policy.
    pub fn resource_detectors(&self) -> ResourceDetectors {
        ResourceDetectors::new(
            self.cpu.clone(),
            self.memory.clone(),
            self.stall.clone(),
            self.fork.clone(),
        )
        // The stall detector's idle floor is the no-output timeout's too: one definition of
        // "no CPU progress".
        .with_no_output(&self.no_output, self.stall.cpu_pct)
    }

    /// Checks ranges and orderings serde cannot express; returns `(key, message)` pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut unit = |key: &'static str, v: f64| {
            if !(0.0..=1.0).contains(&v) {
                out.push((key, format!("must be between 0 and 1 (got {v})")));
            }
        };
        let c = &self.confidence;
        unit("confidence.high", c.high);
        unit("confidence.medium", c.medium);
        unit("confidence.low", c.low);
        let m = &self.combine;
        unit("combine.loop_min_score", m.loop_min_score);
        unit("combine.burn_min_score", m.burn_min_score);
        unit("combine.resource_only_cap", m.resource_only_cap);
        unit("combine.caps.output_loop", m.caps.output_loop);
        unit("combine.caps.cpu_burn", m.caps.cpu_burn);
        unit("combine.caps.memory_growth", m.caps.memory_growth);
        unit("combine.caps.stall", m.caps.stall);
        unit("combine.caps.fork_storm", m.caps.fork_storm);
        unit("combine.caps.no_output", m.caps.no_output);
        unit("combine.caps.regression", m.caps.regression);
        unit("cpu.min_busy_fraction", self.cpu.min_busy_fraction);
        if self.cpu.min_busy_fraction == 0.0 {
            out.push((
                "cpu.min_busy_fraction",
                "must be above 0, or every window would count as busy".to_string(),
            ));
        }
        if !(c.low > 0.0 && c.low < c.medium && c.medium < c.high) {
            out.push((
                "confidence.medium",
                format!(
                    "levels must satisfy 0 < low < medium < high (got low {}, medium {}, high {})",
                    c.low, c.medium, c.high
                ),
            ));
        }

        let mut positive = |key: &'static str, v: f64, max: f64| {
            if !(v > 0.0 && v <= max) {
                out.push((key, format!("must be above 0 and at most {max} (got {v})")));
            }
        };
        const DAY: f64 = 86_400.0;
        positive("cpu.threshold_pct", self.cpu.threshold_pct, 100_000.0);
        positive("cpu.window_s", self.cpu.window_s, DAY);
        positive(
            "memory.slope_bytes_per_s",
            self.memory.slope_bytes_per_s,
            1e15,
        );
        positive("memory.window_s", self.memory.window_s, DAY);
        positive("stall.idle_s", self.stall.idle_s, 30.0 * DAY);
        positive("fork.growth_per_s", self.fork.growth_per_s, 1e9);
        positive("fork.window_s", self.fork.window_s, DAY);
        positive("regression.factor", self.regression.factor, 1e6);
        positive("regression.stuck_factor", self.regression.stuck_factor, 1e6);
        if let Some(t) = self.no_output.timeout_s {
            positive("no_output.timeout_s", t, MAX_TIMEOUT_S);
        }

        let mut non_negative = |key: &'static str, v: f64, max: f64| {
            if !(v >= 0.0 && v <= max) {
                out.push((key, format!("must be between 0 and {max} (got {v})")));
            }
        };
        non_negative("hysteresis.persist_s", self.hysteresis.persist_s, DAY);
        non_negative("hysteresis.cooldown_s", self.hysteresis.cooldown_s, DAY);
        non_negative(
            "cpu.syscalls_veto_per_s",
            self.cpu.syscalls_veto_per_s,
            1e12,
        );
        non_negative(
            "cpu.tight_loop_syscalls_per_s",
            self.cpu.tight_loop_syscalls_per_s,
            1e12,
        );
        non_negative("stall.cpu_pct", self.stall.cpu_pct, 100_000.0);

        non_negative(
            "regression.min_excess_s",
            self.regression.min_excess_s,
            30.0 * DAY,
        );
        if self.regression.min_runs == 0 || self.regression.history < self.regression.min_runs {
            out.push((
                "regression.history",
                format!(
                    "min_runs must be at least 1 and history at least min_runs (got min_runs {}, history {})",
                    self.regression.min_runs, self.regression.history
                ),
            ));
        }
        if self.regression.stuck_factor < self.regression.factor {
            out.push((
                "regression.stuck_factor",
                format!(
                    "must be at least regression.factor ({})",
                    self.regression.factor
                ),
            ));
        }
        if self.hysteresis.persist_evaluations == 0 {
            out.push((
                "hysteresis.persist_evaluations",
                "must be at least 1".to_string(),
            ));
        }
        if self.cpu.tight_loop_syscalls_per_s > self.cpu.syscalls_veto_per_s {
            out.push((
                "cpu.tight_loop_syscalls_per_s",
                format!(
                    "must not exceed cpu.syscalls_veto_per_s ({})",
                    self.cpu.syscalls_veto_per_s
                ),
            ));
        }
        if self.memory.limit_bytes == Some(0) {
            out.push((
                "memory.limit_bytes",
                "must be above 0; remove the key for no limit".to_string(),
            ));
        }
        if self.fork.max_pids == 0 {
            out.push(("fork.max_pids", "must be at least 1".to_string()));
        }
        out
    }
}

fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
    let policy: Policy = toml::from_str(text).map_err(|e| {
        let span = e.span();
        PolicyError::Invalid {
            origin: origin.to_string(),
            line: span.as_ref().map(|s| line_of(text, s.start)),
            key: span.and_then(|s| key_at(text, s)),
            message: e.message().trim().to_string(),
        }
    })?;
    if let Some((key, message)) = policy.problems().into_iter().next() {
        return Err(PolicyError::Invalid {
            origin: origin.to_string(),
            line: line_of_key(text, key),
            key: Some(key.to_string()),
            message,
        });
    }
    Ok(policy)
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The dotted path of the key (or of the value of the key) that a span points into.
fn key_at(text: &str, span: Range<usize>) -> Option<String> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut path = Vec::new();
    find_key(doc.as_table(), span.start, &mut path).then(|| path.join("."))
}

fn find_key(table: &dyn toml_edit::TableLike, offset: usize, path: &mut Vec<String>) -> bool {
    for (name, _) in table.iter() {
        let Some((key, item)) = table.get_key_value(name) else {
            continue;
        };
        path.push(name.to_string());
        if let Some(inner) = item.as_table_like() {
            if find_key(inner, offset, path) {
                return true;
            }
        }
        let hit = |r: Option<Range<usize>>| r.is_some_and(|r| r.contains(&offset));
        if hit(key.span()) || (item.as_table_like().is_none() && hit(item.span())) {
            return true;
        }
        path.pop();
    }
    false
}

/// 1-based line where a dotted key is written, when the file writes it.
fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        let (key, item) = table.get_key_value(part)?;
        if parts.peek().is_none() {
            return key.span().map(|s| line_of(text, s.start));
        }
        table = item.as_table_like()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (Option<usize>, Option<String>, String) {
        match Policy::from_toml_str(text) {
            Err(PolicyError::Invalid {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected an invalid-policy error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn empty_text_is_the_default_policy() {
        assert_eq!(Policy::from_toml_str("").ok(), Some(Policy::default()));
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Policy::default().problems(), Vec::new());
    }

    #[test]
    fn set_keys_override_and_the_rest_stay_default() {
        let p = Policy::from_toml_str("[cpu]\nthreshold_pct = 150\n[actions]\nhigh = \"pause\"\n")
            .unwrap_or_else(|e| panic!("valid policy rejected: {e}"));
        assert_eq!(p.cpu.threshold_pct, 150.0);
        assert_eq!(p.cpu.window_s, CpuBurnConfig::default().window_s);
        assert_eq!(p.actions.high, Action::Pause);
        assert_eq!(p.actions.medium, Action::Alert);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let (line, key, message) = err("[cpu]\nwindow_s = 30\nthresold_pct = 90\n");
        assert_eq!(line, Some(3));
        assert_eq!(key.as_deref(), Some("cpu.thresold_pct"));
        assert!(message.contains("unknown field"), "{message}");
        assert!(
            message.contains("threshold_pct"),
            "should list valid keys: {message}"
        );
    }

    #[test]
    fn unknown_section_is_rejected() {
        let (line, key, _) = err("# comment\n[gpu]\nlimit = 1\n");
        assert_eq!(line, Some(2));
        assert_eq!(key.as_deref(), Some("gpu"));
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let (line, key, message) = err("[memory]\n\nwindow_s = \"a minute\"\n");
        assert_eq!(line, Some(3));
        assert_eq!(key.as_deref(), Some("memory.window_s"));
        assert!(message.contains("expected f64"), "{message}");
    }

    #[test]
    fn unknown_action_is_rejected() {
        let (line, key, message) = err("[actions.stall]\nhigh = \"nuke\"\n");
        assert_eq!(line, Some(2));
        assert_eq!(key.as_deref(), Some("actions.stall.high"));
        assert!(
            message.contains("nuke") && message.contains("kill"),
            "{message}"
        );
    }

    #[test]
    fn out_of_range_values_are_rejected_with_key_and_line() {
        let (line, key, message) = err("[hysteresis]\ncooldown_s = 10\n\n[cpu]\nwindow_s = -5\n");
        assert_eq!(line, Some(5));
        assert_eq!(key.as_deref(), Some("cpu.window_s"));
        assert!(message.contains("-5"), "{message}");

        let (_, key, _) = err("[confidence]\nhigh = 0.4\n");
        assert_eq!(key.as_deref(), Some("confidence.medium"));
        let (line, key, _) = err("[memory]\nlimit_bytes = 0\n");
        assert_eq!(
            (line, key.as_deref()),
            (Some(2), Some("memory.limit_bytes"))
        );
        let (_, key, _) = err("[hysteresis]\npersist_evaluations = 0\n");
        assert_eq!(key.as_deref(), Some("hysteresis.persist_evaluations"));
    }

    #[test]
    fn dotted_and_inline_keys_are_located() {
        let (line, key, _) = err("cpu.window_s = 30\ncpu.bogus = 1\n");
        assert_eq!((line, key.as_deref()), (Some(2), Some("cpu.bogus")));
        let (line, key, _) = err("\nfork = { window_s = 0 }\n");
        assert_eq!((line, key.as_deref()), (Some(2), Some("fork.window_s")));
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "[stall]\nidle_seconds = 5\n").unwrap_or_else(|e| panic!("{e}"));
        let msg = Policy::from_toml_file(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.starts_with(&format!("{}:2: key `stall.idle_seconds`", path.display())),
            "{msg}"
        );
        let missing = Policy::from_toml_file(&dir.path().join("nope.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(missing.contains("cannot read policy file"), "{missing}");
    }

    #[test]
    fn the_no_output_timeout_is_off_by_default_and_read_from_its_section() {
        assert_eq!(Policy::default().no_output.timeout_s, None);
        let p = Policy::from_toml_str("[no_output]\ntimeout_s = 90\n")
            .unwrap_or_else(|e| panic!("valid policy rejected: {e}"));
        assert_eq!(p.no_output.timeout_s, Some(90.0));
        assert_eq!(
            p.actions
                .for_level(Level::High, Some(FindingKind::NoOutput)),
            Action::Kill,
            "the user's own timeout stops the job by default"
        );
        let (line, key, message) = err("[no_output]\n\ntimeout_s = 0\n");
        assert_eq!(
            (line, key.as_deref()),
            (Some(3), Some("no_output.timeout_s"))
        );
        assert!(message.contains("above 0"), "{message}");
        let (_, key, message) = err("[no_output]\ntimeout = 5\n");
        assert_eq!(key.as_deref(), Some("no_output.timeout"));
        assert!(message.contains("timeout_s"), "{message}");
        let p = Policy::from_toml_str("[actions.no_output]\nhigh = \"alert\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            p.actions
                .for_level(Level::High, Some(FindingKind::NoOutput)),
            Action::Alert
        );
    }

    #[test]
    fn per_kind_overrides_apply_only_to_their_kind() {
        let p = Policy::from_toml_str("[actions.memory_growth]\nmedium = \"kill\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let a = &p.actions;
        assert_eq!(
            a.for_level(Level::Medium, Some(FindingKind::MemoryGrowth)),
            Action::Kill
        );
        assert_eq!(
            a.for_level(Level::Medium, Some(FindingKind::CpuBurn)),
            Action::Alert
        );
        assert_eq!(
            a.for_level(Level::High, Some(FindingKind::MemoryGrowth)),
            Action::Kill
        );
    }

    #[test]
    fn by_default_only_high_confidence_stops_the_command() {
        let a = ActionPolicy::default();
        let kinds = [
            None,
            Some(FindingKind::OutputLoop),
            Some(FindingKind::CpuBurn),
            Some(FindingKind::MemoryGrowth),
            Some(FindingKind::Stall),
            Some(FindingKind::ForkStorm),
        ];
        for kind in kinds {
            assert_eq!(a.for_level(Level::High, kind), Action::Kill);
            assert_eq!(a.for_level(Level::Medium, kind), Action::Alert);
            assert_eq!(a.for_level(Level::Low, kind), Action::Continue);
            assert_eq!(a.for_level(Level::None, kind), Action::Continue);
        }
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    fn example() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/policy/example.toml")
    }

    #[test]
    fn example_policy_parses_and_equals_the_defaults() {
        let p = Policy::from_toml_file(&example())
            .unwrap_or_else(|e| panic!("the shipped example must load: {e}"));
        assert_eq!(p, Policy::default());
    }

    #[test]
    fn example_policy_sets_every_key() {
        // Every key of the schema appears in the example (as a setting or, for optional keys,
        // a commented example), so users can find each one there.
        let text = std::fs::read_to_string(example()).unwrap_or_else(|e| panic!("{e}"));
        let defaults = toml::Value::try_from(Policy::default())
            .unwrap_or_else(|e| panic!("policy serialises: {e}"));
        let mut missing = Vec::new();
        fn walk(v: &toml::Value, path: &str, text: &str, missing: &mut Vec<String>) {
            if let toml::Value::Table(t) = v {
                for (k, v) in t {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    let written = if v.is_table() {
                        text.contains(&format!("[{p}]"))
                    } else {
                        text.lines().any(|l| {
                            l.trim_start_matches(['#', ' '])
                                .starts_with(&format!("{k} ="))
                        })
                    };
                    if !written {
                        missing.push(p.clone());
                    }
                    walk(v, &p, text, missing);
                }
            }
        }
        walk(&defaults, "", &text, &mut missing);
        // Optional keys are skipped by serialisation when unset; check the one we have.
        assert!(
            text.contains("# limit_bytes ="),
            "memory.limit_bytes example missing"
        );
        assert!(
            missing.is_empty(),
            "keys missing from example.toml: {missing:?}"
        );
    }
}
