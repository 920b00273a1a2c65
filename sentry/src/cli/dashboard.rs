//! `sentry dashboard`: serves the HTTP API and the web UI on one loopback port, over the
//! store that `sentry run` writes. Prints where it listens and the URL that carries the API
//! key in its fragment (and opens it with `--open`); stops cleanly on Ctrl-C or SIGTERM.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;

use crate::api::db::{Db, DEFAULT_CONNECTIONS};
use crate::api::key::{self, ApiKey};
use crate::api::origins::Origins;
use crate::api::{self, ApiConfig, AppState};

/// Arguments of `sentry dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// TCP port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 3001)]
    pub port: u16,
    /// Address to listen on. Anything but loopback needs --allow-remote.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Allow listening on a non-loopback address (the API is then reachable from other hosts,
    /// over plain HTTP).
    #[arg(long)]
    pub allow_remote: bool,
    /// The store (default: $XDG_DATA_HOME/sentry/sentry.db, the invoking user's under sudo).
    #[arg(long, value_name = "PATH", env = "SENTRY_DB")]
    pub db: Option<PathBuf>,
    /// Another `Host` name the server answers to (e.g. behind a reverse proxy); repeatable.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
    /// Another web origin allowed to call the API from a page (exact scheme://host:port);
    /// repeatable.
    #[arg(long = "allow-origin", value_name = "URL")]
    pub allow_origins: Vec<String>,
    /// Open the dashboard in a browser (with xdg-open, or open on macOS). The opener gets the
    /// URL, key included, on its command line.
    #[arg(long)]
    pub open: bool,
    /// Seconds between heartbeat comments on an idle /stream.
    #[arg(long, value_name = "SECS", default_value_t = 15.0, hide = true)]
    pub heartbeat: f64,
}

/// Runs `sentry dashboard` until it is stopped.
pub fn run(args: &DashboardArgs) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sentry dashboard: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `sentry watch` hands the server it runs: the flag that stops it, and the figures only
/// the watching process knows.
type WatchHooks = (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::sync::Arc<dyn crate::metrics::LiveMetrics>,
);

/// Serves the API and UI on a thread of its own until `stop` is set (the way `sentry watch`
/// serves its jobs); the thread's result says why serving failed, if it did.
pub fn serve_in_background(
    args: DashboardArgs,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    live: std::sync::Arc<dyn crate::metrics::LiveMetrics>,
) -> std::io::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    std::thread::Builder::new()
        .name("sentry-api-main".into())
        .spawn(move || {
            let served = serve_until(&args, Some((std::sync::Arc::clone(&stop), live)));
            if let Err(err) = &served {
                eprintln!("sentry watch: the API server stopped: {err:#}");
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            served
        })
}

fn serve(args: &DashboardArgs) -> anyhow::Result<()> {
    serve_until(args, None)
}

/// Serves until SIGINT/SIGTERM, or until `stop` is set when given.
fn serve_until(args: &DashboardArgs, watch: Option<WatchHooks>) -> anyhow::Result<()> {
    if !args.bind.is_loopback() && !args.allow_remote {
        bail!(
            "refusing to listen on {}: it is not a loopback address, so the API would be \
             reachable from other hosts; pass --allow-remote if that is what you want",
            args.bind
        );
    }
    if !(args.heartbeat.is_finite() && args.heartbeat >= 0.05) {
        bail!("--heartbeat must be at least 0.05 seconds");
    }
    let db_path = match &args.db {
        Some(path) => path.clone(),
        None => crate::store::default_path().context("cannot place the store")?,
    };
    let db = Db::open(&db_path, DEFAULT_CONNECTIONS).context("the store is unusable")?;
    let key_dir = db_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let (key, source, warning) = key::load_or_create(&key_dir).context("cannot get the API key")?;
    if let Some(warning) = warning {
        eprintln!("sentry dashboard: warning: {warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sentry-api")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(listen(args, db, key, source, watch))
}

async fn listen(
    args: &DashboardArgs,
    db: Db,
    key: ApiKey,
    source: key::KeySource,
    watch: Option<WatchHooks>,
) -> anyhow::Result<()> {
    let wanted = SocketAddr::new(args.bind, args.port);
    let listener = match tokio::net::TcpListener::bind(wanted).await {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => bail!(
            "port {} on {} is already in use (another sentry dashboard?); pass another \
             --port, or --port 0 for any free one",
            args.port,
            args.bind
        ),
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
            bail!(
                "cannot listen on {}: no interface of this host has that address",
                args.bind
            )
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => bail!(
            "not allowed to listen on port {} (ports below 1024 need privileges); pick \
             another with --port",
            args.port
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot listen on {wanted}")),
    };
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let origins =
        Origins::new(addr, &args.allow_hosts, &args.allow_origins).map_err(anyhow::Error::msg)?;
    let config = ApiConfig {
        heartbeat: Duration::from_secs_f64(args.heartbeat),
        ..ApiConfig::default()
    };
    let state = AppState::new(db.clone(), key, origins, config);
    let stop_flag = watch.map(|(stop, live)| {
        state.set_live_metrics(live);
        stop
    });
    let app = api::router(state.clone());

    let shown = if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::from([127, 0, 0, 1]), addr.port())
    } else {
        addr
    };
    if !args.bind.is_loopback() {
        eprintln!(
            "sentry dashboard: warning: listening on {addr}, reachable from other hosts over \
             plain HTTP (the key and captured output travel unencrypted; put TLS in front). \
             Hosts accepted: {}; add names with --allow-host",
            state.origins().hosts().join(", ")
        );
    }
    // Handlers first: a SIGTERM sent as soon as the URL is printed must stop us cleanly.
    let stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match stop_flag {
        Some(flag) => Box::pin(async move {
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }),
        None => Box::pin(stop_signal().context("cannot install the signal handlers")?),
    };
    eprintln!("sentry dashboard: store {}", db.path().display());
    eprintln!("sentry dashboard: API key {source}");
    {
        let mut out = io::stdout().lock();
        // A closed stdout (a supervisor that stopped reading) must not stop the server.
        let _ = writeln!(out, "sentry dashboard: listening on http://{shown}");
        // The one place the key is shown: in the fragment, which browsers never send.
        let _ = writeln!(
            out,
            "sentry dashboard: open http://{shown}/#token={}",
            state.key().expose()
        );
        let _ = out.flush();
    }
    if !api::ui::is_built() {
        eprintln!(
            "sentry dashboard: note: this binary was built without the web UI; the page says \
             how to build it (cargo xtask dashboard, then rebuild sentry)"
        );
    }
    if args.open {
        open_in_browser(&format!("http://{shown}/#token={}", state.key().expose()));
    }

    let stopping = state.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        stop.await;
        eprintln!("sentry dashboard: stopping");
        stopping.shutdown();
    })
    .await
    .context("the server failed")?;
    Ok(())
}

/// The program that opens a URL in the user's browser on this system.
const OPENER: &str = if cfg!(target_os = "macos") {
    "open"
} else {
    "xdg-open"
};

/// Starts the system's URL opener on `url`, or says why not; never fails the server.
fn open_in_browser(url: &str) {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(OPENER))
            .find(|p| p.is_file())
    });
    let Some(opener) = found else {
        eprintln!(
            "sentry dashboard: --open: there is no {OPENER} on PATH; open the URL above in a \
             browser yourself"
        );
        return;
    };
    let spawned = std::process::Command::new(&opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            // Reaped off the serving path; xdg-open may wait for the browser.
            std::thread::spawn(move || {
                if let Ok(status) = child.wait() {
                    if !status.success() {
                        eprintln!(
                            "sentry dashboard: --open: {OPENER} failed ({status}); open the \
                             URL above in a browser yourself"
                        );
                    }
                }
            });
        }
        Err(err) => eprintln!(
            "sentry dashboard: --open: cannot start {} ({err}); open the URL above in a \
             browser yourself",
            opener.display()
        ),
    }
}

/// Installs the SIGINT and SIGTERM handlers; the future resolves on either.
fn stop_signal() -> io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}
