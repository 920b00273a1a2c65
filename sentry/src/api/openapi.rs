//! `GET /openapi.json`: the OpenAPI 3 document of this API, generated from the handlers' own
//! route attributes and the Rust types they exchange (utoipa), so that it cannot drift from
//! the router; and `GET /`, the dashboard page (see `ui`).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::problem::ProblemBody;
use super::runs::RunStatus;
use super::AppState;

/// The document's fixed parts; the paths are added by the router as it registers them.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sentry",
        description = "The HTTP API of `sentry dashboard`: runs, incidents, timelines, samples, \
                       metrics, a live event stream and control of live runs. Every endpoint \
                       except /healthz, /readyz and / needs `Authorization: Bearer <key>`. \
                       Errors are RFC 7807 problem details (application/problem+json)."
    ),
    // RunStatus is inlined where it is a query parameter; as a component, clients (the
    // dashboard's generated types) can name it too.
    components(schemas(ProblemBody, RunStatus)),
    modifiers(&BearerKey),
    security(("bearer" = [])),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "runs", description = "Supervised runs, their timelines and samples"),
        (name = "incidents", description = "What sentry did about runaways"),
        (name = "stream", description = "Live events (Server-Sent Events)"),
        (name = "control", description = "Kill, restart, pause or resume a live run"),
        (name = "audit", description = "Who did what through the API or CLI"),
        (name = "metrics", description = "Prometheus metrics"),
        (name = "meta", description = "This document and the dashboard page"),
    )
)]
pub struct ApiDoc;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// This API's OpenAPI 3 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI document", body = Object, content_type = "application/json"),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn document(State(state): State<AppState>) -> Response {
    let mut res = state.openapi_json().into_response();
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// The dashboard page (the embedded web UI, or a page saying how to build it).
#[utoipa::path(
    get,
    path = "/",
    tag = "meta",
    security(()),
    responses((status = 200, description = "An HTML page", body = String, content_type = "text/html"))
)]
pub async fn index() -> Response {
    super::ui::index()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::Value;

    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = serde_json::to_value(super::super::openapi_document()).unwrap();
        let mut ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let all = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all, "operationIds repeat: {ids:?}");
    }

    #[test]
    fn every_schema_reference_in_the_document_resolves() {
        let doc = serde_json::to_value(super::super::openapi_document()).unwrap();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        let missing: Vec<&str> = found
            .into_iter()
            .filter(|r| {
                r.strip_prefix("#/")
                    .map(|p| doc.pointer(&format!("/{p}")).is_none())
                    .unwrap_or(true)
            })
            .collect();
        assert!(
            missing.is_empty(),
            "the OpenAPI document refers to schemas it does not define: {missing:?}"
        );
    }

    /// The copy the dashboard generates its TypeScript types from.
    fn dashboard_copy() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboard/openapi.json")
    }

    /// Fails when `dashboard/openapi.json` differs from the document the router generates, so
    /// that a change to a payload type cannot reach the UI unnoticed: regenerating the copy
    /// regenerates the UI's types, and its strict type-check then names every use that broke.
    /// `SENTRY_UPDATE_OPENAPI=1` rewrites the copy instead.
    #[test]
    fn the_dashboards_copy_of_the_openapi_document_is_current() {
        let fresh = super::super::openapi_document()
            .to_pretty_json()
            .expect("the document serialises")
            + "\n";
        let path = dashboard_copy();
        if std::env::var("SENTRY_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
            std::fs::write(&path, &fresh).expect("dashboard/openapi.json is writable");
            return;
        }
        let copy = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            copy == fresh,
            "{} is not the API's current OpenAPI document; regenerate it with \
             `SENTRY_UPDATE_OPENAPI=1 cargo test -p sentry --lib openapi`, then rebuild the \
             dashboard (`cargo xtask dashboard`) and fix what its type-check reports",
            path.display()
        );
    }
}
