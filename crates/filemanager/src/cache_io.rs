//! Glue between [`FileManager`](crate::FileManager) and the hybrid cache
//! (`filemanager-cache`): how it is set up, and what its entries hold.
//!
//! A content entry carries the file's description and its bytes together — plaintext in memory
//! (L1), the stored (encoded) form on the second tier (L2) — so a hit answers both "what is it"
//! and "what are its bytes" from one consistent version. Encrypted files therefore never reach
//! L2 in the clear. Metadata entries hold the description alone; listings hold the listing.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use filemanager_cache::{Cache, CacheConfig, DiskL2, L2Store, ObjectStoreL2};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::S3Config;
use crate::types::FileInfo;

/// Room for a file's description and encoding overhead in a cache entry, beyond the file.
const ENTRY_HEADROOM: u64 = 16 * 1024;

/// The largest file whose content the cache takes.
pub(crate) fn file_limit(cache: &Cache) -> u64 {
    cache.config().max_item_bytes.saturating_sub(ENTRY_HEADROOM)
}

/// Where the second cache tier lives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CacheTier2 {
    /// Memory only.
    Off,
    /// A local directory, bounded in bytes (the embedded default: `{FM_DATA_DIR}/cache`).
    Disk {
        /// The directory.
        dir: PathBuf,
        /// Most bytes it may hold.
        max_bytes: u64,
    },
    /// An S3 bucket shared by all instances (the seed's `S3_CACHE_BUCKET`). Bound its size with
    /// a lifecycle rule.
    Bucket(S3Config),
}

/// `FM_DATA_DIR`, or `./data`: where the embedded default keeps its files and caches.
pub(crate) fn default_data_dir() -> PathBuf {
    std::env::var_os("FM_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("./data"))
}

/// The cache settings of a manager.
#[derive(Debug, Clone)]
pub struct CacheSetup {
    /// Sizes, TTLs and the invalidation bus (see `filemanager_cache::CacheConfig`).
    pub config: CacheConfig,
    /// The second tier.
    pub tier2: CacheTier2,
}

impl CacheSetup {
    /// The seed's defaults: memory plus a disk tier in `dir`.
    pub fn with_disk(dir: impl Into<PathBuf>) -> Self {
        let config = CacheConfig::default();
        CacheSetup {
            tier2: CacheTier2::Disk {
                dir: dir.into(),
                max_bytes: config.l2_max_bytes,
            },
            config,
        }
    }

    /// From the environment: `CACHE_*` variables (sizes, TTLs, `CACHE_INVALIDATION_URL`),
    /// `S3_CACHE_BUCKET` for a bucket tier (same endpoint and credentials as `APP_BUCKET`),
    /// else a disk tier in `CACHE_L2_DIR` or `{FM_DATA_DIR}/cache`. `FM_CACHE=off` disables the
    /// cache.
    pub fn from_env() -> Result<Option<Self>> {
        if std::env::var("FM_CACHE").as_deref() == Ok("off") {
            return Ok(None);
        }
        let config = CacheConfig::from_env().map_err(|e| Error::config(e.var, e.reason))?;
        let tier2 = match std::env::var("S3_CACHE_BUCKET") {
            Ok(bucket) if !bucket.is_empty() => {
                let get = |name: &str| {
                    if name == "APP_BUCKET" {
                        Some(bucket.clone())
                    } else {
                        std::env::var(name).ok()
                    }
                };
                let s3 = S3Config::from_lookup(&get)
                    .map_err(|e| match e {
                        Error::Config { variable, reason } if variable == "APP_BUCKET" => {
                            Error::config("S3_CACHE_BUCKET", reason)
                        }
                        other => other,
                    })?
                    .expect("the bucket is set");
                CacheTier2::Bucket(s3)
            }
            _ => {
                let dir = config
                    .l2_dir
                    .clone()
                    .unwrap_or_else(|| default_data_dir().join("cache"));
                CacheTier2::Disk {
                    dir,
                    max_bytes: config.l2_max_bytes,
                }
            }
        };
        Ok(Some(CacheSetup { config, tier2 }))
    }

    /// Builds the cache. With an invalidation URL this must run inside a Tokio runtime.
    ///
    /// `max_item_bytes` is a limit on *files*; an entry also holds the file's description (and
    /// on L2 the encoding's few hundred bytes per MiB), so the cache itself is given that much
    /// room more: a file of exactly the limit is cached.
    pub(crate) fn open(mut self) -> Result<Cache> {
        self.config.max_item_bytes = self.config.max_item_bytes.saturating_add(ENTRY_HEADROOM);
        let l2: Option<Arc<dyn L2Store>> = match self.tier2 {
            CacheTier2::Off => None,
            CacheTier2::Disk { dir, max_bytes } => {
                Some(Arc::new(DiskL2::open_blocking(dir, max_bytes)))
            }
            CacheTier2::Bucket(s3) => Some(Arc::new(ObjectStoreL2::new(
                crate::store::raw_s3(&s3)?,
                "fm-cache/",
            ))),
        };
        Cache::new(self.config, l2).map_err(|e| {
            Error::config(
                "CACHE_INVALIDATION_URL",
                match e {
                    filemanager_cache::CacheError::NoRuntime => {
                        "needs a Tokio runtime when the manager is built"
                    }
                    _ => "is not a usable redis:// URL",
                },
            )
        })
    }
}

/// A file's description as cached: what `FileInfo` says, plus whether its content may be
/// cached at all.
///
/// The description is shared (`Arc`): a cache hit hands the memo's copy to the caller (in
/// [`Download::info`](crate::Download::info)) without copying its strings, and a caller may
/// recognise a description it has seen before by its identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CachedMeta {
    pub info: Arc<FileInfo>,
    pub no_cache: bool,
}

impl CachedMeta {
    pub(crate) fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("metadata always serializes"))
    }

    pub(crate) fn from_bytes(b: &[u8]) -> Option<Self> {
        serde_json::from_slice(b).ok()
    }
}

/// A content entry: `u32` little-endian length of the description, the description as JSON,
/// then the bytes.
pub(crate) fn frame(meta: &CachedMeta, body: &[u8]) -> Bytes {
    let json = serde_json::to_vec(meta).expect("metadata always serializes");
    let mut out = BytesMut::with_capacity(4 + json.len() + body.len());
    out.put_u32_le(json.len() as u32);
    out.put_slice(&json);
    out.put_slice(body);
    out.freeze()
}

/// Splits a content entry; `None` if it is not one (treated as a miss by the caller).
pub(crate) fn unframe(entry: &Bytes) -> Option<(CachedMeta, Bytes)> {
    let (json, body) = split_frame(entry)?;
    Some((serde_json::from_slice(json).ok()?, body))
}

/// [`unframe`], with the description parsed through `memo`.
pub(crate) fn unframe_memo(
    entry: &Bytes,
    memo: &DescriptionMemo,
    key: &str,
) -> Option<(CachedMeta, Bytes)> {
    let (json, body) = split_frame(entry)?;
    Some((memo.parse(key, json)?, body))
}

/// A content entry's description (JSON) and bytes.
fn split_frame(entry: &Bytes) -> Option<(&[u8], Bytes)> {
    let len = u32::from_le_bytes(entry.get(..4)?.try_into().ok()?) as usize;
    let json = entry.get(4..4usize.checked_add(len)?)?;
    Some((json, entry.slice(4 + len..)))
}

/// Slots of a [`DescriptionMemo`]: enough for the hot files of a busy instance; a file whose
/// slot another one took is parsed as if there were no memo.
const MEMO_SLOTS: usize = 512;

/// Parsed descriptions, so that a cache hit does not parse the same JSON on every request.
///
/// This is a memo of a pure function, JSON text → [`CachedMeta`], and nothing else: a slot
/// keeps one description's text (a copy, so it pins no cache entry's memory) next to what it
/// parsed to, and answers only for text equal to it byte for byte. It therefore never decides
/// *which* description is current — the cache does, with its tickets and invalidation — and
/// cannot serve a stale one: a new version of a file has a new etag, size or date in its text,
/// which misses here and is parsed afresh.
pub(crate) struct DescriptionMemo {
    slots: Box<[Mutex<Option<Memo>>]>,
    hasher: RandomState,
}

struct Memo {
    json: Box<[u8]>,
    meta: CachedMeta,
}

impl fmt::Debug for DescriptionMemo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DescriptionMemo")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl Default for DescriptionMemo {
    fn default() -> Self {
        DescriptionMemo {
            slots: (0..MEMO_SLOTS).map(|_| Mutex::new(None)).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl DescriptionMemo {
    /// The description `json` holds, parsed at most once while it stays in `key`'s slot.
    /// `key` only picks the slot; the answer depends on `json` alone.
    pub(crate) fn parse(&self, key: &str, json: &[u8]) -> Option<CachedMeta> {
        let slot = &self.slots[self.hasher.hash_one(key) as usize % self.slots.len()];
        // A poisoned slot only ever held a complete memo or none: still usable.
        if let Some(memo) = &*slot.lock().unwrap_or_else(|e| e.into_inner())
            && *memo.json == *json
        {
            return Some(memo.meta.clone());
        }
        // Parsed outside the lock: two requests may both parse, never wait on each other.
        let meta = CachedMeta::from_bytes(json)?;
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Memo {
            json: json.into(),
            meta: meta.clone(),
        });
        Some(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::StorageLevel;

    /// The description of a 3-byte file `d/app/f` with entity tag `etag`.
    fn sample(etag: &str) -> CachedMeta {
        CachedMeta {
            info: Arc::new(FileInfo {
                key: "d/app/f".into(),
                domain: "d".into(),
                level: StorageLevel::App,
                user_id: None,
                filename: "f".into(),
                size: 3,
                stored_size: 3,
                content_type: "text/plain".into(),
                etag: Some(etag.into()),
                last_modified: chrono::Utc::now(),
                compressed: false,
                encrypted: false,
                metadata: Default::default(),
            }),
            no_cache: false,
        }
    }

    #[test]
    fn frames_round_trip_and_reject_garbage() {
        let meta = sample("\"e\"");
        let f = frame(&meta, b"abc");
        let (back, body) = unframe(&f).unwrap();
        assert_eq!(back.info, meta.info);
        assert_eq!(&body[..], b"abc");
        assert!(unframe(&Bytes::from_static(b"\xff\xff\xff\xff{}")).is_none());
        assert!(unframe(&Bytes::from_static(b"\x02\x00")).is_none());
    }

    #[test]
    fn the_memo_answers_for_identical_text_only() {
        let memo = DescriptionMemo::default();
        let mut meta = sample("\"1\"");
        let first = frame(&meta, b"abc");
        let (got, body) = unframe_memo(&first, &memo, "d/app/f").unwrap();
        assert_eq!(
            (got.info.clone(), &body[..]),
            (meta.info.clone(), &b"abc"[..])
        );
        // Answered from the memo: the same description, shared rather than copied.
        let (again, _) = unframe_memo(&first, &memo, "d/app/f").unwrap();
        assert_eq!(again.info, meta.info);
        assert!(Arc::ptr_eq(&got.info, &again.info));
        // A new version under the same key (same slot) is parsed afresh, never the old one.
        let info = Arc::make_mut(&mut meta.info);
        info.etag = Some("\"2\"".into());
        info.size = 4;
        let second = frame(&meta, b"abcd");
        let (newer, body) = unframe_memo(&second, &memo, "d/app/f").unwrap();
        assert_eq!(newer.info.etag.as_deref(), Some("\"2\""));
        assert_eq!((newer.info.size, &body[..]), (4, &b"abcd"[..]));
        // Whatever slot a key picks, the answer follows the text.
        let (old, _) = unframe_memo(&first, &memo, "another/key").unwrap();
        assert_eq!(old.info.etag.as_deref(), Some("\"1\""));
        assert!(unframe_memo(&Bytes::from_static(b"\x02\x00\x00\x00{}"), &memo, "k").is_none());
        assert!(unframe_memo(&Bytes::from_static(b"\xff\xff\xff\xff"), &memo, "k").is_none());
    }
}
