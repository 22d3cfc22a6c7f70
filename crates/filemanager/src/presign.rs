//! Presigned URLs that the FileManager service itself honours.
//!
//! A URL carries its grant in the query — method, expiry, and for uploads the content type,
//! size limit and codec switches — plus an HMAC-SHA256 over all of it and the storage key.
//! Because the service (not the bucket) checks it, presigned URLs work with encryption,
//! compression and every backend. Verification is constant-time (`ring::hmac::verify`), and any
//! change to the path or the query, or use after expiry, is refused.
//!
//! URL: `{base}/v1/files/{location}?method=PUT&expires=…&ct=…&max=…&compress=0&encrypt=1&sig=…`

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, TimeZone, Utc};
use ring::hmac;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::location::{Location, is_url_path_of, percent_decode, percent_encode};
use crate::types::{MAX_URL_EXPIRY_SECS, PresignedUrl};

/// The route prefix presigned URLs point at.
pub const FILES_ROUTE: &str = "/v1/files/";

/// What presigned URLs need: the public base URL of the service and the signing secret.
#[derive(Clone)]
pub struct PresignConfig {
    /// Absolute base URL, e.g. `https://files.example.com` (no trailing slash needed).
    pub base_url: String,
    /// The HMAC secret; at least 32 bytes. Wiped from memory when dropped.
    pub secret: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for PresignConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresignConfig")
            .field("base_url", &self.base_url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What an upload URL allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignUpload {
    /// The content type the upload must declare.
    pub content_type: String,
    /// Seconds of validity, 1–604800.
    pub expires_in: u64,
    /// Most bytes the upload may carry.
    pub max_size: Option<u64>,
    /// Store compressed.
    pub compress: bool,
    /// Store encrypted.
    pub encrypt: bool,
}

/// The HTTP method a URL is signed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresignMethod {
    /// An upload.
    Put,
    /// A download.
    Get,
}

impl PresignMethod {
    fn as_str(self) -> &'static str {
        match self {
            PresignMethod::Put => "PUT",
            PresignMethod::Get => "GET",
        }
    }
}

/// A verified presigned request: what it may do, and nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedGrant {
    /// The one location it is for.
    pub location: Location,
    /// The method it is signed for.
    pub method: PresignMethod,
    /// For uploads, the content type the request must carry.
    pub content_type: Option<String>,
    /// For uploads, the most bytes allowed.
    pub max_size: Option<u64>,
    /// For uploads, store compressed.
    pub compress: bool,
    /// For uploads, store encrypted.
    pub encrypt: bool,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// Signs and verifies presigned URLs.
#[derive(Clone)]
pub(crate) struct Presigner {
    base_url: String,
    key: hmac::Key,
    /// URLs that verified, shared by the clones of this signer.
    memo: Arc<Memo>,
}

/// Most URLs [`Memo`] holds; when full it starts over. An entry is a few hundred bytes, so
/// this bounds it to about a megabyte.
const MEMO_CAPACITY: usize = 4096;

/// The grants of URLs that verified, keyed by their exact query text, so a URL used again (a
/// page of images fetched by many browsers, say) costs a map look-up instead of a parse and
/// an HMAC.
///
/// Why this is safe: only a URL whose signature, path and query were all checked is ever put
/// in, and the signature binds the query to the path, so a query found here is one this
/// signer issued. A hit still checks the path byte for byte, the request's method and the
/// expiry, so it refuses exactly what a full check would. The map hashes with a random key
/// (std's `RandomState`), so its timing tells an outsider nothing about a signature it does
/// not already hold. A signer with another secret is a new `Presigner` with an empty memo.
#[derive(Default)]
struct Memo {
    /// query → what that query was verified for.
    map: RwLock<HashMap<Box<str>, Remembered>>,
}

/// One entry of [`Memo`].
struct Remembered {
    /// The raw path the URL was verified with.
    path: Box<str>,
    grant: PresignedGrant,
}

impl Memo {
    fn get(&self, raw_path: &str, raw_query: &str) -> Option<PresignedGrant> {
        // A poisoned lock only means another thread panicked mid-insert: the memo is an
        // optimisation, so it is skipped rather than trusted.
        let map = self.map.read().ok()?;
        let hit = map.get(raw_query)?;
        (*hit.path == *raw_path).then(|| hit.grant.clone())
    }

    fn put(&self, raw_path: &str, raw_query: &str, grant: &PresignedGrant) {
        let Ok(mut map) = self.map.write() else {
            return;
        };
        if map.len() >= MEMO_CAPACITY {
            map.clear();
        }
        let entry = Remembered {
            path: raw_path.into(),
            grant: grant.clone(),
        };
        map.insert(raw_query.into(), entry);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.read().map(|m| m.len()).unwrap_or(0)
    }
}

impl fmt::Debug for Presigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presigner")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// The fields a signature covers, in one canonical form.
struct Grant<'a> {
    method: PresignMethod,
    key: &'a str,
    expires: i64,
    content_type: &'a str,
    max_size: Option<u64>,
    compress: bool,
    encrypt: bool,
}

impl Grant<'_> {
    /// Newline-separated: no field can contain a newline (keys and content types refuse
    /// control characters), so two different grants never share a canonical form.
    fn canonical(&self) -> String {
        let mut out = String::with_capacity(64 + self.key.len() + self.content_type.len());
        out.push_str("fm-presign-v1\n");
        out.push_str(self.method.as_str());
        out.push('\n');
        out.push_str(self.key);
        out.push('\n');
        push_int(&mut out, self.expires);
        out.push('\n');
        out.push_str(self.content_type);
        out.push('\n');
        if let Some(max) = self.max_size {
            push_int(&mut out, max);
        }
        out.push('\n');
        out.push(flag_char(self.compress));
        out.push('\n');
        out.push(flag_char(self.encrypt));
        out
    }

    /// The query string of a URL for this grant up to (not including) `&sig=…`: the one
    /// spelling that verifies, given the signature that follows it.
    fn unsigned_query(&self) -> String {
        let mut query = String::with_capacity(96 + 3 * self.content_type.len());
        query.push_str("method=");
        query.push_str(self.method.as_str());
        query.push_str("&expires=");
        push_int(&mut query, self.expires);
        if self.method == PresignMethod::Put {
            query.push_str("&ct=");
            query.push_str(&percent_encode(self.content_type));
            if let Some(max) = self.max_size {
                query.push_str("&max=");
                push_int(&mut query, max);
            }
            query.push_str("&compress=");
            query.push(flag_char(self.compress));
            query.push_str("&encrypt=");
            query.push(flag_char(self.encrypt));
        }
        query
    }
}

/// Appends a number's decimal digits without a temporary `String`.
fn push_int(out: &mut String, n: impl fmt::Display) {
    use std::fmt::Write as _;
    // Writing to a `String` cannot fail.
    let _ = write!(out, "{n}");
}

fn flag_char(on: bool) -> char {
    if on { '1' } else { '0' }
}

/// The parameters a presigned query may carry, each at most once, still as sent.
#[derive(Default)]
struct Params<'q> {
    method: Option<&'q str>,
    expires: Option<&'q str>,
    ct: Option<&'q str>,
    max: Option<&'q str>,
    compress: Option<&'q str>,
    encrypt: Option<&'q str>,
    sig: Option<&'q str>,
    /// Some name came twice.
    repeated: bool,
    /// Some name is not one of the above.
    unknown: bool,
}

impl<'q> Params<'q> {
    /// One pass over the query, no allocation: a fixed set of names needs no map.
    fn parse(raw_query: &'q str) -> Self {
        let mut p = Params::default();
        for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match k {
                "method" => &mut p.method,
                "expires" => &mut p.expires,
                "ct" => &mut p.ct,
                "max" => &mut p.max,
                "compress" => &mut p.compress,
                "encrypt" => &mut p.encrypt,
                "sig" => &mut p.sig,
                _ => {
                    p.unknown = true;
                    continue;
                }
            };
            if slot.replace(v).is_some() {
                p.repeated = true;
            }
        }
        p
    }
}

fn forbidden(reason: &str) -> Error {
    Error::Forbidden {
        reason: reason.to_owned(),
    }
}

impl Presigner {
    pub(crate) fn new(config: &PresignConfig) -> Result<Self> {
        if config.secret.len() < 32 {
            return Err(Error::config(
                "FM_PRESIGN_SECRET",
                "must be at least 32 bytes",
            ));
        }
        let base = config.base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::config(
                "FM_PUBLIC_URL",
                "must be an http:// or https:// URL",
            ));
        }
        Ok(Presigner {
            base_url: base.to_owned(),
            key: hmac::Key::new(hmac::HMAC_SHA256, &config.secret),
            memo: Arc::default(),
        })
    }

    /// The query string of a URL for `grant`, signature included: the one spelling that
    /// verifies.
    fn query(&self, grant: &Grant<'_>) -> String {
        let mut query = grant.unsigned_query();
        query.push_str("&sig=");
        push_hex(
            &mut query,
            hmac::sign(&self.key, grant.canonical().as_bytes()).as_ref(),
        );
        query
    }

    fn url(&self, location: &Location, grant: &Grant<'_>, expires_in: u64) -> PresignedUrl {
        let mut headers = BTreeMap::new();
        if grant.method == PresignMethod::Put {
            headers.insert("Content-Type".to_owned(), grant.content_type.to_owned());
        }
        PresignedUrl {
            success: true,
            url: format!(
                "{}{FILES_ROUTE}{}?{}",
                self.base_url,
                location.to_url_path(),
                self.query(grant)
            ),
            method: grant.method.as_str().to_owned(),
            headers,
            expires_at: Utc
                .timestamp_opt(grant.expires, 0)
                .single()
                .unwrap_or_default(),
            expires_in,
        }
    }

    pub(crate) fn upload(
        &self,
        location: &Location,
        req: &PresignUpload,
        now: DateTime<Utc>,
    ) -> Result<PresignedUrl> {
        crate::meta::validate_content_type(&req.content_type)?;
        check_expiry(req.expires_in)?;
        let key = location.key();
        let grant = Grant {
            method: PresignMethod::Put,
            key: &key,
            expires: now.timestamp() + req.expires_in as i64,
            content_type: &req.content_type,
            max_size: req.max_size,
            compress: req.compress,
            encrypt: req.encrypt,
        };
        Ok(self.url(location, &grant, req.expires_in))
    }

    pub(crate) fn download(
        &self,
        location: &Location,
        expires_in: u64,
        now: DateTime<Utc>,
    ) -> Result<PresignedUrl> {
        check_expiry(expires_in)?;
        let key = location.key();
        let grant = Grant {
            method: PresignMethod::Get,
            key: &key,
            expires: now.timestamp() + expires_in as i64,
            content_type: "",
            max_size: None,
            compress: false,
            encrypt: false,
        };
        Ok(self.url(location, &grant, expires_in))
    }

    /// Checks a request against its signature. `Ok(None)` when the query carries no `sig`: not
    /// a presigned request.
    ///
    /// One HMAC per request: the signature is checked in constant time (`hmac::verify`), and
    /// the exact-query rule is checked on the text around it. Only lower-case hex is accepted as
    /// a signature, so once it verifies its text is the one spelling `query` would give, and
    /// the rest of the query must equal the issued spelling byte for byte. A URL that verified
    /// before is found in [`Memo`] and only its path, method and expiry are checked again.
    pub(crate) fn verify(
        &self,
        method: &str,
        raw_path: &str,
        raw_query: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PresignedGrant>> {
        if let Some(grant) = self.memo.get(raw_path, raw_query) {
            if !method_allowed(grant.method, method) {
                return Err(forbidden("the URL is signed for another method"));
            }
            if now.timestamp() > grant.expires_at.timestamp() {
                return Err(forbidden("the URL has expired"));
            }
            return Ok(Some(grant));
        }
        let grant = self.verify_in_full(method, raw_path, raw_query, now)?;
        if let Some(g) = &grant {
            self.memo.put(raw_path, raw_query, g);
        }
        Ok(grant)
    }

    /// [`Presigner::verify`] without the memo: parse, HMAC, exact-spelling and expiry checks.
    fn verify_in_full(
        &self,
        method: &str,
        raw_path: &str,
        raw_query: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PresignedGrant>> {
        let params = Params::parse(raw_query);
        let Some(sig) = params.sig else {
            return Ok(None);
        };
        if params.repeated {
            return Err(forbidden("a query parameter is repeated"));
        }
        if params.unknown {
            return Err(forbidden("the URL carries parameters that were not signed"));
        }
        let signed_method = match params.method {
            Some("PUT") => PresignMethod::Put,
            Some("GET") => PresignMethod::Get,
            _ => return Err(forbidden("the URL's method is missing or unknown")),
        };
        if !method_allowed(signed_method, method) {
            return Err(forbidden("the URL is signed for another method"));
        }
        let rest = raw_path
            .strip_prefix(FILES_ROUTE)
            .ok_or_else(|| forbidden("the URL is not a file URL"))?;
        let location =
            Location::from_url_path(rest).map_err(|_| forbidden("the URL's path was changed"))?;
        let key = location.key();
        // Only the exact path that was signed: another spelling of the same location is a
        // changed URL too.
        if !is_url_path_of(rest, &key) {
            return Err(forbidden("the URL's path was changed"));
        }
        let expires: i64 = params
            .expires
            .and_then(|e| e.parse().ok())
            .ok_or_else(|| forbidden("the URL's expiry is missing or malformed"))?;
        let upload = signed_method == PresignMethod::Put;
        let content_type = match (upload, params.ct) {
            (true, Some(ct)) => {
                percent_decode(ct).map_err(|_| forbidden("the URL's content type is malformed"))?
            }
            (false, None) => String::new(),
            _ => return Err(forbidden("the URL's parameters do not fit its method")),
        };
        let max_size = match params.max {
            Some(m) if upload => Some(
                m.parse::<u64>()
                    .map_err(|_| forbidden("the URL's size limit is malformed"))?,
            ),
            Some(_) => return Err(forbidden("the URL's parameters do not fit its method")),
            None => None,
        };
        let flag = |value: Option<&str>| -> Result<bool> {
            match (upload, value) {
                (true, Some("1")) => Ok(true),
                (true, Some("0")) | (false, None) => Ok(false),
                _ => Err(forbidden("the URL's codec switches are malformed")),
            }
        };
        let (compress, encrypt) = (flag(params.compress)?, flag(params.encrypt)?);
        let grant = Grant {
            method: signed_method,
            key: &key,
            expires,
            content_type: &content_type,
            max_size,
            compress,
            encrypt,
        };
        let sig_bytes =
            unhex_lower(sig).ok_or_else(|| forbidden("the URL's signature is malformed"))?;
        hmac::verify(&self.key, grant.canonical().as_bytes(), &sig_bytes)
            .map_err(|_| forbidden("the URL's signature does not match"))?;
        // Only the exact query that was issued: another spelling of the same grant (reordered
        // parameters, `+1000`, an upper-case signature, an unencoded `/`) is a changed URL too,
        // so anything keyed on the URL's text can rely on it. The signature was decoded from
        // lower-case hex only, so `sig` is already the issued spelling; everything before it
        // must be too, and nothing may follow it.
        let issued = raw_query
            .strip_prefix(grant.unsigned_query().as_str())
            .and_then(|r| r.strip_prefix("&sig="));
        if issued != Some(sig) {
            return Err(forbidden("the URL's query was changed"));
        }
        // Checked after the signature, so an attacker learns nothing about expiry from a forged
        // URL.
        if now.timestamp() > expires {
            return Err(forbidden("the URL has expired"));
        }
        Ok(Some(PresignedGrant {
            location,
            method: signed_method,
            content_type: upload.then_some(content_type),
            max_size,
            compress,
            encrypt,
            expires_at: Utc.timestamp_opt(expires, 0).single().unwrap_or_default(),
        }))
    }
}

/// Whether a URL signed for `signed` may serve a request with `method`. A download URL also
/// answers HEAD: the same headers without the body.
fn method_allowed(signed: PresignMethod, method: &str) -> bool {
    match signed {
        PresignMethod::Put => method == "PUT",
        PresignMethod::Get => method == "GET" || method == "HEAD",
    }
}

pub(crate) fn check_expiry(expires_in: u64) -> Result<()> {
    if expires_in == 0 || expires_in > MAX_URL_EXPIRY_SECS {
        return Err(Error::invalid_input(
            "expires_in",
            "must be between 1 and 604800 seconds",
        ));
    }
    Ok(())
}

/// Lower-case hex digits: a signature has exactly one accepted spelling.
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as lower-case hex, two table look-ups per byte.
fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX_LOWER[usize::from(b >> 4)]));
        out.push(char::from(HEX_LOWER[usize::from(b & 0x0f)]));
    }
}

/// The value of one lower-case hex digit; upper case, signs and anything else are refused.
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Decodes a signature: exactly 32 bytes as 64 lower-case hex digits, or `None`.
fn unhex_lower(s: &str) -> Option<[u8; SIG_LEN]> {
    let digits = s.as_bytes();
    if digits.len() != 2 * SIG_LEN {
        return None;
    }
    let mut out = [0u8; SIG_LEN];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(out)
}

/// Bytes of an HMAC-SHA256 tag.
const SIG_LEN: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::StorageLevel;

    fn signer() -> Presigner {
        Presigner::new(&PresignConfig {
            base_url: "http://127.0.0.1:8080/".into(),
            secret: Zeroizing::new(vec![7u8; 32]),
        })
        .unwrap()
    }

    fn loc() -> Location {
        Location::new("blog", StorageLevel::User, Some("42"), "a b/ü.jpg").unwrap()
    }

    fn split(url: &str) -> (String, String) {
        let rest = url.strip_prefix("http://127.0.0.1:8080").unwrap();
        let (p, q) = rest.split_once('?').unwrap();
        (p.to_owned(), q.to_owned())
    }

    fn up() -> PresignUpload {
        PresignUpload {
            content_type: "image/jpeg".into(),
            expires_in: 60,
            max_size: Some(1000),
            compress: true,
            encrypt: true,
        }
    }

    #[test]
    fn upload_url_round_trips() {
        let s = signer();
        let now = Utc::now();
        let url = s.upload(&loc(), &up(), now).unwrap();
        assert_eq!(url.method, "PUT");
        assert_eq!(url.headers["Content-Type"], "image/jpeg");
        let (p, q) = split(&url.url);
        let g = s.verify("PUT", &p, &q, now).unwrap().unwrap();
        assert_eq!(g.location, loc());
        assert_eq!(g.content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(g.max_size, Some(1000));
        assert!(g.compress && g.encrypt);
        // Not a presigned request at all, whatever else its query says.
        assert!(s.verify("PUT", &p, "compress=true", now).unwrap().is_none());
        assert!(s.verify("PUT", &p, "a=1&a=2", now).unwrap().is_none());
    }

    #[test]
    fn every_change_is_refused() {
        let s = signer();
        let now = Utc::now();
        let url = s.upload(&loc(), &up(), now).unwrap();
        let (p, q) = split(&url.url);
        let forbidden = |m: &str, p: &str, q: &str, at| {
            matches!(s.verify(m, p, q, at), Err(Error::Forbidden { .. }))
        };
        assert!(forbidden("GET", &p, &q, now), "method");
        assert!(
            forbidden("PUT", &p.replace("/42/", "/43/"), &q, now),
            "user"
        );
        assert!(
            forbidden("PUT", &p.replace("blog", "shop"), &q, now),
            "domain"
        );
        assert!(
            forbidden("PUT", &p.replace("a%20b", "a+b"), &q, now),
            "spelling"
        );
        assert!(
            forbidden("PUT", &p.replace("a%20b", "%61%20b"), &q, now),
            "encoding"
        );
        for (from, to) in [
            ("max=1000", "max=1001"),
            ("max=1000&", ""),
            ("compress=1", "compress=0"),
            ("encrypt=1", "encrypt=0"),
            ("ct=image%2Fjpeg", "ct=image%2Fpng"),
            ("method=PUT", "method=GET"),
        ] {
            assert!(forbidden("PUT", &p, &q.replace(from, to), now), "{from}");
        }
        let expires = q.split('&').find(|kv| kv.starts_with("expires=")).unwrap();
        let later: i64 = expires[8..].parse::<i64>().unwrap() + 1000;
        assert!(forbidden(
            "PUT",
            &p,
            &q.replace(expires, &format!("expires={later}")),
            now
        ));
        assert!(
            forbidden("PUT", &p, &format!("{q}&cache=false"), now),
            "extra param"
        );
        assert!(
            forbidden("PUT", &p, &format!("{q}&sig=00"), now),
            "repeated param"
        );
        let sig_at = q.find("sig=").unwrap() + 4;
        let mut flipped = q.clone().into_bytes();
        flipped[sig_at] = if flipped[sig_at] == b'0' { b'1' } else { b'0' };
        assert!(
            forbidden("PUT", &p, &String::from_utf8(flipped).unwrap(), now),
            "sig"
        );
        assert!(
            forbidden("PUT", &p, &q, now + chrono::Duration::seconds(61)),
            "expired"
        );
        assert!(
            s.verify("PUT", &p, &q, now + chrono::Duration::seconds(59))
                .is_ok()
        );
    }

    #[test]
    fn only_the_issued_spelling_verifies() {
        let s = signer();
        let now = Utc::now();
        let url = s.download(&loc(), 3600, now).unwrap();
        let (p, q) = split(&url.url);
        let (unsigned, sig) = q.split_once("&sig=").unwrap();
        assert_eq!(sig.len(), 64);
        assert!(s.verify("GET", &p, &q, now).unwrap().is_some());
        let forbidden =
            |q: &str| matches!(s.verify("GET", &p, q, now), Err(Error::Forbidden { .. }));
        // The same signature bytes spelled otherwise.
        assert!(
            forbidden(&format!("{unsigned}&sig={}", sig.to_uppercase())),
            "upper"
        );
        assert!(forbidden(&format!("{unsigned}&sig=+{}", &sig[1..])), "sign");
        assert!(
            forbidden(&format!("{unsigned}&sig={}", &sig[..62])),
            "short"
        );
        assert!(forbidden(&format!("{unsigned}&sig={sig}00")), "long");
        // The same grant in another order or with extra separators.
        let (m, e) = unsigned.split_once('&').unwrap();
        assert!(forbidden(&format!("{e}&{m}&sig={sig}")), "reordered");
        assert!(forbidden(&format!("sig={sig}&{unsigned}")), "sig first");
        assert!(forbidden(&format!("{unsigned}&&sig={sig}")), "empty pair");
        assert!(forbidden(&format!("{q}&")), "trailing separator");
        assert!(forbidden(&q.replace("expires=", "expires=+")), "plus sign");
        assert!(
            forbidden(&q.replace("expires=", "expires=0")),
            "leading zero"
        );
    }

    #[test]
    fn hex_is_lower_case_and_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut text = String::new();
        push_hex(&mut text, &bytes[..SIG_LEN]);
        assert_eq!(&text[..8], "00010203");
        assert_eq!(unhex_lower(&text).unwrap(), bytes[..SIG_LEN]);
        let mut high = String::new();
        push_hex(&mut high, &bytes[224..]);
        assert_eq!(&high[..4], "e0e1");
        assert_eq!(unhex_lower(&high).unwrap(), bytes[224..]);
        assert!(unhex_lower(&high.to_uppercase()).is_none());
        assert!(unhex_lower("").is_none());
    }

    #[test]
    fn download_urls_allow_get_and_head_only() {
        let s = signer();
        let now = Utc::now();
        let url = s.download(&loc(), 3600, now).unwrap();
        assert!(url.headers.is_empty());
        let (p, q) = split(&url.url);
        assert!(s.verify("GET", &p, &q, now).unwrap().is_some());
        assert!(s.verify("HEAD", &p, &q, now).unwrap().is_some());
        assert!(s.verify("PUT", &p, &q, now).is_err());
        assert!(s.verify("DELETE", &p, &q, now).is_err());
        assert!(s.verify("GET", &p, &format!("{q}&ct=x%2Fy"), now).is_err());
    }

    #[test]
    fn a_remembered_url_still_checks_path_method_and_expiry() {
        let s = signer();
        let now = Utc::now();
        let url = s.download(&loc(), 60, now).unwrap();
        let (p, q) = split(&url.url);
        let first = s.verify("GET", &p, &q, now).unwrap().unwrap();
        assert_eq!(s.memo.len(), 1, "a verified URL is remembered");
        // Served from the memo from here on: the same answer as the full check.
        assert_eq!(s.verify("GET", &p, &q, now).unwrap().unwrap(), first);
        assert!(s.verify("HEAD", &p, &q, now).unwrap().is_some());
        let forbidden =
            |m: &str, p: &str, at| matches!(s.verify(m, p, &q, at), Err(Error::Forbidden { .. }));
        assert!(forbidden("PUT", &p, now), "method");
        assert!(forbidden("DELETE", &p, now), "method");
        assert!(forbidden("GET", &p.replace("/42/", "/43/"), now), "path");
        assert!(
            forbidden("GET", &p.replace("a%20b", "a+b"), now),
            "spelling"
        );
        assert!(
            s.verify("GET", &p, &q, now + chrono::Duration::seconds(60))
                .is_ok()
        );
        assert!(
            forbidden("GET", &p, now + chrono::Duration::seconds(61)),
            "expired"
        );
        assert_eq!(s.memo.len(), 1, "refusals add nothing");
        // Clones share what was learnt.
        assert!(s.clone().memo.get(&p, &q).is_some());
    }

    #[test]
    fn refused_urls_are_not_remembered_and_the_memo_is_bounded() {
        let s = signer();
        let now = Utc::now();
        let url = s.download(&loc(), 60, now).unwrap();
        let (p, q) = split(&url.url);
        let mut forged = q.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(s.verify("GET", &p, &forged, now).is_err());
        assert!(
            s.verify("GET", &p, &q, now + chrono::Duration::seconds(61))
                .is_err()
        );
        assert_eq!(s.memo.len(), 0);
        for i in 0..=MEMO_CAPACITY {
            let l = Location::new("blog", StorageLevel::App, None, &format!("f{i}")).unwrap();
            let (p, q) = split(&s.download(&l, 60, now).unwrap().url);
            assert!(s.verify("GET", &p, &q, now).unwrap().is_some());
            assert!(s.memo.len() <= MEMO_CAPACITY);
        }
        assert_eq!(s.memo.len(), 1, "full, it started over");
    }

    #[test]
    fn expiry_and_secret_limits() {
        let s = signer();
        assert!(s.download(&loc(), 0, Utc::now()).is_err());
        assert!(s.download(&loc(), 604_801, Utc::now()).is_err());
        assert!(s.download(&loc(), 604_800, Utc::now()).is_ok());
        let short = PresignConfig {
            base_url: "http://x".into(),
            secret: Zeroizing::new(vec![1; 31]),
        };
        assert!(Presigner::new(&short).is_err());
        assert!(!format!("{short:?}").contains('1'));
    }
}
