//! Verifying and decoding single chunks, shared by the stream decoder and
//! the range decoder; plus the push-buffer driver both use to cut arbitrary
//! input slices into whole format units.

use std::sync::Arc;

use crate::crypto::{
    CHUNK_COMPRESSED, CHUNK_LAST, KIND_CHUNK, KIND_LAST, ObjectCrypto, PREFIX_LEN, TAG_LEN,
    chunk_aad, nonce,
};
use crate::error::{Error, Result};
use crate::header::{HEADER_LEN, Header};
use crate::key::KeyRing;

/// Zstd frame magic number as stored (little-endian 0xFD2FB528).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// What a reader knows about one object once its header is parsed.
pub(crate) struct ObjectCtx {
    pub(crate) header: Header,
    pub(crate) header_bytes: [u8; HEADER_LEN],
    pub(crate) crypto: ObjectCrypto,
}

impl ObjectCtx {
    /// Parses the header at the start of `bytes` and selects the key.
    pub(crate) fn new(bytes: &[u8], ring: Option<&KeyRing>, storage_key: &str) -> Result<Self> {
        let (header, len) = Header::parse(bytes)?;
        let header_bytes: [u8; HEADER_LEN] = bytes[..len].try_into().expect("header length");
        let crypto = ObjectCrypto::for_header(&header, ring, storage_key)?;
        Ok(Self {
            header,
            header_bytes,
            crypto,
        })
    }
}

/// Decoded chunk prefix.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prefix {
    pub(crate) bytes: [u8; PREFIX_LEN],
    pub(crate) compressed: bool,
    pub(crate) last: bool,
    pub(crate) body_len: u32,
}

impl Prefix {
    /// Parses and bounds-checks a prefix; the length check is what keeps a
    /// stream decoder from buffering more than one chunk.
    pub(crate) fn parse(bytes: [u8; PREFIX_LEN], header: &Header) -> Result<Self> {
        let flags = bytes[0];
        if flags & !(CHUNK_COMPRESSED | CHUNK_LAST) != 0 {
            return Err(Error::Integrity("reserved chunk flag set"));
        }
        let compressed = flags & CHUNK_COMPRESSED != 0;
        if compressed && !header.compressed {
            return Err(Error::Integrity("compressed chunk in uncompressed object"));
        }
        let body_len = u32::from_be_bytes(bytes[1..].try_into().expect("4 bytes"));
        if body_len > header.chunk_size {
            return Err(Error::Integrity("chunk longer than chunk size"));
        }
        Ok(Self {
            bytes,
            compressed,
            last: flags & CHUNK_LAST != 0,
            body_len,
        })
    }

    /// Stored length of the body and tag that follow the prefix.
    pub(crate) fn rest_len(&self) -> usize {
        self.body_len as usize + TAG_LEN
    }
}

/// Expected plaintext length of a chunk being opened.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Expect {
    Exact(usize),
    AtMost(usize),
}

impl Expect {
    fn max(self) -> usize {
        match self {
            Self::Exact(n) | Self::AtMost(n) => n,
        }
    }

    fn check(self, n: usize) -> Result<()> {
        let ok = match self {
            Self::Exact(m) => n == m,
            Self::AtMost(m) => n <= m,
        };
        ok.then_some(())
            .ok_or(Error::Integrity("chunk plaintext length mismatch"))
    }
}

/// Verifies and decodes chunks of one object.
pub(crate) struct ChunkOpener {
    pub(crate) ctx: Arc<ObjectCtx>,
    dctx: Option<zstd::bulk::Decompressor<'static>>,
    scratch: Vec<u8>,
}

impl ChunkOpener {
    pub(crate) fn new(ctx: Arc<ObjectCtx>) -> Self {
        Self {
            ctx,
            dctx: None,
            scratch: Vec::new(),
        }
    }

    /// Verifies chunk `counter` (`prefix`, then `rest` = body ‖ tag) and
    /// appends its plaintext to `out`. Nothing is appended on error.
    pub(crate) fn open(
        &mut self,
        counter: u64,
        prefix: &Prefix,
        rest: &[u8],
        expect: Expect,
        out: &mut Vec<u8>,
    ) -> Result<usize> {
        let start = out.len();
        let result = self.open_inner(counter, prefix, rest, expect, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn open_inner(
        &mut self,
        counter: u64,
        prefix: &Prefix,
        rest: &[u8],
        expect: Expect,
        out: &mut Vec<u8>,
    ) -> Result<usize> {
        debug_assert_eq!(rest.len(), prefix.rest_len());
        let kind = if prefix.last { KIND_LAST } else { KIND_CHUNK };
        let nonce = nonce(counter, kind);
        let aad = chunk_aad(&self.ctx.header_bytes, &prefix.bytes);
        const WHAT: &str = "chunk authentication failed";
        let start = out.len();
        if !prefix.compressed {
            // Decrypt straight into the caller's buffer: one copy per chunk.
            out.extend_from_slice(rest);
            let n = self.ctx.crypto.open(nonce, &aad, &mut out[start..], WHAT)?;
            out.truncate(start + n);
            expect.check(n)?;
            return Ok(n);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(rest);
        let n = self.ctx.crypto.open(nonce, &aad, &mut self.scratch, WHAT)?;
        let frame = &self.scratch[..n];
        // Exactly one standard zstd frame: no legacy formats, skippable or
        // concatenated frames, so the decoder surface stays minimal.
        if frame.get(..4) != Some(&ZSTD_MAGIC[..])
            || zstd::zstd_safe::find_frame_compressed_size(frame) != Ok(frame.len())
        {
            return Err(Error::Integrity("chunk is not a single zstd frame"));
        }
        if self.dctx.is_none() {
            self.dctx = Some(
                zstd::bulk::Decompressor::new()
                    .map_err(|_| Error::InvalidInput("cannot allocate a zstd context"))?,
            );
        }
        let dctx = self.dctx.as_mut().expect("just set");
        // The output slice is exactly the largest valid plaintext: zstd fails
        // rather than writing past it, which bounds any decompression bomb.
        out.resize(start + expect.max(), 0);
        let written = dctx
            .decompress_to_buffer(frame, &mut out[start..])
            .map_err(|_| Error::Integrity("chunk does not decompress within its size"))?;
        out.truncate(start + written);
        expect.check(written)?;
        Ok(written)
    }

    /// Verifies uncompressed chunk `counter` (`prefix`, then `body_and_tag`) where it lies:
    /// on success its plaintext is `body_and_tag[..n]`. On error the buffer holds nothing
    /// usable (the cipher may have overwritten it) and must be discarded.
    pub(crate) fn open_in_place(
        &self,
        counter: u64,
        prefix: &Prefix,
        body_and_tag: &mut [u8],
        expect: Expect,
    ) -> Result<usize> {
        debug_assert!(!prefix.compressed, "compressed chunks decompress elsewhere");
        debug_assert_eq!(body_and_tag.len(), prefix.rest_len());
        let kind = if prefix.last { KIND_LAST } else { KIND_CHUNK };
        let aad = chunk_aad(&self.ctx.header_bytes, &prefix.bytes);
        let n = self.ctx.crypto.open(
            nonce(counter, kind),
            &aad,
            body_and_tag,
            "chunk authentication failed",
        )?;
        expect.check(n)?;
        Ok(n)
    }
}

/// A consumer of fixed-size units (header, prefix, chunk body, trailer).
pub(crate) trait UnitSink {
    /// Integrity error message for input beyond the last unit.
    const OVERFLOW: &'static str;
    /// Size of the next unit, or `None` when no more input is acceptable.
    fn need(&self) -> Option<usize>;
    /// Processes one complete unit of exactly `need()` bytes.
    fn consume(&mut self, unit: &[u8], out: &mut Vec<u8>) -> Result<()>;
}

/// Feeds `input` to `sink` in whole units, buffering partial units in
/// `pending`. Units entirely inside `input` are processed without copying.
pub(crate) fn drive<S: UnitSink>(
    sink: &mut S,
    pending: &mut Vec<u8>,
    mut input: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    while !input.is_empty() {
        let Some(need) = sink.need() else {
            return Err(Error::Integrity(S::OVERFLOW));
        };
        if pending.is_empty() && input.len() >= need {
            let (unit, rest) = input.split_at(need);
            input = rest;
            sink.consume(unit, out)?;
            continue;
        }
        let take = (need - pending.len()).min(input.len());
        pending.extend_from_slice(&input[..take]);
        input = &input[take..];
        if pending.len() == need {
            let result = sink.consume(pending, out);
            pending.clear();
            result?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::FORMAT_VERSION;

    fn opener() -> ChunkOpener {
        let header = Header {
            version: FORMAT_VERSION,
            compressed: true,
            key_id: None,
            salt: [0; 32],
            chunk_size: 4096,
            plaintext_size: None,
        };
        let bytes = header.to_bytes();
        ChunkOpener::new(Arc::new(ObjectCtx::new(&bytes, None, "k").unwrap()))
    }

    fn sealed_chunk(o: &ChunkOpener, frame: &[u8]) -> (Prefix, Vec<u8>) {
        let mut pb = [CHUNK_COMPRESSED | CHUNK_LAST, 0, 0, 0, 0];
        pb[1..].copy_from_slice(&(frame.len() as u32).to_be_bytes());
        let prefix = Prefix::parse(pb, &o.ctx.header).unwrap();
        let mut body = frame.to_vec();
        let aad = chunk_aad(&o.ctx.header_bytes, &pb);
        let tag = o
            .ctx
            .crypto
            .seal(nonce(0, KIND_LAST), &aad, &mut body)
            .unwrap();
        body.extend_from_slice(&tag);
        (prefix, body)
    }

    #[test]
    fn decompression_is_bounded_by_the_chunk_size() {
        let mut o = opener();
        // 16 MiB of zeros compresses to a few KiB; it must not be expanded.
        let bomb = zstd::bulk::compress(&vec![0u8; 16 << 20], 3).unwrap();
        assert!(bomb.len() < 4096);
        let (prefix, rest) = sealed_chunk(&o, &bomb);
        let mut out = vec![1, 2, 3];
        let err = o.open(0, &prefix, &rest, Expect::AtMost(4096), &mut out);
        assert!(matches!(err, Err(Error::Integrity(_))), "{err:?}");
        assert_eq!(out, [1, 2, 3]);
        assert!(out.capacity() < 1 << 20);
    }

    #[test]
    fn only_single_standard_frames() {
        let mut o = opener();
        let one = zstd::bulk::compress(b"hello hello hello hello", 3).unwrap();
        let (p, r) = sealed_chunk(&o, &one);
        let mut out = Vec::new();
        o.open(0, &p, &r, Expect::AtMost(4096), &mut out).unwrap();
        assert_eq!(out, b"hello hello hello hello");
        let two = [one.clone(), one].concat();
        let (p, r) = sealed_chunk(&o, &two);
        assert!(o.open(0, &p, &r, Expect::AtMost(4096), &mut out).is_err());
    }
}
