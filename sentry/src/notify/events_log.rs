//! The JSON-lines events log (`--events-log FILE`) that log shippers (Vector, Fluent Bit,
//! Promtail, the OpenTelemetry collector's filelog receiver) tail: one line per event, each
//! line one `write` on a file opened for appending, so a reader never sees half a line.
//!
//! Rotation is by size and by rename: when the next line would take the file past
//! `max_bytes`, `FILE.{keep-1}` becomes `FILE.{keep}` (the oldest is overwritten), …, `FILE`
//! becomes `FILE.1`, and a new `FILE` is created. Shippers that follow by inode (all of the
//! above) finish the renamed file and pick up the new one; nothing is ever truncated under a
//! reader, so no copy-then-truncate race loses lines. Files are created 0640.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// An open events log.
#[derive(Debug)]
pub struct EventsLog {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    size: u64,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// `FILE.n`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl EventsLog {
    /// Opens (creating it 0640) the log at `path` for appending.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<EventsLog> {
        let file = open(path)?;
        let size = file.metadata()?.len();
        Ok(EventsLog {
            path: path.to_path_buf(),
            max_bytes,
            keep,
            file,
            size,
        })
    }

    /// Appends one line (`line` without its newline), rotating first when it would not fit.
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.file.write_all(&buf)?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            fs::remove_file(&self.path).or_else(not_found_is_fine)?;
        } else {
            for n in (1..self.keep).rev() {
                fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1))
                    .or_else(not_found_is_fine)?;
            }
            fs::rename(&self.path, rotated(&self.path, 1)).or_else(not_found_is_fine)?;
        }
        self.file = open(&self.path)?;
        self.size = self.file.metadata()?.len();
        Ok(())
    }
}

fn not_found_is_fine(err: io::Error) -> io::Result<()> {
    if err.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn rotates_by_renaming_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        // Each line is 10 bytes with its newline: three fit in 30.
        let mut log = EventsLog::open(&path, 30, 2).unwrap();
        for i in 0..10 {
            log.write_line(&format!("line-{i:04}")).unwrap();
        }
        assert_eq!(lines(&path), ["line-0009"]);
        assert_eq!(
            lines(&rotated(&path, 1)),
            ["line-0006", "line-0007", "line-0008"]
        );
        assert_eq!(
            lines(&rotated(&path, 2)),
            ["line-0003", "line-0004", "line-0005"]
        );
        assert!(!rotated(&path, 3).exists(), "keep 2 keeps two old files");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "created {mode:o}, want at most 0640");
    }

    #[test]
    fn appends_to_an_existing_log_and_never_splits_a_long_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        fs::write(&path, "old\n").unwrap();
        let mut log = EventsLog::open(&path, 8, 1).unwrap();
        log.write_line("a line longer than the limit").unwrap();
        assert_eq!(lines(&rotated(&path, 1)), ["old"]);
        assert_eq!(lines(&path), ["a line longer than the limit"]);
        let mut none = EventsLog::open(&path, 8, 0).unwrap();
        none.write_line("next").unwrap();
        assert_eq!(lines(&path), ["next"]);
    }
}
