//! The live one-line status at the bottom of the terminal while a command runs (mode, CPU,
//! output rate, current verdict). Shown only when stderr is a terminal: the bottom row is
//! taken out of the scrolling region (DECSTBM), so the command's own output scrolls above it
//! and is never overwritten; the region is restored when the run ends.

use std::io::{self, IsTerminal, Write};

/// The status row, when stderr is a terminal.
pub struct StatusLine {
    out: io::Stderr,
    rows: u16,
    cols: u16,
}

fn terminal_size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills a winsize struct; `ws` is a valid out-pointer and fd 2 is
    // checked to be a terminal by the caller.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row >= 3 && ws.ws_col >= 20).then_some((ws.ws_row, ws.ws_col))
}

impl StatusLine {
    /// Reserves the bottom row, or `None` when stderr is not a terminal (or too small).
    pub fn start() -> Option<StatusLine> {
        let out = io::stderr();
        if !out.is_terminal() {
            return None;
        }
        let (rows, cols) = terminal_size()?;
        let mut line = StatusLine { out, rows, cols };
        // A fresh line keeps the cursor inside the region; setting the region moves the
        // cursor home, hence the save and restore around it.
        line.emit(&format!("\n\x1b[1A\x1b7\x1b[1;{}r\x1b8", rows - 1));
        Some(line)
    }

    fn emit(&mut self, text: &str) {
        // One write per update so the command's own writes cannot land inside a sequence.
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }

    /// Redraws the status row with `text` (cut to the terminal's width).
    pub fn update(&mut self, text: &str) {
        if let Some((rows, cols)) = terminal_size() {
            if rows != self.rows {
                self.rows = rows;
                self.emit(&format!("\x1b7\x1b[1;{}r\x1b8", rows - 1));
            }
            self.cols = cols;
        }
        let width = usize::from(self.cols.saturating_sub(1));
        let shown: String = text.chars().take(width).collect();
        let frame = format!(
            "\x1b7\x1b[{};1H\x1b[2K\x1b[7m{shown}\x1b[0m\x1b8",
            self.rows
        );
        self.emit(&frame);
    }

    /// Clears the row and gives the whole terminal back to scrolling.
    pub fn finish(mut self) {
        let rows = self.rows;
        self.emit(&format!("\x1b7\x1b[r\x1b[{rows};1H\x1b[2K\x1b8"));
    }
}

/// Formats the status text.
pub fn render(mode: &str, elapsed_s: f64, cpu_pct: f64, lines_per_s: f64, verdict: &str) -> String {
    format!(
        " sentry · {mode} · {elapsed} · CPU {cpu_pct:.0}% · {lines_per_s:.0} lines/s · {verdict} ",
        elapsed = human_duration(elapsed_s)
    )
}

fn human_duration(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_names_mode_cpu_rate_and_verdict() {
        let text = render("kernel", 75.0, 198.4, 12.0, "continue");
        assert_eq!(
            text,
            " sentry · kernel · 1m15s · CPU 198% · 12 lines/s · continue "
        );
    }
}
