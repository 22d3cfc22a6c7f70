//! Presigned URLs: the two routes that issue them, and the checks on requests that use them.
//!
//! Signing and verification live in the library (`FileManager::presign_*`,
//! `FileManager::verify_presigned`); this module adds what only the HTTP layer can see: the
//! request's `Content-Type` must be the signed one, and the signed size limit and codec
//! switches replace the query options of a normal upload.

use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use filemanager::{
    Location, PresignMethod, PresignUpload, PresignedGrant, StorageLevel, UploadOptions,
};
use serde::Deserialize;

use super::AppState;
use super::auth::{Action, authorize};
use super::errors::AppError;
use super::routes::json;

/// Largest JSON body the URL routes read.
const MAX_JSON_BYTES: usize = 64 * 1024;
/// Validity of a URL when the request does not say.
const DEFAULT_EXPIRES_IN: u64 = 3600;

/// The grant of a presigned request, `None` for a normal one (which then needs a bearer
/// token), or 403 if the URL was tampered with, has expired or is used with another method.
pub fn grant(state: &AppState, parts: &Parts) -> Result<Option<PresignedGrant>, AppError> {
    let query = parts.uri.query().unwrap_or("");
    // Only a query with a signature is a presigned request; the library also refuses
    // malformed queries (e.g. a repeated name), which for a normal request is a 400 that the
    // route's own query parsing gives.
    if !query
        .split('&')
        .any(|kv| kv.split('=').next() == Some("sig"))
    {
        return Ok(None);
    }
    let grant = state
        .fm
        .verify_presigned(parts.method.as_str(), parts.uri.path(), query)?;
    if let Some(g) = &grant {
        state.check_domain(g.location.domain())?;
    }
    Ok(grant)
}

/// Applies an upload grant to the options of the upload it allows: 403 unless the request's
/// content type is the signed one; the signed limit and codec switches replace the defaults.
pub fn apply_upload_grant(
    grant: &PresignedGrant,
    opts: &mut UploadOptions,
) -> Result<(), AppError> {
    if grant.method != PresignMethod::Put {
        return Err(AppError::forbidden("the URL is not an upload URL"));
    }
    let signed = grant.content_type.as_deref().unwrap_or_default();
    if !signed.eq_ignore_ascii_case(&opts.content_type) {
        return Err(AppError::forbidden(
            "the Content-Type differs from the one the URL was signed for",
        ));
    }
    opts.max_size = grant.max_size;
    opts.compress = grant.compress;
    opts.encrypt = grant.encrypt;
    Ok(())
}

/// Body of `POST /v1/urls/upload` and `POST /v1/urls/download`.
#[derive(Debug, Deserialize)]
pub struct UrlRequest {
    domain: String,
    level: String,
    #[serde(default)]
    user_id: Option<String>,
    filename: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    max_size: Option<u64>,
    #[serde(default)]
    compress: Option<bool>,
    #[serde(default)]
    encrypt: Option<bool>,
    /// Downloads only: a URL straight to the S3 bucket for a plain file.
    #[serde(default)]
    direct: Option<bool>,
}

/// Authenticates, reads the JSON body and checks the caller may presign its location.
async fn read_request(state: &AppState, req: Request) -> Result<(UrlRequest, Location), AppError> {
    let (parts, body) = req.into_parts();
    // Read the (small) body before answering anything, so that even a refusal leaves the
    // connection clean for the client's next request.
    let bytes = to_bytes(body, MAX_JSON_BYTES)
        .await
        .map_err(|_| AppError::bad_request("the body must be a JSON object of at most 64 KiB"))?;
    let principal = state.auth.authenticate(&parts.headers)?;
    let r: UrlRequest = serde_json::from_slice(&bytes)
        .map_err(|e| AppError::bad_request(format!("invalid JSON body: {e}")))?;
    let level: StorageLevel = r.level.parse()?;
    let location = Location::new(&r.domain, level, r.user_id.as_deref(), &r.filename)?;
    state.check_domain(location.domain())?;
    authorize(&principal, location.scope(), Action::Presign)?;
    Ok((r, location))
}

/// `POST /v1/urls/upload`.
pub async fn upload_url(State(state): State<AppState>, req: Request) -> Result<Response, AppError> {
    let (r, location) = read_request(&state, req).await?;
    if r.direct == Some(true) {
        return Err(AppError::bad_request(
            "direct URLs are offered for downloads only",
        ));
    }
    let content_type = r
        .content_type
        .ok_or_else(|| AppError::bad_request("content_type is required"))?;
    let url = state.fm.presign_upload(
        &location,
        &PresignUpload {
            content_type,
            expires_in: r.expires_in.unwrap_or(DEFAULT_EXPIRES_IN),
            max_size: r.max_size,
            compress: r.compress.unwrap_or(false),
            encrypt: r.encrypt.unwrap_or(true),
        },
    )?;
    Ok(json(StatusCode::OK, &url))
}

/// `POST /v1/urls/download`.
pub async fn download_url(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, AppError> {
    let (r, location) = read_request(&state, req).await?;
    let expires_in = r.expires_in.unwrap_or(DEFAULT_EXPIRES_IN);
    let url = if r.direct == Some(true) {
        state
            .fm
            .presign_direct_download(&location, expires_in)
            .await?
    } else {
        state.fm.presign_download(&location, expires_in)?
    };
    Ok(json(StatusCode::OK, &url))
}
