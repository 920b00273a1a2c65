//! Alert delivery and the JSON-lines event log: fleets route sentry's alerts with the tools
//! they already run (Alertmanager's v2 API, a generic webhook with a versioned JSON event,
//! Slack incoming webhooks) and ship its events with their log shippers (`--events-log`).
//!
//! Delivery never slows supervision down: [`Notifier::send`] only offers the event to
//! bounded queues (a full queue drops it and counts the drop), and each receiver URL and the
//! events log has a worker thread of its own that posts, retries (exponential backoff with
//! full jitter on 5xx and connection errors, the receiver's `Retry-After` on 429, never on
//! other 4xx) and records every outcome in the store's `deliveries` table. Every payload is
//! redacted as a whole before it leaves the process. Not here: what is detected or decided
//! (`detect`, `decide`), or the dashboard's own stream (`api`).
//!
//! The payload shapes are in [`payload`] and documented in `docs/alerts.md` and
//! `docs/events-log.md`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::model::{Decision, Finding, Incident};

pub mod events_log;
pub mod payload;
pub mod retry;
mod sink;

pub use retry::RetryPolicy;

use sink::{AlertWorker, Counters, DeliveryLog, DroppedNote, Item, Poster, Shared};

/// Default dashboard base URL for links in alerts.
pub const DEFAULT_PUBLIC_URL: &str = "http://localhost:3001";

/// How often a firing Alertmanager alert is posted again by default. Alertmanager resolves
/// an alert that is not re-sent within its `resolve_timeout` (5 min by default).
pub const ALERTMANAGER_REPEAT: Duration = Duration::from_secs(60);

/// Events an alert receiver's queue holds; past it, events are dropped and counted.
const ALERT_QUEUE: usize = 256;

/// Events the events-log queue holds.
const EVENTS_LOG_QUEUE: usize = 4096;

/// How long [`Notifier::finish`] gives workers to record what they were doing once it gave up.
const ABORT_GRACE: Duration = Duration::from_millis(500);

/// Where alerts and events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// Alertmanager base URLs (`http://am:9093`); alerts are posted to `/api/v2/alerts`.
    pub alertmanager: Vec<String>,
    /// Webhook URLs that receive `sentry.alert/v1` events.
    pub webhooks: Vec<String>,
    /// Slack incoming-webhook URLs.
    pub slack: Vec<String>,
    /// The JSON-lines events log.
    pub events_log: Option<EventsLogConfig>,
    /// The dashboard's base URL, for the links in alerts.
    pub public_url: String,
    /// How failed deliveries are retried.
    pub retry: RetryPolicy,
    /// How often a firing Alertmanager alert is posted again.
    pub alertmanager_repeat: Duration,
}

impl Default for NotifyConfig {
    fn default() -> NotifyConfig {
        NotifyConfig {
            alertmanager: Vec::new(),
            webhooks: Vec::new(),
            slack: Vec::new(),
            events_log: None,
            public_url: DEFAULT_PUBLIC_URL.to_string(),
            retry: RetryPolicy::default(),
            alertmanager_repeat: ALERTMANAGER_REPEAT,
        }
    }
}

impl NotifyConfig {
    /// True when anything is to be notified.
    pub fn is_enabled(&self) -> bool {
        !(self.alertmanager.is_empty()
            && self.webhooks.is_empty()
            && self.slack.is_empty()
            && self.events_log.is_none())
    }

    /// Checks every URL, naming the flag of a bad one.
    pub fn validate(&self) -> Result<(), NotifyError> {
        for (kind, urls) in self.receivers() {
            for url in urls {
                check_url(kind.flag(), url)?;
            }
        }
        check_url("--public-url", &self.public_url)
    }

    fn receivers(&self) -> [(SinkKind, &Vec<String>); 3] {
        [
            (SinkKind::Alertmanager, &self.alertmanager),
            (SinkKind::Webhook, &self.webhooks),
            (SinkKind::Slack, &self.slack),
        ]
    }
}

/// The size-rotated events log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsLogConfig {
    /// The file.
    pub path: PathBuf,
    /// Rotate before the file would grow past this.
    pub max_bytes: u64,
    /// Rotated files kept (`FILE.1` … `FILE.{keep}`).
    pub keep: u32,
}

/// Which job an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobRef {
    /// The run in the store, when recorded.
    pub run_id: Option<i64>,
    /// `ci`, `repository`, `workflow`, `job`, `runner` (those known).
    pub labels: BTreeMap<String, String>,
    /// The command and its arguments.
    pub command: Vec<String>,
}

impl JobRef {
    /// What tells this job's alerts from another's, for resolving them.
    fn key(&self) -> String {
        match self.run_id {
            Some(id) => format!("run:{id}"),
            None => format!("{:?}:{:?}", self.labels, self.command),
        }
    }
}

/// Something to tell the fleet.
#[derive(Debug, Clone)]
pub enum NotifyEvent {
    /// A detector's finding with a signal (events log only).
    Finding {
        /// The job.
        job: JobRef,
        /// The finding.
        finding: Finding,
        /// Seconds since the job's start.
        t_s: f64,
    },
    /// A kept decision (events log only).
    Decision {
        /// The job.
        job: JobRef,
        /// The decision.
        decision: Decision,
    },
    /// sentry alerted or acted: fires alerts, and is logged.
    Incident {
        /// The job.
        job: JobRef,
        /// The incident.
        incident: Incident,
    },
    /// The job ended: resolves its alerts, and is logged.
    Ended {
        /// The job.
        job: JobRef,
        /// `exited`, `stopped`, …
        status: String,
        /// Its exit status, when known.
        exit_code: Option<i32>,
        /// Whether it was a runaway.
        runaway: bool,
    },
}

impl NotifyEvent {
    /// The job the event is about.
    pub fn job(&self) -> &JobRef {
        match self {
            NotifyEvent::Finding { job, .. }
            | NotifyEvent::Decision { job, .. }
            | NotifyEvent::Incident { job, .. }
            | NotifyEvent::Ended { job, .. } => job,
        }
    }

    /// The `type` of its events-log line.
    pub fn type_name(&self) -> &'static str {
        match self {
            NotifyEvent::Finding { .. } => "finding",
            NotifyEvent::Decision { .. } => "decision",
            NotifyEvent::Incident { .. } => "incident",
            NotifyEvent::Ended { .. } => "run_ended",
        }
    }

    fn fires(&self) -> bool {
        matches!(
            self,
            NotifyEvent::Incident { .. } | NotifyEvent::Ended { .. }
        )
    }

    fn note(&self) -> (&'static str, String) {
        match self {
            NotifyEvent::Incident { incident, .. } => (
                "firing",
                serde_json::to_value(incident.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            ),
            _ => ("resolved", String::new()),
        }
    }
}

/// Where a notification goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SinkKind {
    /// Alertmanager's v2 API.
    Alertmanager,
    /// A generic webhook.
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// The JSON-lines events log.
    EventsLog,
}

impl SinkKind {
    /// The name in the `deliveries` table and in stats.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Alertmanager => "alertmanager",
            SinkKind::Webhook => "webhook",
            SinkKind::Slack => "slack",
            SinkKind::EventsLog => "events_log",
        }
    }

    /// The command-line flag that configures it.
    pub fn flag(self) -> &'static str {
        match self {
            SinkKind::Alertmanager => "--alertmanager",
            SinkKind::Webhook => "--webhook",
            SinkKind::Slack => "--slack-webhook",
            SinkKind::EventsLog => "--events-log",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What one sink did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    /// Events taken by the receiver (or written to the log).
    pub delivered: u64,
    /// Events given up on (refused, retries exhausted, or unfinished at the end).
    pub failed: u64,
    /// Events turned away by a full queue, or still queued when [`Notifier::finish`] gave up.
    pub dropped: u64,
    /// Tries after the first.
    pub retries: u64,
}

/// What every sink did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryStats {
    /// Alertmanager receivers.
    pub alertmanager: SinkStats,
    /// Webhook receivers.
    pub webhook: SinkStats,
    /// Slack receivers.
    pub slack: SinkStats,
    /// The events log.
    pub events_log: SinkStats,
}

/// Why notification cannot start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A receiver URL is not one sentry can post to.
    #[error("{flag} {url}: {reason}")]
    BadUrl {
        /// The flag that gave it.
        flag: &'static str,
        /// The URL (redacted).
        url: String,
        /// What is wrong, with what to give instead.
        reason: String,
    },
    /// The events log cannot be opened.
    #[error("--events-log {}: cannot open it for appending: {source}", path.display())]
    EventsLog {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A worker thread cannot be started.
    #[error("cannot start an alert delivery thread: {0}")]
    Thread(std::io::Error),
}

fn check_url(flag: &'static str, url: &str) -> Result<(), NotifyError> {
    let bad = |reason: &str| NotifyError::BadUrl {
        flag,
        url: crate::redact::redact(url).into_owned(),
        reason: reason.to_string(),
    };
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|_| bad("not a URL; give one like http://alertmanager:9093"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("give an http:// or https:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("the URL names no host"));
    }
    Ok(())
}

/// The Alertmanager endpoint under a base URL (a URL already ending in it is kept).
fn alertmanager_endpoint(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/api/v2/alerts") {
        base.to_string()
    } else {
        format!("{base}/api/v2/alerts")
    }
}

/// One worker: its queue and thread.
struct Worker {
    kind: SinkKind,
    tx: Option<SyncSender<Item>>,
    queued: Arc<AtomicU64>,
    notes: Arc<Mutex<Vec<DroppedNote>>>,
    join: Option<JoinHandle<()>>,
}

impl Worker {
    fn offer(&self, item: Item, counters: &Counters) {
        let Some(tx) = &self.tx else { return };
        self.queued.fetch_add(1, Ordering::SeqCst);
        if let Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) = tx.try_send(item)
        {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            if self.kind != SinkKind::EventsLog {
                // try_lock: the sender never waits, even for the note.
                if let Ok(mut notes) = self.notes.try_lock() {
                    if notes.len() < sink::NOTES_KEPT {
                        let (event, kind) = item.event.note();
                        notes.push(DroppedNote {
                            run_id: item.event.job().run_id,
                            event,
                            kind,
                        });
                    }
                }
            }
        }
    }
}

/// Delivers events to the configured receivers and the events log from worker threads.
pub struct Notifier {
    workers: Vec<Worker>,
    counters: [Arc<Counters>; 4],
    abort: Arc<AtomicBool>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl Notifier {
    /// Checks the configuration, opens (creating it) the events log and starts one worker
    /// per receiver URL. `store`: where delivery outcomes are recorded.
    pub fn start(config: NotifyConfig, store: Option<PathBuf>) -> Result<Notifier, NotifyError> {
        config.validate()?;
        let ctx = payload::Context {
            host: crate::store::hostname(),
            public_url: config.public_url.clone(),
        };
        let counters: [Arc<Counters>; 4] = Default::default();
        let abort = Arc::new(AtomicBool::new(false));
        let mut notifier = Notifier {
            workers: Vec::new(),
            counters,
            abort,
        };
        let spawn = |notifier: &mut Notifier,
                     kind: SinkKind,
                     capacity: usize,
                     body: Box<dyn FnOnce(Shared, mpsc::Receiver<Item>) + Send>|
         -> Result<(), NotifyError> {
            let (tx, rx) = mpsc::sync_channel(capacity);
            let queued = Arc::new(AtomicU64::new(0));
            let notes = Arc::new(Mutex::new(Vec::new()));
            let shared = Shared {
                counters: Arc::clone(&notifier.counters[kind.index()]),
                abort: Arc::clone(&notifier.abort),
                queued: Arc::clone(&queued),
                dropped_notes: Arc::clone(&notes),
            };
            let join = std::thread::Builder::new()
                .name(format!("sentry-{}", kind.as_str()))
                .spawn(move || body(shared, rx))
                .map_err(NotifyError::Thread)?;
            notifier.workers.push(Worker {
                kind,
                tx: Some(tx),
                queued,
                notes,
                join: Some(join),
            });
            Ok(())
        };
        if let Some(log) = &config.events_log {
            let file = events_log::EventsLog::open(&log.path, log.max_bytes, log.keep).map_err(
                |source| NotifyError::EventsLog {
                    path: log.path.clone(),
                    source,
                },
            )?;
            let ctx = ctx.clone();
            spawn(
                &mut notifier,
                SinkKind::EventsLog,
                EVENTS_LOG_QUEUE,
                Box::new(move |shared, rx| sink::events_log_worker(file, ctx, shared, rx)),
            )?;
        }
        for (kind, urls) in config.receivers() {
            for url in urls {
                let endpoint = match kind {
                    SinkKind::Alertmanager => alertmanager_endpoint(url),
                    _ => url.clone(),
                };
                let ctx = ctx.clone();
                let store = store.clone();
                let retry = config.retry.clone();
                let repeat = config.alertmanager_repeat;
                spawn(
                    &mut notifier,
                    kind,
                    ALERT_QUEUE,
                    Box::new(move |shared, rx| {
                        let poster = Poster::new(
                            endpoint,
                            retry,
                            Arc::clone(&shared.abort),
                            Arc::clone(&shared.counters),
                        );
                        AlertWorker::new(
                            kind,
                            poster,
                            ctx,
                            DeliveryLog::new(store),
                            repeat,
                            shared,
                        )
                        .run(rx);
                    }),
                )?;
            }
        }
        Ok(notifier)
    }

    /// Offers `event` to every sink that takes it; never blocks (a full queue drops it).
    pub fn send(&self, event: NotifyEvent) {
        let fires = event.fires();
        let event = Arc::new(event);
        let at = SystemTime::now();
        for worker in &self.workers {
            if worker.kind == SinkKind::EventsLog || fires {
                let item = Item {
                    event: Arc::clone(&event),
                    at,
                };
                worker.offer(item, &self.counters[worker.kind.index()]);
            }
        }
    }

    /// What every sink did so far.
    pub fn stats(&self) -> DeliveryStats {
        let read = |kind: SinkKind| {
            let c = &self.counters[kind.index()];
            SinkStats {
                delivered: c.delivered.load(Ordering::Relaxed),
                failed: c.failed.load(Ordering::Relaxed),
                dropped: c.dropped.load(Ordering::Relaxed),
                retries: c.retries.load(Ordering::Relaxed),
            }
        };
        DeliveryStats {
            alertmanager: read(SinkKind::Alertmanager),
            webhook: read(SinkKind::Webhook),
            slack: read(SinkKind::Slack),
            events_log: read(SinkKind::EventsLog),
        }
    }

    /// Lets the workers deliver what is queued for up to `wait`, then gives up: what is still
    /// queued counts as dropped, a delivery in progress as failed.
    pub fn finish(mut self, wait: Duration) {
        self.shut_down(wait);
    }

    fn shut_down(&mut self, wait: Duration) {
        for worker in &mut self.workers {
            worker.tx = None;
        }
        let deadline = Instant::now() + wait;
        let all_done = |workers: &[Worker]| {
            workers
                .iter()
                .all(|w| w.join.as_ref().is_none_or(JoinHandle::is_finished))
        };
        while !all_done(&self.workers) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !all_done(&self.workers) {
            self.abort.store(true, Ordering::SeqCst);
            let grace = Instant::now() + ABORT_GRACE;
            while !all_done(&self.workers) && Instant::now() < grace {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for worker in &mut self.workers {
            let left = worker.queued.swap(0, Ordering::SeqCst);
            self.counters[worker.kind.index()]
                .dropped
                .fetch_add(left, Ordering::Relaxed);
            if let Some(join) = worker.join.take() {
                if join.is_finished() {
                    let _ = join.join();
                }
                // A worker stuck in a request is left to its timeout; the process may end first.
            }
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if self.workers.iter().any(|w| w.join.is_some()) {
            self.shut_down(Duration::ZERO);
        }
    }
}

/// How long an ending `sentry run` waits for its notifications.
pub const RUN_FINISH_WAIT: Duration = Duration::from_secs(5);

/// The notifications of one `sentry run`: its job, and which decisions are worth logging
/// (the same the store keeps).
#[derive(Debug)]
pub struct RunNotifier {
    notifier: Notifier,
    job: JobRef,
    decisions: crate::store::DecisionKeep,
}

impl RunNotifier {
    /// Notifications about the run `run_id` (when recorded) of `command`, labelled as the
    /// CI job it runs in, if any.
    pub fn new(notifier: Notifier, run_id: Option<i64>, command: &[std::ffi::OsString]) -> Self {
        let job = JobRef {
            run_id,
            labels: crate::fleet::ci::from_own_env()
                .map(|job| job.labels)
                .unwrap_or_default(),
            command: command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
        };
        RunNotifier {
            notifier,
            job,
            decisions: crate::store::DecisionKeep::default(),
        }
    }

    /// Logs a decision and its findings with a signal, when the store would keep it.
    pub fn decision(&mut self, decision: &Decision) {
        if !self.decisions.keep(decision) {
            return;
        }
        for finding in decision
            .findings
            .iter()
            .filter(|f| crate::store::is_signal(f))
        {
            self.notifier.send(NotifyEvent::Finding {
                job: self.job.clone(),
                finding: finding.clone(),
                t_s: finding.at.as_secs_f64(),
            });
        }
        self.notifier.send(NotifyEvent::Decision {
            job: self.job.clone(),
            decision: decision.clone(),
        });
    }

    /// Fires (and logs) an incident.
    pub fn incident(&self, incident: &Incident) {
        self.notifier.send(NotifyEvent::Incident {
            job: self.job.clone(),
            incident: incident.clone(),
        });
    }

    /// Resolves the run's alerts, logs its end and waits (at most [`RUN_FINISH_WAIT`]) for
    /// the deliveries.
    pub fn ended(self, status: &str, exit_code: i32, runaway: bool) {
        self.notifier.send(NotifyEvent::Ended {
            job: self.job,
            status: status.to_string(),
            exit_code: Some(exit_code),
            runaway,
        });
        self.notifier.finish(RUN_FINISH_WAIT);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;
    use crate::model::{Action, Evidence, FindingKind, ResourceEvidence};

    fn read_body(stream: &TcpStream) -> Option<String> {
        let mut reader = BufReader::new(stream);
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().ok()?;
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        String::from_utf8(body).ok()
    }

    /// A loopback receiver that answers 200 and hands over each body.
    fn receiver() -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                if let Some(body) = read_body(&stream) {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    if tx.send(body).is_err() {
                        break;
                    }
                }
            }
        });
        (url, rx)
    }

    fn incident() -> Incident {
        Incident {
            kind: FindingKind::CpuBurn,
            detected_after_s: 31.0,
            action: Action::Kill,
            score: 0.9,
            confidence: 0.9,
            summary: "CPU burn: 198% for 30 s without progress".into(),
            outcome: "stopped".into(),
            attempt: 1,
            reasons: vec![],
            evidence: Evidence::Resource(ResourceEvidence {
                metric: "cpu_pct".into(),
                value: 198.0,
                threshold: 90.0,
                window_s: 30.0,
            }),
            shadow: false,
        }
    }

    fn job() -> JobRef {
        JobRef {
            run_id: Some(7),
            labels: BTreeMap::new(),
            command: vec!["make".into(), "test".into()],
        }
    }

    #[test]
    fn firing_alerts_are_posted_again_until_the_run_ends() {
        let (url, bodies) = receiver();
        let config = NotifyConfig {
            alertmanager: vec![url],
            alertmanager_repeat: Duration::from_millis(200),
            ..NotifyConfig::default()
        };
        let notifier = Notifier::start(config, None).unwrap();
        notifier.send(NotifyEvent::Incident {
            job: job(),
            incident: incident(),
        });
        let next = || -> serde_json::Value {
            let body = bodies.recv_timeout(Duration::from_secs(5)).expect("a post");
            serde_json::from_str(&body).unwrap()
        };
        let first = next();
        for _ in 0..2 {
            let again = next();
            assert_eq!(again, first, "a re-post is the same alert, start included");
        }
        assert!(first[0].get("endsAt").is_none(), "{first}");
        assert_eq!(first[0]["labels"]["severity"], "critical");
        notifier.send(NotifyEvent::Ended {
            job: job(),
            status: "stopped".into(),
            exit_code: Some(124),
            runaway: true,
        });
        let resolved = loop {
            let body = next();
            if body[0].get("endsAt").is_some() {
                break body;
            }
        };
        assert_eq!(resolved[0]["labels"], first[0]["labels"]);
        assert_eq!(resolved[0]["startsAt"], first[0]["startsAt"]);
        let counters = Arc::clone(&notifier.counters[SinkKind::Alertmanager.index()]);
        notifier.finish(Duration::from_secs(1));
        assert!(counters.delivered.load(Ordering::Relaxed) >= 4);
        assert_eq!(counters.failed.load(Ordering::Relaxed), 0);
        // Resolved: no more posts.
        std::thread::sleep(Duration::from_millis(500));
        assert!(bodies.try_recv().is_err(), "posted after the run's end");
    }

    #[test]
    fn send_never_blocks_and_a_stuck_receiver_costs_drops_not_time() {
        // Accepts connections and never answers: the worker hangs in its first request.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let held: Vec<TcpStream> = listener.incoming().flatten().take(4).collect();
            std::thread::sleep(Duration::from_secs(30));
            drop(held);
        });
        let config = NotifyConfig {
            webhooks: vec![url],
            ..NotifyConfig::default()
        };
        let notifier = Notifier::start(config, None).unwrap();
        let started = Instant::now();
        for _ in 0..300 {
            notifier.send(NotifyEvent::Incident {
                job: job(),
                incident: incident(),
            });
        }
        assert!(started.elapsed() < Duration::from_secs(1), "send blocked");
        let stats = notifier.stats();
        assert!(
            stats.webhook.dropped >= 300 - ALERT_QUEUE as u64 - 1,
            "{stats:?}"
        );
        let finishing = Instant::now();
        let counters = Arc::clone(&notifier.counters[SinkKind::Webhook.index()]);
        notifier.finish(Duration::from_millis(100));
        assert!(
            finishing.elapsed() < Duration::from_secs(2),
            "finish waited on the receiver"
        );
        // All but the one in the receiver's hands count as dropped.
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 299);
    }

    #[test]
    fn urls_are_checked_and_a_bad_one_names_its_flag() {
        let ok = NotifyConfig {
            alertmanager: vec!["http://127.0.0.1:9093".into()],
            webhooks: vec!["https://hooks.example.com/sentry".into()],
            ..NotifyConfig::default()
        };
        assert!(ok.validate().is_ok());
        assert!(ok.is_enabled());
        assert!(!NotifyConfig::default().is_enabled());
        let bad = NotifyConfig {
            slack: vec!["hooks.slack.com/services/T0/B0/x".into()],
            ..NotifyConfig::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.starts_with("--slack-webhook "), "{err}");
        let ftp = NotifyConfig {
            webhooks: vec!["ftp://example.com/x".into()],
            ..NotifyConfig::default()
        };
        assert!(ftp.validate().unwrap_err().to_string().contains("http://"));
    }

    #[test]
    fn alertmanager_endpoint_is_added_once() {
        assert_eq!(
            alertmanager_endpoint("http://am:9093/"),
            "http://am:9093/api/v2/alerts"
        );
        assert_eq!(
            alertmanager_endpoint("http://am:9093/api/v2/alerts"),
            "http://am:9093/api/v2/alerts"
        );
    }
}
