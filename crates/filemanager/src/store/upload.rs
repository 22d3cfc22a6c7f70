//! Streaming writes of any size with bounded memory and no partial object on failure.
//!
//! A body shorter than one part is sent with a single PUT. Anything longer becomes a multipart
//! upload whose parts are sent while the next one is read, with at most [`MAX_PARTS_IN_FLIGHT`]
//! parts in memory. If the body fails, or the future is dropped half way (a client hangs up, a
//! request times out), the multipart upload is aborted, so no object appears under the key and
//! no staging file is left behind: object stores only show an object once `complete` succeeds.

use std::collections::VecDeque;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{BoxStream, FuturesUnordered};
use object_store::path::Path;
use object_store::{
    MultipartUpload, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
    PutResult,
};
use tokio::task::JoinHandle;

use crate::error::Error;

/// Size of each multipart part. S3 needs at least 5 MiB for every part but the last.
pub(crate) const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploading at once; with the part being filled this bounds memory at ~3 parts.
pub(crate) const MAX_PARTS_IN_FLIGHT: usize = 2;

/// Why a streaming write failed: the body's own error, or the backend's.
pub(crate) enum WriteError {
    Body(Error),
    Store(object_store::Error),
    /// A multipart upload failed after it began. Garage, for one, drops an upload in progress
    /// when a newer write of the same key completes (the next part or the completion then
    /// fails with `NoSuchUpload`, or the connection is cut mid-part). `before` is the object's
    /// ETag when the upload began (`None`: no object), so the caller can tell whether another
    /// write of the key completed meanwhile.
    Multipart {
        error: object_store::Error,
        before: Option<String>,
    },
}

/// Writes `prefix` followed by `body` to `path`, atomically. With `single_put` the body is
/// sent in one request whatever its size (the caller holds it in memory already).
pub(crate) async fn write_stream(
    store: &dyn ObjectStore,
    path: &Path,
    opts: PutOptions,
    prefix: Option<Bytes>,
    mut body: BoxStream<'_, Result<Bytes, Error>>,
    single_put: bool,
) -> Result<PutResult, WriteError> {
    // A body already in memory may go in one PUT where parts buy nothing (local disk).
    let part_size = if single_put { usize::MAX } else { PART_SIZE };
    let mut pending = Pending::default();
    if let Some(p) = prefix {
        pending.push(p);
    }
    let mut multipart: Option<Multipart> = None;
    let mut opts = Some(opts);
    // What the key held when the multipart upload began; see `WriteError::Multipart`.
    let mut before: Option<Option<String>> = None;
    let failed =
        |error: object_store::Error, before: &Option<Option<String>>| WriteError::Multipart {
            error,
            before: before.clone().flatten(),
        };

    while let Some(chunk) = body.next().await {
        pending.push(chunk.map_err(WriteError::Body)?);
        while pending.len >= part_size {
            let part = pending.take(part_size);
            if multipart.is_none() {
                before = Some(current_etag(store, path).await.map_err(WriteError::Store)?);
                let put = opts.take().expect("options are used once");
                let opts = PutMultipartOptions {
                    tags: put.tags,
                    attributes: put.attributes,
                    ..Default::default()
                };
                let mut tries = 0;
                let upload = loop {
                    match store.put_multipart_opts(path, opts.clone()).await {
                        Err(e) if lost_directory(&e) && tries < DIRECTORY_TRIES => tries += 1,
                        other => break other.map_err(WriteError::Store)?,
                    }
                };
                multipart = Some(Multipart::new(upload));
            }
            let mp = multipart.as_mut().expect("started above");
            mp.send(part).await.map_err(|e| failed(e, &before))?;
        }
    }

    let rest = pending.take(pending.len);
    match multipart {
        None => {
            let opts = opts.take().expect("options are used once");
            let mut tries = 0;
            loop {
                // The payload is shared buffers: a retry costs no copy.
                match store.put_opts(path, rest.clone(), opts.clone()).await {
                    Err(e) if lost_directory(&e) && tries < DIRECTORY_TRIES => tries += 1,
                    other => break other.map_err(WriteError::Store),
                }
            }
        }
        Some(mut mp) => {
            if rest.content_length() > 0 {
                mp.send(rest).await.map_err(|e| failed(e, &before))?;
            }
            mp.complete().await.map_err(|e| failed(e, &before))
        }
    }
}

/// How often a write starts again when its directory vanished under it.
const DIRECTORY_TRIES: u32 = 4;

/// Whether a write failed before taking any of its body because the directory it was creating
/// its staging file in was removed meanwhile: on local disk, deleting a directory's last file
/// removes the emptied directory, which can race a write creating a file there. Starting the
/// write again is safe (nothing was written) and recreates the directory. Backends report a
/// missing object as `NotFound`, never as an I/O error inside `Generic`, so only local disk
/// ever matches.
fn lost_directory(e: &object_store::Error) -> bool {
    if !matches!(e, object_store::Error::Generic { .. }) {
        return false;
    }
    super::errors::sources(e)
        .find_map(|err| err.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
}

/// The ETag of the object at `path`, `None` when there is none.
pub(crate) async fn current_etag(
    store: &dyn ObjectStore,
    path: &Path,
) -> object_store::Result<Option<String>> {
    match store.head(path).await {
        Ok(meta) => Ok(Some(meta.e_tag.unwrap_or_default())),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Body pieces not yet sent. Parts are assembled from the pieces themselves (a `PutPayload`
/// holds several buffers), so no byte is copied on the way to the backend.
#[derive(Default)]
struct Pending {
    pieces: VecDeque<Bytes>,
    len: usize,
}

impl Pending {
    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.pieces.push_back(b);
        }
    }

    /// The first `n` bytes (or all, if fewer) as one payload.
    fn take(&mut self, n: usize) -> PutPayload {
        let mut out = Vec::new();
        let mut need = n.min(self.len);
        self.len -= need;
        while need > 0 {
            let mut piece = self.pieces.pop_front().expect("len counts the pieces");
            if piece.len() > need {
                let head = piece.split_to(need);
                self.pieces.push_front(piece);
                piece = head;
            }
            need -= piece.len();
            out.push(piece);
        }
        // Small payloads in several pieces (an envelope and a small file) go as one buffer:
        // the copy is cheaper than a write call per piece.
        if out.len() > 1 && n <= 64 * 1024 {
            return PutPayload::from(Bytes::from(out.concat()));
        }
        out.into_iter().collect()
    }
}

/// A multipart upload in progress that aborts itself unless completed.
struct Multipart {
    upload: Option<Box<dyn MultipartUpload>>,
    in_flight: FuturesUnordered<JoinHandle<object_store::Result<()>>>,
}

impl Multipart {
    fn new(upload: Box<dyn MultipartUpload>) -> Self {
        Multipart {
            upload: Some(upload),
            in_flight: FuturesUnordered::new(),
        }
    }

    /// Starts sending one part, after waiting for room among the parts in flight. Parts run as
    /// tasks so they make progress while the caller reads the next part from its body.
    async fn send(&mut self, part: PutPayload) -> object_store::Result<()> {
        while self.in_flight.len() >= MAX_PARTS_IN_FLIGHT {
            self.wait_one().await?;
        }
        let upload = self.upload.as_mut().expect("upload is open until complete");
        let fut = upload.put_part(part);
        self.in_flight.push(tokio::spawn(fut));
        Ok(())
    }

    async fn wait_one(&mut self) -> object_store::Result<()> {
        match self.in_flight.next().await {
            Some(joined) => joined.map_err(|e| object_store::Error::JoinError { source: e })?,
            None => Ok(()),
        }
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        while !self.in_flight.is_empty() {
            self.wait_one().await?;
        }
        let mut upload = self.upload.take().expect("complete is called once");
        match upload.complete().await {
            Ok(done) => Ok(done),
            Err(e) => {
                // Put it back so that Drop aborts it.
                self.upload = Some(upload);
                Err(e)
            }
        }
    }
}

impl Drop for Multipart {
    fn drop(&mut self) {
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        for task in self.in_flight.iter() {
            task.abort();
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = upload.abort().await {
                    tracing::warn!(error = %e, "could not abort a failed multipart upload");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_vanished_directory_is_retried() {
        let generic = |kind| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::new(kind, "x")),
        };
        assert!(lost_directory(&generic(std::io::ErrorKind::NotFound)));
        assert!(!lost_directory(&generic(std::io::ErrorKind::StorageFull)));
        let missing = object_store::Error::NotFound {
            path: "p".into(),
            source: Box::new(std::io::Error::from(std::io::ErrorKind::NotFound)),
        };
        assert!(!lost_directory(&missing));
    }

    #[tokio::test]
    async fn local_disk_errors_carry_their_io_error() {
        // The classification above depends on finding the I/O error in the chain of a real
        // local-disk failure: here the parent "directory" is a file.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let err = store
            .put_opts(
                &Path::from("f/g"),
                PutPayload::from_static(b"y"),
                PutOptions::default(),
            )
            .await
            .unwrap_err();
        let found = super::super::errors::sources(&err)
            .any(|e| e.downcast_ref::<std::io::Error>().is_some());
        assert!(found, "{err}");
        assert!(!lost_directory(&err), "not a vanished directory: {err}");
    }

    #[test]
    fn parts_are_cut_exactly_without_losing_bytes() {
        let mut p = Pending::default();
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for piece in data.chunks(37) {
            p.push(Bytes::copy_from_slice(piece));
        }
        p.push(Bytes::new());
        let mut got = Vec::new();
        for want in [100, 0, 333, 1, 10_000] {
            let part = p.take(want);
            assert_eq!(part.content_length(), want.min(1000 - got.len()));
            for b in part.iter() {
                got.extend_from_slice(b);
            }
        }
        assert_eq!(got, data);
        assert_eq!(p.len, 0);
    }
}
