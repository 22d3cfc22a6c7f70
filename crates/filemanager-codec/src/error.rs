//! The crate's single error type.
//!
//! Every message is a `&'static str` or a key id: no variant can carry a key,
//! a passphrase, an environment value or plaintext, so errors are safe to log.

use crate::key::KeyId;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while encoding or decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object is damaged or was tampered with: failed authentication
    /// (including a wrong key or an object moved to another storage key),
    /// truncation, reordering, duplication, trailing data, a malformed header,
    /// index or footer. The text says which check failed, for logs only.
    #[error("integrity check failed: {0}")]
    Integrity(&'static str),

    /// The object was encrypted with a master key whose id is not in the key
    /// ring. The object may be intact: an old key is probably missing from the
    /// configuration.
    #[error("object is encrypted with unknown key id {key_id}")]
    UnknownKey {
        /// Key id recorded in the object's header.
        key_id: KeyId,
    },

    /// The object was written by a format version this build does not read.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),

    /// Encoding parameters are out of range (chunk size, zstd level, neither
    /// compression nor encryption requested).
    #[error("invalid codec parameters: {0}")]
    InvalidParams(&'static str),

    /// A master key value (e.g. `STORAGE_ENCRYPTION_KEY`) could not be used.
    /// The message never contains the value.
    #[error("invalid encryption key: {0}")]
    InvalidKey(&'static str),

    /// Encryption was requested, or the object is encrypted, but no key ring
    /// was given.
    #[error("encryption key required but none configured")]
    MissingKey,

    /// The API was used out of contract (wrong chunk length, call after the
    /// last chunk, plaintext size different from the announced one, a range
    /// outside the object, too few tail bytes). A caller bug, not bad data.
    #[error("invalid codec input: {0}")]
    InvalidInput(&'static str),

    /// The operating system's random number generator failed.
    #[error("system random number generator failed")]
    Random,
}
