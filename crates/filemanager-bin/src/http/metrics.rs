//! Observability: Prometheus metrics and the per-request log line.
//!
//! The metrics are a few counters and one histogram, rendered by hand in the Prometheus text
//! format: that is all the service needs, and it keeps the dependency tree small.
//!
//! - `fm_http_requests_total{method,route,status}`: `route` is the route template
//!   (`/v1/files/{*loc}`), never the concrete path, so label cardinality stays bounded.
//! - `fm_http_request_bytes_total`, `fm_http_response_bytes_total`: file bytes in and out.
//! - `fm_storage_seconds{op}`: latency of each library call (upload, download, …).
//!
//! Every request gets an id (the client's `X-Request-Id` if it is short and plain, else a fresh
//! one), echoed in the response and attached to its log line. Logs show the path without its
//! query — a presigned URL's signature lives there — and never a header value.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hash;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Response;
use tracing::Instrument;

use super::AppState;

/// Header carrying the request id.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Upper bounds (seconds) of the storage latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The service's metrics registry.
///
/// Counted on every request, so the hot path allocates nothing and takes no exclusive lock:
/// label values are `&'static str`, each series is a set of atomics, and the maps holding them
/// are only write-locked the first time a series appears (their label sets are bounded).
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Series<(&'static str, &'static str, u16), AtomicU64>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    storage: Series<&'static str, Histogram>,
    next_id: AtomicU64,
}

/// Series of one metric by label values.
#[derive(Debug)]
struct Series<K, V>(RwLock<HashMap<K, V, LabelHasher>>);

impl<K, V> Default for Series<K, V> {
    fn default() -> Self {
        Series(RwLock::new(HashMap::default()))
    }
}

/// Hashes label sets for [`Series`], which looks one up on every request. Label values come
/// from the service's own fixed sets (methods, route templates, operation names) and status
/// codes, never from a client, so a multiply-rotate hash is enough: nobody can choose keys
/// that collide, and SipHash's protection against that would only cost time.
#[derive(Debug, Default, Clone, Copy)]
struct LabelHasher;

impl std::hash::BuildHasher for LabelHasher {
    type Hasher = LabelHash;
    fn build_hasher(&self) -> LabelHash {
        LabelHash(0)
    }
}

/// The state of [`LabelHasher`].
#[derive(Debug)]
struct LabelHash(u64);

impl std::hash::Hasher for LabelHash {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl<K: Hash + Eq + Copy + Ord, V: Default> Series<K, V> {
    /// Runs `f` on the series of `key`, creating it first if needed.
    fn with(&self, key: K, f: impl Fn(&V)) {
        // A poisoned lock only means a panic elsewhere while it was held; the atomics are
        // still consistent.
        if let Some(v) = self.0.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return f(v);
        }
        f(self
            .0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default());
    }

    /// Runs `f` on every series, in label order (stable output for scrapers and tests).
    fn each(&self, mut f: impl FnMut(K, &V)) {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<K> = map.keys().copied().collect();
        keys.sort();
        for k in keys {
            f(k, &map[&k]);
        }
    }
}

#[derive(Debug, Default)]
struct Histogram {
    /// Observations per bucket, each counted in the first bucket whose bound holds it (not
    /// cumulative; see `render`).
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in nanoseconds: an integer can be added atomically.
    sum_nanos: AtomicU64,
}

impl Metrics {
    /// Counts file bytes received.
    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts file bytes sent.
    pub fn add_bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    /// Runs a storage operation and records how long it took.
    ///
    /// It takes a function that makes the future, not the future: an `async fn` keeps a
    /// future passed as an argument apart from the one it awaits, so every level of wrapping
    /// would double its size, and a request's future is moved several times as it is set up
    /// (a download's was 12 KiB, copied on every request).
    pub async fn time<T, F: Future<Output = T>>(
        &self,
        op: &'static str,
        op_fn: impl FnOnce() -> F,
    ) -> T {
        let start = Instant::now();
        let out = op_fn().await;
        self.observe_storage(op, start.elapsed());
        out
    }

    fn observe_storage(&self, op: &'static str, took: Duration) {
        let secs = took.as_secs_f64();
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.storage.with(op, |h| {
            // One bucket per observation (the first whose bound holds it); the cumulative
            // counts Prometheus expects are summed when rendering, which is rare.
            if let Some(i) = BUCKETS.iter().position(|bound| secs <= *bound) {
                h.counts[i].fetch_add(1, Ordering::Relaxed);
            }
            h.count.fetch_add(1, Ordering::Relaxed);
            h.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        });
    }

    fn count_request(&self, method: &'static str, route: &'static str, status: u16) {
        self.requests.with((method, route, status), |n| {
            n.fetch_add(1, Ordering::Relaxed);
        });
    }

    fn request_id(&self) -> HeaderValue {
        // Unique within the process and cheap; a start-time prefix separates restarts.
        static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let start = *START.get_or_init(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        // `{start:x}-{n:x}`, written digit by digit: this runs on every request.
        let mut buf = [0u8; 33];
        let mut len = push_hex(&mut buf, 0, start);
        buf[len] = b'-';
        len = push_hex(&mut buf, len + 1, n);
        HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static("invalid"))
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP fm_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE fm_http_requests_total counter\n");
        self.requests.each(|(method, route, status), n| {
            let _ = writeln!(
                out,
                "fm_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {}",
                escape(route),
                n.load(Ordering::Relaxed)
            );
        });
        for (name, help, v) in [
            (
                "fm_http_request_bytes_total",
                "File bytes received in uploads.",
                &self.bytes_in,
            ),
            (
                "fm_http_response_bytes_total",
                "File bytes sent in downloads.",
                &self.bytes_out,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        out.push_str("# HELP fm_storage_seconds Latency of storage operations.\n");
        out.push_str("# TYPE fm_storage_seconds histogram\n");
        self.storage.each(|op, h| {
            let mut below = 0;
            for (bound, n) in BUCKETS.iter().zip(&h.counts) {
                below += n.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "fm_storage_seconds_bucket{{op=\"{op}\",le=\"{bound}\"}} {below}"
                );
            }
            // Read after the buckets, and never below them: an observation counted in a bucket
            // may not be in `count` yet.
            let count = h.count.load(Ordering::Relaxed).max(below);
            let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "fm_storage_seconds_bucket{{op=\"{op}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(out, "fm_storage_seconds_sum{{op=\"{op}\"}} {sum}");
            let _ = writeln!(out, "fm_storage_seconds_count{{op=\"{op}\"}} {count}");
        });
        out
    }
}

/// Writes `n` in lower-case hex (no leading zeros) into `buf` at `at`; returns the end.
fn push_hex(buf: &mut [u8; 33], at: usize, n: u64) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (64 - (n | 1).leading_zeros()).div_ceil(4) as usize;
    for i in 0..digits {
        buf[at + i] = HEX[((n >> (4 * (digits - 1 - i))) & 0xf) as usize];
    }
    at + digits
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The `method` label: the standard methods by name, any other as `OTHER`, so a client
/// inventing methods cannot grow the series without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// The `route` label of a request for `path`: the template of the route that serves it, as
/// one of [`super::ROUTES`], or `unmatched`. The templates are fixed paths and three prefixes
/// followed by at least one character (`{*loc}` never matches an empty rest), so the label is
/// read off the path directly, before any routing.
pub fn route_label(path: &str) -> &'static str {
    use super::{FILES_ROUTE, LIST_ROUTE, META_ROUTE, ROUTES};
    for (route, prefix) in [
        (FILES_ROUTE, super::routes::FILES),
        (META_ROUTE, super::routes::META),
        (LIST_ROUTE, super::routes::LIST),
    ] {
        if path.len() > prefix.len() && path.starts_with(prefix) {
            return route;
        }
    }
    // The prefixes above took every path a wildcard template could equal.
    ROUTES
        .iter()
        .copied()
        .find(|r| *r == path)
        .unwrap_or("unmatched")
}

/// Runs `inner` on `req` with the request's id, a tracing span and one log line, and counts
/// the request.
///
/// Called by the service for every request, around routing: it is plain code rather than a
/// middleware layer, so a request costs no boxed future or cloned service of its own here.
pub async fn observe<F>(
    state: &AppState,
    req: Request,
    inner: impl FnOnce(Request) -> F,
) -> Response
where
    F: Future<Output = Response>,
{
    // Only the log line uses the time taken, and it is off at the default level.
    let start = tracing::enabled!(tracing::Level::INFO).then(Instant::now);
    let method = method_label(req.method());
    let route = route_label(req.uri().path());
    let id = match req.headers().get(&X_REQUEST_ID) {
        Some(v)
            if !v.is_empty()
                && v.len() <= 64
                && v.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_') =>
        {
            v.clone()
        }
        _ => state.metrics.request_id(),
    };
    // The path only: the query may hold a presigned URL's signature. The span records its
    // fields only when enabled, so borrowing them costs nothing at the default level.
    let span = tracing::info_span!(
        "request",
        id = id.to_str().unwrap_or_default(),
        method = %req.method(),
        path = %req.uri().path()
    );
    let mut resp = inner(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    state.metrics.count_request(method, route, status);
    span.in_scope(|| {
        tracing::info!(
            status,
            ms = %format_args!(
                "{:.1}",
                start.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1e3)
            ),
            "served"
        )
    });
    resp.headers_mut().insert(X_REQUEST_ID, id);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.count_request("GET", "/v1/files/{*loc}", 200);
        m.add_bytes_out(5);
        m.observe_storage("download", Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains(
            "fm_http_requests_total{method=\"GET\",route=\"/v1/files/{*loc}\",status=\"200\"} 1"
        ));
        assert!(text.contains("fm_http_response_bytes_total 5"));
        assert!(text.contains("fm_storage_seconds_bucket{op=\"download\",le=\"0.005\"} 1"));
        assert!(text.contains("fm_storage_seconds_count{op=\"download\"} 1"));
        assert!(text.contains("fm_storage_seconds_sum{op=\"download\"} 0.003\n"));
        // Buckets are cumulative, whichever bucket an observation was counted in.
        m.observe_storage("download", Duration::from_millis(20));
        m.observe_storage("download", Duration::from_secs(60));
        let text = m.render();
        for (le, n) in [
            ("0.0025", 0),
            ("0.005", 1),
            ("0.01", 1),
            ("0.025", 2),
            ("10", 2),
        ] {
            assert!(
                text.contains(&format!(
                    "fm_storage_seconds_bucket{{op=\"download\",le=\"{le}\"}} {n}\n"
                )),
                "le={le}: {text}"
            );
        }
        assert!(text.contains("fm_storage_seconds_bucket{op=\"download\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("fm_storage_seconds_count{op=\"download\"} 3\n"));
        m.count_request("GET", "/v1/files/{*loc}", 200);
        m.count_request("PUT", "/v1/files/{*loc}", 201);
        let text = m.render();
        assert!(text.contains(
            "fm_http_requests_total{method=\"GET\",route=\"/v1/files/{*loc}\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "fm_http_requests_total{method=\"PUT\",route=\"/v1/files/{*loc}\",status=\"201\"} 1"
        ));
    }

    #[test]
    fn request_ids_are_hex_pairs() {
        let m = Metrics::default();
        let a = m.request_id();
        let b = m.request_id();
        let (start, n) = a.to_str().unwrap().split_once('-').unwrap();
        assert!(u64::from_str_radix(start, 16).unwrap() > 1_600_000_000);
        assert_eq!(n, "0");
        assert!(b.to_str().unwrap().ends_with("-1"));
        let mut buf = [0u8; 33];
        for v in [0, 1, 15, 16, 255, 0x1234_abcd, u64::MAX] {
            let end = push_hex(&mut buf, 0, v);
            assert_eq!(std::str::from_utf8(&buf[..end]).unwrap(), format!("{v:x}"));
        }
    }

    #[test]
    fn route_labels_follow_the_router() {
        for (path, label) in [
            ("/v1/files/blog/app/a.txt", "/v1/files/{*loc}"),
            ("/v1/files/x", "/v1/files/{*loc}"),
            ("/v1/files/", "unmatched"),
            ("/v1/files", "unmatched"),
            ("/v1/meta/blog/app/a", "/v1/meta/{*loc}"),
            ("/v1/meta/", "unmatched"),
            ("/v1/list/blog/app", "/v1/list/{*scope}"),
            ("/v1/urls/upload", "/v1/urls/upload"),
            ("/v1/urls/download", "/v1/urls/download"),
            ("/v1/urls/download/", "unmatched"),
            ("/healthz", "/healthz"),
            ("/readyz", "/readyz"),
            ("/metrics", "/metrics"),
            ("/openapi.json", "/openapi.json"),
            ("/", "unmatched"),
            ("/v1/files{*loc}", "unmatched"),
        ] {
            assert_eq!(route_label(path), label, "{path}");
        }
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
    }
}
