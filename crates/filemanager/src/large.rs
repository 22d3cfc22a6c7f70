//! The large-file tier: local copies of files too large for the cache's memory and L2 tiers,
//! so that a file in a remote bucket is fetched once and its later downloads, whole or
//! ranged, are read from local disk.
//!
//! - **What a copy holds.** The file's *stored form*, byte for byte what the bucket holds:
//!   encrypted files stay encrypted on local disk, and reading a copy runs the same codec
//!   (AES-GCM tags and all) as reading the bucket.
//! - **Which version.** A copy is named after its key and the version it holds
//!   (`{sha256(key)}-{sha256(etag, stored size)}`, both shortened). A download uses it only
//!   when the file's description, from the metadata cache, names that same version. A newer
//!   version simply misses, so copies need no TTL, and an invalidation cannot race them: they
//!   are exactly as fresh as the metadata cache (see `docs/caching.md`).
//! - **How it fills.** A whole-file download that missed writes the bytes it streams from the
//!   bucket to a temporary file as they pass, and renames it into place only when the
//!   download ends cleanly, every byte read and decoded (on a task of its own, so the last
//!   bytes of the download do not wait for the disk). A ranged download that missed starts
//!   one background copy of the whole file (one per version at a time). A cut stream, a
//!   decode error, a full disk, or a write or delete of the key seen meanwhile each discard
//!   the temporary file.
//! - **Bounds.** At most `max_bytes` of copies on disk; the least recently used go first. A
//!   file larger than a quarter of the bound is never copied. Copies being made reserve their
//!   size up front, together at most half the bound more, and at most [`BACKGROUND_COPIES`]
//!   background copies run at once. A write or delete of a key through this instance removes
//!   its copies at once; copies of older versions otherwise wait for eviction (they can no
//!   longer be served).
//! - **Damage.** A copy whose size is wrong is removed when opened. A copy that fails to
//!   decode (damaged on disk) fails that one read and is removed, so the next read goes to
//!   the bucket. Copies of *unencrypted* files carry no checksum, like files on the local-disk
//!   backend.
//! - **Crashes.** A copy is synced to disk before it is renamed into place, so a copy under
//!   its final name is whole even after a power loss. Temporary files left by a crash are
//!   removed at start-up.
//!
//! One tier per directory and process; on start-up the directory is scanned, least recently
//! used first (a hit touches the copy's modification time).

use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use filemanager_cache::l2::sized_dir::{self, SizedIndex};
use filemanager_cache::{Cache, Ticket};
use futures::StreamExt;

use crate::store::{ByteStream, SharedFile};

/// Bytes gathered before one blocking write to the temporary file.
const WRITE_BATCH: usize = 1024 * 1024;

/// Background copies (after ranged misses) that may run at once.
pub(crate) const BACKGROUND_COPIES: usize = 2;

/// Where the large-file tier lives and how much it may hold.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LargeFileSetup {
    /// The directory (one process per directory).
    pub dir: PathBuf,
    /// Most bytes of copies kept.
    pub max_bytes: u64,
}

impl LargeFileSetup {
    /// A tier in `dir` bounded to `max_bytes`.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        LargeFileSetup {
            dir: dir.into(),
            max_bytes,
        }
    }

    /// From `CACHE_LARGE_MAX_BYTES` (default 4 GiB; `0` turns the tier off) and
    /// `CACHE_LARGE_DIR` (default `default_dir`).
    pub fn from_env(default_dir: impl Into<PathBuf>) -> crate::Result<Option<Self>> {
        Self::from_lookup(&|name| std::env::var(name).ok(), default_dir)
    }

    /// [`LargeFileSetup::from_env`] with variables looked up by `get`.
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
        default_dir: impl Into<PathBuf>,
    ) -> crate::Result<Option<Self>> {
        let max_bytes = match get("CACHE_LARGE_MAX_BYTES") {
            Some(v) if !v.is_empty() => v.trim().parse::<u64>().map_err(|_| {
                crate::Error::config("CACHE_LARGE_MAX_BYTES", "must be a whole number of bytes")
            })?,
            _ => DEFAULT_MAX_BYTES,
        };
        if max_bytes == 0 {
            return Ok(None);
        }
        let dir = match get("CACHE_LARGE_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => default_dir.into(),
        };
        Ok(Some(LargeFileSetup::new(dir, max_bytes)))
    }
}

/// The default bound of the tier: 4 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;

/// Counters of the large-file tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LargeFileStats {
    /// Downloads answered from a local copy.
    pub hits: u64,
    /// Downloads of large files that found no usable copy.
    pub misses: u64,
    /// Copies completed.
    pub fills: u64,
    /// Copies started and discarded (cut, failed, superseded).
    pub fills_discarded: u64,
    /// Copies removed to stay within the bound.
    pub evictions: u64,
    /// Copies found damaged and removed.
    pub damaged: u64,
    /// Copies on disk now.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl LargeFileStats {
    /// The counters in Prometheus text format, each name starting with `prefix`.
    pub fn to_prometheus(&self, prefix: &str) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for (name, kind, help, value) in [
            (
                "hits_total",
                "counter",
                "Downloads answered from a local copy.",
                self.hits,
            ),
            (
                "misses_total",
                "counter",
                "Downloads of large files with no usable copy.",
                self.misses,
            ),
            ("fills_total", "counter", "Copies completed.", self.fills),
            (
                "fills_discarded_total",
                "counter",
                "Copies started and discarded.",
                self.fills_discarded,
            ),
            (
                "evictions_total",
                "counter",
                "Copies removed for space.",
                self.evictions,
            ),
            (
                "damaged_total",
                "counter",
                "Copies found damaged and removed.",
                self.damaged,
            ),
            ("files", "gauge", "Copies on disk.", self.files),
            ("bytes", "gauge", "Bytes of copies on disk.", self.bytes),
        ] {
            let _ = writeln!(out, "# HELP {prefix}_{name} {help}");
            let _ = writeln!(out, "# TYPE {prefix}_{name} {kind}");
            let _ = writeln!(out, "{prefix}_{name} {value}");
        }
        out
    }
}

/// The version a copy holds: what the description says of the stored object.
#[derive(Debug, Clone)]
pub(crate) struct Version<'a> {
    pub etag: &'a str,
    pub stored_size: u64,
}

/// The tier. Cheap to clone.
#[derive(Clone)]
pub(crate) struct LargeFiles {
    inner: Arc<Inner>,
}

impl fmt::Debug for LargeFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LargeFiles")
            .field("max_bytes", &self.inner.max_bytes)
            .finish_non_exhaustive()
    }
}

struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    seq: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    fills: AtomicU64,
    discarded: AtomicU64,
    evictions: AtomicU64,
    damaged: AtomicU64,
    /// Background copies running now.
    background: AtomicU64,
}

#[derive(Default)]
struct Index {
    /// The finished copies, least recently used first.
    copies: SizedIndex,
    /// Names being copied now, so that one version is copied once at a time.
    filling: HashSet<String>,
    /// Bytes reserved by the copies being made.
    reserved: u64,
    /// Copies being made whose key was written or deleted meanwhile: never committed.
    voided: HashSet<String>,
}

/// `sha256(parts joined by newlines)`, the first `n` bytes in hex.
fn hashed(parts: &[&[u8]], n: usize) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            ctx.update(b"\n");
        }
        ctx.update(p);
    }
    ctx.finish().as_ref()[..n]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn key_part(key: &str) -> String {
    hashed(&[key.as_bytes()], 16)
}

fn name_of(key: &str, v: &Version<'_>) -> String {
    let size = v.stored_size.to_string();
    format!(
        "{}-{}",
        key_part(key),
        hashed(&[v.etag.as_bytes(), size.as_bytes()], 8)
    )
}

fn is_copy_name(name: &str) -> bool {
    name.len() == 32 + 1 + 16
        && name.bytes().enumerate().all(|(i, b)| match i {
            32 => b == b'-',
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        })
}

/// Whether `name` is one of our temporary files: `{copy name}.{number}.tmp`.
fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_suffix(".tmp") else {
        return false;
    };
    match rest.split_once('.') {
        Some((copy, seq)) => {
            is_copy_name(copy) && !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

impl LargeFiles {
    /// Opens (creating) the tier's directory and takes stock of the copies in it. A directory
    /// that cannot be used turns the tier off, with a warning: it is a cache.
    pub(crate) fn open(setup: LargeFileSetup) -> Option<Self> {
        let tier = LargeFiles {
            inner: Arc::new(Inner {
                dir: setup.dir,
                max_bytes: setup.max_bytes,
                index: Mutex::new(Index::default()),
                seq: AtomicU64::new(0),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                fills: AtomicU64::new(0),
                discarded: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
                damaged: AtomicU64::new(0),
                background: AtomicU64::new(0),
            }),
        };
        match tier.inner.scan() {
            Ok(()) => Some(tier),
            Err(e) => {
                tracing::warn!(error = %e, "the large-file cache directory is unusable; large files will not be copied locally");
                None
            }
        }
    }

    /// Whether a file of `stored_size` bytes may be copied at all.
    pub(crate) fn takes(&self, stored_size: u64) -> bool {
        stored_size > 0 && stored_size <= self.inner.max_bytes / 4
    }

    /// The counters.
    pub(crate) fn stats(&self) -> LargeFileStats {
        let i = &self.inner;
        let (files, bytes) = {
            let idx = i.lock();
            (idx.copies.len() as u64, idx.copies.total())
        };
        LargeFileStats {
            hits: i.hits.load(Ordering::Relaxed),
            misses: i.misses.load(Ordering::Relaxed),
            fills: i.fills.load(Ordering::Relaxed),
            fills_discarded: i.discarded.load(Ordering::Relaxed),
            evictions: i.evictions.load(Ordering::Relaxed),
            damaged: i.damaged.load(Ordering::Relaxed),
            files,
            bytes,
        }
    }

    /// The open copy of `key` at `version`, if there is a whole one. Counts a hit or a miss.
    pub(crate) async fn open_copy(
        &self,
        key: &str,
        version: &Version<'_>,
    ) -> Option<Arc<SharedFile>> {
        let name = name_of(key, version);
        let known = self.inner.lock().copies.contains(&name);
        let file = if known {
            let path = self.inner.dir.join(&name);
            let want = version.stored_size;
            let opened = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
                let file = std::fs::File::open(path)?;
                let len = file.metadata()?.len();
                if len == want {
                    // Recency survives a restart: the scan orders copies by this time.
                    let _ = file.set_modified(std::time::SystemTime::now());
                }
                Ok((file, len))
            })
            .await;
            match opened {
                Ok(Ok((file, len))) if len == want => Some(file),
                Ok(Ok(_)) => {
                    self.discard_damaged(&name).await;
                    None
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Gone from under us (removed by hand): forget it.
                    self.inner.lock().copies.remove(&name);
                    None
                }
                // Anything else (out of file descriptors, say) may pass: a miss this time.
                _ => None,
            }
        } else {
            None
        };
        match file {
            Some(f) => {
                self.inner.lock().copies.touch(&name);
                self.inner.hits.fetch_add(1, Ordering::Relaxed);
                Some(SharedFile::new(f))
            }
            None => {
                self.inner.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Removes the copy of `key` at `version`, found damaged while it was read.
    pub(crate) async fn remove_damaged(&self, key: &str, version: &Version<'_>) {
        self.discard_damaged(&name_of(key, version)).await;
    }

    async fn discard_damaged(&self, name: &str) {
        if self.inner.lock().copies.remove(name) {
            self.inner.damaged.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("a large-file cache copy was damaged; removed it");
        }
        let path = self.inner.dir.join(name);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
    }

    /// Removes every copy of `key` (after a write or delete of it through this instance).
    pub(crate) async fn forget(&self, key: &str) {
        let prefix = key_part(key);
        let gone: Vec<String> = {
            let mut idx = self.inner.lock();
            let names: Vec<String> = idx
                .copies
                .names()
                .filter(|n| n.starts_with(&prefix))
                .map(str::to_owned)
                .collect();
            for n in &names {
                idx.copies.remove(n);
            }
            let making: Vec<String> = idx
                .filling
                .iter()
                .filter(|n| n.starts_with(&prefix))
                .cloned()
                .collect();
            idx.voided.extend(making);
            names
        };
        if gone.is_empty() {
            return;
        }
        let dir = self.inner.dir.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for n in gone {
                let _ = std::fs::remove_file(dir.join(n));
            }
        })
        .await;
    }

    /// Starts a copy of `key` at `version`, unless one is already being made or the file is
    /// too large. `guard` is a cache ticket taken before the bucket was read: a write or
    /// delete of the key seen since then discards the copy.
    pub(crate) fn start_copy(
        &self,
        key: &str,
        version: &Version<'_>,
        guard: Option<(Cache, Ticket)>,
    ) -> Option<Filling> {
        if !self.takes(version.stored_size) {
            return None;
        }
        let name = name_of(key, version);
        let size = version.stored_size;
        {
            let mut idx = self.inner.lock();
            // Copies in progress reserve their size: temporary files cannot fill the disk.
            if idx.copies.contains(&name)
                || idx.filling.contains(&name)
                || idx.reserved + size > self.inner.max_bytes / 2
            {
                return None;
            }
            idx.filling.insert(name.clone());
            idx.reserved += size;
        }
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.inner.dir.join(format!("{name}.{seq}.tmp"));
        let mut copy = Filling {
            tier: self.clone(),
            name,
            tmp,
            file: None,
            pending: Vec::new(),
            pending_len: 0,
            written: 0,
            expected: size,
            guard,
            broken: false,
            done: false,
        };
        // Created here, not on the first write: the file then exists before anything can
        // drop the copy, and `Drop` always finds what it must remove. One create is quick.
        match std::fs::File::create_new(&copy.tmp) {
            Ok(f) => copy.file = Some(f),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a large-file cache copy");
                copy.done = true; // nothing to discard
                return None;
            }
        }
        Some(copy)
    }

    /// A slot for one background copy, if fewer than [`BACKGROUND_COPIES`] run.
    pub(crate) fn background_slot(&self) -> Option<BackgroundSlot> {
        let running = &self.inner.background;
        let mut now = running.load(Ordering::Relaxed);
        loop {
            if now >= BACKGROUND_COPIES as u64 {
                return None;
            }
            match running.compare_exchange(now, now + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    return Some(BackgroundSlot {
                        inner: self.inner.clone(),
                    });
                }
                Err(seen) => now = seen,
            }
        }
    }
}

/// A running background copy; its slot is freed when this is dropped.
pub(crate) struct BackgroundSlot {
    inner: Arc<Inner>,
}

impl Drop for BackgroundSlot {
    fn drop(&mut self) {
        self.inner.background.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // Index updates are plain map edits: consistent after a panic.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn scan(&self) -> std::io::Result<()> {
        // Temporary files are left by copies that a crash interrupted.
        let found = sized_dir::scan(&self.dir, is_copy_name, is_temp_name)?;
        let victims = {
            let mut idx = self.lock();
            for (name, size) in found {
                idx.copies.insert(&name, size);
            }
            self.over_bound(&mut idx, "")
        };
        remove_all(&self.dir, victims);
        Ok(())
    }

    /// Takes least recently used copies (never `keep`) off the index until within the bound;
    /// returns their names, for the caller to remove from disk outside the lock.
    fn over_bound(&self, idx: &mut Index, keep: &str) -> Vec<String> {
        let victims = idx.copies.over_bound(self.max_bytes, keep);
        self.evictions
            .fetch_add(victims.len() as u64, Ordering::Relaxed);
        victims
    }
}

fn remove_all(dir: &Path, names: Vec<String>) {
    for n in names {
        let _ = std::fs::remove_file(dir.join(n));
    }
}

/// A copy being written. Dropped without [`Filling::commit`], it removes its temporary file.
pub(crate) struct Filling {
    tier: LargeFiles,
    name: String,
    tmp: PathBuf,
    file: Option<std::fs::File>,
    pending: Vec<Bytes>,
    pending_len: usize,
    written: u64,
    expected: u64,
    guard: Option<(Cache, Ticket)>,
    /// A write failed: the copy will be discarded, the download goes on.
    broken: bool,
    done: bool,
}

impl Filling {
    /// Adds the next bytes of the stored object.
    pub(crate) async fn push(&mut self, chunk: &Bytes) {
        if self.broken {
            return;
        }
        self.written += chunk.len() as u64;
        if self.written > self.expected {
            self.broken = true;
            return;
        }
        self.pending.push(chunk.clone());
        self.pending_len += chunk.len();
        if self.pending_len >= WRITE_BATCH {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        if self.pending.is_empty() || self.broken {
            return;
        }
        let parts = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        let Some(mut file) = self.file.take() else {
            self.broken = true;
            return;
        };
        let wrote = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            for p in &parts {
                file.write_all(p)?;
            }
            Ok(file)
        })
        .await;
        match wrote {
            Ok(Ok(file)) => self.file = Some(file),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "writing a large-file cache copy failed; discarding it");
                self.broken = true;
            }
            Err(_) => self.broken = true,
        }
    }

    /// The stored object was read to its end and decoded without error: the copy becomes
    /// usable, unless something above says otherwise.
    pub(crate) async fn commit(mut self) {
        self.flush().await;
        if self.broken || self.written != self.expected {
            return;
        }
        if let Some((cache, ticket)) = &self.guard
            && cache.invalidated_since(ticket).await
        {
            return;
        }
        let Some(file) = self.file.take() else { return };
        let inner = self.tier.inner.clone();
        let (tmp, name, size) = (self.tmp.clone(), self.name.clone(), self.expected);
        let placed = tokio::task::spawn_blocking(move || {
            // Whole on disk before it has its name, so a power loss cannot leave a copy with
            // the right length and the wrong bytes.
            file.sync_data()?;
            drop(file);
            let victims = {
                // Named and indexed under the lock, so a `forget` of the key either saw this
                // copy being made (and voided it) or comes after and removes it.
                let mut idx = inner.lock();
                if idx.voided.contains(&name) {
                    return Err(std::io::Error::other("voided by a write of the key"));
                }
                std::fs::rename(&tmp, inner.dir.join(&name))?;
                idx.copies.insert(&name, size);
                inner.over_bound(&mut idx, &name)
            };
            remove_all(&inner.dir, victims);
            Ok::<_, std::io::Error>(())
        })
        .await;
        if let Ok(Ok(())) = placed {
            self.done = true;
            self.tier.inner.fills.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Filling {
    fn drop(&mut self) {
        if !self.done {
            // A quick unlink; the copy's data never reached its final name.
            let _ = std::fs::remove_file(&self.tmp);
        }
        let mut idx = self.tier.inner.lock();
        idx.filling.remove(&self.name);
        idx.voided.remove(&self.name);
        idx.reserved = idx.reserved.saturating_sub(self.expected);
        drop(idx);
        if !self.done {
            self.tier.inner.discarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `stored` with every byte also written to `copy`, and `decode` applied; the copy is
/// committed only when the decoded stream ends without error, having given exactly `size`
/// bytes.
///
/// An HTTP server stops reading a body once it has sent `Content-Length` bytes, so the end of
/// the stream may never be asked for. When the decoded bytes reach `size`, the stream is
/// therefore driven to its end (the decoder's last checks) before the last bytes are handed
/// on; then the copy is committed on a task of its own (a sync and a rename), so the last
/// bytes do not wait for the disk. A stream that fails at its end, or goes on past `size`,
/// ends in an error instead of its last bytes.
pub(crate) fn tee(
    copy: Filling,
    stored: ByteStream,
    size: u64,
    key: &str,
    decode: impl FnOnce(ByteStream) -> crate::Result<ByteStream>,
) -> crate::Result<ByteStream> {
    let shared = Arc::new(tokio::sync::Mutex::new(Some(copy)));
    let writer = shared.clone();
    let teed = stored
        .then(move |chunk| {
            let writer = writer.clone();
            async move {
                if let Ok(bytes) = &chunk
                    && let Some(copy) = writer.lock().await.as_mut()
                {
                    copy.push(bytes).await;
                }
                chunk
            }
        })
        .boxed();
    let plain = decode(teed)?;
    let state = (plain, shared, 0u64, false, key.to_owned());
    Ok(
        futures::stream::unfold(state, move |(mut plain, shared, mut sent, ended, key)| {
            async move {
                if ended {
                    return None;
                }
                let item = match plain.next().await {
                    Some(Ok(b)) => {
                        sent += b.len() as u64;
                        if sent < size {
                            Ok(b)
                        } else {
                            match plain.next().await {
                                None if sent == size => {
                                    if let Some(copy) = shared.lock().await.take() {
                                        tokio::spawn(copy.commit());
                                    }
                                    Ok(b)
                                }
                                Some(Err(e)) => Err(e),
                                _ => Err(crate::Error::Integrity {
                                    key: key.clone(),
                                    reason: "the stored file is longer than its description".into(),
                                }),
                            }
                        }
                    }
                    Some(Err(e)) => Err(e),
                    None => {
                        if let Some(copy) = shared.lock().await.take()
                            && sent == size
                        {
                            tokio::spawn(copy.commit());
                        }
                        return None;
                    }
                };
                let ended = item.is_err() || sent >= size;
                if ended {
                    // Whatever was not committed above is discarded now.
                    shared.lock().await.take();
                }
                Some((item, (plain, shared, sent, ended, key)))
            }
        })
        .boxed(),
    )
}

/// Copies a whole stored object from `stored` into `copy`, in the background of a ranged
/// read, and commits it if it arrived whole.
pub(crate) async fn copy_all(mut copy: Filling, mut stored: ByteStream) {
    while let Some(chunk) = stored.next().await {
        match chunk {
            Ok(b) => copy.push(&b).await,
            Err(_) => return,
        }
    }
    copy.commit().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(etag: &str, stored_size: u64) -> Version<'_> {
        Version { etag, stored_size }
    }

    #[test]
    fn settings_from_variables() {
        let with = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let default = LargeFileSetup::from_lookup(&with(&[]), "/d/cache-large")
            .unwrap()
            .unwrap();
        assert_eq!(
            (default.dir, default.max_bytes),
            (PathBuf::from("/d/cache-large"), DEFAULT_MAX_BYTES)
        );
        let set = with(&[("CACHE_LARGE_MAX_BYTES", "1000"), ("CACHE_LARGE_DIR", "/x")]);
        let set = LargeFileSetup::from_lookup(&set, "/d").unwrap().unwrap();
        assert_eq!((set.dir, set.max_bytes), (PathBuf::from("/x"), 1000));
        let off = with(&[("CACHE_LARGE_MAX_BYTES", "0")]);
        assert!(LargeFileSetup::from_lookup(&off, "/d").unwrap().is_none());
        let bad = with(&[("CACHE_LARGE_MAX_BYTES", "4GiB")]);
        let err = LargeFileSetup::from_lookup(&bad, "/d")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CACHE_LARGE_MAX_BYTES") && !err.contains("4GiB"),
            "{err}"
        );
    }

    #[test]
    fn names_separate_keys_and_versions() {
        let a = name_of("d/app/f", &v("\"1\"", 10));
        assert!(is_copy_name(&a));
        assert_ne!(a, name_of("d/app/g", &v("\"1\"", 10)));
        assert_ne!(a, name_of("d/app/f", &v("\"2\"", 10)));
        assert_ne!(a, name_of("d/app/f", &v("\"1\"", 11)));
        assert!(a.starts_with(&key_part("d/app/f")));
        assert!(!is_copy_name("x.tmp"));
        assert!(is_temp_name(&format!("{a}.12.tmp")));
        for not_ours in [
            "x.1.tmp",
            "notes.tmp",
            &format!("{a}.tmp"),
            &format!("{a}.1x.tmp"),
        ] {
            assert!(!is_temp_name(not_ours), "{not_ours}");
        }
    }

    async fn fill(tier: &LargeFiles, key: &str, version: &Version<'_>, body: &[u8]) -> bool {
        let Some(mut copy) = tier.start_copy(key, version, None) else {
            return false;
        };
        for part in body.chunks(300_000) {
            copy.push(&Bytes::copy_from_slice(part)).await;
        }
        copy.commit().await;
        true
    }

    fn tmp_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count()
    }

    #[tokio::test]
    async fn a_whole_copy_is_found_and_a_partial_one_never() {
        let dir = tempfile::tempdir().unwrap();
        let tier = LargeFiles::open(LargeFileSetup::new(dir.path(), 100 << 20)).unwrap();
        let body = vec![7u8; 2_500_000];
        let ver = v("\"e\"", body.len() as u64);
        assert!(fill(&tier, "k", &ver, &body).await);
        let file = tier.open_copy("k", &ver).await.expect("a hit");
        assert_eq!(file.metadata().unwrap().len(), body.len() as u64);
        // Another version of the key misses.
        assert!(tier.open_copy("k", &v("\"f\"", 2_500_000)).await.is_none());

        // Short, long and dropped copies leave nothing behind.
        let short = v("\"s\"", 3_000_000);
        assert!(fill(&tier, "k", &short, &body).await);
        assert!(tier.open_copy("k", &short).await.is_none());
        let long = v("\"l\"", 1_000_000);
        assert!(fill(&tier, "k", &long, &body).await);
        assert!(tier.open_copy("k", &long).await.is_none());
        let mut dropped = tier.start_copy("k", &v("\"d\"", 2_500_000), None).unwrap();
        dropped.push(&Bytes::from(vec![1u8; 2_000_000])).await;
        drop(dropped);
        assert_eq!(tmp_files(dir.path()), 0);
        assert!(tier.open_copy("k", &v("\"d\"", 2_500_000)).await.is_none());
        let stats = tier.stats();
        assert_eq!((stats.fills, stats.fills_discarded, stats.files), (1, 3, 1));

        // One copy of a version at a time.
        let first = tier.start_copy("k", &v("\"x\"", 5), None);
        assert!(first.is_some());
        assert!(tier.start_copy("k", &v("\"x\"", 5), None).is_none());
        drop(first);
        assert!(tier.start_copy("k", &v("\"x\"", 5), None).is_some());

        // A write of the key while its copy is being made voids the copy.
        let racing = v("\"r\"", 1000);
        let mut copy = tier.start_copy("k", &racing, None).unwrap();
        copy.push(&Bytes::from(vec![3u8; 1000])).await;
        tier.forget("k").await;
        copy.commit().await;
        assert!(tier.open_copy("k", &racing).await.is_none());
        assert_eq!(tmp_files(dir.path()), 0);

        // Copies in progress together reserve at most half the bound.
        let big = v("\"big\"", 25 << 20);
        let first = tier
            .start_copy("a", &big, None)
            .expect("a quarter of the bound");
        let second = tier.start_copy("b", &big, None).expect("half of the bound");
        assert!(
            tier.start_copy("c", &big, None).is_none(),
            "over half the bound"
        );
        drop(first);
        assert!(tier.start_copy("c", &big, None).is_some(), "room again");
        drop(second);

        // Background copies are limited.
        let slots: Vec<_> = (0..BACKGROUND_COPIES)
            .map(|_| tier.background_slot().expect("a slot"))
            .collect();
        assert!(tier.background_slot().is_none());
        drop(slots);
        assert!(tier.background_slot().is_some());

        tier.forget("k").await;
        assert!(tier.open_copy("k", &ver).await.is_none());
        assert_eq!(tier.stats().files, 0);
    }

    #[tokio::test]
    async fn the_bound_evicts_least_recently_used_and_survives_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let setup = LargeFileSetup::new(dir.path(), 12 << 20);
        let tier = LargeFiles::open(setup.clone()).unwrap();
        let body = vec![1u8; 3 << 20];
        let ver = |e| v(e, 3 << 20);
        for e in ["\"a\"", "\"b\"", "\"c\""] {
            assert!(fill(&tier, e, &ver(e), &body).await);
        }
        // `a` is used, so `b` is the least recently used when `d` arrives... and more.
        assert!(tier.open_copy("\"a\"", &ver("\"a\"")).await.is_some());
        assert!(fill(&tier, "\"d\"", &ver("\"d\""), &body).await);
        assert!(fill(&tier, "\"e\"", &ver("\"e\""), &body).await);
        assert!(tier.open_copy("\"b\"", &ver("\"b\"")).await.is_none());
        assert!(tier.open_copy("\"a\"", &ver("\"a\"")).await.is_some());
        let stats = tier.stats();
        assert_eq!(
            (stats.files, stats.bytes, stats.evictions),
            (4, 12 << 20, 1)
        );
        // Larger than a quarter of the bound: never copied.
        assert!(!tier.takes((3 << 20) + 1));

        // A restart finds the copies; a crash's temporary file is removed, files that are
        // not ours are left alone.
        let crashed = format!("{}.7.tmp", name_of("k", &ver("\"z\"")));
        std::fs::write(dir.path().join(&crashed), b"partial").unwrap();
        std::fs::write(dir.path().join("notes.tmp"), b"not ours").unwrap();
        drop(tier);
        let again = LargeFiles::open(setup).unwrap();
        assert!(!dir.path().join(&crashed).exists());
        assert_eq!(tmp_files(dir.path()), 1, "only notes.tmp is left");
        assert_eq!(again.stats().files, 4);
        assert!(again.open_copy("\"e\"", &ver("\"e\"")).await.is_some());
    }

    #[tokio::test]
    async fn a_copy_of_the_wrong_size_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let tier = LargeFiles::open(LargeFileSetup::new(dir.path(), 100 << 20)).unwrap();
        let ver = v("\"e\"", 1000);
        assert!(fill(&tier, "k", &ver, &[0u8; 1000]).await);
        let path = dir.path().join(name_of("k", &ver));
        std::fs::write(&path, [0u8; 999]).unwrap();
        assert!(tier.open_copy("k", &ver).await.is_none());
        assert!(!path.exists());
        assert_eq!(tier.stats().damaged, 1);
    }
}
