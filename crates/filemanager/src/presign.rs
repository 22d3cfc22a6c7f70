//! Presigned URLs that the FileManager service itself honours.
//!
//! A URL carries its grant in the query — method, expiry, and for uploads the content type,
//! size limit and codec switches — plus an HMAC-SHA256 over all of it and the storage key.
//! Because the service (not the bucket) checks it, presigned URLs work with encryption,
//! compression and every backend. Verification is constant-time (`ring::hmac::verify`), and any
//! change to the path or the query, or use after expiry, is refused.
//!
//! URL: `{base}/v1/files/{location}?method=PUT&expires=…&ct=…&max=…&compress=0&encrypt=1&sig=…`

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use ring::hmac;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::location::{Location, percent_decode, percent_encode};
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
        format!(
            "fm-presign-v1\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.method.as_str(),
            self.key,
            self.expires,
            self.content_type,
            self.max_size.map(|m| m.to_string()).unwrap_or_default(),
            self.compress as u8,
            self.encrypt as u8,
        )
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
        })
    }

    fn sign(&self, grant: &Grant<'_>) -> String {
        hex(hmac::sign(&self.key, grant.canonical().as_bytes()).as_ref())
    }

    /// The query string of a URL for `grant`, signature included: the one spelling that
    /// verifies.
    fn query(&self, grant: &Grant<'_>) -> String {
        let mut query = format!("method={}&expires={}", grant.method.as_str(), grant.expires);
        if grant.method == PresignMethod::Put {
            query.push_str(&format!("&ct={}", percent_encode(grant.content_type)));
            if let Some(max) = grant.max_size {
                query.push_str(&format!("&max={max}"));
            }
            query.push_str(&format!(
                "&compress={}&encrypt={}",
                grant.compress as u8, grant.encrypt as u8
            ));
        }
        query.push_str(&format!("&sig={}", self.sign(grant)));
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
    pub(crate) fn verify(
        &self,
        method: &str,
        raw_path: &str,
        raw_query: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PresignedGrant>> {
        let pairs = raw_query.split('&').filter(|p| !p.is_empty());
        if !pairs.clone().any(|p| p == "sig" || p.starts_with("sig=")) {
            return Ok(None);
        }
        let mut params: BTreeMap<&str, &str> = BTreeMap::new();
        for pair in pairs {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if params.insert(k, v).is_some() {
                return Err(forbidden("a query parameter is repeated"));
            }
        }
        let Some(sig) = params.get("sig").copied() else {
            return Ok(None);
        };
        let allowed = [
            "method", "expires", "ct", "max", "compress", "encrypt", "sig",
        ];
        if params.keys().any(|k| !allowed.contains(k)) {
            return Err(forbidden("the URL carries parameters that were not signed"));
        }
        let signed_method = match params.get("method").copied() {
            Some("PUT") => PresignMethod::Put,
            Some("GET") => PresignMethod::Get,
            _ => return Err(forbidden("the URL's method is missing or unknown")),
        };
        let method_ok = match signed_method {
            PresignMethod::Put => method == "PUT",
            // A download URL also answers HEAD: the same headers without the body.
            PresignMethod::Get => method == "GET" || method == "HEAD",
        };
        if !method_ok {
            return Err(forbidden("the URL is signed for another method"));
        }
        let rest = raw_path
            .strip_prefix(FILES_ROUTE)
            .ok_or_else(|| forbidden("the URL is not a file URL"))?;
        let location =
            Location::from_url_path(rest).map_err(|_| forbidden("the URL's path was changed"))?;
        // Only the exact path that was signed: another spelling of the same location is a
        // changed URL too.
        if location.to_url_path() != rest {
            return Err(forbidden("the URL's path was changed"));
        }
        let expires: i64 = params
            .get("expires")
            .and_then(|e| e.parse().ok())
            .ok_or_else(|| forbidden("the URL's expiry is missing or malformed"))?;
        let upload = signed_method == PresignMethod::Put;
        let content_type = match (upload, params.get("ct")) {
            (true, Some(ct)) => {
                percent_decode(ct).map_err(|_| forbidden("the URL's content type is malformed"))?
            }
            (false, None) => String::new(),
            _ => return Err(forbidden("the URL's parameters do not fit its method")),
        };
        let max_size = match params.get("max") {
            Some(m) if upload => Some(
                m.parse::<u64>()
                    .map_err(|_| forbidden("the URL's size limit is malformed"))?,
            ),
            Some(_) => return Err(forbidden("the URL's parameters do not fit its method")),
            None => None,
        };
        let flag = |name: &str| -> Result<bool> {
            match (upload, params.get(name).copied()) {
                (true, Some("1")) => Ok(true),
                (true, Some("0")) | (false, None) => Ok(false),
                _ => Err(forbidden("the URL's codec switches are malformed")),
            }
        };
        let (compress, encrypt) = (flag("compress")?, flag("encrypt")?);
        let key = location.key();
        let grant = Grant {
            method: signed_method,
            key: &key,
            expires,
            content_type: &content_type,
            max_size,
            compress,
            encrypt,
        };
        let sig = unhex(sig).ok_or_else(|| forbidden("the URL's signature is malformed"))?;
        hmac::verify(&self.key, grant.canonical().as_bytes(), &sig)
            .map_err(|_| forbidden("the URL's signature does not match"))?;
        // Only the exact query that was issued: another spelling of the same grant (reordered
        // parameters, `+1000`, an upper-case signature, an unencoded `/`) is a changed URL too,
        // so anything keyed on the URL's text can rely on it.
        if raw_query != self.query(&grant) {
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

pub(crate) fn check_expiry(expires_in: u64) -> Result<()> {
    if expires_in == 0 || expires_in > MAX_URL_EXPIRY_SECS {
        return Err(Error::invalid_input(
            "expires_in",
            "must be between 1 and 604800 seconds",
        ));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

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
