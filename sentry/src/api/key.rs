//! The API key: `SENTRY_API_KEY` when set, otherwise the key in `<store dir>/api-key`, made on
//! first use from 32 random bytes (base64url, 43 characters) in a file created 0600 and, under
//! `sudo`, given to the invoking user like the store. The key is compared in constant time
//! and never logged; `Debug` shows only its length.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use subtle::ConstantTimeEq;

/// The environment variable that overrides the key file.
pub const KEY_ENV: &str = "SENTRY_API_KEY";

/// The key file's name, beside the store.
pub const KEY_FILE: &str = "api-key";

/// Shortest key accepted from the environment or a file: guessing must stay hopeless even
/// through the rate limit.
pub const MIN_KEY_LEN: usize = 16;

/// The bearer key every protected request must carry.
#[derive(Clone)]
pub struct ApiKey(Box<[u8]>);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({} bytes)", self.0.len())
    }
}

impl ApiKey {
    /// A key from its text, checked for length and characters.
    pub fn new(text: &str) -> Result<ApiKey, KeyError> {
        let text = text.trim();
        if text.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort);
        }
        // It travels in a header and in a URL fragment: printable ASCII without spaces.
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KeyError::BadCharacters);
        }
        Ok(ApiKey(text.as_bytes().into()))
    }

    /// A fresh random key.
    pub fn generate() -> Result<ApiKey, KeyError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Ok(ApiKey(text.into_bytes().into()))
    }

    /// True when `candidate` is this key; takes the same time whatever the first differing
    /// byte is.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        self.0.ct_eq(candidate).into()
    }

    /// The key's text, for the one URL `sentry dashboard` prints.
    pub fn expose(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Where the key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `SENTRY_API_KEY`.
    Env,
    /// An existing key file.
    File(PathBuf),
    /// A key file made just now.
    Created(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env => write!(f, "from {KEY_ENV}"),
            KeySource::File(p) => write!(f, "from {}", p.display()),
            KeySource::Created(p) => write!(f, "new, saved in {}", p.display()),
        }
    }
}

/// Why no key could be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Shorter than [`MIN_KEY_LEN`].
    #[error("the API key is shorter than {MIN_KEY_LEN} characters; use a longer one (or unset {KEY_ENV} and let sentry make one)")]
    TooShort,
    /// Spaces or non-ASCII characters.
    #[error("the API key must be printable ASCII without spaces")]
    BadCharacters,
    /// `SENTRY_API_KEY` is unusable.
    #[error("{KEY_ENV} is set but unusable: {0}")]
    Env(Box<KeyError>),
    /// The OS gave no randomness.
    #[error("cannot get random bytes for a new API key: {0}")]
    Random(String),
    /// Reading or writing the key file failed.
    #[error("cannot use the API key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The key file's content is not a usable key.
    #[error("the API key file {path} holds no usable key ({reason}); delete it and sentry makes a new one")]
    BadFile {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: Box<KeyError>,
    },
}

/// The key for a store in `dir`: `SENTRY_API_KEY` when set, else `dir/api-key`, created when
/// missing. A key file readable by others is used but reported in the returned warning.
pub fn load_or_create(dir: &Path) -> Result<(ApiKey, KeySource, Option<String>), KeyError> {
    if let Some(text) = std::env::var_os(KEY_ENV) {
        let text = text.to_string_lossy();
        let key = ApiKey::new(&text).map_err(|e| KeyError::Env(Box::new(e)))?;
        return Ok((key, KeySource::Env, None));
    }
    let path = dir.join(KEY_FILE);
    let io_err = |source| KeyError::Io {
        path: path.clone(),
        source,
    };
    match read_key(&path) {
        Ok((key, warning)) => return Ok((key, KeySource::File(path), warning)),
        Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key = ApiKey::generate()?;
    // Written whole to a private temporary file, then linked into place: a concurrent
    // sentry either sees no file or the complete key, and an existing key is never replaced.
    let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(key.expose().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        crate::store::give_to_invoking_user(&tmp)?;
        fs::hard_link(&tmp, &path)
    })();
    let _ = fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok((key, KeySource::Created(path), None)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let (key, warning) = read_key(&path)?;
            Ok((key, KeySource::File(path), warning))
        }
        Err(e) => Err(io_err(e)),
    }
}

fn read_key(path: &Path) -> Result<(ApiKey, Option<String>), KeyError> {
    let io_err = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = fs::read_to_string(path).map_err(io_err)?;
    let key = ApiKey::new(&text).map_err(|reason| KeyError::BadFile {
        path: path.to_path_buf(),
        reason: Box::new(reason),
    })?;
    let mode = fs::metadata(path).map_err(io_err)?.permissions().mode();
    let warning = (mode & 0o077 != 0).then(|| {
        format!(
            "the API key file {} is readable by other users (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )
    });
    Ok((key, warning))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_long_random_and_url_safe() {
        let a = ApiKey::generate().unwrap();
        let b = ApiKey::generate().unwrap();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a.expose(), b.expose());
        assert!(a
            .expose()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn matching_is_exact() {
        let key = ApiKey::new("0123456789abcdef0123").unwrap();
        assert!(key.matches(b"0123456789abcdef0123"));
        assert!(!key.matches(b"0123456789abcdef012"));
        assert!(!key.matches(b"0123456789abcdef01234"));
        assert!(!key.matches(b"x123456789abcdef0123"));
        assert!(!key.matches(b""));
        assert_eq!(format!("{key:?}"), "ApiKey(20 bytes)");
    }

    #[test]
    fn short_or_spaced_keys_are_refused() {
        assert!(matches!(ApiKey::new("short"), Err(KeyError::TooShort)));
        assert!(matches!(
            ApiKey::new("has a space in the middle"),
            Err(KeyError::BadCharacters)
        ));
    }

    #[test]
    fn the_key_file_is_made_once_private_and_then_reused() {
        // The variable would override the file; these tests never set it.
        if std::env::var_os(KEY_ENV).is_some() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (first, source, warning) = load_or_create(dir.path()).unwrap();
        assert_eq!(source, KeySource::Created(dir.path().join(KEY_FILE)));
        assert!(warning.is_none());
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode");
        let (second, source, _) = load_or_create(dir.path()).unwrap();
        assert_eq!(source, KeySource::File(dir.path().join(KEY_FILE)));
        assert_eq!(first.expose(), second.expose());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [KEY_FILE], "temporary files left behind");
    }

    #[test]
    fn a_key_file_readable_by_others_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        fs::write(&path, "abcdefghijklmnopqrstuvwxyz\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let (key, warning) = read_key(&path).unwrap();
        assert_eq!(key.expose(), "abcdefghijklmnopqrstuvwxyz");
        assert!(warning.unwrap().contains("chmod 600"));
    }
}
