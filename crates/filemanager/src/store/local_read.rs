//! Reading local files in large pieces.
//!
//! object_store streams a local file in 8 KiB reads, each on a blocking thread; for a 64 MiB
//! file that is 8 192 thread hand-offs, and downloads ran at a fifth of a plain read. Reading
//! 1 MiB per hand-off keeps memory bounded and makes the overhead vanish.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::{GetResult, GetResultPayload};

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
                let mut buf = vec![0u8; len];
                file.read_exact(&mut buf)?;
                Ok(buf)
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

/// The open file of a local get, or `None` for a backend that streams.
pub(crate) fn into_file(got: GetResult) -> Option<Arc<std::fs::File>> {
    match got.payload {
        GetResultPayload::File(file, _) => Some(Arc::new(file)),
        GetResultPayload::Stream(_) => None,
    }
}

/// Bytes `range` of an open file, in one blocking positional read.
pub(crate) async fn read_at(
    file: &Arc<std::fs::File>,
    range: Range<u64>,
    key: &str,
) -> Result<Bytes, Error> {
    let file = file.clone();
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        file.read_exact_at(&mut buf, range.start)?;
        Ok(buf)
    })
    .await;
    match read {
        Ok(Ok(buf)) => Ok(Bytes::from(buf)),
        Ok(Err(e)) => Err(read_error(key, &e)),
        Err(_) => Err(cancelled(key)),
    }
}

/// Bytes `range` of an open file shared with others, as a stream of [`READ_SIZE`] pieces, the
/// next piece read while the current one is used. Positional reads leave the file's offset
/// alone, so any number of streams may share it.
pub(crate) fn pinned_stream(file: Arc<std::fs::File>, range: Range<u64>, key: &str) -> ByteStream {
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
            let mut buf = vec![0u8; want];
            file.read_exact(&mut buf)?;
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
