//! `sentry run --pushgateway URL`: the final figures of one run, pushed to a Prometheus
//! Pushgateway, because a run ends before any scrape could see it.
//!
//! Grouping key (the URL path, which the Pushgateway turns into labels on every pushed
//! series): `job="sentry"`, `instance=<host>`, and inside a CI job also `ci`, `repository`,
//! `workflow` and `ci_job` (the CI job's name: `job` is the grouping key's own). The push is
//! a `PUT`, so each push replaces the previous one of the same group: one group per host
//! outside CI, one per host and CI job inside it. A value that is empty or holds anything but
//! `A-Za-z0-9._~-` (a repository's `/`) is sent in the Pushgateway's `label@base64/<base64url>`
//! form (`@base64/=` for the empty value).

use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;

use super::{header, value};
use crate::fleet::ci::CiJob;
use crate::report::RunReport;

/// How long a push may take, connecting included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
#[error("could not push the run's metrics to {url}: {message}")]
pub struct PushError {
    url: String,
    message: String,
}

/// The grouping key's path after `/metrics`: `/job/sentry/instance/<host>` and, inside a CI
/// job, `/ci/…/repository/…/workflow/…/ci_job/…`.
pub fn grouping_path(host: &str, ci: Option<&CiJob>) -> String {
    let mut path = format!("{}{}", segment("job", "sentry"), segment("instance", host));
    if let Some(job) = ci {
        let get = |k: &str| job.labels.get(k).map_or("", String::as_str);
        for (label, value) in [
            ("ci", job.ci),
            ("repository", get("repository")),
            ("workflow", get("workflow")),
            ("ci_job", get("job")),
        ] {
            path.push_str(&segment(label, value));
        }
    }
    path
}

/// One `/label/value` pair of a grouping key, base64url-encoded when the value needs it.
fn segment(label: &str, value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
    if plain {
        format!("/{label}/{value}")
    } else if value.is_empty() {
        format!("/{label}@base64/=")
    } else {
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value);
        format!("/{label}@base64/{encoded}")
    }
}

/// What is pushed of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFigures {
    /// Wall time, seconds.
    pub duration_seconds: f64,
    /// CPU time of the tree, seconds.
    pub cpu_seconds: f64,
    /// Peak resident memory of the tree, bytes, when measured.
    pub memory_peak_bytes: Option<u64>,
    /// sentry's exit status.
    pub exit_code: i32,
    /// Whether a runaway was detected.
    pub runaway: bool,
    /// Incidents recorded.
    pub incidents: usize,
    /// Writes captured with payload.
    pub events_captured: u64,
    /// Writes the capture could not record.
    pub events_lost: u64,
}

impl From<&RunReport> for RunFigures {
    fn from(r: &RunReport) -> RunFigures {
        RunFigures {
            duration_seconds: r.duration_s,
            cpu_seconds: r.cpu_avg_pct * r.duration_s / 100.0,
            memory_peak_bytes: r.mem_peak_bytes,
            exit_code: r.exit_code,
            runaway: r.runaway,
            incidents: r.incidents.len(),
            events_captured: r.events_captured,
            events_lost: r.events_lost,
        }
    }
}

/// The pushed exposition: one gauge per figure of the run (`completed_at`: Unix seconds).
pub fn body(run: &RunFigures, completed_at: f64) -> String {
    let mut out = String::with_capacity(2048);
    let figures = [
        (
            "sentry_run_duration_seconds",
            "Wall time of the run, seconds.",
            Some(run.duration_seconds),
        ),
        (
            "sentry_run_cpu_seconds",
            "CPU time the run's process tree used, seconds.",
            Some(run.cpu_seconds),
        ),
        (
            "sentry_run_memory_peak_bytes",
            "Peak resident memory of the run's process tree, bytes.",
            run.memory_peak_bytes.map(|b| b as f64),
        ),
        (
            "sentry_run_exit_code",
            "sentry's exit status for the run (124 when sentry stopped it).",
            Some(f64::from(run.exit_code)),
        ),
        (
            "sentry_run_runaway",
            "1 when a runaway was detected in the run.",
            Some(if run.runaway { 1.0 } else { 0.0 }),
        ),
        (
            "sentry_run_incidents",
            "Incidents recorded in the run.",
            Some(run.incidents as f64),
        ),
        (
            "sentry_run_events_captured",
            "Output writes of the run captured with their payload.",
            Some(run.events_captured as f64),
        ),
        (
            "sentry_run_events_lost",
            "Output writes of the run the capture could not record.",
            Some(run.events_lost as f64),
        ),
        (
            "sentry_run_last_completion_timestamp_seconds",
            "When the run ended, Unix seconds.",
            Some(completed_at),
        ),
    ];
    for (name, help, figure) in figures {
        if let Some(v) = figure {
            header(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {}", value(v));
        }
    }
    out
}

/// PUTs `run`'s figures to the Pushgateway at `base` (e.g. `http://pushgateway:9091`)
/// under this host's (and CI job's) grouping key.
pub fn push(base: &str, run: &RunFigures, ci: Option<&CiJob>) -> Result<(), PushError> {
    let url = format!(
        "{}/metrics{}",
        base.trim_end_matches('/'),
        grouping_path(&crate::store::hostname(), ci)
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    agent
        .put(&url)
        .header("Content-Type", crate::api::metrics::TEXT_FORMAT)
        .send(body(run, crate::store::unix_now()))
        .map(drop)
        .map_err(|e| PushError {
            url,
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn job(labels: &[(&str, &str)]) -> CiJob {
        CiJob {
            ci: "github",
            id: "github_0b1e".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn a_local_run_is_grouped_by_host() {
        assert_eq!(
            grouping_path("build-1.example", None),
            "/job/sentry/instance/build-1.example"
        );
    }

    #[test]
    fn values_with_slashes_or_nothing_are_base64url_encoded() {
        let path = grouping_path(
            "h1",
            Some(&job(&[
                ("ci", "github"),
                ("repository", "acme/api"),
                ("workflow", "CI"),
                ("job", "unit tests?"),
            ])),
        );
        assert_eq!(
            path,
            "/job/sentry/instance/h1/ci/github/repository@base64/YWNtZS9hcGk\
             /workflow/CI/ci_job@base64/dW5pdCB0ZXN0cz8"
        );
        // No workflow known: the empty value is spelled as the Pushgateway documents.
        let path = grouping_path("h1", Some(&job(&[("job", "t")])));
        assert!(path.contains("/workflow@base64/=/"), "{path}");
        // base64url, never `/` or `+` inside a segment.
        assert_eq!(segment("x", "\u{fb}\u{ff}"), "/x@base64/w7vDvw");
        assert_eq!(segment("x", "~a.b_c-d"), "/x/~a.b_c-d");
    }

    #[test]
    fn the_body_has_a_typed_gauge_per_figure() {
        let run = RunFigures {
            duration_seconds: 2.5,
            exit_code: 124,
            runaway: true,
            incidents: 1,
            ..RunFigures::default()
        };
        let text = body(&run, 1_700_000_000.0);
        for name in [
            "sentry_run_duration_seconds",
            "sentry_run_cpu_seconds",
            "sentry_run_exit_code",
            "sentry_run_runaway",
            "sentry_run_incidents",
            "sentry_run_events_captured",
            "sentry_run_events_lost",
            "sentry_run_last_completion_timestamp_seconds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} gauge\n{name} ")),
                "{name} missing:\n{text}"
            );
        }
        assert!(text.contains("sentry_run_last_completion_timestamp_seconds 1700000000\n"));
        assert!(text.contains("sentry_run_exit_code 124\n"), "{text}");
        // Memory not measured: no series rather than a made-up 0.
        assert!(!text.contains("sentry_run_memory_peak_bytes"), "{text}");
    }
}
