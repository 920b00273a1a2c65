//! The detection side of a supervised run: captured output goes through the output pipeline
//! (line assembly, normaliser, loop detector), samples through the resource detectors, and
//! at every sample the decision engine weighs the latest findings of all of them.
//!
//! This release observes and records only: a decision stronger than `continue` becomes an
//! incident with action `alert`, printed on stderr and written to the report; the child is
//! never touched on a detector's word (acting — pause, kill, restart — is a separate step
//! that arrives with `--action`). The engine's own choice is kept in the incident summary so
//! that what sentry *would* have done is on record.

use crate::decide::{DecisionEngine, Policy};
use crate::detect::resource::ResourceDetectors;
use crate::detect::OutputPipeline;
use crate::model::{Action, Finding, Incident, OutputChunk, Sample};

/// Detectors and decision engine for one run.
pub struct Watch {
    pipeline: OutputPipeline,
    resources: ResourceDetectors,
    engine: DecisionEngine,
    /// The action of the last decision, to record an incident only when it changes upwards.
    last_action: Action,
    incidents: Vec<Incident>,
}

impl Watch {
    /// A watch applying `policy`.
    pub fn new(policy: Policy) -> Self {
        Watch {
            pipeline: OutputPipeline::default(),
            resources: policy.resource_detectors(),
            engine: DecisionEngine::new(policy),
            last_action: Action::Continue,
            incidents: Vec::new(),
        }
    }

    /// Feeds one captured chunk to the output pipeline.
    pub fn output(&mut self, chunk: &OutputChunk) {
        self.pipeline.push(chunk, |_, _| {});
    }

    /// Feeds one sample and takes a decision; returns the incident it raised, if any.
    pub fn sample(&mut self, sample: &Sample) -> Option<&Incident> {
        let progress = self.pipeline.progress_signals();
        let mut findings = self.resources.observe(sample, &progress);
        if let Some(f) = self.pipeline.current_finding() {
            findings.push(f.clone());
        }
        let decision = self.engine.decide(sample.at, &findings);
        let escalated = decision.action != Action::Continue && decision.action > self.last_action;
        self.last_action = decision.action;
        if !escalated {
            return None;
        }
        let lead = decision
            .findings
            .iter()
            .chain(findings.iter())
            .max_by(|a, b| a.score.total_cmp(&b.score))?
            .clone();
        self.incidents.push(incident(
            &lead,
            decision.action,
            decision.confidence,
            sample,
        ));
        self.incidents.last()
    }

    /// Ends the input (completes partial lines).
    pub fn finish(&mut self) {
        self.pipeline.flush(|_, _| {});
    }

    /// Everything recorded so far.
    pub fn incidents(&self) -> &[Incident] {
        &self.incidents
    }
}

fn incident(lead: &Finding, decided: Action, confidence: f64, sample: &Sample) -> Incident {
    let summary = if decided == Action::Alert {
        format!(
            "{}: {} (confidence {confidence:.2})",
            lead.kind.label(),
            lead.summary
        )
    } else {
        format!(
            "{}: {} (confidence {confidence:.2}; the policy says {}, recorded as an alert: \
             this release does not act on runaways)",
            lead.kind.label(),
            lead.summary,
            decided.as_str()
        )
    };
    Incident {
        kind: lead.kind,
        detected_after_s: sample.at.as_secs_f64(),
        action: Action::Alert,
        score: lead.score,
        summary,
        evidence: lead.evidence.clone(),
    }
}
