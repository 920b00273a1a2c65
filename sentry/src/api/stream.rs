//! `GET /stream`: the store's event log (run starts and ends, samples, decisions, incidents,
//! control actions) as Server-Sent Events, live, for every run on this store, whichever
//! process wrote them.
//!
//! One poller task reads new events from the store every [`POLL_INTERVAL`] and broadcasts
//! them to every client; each client sends `id:` (the event id), `event:` (its type) and
//! `data:` (the event as JSON). A client that reconnects with `Last-Event-ID: N` (or, on a
//! first connect, `?after=N`) is first served the events after N from the store, then joins
//! the live broadcast, without gaps or duplicates; a client that falls behind the broadcast
//! is caught up from the store the same way. Comments are sent as heartbeats while nothing
//! happens. The stream is never cut by a request timeout; it ends when the server shuts down.
//!
//! Authentication is the same bearer header as everywhere else: the dashboard reads the stream
//! with `fetch()` (which can send headers, and `Last-Event-ID` too) instead of `EventSource`
//! (which cannot), so no key or ticket ever appears in a URL.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch, OnceCell};
use utoipa::IntoParams;

use super::problem::{Problem, ProblemBody};
use super::AppState;
use crate::store::EventRow;

/// How often the poller looks for new events.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Events read from the store per query (poller and catch-up).
const PAGE: u32 = 1000;

/// Events the broadcast holds for slow clients before they must catch up from the store.
const CHANNEL: usize = 4096;

/// One event, serialised once for every client.
#[derive(Debug)]
pub struct StreamEvent {
    id: i64,
    run_id: i64,
    kind: String,
    json: String,
}

impl StreamEvent {
    fn from_row(row: &EventRow) -> StreamEvent {
        StreamEvent {
            id: row.id,
            run_id: row.run_id,
            // `event:` must be one line; types are snake_case words.
            kind: row
                .kind
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect(),
            json: serde_json::to_string(row).unwrap_or_default(),
        }
    }

    fn to_sse(&self) -> Event {
        Event::default()
            .id(self.id.to_string())
            .event(&self.kind)
            .data(&self.json)
    }
}

/// The broadcast of new events and its poller, started with the first client.
#[derive(Debug)]
pub struct Hub {
    tx: broadcast::Sender<Arc<StreamEvent>>,
    poller: OnceCell<()>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            tx: broadcast::channel(CHANNEL).0,
            poller: OnceCell::new(),
        }
    }
}

impl Hub {
    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Starts the poller once, from the store's newest event: every event after that point
    /// is broadcast, so a client that subscribes and then reads its own starting point from
    /// the store misses nothing.
    async fn ensure_poller(&self, state: &AppState) -> Result<(), Problem> {
        self.poller
            .get_or_try_init(|| async {
                let start = state.db().run(|s| s.last_event_id()).await?;
                tokio::spawn(poll(state.clone(), start));
                Ok(())
            })
            .await
            .map(|_| ())
    }
}

async fn poll(state: AppState, mut position: i64) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut shutdown = state.shutdown_signal();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        loop {
            let after = position;
            let rows = match state.db().run(move |s| s.events_after(after, PAGE)).await {
                Ok(rows) => rows,
                Err(problem) => {
                    tracing::warn!("stream: reading new events failed: {}", problem.detail());
                    break;
                }
            };
            for row in &rows {
                position = row.id;
                // No receiver is not an error: the events stay in the store.
                let _ = state.hub().tx.send(Arc::new(StreamEvent::from_row(row)));
            }
            if rows.len() < PAGE as usize {
                break;
            }
        }
    }
}

/// Filters and the resume point of `GET /stream`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Only this run's events.
    #[param(minimum = 1)]
    pub run: Option<i64>,
    /// Start after this event id (for a first connect; a reconnect sends `Last-Event-ID`,
    /// which wins). Without either, the stream starts with the next new event.
    #[param(minimum = 0)]
    pub after: Option<i64>,
}

struct Cursor {
    state: AppState,
    rx: broadcast::Receiver<Arc<StreamEvent>>,
    pending: VecDeque<Arc<StreamEvent>>,
    last: i64,
    run: Option<i64>,
    caught_up: bool,
    shutdown: watch::Receiver<bool>,
}

impl Cursor {
    async fn next(&mut self) -> Option<Event> {
        loop {
            while let Some(ev) = self.pending.pop_front() {
                if ev.id <= self.last {
                    continue;
                }
                self.last = ev.id;
                if self.run.is_some_and(|r| r != ev.run_id) {
                    continue;
                }
                return Some(ev.to_sse());
            }
            if *self.shutdown.borrow() {
                return None;
            }
            if !self.caught_up {
                let after = self.last;
                match self
                    .state
                    .db()
                    .run(move |s| s.events_after(after, PAGE))
                    .await
                {
                    Ok(rows) => {
                        self.caught_up = rows.len() < PAGE as usize;
                        self.pending
                            .extend(rows.iter().map(|r| Arc::new(StreamEvent::from_row(r))));
                        continue;
                    }
                    Err(problem) => {
                        // Ending the stream makes the client reconnect with Last-Event-ID.
                        tracing::warn!("stream: catching up failed: {}", problem.detail());
                        return None;
                    }
                }
            }
            tokio::select! {
                _ = self.shutdown.changed() => return None,
                msg = self.rx.recv() => match msg {
                    Ok(ev) => self.pending.push_back(ev),
                    Err(RecvError::Lagged(_)) => self.caught_up = false,
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

/// Live events as Server-Sent Events (`id:` event id, `event:` type, `data:` the event as
/// JSON); resumable with `Last-Event-ID`; heartbeat comments while idle.
#[utoipa::path(
    get,
    path = "/stream",
    tag = "stream",
    params(
        StreamParams,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event id (sent by reconnecting clients)"),
    ),
    responses(
        (status = 200, description = "An endless text/event-stream; each event's data is one EventRow", body = crate::store::EventRow, content_type = "text/event-stream"),
        (status = 400, description = "Bad filter or resume id", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|id| *id >= 0)
                .ok_or_else(|| {
                    Problem::bad_request(
                        "Last-Event-ID must be an event id (a non-negative integer)",
                    )
                })?,
        ),
        None => params.after,
    };
    if resume.is_some_and(|id| id < 0) {
        return Err(Problem::bad_request(
            "after must be a non-negative event id",
        ));
    }
    state.hub().ensure_poller(&state).await?;
    // Subscribe before reading the starting point, so that nothing falls between the two.
    let rx = state.hub().tx.subscribe();
    let (last, caught_up) = match resume {
        Some(id) => (id, false),
        None => (state.db().run(|s| s.last_event_id()).await?, true),
    };
    let cursor = Cursor {
        shutdown: state.shutdown_signal(),
        state: state.clone(),
        rx,
        pending: VecDeque::new(),
        last,
        run: params.run,
        caught_up,
    };
    let events = stream::unfold(cursor, |mut c| async move {
        c.next().await.map(|ev| (Ok(ev), c))
    });
    Ok(Sse::new(events).keep_alive(
        KeepAlive::new()
            .interval(state.config().heartbeat)
            .text("heartbeat"),
    ))
}
