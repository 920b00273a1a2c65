//! `POST /process/kill|restart|pause|resume` with `{"run_id": N}`: asks the live `sentry run`
//! supervising run N to act, over its control socket, and answers with what happened. Every
//! request is written to the audit log whatever its result (unknown run, ended run, timeout,
//! done), with the client's address.
//!
//! The run carries the action out itself; this server only relays it, so killing a run's
//! command never touches the server.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::ClientAddr;
use super::problem::{Problem, ProblemBody};
use super::runs::run_not_found;
use super::AppState;
use crate::store::AuditEntry;
use crate::supervise::control::{self, ControlAction, ControlError, ControlReply};

/// The audit actor of API requests.
const ACTOR: &str = "api";

/// Which run to act on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlRequest {
    /// The run's id.
    #[schema(minimum = 1)]
    pub run_id: i64,
}

/// What the run did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ControlResponse {
    /// The run's id.
    pub run_id: i64,
    /// What was asked: `kill`, `restart`, `pause` or `resume`.
    pub action: String,
    /// True when the action was carried out (or there was nothing to do).
    pub ok: bool,
    /// What happened, in words.
    pub outcome: String,
    /// The run's state afterwards: `running`, `paused`, `stopped`, `restarting`.
    pub status: String,
}

macro_rules! control_endpoint {
    ($name:ident, $action:expr, $path:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(
            post,
            path = $path,
            tag = "control",
            request_body = ControlRequest,
            responses(
                (status = 200, description = "The run answered; `ok` says whether it acted", body = ControlResponse),
                (status = 400, description = "The body is not `{\"run_id\": N}`", body = ProblemBody, content_type = "application/problem+json"),
                (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
                (status = 404, description = "No such run", body = ProblemBody, content_type = "application/problem+json"),
                (status = 409, description = "The run is not live (it ended, or takes no control requests)", body = ProblemBody, content_type = "application/problem+json"),
                (status = 413, description = "The body is too large", body = ProblemBody, content_type = "application/problem+json"),
                (status = 504, description = "The run did not answer in time", body = ProblemBody, content_type = "application/problem+json"),
            )
        )]
        pub async fn $name(
            State(state): State<AppState>,
            ClientAddr(client): ClientAddr,
            Json(req): Json<ControlRequest>,
        ) -> Result<Json<ControlResponse>, Problem> {
            act(state, $action, client, req.run_id).await
        }
    };
}

control_endpoint!(
    kill,
    ControlAction::Kill,
    "/process/kill",
    "Stops a live run's whole process tree (it does not restart)."
);
control_endpoint!(
    restart,
    ControlAction::Restart,
    "/process/restart",
    "Stops a live run's tree and starts its command again."
);
control_endpoint!(
    pause,
    ControlAction::Pause,
    "/process/pause",
    "Freezes a live run's tree."
);
control_endpoint!(
    resume,
    ControlAction::Resume,
    "/process/resume",
    "Thaws a paused run's tree."
);

async fn act(
    state: AppState,
    action: ControlAction,
    client: Option<SocketAddr>,
    run_id: i64,
) -> Result<Json<ControlResponse>, Problem> {
    let run = state.db().run(move |s| s.run(run_id)).await;
    let outcome: Result<ControlReply, Problem> = match run {
        Err(problem) => Err(problem),
        Ok(None) => Err(run_not_found(run_id)),
        Ok(Some(run)) => match run.control_socket.clone().filter(|_| run.is_live()) {
            None => Err(not_live(run_id, &format!("its status is {}", run.status))),
            Some(socket) => {
                let actor = match client {
                    Some(addr) => format!("{ACTOR} {addr}"),
                    None => ACTOR.to_string(),
                };
                let timeout = state.config().control_timeout;
                let asked = tokio::task::spawn_blocking(move || {
                    control::request(&socket, action, &actor, timeout)
                })
                .await;
                match asked {
                    Ok(Ok(reply)) => Ok(reply),
                    Ok(Err(ControlError::NotLive { .. })) => {
                        Err(not_live(run_id, "its sentry no longer listens"))
                    }
                    Ok(Err(ControlError::Timeout(t))) => Err(Problem::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "control-timeout",
                        format!(
                            "run {run_id} did not answer the {} request within {:.1} s; \
                             it may still carry it out",
                            action.as_str(),
                            t.as_secs_f64()
                        ),
                    )),
                    Ok(Err(err @ ControlError::Io(_))) => Err(Problem::new(
                        StatusCode::BAD_GATEWAY,
                        "control-failed",
                        format!("run {run_id}: {err}"),
                    )),
                    Err(join) => Err(Problem::internal(format!(
                        "the control request failed: {join}"
                    ))),
                }
            }
        },
    };
    let (result, detail) = match &outcome {
        Ok(reply) if reply.ok => ("ok".to_string(), reply.outcome.clone()),
        Ok(reply) => ("refused".to_string(), reply.outcome.clone()),
        Err(problem) => (
            format!("error {}", problem.status().as_u16()),
            problem.detail().to_string(),
        ),
    };
    let entry = AuditEntry {
        actor: ACTOR.to_string(),
        action: action.as_str().to_string(),
        target: format!("run {run_id}"),
        result,
        client: client.map(|a| a.ip().to_string()),
        detail: Some(detail),
    };
    if let Err(problem) = state.db().write(move |s| s.record_audit(&entry)).await {
        // The action is done (or not) whatever the audit log says; the client is told what
        // happened, and the operator learns that the record is missing.
        eprintln!(
            "sentry dashboard: could not record the audit entry for {} of run {run_id}: {}",
            action.as_str(),
            problem.detail()
        );
    }
    let reply = outcome?;
    Ok(Json(ControlResponse {
        run_id,
        action: action.as_str().to_string(),
        ok: reply.ok,
        outcome: reply.outcome,
        status: reply.status,
    }))
}

fn not_live(run_id: i64, why: &str) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "run-not-live",
        format!("run {run_id} is not live ({why}); only a running or paused run can be controlled"),
    )
}
