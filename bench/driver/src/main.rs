//! Load driver of `bench/run.sh`.
//!
//! ```text
//! fm-bench-driver gen PATH SIZE                      write SIZE bytes of the sample data to PATH
//! fm-bench-driver presign GET|PUT KEY                a SigV4 presigned URL of KEY in $APP_BUCKET
//! fm-bench-driver get URL [opts]                     timed sequential GETs (body streamed, discarded)
//! fm-bench-driver put URL --size N [opts]            timed sequential PUTs of N sample bytes,
//!                                                    new ones each time (see `fresh`)
//! fm-bench-driver s3put KEY --size N [--unsigned] [--count N] [--label L] [--out F]
//!                                                    timed object_store multipart uploads to
//!                                                    $APP_BUCKET, 8 MiB parts, 2 in flight (as
//!                                                    FileManager does), payload signed or not
//! fm-bench-driver serve-bare ADDR SIZE               an HTTP/1 server answering every request
//!                                                    with SIZE bytes and the headers of
//!                                                    FileManager's cached download
//!
//! opts: --count N (timed requests, default 1)   --warmup N (untimed first, default 0)
//!       -H 'Name: value' (repeatable)           --expect 'name: value' (response header check)
//!       --label TEXT                            --out FILE (append the JSON line, else stdout)
//!       --fresh (a new connection for every request instead of one keep-alive connection)
//!       --quickack (GET only: a minimal HTTP/1.1 client on one keep-alive connection that sets
//!                  TCP_QUICKACK after each request, like FileManager's client for plain-http
//!                  S3 endpoints; the stall-free raw peer for Garage, see BENCHMARKS.md)
//! ```
//!
//! Both sides of every comparison use the same client (reqwest/hyper, HTTP/1.1, keep-alive,
//! one connection, plain HTTP on loopback): object_store is used only to sign the raw S3 URL.
//! Each run prints one JSON line: `{"label", "kind", "count", "bytes", "secs": [...]}` where
//! `bytes` is the body size of one request and `secs` the time of each timed request, from
//! sending it to the last byte of the answer.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::signer::Signer;

type Res<T> = Result<T, String>;

/// An error and its causes, `: `-separated (reqwest's own text leaves out what went wrong
/// underneath, e.g. a reset connection).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

fn main() -> ExitCode {
    // reqwest is built without a bundled TLS provider (only plain HTTP is used here, but the
    // client builder wants a provider installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The server runs on the runtime the service uses (one worker per core it may use); the
    // clients on one thread.
    let rt = if args.first().is_some_and(|c| c == "serve-bare") {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    }
    .enable_all()
    .build()
    .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fm-bench-driver: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Vec<String>) -> Res<()> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err("usage: fm-bench-driver gen|presign|get|put ...".into());
    };
    match cmd.as_str() {
        "gen" => {
            let [path, size] = rest else {
                return Err("usage: gen PATH SIZE".into());
            };
            let size: usize = size.parse().map_err(|_| "SIZE must be a number")?;
            std::fs::write(path, sample(size)).map_err(|e| format!("{path}: {e}"))
        }
        "presign" => {
            let [method, key] = rest else {
                return Err("usage: presign GET|PUT KEY".into());
            };
            println!("{}", presign(method, key).await?);
            Ok(())
        }
        "get" | "put" => {
            let o = Opts::parse(rest)?;
            if o.quickack {
                if cmd != "get" || o.fresh || o.expect.is_some() {
                    return Err("--quickack: plain GETs on one connection only".into());
                }
                get_quickack(o).await
            } else {
                transfer(cmd, o).await
            }
        }
        "s3put" => s3put(Opts::parse(rest)?).await,
        "serve-bare" => {
            let [addr, size] = rest else {
                return Err("usage: serve-bare ADDR SIZE".into());
            };
            let size: usize = size.parse().map_err(|_| "SIZE must be a number")?;
            serve_bare(addr, Bytes::from(sample(size))).await
        }
        other => Err(format!("unknown command {other:?}")),
    }
}

/// Deterministic sample content: alternating runs (0.5–8 KiB) of word-like text and of
/// pseudo-random bytes, so zstd gets roughly 2:1 and has to work through both kinds.
fn sample(size: usize) -> Vec<u8> {
    const WORDS: [&[u8]; 10] = [
        b"the ",
        b"file ",
        b"upload ",
        b"domain ",
        b"user ",
        b"cache ",
        b"store ",
        b"bucket ",
        b"photo.jpg ",
        b"\n",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(size + 16);
    let mut text = true;
    while out.len() < size {
        let end = out.len() + 512 + (next() % 7680) as usize;
        while out.len() < end {
            if text {
                out.extend_from_slice(WORDS[(next() % WORDS.len() as u64) as usize]);
            } else {
                out.extend_from_slice(&next().to_le_bytes());
            }
        }
        text = !text;
    }
    out.truncate(size);
    out
}

/// A copy of `base` that no earlier upload sent: `tag` and a per-process nonce written over
/// 16 bytes of every 64 KiB. Garage stores blocks by content hash and keeps one copy of equal
/// blocks, so re-sending the same bytes costs it almost nothing to store; every real upload
/// (and every encrypted one, whose ciphertext is new each time) costs the full write.
fn fresh(base: &[u8], tag: u64) -> Bytes {
    static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let nonce = *NONCE.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let mut out = base.to_vec();
    for block in out.chunks_mut(64 * 1024) {
        let n = block.len().min(16);
        let mut stamp = [0u8; 16];
        stamp[..8].copy_from_slice(&nonce.to_le_bytes());
        stamp[8..].copy_from_slice(&tag.to_le_bytes());
        block[..n].copy_from_slice(&stamp[..n]);
    }
    Bytes::from(out)
}

fn env(name: &str) -> Res<String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn s3_store(unsigned: bool) -> Res<object_store::aws::AmazonS3> {
    let endpoint = env("S3_URL")?;
    AmazonS3Builder::new()
        .with_unsigned_payload(unsigned)
        .with_bucket_name(env("APP_BUCKET")?)
        .with_endpoint(&endpoint)
        .with_allow_http(endpoint.starts_with("http://"))
        .with_region(env("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()))
        .with_access_key_id(env("AWS_ACCESS_KEY_ID")?)
        .with_secret_access_key(env("AWS_SECRET_ACCESS_KEY")?)
        .build()
        .map_err(|e| format!("S3 configuration: {e}"))
}

async fn presign(method: &str, key: &str) -> Res<String> {
    let method = match method {
        "GET" => object_store::signer::Method::GET,
        "PUT" => object_store::signer::Method::PUT,
        other => return Err(format!("method {other:?}: GET or PUT")),
    };
    let s3 = s3_store(true)?;
    let path = Path::parse(key).map_err(|e| format!("key: {e}"))?;
    let url = s3
        .signed_url(method, &path, Duration::from_secs(6 * 3600))
        .await
        .map_err(|e| format!("presign: {e}"))?;
    Ok(url.to_string())
}

struct Opts {
    url: String,
    count: usize,
    warmup: usize,
    size: usize,
    headers: Vec<(String, String)>,
    expect: Option<(String, String)>,
    label: String,
    out: Option<String>,
    fresh: bool,
    unsigned: bool,
    quickack: bool,
}

fn split_header(h: &str) -> Res<(String, String)> {
    let (k, v) = h
        .split_once(':')
        .ok_or_else(|| format!("header {h:?}: expected 'Name: value'"))?;
    Ok((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
}

impl Opts {
    fn parse(args: &[String]) -> Res<Self> {
        let mut o = Opts {
            url: String::new(),
            count: 1,
            warmup: 0,
            size: 0,
            headers: Vec::new(),
            expect: None,
            label: String::new(),
            out: None,
            fresh: false,
            unsigned: false,
            quickack: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{a} needs a value"))
            };
            match a.as_str() {
                "--count" => o.count = val()?.parse().map_err(|_| "--count: a number")?,
                "--warmup" => o.warmup = val()?.parse().map_err(|_| "--warmup: a number")?,
                "--size" => o.size = val()?.parse().map_err(|_| "--size: a number")?,
                "-H" => o.headers.push(split_header(&val()?)?),
                "--expect" => o.expect = Some(split_header(&val()?)?),
                "--label" => o.label = val()?,
                "--out" => o.out = Some(val()?),
                "--fresh" => o.fresh = true,
                "--unsigned" => o.unsigned = true,
                "--quickack" => o.quickack = true,
                url if !url.starts_with('-') && o.url.is_empty() => o.url = url.to_owned(),
                other => return Err(format!("unexpected argument {other:?}")),
            }
        }
        if o.url.is_empty() {
            return Err("no URL".into());
        }
        Ok(o)
    }
}

async fn transfer(kind: &str, o: Opts) -> Res<()> {
    let mut builder = reqwest::Client::builder();
    if o.fresh {
        builder = builder.pool_max_idle_per_host(0);
    }
    let client = builder
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("client: {e}"))?;
    let base = (kind == "put").then(|| sample(o.size));
    let o = Arc::new(o);
    let mut secs = Vec::with_capacity(o.count);
    let mut bytes = 0u64;
    for i in 0..o.warmup + o.count {
        // Made before the clock starts: new bytes for every upload (see `fresh`).
        let body = base.as_deref().map(|b| fresh(b, i as u64));
        let mut req = match &body {
            Some(b) => client
                .put(&o.url)
                .header("content-length", b.len())
                .body(b.clone()),
            None => client.get(&o.url),
        };
        for (k, v) in &o.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let t0 = Instant::now();
        let resp = req
            .send()
            .await
            .map_err(|e| format!("request: {}", chain(&e)))?;
        let status = resp.status();
        let expect_failed = o.expect.as_ref().and_then(|(k, v)| {
            let got = resp.headers().get(k.as_str()).and_then(|h| h.to_str().ok());
            (got != Some(v.as_str())).then(|| format!("{k}: expected {v:?}, got {got:?}"))
        });
        let mut n = 0u64;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            n += chunk.map_err(|e| format!("body: {}", chain(&e)))?.len() as u64;
        }
        let dt = t0.elapsed().as_secs_f64();
        if !status.is_success() {
            return Err(format!(
                "{} {}: status {status}",
                kind.to_uppercase(),
                o.label
            ));
        }
        if let Some(msg) = expect_failed {
            return Err(format!("{}: {msg}", o.label));
        }
        if i >= o.warmup {
            secs.push(dt);
            bytes = match &body {
                Some(b) => b.len() as u64,
                None => n,
            };
        }
    }
    emit(&o, kind, bytes, &secs)
}

/// Sequential GETs on one kept-alive TCP connection, written by hand so that `TCP_QUICKACK`
/// can be set after each request is sent. Garage writes a response's head and body in two
/// writes with Nagle's algorithm on; a receiver that delays its ACK of the head (Linux does on
/// a kept-alive connection) holds the body back ~40 ms. Only `Content-Length` bodies.
async fn get_quickack(o: Opts) -> Res<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = o
        .url
        .strip_prefix("http://")
        .ok_or("--quickack: http:// URLs only")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut conn = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    conn.set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for (k, v) in &o.headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut buf = vec![0u8; 256 << 10];
    let mut secs = Vec::with_capacity(o.count);
    let mut bytes = 0u64;
    for i in 0..o.warmup + o.count {
        let t0 = Instant::now();
        conn.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        socket2::SockRef::from(&conn)
            .set_tcp_quickack(true)
            .map_err(|e| format!("TCP_QUICKACK: {e}"))?;
        // The head: read until the blank line.
        let mut have = 0;
        let head_end = loop {
            if let Some(p) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if have == buf.len() {
                return Err("response head too long".into());
            }
            let n = conn
                .read(&mut buf[have..])
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed in the response head".into());
            }
            have += n;
        };
        let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "response head not UTF-8")?;
        let status = head.split(' ').nth(1).unwrap_or("");
        if !status.starts_with('2') {
            return Err(format!("GET {}: status {status}", o.label));
        }
        let length: u64 = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .ok_or("--quickack: the response has no Content-Length")?;
        let mut got = (have - head_end) as u64;
        while got < length {
            let n = conn
                .read(&mut buf)
                .await
                .map_err(|e| format!("body: {e}"))?;
            if n == 0 {
                return Err("connection closed in the body".into());
            }
            got += n as u64;
        }
        if got != length {
            return Err("more bytes than Content-Length".into());
        }
        let dt = t0.elapsed().as_secs_f64();
        if i >= o.warmup {
            secs.push(dt);
            bytes = length;
        }
    }
    emit(&o, "get", bytes, &secs)
}

fn emit(o: &Opts, kind: &str, bytes: u64, secs: &[f64]) -> Res<()> {
    let list: Vec<String> = secs.iter().map(|s| format!("{s:.6}")).collect();
    let line = format!(
        "{{\"label\":\"{}\",\"kind\":\"{kind}\",\"count\":{},\"bytes\":{bytes},\"secs\":[{}]}}\n",
        o.label.replace(['"', '\\'], "_"),
        secs.len(),
        list.join(",")
    );
    match &o.out {
        Some(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| format!("{path}: {e}"))?,
        None => print!("{line}"),
    }
    Ok(())
}

/// Multipart upload through object_store, shaped like FileManager's own (8 MiB parts, two in
/// flight), to separate the cost of the S3 client from the cost of FileManager.
async fn s3put(o: Opts) -> Res<()> {
    use object_store::{ObjectStoreExt, WriteMultipart};
    let store = s3_store(o.unsigned)?;
    let path = Path::parse(&o.url).map_err(|e| format!("key: {e}"))?;
    let base = sample(o.size);
    let mut secs = Vec::new();
    for i in 0..o.count {
        let data = fresh(&base, i as u64);
        let t0 = Instant::now();
        let upload = store
            .put_multipart(&path)
            .await
            .map_err(|e| format!("start: {e}"))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
        for piece in data.chunks(1 << 20) {
            w.wait_for_capacity(2)
                .await
                .map_err(|e| format!("part: {e}"))?;
            w.put(data.slice_ref(piece));
        }
        w.finish().await.map_err(|e| format!("finish: {e}"))?;
        secs.push(t0.elapsed().as_secs_f64());
    }
    emit(&o, "put", base.len() as u64, &secs)
}

/// `serve-bare`: what the service's HTTP stack costs by itself. The same hyper HTTP/1 server,
/// tokio runtime and `TCP_NODELAY` as `filemanager serve`, answering every request with `body`
/// and the headers of FileManager's cached 4 KiB download (same names, same lengths), but
/// with no authentication, routing, cache lookup or header building: the ceiling of any
/// handler on this stack.
async fn serve_bare(addr: &str, body: Bytes) -> Res<()> {
    use http_body_util::Full;
    use hyper::header::{HeaderName, HeaderValue};

    const HEADERS: [(&str, &str); 7] = [
        ("etag", "\"9ae019-661bd8ce9a896-1000\""),
        ("last-modified", "Thu, 03 Dec 2026 16:50:01 GMT"),
        ("accept-ranges", "bytes"),
        ("x-cache", "hit"),
        ("content-type", "application/octet-stream"),
        ("x-content-type-options", "nosniff"),
        ("x-request-id", "6b119db9-1"),
    ];
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut head = hyper::HeaderMap::new();
    for (name, value) in HEADERS {
        head.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    // Set as the service does, not left to hyper.
    head.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (body, head) = (body.clone(), head.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_req| {
                let mut resp = hyper::Response::new(Full::new(body.clone()));
                *resp.headers_mut() = head.clone();
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
