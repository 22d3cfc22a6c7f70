//! Reading local files in large pieces, and small ones in one go.
//!
//! object_store streams a local file in 8 KiB reads, each on a blocking thread; for a 64 MiB
//! file that is 8 192 thread hand-offs, and downloads ran at a fifth of a plain read. Reading
//! 1 MiB per hand-off keeps memory bounded and makes the overhead vanish.
//!
//! A whole-file read ([`read_whole`]) opens, describes and reads the file in a single blocking
//! call, where object_store's `get` and then reading its payload take two hand-offs: for a
//! small file the hand-offs are most of the time.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetResult, GetResultPayload, ObjectMeta};

use super::ByteStream;
use crate::error::Error;

/// Bytes read per blocking call.
const READ_SIZE: u64 = 1024 * 1024;

/// The payload of a get as a stream, reading local files in [`READ_SIZE`] pieces.
pub(crate) fn stream(got: GetResult, key: &str) -> ByteStream {
    let range = got.range.clone();
    match got.payload {
        GetResultPayload::File(file, _) => file_stream(file, range, key.to_owned()),
        GetResultPayload::Stream(s) => {
            let key = key.to_owned();
            s.map(move |r| r.map_err(|e| super::errors::map(e, &key).during_download(&key)))
                .boxed()
        }
    }
}

/// The payload of a get in one buffer; a local file is read with a single blocking call.
pub(crate) async fn read_all(got: GetResult, key: &str) -> Result<Bytes, Error> {
    let range = got.range.clone();
    match got.payload {
        GetResultPayload::File(mut file, _) => {
            let len = (range.end - range.start) as usize;
            let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                file.seek(SeekFrom::Start(range.start))?;
                read_exactly(&mut file, len as u64)
            })
            .await;
            match read {
                Ok(Ok(buf)) => Ok(Bytes::from(buf)),
                Ok(Err(e)) => Err(read_error(key, &e)),
                Err(_) => Err(Error::FileDownloadError {
                    key: key.to_owned(),
                    reason: "the read was cancelled".into(),
                }),
            }
        }
        GetResultPayload::Stream(mut s) => {
            let mut buf = Vec::with_capacity((range.end - range.start) as usize);
            while let Some(chunk) = s.next().await {
                let chunk = chunk.map_err(|e| super::errors::map(e, key).during_download(key))?;
                buf.extend_from_slice(&chunk);
            }
            Ok(Bytes::from(buf))
        }
    }
}

/// The object at `location` of a local store, described and read whole in one blocking call.
///
/// Describes the file exactly as object_store's own `get` and `head` do (the same path
/// mapping, entity tag and modification time; a test checks them against each other), so
/// that a later conditional or ranged read of the same version through object_store matches.
pub(crate) async fn read_whole(
    fs: &LocalFileSystem,
    location: Path,
    key: &str,
) -> Result<(ObjectMeta, Bytes), Error> {
    let path = fs
        .path_to_filesystem(&location)
        .map_err(|e| super::errors::map(e, key))?;
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let mut file = std::fs::File::open(&path)?;
        let md = file.metadata()?;
        // What object_store does with a key that names a directory.
        if md.is_dir() {
            return Err(std::io::ErrorKind::NotFound.into());
        }
        let len = usize::try_from(md.len()).map_err(|_| std::io::ErrorKind::OutOfMemory)?;
        let mut buf = Vec::with_capacity(len);
        // Exactly the length described: a file that grew since is read as it was described
        // (a replacement is a rename, so this file itself does not change).
        (&mut file).take(md.len()).read_to_end(&mut buf)?;
        if buf.len() != len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let meta = ObjectMeta {
            location,
            last_modified: md.modified()?.into(),
            size: md.len(),
            e_tag: Some(etag(&md)),
            version: None,
        };
        Ok((meta, buf))
    })
    .await;
    match read {
        Ok(Ok((meta, buf))) => Ok((meta, Bytes::from(buf))),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::FileNotFound {
            key: key.to_owned(),
        }),
        // Through the same mapping as object_store's errors: the reason names no path.
        Ok(Err(e)) => Err(super::errors::map(
            object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            },
            key,
        )),
        Err(_) => Err(cancelled(key)),
    }
}

/// object_store's entity tag of a local file: inode, modification time in microseconds and
/// size, in hex.
fn etag(md: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    format!("\"{:x}-{mtime:x}-{:x}\"", md.ino(), md.len())
}

/// The open file of a local get, or `None` for a backend that streams.
pub(crate) fn into_file(got: GetResult) -> Option<Arc<SharedFile>> {
    match got.payload {
        GetResultPayload::File(file, _) => Some(SharedFile::new(file)),
        GetResultPayload::Stream(_) => None,
    }
}

/// An open file that several readers share (the version of a file a description is pinned
/// to). Each read moves the file's position and reads from there while holding the lock, so
/// that no read starts where another left the position. A positional read (`pread`) would
/// need no lock, but std can only do one into a buffer that is zeroed first, and zeroing a
/// fresh MiB cost about as much as reading it (a profile of large downloads put `memset` at
/// 6 % of the service's time); the readers of one file take turns anyway.
#[derive(Debug)]
pub(crate) struct SharedFile(std::sync::Mutex<std::fs::File>);

impl SharedFile {
    pub(crate) fn new(file: std::fs::File) -> Arc<Self> {
        Arc::new(SharedFile(std::sync::Mutex::new(file)))
    }

    /// The file's description, for tests.
    #[cfg(test)]
    pub(crate) fn metadata(&self) -> std::io::Result<std::fs::Metadata> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).metadata()
    }

    /// Bytes `range`, read with blocking calls.
    fn read_range(&self, range: Range<u64>) -> std::io::Result<Vec<u8>> {
        // A reader that panicked left the file as usable as any other: the position is set
        // again below.
        let mut file = self.0.lock().unwrap_or_else(|e| e.into_inner());
        file.seek(SeekFrom::Start(range.start))?;
        read_exactly(&mut file, range.end - range.start)
    }
}

/// The next `len` bytes of `file`, read into a buffer that is not zeroed first.
fn read_exactly(file: &mut std::fs::File, len: u64) -> std::io::Result<Vec<u8>> {
    let mut buf =
        Vec::with_capacity(usize::try_from(len).map_err(|_| std::io::ErrorKind::OutOfMemory)?);
    file.take(len).read_to_end(&mut buf)?;
    if (buf.len() as u64) < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

/// Bytes `range` of an open file, in one blocking call.
pub(crate) async fn read_at(
    file: &Arc<SharedFile>,
    range: Range<u64>,
    key: &str,
) -> Result<Bytes, Error> {
    let file = file.clone();
    let read = tokio::task::spawn_blocking(move || file.read_range(range)).await;
    match read {
        Ok(Ok(buf)) => Ok(Bytes::from(buf)),
        Ok(Err(e)) => Err(read_error(key, &e)),
        Err(_) => Err(cancelled(key)),
    }
}

/// Bytes `range` of an open file shared with others, as a stream of [`READ_SIZE`] pieces, the
/// next piece read while the current one is used. Any number of streams may share the file.
pub(crate) fn pinned_stream(file: Arc<SharedFile>, range: Range<u64>, key: &str) -> ByteStream {
    let key = key.to_owned();
    let pieces = (range.start..range.end)
        .step_by(READ_SIZE as usize)
        .map(move |at| at..(at + READ_SIZE).min(range.end));
    futures::stream::iter(pieces)
        .map(move |piece| {
            let (file, key) = (file.clone(), key.clone());
            async move { read_at(&file, piece, &key).await }
        })
        .buffered(2)
        // Nothing after an error: a reader that went on would get bytes with a gap.
        .scan(false, |failed, item| {
            let end = *failed;
            *failed = item.is_err();
            futures::future::ready((!end).then_some(item))
        })
        .boxed()
}

fn cancelled(key: &str) -> Error {
    Error::FileDownloadError {
        key: key.to_owned(),
        reason: "the read was cancelled".into(),
    }
}

fn read_error(key: &str, e: &std::io::Error) -> Error {
    tracing::warn!(key, error = %e, "reading a stored file failed");
    Error::FileDownloadError {
        key: key.to_owned(),
        reason: match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "the stored file ended early".into(),
            _ => "an I/O error occurred in storage".into(),
        },
    }
}

fn file_stream(file: std::fs::File, range: Range<u64>, key: String) -> ByteStream {
    let state = (Some(file), range.start, range.end, key);
    futures::stream::try_unfold(state, |(file, pos, end, key)| async move {
        let Some(mut file) = file else {
            return Ok(None);
        };
        if pos >= end {
            return Ok(None);
        }
        let want = (end - pos).min(READ_SIZE) as usize;
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            file.seek(SeekFrom::Start(pos))?;
            let buf = read_exactly(&mut file, want as u64)?;
            Ok((file, buf))
        })
        .await;
        match read {
            Ok(Ok((file, buf))) => {
                let next = pos + buf.len() as u64;
                Ok(Some((Bytes::from(buf), (Some(file), next, end, key))))
            }
            Ok(Err(e)) => Err(read_error(&key, &e)),
            Err(_) => Err(Error::FileDownloadError {
                key,
                reason: "the read was cancelled".into(),
            }),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{ObjectStoreExt, PutPayload};

    fn store() -> (tempfile::TempDir, LocalFileSystem) {
        let dir = tempfile::tempdir().unwrap();
        let fs = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        (dir, fs)
    }

    #[tokio::test]
    async fn a_whole_read_describes_the_file_as_object_store_does() {
        let (_dir, fs) = store();
        // A name that object_store's path mapping encodes on disk, and the local suffix.
        let location = Path::parse("blog/app/a b%c\\").unwrap();
        for body in [&b""[..], b"x", &[7u8; 70_000]] {
            fs.put(&location, PutPayload::from(body.to_vec()))
                .await
                .unwrap();
            let (meta, bytes) = read_whole(&fs, location.clone(), "k").await.unwrap();
            assert_eq!(&bytes[..], body);
            // Entity tag, time, size and location exactly as object_store's own head and get
            // give them: a later `If-Match` read of this version must match.
            assert_eq!(meta, fs.head(&location).await.unwrap());
            assert_eq!(meta, fs.get(&location).await.unwrap().meta);
        }
    }

    #[tokio::test]
    async fn a_missing_file_or_a_directory_is_not_found_and_names_no_path() {
        let (dir, fs) = store();
        fs.put(
            &Path::parse("d/inner/f").unwrap(),
            PutPayload::from_static(b"1"),
        )
        .await
        .unwrap();
        for name in ["d/missing", "d/inner", "nothing/at/all"] {
            let err = read_whole(&fs, Path::parse(name).unwrap(), "the-key")
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::FileNotFound { key } if key == "the-key"),
                "{name}: {err:?}"
            );
            assert!(!err.to_string().contains(&*dir.path().to_string_lossy()));
        }
    }

    #[tokio::test]
    async fn another_failed_open_is_a_storage_error_without_its_path() {
        let (dir, fs) = store();
        let location = Path::parse("d/f").unwrap();
        fs.put(&location, PutPayload::from_static(b"1"))
            .await
            .unwrap();
        // A file where a parent directory should be: the open fails with "not a directory",
        // as it does through object_store (FileManager's own keys cannot meet this, the file
        // suffix keeps files and directories apart).
        let err = read_whole(&fs, Path::parse("d/f/g").unwrap(), "the-key")
            .await
            .unwrap_err();
        assert!(!matches!(err, Error::FileNotFound { .. }), "{err:?}");
        let text = err.to_string();
        assert!(!text.contains(&*dir.path().to_string_lossy()), "{text}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_sharing_a_file_each_read_their_own_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // Every 4-byte word holds its own offset, so a piece read from the wrong position
        // shows.
        let data: Vec<u8> = (0..(3 * READ_SIZE as u32 + 1000) / 4)
            .flat_map(|i| (i * 4).to_be_bytes())
            .collect();
        std::fs::write(&path, &data).unwrap();
        let file = SharedFile::new(std::fs::File::open(&path).unwrap());
        let len = data.len() as u64;
        let ranges = [
            0..len,
            4..len - 4,
            READ_SIZE - 8..len,
            1000..2 * READ_SIZE + 12,
        ];
        let reads = ranges.iter().cloned().map(|r| {
            let file = file.clone();
            async move {
                let mut got = Vec::new();
                let mut s = pinned_stream(file, r.clone(), "k");
                while let Some(piece) = s.next().await {
                    got.extend_from_slice(&piece.unwrap());
                }
                (r, got)
            }
        });
        for _ in 0..5 {
            for (r, got) in futures::future::join_all(reads.clone()).await {
                assert!(got == data[r.start as usize..r.end as usize], "{r:?}");
            }
        }
        // Past the end: an error, not a short piece.
        let err = read_at(&file, len - 2..len + 5, "k").await.unwrap_err();
        assert!(err.to_string().contains("ended early"), "{err}");
    }
}
