//! A real `sentry dashboard` on an ephemeral loopback port, and a small HTTP/1.1 client that
//! talks to it over a plain TCP socket. Hand-written on purpose: the tests need to send what
//! ordinary clients refuse to (a foreign `Host`, a bare OPTIONS preflight, an oversized body)
//! and to read an endless event stream a chunk at a time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sentry_bin;

/// A running `sentry dashboard`, killed when dropped.
#[derive(Debug)]
pub struct Dashboard {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    /// The API key, from the `#token=` URL it printed.
    pub key: String,
    /// Its stdout lines up to the URL.
    pub stdout: Vec<String>,
    stderr: PathBuf,
}

impl Dashboard {
    /// Starts `sentry dashboard --port 0 --db <db> <extra>` (SSE heartbeat every 0.3 s) and
    /// waits for it to say where it listens. `SENTRY_API_KEY` is removed from its environment
    /// unless `env` sets it.
    pub fn start(db: &Path, extra: &[&str], env: &[(&str, &str)]) -> Dashboard {
        let stderr = db.with_extension("dashboard.stderr");
        let mut cmd = Command::new(sentry_bin());
        cmd.args(["dashboard", "--port", "0", "--heartbeat", "0.3", "--db"])
            .arg(db)
            .args(extra)
            .env_remove("SENTRY_API_KEY")
            .env_remove("SENTRY_DB")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("a file for the dashboard's stderr"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("sentry dashboard can be started");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut port, mut key) = (None, None);
        while port.is_none() || key.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
                        port = rest.trim().parse::<u16>().ok();
                    }
                    if let Some(rest) = line.split("/#token=").nth(1) {
                        key = Some(rest.trim().to_string());
                    }
                    lines.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    panic!(
                        "sentry dashboard did not print its port and URL (exit {status:?}); \
                         stdout: {lines:?}; stderr:\n{}",
                        std::fs::read_to_string(&stderr).unwrap_or_default()
                    );
                }
            }
        }
        Dashboard {
            child,
            port: port.unwrap_or_default(),
            key: key.unwrap_or_default(),
            stdout: lines,
            stderr,
        }
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// `Host` value of its own loopback address.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The bearer header with its key.
    pub fn auth(&self) -> String {
        format!("Bearer {}", self.key)
    }

    /// GET `path` with the key.
    pub fn get(&self, path: &str) -> Response {
        let auth = self.auth();
        request(self.port, "GET", path, &[("Authorization", &auth)], b"")
    }

    /// GET `path` with the key, expecting 200 and JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let res = self.get(path);
        assert_eq!(res.status, 200, "GET {path}: expected 200, got {res}");
        res.json()
    }

    /// POST a JSON `body` to `path` with the key.
    pub fn post_json(&self, path: &str, body: &Value) -> Response {
        let auth = self.auth();
        request(
            self.port,
            "POST",
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sentry dashboard did not stop within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The (de-chunked) body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (fails the test with the response when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("expected a JSON body ({e}), got {self}"))
    }

    /// Checks that this is an RFC 7807 problem with `status`, and returns it.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "expected status {status}, got {self}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "expected a problem+json error, got {self}"
        );
        let p = self.json();
        assert!(
            p["type"].is_string() && p["title"].is_string() && p["detail"].is_string(),
            "problem lacks type/title/detail: {p}"
        );
        assert_eq!(p["status"], status, "problem status member: {p}");
        p
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {:?} {}", self.status, self.headers, self.text())
    }
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the dashboard");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("socket timeout");
    stream
}

fn write_request(
    stream: &mut TcpStream,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .expect("send the request");
}

fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .expect("read the status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (status, headers)
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
}

/// Reads one chunk of a chunked body; `None` at its end.
fn read_chunk(reader: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut size_line = String::new();
    if reader.read_line(&mut size_line)? == 0 {
        return Ok(None);
    }
    let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
        .map_err(|e| std::io::Error::other(format!("bad chunk size {size_line:?}: {e}")))?;
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk)?;
    chunk.truncate(size);
    Ok((size > 0).then_some(chunk))
}

/// One request on a fresh connection (`Connection: close`); `Host` is the server's own
/// unless `headers` has one.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = connect(port);
    write_request(&mut stream, port, method, path, headers, body, true);
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let mut body = Vec::new();
    if is_chunked(&headers) {
        while let Some(chunk) = read_chunk(&mut reader).expect("read a chunk") {
            body.extend(chunk);
        }
    } else if method != "HEAD" {
        // The server closes after answering: read to the end.
        let _ = reader.read_to_end(&mut body);
    }
    Response {
        status,
        headers,
        body,
    }
}

/// One server-sent event, or a comment (`kind` = `comment`).
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// `id:`.
    pub id: Option<i64>,
    /// `event:` (or `comment`).
    pub kind: String,
    /// `data:` lines joined, or the comment text.
    pub data: String,
}

impl SseEvent {
    /// The data as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {self:?}"))
    }
}

/// An open `GET /stream`.
pub struct SseClient {
    reader: BufReader<TcpStream>,
    /// Status and headers of the answer.
    pub status: u16,
    /// Headers of the answer.
    pub headers: Vec<(String, String)>,
    text: String,
    body: Vec<u8>,
}

impl SseClient {
    /// Opens `path` (e.g. `/stream?run=3`) with `headers`.
    pub fn open(port: u16, path: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut stream = connect(port);
        write_request(&mut stream, port, "GET", path, headers, b"", false);
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader);
        let mut body = Vec::new();
        if status != 200 {
            if is_chunked(&headers) {
                while let Ok(Some(chunk)) = read_chunk(&mut reader) {
                    body.extend(chunk);
                }
            } else {
                let len = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                body.resize(len, 0);
                let _ = reader.read_exact(&mut body);
            }
        }
        SseClient {
            reader,
            status,
            headers,
            text: String::new(),
            body,
        }
    }

    /// The error body when the stream was refused.
    pub fn response(&self) -> Response {
        Response {
            status: self.status,
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }

    /// The next event or comment, or `None` when `timeout` passes first or the stream ends.
    pub fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                return Some(parse_event(&block));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left))
                .expect("socket timeout");
            match read_chunk(&mut self.reader) {
                Ok(Some(chunk)) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(None) => return None,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(e) => panic!("reading the event stream failed: {e}"),
            }
        }
    }

    /// The next event that is not a comment.
    pub fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self.next(left)?;
            if ev.kind != "comment" {
                return Some(ev);
            }
        }
    }
}

fn parse_event(block: &str) -> SseEvent {
    let mut ev = SseEvent {
        id: None,
        kind: "message".into(),
        data: String::new(),
    };
    let mut data = Vec::new();
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            ev.kind = "comment".into();
            data.push(comment.trim().to_string());
        } else if let Some((field, value)) = line.split_once(':') {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => ev.id = value.parse().ok(),
                "event" => ev.kind = value.to_string(),
                "data" => data.push(value.to_string()),
                _ => {}
            }
        }
    }
    ev.data = data.join("\n");
    ev
}
