//! Maps backend errors to the public [`Error`], keeping paths, URLs and credentials out.
//!
//! object_store's messages name local file-system paths and backend URLs; a caller must never
//! see those. The full error goes to the log at `warn`, the caller gets a short reason and the
//! right variant: not found, unavailable (retryable) or a plain storage error.

use object_store::client::{HttpError, HttpErrorKind};

use crate::error::Error;

/// Maps an object_store error that happened while working on `key`.
pub(crate) fn map(err: object_store::Error, key: &str) -> Error {
    match err {
        object_store::Error::NotFound { .. } => {
            return Error::FileNotFound {
                key: key.to_owned(),
            };
        }
        // Multi-request reads pin the version with If-Match; a write in between fails the
        // precondition, and the reader starts over (see `FileManager::reading`).
        object_store::Error::Precondition { .. } => return Error::changed(key),
        _ => {}
    }
    // A plain 404 or 412 arrives as the variants above. Inside another error they come from
    // object_store resuming a broken body: the object was deleted (404), shortened (416) or
    // replaced (412) since the read began, so the read starts over on the current version.
    if matches!(status_in_chain(&err), Some(404 | 412 | 416)) {
        tracing::info!(key, error = %err, "the object changed while its body was read");
        return Error::changed(key);
    }
    tracing::warn!(key, error = %err, "storage backend error");
    let (reason, retryable) = classify(&err);
    if retryable {
        Error::StorageUnavailable { reason }
    } else {
        Error::StorageError {
            key: Some(key.to_owned()),
            reason,
            retryable: false,
        }
    }
}

/// A path- and URL-free reason, and whether the failure is transient.
fn classify(err: &object_store::Error) -> (String, bool) {
    use object_store::Error as E;
    match err {
        E::AlreadyExists { .. } => ("the object already exists".into(), false),
        E::Precondition { .. } => ("a precondition failed".into(), false),
        E::NotModified { .. } => ("not modified".into(), false),
        E::PermissionDenied { .. } => ("the backend denied access".into(), false),
        E::Unauthenticated { .. } => ("the backend rejected the credentials".into(), false),
        E::NotSupported { .. } | E::NotImplemented { .. } => {
            ("the backend does not support this operation".into(), false)
        }
        _ => classify_source(err),
    }
}

/// Walks the error's source chain looking for an HTTP status, a transport failure or an I/O
/// error, the three things that decide whether a retry makes sense.
fn classify_source(err: &(dyn std::error::Error + 'static)) -> (String, bool) {
    for e in sources(err) {
        let text = e.to_string();
        if let Some(status) = status_in_text(&text) {
            let transient = status >= 500 || status == 429;
            return (format!("the backend answered HTTP {status}"), transient);
        }
        // S3 may answer 200 with an error document (CompleteMultipartUpload does); object_store
        // then reports "error response" with the body and no status. The S3 codes for a busy
        // or degraded server are as transient as a 503.
        if text.contains("error response")
            && ["InternalError", "ServiceUnavailable", "SlowDown"]
                .iter()
                .any(|code| text.contains(&format!("<Code>{code}</Code>")))
        {
            return ("the backend reported an internal error".into(), true);
        }
        if let Some(http) = e.downcast_ref::<HttpError>() {
            let (what, transient) = match http.kind() {
                HttpErrorKind::Connect => ("could not connect to the backend", true),
                HttpErrorKind::Timeout => ("the backend timed out", true),
                HttpErrorKind::Request => ("the request to the backend failed", true),
                HttpErrorKind::Interrupted => ("the connection to the backend broke", true),
                HttpErrorKind::Decode => ("the backend's answer could not be read", true),
                _ => ("the backend failed", true),
            };
            return (what.into(), transient);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io_reason(io);
        }
    }
    ("the backend failed".into(), false)
}

/// `err` and the errors behind it, outermost first (`Error::sources` is not stable yet).
pub(crate) fn sources<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

/// The first HTTP status named along the error's source chain.
fn status_in_chain(err: &(dyn std::error::Error + 'static)) -> Option<u16> {
    sources(err).find_map(|e| status_in_text(&e.to_string()))
}

/// object_store does not export its retry error type, only its message, which reads
/// "… status code: 503 …" for an HTTP failure; this digs the status out of it.
fn status_in_text(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    let digits = text.get(at..at + 3)?;
    digits.parse().ok().filter(|s| (100..600).contains(s))
}

fn io_reason(io: &std::io::Error) -> (String, bool) {
    use std::io::ErrorKind as K;
    let what = match io.kind() {
        K::StorageFull => "no space left on the storage device",
        K::PermissionDenied => "permission denied by the storage device",
        K::ReadOnlyFilesystem => "the storage device is read-only",
        K::TimedOut => "the storage device timed out",
        K::UnexpectedEof => "the stored file ended early",
        _ => "an I/O error occurred in storage",
    };
    (what.into(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_never_name_paths() {
        let err = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "/secret/data/dir/blog/app/x: no space",
            )),
        };
        let mapped = map(err, "blog/app/x");
        let text = mapped.to_string();
        assert!(text.contains("no space left"), "{text}");
        assert!(!text.contains("/secret"), "{text}");
        assert!(!mapped.is_retryable());
    }

    #[test]
    fn a_resumed_body_meeting_a_changed_object_restarts_the_read() {
        for status in [404, 412, 416] {
            let err = object_store::Error::Generic {
                store: "S3",
                source: format!(
                    "Error performing GET http://host/b/k after 1 retries - Server returned \
                     non-2xx status code: {status} Whatever"
                )
                .into(),
            };
            assert!(map(err, "k").is_changed(), "{status}");
        }
        let err = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 503 Slow Down".into(),
        };
        assert!(!map(err, "k").is_changed());
    }

    #[test]
    fn an_error_document_of_a_busy_server_is_transient() {
        let err = object_store::Error::Generic {
            store: "S3",
            source: "Error performing POST http://h/b/k?uploadId=1 - Server returned error \
                     response: <Error><Code>InternalError</Code><Message>x</Message></Error>"
                .into(),
        };
        let mapped = map(err, "k");
        assert!(mapped.is_retryable(), "{mapped}");
        assert!(!mapped.to_string().contains("http://"), "{mapped}");
        let err = object_store::Error::Generic {
            store: "S3",
            source: "Server returned error response: <Error><Code>AccessDenied</Code></Error>"
                .into(),
        };
        assert!(!map(err, "k").is_retryable());
    }

    #[test]
    fn not_found_is_file_not_found() {
        let err = object_store::Error::NotFound {
            path: "/abs/path".into(),
            source: "x".into(),
        };
        assert!(matches!(map(err, "k"), Error::FileNotFound { key } if key == "k"));
    }
}
