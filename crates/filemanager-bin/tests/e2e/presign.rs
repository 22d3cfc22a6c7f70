//! Presigned URLs: issued by /v1/urls/*, honoured without a token, refused (403, nothing
//! stored) when changed in any way, expired, or used with another method or content type.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

async fn presign(s: &Server, token: &str, kind: &str, body: Value) -> reqwest::Response {
    s.with(token, Method::POST, &format!("/v1/urls/{kind}"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn upload_url(s: &Server, filename: &str, extra: Value) -> Value {
    let mut body = json!({"domain": s.domain, "level": "user", "user_id": "1",
                          "filename": filename, "content_type": "text/plain"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    expect(
        presign(s, SERVICE_KEY, "upload", body).await,
        StatusCode::OK,
    )
    .await
}

async fn download_url(s: &Server, filename: &str, expires_in: Option<u64>) -> Value {
    let mut body =
        json!({"domain": s.domain, "level": "user", "user_id": "1", "filename": filename});
    if let Some(e) = expires_in {
        body["expires_in"] = e.into();
    }
    expect(
        presign(s, SERVICE_KEY, "download", body).await,
        StatusCode::OK,
    )
    .await
}

fn replace_param(url: &str, name: &str, value: Option<&str>) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let parts: Vec<String> = query
        .split('&')
        .filter_map(|kv| {
            let (k, _) = kv.split_once('=').unwrap();
            if k == name {
                value.map(|v| format!("{k}={v}"))
            } else {
                Some(kv.to_owned())
            }
        })
        .collect();
    format!("{base}?{}", parts.join("&"))
}

pub async fn upload_and_download_urls_work_without_a_token(s: &Server) {
    let u = upload_url(
        s,
        "p/up.txt",
        json!({"max_size": 100, "compress": true, "expires_in": 120}),
    )
    .await;
    assert_eq!(u["success"], true);
    assert_eq!(u["method"], "PUT");
    assert_eq!(u["expires_in"], 120);
    assert_eq!(u["headers"]["Content-Type"], "text/plain");
    let url = u["url"].as_str().unwrap();
    assert!(
        url.starts_with(&s.base),
        "absolute URL on the service: {url}"
    );
    chrono::DateTime::parse_from_rfc3339(u["expires_at"].as_str().unwrap()).unwrap();
    let resp = s
        .client
        .put(url)
        .header("Content-Type", "text/plain")
        .body("via presigned URL")
        .send()
        .await
        .unwrap();
    let f = expect(resp, StatusCode::CREATED).await;
    assert_eq!(f["compressed"], true);
    assert_eq!(f["encrypted"], true, "encrypted as asked (default)");
    assert_eq!(f["key"], s.user("1", "p/up.txt"));

    let d = download_url(s, "p/up.txt", None).await;
    assert_eq!(d["method"], "GET");
    assert_eq!(d["expires_in"], 3600);
    let url = d["url"].as_str().unwrap();
    let resp = s.client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "via presigned URL");
    let resp = s
        .client
        .get(url)
        .header("Range", "bytes=4-12")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 4-12/17");
    assert_eq!(resp.text().await.unwrap(), "presigned");
    let resp = s.client.head(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "17");

    // Unencrypted when asked.
    let u = upload_url(s, "p/plain.txt", json!({"encrypt": false})).await;
    let resp = s
        .client
        .put(u["url"].as_str().unwrap())
        .header("Content-Type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(expect(resp, StatusCode::CREATED).await["encrypted"], false);
}

pub async fn changed_urls_are_refused(s: &Server) {
    let u = upload_url(s, "t/x.txt", json!({"max_size": 100, "compress": false})).await;
    let url = u["url"].as_str().unwrap().to_owned();
    let sig = url.rsplit("sig=").next().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('0') { "1" } else { "0" },
        &sig[1..]
    );
    let other_path = url.replace("/t/x.txt?", "/t/y.txt?");
    let tampered = vec![
        ("method", replace_param(&url, "method", Some("GET"))),
        ("expires", {
            let e: i64 = url
                .split("expires=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            replace_param(&url, "expires", Some(&(e + 3600).to_string()))
        }),
        ("ct", replace_param(&url, "ct", Some("image%2Fpng"))),
        ("max", replace_param(&url, "max", Some("1000000"))),
        ("max removed", replace_param(&url, "max", None)),
        ("compress", replace_param(&url, "compress", Some("1"))),
        ("encrypt", replace_param(&url, "encrypt", Some("0"))),
        ("sig", replace_param(&url, "sig", Some(&flipped))),
        (
            "sig removed but other params kept",
            replace_param(&url, "sig", Some("")),
        ),
        ("extra param", format!("{url}&cache=false")),
        ("path", other_path.clone()),
        ("user", url.replace("/user/1/", "/user/2/")),
    ];
    for (what, changed) in tampered {
        let ct = if what == "ct" {
            "image/png"
        } else {
            "text/plain"
        };
        let resp = s
            .client
            .put(&changed)
            .header("Content-Type", ct)
            .body("tampered")
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::FORBIDDEN, "forbidden").await;
        let _ = what;
    }
    assert!(!s.exists(&s.user("1", "t/x.txt")).await, "nothing stored");
    assert!(!s.exists(&s.user("1", "t/y.txt")).await, "nothing stored");
    assert!(!s.exists(&s.user("2", "t/x.txt")).await, "nothing stored");

    // Download URLs too.
    s.put(&s.user("1", "t/secret.txt"), "secret").await;
    s.put(&s.user("1", "t/other.txt"), "other").await;
    let d = download_url(s, "t/secret.txt", None).await;
    let url = d["url"].as_str().unwrap();
    for changed in [
        url.replace("/t/secret.txt?", "/t/other.txt?"),
        replace_param(url, "expires", Some("99999999999")),
        replace_param(url, "method", Some("PUT")),
        format!("{url}&x=1"),
        replace_param(url, "sig", Some("00")),
    ] {
        let resp = s.client.get(&changed).send().await.unwrap();
        expect_error(resp, StatusCode::FORBIDDEN, "forbidden").await;
    }
}

pub async fn urls_only_allow_their_method(s: &Server) {
    s.put(&s.user("1", "m.txt"), "keep").await;
    let d = download_url(s, "m.txt", None).await;
    let url = d["url"].as_str().unwrap();
    for m in [Method::PUT, Method::DELETE] {
        let resp = s.client.request(m, url).body("x").send().await.unwrap();
        expect_error(resp, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let u = upload_url(s, "m.txt", json!({})).await;
    let url = u["url"].as_str().unwrap();
    for m in [Method::GET, Method::DELETE] {
        let resp = s.client.request(m, url).send().await.unwrap();
        expect_error(resp, StatusCode::FORBIDDEN, "forbidden").await;
    }
    assert_eq!(s.get_bytes(&s.user("1", "m.txt")).await, b"keep");
}

pub async fn upload_urls_enforce_content_type_and_size(s: &Server) {
    let u = upload_url(s, "ct.txt", json!({"max_size": 100})).await;
    let url = u["url"].as_str().unwrap();
    for ct in [Some("image/png"), Some("text/plain; charset=utf-8"), None] {
        let mut req = s.client.put(url).body("x");
        if let Some(ct) = ct {
            req = req.header("Content-Type", ct);
        }
        let resp = req.send().await.unwrap();
        expect_error(resp, StatusCode::FORBIDDEN, "forbidden").await;
    }
    assert!(!s.exists(&s.user("1", "ct.txt")).await);

    // Over max_size, with a declared length and chunked.
    let resp = s
        .client
        .put(url)
        .header("Content-Type", "text/plain")
        .body(vec![b'a'; 200])
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = (0..4).map(|_| Ok(vec![b'a'; 50])).collect();
    let resp = s
        .client
        .put(url)
        .header("Content-Type", "text/plain")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert!(!s.exists(&s.user("1", "ct.txt")).await, "nothing stored");
    let resp = s
        .client
        .put(url)
        .header("Content-Type", "text/plain")
        .body(vec![b'a'; 100])
        .send()
        .await
        .unwrap();
    expect(resp, StatusCode::CREATED).await;
}

pub async fn expired_urls_are_refused(s: &Server) {
    s.put(&s.user("1", "e.txt"), "x").await;
    let d = download_url(s, "e.txt", Some(1)).await;
    let u = upload_url(s, "e2.txt", json!({"expires_in": 1})).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let resp = s
        .client
        .get(d["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::FORBIDDEN, "forbidden").await;
    let resp = s
        .client
        .put(u["url"].as_str().unwrap())
        .header("Content-Type", "text/plain")
        .body("late")
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(!s.exists(&s.user("1", "e2.txt")).await);
}

pub async fn url_requests_are_validated(s: &Server) {
    for body in [
        json!({"domain": s.domain, "level": "user", "user_id": "1", "filename": "a", "expires_in": 0}),
        json!({"domain": s.domain, "level": "user", "user_id": "1", "filename": "a", "expires_in": 604801}),
        json!({"domain": s.domain, "level": "app", "filename": "../a"}),
        json!({"domain": s.domain, "level": "team", "filename": "a"}),
        json!({"domain": s.domain, "level": "user", "filename": "a"}),
        json!({"level": "app", "filename": "a"}),
    ] {
        let resp = presign(s, SERVICE_KEY, "download", body.clone()).await;
        expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let resp = presign(
        s,
        SERVICE_KEY,
        "upload",
        json!({"domain": s.domain, "level": "app", "filename": "a"}),
    )
    .await;
    expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    let resp = s
        .svc(Method::POST, "/v1/urls/upload")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    let max = json!({"domain": s.domain, "level": "app", "filename": "a", "expires_in": 604800});
    expect(
        presign(s, SERVICE_KEY, "download", max).await,
        StatusCode::OK,
    )
    .await;

    // A user presigns in their own space only.
    let owner = user_token("1", None);
    let own = json!({"domain": s.domain, "level": "user", "user_id": "1", "filename": "a", "content_type": "text/plain"});
    expect(
        presign(s, &owner, "upload", own.clone()).await,
        StatusCode::OK,
    )
    .await;
    let other = json!({"domain": s.domain, "level": "user", "user_id": "2", "filename": "a", "content_type": "text/plain"});
    expect_error(
        presign(s, &owner, "upload", other).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

/// `direct: true`: a SigV4 URL straight to the bucket for a plain file on S3; refused (400) for
/// encrypted files, for uploads, and on backends that cannot sign.
pub async fn direct_urls_go_straight_to_the_bucket(s: &Server) {
    let plain = format!("/v1/files/{}/user/1/direct.txt?encrypt=false", s.domain);
    let resp = s
        .svc(Method::PUT, &plain)
        .body("straight from the bucket")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let sealed = format!("/v1/files/{}/user/1/sealed.txt", s.domain);
    let resp = s
        .svc(Method::PUT, &sealed)
        .body("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let ask = |filename: &str| {
        json!({"domain": s.domain, "level": "user", "user_id": "1", "filename": filename,
               "direct": true, "expires_in": 600})
    };
    let resp = presign(s, SERVICE_KEY, "download", ask("direct.txt")).await;
    match s.backend {
        Backend::S3 => {
            let url = expect(resp, StatusCode::OK).await;
            let url = url["url"].as_str().unwrap().to_owned();
            let s3 = std::env::var("S3_URL").unwrap();
            assert!(url.starts_with(&s3), "{url} does not point at the bucket");
            assert!(url.contains("X-Amz-Signature="), "{url}");
            let got = s.client.get(&url).send().await.unwrap();
            assert_eq!(got.status(), StatusCode::OK);
            assert_eq!(got.text().await.unwrap(), "straight from the bucket");
            let refused = presign(s, SERVICE_KEY, "download", ask("sealed.txt")).await;
            expect_error(refused, StatusCode::BAD_REQUEST, "invalid_request").await;
        }
        Backend::Local => {
            expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
        }
    }
    let mut up = ask("x.txt");
    up["content_type"] = "text/plain".into();
    let resp = presign(s, SERVICE_KEY, "upload", up).await;
    expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
}
