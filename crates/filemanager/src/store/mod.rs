//! The storage layer: a thin adapter over [`object_store::ObjectStore`].
//!
//! It adds exactly what the layers above need and object_store does not give uniformly:
//!
//! - the [`ObjectRecord`] (content type, user metadata, encoding) travels with every object, as
//!   attributes where the backend has them and in a small envelope in front of the bytes where
//!   it does not (local disk) — see [`record`];
//! - streaming writes of any size that leave nothing behind on failure ([`upload`]);
//! - listings in key order with S3-style string prefixes and a start-after cursor, on every
//!   backend (local disk lists in directory order, so its listings are sorted here);
//! - backend errors mapped to the public error type without paths or URLs ([`errors`]).
//!
//! Keys given to this layer come from [`crate::location::Location::key`] and are already
//! validated; nothing here parses user input.

mod config;
mod errors;
mod local_read;
#[cfg(all(feature = "aws", target_os = "linux"))]
mod quickack;
pub(crate) mod record;
mod sweep;
mod upload;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResult, ObjectStore, ObjectStoreExt, PutOptions};

pub(crate) use config::raw_s3;
pub use config::{S3Config, StorageConfig};
pub(crate) use local_read::SharedFile;

use crate::error::{Error, Result};
use crate::meta::ObjectRecord;
use record::EnvelopeParse;

/// What a storage backend can do, so that callers (and tests) can adapt instead of guessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Metadata travels as object attributes. When false it is kept in an envelope in front of
    /// the stored bytes.
    pub attributes: bool,
    /// Listings come back in key order from the backend itself.
    pub sorted_listing: bool,
    /// The backend can sign URLs for direct access without the service (S3).
    pub signed_urls: bool,
}

impl Capabilities {
    /// Capabilities of a custom backend: whether it keeps object attributes, and whether it
    /// lists in key order. A custom backend cannot sign URLs for direct access.
    pub fn new(attributes: bool, sorted_listing: bool) -> Self {
        Capabilities {
            attributes,
            sorted_listing,
            signed_urls: false,
        }
    }
}

/// Facts about one stored object, from a head request.
#[derive(Debug, Clone)]
pub(crate) struct ObjectInfo {
    pub record: ObjectRecord,
    /// Bytes of the stored body, after any envelope.
    pub stored_size: u64,
    pub etag: Option<String>,
    pub last_modified: DateTime<Utc>,
    /// Where the body starts in the backend object (the envelope's length, or 0).
    body_offset: u64,
    /// On local disk, the open file this description was read from. Later reads of the same
    /// version (ranges, the codec's header and index) read from it, so a file replaced in
    /// between (renamed over) cannot make them fail or mix versions: no `If-Match` needed.
    pinned: Option<Arc<local_read::SharedFile>>,
}

impl ObjectInfo {
    /// The facts of an object from its record, the backend's metadata, and where its body
    /// starts (the envelope's length, or 0).
    fn new(record: ObjectRecord, meta: object_store::ObjectMeta, body_offset: usize) -> Self {
        ObjectInfo {
            record,
            stored_size: meta.size - body_offset as u64,
            etag: meta.e_tag,
            last_modified: meta.last_modified,
            body_offset: body_offset as u64,
            pinned: None,
        }
    }

    /// A local copy of a stored object (the large-file tier), described by what the caches
    /// know of it: later reads of this description read the open copy.
    pub(crate) fn local_copy(
        record: ObjectRecord,
        stored_size: u64,
        etag: Option<String>,
        last_modified: DateTime<Utc>,
        file: Arc<local_read::SharedFile>,
    ) -> Self {
        ObjectInfo {
            record,
            stored_size,
            etag,
            last_modified,
            body_offset: 0,
            pinned: Some(file),
        }
    }

    /// What is known of an object just written, without asking the backend again.
    pub(crate) fn written(record: ObjectRecord, written: Written, at: DateTime<Utc>) -> Self {
        ObjectInfo {
            record,
            stored_size: written.stored_size,
            etag: written.etag,
            last_modified: at,
            body_offset: 0,
            pinned: None,
        }
    }
}

/// The result of a completed write.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    pub etag: Option<String>,
    pub stored_size: u64,
    /// Whether the bytes were stored (see [`WriteOutcome`]).
    pub outcome: WriteOutcome,
}

/// What became of a write that did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteOutcome {
    /// The object holds these bytes.
    Stored,
    /// A newer write of the same key completed while this one was in flight, and the backend
    /// dropped this one: the object holds the newer version (see `docs/storage.md`).
    Superseded,
    /// The backend dropped the upload (`NoSuchUpload`) and storage shows no newer write: one
    /// may have come and gone (a write, then a delete). The caller decides with what it
    /// knows of writes in between, and otherwise fails.
    Dropped,
}

/// A byte stream from storage.
pub(crate) type ByteStream = BoxStream<'static, Result<Bytes>>;

/// A storage backend with FileManager's conventions applied.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    inner: Arc<dyn ObjectStore>,
    caps: Capabilities,
    name: &'static str,
    /// Appended to every key to name its object; see [`LOCAL_FILE_SUFFIX`].
    suffix: &'static str,
    /// Signs URLs straight to the backend (S3 SigV4), where it can.
    signer: Option<Arc<dyn object_store::signer::Signer>>,
    /// The directory of a local-disk backend.
    local_root: Option<std::path::PathBuf>,
    /// The local-disk backend itself, for whole-file reads in one blocking call.
    local_fs: Option<Arc<object_store::local::LocalFileSystem>>,
}

/// On local disk every file's name ends in a backslash, a character no FileManager key may
/// contain. A file system cannot hold both a file `d1` and a file `d1/f` (S3 can), and
/// object_store hides local files named like `x#1` (its staging files); the suffix makes both
/// impossible: `d1\` and `d1/f\` coexist, and `x#1\` is not a staging name.
pub(crate) const LOCAL_FILE_SUFFIX: &str = "\\";

/// Longest last segment local disk can hold: file names are limited to 255 bytes, and the file
/// of a key is its last segment, the suffix above and, while it is written, object_store's
/// staging suffix (`#N`).
const LOCAL_MAX_NAME: usize = 250;

impl Store {
    /// Wraps an object store with the given capabilities.
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, caps: Capabilities, name: &'static str) -> Self {
        let suffix = if name == "local" {
            LOCAL_FILE_SUFFIX
        } else {
            ""
        };
        Store {
            inner,
            caps,
            name,
            suffix,
            signer: None,
            local_root: None,
            local_fs: None,
        }
    }

    /// Records the directory of a local-disk backend, and the backend (the one given to
    /// [`Store::new`]).
    pub(crate) fn with_local_root(
        mut self,
        root: std::path::PathBuf,
        fs: Arc<object_store::local::LocalFileSystem>,
    ) -> Self {
        self.local_root = Some(root);
        self.local_fs = Some(fs);
        self
    }

    /// Adds a URL signer (S3).
    pub(crate) fn with_signer(mut self, signer: Arc<dyn object_store::signer::Signer>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// A URL that reads the object at `key` straight from the backend, without FileManager,
    /// for `expires_in`; `None` when the backend cannot sign URLs.
    pub(crate) async fn signed_get_url(
        &self,
        key: &str,
        expires_in: std::time::Duration,
    ) -> Option<Result<String>> {
        let signer = self.signer.as_ref()?;
        Some(
            signer
                .signed_url(
                    object_store::signer::Method::GET,
                    &self.path(key),
                    expires_in,
                )
                .await
                .map(|u| u.to_string())
                .map_err(|e| errors::map(e, key)),
        )
    }

    /// The object_store path of a validated key. Keys never contain what `Path::parse` rejects
    /// (empty, `.` or `..` segments, control characters), so the key is used as is and an S3
    /// object is named exactly like the FileManager key.
    fn path(&self, key: &str) -> Path {
        Path::parse(format!("{key}{}", self.suffix)).expect("validated keys are valid paths")
    }

    pub(crate) fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// Removes staging files of uploads that never finished (see [`sweep`]); local disk only,
    /// other backends drop unfinished uploads themselves. Returns how many were removed.
    pub(crate) async fn sweep_stale_uploads(&self, older_than: std::time::Duration) -> usize {
        let Some(root) = &self.local_root else {
            return 0;
        };
        let root = root.clone();
        tokio::task::spawn_blocking(move || sweep::sweep(&root, older_than))
            .await
            .unwrap_or(0)
    }

    /// A short name for the backend kind (`memory`, `local`, `s3`, …).
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// Metadata of the object at `key`.
    pub(crate) async fn head(&self, key: &str) -> Result<ObjectInfo> {
        let path = self.path(key);
        if self.caps.attributes {
            let got = self
                .inner
                .get_opts(
                    &path,
                    GetOptions {
                        head: true,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| errors::map(e, key))?;
            let record = record::from_attributes(&got.attributes).map_err(|r| integrity(key, r))?;
            Ok(ObjectInfo::new(record, got.meta, 0))
        } else if self.name == "local" {
            // One open pins the version: the envelope and every later read of this
            // description come from the same file, whatever is renamed over it meanwhile.
            let got = self
                .inner
                .get_opts(&path, GetOptions::default())
                .await
                .map_err(|e| errors::map(e, key))?;
            if got.meta.size == 0 {
                return Err(integrity(key, "empty object without an envelope"));
            }
            Ok(open_pinned(got, key).await?.0)
        } else {
            let meta = self
                .inner
                .head(&path)
                .await
                .map_err(|e| errors::map(e, key))?;
            let want = (meta.size as usize).min(record::ENVELOPE_MAX) as u64;
            if want == 0 {
                return Err(integrity(key, "empty object without an envelope"));
            }
            let got = self
                .inner
                .get_opts(
                    &path,
                    GetOptions {
                        range: Some(GetRange::Bounded(0..want)),
                        if_match: meta.e_tag.clone(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| errors::map(e, key))?;
            let meta = got.meta.clone();
            let head = got.bytes().await.map_err(|e| errors::map(e, key))?;
            match record::parse_envelope(&head).map_err(|r| integrity(key, r))? {
                EnvelopeParse::Done(record, len) => Ok(ObjectInfo::new(record, meta, len)),
                EnvelopeParse::NeedMore => Err(integrity(key, "truncated envelope")),
            }
        }
    }

    /// The whole object at `key`: its metadata and a stream of its stored body.
    pub(crate) async fn get(&self, key: &str) -> Result<(ObjectInfo, ByteStream)> {
        let path = self.path(key);
        let got = self
            .inner
            .get_opts(&path, GetOptions::default())
            .await
            .map_err(|e| errors::map(e, key))?;
        let meta = got.meta.clone();
        if self.caps.attributes {
            let record = record::from_attributes(&got.attributes).map_err(|r| integrity(key, r))?;
            let info = ObjectInfo::new(record, meta, 0);
            return Ok((info, local_read::stream(got, key)));
        }
        if self.name == "local" {
            // The description stays pinned to the open file, so a later read of this version
            // (the codec's footer, for one) cannot meet a newer file.
            let (info, first) = open_pinned(got, key).await?;
            let file = info.pinned.clone().expect("open_pinned pins");
            let read = info.body_offset + first.len() as u64;
            let rest = local_read::pinned_stream(file, read..meta.size, key);
            let first = futures::stream::iter((!first.is_empty()).then_some(Ok(first)));
            return Ok((info, first.chain(rest).boxed()));
        }
        let mut stream = local_read::stream(got, key);
        let mut head = BytesMut::new();
        loop {
            match record::parse_envelope(&head).map_err(|r| integrity(key, r))? {
                EnvelopeParse::Done(record, len) => {
                    let rest = head.split_off(len).freeze();
                    let info = ObjectInfo::new(record, meta, len);
                    let first = futures::stream::iter((!rest.is_empty()).then_some(Ok(rest)));
                    let body = first.chain(stream).boxed();
                    return Ok((info, body));
                }
                EnvelopeParse::NeedMore => match stream.next().await {
                    Some(chunk) => head.extend_from_slice(&chunk?),
                    None => return Err(integrity(key, "truncated envelope")),
                },
            }
        }
    }

    /// The whole object at `key` in memory: its metadata and stored body, read in one piece.
    pub(crate) async fn get_all(&self, key: &str) -> Result<(ObjectInfo, Bytes)> {
        let (meta, attributes, all) = match &self.local_fs {
            Some(fs) => {
                let (meta, all) = local_read::read_whole(fs, self.path(key), key).await?;
                (meta, object_store::Attributes::default(), all)
            }
            None => {
                let got = self
                    .inner
                    .get_opts(&self.path(key), GetOptions::default())
                    .await
                    .map_err(|e| errors::map(e, key))?;
                let meta = got.meta.clone();
                let attributes = got.attributes.clone();
                (meta, attributes, local_read::read_all(got, key).await?)
            }
        };
        let (record, offset) = if self.caps.attributes {
            let record = record::from_attributes(&attributes).map_err(|r| integrity(key, r))?;
            (record, 0)
        } else {
            match record::parse_envelope(&all).map_err(|r| integrity(key, r))? {
                EnvelopeParse::Done(record, len) => (record, len),
                EnvelopeParse::NeedMore => return Err(integrity(key, "truncated envelope")),
            }
        };
        let info = ObjectInfo::new(record, meta, offset);
        Ok((info, all.slice(offset..)))
    }

    /// A byte range of the stored body of the object described by `info`. Fails with a
    /// precondition error if the object changed since `info` was read.
    pub(crate) async fn get_range(
        &self,
        key: &str,
        info: &ObjectInfo,
        range: Range<u64>,
    ) -> Result<ByteStream> {
        debug_assert!(range.start < range.end && range.end <= info.stored_size);
        let off = info.body_offset;
        if let Some(file) = &info.pinned {
            let at = range.start + off..range.end + off;
            return Ok(local_read::pinned_stream(file.clone(), at, key));
        }
        let got = self
            .inner
            .get_opts(
                &self.path(key),
                GetOptions {
                    range: Some(GetRange::Bounded(range.start + off..range.end + off)),
                    if_match: info.etag.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| errors::map(e, key))?;
        Ok(local_read::stream(got, key))
    }

    /// Writes `body` to `key` with its record, replacing any object there. On any failure
    /// nothing is stored and any previous object is left as it was.
    pub(crate) async fn put(
        &self,
        key: &str,
        record: &ObjectRecord,
        body: BoxStream<'_, Result<Bytes>>,
        in_memory: bool,
    ) -> Result<Written> {
        if self.name == "local"
            && key
                .rsplit('/')
                .next()
                .is_some_and(|n| n.len() > LOCAL_MAX_NAME)
        {
            return Err(Error::invalid_location(
                "filename",
                "on local disk storage the last segment may be at most 250 bytes",
            ));
        }
        let path = self.path(key);
        // On local disk a multipart upload is a staging file written in pieces: for a body the
        // caller already holds in memory one write is faster and costs nothing extra.
        let single_put = in_memory && self.name == "local";
        let (opts, prefix) = if self.caps.attributes {
            let opts = PutOptions {
                attributes: record::to_attributes(record),
                ..Default::default()
            };
            (opts, None)
        } else {
            (
                PutOptions::default(),
                Some(Bytes::from(record::to_envelope(record))),
            )
        };
        let written = Arc::new(AtomicU64::new(0));
        let counter = written.clone();
        let body = body
            .inspect_ok(move |b| {
                counter.fetch_add(b.len() as u64, Ordering::Relaxed);
            })
            .boxed();
        match upload::write_stream(self.inner.as_ref(), &path, opts, prefix, body, single_put).await
        {
            Ok(done) => Ok(Written {
                etag: done.e_tag,
                stored_size: written.load(Ordering::Relaxed),
                outcome: WriteOutcome::Stored,
            }),
            Err(upload::WriteError::Body(e)) => Err(e),
            Err(upload::WriteError::Multipart { error, before }) => {
                // If another write of the key completed while this upload was in flight, the
                // two overlapped, and ordering this one first is a valid history: it is
                // reported done and simply superseded (its bytes are not what the key holds).
                // That is what happens when Garage drops an upload overtaken by a newer write.
                // A dropped upload with no visible newer write is left to the caller to judge
                // (`Dropped`); any other failure is the backend's, and nothing was stored.
                let outcome = match upload::current_etag(self.inner.as_ref(), &path).await {
                    Ok(now) if now != before => WriteOutcome::Superseded,
                    _ if matches!(error, object_store::Error::NotFound { .. }) => {
                        WriteOutcome::Dropped
                    }
                    _ => return Err(errors::map(error, key).during_upload(key)),
                };
                tracing::info!(
                    key,
                    ?outcome,
                    "a multipart upload ended without being stored"
                );
                Ok(Written {
                    etag: None,
                    stored_size: written.load(Ordering::Relaxed),
                    outcome,
                })
            }
            Err(upload::WriteError::Store(e)) => Err(errors::map(e, key).during_upload(key)),
        }
    }

    /// Deletes the object at `key`. Deleting a missing object is not an error here.
    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(errors::map(e, key)),
        }
    }

    /// Keys of the objects whose key starts with `prefix` (a plain string prefix, as in S3), in key order,
    /// starting after `start_after` when given.
    pub(crate) async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<BoxStream<'static, Result<String>>> {
        // object_store lists whole path segments; list the directory holding the prefix and
        // filter by the string prefix, so `posts/1` also finds `posts/10.txt`.
        let dir = match prefix.rfind('/') {
            Some(i) => Path::parse(&prefix[..i]).map_err(|_| list_error())?,
            None => Path::default(),
        };
        let owned_prefix = prefix.to_owned();
        let suffix = self.suffix;
        let after = start_after.map(str::to_owned);
        let raw = match (&after, self.caps.sorted_listing) {
            (Some(a), true) => self.inner.list_with_offset(Some(&dir), &self.path(a)),
            _ => self.inner.list(Some(&dir)),
        };
        let entries = raw
            .map_err(|e| errors::map(e, ""))
            .try_filter_map(move |meta| {
                let location = meta.location.to_string();
                // Objects without our suffix were not written by FileManager; skip them.
                let Some(key) = location.strip_suffix(suffix).map(str::to_owned) else {
                    return futures::future::ready(Ok(None));
                };
                let keep = key.starts_with(&owned_prefix)
                    && after.as_deref().is_none_or(|a| key.as_str() > a);
                futures::future::ready(Ok(keep.then_some(key)))
            });
        if self.caps.sorted_listing {
            return Ok(entries.boxed());
        }
        let mut all: Vec<String> = entries.try_collect().await?;
        all.sort_unstable();
        Ok(futures::stream::iter(all.into_iter().map(Ok)).boxed())
    }
}

/// The description of a local file from its open handle, pinned to it, and the bytes of the
/// body read along with the envelope (the first up-to-`ENVELOPE_MAX` bytes, less the envelope).
async fn open_pinned(got: GetResult, key: &str) -> Result<(ObjectInfo, Bytes)> {
    let meta = got.meta.clone();
    let Some(file) = local_read::into_file(got) else {
        return Err(integrity(key, "local storage returned no file"));
    };
    let want = (meta.size as usize).min(record::ENVELOPE_MAX) as u64;
    let head = local_read::read_at(&file, 0..want, key).await?;
    match record::parse_envelope(&head).map_err(|r| integrity(key, r))? {
        EnvelopeParse::Done(record, len) => {
            let mut info = ObjectInfo::new(record, meta, len);
            info.pinned = Some(file);
            Ok((info, head.slice(len..)))
        }
        EnvelopeParse::NeedMore => Err(integrity(key, "truncated envelope")),
    }
}

fn integrity(key: &str, reason: &str) -> Error {
    Error::Integrity {
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

fn list_error() -> Error {
    Error::invalid_location("prefix", "not a valid list prefix")
}
