//! Decision: turns the latest findings of every detector into one [`Decision`] — what to do,
//! how confident, and why — under a [`Policy`].
//!
//! Two layers: [`combine::assess`] scores one moment; the [`DecisionEngine`] adds hysteresis
//! across moments. A band must be reached in several consecutive evaluations spanning a
//! minimum time before the engine escalates to it, and must have been absent for a cool-down
//! before the engine lets go of it, so the action never flaps. Every evaluation yields a
//! decision with its reasons, including "continue" after a near miss, so it can be recorded.
//!
//! Callers act on changes of [`Decision::action`]; the engine repeats the current action on
//! every evaluation so each recorded decision is self-contained.
//!
//! ```
//! use std::time::Duration;
//! use sentry::decide::{DecisionEngine, Policy};
//! use sentry::detect::progress::ProgressSignals;
//! use sentry::model::{Action, Sample};
//!
//! let policy = Policy::from_toml_str("[cpu]\nwindow_s = 5\n")?;
//! let mut detectors = policy.resource_detectors();
//! let mut engine = DecisionEngine::new(policy);
//! let mut last = Action::Continue;
//! for t in 0..20 {
//!     let sample = Sample { at: Duration::from_secs(t), cpu_pct: 100.0, pids: 1, ..Sample::default() };
//!     // The supervisor appends the loop detector's latest finding here, when it has one.
//!     let findings = detectors.observe(&sample, &ProgressSignals::default());
//!     let decision = engine.decide(sample.at, &findings);
//!     last = decision.action;
//! }
//! // Silent CPU burn alone is worth an alert, never a kill.
//! assert_eq!(last, Action::Alert);
//! # Ok::<(), sentry::decide::PolicyError>(())
//! ```

pub mod combine;
pub mod policy;

use std::time::Duration;

pub use combine::{assess, Assessment};
pub use policy::{Level, Policy, PolicyError};

use crate::detect::window::{duration_from_secs, secs};
use crate::model::{Decision, Evidence, Finding, FindingKind};

/// Consecutive evaluations at or above one band.
#[derive(Debug, Clone, Copy)]
struct Streak {
    since: Duration,
    count: u32,
}

const BANDS: [Level; 3] = [Level::Low, Level::Medium, Level::High];

fn band_index(level: Level) -> Option<usize> {
    BANDS.iter().position(|b| *b == level)
}

/// Combines findings into decisions over time, with hysteresis.
#[derive(Debug, Clone)]
pub struct DecisionEngine {
    policy: Policy,
    streaks: [Option<Streak>; 3],
    last_seen: [Option<Duration>; 3],
    level: Level,
    /// Kind that led when the current level was reached, for the per-kind action while the
    /// level is held through a cool-down with no findings.
    held_kind: Option<FindingKind>,
}

impl DecisionEngine {
    /// An engine applying `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            streaks: [None; 3],
            last_seen: [None; 3],
            level: Level::None,
            held_kind: None,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The band the engine currently acts on (after hysteresis).
    pub fn level(&self) -> Level {
        self.level
    }

    /// Forgets all history (the command was restarted).
    pub fn reset(&mut self) {
        *self = Self::new(self.policy.clone());
    }

    /// Takes the latest findings of every detector, returns the decision for this moment.
    pub fn decide(&mut self, at: Duration, findings: &[Finding]) -> Decision {
        let a = assess(&self.policy, findings);
        let hy = &self.policy.hysteresis;
        let persist_s = duration_from_secs(hy.persist_s);
        let cooldown = duration_from_secs(hy.cooldown_s);

        for (i, band) in BANDS.iter().enumerate() {
            if a.level >= *band {
                let s = self.streaks[i].get_or_insert(Streak {
                    since: at,
                    count: 0,
                });
                s.count = s.count.saturating_add(1);
                self.last_seen[i] = Some(at);
            } else {
                self.streaks[i] = None;
            }
        }
        // A CPU-burn finding is itself the verdict of a window: burn sustained over
        // `cpu.window_s`. When that window is at least the persistence span, the time has
        // already been served, and waiting once more would only delay a stop past the window
        // the user asked for (`--window`). Other findings (a loop that may be a blip, a single
        // memory sample) still have to persist.
        //
        // The no-output timeout is the same kind of verdict: silence and idleness held for the
        // whole timeout the user gave. It acts at the first evaluation that sees it, so a job
        // is stopped at most one sample interval after the timeout, never a persistence span
        // later.
        let windowed = match a.leading {
            Some(FindingKind::CpuBurn) => a.findings.iter().any(|f| {
                f.kind == FindingKind::CpuBurn
                    && matches!(&f.evidence, Evidence::Resource(r) if r.window_s >= secs(persist_s))
            }),
            Some(FindingKind::NoOutput) => true,
            _ => false,
        };
        let persisted = |i: usize, streaks: &[Option<Streak>; 3]| {
            streaks[i].is_some_and(|s| {
                windowed
                    || (s.count >= hy.persist_evaluations.max(1)
                        && at.saturating_sub(s.since) >= persist_s)
            })
        };
        let target = (0..BANDS.len())
            .rev()
            .find(|i| persisted(*i, &self.streaks))
            .map_or(Level::None, |i| BANDS[i]);

        let mut notes = Vec::new();
        let previous = self.level;
        if target > self.level {
            self.level = target;
            self.held_kind = a.leading;
            notes.push(format!(
                "escalated from {previous} to {target}: held for {} evaluations",
                band_index(target)
                    .and_then(|i| self.streaks[i])
                    .map_or(0, |s| s.count)
            ));
        } else if target < self.level {
            let since = band_index(self.level)
                .and_then(|i| self.last_seen[i])
                .map_or(Duration::MAX, |t| at.saturating_sub(t));
            if since >= cooldown {
                self.level = target;
                notes.push(format!(
                    "de-escalated from {previous} to {target}: no {previous}-confidence signal for {:.0} s",
                    secs(since)
                ));
            } else {
                notes.push(format!(
                    "holding {previous}: last {previous}-confidence signal {:.0} s ago, cool-down {:.0} s",
                    secs(since),
                    secs(cooldown)
                ));
            }
        }
        if a.level > self.level {
            let count = band_index(a.level)
                .and_then(|i| self.streaks[i])
                .map_or(0, |s| s.count);
            notes.push(format!(
                "near miss: {} confidence for {count} of {} evaluations needed (and at least {:.0} s)",
                a.level,
                hy.persist_evaluations,
                secs(persist_s)
            ));
        }
        if a.level >= self.level && a.leading.is_some() {
            self.held_kind = a.leading;
        }

        let action = self
            .policy
            .actions
            .for_level(self.level, self.held_kind.or(a.leading));
        let mut reasons = a.reasons;
        if reasons.is_empty() {
            reasons.push("no detector raised a finding".to_string());
        }
        reasons.push(format!(
            "action {} at {} confidence",
            action.as_str(),
            self.level
        ));
        reasons.extend(notes);
        Decision {
            at,
            action,
            confidence: a.confidence,
            reasons,
            findings: a.findings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, Evidence, LoopEvidence, ResourceEvidence};
    use proptest::prelude::*;

    fn finding(kind: FindingKind, score: f64) -> Finding {
        let evidence = match kind {
            FindingKind::OutputLoop => Evidence::Loop(LoopEvidence {
                period: 3,
                repeats: 20,
                pattern: vec!["retry <int>".into()],
                example: vec!["retry 7".into()],
                first_line: 1,
                last_line: 60,
            }),
            _ => Evidence::Resource(ResourceEvidence {
                metric: "cpu_pct".into(),
                value: 100.0,
                threshold: 90.0,
                window_s: 30.0,
            }),
        };
        Finding {
            kind,
            score,
            at: Duration::ZERO,
            summary: format!("synthetic {}", kind.label()),
            reasons: Vec::new(),
            evidence,
        }
    }

    /// Feeds the same findings once a second for `secs` seconds starting at `from`.
    fn feed(e: &mut DecisionEngine, from: u64, secs: u64, findings: &[Finding]) -> Vec<Decision> {
        (from..from + secs)
            .map(|t| e.decide(Duration::from_secs(t), findings))
            .collect()
    }

    fn actions(ds: &[Decision]) -> Vec<Action> {
        ds.iter().map(|d| d.action).collect()
    }

    #[test]
    fn loop_plus_burn_is_killed_after_it_persists() {
        let mut e = DecisionEngine::new(Policy::default());
        let f = [
            finding(FindingKind::OutputLoop, 0.6),
            finding(FindingKind::CpuBurn, 0.5),
        ];
        let ds = feed(&mut e, 0, 5, &f);
        // Three evaluations spanning two seconds: t=0,1 hold back, t=2 kills.
        assert_eq!(
            actions(&ds),
            [
                Action::Continue,
                Action::Continue,
                Action::Kill,
                Action::Kill,
                Action::Kill
            ]
        );
        assert!(ds[2].confidence >= 0.85, "confidence {}", ds[2].confidence);
        assert!(
            ds[0].reasons.iter().any(|r| r.starts_with("near miss")),
            "{:?}",
            ds[0].reasons
        );
        let r = &ds[2].reasons;
        assert!(
            r[0].starts_with("high confidence 0.9"),
            "verdict first: {r:?}"
        );
        assert!(
            r.iter()
                .any(|x| x.contains("corroborated by CPU burn (0.50)")),
            "{r:?}"
        );
        let loop_pos = r.iter().position(|x| x.starts_with("output loop 0.60"));
        let cpu_pos = r.iter().position(|x| x.starts_with("CPU burn 0.50"));
        assert!(
            loop_pos < cpu_pos && cpu_pos.is_some(),
            "strongest first: {r:?}"
        );
        assert_eq!(ds[2].findings.len(), 2);
    }

    #[test]
    fn a_cpu_burn_window_counts_as_persistence_but_a_loop_must_persist() {
        let mut policy = Policy::default();
        policy.actions.cpu_burn.medium = Some(Action::Kill);
        // The CPU finding's evidence covers a 30 s window: it acts at once.
        let mut e = DecisionEngine::new(policy.clone());
        let ds = feed(&mut e, 0, 1, &[finding(FindingKind::CpuBurn, 0.6)]);
        assert_eq!(actions(&ds), [Action::Kill]);
        // A loop of the same confidence band still has to persist.
        let mut e = DecisionEngine::new(policy);
        let ds = feed(&mut e, 0, 3, &[finding(FindingKind::OutputLoop, 0.6)]);
        assert_eq!(
            actions(&ds),
            [Action::Continue, Action::Continue, Action::Alert]
        );
    }

    #[test]
    fn the_no_output_timeout_acts_at_its_first_evaluation() {
        // The finding is a verdict over the whole timeout: waiting for persistence would stop
        // the job seconds past the limit the user gave.
        let mut e = DecisionEngine::new(Policy::default());
        let mut f = finding(FindingKind::NoOutput, 1.0);
        f.evidence = Evidence::Resource(ResourceEvidence {
            metric: "silent_s".into(),
            value: 3.0,
            threshold: 3.0,
            window_s: 3.0,
        });
        let ds = feed(&mut e, 0, 2, &[f.clone(), finding(FindingKind::Stall, 0.5)]);
        assert_eq!(actions(&ds), [Action::Kill, Action::Kill]);
        let mut policy = Policy::default();
        policy.actions.no_output.high = Some(Action::Alert);
        let mut e = DecisionEngine::new(policy);
        assert_eq!(actions(&feed(&mut e, 0, 1, &[f])), [Action::Alert]);
    }

    #[test]
    fn loop_alone_kills_only_when_the_loop_detector_is_sure() {
        let mut e = DecisionEngine::new(Policy::default());
        let ds = feed(&mut e, 0, 10, &[finding(FindingKind::OutputLoop, 0.7)]);
        assert_eq!(ds.last().map(|d| d.action), Some(Action::Alert));
        let mut e = DecisionEngine::new(Policy::default());
        let ds = feed(&mut e, 0, 10, &[finding(FindingKind::OutputLoop, 0.95)]);
        assert_eq!(ds.last().map(|d| d.action), Some(Action::Kill));
    }

    #[test]
    fn resource_findings_alone_are_never_killed_by_default() {
        for kind in [
            FindingKind::CpuBurn,
            FindingKind::MemoryGrowth,
            FindingKind::Stall,
            FindingKind::ForkStorm,
        ] {
            let mut e = DecisionEngine::new(Policy::default());
            let ds = feed(&mut e, 0, 60, &[finding(kind, 1.0)]);
            assert!(
                ds.iter().all(|d| d.action <= Action::Alert),
                "{kind:?} at score 1.0 alone must not stop the command: {:?}",
                actions(&ds)
            );
            assert_eq!(ds.last().map(|d| d.action), Some(Action::Alert), "{kind:?}");
        }
        // All four resource kinds at once, still no loop: capped below high.
        let all = [
            finding(FindingKind::CpuBurn, 0.9),
            finding(FindingKind::MemoryGrowth, 0.9),
            finding(FindingKind::ForkStorm, 0.9),
        ];
        let mut e = DecisionEngine::new(Policy::default());
        let ds = feed(&mut e, 0, 60, &all);
        assert!(ds.iter().all(|d| d.action <= Action::Alert));
        assert!(ds.iter().all(|d| d.confidence <= 0.8 + 1e-9));
        assert!(
            ds[0].reasons.iter().any(|r| r.contains("capped at 0.80")),
            "{:?}",
            ds[0].reasons
        );
    }

    #[test]
    fn a_blip_is_a_recorded_near_miss_not_an_action() {
        let mut e = DecisionEngine::new(Policy::default());
        let strong = [
            finding(FindingKind::OutputLoop, 0.9),
            finding(FindingKind::CpuBurn, 0.6),
        ];
        let mut ds = feed(&mut e, 0, 2, &strong);
        ds.extend(feed(&mut e, 2, 5, &[]));
        assert!(
            ds.iter().all(|d| d.action == Action::Continue),
            "{:?}",
            actions(&ds)
        );
        assert!(ds[1]
            .reasons
            .iter()
            .any(|r| r.contains("near miss: high confidence for 2 of 3")));
        assert!(
            ds[1].confidence >= 0.85,
            "the near miss keeps its score on record"
        );
        assert_eq!(ds[4].reasons[0], "no detector raised a finding");
    }

    #[test]
    fn alert_is_held_through_the_cool_down_then_released() {
        let mut e = DecisionEngine::new(Policy::default());
        let alert = [finding(FindingKind::CpuBurn, 0.6)];
        let ds = feed(&mut e, 0, 10, &alert);
        assert_eq!(ds.last().map(|d| d.action), Some(Action::Alert));
        // Finding gone at t=10; last medium signal was at t=9; cool-down 30 s.
        let quiet = feed(&mut e, 10, 40, &[]);
        let released = quiet.iter().position(|d| d.action == Action::Continue);
        assert_eq!(released, Some(29), "released at t=39, 30 s after t=9");
        assert!(quiet[0]
            .reasons
            .iter()
            .any(|r| r.starts_with("holding medium")));
        assert!(quiet[29]
            .reasons
            .iter()
            .any(|r| r.starts_with("de-escalated from medium")));
        assert_eq!(e.level(), Level::None);
    }

    #[test]
    fn held_alert_keeps_the_kind_that_raised_it() {
        let mut p = Policy::default();
        p.actions.stall.medium = Some(Action::Pause);
        let mut e = DecisionEngine::new(p);
        let ds = feed(&mut e, 0, 5, &[finding(FindingKind::Stall, 0.55)]);
        assert_eq!(ds.last().map(|d| d.action), Some(Action::Pause));
        let ds = feed(&mut e, 5, 3, &[]);
        assert!(
            ds.iter().all(|d| d.action == Action::Pause),
            "{:?}",
            actions(&ds)
        );
    }

    #[test]
    fn nan_and_out_of_range_scores_are_tamed() {
        let mut e = DecisionEngine::new(Policy::default());
        let ds = feed(
            &mut e,
            0,
            10,
            &[
                finding(FindingKind::OutputLoop, f64::NAN),
                finding(FindingKind::CpuBurn, 7.0),
            ],
        );
        assert!(ds.iter().all(|d| (0.0..=1.0).contains(&d.confidence)));
        assert!(ds.iter().all(|d| d.action <= Action::Alert));
    }

    #[test]
    fn strongest_finding_of_a_kind_is_the_one_used() {
        let a = assess(
            &Policy::default(),
            &[
                finding(FindingKind::CpuBurn, 0.2),
                finding(FindingKind::CpuBurn, 0.55),
            ],
        );
        assert_eq!(a.findings.len(), 1);
        assert_eq!(a.findings[0].score, 0.55);
        assert_eq!(a.level, Level::Medium);
    }

    #[test]
    fn reset_forgets_escalation() {
        let mut e = DecisionEngine::new(Policy::default());
        feed(&mut e, 0, 10, &[finding(FindingKind::OutputLoop, 0.95)]);
        assert_eq!(e.level(), Level::High);
        e.reset();
        assert_eq!(e.level(), Level::None);
        assert_eq!(e.decide(Duration::ZERO, &[]).action, Action::Continue);
    }

    fn kinds() -> impl Strategy<Value = FindingKind> {
        prop_oneof![
            Just(FindingKind::OutputLoop),
            Just(FindingKind::CpuBurn),
            Just(FindingKind::MemoryGrowth),
            Just(FindingKind::Stall),
            Just(FindingKind::ForkStorm),
        ]
    }

    /// One evaluation's findings: up to three of random kinds and scores.
    fn moment() -> impl Strategy<Value = Vec<(FindingKind, f64)>> {
        prop::collection::vec((kinds(), 0.0f64..=1.0), 0..=3)
    }

    proptest! {
        #[test]
        fn never_stops_the_command_on_a_single_weak_finding(
            steps in prop::collection::vec(
                prop::option::of((kinds(), 0.0f64..=1.0)), 1..120),
            step_ms in 100u64..3000,
        ) {
            let policy = Policy::default();
            let high = policy.confidence.high;
            let mut e = DecisionEngine::new(policy);
            for (i, step) in steps.iter().enumerate() {
                // Weak: any resource finding, or a loop the loop detector scored below high.
                let findings: Vec<Finding> = step
                    .iter()
                    .map(|(k, s)| {
                        let s = if *k == FindingKind::OutputLoop { s * high * 0.999 } else { *s };
                        finding(*k, s)
                    })
                    .collect();
                let d = e.decide(Duration::from_millis(i as u64 * step_ms), &findings);
                prop_assert!(
                    d.action <= Action::Alert,
                    "single weak finding {:?} led to {:?}", step, d.action
                );
            }
        }

        #[test]
        fn never_flaps(
            steps in prop::collection::vec(moment(), 1..200),
            step_ms in 100u64..5000,
        ) {
            let policy = Policy::default();
            let hy = policy.hysteresis.clone();
            let cooldown = duration_from_secs(hy.cooldown_s);
            let mut e = DecisionEngine::new(policy.clone());
            let mut raw_levels: Vec<Level> = Vec::new();
            let mut last_change: Option<(Duration, Level)> = None;
            for (i, step) in steps.iter().enumerate() {
                let at = Duration::from_millis(i as u64 * step_ms);
                let findings: Vec<Finding> =
                    step.iter().map(|(k, s)| finding(*k, *s)).collect();
                let before = e.level();
                let _ = e.decide(at, &findings);
                let after = e.level();
                raw_levels.push(assess(&policy, &findings).level);
                let windowed = assess(&policy, &findings).leading == Some(FindingKind::CpuBurn);
                if after > before && windowed {
                    // A CPU-burn finding has served its time in its own window (30 s here).
                    prop_assert!(raw_levels.last().is_some_and(|l| *l >= after));
                    last_change = Some((at, after));
                } else if after > before {
                    // Escalation needs the band in the last N evaluations…
                    let n = hy.persist_evaluations as usize;
                    prop_assert!(raw_levels.len() >= n);
                    prop_assert!(
                        raw_levels[raw_levels.len() - n..].iter().all(|l| *l >= after),
                        "escalated to {after} without {n} consecutive evaluations"
                    );
                    last_change = Some((at, after));
                } else if after < before {
                    // …and de-escalation a full cool-down since the band was last seen (so
                    // in particular since the escalation to it).
                    if let Some((t, lvl)) = last_change {
                        prop_assert!(
                            lvl != before || at.saturating_sub(t) >= cooldown,
                            "dropped from {before} {:?} after reaching it", at.saturating_sub(t)
                        );
                    }
                    let window = (cooldown.as_millis() / u128::from(step_ms)) as usize;
                    let recent = &raw_levels[raw_levels.len().saturating_sub(window)..];
                    prop_assert!(
                        recent.iter().all(|l| *l < before),
                        "dropped from {before} while it was seen within the cool-down"
                    );
                    last_change = Some((at, after));
                }
            }
        }
    }
}
