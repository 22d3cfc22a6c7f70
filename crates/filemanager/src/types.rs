//! Options and results of the FileManager operations.
//!
//! Options mirror the seed's keyword arguments and their defaults (`Default` gives exactly the
//! seed's values); results carry what the seed's dicts carry and serialize to the JSON the HTTP
//! contract shows.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::location::StorageLevel;
use crate::meta::DEFAULT_CONTENT_TYPE;

/// Options of an upload; `Default` is the seed's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOptions {
    /// MIME type recorded with the file (default `application/octet-stream`).
    pub content_type: String,
    /// The user, for USER level (seed-style calls only; handles and `Location`s carry it).
    pub user_id: Option<String>,
    /// User metadata: names `a-z 0-9 -`, at most 2 KiB in all.
    pub metadata: BTreeMap<String, String>,
    /// Compress with zstd (default `false`).
    pub compress: bool,
    /// Encrypt with the configured key (default `true`).
    pub encrypt: bool,
    /// Keep the content in the cache after upload (default `true`).
    pub cache_content: bool,
    /// Refuse bodies longer than this many bytes (in addition to the manager's own limit).
    pub max_size: Option<u64>,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            content_type: DEFAULT_CONTENT_TYPE.to_owned(),
            user_id: None,
            metadata: BTreeMap::new(),
            compress: false,
            encrypt: true,
            cache_content: true,
            max_size: None,
        }
    }
}

impl UploadOptions {
    /// Sets the content type.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = content_type.into();
        self
    }

    /// Sets the user id (for USER level in seed-style calls).
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Adds one user metadata entry.
    pub fn metadata(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(name.into(), value.into());
        self
    }

    /// Turns compression on or off.
    pub fn compress(mut self, on: bool) -> Self {
        self.compress = on;
        self
    }

    /// Turns encryption on or off.
    pub fn encrypt(mut self, on: bool) -> Self {
        self.encrypt = on;
        self
    }

    /// Turns caching of the uploaded content on or off.
    pub fn cache_content(mut self, on: bool) -> Self {
        self.cache_content = on;
        self
    }
}

/// A byte range as a client asks for it, before the file's length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b`: from `a` to `b`, both included.
    FromTo(u64, u64),
    /// `bytes=a-`: from `a` to the end.
    From(u64),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The half-open range this selects in a file of `size` bytes, or `RangeNotSatisfiable`.
    /// Follows RFC 9110: an end past the file is cut to the file, a suffix longer than the file
    /// is the whole file, and a start at or past the end cannot be satisfied.
    pub fn resolve(self, size: u64) -> Result<Range<u64>> {
        let unsatisfiable = Error::RangeNotSatisfiable { size };
        match self {
            ByteRange::FromTo(a, b) if a <= b && a < size => Ok(a..b.saturating_add(1).min(size)),
            ByteRange::From(a) if a < size => Ok(a..size),
            ByteRange::Suffix(n) if n > 0 && size > 0 => Ok(size - n.min(size)..size),
            _ => Err(unsatisfiable),
        }
    }
}

/// Options of a download; `Default` is the seed's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownloadOptions {
    /// The user, for USER level (seed-style calls only).
    pub user_id: Option<String>,
    /// Skip the cache and read from storage (the seed's `use_cache=False`).
    pub bypass_cache: bool,
    /// Only these bytes of the file.
    pub range: Option<ByteRange>,
}

/// Options of a listing; `Default` is the seed's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOptions {
    /// The user, for USER level (seed-style calls only).
    pub user_id: Option<String>,
    /// Only files whose name starts with this (relative to the level's root).
    pub prefix: String,
    /// At most this many files, 1–1000 (default 1000).
    pub max_keys: usize,
    /// Continue after this cursor (a previous result's `next_cursor`).
    pub cursor: Option<String>,
    /// Allow answering from the listing cache (default `true`).
    pub use_cache: bool,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions {
            user_id: None,
            prefix: String::new(),
            max_keys: 1000,
            cursor: None,
            use_cache: true,
        }
    }
}

/// Options of a presigned URL; `Default` is the seed's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlOptions {
    /// The user, for USER level (seed-style calls only).
    pub user_id: Option<String>,
    /// Seconds until the URL expires (default 3600, at most 604800).
    pub expires_in: u64,
}

impl Default for UrlOptions {
    fn default() -> Self {
        UrlOptions {
            user_id: None,
            expires_in: 3600,
        }
    }
}

/// Everything known about a stored file: the seed's metadata dict, and the HTTP contract's
/// *file object*.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// The storage key.
    pub key: String,
    /// The domain.
    pub domain: String,
    /// The storage level.
    pub level: StorageLevel,
    /// The user, for USER level.
    pub user_id: Option<String>,
    /// The filename relative to the level's root.
    pub filename: String,
    /// The file's own length in bytes.
    pub size: u64,
    /// What the backend holds, in bytes (after compression, encryption and framing).
    pub stored_size: u64,
    /// MIME type.
    pub content_type: String,
    /// Entity tag of the stored object, quoted as in HTTP.
    pub etag: Option<String>,
    /// When the object was last written.
    pub last_modified: DateTime<Utc>,
    /// Stored compressed.
    pub compressed: bool,
    /// Stored encrypted.
    pub encrypted: bool,
    /// User metadata, names in lower case.
    pub metadata: BTreeMap<String, String>,
}

/// The result of an upload: the seed's `{"success": true, …}` dict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadResult {
    /// Always `true`; failures are errors.
    pub success: bool,
    /// The stored file.
    #[serde(flatten)]
    pub file: FileInfo,
}

/// The result of a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResult {
    /// Always `true`; failures are errors.
    pub success: bool,
    /// The storage key that was deleted.
    pub key: String,
}

/// One file in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedFile {
    /// The filename relative to the level's root.
    pub filename: String,
    /// The storage key.
    pub key: String,
    /// The file's own length in bytes.
    pub size: u64,
    /// When the object was last written.
    pub last_modified: DateTime<Utc>,
    /// Entity tag, quoted.
    pub etag: Option<String>,
    /// MIME type.
    pub content_type: String,
}

/// The result of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResult {
    /// Always `true`; failures are errors.
    pub success: bool,
    /// The files, in key order.
    pub files: Vec<ListedFile>,
    /// `files.len()`.
    pub count: usize,
    /// More files follow; pass `next_cursor` to get them.
    pub truncated: bool,
    /// Where the next page starts, when `truncated`.
    pub next_cursor: Option<String>,
}

/// A presigned URL and how to use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresignedUrl {
    /// Always `true`; failures are errors.
    pub success: bool,
    /// The absolute URL.
    pub url: String,
    /// `PUT` or `GET`.
    pub method: String,
    /// Headers the client must send with the request.
    pub headers: BTreeMap<String, String>,
    /// When the URL stops working.
    pub expires_at: DateTime<Utc>,
    /// Seconds of validity it was issued with.
    pub expires_in: u64,
}

/// What a key rotation pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RekeyReport {
    /// Objects looked at.
    pub scanned: u64,
    /// Objects re-encrypted under the primary key.
    pub rekeyed: u64,
    /// Objects that changed while being re-encrypted and were left to their new writer.
    pub skipped_changed: u64,
    /// Objects that could not be re-encrypted: storage key and reason.
    pub failed: Vec<(String, String)>,
}

/// A download in progress: what the file is and a stream of its (original) bytes.
pub struct Download {
    /// The file. Shared: a cache hit hands out the cache's own description instead of a copy,
    /// so two downloads of one version of a file may hold the same `Arc`.
    pub info: Arc<FileInfo>,
    /// The bytes served: the whole file, or `range` of it.
    pub body: BoxStream<'static, Result<Bytes>>,
    /// The part of the file in `body`, when a range was asked for.
    pub range: Option<Range<u64>>,
    /// Whether the bytes come from the cache rather than storage.
    pub from_cache: bool,
    /// The bytes of `body` in one piece, when they are already in memory (a download answered
    /// through the content cache): a caller may send these and drop `body` unpolled, sparing a
    /// stream hand-off per response.
    pub in_memory: Option<Bytes>,
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("info", &self.info)
            .field("range", &self.range)
            .field("from_cache", &self.from_cache)
            .field("in_memory", &self.in_memory.as_ref().map(Bytes::len))
            .finish_non_exhaustive()
    }
}

/// The largest `expires_in` a presigned URL may have: 7 days.
pub const MAX_URL_EXPIRY_SECS: u64 = 604_800;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_like_rfc_9110() {
        use ByteRange::*;
        assert_eq!(FromTo(0, 0).resolve(10).unwrap(), 0..1);
        assert_eq!(FromTo(2, 5).resolve(10).unwrap(), 2..6);
        assert_eq!(FromTo(2, 500).resolve(10).unwrap(), 2..10);
        assert_eq!(FromTo(9, u64::MAX).resolve(10).unwrap(), 9..10);
        assert_eq!(From(3).resolve(10).unwrap(), 3..10);
        assert_eq!(Suffix(3).resolve(10).unwrap(), 7..10);
        assert_eq!(Suffix(30).resolve(10).unwrap(), 0..10);
        for bad in [FromTo(10, 12), FromTo(5, 4), From(10), Suffix(0)] {
            assert!(matches!(
                bad.resolve(10),
                Err(Error::RangeNotSatisfiable { size: 10 })
            ));
        }
        assert!(Suffix(1).resolve(0).is_err());
        assert!(From(0).resolve(0).is_err());
    }

    #[test]
    fn defaults_are_the_seeds() {
        let u = UploadOptions::default();
        assert_eq!(u.content_type, "application/octet-stream");
        assert!(!u.compress && u.encrypt && u.cache_content);
        assert_eq!(ListOptions::default().max_keys, 1000);
        assert_eq!(UrlOptions::default().expires_in, 3600);
    }
}
