//! Replays the checked-in corpus of the library's fuzz targets (`fuzz/corpus/<target>/`)
//! through the very checks the fuzzer runs (`fuzz/src/checks.rs`), on stable Rust. An input
//! the fuzzer found a bug with is saved there and fails this test until the bug is fixed.
//!
//! `FM_FUZZ_REGEN=1 cargo test -p filemanager --test fuzz_corpus -- --ignored` rewrites the
//! generated seeds (see `regenerate_seed_corpus`); see `docs/fuzzing.md`.

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use filemanager::{Location, PresignUpload};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Runs `check` on every file of `target`'s corpus and reports every failing file at once.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} {target} corpus inputs fail their check:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn location_corpus() {
    replay("location", checks::location);
}

#[test]
fn presign_verify_corpus() {
    replay("presign_verify", checks::presign_verify);
}

/// Freshly signed raw-mode seeds (as `regenerate_seed_corpus` would write them) verify and pass
/// the oracle: the checked-in ones expire, these do not.
#[test]
fn fresh_signed_urls_verify() {
    let fm = checks::manager();
    for (name, data) in presign_seeds() {
        if name.starts_with("signed_") {
            let text = String::from_utf8(data).unwrap();
            let mut f = text.splitn(3, '\n');
            let (m, p, q) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
            let grant = fm.verify_presigned(m, p, q).unwrap().unwrap();
            checks::check_accepted(m, p, q, &grant);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Seed corpus generation
// ---------------------------------------------------------------------------------------------

/// Writes the seeds below into `fuzz/corpus/`. Ignored, and a no-op without `FM_FUZZ_REGEN=1`,
/// because the signed URLs in it change (and expire) with the clock.
#[test]
#[ignore = "rewrites checked-in files; run with FM_FUZZ_REGEN=1 and --ignored"]
fn regenerate_seed_corpus() {
    if std::env::var("FM_FUZZ_REGEN").as_deref() != Ok("1") {
        return;
    }
    for (target, seeds) in [
        ("location", location_seeds()),
        ("presign_verify", presign_seeds()),
    ] {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds {
            fs::write(dir.join(name), data).unwrap();
        }
    }
}

fn location_seeds() -> Vec<(String, Vec<u8>)> {
    let s255 = "s".repeat(255);
    let fits = format!("{}/{}", [s255.as_str(); 3].join("/"), "t".repeat(250));
    let seeds: Vec<(&str, String)> = vec![
        ("valid_app", "blog/app/posts/123/image.jpg".into()),
        ("valid_user", "lms/user/stu-1@x.org/hw/1.pdf".into()),
        (
            "valid_encoded",
            "blog/app/a%20b/%E6%97%A5%E6%9C%AC.txt".into(),
        ),
        ("valid_unicode_raw", "blog/app/日本語/ファイル.txt".into()),
        ("valid_dots", "blog/app/.../..a/a..".into()),
        (
            "valid_weird_chars",
            "blog/app/{w}^`[]~!$&'()*+,;=:@#".into(),
        ),
        ("valid_scope_app", "blog/app".into()),
        ("valid_scope_user", "blog/user/42".into()),
        ("valid_scope_user_encoded", "blog/user/u%401".into()),
        ("valid_key_with_percent", "blog/app/%41".into()),
        ("valid_key_1024", format!("d/app/{fits}")),
        ("double_encoded_slash", "blog/app/a%252Fb".into()),
        ("encoded_slash", "blog/app/a%2Fb".into()),
        ("encoded_slash_lower", "blog/app/a%2fb".into()),
        ("encoded_slash_in_domain", "blog%2Fapp/x".into()),
        ("encoded_backslash", "blog/app/a%5Cb".into()),
        ("backslash", "blog/app/a\\b".into()),
        ("backslash_traversal", "blog/app/..\\..\\x".into()),
        ("traversal", "blog/app/../../etc/passwd".into()),
        ("traversal_encoded", "blog/app/%2E%2E/x".into()),
        ("traversal_user", "blog/user/../x".into()),
        ("traversal_user_encoded", "blog/user/1%2F..%2F2/x".into()),
        ("traversal_dot", "blog/app/./x".into()),
        ("nul_encoded", "blog/app/a%00b".into()),
        ("nul_raw", "blog/app/a\0b".into()),
        ("newline_encoded", "blog/app/a%0Ab".into()),
        ("del_encoded", "blog/app/a%7F".into()),
        ("nel_encoded", "blog/app/a%C2%85".into()),
        ("empty_segment", "blog/app//x".into()),
        ("trailing_slash", "blog/app/x/".into()),
        ("leading_slash", "/blog/app/x".into()),
        ("no_filename", "blog/app/".into()),
        ("user_no_filename", "blog/user/1/".into()),
        ("lookalike_division_slash", "blog/app/a\u{2215}b".into()),
        (
            "lookalike_division_slash_enc",
            "blog/app/..%E2%88%95x".into(),
        ),
        ("lookalike_fullwidth_slash", "blog/app/a\u{FF0F}b".into()),
        (
            "lookalike_fullwidth_dots",
            "blog/app/\u{FF0E}\u{FF0E}/x".into(),
        ),
        ("lookalike_fraction_slash", "blog/app/a\u{2044}b".into()),
        ("lookalike_big_solidus", "blog/app/a\u{29F8}b".into()),
        (
            "lookalike_fullwidth_backslash",
            "blog/app/a\u{FF3C}b".into(),
        ),
        ("overlong_utf8_slash", "blog/app/%C0%AF".into()),
        ("overlong_utf8_dots", "blog/app/%C0%AE%C0%AE/x".into()),
        ("invalid_utf8_escape", "blog/app/%FF".into()),
        ("bad_percent_end", "blog/app/a%".into()),
        ("bad_percent_hex", "blog/app/a%zz".into()),
        ("bad_percent_sign", "blog/app/a%+1b".into()),
        ("overlong_segment", format!("blog/app/{}", "s".repeat(256))),
        ("overlong_key", format!("d/app/{fits}t")),
        ("overlong_user", format!("blog/user/{}/x", "u".repeat(129))),
        ("overlong_domain", format!("{}/app/x", "d".repeat(64))),
        ("domain_upper", "Blog/app/x".into()),
        ("domain_dot", "a.b/app/x".into()),
        ("level_upper", "blog/APP/x".into()),
        ("level_unknown", "blog/users/1/x".into()),
        ("user_empty", "blog/user//x".into()),
        ("user_dotdot_encoded", "blog/user/%2E%2E/x".into()),
        ("windows_drive", "blog/app/C:\\x".into()),
    ];
    seeds
        .into_iter()
        .map(|(n, s)| (n.to_owned(), s.into_bytes()))
        .collect()
}

/// Raw-mode seeds are real signed URLs (valid for the longest allowed time, 7 days, then
/// expired) and tampered variants; sign-mode seeds sign at run time and edit the URL.
fn presign_seeds() -> Vec<(String, Vec<u8>)> {
    let fm = checks::manager();
    let loc = Location::from_url_path("blog/user/42/a%20b/%C3%BC.jpg").unwrap();
    let app = Location::from_url_path("shop/app/p/1.png").unwrap();
    let split = |url: &str| -> (String, String) {
        let rest = url.strip_prefix(checks::BASE_URL).unwrap();
        let (p, q) = rest.split_once('?').unwrap();
        (p.to_owned(), q.to_owned())
    };
    let up = PresignUpload {
        content_type: "image/jpeg".into(),
        expires_in: 604_800,
        max_size: Some(1000),
        compress: true,
        encrypt: true,
    };
    let (pp, pq) = split(&fm.presign_upload(&loc, &up).unwrap().url);
    let plain = PresignUpload {
        content_type: "text/plain; charset=utf-8".into(),
        max_size: None,
        compress: false,
        encrypt: false,
        ..up.clone()
    };
    let (ap, aq) = split(&fm.presign_upload(&app, &plain).unwrap().url);
    let (gp, gq) = split(&fm.presign_download(&loc, 604_800).unwrap().url);
    let raw = |m: &str, p: &str, q: &str| format!("{m}\n{p}\n{q}");
    let sig_at = pq.find("sig=").unwrap() + 4;
    let mut flipped = pq.clone().into_bytes();
    flipped[sig_at] = if flipped[sig_at] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    let mut seeds: Vec<(&str, String)> = vec![
        ("signed_put", raw("PUT", &pp, &pq)),
        ("signed_put_plain", raw("PUT", &ap, &aq)),
        ("signed_get", raw("GET", &gp, &gq)),
        ("signed_head", raw("HEAD", &gp, &gq)),
        ("tampered_method", raw("GET", &pp, &pq)),
        ("tampered_delete", raw("DELETE", &gp, &gq)),
        (
            "tampered_user",
            raw("PUT", &pp.replace("/42/", "/43/"), &pq),
        ),
        (
            "tampered_domain",
            raw("PUT", &pp.replace("blog", "shop"), &pq),
        ),
        (
            "tampered_spelling",
            raw("PUT", &pp.replace("a%20b", "%61%20b"), &pq),
        ),
        (
            "tampered_plus",
            raw("PUT", &pp.replace("a%20b", "a+b"), &pq),
        ),
        (
            "tampered_encoded_slash",
            raw("PUT", &pp.replace("/a%20b/", "/a%20b%2F"), &pq),
        ),
        (
            "tampered_traversal",
            raw("PUT", &pp.replace("/42/", "/42/../43/"), &pq),
        ),
        (
            "tampered_route",
            raw("PUT", &pp.replace("/v1/files/", "/v1/files//"), &pq),
        ),
        (
            "tampered_max",
            raw("PUT", &pp, &pq.replace("max=1000", "max=1001")),
        ),
        (
            "tampered_max_dropped",
            raw("PUT", &pp, &pq.replace("max=1000&", "")),
        ),
        (
            "tampered_max_plus",
            raw("PUT", &pp, &pq.replace("max=1000", "max=+1000")),
        ),
        (
            "tampered_compress",
            raw("PUT", &pp, &pq.replace("compress=1", "compress=0")),
        ),
        (
            "tampered_encrypt",
            raw("PUT", &pp, &pq.replace("encrypt=1", "encrypt=true")),
        ),
        (
            "tampered_ct",
            raw("PUT", &pp, &pq.replace("ct=image%2Fjpeg", "ct=image%2Fpng")),
        ),
        (
            "tampered_ct_newline",
            raw(
                "PUT",
                &pp,
                &pq.replace("ct=image%2Fjpeg", "ct=image%2Fjpeg%0A1000"),
            ),
        ),
        (
            "tampered_ct_bad_escape",
            raw("PUT", &pp, &pq.replace("ct=image%2Fjpeg", "ct=%zz")),
        ),
        (
            "tampered_expires",
            raw("PUT", &pp, &pq.replace("expires=", "expires=9")),
        ),
        (
            "tampered_expires_sign",
            raw("PUT", &pp, &pq.replace("expires=", "expires=-")),
        ),
        (
            "tampered_extra_param",
            raw("PUT", &pp, &format!("{pq}&cache=false")),
        ),
        (
            "tampered_repeated_sig",
            raw("PUT", &pp, &format!("{pq}&sig=00")),
        ),
        ("tampered_sig_flipped", raw("PUT", &pp, &flipped)),
        ("tampered_sig_odd", raw("PUT", &pp, &format!("{pq}0"))),
        (
            "tampered_sig_unicode",
            raw("PUT", &pp, &pq.replace("sig=", "sig=\u{e9}")),
        ),
        ("tampered_sig_missing", raw("PUT", &pp, &pq[..sig_at - 5])),
        (
            "tampered_get_with_ct",
            raw("GET", &gp, &format!("{gq}&ct=x%2Fy")),
        ),
        (
            "tampered_get_as_put",
            raw("GET", &gp, &gq.replace("method=GET", "method=PUT")),
        ),
        ("unsigned_query", raw("PUT", &pp, "compress=true")),
        ("empty", String::new()),
        ("sig_only", raw("GET", "/v1/files/blog/app/x", "sig=")),
        (
            "forged_zero_sig",
            raw(
                "GET",
                "/v1/files/blog/app/x",
                &format!("method=GET&expires=9999999999&sig={}", "0".repeat(64)),
            ),
        ),
        (
            "expires_huge",
            raw(
                "GET",
                "/v1/files/blog/app/x",
                "method=GET&expires=9223372036854775807&sig=00",
            ),
        ),
    ];
    // [kind, location, content type, max, flags, method, path template, query template]
    let sign = |f: [&str; 8]| {
        let [kind, loc, ct, max, flags, method, path, query] = f;
        let head = format!("{}\n{kind}\n{loc}\n{ct}\n{max}\n{flags}", checks::SIGN_MODE);
        format!("{head}\n3600\n{method}\n{path}\n{query}")
    };
    let all = "method={method}&expires={expires}&ct={ct}&max={max}&compress={compress}&encrypt={encrypt}&sig={sig}";
    let user = "blog/user/42/a%20b/%C3%BC.jpg";
    seeds.extend([
        ("sign_put_identity", sign(["PUT", user, "image/jpeg", "1000", "ce", "PUT", "{path}", "{query}"])),
        ("sign_put_fields", sign(["PUT", user, "image/jpeg", "1000", "ce", "PUT", "/v1/files/{loc}", all])),
        ("sign_put_reordered", sign(["PUT", user, "image/jpeg", "1000", "ce", "PUT", "{path}", "sig={sig}&encrypt={encrypt}&compress={compress}&max={max}&ct={ct}&expires={expires}&method={method}"])),
        ("sign_put_empty_pairs", sign(["PUT", user, "image/jpeg", "1000", "ce", "PUT", "{path}", "&&{query}&"])),
        ("sign_put_drop_max", sign(["PUT", user, "image/jpeg", "1000", "ce", "PUT", "{path}", "method={method}&expires={expires}&ct={ct}&compress={compress}&encrypt={encrypt}&sig={sig}"])),
        ("sign_put_change_ct", sign(["PUT", user, "image/jpeg", "1000", "ce", "PUT", "{path}", "method={method}&expires={expires}&ct=image%2Fpng&max={max}&compress={compress}&encrypt={encrypt}&sig={sig}"])),
        ("sign_put_ct_encoding", sign(["PUT", user, "image/jpeg", "1000", "ce", "PUT", "{path}", "method={method}&expires={expires}&ct=image/jpeg&max={max}&compress={compress}&encrypt={encrypt}&sig={sig}"])),
        ("sign_put_expires_plus", sign(["PUT", user, "image/jpeg", "1000", "ce", "PUT", "{path}", "method={method}&expires=+{expires}&ct={ct}&max={max}&compress={compress}&encrypt={encrypt}&sig={sig}"])),
        ("sign_put_sig_upper", sign(["PUT", user, "image/jpeg", "1000", "ce", "PUT", "{path}", "method={method}&expires={expires}&ct={ct}&max={max}&compress={compress}&encrypt={encrypt}&sig={SIG}"])),
        ("sign_put_as_get", sign(["PUT", user, "image/jpeg", "", "c", "GET", "{path}", "{query}"])),
        ("sign_put_repeat_sig", sign(["PUT", user, "image/jpeg", "", "e", "PUT", "{path}", "{query}&sig={sig}"])),
        ("sign_put_extra", sign(["PUT", user, "image/png; q=1", "", "", "PUT", "{path}", "{query}&x=1"])),
        ("sign_put_bad_ct", sign(["PUT", user, "text", "", "", "PUT", "{path}", "{query}"])),
        ("sign_put_spelling", sign(["PUT", user, "image/jpeg", "7", "", "PUT", "/v1/files/blog/user/42/%61%20b/%C3%BC.jpg", "{query}"])),
        ("sign_put_other_user", sign(["PUT", user, "image/jpeg", "7", "", "PUT", "/v1/files/blog/user/43/a%20b/%C3%BC.jpg", "{query}"])),
        ("sign_get_identity", sign(["GET", "shop/app/p/1.png", "", "", "", "GET", "{path}", "{query}"])),
        ("sign_get_head", sign(["GET", "shop/app/p/1.png", "", "", "", "HEAD", "{path}", "{query}"])),
        ("sign_get_as_put", sign(["GET", "shop/app/p/1.png", "", "", "", "PUT", "{path}", "{query}"])),
        ("sign_get_add_ct", sign(["GET", "shop/app/p/1.png", "", "", "", "GET", "{path}", "{query}&ct=a%2Fb"])),
        ("sign_get_method_put", sign(["GET", "shop/app/p/1.png", "", "", "", "GET", "{path}", "method=PUT&expires={expires}&sig={sig}"])),
        ("sign_get_other_file", sign(["GET", "shop/app/p/1.png", "", "", "", "GET", "/v1/files/shop/app/p/2.png", "{query}"])),
        ("sign_get_user_unicode", sign(["GET", "lms/user/stu-1@x.org/%E2%88%95x", "", "", "", "GET", "{path}", "{query}"])),
        ("sign_get_double_encoded", sign(["GET", "shop/app/p%252F1.png", "", "", "", "GET", "/v1/files/shop/app/p%2F1.png", "{query}"])),
    ]);
    seeds
        .into_iter()
        .map(|(n, s)| (n.to_owned(), s.into_bytes()))
        .collect()
}
