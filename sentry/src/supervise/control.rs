//! The control channel of a live `sentry run`: a Unix socket next to the store (its path is
//! in the run's row) on which the run takes `kill`, `pause`, `resume` and `restart` requests
//! from the API server, carries them out at once and answers with what happened. One JSON
//! line each way. The socket is 0600 in a 0700 directory, owned by the invoking user under
//! `sudo`: only that user (and root) can steer the run.
//!
//! The API server is a different process from the run: killing the run's command never
//! touches the server.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a client may ask a live run to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlAction {
    /// Stop the whole tree (SIGTERM, then SIGKILL after the grace period); no restart.
    Kill,
    /// Freeze the tree.
    Pause,
    /// Thaw it.
    Resume,
    /// Stop it and start the command again at once.
    Restart,
}

impl ControlAction {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ControlAction::Kill => "kill",
            ControlAction::Pause => "pause",
            ControlAction::Resume => "resume",
            ControlAction::Restart => "restart",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    action: ControlAction,
    actor: String,
}

/// The run's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlReply {
    /// True when the action was carried out (or there was nothing to do).
    pub ok: bool,
    /// What happened, in words ("stopped: the tree ended 0.1 s after SIGTERM").
    pub outcome: String,
    /// The run's state after the action: `running`, `paused`, `stopped`, `restarting`.
    pub status: String,
}

/// Why a request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nobody listens on the socket: the run has ended (or its sentry died).
    #[error("the run is not live (nothing listens on {socket}: {detail})")]
    NotLive {
        /// The socket.
        socket: PathBuf,
        /// The connect error.
        detail: String,
    },
    /// The run did not answer in time.
    #[error("the run did not answer within {0:?}")]
    Timeout(Duration),
    /// Reading or writing the socket failed, or the answer made no sense.
    #[error("control request failed: {0}")]
    Io(String),
}

/// Sends `action` to the run listening on `socket` and waits (at most `timeout`) for its
/// answer.
pub fn request(
    socket: &Path,
    action: ControlAction,
    actor: &str,
    timeout: Duration,
) -> Result<ControlReply, ControlError> {
    let mut stream = UnixStream::connect(socket).map_err(|e| ControlError::NotLive {
        socket: socket.to_path_buf(),
        detail: e.to_string(),
    })?;
    let io = |e: io::Error| {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            ControlError::Timeout(timeout)
        } else {
            ControlError::Io(e.to_string())
        }
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_string(&Request {
        action,
        actor: actor.to_string(),
    })
    .map_err(|e| ControlError::Io(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
        return Err(ControlError::Io(
            "the run closed the connection without answering".into(),
        ));
    }
    serde_json::from_str(answer.trim_end()).map_err(|e| ControlError::Io(e.to_string()))
}

/// Where a run with sentry pid `pid` listens, for a store at `db`: `control/<pid>.sock`
/// beside the store, or under the temporary directory when that path would be too long for
/// a Unix socket (108 bytes on Linux, 104 on macOS).
pub fn socket_path(db: &Path, pid: u32) -> PathBuf {
    let beside = db
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("control")
        .join(format!("{pid}.sock"));
    if beside.as_os_str().len() < 100 {
        return beside;
    }
    let uid = nix::unistd::Uid::effective().as_raw();
    std::env::temp_dir()
        .join(format!("sentry-control-{uid}"))
        .join(format!("{pid}.sock"))
}

/// Where job `n` of a `sentry watch` with pid `pid` listens: `<pid>-<n>.sock` in the same
/// place as [`socket_path`].
pub fn job_socket_path(db: &Path, pid: u32, n: u32) -> PathBuf {
    socket_path(db, pid).with_file_name(format!("{pid}-{n}.sock"))
}

/// A listening control socket; removed when dropped.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
    /// The listening socket, kept to wake the accepting thread when the socket file is gone.
    waker: Option<UnixListener>,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .finish()
    }
}

impl ControlServer {
    /// Listens on `path` and answers each request with `handler(action, actor)`, one at a
    /// time, on a thread of its own.
    pub fn start<F>(path: &Path, handler: F) -> io::Result<ControlServer>
    where
        F: Fn(ControlAction, &str) -> ControlReply + Send + 'static,
    {
        if let Some(dir) = path.parent() {
            crate::store::create_dirs(dir)?;
        }
        // A socket file left by a sentry that died with this pid cannot be bound over.
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        crate::store::give_to_invoking_user(path)?;
        let waker = listener.try_clone().ok();
        let stop = Arc::new(AtomicBool::new(false));
        let join = {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("sentry-control".into())
                .spawn(move || serve(listener, stop, handler))?
        };
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            join: Some(join),
            waker,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees `stop`: a connection, or, when the
        // socket file was removed under us (its directory deleted), shutting the listening
        // socket down (Linux wakes accept with an error).
        let _ = UnixStream::connect(&self.path);
        if let Some(waker) = &self.waker {
            // SAFETY: shutdown on a socket fd this struct owns (a clone of the listener).
            unsafe {
                libc::shutdown(waker.as_raw_fd(), libc::SHUT_RDWR);
            }
        }
        if let Some(join) = self.join.take() {
            // Never hang the run's end on it: a thread that could not be woken dies with the
            // process.
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            while !join.is_finished() && std::time::Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if join.is_finished() {
                let _ = join.join();
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve<F>(listener: UnixListener, stop: Arc<AtomicBool>, handler: F)
where
    F: Fn(ControlAction, &str) -> ControlReply,
{
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let _ = answer(stream, &handler);
    }
}

fn answer<F>(stream: UnixStream, handler: &F) -> io::Result<()>
where
    F: Fn(ControlAction, &str) -> ControlReply,
{
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    // A request is one short line; anything longer is not a client of ours.
    BufReader::new(&stream).take(4096).read_line(&mut line)?;
    let reply = match serde_json::from_str::<Request>(line.trim_end()) {
        Ok(req) => handler(req.action, &req.actor),
        Err(e) => ControlReply {
            ok: false,
            outcome: format!("malformed control request: {e}"),
            status: "unknown".into(),
        },
    };
    let mut out = serde_json::to_string(&reply).map_err(io::Error::other)?;
    out.push('\n');
    (&stream).write_all(out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_whose_socket_file_was_removed_still_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control").join("1.sock");
        let server = ControlServer::start(&path, |_, _| ControlReply {
            ok: true,
            outcome: String::new(),
            status: "running".into(),
        })
        .unwrap();
        // The store's directory is deleted while the run goes on.
        drop(dir);
        assert!(!path.exists());
        let asked = std::time::Instant::now();
        drop(server);
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "dropping the server hung for {:?}",
            asked.elapsed()
        );
    }

    #[test]
    fn a_request_reaches_the_handler_and_its_reply_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control").join("1.sock");
        let server = ControlServer::start(&path, |action, actor| ControlReply {
            ok: true,
            outcome: format!("{} by {actor}", action.as_str()),
            status: "paused".into(),
        })
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let reply = request(
            &path,
            ControlAction::Pause,
            "api 127.0.0.1",
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(reply.outcome, "pause by api 127.0.0.1");
        assert!(reply.ok);
        drop(server);
        assert!(!path.exists(), "the socket file outlived the server");
        let err = request(&path, ControlAction::Kill, "api", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, ControlError::NotLive { .. }), "got {err:?}");
    }

    #[test]
    fn garbage_gets_an_answer_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("2.sock");
        let _server = ControlServer::start(&path, |_, _| unreachable!()).unwrap();
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{\"action\":\"explode\"}\n").unwrap();
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer).unwrap();
        let reply: ControlReply = serde_json::from_str(answer.trim()).unwrap();
        assert!(!reply.ok);
        assert!(reply.outcome.contains("malformed"), "{}", reply.outcome);
    }

    #[test]
    fn long_store_paths_put_the_socket_in_the_temporary_directory() {
        let long = Path::new("/").join("d".repeat(120)).join("sentry.db");
        let p = socket_path(&long, 42);
        assert!(p.as_os_str().len() < 100, "{}", p.display());
        assert!(p.ends_with("42.sock"));
        let short = socket_path(Path::new("/home/u/.local/share/sentry/sentry.db"), 7);
        assert_eq!(
            short,
            Path::new("/home/u/.local/share/sentry/control/7.sock")
        );
    }
}
