//! Which names this server answers to (the `Host` allowlist, against DNS rebinding: a page
//! on `evil.example` that rebinds its name to 127.0.0.1 still sends `Host: evil.example`)
//! and which web origins may read its answers (CORS, exact origins, never `*`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{HeaderName, AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::problem::Problem;
use super::AppState;

/// The `Host` values and origins a server accepts.
#[derive(Debug, Clone)]
pub struct Origins {
    hosts: Vec<String>,
    origins: Vec<HeaderValue>,
}

impl Origins {
    /// The defaults for a server listening on `addr` (its loopback names, and its own
    /// address when bound to a specific one) plus `--allow-host` and `--allow-origin`.
    pub fn new(
        addr: SocketAddr,
        extra_hosts: &[String],
        extra_origins: &[String],
    ) -> Result<Origins, String> {
        let port = addr.port();
        let mut names = vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "[::1]".to_string(),
        ];
        let ip = addr.ip();
        if !ip.is_unspecified() && !ip.is_loopback() {
            names.push(match ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            });
        }
        let mut hosts: Vec<String> = names.iter().map(|n| format!("{n}:{port}")).collect();
        if port == 80 {
            hosts.extend(names.iter().cloned());
        }
        for host in extra_hosts {
            let host = host.trim().to_ascii_lowercase();
            if host.is_empty() || host.contains(['/', ' ', '@']) {
                return Err(format!(
                    "--allow-host {host:?}: give a host name or address, optionally with \
                     :port (e.g. sentry.internal or 10.0.0.5:{port})"
                ));
            }
            if !host.starts_with('[') && host.matches(':').count() > 1 {
                return Err(format!(
                    "--allow-host {host:?}: write an IPv6 address in brackets, e.g. [fd00::5]:{port}"
                ));
            }
            let has_port = match host.strip_prefix('[') {
                Some(rest) => rest.contains("]:"),
                None => host.contains(':'),
            };
            if !has_port {
                hosts.push(format!("{host}:{port}"));
            }
            hosts.push(host);
        }
        let mut origins: Vec<HeaderValue> = names
            .iter()
            .filter_map(|n| HeaderValue::from_str(&format!("http://{n}:{port}")).ok())
            .collect();
        for origin in extra_origins {
            let o = origin.trim().trim_end_matches('/');
            let valid = (o.starts_with("http://") || o.starts_with("https://"))
                && !o
                    .split_once("://")
                    .is_some_and(|(_, rest)| rest.is_empty() || rest.contains('/'));
            if !valid {
                return Err(format!(
                    "--allow-origin {origin:?}: give an exact origin, scheme://host[:port] \
                     (e.g. https://dash.example:8443); wildcards are not allowed"
                ));
            }
            let value = HeaderValue::from_str(&o.to_ascii_lowercase())
                .map_err(|_| format!("--allow-origin {origin:?}: not a valid header value"))?;
            origins.push(value);
        }
        Ok(Origins { hosts, origins })
    }

    /// True when `host` (a `Host` header value) names this server.
    pub fn allows_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// The accepted `Host` values.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The CORS layer: these exact origins may call the API from a page (GET and POST, with
    /// `Authorization`, `Content-Type` and `Last-Event-ID`); any other origin gets no grant.
    pub fn cors(&self) -> CorsLayer {
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(self.origins.iter().cloned()))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                AUTHORIZATION,
                CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([RETRY_AFTER])
            .max_age(Duration::from_secs(600))
    }
}

/// Layer (via `middleware::from_fn_with_state`): 403 for a request whose `Host` (or, in
/// HTTP/2, `:authority`) is not one of this server's names.
pub async fn require_known_host(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match host {
        Some(host) if state.origins().allows_host(host) => next.run(req).await,
        Some(_) => Problem::new(
            StatusCode::FORBIDDEN,
            "unknown-host",
            "this server does not answer to that Host name (DNS rebinding protection); \
             use http://127.0.0.1:<port>, or start it with --allow-host NAME",
        )
        .into_response(),
        None => Problem::new(
            StatusCode::FORBIDDEN,
            "unknown-host",
            "the request has no Host header",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(extra_hosts: &[&str], extra_origins: &[&str]) -> Result<Origins, String> {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Origins::new(
            "127.0.0.1:3001".parse().unwrap(),
            &own(extra_hosts),
            &own(extra_origins),
        )
    }

    #[test]
    fn loopback_names_with_the_port_are_accepted_by_default() {
        let o = origins(&[], &[]).unwrap();
        for ok in [
            "127.0.0.1:3001",
            "localhost:3001",
            "LOCALHOST:3001",
            "[::1]:3001",
        ] {
            assert!(o.allows_host(ok), "{ok} refused");
        }
        for bad in [
            "evil.example",
            "evil.example:3001",
            "127.0.0.1:3002",
            "localhost",
            "127.0.0.1",
        ] {
            assert!(!o.allows_host(bad), "{bad} accepted");
        }
    }

    #[test]
    fn extra_hosts_without_a_port_get_the_servers_port_too() {
        let o = origins(&["Sentry.Internal", "10.0.0.5:8080"], &[]).unwrap();
        assert!(o.allows_host("sentry.internal:3001"));
        assert!(o.allows_host("sentry.internal"));
        assert!(o.allows_host("10.0.0.5:8080"));
        assert!(!o.allows_host("10.0.0.5:3001"));
    }

    #[test]
    fn origins_must_be_exact() {
        assert!(origins(&[], &["*"]).is_err());
        assert!(origins(&[], &["null"]).is_err());
        assert!(origins(&[], &["https://x.example/app"]).is_err());
        assert!(origins(&[], &["https://x.example/"]).is_ok());
        assert!(origins(&["a/b"], &[]).is_err());
    }
}
