//! Resolving the command before it is started, so that "command not found" (127) and
//! "cannot execute" (126) are told apart reliably and reported in words, the way shells do.

use std::env;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why a command cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// No such file, or not found on PATH (exit status 127).
    #[error("{program}: command not found{hint}")]
    NotFound {
        /// The command as given.
        program: String,
        /// Extra wording (where it was looked for).
        hint: String,
    },
    /// Found, but it cannot be executed: a directory, no execute permission, or a format the
    /// kernel refuses (exit status 126).
    #[error("{program}: cannot execute: {reason}")]
    NotExecutable {
        /// The command as given.
        program: String,
        /// Why.
        reason: String,
    },
    /// The command line is empty.
    #[error("no command given: use `sentry run -- CMD [ARGS…]`")]
    Empty,
    /// Starting the process failed for another reason.
    #[error("cannot start {program}: {source}")]
    Other {
        /// The command as given.
        program: String,
        /// The underlying error.
        source: io::Error,
    },
}

impl SpawnError {
    /// The exit status a shell would give for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            SpawnError::NotFound { .. } => 127,
            SpawnError::NotExecutable { .. } => 126,
            SpawnError::Empty | SpawnError::Other { .. } => 126,
        }
    }

    /// Maps the errno of a failed exec (reported by `Command::spawn`) to the shell's meaning.
    pub fn from_exec(program: &OsStr, err: io::Error) -> SpawnError {
        let name = program.to_string_lossy().into_owned();
        match err.raw_os_error() {
            // ENOENT after resolution: a missing `#!` interpreter or dynamic loader.
            Some(libc::ENOENT) => SpawnError::NotFound {
                program: name,
                hint: " (or its interpreter/loader is missing)".to_string(),
            },
            Some(libc::EACCES) | Some(libc::ENOEXEC) | Some(libc::EISDIR) | Some(libc::ETXTBSY)
            | Some(libc::EPERM) => SpawnError::NotExecutable {
                program: name,
                reason: err.to_string(),
            },
            _ => SpawnError::Other {
                program: name,
                source: err,
            },
        }
    }
}

/// Finds the file `program` names: a path when it contains `/`, otherwise the first
/// executable match on PATH (like `execvp`).
pub fn resolve(program: &OsStr) -> Result<PathBuf, SpawnError> {
    let name = program.to_string_lossy().into_owned();
    if program.is_empty() {
        return Err(SpawnError::Empty);
    }
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        return check_executable(&path, &name).map(|()| path);
    }
    let search =
        env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    let mut non_executable = None;
    for dir in env::split_paths(&search) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(program);
        if !candidate.exists() {
            continue;
        }
        match check_executable(&candidate, &name) {
            Ok(()) => return Ok(candidate),
            // execvp keeps looking after EACCES and reports it only if nothing else matches.
            Err(err) => non_executable = Some(err),
        }
    }
    Err(non_executable.unwrap_or(SpawnError::NotFound {
        program: name,
        hint: " (not found on PATH)".to_string(),
    }))
}

fn check_executable(path: &Path, name: &str) -> Result<(), SpawnError> {
    let meta = match path.metadata() {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(SpawnError::NotFound {
                program: name.to_string(),
                hint: " (no such file)".to_string(),
            })
        }
        Err(err) => {
            return Err(SpawnError::NotExecutable {
                program: name.to_string(),
                reason: err.to_string(),
            })
        }
    };
    if meta.is_dir() {
        return Err(SpawnError::NotExecutable {
            program: name.to_string(),
            reason: "it is a directory".to_string(),
        });
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(SpawnError::NotExecutable {
            program: name.to_string(),
            reason: "permission denied (the file is not executable; chmod +x it)".to_string(),
        });
    }
    Ok(())
}

/// Environment variables that hold sentry's own secrets; the supervised command never
/// inherits them.
pub const SECRET_ENV: &[&str] = &["SENTRY_API_KEY"];

/// Removes [`SECRET_ENV`] from what `command` will inherit.
pub fn strip_secrets(command: &mut std::process::Command) {
    for var in SECRET_ENV {
        command.env_remove(var);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_command_is_not_found() {
        let err = resolve(OsStr::new("sentry-no-such-command-xyz")).unwrap_err();
        assert_eq!(err.exit_code(), 127, "{err}");
        assert!(err.to_string().contains("command not found"), "{err}");
    }

    #[test]
    fn non_executable_file_is_126() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("script.sh");
        std::fs::write(&file, "echo hi\n").unwrap();
        let err = resolve(file.as_os_str()).unwrap_err();
        assert_eq!(err.exit_code(), 126, "{err}");
        let err = resolve(dir.path().as_os_str()).unwrap_err();
        assert_eq!(err.exit_code(), 126, "{err}");
    }

    #[test]
    fn finds_commands_on_path() {
        let path = resolve(OsStr::new("sh")).unwrap();
        assert!(
            path.is_absolute() || path.starts_with("."),
            "{}",
            path.display()
        );
    }
}
