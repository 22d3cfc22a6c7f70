//! Whole-stream decoding: [`StreamDecoder`] (push arbitrary slices) and
//! [`decode_all`].
//!
//! **Contract:** `push` returns plaintext as soon as each chunk is verified,
//! so a consumer can stream it, but the object is valid only if
//! [`StreamDecoder::finish`] returns `Ok`. Until then (e.g. on a truncated
//! download) everything received must be treated as failed: a stream cut at
//! a chunk boundary yields only verified chunks and is detected only by
//! `finish`.

use std::ops::Range;
use std::sync::Arc;

use crate::chunk::{ChunkOpener, Expect, ObjectCtx, Prefix, UnitSink, drive};
use crate::crypto::PREFIX_LEN;
use crate::error::{Error, Result};
use crate::header::{HEADER_LEN, Header};
use crate::key::KeyRing;
use crate::seek::{FOOTER_LEN, INDEX_ENTRY_LEN, verify_trailer};

/// Facts about a completely encoded or decoded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The object's header.
    pub header: Header,
    /// Total plaintext size.
    pub plaintext_size: u64,
    /// Number of chunks.
    pub chunk_count: u64,
    /// Total stored (encoded) size.
    pub stored_size: u64,
}

enum State {
    Header,
    Prefix,
    Body(Prefix),
    Trailer(usize),
    Done,
}

struct Inner {
    state: State,
    ring: Option<KeyRing>,
    storage_key: String,
    opener: Option<ChunkOpener>,
    body_lens: Vec<u32>,
    plaintext_total: u64,
    stored_total: u64,
}

impl Inner {
    fn opener(&mut self) -> &mut ChunkOpener {
        self.opener.as_mut().expect("header parsed before chunks")
    }

    /// The counter of the chunk whose body comes next, and the plaintext length it must have.
    fn next_chunk(&mut self, prefix: &Prefix) -> (u64, Expect) {
        let cs = self.opener().ctx.header.chunk_size as usize;
        let expect = if prefix.last {
            Expect::AtMost(cs)
        } else {
            Expect::Exact(cs)
        };
        (self.body_lens.len() as u64, expect)
    }

    /// Records a verified chunk of `n` plaintext bytes and moves on to what follows it.
    fn chunk_done(&mut self, prefix: &Prefix, n: usize) -> Result<()> {
        let announced = self.opener().ctx.header.plaintext_size;
        self.plaintext_total += n as u64;
        if announced.is_some_and(|a| self.plaintext_total > a) {
            return Err(Error::Integrity("more plaintext than the header announced"));
        }
        self.body_lens.push(prefix.body_len);
        self.state = if prefix.last {
            let index_len = self.body_lens.len() * INDEX_ENTRY_LEN;
            State::Trailer(index_len + FOOTER_LEN)
        } else {
            State::Prefix
        };
        Ok(())
    }

    /// Like [`UnitSink::consume`], but an uncompressed chunk body is decrypted where it lies
    /// in `unit` (its plaintext recorded in `pieces` at `at`, the unit's offset in the caller's
    /// buffer) instead of being copied out. Anything else goes to `spill`.
    fn consume_in_place(
        &mut self,
        unit: &mut [u8],
        at: usize,
        spill: &mut Vec<u8>,
        pieces: &mut Vec<Piece>,
    ) -> Result<()> {
        match &self.state {
            State::Body(prefix) if !prefix.compressed => {
                let prefix = *prefix;
                self.stored_total += unit.len() as u64;
                // Until the chunk is verified the decoder stays where it was; on an error the
                // caller fails it for good anyway.
                let (counter, expect) = self.next_chunk(&prefix);
                let n = self
                    .opener()
                    .open_in_place(counter, &prefix, unit, expect)?;
                self.chunk_done(&prefix, n)?;
                if n > 0 {
                    pieces.push(Piece::InPlace(at..at + n));
                }
                Ok(())
            }
            _ => spilled(spill, pieces, |spill| self.consume(unit, spill)),
        }
    }
}

/// Runs `f`, which may append to `spill`, and records what it appended as a piece.
fn spilled(
    spill: &mut Vec<u8>,
    pieces: &mut Vec<Piece>,
    f: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let start = spill.len();
    f(spill)?;
    if spill.len() > start {
        pieces.push(Piece::Spilled(start..spill.len()));
    }
    Ok(())
}

/// Where [`StreamDecoder::push_in_place`] left one piece of plaintext. Pieces are listed in
/// the order of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// These bytes of the input buffer, decrypted where they lay.
    InPlace(Range<usize>),
    /// These bytes of the spill buffer: a chunk begun in an earlier push, or a compressed one.
    Spilled(Range<usize>),
}

impl UnitSink for Inner {
    const OVERFLOW: &'static str = "trailing data after the end of the object";

    fn need(&self) -> Option<usize> {
        match &self.state {
            State::Header => Some(HEADER_LEN),
            State::Prefix => Some(PREFIX_LEN),
            State::Body(p) => Some(p.rest_len()),
            State::Trailer(n) => Some(*n),
            State::Done => None,
        }
    }

    fn consume(&mut self, unit: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.stored_total += unit.len() as u64;
        match std::mem::replace(&mut self.state, State::Done) {
            State::Header => {
                let ring = self.ring.take();
                let ctx = ObjectCtx::new(unit, ring.as_ref(), &self.storage_key)?;
                self.opener = Some(ChunkOpener::new(Arc::new(ctx)));
                self.state = State::Prefix;
            }
            State::Prefix => {
                let prefix = Prefix::parse(
                    unit.try_into().expect("prefix length"),
                    &self.opener().ctx.header,
                )?;
                self.state = State::Body(prefix);
            }
            State::Body(prefix) => {
                let (counter, expect) = self.next_chunk(&prefix);
                let n = self.opener().open(counter, &prefix, unit, expect, out)?;
                self.chunk_done(&prefix, n)?;
            }
            State::Trailer(_) => {
                let ctx = &self.opener().ctx;
                let announced = ctx.header.plaintext_size;
                let (lens, footer) = verify_trailer(ctx, unit)?;
                if lens != self.body_lens
                    || footer.plaintext_size != self.plaintext_total
                    || announced.is_some_and(|a| a != self.plaintext_total)
                {
                    return Err(Error::Integrity("trailer does not match the chunks"));
                }
                self.state = State::Done;
            }
            State::Done => unreachable!("need() is None when done"),
        }
        Ok(())
    }
}

/// Decodes a whole object from slices of any size (format.md §7.1).
///
/// Memory: one chunk plus 4 bytes per chunk for the index check.
pub struct StreamDecoder {
    inner: Inner,
    pending: Vec<u8>,
    failed: bool,
}

impl StreamDecoder {
    /// A decoder for the object stored under `storage_key`. `ring` is needed
    /// only for encrypted objects ([`Error::MissingKey`] otherwise); it is
    /// cloned and dropped once the header is read.
    pub fn new(ring: Option<&KeyRing>, storage_key: &str) -> Self {
        Self {
            inner: Inner {
                state: State::Header,
                ring: ring.cloned(),
                storage_key: storage_key.to_owned(),
                opener: None,
                body_lens: Vec::new(),
                plaintext_total: 0,
                stored_total: 0,
            },
            pending: Vec::new(),
            failed: false,
        }
    }

    /// The header, once it has been received.
    pub fn header(&self) -> Option<&Header> {
        self.inner.opener.as_ref().map(|o| &o.ctx.header)
    }

    /// Feeds stored bytes and appends the plaintext of every chunk verified
    /// so far to `out`. After an error the decoder refuses further input.
    /// See the module docs: success here does not make the object valid.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if self.failed {
            return Err(Error::Integrity("decoder already failed"));
        }
        let result = drive(&mut self.inner, &mut self.pending, bytes, out);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Like [`StreamDecoder::push`], without copying the plaintext out where that can be
    /// avoided: every uncompressed chunk that lies whole inside `input` is verified and
    /// decrypted in place. `pieces` gets, in order, where each piece of plaintext now is: in
    /// `input`, or appended to `spill` (chunks begun in an earlier push, compressed chunks).
    ///
    /// On error nothing this call touched may be used: `input` may have been partly
    /// overwritten, and the decoder refuses further input, as with `push`. The module docs
    /// apply: success here does not make the object valid.
    pub fn push_in_place(
        &mut self,
        input: &mut [u8],
        spill: &mut Vec<u8>,
        pieces: &mut Vec<Piece>,
    ) -> Result<()> {
        if self.failed {
            return Err(Error::Integrity("decoder already failed"));
        }
        let result = self.drive_in_place(input, spill, pieces);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// [`drive`], with units that lie whole inside `input` consumed in place.
    fn drive_in_place(
        &mut self,
        input: &mut [u8],
        spill: &mut Vec<u8>,
        pieces: &mut Vec<Piece>,
    ) -> Result<()> {
        let mut at = 0;
        while at < input.len() {
            let Some(need) = self.inner.need() else {
                return Err(Error::Integrity(<Inner as UnitSink>::OVERFLOW));
            };
            let left = input.len() - at;
            if self.pending.is_empty() && left >= need {
                let unit = &mut input[at..at + need];
                self.inner.consume_in_place(unit, at, spill, pieces)?;
                at += need;
                continue;
            }
            let take = (need - self.pending.len()).min(left);
            self.pending.extend_from_slice(&input[at..at + take]);
            at += take;
            if self.pending.len() == need {
                let (inner, pending) = (&mut self.inner, &self.pending);
                let result = spilled(spill, pieces, |spill| inner.consume(pending, spill));
                self.pending.clear();
                result?;
            }
        }
        Ok(())
    }

    /// Ends the stream: succeeds only if the header, the final chunk, the
    /// trailer and the footer were all received, verified and consistent,
    /// with nothing after them.
    pub fn finish(self) -> Result<Summary> {
        if self.failed {
            return Err(Error::Integrity("decoder already failed"));
        }
        let what = match self.inner.state {
            State::Done => {
                let header = self
                    .inner
                    .opener
                    .expect("done implies header")
                    .ctx
                    .header
                    .clone();
                return Ok(Summary {
                    header,
                    plaintext_size: self.inner.plaintext_total,
                    chunk_count: self.inner.body_lens.len() as u64,
                    stored_size: self.inner.stored_total,
                });
            }
            State::Header => "truncated: incomplete header",
            State::Prefix | State::Body(_) => "truncated: final chunk missing",
            State::Trailer(_) => "truncated: trailer missing",
        };
        Err(Error::Integrity(what))
    }
}

/// Decodes a whole stored object in one call.
pub fn decode_all(ring: Option<&KeyRing>, storage_key: &str, stored: &[u8]) -> Result<Vec<u8>> {
    let mut dec = StreamDecoder::new(ring, storage_key);
    let mut out = Vec::with_capacity(stored.len());
    dec.push(stored, &mut out)?;
    dec.finish()?;
    Ok(out)
}

impl std::fmt::Debug for StreamDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDecoder")
            .field("header", &self.header())
            .field("chunks", &self.inner.body_lens.len())
            .field("plaintext_total", &self.inner.plaintext_total)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}
