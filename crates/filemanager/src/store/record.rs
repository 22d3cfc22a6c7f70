//! How an [`ObjectRecord`] travels with the object it describes.
//!
//! Backends with object attributes (S3 and compatibles, memory) carry it as the object's
//! `Content-Type` plus `x-amz-meta-*` style metadata: `fm-enc` (encoding tag), `fm-size` (the
//! file's own length, when known at upload) and `u-{name}` for each user metadata entry. The
//! stored bytes stay exactly the file's bytes for plain objects, so other S3 tools can read
//! them.
//!
//! Local disk has no attributes, so the record is written in front of the bytes as an
//! *envelope*: `FMOB` magic, a version byte, a little-endian `u32` length, then the record as
//! JSON. See `docs/storage.md`.

use std::collections::BTreeMap;

use object_store::{Attribute, AttributeValue, Attributes};
use serde::{Deserialize, Serialize};

use crate::meta::{Encoding, ObjectRecord};

const ENC: &str = "fm-enc";
const SIZE: &str = "fm-size";
const NO_CACHE: &str = "fm-nocache";
const USER_PREFIX: &str = "u-";

/// Encodes a record as object attributes.
pub(crate) fn to_attributes(record: &ObjectRecord) -> Attributes {
    let mut attrs = Attributes::with_capacity(record.metadata.len() + 3);
    attrs.insert(
        Attribute::ContentType,
        AttributeValue::from(record.content_type.clone()),
    );
    attrs.insert(
        Attribute::Metadata(ENC.into()),
        AttributeValue::from(record.encoding.tag()),
    );
    if let Some(size) = record.size {
        attrs.insert(
            Attribute::Metadata(SIZE.into()),
            AttributeValue::from(size.to_string()),
        );
    }
    if record.no_cache {
        attrs.insert(
            Attribute::Metadata(NO_CACHE.into()),
            AttributeValue::from("1"),
        );
    }
    for (name, value) in &record.metadata {
        attrs.insert(
            Attribute::Metadata(format!("{USER_PREFIX}{name}").into()),
            AttributeValue::from(header_safe(value)),
        );
    }
    attrs
}

/// HTTP header values carry ASCII only and lose leading and trailing spaces, so user metadata
/// values are percent-encoded where needed: `%`, bytes outside printable ASCII, and spaces at
/// either end. Plain ASCII values, the usual case, stay readable to other S3 tools.
fn header_safe(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    for (i, &b) in bytes.iter().enumerate() {
        let edge_space = b == b' ' && (i == 0 || i == bytes.len() - 1);
        if b == b'%' || !(0x20..0x7f).contains(&b) || edge_space {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// Decodes a record from object attributes. An object written by another tool (no `fm-enc`)
/// reads as a plain object, which is what it is.
pub(crate) fn from_attributes(attrs: &Attributes) -> Result<ObjectRecord, &'static str> {
    let mut record = ObjectRecord {
        content_type: crate::meta::DEFAULT_CONTENT_TYPE.to_owned(),
        ..Default::default()
    };
    for (key, value) in attrs {
        match key {
            Attribute::ContentType => record.content_type = value.as_ref().to_owned(),
            Attribute::Metadata(name) if name == ENC => {
                record.encoding =
                    Encoding::from_tag(value.as_ref()).ok_or("unknown encoding tag")?;
            }
            Attribute::Metadata(name) if name == NO_CACHE => record.no_cache = true,
            Attribute::Metadata(name) if name == SIZE => {
                record.size = Some(value.as_ref().parse().map_err(|_| "bad size attribute")?);
            }
            Attribute::Metadata(name) => {
                if let Some(user) = name.strip_prefix(USER_PREFIX) {
                    let value = crate::location::percent_decode(value.as_ref())
                        .map_err(|_| "bad metadata value")?;
                    record.metadata.insert(user.to_owned(), value);
                }
            }
            _ => {}
        }
    }
    Ok(record)
}

/// The magic bytes that open a local envelope.
const MAGIC: &[u8; 4] = b"FMOB";
/// Envelope format version.
const VERSION: u8 = 1;
/// Bytes before the JSON: magic, version, length.
pub(crate) const ENVELOPE_FIXED: usize = 4 + 1 + 4;
/// Longest JSON an envelope may carry; bounded so a reader knows how much to fetch.
pub(crate) const ENVELOPE_MAX_JSON: usize = 8 * 1024;
/// Bytes a reader fetches to be sure it has the whole envelope.
pub(crate) const ENVELOPE_MAX: usize = ENVELOPE_FIXED + ENVELOPE_MAX_JSON;

#[derive(Serialize, Deserialize)]
struct EnvelopeJson {
    #[serde(rename = "ct")]
    content_type: String,
    #[serde(rename = "enc")]
    encoding: String,
    #[serde(rename = "size", skip_serializing_if = "Option::is_none", default)]
    size: Option<u64>,
    #[serde(rename = "meta", skip_serializing_if = "BTreeMap::is_empty", default)]
    metadata: BTreeMap<String, String>,
    #[serde(rename = "nc", skip_serializing_if = "is_false", default)]
    no_cache: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Serializes a record as a local envelope.
pub(crate) fn to_envelope(record: &ObjectRecord) -> Vec<u8> {
    let json = serde_json::to_vec(&EnvelopeJson {
        content_type: record.content_type.clone(),
        encoding: record.encoding.tag().to_owned(),
        size: record.size,
        metadata: record.metadata.clone(),
        no_cache: record.no_cache,
    })
    .expect("a record always serializes");
    // Metadata and content type are bounded by validation far below this limit.
    debug_assert!(json.len() <= ENVELOPE_MAX_JSON);
    let mut out = Vec::with_capacity(ENVELOPE_FIXED + json.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// What parsing the start of a local object gave.
pub(crate) enum EnvelopeParse {
    /// The envelope and its total length in bytes.
    Done(ObjectRecord, usize),
    /// More bytes are needed.
    NeedMore,
}

/// Parses an envelope from the first bytes of a local object.
pub(crate) fn parse_envelope(bytes: &[u8]) -> Result<EnvelopeParse, &'static str> {
    if bytes.len() < ENVELOPE_FIXED {
        return Ok(EnvelopeParse::NeedMore);
    }
    if &bytes[..4] != MAGIC {
        return Err("not a FileManager object (bad envelope magic)");
    }
    if bytes[4] != VERSION {
        return Err("unsupported envelope version");
    }
    let len = u32::from_le_bytes(bytes[5..9].try_into().expect("4 bytes")) as usize;
    if len > ENVELOPE_MAX_JSON {
        return Err("envelope too long");
    }
    let total = ENVELOPE_FIXED + len;
    if bytes.len() < total {
        return Ok(EnvelopeParse::NeedMore);
    }
    let json: EnvelopeJson =
        serde_json::from_slice(&bytes[ENVELOPE_FIXED..total]).map_err(|_| "bad envelope")?;
    let record = ObjectRecord {
        content_type: json.content_type,
        metadata: json.metadata,
        encoding: Encoding::from_tag(&json.encoding).ok_or("unknown encoding tag")?,
        size: json.size,
        no_cache: json.no_cache,
    };
    Ok(EnvelopeParse::Done(record, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ObjectRecord {
        ObjectRecord {
            content_type: "image/jpeg".into(),
            metadata: [
                ("alt".to_string(), "cover \"x\"".to_string()),
                ("title".to_string(), " Über 100% ✓ ".to_string()),
            ]
            .into(),
            encoding: Encoding::from_flags(true, true),
            size: Some(48213),
            no_cache: true,
        }
    }

    #[test]
    fn attributes_round_trip() {
        let r = sample();
        let attrs = to_attributes(&r);
        assert_eq!(from_attributes(&attrs).unwrap(), r);
        for (_, v) in &attrs {
            let v: &str = v.as_ref();
            assert!(v.bytes().all(|b| (0x20..0x7f).contains(&b)), "{v:?}");
            assert!(!v.starts_with(' ') && !v.ends_with(' '), "{v:?}");
        }
        assert_eq!(header_safe("cover image"), "cover image");
    }

    #[test]
    fn envelope_round_trip_and_partial_input() {
        let r = sample();
        let env = to_envelope(&r);
        for cut in 0..env.len() {
            match parse_envelope(&env[..cut]).unwrap() {
                EnvelopeParse::NeedMore => {}
                EnvelopeParse::Done(..) => panic!("parsed a cut envelope"),
            }
        }
        let mut with_body = env.clone();
        with_body.extend_from_slice(b"body");
        match parse_envelope(&with_body).unwrap() {
            EnvelopeParse::Done(back, len) => {
                assert_eq!(back, r);
                assert_eq!(len, env.len());
            }
            EnvelopeParse::NeedMore => panic!("complete envelope not parsed"),
        }
    }

    #[test]
    fn envelope_rejects_garbage() {
        assert!(parse_envelope(b"GIF89a-not-an-envelope").is_err());
        let mut env = to_envelope(&sample());
        env[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_envelope(&env).is_err());
    }
}
