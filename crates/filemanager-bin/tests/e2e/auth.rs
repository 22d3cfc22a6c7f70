//! The auth matrix: every route × {no token, malformed, bad signature, expired, alg none,
//! other user, user of another domain, owner, service key}.

use filemanager_bin::http::auth::{Claims, sign_user_token};
use reqwest::{Method, StatusCode};

use crate::common::*;

/// The routes on `{domain}/user/1/…`, in an order that leaves the file in place until the
/// final delete.
fn user_routes(s: &Server) -> Vec<(Method, String, Option<String>)> {
    let d = &s.domain;
    let file = format!("/v1/files/{d}/user/1/doc.txt");
    let url_body = format!(
        r#"{{"domain":"{d}","level":"user","user_id":"1","filename":"doc.txt","content_type":"text/plain"}}"#
    );
    vec![
        (Method::PUT, file.clone(), Some("by caller".into())),
        (Method::GET, file.clone(), None),
        (Method::HEAD, file.clone(), None),
        (Method::GET, format!("/v1/meta/{d}/user/1/doc.txt"), None),
        (Method::GET, format!("/v1/list/{d}/user/1"), None),
        (
            Method::POST,
            "/v1/urls/upload".into(),
            Some(url_body.clone()),
        ),
        (Method::POST, "/v1/urls/download".into(), Some(url_body)),
        (Method::DELETE, file, None),
    ]
}

fn success(method: &Method, path: &str) -> u16 {
    match (method, path) {
        (&Method::PUT, _) => 201,
        _ => 200,
    }
}

async fn send(
    s: &Server,
    token: Option<&str>,
    raw_auth: Option<&str>,
    m: &Method,
    path: &str,
    body: &Option<String>,
) -> reqwest::Response {
    let mut req = s.anon(m.clone(), path);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(h) = raw_auth {
        req = req.header("Authorization", h);
    }
    if let Some(b) = body {
        req = req.body(b.clone());
    }
    req.send().await.unwrap()
}

async fn check(
    resp: reqwest::Response,
    m: &Method,
    status: u16,
    code: &str,
    who: &str,
    path: &str,
) {
    assert_eq!(resp.status().as_u16(), status, "{who}: {m} {path}");
    if m != Method::HEAD && status >= 400 {
        expect_error(resp, StatusCode::from_u16(status).unwrap(), code).await;
    }
}

/// Who, bearer token, raw Authorization header, expected status and code.
type Denied<'a> = (&'a str, Option<&'a str>, Option<&'a str>, u16, &'a str);

pub async fn auth_matrix(s: &Server) {
    let d = s.domain.clone();
    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    let forged = sign_user_token(
        b"some-other-secret-of-enough-length",
        &Claims {
            sub: "1".into(),
            exp,
            domains: None,
        },
    )
    .unwrap();
    let expired = sign_user_token(
        JWT_SECRET,
        &Claims {
            sub: "1".into(),
            exp: exp - 7200,
            domains: None,
        },
    )
    .unwrap();
    // {"alg":"none"} with sub 1: must never pass.
    let none = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        "eyJzdWIiOiIxIiwiZXhwIjo5OTk5OTk5OTk5fQ"
    );
    let other_user = user_token("2", None);
    let other_domain = user_token("1", Some(vec!["elsewhere".into()]));
    let owner = user_token("1", None);
    let owner_here = user_token("1", Some(vec![d.clone(), "elsewhere".into()]));

    let denied: Vec<Denied> = vec![
        ("no token", None, None, 401, "unauthorized"),
        ("malformed", None, Some("Bearer"), 401, "unauthorized"),
        (
            "basic",
            None,
            Some("Basic dXNlcjpwYXNz"),
            401,
            "unauthorized",
        ),
        ("garbage", Some("not-a-token"), None, 401, "unauthorized"),
        ("garbage jwt", Some("a.b.c"), None, 401, "unauthorized"),
        ("bad signature", Some(&forged), None, 401, "unauthorized"),
        ("expired", Some(&expired), None, 401, "unauthorized"),
        ("alg none", Some(&none), None, 401, "unauthorized"),
        ("other user", Some(&other_user), None, 403, "forbidden"),
        ("other domain", Some(&other_domain), None, 403, "forbidden"),
    ];
    s.put(&s.user("1", "doc.txt"), "original").await;
    for (who, token, raw, status, code) in &denied {
        for (m, path, body) in user_routes(s) {
            let resp = send(s, *token, *raw, &m, &path, &body).await;
            check(resp, &m, *status, code, who, &path).await;
        }
    }
    assert_eq!(
        s.get_bytes(&s.user("1", "doc.txt")).await,
        b"original",
        "refused requests changed nothing"
    );

    for (who, token) in [
        ("owner", owner.as_str()),
        ("owner with domains", &owner_here),
        ("service", SERVICE_KEY),
    ] {
        for (m, path, body) in user_routes(s) {
            let resp = send(s, Some(token), None, &m, &path, &body).await;
            assert_eq!(
                resp.status().as_u16(),
                success(&m, &path),
                "{who}: {m} {path}"
            );
        }
    }

    // APP level: users read and list, but do not write, delete or presign.
    s.put(&s.app("shared.txt"), "shared").await;
    let app_file = format!("/v1/files/{d}/app/shared.txt");
    let app_url = format!(
        r#"{{"domain":"{d}","level":"app","filename":"shared.txt","content_type":"text/plain"}}"#
    );
    for token in [&owner, &other_user] {
        for (m, path) in [
            (Method::GET, app_file.clone()),
            (Method::HEAD, app_file.clone()),
            (Method::GET, format!("/v1/meta/{d}/app/shared.txt")),
            (Method::GET, format!("/v1/list/{d}/app")),
        ] {
            let resp = send(s, Some(token), None, &m, &path, &None).await;
            assert_eq!(resp.status(), 200, "user reads {path}");
        }
        for (m, path, body) in [
            (Method::PUT, app_file.clone(), Some("x".to_owned())),
            (Method::DELETE, app_file.clone(), None),
            (
                Method::POST,
                "/v1/urls/upload".to_owned(),
                Some(app_url.clone()),
            ),
            (
                Method::POST,
                "/v1/urls/download".to_owned(),
                Some(app_url.clone()),
            ),
        ] {
            let resp = send(s, Some(token), None, &m, &path, &body).await;
            check(resp, &m, 403, "forbidden", "user on app", &path).await;
        }
    }
    let resp = send(s, Some(&other_domain), None, &Method::GET, &app_file, &None).await;
    check(
        resp,
        &Method::GET,
        403,
        "forbidden",
        "other domain on app",
        &app_file,
    )
    .await;
    assert_eq!(s.get_bytes(&s.app("shared.txt")).await, b"shared");

    // 401 comes with a WWW-Authenticate challenge.
    let resp = s.anon(Method::GET, &app_file).send().await.unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
}

pub async fn open_routes_need_no_token(s: &Server) {
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let resp = s.anon(Method::GET, path).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
}
