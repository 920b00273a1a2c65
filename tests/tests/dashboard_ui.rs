//! The web UI as `sentry dashboard` serves it on the API's port: the page and its built assets
//! without the key, with their content types, the page with a strict Content-Security-Policy;
//! every API path still needs the key, and unknown paths stay the API's 404 problems. A binary
//! built without the UI serves a page that says how to build it. With `SENTRY_EXPECT_UI=1`
//! (`cargo xtask test`, which builds the UI first) the binary must embed the UI.

use sentry_tests::http::{request, Dashboard};

fn dashboard() -> (tempfile::TempDir, Dashboard) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dash = Dashboard::start(&dir.path().join("sentry.db"), &[], &[]);
    (dir, dash)
}

/// The `/assets/…` paths the page loads.
fn asset_paths(html: &str) -> Vec<String> {
    html.split('"')
        .filter(|s| s.starts_with("/assets/"))
        .map(String::from)
        .collect()
}

#[test]
fn the_page_and_its_assets_are_served_without_the_key() {
    let (_dir, dash) = dashboard();
    let page = request(dash.port, "GET", "/", &[], b"");
    assert_eq!(page.status, 200, "{page}");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{page}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"), "{page}");
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'"), "CSP: {csp}");
    assert!(!csp.contains("unsafe-eval"), "CSP: {csp}");
    let html = page.text();
    let assets = asset_paths(&html);
    if assets.is_empty() {
        assert_ne!(
            std::env::var("SENTRY_EXPECT_UI").as_deref(),
            Ok("1"),
            "SENTRY_EXPECT_UI=1 but this sentry was built without the web UI: {html}"
        );
        assert!(
            html.contains("cargo xtask dashboard"),
            "a binary without the UI must say how to build it: {html}"
        );
        assert_eq!(
            csp,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
        );
        return;
    }
    assert!(
        csp.starts_with("default-src 'self'; script-src 'self'"),
        "CSP: {csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "CSP: {csp}");
    assert!(
        !html.contains("<script>") && !html.contains(" style="),
        "the page has inline script or style, which its CSP forbids: {html}"
    );
    let mut kinds = Vec::new();
    for path in &assets {
        let res = request(dash.port, "GET", path, &[], b"");
        assert_eq!(res.status, 200, "{path} without the key: {res}");
        let kind = res.header("content-type").unwrap_or_default().to_string();
        assert!(
            kind == "text/javascript; charset=utf-8" || kind == "text/css; charset=utf-8",
            "{path}: content-type {kind}"
        );
        assert_eq!(
            res.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{path}: hashed assets are cached for good"
        );
        assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
        assert!(!res.body.is_empty(), "{path} is empty");
        kinds.push(kind);
    }
    assert!(
        kinds.iter().any(|k| k.starts_with("text/javascript")),
        "the page loads no script: {assets:?}"
    );
    let icon = request(dash.port, "GET", "/favicon.svg", &[], b"");
    assert_eq!(icon.status, 200, "{icon}");
    assert_eq!(icon.header("content-type"), Some("image/svg+xml"));
    // The page itself is served at `/` only, and HEAD works for an asset.
    let head = request(dash.port, "HEAD", &assets[0], &[], b"");
    assert_eq!(head.status, 200, "{head}");
}

#[test]
fn unknown_paths_still_need_the_key_and_are_404_problems() {
    let (_dir, dash) = dashboard();
    let auth = dash.auth();
    let auth = [("Authorization", auth.as_str())];
    for path in ["/nope", "/assets/nope.js", "/index.html", "/runs/x/y"] {
        let without = request(dash.port, "GET", path, &[], b"");
        without.problem(401);
        let with = request(dash.port, "GET", path, &auth, b"");
        let p = with.problem(404);
        assert!(
            p["detail"].as_str().unwrap_or_default().contains(path),
            "{path}: {p}"
        );
    }
    // Assets answer GET and HEAD only.
    let page = request(dash.port, "GET", "/", &[], b"").text();
    if let Some(asset) = asset_paths(&page).first() {
        request(dash.port, "POST", asset, &auth, b"").problem(404);
    }
    // API errors keep their shape next to the UI.
    let missing = request(dash.port, "GET", "/runs/999", &auth, b"");
    missing.problem(404);
}
