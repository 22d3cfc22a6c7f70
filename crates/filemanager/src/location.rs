//! Where a file lives: the only code that turns `(domain, level, user_id, filename)` into a
//! storage key and back.
//!
//! Every input is validated here, once, by the constructors of [`Domain`], [`UserId`],
//! [`Filename`] and [`Location`]. Code below this module (codec, cache, store) receives a
//! `Location` or a [`Scope`] and never a raw string, so isolation between domains and users
//! rests on this file alone:
//!
//! - APP level: `{domain}/app/{filename}`, shared by all users of the domain;
//! - USER level: `{domain}/user/{user_id}/{filename}`, private to one user.
//!
//! Because a domain cannot contain `/`, a user id cannot contain `/`, and a filename cannot
//! contain an empty, `.` or `..` segment, no accepted location maps to a key outside its own
//! prefix, and every key maps back to exactly one location.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest domain name, in bytes.
pub const MAX_DOMAIN_LEN: usize = 63;
/// Longest user id, in bytes.
pub const MAX_USER_ID_LEN: usize = 128;
/// Longest single segment of a filename, in bytes.
pub const MAX_SEGMENT_LEN: usize = 255;
/// Longest whole storage key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// The seed's storage level: files shared by a domain, or private to one user of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageLevel {
    /// `{domain}/app/{filename}`: shared across all users of the domain.
    App,
    /// `{domain}/user/{user_id}/{filename}`: isolated per user.
    User,
}

impl StorageLevel {
    /// The level's path segment: `app` or `user`.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageLevel::App => "app",
            StorageLevel::User => "user",
        }
    }
}

impl fmt::Display for StorageLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StorageLevel {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "app" => Ok(StorageLevel::App),
            "user" => Ok(StorageLevel::User),
            _ => Err(Error::invalid_location(
                "level",
                "must be \"app\" or \"user\"",
            )),
        }
    }
}

/// A validated domain name: 1–63 bytes of `a-z 0-9 _ -`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Domain(String);

impl Domain {
    /// Validates `name` as a domain.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let bad = |reason: &str| Err(Error::invalid_location("domain", reason));
        if name.is_empty() || name.len() > MAX_DOMAIN_LEN {
            return bad("must be 1 to 63 characters");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return bad("may contain only a-z, 0-9, '_' and '-'");
        }
        if !name.as_bytes()[0].is_ascii_alphanumeric() {
            return bad("must start with a letter or digit");
        }
        Ok(Domain(name))
    }

    /// The domain as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated user id: 1–128 bytes of `A-Z a-z 0-9 . _ @ -`, and not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// Validates `id` as a user id.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        let bad = |reason: &str| Err(Error::invalid_location("user_id", reason));
        if id.is_empty() || id.len() > MAX_USER_ID_LEN {
            return bad("must be 1 to 128 characters");
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
        {
            return bad("may contain only A-Z, a-z, 0-9, '.', '_', '@' and '-'");
        }
        if id == "." || id == ".." {
            return bad("must not be '.' or '..'");
        }
        Ok(UserId(id))
    }

    /// The user id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated filename: a relative path of `/`-separated segments, none empty, `.` or `..`,
/// without backslashes or control characters, each segment at most 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Filename(String);

impl Filename {
    /// Validates `name` as a filename. The whole-key length limit is checked by
    /// [`Location::new`], which knows the prefix.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if name.is_empty() {
            return Err(Error::invalid_location("filename", "must not be empty"));
        }
        if name.len() > MAX_KEY_LEN {
            return Err(Error::invalid_location(
                "filename",
                "longer than the 1024-byte key limit",
            ));
        }
        check_path_chars("filename", &name)?;
        for segment in name.split('/') {
            check_segment("filename", segment)?;
        }
        Ok(Filename(name))
    }

    /// The filename as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Filename {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Rejects characters that are never allowed anywhere in a filename or prefix.
fn check_path_chars(field: &'static str, s: &str) -> Result<()> {
    if s.contains('\\') {
        return Err(Error::invalid_location(field, "must not contain '\\'"));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid_location(
            field,
            "must not contain NUL or control characters",
        ));
    }
    Ok(())
}

fn check_segment(field: &'static str, segment: &str) -> Result<()> {
    match segment {
        "" => Err(Error::invalid_location(
            field,
            "must not contain an empty segment ('//', or a leading or trailing '/')",
        )),
        "." | ".." => Err(Error::invalid_location(
            field,
            "must not contain a '.' or '..' segment",
        )),
        s if s.len() > MAX_SEGMENT_LEN => Err(Error::invalid_location(
            field,
            "a segment is longer than 255 bytes",
        )),
        _ => Ok(()),
    }
}

/// The root a listing covers: a domain's APP space or one user's space in it.
///
/// Its key prefix always ends in `/`, which is why a listing of `user/1` can never show files of
/// `user/10`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    domain: Domain,
    user: Option<UserId>,
}

impl Scope {
    /// A scope from its parts. USER level needs a user id; APP level must not have one.
    pub fn new(domain: Domain, level: StorageLevel, user: Option<UserId>) -> Result<Self> {
        match (level, &user) {
            (StorageLevel::App, Some(_)) => Err(Error::invalid_location(
                "user_id",
                "must not be given for APP level",
            )),
            (StorageLevel::User, None) => Err(Error::invalid_location(
                "user_id",
                "is required for USER level",
            )),
            _ => Ok(Scope { domain, user }),
        }
    }

    /// Validates raw strings into a scope.
    pub fn parse(domain: &str, level: StorageLevel, user_id: Option<&str>) -> Result<Self> {
        let domain = Domain::new(domain)?;
        let user = user_id.map(UserId::new).transpose()?;
        Scope::new(domain, level, user)
    }

    /// The domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The storage level.
    pub fn level(&self) -> StorageLevel {
        if self.user.is_some() {
            StorageLevel::User
        } else {
            StorageLevel::App
        }
    }

    /// The user id, for USER level.
    pub fn user_id(&self) -> Option<&UserId> {
        self.user.as_ref()
    }

    /// The key prefix of everything in this scope, ending in `/`.
    pub fn key_prefix(&self) -> String {
        let mut prefix = String::with_capacity(self.key_prefix_len());
        self.push_key_prefix(&mut prefix);
        prefix
    }

    /// Appends [`Scope::key_prefix`] to `out`.
    fn push_key_prefix(&self, out: &mut String) {
        out.push_str(self.domain.as_str());
        match &self.user {
            None => out.push_str("/app/"),
            Some(u) => {
                out.push_str("/user/");
                out.push_str(u.as_str());
                out.push('/');
            }
        }
    }

    /// The length of [`Scope::key_prefix`], without building it.
    fn key_prefix_len(&self) -> usize {
        self.domain.as_str().len()
            + match &self.user {
                None => "/app/".len(),
                Some(u) => "/user/".len() + u.as_str().len() + 1,
            }
    }

    /// The location of `filename` in this scope.
    pub fn location(&self, filename: Filename) -> Result<Location> {
        let loc = Location {
            scope: self.clone(),
            filename,
        };
        if loc.key_len() > MAX_KEY_LEN {
            return Err(Error::invalid_location(
                "filename",
                "the storage key would be longer than 1024 bytes",
            ));
        }
        Ok(loc)
    }
}

/// A validated list prefix, relative to a scope's root. Empty means "everything".
///
/// Matching is by string prefix, as in S3: `posts/1` matches `posts/1/a.jpg` and `posts/10.txt`.
/// It can never reach outside the scope because the scope's own prefix is prepended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ListPrefix(String);

impl ListPrefix {
    /// Validates a list prefix: same characters as a filename, no `.` or `..` segment, no empty
    /// segment except that it may end in `/`.
    pub fn new(prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        if prefix.is_empty() {
            return Ok(ListPrefix(prefix));
        }
        if prefix.len() > MAX_KEY_LEN {
            return Err(Error::invalid_location("prefix", "longer than 1024 bytes"));
        }
        check_path_chars("prefix", &prefix)?;
        let body = prefix.strip_suffix('/').unwrap_or(&prefix);
        for segment in body.split('/') {
            check_segment("prefix", segment)?;
        }
        Ok(ListPrefix(prefix))
    }

    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A complete, validated file location: scope plus filename.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    scope: Scope,
    filename: Filename,
}

impl Location {
    /// Validates raw strings into a location: the seed's `(domain, level, filename, user_id)`.
    pub fn new(
        domain: &str,
        level: StorageLevel,
        user_id: Option<&str>,
        filename: &str,
    ) -> Result<Self> {
        Scope::parse(domain, level, user_id)?.location(Filename::new(filename)?)
    }

    /// Parses a storage key (`{domain}/app/{filename}` or `{domain}/user/{user_id}/{filename}`)
    /// back into the location it came from.
    pub fn from_key(key: &str) -> Result<Self> {
        let bad = || Error::invalid_location("key", "not a FileManager storage key");
        let (domain, rest) = key.split_once('/').ok_or_else(bad)?;
        let (level, rest) = rest.split_once('/').ok_or_else(bad)?;
        match level.parse::<StorageLevel>().map_err(|_| bad())? {
            StorageLevel::App => Location::new(domain, StorageLevel::App, None, rest),
            StorageLevel::User => {
                let (user, filename) = rest.split_once('/').ok_or_else(bad)?;
                Location::new(domain, StorageLevel::User, Some(user), filename)
            }
        }
    }

    /// The scope (domain, level, user) this location belongs to.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The domain.
    pub fn domain(&self) -> &Domain {
        self.scope.domain()
    }

    /// The storage level.
    pub fn level(&self) -> StorageLevel {
        self.scope.level()
    }

    /// The user id, for USER level.
    pub fn user_id(&self) -> Option<&UserId> {
        self.scope.user_id()
    }

    /// The filename relative to the scope root.
    pub fn filename(&self) -> &Filename {
        &self.filename
    }

    /// The storage key.
    pub fn key(&self) -> String {
        // Built once at its final size: every request computes its key.
        let mut key = String::with_capacity(self.key_len());
        self.scope.push_key_prefix(&mut key);
        key.push_str(self.filename.as_str());
        key
    }

    /// The length of [`Location::key`], without building it.
    fn key_len(&self) -> usize {
        self.scope.key_prefix_len() + self.filename.as_str().len()
    }
}

impl Location {
    /// Parses the location part of a URL path, as the HTTP routes carry it:
    /// `{domain}/app/{filename}` or `{domain}/user/{user_id}/{filename}`, still
    /// percent-encoded. The raw path is split on `/` first and each part is decoded exactly
    /// once, so an encoded `/` (`%2F`) or `\` (`%5C`) can never act as a separator: it is
    /// rejected wherever it appears.
    pub fn from_url_path(raw: &str) -> Result<Self> {
        let bad = || {
            Error::invalid_location(
                "path",
                "expected {domain}/app/{filename} or {domain}/user/{user_id}/{filename}",
            )
        };
        // Without `%` (and `\`, which decoding refuses with its own message) every part
        // decodes to itself, so the parts can be used in place: most requests spell their path
        // this way, and this spares a `String` per part and the joined filename.
        if !raw.contains(['%', '\\']) {
            let mut parts = raw.splitn(3, '/');
            return match (parts.next(), parts.next(), parts.next()) {
                (Some(domain), Some("app"), Some(filename)) => {
                    Location::new(domain, StorageLevel::App, None, filename)
                }
                (Some(domain), Some("user"), Some(rest)) => {
                    let (user, filename) = rest.split_once('/').ok_or_else(bad)?;
                    Location::new(domain, StorageLevel::User, Some(user), filename)
                }
                _ => Err(bad()),
            };
        }
        Location::from_decoded_parts(raw)
    }

    /// [`Location::from_url_path`] the general way: every part decoded into its own string.
    fn from_decoded_parts(raw: &str) -> Result<Self> {
        let parts = decode_parts(raw)?;
        match parts.as_slice() {
            [domain, level, rest @ ..] if level == "app" && !rest.is_empty() => {
                Location::new(domain, StorageLevel::App, None, &rest.join("/"))
            }
            [domain, level, user, rest @ ..] if level == "user" && !rest.is_empty() => {
                Location::new(domain, StorageLevel::User, Some(user), &rest.join("/"))
            }
            _ => Err(Error::invalid_location(
                "path",
                "expected {domain}/app/{filename} or {domain}/user/{user_id}/{filename}",
            )),
        }
    }
}

impl Scope {
    /// Parses a listing root from a URL path: `{domain}/app` or `{domain}/user/{user_id}`,
    /// still percent-encoded (see [`Location::from_url_path`]).
    pub fn from_url_path(raw: &str) -> Result<Self> {
        let parts = decode_parts(raw)?;
        match parts.as_slice() {
            [domain, level] if level == "app" => Scope::parse(domain, StorageLevel::App, None),
            [domain, level, user] if level == "user" => {
                Scope::parse(domain, StorageLevel::User, Some(user))
            }
            _ => Err(Error::invalid_location(
                "path",
                "expected {domain}/app or {domain}/user/{user_id}",
            )),
        }
    }
}

/// Splits a raw URL path on `/` and percent-decodes each part once. Empty parts are kept (the
/// location rules reject them), decoded `/` and `\` are refused, and the result must be UTF-8.
pub fn decode_parts(raw: &str) -> Result<Vec<String>> {
    raw.split('/')
        .map(|part| {
            let decoded = percent_decode(part)?;
            if decoded.contains('/') || decoded.contains('\\') {
                return Err(Error::invalid_location(
                    "path",
                    "an encoded '/' or '\\' is not allowed",
                ));
            }
            Ok(decoded)
        })
        .collect()
}

/// Decodes `%XX` escapes once. A `%` not followed by two hex digits is an error, as is a
/// result that is not UTF-8.
pub fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    Error::invalid_location("path", "a '%' must be followed by two hex digits")
                })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::invalid_location("path", "not valid UTF-8"))
}

/// Percent-encodes one location part for a URL path: everything but unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) is escaped, so the result decodes back exactly.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        out.extend(encode_byte(b, &mut [0; 3]).iter().copied().map(char::from));
    }
    out
}

/// Upper-case hex digits, the spelling [`percent_encode`] uses.
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// One byte as [`percent_encode`] writes it: itself if unreserved, else `%XX`. Table look-ups
/// rather than `format!`: this runs for every byte of every presigned URL checked.
fn encode_byte(b: u8, buf: &mut [u8; 3]) -> &[u8] {
    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
        buf[0] = b;
        &buf[..1]
    } else {
        *buf = [
            b'%',
            HEX_UPPER[usize::from(b >> 4)],
            HEX_UPPER[usize::from(b & 0x0f)],
        ];
        &buf[..]
    }
}

/// Whether `raw` is exactly [`Location::to_url_path`] of the location whose storage key is
/// `key`, compared as it is generated so that checking a request's path builds no string.
pub(crate) fn is_url_path_of(raw: &str, key: &str) -> bool {
    let mut rest = raw.as_bytes().iter();
    for b in key.bytes() {
        let mut buf = [0; 3];
        // `/` separates the parts `to_url_path` encodes one by one, so it stays as is.
        let expected: &[u8] = if b == b'/' {
            b"/"
        } else {
            encode_byte(b, &mut buf)
        };
        // Byte by byte: one to three bytes at a time are too few for a `memcmp` call to pay.
        if !expected.iter().all(|e| rest.next() == Some(e)) {
            return false;
        }
    }
    rest.next().is_none()
}

impl Location {
    /// The location as a URL path (`{domain}/app/…` with every part percent-encoded), the
    /// inverse of [`Location::from_url_path`].
    pub fn to_url_path(&self) -> String {
        self.key()
            .split('/')
            .map(percent_encode)
            .collect::<Vec<_>>()
            .join("/")
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.scope.key_prefix(), self.filename)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn app(domain: &str, filename: &str) -> Result<Location> {
        Location::new(domain, StorageLevel::App, None, filename)
    }

    fn user(domain: &str, user: &str, filename: &str) -> Result<Location> {
        Location::new(domain, StorageLevel::User, Some(user), filename)
    }

    #[test]
    fn keys_follow_the_seed_layout() {
        assert_eq!(
            app("blog", "posts/123/image.jpg").unwrap().key(),
            "blog/app/posts/123/image.jpg"
        );
        assert_eq!(
            user("lms", "stu-1@x.org", "hw/1.pdf").unwrap().key(),
            "lms/user/stu-1@x.org/hw/1.pdf"
        );
    }

    #[test]
    fn level_and_user_id_must_agree() {
        let err = Location::new("blog", StorageLevel::User, None, "a").unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidLocation {
                field: "user_id",
                ..
            }
        ));
        let err = Location::new("blog", StorageLevel::App, Some("1"), "a").unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidLocation {
                field: "user_id",
                ..
            }
        ));
    }

    #[test]
    fn domains() {
        for ok in ["blog", "a", "0day", "my_app-2", &"a".repeat(63)] {
            assert!(Domain::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "_x",
            "Blog",
            "a/b",
            "a.b",
            "a b",
            "é",
            "..",
            "a\0",
            &"a".repeat(64),
        ] {
            assert!(Domain::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_ids() {
        for ok in ["1", "User.Name@x-y_z", "...", "a..b", &"u".repeat(128)] {
            assert!(UserId::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\\b",
            "a b",
            "a%2F",
            "ü",
            "a\n",
            &"u".repeat(129),
        ] {
            assert!(UserId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn filenames() {
        for ok in [
            "a",
            "a/b/c.txt",
            "日本語/ファイル.txt",
            "with space.txt",
            "...",
            "..a",
            "a..",
            "%2F",
            "a#1",
            "{weird}^`\"[]~!$&'()*+,;=:@",
            &"s".repeat(255),
        ] {
            assert!(Filename::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            ".",
            "..",
            "a/../b",
            "./a",
            "a/.",
            "a\\b",
            "..\\a",
            "a\0b",
            "a\nb",
            "a\u{7f}",
            "a\u{85}",
            &"s".repeat(256),
        ] {
            assert!(Filename::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn whole_key_limit() {
        // 4 segments of 255 plus 3 slashes = 1023 bytes of filename; with "d/app/" it is 1029.
        let long = vec!["s".repeat(255); 4].join("/");
        assert!(Filename::new(long.as_str()).is_ok());
        assert!(app("d", &long).is_err());
        let fits = format!("{}/{}", vec!["s".repeat(255); 3].join("/"), "t".repeat(250));
        assert_eq!(app("d", &fits).unwrap().key().len(), 1024);
        assert!(app("d", &format!("{fits}t")).is_err());
    }

    #[test]
    fn prefixes() {
        for ok in ["", "a", "a/", "posts/1", "posts/1/"] {
            assert!(ListPrefix::new(ok).is_ok(), "{ok}");
        }
        for bad in ["/", "/a", "a//", "..", "../", "a/../", "a\\", "a\0", "a//b"] {
            assert!(ListPrefix::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_scope_prefix_ends_in_slash() {
        let one = Scope::parse("s", StorageLevel::User, Some("1")).unwrap();
        let ten = user("s", "10", "x").unwrap();
        assert!(!ten.key().starts_with(&one.key_prefix()));
    }

    #[test]
    fn from_key_rejects_foreign_keys() {
        for bad in [
            "",
            "blog",
            "blog/app",
            "blog/app/",
            "blog/x/a",
            "blog/user/1",
            "blog/user/1/",
            "Blog/app/a",
            "blog/app/../a",
            "blog/user/../a",
        ] {
            assert!(Location::from_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn url_paths_decode_each_part_once() {
        let loc = Location::from_url_path("blog/app/posts/1/a%20b.jpg").unwrap();
        assert_eq!(loc.key(), "blog/app/posts/1/a b.jpg");
        let loc = Location::from_url_path("blog/user/u%401/x").unwrap();
        assert_eq!(loc.user_id().unwrap().as_str(), "u@1");
        // %252F decodes once to the literal text "%2F", which is a fine filename.
        assert_eq!(
            Location::from_url_path("blog/app/a%252Fb")
                .unwrap()
                .filename()
                .as_str(),
            "a%2Fb"
        );
        for bad in [
            "blog/app/a%2Fb",
            "blog/app/a%2fb",
            "blog/app/a%5Cb",
            "blog/app/a\\b",
            "blog%2Fapp/x",
            "blog/user/1%2F..%2F2/x",
            "blog/app/%2E%2E/x",
            "blog/app/..",
            "blog/app/a%",
            "blog/app/a%zz",
            "blog/app/%FF",
            "blog/app/a%00",
            "blog/app/",
            "blog/app",
            "blog/user/1",
            "blog/other/x",
            "Blog/app/x",
        ] {
            assert!(Location::from_url_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scopes_from_url_paths() {
        assert_eq!(
            Scope::from_url_path("blog/app").unwrap().key_prefix(),
            "blog/app/"
        );
        assert_eq!(
            Scope::from_url_path("blog/user/7").unwrap().key_prefix(),
            "blog/user/7/"
        );
        for bad in [
            "blog",
            "blog/app/x",
            "blog/user",
            "blog/user/..",
            "blog/user/a%2Fb",
        ] {
            assert!(Scope::from_url_path(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn url_paths_round_trip(name in "\\PC{1,10}(/\\PC{1,10}){0,3}") {
            if let Ok(loc) = Location::new("d", StorageLevel::App, None, &name) {
                prop_assert_eq!(Location::from_url_path(&loc.to_url_path()).unwrap(), loc.clone());
                // The allocation-free check agrees with the built path, and only with it.
                let path = loc.to_url_path();
                prop_assert!(is_url_path_of(&path, &loc.key()));
                let longer = path.clone() + "x";
                prop_assert!(!is_url_path_of(&longer, &loc.key()));
                prop_assert!(!is_url_path_of(&path[..path.len() - 1], &loc.key()));
                prop_assert!(!is_url_path_of(&path.to_lowercase(), &loc.key()) || path == path.to_lowercase());
            }
        }
    }

    proptest! {
        #[test]
        fn plain_url_paths_parse_as_decoded_ones(
            raw in "[a-zA-Z0-9 ./_~\\\\-]{0,40}|[a-z]{1,5}/(app|user)(/[a-zA-Z0-9 ._~-]{0,6}){0,4}"
        ) {
            // The in-place reading of a path without `%` is the general one, errors included.
            prop_assert_eq!(
                format!("{:?}", Location::from_url_path(&raw)),
                format!("{:?}", Location::from_decoded_parts(&raw))
            );
        }
    }

    #[test]
    fn url_path_check_wants_the_one_spelling() {
        let loc = Location::new("blog", StorageLevel::User, Some("42"), "a b/ü.jpg").unwrap();
        let key = loc.key();
        assert_eq!(loc.to_url_path(), "blog/user/42/a%20b/%C3%BC.jpg");
        assert!(is_url_path_of("blog/user/42/a%20b/%C3%BC.jpg", &key));
        for other in [
            "blog/user/42/a+b/%C3%BC.jpg",
            "blog/user/42/a%20b/%c3%bc.jpg",
            "%62log/user/42/a%20b/%C3%BC.jpg",
            "blog/user/42/a%20b%2F%C3%BC.jpg",
            "blog/user/42/a%20b/ü.jpg",
            "blog/user/42/a%20b/%C3%BC.jpg/",
            "",
        ] {
            assert!(!is_url_path_of(other, &key), "{other:?}");
        }
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 ._~#%-]{1,20}",
            "\\PC{1,8}",
            Just("..".to_string()),
            Just(".".to_string()),
            Just(String::new()),
            "[\\x00-\\x1f\\\\/]{1,3}",
        ]
    }

    proptest! {
        #[test]
        fn accepted_locations_stay_under_their_prefix_and_round_trip(
            domain in "[a-z0-9][a-z0-9_-]{0,10}",
            user_id in proptest::option::of("[A-Za-z0-9._@-]{1,12}"),
            segments in proptest::collection::vec(segment(), 1..5),
        ) {
            let filename = segments.join("/");
            let level = if user_id.is_some() { StorageLevel::User } else { StorageLevel::App };
            if let Ok(loc) = Location::new(&domain, level, user_id.as_deref(), &filename) {
                let key = loc.key();
                prop_assert!(key.starts_with(&loc.scope().key_prefix()));
                prop_assert!(key.len() <= MAX_KEY_LEN);
                for seg in key.split('/') {
                    prop_assert!(!seg.is_empty() && seg != "." && seg != "..");
                }
                prop_assert!(!key.contains('\\'));
                prop_assert!(!key.chars().any(char::is_control));
                let back = Location::from_key(&key).unwrap();
                prop_assert_eq!(back, loc);
            } else {
                // Rejected input must really have broken a rule.
                let broke = segments.iter().any(|s| {
                    s.is_empty() || s == "." || s == ".." || s.len() > MAX_SEGMENT_LEN
                        || s.contains('\\') || s.contains('/') || s.chars().any(char::is_control)
                }) || user_id.as_deref().is_some_and(|u| u == "." || u == "..");
                prop_assert!(broke, "rejected a valid location: {:?}", filename);
            }
        }
    }
}
