//! [`FileManager`]: the seed's API, composed from location, codec and store.
//!
//! This file only orchestrates: it validates input through [`crate::location`] and
//! [`crate::meta`], hands bytes to the codec and the store, and shapes results. It parses no
//! wire format and does no cryptography itself.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::body::{self, Body, collect_body};
use crate::cache_io::{CacheSetup, DescriptionMemo};
use crate::codec_io::{Codec, KeyConfig};
use crate::error::{Error, Result};
use crate::large::{LargeFileSetup, LargeFileStats, LargeFiles};
use crate::location::{Filename, ListPrefix, Location, Scope, StorageLevel};
use crate::meta::{Encoding, ObjectRecord, normalize_metadata, validate_content_type};
use crate::presign::{PresignConfig, Presigner};
use crate::scoped::Scoped;
use crate::store::{Capabilities, ObjectInfo, StorageConfig, Store, WriteOutcome};
use crate::types::*;

mod cached;
mod presigned;
mod rekey;
mod seed;
use filemanager_cache::Cache;

/// Most files one listing returns.
pub const MAX_LIST_KEYS: usize = 1000;
/// Head requests a listing runs at once to learn each file's own size.
const LIST_HEAD_CONCURRENCY: usize = 16;

/// The seed's FileManager: one handle to upload, download, delete, describe and list files of
/// every domain and user. Cheap to clone; clones share everything.
#[derive(Clone, Debug)]
pub struct FileManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    codec: Codec,
    max_upload_bytes: Option<u64>,
    presigner: Option<Presigner>,
    cache: Option<Cache>,
    /// Local copies of large files (remote backends with a cache only).
    large: Option<LargeFiles>,
    /// Parsed descriptions of cache entries (see [`DescriptionMemo`]).
    memo: DescriptionMemo,
}

/// Builds a [`FileManager`] from explicit settings.
#[derive(Debug)]
pub struct FileManagerBuilder {
    storage: StorageConfig,
    keys: KeyConfig,
    max_upload_bytes: Option<u64>,
    presign: Option<PresignConfig>,
    cache: Option<CacheSetup>,
    large: Option<LargeFileSetup>,
}

impl FileManagerBuilder {
    /// Uses the encryption key(s) in `keys` (see [`KeyConfig`]).
    pub fn keys(mut self, keys: KeyConfig) -> Self {
        self.keys = keys;
        self
    }

    /// Refuses uploads larger than `limit` bytes (checked while streaming).
    pub fn max_upload_bytes(mut self, limit: Option<u64>) -> Self {
        self.max_upload_bytes = limit;
        self
    }

    /// Enables presigned URLs, signed with `config.secret` and pointing at
    /// `config.base_url` (the HTTP service that honours them).
    pub fn presign(mut self, config: Option<PresignConfig>) -> Self {
        self.presign = config;
        self
    }

    /// Caches content, metadata and listings as `setup` says (no cache when `None`, the
    /// builder's default).
    pub fn cache(mut self, setup: Option<CacheSetup>) -> Self {
        self.cache = setup;
        self
    }

    /// Keeps local copies of files too large for the cache in the tier `setup` describes
    /// (none when `None`, the builder's default). Used only with a cache and a remote backend
    /// (S3 and the like): a local or in-memory backend has nothing to gain from a copy.
    pub fn large_files(mut self, setup: Option<LargeFileSetup>) -> Self {
        self.large = setup;
        self
    }

    /// Opens the backend and returns the manager. With a cache invalidation bus this must run
    /// inside a Tokio runtime.
    pub fn build(self) -> Result<FileManager> {
        let store = self.storage.open()?;
        let large = match (&self.cache, self.large) {
            (Some(_), Some(setup)) if !matches!(store.name(), "local" | "memory") => {
                LargeFiles::open(setup)
            }
            _ => None,
        };
        Ok(FileManager {
            inner: Arc::new(Inner {
                cache: self.cache.map(CacheSetup::open).transpose()?,
                large,
                memo: DescriptionMemo::default(),
                presigner: self.presign.as_ref().map(Presigner::new).transpose()?,
                store,
                codec: Codec::new(self.keys)?,
                max_upload_bytes: self.max_upload_bytes,
            }),
        })
    }
}

impl FileManager {
    /// Starts building a manager over `storage`, with no encryption key yet.
    pub fn builder(storage: StorageConfig) -> FileManagerBuilder {
        FileManagerBuilder {
            storage,
            keys: KeyConfig::None,
            max_upload_bytes: None,
            presign: None,
            cache: None,
            large: None,
        }
    }

    /// A manager configured by the environment: the seed's `APP_BUCKET`, `S3_URL`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` (local disk under
    /// `FM_DATA_DIR` when `APP_BUCKET` is unset), `STORAGE_ENCRYPTION_KEY`,
    /// `STORAGE_ENCRYPTION_KEYS_OLD`, `FM_MAX_UPLOAD_BYTES`, for presigned URLs
    /// `FM_PUBLIC_URL` with `FM_PRESIGN_SECRET`, and the cache's variables (see
    /// [`CacheSetup::from_env`], and [`LargeFileSetup::from_env`] with its directory in
    /// `{FM_DATA_DIR}/cache-large` by default).
    pub fn from_env() -> Result<Self> {
        let max = match std::env::var("FM_MAX_UPLOAD_BYTES") {
            Ok(v) if !v.is_empty() => Some(v.parse::<u64>().map_err(|_| {
                Error::config("FM_MAX_UPLOAD_BYTES", "must be a whole number of bytes")
            })?),
            _ => None,
        };
        let presign = match (
            std::env::var("FM_PUBLIC_URL"),
            std::env::var("FM_PRESIGN_SECRET"),
        ) {
            (Ok(base_url), Ok(secret)) if !base_url.is_empty() && !secret.is_empty() => {
                Some(PresignConfig {
                    base_url,
                    secret: zeroize::Zeroizing::new(secret.into_bytes()),
                })
            }
            _ => None,
        };
        FileManager::builder(StorageConfig::from_env()?)
            .keys(KeyConfig::from_env()?)
            .max_upload_bytes(max)
            .presign(presign)
            .cache(CacheSetup::from_env()?)
            .large_files(LargeFileSetup::from_env(
                crate::cache_io::default_data_dir().join("cache-large"),
            )?)
            .build()
    }

    /// The encryption key ids (hex, no secret), primary first.
    pub fn key_ids(&self) -> &[String] {
        self.inner.codec.key_ids()
    }

    /// Cache counters (hits and misses per tier, evictions, bytes, L2 errors, invalidations),
    /// when a cache is configured.
    pub fn cache_stats(&self) -> Option<filemanager_cache::Stats> {
        self.inner.cache.as_ref().map(Cache::stats)
    }

    /// Counters of the large-file tier, when it is in use.
    pub fn large_file_stats(&self) -> Option<LargeFileStats> {
        self.inner.large.as_ref().map(LargeFiles::stats)
    }

    /// The cache, when one is configured (for its invalidation bus status and tests).
    pub fn cache(&self) -> Option<&Cache> {
        self.inner.cache.as_ref()
    }

    /// Removes what uploads interrupted by a crash left behind on local disk (staging files
    /// older than `older_than`; younger ones may belong to an upload in flight in another
    /// process). Other backends discard unfinished uploads themselves. Returns how many files
    /// were removed. The service runs this at start.
    pub async fn sweep_stale_uploads(&self, older_than: std::time::Duration) -> usize {
        self.inner.store.sweep_stale_uploads(older_than).await
    }

    /// What the storage backend can do.
    pub fn capabilities(&self) -> Capabilities {
        self.inner.store.capabilities()
    }

    /// A short name of the backend kind: `memory`, `local`, `s3`, `gcs` or `azure`.
    pub fn backend_name(&self) -> &'static str {
        self.inner.store.name()
    }

    /// A handle for the APP level of `domain`, from which `.user(id)` gives a USER-level one.
    pub fn domain(&self, domain: &str) -> Result<Scoped> {
        Ok(Scoped::new(
            self.clone(),
            Scope::parse(domain, StorageLevel::App, None)?,
        ))
    }

    // ----- the operations, on validated locations -------------------------------------------

    /// Uploads `body` to `location`, replacing any file there. Nothing is stored unless the
    /// whole body arrives and is written.
    pub async fn upload(
        &self,
        location: &Location,
        body: impl Into<Body>,
        opts: &UploadOptions,
    ) -> Result<UploadResult> {
        let body = body.into();
        let in_memory = body.bytes.clone();
        let metadata = normalize_metadata(&opts.metadata)?;
        validate_content_type(&opts.content_type)?;
        let encoding = Encoding::from_flags(opts.compress, opts.encrypt);
        let key = location.key();
        self.inner.codec.check(encoding)?;

        let limit = match (self.inner.max_upload_bytes, opts.max_size) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let (Some(limit), Some(len)) = (limit, body.len)
            && len > limit
        {
            return Err(Error::PayloadTooLarge { limit });
        }
        let plain_len = Arc::new(AtomicU64::new(0));
        let counter = plain_len.clone();
        // A streamed body small enough for the cache is kept as it passes, so that it can be
        // cached like a body given in memory; past the cache's item limit the copy is dropped.
        let copy_limit = match (&self.inner.cache, &in_memory) {
            (Some(cache), None) if opts.cache_content => crate::cache_io::file_limit(cache),
            _ => 0,
        };
        let copy = Arc::new(std::sync::Mutex::new(Some(Vec::new())));
        let tee = copy.clone();
        let plaintext = body::limited(body.stream, limit, body.len)
            .inspect_ok(move |b| {
                let total = counter.fetch_add(b.len() as u64, Ordering::Relaxed) + b.len() as u64;
                let mut kept = tee.lock().unwrap_or_else(|e| e.into_inner());
                match kept.as_mut() {
                    Some(buf) if total <= copy_limit => buf.extend_from_slice(b),
                    Some(_) => *kept = None,
                    None => {}
                }
            })
            .boxed();
        let record = ObjectRecord {
            content_type: opts.content_type.clone(),
            metadata,
            encoding,
            size: body.len,
            no_cache: !opts.cache_content,
        };
        let stored = self
            .inner
            .codec
            .encode(&key, encoding, body.len, plaintext)?;
        // Taken before the write: the cache then tells whether any write of this key was
        // seen (here or through the bus) while ours was in flight.
        let before_write = self.inner.cache.as_ref().map(|c| c.ticket(&key));
        let mut written = self
            .inner
            .store
            .put(&key, &record, stored, body.in_memory)
            .await?;
        if written.outcome == WriteOutcome::Dropped {
            // The backend dropped the upload and storage shows no newer version, but one may
            // have come and gone (written, then deleted). A write or delete of the key seen
            // meanwhile explains the drop; nothing else does, and then the upload failed.
            let seen = match (&self.inner.cache, &before_write) {
                (Some(cache), Some(ticket)) => cache.invalidated_since(ticket).await,
                _ => false,
            };
            if !seen {
                return Err(Error::StorageUnavailable {
                    reason: "the storage dropped this upload before it completed; try again".into(),
                });
            }
            written.outcome = WriteOutcome::Superseded;
        }
        // A superseded upload's bytes are not what the key holds: never cache them.
        let no_cache = record.no_cache || written.outcome != WriteOutcome::Stored;
        let info = ObjectInfo::written(record, written, now());
        let file = file_info(location, &info, plain_len.load(Ordering::Relaxed));
        self.forget_copies(&key).await;
        if let Some(cache) = &self.inner.cache {
            cache.invalidate(&key).await;
            let streamed = copy
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .filter(|_| copy_limit > 0)
                .map(Bytes::from);
            if let Some(plain) = in_memory.or(streamed).filter(|_| !no_cache) {
                self.fill_after_upload(cache, location, &file, plain).await;
            }
        }
        Ok(UploadResult {
            success: true,
            file,
        })
    }

    /// Starts a download of `location`: the file's description and a stream of its original
    /// bytes (all of them, or `opts.range`).
    pub async fn download(&self, location: &Location, opts: &DownloadOptions) -> Result<Download> {
        if let Some(cache) = self.cache_unless(opts.bypass_cache)
            && let Some((meta, plain, from_cache)) =
                reading(|| self.cached_content(cache, location)).await?
        {
            let (body, range) = match opts.range {
                None => (plain, None),
                Some(r) => {
                    let r = r.resolve(meta.info.size)?;
                    (plain.slice(r.start as usize..r.end as usize), Some(r))
                }
            };
            return Ok(Download {
                info: meta.info,
                in_memory: Some(body.clone()),
                body: futures::stream::once(async move { Ok(body) }).boxed(),
                range,
                from_cache,
            });
        }
        // Boxed: these paths wait for a disk or the network, so an allocation costs nothing
        // there, and kept inline their state would make every download's future (a cache
        // hit's included) several KiB larger, copied as the request's future is set up.
        let cache = self.cache_unless(opts.bypass_cache);
        if let Some(cache) = cache
            && let Some(download) =
                Box::pin(reading(|| self.large_copy(cache, location, opts))).await?
        {
            return Ok(download);
        }
        Box::pin(reading(|| self.download_stored(location, opts, cache))).await
    }

    /// A download from storage, bypassing the cache. With `cache`, a large file read from a
    /// remote backend is also copied to the large-file tier: as it streams by when the
    /// download is whole, else in the background.
    async fn download_stored(
        &self,
        location: &Location,
        opts: &DownloadOptions,
        cache: Option<&Cache>,
    ) -> Result<Download> {
        let key = location.key();
        // Taken before storage is read: a write seen after it voids a copy of what was read.
        let guard = cache.map(|c| (c.clone(), c.ticket(&key)));
        match opts.range {
            None => {
                let (info, stored) = self.inner.store.get(&key).await?;
                let size = self
                    .inner
                    .codec
                    .size(&self.inner.store, &key, &info)
                    .await?;
                let encoding = info.record.encoding;
                let codec = &self.inner.codec;
                let body = match self.start_copy(&key, &info, size, guard) {
                    Some(copy) => crate::large::tee(copy, stored, size, &key, |s| {
                        codec.decode(&key, encoding, s)
                    })?,
                    None => codec.decode(&key, encoding, stored)?,
                };
                let body = decode_ahead(&key, encoding, size, body);
                Ok(Download {
                    info: Arc::new(file_info(location, &info, size)),
                    body,
                    range: None,
                    from_cache: false,
                    in_memory: None,
                })
            }
            Some(range) => {
                let (info, size) = self.head_sized(&key).await?;
                let range = range.resolve(size)?;
                let body = self.read_range(&key, &info, range.clone()).await?;
                let body = decode_ahead(&key, info.record.encoding, range.end - range.start, body);
                if let Some(copy) = self.start_copy(&key, &info, size, guard) {
                    self.copy_in_background(key.clone(), &info, copy);
                }
                Ok(Download {
                    info: Arc::new(file_info(location, &info, size)),
                    body,
                    range: Some(range),
                    from_cache: false,
                    in_memory: None,
                })
            }
        }
    }

    /// The object's facts and the file's own length.
    async fn head_sized(&self, key: &str) -> Result<(ObjectInfo, u64)> {
        let info = self.inner.store.head(key).await?;
        let size = self.inner.codec.size(&self.inner.store, key, &info).await?;
        Ok((info, size))
    }

    async fn read_range(
        &self,
        key: &str,
        info: &ObjectInfo,
        range: Range<u64>,
    ) -> Result<crate::store::ByteStream> {
        match info.record.encoding {
            Encoding::Plain => self.inner.store.get_range(key, info, range).await,
            _ => {
                self.inner
                    .codec
                    .read_range(&self.inner.store, key, info, range)
                    .await
            }
        }
    }

    /// Downloads the whole of `location` (or `opts.range` of it) into memory.
    pub async fn download_bytes(
        &self,
        location: &Location,
        opts: &DownloadOptions,
    ) -> Result<Bytes> {
        if opts.range.is_some() || self.cache_unless(opts.bypass_cache).is_some() {
            return collect_body(self.download(location, opts).await?.body).await;
        }
        // The whole object in one read: no per-piece hand-offs, one buffer.
        let key = location.key();
        let (info, stored) = self.inner.store.get_all(&key).await?;
        self.decode_all(&key, info.record.encoding, stored).await
    }

    /// The description of the file at `location`, or `None` if there is none.
    pub async fn metadata(&self, location: &Location, use_cache: bool) -> Result<Option<FileInfo>> {
        let found = match self.cache_unless(!use_cache) {
            Some(cache) => self.cached_meta(cache, location).await,
            None => self.stored_meta(location).await,
        };
        match found {
            Ok(meta) => Ok(Some(Arc::unwrap_or_clone(meta.info))),
            Err(Error::FileNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes the file at `location`; `FileNotFound` if there is none.
    pub async fn delete(&self, location: &Location) -> Result<DeleteResult> {
        let key = location.key();
        reading(|| self.inner.store.head(&key)).await?;
        let deleted = self.inner.store.delete(&key).await;
        // Invalidate even if the delete failed half way: the cache must not outlive a change.
        self.forget_copies(&key).await;
        if let Some(cache) = &self.inner.cache {
            cache.invalidate(&key).await;
        }
        deleted?;
        Ok(DeleteResult { success: true, key })
    }

    /// Lists the files of `scope`, in key order, one page at a time.
    pub async fn list(&self, scope: &Scope, opts: &ListOptions) -> Result<ListResult> {
        let Some(cache) = self.cache_unless(!opts.use_cache) else {
            return self.list_stored(scope, opts).await;
        };
        // Validated before the cache is asked, so bad input never reaches it either.
        ListPrefix::new(opts.prefix.clone())?;
        let params = format!(
            "{}\n{}\n{}",
            opts.prefix,
            opts.max_keys,
            opts.cursor.as_deref().unwrap_or("")
        );
        let loaded = cache
            .get_or_load_listing(&scope.key_prefix(), &params, || async {
                let page = self.list_stored(scope, opts).await?;
                Ok::<_, Error>(Bytes::from(
                    serde_json::to_vec(&page).expect("a listing always serializes"),
                ))
            })
            .await
            .map_err(|e| (*e).clone())?;
        match serde_json::from_slice(&loaded.value) {
            Ok(page) => Ok(page),
            Err(_) => self.list_stored(scope, opts).await,
        }
    }

    async fn list_stored(&self, scope: &Scope, opts: &ListOptions) -> Result<ListResult> {
        if !(1..=MAX_LIST_KEYS).contains(&opts.max_keys) {
            return Err(Error::invalid_input(
                "max_keys",
                "must be between 1 and 1000",
            ));
        }
        let root = scope.key_prefix();
        let prefix = ListPrefix::new(opts.prefix.clone())?;
        let start_after = match &opts.cursor {
            Some(c) if !c.is_empty() => Some(format!(
                "{root}{}",
                Filename::new(c.clone()).map_err(|_| Error::invalid_input(
                    "cursor",
                    "not a cursor from this listing"
                ))?
            )),
            _ => None,
        };
        let full_prefix = format!("{root}{}", prefix.as_str());
        let entries = self
            .inner
            .store
            .list(&full_prefix, start_after.as_deref())
            .await?;
        // Objects under our prefix that no FileManager location could have produced (written
        // by another tool) are not files of this scope; skip them.
        let mut page: Vec<Location> = entries
            .try_filter_map(|key| {
                let loc = Location::from_key(&key).ok().filter(|l| l.scope() == scope);
                futures::future::ready(Ok(loc))
            })
            .take(opts.max_keys + 1)
            .try_collect()
            .await?;
        let truncated = page.len() > opts.max_keys;
        page.truncate(opts.max_keys);
        let next_cursor = truncated
            .then(|| page.last().map(|l| l.filename().to_string()))
            .flatten();

        // Each file's own size (and content type) lives in its metadata; a file deleted between
        // the listing and its head request is left out.
        let files: Vec<ListedFile> = futures::stream::iter(page)
            .map(|loc| async move {
                match self.metadata(&loc, true).await {
                    Ok(Some(f)) => Ok(Some(ListedFile {
                        filename: f.filename,
                        key: f.key,
                        size: f.size,
                        last_modified: f.last_modified,
                        etag: f.etag,
                        content_type: f.content_type,
                    })),
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffered(LIST_HEAD_CONCURRENCY)
            .try_filter_map(|f| futures::future::ready(Ok(f)))
            .try_collect()
            .await?;
        Ok(ListResult {
            success: true,
            count: files.len(),
            files,
            truncated,
            next_cursor,
        })
    }
}

/// Runs a read again when the file changed between its requests (a write got in between), so
/// the reader gets the new version instead of an error. The tries back off (5 ms doubling to
/// 320 ms, with jitter; about 1.3 s in all) so that a burst of writes to one file can pass.
/// Bounded: a file rewritten faster than it can be read still fails, with a retryable
/// 503-class error.
async fn reading<T, F, Fut>(mut read: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    const TRIES: u32 = 10;
    let mut tries = 0;
    loop {
        match read().await {
            Err(e) if e.is_changed() => {
                tries += 1;
                if tries == TRIES {
                    return Err(Error::StorageUnavailable {
                        reason: "the file kept changing while it was being read; try again".into(),
                    });
                }
                let base = 5u64 << (tries - 1).min(6);
                // Jitter from the clock's low bits: readers that collided should not retry in
                // step. No randomness source is needed for that.
                let jitter = u64::from(Utc::now().timestamp_subsec_nanos()) % (base / 2 + 1);
                tokio::time::sleep(std::time::Duration::from_millis(base + jitter)).await;
            }
            other => return other,
        }
    }
}

/// A streamed download of an encoded file, decoded on a task of its own (see
/// [`body::ahead`]); plain bytes pass through untouched, since there is nothing to overlap,
/// and so does an answer of `len` bytes up to [`AHEAD_MIN`]: its decoding is one short step,
/// less work than the task and channel that would overlap it.
fn decode_ahead(
    key: &str,
    encoding: Encoding,
    len: u64,
    body: crate::store::ByteStream,
) -> crate::store::ByteStream {
    match encoding {
        Encoding::Plain => body,
        _ if len <= AHEAD_MIN => body,
        _ => body::ahead(body, key),
    }
}

/// Answers up to this long are decoded where they are read (see [`decode_ahead`]).
const AHEAD_MIN: u64 = 64 * 1024;

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// Entity tags are quoted in HTTP; some backends give them bare.
fn quoted(etag: &Option<String>) -> Option<String> {
    etag.as_ref().map(|e| {
        if e.starts_with('"') || e.starts_with("W/\"") {
            e.clone()
        } else {
            format!("\"{e}\"")
        }
    })
}

fn file_info(location: &Location, info: &ObjectInfo, size: u64) -> FileInfo {
    FileInfo {
        key: location.key(),
        domain: location.domain().to_string(),
        level: location.level(),
        user_id: location.user_id().map(|u| u.to_string()),
        filename: location.filename().to_string(),
        size,
        stored_size: info.stored_size,
        content_type: info.record.content_type.clone(),
        etag: quoted(&info.etag),
        last_modified: info.last_modified,
        compressed: info.record.encoding.compressed(),
        encrypted: info.record.encoding.encrypted(),
        metadata: info.record.metadata.clone(),
    }
}
