//! Cache keys: entry kinds, the scope of a storage key, the prefix
//! "nodes" that listing generations hang off, and the L2 entry names.
//!
//! Every cache key contains the whole storage key (or the whole listing
//! scope and parameters), so one tenant's entry can never answer another
//! tenant's lookup: `d/user/1/a` and `d/user/10/a` are different strings.

use std::fmt::Write as _;

/// The three kinds of cache entries, each with its own TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// File content (L1: plaintext, L2: stored form).
    Content,
    /// File metadata (serialized JSON, same bytes in both tiers).
    Metadata,
    /// A listing of a scope (serialized JSON, L1 only).
    Listing,
}

impl Kind {
    /// One-byte code used in the L2 entry header.
    pub(crate) fn code(self) -> u8 {
        match self {
            Kind::Content => b'c',
            Kind::Metadata => b'm',
            Kind::Listing => b'l',
        }
    }
}

/// The scope a storage key belongs to: `{domain}/app/` for
/// `{domain}/app/{file}`, `{domain}/user/{uid}/` for
/// `{domain}/user/{uid}/{file}`, `None` for any other shape.
///
/// ```
/// use filemanager_cache::scope_of;
/// assert_eq!(scope_of("blog/user/42/a.jpg"), Some("blog/user/42/"));
/// assert_eq!(scope_of("blog/app/logo.png"), Some("blog/app/"));
/// assert_eq!(scope_of("no-slash"), None);
/// ```
pub fn scope_of(key: &str) -> Option<&str> {
    let nodes = nodes(key);
    // Only the two canonical forms are scopes; `d/` or `d/user/` alone is not.
    let last = *nodes.last()?;
    let rest = last.split_once('/').map(|(_, r)| r)?;
    (rest == "app/" || (rest.starts_with("user/") && rest.len() > "user/".len())).then_some(last)
}

/// The prefix nodes of `s`, shallowest first: `""`, then `{d}/`, then
/// `{d}/app/` or `{d}/user/` and `{d}/user/{uid}/`, as far as `s` spells
/// them out completely.
///
/// Invalidating a key bumps the generation of *every* node of the key; a
/// listing of scope `S` reads the generation of the *deepest* node of `S`.
/// That node is a prefix of every key that starts with `S` and is one of
/// that key's nodes, so any invalidation of a key the listing could contain
/// changes the listing's generation, whatever shape `S` has (`d/`, `d/user/`,
/// `d/app/sub/`, `""`...).
pub(crate) fn nodes(s: &str) -> Vec<&str> {
    let mut out = vec![""];
    let Some(slash) = s.find('/') else {
        return out;
    };
    let domain_end = slash + 1;
    out.push(&s[..domain_end]);
    let rest = &s[domain_end..];
    if rest.starts_with("app/") {
        out.push(&s[..domain_end + "app/".len()]);
    } else if let Some(after_user) = rest.strip_prefix("user/") {
        let user_end = domain_end + "user/".len();
        out.push(&s[..user_end]);
        if let Some(uid_slash) = after_user.find('/') {
            out.push(&s[..user_end + uid_slash + 1]);
        }
    }
    out
}

/// The deepest node of a listing scope (see [`nodes`]).
pub(crate) fn listing_node(scope: &str) -> &str {
    nodes(scope).last().copied().unwrap_or("")
}

/// The L1 key of a listing: generation, scope and parameters, length-prefixed
/// so that no two (scope, params) pairs can produce the same string.
pub(crate) fn listing_key(generation: u64, scope: &str, params: &str) -> String {
    let mut k = String::with_capacity(scope.len() + params.len() + 24);
    let _ = write!(k, "{generation}:{}:{scope}{params}", scope.len());
    k
}

/// File/object name of an L2 entry: hex SHA-256 of a versioned domain tag,
/// the kind and the key. Hashing keeps arbitrary keys out of file names;
/// the entry header repeats the key so a collision or mix-up is detected.
pub(crate) fn entry_name(kind: Kind, key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"filemanager-cache/l2/v1\0");
    ctx.update(&[kind.code(), 0]);
    ctx.update(key.as_bytes());
    let digest = ctx.finish();
    let mut name = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(name, "{b:02x}");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(scope_of("d/app/x"), Some("d/app/"));
        assert_eq!(scope_of("d/app/sub/x"), Some("d/app/"));
        assert_eq!(scope_of("d/user/42/x"), Some("d/user/42/"));
        assert_eq!(scope_of("d/user/42"), None);
        assert_eq!(scope_of("d/other/x"), None);
        assert_eq!(scope_of("d/user/"), None);
    }

    #[test]
    fn listing_node_is_a_node_of_every_covered_key() {
        let keys = [
            "d/app/x",
            "d/app/sub/y",
            "d/user/1/a",
            "d/user/10/a",
            "d/user/1/sub/a",
            "e/app/x",
            "weird",
            "d/other/z",
        ];
        let scopes = [
            "",
            "d",
            "d/",
            "d/a",
            "d/app",
            "d/app/",
            "d/app/s",
            "d/user/",
            "d/user/1",
            "d/user/1/",
            "d/user/10/",
            "d/user/1/sub/",
            "e/",
            "d/other/",
        ];
        for s in scopes {
            let node = listing_node(s);
            for k in keys {
                if k.starts_with(s) {
                    assert!(nodes(k).contains(&node), "scope {s:?} key {k:?}");
                }
            }
        }
        assert_eq!(listing_node("d/user/1/"), "d/user/1/");
        assert_eq!(listing_node("d/user/1"), "d/user/");
    }

    #[test]
    fn listing_keys_are_unambiguous() {
        assert_ne!(listing_key(0, "a/", "b"), listing_key(0, "a/b", ""));
        assert_ne!(listing_key(1, "a/", ""), listing_key(2, "a/", ""));
    }

    #[test]
    fn entry_names_differ_by_kind_and_key() {
        let a = entry_name(Kind::Content, "d/app/x");
        assert_eq!(a.len(), 64);
        assert_ne!(a, entry_name(Kind::Metadata, "d/app/x"));
        assert_ne!(a, entry_name(Kind::Content, "e/app/x"));
    }
}
