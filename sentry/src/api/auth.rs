//! The bearer-key layer: every request but [`PUBLIC_PATHS`] must carry
//! `Authorization: Bearer <key>`. Without it the answer is 401, or 429 with `Retry-After` once
//! the client has spent its failure budget (see [`super::ratelimit`]). A request with the
//! valid key is always served and never touches the limiter. The key is never logged, and a
//! failure's detail never echoes what was sent.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::Problem;
use super::AppState;

/// Paths served without the key: liveness and readiness (for probes that hold no secret),
/// and the dashboard page itself (a browser navigating to it cannot send a header; the
/// page reads the key from the URL fragment and sends it with every API call).
pub const PUBLIC_PATHS: &[&str] = &["/healthz", "/readyz", "/"];

/// True when `path` is served without the key: [`PUBLIC_PATHS`] and the dashboard's static
/// assets (scripts and styles, which hold no data).
pub fn is_public(path: &str) -> bool {
    PUBLIC_PATHS.contains(&path) || super::ui::is_public(path)
}

enum Credential {
    Valid,
    Missing,
    Wrong,
}

fn credential(headers: &HeaderMap, state: &AppState) -> Credential {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Credential::Missing;
    };
    let bytes = value.as_bytes();
    let scheme = b"bearer ";
    if bytes.len() > scheme.len() && bytes[..scheme.len()].eq_ignore_ascii_case(scheme) {
        let token = bytes[scheme.len()..].trim_ascii();
        if state.key().matches(token) {
            return Credential::Valid;
        }
    }
    Credential::Wrong
}

/// The client's IP address, when the server recorded it.
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Extractor: the client's address, when the server was started with connect info (a
/// router served without it still works, and records no address).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| *addr),
        ))
    }
}

/// Layer (via `middleware::from_fn_with_state`): lets through requests with the valid key
/// and public paths, answers the rest with 401 or 429.
pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let presented = match credential(req.headers(), &state) {
        Credential::Valid => return next.run(req).await,
        Credential::Missing => false,
        Credential::Wrong => true,
    };
    state.request_metrics().auth_failure();
    let ip = client_ip(&req).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    match state.limiter().fail(ip, presented) {
        Ok(()) => Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            if presented {
                "the API key is wrong; use the key from the URL `sentry dashboard` printed, \
                 or SENTRY_API_KEY"
            } else {
                "this endpoint needs `Authorization: Bearer <key>`; the key is in the URL \
                 `sentry dashboard` printed (after #token=), or SENTRY_API_KEY"
            },
        )
        .with_header(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"sentry\""),
        )
        .into_response(),
        Err(wait) => {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                format!("too many failed authentications from this address; retry in {secs} s"),
            )
            .with_header(RETRY_AFTER, HeaderValue::from(secs))
            .into_response()
        }
    }
}
