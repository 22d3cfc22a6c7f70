//! Master keys, key ids and the key ring.
//!
//! A [`MasterKey`] is parsed from the `STORAGE_ENCRYPTION_KEY` value (hex,
//! base64 or an Argon2id-stretched passphrase, see `docs/format.md` §5). Its
//! [`KeyId`] is written in every encrypted object's header so that a reader
//! holding a [`KeyRing`] (primary key + old keys) can pick the right key after
//! a rotation.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use ring::hmac;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};

/// Length of a master key in bytes.
pub const MASTER_KEY_LEN: usize = 32;

/// Fixed Argon2id salt for passphrases (format.md §5.1). Fixed so that the same
/// passphrase yields the same key on every start without storing anything.
const PASSPHRASE_SALT: &[u8] = b"filemanager-codec passphrase salt v1";
/// HMAC message whose output identifies a key (format.md §5.2).
const KEY_ID_LABEL: &[u8] = b"filemanager key id";
/// Passphrases shorter than this are rejected: Argon2id cannot rescue them.
const MIN_PASSPHRASE_LEN: usize = 8;

/// Identifier of a master key: the first 8 bytes of
/// `HMAC-SHA256(key, "filemanager key id")`. Not secret; shown as 16 hex
/// digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Argon2id cost parameters for passphrase keys.
///
/// [`Default`] is the value fixed by the format (64 MiB, 3 passes, 1 lane).
/// Other values give other keys: use them only in tests, to keep them fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassphraseParams {
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism (lanes).
    pub p_cost: u32,
}

impl Default for PassphraseParams {
    fn default() -> Self {
        Self {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

/// A 32-byte master key. Zeroized on drop; `Debug` shows only its [`KeyId`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    bytes: [u8; MASTER_KEY_LEN],
}

impl MasterKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        Self { bytes }
    }

    /// Parses a `STORAGE_ENCRYPTION_KEY` value with the format's passphrase
    /// parameters: 64 hex digits or base64 of 32 bytes are used as is,
    /// anything else is a passphrase (format.md §5.1). Surrounding whitespace
    /// is ignored. Passphrase stretching takes a noticeable fraction of a
    /// second by design.
    pub fn parse(value: &str) -> Result<Self> {
        Self::parse_with(value, &PassphraseParams::default())
    }

    /// [`MasterKey::parse`] with explicit passphrase parameters (for tests).
    pub fn parse_with(value: &str, params: &PassphraseParams) -> Result<Self> {
        let value = value.trim();
        if value.is_empty() {
            return Err(Error::InvalidKey("empty value"));
        }
        if let Some(bytes) = decode_hex32(value) {
            return Ok(Self::from_bytes(*bytes));
        }
        if value.len() >= 32 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidKey(
                "looks like a hex key but is not exactly 64 hex digits",
            ));
        }
        match decode_base64(value) {
            Base64::Key(bytes) => return Ok(Self::from_bytes(*bytes)),
            Base64::PaddedWrongLength => {
                return Err(Error::InvalidKey(
                    "looks like base64 but does not decode to 32 bytes",
                ));
            }
            Base64::Invalid => {}
        }
        Self::from_passphrase(value, params)
    }

    /// Stretches a passphrase with Argon2id and the format's fixed salt.
    pub fn from_passphrase(passphrase: &str, params: &PassphraseParams) -> Result<Self> {
        if passphrase.len() < MIN_PASSPHRASE_LEN {
            return Err(Error::InvalidKey("passphrase shorter than 8 bytes"));
        }
        let argon_params = argon2::Params::new(
            params.m_cost_kib,
            params.t_cost,
            params.p_cost,
            Some(MASTER_KEY_LEN),
        )
        .map_err(|_| Error::InvalidKey("invalid passphrase parameters"))?;
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon_params,
        );
        let mut out = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        argon
            .hash_password_into(passphrase.as_bytes(), PASSPHRASE_SALT, out.as_mut())
            .map_err(|_| Error::InvalidKey("passphrase stretching failed"))?;
        Ok(Self::from_bytes(*out))
    }

    /// This key's id.
    pub fn key_id(&self) -> KeyId {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.bytes);
        let tag = hmac::sign(&key, KEY_ID_LABEL);
        let mut id = [0u8; 8];
        id.copy_from_slice(&tag.as_ref()[..8]);
        KeyId(id)
    }

    /// The raw key bytes, for key derivation inside the crate.
    pub(crate) fn as_bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.bytes
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

/// The primary key (used for every new object) plus old keys kept so that
/// objects written before a rotation still decode.
#[derive(Clone)]
pub struct KeyRing {
    // Key ids are computed once: decoders look keys up by id for every object.
    primary: (KeyId, MasterKey),
    old: Vec<(KeyId, MasterKey)>,
}

impl KeyRing {
    /// A ring with only a primary key.
    pub fn new(primary: MasterKey) -> Self {
        Self {
            primary: (primary.key_id(), primary),
            old: Vec::new(),
        }
    }

    /// Adds an old (decode-only) key. A key already in the ring is ignored.
    pub fn with_old(mut self, key: MasterKey) -> Self {
        self.add_old(key);
        self
    }

    /// Adds an old (decode-only) key. A key already in the ring is ignored.
    pub fn add_old(&mut self, key: MasterKey) {
        let id = key.key_id();
        if self.get(&id).is_none() {
            self.old.push((id, key));
        }
    }

    /// Builds a ring from `STORAGE_ENCRYPTION_KEY` and the optional
    /// comma-separated `STORAGE_ENCRYPTION_KEYS_OLD` (empty entries are
    /// skipped, so passphrases in the old list cannot contain commas).
    pub fn from_env_values(primary: &str, old: Option<&str>) -> Result<Self> {
        Self::from_env_values_with(primary, old, &PassphraseParams::default())
    }

    /// [`KeyRing::from_env_values`] with explicit passphrase parameters.
    pub fn from_env_values_with(
        primary: &str,
        old: Option<&str>,
        params: &PassphraseParams,
    ) -> Result<Self> {
        let mut ring = Self::new(MasterKey::parse_with(primary, params)?);
        for entry in old.unwrap_or("").split(',') {
            if !entry.trim().is_empty() {
                ring.add_old(MasterKey::parse_with(entry, params)?);
            }
        }
        Ok(ring)
    }

    /// The key used for new objects.
    pub fn primary(&self) -> &MasterKey {
        &self.primary.1
    }

    /// The primary key's id.
    pub fn primary_id(&self) -> KeyId {
        self.primary.0
    }

    /// The key with this id, primary or old.
    pub fn get(&self, id: &KeyId) -> Option<&MasterKey> {
        std::iter::once(&self.primary)
            .chain(self.old.iter())
            .find(|(kid, _)| kid == id)
            .map(|(_, key)| key)
    }

    /// Ids of all keys, primary first.
    pub fn key_ids(&self) -> Vec<KeyId> {
        std::iter::once(&self.primary)
            .chain(self.old.iter())
            .map(|(id, _)| *id)
            .collect()
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("primary", &self.primary.0)
            .field(
                "old",
                &self.old.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn decode_hex32(s: &str) -> Option<Zeroizing<[u8; MASTER_KEY_LEN]>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if s.len() != 2 * MASTER_KEY_LEN {
        return None;
    }
    let mut out = Zeroizing::new([0u8; MASTER_KEY_LEN]);
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

enum Base64 {
    Key(Zeroizing<[u8; MASTER_KEY_LEN]>),
    PaddedWrongLength,
    Invalid,
}

fn decode_base64(s: &str) -> Base64 {
    for engine in [&STANDARD, &URL_SAFE, &STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        // Reserve up front so the decoded secret is never reallocated (which
        // would leave an unzeroized copy behind).
        let mut buf = Zeroizing::new(Vec::with_capacity(s.len()));
        if engine.decode_vec(s, &mut buf).is_ok() {
            if buf.len() == MASTER_KEY_LEN {
                let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
                key.copy_from_slice(&buf);
                return Base64::Key(key);
            }
            if s.ends_with('=') {
                return Base64::PaddedWrongLength;
            }
        }
    }
    Base64::Invalid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> PassphraseParams {
        PassphraseParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    #[test]
    fn hex_and_base64_are_used_as_is() {
        let bytes: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
        let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        let b64 = STANDARD.encode(bytes);
        let b64url = URL_SAFE_NO_PAD.encode(bytes);
        for v in [hex.clone(), format!(" {hex}\n"), b64, b64url] {
            let k = MasterKey::parse_with(&v, &fast()).unwrap();
            assert_eq!(k.as_bytes(), &bytes);
        }
    }

    #[test]
    fn passphrase_is_deterministic_and_param_dependent() {
        let a = MasterKey::parse_with("correct horse battery", &fast()).unwrap();
        let b = MasterKey::parse_with("correct horse battery", &fast()).unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes());
        let mut other = fast();
        other.t_cost = 2;
        let c = MasterKey::parse_with("correct horse battery", &other).unwrap();
        assert_ne!(a.as_bytes(), c.as_bytes());
    }

    #[test]
    fn suspicious_values_are_rejected_without_echo() {
        let hex62 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd";
        let b64_34 = STANDARD.encode([7u8; 34]);
        assert!(b64_34.ends_with('='));
        for v in ["", "   ", "xq7z", hex62, &b64_34] {
            let err = MasterKey::parse_with(v, &fast()).unwrap_err();
            assert!(matches!(err, Error::InvalidKey(_)), "{v:?}: {err:?}");
            if !v.trim().is_empty() {
                assert!(!err.to_string().contains(v));
            }
        }
    }

    #[test]
    fn debug_shows_no_key_material() {
        let k = MasterKey::from_bytes([0xAB; 32]);
        let ring = KeyRing::new(k.clone()).with_old(MasterKey::from_bytes([1; 32]));
        for s in [format!("{k:?}"), format!("{ring:?}")] {
            assert!(!s.to_lowercase().contains("abab"), "{s}");
            assert!(s.contains(&k.key_id().to_string()));
        }
    }

    #[test]
    fn ring_lookup_and_dedup() {
        let a = MasterKey::from_bytes([1; 32]);
        let b = MasterKey::from_bytes([2; 32]);
        let hex_a: String = [1u8; 32].iter().map(|b| format!("{b:02x}")).collect();
        let hex_b: String = [2u8; 32].iter().map(|b| format!("{b:02x}")).collect();
        let ring = KeyRing::from_env_values_with(
            &hex_b,
            Some(&format!("{hex_a}, ,{hex_b},{hex_a}")),
            &fast(),
        )
        .unwrap();
        assert_eq!(ring.key_ids(), vec![b.key_id(), a.key_id()]);
        assert_eq!(ring.get(&a.key_id()).unwrap().as_bytes(), a.as_bytes());
        assert!(ring.get(&KeyId([0; 8])).is_none());
    }
}
