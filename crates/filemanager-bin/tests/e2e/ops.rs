//! Operations routes, CORS, unknown routes and graceful shutdown.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::*;

pub async fn health_metrics_and_openapi(s: &Server) {
    let resp = s.anon(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(expect(resp, StatusCode::OK).await["status"], "ok");
    let resp = s.anon(Method::GET, "/readyz").send().await.unwrap();
    let ready = expect(resp, StatusCode::OK).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        ready["backend"],
        if s.backend == Backend::S3 {
            "s3"
        } else {
            "local"
        }
    );

    s.put(&s.app("m.txt"), "12345").await;
    s.get_bytes(&s.app("m.txt")).await;
    let resp = s.anon(Method::GET, "/metrics").send().await.unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(
            r#"fm_http_requests_total{method="PUT",route="/v1/files/{*loc}",status="201"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("fm_http_request_bytes_total 5"), "{text}");
    assert!(text.contains("fm_http_response_bytes_total 5"), "{text}");
    assert!(
        text.contains(r#"fm_storage_seconds_count{op="upload"} 1"#),
        "{text}"
    );

    let resp = s.anon(Method::GET, "/openapi.json").send().await.unwrap();
    let doc = expect(resp, StatusCode::OK).await;
    assert_eq!(doc["openapi"], "3.1.0");
    for p in [
        "/v1/files/{domain}/app/{filename}",
        "/v1/files/{domain}/user/{user_id}/{filename}",
        "/v1/meta/{domain}/app/{filename}",
        "/v1/list/{domain}/user/{user_id}",
        "/v1/urls/upload",
        "/v1/urls/download",
        "/healthz",
    ] {
        assert!(doc["paths"][p].is_object(), "{p}");
    }
}

pub async fn unknown_routes_answer_json(s: &Server) {
    let resp = s.svc(Method::GET, "/v2/nothing").send().await.unwrap();
    expect_error(resp, StatusCode::NOT_FOUND, "not_found").await;
    let resp = s
        .svc(Method::POST, &format!("/v1/files/{}", s.app("x")))
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    // The file routes need something after their prefix, as the router's `{*loc}` does:
    // with nothing, no route matches (not an invalid location).
    for path in ["/v1/files/", "/v1/files"] {
        let resp = s.svc(Method::GET, path).send().await.unwrap();
        expect_error(resp, StatusCode::NOT_FOUND, "not_found").await;
    }
    let resp = s.anon(Method::GET, "/metrics").send().await.unwrap();
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(r#"fm_http_requests_total{method="GET",route="unmatched",status="404"}"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"fm_http_requests_total{method="POST",route="/v1/files/{*loc}",status="405"} 1"#
        ),
        "{text}"
    );
    // A client's id that is not short and plain is replaced by one of ours.
    for bad in ["a b", "x".repeat(65).as_str(), "a/b", "a.b"] {
        let resp = s
            .svc(Method::GET, "/healthz")
            .header("X-Request-Id", bad)
            .send()
            .await
            .unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let (start, n) = id.split_once('-').unwrap();
        assert!(
            u64::from_str_radix(start, 16).is_ok() && u64::from_str_radix(n, 16).is_ok(),
            "{id}"
        );
    }
    let resp = s
        .svc(Method::GET, "/healthz")
        .header("X-Request-Id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let resp = s.svc(Method::GET, "/healthz").send().await.unwrap();
    assert!(!resp.headers()["x-request-id"].is_empty());
}

pub async fn cors(s: &Server) {
    let path = format!("/v1/files/{}", s.app("cors.txt"));
    let resp = s
        .anon(Method::OPTIONS, &path)
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "PUT")
        .header("Access-Control-Request-Headers", "content-type,x-meta-alt")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PUT")
    );
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("x-meta-alt")
    );

    let resp = s
        .anon(Method::OPTIONS, &path)
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(!resp.headers().contains_key("access-control-allow-origin"));

    let resp = s
        .svc(Method::PUT, &path)
        .header("X-Meta-Alt", "a")
        .body("x")
        .send()
        .await
        .unwrap();
    expect(resp, StatusCode::CREATED).await;
    let resp = s
        .svc(Method::GET, &path)
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for h in ["etag", "content-range", "x-cache", "x-meta-alt"] {
        assert!(exposed.contains(h), "{exposed}");
    }
}

pub async fn shutdown_lets_requests_finish(mut s: Server) {
    // A slow chunked upload is in flight when shutdown begins; it still completes.
    let pieces = futures::stream::unfold(0u8, |i| async move {
        if i == 6 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, std::io::Error>(vec![i; 1000]), i + 1))
    });
    let req = s
        .svc(Method::PUT, &format!("/v1/files/{}", s.app("slow.bin")))
        .body(reqwest::Body::wrap_stream(pieces))
        .send();
    let upload = tokio::spawn(req);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let server_done = s.begin_shutdown();
    let resp = upload.await.unwrap().unwrap();
    let f: Value = expect(resp, StatusCode::CREATED).await;
    assert_eq!(f["size"], 6000);
    tokio::time::timeout(Duration::from_secs(10), server_done)
        .await
        .expect("server stops after the request")
        .unwrap()
        .unwrap();
    // New connections are refused now.
    assert!(s.anon(Method::GET, "/healthz").send().await.is_err());
}
