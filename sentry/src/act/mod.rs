//! Carrying out decisions on a running tree, whatever the backend: stopping it gracefully
//! (SIGTERM to every process, then a hard kill of the whole tree after a grace period),
//! pausing and resuming it. The supervisor decides *when*; this module only knows *how*.

use std::io;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::capture::TreeControl;

/// Time a tree gets to exit after SIGTERM before it is killed outright. Long enough for a
/// process to flush and remove its temporary files, short enough that a runaway stops fast.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Stops the whole tree: thaws it if it is frozen (a frozen process cannot act on SIGTERM),
/// sends SIGTERM to every process, and kills whatever is left after `grace` from a
/// background thread, so the caller keeps draining the tree's output meanwhile.
pub fn stop(control: &Arc<dyn TreeControl>, grace: Duration) {
    let _ = control.set_paused(false);
    control.signal_tree(Signal::SIGTERM);
    let control = Arc::clone(control);
    thread::spawn(move || {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if control.has_ended() {
                // The direct child is gone; the backend kills and reaps what is left.
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        if let Err(err) = control.kill_tree() {
            crate::supervise::say!(
                "sentry: cannot kill {} after SIGTERM: {err}",
                control.describe()
            );
        }
    });
}

/// Kills the whole tree at once, without a grace period.
pub fn kill_now(control: &Arc<dyn TreeControl>) -> io::Result<()> {
    control.kill_tree()
}

/// Freezes the whole tree.
pub fn pause(control: &Arc<dyn TreeControl>) -> io::Result<()> {
    control.set_paused(true)
}

/// Thaws the whole tree.
pub fn resume(control: &Arc<dyn TreeControl>) -> io::Result<()> {
    control.set_paused(false)
}

/// Delay before restart number `n` (1-based): 1 s, 2 s, 4 s … capped at 30 s, so that a
/// command that turns into a runaway at once does not spin the host.
pub fn restart_backoff(n: u32) -> Duration {
    let secs = 1u64 << n.saturating_sub(1).min(5);
    Duration::from_secs(secs.min(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let delays: Vec<u64> = (1..=8).map(|n| restart_backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
