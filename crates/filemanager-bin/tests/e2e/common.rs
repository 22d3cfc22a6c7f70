//! The test server (in process, on a real TCP socket) and client helpers.

use std::path::PathBuf;

use filemanager::{
    CacheSetup, FileManager, KeyConfig, LargeFileSetup, PresignConfig, S3Config, StorageConfig,
};
use filemanager_bin::http::auth::{Claims, sign_user_token};
use filemanager_bin::http::{self, AppState, ServiceConfig};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const SERVICE_KEY: &str = "test-service-key-0123456789";
pub const JWT_SECRET: &[u8] = b"test-jwt-secret-0123456789abcdef";
pub const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
pub const PRESIGN_SECRET: &[u8] = b"presign-secret-presign-secret-presign-secret";

/// Where the server stores files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    S3,
}

/// Knobs of a test server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub max_upload: Option<u64>,
    /// Restrict to the server's own domain plus these.
    pub only_domains: Option<Vec<String>>,
    pub cors: Vec<String>,
}

/// A running service on 127.0.0.1 with its own random domain (so tests sharing a bucket never
/// see each other's files).
pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub domain: String,
    pub backend: Backend,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

pub fn random_hex(n: usize) -> String {
    filemanager_bin::config::random_hex(n).unwrap()
}

/// The S3 settings from the environment, or `None` (skip) when FM_SKIP_S3=1. Without either
/// the test fails: the suite must run against real S3.
pub fn s3_config() -> Option<S3Config> {
    match S3Config::from_env().expect("S3 environment is malformed") {
        Some(cfg) => Some(cfg),
        None if std::env::var("FM_SKIP_S3").as_deref() == Ok("1") => {
            eprintln!("skipping an S3 test: FM_SKIP_S3=1");
            None
        }
        None => panic!(
            "S3 end-to-end tests need APP_BUCKET, S3_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
             (scripts/test.sh starts Garage and sets them; by hand: scripts/garage.sh start /tmp/g && \
             source /tmp/g/env), or FM_SKIP_S3=1 to skip them"
        ),
    }
}

pub fn client() -> reqwest::Client {
    // The workspace's reqwest is built with rustls and no default crypto provider; plain HTTP
    // needs none, but the client builder still wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

impl Server {
    pub async fn start(backend: Backend) -> Option<Server> {
        Server::start_with(backend, Options::default()).await
    }

    pub async fn start_with(backend: Backend, opts: Options) -> Option<Server> {
        let dir = tempfile::tempdir().unwrap();
        // The cache as `serve` sets it up: memory plus a disk tier in the data directory.
        let cache = CacheSetup::with_disk(dir.path().join("cache"));
        let storage = match backend {
            Backend::Local => StorageConfig::Local {
                root: dir.path().join("files"),
            },
            Backend::S3 => StorageConfig::S3(s3_config()?),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let fm = FileManager::builder(storage)
            .keys(KeyConfig::from_values(KEY_HEX, &[]).unwrap())
            .max_upload_bytes(opts.max_upload)
            .cache(Some(cache))
            .large_files(Some(LargeFileSetup::new(
                dir.path().join("cache-large"),
                1 << 30,
            )))
            .presign(Some(PresignConfig {
                base_url: base.clone(),
                secret: zeroize::Zeroizing::new(PRESIGN_SECRET.to_vec()),
            }))
            .build()
            .unwrap();
        let domain = format!("t{}", random_hex(6));
        let domains = match opts.only_domains {
            Some(mut extra) => {
                extra.push(domain.clone());
                extra
            }
            None => Vec::new(),
        };
        let state = AppState::new(
            fm,
            ServiceConfig {
                api_keys: vec!["another-key".into(), SERVICE_KEY.into()],
                jwt_secret: Some(String::from_utf8(JWT_SECRET.to_vec()).unwrap()),
                domains,
                cors_origins: opts.cors,
            },
        )
        .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(http::run(listener, http::router(state), async move {
            let _ = stopped.await;
        }));
        Some(Server {
            base,
            client: client(),
            domain,
            backend,
            data_dir: dir.path().to_owned(),
            stop: Some(stop),
            done: Some(done),
            _dir: dir,
        })
    }

    /// Signals shutdown without waiting.
    pub fn begin_shutdown(&mut self) -> tokio::task::JoinHandle<std::io::Result<()>> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.done.take().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `{domain}/app/{name}`.
    pub fn app(&self, name: &str) -> String {
        format!("{}/app/{name}", self.domain)
    }

    /// `{domain}/user/{user}/{name}`.
    pub fn user(&self, user: &str, name: &str) -> String {
        format!("{}/user/{user}/{name}", self.domain)
    }

    pub fn anon(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A request with the service key.
    pub fn svc(&self, method: Method, path: &str) -> RequestBuilder {
        self.anon(method, path).bearer_auth(SERVICE_KEY)
    }

    /// A request with `token`.
    pub fn with(&self, token: &str, method: Method, path: &str) -> RequestBuilder {
        self.anon(method, path).bearer_auth(token)
    }

    /// Uploads `body` to `loc` with the service key; asserts 201 and returns the file object.
    pub async fn put(&self, loc: &str, body: impl Into<reqwest::Body>) -> Value {
        let resp = self
            .svc(Method::PUT, &format!("/v1/files/{loc}"))
            .body(body)
            .send()
            .await
            .unwrap();
        expect(resp, StatusCode::CREATED).await
    }

    /// Downloads `loc` with the service key; asserts 200 and returns the bytes.
    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn get_bytes(&self, loc: &str) -> Vec<u8> {
        let resp = self
            .svc(Method::GET, &format!("/v1/files/{loc}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "GET {loc}");
        resp.bytes().await.unwrap().to_vec()
    }

    /// Whether `loc` exists (metadata route with the service key).
    pub async fn exists(&self, loc: &str) -> bool {
        let resp = self
            .svc(Method::GET, &format!("/v1/meta/{loc}"))
            .send()
            .await
            .unwrap();
        match resp.status() {
            StatusCode::OK => true,
            StatusCode::NOT_FOUND => false,
            s => panic!("meta {loc}: {s}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A user token for `sub`, valid for an hour, optionally limited to `domains`.
pub fn user_token(sub: &str, domains: Option<Vec<String>>) -> String {
    sign_user_token(
        JWT_SECRET,
        &Claims {
            sub: sub.into(),
            exp: jsonwebtoken::get_current_timestamp() + 3600,
            domains,
        },
    )
    .unwrap()
}

/// Asserts the status and returns the JSON body.
pub async fn expect(resp: Response, status: StatusCode) -> Value {
    let got = resp.status();
    let url = resp.url().path().to_owned();
    let body = resp.bytes().await.unwrap();
    assert_eq!(
        got,
        status,
        "{url}: body {}",
        String::from_utf8_lossy(&body)
    );
    if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    }
}

/// Asserts an error answer: status, the contract's JSON shape, and the code.
pub async fn expect_error(resp: Response, status: StatusCode, code: &str) -> Value {
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = expect(resp, status).await;
    assert_eq!(ct.as_deref(), Some("application/json"));
    assert_eq!(body["success"], Value::Bool(false), "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    assert_eq!(body["error"].as_object().unwrap().len(), 2, "{body}");
    body
}

/// Sends raw request `head` (request line and headers, without the final blank line) over a
/// fresh connection and returns the status code. For paths an HTTP client would normalise.
pub async fn raw_status(server: &Server, head: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Deterministic pseudo-random bytes.
pub fn bytes(n: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}
