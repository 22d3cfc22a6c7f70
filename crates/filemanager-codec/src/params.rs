//! Encoding parameters chosen by the library for new objects.

use crate::crypto::{CHUNK_OVERHEAD, TAG_LEN};
use crate::error::{Error, Result};
use crate::header::{HEADER_LEN, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
use crate::seek::{FOOTER_LEN, INDEX_ENTRY_LEN};

/// Default plaintext chunk size: 64 KiB.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// Default zstd level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// How new objects are encoded.
///
/// `compress: None, encrypt: false` is a **plain** object: the library stores
/// it byte-for-byte and never calls the codec ([`Params::is_plain`]); the
/// encoder rejects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// zstd level to compress chunks with, or `None` for no compression.
    pub compress: Option<i32>,
    /// Encrypt with AES-256-GCM under the key ring's primary key.
    pub encrypt: bool,
    /// Plaintext bytes per chunk, [`MIN_CHUNK_SIZE`]..=[`MAX_CHUNK_SIZE`].
    pub chunk_size: u32,
}

impl Default for Params {
    /// Encrypted, not compressed, 64 KiB chunks.
    fn default() -> Self {
        Self {
            compress: None,
            encrypt: true,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

impl Params {
    /// True when neither compression nor encryption is requested: store the
    /// bytes as they are, without the codec.
    pub fn is_plain(&self) -> bool {
        self.compress.is_none() && !self.encrypt
    }

    /// Checks that these parameters can encode an object.
    pub fn validate(&self) -> Result<()> {
        if self.is_plain() {
            return Err(Error::InvalidParams(
                "neither compression nor encryption: plain objects are not encoded",
            ));
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(Error::InvalidParams("chunk size out of range"));
        }
        if let Some(level) = self.compress
            && !zstd::compression_level_range().contains(&level)
        {
            return Err(Error::InvalidParams("zstd level out of range"));
        }
        Ok(())
    }

    /// Number of chunks the streaming encoders produce for `plaintext_size`
    /// bytes (an empty object is one empty chunk).
    pub fn chunk_count(&self, plaintext_size: u64) -> u64 {
        plaintext_size.div_ceil(u64::from(self.chunk_size)).max(1)
    }

    /// Exact stored size of an object of `plaintext_size` bytes, when it can
    /// be known in advance: encrypted but not compressed. `None` for
    /// compressed (or plain) parameters or on overflow.
    pub fn exact_stored_size(&self, plaintext_size: u64) -> Option<u64> {
        if self.compress.is_some() || !self.encrypt {
            return None;
        }
        let n = self.chunk_count(plaintext_size);
        let per_chunk = (CHUNK_OVERHEAD + INDEX_ENTRY_LEN) as u64;
        n.checked_mul(per_chunk)?
            .checked_add(plaintext_size)?
            .checked_add((HEADER_LEN + FOOTER_LEN) as u64)
    }
}

// Keeps the overhead arithmetic above honest if a constant changes.
const _: () = assert!(CHUNK_OVERHEAD == 5 + TAG_LEN);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(Params::default().validate().is_ok());
        let plain = Params {
            encrypt: false,
            ..Params::default()
        };
        assert!(plain.is_plain());
        assert!(matches!(plain.validate(), Err(Error::InvalidParams(_))));
        for cs in [0, 255, MAX_CHUNK_SIZE + 1] {
            let p = Params {
                chunk_size: cs,
                ..Params::default()
            };
            assert!(p.validate().is_err());
        }
        let p = Params {
            compress: Some(99),
            ..Params::default()
        };
        assert!(p.validate().is_err());
    }

    #[test]
    fn stored_size() {
        let p = Params::default();
        assert_eq!(p.exact_stored_size(0), Some(60 + 21 + 4 + 40));
        assert_eq!(p.exact_stored_size(65537), Some(60 + 65537 + 2 * 25 + 40));
        assert_eq!(
            Params {
                compress: Some(3),
                ..p
            }
            .exact_stored_size(5),
            None
        );
    }
}
