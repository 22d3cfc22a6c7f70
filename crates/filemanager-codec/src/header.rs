//! The fixed-size object header (format.md §2): parsing, serialization, and
//! the key-rotation helpers that only need the header.

use crate::error::{Error, Result};
use crate::key::{KeyId, KeyRing};

/// Format version written by this crate (and the only one it reads).
pub const FORMAT_VERSION: u8 = 1;
/// Length of a version-1 header. Fetch this many bytes from the start of an
/// object to parse its header.
pub const HEADER_LEN: usize = 60;
/// Length of the per-object salt.
pub const SALT_LEN: usize = 32;
/// Smallest accepted chunk size.
pub const MIN_CHUNK_SIZE: u32 = 256;
/// Largest accepted chunk size (16 MiB). Bounds the memory a reader needs per
/// chunk, including when decompressing.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;

pub(crate) const HEADER_MAGIC: [u8; 4] = [0x89, b'F', b'M', b'C'];

const FLAG_COMPRESSED: u8 = 0x01;
const FLAG_ENCRYPTED: u8 = 0x02;
const FLAG_SIZE_KNOWN: u8 = 0x04;
const FLAGS_KNOWN: u8 = FLAG_COMPRESSED | FLAG_ENCRYPTED | FLAG_SIZE_KNOWN;

/// The parsed header of an encoded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format version (currently always [`FORMAT_VERSION`]).
    pub version: u8,
    /// Chunks may be zstd-compressed (each chunk records whether it is).
    pub compressed: bool,
    /// Id of the master key the object is encrypted under; `None` when the
    /// object is not encrypted.
    pub key_id: Option<KeyId>,
    /// Random per-object salt for key derivation.
    pub salt: [u8; SALT_LEN],
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// Total plaintext size if the writer announced it up front.
    pub plaintext_size: Option<u64>,
}

impl Header {
    /// Whether the object is encrypted.
    pub fn encrypted(&self) -> bool {
        self.key_id.is_some()
    }

    /// Parses a header from the start of `bytes` (which may hold more than
    /// the header). Returns the header and its length in bytes.
    ///
    /// Errors: [`Error::UnsupportedVersion`] for another format version,
    /// [`Error::Integrity`] for anything malformed (including too few bytes).
    /// The header's authenticity is only established when the first chunk or
    /// the trailer verifies.
    pub fn parse(bytes: &[u8]) -> Result<(Header, usize)> {
        if bytes.len() < 5 || bytes[..4] != HEADER_MAGIC {
            return Err(Error::Integrity("bad header magic or truncated header"));
        }
        // The version is checked before anything else: later versions may
        // lay out the rest differently.
        if bytes[4] != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion(bytes[4]));
        }
        let h: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::Integrity("truncated header"))?;
        let flags = h[5];
        if flags & !FLAGS_KNOWN != 0 || h[6..8] != [0, 0] {
            return Err(Error::Integrity("reserved header bits set"));
        }
        let compressed = flags & FLAG_COMPRESSED != 0;
        let encrypted = flags & FLAG_ENCRYPTED != 0;
        if !compressed && !encrypted {
            return Err(Error::Integrity(
                "header says neither compressed nor encrypted",
            ));
        }
        let key_id = KeyId(h[8..16].try_into().expect("8 bytes"));
        let key_id = if encrypted {
            Some(key_id)
        } else if key_id.0 == [0; 8] {
            None
        } else {
            return Err(Error::Integrity("key id set on unencrypted object"));
        };
        let salt: [u8; SALT_LEN] = h[16..48].try_into().expect("32 bytes");
        let chunk_size = u32::from_be_bytes(h[48..52].try_into().expect("4 bytes"));
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(Error::Integrity("chunk size out of range"));
        }
        let size = u64::from_be_bytes(h[52..60].try_into().expect("8 bytes"));
        let plaintext_size = if flags & FLAG_SIZE_KNOWN != 0 {
            Some(size)
        } else if size == 0 {
            None
        } else {
            return Err(Error::Integrity("plaintext size set but not flagged"));
        };
        let header = Header {
            version: FORMAT_VERSION,
            compressed,
            key_id,
            salt,
            chunk_size,
            plaintext_size,
        };
        Ok((header, HEADER_LEN))
    }

    /// Serializes the header (the exact inverse of [`Header::parse`]).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&HEADER_MAGIC);
        h[4] = self.version;
        let mut flags = 0;
        if self.compressed {
            flags |= FLAG_COMPRESSED;
        }
        if self.key_id.is_some() {
            flags |= FLAG_ENCRYPTED;
        }
        if self.plaintext_size.is_some() {
            flags |= FLAG_SIZE_KNOWN;
        }
        h[5] = flags;
        h[8..16].copy_from_slice(&self.key_id.map_or([0; 8], |id| id.0));
        h[16..48].copy_from_slice(&self.salt);
        h[48..52].copy_from_slice(&self.chunk_size.to_be_bytes());
        h[52..60].copy_from_slice(&self.plaintext_size.unwrap_or(0).to_be_bytes());
        h
    }
}

/// The key id an object was encrypted under, from its first bytes (at least
/// [`HEADER_LEN`]). `Ok(None)` for an unencrypted (compress-only) object.
pub fn header_key_id(bytes: &[u8]) -> Result<Option<KeyId>> {
    Ok(Header::parse(bytes)?.0.key_id)
}

/// Whether an object should be re-encrypted under the ring's primary key:
/// true iff it is encrypted under another key (old or unknown).
pub fn needs_rekey(header: &Header, ring: &KeyRing) -> bool {
    header.key_id.is_some_and(|id| id != ring.primary_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            version: FORMAT_VERSION,
            compressed: true,
            key_id: Some(KeyId([9; 8])),
            salt: [3; SALT_LEN],
            chunk_size: 65536,
            plaintext_size: Some(12345),
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let bytes = h.to_bytes();
        assert_eq!(Header::parse(&bytes).unwrap(), (h, HEADER_LEN));
        let h2 = Header {
            key_id: None,
            plaintext_size: None,
            ..sample()
        };
        assert_eq!(Header::parse(&h2.to_bytes()).unwrap().0, h2);
    }

    #[test]
    fn rejects() {
        let good = sample().to_bytes();
        let mut v = good;
        v[4] = 2;
        assert_eq!(Header::parse(&v), Err(Error::UnsupportedVersion(2)));
        for (i, x) in [(0, 0x88), (5, 0x08), (7, 1), (48, 0xFF)] {
            let mut v = good;
            v[i] ^= x;
            assert!(
                matches!(Header::parse(&v), Err(Error::Integrity(_))),
                "byte {i}"
            );
        }
        assert!(matches!(
            Header::parse(&good[..59]),
            Err(Error::Integrity(_))
        ));
        let plain = Header {
            compressed: false,
            key_id: None,
            ..sample()
        };
        assert!(Header::parse(&plain.to_bytes()).is_err());
    }

    #[test]
    fn rekey() {
        let a = crate::MasterKey::from_bytes([1; 32]);
        let b = crate::MasterKey::from_bytes([2; 32]);
        let ring = KeyRing::new(b.clone()).with_old(a.clone());
        let mut h = sample();
        h.key_id = Some(a.key_id());
        assert!(needs_rekey(&h, &ring));
        assert_eq!(header_key_id(&h.to_bytes()).unwrap(), Some(a.key_id()));
        h.key_id = Some(b.key_id());
        assert!(!needs_rekey(&h, &ring));
        h.key_id = None;
        assert!(!needs_rekey(&h, &ring));
    }
}
