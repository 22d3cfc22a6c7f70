//! File routes: upload, download, head, delete, metadata, list, ranges, conditional requests,
//! limits and location rules.

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::*;

pub async fn upload_returns_the_file_object(s: &Server) {
    let loc = s.app("posts/1/a.txt");
    let resp = s
        .svc(Method::PUT, &format!("/v1/files/{loc}"))
        .header("Content-Type", "text/plain")
        .header("X-Meta-Alt", "cover")
        .header("x-meta-PAGE", "1")
        .body("hello world")
        .send()
        .await
        .unwrap();
    let f = expect(resp, StatusCode::CREATED).await;
    assert_eq!(f["success"], true);
    assert_eq!(f["key"], loc);
    assert_eq!(f["domain"], s.domain);
    assert_eq!(f["level"], "app");
    assert_eq!(f["user_id"], Value::Null);
    assert_eq!(f["filename"], "posts/1/a.txt");
    assert_eq!(f["size"], 11);
    assert!(
        f["stored_size"].as_u64().unwrap() > 11,
        "encrypted by default"
    );
    assert_eq!(f["content_type"], "text/plain");
    let etag = f["etag"].as_str().unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    chrono::DateTime::parse_from_rfc3339(f["last_modified"].as_str().unwrap()).unwrap();
    assert_eq!(f["compressed"], false);
    assert_eq!(f["encrypted"], true);
    assert_eq!(
        f["metadata"],
        serde_json::json!({"alt": "cover", "page": "1"})
    );

    let user_file = s.put(&s.user("u-1@x.org", "notes.txt"), "mine").await;
    assert_eq!(user_file["level"], "user");
    assert_eq!(user_file["user_id"], "u-1@x.org");
    assert_eq!(user_file["key"], s.user("u-1@x.org", "notes.txt"));
    assert_eq!(user_file["content_type"], "application/octet-stream");
}

pub async fn download_gives_original_bytes_and_headers(s: &Server) {
    let data = bytes(300_000, 1);
    let loc = s.app("big.bin");
    let resp = s
        .svc(Method::PUT, &format!("/v1/files/{loc}?compress=true"))
        .header("Content-Type", "application/x-test")
        .header("X-Meta-Alt", "Cover")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    let f = expect(resp, StatusCode::CREATED).await;
    assert_eq!(f["compressed"], true);
    assert_eq!(f["encrypted"], true);
    let resp = s
        .svc(Method::GET, &format!("/v1/files/{loc}"))
        .send()
        .await
        .unwrap();
    let h = resp.headers().clone();
    if resp.status() != 200 {
        panic!("{}: {}", resp.status(), resp.text().await.unwrap());
    }
    assert_eq!(h["content-type"], "application/x-test");
    assert_eq!(h["content-length"], "300000");
    assert_eq!(h["etag"].to_str().unwrap(), f["etag"].as_str().unwrap());
    assert_eq!(h["accept-ranges"], "bytes");
    let xc = h["x-cache"].to_str().unwrap();
    assert!(xc == "hit" || xc == "miss", "{xc}");
    assert_eq!(h["x-meta-alt"], "Cover");
    let lm = h["last-modified"].to_str().unwrap();
    assert!(lm.ends_with(" GMT") && lm.len() == 29, "{lm}");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), data);
}

pub async fn utf8_metadata_round_trips(s: &Server) {
    let loc = s.app("utf8-meta.txt");
    let resp = s
        .svc(Method::PUT, &format!("/v1/files/{loc}"))
        .header("X-Meta-Title", "Über café ✓")
        .body("x")
        .send()
        .await
        .unwrap();
    let f = expect(resp, StatusCode::CREATED).await;
    assert_eq!(f["metadata"]["title"], "Über café ✓");
    let resp = s
        .svc(Method::GET, &format!("/v1/files/{loc}"))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let h = resp.headers().clone();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    assert_eq!(h["x-meta-title"].as_bytes(), "Über café ✓".as_bytes());
    let resp = s
        .svc(Method::GET, &format!("/v1/meta/{loc}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect(resp, StatusCode::OK).await["metadata"]["title"],
        "Über café ✓"
    );
}

pub async fn chunked_uploads_stream_both_ways(s: &Server) {
    // 3 MiB in 64 KiB pieces with no Content-Length: a chunked request body.
    let data = bytes(3 << 20, 2);
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
    let loc = s.user("7", "stream.bin");
    let resp = s
        .svc(Method::PUT, &format!("/v1/files/{loc}"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    let f = expect(resp, StatusCode::CREATED).await;
    assert_eq!(f["size"], 3 << 20);
    let resp = s
        .svc(Method::GET, &format!("/v1/files/{loc}"))
        .send()
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert!(got == data, "downloaded bytes differ");
}

pub async fn head_gives_the_headers_only(s: &Server) {
    let loc = s.app("h.txt");
    s.put(&loc, "0123456789").await;
    let resp = s
        .svc(Method::HEAD, &format!("/v1/files/{loc}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "10");
    assert!(resp.headers().contains_key("etag"));
    assert!(resp.headers().contains_key("last-modified"));
    assert_eq!(resp.headers()["accept-ranges"], "bytes");
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = s
        .svc(Method::HEAD, &format!("/v1/files/{}", s.app("missing")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

pub async fn ranges(s: &Server) {
    let data = bytes(200_000, 3);
    for (name, query) in [
        ("plain", "?encrypt=false"),
        ("enc", ""),
        ("zenc", "?compress=true"),
    ] {
        let loc = s.app(&format!("r/{name}"));
        let resp = s
            .svc(Method::PUT, &format!("/v1/files/{loc}{query}"))
            .body(data.clone())
            .send()
            .await
            .unwrap();
        expect(resp, StatusCode::CREATED).await;
        for (spec, a, b) in [
            ("bytes=0-0", 0, 1),
            ("bytes=100-65636", 100, 65637),
            ("bytes=199990-", 199_990, 200_000),
            ("bytes=-7", 199_993, 200_000),
            ("bytes=150000-999999", 150_000, 200_000),
        ] {
            let resp = s
                .svc(Method::GET, &format!("/v1/files/{loc}"))
                .header("Range", spec)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 206, "{name} {spec}");
            assert_eq!(
                resp.headers()["content-range"].to_str().unwrap(),
                format!("bytes {a}-{}/200000", b - 1)
            );
            assert_eq!(
                resp.headers()["content-length"].to_str().unwrap(),
                (b - a).to_string()
            );
            assert!(resp.bytes().await.unwrap() == data[a..b], "{name} {spec}");
        }
        for spec in [
            "bytes=200000-",
            "bytes=300000-400000",
            "bytes=-0",
            "bytes=9-2",
        ] {
            let resp = s
                .svc(Method::GET, &format!("/v1/files/{loc}"))
                .header("Range", spec)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.headers()["content-range"], "bytes */200000", "{spec}");
            expect_error(
                resp,
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
            )
            .await;
        }
        // Several ranges: the whole file, with 200.
        let resp = s
            .svc(Method::GET, &format!("/v1/files/{loc}"))
            .header("Range", "bytes=0-1,5-6")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.bytes().await.unwrap().len(), 200_000);
    }
}

pub async fn if_none_match_gives_304(s: &Server) {
    let loc = s.app("c.txt");
    let f = s.put(&loc, "cached").await;
    let etag = f["etag"].as_str().unwrap().to_owned();
    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"x\", {etag}"),
        "*".into(),
    ] {
        let resp = s
            .svc(Method::GET, &format!("/v1/files/{loc}"))
            .header("If-None-Match", &inm)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 304, "{inm}");
        assert_eq!(resp.headers()["etag"].to_str().unwrap(), etag);
        assert!(resp.bytes().await.unwrap().is_empty());
    }
    let resp = s
        .svc(Method::GET, &format!("/v1/files/{loc}"))
        .header("If-None-Match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), "cached");
}

pub async fn delete_then_404(s: &Server) {
    let loc = s.app("d.txt");
    s.put(&loc, "x").await;
    let resp = s
        .svc(Method::DELETE, &format!("/v1/files/{loc}"))
        .send()
        .await
        .unwrap();
    let body = expect(resp, StatusCode::OK).await;
    assert_eq!(body, serde_json::json!({"success": true, "key": loc}));
    for method in [Method::GET, Method::DELETE] {
        let resp = s
            .svc(method, &format!("/v1/files/{loc}"))
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::NOT_FOUND, "file_not_found").await;
    }
    let resp = s
        .svc(Method::GET, &format!("/v1/meta/{loc}"))
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::NOT_FOUND, "file_not_found").await;
}

pub async fn metadata_route_gives_the_file_object(s: &Server) {
    let loc = s.user("42", "a b/ü.pdf");
    let encoded = format!("{}/user/42/a%20b/%C3%BC.pdf", s.domain);
    let resp = s
        .svc(Method::PUT, &format!("/v1/files/{encoded}"))
        .header("Content-Type", "application/pdf")
        .header("X-Meta-Title", "T")
        .body("%PDF")
        .send()
        .await
        .unwrap();
    let up = expect(resp, StatusCode::CREATED).await;
    let resp = s
        .svc(Method::GET, &format!("/v1/meta/{encoded}"))
        .send()
        .await
        .unwrap();
    let m = expect(resp, StatusCode::OK).await;
    assert!(m.get("success").is_none(), "{m}");
    assert_eq!(m["key"], loc);
    assert_eq!(m["filename"], "a b/ü.pdf");
    assert_eq!(m["size"], 4);
    assert_eq!(m["content_type"], "application/pdf");
    assert_eq!(m["metadata"]["title"], "T");
    assert_eq!(m["etag"], up["etag"]);
    for field in [
        "stored_size",
        "last_modified",
        "compressed",
        "encrypted",
        "domain",
        "level",
        "user_id",
    ] {
        assert!(m.get(field).is_some(), "{field}");
    }
}

pub async fn overwrite_replaces_the_content(s: &Server) {
    let loc = s.app("o.txt");
    let put = |body: &'static str, ct: &'static str, v: &'static str| {
        let path = format!("/v1/files/{loc}");
        async move {
            let resp = s
                .svc(Method::PUT, &path)
                .header("content-type", ct)
                .header("x-meta-v", v)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::CREATED);
        }
    };
    // Each version's own headers, however often the old one was served from the cache before.
    let served = || async {
        let resp = s
            .svc(Method::GET, &format!("/v1/files/{loc}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        let field = |n: &str| h[n].to_str().unwrap().to_owned();
        let fields = [
            field("etag"),
            field("content-type"),
            field("content-length"),
            field("x-meta-v"),
        ];
        (fields, resp.text().await.unwrap())
    };
    put("first version", "text/plain", "1").await;
    let (first, body) = served().await;
    assert_eq!(body, "first version");
    assert_eq!(served().await, (first.clone(), body));
    assert_eq!(first[1..], ["text/plain", "13", "1"]);
    put("second", "text/csv", "2").await;
    let (second, body) = served().await;
    assert_eq!(body, "second");
    assert_ne!(second[0], first[0], "a new entity tag");
    assert_eq!(second[1..], ["text/csv", "6", "2"]);
    assert_eq!(served().await, (second, body));
    let resp = s
        .svc(Method::GET, &format!("/v1/meta/{loc}"))
        .send()
        .await
        .unwrap();
    assert_eq!(expect(resp, StatusCode::OK).await["size"], 6);
}

async fn list(s: &Server, scope: &str, query: &str) -> Value {
    let resp = s
        .svc(Method::GET, &format!("/v1/list/{scope}{query}"))
        .send()
        .await
        .unwrap();
    expect(resp, StatusCode::OK).await
}

fn names(page: &Value) -> Vec<String> {
    page["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap().to_owned())
        .collect()
}

pub async fn list_pages_prefixes_and_isolation(s: &Server) {
    let all = ["a/1.txt", "a/2.txt", "b/1.txt", "b/10.txt", "c.txt"];
    for (i, n) in all.iter().rev().enumerate() {
        s.put(&s.app(n), vec![b'x'; i + 1]).await;
    }
    let app = format!("{}/app", s.domain);
    let page = list(s, &app, "").await;
    assert_eq!(names(&page), all);
    assert_eq!(page["count"], 5);
    assert_eq!(page["truncated"], false);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(page["success"], true);
    let c = &page["files"][4];
    assert_eq!(c["key"], s.app("c.txt"));
    assert_eq!(c["size"], 1, "size is the file's own length");
    assert!(c["etag"].is_string() && c["last_modified"].is_string());

    // Pages of two, following the cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("?max_keys=2&cursor={}", urlencode(c)),
            None => "?max_keys=2".into(),
        };
        let page = list(s, &app, &q).await;
        assert!(page["count"].as_u64().unwrap() <= 2);
        seen.extend(names(&page));
        if page["truncated"] == false {
            break;
        }
        cursor = Some(page["next_cursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, all);

    assert_eq!(
        names(&list(s, &app, "?prefix=b/").await),
        ["b/1.txt", "b/10.txt"]
    );
    assert_eq!(
        names(&list(s, &app, "?prefix=b%2F1").await),
        ["b/1.txt", "b/10.txt"]
    );
    assert_eq!(
        names(&list(s, &app, "?prefix=zzz").await),
        Vec::<String>::new()
    );

    for q in [
        "?max_keys=0",
        "?max_keys=1001",
        "?max_keys=x",
        "?prefix=../",
        "?prefix=a//",
    ] {
        let resp = s
            .svc(Method::GET, &format!("/v1/list/{app}{q}"))
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    }

    // user/1 never shows user/10.
    s.put(&s.user("1", "one.txt"), "1").await;
    s.put(&s.user("10", "ten.txt"), "10").await;
    let one = list(s, &format!("{}/user/1", s.domain), "").await;
    assert_eq!(names(&one), ["one.txt"]);
    let ten = list(s, &format!("{}/user/10", s.domain), "").await;
    assert_eq!(names(&ten), ["ten.txt"]);
    assert_eq!(
        names(&list(s, &app, "").await),
        all,
        "APP listing has no user files"
    );
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn query_switches(s: &Server) {
    let loc = s.app("q.txt");
    let resp = s
        .svc(
            Method::PUT,
            &format!("/v1/files/{loc}?compress=true&encrypt=false&cache=false"),
        )
        .body("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        .send()
        .await
        .unwrap();
    let f = expect(resp, StatusCode::CREATED).await;
    assert_eq!(
        (f["compressed"].clone(), f["encrypted"].clone()),
        (Value::Bool(true), Value::Bool(false))
    );
    let resp = s
        .svc(Method::GET, &format!("/v1/files/{loc}?cache=false"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-cache"], "miss");
    assert_eq!(resp.bytes().await.unwrap().len(), 65);
    for q in [
        "?compress=maybe",
        "?encrypt=",
        "?cache=2",
        "?compress=true&compress=false",
    ] {
        let resp = s
            .svc(Method::PUT, &format!("/v1/files/{}{q}", s.app("bad-q.txt")))
            .body("x")
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    assert!(!s.exists(&s.app("bad-q.txt")).await);
}

pub async fn metadata_header_rules(s: &Server) {
    let loc = s.app("m.txt");
    let cases: Vec<(&str, String)> = vec![
        ("X-Meta-Bad_Name", "v".into()),
        ("X-Meta-Big", "v".repeat(2100)),
    ];
    for (name, value) in cases {
        let resp = s
            .svc(Method::PUT, &format!("/v1/files/{loc}"))
            .header(name, value)
            .body("x")
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let resp = s
        .svc(Method::PUT, &format!("/v1/files/{loc}"))
        .header("Content-Type", "not a type")
        .body("x")
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(
        !s.exists(&loc).await,
        "nothing stored after a refused upload"
    );
}

pub async fn location_rules(s: &Server) {
    let d = &s.domain;
    for path in [
        format!("/v1/files/{d}/app/a%2Fb"),
        format!("/v1/files/{d}/app/a%2fb"),
        format!("/v1/files/{d}/app/a%5Cb"),
        format!("/v1/files/{d}%2Fapp/x"),
        format!("/v1/files/{d}/user/1%2F..%2F2/x"),
        format!("/v1/files/{d}/app/a//b"),
        format!("/v1/files/{d}/app/a%00b"),
        format!("/v1/files/{d}/app/%FF"),
        format!("/v1/files/{d}/other/x"),
        format!("/v1/files/{d}/user/1"),
        "/v1/files/Upper/app/x".to_owned(),
        format!("/v1/meta/{d}/app/a%2Fb"),
        format!("/v1/list/{d}/user/a%2Fb"),
        format!("/v1/list/{d}"),
    ] {
        let resp = s.svc(Method::GET, &path).send().await.unwrap();
        expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // Dot segments, sent raw (HTTP clients would normalise them away).
    for path in [
        format!("/v1/files/{d}/app/../x"),
        format!("/v1/files/{d}/app/%2E%2E/x"),
        format!("/v1/files/{d}/app/./x"),
        format!("/v1/files/{d}/user/../app/x"),
        format!("/v1/files/{d}/app/a\\b"),
    ] {
        let status = raw_status(
            s,
            &format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer {SERVICE_KEY}"),
        )
        .await;
        assert_eq!(status, 400, "{path}");
    }
    // Decoding happens exactly once: %2520 is the three characters "%20".
    let f = s.put(&format!("{d}/app/a%2520b"), "x").await;
    assert_eq!(f["filename"], "a%20b");
    let f = s.put(&format!("{d}/app/a%20b"), "y").await;
    assert_eq!(f["filename"], "a b");
    assert_eq!(s.get_bytes(&format!("{d}/app/a%2520b")).await, b"x");
}

pub async fn upload_limit_content_length(s: &Server) {
    let loc = s.app("too-big.bin");
    let resp = s
        .svc(Method::PUT, &format!("/v1/files/{loc}"))
        .body(vec![1u8; 5000])
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert!(!s.exists(&loc).await, "nothing stored");
    // At the limit is fine.
    s.put(&s.app("fits.bin"), vec![1u8; 1000]).await;
}

pub async fn upload_limit_chunked(s: &Server) {
    let loc = s.app("too-big-chunked.bin");
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![2u8; 500])).collect();
    let resp = s
        .svc(Method::PUT, &format!("/v1/files/{loc}"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert!(!s.exists(&loc).await, "nothing stored");
}

pub async fn unknown_domains(s: &Server) {
    let resp = s
        .svc(Method::PUT, "/v1/files/elsewhere/app/x.txt")
        .body("x")
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::NOT_FOUND, "unknown_domain").await;
    for path in [
        "/v1/files/elsewhere/app/x.txt",
        "/v1/meta/elsewhere/app/x.txt",
        "/v1/list/elsewhere/app",
    ] {
        let resp = s.svc(Method::GET, path).send().await.unwrap();
        expect_error(resp, StatusCode::NOT_FOUND, "unknown_domain").await;
    }
    let resp = s
        .svc(Method::POST, "/v1/urls/download")
        .body(r#"{"domain":"elsewhere","level":"app","filename":"x"}"#)
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::NOT_FOUND, "unknown_domain").await;
    s.put(&s.app("ok.txt"), "served").await;
}

pub async fn error_messages_reveal_no_paths(s: &Server) {
    let dir = s.data_dir.display().to_string();
    for (method, path) in [
        (Method::GET, format!("/v1/files/{}", s.app("nope"))),
        (Method::GET, format!("/v1/files/{}/app/a%2Fb", s.domain)),
        (Method::DELETE, format!("/v1/files/{}", s.app("nope"))),
    ] {
        let resp = s.svc(method, &path).send().await.unwrap();
        let text = resp.text().await.unwrap();
        assert!(!text.contains(&dir), "{text}");
        assert!(!text.contains(SERVICE_KEY), "{text}");
    }
}

/// `X-Cache` tells whether the cache answered, and the cache never answers with an old version.
pub async fn x_cache_reports_hits_and_never_stale_bytes(s: &Server) {
    let loc = s.app("cached.txt");
    let get = |q: &'static str| {
        let path = format!("/v1/files/{loc}{q}");
        async move { s.svc(Method::GET, &path).send().await.unwrap() }
    };
    let put = |body: &'static str, q: &'static str| {
        let path = format!("/v1/files/{loc}{q}");
        async move {
            let resp = s.svc(Method::PUT, &path).body(body).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::CREATED);
        }
    };
    put("first", "").await;
    let resp = get("").await;
    assert_eq!(
        resp.headers()["x-cache"],
        "hit",
        "an upload fills the cache"
    );
    assert_eq!(resp.text().await.unwrap(), "first");
    let resp = get("?cache=false").await;
    assert_eq!(resp.headers()["x-cache"], "miss");
    assert_eq!(resp.text().await.unwrap(), "first");
    put("second", "").await;
    let resp = get("").await;
    assert_eq!(resp.text().await.unwrap(), "second");
    // Uploaded with cache=false: never served from the cache.
    put("third", "?cache=false").await;
    for _ in 0..2 {
        let resp = get("").await;
        assert_eq!(resp.headers()["x-cache"], "miss");
        assert_eq!(resp.text().await.unwrap(), "third");
    }
    assert!(
        s.metrics().await.contains("fm_cache_"),
        "cache counters are exported"
    );
}

/// Files too large for the cache: with S3, the large-file tier serves every read after the
/// first (whole and ranged) from its local copy, and never an old version; local disk has no
/// such tier (its files are local already), so every read is a miss.
pub async fn large_files_are_read_from_storage_once(s: &Server) {
    let loc = s.app("videos/large.bin");
    let first = bytes(3 * 1024 * 1024 + 7, 3);
    let second = bytes(3 * 1024 * 1024 + 9, 4);
    let s3 = s.backend == Backend::S3;
    let get = |range: Option<&'static str>| {
        let path = format!("/v1/files/{loc}");
        async move {
            let mut req = s.svc(Method::GET, &path);
            if let Some(r) = range {
                req = req.header("range", r);
            }
            let resp = req.send().await.unwrap();
            let hit = resp.headers()["x-cache"] == "hit";
            (resp.bytes().await.unwrap().to_vec(), hit)
        }
    };
    // A copy is committed just after the download that made it has sent its last byte.
    let filled = |n: u64| async move {
        if s3 {
            for _ in 0..600 {
                if s.metrics()
                    .await
                    .lines()
                    .any(|l| l == format!("fm_large_files_fills_total {n}"))
                {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("{n} copies were never made");
        }
    };
    s.put(&loc, first.clone()).await;
    let (body, hit) = get(None).await;
    assert!(body == first && !hit, "the first read goes to storage");
    filled(1).await;
    let (body, hit) = get(None).await;
    assert!(body == first, "second read differs");
    assert_eq!(hit, s3, "the second read of a large file from S3 is a hit");
    let (body, hit) = get(Some("bytes=1000000-1999999")).await;
    assert!(body == first[1_000_000..2_000_000]);
    assert_eq!(hit, s3);
    s.put(&loc, second.clone()).await;
    let (body, hit) = get(None).await;
    assert!(
        body == second && !hit,
        "an overwrite is never answered from the old copy"
    );
    filled(2).await;
    assert_eq!(
        s.metrics().await.contains("fm_large_files_"),
        s3,
        "the tier runs over S3 only"
    );
}

/// The stored form of `loc` on local disk (the one file under `files/` whose path ends with
/// the file's name, plus the store's own suffix).
fn stored_file(s: &Server, name: &str) -> std::path::PathBuf {
    fn walk(dir: &std::path::Path, name: &str, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, name, found);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(name))
            {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&s.data_dir.join("files"), name, &mut found);
    assert_eq!(found.len(), 1, "{found:?}");
    found.pop().unwrap()
}

/// Flips one bit `back` bytes before the end of the stored form of `name`.
fn damage(s: &Server, name: &str, back: usize) {
    let path = stored_file(s, name);
    let mut stored = std::fs::read(&path).unwrap();
    let at = stored.len() - back;
    stored[at] ^= 0x01;
    std::fs::write(&path, stored).unwrap();
}

/// An encrypted file whose stored bytes were changed is never served as if whole. A small one
/// (read whole before the headers go out) is refused with a 500 `integrity_error`; a large one
/// has sent its first chunks when the damage in its last one is met, so its answer is cut
/// short: the client sees a failed body, never the full length.
pub async fn damaged_files_are_never_served(s: &Server) {
    let small = bytes(5000, 11);
    let large = bytes(300 * 1024 + 5, 12);
    for (name, body) in [("small.bin", &small), ("large.bin", &large)] {
        let path = format!(
            "/v1/files/{}?cache=false",
            s.app(&format!("damaged/{name}"))
        );
        let resp = s
            .svc(Method::PUT, &path)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let resp = s.svc(Method::GET, &path).send().await.unwrap();
        assert_eq!(
            resp.bytes().await.unwrap(),
            body.as_slice(),
            "{name} reads back"
        );
        damage(s, name, 40);
    }

    let small_path = format!("/v1/files/{}?cache=false", s.app("damaged/small.bin"));
    let resp = s.svc(Method::GET, &small_path).send().await.unwrap();
    expect_error(resp, StatusCode::INTERNAL_SERVER_ERROR, "integrity_error").await;

    let large_path = format!("/v1/files/{}?cache=false", s.app("damaged/large.bin"));
    let resp = s.svc(Method::GET, &large_path).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the first chunks are sound");
    match resp.bytes().await {
        Err(_) => {}
        Ok(got) => panic!(
            "a damaged large file was answered in full ({} of {} bytes)",
            got.len(),
            large.len()
        ),
    }
}
