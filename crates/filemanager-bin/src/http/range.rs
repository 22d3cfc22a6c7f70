//! The `Range` request header (RFC 9110 §14.2), single ranges only.
//!
//! - `bytes=a-b`, `bytes=a-`, `bytes=-n` → one [`ByteRange`]; the library resolves it against
//!   the file's length (206, or 416 when it cannot be satisfied — including `a > b` and `-0`).
//! - Several ranges (`bytes=0-1,5-6`), another unit or unparseable text → `None`: the header is
//!   ignored and the whole file is sent with 200, which RFC 9110 allows. Multipart/byteranges
//!   answers are not worth their complexity for a file service.

use axum::http::HeaderValue;
use filemanager::ByteRange;

/// The single byte range a `Range` header asks for, or `None` to serve the whole file.
pub fn parse(value: Option<&HeaderValue>) -> Option<ByteRange> {
    let text = value?.to_str().ok()?.trim();
    let (unit, spec) = text.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let spec = spec.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // A number too large for u64 is still a well-formed position: treat it as "very far".
        Some(s.parse().unwrap_or(u64::MAX))
    };
    match (first.is_empty(), last.is_empty()) {
        (false, false) => Some(ByteRange::FromTo(num(first)?, num(last)?)),
        (false, true) => Some(ByteRange::From(num(first)?)),
        (true, false) => Some(ByteRange::Suffix(num(last)?)),
        (true, true) => None,
    }
}

/// The `Content-Range` value of a 206 answer: `bytes first-last/size`.
pub fn content_range(range: &std::ops::Range<u64>, size: u64) -> String {
    format!(
        "bytes {}-{}/{}",
        range.start,
        range.end.saturating_sub(1),
        size
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<ByteRange> {
        parse(Some(&HeaderValue::from_str(s).unwrap()))
    }

    #[test]
    fn single_ranges() {
        assert_eq!(p("bytes=0-9"), Some(ByteRange::FromTo(0, 9)));
        assert_eq!(p("bytes=5-"), Some(ByteRange::From(5)));
        assert_eq!(p("bytes=-3"), Some(ByteRange::Suffix(3)));
        assert_eq!(p("Bytes = 1 - 2"), Some(ByteRange::FromTo(1, 2)));
        assert_eq!(p("bytes=9-2"), Some(ByteRange::FromTo(9, 2)));
        assert_eq!(
            p("bytes=0-99999999999999999999999"),
            Some(ByteRange::FromTo(0, u64::MAX))
        );
    }

    #[test]
    fn ignored() {
        for s in [
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=-",
            "bytes=a-b",
            "bytes=1",
            "0-1",
        ] {
            assert_eq!(p(s), None, "{s}");
        }
        assert_eq!(parse(None), None);
    }

    #[test]
    fn content_range_is_inclusive() {
        assert_eq!(content_range(&(2..6), 10), "bytes 2-5/10");
    }
}
