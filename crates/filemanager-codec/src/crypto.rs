//! Per-object key derivation and chunk/trailer tags (format.md §4, §5.3).
//!
//! [`ObjectCrypto`] hides the two sealing modes behind one interface so that
//! framing code is identical for encrypted and compress-only objects:
//! AES-256-GCM under the per-object key, or a keyless truncated SHA-256
//! checksum with the same nonce and associated data.

use ring::{aead, digest, hkdf};

use crate::error::{Error, Result};
use crate::header::{HEADER_LEN, Header};
use crate::key::{KeyRing, MasterKey};

/// Length of every tag (GCM tag or truncated SHA-256).
pub(crate) const TAG_LEN: usize = 16;
/// Length of a chunk prefix: flags byte + u32 body length.
pub(crate) const PREFIX_LEN: usize = 5;
/// Stored bytes per chunk on top of its body.
pub(crate) const CHUNK_OVERHEAD: usize = PREFIX_LEN + TAG_LEN;

/// Chunk prefix flag: the body is a zstd frame.
pub(crate) const CHUNK_COMPRESSED: u8 = 0x01;
/// Chunk prefix flag: this is the final chunk.
pub(crate) const CHUNK_LAST: u8 = 0x02;

/// Nonce kinds (last byte of the nonce).
pub(crate) const KIND_CHUNK: u8 = 0;
pub(crate) const KIND_LAST: u8 = 1;
pub(crate) const KIND_TRAILER: u8 = 2;

const HASH_TAG_LABEL: &[u8] = b"FMC1-SHA256-TAG";

/// `00 00 00 ‖ u64(counter) ‖ kind`.
pub(crate) fn nonce(counter: u64, kind: u8) -> [u8; aead::NONCE_LEN] {
    let mut n = [0u8; aead::NONCE_LEN];
    n[3..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = kind;
    n
}

/// Associated data of a chunk: `header ‖ prefix`.
pub(crate) fn chunk_aad(
    header: &[u8; HEADER_LEN],
    prefix: &[u8; PREFIX_LEN],
) -> [u8; HEADER_LEN + PREFIX_LEN] {
    let mut aad = [0u8; HEADER_LEN + PREFIX_LEN];
    aad[..HEADER_LEN].copy_from_slice(header);
    aad[HEADER_LEN..].copy_from_slice(prefix);
    aad
}

/// Derives the per-object AES-256-GCM key:
/// `HKDF-SHA256(master, salt, info = version ‖ storage_key)`.
fn derive_key(master: &MasterKey, header: &Header, storage_key: &str) -> aead::LessSafeKey {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &header.salt).extract(master.as_bytes());
    let info = [&[header.version][..], storage_key.as_bytes()];
    let okm = prk
        .expand(&info, &aead::AES_256_GCM)
        .expect("32-byte output is within HKDF-SHA256 limits");
    aead::LessSafeKey::new(aead::UnboundKey::from(okm))
}

/// Sealing state for one object.
#[derive(Clone)]
pub(crate) enum ObjectCrypto {
    /// Encrypted object: AES-256-GCM under the per-object key.
    Aead(Box<aead::LessSafeKey>),
    /// Compress-only object: keyless checksum.
    Hash,
}

impl ObjectCrypto {
    /// Picks the mode for `header`, looking the master key up in `ring` by
    /// the header's key id.
    pub(crate) fn for_header(
        header: &Header,
        ring: Option<&KeyRing>,
        storage_key: &str,
    ) -> Result<Self> {
        let Some(key_id) = header.key_id else {
            return Ok(Self::Hash);
        };
        let ring = ring.ok_or(Error::MissingKey)?;
        let master = ring.get(&key_id).ok_or(Error::UnknownKey { key_id })?;
        Ok(Self::Aead(Box::new(derive_key(
            master,
            header,
            storage_key,
        ))))
    }

    fn hash_tag(nonce: &[u8], aad: &[u8], body: &[u8]) -> [u8; TAG_LEN] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(HASH_TAG_LABEL);
        ctx.update(nonce);
        ctx.update(aad);
        ctx.update(body);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&ctx.finish().as_ref()[..TAG_LEN]);
        tag
    }

    /// Seals `body` in place (encrypts it in AEAD mode) and returns its tag.
    pub(crate) fn seal(
        &self,
        nonce: [u8; aead::NONCE_LEN],
        aad: &[u8],
        body: &mut [u8],
    ) -> Result<[u8; TAG_LEN]> {
        match self {
            Self::Aead(key) => {
                let tag = key
                    .seal_in_place_separate_tag(
                        aead::Nonce::assume_unique_for_key(nonce),
                        aead::Aad::from(aad),
                        body,
                    )
                    .map_err(|_| Error::InvalidInput("chunk too large to seal"))?;
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(tag.as_ref());
                Ok(out)
            }
            Self::Hash => Ok(Self::hash_tag(&nonce, aad, body)),
        }
    }

    /// Verifies `body ‖ tag` (the last [`TAG_LEN`] bytes of `body_and_tag`),
    /// decrypting the body in place in AEAD mode. Returns the body length.
    /// On failure the buffer content is unspecified and must be discarded.
    pub(crate) fn open(
        &self,
        nonce: [u8; aead::NONCE_LEN],
        aad: &[u8],
        body_and_tag: &mut [u8],
        what: &'static str,
    ) -> Result<usize> {
        let body_len = body_and_tag
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(Error::Integrity(what))?;
        match self {
            Self::Aead(key) => key
                .open_in_place(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(aad),
                    body_and_tag,
                )
                .map(|plain| plain.len())
                .map_err(|_| Error::Integrity(what)),
            Self::Hash => {
                let (body, tag) = body_and_tag.split_at(body_len);
                // Not constant-time on purpose: there is no secret to leak.
                if Self::hash_tag(&nonce, aad, body) == tag {
                    Ok(body_len)
                } else {
                    Err(Error::Integrity(what))
                }
            }
        }
    }
}
