//! What is recorded about a file besides its bytes: content type, user metadata and how the
//! bytes are encoded.
//!
//! User metadata follows the HTTP contract: names of `a-z 0-9 -` (given in any case, stored in
//! lower case), values without control characters, at most 2 KiB of names and values in all.
//! The limit matches what S3 allows for user-defined metadata, so the same metadata fits every
//! backend.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Most bytes of user metadata (names plus values) one file may carry.
pub const MAX_METADATA_BYTES: usize = 2048;
/// Longest content type accepted, in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;
/// Content type used when the caller gives none.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Validates user metadata and returns it with lower-case names.
pub fn normalize_metadata(raw: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut total = 0usize;
    for (name, value) in raw {
        let lower = name.to_ascii_lowercase();
        if lower.is_empty()
            || !lower
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(Error::invalid_input(
                "metadata",
                "names may contain only a-z, 0-9 and '-'",
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(Error::invalid_input(
                "metadata",
                "values must not contain control characters",
            ));
        }
        total += lower.len() + value.len();
        if out.insert(lower, value.clone()).is_some() {
            return Err(Error::invalid_input(
                "metadata",
                "a name is given twice (names are case-insensitive)",
            ));
        }
    }
    if total > MAX_METADATA_BYTES {
        return Err(Error::invalid_input(
            "metadata",
            "more than 2 KiB of names and values in all",
        ));
    }
    Ok(out)
}

/// Validates a content type: printable ASCII, `type/subtype` with optional parameters.
///
/// This is deliberately loose about parameters but strict about the characters, because the
/// value is echoed back in HTTP headers and must never carry a line break.
pub fn validate_content_type(content_type: &str) -> Result<()> {
    let bad = |reason: &str| Err(Error::invalid_input("content_type", reason));
    if content_type.is_empty() || content_type.len() > MAX_CONTENT_TYPE_LEN {
        return bad("must be 1 to 255 characters");
    }
    if !content_type.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return bad("must be printable ASCII");
    }
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    match essence.split_once('/') {
        Some((t, s)) if !t.is_empty() && !s.is_empty() && !s.contains('/') => Ok(()),
        _ => bad("must look like type/subtype"),
    }
}

/// How the stored bytes of a file relate to its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// Stored byte for byte.
    #[default]
    Plain,
    /// Stored in the FileManager at-rest format (`docs/format.md`).
    Encoded {
        /// Chunks are zstd-compressed.
        compressed: bool,
        /// Chunks are sealed with AES-256-GCM.
        encrypted: bool,
    },
}

impl Encoding {
    /// The encoding for the caller's `compress` and `encrypt` switches.
    pub fn from_flags(compress: bool, encrypt: bool) -> Self {
        if compress || encrypt {
            Encoding::Encoded {
                compressed: compress,
                encrypted: encrypt,
            }
        } else {
            Encoding::Plain
        }
    }

    /// Whether chunks are compressed.
    pub fn compressed(self) -> bool {
        matches!(
            self,
            Encoding::Encoded {
                compressed: true,
                ..
            }
        )
    }

    /// Whether chunks are encrypted.
    pub fn encrypted(self) -> bool {
        matches!(
            self,
            Encoding::Encoded {
                encrypted: true,
                ..
            }
        )
    }

    /// The short tag stored with each object (`plain`, `v1:z`, `v1:e`, `v1:ze`).
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Encoding::Plain => "plain",
            Encoding::Encoded {
                compressed: true,
                encrypted: false,
            } => "v1:z",
            Encoding::Encoded {
                compressed: false,
                encrypted: true,
            } => "v1:e",
            Encoding::Encoded {
                compressed: true,
                encrypted: true,
            } => "v1:ze",
            Encoding::Encoded {
                compressed: false,
                encrypted: false,
            } => "plain",
        }
    }

    pub(crate) fn from_tag(tag: &str) -> Option<Self> {
        Some(match tag {
            "plain" => Encoding::Plain,
            "v1:z" => Encoding::from_flags(true, false),
            "v1:e" => Encoding::from_flags(false, true),
            "v1:ze" => Encoding::from_flags(true, true),
            _ => return None,
        })
    }
}

/// The record stored with every object, as backend attributes or in a local envelope.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ObjectRecord {
    pub content_type: String,
    pub metadata: BTreeMap<String, String>,
    pub encoding: Encoding,
    /// The file's own length, when it was known at the start of the upload.
    pub size: Option<u64>,
    /// Uploaded with `cache_content = false`: its content is never cached.
    pub no_cache: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn metadata_names_are_lowered_and_checked() {
        let m = normalize_metadata(&map(&[("Alt-Text", "cover"), ("x1", "")])).unwrap();
        assert_eq!(m, map(&[("alt-text", "cover"), ("x1", "")]));
        for bad in ["", "a_b", "a b", "é", "a:b", "a\r\nb"] {
            assert!(normalize_metadata(&map(&[(bad, "v")])).is_err(), "{bad:?}");
        }
        assert!(normalize_metadata(&map(&[("a", "v\r\nX-Evil: 1")])).is_err());
        assert!(normalize_metadata(&map(&[("A", "1"), ("a", "2")])).is_err());
    }

    #[test]
    fn metadata_size_limit() {
        let ok = map(&[("k", &"v".repeat(MAX_METADATA_BYTES - 1))]);
        assert!(normalize_metadata(&ok).is_ok());
        let big = map(&[("k", &"v".repeat(MAX_METADATA_BYTES))]);
        assert!(normalize_metadata(&big).is_err());
    }

    #[test]
    fn content_types() {
        for ok in [
            "image/jpeg",
            "text/plain; charset=utf-8",
            "application/x-thing+json",
        ] {
            assert!(validate_content_type(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "text",
            "text/",
            "/plain",
            "a/b/c",
            "text/plain\r\nX: y",
            "tëxt/plain",
        ] {
            assert!(validate_content_type(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn encoding_tags_round_trip() {
        for (c, e) in [(false, false), (true, false), (false, true), (true, true)] {
            let enc = Encoding::from_flags(c, e);
            assert_eq!(Encoding::from_tag(enc.tag()), Some(enc));
            assert_eq!((enc.compressed(), enc.encrypted()), (c, e));
        }
        assert_eq!(Encoding::from_tag("v9"), None);
    }
}
