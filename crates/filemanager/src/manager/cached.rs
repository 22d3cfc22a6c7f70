//! Reads and fills through the cache: content, descriptions, and what an upload leaves
//! behind. The cache crate guarantees the ordering (tickets, single flight); this file decides
//! what goes in each entry.

use std::sync::Arc;

use bytes::Bytes;
use filemanager_cache::{Cache, Fill};
use futures::StreamExt;

use super::{FileManager, collect_body, file_info, quoted, reading};
use crate::cache_io::{CachedMeta, frame, unframe, unframe_memo};
use crate::error::{Error, Result};
use crate::large::{Filling, Version};
use crate::location::Location;
use crate::meta::{Encoding, ObjectRecord};
use crate::store::{ByteStream, ObjectInfo};
use crate::types::{Download, DownloadOptions, FileInfo};

/// Why a content load did not produce a cache entry.
enum Load {
    /// The file exists but its content is not cached (too large, or `cache_content = false`).
    NotCacheable,
    /// Reading or decoding failed.
    Failed(Error),
}

impl FileManager {
    /// Puts what was just uploaded into the memory tier (the seed's `cache_content`), unless
    /// another write got in first: the ticket is taken before a head request confirms that the
    /// stored version is still ours, so a later writer's invalidation voids the fill.
    pub(super) async fn fill_after_upload(
        &self,
        cache: &Cache,
        location: &Location,
        file: &FileInfo,
        plain: Bytes,
    ) {
        if plain.len() as u64 > crate::cache_io::file_limit(cache) {
            return;
        }
        let key = location.key();
        let ticket = cache.ticket(&key);
        match self.inner.store.head(&key).await {
            Ok(now) if quoted(&now.etag) == file.etag => {
                let meta = CachedMeta {
                    info: Arc::new(FileInfo {
                        last_modified: now.last_modified,
                        ..file.clone()
                    }),
                    no_cache: false,
                };
                cache.put_content(&ticket, frame(&meta, &plain)).await;
                cache.put_metadata(&ticket, meta.to_bytes()).await;
            }
            _ => {}
        }
    }

    /// The cache, unless the caller asked to go around it.
    pub(super) fn cache_unless(&self, bypass: bool) -> Option<&Cache> {
        self.inner.cache.as_ref().filter(|_| !bypass)
    }

    /// A file's description from storage.
    pub(super) async fn stored_meta(&self, location: &Location) -> Result<CachedMeta> {
        let key = location.key();
        let (info, size) = reading(|| self.head_sized(&key)).await?;
        Ok(CachedMeta {
            no_cache: info.record.no_cache,
            info: Arc::new(file_info(location, &info, size)),
        })
    }

    /// A file's description through the metadata cache.
    pub(super) async fn cached_meta(
        &self,
        cache: &Cache,
        location: &Location,
    ) -> Result<CachedMeta> {
        let key = location.key();
        let loaded = cache
            .get_or_load_metadata(&key, || async {
                self.stored_meta(location).await.map(|m| m.to_bytes())
            })
            .await
            .map_err(|e| (*e).clone())?;
        match self.inner.memo.parse(&key, &loaded.value) {
            Some(meta) => Ok(meta),
            // Not ours or damaged: answer from storage, and let the next write replace it.
            None => self.stored_meta(location).await,
        }
    }

    /// A file's description and original bytes through the content cache, and whether a cache
    /// tier answered. `None` when the file's content is not cached: larger than the cache's item
    /// limit, or uploaded with `cache_content = false`.
    pub(super) async fn cached_content(
        &self,
        cache: &Cache,
        location: &Location,
    ) -> Result<Option<(CachedMeta, Bytes, bool)>> {
        let key = location.key();
        let limit = crate::cache_io::file_limit(cache);
        let loaded = cache
            .get_or_load_content(&key, |l2| async move {
                let key = location.key();
                if let Some((meta, stored)) = l2.as_ref().and_then(unframe) {
                    let encoding = Encoding::from_flags(meta.info.compressed, meta.info.encrypted);
                    if let Ok(plain) = self.decode_all(&key, encoding, stored).await {
                        return Ok(Fill::FromL2(frame(&meta, &plain)));
                    }
                }
                let meta = self
                    .cached_meta(cache, location)
                    .await
                    .map_err(Load::Failed)?;
                if meta.no_cache || meta.info.size > limit {
                    return Err(Load::NotCacheable);
                }
                let (info, stored) = self.inner.store.get_all(&key).await.map_err(Load::Failed)?;
                let plain = self
                    .decode_all(&key, info.record.encoding, stored.clone())
                    .await
                    .map_err(Load::Failed)?;
                // Described from what was read, so the entry is one consistent version even if
                // the file changed since its metadata was cached.
                let meta = CachedMeta {
                    no_cache: info.record.no_cache,
                    info: Arc::new(file_info(location, &info, plain.len() as u64)),
                };
                if meta.no_cache || meta.info.size > limit {
                    return Err(Load::NotCacheable);
                }
                Ok(Fill::FromStorage {
                    value: frame(&meta, &plain),
                    stored: Some(frame(&meta, &stored)),
                })
            })
            .await;
        match loaded {
            Ok(l) => match unframe_memo(&l.value, &self.inner.memo, &key) {
                Some((meta, plain)) => Ok(Some((meta, plain, l.tier.is_some()))),
                None => Ok(None),
            },
            Err(e) => match &*e {
                Load::NotCacheable => Ok(None),
                Load::Failed(err) => Err(err.clone()),
            },
        }
    }

    /// Decodes a whole stored object held in memory.
    pub(super) async fn decode_all(
        &self,
        key: &str,
        encoding: Encoding,
        stored: Bytes,
    ) -> Result<Bytes> {
        if encoding == Encoding::Plain {
            return Ok(stored);
        }
        let once = futures::stream::once(async move { Ok(stored) }).boxed();
        collect_body(self.inner.codec.decode(key, encoding, once)?).await
    }

    /// A download answered from the large-file tier: the file's description through the
    /// metadata cache, its bytes from the local copy of the version it names. `None` when
    /// there is no such copy (or the copy turned out unusable; it is then removed).
    pub(super) async fn large_copy(
        &self,
        cache: &Cache,
        location: &Location,
        opts: &DownloadOptions,
    ) -> Result<Option<Download>> {
        let Some(large) = &self.inner.large else {
            return Ok(None);
        };
        let meta = self.cached_meta(cache, location).await?;
        let info = meta.info;
        let Some(etag) = info.etag.clone().filter(|_| !meta.no_cache) else {
            return Ok(None);
        };
        if info.size <= crate::cache_io::file_limit(cache) || !large.takes(info.stored_size) {
            return Ok(None);
        }
        let key = location.key();
        let version = Version {
            etag: &etag,
            stored_size: info.stored_size,
        };
        let Some(file) = large.open_copy(&key, &version).await else {
            return Ok(None);
        };
        let encoding = Encoding::from_flags(info.compressed, info.encrypted);
        let stored = ObjectInfo::local_copy(
            ObjectRecord {
                content_type: info.content_type.clone(),
                metadata: info.metadata.clone(),
                encoding,
                size: Some(info.size),
                no_cache: false,
            },
            info.stored_size,
            info.etag.clone(),
            info.last_modified,
            file,
        );
        let opened = match opts.range {
            None => match self
                .inner
                .store
                .get_range(&key, &stored, 0..info.stored_size)
                .await
            {
                Ok(all) => self
                    .inner
                    .codec
                    .decode(&key, encoding, all)
                    .map(|b| (b, None)),
                Err(e) => Err(e),
            },
            Some(r) => {
                let r = r.resolve(info.size)?;
                self.read_range(&key, &stored, r.clone())
                    .await
                    .map(|b| (b, Some(r)))
            }
        };
        let (body, range) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                // Nothing was sent yet: drop the copy and read the bucket instead.
                tracing::warn!(key, error = %e, "a large-file cache copy could not be read");
                large.remove_damaged(&key, &version).await;
                return Ok(None);
            }
        };
        // A copy that fails part way (damaged on disk) is removed, so the next read goes to
        // the bucket; this read has sent bytes already and fails.
        let (large, owned_etag, stored_size) = (large.clone(), etag.clone(), info.stored_size);
        let body: ByteStream = body
            .then(move |chunk| {
                let large = large.clone();
                let etag = owned_etag.clone();
                let key = key.clone();
                async move {
                    if chunk.is_err() {
                        let version = Version {
                            etag: &etag,
                            stored_size,
                        };
                        large.remove_damaged(&key, &version).await;
                    }
                    chunk
                }
            })
            .boxed();
        Ok(Some(Download {
            info,
            // Disk reads and decoding run ahead of the connection sending the bytes.
            body: crate::body::ahead(body, &location.key()),
            range,
            from_cache: true,
            in_memory: None,
        }))
    }

    /// A copy of the object `info` describes, when the large-file tier should have one: the
    /// file is larger than the cache takes, cacheable, and not being copied already. `guard`
    /// holds a ticket taken before the object was read.
    pub(super) fn start_copy(
        &self,
        key: &str,
        info: &ObjectInfo,
        size: u64,
        guard: Option<(Cache, filemanager_cache::Ticket)>,
    ) -> Option<Filling> {
        let large = self.inner.large.as_ref()?;
        let (cache, ticket) = guard?;
        let etag = quoted(&info.etag)?;
        if info.record.no_cache || size <= crate::cache_io::file_limit(&cache) {
            return None;
        }
        let version = Version {
            etag: &etag,
            stored_size: info.stored_size,
        };
        large.start_copy(key, &version, Some((cache, ticket)))
    }

    /// Reads the whole object again in the background, into `copy`, if it is still the
    /// version `info` describes (after a ranged read, which read only part of it), and if
    /// fewer than `BACKGROUND_COPIES` such reads run already.
    pub(super) fn copy_in_background(&self, key: String, info: &ObjectInfo, copy: Filling) {
        let Some(slot) = self.inner.large.as_ref().and_then(|l| l.background_slot()) else {
            return;
        };
        let store = self.inner.store.clone();
        let (etag, stored_size) = (info.etag.clone(), info.stored_size);
        tokio::spawn(async move {
            let _slot = slot;
            if let Ok((now, stored)) = store.get(&key).await
                && now.etag == etag
                && now.stored_size == stored_size
            {
                crate::large::copy_all(copy, stored).await;
            }
        });
    }

    /// Removes the local copies of `key` after a write or delete of it.
    pub(super) async fn forget_copies(&self, key: &str) {
        if let Some(large) = &self.inner.large {
            large.forget(key).await;
        }
    }
}
