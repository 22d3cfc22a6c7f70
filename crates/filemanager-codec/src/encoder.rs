//! Encoding: [`Encoder`] (caller-cut chunks), [`StreamEncoder`] (arbitrary
//! input slices) and [`encode_all`].
//!
//! Output order is always: header, chunks, trailer (index + footer). The
//! encoders never hold more than one chunk of plaintext.

use ring::rand::{SecureRandom, SystemRandom};

use crate::crypto::{
    CHUNK_COMPRESSED, CHUNK_LAST, CHUNK_OVERHEAD, KIND_CHUNK, KIND_LAST, ObjectCrypto, PREFIX_LEN,
    chunk_aad, nonce,
};
use crate::decoder::Summary;
use crate::error::{Error, Result};
use crate::header::{FORMAT_VERSION, HEADER_LEN, Header, SALT_LEN};
use crate::key::KeyRing;
use crate::params::Params;
use crate::seek::write_trailer;

/// Encodes one object from chunks cut by the caller.
///
/// Write [`Encoder::header_bytes`] first, then the output of
/// [`Encoder::encode_chunk`] for every chunk in order, then the bytes returned
/// by [`Encoder::finish`].
pub struct Encoder {
    header: Header,
    header_bytes: [u8; HEADER_LEN],
    crypto: ObjectCrypto,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    scratch: Vec<u8>,
    body_lens: Vec<u32>,
    plaintext_total: u64,
    stored_total: u64,
    done: bool,
}

impl Encoder {
    /// Starts an object stored under `storage_key`, with a fresh random salt.
    ///
    /// `ring` may be `None` only when `params.encrypt` is false
    /// ([`Error::MissingKey`] otherwise); the primary key is used.
    /// `plaintext_size`, when given, is recorded in the header and enforced.
    pub fn new(
        params: Params,
        ring: Option<&KeyRing>,
        storage_key: &str,
        plaintext_size: Option<u64>,
    ) -> Result<Self> {
        let mut salt = [0u8; SALT_LEN];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| Error::Random)?;
        Self::new_with_salt(params, ring, storage_key, plaintext_size, salt)
    }

    /// [`Encoder::new`] with a caller-chosen salt, for test vectors.
    ///
    /// **Never reuse a salt** for two encrypted objects with the same key and
    /// storage key: they would share a key and nonces, breaking AES-GCM.
    pub fn new_with_salt(
        params: Params,
        ring: Option<&KeyRing>,
        storage_key: &str,
        plaintext_size: Option<u64>,
        salt: [u8; SALT_LEN],
    ) -> Result<Self> {
        params.validate()?;
        let key_id = if params.encrypt {
            Some(ring.ok_or(Error::MissingKey)?.primary_id())
        } else {
            None
        };
        let header = Header {
            version: FORMAT_VERSION,
            compressed: params.compress.is_some(),
            key_id,
            salt,
            chunk_size: params.chunk_size,
            plaintext_size,
        };
        let crypto = ObjectCrypto::for_header(&header, ring, storage_key)?;
        let compressor = params
            .compress
            .map(zstd::bulk::Compressor::new)
            .transpose()
            .map_err(|_| Error::InvalidParams("zstd rejected the compression level"))?;
        Ok(Self {
            header_bytes: header.to_bytes(),
            header,
            crypto,
            compressor,
            scratch: Vec::new(),
            body_lens: Vec::new(),
            plaintext_total: 0,
            stored_total: HEADER_LEN as u64,
            done: false,
        })
    }

    /// The header this encoder writes.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The header bytes: the first bytes of the object.
    pub fn header_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.header_bytes
    }

    /// Plaintext bytes per chunk.
    pub fn chunk_size(&self) -> usize {
        self.header.chunk_size as usize
    }

    /// Encodes the next chunk and returns its stored bytes. Every chunk but
    /// the last must be exactly [`Encoder::chunk_size`] bytes; the last (`last
    /// = true`) may be shorter or empty. An empty object is one empty last
    /// chunk.
    pub fn encode_chunk(&mut self, plaintext: &[u8], last: bool) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plaintext.len() + CHUNK_OVERHEAD);
        self.encode_chunk_into(plaintext, last, &mut out)?;
        Ok(out)
    }

    /// [`Encoder::encode_chunk`], appending to `out`. On error nothing is
    /// appended and the encoder state is unchanged.
    pub fn encode_chunk_into(
        &mut self,
        plaintext: &[u8],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        if self.done {
            return Err(Error::InvalidInput("chunk after the last chunk"));
        }
        let cs = self.chunk_size();
        if plaintext.len() > cs || (!last && plaintext.len() != cs) {
            return Err(Error::InvalidInput(
                "every chunk but the last must be exactly chunk_size bytes",
            ));
        }
        let total = self.plaintext_total + plaintext.len() as u64;
        if let Some(announced) = self.header.plaintext_size
            && (total > announced || (last && total != announced))
        {
            return Err(Error::InvalidInput(
                "plaintext size differs from the announced size",
            ));
        }

        // Keep the zstd frame only if it is strictly smaller than the input;
        // a buffer of that capacity makes zstd fail fast otherwise.
        let mut compressed = false;
        if let Some(c) = &mut self.compressor
            && !plaintext.is_empty()
        {
            self.scratch.clear();
            self.scratch.reserve_exact(plaintext.len());
            compressed = matches!(
                c.compress_to_buffer(plaintext, &mut self.scratch),
                Ok(n) if n < plaintext.len()
            );
        }
        let body: &[u8] = if compressed { &self.scratch } else { plaintext };

        let mut prefix = [0u8; PREFIX_LEN];
        prefix[0] =
            if compressed { CHUNK_COMPRESSED } else { 0 } | if last { CHUNK_LAST } else { 0 };
        let body_len = u32::try_from(body.len()).expect("bounded by chunk size");
        prefix[1..].copy_from_slice(&body_len.to_be_bytes());
        let counter = self.body_lens.len() as u64;
        let kind = if last { KIND_LAST } else { KIND_CHUNK };
        let aad = chunk_aad(&self.header_bytes, &prefix);

        let start = out.len();
        out.reserve(body.len() + CHUNK_OVERHEAD);
        out.extend_from_slice(&prefix);
        out.extend_from_slice(body);
        match self
            .crypto
            .seal(nonce(counter, kind), &aad, &mut out[start + PREFIX_LEN..])
        {
            Ok(tag) => out.extend_from_slice(&tag),
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
        self.body_lens.push(body_len);
        self.plaintext_total = total;
        self.stored_total += (body.len() + CHUNK_OVERHEAD) as u64;
        self.done = last;
        Ok(())
    }

    /// Ends the object and returns the trailer (index + footer), the last
    /// bytes of the object. Fails if the last chunk was not encoded.
    pub fn finish(self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.finish_into(&mut out)?;
        Ok(out)
    }

    /// [`Encoder::finish`], appending the trailer to `out`.
    pub fn finish_into(self, out: &mut Vec<u8>) -> Result<Summary> {
        if !self.done {
            return Err(Error::InvalidInput("finish before the last chunk"));
        }
        let trailer_len = write_trailer(
            &self.crypto,
            &self.header_bytes,
            &self.body_lens,
            self.plaintext_total,
            out,
        )?;
        Ok(Summary {
            plaintext_size: self.plaintext_total,
            chunk_count: self.body_lens.len() as u64,
            stored_size: self.stored_total + trailer_len as u64,
            header: self.header,
        })
    }
}

/// Encodes one object from input slices of any size, cutting chunks itself.
///
/// All output (header included) is appended to the caller's buffer by
/// [`StreamEncoder::push`] and [`StreamEncoder::finish`]; concatenated, it is
/// the stored object. Holds at most one chunk of plaintext.
pub struct StreamEncoder {
    enc: Encoder,
    pending: Vec<u8>,
    started: bool,
}

impl StreamEncoder {
    /// Same arguments as [`Encoder::new`].
    pub fn new(
        params: Params,
        ring: Option<&KeyRing>,
        storage_key: &str,
        plaintext_size: Option<u64>,
    ) -> Result<Self> {
        Encoder::new(params, ring, storage_key, plaintext_size).map(Self::wrap)
    }

    /// [`Encoder::new_with_salt`] for the streaming encoder (test vectors;
    /// the same warning applies: never reuse a salt).
    pub fn new_with_salt(
        params: Params,
        ring: Option<&KeyRing>,
        storage_key: &str,
        plaintext_size: Option<u64>,
        salt: [u8; SALT_LEN],
    ) -> Result<Self> {
        Encoder::new_with_salt(params, ring, storage_key, plaintext_size, salt).map(Self::wrap)
    }

    fn wrap(enc: Encoder) -> Self {
        Self {
            pending: Vec::with_capacity(enc.chunk_size()),
            enc,
            started: false,
        }
    }

    /// The header this encoder writes.
    pub fn header(&self) -> &Header {
        self.enc.header()
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            out.extend_from_slice(&self.enc.header_bytes);
            self.started = true;
        }
    }

    /// Encodes `data`, appending any finished output to `out` (the header
    /// on the first call).
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.start(out);
        let cs = self.enc.chunk_size();
        while !data.is_empty() {
            // A full pending chunk is only written once more data proves it
            // is not the last one.
            if self.pending.len() == cs {
                self.enc.encode_chunk_into(&self.pending, false, out)?;
                self.pending.clear();
            }
            if self.pending.is_empty() && data.len() > cs {
                self.enc.encode_chunk_into(&data[..cs], false, out)?;
                data = &data[cs..];
                continue;
            }
            let take = (cs - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    /// Writes the last chunk and the trailer to `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<Summary> {
        self.start(out);
        self.enc.encode_chunk_into(&self.pending, true, out)?;
        self.enc.finish_into(out)
    }
}

/// Encodes a whole plaintext in one call (size recorded in the header).
pub fn encode_all(
    params: Params,
    ring: Option<&KeyRing>,
    storage_key: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let enc = StreamEncoder::new(params, ring, storage_key, Some(plaintext.len() as u64))?;
    encode_stream(enc, plaintext)
}

pub(crate) fn encode_stream(mut enc: StreamEncoder, plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(plaintext.len() + plaintext.len() / 1000 + 256);
    enc.push(plaintext, &mut out)?;
    enc.finish(&mut out)?;
    Ok(out)
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("header", &self.header)
            .field("chunks", &self.body_lens.len())
            .field("plaintext_total", &self.plaintext_total)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for StreamEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamEncoder")
            .field("encoder", &self.enc)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}
