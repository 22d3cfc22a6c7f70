//! Reads and fills through the cache: content, descriptions, and what an upload leaves
//! behind. The cache crate guarantees the ordering (tickets, single flight); this file decides
//! what goes in each entry.

use bytes::Bytes;
use filemanager_cache::{Cache, Fill};
use futures::StreamExt;

use super::{FileManager, collect, file_info, quoted, reading};
use crate::cache_io::{CachedMeta, frame, unframe, unframe_memo};
use crate::error::{Error, Result};
use crate::location::Location;
use crate::meta::Encoding;
use crate::types::FileInfo;

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
                    info: FileInfo {
                        last_modified: now.last_modified,
                        ..file.clone()
                    },
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
            info: file_info(location, &info, size),
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
                    info: file_info(location, &info, plain.len() as u64),
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
        collect(self.inner.codec.decode(key, encoding, once)?).await
    }
}
