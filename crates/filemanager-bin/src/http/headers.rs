//! Request and response headers of file routes: user metadata (`X-Meta-*`), the download
//! headers, entity-tag matching and HTTP dates.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use chrono::{DateTime, Datelike, Timelike, Utc};
use filemanager::FileInfo;

use super::errors::AppError;

/// Prefix of user-metadata headers.
pub const META_PREFIX: &str = "x-meta-";

/// `X-Cache`: whether the bytes came from the cache.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// User metadata from `X-Meta-{name}` request headers. Header names arrive in lower case
/// (HTTP/1 names are case-insensitive and `http` normalises them); the library validates the
/// names, values and total size. A name given twice is refused rather than silently merged.
pub fn metadata_from(headers: &HeaderMap) -> Result<BTreeMap<String, String>, AppError> {
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let Some(meta) = name.as_str().strip_prefix(META_PREFIX) else {
            continue;
        };
        let value = std::str::from_utf8(value.as_bytes())
            .map_err(|_| AppError::bad_request("X-Meta-* values must be UTF-8"))?;
        if out.insert(meta.to_owned(), value.to_owned()).is_some() {
            return Err(AppError::bad_request(format!(
                "X-Meta-{meta} is given more than once"
            )));
        }
    }
    Ok(out)
}

/// The declared `Content-Length` of a request, if any.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, AppError> {
    headers
        .get(header::CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| AppError::bad_request("Content-Length is not a number"))
        })
        .transpose()
}

/// The request's `Content-Type`, or the contract's default.
pub fn content_type(headers: &HeaderMap) -> Result<String, AppError> {
    match headers.get(header::CONTENT_TYPE) {
        None => Ok(filemanager::meta::DEFAULT_CONTENT_TYPE.to_owned()),
        Some(v) => v
            .to_str()
            .map(|s| s.trim().to_owned())
            .map_err(|_| AppError::bad_request("Content-Type must be ASCII")),
    }
}

/// Headers describing `info` on a download (also on 304 and HEAD answers): `ETag`,
/// `Last-Modified`, `Accept-Ranges`, `X-Cache`, and `X-Meta-*` for each metadata entry.
/// `Content-Type` and `Content-Length` are added by the caller, which knows the body.
pub fn describe(info: &FileInfo, from_cache: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    Rendered::new(info).describe_into(&mut h, from_cache);
    h
}

/// The header values of one description of a file, rendered once: what every answer about
/// that version of the file carries, whatever the request.
#[derive(Debug)]
pub struct Rendered {
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
    /// `None` for a type that cannot be a header value (the library refuses such types on
    /// upload; an old object could still carry one).
    content_type: Option<HeaderValue>,
    /// The file's length, and as a `Content-Length` value.
    size: u64,
    length: HeaderValue,
    meta: Box<[(HeaderName, HeaderValue)]>,
}

impl Rendered {
    /// The header values of `info`.
    pub fn new(info: &FileInfo) -> Self {
        Rendered {
            etag: info
                .etag
                .as_deref()
                .and_then(|e| HeaderValue::from_str(e).ok()),
            last_modified: http_date_value(&info.last_modified),
            content_type: HeaderValue::from_str(&info.content_type).ok(),
            size: info.size,
            length: HeaderValue::from(info.size),
            // Names were validated as [a-z0-9-] and values as free of control characters on
            // upload, so both always fit in a header; `from_bytes` keeps non-ASCII UTF-8 as is.
            meta: info
                .metadata
                .iter()
                .filter_map(|(name, value)| {
                    Some((
                        HeaderName::try_from(format!("{META_PREFIX}{name}")).ok()?,
                        HeaderValue::from_bytes(value.as_bytes()).ok()?,
                    ))
                })
                .collect(),
        }
    }

    /// How many headers [`describe_into`](Self::describe_into) and
    /// [`content_type_into`](Self::content_type_into) add at most.
    pub fn header_count(&self) -> usize {
        5 + self.meta.len()
    }

    /// [`describe`]'s headers, into headers the caller already has (a response's own).
    pub fn describe_into(&self, h: &mut HeaderMap, from_cache: bool) {
        if let Some(etag) = &self.etag {
            h.insert(header::ETAG, etag.clone());
        }
        if let Some(date) = &self.last_modified {
            h.insert(header::LAST_MODIFIED, date.clone());
        }
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(
            X_CACHE,
            HeaderValue::from_static(if from_cache { "hit" } else { "miss" }),
        );
        for (name, value) in &self.meta {
            h.insert(name.clone(), value.clone());
        }
    }

    /// The file's `Content-Type`.
    pub fn content_type_into(&self, h: &mut HeaderMap) {
        if let Some(ct) = &self.content_type {
            h.insert(header::CONTENT_TYPE, ct.clone());
        }
    }

    /// The file's length in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The `Content-Length` of an answer with the whole file.
    pub fn whole_length(&self) -> HeaderValue {
        self.length.clone()
    }
}

/// Slots of a [`RenderMemo`]: as many as the library's description memo has, since a hot
/// file's description stays the same `Arc` only while it stays in that memo.
const RENDER_SLOTS: usize = 512;

/// Rendered headers of recently served descriptions, so that serving the same version of a
/// file again does not render its entity tag, date and type again.
///
/// A slot is found by the description's address and answers only for that very `Arc`
/// ([`Arc::ptr_eq`]). A description is immutable, and the slot holds a reference to it, so
/// its address cannot be reused by another one while the slot answers for it: the memo maps
/// one value to its rendering and never decides which description is current — the library's
/// cache does. A new version of a file is a new `Arc`, which misses here and is rendered
/// afresh; a download from storage is always a new `Arc` too, so it renders once and passes.
pub struct RenderMemo {
    slots: Box<[Mutex<Option<RenderSlot>>]>,
}

/// A description, held so that its address stays its own, and its rendering.
type RenderSlot = (Arc<FileInfo>, Arc<Rendered>);

impl fmt::Debug for RenderMemo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderMemo")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl Default for RenderMemo {
    fn default() -> Self {
        RenderMemo::with_slots(RENDER_SLOTS)
    }
}

impl RenderMemo {
    fn with_slots(n: usize) -> Self {
        RenderMemo {
            slots: (0..n).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The rendered headers of `info`.
    pub fn get(&self, info: &Arc<FileInfo>) -> Arc<Rendered> {
        // Allocations are at least 8-byte aligned; Fibonacci hashing spreads the rest of the
        // address over the slots.
        let addr = Arc::as_ptr(info) as usize as u64;
        let hash = (addr >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let slot = &self.slots[(hash >> 32) as usize % self.slots.len()];
        // A poisoned slot only ever held a complete entry or none: still usable.
        if let Some((held, rendered)) = &*slot.lock().unwrap_or_else(|e| e.into_inner())
            && Arc::ptr_eq(held, info)
        {
            return rendered.clone();
        }
        let rendered = Arc::new(Rendered::new(info));
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((info.clone(), rendered.clone()));
        rendered
    }
}

/// Whether an `If-None-Match` header matches `etag` (weak comparison, RFC 9110 §13.1.2).
pub fn none_match(if_none_match: &HeaderValue, etag: Option<&str>) -> bool {
    let Ok(list) = if_none_match.to_str() else {
        return false;
    };
    if list.trim() == "*" {
        return true;
    }
    let Some(etag) = etag else { return false };
    let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let current = weak(etag);
    list.split(',').any(|candidate| weak(candidate) == current)
}

const DAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// An HTTP date (IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: &DateTime<Utc>) -> String {
    match imf_fixdate(t) {
        // The bytes are ASCII by construction.
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => {
            let mut out = String::with_capacity(32);
            let _ = write!(
                out,
                "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
                String::from_utf8_lossy(DAYS[t.weekday().num_days_from_monday() as usize]),
                t.day(),
                String::from_utf8_lossy(MONTHS[t.month0() as usize]),
                t.year(),
                t.hour(),
                t.minute(),
                t.second(),
            );
            out
        }
    }
}

/// [`http_date`] as a header value, for the `Last-Modified` of every download.
fn http_date_value(t: &DateTime<Utc>) -> Option<HeaderValue> {
    match imf_fixdate(t) {
        Some(bytes) => HeaderValue::from_bytes(&bytes).ok(),
        None => HeaderValue::from_str(&http_date(t)).ok(),
    }
}

/// The 29 bytes of an IMF-fixdate, written digit by digit (no formatting machinery: this runs
/// on every download), for years 0 to 9999; other years are left to the general path.
fn imf_fixdate(t: &DateTime<Utc>) -> Option<[u8; 29]> {
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let mut out = *b"Mon, 00 Jan 0000 00:00:00 GMT";
    let two = |out: &mut [u8; 29], at: usize, n: u32| {
        out[at] = b'0' + (n / 10 % 10) as u8;
        out[at + 1] = b'0' + (n % 10) as u8;
    };
    out[..3].copy_from_slice(DAYS[t.weekday().num_days_from_monday() as usize]);
    two(&mut out, 5, t.day());
    out[8..11].copy_from_slice(MONTHS[t.month0() as usize]);
    two(&mut out, 12, year / 100);
    two(&mut out, 14, year % 100);
    two(&mut out, 17, t.hour());
    two(&mut out, 20, t.minute());
    // A leap second (chrono's second 59 with nanos past 1e9) is still written as 59.
    two(&mut out, 23, t.second());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn dates_are_imf_fixdate() {
        let t = Utc.with_ymd_and_hms(1994, 11, 6, 8, 49, 37).unwrap();
        assert_eq!(http_date(&t), "Sun, 06 Nov 1994 08:49:37 GMT");
        // Every weekday and month name, against chrono's own formatting.
        for days in (0..400).step_by(9) {
            let t = t + chrono::Duration::days(days) + chrono::Duration::seconds(days * 3671);
            assert_eq!(
                http_date(&t),
                t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
            );
        }
        // The edges of the fast path's years.
        for year in [0, 9, 999, 9999] {
            let t = Utc.with_ymd_and_hms(year, 1, 2, 3, 4, 5).unwrap();
            assert_eq!(
                http_date(&t),
                t.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
                "{year}"
            );
            let v = http_date_value(&t).unwrap();
            assert_eq!(v.to_str().unwrap(), http_date(&t));
        }
        // Past them, the general path (no such date is ever stored; it must not panic).
        let far = Utc.with_ymd_and_hms(10000, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(http_date(&far), "Sun, 02 Jan 10000 03:04:05 GMT");
        assert!(http_date_value(&far).is_some());
    }

    /// A description of `d/app/f` with entity tag `etag`.
    fn info(etag: &str) -> FileInfo {
        FileInfo {
            key: "d/app/f".into(),
            domain: "d".into(),
            level: filemanager::StorageLevel::App,
            user_id: None,
            filename: "f".into(),
            size: 3,
            stored_size: 3,
            content_type: "text/plain".into(),
            etag: Some(etag.into()),
            last_modified: Utc.with_ymd_and_hms(2026, 12, 3, 8, 49, 37).unwrap(),
            compressed: false,
            encrypted: false,
            metadata: [("alt".to_owned(), "a cover".to_owned())].into(),
        }
    }

    #[test]
    fn the_render_memo_answers_for_the_same_description_only() {
        // One slot: every description competes for it, as two hot files may in a full memo.
        let memo = RenderMemo::with_slots(1);
        let first = Arc::new(info("\"1\""));
        let a = memo.get(&first);
        assert!(Arc::ptr_eq(&a, &memo.get(&first)), "rendered once");
        let mut h = HeaderMap::new();
        a.describe_into(&mut h, true);
        a.content_type_into(&mut h);
        assert_eq!(h["etag"], "\"1\"");
        assert_eq!(h["last-modified"], "Thu, 03 Dec 2026 08:49:37 GMT");
        assert_eq!(h["content-type"], "text/plain");
        assert_eq!(h["x-meta-alt"], "a cover");
        assert_eq!(h["x-cache"], "hit");
        assert!(h.len() <= a.header_count());
        assert_eq!(a.size(), 3);
        assert_eq!(a.whole_length(), "3");
        // The same text in a new description (a new version, or a copy of the same one) is
        // rendered afresh, never taken for the old one.
        let second = Arc::new(info("\"2\""));
        let b = memo.get(&second);
        assert!(!Arc::ptr_eq(&a, &b));
        let mut h = HeaderMap::new();
        b.describe_into(&mut h, false);
        assert_eq!(h["etag"], "\"2\"");
        assert_eq!(h["x-cache"], "miss");
        // Each still answers with its own rendering, whichever holds the slot.
        assert!(Arc::ptr_eq(&memo.get(&second), &b));
        let mut h = HeaderMap::new();
        memo.get(&first).describe_into(&mut h, true);
        assert_eq!(h["etag"], "\"1\"");
        let mut h = HeaderMap::new();
        memo.get(&second).describe_into(&mut h, true);
        assert_eq!(h["etag"], "\"2\"");
        // What `describe` gives (304 answers) is the same rendering.
        assert_eq!(describe(&first, true), {
            let mut h = HeaderMap::new();
            a.describe_into(&mut h, true);
            h
        });
    }

    #[test]
    fn an_unusable_content_type_is_left_out() {
        let mut bad = info("\"1\"");
        bad.content_type = "text/plain\n".into();
        let mut h = HeaderMap::new();
        Rendered::new(&bad).content_type_into(&mut h);
        assert!(h.get("content-type").is_none());
    }

    #[test]
    fn etags_match_weakly() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(none_match(&v("\"a\""), Some("\"a\"")));
        assert!(none_match(&v("W/\"a\""), Some("\"a\"")));
        assert!(none_match(&v("\"b\", \"a\""), Some("\"a\"")));
        assert!(none_match(&v("*"), None));
        assert!(!none_match(&v("\"b\""), Some("\"a\"")));
    }

    #[test]
    fn metadata_names_are_lower_case_and_unique() {
        let mut h = HeaderMap::new();
        h.insert("X-Meta-Alt", HeaderValue::from_static("cover"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        let m = metadata_from(&h).unwrap();
        assert_eq!(m.get("alt").map(String::as_str), Some("cover"));
        assert_eq!(m.len(), 1);
        h.append("x-meta-alt", HeaderValue::from_static("again"));
        assert!(metadata_from(&h).is_err());
    }
}
