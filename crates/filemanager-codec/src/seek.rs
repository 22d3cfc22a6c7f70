//! Random access: the trailer (index + footer), range planning, and decoding
//! of only the chunks that cover a plaintext range (format.md §6, §7.2).
//!
//! Reader flow, with `S` the stored object size:
//! 1. fetch `[0, HEADER_LEN)` → [`ChunkDecoder::new`];
//! 2. fetch a tail of at least [`FOOTER_LEN`] bytes → [`Footer::parse`] says
//!    how many tail bytes the trailer needs ([`Footer::trailer_len`]); fetch
//!    more if needed → [`ChunkDecoder::read_index`] verifies it;
//! 3. [`Index::plan`] a plaintext range → fetch [`RangePlan::stored_range`] →
//!    [`ChunkDecoder::decode_range`], or stream it through a [`RangeDecoder`].

use std::ops::Range;
use std::sync::Arc;

use crate::chunk::{ChunkOpener, Expect, ObjectCtx, Prefix, UnitSink, drive};
use crate::crypto::{CHUNK_OVERHEAD, KIND_TRAILER, ObjectCrypto, PREFIX_LEN, TAG_LEN, nonce};
use crate::error::{Error, Result};
use crate::header::{FORMAT_VERSION, HEADER_LEN, Header};
use crate::key::KeyRing;

/// Length of the footer, the fixed-size end of every encoded object. A reader
/// fetches at least this many bytes from the end of the object.
pub const FOOTER_LEN: usize = 40;
/// Bytes per index entry (one per chunk).
pub const INDEX_ENTRY_LEN: usize = 4;

const FOOTER_MAGIC: [u8; 4] = [0x89, b'F', b'M', b'E'];

/// The parsed footer. Its fields are unverified hints until the trailer is
/// verified by [`ChunkDecoder::read_index`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// Number of chunks.
    pub chunk_count: u64,
    /// Total plaintext size (a hint until verified; fine for listings).
    pub plaintext_size: u64,
}

impl Footer {
    /// Parses the footer from the last [`FOOTER_LEN`] bytes of `tail`.
    pub fn parse(tail: &[u8]) -> Result<Footer> {
        let f = tail
            .len()
            .checked_sub(FOOTER_LEN)
            .map(|at| &tail[at..])
            .ok_or(Error::Integrity("truncated footer"))?;
        if f[36..40] != FOOTER_MAGIC {
            return Err(Error::Integrity(
                "bad footer magic (truncated or trailing data?)",
            ));
        }
        if f[32] != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion(f[32]));
        }
        if f[33..36] != [0, 0, 0] {
            return Err(Error::Integrity("reserved footer bytes set"));
        }
        let chunk_count = u64::from_be_bytes(f[0..8].try_into().expect("8 bytes"));
        // Bounding the count keeps every later length computation in range.
        if chunk_count == 0 || chunk_count > (u64::MAX - FOOTER_LEN as u64) / 64 {
            return Err(Error::Integrity("bad chunk count"));
        }
        Ok(Footer {
            chunk_count,
            plaintext_size: u64::from_be_bytes(f[8..16].try_into().expect("8 bytes")),
        })
    }

    /// Length of the index in bytes.
    pub fn index_len(&self) -> u64 {
        self.chunk_count * INDEX_ENTRY_LEN as u64
    }

    /// Length of the trailer (index + footer): how many bytes at the end of
    /// the object [`ChunkDecoder::read_index`] needs.
    pub fn trailer_len(&self) -> u64 {
        self.index_len() + FOOTER_LEN as u64
    }
}

/// [`Footer::parse`] when the header is known: a footer version other than
/// the header's is damage, not a newer format.
fn parse_footer_for(header: &Header, tail: &[u8]) -> Result<Footer> {
    Footer::parse(tail).map_err(|e| match e {
        Error::UnsupportedVersion(v) if v != header.version => {
            Error::Integrity("footer version differs from header")
        }
        e => e,
    })
}

/// Associated data of the trailer tag: `header ‖ index ‖ footer[0..16] ‖
/// footer[32..40]`.
fn trailer_aad(header: &[u8; HEADER_LEN], index: &[u8], footer: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + index.len() + 24);
    aad.extend_from_slice(header);
    aad.extend_from_slice(index);
    aad.extend_from_slice(&footer[..16]);
    aad.extend_from_slice(&footer[32..]);
    aad
}

/// Appends the trailer for these chunk lengths; returns its length.
pub(crate) fn write_trailer(
    crypto: &ObjectCrypto,
    header: &[u8; HEADER_LEN],
    body_lens: &[u32],
    plaintext_size: u64,
    out: &mut Vec<u8>,
) -> Result<usize> {
    let start = out.len();
    for len in body_lens {
        out.extend_from_slice(&len.to_be_bytes());
    }
    let mut footer = [0u8; FOOTER_LEN];
    footer[0..8].copy_from_slice(&(body_lens.len() as u64).to_be_bytes());
    footer[8..16].copy_from_slice(&plaintext_size.to_be_bytes());
    footer[32] = FORMAT_VERSION;
    footer[36..40].copy_from_slice(&FOOTER_MAGIC);
    let aad = trailer_aad(header, &out[start..], &footer);
    footer[16..32].copy_from_slice(&crypto.seal(nonce(0, KIND_TRAILER), &aad, &mut [])?);
    out.extend_from_slice(&footer);
    Ok(out.len() - start)
}

/// Verifies a complete trailer (exactly index ‖ footer) and returns the
/// chunk body lengths with the footer.
pub(crate) fn verify_trailer(ctx: &ObjectCtx, trailer: &[u8]) -> Result<(Vec<u32>, Footer)> {
    let footer = parse_footer_for(&ctx.header, trailer)?;
    if footer.trailer_len() != trailer.len() as u64 {
        return Err(Error::Integrity(
            "trailer length does not match chunk count",
        ));
    }
    let (index, f) = trailer.split_at(trailer.len() - FOOTER_LEN);
    let aad = trailer_aad(&ctx.header_bytes, index, f);
    let mut tag: [u8; TAG_LEN] = f[16..32].try_into().expect("16 bytes");
    ctx.crypto.open(
        nonce(0, KIND_TRAILER),
        &aad,
        &mut tag,
        "trailer authentication failed",
    )?;
    let lens = index
        .chunks_exact(INDEX_ENTRY_LEN)
        .map(|e| u32::from_be_bytes(e.try_into().expect("4 bytes")))
        .collect();
    Ok((lens, footer))
}

/// The verified chunk index of one object: where each chunk is stored and
/// which plaintext it holds.
#[derive(Debug, Clone)]
pub struct Index {
    chunk_size: u32,
    plaintext_size: u64,
    /// `offsets[i]` is where chunk `i` starts; `offsets[n]` is where the
    /// trailer starts.
    offsets: Vec<u64>,
    stored_size: u64,
}

impl Index {
    /// Checks the consistency rules of format.md §6 and computes offsets.
    pub(crate) fn build(header: &Header, lens: &[u32], footer: &Footer) -> Result<Index> {
        let n = lens.len() as u64;
        let cs = u64::from(header.chunk_size);
        let p = footer.plaintext_size;
        // u128: a forged count times the chunk size must not overflow.
        let (n128, cs128, p128) = (u128::from(n), u128::from(cs), u128::from(p));
        if n != footer.chunk_count || n == 0 || (n128 - 1) * cs128 > p128 || p128 > n128 * cs128 {
            return Err(Error::Integrity(
                "chunk count does not match plaintext size",
            ));
        }
        if header.plaintext_size.is_some_and(|h| h != p) {
            return Err(Error::Integrity("plaintext size differs from header"));
        }
        let mut index = Index {
            chunk_size: header.chunk_size,
            plaintext_size: p,
            offsets: Vec::with_capacity(lens.len() + 1),
            stored_size: 0,
        };
        let mut offset = HEADER_LEN as u64;
        for (i, &len) in lens.iter().enumerate() {
            if len > header.chunk_size
                || (!header.compressed && u64::from(len) != index.plain_len(i as u64))
            {
                return Err(Error::Integrity("bad chunk length in index"));
            }
            index.offsets.push(offset);
            offset = offset
                .checked_add(u64::from(len) + CHUNK_OVERHEAD as u64)
                .ok_or(Error::Integrity("index overflows"))?;
        }
        index.offsets.push(offset);
        index.stored_size = offset
            .checked_add(footer.trailer_len())
            .ok_or(Error::Integrity("index overflows"))?;
        Ok(index)
    }

    /// Verified total plaintext size.
    pub fn plaintext_size(&self) -> u64 {
        self.plaintext_size
    }

    /// Number of chunks (at least 1).
    pub fn chunk_count(&self) -> u64 {
        self.offsets.len() as u64 - 1
    }

    /// Plaintext bytes per chunk.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Total stored size of the object.
    pub fn stored_size(&self) -> u64 {
        self.stored_size
    }

    fn plain_len(&self, chunk: u64) -> u64 {
        let start = chunk * u64::from(self.chunk_size);
        self.plaintext_size
            .saturating_sub(start)
            .min(u64::from(self.chunk_size))
    }

    fn check_chunk(&self, chunk: u64) -> Result<usize> {
        (chunk < self.chunk_count())
            .then_some(chunk as usize)
            .ok_or(Error::InvalidInput("chunk number out of range"))
    }

    /// Stored byte range of chunk `chunk`.
    pub fn chunk_stored_range(&self, chunk: u64) -> Result<Range<u64>> {
        let i = self.check_chunk(chunk)?;
        Ok(self.offsets[i]..self.offsets[i + 1])
    }

    /// Plaintext byte range held by chunk `chunk`.
    pub fn chunk_plaintext_range(&self, chunk: u64) -> Result<Range<u64>> {
        self.check_chunk(chunk)?;
        let start = chunk * u64::from(self.chunk_size);
        Ok(start..start + self.plain_len(chunk))
    }

    /// Plans reading plaintext `range` (`start <= end <= plaintext_size`,
    /// else [`Error::InvalidInput`]).
    pub fn plan(&self, range: Range<u64>) -> Result<RangePlan> {
        if range.start > range.end || range.end > self.plaintext_size {
            return Err(Error::InvalidInput("range outside the object"));
        }
        if range.is_empty() {
            let at = self.offsets[0];
            return Ok(RangePlan {
                plaintext_range: range,
                stored_range: at..at,
                chunks: 0..0,
                skip: 0,
                take: 0,
            });
        }
        let cs = u64::from(self.chunk_size);
        let first = range.start / cs;
        let last = (range.end - 1) / cs;
        Ok(RangePlan {
            stored_range: self.offsets[first as usize]..self.offsets[last as usize + 1],
            chunks: first..last + 1,
            skip: (range.start - first * cs) as usize,
            take: range.end - range.start,
            plaintext_range: range,
        })
    }
}

/// How to read one plaintext range: which stored bytes to fetch and how to
/// trim the decoded chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePlan {
    /// The plaintext range requested.
    pub plaintext_range: Range<u64>,
    /// Stored bytes to fetch (one ranged read); empty for an empty range.
    pub stored_range: Range<u64>,
    /// Chunks covered (`chunks.start` is the first chunk's number).
    pub chunks: Range<u64>,
    /// Plaintext bytes to drop from the start of the first chunk.
    pub skip: usize,
    /// Plaintext bytes produced in total (the range's length).
    pub take: u64,
}

/// Decodes individual chunks and ranges of one object, given its header.
///
/// Cheap to clone (shares the derived key); each clone keeps its own zstd
/// context.
pub struct ChunkDecoder {
    opener: ChunkOpener,
}

impl Clone for ChunkDecoder {
    fn clone(&self) -> Self {
        Self {
            opener: ChunkOpener::new(Arc::clone(&self.opener.ctx)),
        }
    }
}

impl ChunkDecoder {
    /// Parses the header (the first [`HEADER_LEN`] bytes of the object; more
    /// is fine) and derives the object key for `storage_key`.
    ///
    /// Errors: [`Error::UnknownKey`], [`Error::MissingKey`],
    /// [`Error::UnsupportedVersion`], [`Error::Integrity`].
    pub fn new(header: &[u8], ring: Option<&KeyRing>, storage_key: &str) -> Result<Self> {
        let ctx = ObjectCtx::new(header, ring, storage_key)?;
        Ok(Self {
            opener: ChunkOpener::new(Arc::new(ctx)),
        })
    }

    /// The object's header.
    pub fn header(&self) -> &Header {
        &self.opener.ctx.header
    }

    /// Verifies the trailer and builds the index. `tail` is the end of the
    /// object (at least [`Footer::trailer_len`] bytes; more is fine) and
    /// `object_size` its total stored size, which must match the index.
    pub fn read_index(&self, tail: &[u8], object_size: u64) -> Result<Index> {
        if tail.len() as u64 > object_size {
            return Err(Error::InvalidInput("tail longer than the object"));
        }
        let footer = parse_footer_for(self.header(), tail)?;
        let need = footer.trailer_len();
        if need > object_size.saturating_sub(HEADER_LEN as u64) {
            return Err(Error::Integrity("trailer larger than the object"));
        }
        if need > tail.len() as u64 {
            return Err(Error::InvalidInput(
                "tail too short: fetch Footer::trailer_len() bytes",
            ));
        }
        let trailer = &tail[tail.len() - need as usize..];
        let (lens, footer) = verify_trailer(&self.opener.ctx, trailer)?;
        let index = Index::build(self.header(), &lens, &footer)?;
        if index.stored_size != object_size {
            return Err(Error::Integrity("object size does not match its index"));
        }
        Ok(index)
    }

    /// A push-based decoder for `plan`: feed it the bytes of
    /// `plan.stored_range` in slices of any size.
    pub fn range_decoder(&self, index: &Index, plan: &RangePlan) -> Result<RangeDecoder> {
        RangeDecoder::new(ChunkOpener::new(Arc::clone(&self.opener.ctx)), index, plan)
    }

    /// Decodes a planned range from all of its stored bytes at once.
    pub fn decode_range(
        &mut self,
        index: &Index,
        plan: &RangePlan,
        stored: &[u8],
    ) -> Result<Vec<u8>> {
        let fresh = ChunkOpener::new(Arc::clone(&self.opener.ctx));
        let opener = std::mem::replace(&mut self.opener, fresh);
        // Reuse this decoder's zstd context for the range, then take it back.
        let mut rd = RangeDecoder::new(opener, index, plan)?;
        let mut out = Vec::with_capacity(plan.take.min(stored.len() as u64 * 4) as usize);
        let result = rd.push(stored, &mut out).and_then(|()| rd.check_complete());
        self.opener = rd.opener;
        result.map(|()| out)
    }

    /// Decodes chunk number `chunk` from exactly its stored bytes
    /// ([`Index::chunk_stored_range`]).
    pub fn decode_chunk(&mut self, index: &Index, chunk: u64, stored: &[u8]) -> Result<Vec<u8>> {
        let plain = index.chunk_plaintext_range(chunk)?;
        let plan = RangePlan {
            stored_range: index.chunk_stored_range(chunk)?,
            chunks: chunk..chunk + 1,
            skip: 0,
            take: plain.end - plain.start,
            plaintext_range: plain,
        };
        self.decode_range(index, &plan, stored)
    }
}

/// Push-based decoder for the stored bytes of one [`RangePlan`]; owns what it
/// needs, so it can live in a `'static` stream.
///
/// As with [`crate::StreamDecoder`], plaintext handed out by `push` is
/// verified chunk by chunk, but the range is complete only if
/// [`RangeDecoder::finish`] succeeds.
pub struct RangeDecoder {
    opener: ChunkOpener,
    chunk_size: u64,
    plaintext_size: u64,
    last_chunk: u64,
    first: u64,
    next: u64,
    end: u64,
    body_lens: Vec<u32>,
    skip: usize,
    remaining: u64,
    pending: Vec<u8>,
    failed: bool,
}

impl RangeDecoder {
    fn new(opener: ChunkOpener, index: &Index, plan: &RangePlan) -> Result<Self> {
        if plan.chunks.start > plan.chunks.end || plan.chunks.end > index.chunk_count() {
            return Err(Error::InvalidInput("plan does not belong to this index"));
        }
        let (a, b) = (plan.chunks.start as usize, plan.chunks.end as usize);
        let body_lens = index.offsets[a..=b]
            .windows(2)
            .map(|w| (w[1] - w[0] - CHUNK_OVERHEAD as u64) as u32)
            .collect();
        Ok(Self {
            opener,
            chunk_size: u64::from(index.chunk_size),
            plaintext_size: index.plaintext_size,
            last_chunk: index.chunk_count() - 1,
            first: plan.chunks.start,
            next: plan.chunks.start,
            end: plan.chunks.end,
            body_lens,
            skip: plan.skip,
            remaining: plan.take,
            pending: Vec::new(),
            failed: false,
        })
    }

    /// Decodes more stored bytes, appending verified plaintext of the range
    /// to `out`.
    pub fn push(&mut self, stored: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if self.failed {
            return Err(Error::Integrity("range decoder already failed"));
        }
        let mut pending = std::mem::take(&mut self.pending);
        let result = drive(self, &mut pending, stored, out);
        self.pending = pending;
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn check_complete(&self) -> Result<()> {
        if self.failed {
            return Err(Error::Integrity("range decoder already failed"));
        }
        if self.next != self.end {
            return Err(Error::Integrity("stored range truncated"));
        }
        Ok(())
    }

    /// Succeeds only if every planned chunk was received and verified.
    pub fn finish(self) -> Result<()> {
        self.check_complete()
    }
}

impl UnitSink for RangeDecoder {
    const OVERFLOW: &'static str = "more stored bytes than the planned range";

    fn need(&self) -> Option<usize> {
        (self.next < self.end)
            .then(|| self.body_lens[(self.next - self.first) as usize] as usize + CHUNK_OVERHEAD)
    }

    fn consume(&mut self, unit: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let i = self.next;
        let (prefix, rest) = unit.split_at(PREFIX_LEN);
        let prefix = Prefix::parse(
            prefix.try_into().expect("prefix length"),
            &self.opener.ctx.header,
        )?;
        if prefix.last != (i == self.last_chunk) || prefix.rest_len() != rest.len() {
            return Err(Error::Integrity("chunk does not match the index"));
        }
        let start_plain = i * self.chunk_size;
        let plain_len = self
            .plaintext_size
            .saturating_sub(start_plain)
            .min(self.chunk_size);
        let start = out.len();
        self.opener
            .open(i, &prefix, rest, Expect::Exact(plain_len as usize), out)?;
        if self.skip > 0 {
            // Clamped: plans are plain data and might not come from `plan`.
            let skip = self.skip.min(out.len() - start);
            out.drain(start..start + skip);
            self.skip = 0;
        }
        let produced = (out.len() - start) as u64;
        if produced > self.remaining {
            out.truncate(start + self.remaining as usize);
        }
        self.remaining -= (out.len() - start) as u64;
        self.next += 1;
        Ok(())
    }
}

impl std::fmt::Debug for ChunkDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkDecoder")
            .field("header", self.header())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RangeDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeDecoder")
            .field("next_chunk", &self.next)
            .field("end_chunk", &self.end)
            .field("remaining", &self.remaining)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}
