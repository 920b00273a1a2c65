//! The server's connections to the store: a few [`Store`]s, each behind its own mutex, used on
//! tokio's blocking threads. A query takes whichever connection is free (SQLite in WAL mode
//! lets them read in parallel, and with other processes writing); only when all are busy does
//! it wait for one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;

use super::problem::Problem;
use crate::store::{Store, StoreError};

/// Connections opened by default: one per core of the 2-core machines this is sized for,
/// plus headroom for a slow query and the stream's poller.
pub const DEFAULT_CONNECTIONS: usize = 4;

/// A small pool of store connections.
#[derive(Debug, Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conns: Box<[Mutex<Store>]>,
    next: AtomicUsize,
    path: PathBuf,
}

impl Db {
    /// Opens `size` connections to the store at `path` (creating and migrating it).
    pub fn open(path: &Path, size: usize) -> Result<Db, StoreError> {
        let conns = (0..size.max(1))
            .map(|_| Store::open(path).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Db {
            inner: Arc::new(Inner {
                conns: conns.into_boxed_slice(),
                next: AtomicUsize::new(0),
                path: path.to_path_buf(),
            }),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` with a connection on a blocking thread; store errors become problems (503
    /// for a busy or missing store, 500 otherwise).
    pub async fn run<T, F>(&self, f: F) -> Result<T, Problem>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let joined = tokio::task::spawn_blocking(move || {
            let n = inner.conns.len();
            let start = inner.next.fetch_add(1, Ordering::Relaxed) % n;
            for i in 0..n {
                if let Ok(store) = inner.conns[(start + i) % n].try_lock() {
                    return f(&store);
                }
            }
            let store = inner.conns[start]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            f(&store)
        })
        .await;
        match joined {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(store_problem(&err)),
            Err(join) => Err(Problem::internal(format!("the store query failed: {join}"))),
        }
    }
}

/// The problem for a store error.
pub fn store_problem(err: &StoreError) -> Problem {
    match err {
        StoreError::Locked { .. } | StoreError::Io { .. } | StoreError::ReadOnly { .. } => {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                err.to_string(),
            )
        }
        _ => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store-error",
            err.to_string(),
        ),
    }
}
