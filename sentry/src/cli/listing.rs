//! What the store-listing commands (`sentry incidents`, `sentry baselines`) share: opening the
//! store for reading without creating it, and printing rows as JSON or a table to a stdout
//! that may be a closed pipe.

use std::io::{self, StdoutLock, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::store::Store;

/// Opens the store at `db` (default: the invoking user's) for a listing of `what`.
/// `Ok(None)` when there is no store yet: reading must not create an empty one as a side
/// effect, so an empty list (`[]` with `json`, else a note on stderr) has been printed and the
/// command is done. `Err` carries the exit status after the error was printed.
pub fn open_for_listing(
    db: Option<&PathBuf>,
    json: bool,
    what: &str,
) -> Result<Option<Store>, ExitCode> {
    let path = match db.cloned().map_or_else(crate::store::default_path, Ok) {
        Ok(p) => p,
        Err(err) => {
            eprintln!("sentry: {err}");
            return Err(ExitCode::FAILURE);
        }
    };
    if !path.exists() {
        if json {
            println!("[]");
        } else {
            eprintln!(
                "sentry: no {what}: there is no store at {} yet (`sentry run` creates it)",
                path.display()
            );
        }
        return Ok(None);
    }
    Store::open(&path).map(Some).map_err(|err| {
        eprintln!("sentry: {err}");
        ExitCode::FAILURE
    })
}

/// Prints `rows` as one pretty JSON array with `json`, else with `table`. A closed pipe
/// (`| head`) is not an error worth a message.
pub fn print_rows<T: Serialize>(
    rows: &[T],
    json: bool,
    table: impl FnOnce(&mut StdoutLock<'static>, &[T]) -> io::Result<()>,
) -> ExitCode {
    let mut out = io::stdout().lock();
    let written = if json {
        serde_json::to_writer_pretty(&mut out, rows)
            .map_err(io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        table(&mut out, rows)
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sentry: cannot write the list: {err}");
            ExitCode::FAILURE
        }
    }
}
