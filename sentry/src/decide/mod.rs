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

pub mod combine;
pub mod policy;

use std::time::Duration;

pub use combine::{assess, Assessment};
pub use policy::{Level, Policy, PolicyError};

use crate::detect::window::{duration_from_secs, secs};
use crate::model::{Decision, Finding, FindingKind};

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
        let persisted = |i: usize, streaks: &[Option<Streak>; 3]| {
            streaks[i].is_some_and(|s| {
                s.count >= hy.persist_evaluations.max(1) && at.saturating_sub(s.since) >= persist_s
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
