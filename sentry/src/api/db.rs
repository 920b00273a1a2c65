//! The server's connections to the store: a few [`Store`]s, each behind its own mutex.
//!
//! Reads run on the calling worker thread when a connection is free: in WAL mode a reader
//! never waits for a writer, and a page costs tens to a few hundred microseconds, less than
//! handing it to another thread and back (measured: +40% requests/s on `/incidents`). When
//! every connection is busy, and for writes (which may wait up to the store's busy timeout
//! for another process's lock), the work goes to tokio's blocking threads instead.
//!
//! [`Db::cached`] keeps a serialised answer per connection and reuses it while the store's
//! [`Store::version`] is unchanged, so a dashboard polling the same page costs one
//! `PRAGMA data_version` until something is written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::http::StatusCode;

use super::problem::Problem;
use crate::store::{Store, StoreError};

/// Connections opened by default: one per core of the 2-core machines this is sized for,
/// plus headroom for a slow query and the stream's poller.
pub const DEFAULT_CONNECTIONS: usize = 4;

/// Cached answers kept per connection; past it the cache starts over.
const CACHE_ENTRIES: usize = 64;

/// A small pool of store connections.
#[derive(Debug, Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    slots: Box<[Mutex<Slot>]>,
    next: AtomicUsize,
    path: PathBuf,
}

#[derive(Debug)]
struct Slot {
    store: Store,
    cache: HashMap<String, ((i64, u64), Bytes)>,
}

impl Inner {
    /// A free connection, if any.
    fn try_slot(&self) -> Option<MutexGuard<'_, Slot>> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n).find_map(|i| self.slots[(start + i) % n].try_lock().ok())
    }

    /// A connection, waiting for one when all are busy.
    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.try_slot().unwrap_or_else(|| {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
            self.slots[i].lock().unwrap_or_else(PoisonError::into_inner)
        })
    }
}

impl Db {
    /// Opens `size` connections to the store at `path` (creating and migrating it).
    pub fn open(path: &Path, size: usize) -> Result<Db, StoreError> {
        let slots = (0..size.max(1))
            .map(|_| {
                Store::open(path).map(|store| {
                    Mutex::new(Slot {
                        store,
                        cache: HashMap::new(),
                    })
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Db {
            inner: Arc::new(Inner {
                slots: slots.into_boxed_slice(),
                next: AtomicUsize::new(0),
                path: path.to_path_buf(),
            }),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs a read-only `f`: on this thread when a connection is free, else on a blocking
    /// thread. Store errors become problems (503 for a busy or missing store, 500 otherwise).
    pub async fn run<T, F>(&self, f: F) -> Result<T, Problem>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        if let Some(slot) = self.inner.try_slot() {
            return f(&slot.store).map_err(|e| store_problem(&e));
        }
        self.blocking(f).await
    }

    /// Runs `f`, which may write, on a blocking thread.
    pub async fn write<T, F>(&self, f: F) -> Result<T, Problem>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        self.blocking(f).await
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, Problem>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let joined = tokio::task::spawn_blocking(move || f(&inner.slot().store)).await;
        match joined {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(store_problem(&err)),
            Err(join) => Err(Problem::internal(format!("the store query failed: {join}"))),
        }
    }

    /// The answer `f` serialises for `key`, reused while the store is unchanged. `f` must
    /// depend on the store's rows alone (nothing else that changes), and only read.
    pub async fn cached<F>(&self, key: String, f: F) -> Result<Bytes, Problem>
    where
        F: FnOnce(&Store) -> Result<Bytes, Problem> + Send + 'static,
    {
        let answer = move |slot: &mut Slot| -> Result<Bytes, Problem> {
            let version = slot.store.version().map_err(|e| store_problem(&e))?;
            if let Some((v, body)) = slot.cache.get(&key) {
                if *v == version {
                    return Ok(body.clone());
                }
            }
            let body = f(&slot.store)?;
            if slot.cache.len() >= CACHE_ENTRIES {
                slot.cache.clear();
            }
            slot.cache.insert(key, (version, body.clone()));
            Ok(body)
        };
        if let Some(mut slot) = self.inner.try_slot() {
            return answer(&mut slot);
        }
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || answer(&mut inner.slot()))
            .await
            .unwrap_or_else(|join| {
                Err(Problem::internal(format!("the store query failed: {join}")))
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn count(db: &Db) -> Result<Bytes, Problem> {
        db.cached("audit".into(), |s| {
            let rows = s
                .audit(&crate::store::AuditQuery {
                    limit: 10,
                    before_id: None,
                })
                .map_err(|e| store_problem(&e))?;
            Ok(Bytes::from(rows.len().to_string()))
        })
        .await
    }

    #[tokio::test]
    async fn a_cached_answer_is_reused_until_the_store_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sentry.db");
        // One connection, so every call sees the same cache.
        let db = Db::open(&path, 1).unwrap();
        assert_eq!(count(&db).await.unwrap(), "0");
        let entry = || crate::store::AuditEntry {
            actor: "test".into(),
            action: "probe".into(),
            target: "run 1".into(),
            result: "ok".into(),
            client: None,
            detail: None,
        };
        // A write through this very connection.
        db.write(move |s| s.record_audit(&entry())).await.unwrap();
        assert_eq!(count(&db).await.unwrap(), "1", "stale after own write");
        // A write by another connection (another process, as `sentry run` would be).
        let other = Store::open(&path).unwrap();
        other.record_audit(&entry()).unwrap();
        assert_eq!(
            count(&db).await.unwrap(),
            "2",
            "stale after another's write"
        );
        assert_eq!(count(&db).await.unwrap(), "2");
    }
}
