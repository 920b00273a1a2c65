//! sentry's metrics in the Prometheus text exposition format (0.0.4), named by Prometheus
//! conventions (`sentry_` prefix, base units, `_total` counters): what the store holds (runs,
//! incidents, per-job figures, alert deliveries), the serving process itself, and whatever a
//! live process adds through [`LiveMetrics`]. One renderer serves `GET /metrics` (of `sentry
//! dashboard` and `sentry watch`), node_exporter's textfile collector ([`textfile`]) and, per
//! run, the Pushgateway ([`push`]).
//!
//! Labels are bounded: `ci`, `repository`, `workflow`, `ci_job`, `kind`, `action`, `result`,
//! `state`, `sink`. Run ids, job ids, runners and hosts appear only in `sentry_job_info`,
//! one series per live run. The CI job's name is `ci_job`, not `job`: `job` is the label
//! Prometheus gives every series of a scrape job (it would turn ours into `exported_job`),
//! and the Pushgateway's grouping key uses the same name ([`push`]).
//!
//! Not here: the HTTP server's own request counters (that is `api/metrics.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::store::{JobLabels, StoreMetrics};

pub mod push;
pub mod textfile;

pub use textfile::write_textfile;

/// Figures only a live process knows (a watcher's ring-buffer losses, say), appended to the
/// store's by [`render`].
pub trait LiveMetrics: Send + Sync {
    /// Appends whole metric families (with [`header`]) to `out`.
    fn write(&self, out: &mut String);
}

/// Run kinds always exported by `sentry_runs` (at 0 when absent).
const RUN_KINDS: &[&str] = &["run", "watch"];

/// Run states always exported (at 0 when absent), so a dashboard's series do not vanish.
const RUN_STATES: &[&str] = &[
    "running", "paused", "exited", "stopped", "failed", "lost", "detached",
];

/// The whole exposition of `store` and this process, then `live`'s families.
pub fn render(store: &StoreMetrics, live: Option<&dyn LiveMetrics>) -> String {
    let mut out = String::with_capacity(8192);
    write_store(&mut out, store);
    write_process(&mut out);
    if let Some(live) = live {
        live.write(&mut out);
    }
    out
}

/// Writes a family's `# HELP` and `# TYPE` lines (`kind`: `counter`, `gauge`…).
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        out,
        "# HELP {name} {}",
        help.replace('\\', "\\\\").replace('\n', "\\n")
    );
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// A sample value as the format spells it (`+Inf`, `-Inf`, `NaN` for the non-finite).
pub fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        v.to_string()
    }
}

/// `{a="x",b="y"}` from label pairs, escaped.
fn labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{k}=\"{}\"", escape(v));
    }
    s.push('}');
    s
}

fn job_labels(job: &JobLabels) -> [(&'static str, &str); 4] {
    [
        ("ci", &job.ci),
        ("repository", &job.repository),
        ("workflow", &job.workflow),
        ("ci_job", &job.job),
    ]
}

fn write_store(out: &mut String, m: &StoreMetrics) {
    header(
        out,
        "sentry_runs",
        "gauge",
        "Runs in the store, by kind (run: started by sentry run; watch: watched) and state.",
    );
    let mut runs: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for kind in RUN_KINDS {
        for state in RUN_STATES {
            runs.insert((kind, state), 0);
        }
    }
    for (kind, state, n) in &m.runs_by_kind_state {
        *runs.entry((kind, state)).or_default() += n;
    }
    for ((kind, state), n) in runs {
        let _ = writeln!(
            out,
            "sentry_runs{} {n}",
            labels(&[("kind", kind), ("state", state)])
        );
    }

    header(
        out,
        "sentry_incidents_total",
        "counter",
        "Incidents recorded, by finding kind and action taken (shadow-mode incidents are \
         counted in sentry_shadow_actions_total instead).",
    );
    let mut by_action: BTreeMap<&str, u64> = BTreeMap::new();
    for (kind, action, n) in &m.incidents_by_kind_action {
        *by_action.entry(action).or_default() += n;
        let _ = writeln!(
            out,
            "sentry_incidents_total{} {n}",
            labels(&[("kind", kind), ("action", action)])
        );
    }
    header(
        out,
        "sentry_actions_total",
        "counter",
        "Actions taken on runaways (incidents by the action taken; shadow mode excluded).",
    );
    for (action, n) in by_action {
        let _ = writeln!(
            out,
            "sentry_actions_total{} {n}",
            labels(&[("action", action)])
        );
    }
    header(
        out,
        "sentry_shadow_actions_total",
        "counter",
        "Actions shadow mode (--shadow) would have taken, by finding kind and action; nothing \
         was done to the job.",
    );
    for (kind, action, n) in &m.shadow_incidents_by_kind_action {
        let _ = writeln!(
            out,
            "sentry_shadow_actions_total{} {n}",
            labels(&[("action", action), ("kind", kind)])
        );
    }
    header(
        out,
        "sentry_decisions_total",
        "counter",
        "Decisions recorded (continue after near misses included), by action.",
    );
    for (action, n) in &m.decisions_by_action {
        let _ = writeln!(
            out,
            "sentry_decisions_total{} {n}",
            labels(&[("action", action)])
        );
    }

    write_jobs(out, m);

    header(
        out,
        "sentry_alerts_total",
        "counter",
        "Alert deliveries to sinks (alertmanager, webhook, slack…), by result \
         (delivered, failed, dropped).",
    );
    for (sink, result, n) in &m.deliveries_by_sink_result {
        let _ = writeln!(
            out,
            "sentry_alerts_total{} {n}",
            labels(&[("sink", sink), ("result", result)])
        );
    }

    for (name, help, value) in [
        (
            "sentry_events_captured_total",
            "Output writes captured with their payload, over all runs.",
            m.events_captured_total,
        ),
        (
            "sentry_events_lost_total",
            "Output writes the capture could not record, over all runs.",
            m.events_lost_total,
        ),
        (
            "sentry_restarts_total",
            "Restarts of supervised commands, over all runs.",
            m.restarts_total,
        ),
    ] {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// Per-job families, over every run of each job the store holds (counters go down when
/// retention deletes old runs, which Prometheus's `rate` reads as a reset).
fn write_jobs(out: &mut String, m: &StoreMetrics) {
    type Figure = fn(&crate::store::JobMetrics) -> Option<f64>;
    let families: [(&str, &str, &str, Figure); 7] = [
        (
            "sentry_job_cpu_seconds_total",
            "counter",
            "CPU time used by the job's runs, seconds (live runs so far).",
            |j| Some(j.cpu_seconds),
        ),
        (
            "sentry_job_memory_peak_bytes",
            "gauge",
            "Largest peak resident memory of any of the job's runs, bytes.",
            |j| j.memory_peak_bytes.map(|b| b as f64),
        ),
        (
            "sentry_job_output_lines_total",
            "counter",
            "Output lines written by the job's runs.",
            |j| Some(j.output_lines as f64),
        ),
        (
            "sentry_job_events_captured_total",
            "counter",
            "Output writes of the job's runs captured with their payload.",
            |j| Some(j.events_captured as f64),
        ),
        (
            "sentry_job_events_lost_total",
            "counter",
            "Output writes of the job's runs the capture could not record.",
            |j| Some(j.events_lost as f64),
        ),
        (
            "sentry_job_memory_byte_seconds_total",
            "counter",
            "Resident memory of the job's runs integrated over time, byte-seconds (live runs so far).",
            |j| Some(j.memory_gb_seconds * 1e9),
        ),
        (
            "sentry_job_cost_total",
            "counter",
            "What the job's runs cost at their price per CPU-hour (--price-per-cpu-hour), in that price's currency; only jobs with a priced run.",
            |j| j.cost,
        ),
    ];
    for (name, kind, help, figure) in families {
        header(out, name, kind, help);
        for job in &m.jobs {
            if let Some(v) = figure(job) {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(&job_labels(&job.labels)),
                    value(v)
                );
            }
        }
    }
    header(
        out,
        "sentry_job_runs_total",
        "counter",
        "Runs of the job in the store, by state.",
    );
    for job in &m.jobs {
        for (state, n) in &job.runs_by_state {
            let [ci, repo, wf, name] = job_labels(&job.labels);
            let _ = writeln!(
                out,
                "sentry_job_runs_total{} {n}",
                labels(&[ci, repo, wf, name, ("state", state)])
            );
        }
    }
    header(
        out,
        "sentry_job_info",
        "gauge",
        "1 for each run being supervised now: its ids, for joins (the only series with ids).",
    );
    for run in &m.live_runs {
        let id = run.id.to_string();
        let [ci, repo, wf, name] = job_labels(&run.labels);
        let _ = writeln!(
            out,
            "sentry_job_info{} 1",
            labels(&[
                ("run_id", &id),
                ("job_id", &run.job_id),
                ci,
                repo,
                wf,
                name,
                ("runner", &run.runner),
                ("host", &run.host),
            ])
        );
    }
}

/// The serving process, from `/proc/self` (nothing where there is none). Prefixed with
/// `sentry_` so that a node_exporter textfile does not collide with node_exporter's own
/// `process_*` series.
fn write_process(out: &mut String) {
    let Some(p) = process::read() else { return };
    for (name, kind, help, v) in [
        (
            "sentry_process_cpu_seconds_total",
            "counter",
            "User and system CPU time of this sentry process, seconds.",
            p.cpu_seconds,
        ),
        (
            "sentry_process_resident_memory_bytes",
            "gauge",
            "Resident memory of this sentry process, bytes.",
            p.resident_bytes,
        ),
        (
            "sentry_process_start_time_seconds",
            "gauge",
            "Start time of this sentry process, Unix seconds.",
            p.start_time_seconds,
        ),
    ] {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {}", value(v));
    }
}

mod process {
    /// This process's figures.
    pub(super) struct Figures {
        pub cpu_seconds: f64,
        pub resident_bytes: f64,
        pub start_time_seconds: f64,
    }

    /// Reads `/proc/self/stat` (utime, stime, starttime in clock ticks; rss in pages) and the
    /// boot time from `/proc/stat`.
    pub(super) fn read() -> Option<Figures> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name, which may contain spaces; the first
        // of them is field 3 (state).
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
        // SAFETY: sysconf has no preconditions.
        let (tick, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        if tick <= 0 || page <= 0 {
            return None;
        }
        let tick = tick as f64;
        let boot: f64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(Figures {
            cpu_seconds: (field(14)? + field(15)?) / tick,
            resident_bytes: field(24)? * page as f64,
            start_time_seconds: boot + field(22)? / tick,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{JobMetrics, LiveRun};

    fn sample() -> StoreMetrics {
        let gh = JobLabels {
            ci: "github".into(),
            repository: "acme/api".into(),
            workflow: "CI".into(),
            job: "test \"unit\"".into(),
        };
        StoreMetrics {
            runs_by_kind_state: vec![("run".into(), "exited".into(), 3)],
            incidents_by_kind_action: vec![
                ("cpu_burn".into(), "kill".into(), 1),
                ("output_loop".into(), "kill".into(), 2),
            ],
            shadow_incidents_by_kind_action: vec![("output_loop".into(), "kill".into(), 4)],
            decisions_by_action: vec![("kill".into(), 3)],
            jobs: vec![
                JobMetrics {
                    labels: gh.clone(),
                    runs_by_state: vec![("exited".into(), 2), ("running".into(), 1)],
                    cpu_seconds: 1.5,
                    memory_peak_bytes: Some(1 << 20),
                    output_lines: 10,
                    events_captured: 7,
                    events_lost: 1,
                    memory_gb_seconds: 0.25,
                    cost: Some(0.0125),
                },
                JobMetrics {
                    labels: JobLabels {
                        ci: "local".into(),
                        job: "sh".into(),
                        ..JobLabels::default()
                    },
                    runs_by_state: vec![("stopped".into(), 1)],
                    ..JobMetrics::default()
                },
            ],
            live_runs: vec![LiveRun {
                id: 4242,
                kind: "run".into(),
                labels: gh,
                job_id: "github_0b1e".into(),
                runner: "runner-7".into(),
                host: "ci-host-1".into(),
            }],
            deliveries_by_sink_result: vec![("slack".into(), "failed".into(), 2)],
            ..StoreMetrics::default()
        }
    }

    /// The sample lines of `text` (not comments), split into name, labels and value.
    fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, String)> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, v) = l.rsplit_once(' ').expect("a value");
                let (name, rest) = series.split_once('{').unwrap_or((series, "}"));
                let body = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = BTreeMap::new();
                // Values here hold no `",` so a plain split is enough for the test.
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("k=\"v\"");
                    labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                }
                (name.to_string(), labels, v.to_string())
            })
            .collect()
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let text = render(&sample(), None);
        let mut declared = std::collections::BTreeSet::new();
        let mut last_help = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                last_help = rest.split(' ').next().map(str::to_string);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert_eq!(last_help.as_ref(), Some(&name), "TYPE without HELP: {line}");
                assert!(declared.insert(name), "family declared twice: {line}");
            }
        }
        for (name, _, v) in samples(&text) {
            assert!(declared.contains(&name), "{name} has no HELP/TYPE:\n{text}");
            assert!(v.parse::<f64>().is_ok(), "{name}: bad value {v}");
            assert!(name.starts_with("sentry_"), "{name}");
        }
        for family in [
            "sentry_runs",
            "sentry_incidents_total",
            "sentry_actions_total",
            "sentry_shadow_actions_total",
            "sentry_decisions_total",
            "sentry_job_cpu_seconds_total",
            "sentry_job_memory_peak_bytes",
            "sentry_job_output_lines_total",
            "sentry_job_events_captured_total",
            "sentry_job_events_lost_total",
            "sentry_job_memory_byte_seconds_total",
            "sentry_job_cost_total",
            "sentry_job_runs_total",
            "sentry_job_info",
            "sentry_alerts_total",
            "sentry_events_captured_total",
            "sentry_events_lost_total",
            "sentry_restarts_total",
            "sentry_process_cpu_seconds_total",
            "sentry_process_resident_memory_bytes",
            "sentry_process_start_time_seconds",
        ] {
            assert!(declared.contains(family), "{family} missing:\n{text}");
        }
    }

    #[test]
    fn every_run_kind_and_state_is_exported_once() {
        let text = render(&sample(), None);
        assert!(
            text.contains("sentry_runs{kind=\"run\",state=\"exited\"} 3\n"),
            "{text}"
        );
        for kind in RUN_KINDS {
            for state in RUN_STATES {
                let series = format!("sentry_runs{{kind=\"{kind}\",state=\"{state}\"}} ");
                assert_eq!(text.matches(&series).count(), 1, "{series}:\n{text}");
            }
        }
        let empty = render(&StoreMetrics::default(), None);
        assert!(
            empty.contains("sentry_runs{kind=\"watch\",state=\"running\"} 0\n"),
            "{empty}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let text = render(&sample(), None);
        assert!(
            text.contains("ci_job=\"test \\\"unit\\\"\"}"),
            "unescaped job label:\n{text}"
        );
        assert_eq!(value(f64::INFINITY), "+Inf");
        assert_eq!(value(f64::NAN), "NaN");
        assert_eq!(value(2.5), "2.5");
    }

    #[test]
    fn incidents_are_summed_by_action() {
        let text = render(&sample(), None);
        assert!(
            text.contains("sentry_actions_total{action=\"kill\"} 3\n"),
            "shadow incidents must not count as kills: {text}"
        );
        assert!(
            text.contains("sentry_shadow_actions_total{action=\"kill\",kind=\"output_loop\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("sentry_alerts_total{sink=\"slack\",result=\"failed\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn labels_are_bounded_and_ids_only_in_the_info_series() {
        const BOUNDED: &[&str] = &[
            "ci",
            "repository",
            "workflow",
            "ci_job",
            "kind",
            "action",
            "result",
            "state",
            "sink",
        ];
        let text = render(&sample(), None);
        for (name, labels, _) in samples(&text) {
            if name == "sentry_job_info" {
                continue;
            }
            for key in labels.keys() {
                assert!(BOUNDED.contains(&key.as_str()), "{name} has label {key}");
            }
            for v in labels.values() {
                assert!(
                    !v.contains("4242") && !v.contains("github_0b1e") && !v.contains("ci-host"),
                    "an id leaked into {name}: {labels:?}"
                );
            }
        }
        let info: Vec<_> = samples(&text)
            .into_iter()
            .filter(|(n, _, _)| n == "sentry_job_info")
            .collect();
        assert_eq!(info.len(), 1, "{text}");
        let (_, labels, v) = &info[0];
        assert_eq!(v, "1");
        assert_eq!(labels["run_id"], "4242");
        assert_eq!(labels["job_id"], "github_0b1e");
        assert_eq!(labels["runner"], "runner-7");
        assert_eq!(labels["host"], "ci-host-1");
        assert_eq!(labels["repository"], "acme/api");
    }

    #[test]
    fn the_info_series_is_only_for_live_runs() {
        let mut m = sample();
        m.live_runs.clear();
        let text = render(&m, None);
        assert!(text.contains("# TYPE sentry_job_info gauge"), "{text}");
        assert!(!text.contains("sentry_job_info{"), "{text}");
    }

    #[test]
    fn per_job_figures_carry_the_job_labels() {
        let text = render(&sample(), None);
        for line in [
            "sentry_job_cpu_seconds_total{ci=\"local\",repository=\"\",workflow=\"\",ci_job=\"sh\"} 0",
            "sentry_job_memory_peak_bytes{ci=\"github\",repository=\"acme/api\",workflow=\"CI\",ci_job=\"test \\\"unit\\\"\"} 1048576",
            "sentry_job_runs_total{ci=\"github\",repository=\"acme/api\",workflow=\"CI\",ci_job=\"test \\\"unit\\\"\",state=\"running\"} 1",
            "sentry_job_events_lost_total{ci=\"github\",repository=\"acme/api\",workflow=\"CI\",ci_job=\"test \\\"unit\\\"\"} 1",
            "sentry_job_memory_byte_seconds_total{ci=\"github\",repository=\"acme/api\",workflow=\"CI\",ci_job=\"test \\\"unit\\\"\"} 250000000",
            "sentry_job_cost_total{ci=\"github\",repository=\"acme/api\",workflow=\"CI\",ci_job=\"test \\\"unit\\\"\"} 0.0125",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        // No peak measured: no sample rather than a made-up 0; no price: no cost.
        assert!(
            !text.contains("sentry_job_memory_peak_bytes{ci=\"local\""),
            "{text}"
        );
        assert!(
            !text.contains("sentry_job_cost_total{ci=\"local\""),
            "{text}"
        );
    }

    #[test]
    fn live_metrics_are_appended() {
        struct Ring;
        impl LiveMetrics for Ring {
            fn write(&self, out: &mut String) {
                header(out, "sentry_ring_buffer_lost_total", "counter", "Lost.");
                out.push_str("sentry_ring_buffer_lost_total 5\n");
            }
        }
        let text = render(&StoreMetrics::default(), Some(&Ring));
        assert!(
            text.ends_with("sentry_ring_buffer_lost_total 5\n"),
            "{text}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_figures_are_plausible() {
        let p = process::read().expect("/proc/self is readable on Linux");
        assert!(p.cpu_seconds >= 0.0);
        assert!(p.resident_bytes > 1e5, "rss {}", p.resident_bytes);
        let now = crate::store::unix_now();
        assert!(
            p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 86_400.0,
            "start {} now {now}",
            p.start_time_seconds
        );
    }
}
