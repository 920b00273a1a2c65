//! Errors as RFC 7807 problem details (`application/problem+json`): the [`Problem`] handlers
//! return, and the layer that turns every other error response (axum's extractor rejections,
//! 405, tower-http's 413 and 408, the router's 404) into one, so a client parses a single shape.

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The body of an error response (RFC 7807).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemBody {
    /// A URI naming the kind of problem, e.g. `urn:problem-type:sentry:unauthorized`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this request, and what to do about it.
    pub detail: String,
}

/// An error answer: a status, a problem type, a human detail and any headers it needs
/// (`Retry-After`, `WWW-Authenticate`, `Allow`).
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    slug: &'static str,
    detail: Cow<'static, str>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem of type `urn:problem-type:sentry:<slug>`.
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Problem {
            status,
            slug,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(detail: impl Into<Cow<'static, str>>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// 500: a bug or an unexpected failure on this side.
    pub fn internal(detail: impl Into<Cow<'static, str>>) -> Self {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The human detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    fn body(&self) -> ProblemBody {
        ProblemBody {
            kind: format!("urn:problem-type:sentry:{}", self.slug),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: self.detail.to_string(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in self.headers {
            res.headers_mut().append(name, value);
        }
        res
    }
}

/// The slug for an error status that no handler named (a rejection or a layer's answer).
fn slug_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad-request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable-entity",
        StatusCode::TOO_MANY_REQUESTS => "rate-limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

/// How much of a foreign error body is kept as the problem's detail.
const MAX_FOREIGN_DETAIL: usize = 2048;

/// Layer (via `middleware::from_fn`): rewrites any 4xx/5xx response that is not already a
/// problem into one, keeping its status and headers and using its text as the detail.
pub async fn as_problem(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || is_problem(&res) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, MAX_FOREIGN_DETAIL)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    // tower-http's 413 says only "length limit exceeded".
    let detail = if text.is_empty() || status == StatusCode::PAYLOAD_TOO_LARGE {
        default_detail(status).into_owned()
    } else {
        text
    };
    let problem = Problem::new(status, slug_for(status), detail);
    let body = serde_json::to_vec(&problem.body()).unwrap_or_default();
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    Response::from_parts(parts, Body::from(body))
}

fn is_problem(res: &Response) -> bool {
    res.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON))
}

fn default_detail(status: StatusCode) -> Cow<'static, str> {
    let text = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            "this path does not take that method; the Allow header lists the ones it takes"
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than this API accepts (16 KiB)"
        }
        StatusCode::REQUEST_TIMEOUT => "the request took too long to answer",
        _ => status.canonical_reason().unwrap_or("error"),
    };
    text.into()
}

/// The router's fallback: no route has this path.
pub async fn no_route(method: Method, uri: Uri) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!(
            "no route {method} {}; GET /openapi.json lists the API",
            uri.path()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_has_the_rfc7807_members_and_media_type() {
        let res =
            Problem::new(StatusCode::CONFLICT, "run-not-live", "run 3 has ended").into_response();
        assert_eq!(res.status(), StatusCode::CONFLICT);
        assert_eq!(res.headers()[CONTENT_TYPE], PROBLEM_JSON);
        let body = Problem::new(StatusCode::CONFLICT, "run-not-live", "run 3 has ended").body();
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            serde_json::json!({
                "type": "urn:problem-type:sentry:run-not-live",
                "title": "Conflict",
                "status": 409,
                "detail": "run 3 has ended",
            })
        );
    }
}
