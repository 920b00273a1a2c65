//! Running a command on a pseudo-terminal, for the backends that capture output by reading it
//! (Linux without privileges, macOS): the command gets a terminal of its own, in a new session
//! whose controlling terminal it is, so it keeps line buffering, colours and prompts; sentry
//! reads everything it prints from the PTY master, copies it to its own stdout unchanged, and
//! types sentry's keystrokes into it.
//!
//! This module owns the terminal plumbing only: opening the PTY, starting the child on it,
//! window sizes, sentry's own terminal mode, and the read/forward loop ([`Session`]). It does
//! not sample, signal or reap the process tree.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{grantpt, posix_openpt, unlockpt, PtyMaster, Winsize};
use nix::sys::termios::{self, SetArg, Termios};

use super::spawn::SpawnError;

/// Bytes asked for per read of the master; one read becomes one output chunk.
const READ_SIZE: usize = 64 * 1024;

/// Reads per [`Session::pump`] call at most, so a flood of output cannot starve sampling and
/// exit detection.
const MAX_READS_PER_PUMP: usize = 64;

/// Input bytes held back while the child does not read its terminal; beyond this, sentry
/// stops reading its own stdin (the keystrokes wait in sentry's terminal instead).
const MAX_PENDING_INPUT: usize = 64 * 1024;

/// Why a command could not be started on a pseudo-terminal.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    /// The PTY could not be created.
    #[error(
        "cannot {what} a pseudo-terminal: {source}; the PTY capture needs /dev/ptmx and a \
         mounted devpts (in a container, mount it: `mount -t devpts devpts /dev/pts`)"
    )]
    Open {
        /// open / grant / unlock / name / open the slave of / size.
        what: &'static str,
        /// The system error.
        source: Errno,
    },
    /// The command could not be started.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

mod ioctl {
    use nix::pty::Winsize;

    nix::ioctl_read_bad!(get_window_size, libc::TIOCGWINSZ, Winsize);
    nix::ioctl_write_ptr_bad!(set_window_size, libc::TIOCSWINSZ, Winsize);
    nix::ioctl_write_int_bad!(set_controlling_tty, libc::TIOCSCTTY);
}

/// The window size of the terminal `fd` refers to, or `None` when it is not a terminal.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<Winsize> {
    let mut size = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` to the valid pointer it is given.
    unsafe { ioctl::get_window_size(fd.as_raw_fd(), &mut size) }.ok()?;
    (size.ws_col > 0 && size.ws_row > 0).then_some(size)
}

/// The size of sentry's own terminal: stdout's, else stderr's. `None` when neither is one.
pub fn host_window_size() -> Option<Winsize> {
    window_size(io::stdout().as_fd()).or_else(|| window_size(io::stderr().as_fd()))
}

/// Sets the window size of a PTY through its master; the kernel sends SIGWINCH to the
/// terminal's foreground process group when the size changes.
pub fn set_window_size(master: BorrowedFd<'_>, size: &Winsize) -> Result<(), Errno> {
    // SAFETY: TIOCSWINSZ reads one `struct winsize` from the valid pointer it is given.
    unsafe { ioctl::set_window_size(master.as_raw_fd(), size) }.map(drop)
}

/// A new pseudo-terminal pair. Both ends are close-on-exec, so that no other child started by
/// sentry meanwhile holds the slave open (which would keep the master from ever reporting
/// that the command's side has closed).
#[derive(Debug)]
pub struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

impl Pty {
    /// Opens a PTY, sized like `size` when given.
    pub fn open(size: Option<&Winsize>) -> Result<Pty, PtyError> {
        let err = |what| move |source| PtyError::Open { what, source };
        let master = open_master().map_err(err("open"))?;
        grantpt(&master).map_err(err("grant access to"))?;
        unlockpt(&master).map_err(err("unlock"))?;
        let name = slave_name(&master).map_err(err("name the slave of"))?;
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            // Not sentry's controlling terminal: the child makes it its own.
            .custom_flags(libc::O_NOCTTY)
            .open(&name)
            .map_err(|e| PtyError::Open {
                what: "open the slave of",
                source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
        // SAFETY: `into_raw_fd` hands over sole ownership of the open master descriptor.
        let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
        if let Some(size) = size {
            set_window_size(master.as_fd(), size).map_err(err("size"))?;
        }
        Ok(Pty {
            master,
            slave: slave.into(),
        })
    }

    /// The master side.
    pub fn master(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }
}

#[cfg(target_os = "linux")]
fn open_master() -> Result<PtyMaster, Errno> {
    posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
}

#[cfg(not(target_os = "linux"))]
fn open_master() -> Result<PtyMaster, Errno> {
    // macOS's posix_openpt takes no O_CLOEXEC; set it straight after.
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY)?;
    fcntl(
        master.as_raw_fd(),
        FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    Ok(master)
}

#[cfg(target_os = "linux")]
fn slave_name(master: &PtyMaster) -> Result<String, Errno> {
    nix::pty::ptsname_r(master)
}

#[cfg(not(target_os = "linux"))]
fn slave_name(master: &PtyMaster) -> Result<String, Errno> {
    static PTSNAME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _only_caller = PTSNAME.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: ptsname returns a static buffer; the lock keeps sentry's threads from calling
    // it concurrently and the name is copied out before the lock is released.
    unsafe { nix::pty::ptsname(master) }
}

/// A command started on a PTY.
#[derive(Debug)]
pub struct PtyChild {
    /// The master side, to read what the command prints and type into it.
    pub master: OwnedFd,
    /// The command (session leader and process group leader of its own session).
    pub child: Child,
}

/// Starts `command` on the slave of `pty` as stdin, stdout and stderr, in a new session with
/// the PTY as controlling terminal. On Linux the child is killed if the calling thread ends
/// (`PR_SET_PDEATHSIG`), so call this from the thread that supervises the run. `name` is the
/// command as the user gave it, for error messages.
pub fn spawn(mut command: Command, name: &OsStr, pty: Pty) -> Result<PtyChild, PtyError> {
    let Pty { master, slave } = pty;
    let dup = |fd: &OwnedFd| {
        fd.try_clone().map_err(|e| {
            PtyError::Spawn(SpawnError::Other {
                program: name.to_string_lossy().into_owned(),
                source: e,
            })
        })
    };
    command
        .stdin(Stdio::from(dup(&slave)?))
        .stdout(Stdio::from(dup(&slave)?))
        .stderr(Stdio::from(slave));
    #[cfg(target_os = "linux")]
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (setsid, ioctl, prctl, getppid); it allocates nothing
    // (nix's errors are plain errno values).
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid()?;
            // fd 0 is the slave by now; a session leader without a controlling terminal
            // acquires it.
            ioctl::set_controlling_tty(0, 0)?;
            #[cfg(target_os = "linux")]
            {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                // sentry may have died between fork and prctl; then nobody supervises us.
                if nix::unistd::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|err| PtyError::Spawn(SpawnError::from_exec(name, err)))?;
    // `command` holds the parent's copies of the slave; they must be closed now, or the master
    // would never report the end of the command's output.
    drop(command);
    Ok(PtyChild { master, child })
}

/// Where the command's terminal output is copied, besides the observation stream.
#[derive(Debug, Default)]
pub enum Echo {
    /// sentry's own stdout (what a user at a terminal expects).
    #[default]
    Stdout,
    /// Nowhere (the observations only).
    Discard,
    /// An open file or pipe.
    File(File),
}

/// What is typed into the command's terminal.
#[derive(Debug, Default)]
pub enum Input {
    /// sentry's stdin, when it is a terminal and sentry is in its foreground; that terminal
    /// is switched to raw mode while the command runs and restored afterwards. Anything else
    /// (a pipe, a file, /dev/null, a closed stdin, a background job) is not forwarded.
    #[default]
    Stdin,
    /// Nothing.
    None,
    /// Bytes read from this descriptor as they arrive (a pipe, a file), until its end.
    Fd(OwnedFd),
}

/// How a PTY run talks to sentry's own terminal.
#[derive(Debug)]
pub struct PtyOptions {
    /// Where output is copied.
    pub echo: Echo,
    /// What is typed into the command's terminal.
    pub input: Input,
    /// Give the PTY the size of sentry's terminal and follow its resizes (SIGWINCH).
    pub follow_window_size: bool,
}

impl Default for PtyOptions {
    fn default() -> Self {
        PtyOptions {
            echo: Echo::Stdout,
            input: Input::Stdin,
            follow_window_size: true,
        }
    }
}

/// Set while some run forwards sentry's stdin: one reader at a time, and one saved terminal
/// mode to restore.
static STDIN_CLAIMED: AtomicBool = AtomicBool::new(false);

/// A terminal switched to raw mode; dropping it restores the mode it had (on every path out,
/// panics included).
#[derive(Debug)]
pub struct RawInput<'fd> {
    fd: BorrowedFd<'fd>,
    saved: Termios,
}

impl<'fd> RawInput<'fd> {
    /// Switches the terminal `fd` to raw mode: keystrokes (Ctrl-C included) pass through
    /// byte by byte, unechoed, for the command's own terminal to interpret, and output is not
    /// processed either: the command's terminal already did that, and a full-screen program
    /// that moves the cursor with a bare `\n` must not get a `\r` added on the way. (So a
    /// line that sentry itself prints meanwhile must end in `\r\n`; see [`terminal_is_raw`].)
    pub fn enter(fd: BorrowedFd<'fd>) -> Result<RawInput<'fd>, Errno> {
        let saved = termios::tcgetattr(fd)?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw)?;
        Ok(RawInput { fd, saved })
    }
}

impl Drop for RawInput<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, SetArg::TCSANOW, &self.saved);
    }
}

/// Whether a run is forwarding sentry's stdin right now, with sentry's terminal in raw mode:
/// a message sentry prints to that terminal meanwhile should end its lines with `\r\n`.
pub fn terminal_is_raw() -> bool {
    STDIN_CLAIMED.load(Ordering::SeqCst)
}

/// sentry's stdin, claimed for forwarding, with its terminal in raw mode.
#[derive(Debug)]
struct StdinClaim {
    raw: Option<RawInput<'static>>,
}

impl StdinClaim {
    /// Claims stdin when it is a terminal in whose foreground sentry runs and no other run
    /// has claimed it. `master` is the run's own PTY: when sentry was started with stdin
    /// closed, the PTY may have been given descriptor 0.
    fn take(master: BorrowedFd<'_>) -> Option<StdinClaim> {
        // SAFETY: fd 0 stays open for the life of the process as far as sentry is concerned
        // (it never closes its stdin); if it is closed, every call below fails with EBADF.
        let fd = unsafe { BorrowedFd::borrow_raw(libc::STDIN_FILENO) };
        if !nix::unistd::isatty(fd.as_raw_fd()).unwrap_or(false) || same_file(fd, master) {
            return None;
        }
        // A background job that touched its terminal would be stopped (SIGTTIN/SIGTTOU).
        match nix::unistd::tcgetpgrp(fd) {
            Ok(group) if group == nix::unistd::getpgrp() => {}
            _ => return None,
        }
        if STDIN_CLAIMED.swap(true, Ordering::SeqCst) {
            return None;
        }
        match RawInput::enter(fd) {
            Ok(raw) => Some(StdinClaim { raw: Some(raw) }),
            Err(_) => {
                STDIN_CLAIMED.store(false, Ordering::SeqCst);
                None
            }
        }
    }

    fn fd(&self) -> Option<BorrowedFd<'static>> {
        self.raw.as_ref().map(|raw| raw.fd)
    }
}

impl Drop for StdinClaim {
    fn drop(&mut self) {
        // Restore the terminal before the next run may claim it.
        drop(self.raw.take());
        STDIN_CLAIMED.store(false, Ordering::SeqCst);
    }
}

fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    use nix::sys::stat::fstat;
    match (fstat(a.as_raw_fd()), fstat(b.as_raw_fd())) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// Where typed bytes come from during a session.
#[derive(Debug)]
enum Source {
    Stdin(StdinClaim),
    Fd(OwnedFd),
}

impl Source {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Source::Stdin(claim) => claim.fd(),
            Source::Fd(fd) => Some(fd.as_fd()),
        }
    }
}

/// SIGWINCH delivered to a socket, so that `poll` wakes on resizes.
#[derive(Debug)]
struct Resizes {
    wake: UnixStream,
    id: signal_hook::SigId,
}

impl Resizes {
    fn watch() -> io::Result<Resizes> {
        let (wake, notify) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let id = signal_hook::low_level::pipe::register(signal_hook::consts::SIGWINCH, notify)?;
        Ok(Resizes { wake, id })
    }

    /// Empties the socket; true when a resize came in.
    fn take(&mut self) -> bool {
        let mut buf = [0u8; 64];
        let mut any = false;
        while let Ok(n) = io::Read::read(&mut self.wake, &mut buf) {
            if n == 0 {
                break;
            }
            any = true;
        }
        any
    }
}

impl Drop for Resizes {
    fn drop(&mut self) {
        signal_hook::low_level::unregister(self.id);
    }
}

/// What one [`Session::pump`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pumped {
    /// Output chunks read.
    pub chunks: usize,
    /// The master reported that no process holds the terminal any more (EIO on Linux, end
    /// of file on macOS).
    pub hung_up: bool,
}

/// The terminal side of a running command: reads the master, copies output, forwards input
/// and window sizes.
#[derive(Debug)]
pub struct Session {
    master: File,
    hung_up: bool,
    echo: Echo,
    source: Option<Source>,
    pending: Vec<u8>,
    resizes: Option<Resizes>,
    buf: Vec<u8>,
}

impl Session {
    /// Starts handling the terminal of `master` (sentry's stdin is claimed here, if it is to be
    /// forwarded).
    pub fn new(master: OwnedFd, options: PtyOptions) -> io::Result<Session> {
        let flags = fcntl(master.as_raw_fd(), FcntlArg::F_GETFL)?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(master.as_raw_fd(), FcntlArg::F_SETFL(flags))?;
        let source = match options.input {
            Input::Stdin => StdinClaim::take(master.as_fd()).map(Source::Stdin),
            Input::None => None,
            Input::Fd(fd) => Some(Source::Fd(fd)),
        };
        // Resizes only matter when there is a terminal to follow; a failure to watch them
        // leaves the first size in place.
        let resizes = (options.follow_window_size && host_window_size().is_some())
            .then(Resizes::watch)
            .and_then(Result::ok);
        Ok(Session {
            master: File::from(master),
            hung_up: false,
            echo: options.echo,
            source,
            pending: Vec::new(),
            resizes,
            buf: vec![0; READ_SIZE],
        })
    }

    /// Whether sentry's stdin is being forwarded (and its terminal is in raw mode).
    pub fn forwards_stdin(&self) -> bool {
        matches!(self.source, Some(Source::Stdin(_)))
    }

    /// Stops forwarding input and restores sentry's terminal.
    pub fn stop_input(&mut self) {
        self.source = None;
        self.pending.clear();
    }

    /// Waits up to `timeout` for output, input or a resize, and handles what came: every
    /// read of the master is echoed, then handed to `on_output`.
    pub fn pump(&mut self, timeout: Duration, on_output: &mut dyn FnMut(&[u8])) -> Pumped {
        let (master_ready, master_writable, input_ready, resized) = self.wait(timeout);
        let mut pumped = Pumped::default();
        // After a hang-up the master is not polled (it would report POLLHUP at once, forever),
        // but a process may reopen the terminal (`/dev/tty`), so it is still read each time.
        if master_ready || self.hung_up {
            pumped = self.read_master(on_output);
        }
        if resized {
            if let Some(size) = host_window_size() {
                let _ = set_window_size(self.master.as_fd(), &size);
            }
        }
        if input_ready {
            self.read_input();
        }
        if master_writable || !self.pending.is_empty() {
            self.write_pending();
        }
        pumped
    }

    /// Reads what is left once the command's processes are gone, until the master reports
    /// the hang-up or `deadline` passes; true when everything was read.
    pub fn drain(&mut self, deadline: Instant, on_output: &mut dyn FnMut(&[u8])) -> bool {
        self.stop_input();
        loop {
            let pumped = self.read_master(on_output);
            if pumped.hung_up {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if pumped.chunks == 0 {
                let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
                let wait = (deadline - now).min(Duration::from_millis(50));
                let _ = poll(&mut fds, poll_timeout(wait));
            }
        }
    }

    fn wait(&mut self, timeout: Duration) -> (bool, bool, bool, bool) {
        let mut fds = Vec::with_capacity(3);
        let mut master_at = None;
        if !self.hung_up {
            let mut events = PollFlags::POLLIN;
            if !self.pending.is_empty() {
                events |= PollFlags::POLLOUT;
            }
            master_at = Some(fds.len());
            fds.push(PollFd::new(self.master.as_fd(), events));
        }
        let mut input_at = None;
        if let Some(fd) = self.source.as_ref().and_then(Source::fd) {
            if self.pending.len() < MAX_PENDING_INPUT {
                input_at = Some(fds.len());
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
        }
        let mut resize_at = None;
        if let Some(resizes) = &self.resizes {
            resize_at = Some(fds.len());
            fds.push(PollFd::new(resizes.wake.as_fd(), PollFlags::POLLIN));
        }
        // EINTR (a signal) only means an early look.
        let _ = poll(&mut fds, poll_timeout(timeout));
        let revents = |at: Option<usize>| {
            at.and_then(|i| fds.get(i))
                .and_then(|fd| fd.revents())
                .unwrap_or(PollFlags::empty())
        };
        let master = revents(master_at);
        let readable = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
        let master_ready = master.intersects(readable);
        let master_writable = master.contains(PollFlags::POLLOUT);
        let input_ready = revents(input_at).intersects(readable | PollFlags::POLLNVAL);
        let resized = !revents(resize_at).is_empty();
        drop(fds);
        let resized = resized && self.resizes.as_mut().is_some_and(Resizes::take);
        (master_ready, master_writable, input_ready, resized)
    }

    fn read_master(&mut self, on_output: &mut dyn FnMut(&[u8])) -> Pumped {
        let mut pumped = Pumped::default();
        for _ in 0..MAX_READS_PER_PUMP {
            match io::Read::read(&mut self.master, &mut self.buf) {
                Ok(0) => {
                    pumped.hung_up = true;
                    break;
                }
                Ok(n) => {
                    self.hung_up = false;
                    pumped.chunks += 1;
                    let chunk = &self.buf[..n];
                    echo(&mut self.echo, chunk);
                    on_output(chunk);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                // EIO: every slave descriptor is closed (Linux); the buffered output was
                // returned by the reads before it.
                Err(_) => {
                    pumped.hung_up = true;
                    break;
                }
            }
        }
        if pumped.hung_up {
            self.hung_up = true;
        }
        pumped
    }

    fn read_input(&mut self) {
        let Some(fd) = self.source.as_ref().and_then(Source::fd) else {
            return;
        };
        let mut buf = [0u8; 4096];
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => self.source = None,
            Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            // A hung-up or unreadable stdin is simply not forwarded any more.
            Err(_) => self.source = None,
        }
    }

    fn write_pending(&mut self) {
        while !self.pending.is_empty() {
            match nix::unistd::write(&self.master, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break,
                Err(_) => {
                    // Nobody reads the terminal any more.
                    self.pending.clear();
                    break;
                }
            }
        }
    }
}

fn poll_timeout(timeout: Duration) -> PollTimeout {
    PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX)
}

/// Copies one chunk to the echo target; on failure (a closed pipe) echoing stops, capture
/// goes on.
fn echo(target: &mut Echo, chunk: &[u8]) {
    let result = match target {
        Echo::Discard => return,
        Echo::Stdout => {
            let mut out = io::stdout().lock();
            out.write_all(chunk).and_then(|()| out.flush())
        }
        Echo::File(file) => file.write_all(chunk),
    };
    if let Err(err) = result {
        eprintln!("sentry: cannot copy the command's output any more ({err}); capture goes on");
        *target = Echo::Discard;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::termios::LocalFlags;
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;

    fn is_canonical(fd: BorrowedFd<'_>) -> Option<bool> {
        termios::tcgetattr(fd)
            .ok()
            .map(|t| t.local_flags.contains(LocalFlags::ICANON))
    }

    /// Runs `script` with sh on a PTY and returns everything it printed and its status.
    fn run_on_pty(script: &str, input: Input, size: Option<Winsize>) -> (Vec<u8>, i32) {
        let pty = Pty::open(size.as_ref()).expect("a PTY opens");
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        let PtyChild { master, mut child } =
            spawn(command, OsStr::new("sh"), pty).expect("sh starts");
        let mut session = Session::new(
            master,
            PtyOptions {
                echo: Echo::Discard,
                input,
                follow_window_size: false,
            },
        )
        .expect("session");
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            session.pump(Duration::from_millis(10), &mut |c| out.extend_from_slice(c));
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "sh did not end; output so far: {out:?}"
            );
        };
        assert!(
            session.drain(Instant::now() + Duration::from_secs(5), &mut |c| out
                .extend_from_slice(c)),
            "the master reports the hang-up once the command is gone"
        );
        let code = status.code().unwrap_or(128 + status.signal().unwrap_or(0));
        (out, code)
    }

    #[test]
    fn the_command_runs_on_a_terminal_in_its_own_session() {
        let (out, code) = run_on_pty(
            "test -t 0 && test -t 1 && test -t 2 && echo tty; \
             ps -o pid=,pgid=,sid= -p $$; exit 3",
            Input::None,
            None,
        );
        let text = String::from_utf8_lossy(&out);
        assert_eq!(code, 3, "exit status is the command's: {text}");
        assert!(
            text.contains("tty\r\n"),
            "all three fds are the terminal: {text:?}"
        );
        let ids: Vec<&str> = text
            .lines()
            .nth(1)
            .map(|l| l.split_whitespace().collect())
            .unwrap_or_default();
        assert_eq!(ids.len(), 3, "ps printed pid, pgid, sid: {text:?}");
        assert!(
            ids[0] == ids[1] && ids[1] == ids[2],
            "sh leads its own group and session: {text:?}"
        );
    }

    #[test]
    fn all_output_is_read_even_when_the_command_exits_at_once() {
        // 200 KiB printed right before exit: more than the PTY buffers, so the writer blocks
        // until sentry reads; the last bytes must still arrive before the hang-up.
        let (out, code) = run_on_pty(
            "i=0; while [ $i -lt 4000 ]; do echo \"line $i of the output, padded to fifty\"; \
             i=$((i+1)); done",
            Input::None,
            None,
        );
        assert_eq!(code, 0);
        let text = String::from_utf8_lossy(&out);
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 4000, "every line arrives");
        assert_eq!(lines[3999], "line 3999 of the output, padded to fifty");
    }

    #[test]
    fn the_window_size_is_set_on_the_terminal() {
        let size = Winsize {
            ws_row: 33,
            ws_col: 111,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let (out, _) = run_on_pty("stty size", Input::None, Some(size));
        assert_eq!(String::from_utf8_lossy(&out).trim(), "33 111");
    }

    #[test]
    fn input_is_typed_into_the_terminal() {
        let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
        let mut writer = File::from(write_end);
        writer.write_all(b"hello there\n").expect("write");
        drop(writer);
        let (out, code) = run_on_pty(
            "stty -echo; read line; echo \"got <$line>\"",
            Input::Fd(read_end),
            None,
        );
        assert_eq!(code, 0);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("got <hello there>"), "{text:?}");
    }

    #[test]
    fn binary_output_passes_unchanged_when_the_terminal_is_raw() {
        // stty raw turns off output processing too (no \n -> \r\n), so bytes pass as written.
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("bytes");
        let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        std::fs::write(&file, &bytes).expect("write");
        let (out, code) = run_on_pty(
            &format!("stty raw -echo; cat '{}'", file.display()),
            Input::None,
            None,
        );
        assert_eq!(code, 0);
        assert!(
            out == bytes,
            "{} bytes back, {} sent",
            out.len(),
            bytes.len()
        );
    }

    #[test]
    fn raw_input_is_restored_on_every_way_out() {
        let pty = Pty::open(None).expect("a PTY opens");
        let fake_terminal = pty.slave.as_fd();
        assert_eq!(is_canonical(fake_terminal), Some(true));
        {
            let _raw = RawInput::enter(fake_terminal).expect("raw");
            assert_eq!(is_canonical(fake_terminal), Some(false));
        }
        assert_eq!(is_canonical(fake_terminal), Some(true), "restored on drop");
        let panicked = std::panic::catch_unwind(|| {
            let _raw = RawInput::enter(fake_terminal).expect("raw");
            panic!("a failure while the command runs");
        });
        assert!(panicked.is_err());
        assert_eq!(is_canonical(fake_terminal), Some(true), "restored on panic");
    }

    #[test]
    fn a_missing_command_is_a_spawn_error() {
        let pty = Pty::open(None).expect("a PTY opens");
        let err = spawn(
            Command::new("/nonexistent/sentry-test"),
            OsStr::new("/nonexistent/sentry-test"),
            pty,
        )
        .expect_err("cannot start");
        match err {
            PtyError::Spawn(spawn) => assert_eq!(spawn.exit_code(), 127, "{spawn}"),
            other => panic!("expected a spawn error, got {other}"),
        }
    }

    #[test]
    fn the_master_is_not_inherited_by_other_children() {
        let pty = Pty::open(None).expect("a PTY opens");
        let fd = pty.master().as_raw_fd();
        let mut out = String::new();
        let mut child = Command::new("sh")
            .args([
                "-c",
                &format!("test -e /proc/self/fd/{fd} -o -e /dev/fd/{fd} && echo leaked"),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh starts");
        child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut out)
            .expect("read");
        let _ = child.wait();
        assert_eq!(out, "", "the PTY master leaked into an unrelated child");
    }
}
