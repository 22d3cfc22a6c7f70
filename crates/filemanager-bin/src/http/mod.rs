//! The HTTP service: the contract in `HTTP-API.md` over a [`FileManager`].
//!
//! [`router`] builds the service ([`App`]) from an [`AppState`]; [`run`] serves it on a
//! listener with hyper until a shutdown future completes, letting in-flight requests finish.
//! Handlers are thin: they authenticate, turn the request into library calls, and shape the
//! answer; behaviour lives in the library.
//!
//! Every request passes [`metrics::observe`] (request id, log line, counters), then routing.
//! The file routes, which carry nearly all the traffic, are dispatched on their prefix and
//! method straight to their handlers; the axum router serves the rest (and everything when
//! CORS is on, so that its layer sees every answer). Both paths call the same handlers.

pub mod auth;
pub mod errors;
pub mod headers;
pub mod metrics;
pub mod openapi;
pub mod presigned;
pub mod range;
pub mod routes;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::ops::Deref;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use filemanager::{Domain, FileManager};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;
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
    /// Download headers of recently served file descriptions.
    pub rendered: headers::RenderMemo,
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
            rendered: headers::RenderMemo::default(),
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

/// The service for `state`: its routes, with CORS (when configured), request ids, logs and
/// metrics.
pub fn router(state: AppState) -> App {
    let mut routes = Router::new()
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
    let cors = cors_layer(&state.cors_origins);
    let direct_files = cors.is_none();
    if let Some(cors) = cors {
        // Outside the CORS layer, so it sees (and extends) the list that layer set.
        routes = routes
            .layer(cors)
            .layer(middleware::from_fn(expose_metadata));
    }
    App(Arc::new(AppInner {
        state,
        routes,
        direct_files,
    }))
}

/// The whole HTTP service as one value: hand it requests with [`App::handle`], or serve it on
/// a socket with [`run`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct App(Arc<AppInner>);

#[derive(Debug)]
struct AppInner {
    state: AppState,
    /// Every route, behind the CORS layer when CORS is configured.
    routes: Router,
    /// Whether file routes skip the router (only without CORS, whose layer must see them).
    direct_files: bool,
}

impl App {
    /// Answers one request.
    pub async fn handle(&self, req: Request) -> Response {
        metrics::observe(&self.0.state, req, |req| self.dispatch(req)).await
    }

    async fn dispatch(&self, req: Request) -> Response {
        let inner = &self.0;
        // `route_label` follows the router's matching (`{*loc}` needs at least one character).
        // Other methods go on to the router, which answers 405 for them.
        if inner.direct_files && metrics::route_label(req.uri().path()) == FILES_ROUTE {
            let state = State(inner.state.clone());
            match *req.method() {
                Method::GET | Method::HEAD => {
                    return routes::download(state, req).await.into_response();
                }
                // Boxed, so that their state does not make every request's future (a
                // cached GET's included) as large as an upload's: it is moved as it is set up.
                Method::PUT => return Box::pin(routes::upload(state, req)).await,
                Method::DELETE => {
                    return Box::pin(routes::delete(state, req)).await.into_response();
                }
                _ => {}
            }
        }
        match inner.routes.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }
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
/// waits for the requests in flight to finish (idle keep-alive connections are closed).
///
/// Each connection is one task running hyper's HTTP/1 server. Accept errors (e.g. out of file
/// descriptors) are logged and retried after a pause rather than ending the service; a client
/// that hung up before being accepted is simply skipped.
pub async fn run(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Dropping `stop` tells every connection to finish; each holds a clone of `alive`, so
    // `all_done` yields `None` once the last one has ended.
    let (stop, stopped) = watch::channel(());
    let (alive, mut all_done) = mpsc::channel::<Infallible>(1);
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            // The client went away between connecting and being accepted: nothing to wait for.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: a pause lets connections close first.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Answers are written whole (head and body together) or in large pieces; waiting for
        // an ACK before a small last segment would only add latency.
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            app.clone(),
            stopped.clone(),
            alive.clone(),
        ));
    }
    drop(listener);
    drop(stop);
    drop(alive);
    let _ = all_done.recv().await;
    Ok(())
}

/// Whether an `accept` error concerns only the connection being accepted.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// Serves one connection until the client closes it or the service stops.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: App,
    mut stopped: watch::Receiver<()>,
    _alive: mpsc::Sender<Infallible>,
) {
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.handle(req.map(Body::new)).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let mut conn = pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        _ = stopped.changed() => {}
    }
    // Finish the request in flight, if any, then close.
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
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
