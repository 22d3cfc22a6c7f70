//! The HTTP service: the contract in `HTTP-API.md` over a [`FileManager`].
//!
//! [`router`] builds the axum app from an [`AppState`]; [`run`] serves it on a listener until
//! a shutdown future completes, letting in-flight requests finish. Handlers are thin: they
//! authenticate, turn the request into library calls, and shape the answer; behaviour lives in
//! the library.

pub mod auth;
pub mod errors;
pub mod headers;
pub mod metrics;
pub mod openapi;
pub mod presigned;
pub mod range;
pub mod routes;

use std::collections::BTreeSet;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use filemanager::{Domain, FileManager};
use tokio::net::TcpListener;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use self::auth::Authenticator;
use self::errors::AppError;
use self::metrics::Metrics;

/// What the service needs besides the [`FileManager`].
#[derive(Debug, Clone, Default)]
pub struct ServiceConfig {
    /// Service keys with full access (`FM_API_KEYS`).
    pub api_keys: Vec<String>,
    /// Secret of HS256 user tokens (`FM_JWT_SECRET`); without it user tokens are refused.
    pub jwt_secret: Option<String>,
    /// The only domains served (`FM_DOMAINS`); empty means all.
    pub domains: Vec<String>,
    /// Origins allowed by CORS (`FM_CORS_ORIGINS`); `*` allows any; empty disables CORS.
    pub cors_origins: Vec<String>,
}

/// Shared state of all handlers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<StateInner>);

/// The contents of [`AppState`].
#[derive(Debug)]
pub struct StateInner {
    /// The library handle.
    pub fm: FileManager,
    /// Bearer token checks.
    pub auth: Authenticator,
    /// `FM_DOMAINS`, if set.
    pub domains: Option<BTreeSet<String>>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    cors_origins: Vec<String>,
}

impl Deref for AppState {
    type Target = StateInner;
    fn deref(&self) -> &StateInner {
        &self.0
    }
}

impl AppState {
    /// State for `fm` with `config`. Fails on an unusable configuration (e.g. a bad domain
    /// name in `FM_DOMAINS` or a malformed CORS origin).
    pub fn new(fm: FileManager, config: ServiceConfig) -> anyhow::Result<Self> {
        let domains: Vec<String> = config
            .domains
            .iter()
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty())
            .collect();
        for d in &domains {
            Domain::new(d.as_str())
                .map_err(|e| anyhow::anyhow!("FM_DOMAINS: {d:?} is not a valid domain: {e}"))?;
        }
        for o in &config.cors_origins {
            if o != "*" && HeaderValue::from_str(o).is_err() {
                anyhow::bail!("FM_CORS_ORIGINS: {o:?} is not a valid origin");
            }
        }
        let auth = Authenticator::new(
            &config.api_keys,
            config.jwt_secret.as_deref().map(str::as_bytes),
        )?;
        Ok(AppState(Arc::new(StateInner {
            fm,
            auth,
            domains: (!domains.is_empty()).then(|| domains.into_iter().collect()),
            metrics: Metrics::default(),
            cors_origins: config.cors_origins,
        })))
    }

    /// 404 `unknown_domain` unless `domain` is served.
    pub fn check_domain(&self, domain: &Domain) -> Result<(), AppError> {
        match &self.domains {
            Some(set) if !set.contains(domain.as_str()) => Err(AppError::UnknownDomain),
            _ => Ok(()),
        }
    }
}

/// Route templates: the router's, and the only `route` metric labels besides `unmatched`.
pub const ROUTES: [&str; 9] = [
    FILES_ROUTE,
    META_ROUTE,
    LIST_ROUTE,
    UPLOAD_URL_ROUTE,
    DOWNLOAD_URL_ROUTE,
    HEALTHZ_ROUTE,
    READYZ_ROUTE,
    METRICS_ROUTE,
    OPENAPI_ROUTE,
];
const FILES_ROUTE: &str = "/v1/files/{*loc}";
const META_ROUTE: &str = "/v1/meta/{*loc}";
const LIST_ROUTE: &str = "/v1/list/{*scope}";
const UPLOAD_URL_ROUTE: &str = "/v1/urls/upload";
const DOWNLOAD_URL_ROUTE: &str = "/v1/urls/download";
const HEALTHZ_ROUTE: &str = "/healthz";
const READYZ_ROUTE: &str = "/readyz";
const METRICS_ROUTE: &str = "/metrics";
const OPENAPI_ROUTE: &str = "/openapi.json";

/// The service's routes, with CORS (when configured), request ids, logs and metrics.
pub fn router(state: AppState) -> Router {
    let mut app = Router::new()
        .route(
            FILES_ROUTE,
            get(routes::download)
                .head(routes::download)
                .put(routes::upload)
                .delete(routes::delete),
        )
        .route(META_ROUTE, get(routes::metadata))
        .route(LIST_ROUTE, get(routes::list))
        .route(UPLOAD_URL_ROUTE, post(presigned::upload_url))
        .route(DOWNLOAD_URL_ROUTE, post(presigned::download_url))
        .route(HEALTHZ_ROUTE, get(routes::healthz))
        .route(READYZ_ROUTE, get(routes::readyz))
        .route(METRICS_ROUTE, get(routes::metrics))
        .route(OPENAPI_ROUTE, get(routes::openapi))
        .fallback(|| async { AppError::NoRoute })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .with_state(state.clone());
    if let Some(cors) = cors_layer(&state.cors_origins) {
        // Outside the CORS layer, so it sees (and extends) the list that layer set.
        app = app.layer(cors).layer(middleware::from_fn(expose_metadata));
    }
    app.layer(middleware::from_fn_with_state(state, metrics::observe))
}

/// Headers a browser script may read from an answer, besides the CORS-safelisted ones.
const EXPOSED: [&str; 7] = [
    "etag",
    "content-range",
    "content-length",
    "accept-ranges",
    "last-modified",
    "x-cache",
    "x-request-id",
];

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::PUT,
                Method::DELETE,
                Method::POST,
            ])
            // Uploads carry any X-Meta-* names, so echo what the preflight asks for.
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(EXPOSED.map(HeaderName::from_static))
            .max_age(Duration::from_secs(600)),
    )
}

/// `X-Meta-*` names differ per file, so a fixed expose list cannot name them: add the ones of
/// this answer to the list the CORS layer puts on it.
async fn expose_metadata(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let meta: Vec<&str> = resp
        .headers()
        .keys()
        .map(HeaderName::as_str)
        .filter(|n| n.starts_with(headers::META_PREFIX))
        .collect();
    // The CORS layer sets the list only for allowed origins; leave other answers alone.
    if !meta.is_empty()
        && resp
            .headers()
            .contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS)
    {
        let list = [EXPOSED.join(","), meta.join(",")].join(",");
        if let Ok(v) = HeaderValue::from_str(&list) {
            resp.headers_mut()
                .insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
        }
    }
    resp
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting connections and
/// waits for the requests in flight to finish.
pub async fn run(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Completes on ctrl-c (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
