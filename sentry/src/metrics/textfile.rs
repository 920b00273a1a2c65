//! node_exporter's textfile collector: `DIR/sentry.prom`, replaced atomically so the
//! collector never reads half a file.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The file name written in the textfile directory (the collector reads `*.prom`).
pub const FILE_NAME: &str = "sentry.prom";

/// Writes `text` to `dir/sentry.prom` atomically: a temporary file in `dir` (ignored by the
/// collector: it does not end in `.prom`), synced, made 0644, then renamed over the old one.
pub fn write_textfile(dir: &Path, text: &str) -> io::Result<()> {
    let tmp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        // The umask may have narrowed the mode; node_exporter often runs as another user.
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        file.sync_all()?;
        fs::rename(&tmp, dir.join(FILE_NAME))?;
        // The rename itself survives a crash only once the directory is synced.
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_textfile_is_replaced_whole_and_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        write_textfile(dir.path(), "a 1\n").unwrap();
        write_textfile(dir.path(), "b 2\n").unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(fs::read_to_string(&path).unwrap(), "b 2\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE_NAME], "a temporary file was left behind");
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_textfile(&dir.path().join("absent"), "a 1\n").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
