//! The L2 entry format, identical for every store.
//!
//! ```text
//! offset size  field
//! 0      4     magic "FMC1"
//! 4      1     kind: 'c' content, 'm' metadata
//! 5      8     written_at, Unix milliseconds, big-endian
//! 13     8     expires_at, Unix milliseconds, big-endian
//! 21     4     key length, big-endian
//! 25     8     value length, big-endian
//! 33     32    SHA-256 of bytes 0..33, then the key, then the value
//! 65     ...   key (UTF-8), then value
//! ```
//!
//! The checksum covers the header too, so a flipped byte anywhere, a
//! truncated file or trailing garbage is detected. The key is stored so an
//! entry found under the wrong name (hash collision, file copied around) is
//! refused rather than served to the wrong tenant. `written_at` lets a
//! cache fence off everything a local store holds in O(1).

use bytes::{BufMut, Bytes, BytesMut};

use crate::keys::Kind;

const MAGIC: &[u8; 4] = b"FMC1";
const FIXED: usize = 33;
const SUM: usize = 32;
/// Bytes before the key.
pub const HEADER_LEN: usize = FIXED + SUM;

/// Why an entry was refused. Every variant means: delete it, count an L2
/// error, treat as a miss.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Shorter than its header or its declared lengths, or longer.
    #[error("entry has the wrong length")]
    Length,
    /// Not an entry of this format/version.
    #[error("entry has a bad magic number")]
    Magic,
    /// Content does not match the checksum.
    #[error("entry checksum mismatch")]
    Checksum,
    /// A valid entry for another kind or key.
    #[error("entry belongs to another key")]
    WrongKey,
}

fn checksum(fixed: &[u8], key: &[u8], value: &[u8]) -> ring::digest::Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(fixed);
    ctx.update(key);
    ctx.update(value);
    ctx.finish()
}

/// Encodes an entry written at `written_at_ms`, valid until `expires_at_ms`.
pub fn encode(
    kind: Kind,
    key: &str,
    written_at_ms: u64,
    expires_at_ms: u64,
    value: &[u8],
) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + key.len() + value.len());
    out.put_slice(MAGIC);
    out.put_u8(kind.code());
    out.put_u64(written_at_ms);
    out.put_u64(expires_at_ms);
    // Keys are storage keys (well under 4 GiB); saturate rather than wrap.
    out.put_u32(u32::try_from(key.len()).unwrap_or(u32::MAX));
    out.put_u64(value.len() as u64);
    let sum = checksum(&out[..FIXED], key.as_bytes(), value);
    out.put_slice(sum.as_ref());
    out.put_slice(key.as_bytes());
    out.put_slice(value);
    out.freeze()
}

/// Decodes an entry expected to hold `kind`/`key`. `Ok(None)`: intact but
/// expired at `now_ms`, or written at or before `fenced_until_ms`. The
/// returned value shares `raw`'s buffer.
pub fn decode(
    kind: Kind,
    key: &str,
    raw: &Bytes,
    now_ms: u64,
    fenced_until_ms: u64,
) -> Result<Option<Bytes>, EntryError> {
    if raw.len() < HEADER_LEN {
        return Err(EntryError::Length);
    }
    if &raw[..4] != MAGIC {
        return Err(EntryError::Magic);
    }
    let be_u64 = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let written_at = be_u64(5);
    let expires_at = be_u64(13);
    let mut kl = [0u8; 4];
    kl.copy_from_slice(&raw[21..25]);
    let key_len = u32::from_be_bytes(kl) as usize;
    let value_len = usize::try_from(be_u64(25)).map_err(|_| EntryError::Length)?;
    let expected = HEADER_LEN
        .checked_add(key_len)
        .and_then(|n| n.checked_add(value_len))
        .ok_or(EntryError::Length)?;
    if raw.len() != expected {
        return Err(EntryError::Length);
    }
    let key_at = HEADER_LEN;
    let value_at = key_at + key_len;
    let stored_key = &raw[key_at..value_at];
    let sum = checksum(&raw[..FIXED], stored_key, &raw[value_at..]);
    if sum.as_ref() != &raw[FIXED..HEADER_LEN] {
        return Err(EntryError::Checksum);
    }
    if raw[4] != kind.code() || stored_key != key.as_bytes() {
        return Err(EntryError::WrongKey);
    }
    if now_ms >= expires_at || written_at <= fenced_until_ms {
        return Ok(None);
    }
    Ok(Some(raw.slice(value_at..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_expiry_and_fence() {
        let e = encode(Kind::Content, "d/app/x", 100, 1000, b"hello");
        let got = decode(Kind::Content, "d/app/x", &e, 999, 0).unwrap();
        assert_eq!(got.unwrap(), &b"hello"[..]);
        assert_eq!(decode(Kind::Content, "d/app/x", &e, 1000, 0).unwrap(), None);
        assert_eq!(
            decode(Kind::Content, "d/app/x", &e, 500, 100).unwrap(),
            None
        );
        assert!(
            decode(Kind::Content, "d/app/x", &e, 500, 99)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let e = encode(Kind::Metadata, "d/user/1/a", 1, 5000, b"{\"a\":1}");
        for i in 0..e.len() {
            let mut v = e.to_vec();
            v[i] ^= 0x01;
            let r = decode(Kind::Metadata, "d/user/1/a", &Bytes::from(v), 0, 0);
            assert!(r.is_err(), "flip at {i} not detected");
        }
    }

    #[test]
    fn truncation_extension_and_wrong_key() {
        let key = "d/user/1/a";
        let e = encode(Kind::Content, key, 1, 5000, b"abc");
        for n in 0..e.len() {
            assert!(decode(Kind::Content, key, &e.slice(..n), 0, 0).is_err());
        }
        let mut longer = e.to_vec();
        longer.push(0);
        let longer = Bytes::from(longer);
        assert_eq!(
            decode(Kind::Content, key, &longer, 0, 0),
            Err(EntryError::Length)
        );
        let other = decode(Kind::Content, "d/user/10/a", &e, 0, 0);
        assert_eq!(other, Err(EntryError::WrongKey));
        let kind = decode(Kind::Metadata, key, &e, 0, 0);
        assert_eq!(kind, Err(EntryError::WrongKey));
    }
}
