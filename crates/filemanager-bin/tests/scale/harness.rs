//! Shared harness of the hostile-input and scale tests: in-process service instances on real
//! loopback sockets, a raw HTTP/1.1 client (for requests an HTTP library would refuse or
//! normalise), a real redis-server, a loopback TCP balancer in front of S3 nodes, the 3-node
//! Garage cluster of `scripts/garage-cluster.sh`, and small utilities.
//!
//! Included with `#[path]` by `tests/hostile.rs` and `tests/scale.rs`; each uses a part.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use filemanager::{
    CacheSetup, FileManager, KeyConfig, LargeFileSetup, PresignConfig, S3Config, StorageConfig,
};
use filemanager_bin::http::auth::{Claims, sign_user_token};
use filemanager_bin::http::{self, AppState, ServiceConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub const SERVICE_KEY: &str = "hostile-service-key-0123456789abcdef";
pub const JWT_SECRET: &[u8] = b"hostile-jwt-secret-0123456789abcdef";
pub const KEY_HEX: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";
pub const PRESIGN_SECRET: &[u8] = b"hostile-presign-secret-hostile-presign-secret";

/// Secrets that must never appear in an answer.
pub const SECRETS: [&str; 4] = [
    SERVICE_KEY,
    "hostile-jwt-secret-0123456789abcdef",
    KEY_HEX,
    "hostile-presign-secret-hostile-presign-secret",
];

/// A random lower-case hex string of `n` bytes.
pub fn random_hex(n: usize) -> String {
    filemanager_bin::config::random_hex(n).unwrap()
}

/// An HTTP client that never uses a proxy (all traffic stays on loopback).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(180))
        .build()
        .expect("reqwest client")
}

/// A user token for `sub`, valid for an hour, optionally limited to `domains`.
pub fn user_token(sub: &str, domains: Option<Vec<String>>) -> String {
    sign_user_token(
        JWT_SECRET,
        &Claims {
            sub: sub.into(),
            exp: now_secs() + 3600,
            domains,
        },
    )
    .unwrap()
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// What an in-process instance is started with.
pub struct InstanceConfig {
    pub storage: StorageConfig,
    pub cache: Option<CacheSetup>,
    /// Local copies of large files, as `serve` keeps them for a remote backend.
    pub large: Option<LargeFileSetup>,
    pub max_upload: Option<u64>,
    /// `FM_DOMAINS`; empty serves all.
    pub domains: Vec<String>,
}

/// One `filemanager serve` equivalent: the service router on a real 127.0.0.1 socket.
pub struct Instance {
    pub base: String,
    pub addr: SocketAddr,
    pub fm: FileManager,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Instance {
    /// Starts an instance; must run inside a Tokio runtime (the cache bus needs one).
    pub async fn start(cfg: InstanceConfig) -> Instance {
        // FM_TEST_LOG=1: the service's warnings (backend errors and the like) on stderr, to
        // explain failures a long run reports.
        if std::env::var("FM_TEST_LOG").as_deref() == Ok("1") {
            let _ = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::WARN)
                .with_writer(std::io::stderr)
                .try_init();
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let fm = FileManager::builder(cfg.storage)
            .keys(KeyConfig::from_values(KEY_HEX, &[]).unwrap())
            .max_upload_bytes(cfg.max_upload)
            .cache(cfg.cache)
            .large_files(cfg.large)
            .presign(Some(PresignConfig {
                base_url: base.clone(),
                secret: zeroize::Zeroizing::new(PRESIGN_SECRET.to_vec()),
            }))
            .build()
            .expect("FileManager::build");
        let state = AppState::new(
            fm.clone(),
            ServiceConfig {
                api_keys: vec![SERVICE_KEY.into()],
                jwt_secret: Some(String::from_utf8(JWT_SECRET.to_vec()).unwrap()),
                domains: cfg.domains,
                cors_origins: Vec::new(),
            },
        )
        .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(http::run(listener, http::router(state), async move {
            let _ = stopped.await;
        }));
        Instance {
            base,
            addr,
            fm,
            stop: Some(stop),
            done: Some(done),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops accepting, lets requests in flight finish (bounded), and returns.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), d).await;
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The S3 settings from the environment, `None` (skip) with FM_SKIP_S3=1, else a failed test.
pub fn s3_from_env(what: &str) -> Option<S3Config> {
    match S3Config::from_env().expect("S3 environment is malformed") {
        Some(cfg) => Some(cfg),
        None if std::env::var("FM_SKIP_S3").as_deref() == Ok("1") => {
            eprintln!("skipping {what}: FM_SKIP_S3=1");
            None
        }
        None => panic!(
            "{what} needs S3: set APP_BUCKET, S3_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
             (scripts/garage.sh start /tmp/g && source /tmp/g/env), or FM_SKIP_S3=1 to skip"
        ),
    }
}

/// Peak resident set size of this process so far (VmHWM), in KiB.
pub fn peak_rss_kib() -> u64 {
    status_field("VmHWM:")
}

/// Resets the peak RSS (VmHWM) to the current RSS, so that a test reports its own peak even
/// when others ran before it in the same process (Linux `clear_refs` 5; ignored elsewhere).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Current resident set size (VmRSS), in KiB.
pub fn rss_kib() -> u64 {
    status_field("VmRSS:")
}

fn status_field(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Every regular file under `root`, as paths relative to it.
pub fn walk_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

// ----- raw HTTP/1.1 ----------------------------------------------------------------------------

/// A raw request: sent byte for byte, with `Host` and `Connection: close` added.
#[derive(Debug, Clone, Default)]
pub struct RawRequest {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    /// Header lines (name, value), sent as `name: value\r\n` without any checking.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Send the body with `Transfer-Encoding: chunked` instead of `Content-Length`.
    pub chunked: bool,
    /// Do not add a `Content-Length` (the headers carry their own framing, or none).
    pub no_length: bool,
    /// Close the write half after sending (the server sees EOF).
    pub half_close: bool,
}

/// What came back. `status` 0: the connection closed without an answer.
#[derive(Debug, Clone, Default)]
pub struct RawResponse {
    pub status: u16,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Sends `req` to `addr` on a fresh connection and reads the answer to the end. The body is
/// written while the answer is read, so an early refusal of a large body is still seen.
pub async fn raw_send(addr: SocketAddr, req: &RawRequest) -> RawResponse {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let mut head = Vec::new();
    head.extend_from_slice(&req.method);
    head.push(b' ');
    head.extend_from_slice(&req.target);
    head.extend_from_slice(b" HTTP/1.1\r\n");
    head.extend_from_slice(format!("Host: {addr}\r\nConnection: close\r\n").as_bytes());
    for (n, v) in &req.headers {
        head.extend_from_slice(n);
        head.extend_from_slice(b": ");
        head.extend_from_slice(v);
        head.extend_from_slice(b"\r\n");
    }
    let mut body = Vec::new();
    if req.chunked {
        head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        for chunk in req.body.chunks(64 * 1024) {
            body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            body.extend_from_slice(chunk);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
    } else {
        if !req.no_length && (!req.body.is_empty() || req.method != b"GET") {
            head.extend_from_slice(format!("Content-Length: {}\r\n", req.body.len()).as_bytes());
        }
        body.extend_from_slice(&req.body);
    }
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(&body);
    let half_close = req.half_close;
    let writer = tokio::spawn(async move {
        // A refused upload may be closed by the server while we still write: ignore that.
        let _ = wr.write_all(&head).await;
        let _ = wr.flush().await;
        if half_close {
            let _ = wr.shutdown().await;
        }
        // Keep the write half open (unless asked) until the answer is read.
        wr
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                // A reset after the answer arrived still leaves the answer in `out`.
                Err(_) => break,
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 30 s");
    drop(writer.await);
    parse_response(&out)
}

fn parse_response(raw: &[u8]) -> RawResponse {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return RawResponse::default();
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in lines {
        if let Some((n, v)) = l.split_once(':') {
            headers
                .entry(n.trim().to_ascii_lowercase())
                .or_default()
                .push(v.trim().to_owned());
        }
    }
    let rest = &raw[end + 4..];
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.iter().any(|t| t.eq_ignore_ascii_case("chunked")));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
        else {
            break;
        };
        raw = &raw[eol + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[(size + 2).min(raw.len())..];
    }
    out
}

// ----- redis -----------------------------------------------------------------------------------

/// A real redis-server on a free loopback port, stopped on drop.
pub struct Redis {
    pub port: u16,
    child: Child,
}

impl Redis {
    /// Starts redis-server; fails the test with a clear message unless FM_SKIP_REDIS=1.
    pub fn start() -> Option<Redis> {
        let port = free_port();
        let child = match Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(_) if std::env::var("FM_SKIP_REDIS").as_deref() == Ok("1") => {
                eprintln!("FM_SKIP_REDIS=1: skipping a Redis test");
                return None;
            }
            Err(e) => panic!(
                "redis-server is needed ({e}; apt-get install redis-server), or FM_SKIP_REDIS=1"
            ),
        };
        let r = Redis { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ----- loopback TCP balancer -------------------------------------------------------------------

/// A TCP load balancer on 127.0.0.1 in front of several backends (the S3 endpoints of a
/// cluster), as a production deployment puts one in front of its S3 nodes: each new client
/// connection goes to the next backend in turn that accepts a connection. A backend that dies
/// breaks the connections it carried (the client's retries take over) and is skipped after.
pub struct Balancer {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    pub async fn start(backends: Vec<SocketAddr>) -> Balancer {
        assert!(
            backends.iter().all(|b| b.ip().is_loopback()),
            "loopback only"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let next = Arc::new(AtomicUsize::new(0));
        let (stop2, conns2) = (stop.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                conns2.fetch_add(1, Ordering::Relaxed);
                let backends = backends.clone();
                let start = next.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut client = client;
                    for i in 0..backends.len() {
                        let b = backends[(start + i) % backends.len()];
                        let Ok(Ok(mut up)) =
                            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(b))
                                .await
                        else {
                            continue;
                        };
                        let _ = up.set_nodelay(true);
                        let _ = client.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                        return;
                    }
                });
            }
        });
        Balancer {
            addr,
            connections,
            stop,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

// ----- the 3-node Garage cluster ---------------------------------------------------------------

/// `scripts/garage-cluster.sh` driven from a test: started in a temporary directory, stopped
/// (and removed) on drop.
pub struct GarageCluster {
    pub dir: PathBuf,
    pub env: BTreeMap<String, String>,
    script: PathBuf,
}

impl GarageCluster {
    /// Starts the cluster, or `None` with FM_SKIP_S3=1 when Garage is not installed.
    pub fn start() -> Option<GarageCluster> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/garage-cluster.sh");
        let have_garage = Command::new("garage")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
            || std::env::var("HOME")
                .map(|h| Path::new(&h).join(".cargo/bin/garage").exists())
                .unwrap_or(false);
        if !have_garage {
            if std::env::var("FM_SKIP_S3").as_deref() == Ok("1") {
                eprintln!("skipping the Garage cluster test: no garage binary and FM_SKIP_S3=1");
                return None;
            }
            panic!(
                "the scale-out test needs the garage binary (scripts/garage.sh installs it), \
                 or FM_SKIP_S3=1 to skip"
            );
        }
        let dir = std::env::temp_dir().join(format!("fm-gcluster-{}", random_hex(6)));
        let mut c = GarageCluster {
            dir,
            env: BTreeMap::new(),
            script,
        };
        let out = c.run(&["start"]);
        assert!(out.0, "garage-cluster.sh start failed:\n{}", out.1);
        let text = std::fs::read_to_string(c.dir.join("env")).unwrap();
        c.env = text
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(c)
    }

    fn run(&self, args: &[&str]) -> (bool, String) {
        let (cmd, rest) = args.split_first().unwrap();
        let home = std::env::var("HOME").unwrap_or_default();
        let path = format!(
            "{home}/.cargo/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("bash")
            .arg(&self.script)
            .arg(cmd)
            .arg(&self.dir)
            .args(rest)
            .env("PATH", path)
            .output()
            .expect("bash");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The cluster's S3 settings, with `endpoint` as the S3 URL.
    pub fn s3_config(&self, endpoint: &str, bucket_var: &str) -> S3Config {
        let get = |name: &str| -> Option<String> {
            match name {
                "S3_URL" => Some(endpoint.to_owned()),
                "APP_BUCKET" => self.env.get(bucket_var).cloned(),
                _ => self.env.get(name).cloned(),
            }
        };
        S3Config::from_lookup(&get).unwrap().unwrap()
    }

    /// The S3 endpoints of the nodes, in node order.
    pub fn s3_addrs(&self) -> Vec<SocketAddr> {
        self.env["FM_GARAGE_S3_URLS"]
            .split(',')
            .map(|u| u.trim_start_matches("http://").parse().unwrap())
            .collect()
    }

    pub fn kill(&self, node: usize) {
        let out = self.run(&["kill", &node.to_string()]);
        assert!(out.0, "kill node {node}: {}", out.1);
    }

    pub fn revive(&self, node: usize) {
        let out = self.run(&["revive", &node.to_string()]);
        assert!(out.0, "revive node {node}: {}", out.1);
    }

    /// The health status word (`healthy`, `degraded`, `unavailable`).
    pub fn health(&self) -> String {
        let out = self.run(&["health"]);
        out.1
            .lines()
            .find(|l| l.contains("\"status\""))
            .and_then(|l| l.split('"').nth(3))
            .unwrap_or("unavailable")
            .to_owned()
    }

    /// Polls the health until it is `want`, at most `limit`; returns how long it took.
    pub async fn wait_health(&self, want: &str, limit: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            let h = tokio::task::block_in_place(|| self.health());
            if h == want {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < limit,
                "the Garage cluster is {h}, not {want}, after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        let _ = self.run(&["stop"]);
    }
}
