//! The one error type callers of the library see.
//!
//! Backend errors (object_store, I/O, the codec) are private details: they are mapped here to
//! variants that tell a caller what happened and whether trying again can help. Messages carry
//! the storage key at most — never credentials, local file-system paths or backend URLs — so
//! they are safe to show to an end user or to put in an HTTP error body.

use std::fmt;

const CHANGED: &str = "the file changed while it was being read";

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a FileManager operation.
///
/// The seed's four errors are here under the same names (`FileNotFound`, `FileUploadError`,
/// `FileDownloadError`, `StorageError`); the others make the remaining failure modes explicit so
/// that a caller (and the HTTP layer) can answer each one precisely.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A domain, user id, filename, list prefix or cursor broke the location rules.
    #[error("invalid {field}: {reason}")]
    InvalidLocation {
        /// Which part of the location was wrong (`domain`, `user_id`, `filename`, …).
        field: &'static str,
        /// What is wrong with it, in words.
        reason: String,
    },

    /// Some other argument was unacceptable (metadata, content type, limits, options).
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which argument was wrong.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// No file is stored at this key.
    #[error("file not found: {key}")]
    FileNotFound {
        /// The storage key that was looked up.
        key: String,
    },

    /// The upload's body could not be read to its end (a client that hung up, broken chunked
    /// framing, a failing reader given as the body). The caller's side failed, not storage;
    /// nothing was stored.
    #[error("reading the upload body failed: {reason}")]
    BodyFailed {
        /// What failed, as the body's reader said.
        reason: String,
    },

    /// The upload did not complete; nothing was stored under the key.
    #[error("upload of {key} failed: {reason}")]
    FileUploadError {
        /// The storage key being written.
        key: String,
        /// Why it failed.
        reason: String,
    },

    /// The download failed after the file was found.
    #[error("download of {key} failed: {reason}")]
    FileDownloadError {
        /// The storage key being read.
        key: String,
        /// Why it failed.
        reason: String,
    },

    /// The storage backend refused or failed an operation.
    #[error("storage error{}: {reason}", fmt_key(key))]
    StorageError {
        /// The storage key involved, if the operation had one.
        key: Option<String>,
        /// What the backend said, without paths or credentials.
        reason: String,
        /// Whether the same request may succeed if tried again.
        retryable: bool,
    },

    /// The storage backend could not be reached (connection refused, timeout, 5xx after
    /// retries). Trying again later may succeed.
    #[error("storage unavailable: {reason}")]
    StorageUnavailable {
        /// What failed, without paths or credentials.
        reason: String,
    },

    /// Stored bytes failed authentication or were inconsistent: tampered, truncated, moved to
    /// another key, or written under a key this instance does not have.
    #[error("integrity check failed for {key}: {reason}")]
    Integrity {
        /// The storage key whose content failed the check.
        key: String,
        /// What check failed.
        reason: String,
    },

    /// An upload exceeded the configured or signed size limit; nothing was stored.
    #[error("payload too large: the limit is {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: u64,
    },

    /// A byte range lies outside the file.
    #[error("range not satisfiable: the file has {size} bytes")]
    RangeNotSatisfiable {
        /// The file's length in bytes.
        size: u64,
    },

    /// Configuration is missing or wrong. Names the variable (or builder setting), never its
    /// value, since values may be secrets.
    #[error("configuration error in {variable}: {reason}")]
    Config {
        /// The environment variable or setting at fault.
        variable: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A presigned request whose signature does not match, has expired, or is used for
    /// another method, location or content type than it was signed for.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Why, without any signature or secret.
        reason: String,
    },

    /// The operation is not available with this configuration or backend.
    #[error("unsupported: {what}")]
    Unsupported {
        /// What was asked for.
        what: String,
    },
}

fn fmt_key(key: &Option<String>) -> impl fmt::Display + '_ {
    struct K<'a>(&'a Option<String>);
    impl fmt::Display for K<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                Some(k) => write!(f, " at {k}"),
                None => Ok(()),
            }
        }
    }
    K(key)
}

impl Error {
    /// Whether repeating the same call later can succeed: true for an unreachable or
    /// overloaded backend, false for bad input, missing files and integrity failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::StorageUnavailable { .. } => true,
            Error::StorageError { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// A stable, machine-readable code for this error, the same as the HTTP contract's
    /// `error.code` values.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidLocation { .. }
            | Error::InvalidInput { .. }
            | Error::BodyFailed { .. } => "invalid_request",
            Error::FileNotFound { .. } => "file_not_found",
            Error::FileUploadError { .. } => "upload_failed",
            Error::FileDownloadError { .. } => "download_failed",
            Error::StorageError { .. } | Error::Config { .. } | Error::Unsupported { .. } => {
                "storage_error"
            }
            Error::StorageUnavailable { .. } => "storage_unavailable",
            Error::Integrity { .. } => "integrity_error",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            Error::Forbidden { .. } => "forbidden",
        }
    }

    /// The file changed between two requests of one read (a write got in between).
    pub(crate) fn changed(key: &str) -> Self {
        Error::StorageError {
            key: Some(key.to_owned()),
            reason: CHANGED.to_owned(),
            retryable: true,
        }
    }

    /// Whether this is [`Error::changed`]: the read can simply start over.
    pub(crate) fn is_changed(&self) -> bool {
        matches!(self, Error::StorageError { reason, .. } if reason == CHANGED)
    }

    pub(crate) fn invalid_location(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidLocation {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_input(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn config(variable: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            variable: variable.into(),
            reason: reason.into(),
        }
    }

    /// Re-labels a storage failure that happened while writing `key` as an upload failure,
    /// keeping errors that already say something more precise.
    pub(crate) fn during_upload(self, key: &str) -> Self {
        match self {
            Error::StorageError { reason, .. } => Error::FileUploadError {
                key: key.to_owned(),
                reason,
            },
            other => other,
        }
    }

    /// Re-labels a storage failure that happened while reading `key` as a download failure.
    pub(crate) fn during_download(self, key: &str) -> Self {
        match self {
            // Kept as is: the reader starts over on it (see `is_changed`).
            changed if changed.is_changed() => changed,
            Error::StorageError { reason, .. } => Error::FileDownloadError {
                key: key.to_owned(),
                reason,
            },
            other => other,
        }
    }
}
