//! Handlers of the file, metadata, listing and operations routes.

use std::collections::BTreeMap;

use axum::body::Body as HttpBody;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use filemanager::{
    Body, DownloadOptions, Error, FileInfo, ListOptions, Location, Scope, StorageLevel,
    UploadOptions,
};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::auth::{Action, authorize};
use super::errors::AppError;
use super::{AppState, headers, presigned, range};

/// The route prefixes whose remainder is a location or a scope, still percent-encoded: files.
pub const FILES: &str = "/v1/files/";
/// Prefix of the metadata route.
pub const META: &str = "/v1/meta/";
/// Prefix of the listing route.
pub const LIST: &str = "/v1/list/";

/// A JSON answer.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(_) => AppError::Lib(Error::StorageError {
            key: None,
            reason: "could not encode the answer".into(),
            retryable: false,
        })
        .into_response(),
    }
}

/// The query string as name → value, each decoded once. A repeated name is refused: which of
/// two values was meant cannot be known.
pub fn query_map(query: Option<&str>) -> Result<BTreeMap<String, String>, AppError> {
    let mut out = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(AppError::bad_request(format!(
                "query parameter {k:?} is given more than once"
            )));
        }
    }
    Ok(out)
}

/// A boolean query parameter (`true`/`false`/`1`/`0`), or its default.
pub fn flag(q: &BTreeMap<String, String>, name: &str, default: bool) -> Result<bool, AppError> {
    match q.get(name).map(String::as_str) {
        None => Ok(default),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(_) => Err(AppError::bad_request(format!(
            "query parameter {name:?} must be true or false"
        ))),
    }
}

/// The location a bearer-authenticated request names after `prefix`, checked for domain and
/// permission. Order: 401 (who) → 400 (what) → 404 domain → 403 (may they).
fn bearer_location(
    state: &AppState,
    parts: &Parts,
    prefix: &str,
    action: Action,
) -> Result<Location, AppError> {
    let principal = state.auth.authenticate(&parts.headers)?;
    let raw = parts.uri.path().strip_prefix(prefix).unwrap_or_default();
    let location = Location::from_url_path(raw)?;
    state.check_domain(location.domain())?;
    authorize(&principal, location.scope(), action)?;
    Ok(location)
}

/// `PUT /v1/files/{loc}`: streams the body into storage.
pub async fn upload(State(state): State<AppState>, req: Request) -> Response {
    match store(state, req).await {
        Ok(resp) => resp,
        Err(e) => {
            // A refused upload leaves the rest of its body unread on the connection; close it
            // so the client does not send its next request on it (RFC 9112 §9.6).
            let mut resp = e.into_response();
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
    }
}

async fn store(state: AppState, req: Request) -> Result<Response, AppError> {
    let (parts, body) = req.into_parts();
    let grant = presigned::grant(&state, &parts)?;
    let location = match &grant {
        Some(g) => g.location.clone(),
        None => bearer_location(&state, &parts, FILES, Action::Write)?,
    };
    let mut opts = UploadOptions {
        content_type: headers::content_type(&parts.headers)?,
        metadata: headers::metadata_from(&parts.headers)?,
        ..UploadOptions::default()
    };
    match &grant {
        Some(g) => presigned::apply_upload_grant(g, &mut opts)?,
        None => {
            let q = query_map(parts.uri.query())?;
            opts.compress = flag(&q, "compress", false)?;
            opts.encrypt = flag(&q, "encrypt", true)?;
            opts.cache_content = flag(&q, "cache", true)?;
        }
    }
    let metrics_state = state.clone();
    let stream = body.into_data_stream().inspect_ok(move |chunk| {
        metrics_state.metrics.add_bytes_in(chunk.len() as u64);
    });
    let mut body = Body::from_stream(stream);
    if let Some(len) = headers::content_length(&parts.headers)? {
        body = body.with_len(len);
    }
    let result = state
        .metrics
        .time("upload", || state.fm.upload(&location, body, &opts))
        .await?;
    Ok(json(StatusCode::CREATED, &result))
}

/// `GET` and `HEAD /v1/files/{loc}`: the file's bytes (or a range of them) and its headers.
pub async fn download(State(state): State<AppState>, req: Request) -> Result<Response, AppError> {
    let (parts, _) = req.into_parts();
    let (location, use_cache) = match presigned::grant(&state, &parts)? {
        Some(grant) => (grant.location, true),
        None => {
            let location = bearer_location(&state, &parts, FILES, Action::Read)?;
            let q = query_map(parts.uri.query())?;
            (location, flag(&q, "cache", true)?)
        }
    };
    let byte_range = range::parse(parts.headers.get(header::RANGE));
    let head_only = parts.method == Method::HEAD;

    // Conditional and HEAD requests are answered from the metadata, without opening the
    // content.
    if head_only || parts.headers.contains_key(header::IF_NONE_MATCH) {
        let info = Box::pin(
            state
                .metrics
                .time("metadata", || state.fm.metadata(&location, use_cache)),
        )
        .await?
        .ok_or_else(|| Error::FileNotFound {
            key: location.key(),
        })?;
        if let Some(inm) = parts.headers.get(header::IF_NONE_MATCH)
            && headers::none_match(inm, info.etag.as_deref())
        {
            let mut resp = StatusCode::NOT_MODIFIED.into_response();
            *resp.headers_mut() = headers::describe(&info, false);
            return Ok(resp);
        }
        if head_only {
            let range = byte_range.map(|r| r.resolve(info.size)).transpose()?;
            let rendered = headers::Rendered::new(&info);
            return Ok(file_response(&rendered, false, range, HttpBody::empty()));
        }
    }

    let opts = DownloadOptions {
        user_id: None,
        bypass_cache: !use_cache,
        range: byte_range,
    };
    let dl = state
        .metrics
        .time("download", || state.fm.download(&location, &opts))
        .await?;
    let body = match dl.in_memory {
        // A cache hit is one buffer already: handed to hyper as is, it goes out with the
        // headers in one write, with no stream to poll. Counted when handed over rather than
        // as sent, which for a few KiB is the same thing.
        Some(bytes) => {
            state.metrics.add_bytes_out(bytes.len() as u64);
            HttpBody::from(bytes)
        }
        None if answer_len(&dl.info, dl.range.as_ref()) <= GATHER_MAX => {
            let bytes = Box::pin(filemanager::collect_body(dl.body)).await?;
            state.metrics.add_bytes_out(bytes.len() as u64);
            HttpBody::from(bytes)
        }
        None => {
            let metrics_state = state.clone();
            let body = dl.body.inspect_ok(move |chunk| {
                metrics_state.metrics.add_bytes_out(chunk.len() as u64);
            });
            HttpBody::from_stream(body.boxed())
        }
    };
    let rendered = state.rendered.get(&dl.info);
    Ok(file_response(&rendered, dl.from_cache, dl.range, body))
}

/// Answers up to this long that come from storage are read whole before the headers go out.
/// The headers and the bytes then leave in one write, so the client wakes once instead of
/// twice (the storage answer's head and body arrive apart), and a storage error still gets a
/// proper status instead of a cut-off body. Memory stays bounded: one chunk of the codec.
const GATHER_MAX: u64 = 64 * 1024;

/// The length of the body answered for `range` of the file described by `info`.
fn answer_len(info: &FileInfo, range: Option<&std::ops::Range<u64>>) -> u64 {
    range.map_or(info.size, |r| r.end - r.start)
}

/// A 200 (or 206 with `range`) answer carrying `body` and the headers of the file.
fn file_response(
    rendered: &headers::Rendered,
    from_cache: bool,
    range: Option<std::ops::Range<u64>>,
    body: HttpBody,
) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    // Room for every header of a download at once (the file's, `X-Content-Type-Options`,
    // `Content-Length`, `Content-Range` and the request id), instead of growing the map on the
    // way.
    h.reserve(rendered.header_count() + 4);
    rendered.describe_into(h, from_cache);
    rendered.content_type_into(h);
    // User content is served as what it was declared to be, never sniffed into something
    // else (e.g. HTML).
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let (status, len) = match &range {
        Some(r) => {
            if let Ok(v) = HeaderValue::from_str(&range::content_range(r, rendered.size())) {
                h.insert(header::CONTENT_RANGE, v);
            }
            (
                StatusCode::PARTIAL_CONTENT,
                HeaderValue::from(r.end - r.start),
            )
        }
        None => (StatusCode::OK, rendered.whole_length()),
    };
    h.insert(header::CONTENT_LENGTH, len);
    *resp.status_mut() = status;
    resp
}

/// `DELETE /v1/files/{loc}`.
pub async fn delete(State(state): State<AppState>, req: Request) -> Result<Response, AppError> {
    let (parts, _) = req.into_parts();
    if presigned::grant(&state, &parts)?.is_some() {
        // `verify_presigned` refuses DELETE already; this is a second lock on the door.
        return Err(AppError::forbidden("presigned URLs cannot delete"));
    }
    let location = bearer_location(&state, &parts, FILES, Action::Write)?;
    let result = state
        .metrics
        .time("delete", || state.fm.delete(&location))
        .await?;
    Ok(json(StatusCode::OK, &result))
}

/// `GET /v1/meta/{loc}`: the file object, without `success`.
pub async fn metadata(State(state): State<AppState>, req: Request) -> Result<Response, AppError> {
    let (parts, _) = req.into_parts();
    let location = bearer_location(&state, &parts, META, Action::Read)?;
    let q = query_map(parts.uri.query())?;
    let use_cache = flag(&q, "cache", true)?;
    let info = state
        .metrics
        .time("metadata", || state.fm.metadata(&location, use_cache))
        .await?
        .ok_or_else(|| Error::FileNotFound {
            key: location.key(),
        })?;
    Ok(json(StatusCode::OK, &info))
}

/// `GET /v1/list/{domain}/app` and `GET /v1/list/{domain}/user/{user_id}`.
pub async fn list(State(state): State<AppState>, req: Request) -> Result<Response, AppError> {
    let (parts, _) = req.into_parts();
    let principal = state.auth.authenticate(&parts.headers)?;
    let raw = parts.uri.path().strip_prefix(LIST).unwrap_or_default();
    let scope = Scope::from_url_path(raw)?;
    state.check_domain(scope.domain())?;
    authorize(&principal, &scope, Action::Read)?;
    let mut q = query_map(parts.uri.query())?;
    let max_keys = match q.get("max_keys") {
        None => filemanager::MAX_LIST_KEYS,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| AppError::bad_request("max_keys must be a number from 1 to 1000"))?,
    };
    let opts = ListOptions {
        user_id: None,
        prefix: q.remove("prefix").unwrap_or_default(),
        max_keys,
        cursor: q.remove("cursor").filter(|c| !c.is_empty()),
        use_cache: flag(&q, "cache", true)?,
    };
    let result = state
        .metrics
        .time("list", || state.fm.list(&scope, &opts))
        .await?;
    Ok(json(StatusCode::OK, &result))
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: the storage backend answers a cheap listing.
pub async fn readyz(State(state): State<AppState>) -> Result<Response, AppError> {
    let probe = Scope::parse("readyz-probe", StorageLevel::App, None)?;
    let opts = ListOptions {
        max_keys: 1,
        use_cache: false,
        ..ListOptions::default()
    };
    match state
        .metrics
        .time("list", || state.fm.list(&probe, &opts))
        .await
    {
        Ok(_) => Ok(json(
            StatusCode::OK,
            &serde_json::json!({"status": "ready", "backend": state.fm.backend_name()}),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "readiness probe failed");
            Err(AppError::Lib(Error::StorageUnavailable {
                reason: "the storage backend does not answer".into(),
            }))
        }
    }
}

/// `GET /metrics`: Prometheus text format, the service's own counters, the cache's and the
/// large-file tier's.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    if let Some(stats) = state.fm.cache_stats() {
        text.push_str(&stats.to_prometheus("fm_cache"));
    }
    if let Some(stats) = state.fm.large_file_stats() {
        text.push_str(&stats.to_prometheus("fm_large_files"));
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        super::openapi::document_json(),
    )
        .into_response()
}
