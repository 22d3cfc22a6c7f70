//! The checks behind the `filemanager` fuzz targets.
//!
//! This one file is compiled twice: by the fuzz crate (`fuzz/src/lib.rs`), whose targets call
//! it with libFuzzer's inputs, and by the stable test `tests/fuzz_corpus.rs` (through
//! `#[path]`), which replays the checked-in corpus with it. It may therefore use only `std`,
//! `filemanager`, `ring` and `zeroize`. A check panics only on a bug in `filemanager`, never on
//! bad input.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use filemanager::codec::{KeyRing, MasterKey};
use filemanager::location::percent_encode;
use filemanager::{
    FILES_ROUTE, FileManager, KeyConfig, Location, PresignConfig, PresignMethod, PresignUpload,
    PresignedGrant, Scope, StorageConfig,
};
use ring::hmac;
use zeroize::Zeroizing;

/// The base URL the fuzz manager signs for.
pub const BASE_URL: &str = "http://127.0.0.1:8080";
/// The fuzz manager's presign secret: 32 bytes of 7.
pub const SECRET: [u8; 32] = [7; 32];
/// Longest storage key `filemanager` promises.
pub const MAX_KEY_LEN: usize = 1024;
/// First line of a `presign_verify` input that signs a URL in process (see [`presign_verify`]).
pub const SIGN_MODE: &str = "!sign";

// ---------------------------------------------------------------------------------------------
// location
// ---------------------------------------------------------------------------------------------

/// Fuzz target `location`: arbitrary bytes as a URL path, a storage key and a scope path.
pub fn location(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let from_url = Location::from_url_path(s).ok();
    let from_key = Location::from_key(s).ok();
    if let Some(loc) = &from_url {
        check_location(loc);
    }
    if let Some(loc) = &from_key {
        check_location(loc);
        assert_eq!(
            loc.key(),
            s,
            "from_key accepted a key it does not give back"
        );
    }
    // Without '%', decoding is the identity, so both parsers must agree.
    if !s.contains('%') {
        assert_eq!(
            from_url, from_key,
            "from_url_path and from_key disagree on {s:?}"
        );
    }
    if let Ok(scope) = Scope::from_url_path(s) {
        check_scope(&scope);
        // Any filename under an accepted scope path lands in that scope.
        let under = Location::from_url_path(&format!("{s}/x"))
            .unwrap_or_else(|e| panic!("scope {s:?} accepted but {s:?}/x refused: {e}"));
        assert_eq!(under.scope(), &scope, "a file under {s:?} left its scope");
    }
}

/// The invariants every accepted location must hold.
pub fn check_location(loc: &Location) {
    let key = loc.key();
    let prefix = loc.scope().key_prefix();
    assert!(
        key.starts_with(&prefix),
        "key {key:?} is outside prefix {prefix:?}"
    );
    assert_eq!(
        key,
        format!("{prefix}{}", loc.filename()),
        "key is not prefix + filename"
    );
    assert_eq!(loc.to_string(), key, "Display differs from key()");
    assert!(
        key.len() <= MAX_KEY_LEN,
        "key longer than {MAX_KEY_LEN}: {}",
        key.len()
    );
    check_segments(&key);
    check_scope(loc.scope());
    assert_eq!(
        Location::from_key(&key).ok().as_ref(),
        Some(loc),
        "from_key(key()) does not round-trip for {key:?}"
    );
    let url = loc.to_url_path();
    assert_eq!(
        Location::from_url_path(&url).ok().as_ref(),
        Some(loc),
        "from_url_path(to_url_path()) does not round-trip for {url:?}"
    );
}

/// The invariants every accepted scope must hold.
pub fn check_scope(scope: &Scope) {
    let prefix = scope.key_prefix();
    let body = prefix
        .strip_suffix('/')
        .unwrap_or_else(|| panic!("scope prefix {prefix:?} does not end in '/'"));
    check_segments(body);
    let parts: Vec<&str> = body.split('/').collect();
    match (parts.as_slice(), scope.user_id()) {
        ([d, "app"], None) | ([d, "user", _], Some(_)) => {
            assert_eq!(
                *d,
                scope.domain().as_str(),
                "prefix does not start with the domain"
            )
        }
        _ => panic!("scope prefix {prefix:?} has an unexpected shape"),
    }
    let url: Vec<String> = parts.iter().map(|p| percent_encode(p)).collect();
    assert_eq!(
        Scope::from_url_path(&url.join("/")).ok().as_ref(),
        Some(scope),
        "scope {prefix:?} does not round-trip through its URL path"
    );
}

/// Every `/`-separated segment is non-empty, not `.` or `..`; no `\` and no control character.
fn check_segments(key: &str) {
    for seg in key.split('/') {
        assert!(
            !matches!(seg, "" | "." | ".."),
            "bad segment {seg:?} in {key:?}"
        );
    }
    assert!(!key.contains('\\'), "backslash in {key:?}");
    assert!(
        !key.chars().any(char::is_control),
        "control character in {key:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// presign_verify
// ---------------------------------------------------------------------------------------------

/// The manager every `presign_verify` input is checked against: memory storage, a fixed
/// encryption key (so encrypted uploads can be signed) and presigning with [`SECRET`].
pub fn manager() -> &'static FileManager {
    static FM: OnceLock<FileManager> = OnceLock::new();
    FM.get_or_init(|| {
        FileManager::builder(StorageConfig::Memory)
            .keys(KeyConfig::Ring(KeyRing::new(MasterKey::from_bytes(
                [0x42; 32],
            ))))
            .presign(Some(PresignConfig {
                base_url: BASE_URL.into(),
                secret: Zeroizing::new(SECRET.to_vec()),
            }))
            .build()
            .expect("the fuzz manager builds")
    })
}

/// Fuzz target `presign_verify`. The input is text (lossy UTF-8), one field per line.
///
/// Raw mode, `METHOD\nPATH\nQUERY` (the query is the rest and may hold newlines): the request
/// is verified as is. It must not panic, and an accepted request must carry a signature that
/// really is the HMAC of what it was granted (see [`check_accepted`]): a fuzzer cannot forge
/// one, so acceptance means the input came from the signer.
///
/// Sign mode, first line [`SIGN_MODE`], then `KIND` (`PUT` signs an upload, anything else a
/// download), `LOCATION` (a URL path), `CONTENT_TYPE`, `MAX` (empty for none), `FLAGS` (`c`
/// compress, `e` encrypt), `EXPIRES_IN`, the request `METHOD`, a `PATH` template and a `QUERY`
/// template (the rest). A fresh URL is signed from the first fields; the templates then build
/// the request from its pieces: `{path}`, `{loc}` and `{query}`, and the signed values
/// `{method}`, `{expires}`, `{ct}`, `{max}`, `{compress}`, `{encrypt}`, `{sig}` (`{SIG}` in
/// upper case). The
/// unchanged URL must verify; a changed one may verify only if it grants exactly what was
/// signed.
pub fn presign_verify(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let fm = manager();
    match text
        .strip_prefix(SIGN_MODE)
        .and_then(|r| r.strip_prefix('\n'))
    {
        Some(rest) => sign_mode(fm, rest),
        None => {
            let mut f = text.splitn(3, '\n');
            let (method, path, query) = (
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
            );
            if let Ok(Some(grant)) = fm.verify_presigned(method, path, query) {
                check_accepted(method, path, query, &grant);
            }
        }
    }
}

/// What a sign-mode input asked to be signed.
struct Signed {
    location: Location,
    upload: Option<PresignUpload>,
    expires_in: u64,
}

fn sign_mode(fm: &FileManager, rest: &str) {
    let mut f = rest.splitn(9, '\n');
    let mut next = || f.next().unwrap_or("");
    let (kind, loc, ct, max, flags, expires_in) = (next(), next(), next(), next(), next(), next());
    let (method, path_tpl, query_tpl) = (next(), next(), next());
    let Ok(location) = Location::from_url_path(loc) else {
        return;
    };
    let expires_in = expires_in.trim().parse().unwrap_or(3600);
    let upload = (kind == "PUT").then(|| PresignUpload {
        content_type: ct.to_owned(),
        expires_in,
        max_size: max.trim().parse().ok(),
        compress: flags.contains('c'),
        encrypt: flags.contains('e'),
    });
    let url = match &upload {
        Some(req) => fm.presign_upload(&location, req),
        None => fm.presign_download(&location, expires_in),
    };
    let Ok(url) = url else {
        return; // Bad content type or expiry: nothing was signed.
    };
    let signed = Signed {
        location,
        upload,
        expires_in,
    };
    let (path, query) = url
        .url
        .strip_prefix(BASE_URL)
        .and_then(|r| r.split_once('?'))
        .unwrap_or_else(|| panic!("presigned URL {:?} is not {BASE_URL}/…?…", url.url));
    assert_eq!(
        path,
        format!("{FILES_ROUTE}{}", signed.location.to_url_path()),
        "presigned URL points elsewhere"
    );

    // The URL as issued must verify (unless it could expire while we check).
    if signed.expires_in >= 60 {
        let grant = fm
            .verify_presigned(&url.method, path, query)
            .unwrap_or_else(|e| panic!("a fresh presigned URL is refused: {e} ({})", url.url))
            .expect("a fresh presigned URL is not seen as presigned");
        check_accepted(&url.method, path, query, &grant);
        check_grant_is_signed(&signed, query, &grant);
    }

    // The request as the templates build it.
    let params = query_params(query);
    let value = |k: &str| params.get(k).copied().unwrap_or("");
    let req_path = path_tpl
        .replace("{path}", path)
        .replace("{loc}", &signed.location.to_url_path());
    let mut req_query = query_tpl
        .replace("{query}", query)
        .replace("{SIG}", &value("sig").to_uppercase());
    for k in [
        "method", "expires", "ct", "max", "compress", "encrypt", "sig",
    ] {
        req_query = req_query.replace(&format!("{{{k}}}"), value(k));
    }
    if let Ok(Some(grant)) = fm.verify_presigned(method, &req_path, &req_query) {
        check_accepted(method, &req_path, &req_query, &grant);
        check_grant_is_signed(&signed, query, &grant);
    }
}

/// An accepted request grants exactly what was signed: same location, method and upload terms.
fn check_grant_is_signed(signed: &Signed, signed_query: &str, grant: &PresignedGrant) {
    assert_eq!(
        grant.location, signed.location,
        "grant for another location"
    );
    match &signed.upload {
        Some(up) => {
            assert_eq!(
                grant.method,
                PresignMethod::Put,
                "upload URL granted a download"
            );
            assert_eq!(
                grant.content_type.as_deref(),
                Some(up.content_type.as_str())
            );
            assert_eq!(grant.max_size, up.max_size, "upload size limit changed");
            assert_eq!(grant.compress, up.compress, "compress switch changed");
            assert_eq!(grant.encrypt, up.encrypt, "encrypt switch changed");
        }
        None => {
            assert_eq!(
                grant.method,
                PresignMethod::Get,
                "download URL granted an upload"
            );
            assert_eq!(grant.content_type, None);
            assert_eq!(grant.max_size, None);
            assert!(
                !grant.compress && !grant.encrypt,
                "download URL grants codec switches"
            );
        }
    }
    let expires = query_params(signed_query)
        .get("expires")
        .and_then(|e| e.parse::<i64>().ok())
        .expect("a presigned URL carries its expiry");
    assert_eq!(grant.expires_at.timestamp(), expires, "expiry changed");
}

/// The independent oracle for any accepted request: its method and path fit the grant, and its
/// `sig` is the HMAC-SHA256 under [`SECRET`] of the grant's canonical form (`fm-presign-v1`, as
/// `src/presign.rs` defines it), so the URL can only have come from the signer.
pub fn check_accepted(method: &str, path: &str, query: &str, grant: &PresignedGrant) {
    let ok_method = match grant.method {
        PresignMethod::Put => method == "PUT",
        PresignMethod::Get => method == "GET" || method == "HEAD",
    };
    assert!(
        ok_method,
        "{method} accepted for a {:?} grant",
        grant.method
    );
    assert_eq!(
        path,
        format!("{FILES_ROUTE}{}", grant.location.to_url_path()),
        "accepted a path that is not the canonical spelling of the grant's location"
    );
    check_location(&grant.location);
    let params = query_params(query);
    let expires: i64 = params
        .get("expires")
        .and_then(|e| e.parse().ok())
        .expect("accepted a URL without a numeric expiry");
    assert_eq!(
        grant.expires_at.timestamp(),
        expires,
        "grant expiry differs from the URL"
    );
    assert!(
        grant.expires_at.timestamp() >= now_secs() - 5,
        "accepted an expired URL"
    );
    let canonical = format!(
        "fm-presign-v1\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        match grant.method {
            PresignMethod::Put => "PUT",
            PresignMethod::Get => "GET",
        },
        grant.location.key(),
        expires,
        grant.content_type.as_deref().unwrap_or(""),
        grant.max_size.map(|m| m.to_string()).unwrap_or_default(),
        grant.compress as u8,
        grant.encrypt as u8,
    );
    let sig = params
        .get("sig")
        .and_then(|s| unhex(s))
        .expect("accepted a URL without a well-formed sig");
    let key = hmac::Key::new(hmac::HMAC_SHA256, &SECRET);
    assert!(
        hmac::verify(&key, canonical.as_bytes(), &sig).is_ok(),
        "accepted a signature that is not the HMAC of the grant: {canonical:?}"
    );
}

/// `k=v` pairs of a raw query (first occurrence wins; the verifier refuses repeats anyway).
fn query_params(query: &str) -> BTreeMap<&str, &str> {
    let mut out = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(k).or_insert(v);
    }
    out
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    s.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [a, b] => u8::from_str_radix(std::str::from_utf8(&[*a, *b]).ok()?, 16).ok(),
            _ => None,
        })
        .collect()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
