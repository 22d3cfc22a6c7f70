//! [`DiskL2`]: the embedded L2, one file per entry in a local directory.
//!
//! Files are named by the 64-hex entry name and written atomically (temp
//! file + rename), so readers see a whole old or whole new entry. No fsync:
//! after a crash a torn file fails its checksum and is deleted on read.
//!
//! The directory is bounded by `max_bytes`: an in-memory index tracks each
//! file's size and write order, writes evict the oldest-written entries
//! (FIFO; expired entries are also removed when read), and
//! [`DiskL2::open`] rebuilds the index from a directory scan (oldest by
//! mtime first), removing leftover temp files. One `DiskL2` per directory:
//! two processes sharing one would each account only for their own writes.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::l2::sized_dir::{SizedIndex, scan};
use crate::l2::{L2Error, L2Stats, L2Store};

/// A size-bounded directory of cache entries. Cheap to clone (shared state).
#[derive(Clone, Debug)]
pub struct DiskL2 {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<SizedIndex>,
    tmp_seq: AtomicU64,
    evictions: AtomicU64,
}

fn is_entry_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl DiskL2 {
    /// Opens (creating if needed) `dir` as an L2 bounded to `max_bytes`,
    /// scanning existing entries into the size accounting.
    ///
    /// Never fails: if the directory cannot be created or scanned, this logs
    /// a warning and returns a store whose operations fail, which the cache
    /// degrades to misses (counted in `l2_errors`). Writes retry creating a
    /// missing directory, so a directory that appears later is used.
    pub async fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        let dir = dir.into();
        match tokio::task::spawn_blocking(move || Self::open_blocking(dir, max_bytes)).await {
            Ok(store) => store,
            Err(e) => {
                tracing::warn!(error = %e, "disk L2 cache scan did not complete");
                Self::unscanned(PathBuf::new(), max_bytes)
            }
        }
    }

    /// [`DiskL2::open`] for synchronous start-up code: scans the directory on the calling
    /// thread.
    pub fn open_blocking(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        let store = Self::unscanned(dir.into(), max_bytes);
        if let Err(e) = store.inner.scan() {
            tracing::warn!(error = %e, "disk L2 cache directory unusable; L2 will miss");
        }
        store
    }

    fn unscanned(dir: PathBuf, max_bytes: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir,
                max_bytes,
                index: Mutex::new(SizedIndex::default()),
                tmp_seq: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
            }),
        }
    }

    /// The directory of this store.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> io::Result<T> + Send + 'static,
    ) -> Result<T, L2Error> {
        let inner = Arc::clone(&self.inner);
        match tokio::task::spawn_blocking(move || f(&inner)).await {
            Ok(r) => r.map_err(L2Error::new),
            Err(e) => Err(L2Error::new(e)),
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, SizedIndex> {
        // Index updates are plain map edits: consistent after a panic.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn scan(&self) -> io::Result<()> {
        // Temporary files are left over by writes a crash interrupted.
        let found = scan(&self.dir, is_entry_name, |n| n.ends_with(".tmp"))?;
        let mut idx = self.lock();
        for (name, size) in found {
            idx.insert(&name, size);
        }
        self.evict(&mut idx, "");
        Ok(())
    }

    /// Removes oldest entries (never `keep`) until within the bound.
    fn evict(&self, idx: &mut SizedIndex, keep: &str) {
        for victim in idx.over_bound(self.max_bytes, keep) {
            match std::fs::remove_file(self.dir.join(&victim)) {
                Ok(()) => {
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(error = %e, "disk L2 cache eviction failed"),
            }
        }
    }

    fn put(&self, name: &str, entry: &[u8]) -> io::Result<()> {
        let size = entry.len() as u64;
        if size > self.max_bytes {
            // Could never fit; storing it would only flush everything else.
            return Ok(());
        }
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("{name}.{seq}.tmp"));
        let written = match std::fs::write(&tmp, entry) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The directory was removed after open: recreate it once.
                std::fs::create_dir_all(&self.dir).and_then(|()| std::fs::write(&tmp, entry))
            }
            other => other,
        };
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // Rename and index update under one lock so the accounting matches
        // the directory even with concurrent writers of the same name.
        let mut idx = self.lock();
        if let Err(e) = std::fs::rename(&tmp, self.dir.join(name)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        idx.insert(name, size);
        self.evict(&mut idx, name);
        Ok(())
    }

    fn delete(&self, name: &str) -> io::Result<()> {
        let mut idx = self.lock();
        match std::fs::remove_file(self.dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        idx.remove(name);
        Ok(())
    }

    fn clear(&self) -> io::Result<()> {
        let mut idx = self.lock();
        let mut first_error = None;
        let items = match std::fs::read_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                idx.clear();
                return Ok(());
            }
            other => other?,
        };
        for item in items {
            let item = item?;
            let file_name = item.file_name();
            let Some(name) = file_name.to_str() else {
                continue;
            };
            if is_entry_name(name) || name.ends_with(".tmp") {
                if let Err(e) = std::fs::remove_file(item.path())
                    && e.kind() != io::ErrorKind::NotFound
                {
                    first_error.get_or_insert(e);
                    continue;
                }
                idx.remove(name);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => {
                idx.clear();
                Ok(())
            }
        }
    }
}

impl L2Store for DiskL2 {
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, L2Error>> {
        Box::pin(async move {
            match tokio::fs::read(self.inner.dir.join(name)).await {
                Ok(v) => Ok(Some(Bytes::from(v))),
                // Absent. A stale index entry for it (file deleted behind our
                // back) only over-counts, and eviction clears it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(L2Error::new(e)),
            }
        })
    }

    fn put<'a>(&'a self, name: &'a str, entry: Bytes) -> BoxFuture<'a, Result<(), L2Error>> {
        let name = name.to_owned();
        Box::pin(self.blocking(move |inner| inner.put(&name, &entry)))
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), L2Error>> {
        let name = name.to_owned();
        Box::pin(self.blocking(move |inner| inner.delete(&name)))
    }

    fn clear(&self) -> BoxFuture<'_, Result<(), L2Error>> {
        Box::pin(self.blocking(Inner::clear))
    }

    fn stats(&self) -> L2Stats {
        let idx = self.inner.lock();
        L2Stats {
            bytes: Some(idx.total()),
            entries: Some(idx.len() as u64),
            evictions: self.inner.evictions.load(Ordering::Relaxed),
        }
    }
}
