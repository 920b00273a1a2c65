//! The web dashboard: the built UI (`dashboard/dist`, embedded at compile time by
//! `build.rs`) served on the API's own port. `/` and the static assets need no key (they
//! hold no data; every data call the page makes sends the key); the page gets a strict
//! `Content-Security-Policy`. The UI routes with the URL fragment (`#/runs/3`), so no path
//! but the assets' needs serving: any other unknown path stays the API's 404 problem.
//!
//! A binary built without the UI (no `dashboard/dist` at build time) serves a page that says
//! how to build it.

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_FRAME_OPTIONS};
use axum::http::{HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};

use super::problem;

/// One built file of the dashboard.
#[derive(Debug)]
pub struct Asset {
    /// Its URL path, e.g. `/assets/index-3f2a.js`.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// The policy of the dashboard page: its own scripts, styles and API only; no inline
/// script, no framing, no plugins, no form posts, no `<base>` games.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The policy of the page shown when the UI was not built (it has no script at all).
const CSP_NOT_BUILT: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

/// Hashed assets never change under their name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// True when this binary embeds the built UI.
pub fn is_built() -> bool {
    asset("/index.html").is_some()
}

fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// True for a path served without the key: a built asset (the page itself is `/`).
pub fn is_public(path: &str) -> bool {
    path != "/index.html" && asset(path).is_some()
}

/// `GET /`: the dashboard page, or the page saying how to build it.
pub fn index() -> Response {
    match asset("/index.html") {
        Some(page) => html(page.bytes, CSP),
        None => html(NOT_BUILT.as_bytes(), CSP_NOT_BUILT),
    }
}

fn html(bytes: &'static [u8], csp: &'static str) -> Response {
    let mut res = Response::new(Body::from(bytes));
    let h = res.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// The router's fallback: a built asset for `GET`/`HEAD`, else the API's 404 problem.
pub async fn fallback(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    if method == Method::GET || method == Method::HEAD {
        if let Some(file) = asset(path).filter(|_| path != "/index.html") {
            let mut res = Response::new(Body::from(file.bytes));
            let h = res.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(file.content_type));
            if path.starts_with("/assets/") {
                h.insert(CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
            }
            return res;
        }
    }
    problem::no_route(method, uri).await.into_response()
}

const NOT_BUILT: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>sentry dashboard: UI not built</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:42rem;margin:3rem auto;padding:0 1rem}
code{background:#8882;padding:.1em .3em;border-radius:3px}</style></head>
<body>
<h1>sentry dashboard</h1>
<p>This <code>sentry</code> binary was built without its web UI (there was no
<code>dashboard/dist</code> when it was compiled).</p>
<p>Build the UI and then sentry, from the repository:</p>
<pre><code>cargo xtask dashboard   # npm ci + npm run build (needs Node 20)
cargo build --release -p sentry</code></pre>
<p>(<code>cargo xtask demo</code> and <code>cargo xtask test</code> do both.)</p>
<p>The HTTP API is running all the same: its description is at
<a href="/openapi.json">/openapi.json</a> (send <code>Authorization: Bearer &lt;key&gt;</code>;
the key is the <code>#token=</code> part of the URL <code>sentry dashboard</code> printed).</p>
</body>
</html>
"#;
