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

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
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
struct Series<K, V>(RwLock<HashMap<K, V>>);

impl<K, V> Default for Series<K, V> {
    fn default() -> Self {
        Series(RwLock::new(HashMap::new()))
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
    pub async fn time<T>(&self, op: &'static str, fut: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let out = fut.await;
        self.observe_storage(op, start.elapsed());
        out
    }

    fn observe_storage(&self, op: &'static str, took: Duration) {
        let secs = took.as_secs_f64();
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.storage.with(op, |h| {
            for (count, bound) in h.counts.iter().zip(BUCKETS) {
                if secs <= bound {
                    count.fetch_add(1, Ordering::Relaxed);
                }
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

    fn request_id(&self) -> String {
        // Unique within the process and cheap; a start-time prefix separates restarts.
        static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let start = *START.get_or_init(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{start:x}-{n:x}")
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
            for (bound, n) in BUCKETS.iter().zip(&h.counts) {
                let _ = writeln!(
                    out,
                    "fm_storage_seconds_bucket{{op=\"{op}\",le=\"{bound}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
            let count = h.count.load(Ordering::Relaxed);
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

/// The `route` label: the template the router matched, as one of its own `&'static str`s.
fn route_label(req: &Request) -> &'static str {
    match req.extensions().get::<MatchedPath>() {
        Some(m) => super::ROUTES
            .iter()
            .copied()
            .find(|r| *r == m.as_str())
            .unwrap_or("other"),
        None => "unmatched",
    }
}

/// Middleware: request id, a tracing span and one log line per request, and the request
/// counter.
pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let route = route_label(&req);
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(|| state.metrics.request_id(), str::to_owned);
    // The path only: the query may hold a presigned URL's signature. The span records its
    // fields only when enabled, so borrowing them costs nothing at the default level.
    let span = tracing::info_span!(
        "request",
        id = %id,
        method = %req.method(),
        path = %req.uri().path()
    );
    let id_value = HeaderValue::try_from(id).unwrap_or(HeaderValue::from_static("invalid"));
    req.headers_mut().insert(X_REQUEST_ID, id_value.clone());

    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    state.metrics.count_request(method, route, status);
    span.in_scope(|| {
        tracing::info!(
            status,
            ms = %format_args!("{:.1}", start.elapsed().as_secs_f64() * 1e3),
            "served"
        )
    });
    resp.headers_mut().insert(X_REQUEST_ID, id_value);
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
    fn labels_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
    }
}
