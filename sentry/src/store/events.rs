//! The payloads of the event log, one type per event `type`, as `/stream` and `/timeline`
//! serve them. The recorder writes them as JSON; these types are their schema in the
//! OpenAPI document (so the dashboard's TypeScript types know what each event carries), and a
//! test reads every event a recorded run wrote back through them, so the two cannot drift.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use super::{EventRow, IncidentRow, SampleRow};
use crate::model::{Action, Evidence, FindingKind};

/// `run_started`: a run was inserted (before its command starts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunStartedEvent {
    /// The run's id.
    pub run_id: i64,
    /// `run` or `watch`.
    pub kind: String,
    /// The command, secrets redacted.
    pub command: Vec<String>,
    /// Host sentry runs on.
    pub host: String,
    /// User who invoked sentry.
    pub user: String,
    /// The supervising sentry's process id.
    pub pid: u32,
    /// Start, Unix seconds.
    pub started_at: f64,
    /// Supervised in shadow mode (decisions recorded, nothing done to the command).
    #[serde(default)]
    pub shadow: bool,
}

/// One finding behind a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DecisionFinding {
    /// What the detector noticed.
    pub kind: FindingKind,
    /// 0 = no sign, 1 = certain runaway.
    pub score: f64,
    /// Why, in one sentence (redacted).
    pub summary: String,
    /// Signals towards runaway or progress (redacted).
    pub reasons: Vec<String>,
    /// The data behind it (redacted).
    pub evidence: Evidence,
}

/// `decision`: what the decision engine concluded (stored when the action changes, and at
/// most once a second while a finding shows a signal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DecisionEvent {
    /// The decision's store id.
    pub id: i64,
    /// Seconds since the run started.
    pub t_s: f64,
    /// Attempt of the command (1 = first start).
    pub attempt: u32,
    /// What to do.
    pub action: Action,
    /// 0..1 confidence that the tree is a runaway.
    pub confidence: f64,
    /// Reasons, strongest first (redacted).
    pub reasons: Vec<String>,
    /// The findings it was taken on.
    pub findings: Vec<DecisionFinding>,
}

/// `status`: the run's state changed (`paused`, `running`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusEvent {
    /// The new state.
    pub status: String,
}

/// `control`: a kill, pause, resume or restart request reached the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ControlEvent {
    /// Who asked (`api 127.0.0.1:51234`, `cli`, `signal`…).
    pub actor: String,
    /// What was asked.
    pub action: String,
    /// What happened, in words.
    pub outcome: String,
    /// The run's state afterwards.
    pub status: String,
}

/// `run_ended`: the run is over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunEndedEvent {
    /// `exited`, `stopped` or `failed`.
    pub status: String,
    /// sentry's exit status.
    pub exit_code: i32,
    /// Whether a runaway was detected.
    pub runaway: bool,
    /// Restarts made.
    pub restarts: u32,
    /// Wall time, seconds (absent when the run could not start).
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// Peak CPU, per-core percent.
    pub cpu_peak_pct: Option<f64>,
    /// Peak resident memory, bytes.
    pub mem_peak_bytes: Option<u64>,
}

/// An event's type and payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum EventData {
    /// A run was inserted.
    RunStarted(RunStartedEvent),
    /// A stored sample (the same row `GET /runs/{id}/samples` serves).
    Sample(SampleRow),
    /// A decision.
    Decision(DecisionEvent),
    /// An incident (the same row `GET /incidents` serves).
    Incident(IncidentRow),
    /// A change of state.
    Status(StatusEvent),
    /// A control request's outcome.
    Control(ControlEvent),
    /// The end of the run.
    RunEnded(RunEndedEvent),
}

// `EventRow` keeps its payload as the stored JSON; this is the schema of that JSON.
/// One event of a run: its id, run and time, its type, and the payload of that type.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct EventSchema {
    /// Event id, increasing; `Last-Event-ID`.
    id: i64,
    /// The run it belongs to.
    run_id: i64,
    /// Unix seconds.
    at: f64,
    #[serde(flatten)]
    event: EventData,
}

impl PartialSchema for EventRow {
    fn schema() -> RefOr<Schema> {
        EventSchema::schema()
    }
}

impl ToSchema for EventRow {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EventRow")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        EventSchema::schemas(schemas);
    }
}

impl EventRow {
    /// The payload read as its typed form; an error names what does not match.
    pub fn typed(&self) -> Result<EventData, serde_json::Error> {
        serde_json::from_value(serde_json::json!({"type": self.kind, "data": self.data}))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{Decision, Finding, Incident, LoopEvidence, Sample};
    use crate::store::{NewRun, Recorder, Store};

    fn evidence() -> Evidence {
        Evidence::Loop(LoopEvidence {
            period: 1,
            repeats: 40,
            pattern: vec!["error: retrying <n>".into()],
            example: vec!["error: retrying 3".into()],
            first_line: 1,
            last_line: 40,
        })
    }

    #[test]
    fn every_event_a_run_records_reads_back_as_its_typed_payload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sentry.db");
        let mut rec = Recorder::start(
            &path,
            &NewRun {
                kind: "run".into(),
                command: vec!["sh".into(), "-c".into(), "loop".into()],
                control_socket: None,
                retain_days: None,
                labels: Default::default(),
                job_key: None,
                shadow: false,
            },
        )
        .unwrap();
        rec.mode("fallback");
        let sample = Sample {
            cpu_pct: 50.0,
            mem_bytes: Some(1 << 20),
            pids: 2,
            ..Sample::default()
        };
        // A sample row closes once its interval (1 s early in a run) has passed.
        rec.sample(&sample, 0);
        std::thread::sleep(Duration::from_millis(1050));
        rec.sample(&sample, 40);
        let finding = Finding {
            kind: FindingKind::OutputLoop,
            score: 0.9,
            at: Duration::from_secs(1),
            summary: "period 1, 40 repeats".into(),
            reasons: vec!["the same line 40 times".into()],
            evidence: evidence(),
        };
        rec.decision(
            &Decision {
                at: Duration::from_secs(1),
                action: Action::Pause,
                confidence: 0.9,
                reasons: vec!["output loop".into()],
                findings: vec![finding],
            },
            1,
        );
        rec.incident(&Incident {
            kind: FindingKind::OutputLoop,
            detected_after_s: 1.0,
            action: Action::Pause,
            score: 0.9,
            confidence: 0.9,
            summary: "output loop".into(),
            outcome: "paused".into(),
            attempt: 1,
            reasons: vec!["output loop".into()],
            evidence: evidence(),
            shadow: false,
        });
        let sink = rec.sink();
        sink.status("paused");
        sink.control("api 127.0.0.1:4000", "kill", "stopped", "stopped");
        rec.fail(124, "test end").unwrap();

        let store = Store::open(&path).unwrap();
        let events = store.events_after(0, 100).unwrap();
        let mut kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(
            kinds,
            [
                "control",
                "decision",
                "incident",
                "run_ended",
                "run_started",
                "sample",
                "status"
            ],
            "the run did not record one event of every type"
        );
        for event in &events {
            if let Err(err) = event.typed() {
                panic!(
                    "a stored `{}` event does not match its schema ({err}): {}",
                    event.kind, event.data
                );
            }
        }
    }
}
