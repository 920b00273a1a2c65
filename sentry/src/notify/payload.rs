//! What is sent where: Alertmanager v2 alerts, the versioned webhook event
//! (`sentry.alert/v1`), Slack incoming-webhook messages and events-log lines
//! (`sentry.event/v1`). Pure functions of the event; `docs/alerts.md` and
//! `docs/events-log.md` describe the shapes. Redaction happens where a payload leaves the
//! process (the sink workers), over the whole payload.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{JobRef, NotifyEvent};
use crate::model::{Action, Evidence, Incident};

/// The webhook event schema; a breaking change gets a new version.
pub const WEBHOOK_SCHEMA: &str = "sentry.alert/v1";

/// The events-log line schema; a breaking change gets a new version.
pub const EVENT_SCHEMA: &str = "sentry.event/v1";

/// The Alertmanager `alertname` of every sentry alert.
pub const ALERT_NAME: &str = "SentryRunaway";

/// Longest evidence excerpt in an alert summary, in characters.
const EXCERPT_CHARS: usize = 300;

/// What every payload of one notifier shares.
#[derive(Debug, Clone)]
pub struct Context {
    /// This host's name.
    pub host: String,
    /// The dashboard's base URL.
    pub public_url: String,
}

impl Context {
    /// The dashboard link of a run (the dashboard itself when the run is not recorded).
    pub fn run_url(&self, run_id: Option<i64>) -> String {
        let base = self.public_url.trim_end_matches('/');
        match run_id {
            Some(id) => format!("{base}/#/runs/{id}"),
            None => format!("{base}/"),
        }
    }
}

/// `t` as RFC 3339 UTC with milliseconds (`2026-12-02T11:01:14.123Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `critical` when sentry stopped, paused or restarted the job; `warning` for an alert.
pub fn severity(action: Action) -> &'static str {
    match action {
        Action::Continue | Action::Alert => "warning",
        Action::Pause | Action::Kill | Action::Restart => "critical",
    }
}

/// An incident's severity: as [`severity`] for its action, but at most `warning` for a
/// shadow-mode incident, since nothing was done to the job.
pub fn incident_severity(incident: &Incident) -> &'static str {
    if incident.shadow {
        "warning"
    } else {
        severity(incident.action)
    }
}

/// The job's name: its `job` label, else the command's program name.
pub fn job_name(job: &JobRef) -> String {
    if let Some(name) = job.labels.get("job").filter(|n| !n.is_empty()) {
        return name.clone();
    }
    job.command
        .first()
        .map(|program| {
            std::path::Path::new(program)
                .file_name()
                .map_or(program.clone(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// A short excerpt of the evidence: one cycle of a loop, or the measurement.
pub fn evidence_excerpt(evidence: &Evidence) -> String {
    let text = match evidence {
        Evidence::Loop(l) => l.example.join(" | "),
        Evidence::Resource(r) => format!(
            "{} {:.1} against a threshold of {:.1} over {:.0} s",
            r.metric, r.value, r.threshold, r.window_s
        ),
        Evidence::Regression(r) => format!(
            "{} {:.1} s, {:.1}x the median {:.1} s of {} healthy runs of {}",
            r.metric, r.value, r.ratio, r.median, r.runs, r.job_key
        ),
    };
    if text.chars().count() <= EXCERPT_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(EXCERPT_CHARS).collect();
    cut.push('…');
    cut
}

fn summary(incident: &Incident) -> String {
    let excerpt = evidence_excerpt(&incident.evidence);
    if excerpt.is_empty() {
        incident.summary.clone()
    } else {
        format!("{}: {excerpt}", incident.summary)
    }
}

fn description(job: &JobRef, incident: &Incident) -> String {
    format!(
        "{} in `{}` detected after {:.1} s (confidence {:.2}); action {}: {}",
        incident.kind.label(),
        job.command.join(" "),
        incident.detected_after_s,
        incident.confidence,
        incident.action.as_str(),
        incident.outcome
    )
}

/// The Alertmanager label set of an incident: what identifies the alert.
pub fn alert_labels(ctx: &Context, job: &JobRef, incident: &Incident) -> BTreeMap<String, String> {
    let kind = serde_json::to_value(incident.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut labels = BTreeMap::from([
        ("alertname".to_string(), ALERT_NAME.to_string()),
        ("kind".to_string(), kind),
        (
            "severity".to_string(),
            incident_severity(incident).to_string(),
        ),
        ("job".to_string(), job_name(job)),
        ("host".to_string(), ctx.host.clone()),
    ]);
    if let Some(repository) = job.labels.get("repository").filter(|r| !r.is_empty()) {
        labels.insert("repository".to_string(), repository.clone());
    }
    if let Some(id) = job.run_id {
        labels.insert("run_id".to_string(), id.to_string());
    }
    if incident.shadow {
        // A label, so that routes can send shadow alerts elsewhere (or silence them) and a
        // shadow alert never groups with the enforced alert of the same job.
        labels.insert("shadow".to_string(), "true".to_string());
    }
    labels
}

/// One Alertmanager v2 alert (an element of the array posted to `/api/v2/alerts`). Without
/// `ends_at` Alertmanager keeps it firing until its `resolve_timeout` passes.
pub fn alertmanager_alert(
    ctx: &Context,
    job: &JobRef,
    incident: &Incident,
    starts_at: SystemTime,
    ends_at: Option<SystemTime>,
) -> Value {
    let run_url = ctx.run_url(job.run_id);
    let mut alert = json!({
        "labels": alert_labels(ctx, job, incident),
        "annotations": {
            "summary": summary(incident),
            "description": description(job, incident),
            "run_url": run_url,
        },
        "startsAt": rfc3339(starts_at),
        "generatorURL": run_url,
    });
    if let Some(end) = ends_at {
        alert["endsAt"] = rfc3339(end).into();
    }
    alert
}

fn incident_json(incident: &Incident) -> Value {
    let mut value = serde_json::to_value(incident).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("severity".into(), incident_severity(incident).into());
        map.insert(
            "excerpt".into(),
            evidence_excerpt(&incident.evidence).into(),
        );
    }
    value
}

fn envelope(ctx: &Context, kind: &str, job: &JobRef, at: SystemTime) -> Value {
    json!({
        "schema": WEBHOOK_SCHEMA,
        "type": kind,
        "at": rfc3339(at),
        "host": ctx.host,
        "run_id": job.run_id,
        "run_url": ctx.run_url(job.run_id),
        "job": job_name(job),
        "labels": job.labels,
        "command": job.command,
    })
}

/// The webhook event of an incident (`type: incident`).
pub fn webhook_incident(ctx: &Context, job: &JobRef, incident: &Incident, at: SystemTime) -> Value {
    let mut event = envelope(ctx, "incident", job, at);
    event["severity"] = incident_severity(incident).into();
    event["shadow"] = incident.shadow.into();
    event["incident"] = incident_json(incident);
    event
}

/// How a run ended, as the resolving payloads tell it.
#[derive(Debug, Clone)]
pub struct RunEnd {
    /// `exited`, `stopped`, …
    pub status: String,
    /// The exit status, when there is one.
    pub exit_code: Option<i32>,
    /// Whether the run was a runaway.
    pub runaway: bool,
}

/// The webhook event that resolves a run's incidents (`type: resolved`).
pub fn webhook_resolved(ctx: &Context, job: &JobRef, end: &RunEnd, at: SystemTime) -> Value {
    let mut event = envelope(ctx, "resolved", job, at);
    event["run"] = json!({
        "status": end.status,
        "exit_code": end.exit_code,
        "runaway": end.runaway,
    });
    event
}

/// A Slack incoming-webhook message for an incident: `text` (notifications, and clients
/// without blocks) and two blocks.
pub fn slack_incident(ctx: &Context, job: &JobRef, incident: &Incident) -> Value {
    let icon = if incident_severity(incident) == "critical" {
        ":rotating_light:"
    } else {
        ":warning:"
    };
    let run_url = ctx.run_url(job.run_id);
    let text = format!(
        "{icon} sentry{}: {} in {} on {}: {}",
        if incident.shadow { " (shadow)" } else { "" },
        incident.kind.label(),
        job_name(job),
        ctx.host,
        incident.outcome
    );
    json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                "{text}\n*{}*\n```{}```",
                incident.summary,
                evidence_excerpt(&incident.evidence)
            )}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                "<{run_url}|run {}> · detected after {:.1} s · action {}",
                job.run_id.map_or("?".to_string(), |id| id.to_string()),
                incident.detected_after_s,
                incident.action.as_str()
            )}]},
        ],
    })
}

/// The Slack message saying a run that fired has ended.
pub fn slack_resolved(ctx: &Context, job: &JobRef, end: &RunEnd) -> Value {
    let exit = end
        .exit_code
        .map_or(String::new(), |c| format!(" (exit {c})"));
    let text = format!(
        ":white_check_mark: sentry: {} on {} ended: {}{exit}",
        job_name(job),
        ctx.host,
        end.status
    );
    json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                "{text}\n<{}|the run in the dashboard>",
                ctx.run_url(job.run_id)
            )}},
        ],
    })
}

/// One events-log line (before redaction).
pub fn event_line(ctx: &Context, event: &NotifyEvent, at: SystemTime) -> Value {
    let job = event.job();
    let mut line = json!({
        "schema": EVENT_SCHEMA,
        "ts": rfc3339(at),
        "host": ctx.host,
        "type": event.type_name(),
        "run_id": job.run_id,
        "job": job_name(job),
        "labels": job.labels,
    });
    match event {
        NotifyEvent::Finding { finding, t_s, .. } => {
            line["finding"] = json!({
                "kind": finding.kind,
                "score": finding.score,
                "t_s": t_s,
                "summary": finding.summary,
                "reasons": finding.reasons,
                "evidence": finding.evidence,
            });
        }
        NotifyEvent::Decision { decision, .. } => {
            line["decision"] = json!({
                "action": decision.action,
                "confidence": decision.confidence,
                "t_s": decision.at.as_secs_f64(),
                "reasons": decision.reasons,
                "findings": decision.findings.iter().map(|f| json!({
                    "kind": f.kind,
                    "score": f.score,
                    "summary": f.summary,
                })).collect::<Vec<_>>(),
            });
        }
        NotifyEvent::Incident { incident, .. } => {
            line["incident"] = incident_json(incident);
        }
        NotifyEvent::Ended {
            status,
            exit_code,
            runaway,
            ..
        } => {
            line["command"] = json!(job.command);
            line["run"] = json!({
                "status": status,
                "exit_code": exit_code,
                "runaway": runaway,
            });
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{Finding, FindingKind, LoopEvidence};

    fn ctx() -> Context {
        Context {
            host: "runner-7".into(),
            public_url: "http://localhost:3001/".into(),
        }
    }

    fn job(labels: &[(&str, &str)]) -> JobRef {
        JobRef {
            run_id: Some(42),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            command: vec!["/usr/bin/python3".into(), "train.py".into()],
        }
    }

    fn incident(action: Action) -> Incident {
        Incident {
            kind: FindingKind::OutputLoop,
            detected_after_s: 2.4,
            action,
            score: 0.99,
            confidence: 0.97,
            summary: "output loop: period 1, 57 repeats".into(),
            outcome: "stopped".into(),
            attempt: 1,
            reasons: vec!["same line 57 times".into()],
            evidence: Evidence::Loop(LoopEvidence {
                period: 1,
                repeats: 57,
                pattern: vec!["error: <n>".into()],
                example: vec!["error: key AKIAIOSFODNN7EXAMPLE refused".into()],
                first_line: 1,
                last_line: 57,
            }),
            shadow: false,
        }
    }

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_796_209_274_123)
    }

    #[test]
    fn rfc3339_matches_the_http_date_of_the_same_instant() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at()), "2026-12-02T11:01:14.123Z");
        assert_eq!(
            httpdate::fmt_http_date(at()),
            "Wed, 02 Dec 2026 11:01:14 GMT"
        );
        // A leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            httpdate::fmt_http_date(leap),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
    }

    #[test]
    fn shadow_incidents_are_marked_and_never_critical() {
        let mut shadow = incident(Action::Kill);
        shadow.shadow = true;
        shadow.outcome =
            "shadow: would have stopped the command after 2.4 s; nothing was done".into();
        let job = job(&[("job", "test")]);
        let alert = alertmanager_alert(&ctx(), &job, &shadow, at(), None);
        assert_eq!(alert["labels"]["shadow"], "true", "{alert}");
        assert_eq!(alert["labels"]["severity"], "warning", "{alert}");
        let enforced = alertmanager_alert(&ctx(), &job, &incident(Action::Kill), at(), None);
        assert!(enforced["labels"].get("shadow").is_none(), "{enforced}");
        let hook = webhook_incident(&ctx(), &job, &shadow, at());
        assert_eq!(hook["shadow"], true, "{hook}");
        assert_eq!(hook["severity"], "warning", "{hook}");
        assert_eq!(hook["incident"]["shadow"], true, "{hook}");
        assert_eq!(hook["incident"]["action"], "kill", "{hook}");
        let slack = slack_incident(&ctx(), &job, &shadow);
        let text = slack["text"].as_str().unwrap_or_default();
        assert!(
            text.starts_with(":warning: sentry (shadow): output loop")
                && text.contains("would have"),
            "{text}"
        );
    }

    #[test]
    fn alertmanager_alert_carries_the_labels_annotations_and_times() {
        let job = job(&[
            ("ci", "github"),
            ("repository", "acme/api"),
            ("job", "test"),
        ]);
        let alert = alertmanager_alert(&ctx(), &job, &incident(Action::Kill), at(), None);
        assert_eq!(
            alert["labels"],
            json!({
                "alertname": "SentryRunaway", "kind": "output_loop", "severity": "critical",
                "job": "test", "repository": "acme/api", "host": "runner-7", "run_id": "42",
            })
        );
        assert_eq!(alert["startsAt"], "2026-12-02T11:01:14.123Z");
        assert_eq!(alert["generatorURL"], "http://localhost:3001/#/runs/42");
        assert_eq!(
            alert["annotations"]["run_url"],
            "http://localhost:3001/#/runs/42"
        );
        assert!(alert.get("endsAt").is_none());
        let summary = alert["annotations"]["summary"].as_str().unwrap();
        assert!(summary.starts_with("output loop: period 1, 57 repeats: error: key"));
        let ended = alertmanager_alert(
            &ctx(),
            &job,
            &incident(Action::Kill),
            at(),
            Some(at() + Duration::from_secs(10)),
        );
        assert_eq!(ended["labels"], alert["labels"]);
        assert_eq!(ended["endsAt"], "2026-12-02T11:01:24.123Z");
    }

    #[test]
    fn an_alert_is_a_warning_and_the_job_defaults_to_the_program() {
        let labels = alert_labels(&ctx(), &job(&[]), &incident(Action::Alert));
        assert_eq!(labels["severity"], "warning");
        assert_eq!(labels["job"], "python3");
        assert!(!labels.contains_key("repository"));
        for action in [Action::Pause, Action::Restart] {
            assert_eq!(severity(action), "critical");
        }
    }

    #[test]
    fn webhook_events_are_versioned_and_redacted_as_a_whole() {
        let job = job(&[("repository", "acme/api")]);
        let mut event = webhook_incident(&ctx(), &job, &incident(Action::Kill), at());
        assert_eq!(event["schema"], "sentry.alert/v1");
        assert_eq!(event["type"], "incident");
        assert_eq!(event["run_id"], 42);
        assert_eq!(event["severity"], "critical");
        assert_eq!(event["incident"]["kind"], "output_loop");
        assert_eq!(event["labels"]["repository"], "acme/api");
        crate::redact::redact_json(&mut event);
        let text = event.to_string();
        assert!(!text.contains("AKIAIOSFODNN7EXAMPLE"), "{text}");
        assert!(text.contains("[REDACTED:aws-access-key-id]"), "{text}");
        let end = RunEnd {
            status: "stopped".into(),
            exit_code: Some(124),
            runaway: true,
        };
        let resolved = webhook_resolved(&ctx(), &job, &end, at());
        assert_eq!(resolved["type"], "resolved");
        assert_eq!(resolved["run"]["exit_code"], 124);
    }

    #[test]
    fn slack_messages_have_text_and_blocks() {
        let job = job(&[]);
        let message = slack_incident(&ctx(), &job, &incident(Action::Kill));
        let text = message["text"].as_str().unwrap();
        assert!(text.starts_with(":rotating_light: sentry: output loop in python3 on runner-7"));
        assert_eq!(message["blocks"].as_array().map(Vec::len), Some(2));
        let end = RunEnd {
            status: "stopped".into(),
            exit_code: Some(124),
            runaway: true,
        };
        let resolved = slack_resolved(&ctx(), &job, &end);
        assert!(resolved["text"]
            .as_str()
            .unwrap()
            .contains("ended: stopped (exit 124)"));
    }

    #[test]
    fn event_lines_name_their_schema_type_and_payload() {
        let job = job(&[("ci", "github")]);
        let finding = Finding {
            kind: FindingKind::CpuBurn,
            score: 0.6,
            at: Duration::from_secs(3),
            summary: "CPU burn".into(),
            reasons: vec![],
            evidence: Evidence::Resource(crate::model::ResourceEvidence {
                metric: "cpu_pct".into(),
                value: 99.0,
                threshold: 90.0,
                window_s: 30.0,
            }),
        };
        let line = event_line(
            &ctx(),
            &NotifyEvent::Finding {
                job: job.clone(),
                finding,
                t_s: 3.0,
            },
            at(),
        );
        assert_eq!(line["schema"], "sentry.event/v1");
        assert_eq!(line["type"], "finding");
        assert_eq!(line["ts"], "2026-12-02T11:01:14.123Z");
        assert_eq!(line["finding"]["kind"], "cpu_burn");
        assert_eq!(line["labels"]["ci"], "github");
        let ended = event_line(
            &ctx(),
            &NotifyEvent::Ended {
                job,
                status: "exited".into(),
                exit_code: Some(0),
                runaway: false,
            },
            at(),
        );
        assert_eq!(ended["type"], "run_ended");
        assert_eq!(ended["run"]["status"], "exited");
    }
}
