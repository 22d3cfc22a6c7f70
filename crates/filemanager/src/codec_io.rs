//! Drives the at-rest codec (`filemanager-codec`, format in `docs/format.md`) from async byte
//! streams, and holds the encryption keys.
//!
//! Encoding and decoding run inline on the async task: a 64 KiB chunk takes tens of
//! microseconds to seal or open, well inside what one poll may take, and moving it to a
//! blocking thread would cost more than it saves. Memory stays at a few chunks whatever the
//! file size.
//!
//! Which codec an object uses comes from its [`ObjectRecord`](crate::meta::ObjectRecord),
//! written by us, never from the bytes; and the header read back must agree with the record,
//! so an encrypted object cannot be swapped for an unencrypted one.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use filemanager_codec::{
    self as codec, ChunkDecoder, FOOTER_LEN, Footer, HEADER_LEN, KeyRing, Params, Piece,
    StreamDecoder, StreamEncoder,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::meta::Encoding;
use crate::store::{ByteStream, ObjectInfo, Store};

/// Which encryption keys a manager uses.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum KeyConfig {
    /// No key: uploads that ask for encryption fail with a configuration error, and encrypted
    /// files cannot be read.
    #[default]
    None,
    /// A key ring: new files are sealed with its primary key, files under its old keys still
    /// read.
    Ring(KeyRing),
}

impl KeyConfig {
    /// Reads `STORAGE_ENCRYPTION_KEY` (64 hex digits or base64 of 32 bytes used as is, anything
    /// else a passphrase stretched with Argon2id) and `STORAGE_ENCRYPTION_KEYS_OLD` (a comma
    /// list of earlier keys that still read). No key set gives [`KeyConfig::None`].
    pub fn from_env() -> Result<Self> {
        match std::env::var("STORAGE_ENCRYPTION_KEY") {
            Ok(primary) if !primary.is_empty() => {
                let old = std::env::var("STORAGE_ENCRYPTION_KEYS_OLD").ok();
                let ring =
                    KeyRing::from_env_values(&primary, old.as_deref().filter(|o| !o.is_empty()))
                        .map_err(|e| Error::config("STORAGE_ENCRYPTION_KEY", e.to_string()))?;
                Ok(KeyConfig::Ring(ring))
            }
            _ => Ok(KeyConfig::None),
        }
    }

    /// A key ring from key values written like `STORAGE_ENCRYPTION_KEY`: the primary, then old
    /// keys.
    pub fn from_values(primary: &str, old: &[&str]) -> Result<Self> {
        let old = old.join(",");
        let ring = KeyRing::from_env_values(primary, (!old.is_empty()).then_some(old.as_str()))
            .map_err(|e| Error::config("STORAGE_ENCRYPTION_KEY", e.to_string()))?;
        Ok(KeyConfig::Ring(ring))
    }

    /// The key ids (hex, no secret), primary first; empty without keys. A service keeps the
    /// primary id next to its data to notice being started with the wrong key.
    pub fn key_ids(&self) -> Vec<String> {
        match self {
            KeyConfig::None => Vec::new(),
            KeyConfig::Ring(r) => r.key_ids().iter().map(|id| id.to_string()).collect(),
        }
    }
}

/// The codec with its keys and settings.
#[derive(Debug)]
pub(crate) struct Codec {
    keys: Option<Arc<KeyRing>>,
    key_ids: Vec<String>,
    chunk_size: u32,
    zstd_level: i32,
}

impl Codec {
    pub(crate) fn new(keys: KeyConfig) -> Result<Self> {
        let key_ids = keys.key_ids();
        let keys = match keys {
            KeyConfig::None => None,
            KeyConfig::Ring(r) => Some(Arc::new(r)),
        };
        Ok(Codec {
            keys,
            key_ids,
            chunk_size: codec::DEFAULT_CHUNK_SIZE,
            zstd_level: codec::DEFAULT_ZSTD_LEVEL,
        })
    }

    pub(crate) fn key_ids(&self) -> &[String] {
        &self.key_ids
    }

    /// Refuses, before any byte moves, an upload that asks for encryption without a key: a
    /// file asked to be encrypted is never stored in the clear.
    pub(crate) fn check(&self, encoding: Encoding) -> Result<()> {
        if encoding.encrypted() && self.keys.is_none() {
            return Err(Error::config(
                "STORAGE_ENCRYPTION_KEY",
                "encryption was asked for but no key is configured",
            ));
        }
        Ok(())
    }

    fn params(&self, encoding: Encoding) -> Params {
        Params {
            compress: encoding.compressed().then_some(self.zstd_level),
            encrypt: encoding.encrypted(),
            chunk_size: self.chunk_size,
        }
    }

    /// The stored form of `body` for `key`.
    pub(crate) fn encode(
        &self,
        key: &str,
        encoding: Encoding,
        size: Option<u64>,
        body: BoxStream<'static, Result<Bytes>>,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        if encoding == Encoding::Plain {
            return Ok(body);
        }
        self.check(encoding)?;
        let ring = if encoding.encrypted() {
            self.keys.as_deref()
        } else {
            None
        };
        let encoder = StreamEncoder::new(self.params(encoding), ring, key, size)
            .map_err(|e| codec_error(key, e))?;
        Ok(transform(body, encoder, key.to_owned()))
    }

    /// The original bytes of a whole stored object. The stream ends in an error, never in a
    /// clean end, if the object is truncated, tampered with or not ours to read.
    pub(crate) fn decode(
        &self,
        key: &str,
        encoding: Encoding,
        stored: ByteStream,
    ) -> Result<ByteStream> {
        if encoding == Encoding::Plain {
            return Ok(stored);
        }
        let decoder = Checked {
            decoder: StreamDecoder::new(self.keys.as_deref(), key),
            key: key.to_owned(),
            encoding,
            checked: false,
        };
        Ok(transform(stored, decoder, key.to_owned()))
    }

    /// The file's own length. Plain objects are their stored size; encoded ones carry it in
    /// their record when it was known at upload, else in their footer.
    pub(crate) async fn size(&self, store: &Store, key: &str, info: &ObjectInfo) -> Result<u64> {
        if info.record.encoding == Encoding::Plain {
            return Ok(info.stored_size);
        }
        if let Some(size) = info.record.size {
            return Ok(size);
        }
        if info.stored_size < (HEADER_LEN + FOOTER_LEN) as u64 {
            return Err(integrity(key, "the stored object is too short"));
        }
        let tail = fetch(
            store,
            key,
            info,
            info.stored_size - FOOTER_LEN as u64..info.stored_size,
        )
        .await?;
        Ok(Footer::parse(&tail)
            .map_err(|e| codec_error(key, e))?
            .plaintext_size)
    }

    /// Bytes `range` of the file, reading only the chunks that hold them.
    pub(crate) async fn read_range(
        &self,
        store: &Store,
        key: &str,
        info: &ObjectInfo,
        range: Range<u64>,
    ) -> Result<ByteStream> {
        let stored = info.stored_size;
        if stored < (HEADER_LEN + FOOTER_LEN) as u64 {
            return Err(integrity(key, "the stored object is too short"));
        }
        let header = fetch(store, key, info, 0..HEADER_LEN as u64).await?;
        let decoder = ChunkDecoder::new(&header, self.keys.as_deref(), key)
            .map_err(|e| codec_error(key, e))?;
        let h = decoder.header();
        agree(key, info.record.encoding, h.compressed, h.encrypted())?;
        // One tail read usually covers the whole trailer (4 bytes per 64 KiB chunk: 64 KiB of
        // tail indexes a 1 GiB file); a larger one costs a second read.
        let guess = (64 * 1024 + FOOTER_LEN as u64).min(stored - HEADER_LEN as u64);
        let mut tail = fetch(store, key, info, stored - guess..stored).await?;
        let footer = Footer::parse(&tail).map_err(|e| codec_error(key, e))?;
        if footer.trailer_len() > tail.len() as u64 {
            let want = footer.trailer_len().min(stored - HEADER_LEN as u64);
            tail = fetch(store, key, info, stored - want..stored).await?;
        }
        let index = decoder
            .read_index(&tail, stored)
            .map_err(|e| codec_error(key, e))?;
        let plan = index.plan(range).map_err(|e| codec_error(key, e))?;
        let ranged = decoder
            .range_decoder(&index, &plan)
            .map_err(|e| codec_error(key, e))?;
        let body = store
            .get_range(key, info, plan.stored_range.clone())
            .await?;
        Ok(transform(body, ranged, key.to_owned()))
    }

    /// Whether the encrypted object described by `info` is sealed under a key other than the
    /// primary one (so `rekey` should re-encrypt it).
    pub(crate) async fn needs_rekey(
        &self,
        store: &Store,
        key: &str,
        info: &ObjectInfo,
    ) -> Result<bool> {
        let Some(ring) = self.keys.as_deref() else {
            return Ok(false);
        };
        if !info.record.encoding.encrypted() || info.stored_size < HEADER_LEN as u64 {
            return Ok(false);
        }
        let header = fetch(store, key, info, 0..HEADER_LEN as u64).await?;
        let (header, _) = codec::Header::parse(&header).map_err(|e| codec_error(key, e))?;
        Ok(codec::needs_rekey(&header, ring))
    }
}

/// A codec step fed piece by piece: output for each input, and a last word at the end that
/// fails if the input was not complete.
trait Step: Send + 'static {
    /// Feeds `input`; queues its output, in order, on `ready`.
    fn push(&mut self, input: Bytes, ready: &mut VecDeque<Bytes>) -> Result<(), codec::Error>;
    fn finish(self, out: &mut Vec<u8>) -> Result<(), codec::Error>;
}

/// Runs `f`, which appends to a buffer of `capacity`, and queues what it appended.
fn queue(
    ready: &mut VecDeque<Bytes>,
    capacity: usize,
    f: impl FnOnce(&mut Vec<u8>) -> Result<(), codec::Error>,
) -> Result<(), codec::Error> {
    let mut out = Vec::with_capacity(capacity);
    f(&mut out)?;
    if !out.is_empty() {
        ready.push_back(Bytes::from(out));
    }
    Ok(())
}

impl Step for StreamEncoder {
    fn push(&mut self, input: Bytes, ready: &mut VecDeque<Bytes>) -> Result<(), codec::Error> {
        // Output comes a whole chunk at a time, often not for this input at all: no room is
        // taken up front.
        queue(ready, 0, |out| StreamEncoder::push(self, &input, out))
    }
    fn finish(self, out: &mut Vec<u8>) -> Result<(), codec::Error> {
        StreamEncoder::finish(self, out).map(drop)
    }
}

impl Step for codec::RangeDecoder {
    fn push(&mut self, input: Bytes, ready: &mut VecDeque<Bytes>) -> Result<(), codec::Error> {
        // Plaintext is at most as long as what it was stored as, bar a chunk begun earlier:
        // room for it up front saves growing the buffer chunk by chunk.
        queue(ready, input.len(), |out| {
            codec::RangeDecoder::push(self, &input, out)
        })
    }
    fn finish(self, _: &mut Vec<u8>) -> Result<(), codec::Error> {
        codec::RangeDecoder::finish(self)
    }
}

/// The whole-object decoder, which also checks, once the header is in, that it agrees with the
/// object's record.
struct Checked {
    decoder: StreamDecoder,
    key: String,
    encoding: Encoding,
    checked: bool,
}

impl Checked {
    fn check_header(&mut self) -> Result<(), codec::Error> {
        if !self.checked
            && let Some(h) = self.decoder.header()
        {
            if agree(&self.key, self.encoding, h.compressed, h.encrypted()).is_err() {
                return Err(codec::Error::Integrity(
                    "the stored header disagrees with the object's record",
                ));
            }
            self.checked = true;
        }
        Ok(())
    }
}

impl Step for Checked {
    fn push(&mut self, input: Bytes, ready: &mut VecDeque<Bytes>) -> Result<(), codec::Error> {
        match input.try_into_mut() {
            // A buffer nobody else holds (a read from local disk): its chunks are decrypted
            // where they lie and moved together within it, so that it goes on as one piece
            // (or a few) instead of being copied out. One piece per chunk would be cheaper
            // still here, but the connection would then write, and its reader wake, once per
            // 64 KiB.
            Ok(mut buf) => {
                let (mut spill, mut pieces) = (Vec::new(), Vec::new());
                self.decoder
                    .push_in_place(&mut buf, &mut spill, &mut pieces)?;
                self.check_header()?;
                let runs = compact(&mut buf, &pieces);
                let (buf, spill) = (buf.freeze(), Bytes::from(spill));
                ready.extend(runs.into_iter().map(|run| match run {
                    Piece::InPlace(r) => buf.slice(r),
                    Piece::Spilled(r) => spill.slice(r),
                }));
            }
            // Shared (e.g. a slice of an HTTP client's read buffer): decoded into a copy.
            // Such slices are often smaller than a chunk, and a chunk begun in earlier ones
            // comes out whole with this one: room for it too saves growing the copy (a
            // profile of 64 MiB downloads from S3 put that growth at 2 % of the service).
            // Capped, so that an object claiming huge chunks (up to 16 MiB; ours are 64 KiB)
            // does not make every small read reserve that much.
            Err(input) => {
                let begun = self
                    .decoder
                    .header()
                    .map_or(0, |h| (h.chunk_size as usize).min(1 << 20) + 64);
                queue(ready, input.len() + begun, |out| {
                    self.decoder.push(&input, out)
                })?;
                self.check_header()?;
            }
        }
        Ok(())
    }
    fn finish(self, _: &mut Vec<u8>) -> Result<(), codec::Error> {
        self.decoder.finish().map(drop)
    }
}

/// Moves the in-place `pieces` of `buf` down to lie end to end, and returns the pieces of
/// output in order: runs of `buf` (each of consecutive in-place pieces) between the spilled
/// pieces, which are left as they are. Pieces only ever move towards the start, past bytes
/// already moved or no longer needed, so no run is overwritten by a later one.
fn compact(buf: &mut [u8], pieces: &[Piece]) -> Vec<Piece> {
    let mut runs = Vec::new();
    let (mut run_start, mut end) = (0, 0);
    for piece in pieces {
        match piece {
            Piece::InPlace(r) => {
                if r.start != end {
                    buf.copy_within(r.clone(), end);
                }
                end += r.len();
            }
            Piece::Spilled(r) => {
                if end > run_start {
                    runs.push(Piece::InPlace(run_start..end));
                    run_start = end;
                }
                runs.push(Piece::Spilled(r.clone()));
            }
        }
    }
    if end > run_start {
        runs.push(Piece::InPlace(run_start..end));
    }
    runs
}

/// Runs `input` through `step`, yielding its output as it comes; the stream ends with the
/// step's `finish`, so an incomplete input ends in an error, never in a clean end.
fn transform<S: Step>(input: ByteStream, step: S, key: String) -> ByteStream {
    futures::stream::try_unfold(
        (input, Some(step), key, VecDeque::new()),
        |(mut input, mut step, key, mut ready)| async move {
            loop {
                if let Some(piece) = ready.pop_front() {
                    return Ok(Some((piece, (input, step, key, ready))));
                }
                let Some(current) = step.as_mut() else {
                    return Ok(None);
                };
                match input.next().await {
                    Some(chunk) => current
                        .push(chunk?, &mut ready)
                        .map_err(|e| codec_error(&key, e))?,
                    None => {
                        let mut out = Vec::new();
                        step.take()
                            .expect("checked above")
                            .finish(&mut out)
                            .map_err(|e| codec_error(&key, e))?;
                        if !out.is_empty() {
                            ready.push_back(Bytes::from(out));
                        }
                    }
                }
            }
        },
    )
    .boxed()
}

/// The header must say what the record says.
fn agree(key: &str, encoding: Encoding, compressed: bool, encrypted: bool) -> Result<()> {
    if encoding.compressed() != compressed || encoding.encrypted() != encrypted {
        return Err(integrity(
            key,
            "the stored header disagrees with the object's record",
        ));
    }
    Ok(())
}

async fn fetch(store: &Store, key: &str, info: &ObjectInfo, range: Range<u64>) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity((range.end - range.start) as usize);
    let mut s = store.get_range(key, info, range).await?;
    while let Some(chunk) = s.try_next().await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn integrity(key: &str, reason: &str) -> Error {
    Error::Integrity {
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Maps codec errors. Their messages are static text and key ids, never key material.
fn codec_error(key: &str, err: codec::Error) -> Error {
    match err {
        codec::Error::MissingKey => Error::config(
            "STORAGE_ENCRYPTION_KEY",
            "the file is encrypted but no key is configured",
        ),
        codec::Error::UnknownKey { key_id } => Error::Integrity {
            key: key.to_owned(),
            reason: format!(
                "the file was written with key id {key_id}, which this instance does not have"
            ),
        },
        codec::Error::InvalidParams(r) | codec::Error::InvalidInput(r) => Error::StorageError {
            key: Some(key.to_owned()),
            reason: format!("codec: {r}"),
            retryable: false,
        },
        other => Error::Integrity {
            key: key.to_owned(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_moves_in_place_pieces_together_around_spilled_ones() {
        let mut buf: Vec<u8> = (0..40).collect();
        let pieces = [
            Piece::InPlace(5..10),
            Piece::InPlace(15..20),
            Piece::Spilled(0..3),
            Piece::InPlace(25..30),
            Piece::InPlace(30..32),
        ];
        let runs = compact(&mut buf, &pieces);
        assert_eq!(
            runs,
            [
                Piece::InPlace(0..10),
                Piece::Spilled(0..3),
                Piece::InPlace(10..17)
            ]
        );
        let expected: Vec<u8> = (5..10).chain(15..20).chain(25..32).collect();
        assert_eq!(&buf[..17], &expected[..]);
        assert_eq!(compact(&mut buf, &[]), []);
        assert_eq!(
            compact(&mut buf, &[Piece::Spilled(2..4)]),
            [Piece::Spilled(2..4)]
        );
    }

    /// `stored` in pieces of pseudo-random sizes; `shared` makes every piece a slice of one
    /// buffer (decoded by copying), otherwise each piece is a buffer of its own (in place).
    fn pieces_of(stored: &[u8], seed: u64, max: usize, shared: bool) -> ByteStream {
        let whole = Bytes::copy_from_slice(stored);
        let mut cuts = Vec::new();
        let (mut at, mut x) = (0, seed);
        while at < stored.len() {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = (1 + (x >> 33) as usize % max).min(stored.len() - at);
            cuts.push(if shared {
                whole.slice(at..at + n)
            } else {
                Bytes::copy_from_slice(&stored[at..at + n])
            });
            at += n;
        }
        futures::stream::iter(cuts.into_iter().map(Ok)).boxed()
    }

    async fn decoded(codec: &Codec, encoding: Encoding, stored: ByteStream) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = codec.decode("k", encoding, stored)?;
        while let Some(piece) = s.try_next().await? {
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn owned_and_shared_pieces_decode_alike_and_damage_fails_both() {
        let keys = KeyConfig::from_values(&"ab".repeat(32), &[]).unwrap();
        let mut codec = Codec::new(keys).unwrap();
        codec.chunk_size = 1024;
        // Half repetitive (its chunks compress), half not (stored uncompressed even when the
        // object is compressed), so compressed objects mix both kinds of chunk.
        let data: Vec<u8> = (0..40_000u32)
            .map(|i| {
                if i < 20_000 {
                    (i % 7) as u8
                } else {
                    (i.wrapping_mul(2654435761) >> 13) as u8
                }
            })
            .collect();
        for (compress, encrypt) in [(false, true), (true, true), (true, false)] {
            let encoding = Encoding::from_flags(compress, encrypt);
            let body = futures::stream::iter([Ok(Bytes::from(data.clone()))]).boxed();
            let stored = codec.encode("k", encoding, None, body).unwrap();
            let stored: Vec<u8> = stored
                .try_fold(Vec::new(), |mut all, piece| async move {
                    all.extend_from_slice(&piece);
                    Ok(all)
                })
                .await
                .unwrap();
            for (seed, max) in [(1, 7), (2, 1500), (3, 5000), (4, stored.len())] {
                for shared in [false, true] {
                    let got = decoded(&codec, encoding, pieces_of(&stored, seed, max, shared))
                        .await
                        .unwrap();
                    assert!(got == data, "{encoding:?} seed {seed} shared {shared}");
                }
            }
            // One flipped bit anywhere in a chunk fails the whole read, in place or not.
            for at in [100, stored.len() / 2, stored.len() - 300] {
                let mut bad = stored.clone();
                bad[at] ^= 0x10;
                for shared in [false, true] {
                    let r = decoded(&codec, encoding, pieces_of(&bad, 9, 3000, shared)).await;
                    assert!(r.is_err(), "{encoding:?} flip at {at} shared {shared}");
                }
            }
        }
    }
}
