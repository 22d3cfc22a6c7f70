//! [`AppError`]: every failure a handler can return, and the one place that turns it into an
//! HTTP status and the contract's error JSON (`{"success": false, "error": {code, message}}`).
//!
//! Messages come from the library's `Display`, which never carries a secret, a stack trace or a
//! file-system path; the HTTP layer adds only fixed texts of its own.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use filemanager::Error;
use serde_json::json;

/// A failed request.
#[derive(Debug)]
pub enum AppError {
    /// A library error; its variant decides the status.
    Lib(Error),
    /// No usable credentials: missing, malformed, badly signed or expired token (401).
    Unauthorized(&'static str),
    /// Good credentials without the right for this request (403).
    Forbidden(String),
    /// The domain is not in `FM_DOMAINS` (404 `unknown_domain`).
    UnknownDomain,
    /// The request itself is malformed outside what the library checks (400).
    BadRequest(String),
    /// No route matches (404 `not_found`).
    NoRoute,
    /// The route exists, the method does not (405 `method_not_allowed`).
    MethodNotAllowed,
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Lib(e)
    }
}

impl AppError {
    /// Shorthand for a 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        AppError::BadRequest(message.into())
    }

    /// Shorthand for a 403 with `message`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        AppError::Forbidden(message.into())
    }

    /// The status and contract error code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::Lib(e) => (lib_status(e), e.code()),
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::UnknownDomain => (StatusCode::NOT_FOUND, "unknown_domain"),
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            AppError::NoRoute => (StatusCode::NOT_FOUND, "not_found"),
            AppError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        }
    }

    fn message(&self) -> String {
        match self {
            AppError::Lib(e) => e.to_string(),
            AppError::Unauthorized(m) => (*m).to_owned(),
            AppError::Forbidden(m) | AppError::BadRequest(m) => m.clone(),
            AppError::UnknownDomain => "unknown domain".to_owned(),
            AppError::NoRoute => "no such route".to_owned(),
            AppError::MethodNotAllowed => "method not allowed on this route".to_owned(),
        }
    }
}

/// The status for each library error. The library's enum is `#[non_exhaustive]`: a variant
/// added later answers 500 `storage_error`-class until it is given its own arm here.
fn lib_status(e: &Error) -> StatusCode {
    match e {
        Error::InvalidLocation { .. } | Error::InvalidInput { .. } | Error::BodyFailed { .. } => {
            StatusCode::BAD_REQUEST
        }
        Error::FileNotFound { .. } => StatusCode::NOT_FOUND,
        Error::Forbidden { .. } => StatusCode::FORBIDDEN,
        Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        Error::StorageUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::FileUploadError { .. }
        | Error::FileDownloadError { .. }
        | Error::StorageError { .. }
        | Error::Integrity { .. }
        | Error::Config { .. }
        | Error::Unsupported { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        // An unknown future library variant may not map to a contract code: keep the body
        // within the contract's codes.
        let code = if status == StatusCode::INTERNAL_SERVER_ERROR && !CODES_500.contains(&code) {
            "storage_error"
        } else {
            code
        };
        let message = self.message();
        if status.is_server_error() {
            tracing::warn!(code, %message, "request failed");
        }
        let body = json!({"success": false, "error": {"code": code, "message": message}});
        let mut resp = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body.to_string(),
        )
            .into_response();
        let headers = resp.headers_mut();
        match &self {
            AppError::Lib(Error::RangeNotSatisfiable { size }) => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            AppError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::Lib(e) if e.is_retryable() => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

const CODES_500: [&str; 4] = [
    "upload_failed",
    "download_failed",
    "storage_error",
    "integrity_error",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_map_to_contract_statuses() {
        let cases: Vec<(Error, u16, &str)> = vec![
            (
                Error::FileNotFound { key: "k".into() },
                404,
                "file_not_found",
            ),
            (
                Error::PayloadTooLarge { limit: 1 },
                413,
                "payload_too_large",
            ),
            (
                Error::RangeNotSatisfiable { size: 3 },
                416,
                "range_not_satisfiable",
            ),
            (
                Error::StorageUnavailable { reason: "x".into() },
                503,
                "storage_unavailable",
            ),
            (Error::Forbidden { reason: "x".into() }, 403, "forbidden"),
        ];
        for (e, status, code) in cases {
            let (s, c) = AppError::Lib(e).status_and_code();
            assert_eq!((s.as_u16(), c), (status, code));
        }
    }

    #[test]
    fn unsatisfiable_range_names_the_size() {
        let resp = AppError::Lib(Error::RangeNotSatisfiable { size: 10 }).into_response();
        assert_eq!(resp.headers()[header::CONTENT_RANGE], "bytes */10");
    }
}
