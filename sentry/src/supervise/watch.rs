//! The detection side of one attempt of a supervised run: captured output goes through the
//! output pipeline (line assembly, normaliser, loop detector), samples through the resource
//! detectors, and at every sample the decision engine weighs the latest findings of all of
//! them. When the engine's action rises (continue → alert → pause/kill/restart) the watch
//! hands the supervisor an [`Escalation`] to carry out; what was done is recorded by the
//! supervisor as an incident.

use crate::decide::{DecisionEngine, Level, Policy};
use crate::detect::resource::ResourceDetectors;
use crate::detect::OutputPipeline;
use crate::model::{Action, Decision, Evidence, Finding, Incident, OutputChunk, Sample};
use crate::redact;

/// The decision engine asked for a stronger action than before.
#[derive(Debug, Clone)]
pub struct Escalation {
    /// What the policy says to do.
    pub action: Action,
    /// The finding that leads the decision.
    pub lead: Finding,
    /// The decision behind it.
    pub decision: Decision,
}

impl Escalation {
    /// One line saying what was found, with what confidence, secrets redacted: what
    /// `sentry run` and `sentry watch` print when they alert or act.
    pub fn headline(&self) -> String {
        crate::redact::redact(&format!(
            "{}: {} (confidence {:.2})",
            self.lead.kind.label(),
            self.lead.summary,
            self.decision.confidence
        ))
        .into_owned()
    }

    /// The incident recording this escalation, with what was done about it.
    /// Secrets in the evidence are redacted here, before the incident is printed, reported,
    /// stored or streamed.
    pub fn incident(&self, taken: Action, outcome: String, attempt: u32) -> Incident {
        let clean = |s: &str| redact::redact(s).into_owned();
        let mut evidence = self.lead.evidence.clone();
        if let Evidence::Loop(l) = &mut evidence {
            for line in l.example.iter_mut().chain(l.pattern.iter_mut()) {
                *line = clean(line);
            }
        }
        Incident {
            kind: self.lead.kind,
            detected_after_s: self.decision.at.as_secs_f64(),
            action: taken,
            score: self.lead.score,
            confidence: self.decision.confidence,
            summary: clean(&format!(
                "{}: {}",
                self.lead.kind.label(),
                self.lead.summary
            )),
            outcome,
            attempt,
            reasons: self.decision.reasons.iter().map(|r| clean(r)).collect(),
            evidence,
            shadow: false,
        }
    }
}

/// A loop finding scoring below this (the policy's default "low" band) is a repeating shape
/// with progress, not a loop, as far as the resource detectors' progress vetoes go.
const NOT_A_LOOP_BELOW: f64 = 0.25;

/// Detectors and decision engine for one attempt.
pub struct Watch {
    pipeline: OutputPipeline,
    resources: ResourceDetectors,
    engine: DecisionEngine,
    /// The action of the last decision, to escalate only when it rises.
    last_action: Action,
    last_decision: Option<Decision>,
    lines: u64,
}

impl Watch {
    /// A watch applying `policy`.
    pub fn new(policy: Policy) -> Self {
        Watch {
            pipeline: OutputPipeline::default(),
            resources: policy.resource_detectors(),
            engine: DecisionEngine::new(policy),
            last_action: Action::Continue,
            last_decision: None,
            lines: 0,
        }
    }

    /// Feeds one captured chunk to the output pipeline.
    pub fn output(&mut self, chunk: &OutputChunk) {
        let lines = &mut self.lines;
        self.pipeline.push(chunk, |_, _| *lines += 1);
    }

    /// Logical lines completed so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Feeds one sample and takes a decision; returns an escalation when the action rose.
    pub fn sample(&mut self, sample: &Sample) -> Option<Escalation> {
        self.sample_with(sample, None)
    }

    /// Like [`Watch::sample`], with findings of detectors that live outside the watch (the
    /// regression detector, which outlives restarts) weighed in with the rest.
    pub fn sample_with(
        &mut self,
        sample: &Sample,
        extra: impl IntoIterator<Item = Finding>,
    ) -> Option<Escalation> {
        let mut progress = self.pipeline.progress_signals();
        // A repeating shape whose values advance scores near zero: that is not a loop.
        let looping = self
            .pipeline
            .current_finding()
            .is_some_and(|f| f.score >= NOT_A_LOOP_BELOW);
        if !looping {
            // Output the loop detector does not call a loop (progress lines whose counters
            // advance, a build's distinct steps) is progress for the resource detectors too:
            // a CPU-heavy job that reports "step 41/100" is working, not spinning.
            progress.novel_lines = progress.lines;
        }
        let mut findings = self.resources.observe(sample, &progress);
        if let Some(f) = self.pipeline.current_finding() {
            findings.push(f.clone());
        }
        findings.extend(extra);
        let decision = self.engine.decide(sample.at, &findings);
        let escalated = decision.action != Action::Continue && decision.action > self.last_action;
        self.last_action = decision.action;
        self.last_decision = Some(decision.clone());
        if !escalated {
            return None;
        }
        let lead = decision
            .findings
            .iter()
            .chain(findings.iter())
            .max_by(|a, b| a.score.total_cmp(&b.score))?
            .clone();
        Some(Escalation {
            action: decision.action,
            lead,
            decision,
        })
    }

    /// The band the engine acts on now, and the last decision's action (for the status line).
    pub fn verdict(&self) -> (Level, Action) {
        (self.engine.level(), self.last_action)
    }

    /// The most recent decision.
    pub fn last_decision(&self) -> Option<&Decision> {
        self.last_decision.as_ref()
    }

    /// Ends the input (completes partial lines).
    pub fn finish(&mut self) {
        let lines = &mut self.lines;
        self.pipeline.flush(|_, _| *lines += 1);
    }
}
