//! The worker threads behind a [`super::Notifier`]: one per alert receiver URL (so a dead
//! receiver delays only itself) and one for the events log. Each owns a bounded queue, its
//! HTTP agent and its own store connection for the `deliveries` table; nothing here can
//! block the thread that sends events.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::events_log::EventsLog;
use super::payload::{self, Context, RunEnd};
use super::retry::{self, RetryPolicy, Verdict};
use super::{NotifyEvent, SinkKind};
use crate::store::Store;

/// Longest a single HTTP request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often an idle worker looks at the abort flag.
const TICK: Duration = Duration::from_millis(100);

/// How much of a refusing receiver's answer goes into the delivery record.
const DETAIL_BODY_CHARS: usize = 200;

/// One queued event.
pub struct Item {
    pub event: Arc<NotifyEvent>,
    pub at: SystemTime,
}

/// Per-sink counters, shared by the workers of one sink kind and [`super::Notifier::stats`].
#[derive(Debug, Default)]
pub struct Counters {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    pub retries: AtomicU64,
}

/// An event a full queue turned away, noted (without blocking) for the delivery record.
#[derive(Debug, Clone)]
pub struct DroppedNote {
    pub run_id: Option<i64>,
    pub event: &'static str,
    pub kind: String,
}

/// Most dropped events noted for the record between two looks by the worker.
pub const NOTES_KEPT: usize = 64;

/// What one worker shares with the notifier.
pub struct Shared {
    pub counters: Arc<Counters>,
    pub abort: Arc<AtomicBool>,
    /// Items sent and not yet taken by the worker.
    pub queued: Arc<AtomicU64>,
    pub dropped_notes: Arc<Mutex<Vec<DroppedNote>>>,
}

/// Writes `deliveries` rows through a connection of its own, opened on first use. A store
/// that cannot be used costs the record (logged), never the delivery.
pub struct DeliveryLog {
    path: Option<PathBuf>,
    store: Option<Store>,
    broken: bool,
}

/// One row of the `deliveries` table.
pub struct Delivery<'a> {
    pub run_id: Option<i64>,
    pub sink: SinkKind,
    /// `firing` or `resolved`.
    pub event: &'a str,
    pub kind: &'a str,
    /// `delivered`, `failed` or `dropped`.
    pub result: &'a str,
    pub attempts: u32,
    pub detail: &'a str,
}

impl DeliveryLog {
    pub fn new(path: Option<PathBuf>) -> DeliveryLog {
        DeliveryLog {
            path,
            store: None,
            broken: false,
        }
    }

    pub fn record(&mut self, d: &Delivery<'_>) {
        let Some(path) = &self.path else { return };
        if self.broken {
            return;
        }
        if self.store.is_none() {
            match Store::open(path) {
                Ok(store) => self.store = Some(store),
                Err(err) => {
                    tracing::warn!("alert deliveries go unrecorded: {err}");
                    self.broken = true;
                    return;
                }
            }
        }
        let Some(store) = &self.store else { return };
        let result = store.conn().execute(
            "INSERT INTO deliveries (run_id, at, sink, event, kind, result, attempts, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                d.run_id,
                crate::store::unix_now(),
                d.sink.as_str(),
                d.event,
                d.kind,
                d.result,
                d.attempts,
                crate::redact::redact(d.detail),
            ],
        );
        if let Err(err) = result {
            tracing::warn!(
                "cannot record a {} delivery in {}: {err}",
                d.sink.as_str(),
                path.display()
            );
        }
    }
}

/// What came of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub delivered: bool,
    pub attempts: u32,
    pub detail: String,
}

/// Posts JSON to one URL with retries (see [`retry`]); redacts the payload first.
pub struct Poster {
    agent: ureq::Agent,
    url: String,
    retry: RetryPolicy,
    abort: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

impl Poster {
    pub fn new(
        url: String,
        retry: RetryPolicy,
        abort: Arc<AtomicBool>,
        counters: Arc<Counters>,
    ) -> Poster {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            // A receiver that redirects a POST is misconfigured: say so instead of following.
            .max_redirects(0)
            .user_agent(concat!("sentry/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Poster {
            agent,
            url,
            retry,
            abort,
            counters,
        }
    }

    /// Sends `payload` (redacted here) until it is taken, refused, or the tries run out.
    pub fn post(&self, payload: &Value) -> Outcome {
        let mut body = payload.clone();
        crate::redact::redact_json(&mut body);
        let body = body.to_string();
        let attempts = self.retry.attempts.max(1);
        let mut history: Vec<String> = Vec::new();
        for attempt in 1..=attempts {
            if self.abort.load(Ordering::SeqCst) {
                history.push("gave up: sentry was ending".into());
                return self.outcome(false, attempt - 1, &history);
            }
            let response = self
                .agent
                .post(&self.url)
                .header("content-type", "application/json")
                .send(body.as_str());
            let wait = match response {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    match retry::verdict(status) {
                        Verdict::Delivered => {
                            history.push(format!("HTTP {status}"));
                            return self.outcome(true, attempt, &history);
                        }
                        Verdict::Refused => {
                            let text = response
                                .body_mut()
                                .with_config()
                                .limit(4096)
                                .read_to_string()
                                .unwrap_or_default();
                            let text: String =
                                text.trim().chars().take(DETAIL_BODY_CHARS).collect();
                            history.push(format!("HTTP {status} (not retried): {text}"));
                            return self.outcome(false, attempt, &history);
                        }
                        Verdict::RetryAfter => {
                            history.push(format!("HTTP {status}"));
                            response
                                .headers()
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| {
                                    retry::parse_retry_after(
                                        v,
                                        SystemTime::now(),
                                        self.retry.max_delay,
                                    )
                                })
                                .unwrap_or_else(|| self.retry.backoff(attempt))
                        }
                        Verdict::Retry => {
                            history.push(format!("HTTP {status}"));
                            self.retry.backoff(attempt)
                        }
                    }
                }
                Err(err) => {
                    history.push(err.to_string());
                    self.retry.backoff(attempt)
                }
            };
            if attempt == attempts {
                break;
            }
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            sleep_unless(&self.abort, wait);
        }
        self.outcome(false, attempts, &history)
    }

    fn outcome(&self, delivered: bool, attempts: u32, history: &[String]) -> Outcome {
        let counter = if delivered {
            &self.counters.delivered
        } else {
            &self.counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Outcome {
            delivered,
            attempts,
            detail: history.join("; "),
        }
    }
}

/// Sleeps for `wait`, or less when `abort` is set meanwhile.
fn sleep_unless(abort: &AtomicBool, wait: Duration) {
    let until = Instant::now() + wait;
    while !abort.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(TICK));
    }
}

/// What a receiver has been told about one run.
struct Firing {
    run_id: Option<i64>,
    /// Alertmanager: the run's alerts as last posted (one per label set).
    alerts: Vec<(Value, SystemTime, Arc<NotifyEvent>)>,
    last_post: Instant,
}

/// One alert receiver (Alertmanager, webhook or Slack URL) and what it has been told.
pub struct AlertWorker {
    pub sink: SinkKind,
    pub poster: Poster,
    pub ctx: Context,
    pub deliveries: DeliveryLog,
    /// How often Alertmanager alerts are posted again while they fire.
    pub repeat: Duration,
    pub shared: Shared,
    firing: HashMap<String, Firing>,
}

impl AlertWorker {
    pub fn new(
        sink: SinkKind,
        poster: Poster,
        ctx: Context,
        deliveries: DeliveryLog,
        repeat: Duration,
        shared: Shared,
    ) -> AlertWorker {
        AlertWorker {
            sink,
            poster,
            ctx,
            deliveries,
            repeat,
            shared,
            firing: HashMap::new(),
        }
    }

    /// Takes events until the queue closes or the notifier gives up.
    pub fn run(mut self, rx: Receiver<Item>) {
        loop {
            if self.shared.abort.load(Ordering::SeqCst) {
                break;
            }
            match rx.recv_timeout(TICK) {
                Ok(item) => {
                    self.shared.queued.fetch_sub(1, Ordering::SeqCst);
                    if self.shared.abort.load(Ordering::SeqCst) {
                        self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    self.handle(&item);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.record_dropped();
            if self.sink == SinkKind::Alertmanager {
                self.repost_due();
            }
        }
        self.record_dropped();
    }

    fn record_dropped(&mut self) {
        let notes = match self.shared.dropped_notes.lock() {
            Ok(mut notes) => std::mem::take(&mut *notes),
            Err(_) => return,
        };
        for note in notes {
            self.deliveries.record(&Delivery {
                run_id: note.run_id,
                sink: self.sink,
                event: note.event,
                kind: &note.kind,
                result: "dropped",
                attempts: 0,
                detail: "the delivery queue was full",
            });
        }
    }

    fn deliver(&mut self, run_id: Option<i64>, event: &str, kind: &str, payload: &Value) {
        let outcome = self.poster.post(payload);
        self.deliveries.record(&Delivery {
            run_id,
            sink: self.sink,
            event,
            kind,
            result: if outcome.delivered {
                "delivered"
            } else {
                "failed"
            },
            attempts: outcome.attempts,
            detail: &outcome.detail,
        });
        if !outcome.delivered {
            tracing::warn!(
                "{} delivery failed after {} attempt(s): {}",
                self.sink.as_str(),
                outcome.attempts,
                crate::redact::redact(&outcome.detail)
            );
        }
    }

    fn handle(&mut self, item: &Item) {
        match &*item.event {
            NotifyEvent::Incident { job, incident } => {
                let kind = kind_name(incident.kind);
                let key = job.key();
                let payload = match self.sink {
                    SinkKind::Alertmanager => {
                        let alert =
                            payload::alertmanager_alert(&self.ctx, job, incident, item.at, None);
                        let firing = self.firing.entry(key).or_insert_with(|| Firing {
                            run_id: job.run_id,
                            alerts: Vec::new(),
                            last_post: Instant::now(),
                        });
                        // A later incident with the same label set updates that alert and
                        // keeps its start.
                        let alert = match firing
                            .alerts
                            .iter_mut()
                            .find(|(a, _, _)| a["labels"] == alert["labels"])
                        {
                            Some(slot) => {
                                slot.0 = payload::alertmanager_alert(
                                    &self.ctx, job, incident, slot.1, None,
                                );
                                slot.2 = Arc::clone(&item.event);
                                slot.0.clone()
                            }
                            None => {
                                firing.alerts.push((
                                    alert.clone(),
                                    item.at,
                                    Arc::clone(&item.event),
                                ));
                                alert
                            }
                        };
                        firing.last_post = Instant::now();
                        Value::Array(vec![alert])
                    }
                    SinkKind::Webhook => {
                        self.mark_fired(key, job.run_id);
                        payload::webhook_incident(&self.ctx, job, incident, item.at)
                    }
                    SinkKind::Slack => {
                        self.mark_fired(key, job.run_id);
                        payload::slack_incident(&self.ctx, job, incident)
                    }
                    SinkKind::EventsLog => return,
                };
                self.deliver(job.run_id, "firing", &kind, &payload);
            }
            NotifyEvent::Ended {
                job,
                status,
                exit_code,
                runaway,
            } => {
                // Only what fired is resolved: a healthy run tells receivers nothing.
                let Some(firing) = self.firing.remove(&job.key()) else {
                    return;
                };
                let end = RunEnd {
                    status: status.clone(),
                    exit_code: *exit_code,
                    runaway: *runaway,
                };
                let payload = match self.sink {
                    SinkKind::Alertmanager => Value::Array(
                        firing
                            .alerts
                            .iter()
                            .filter_map(|(_, start, event)| match &**event {
                                NotifyEvent::Incident { job, incident } => {
                                    Some(payload::alertmanager_alert(
                                        &self.ctx,
                                        job,
                                        incident,
                                        *start,
                                        Some(item.at),
                                    ))
                                }
                                _ => None,
                            })
                            .collect(),
                    ),
                    SinkKind::Webhook => payload::webhook_resolved(&self.ctx, job, &end, item.at),
                    SinkKind::Slack => payload::slack_resolved(&self.ctx, job, &end),
                    SinkKind::EventsLog => return,
                };
                self.deliver(job.run_id, "resolved", "", &payload);
            }
            NotifyEvent::Finding { .. } | NotifyEvent::Decision { .. } => {}
        }
    }

    fn mark_fired(&mut self, key: String, run_id: Option<i64>) {
        self.firing.entry(key).or_insert_with(|| Firing {
            run_id,
            alerts: Vec::new(),
            last_post: Instant::now(),
        });
    }

    /// Posts again the alerts that have fired for `repeat` without news, so that
    /// Alertmanager does not resolve them on its own (`resolve_timeout`).
    fn repost_due(&mut self) {
        let due: Vec<String> = self
            .firing
            .iter()
            .filter(|(_, f)| !f.alerts.is_empty() && f.last_post.elapsed() >= self.repeat)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(firing) = self.firing.get_mut(&key) else {
                continue;
            };
            firing.last_post = Instant::now();
            let run_id = firing.run_id;
            let payload = Value::Array(firing.alerts.iter().map(|(a, _, _)| a.clone()).collect());
            let kind = firing
                .alerts
                .first()
                .and_then(|(a, _, _)| a["labels"]["kind"].as_str().map(str::to_string))
                .unwrap_or_default();
            self.deliver(run_id, "firing", &kind, &payload);
        }
    }
}

fn kind_name(kind: crate::model::FindingKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Writes the events log.
pub fn events_log_worker(mut log: EventsLog, ctx: Context, shared: Shared, rx: Receiver<Item>) {
    let mut warned = false;
    loop {
        if shared.abort.load(Ordering::SeqCst) {
            break;
        }
        let item = match rx.recv_timeout(TICK) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        shared.queued.fetch_sub(1, Ordering::SeqCst);
        let mut line = payload::event_line(&ctx, &item.event, item.at);
        crate::redact::redact_json(&mut line);
        match log.write_line(&line.to_string()) {
            Ok(()) => {
                shared.counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => {
                shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                if !warned {
                    crate::supervise::say!("sentry: cannot write the events log: {err}");
                    warned = true;
                }
            }
        }
    }
}
