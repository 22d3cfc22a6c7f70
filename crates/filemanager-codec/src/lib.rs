//! The FileManager at-rest format: chunked, optionally zstd-compressed,
//! optionally AES-256-GCM-encrypted objects that can be decoded as a stream
//! or by plaintext byte range. The byte layout is specified in
//! `docs/format.md`; this crate is a pure, synchronous transformation of
//! bytes (no I/O) meant to be driven from async streams.
//!
//! * Keys: [`MasterKey`], [`KeyRing`], [`KeyId`] ([`key`]).
//! * Encoding: [`Params`] ([`Params::is_plain`] objects are *not* encoded),
//!   [`Encoder`], [`StreamEncoder`], [`encode_all`].
//! * Whole-stream decoding: [`StreamDecoder`], [`decode_all`]. Plaintext is
//!   released chunk by chunk as it is verified, but a stream is valid only if
//!   [`StreamDecoder::finish`] succeeds. [`StreamDecoder::push_in_place`]
//!   decrypts chunks where they lie in the caller's buffer and reports each
//!   piece of plaintext as a [`Piece`].
//! * Ranges: [`Header::parse`], [`Footer::parse`], [`ChunkDecoder`],
//!   [`Index`], [`RangePlan`], [`RangeDecoder`].
//! * Rotation: [`header_key_id`], [`needs_rekey`].
//!
//! Key material never appears in `Debug` output or errors. Expanded keys
//! inside `ring` are not zeroized on drop (ring offers no hook for that).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod chunk;
mod crypto;
mod decoder;
mod encoder;
mod error;
pub mod fuzzing;
mod header;
pub mod key;
mod params;
mod seek;

pub use decoder::{Piece, StreamDecoder, Summary, decode_all};
pub use encoder::{Encoder, StreamEncoder, encode_all};
pub use error::{Error, Result};
pub use header::{
    FORMAT_VERSION, HEADER_LEN, Header, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, SALT_LEN, header_key_id,
    needs_rekey,
};
pub use key::{KeyId, KeyRing, MasterKey, PassphraseParams};
pub use params::{DEFAULT_CHUNK_SIZE, DEFAULT_ZSTD_LEVEL, Params};
pub use seek::{ChunkDecoder, FOOTER_LEN, Footer, INDEX_ENTRY_LEN, Index, RangeDecoder, RangePlan};

/// Stored bytes each chunk adds on top of its body: a 5-byte prefix and a
/// 16-byte tag.
pub const CHUNK_OVERHEAD: usize = crypto::CHUNK_OVERHEAD;
