//! The body of an upload: bytes in memory, a stream, or an `AsyncRead`, consumed as a stream so
//! that a file of any size passes through in bounded memory.

use std::fmt;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::AsyncRead;
use tokio_util::io::ReaderStream;

use crate::error::{Error, Result};

/// The bytes of a file being uploaded.
pub struct Body {
    pub(crate) stream: BoxStream<'static, Result<Bytes>>,
    /// The exact length, when known up front (bytes in memory, or a declared length).
    pub(crate) len: Option<u64>,
    /// The whole body is already in memory (so writing it in one piece costs no extra memory).
    pub(crate) in_memory: bool,
    /// The body itself, when it is in memory (for filling the cache after an upload).
    pub(crate) bytes: Option<Bytes>,
}

impl Body {
    /// A body from a stream of byte chunks. An `Err` item aborts the upload and nothing is
    /// stored.
    pub fn from_stream<S, E>(stream: S) -> Self
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        Body {
            stream: stream
                .map_err(|e| Error::BodyFailed {
                    reason: e.to_string(),
                })
                .boxed(),
            len: None,
            in_memory: false,
            bytes: None,
        }
    }

    /// A body read from an `AsyncRead` (a file, a socket, a pipe) until its end.
    pub fn from_reader<R>(reader: R) -> Self
    where
        R: AsyncRead + Send + 'static,
    {
        Body::from_stream(ReaderStream::with_capacity(reader, 64 * 1024))
    }

    /// Declares the body's exact length. It is recorded with the object, and an upload whose
    /// body turns out longer or shorter fails without storing anything.
    pub fn with_len(mut self, len: u64) -> Self {
        self.len = Some(len);
        self
    }

    /// The declared or known length, if any.
    pub fn declared_len(&self) -> Option<u64> {
        self.len
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        let len = bytes.len() as u64;
        Body {
            bytes: Some(bytes.clone()),
            stream: futures::stream::once(async move { Ok(bytes) }).boxed(),
            len: Some(len),
            in_memory: true,
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::from(Bytes::from(v))
    }
}

impl From<&'static [u8]> for Body {
    fn from(v: &'static [u8]) -> Self {
        Body::from(Bytes::from_static(v))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::from(Bytes::from(s))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::from(Bytes::from_static(s.as_bytes()))
    }
}

/// Wraps a stream so that it fails once more than `limit` bytes pass, or, with an `exact`
/// length, when the total differs from it at the end.
pub(crate) fn limited(
    stream: BoxStream<'static, Result<Bytes>>,
    limit: Option<u64>,
    exact: Option<u64>,
) -> BoxStream<'static, Result<Bytes>> {
    if limit.is_none() && exact.is_none() {
        return stream;
    }
    let max = match (limit, exact) {
        (Some(l), Some(e)) => l.min(e),
        (Some(l), None) => l,
        (None, Some(e)) => e,
        (None, None) => u64::MAX,
    };
    let over = move || match (limit, exact) {
        (Some(l), _) if exact.is_none_or(|e| e > l) => Error::PayloadTooLarge { limit: l },
        _ => Error::invalid_input("body", "longer than its declared length"),
    };
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen_end = seen.clone();
    let counted = stream.and_then(move |chunk| {
        let total = seen.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed)
            + chunk.len() as u64;
        futures::future::ready(if total > max { Err(over()) } else { Ok(chunk) })
    });
    let check_end = futures::stream::once(async move {
        let total = seen_end.load(std::sync::atomic::Ordering::Relaxed);
        match exact {
            Some(e) if total != e => Err(Error::invalid_input(
                "body",
                "shorter than its declared length",
            )),
            _ => Ok(Bytes::new()),
        }
    })
    .try_filter(|b| futures::future::ready(!b.is_empty()));
    counted.chain(check_end).boxed()
}

/// Gathers a download's byte stream (such as [`Download::body`](crate::Download::body)) into
/// one buffer; a single piece is returned as it is, without a copy. The first failed piece
/// fails the whole.
pub async fn collect_body(mut body: BoxStream<'static, Result<Bytes>>) -> Result<Bytes> {
    let mut parts = Vec::new();
    while let Some(chunk) = body.next().await {
        parts.push(chunk?);
    }
    Ok(match parts.len() {
        1 => parts.pop().expect("one part"),
        _ => Bytes::from(parts.concat()),
    })
}

/// Pieces of a download decoded ahead of the reader.
const AHEAD: usize = 4;

/// `stream`, driven by a task of its own up to [`AHEAD`] pieces ahead of whoever reads it.
///
/// Decrypting a download costs about as much CPU as sending it. Polled by the HTTP connection's
/// task, the two take turns on one core; driven here, the decoding (and the storage reads
/// before it) runs on another worker while the connection sends what is ready. Memory stays
/// bounded: at most [`AHEAD`] pieces wait. When the reader goes away the task stops and drops
/// the stream, as if the reader had dropped it (a moment later, on its own task). Outside a
/// Tokio runtime the stream is returned as it is.
pub(crate) fn ahead(
    stream: BoxStream<'static, Result<Bytes>>,
    key: &str,
) -> BoxStream<'static, Result<Bytes>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return stream;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(AHEAD);
    // Set when the task ends on its own terms; a channel that closes without it means the
    // task panicked, which must read as an error, never as a clean (short) end.
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = finished.clone();
    let key = key.to_owned();
    tokio::spawn(async move {
        let mut stream = stream;
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                // The reader is gone: stop now, not after the next piece arrives.
                () = tx.closed() => break,
            };
            let Some(item) = item else { break };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
        done.store(true, std::sync::atomic::Ordering::Release);
    });
    futures::stream::unfold(Some((rx, finished, key)), |state| async move {
        let (mut rx, finished, key) = state?;
        match rx.recv().await {
            Some(item) => Some((item, Some((rx, finished, key)))),
            None if finished.load(std::sync::atomic::Ordering::Acquire) => None,
            None => Some((
                Err(Error::FileDownloadError {
                    key,
                    reason: "the download stopped unexpectedly".into(),
                }),
                None,
            )),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(items: Vec<Result<&'static [u8]>>) -> BoxStream<'static, Result<Bytes>> {
        futures::stream::iter(items.into_iter().map(|r| r.map(Bytes::from_static))).boxed()
    }

    #[tokio::test]
    async fn collect_body_joins_pieces_in_order() {
        assert_eq!(collect_body(pieces(vec![])).await.unwrap(), Bytes::new());
        assert_eq!(collect_body(pieces(vec![Ok(b"one")])).await.unwrap(), "one");
        let three = pieces(vec![Ok(b"ab"), Ok(b""), Ok(b"cde"), Ok(b"f")]);
        assert_eq!(collect_body(three).await.unwrap(), "abcdef");
    }

    #[tokio::test]
    async fn collect_body_fails_on_any_failed_piece() {
        let failed = || Error::Integrity {
            key: "d/app/f".into(),
            reason: "tag mismatch".into(),
        };
        for at in 0..3 {
            let mut items: Vec<Result<&'static [u8]>> = vec![Ok(b"a"), Ok(b"b"), Ok(b"c")];
            items[at] = Err(failed());
            let err = collect_body(pieces(items))
                .await
                .expect_err("a failed piece fails the whole");
            assert!(matches!(err, Error::Integrity { .. }), "{err:?}");
        }
    }

    async fn drain(s: BoxStream<'static, Result<Bytes>>) -> Result<usize> {
        let parts: Vec<Bytes> = s.try_collect().await?;
        Ok(parts.iter().map(Bytes::len).sum())
    }

    fn chunks(n: usize, size: usize) -> BoxStream<'static, Result<Bytes>> {
        futures::stream::iter((0..n).map(move |_| Ok(Bytes::from(vec![7u8; size])))).boxed()
    }

    #[tokio::test]
    async fn limits() {
        assert_eq!(
            drain(limited(chunks(4, 10), Some(40), None)).await.unwrap(),
            40
        );
        assert!(matches!(
            drain(limited(chunks(5, 10), Some(40), None)).await,
            Err(Error::PayloadTooLarge { limit: 40 })
        ));
        assert!(drain(limited(chunks(4, 10), None, Some(41))).await.is_err());
        assert!(drain(limited(chunks(4, 10), None, Some(39))).await.is_err());
        assert_eq!(
            drain(limited(chunks(4, 10), None, Some(40))).await.unwrap(),
            40
        );
        assert_eq!(
            drain(limited(chunks(0, 10), Some(1), Some(0)))
                .await
                .unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn ahead_keeps_order_and_errors_and_stops_when_the_reader_goes() {
        let items: Vec<Result<Bytes>> = (0..100u8)
            .map(|i| Ok(Bytes::from(vec![i])))
            .chain([Err(Error::BodyFailed { reason: "x".into() })])
            .chain([Ok(Bytes::from_static(b"never"))])
            .collect();
        let mut got = Vec::new();
        let mut s = ahead(futures::stream::iter(items).boxed(), "k");
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => got.push(b[0]),
                Err(_) => break,
            }
        }
        assert_eq!(got, (0..100u8).collect::<Vec<_>>());
        assert!(s.next().await.is_none(), "nothing after an error");

        // A reader that goes away: the source is dropped without being read to its end.
        struct Dropped(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let guard = Dropped(flag.clone());
        let endless = futures::stream::repeat_with(move || {
            let _ = &guard;
            Ok(Bytes::from_static(b"x"))
        })
        .then(|b| async move {
            tokio::task::yield_now().await;
            b
        })
        .boxed();
        let mut s = ahead(endless, "k");
        s.next().await.unwrap().unwrap();
        drop(s);
        for _ in 0..1000 {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the source outlived its reader");
    }

    #[tokio::test]
    async fn ahead_reports_a_panicked_source_as_an_error() {
        let source = futures::stream::iter(0..3u8)
            .map(|i| {
                assert!(i < 2, "the source broke (expected by this test)");
                Ok(Bytes::from(vec![i]))
            })
            .boxed();
        let got: Vec<Result<Bytes>> = ahead(source, "k").collect().await;
        assert_eq!(got.len(), 3);
        assert!(got[..2].iter().all(|r| r.is_ok()));
        assert!(
            matches!(&got[2], Err(Error::FileDownloadError { key, .. }) if key == "k"),
            "a short stream must end in an error"
        );
    }
}
