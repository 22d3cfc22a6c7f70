//! The OpenAPI 3.1 description served at `/openapi.json`.
//!
//! It is built here, in code next to the routes, rather than derived with a macro crate: the
//! JSON shapes come from library types that carry no schema derives, the file routes take a
//! multi-segment location that OpenAPI can only express as one path template per storage level,
//! and a hand-built document keeps exactly the statuses and headers the contract names. The
//! test at the bottom checks that every route of [`super::router`] is described.

use std::sync::OnceLock;

use serde_json::{Value, json};

/// The document as JSON text (built once).
pub fn document_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| document().to_string())
}

fn err(description: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok_json(description: &str, schema: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn param(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": schema, "description": description})
}

fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description})
}

/// A domain, as `filemanager::Domain` accepts it.
const DOMAIN_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,62}$";

/// A user id, as `filemanager::UserId` accepts it: up to 128 of `A-Z a-z 0-9 . _ @ -`, but
/// not `.` or `..` (spelled out, since JSON Schema patterns need not support look-ahead).
const USER_ID_PATTERN: &str = r"^([A-Za-z0-9_@-][A-Za-z0-9._@-]{0,127}|\.[A-Za-z0-9_@-][A-Za-z0-9._@-]{0,126}|\.\.[A-Za-z0-9._@-]{1,126})$";

/// What a filename segment may not hold: `/` (it separates segments), `\` and control
/// characters (C0, DEL and C1: what `char::is_control` refuses).
const SEGMENT_CHAR: &str = r"[^/\\\u0000-\u001f\u007f-\u009f]";
/// The same, and not a dot.
const SEGMENT_CHAR_NOT_DOT: &str = r"[^/\\\u0000-\u001f\u007f-\u009f.]";

/// One filename segment that is not `.` or `..`, of at most `max` characters (`None`: any).
fn segment(max: Option<u32>) -> String {
    let (c, d) = (SEGMENT_CHAR, SEGMENT_CHAR_NOT_DOT);
    match max {
        Some(m) => format!(
            "{d}{c}{{0,{}}}|\\.{d}{c}{{0,{}}}|\\.\\.{c}{{1,{}}}",
            m - 1,
            m - 2,
            m - 2
        ),
        None => format!("{d}{c}*|\\.{d}{c}*|\\.\\.{c}+"),
    }
}

/// The `{filename}` path parameter: one segment (an encoded `/` is refused), of at most 255
/// characters. The library's limit is 255 bytes, so for names beyond ASCII it is stricter than
/// the pattern, which counts characters.
fn segment_pattern() -> String {
    format!("^({})$", segment(Some(255)))
}

/// A whole filename: segments joined by `/` (the total is bounded by `maxLength`).
fn filename_pattern() -> String {
    let seg = segment(None);
    format!("^({seg})(/({seg}))*$")
}

fn domain() -> Value {
    param(
        "domain",
        json!({"type": "string", "pattern": DOMAIN_PATTERN}),
        "The domain (1–63 chars of a-z 0-9 _ -).",
    )
}

fn user_id() -> Value {
    param(
        "user_id",
        json!({"type": "string", "pattern": USER_ID_PATTERN}),
        "The user id; not '.' or '..'.",
    )
}

fn filename() -> Value {
    param(
        "filename",
        json!({"type": "string", "pattern": segment_pattern()}),
        "The filename; its '/'-separated segments appear as path segments, each at most 255 bytes of UTF-8, with no control characters (C0, DEL or C1). An encoded '/' or '\\' is refused with 400.",
    )
}

fn file_headers() -> Value {
    let s = |d: &str| json!({"schema": {"type": "string"}, "description": d});
    json!({
        "ETag": s("Entity tag of the stored file."),
        "Last-Modified": s("HTTP date of the last write."),
        "Accept-Ranges": s("Always `bytes`."),
        "X-Cache": s("`hit` or `miss`."),
        "Content-Length": {"schema": {"type": "integer"}, "description": "Bytes in the body."},
    })
}

fn common_errors(ops: &[u16]) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for code in ops {
        let (k, d) = match code {
            400 => ("400", "invalid_request: bad location, parameter or header."),
            401 => ("401", "unauthorized: missing or bad token."),
            403 => (
                "403",
                "forbidden: the token (or presigned URL) does not allow this.",
            ),
            404 => ("404", "file_not_found or unknown_domain."),
            413 => (
                "413",
                "payload_too_large: over the upload limit; nothing stored.",
            ),
            416 => (
                "416",
                "range_not_satisfiable; `Content-Range: bytes */{size}`.",
            ),
            500 => (
                "500",
                "upload_failed, download_failed, storage_error or integrity_error.",
            ),
            503 => ("503", "storage_unavailable."),
            _ => continue,
        };
        m.insert(k.into(), err(d));
    }
    m
}

fn with(mut base: serde_json::Map<String, Value>, extra: Value) -> Value {
    if let Value::Object(e) = extra {
        base.extend(e);
    }
    Value::Object(base)
}

fn file_ops(params: Vec<Value>) -> Value {
    let binary = json!({"*/*": {"schema": {"type": "string", "format": "binary"}}});
    let download_responses = with(
        common_errors(&[400, 401, 403, 404, 416, 500, 503]),
        json!({
            "200": {"description": "The file's original bytes.", "headers": file_headers(), "content": binary},
            "206": {"description": "One range of the file; `Content-Range` tells which.",
                    "headers": file_headers(), "content": binary},
            "304": {"description": "`If-None-Match` matched the current ETag."},
        }),
    );
    let head_responses = with(
        common_errors(&[]),
        json!({
            "200": {"description": "The download's headers, no body.", "headers": file_headers()},
            "206": {"description": "The headers of a range download.", "headers": file_headers()},
            "304": {"description": "`If-None-Match` matched the current ETag."},
            "400": {"description": "invalid_request (no body)."},
            "401": {"description": "unauthorized (no body)."},
            "403": {"description": "forbidden (no body)."},
            "404": {"description": "not found (no body)."},
            "416": {"description": "range not satisfiable (no body)."},
            "500": {"description": "storage error (no body)."},
            "503": {"description": "storage unavailable (no body)."},
        }),
    );
    let range_headers = json!([
        {"name": "Range", "in": "header", "required": false, "schema": {"type": "string"},
         "description": "bytes=a-b, bytes=a- or bytes=-n (one range; several are ignored)."},
        {"name": "If-None-Match", "in": "header", "required": false, "schema": {"type": "string"}}
    ]);
    let mut get_params = range_headers.as_array().cloned().unwrap_or_default();
    get_params.push(query(
        "cache",
        json!({"type": "boolean"}),
        "false bypasses the cache.",
    ));
    json!({
        "parameters": params,
        "get": {
            "operationId": "download", "summary": "Download a file (streamed; ranges; conditional).",
            "parameters": get_params.clone(),
            "responses": download_responses,
        },
        "head": {
            "operationId": "head", "summary": "The headers of the download, without the body.",
            "parameters": get_params,
            "responses": head_responses,
        },
        "put": {
            "operationId": "upload",
            "summary": "Upload a file (streamed). User metadata as X-Meta-{name} headers.",
            "parameters": [
                query("compress", json!({"type": "boolean", "default": false}), "Store compressed."),
                query("encrypt", json!({"type": "boolean", "default": true}), "Store encrypted."),
                query("cache", json!({"type": "boolean", "default": true}), "Keep the content in the cache."),
            ],
            "requestBody": {"required": true, "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": with(common_errors(&[400, 401, 403, 404, 413, 500, 503]),
                json!({"201": ok_json("Stored; the file object.", "UploadResult")})),
        },
        "delete": {
            "operationId": "delete", "summary": "Delete a file.",
            "responses": with(common_errors(&[400, 401, 403, 404, 500, 503]),
                json!({"200": ok_json("Deleted.", "DeleteResult")})),
        },
    })
}

fn meta_ops(params: Vec<Value>) -> Value {
    json!({
        "parameters": params,
        "get": {
            "operationId": "metadata", "summary": "The file object of a file.",
            "parameters": [query("cache", json!({"type": "boolean"}), "false bypasses the cache.")],
            "responses": with(common_errors(&[400, 401, 403, 404, 500, 503]),
                json!({"200": ok_json("The file object.", "FileObject")})),
        }
    })
}

fn list_ops(params: Vec<Value>) -> Value {
    json!({
        "parameters": params,
        "get": {
            "operationId": "list", "summary": "List files in key order, one page at a time.",
            "parameters": [
                query("prefix", json!({"type": "string"}), "Relative to the level's root."),
                query("max_keys", json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000}), "Page size."),
                query("cursor", json!({"type": "string"}), "next_cursor of the previous page."),
                query("cache", json!({"type": "boolean"}), "false bypasses the cache."),
            ],
            "responses": with(common_errors(&[400, 401, 403, 404, 500, 503]),
                json!({"200": ok_json("One page.", "ListResult")})),
        }
    })
}

fn url_op(id: &str, summary: &str, body: &str) -> Value {
    json!({
        "post": {
            "operationId": id, "summary": summary,
            "requestBody": {"required": true, "content": {"application/json": {
                "schema": {"$ref": format!("#/components/schemas/{body}")}}}},
            "responses": with(common_errors(&[400, 401, 403, 404, 500]),
                json!({"200": ok_json("The URL and how to use it.", "PresignedUrl")})),
        }
    })
}

fn ops_route(id: &str, summary: &str, content: Value, errors: &[u16]) -> Value {
    json!({
        "get": {
            "operationId": id, "summary": summary, "security": [],
            "responses": with(common_errors(errors), json!({"200": {"description": "OK", "content": content}})),
        }
    })
}

fn schemas() -> Value {
    let nullable_string = json!({"type": ["string", "null"]});
    json!({
        "Error": {
            "type": "object", "required": ["success", "error"],
            "properties": {
                "success": {"const": false},
                "error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string", "description": "invalid_request, unauthorized, forbidden, file_not_found, unknown_domain, payload_too_large, range_not_satisfiable, upload_failed, download_failed, storage_error, integrity_error, storage_unavailable (and not_found, method_not_allowed for unknown routes)."},
                    "message": {"type": "string"}
                }}
            }
        },
        "FileObject": {
            "type": "object",
            "required": ["key", "domain", "level", "user_id", "filename", "size", "stored_size",
                         "content_type", "etag", "last_modified", "compressed", "encrypted", "metadata"],
            "properties": {
                "key": {"type": "string"}, "domain": {"type": "string"},
                "level": {"enum": ["app", "user"]}, "user_id": nullable_string,
                "filename": {"type": "string"},
                "size": {"type": "integer", "minimum": 0},
                "stored_size": {"type": "integer", "minimum": 0},
                "content_type": {"type": "string"}, "etag": nullable_string,
                "last_modified": {"type": "string", "format": "date-time"},
                "compressed": {"type": "boolean"}, "encrypted": {"type": "boolean"},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        },
        "UploadResult": {
            "allOf": [{"$ref": "#/components/schemas/FileObject"},
                      {"type": "object", "required": ["success"], "properties": {"success": {"const": true}}}]
        },
        "DeleteResult": {
            "type": "object", "required": ["success", "key"],
            "properties": {"success": {"const": true}, "key": {"type": "string"}}
        },
        "ListedFile": {
            "type": "object", "required": ["filename", "key", "size", "last_modified", "etag"],
            "properties": {
                "filename": {"type": "string"}, "key": {"type": "string"},
                "size": {"type": "integer", "minimum": 0},
                "last_modified": {"type": "string", "format": "date-time"},
                "etag": nullable_string, "content_type": {"type": "string"}
            }
        },
        "ListResult": {
            "type": "object", "required": ["success", "files", "count", "truncated", "next_cursor"],
            "properties": {
                "success": {"const": true},
                "files": {"type": "array", "items": {"$ref": "#/components/schemas/ListedFile"}},
                "count": {"type": "integer", "minimum": 0},
                "truncated": {"type": "boolean"}, "next_cursor": nullable_string
            }
        },
        "PresignUploadRequest": presign_request(true),
        "PresignDownloadRequest": presign_request(false),
        "PresignedUrl": {
            "type": "object", "required": ["success", "url", "method", "headers", "expires_at", "expires_in"],
            "properties": {
                "success": {"const": true}, "url": {"type": "string"},
                "method": {"enum": ["PUT", "GET"]},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "expires_at": {"type": "string", "format": "date-time"},
                "expires_in": {"type": "integer"}
            }
        },
        "Status": {
            "type": "object", "required": ["status"],
            "properties": {"status": {"type": "string"}, "backend": {"type": "string"}}
        }
    })
}

/// The body of a URL request: an APP target (no `user_id`) or a USER target (with one).
fn presign_request(upload: bool) -> Value {
    let expires = json!({"type": "integer", "minimum": 1, "maximum": 604800, "default": 3600});
    let mut common = json!({
        "domain": {"type": "string", "pattern": DOMAIN_PATTERN},
        "filename": {"type": "string", "maxLength": 900,
                     "pattern": filename_pattern()},
        "expires_in": expires,
    });
    let mut required = vec!["domain", "level", "filename"];
    if upload {
        let extra = json!({
            "content_type": {"type": "string", "pattern": "^[a-z]+/[a-z0-9.+-]+$"},
            "max_size": {"type": "integer", "minimum": 0},
            "compress": {"type": "boolean", "default": false},
            "encrypt": {"type": "boolean", "default": true},
        });
        if let (Value::Object(c), Value::Object(e)) = (&mut common, extra) {
            c.extend(e);
        }
        required.push("content_type");
    } else if let Value::Object(c) = &mut common {
        c.insert(
            "direct".into(),
            json!({"type": "boolean", "default": false,
                   "description": "A URL straight to the S3 bucket, for plain files on S3 only."}),
        );
    }
    let variant = |level: &str, user: bool| {
        let mut props = common.clone();
        props["level"] = json!({"const": level});
        let mut req = required.clone();
        if user {
            props["user_id"] = json!({"type": "string", "pattern": USER_ID_PATTERN});
            req.push("user_id");
        }
        json!({"type": "object", "required": req, "properties": props})
    };
    json!({"oneOf": [variant("app", false), variant("user", true)]})
}

/// The whole document.
pub fn document() -> Value {
    let status = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "FileManager",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Files of multi-domain applications at two levels: {domain}/app/{filename} (shared) and {domain}/user/{user_id}/{filename} (private). Presigned URLs (from /v1/urls/*) carry method, expires, ct, max, compress, encrypt and sig query parameters and need no Authorization header."
        },
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "A service key (FM_API_KEYS) or an HS256 JWT with sub, exp and optional domains."}},
            "schemas": schemas(),
        },
        "paths": {
            "/v1/files/{domain}/app/{filename}": file_ops(vec![domain(), filename()]),
            "/v1/files/{domain}/user/{user_id}/{filename}": file_ops(vec![domain(), user_id(), filename()]),
            "/v1/meta/{domain}/app/{filename}": meta_ops(vec![domain(), filename()]),
            "/v1/meta/{domain}/user/{user_id}/{filename}": meta_ops(vec![domain(), user_id(), filename()]),
            "/v1/list/{domain}/app": list_ops(vec![domain()]),
            "/v1/list/{domain}/user/{user_id}": list_ops(vec![domain(), user_id()]),
            "/v1/urls/upload": url_op("presignUpload", "A presigned upload URL.", "PresignUploadRequest"),
            "/v1/urls/download": url_op("presignDownload", "A presigned download URL.", "PresignDownloadRequest"),
            "/healthz": ops_route("healthz", "The process is up.", status.clone(), &[]),
            "/readyz": ops_route("readyz", "The storage backend answers.", status, &[503]),
            "/metrics": ops_route("metrics", "Prometheus metrics.", json!({"text/plain": {"schema": {"type": "string"}}}), &[]),
            "/openapi.json": ops_route("openapi", "This document.", json!({"application/json": {"schema": {"type": "object"}}}), &[]),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route template of the router, with the OpenAPI paths that describe it.
    const ROUTES: [(&str, &[&str]); 9] = [
        (
            "/v1/files/{*loc}",
            &[
                "/v1/files/{domain}/app/{filename}",
                "/v1/files/{domain}/user/{user_id}/{filename}",
            ],
        ),
        (
            "/v1/meta/{*loc}",
            &[
                "/v1/meta/{domain}/app/{filename}",
                "/v1/meta/{domain}/user/{user_id}/{filename}",
            ],
        ),
        (
            "/v1/list/{*scope}",
            &["/v1/list/{domain}/app", "/v1/list/{domain}/user/{user_id}"],
        ),
        ("/v1/urls/upload", &["/v1/urls/upload"]),
        ("/v1/urls/download", &["/v1/urls/download"]),
        ("/healthz", &["/healthz"]),
        ("/readyz", &["/readyz"]),
        ("/metrics", &["/metrics"]),
        ("/openapi.json", &["/openapi.json"]),
    ];

    #[test]
    fn every_route_is_described() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let source = include_str!("mod.rs");
        for (route, described) in ROUTES {
            assert!(
                source.contains(&format!("\"{route}\"")),
                "{route} is not routed"
            );
            for p in described {
                assert!(paths.contains_key(*p), "{p} is not described");
            }
        }
        assert_eq!(
            paths.len(),
            ROUTES.iter().map(|(_, d)| d.len()).sum::<usize>()
        );
        assert_eq!(source.matches(".route(").count(), ROUTES.len());
    }

    /// The path parameters' patterns accept a value exactly when the library does, for
    /// every character up to U+2FFF in every position and for a few boundary lengths, so
    /// that generated clients and fuzzers neither send what is refused nor miss what is
    /// allowed. (The library's byte limits, e.g. 255 bytes per filename segment, are not
    /// expressible as a pattern over characters and are left out.)
    #[test]
    fn path_patterns_match_the_library() {
        use filemanager::{Domain, Filename, UserId};
        let pattern = |p: Value| {
            let text = p["schema"]["pattern"].as_str().unwrap().to_owned();
            regex::Regex::new(&text).unwrap()
        };
        let (domain, user, file) = (pattern(domain()), pattern(user_id()), pattern(filename()));
        let mut samples: Vec<String> = Vec::new();
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            for s in [
                format!("{c}"),
                format!("a{c}"),
                format!("{c}a"),
                format!("a{c}b"),
            ] {
                samples.push(s);
            }
        }
        for n in [62, 63, 64, 127, 128, 129, 253, 254, 255, 256] {
            samples.push("a".repeat(n));
        }
        samples.extend([".", "..", "a.", ".a", "a..b", "-a", "_a", "@a"].map(String::from));
        for s in &samples {
            assert_eq!(
                domain.is_match(s),
                Domain::new(s.as_str()).is_ok(),
                "domain {s:?}"
            );
            assert_eq!(
                user.is_match(s),
                UserId::new(s.as_str()).is_ok(),
                "user_id {s:?}"
            );
            // One segment: the pattern describes a single path segment of the filename.
            if !s.contains('/') {
                assert_eq!(
                    file.is_match(s),
                    Filename::new(s.as_str()).is_ok(),
                    "filename {s:?}"
                );
            }
        }
        // The whole filename of a URL request: segments joined by '/'.
        let whole = regex::Regex::new(&filename_pattern()).unwrap();
        let mut names: Vec<String> = [
            "a/b", "a//b", "/a", "a/", "a/./b", "a/../b", "a/.b/..c", ".../a",
        ]
        .map(String::from)
        .to_vec();
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            names.push(format!("x/{c}"));
            names.push(format!("{c}/x"));
        }
        for s in &names {
            assert_eq!(
                whole.is_match(s),
                Filename::new(s.as_str()).is_ok(),
                "filename {s:?}"
            );
        }
    }

    #[test]
    fn file_routes_have_every_method() {
        let doc = document();
        let files = &doc["paths"]["/v1/files/{domain}/app/{filename}"];
        for m in ["get", "head", "put", "delete"] {
            assert!(files[m].is_object(), "{m}");
        }
        assert!(serde_json::from_str::<Value>(document_json()).is_ok());
    }
}
