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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
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
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    storage: Mutex<BTreeMap<&'static str, Histogram>>,
    next_id: AtomicU64,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
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
        let mut map = self.storage.lock().unwrap_or_else(|e| e.into_inner());
        let h = map.entry(op).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    fn count_request(&self, method: &str, route: &str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
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
        for ((method, route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "fm_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
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
        for (op, h) in self
            .storage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "fm_storage_seconds_bucket{{op=\"{op}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "fm_storage_seconds_bucket{{op=\"{op}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "fm_storage_seconds_sum{{op=\"{op}\"}} {}", h.sum);
            let _ = writeln!(out, "fm_storage_seconds_count{{op=\"{op}\"}} {}", h.count);
        }
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Middleware: request id, a tracing span and one log line per request, and the request
/// counter.
pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    // The path only: the query may hold a presigned URL's signature.
    let path = req.uri().path().to_owned();
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
    let id_value = HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("invalid"));
    req.headers_mut().insert(X_REQUEST_ID, id_value.clone());

    let span = tracing::info_span!("request", id = %id, %method, %path);
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    state.metrics.count_request(&method, &route, status);
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
    }
}
