//! Combines the findings of one moment into a single confidence, a band and human reasons.
//!
//! The rules follow the design: an output loop corroborated by burn (CPU, memory or process
//! count) is a high-confidence runaway; a loop the loop detector itself scored very high (many
//! repeats, error lines) may be high alone; any other single signal, and resource signals
//! without a loop however many, stay below high so that by default they are alerts at most.

use crate::decide::policy::{Level, Policy};
use crate::model::{Finding, FindingKind};

/// The combined view of one moment's findings, before hysteresis.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// 0..1 confidence that the tree is a runaway.
    pub confidence: f64,
    /// The band `confidence` falls in.
    pub level: Level,
    /// Kind of the finding that contributed most, if any.
    pub leading: Option<FindingKind>,
    /// Human reasons, strongest first: the verdict, then each finding with its score.
    pub reasons: Vec<String>,
    /// The strongest finding of each kind, strongest first.
    pub findings: Vec<Finding>,
}

/// A finding's score made safe: NaN counts as no evidence, and scores are clamped to 0..1.
fn clean(score: f64) -> f64 {
    if score.is_nan() {
        0.0
    } else {
        score.clamp(0.0, 1.0)
    }
}

/// True for kinds that show the tree consuming something (corroboration for a loop).
fn is_burn(kind: FindingKind) -> bool {
    matches!(
        kind,
        FindingKind::CpuBurn | FindingKind::MemoryGrowth | FindingKind::ForkStorm
    )
}

/// Combines findings under a policy.
pub fn assess(policy: &Policy, findings: &[Finding]) -> Assessment {
    // One finding per kind: the strongest. Several detectors of one kind do not make a signal
    // stronger; only independent kinds corroborate each other.
    let mut best: Vec<Finding> = Vec::new();
    for f in findings {
        let mut f = f.clone();
        f.score = clean(f.score);
        match best.iter_mut().find(|b| b.kind == f.kind) {
            Some(b) if b.score >= f.score => {}
            Some(b) => *b = f,
            None => best.push(f),
        }
    }
    let rules = &policy.combine;
    let capped = |f: &Finding| f.score.min(clean(rules.caps.get(f.kind)));
    best.sort_by(|a, b| capped(b).total_cmp(&capped(a)).then(a.kind.cmp(&b.kind)));

    let noisy_or = 1.0 - best.iter().map(|f| 1.0 - capped(f)).product::<f64>();
    let lp = best.iter().find(|f| f.kind == FindingKind::OutputLoop);
    let burn = best
        .iter()
        .filter(|f| is_burn(f.kind))
        .max_by(|a, b| a.score.total_cmp(&b.score));
    let levels = &policy.confidence;

    let mut rule = None;
    let confidence = match (lp, burn) {
        (Some(l), Some(b))
            if l.score >= rules.loop_min_score && b.score >= rules.burn_min_score =>
        {
            let c = noisy_or.max(levels.high + (1.0 - levels.high) * l.score.min(b.score));
            rule = Some(format!(
                "{} ({:.2}) corroborated by {} ({:.2}): loop plus burn is a runaway",
                FindingKind::OutputLoop.label(),
                l.score,
                b.kind.label(),
                b.score
            ));
            c
        }
        (Some(_), _) => noisy_or,
        (None, _) if best.len() > 1 => {
            let cap = clean(rules.resource_only_cap).max(best.first().map_or(0.0, capped));
            if noisy_or > cap {
                rule = Some(format!(
                    "without an output loop, resource signals are capped at {cap:.2}"
                ));
            }
            noisy_or.min(cap)
        }
        (None, _) => noisy_or,
    };
    let confidence = clean(confidence);
    let level = levels.level(confidence);

    let mut reasons = Vec::new();
    if !best.is_empty() {
        let kinds: Vec<&str> = best.iter().map(|f| f.kind.label()).collect();
        reasons.push(format!(
            "{level} confidence {confidence:.2} from {}",
            kinds.join(" + ")
        ));
    }
    if let Some(r) = rule {
        reasons.push(r);
    }
    for f in &best {
        let cap = clean(rules.caps.get(f.kind));
        let capped_note = if f.score > cap {
            format!(" (alone capped at {cap:.2})")
        } else {
            String::new()
        };
        reasons.push(format!(
            "{} {:.2}{capped_note}: {}",
            f.kind.label(),
            f.score,
            f.summary
        ));
    }
    Assessment {
        confidence,
        level,
        leading: best.first().map(|f| f.kind),
        reasons,
        findings: best,
    }
}
