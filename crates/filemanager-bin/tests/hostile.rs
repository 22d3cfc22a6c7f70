//! Hostile input, replayed from the corpus in `tests/hostile/*.jsonl` against a real service
//! (local disk backend, cache on, `FM_DOMAINS` and `FM_MAX_UPLOAD_BYTES` set) over raw TCP, so
//! that nothing is normalised on the way: path traversal and encoding tricks, header injection,
//! oversized headers and bodies, malformed ranges and tokens, presigned URL tampering and
//! cross-tenant attempts on every route. The path corpus also runs against S3 (Garage).
//!
//! Every case names the status the contract (HTTP-API.md, docs/operations.md) requires and,
//! for JSON errors, the error code. After each corpus, the storage directory is walked: only
//! the files the corpus meant to create exist, all inside `{data}/files/{domain}/…`, and the
//! service's own metrics show no 5xx answer (also for requests whose client saw none).
//!
//! Corpus format: one JSON object per line; blank lines and lines starting with `#` are
//! comments. Fields (strings are expanded, see `Env::expand`):
//!
//! - `name`: unique id; `method` (default `GET`), `path` (the raw request target);
//! - `auth`: `svc` (default), `none`, `A`, `B`, `A@d` / `A@d2` (token limited to that domain),
//!   `A@none` (empty `domains`), `tok:NAME` (a crafted token, see `crafted_token`) or
//!   `raw:VALUE` (the whole `Authorization` value);
//! - `headers`: `[[name, value], …]` sent verbatim; `body` (text) or `body_bytes` (that many
//!   bytes); `chunked`, `no_length`, `half_close` (framing tricks);
//! - `expect`: the status, or a list of acceptable ones; `code`: the error code the JSON body
//!   must carry (or a list of acceptable ones), where `"proto"` admits an answer of the HTTP
//!   layer itself (not JSON; e.g. hyper's 400/431/414 for a request it cannot parse) and
//!   `"closed"` a dropped connection; a case allowing several statuses prints which one came;
//! - `stores`: for a case that may create a file, the storage key it must be stored at;
//! - `body_len`: the expected body length of a success.
//!
//! Presigned cases (`presign.jsonl`) mint a real URL first (`mint`, `loc`, `content_type`,
//! `expires_in`, `max_size`, `minter`), then apply `edit`s to its path and query before sending
//! (see `edit_url`); `after_expiry` cases run once their URL's expiry instant has passed.

#[path = "scale/harness.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use filemanager::{CacheSetup, LargeFileSetup, StorageConfig};
use harness::*;
use ring::hmac;
use serde_json::{Value, json};

/// Users: `u1` and `u10`, so that a prefix mistake (`user/u1` matching `user/u10`) shows.
const USER_A: &str = "u1";
const USER_B: &str = "u10";
/// The upload limit of the server (`FM_MAX_UPLOAD_BYTES`).
const MAX_UPLOAD: u64 = 256 * 1024;
/// Length of the APP file the range cases read.
const PUB_LEN: usize = 1000;

struct Env {
    inst: Instance,
    root: tempfile::TempDir,
    d: String,
    d2: String,
    d3: String,
    /// Keys that exist (setup files plus what the corpus stored).
    keys: BTreeSet<String>,
    /// Setup files and their contents, checked intact at the end.
    originals: BTreeMap<String, Vec<u8>>,
    failures: Vec<String>,
    ran: usize,
}

impl Env {
    async fn start() -> Env {
        Env::start_on(None).await
    }

    /// A server on local disk, or on the S3 bucket of the environment when `s3` is given.
    async fn start_on(s3: Option<filemanager::S3Config>) -> Env {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(root.path().join("outside")).unwrap();
        let d = format!("h{}", random_hex(4));
        let d2 = format!("{d}-two");
        let d3 = format!("{d}-unknown");
        let inst = Instance::start(InstanceConfig {
            storage: match s3 {
                Some(cfg) => StorageConfig::S3(cfg),
                None => StorageConfig::Local {
                    root: data.join("files"),
                },
            },
            cache: Some(CacheSetup::with_disk(data.join("cache"))),
            // As `serve` sets it up (used with the S3 backend only).
            large: Some(LargeFileSetup::new(data.join("cache-large"), 1 << 30)),
            max_upload: Some(MAX_UPLOAD),
            domains: vec![d.clone(), d2.clone()],
        })
        .await;
        let mut env = Env {
            inst,
            root,
            d,
            d2,
            d3,
            keys: BTreeSet::new(),
            originals: BTreeMap::new(),
            failures: Vec::new(),
            ran: 0,
        };
        // Files the cases try to reach, so that a refusal is a refusal, not a 404.
        let pub_body: Vec<u8> = (0..PUB_LEN).map(|i| (i % 251) as u8).collect();
        let setup = [
            (format!("{}/app/pub.txt", env.d), pub_body),
            (
                format!("{}/user/{USER_A}/a.txt", env.d),
                b"alice's file".to_vec(),
            ),
            (
                format!("{}/user/{USER_B}/b.txt", env.d),
                b"bob's secret".to_vec(),
            ),
            (
                format!("{}/app/pub2.txt", env.d2),
                b"second domain".to_vec(),
            ),
            (
                format!("{}/user/{USER_A}/a2.txt", env.d2),
                b"alice elsewhere".to_vec(),
            ),
            (
                format!("{}/user/{USER_B}/b2.txt", env.d2),
                b"bob elsewhere".to_vec(),
            ),
        ];
        for (key, body) in setup {
            let r = env
                .send(&RawRequest {
                    method: b"PUT".to_vec(),
                    target: format!("/v1/files/{key}").into_bytes(),
                    headers: vec![auth_header(&format!("Bearer {SERVICE_KEY}"))],
                    body: body.clone(),
                    ..Default::default()
                })
                .await;
            assert_eq!(
                r.status,
                201,
                "setup {key}: {}",
                String::from_utf8_lossy(&r.body)
            );
            env.keys.insert(key.clone());
            env.originals.insert(key, body);
        }
        env
    }

    async fn send(&self, req: &RawRequest) -> RawResponse {
        raw_send(self.inst.addr, req).await
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// Expands the corpus placeholders into bytes:
    /// `{d}` `{d2}` (served domains), `{d3}` (a domain outside `FM_DOMAINS`), `{A}` `{B}`
    /// (user ids), `{svc}` (the service key), `{tok:NAME}` (a crafted token),
    /// `{rep:N:TEXT}` (TEXT repeated N times) and `{x:HH}` (the raw byte 0xHH). Any other `{`
    /// is literal (JSON bodies).
    fn expand(&self, s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find('{') {
            out.extend_from_slice(&rest.as_bytes()[..i]);
            let after = &rest[i + 1..];
            let sub = after.find('}').and_then(|j| {
                let inner = &after[..j];
                self.placeholder(inner).map(|v| (v, j))
            });
            match sub {
                Some((v, j)) => {
                    out.extend_from_slice(&v);
                    rest = &after[j + 1..];
                }
                None => {
                    out.push(b'{');
                    rest = after;
                }
            }
        }
        out.extend_from_slice(rest.as_bytes());
        out
    }

    fn expand_str(&self, s: &str) -> String {
        String::from_utf8(self.expand(s)).expect("expanded text is UTF-8")
    }

    fn placeholder(&self, inner: &str) -> Option<Vec<u8>> {
        let v = match inner {
            "d" => self.d.clone().into_bytes(),
            "d2" => self.d2.clone().into_bytes(),
            "d3" => self.d3.clone().into_bytes(),
            "A" => USER_A.as_bytes().to_vec(),
            "B" => USER_B.as_bytes().to_vec(),
            "svc" => SERVICE_KEY.as_bytes().to_vec(),
            _ => {
                if let Some(name) = inner.strip_prefix("tok:") {
                    return Some(crafted_token(name, &self.d).into_bytes());
                }
                if let Some(hex) = inner.strip_prefix("x:") {
                    return Some(vec![u8::from_str_radix(hex, 16).ok()?]);
                }
                let spec = inner.strip_prefix("rep:")?;
                let (n, text) = spec.split_once(':')?;
                return Some(text.repeat(n.parse().ok()?).into_bytes());
            }
        };
        Some(v)
    }

    fn authorization(&self, auth: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        let bearer = |t: String| Some(auth_header(&format!("Bearer {t}")));
        match auth {
            "none" => None,
            "svc" => bearer(SERVICE_KEY.to_owned()),
            "A" => bearer(user_token(USER_A, None)),
            "B" => bearer(user_token(USER_B, None)),
            "A@d" => bearer(user_token(USER_A, Some(vec![self.d.clone()]))),
            "A@d2" => bearer(user_token(USER_A, Some(vec![self.d2.clone()]))),
            "A@none" => bearer(user_token(USER_A, Some(vec![]))),
            other => {
                if let Some(name) = other.strip_prefix("tok:") {
                    return bearer(crafted_token(name, &self.d));
                }
                let raw = other
                    .strip_prefix("raw:")
                    .unwrap_or_else(|| panic!("unknown auth {other:?}"));
                Some((b"Authorization".to_vec(), self.expand(raw)))
            }
        }
    }

    fn fail(&mut self, name: &str, msg: String) {
        eprintln!("FAIL {name}: {msg}");
        self.failures.push(format!("{name}: {msg}"));
    }

    /// Checks one answer against a case's expectations; returns whether it was a success
    /// (2xx) that the case allowed.
    fn check(&mut self, case: &Value, method: &str, path: &str, resp: &RawResponse) -> bool {
        self.ran += 1;
        let name = case["name"].as_str().unwrap().to_owned();
        let allowed: Vec<u16> = match &case["expect"] {
            Value::Array(a) => a.iter().map(|v| v.as_u64().unwrap() as u16).collect(),
            v => vec![v.as_u64().unwrap_or_else(|| panic!("{name}: expect")) as u16],
        };
        let closed_ok = case["code"] == "closed";
        let shown = abbreviate(&String::from_utf8_lossy(&resp.body));
        if resp.status >= 500 {
            self.fail(&name, format!("5xx: {} {shown}", resp.status));
            return false;
        }
        if resp.status == 0 {
            if !closed_ok {
                self.fail(&name, "the connection closed without an answer".into());
            }
            return false;
        }
        if !allowed.contains(&resp.status) {
            self.fail(
                &name,
                format!("status {} (wanted {allowed:?}): {shown}", resp.status),
            );
            return false;
        }
        if allowed.len() > 1 {
            println!("{name}: answered {} (allowed {allowed:?})", resp.status);
        }
        let text = String::from_utf8_lossy(&resp.body).into_owned();
        for s in SECRETS {
            if text.contains(s) {
                self.fail(&name, "the answer contains a secret".into());
            }
        }
        let root = self.root.path().to_string_lossy().into_owned();
        if text.contains(&root) || text.contains("/tmp/") {
            self.fail(&name, format!("the answer names a local path: {shown}"));
        }
        if (400..500).contains(&resp.status) && method != "HEAD" {
            let codes: Vec<&str> = match &case["code"] {
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                Value::String(s) => vec![s.as_str()],
                _ => Vec::new(),
            };
            let app_error = resp.json().filter(|j| j["error"]["code"].is_string());
            match app_error {
                Some(j) => {
                    let code = j["error"]["code"].as_str().unwrap_or_default();
                    let ok = j["success"] == Value::Bool(false)
                        && codes.contains(&code)
                        && j["error"]["message"].is_string()
                        && j.as_object().map(|o| o.len()) == Some(2)
                        && resp.header("content-type") == Some("application/json");
                    if !ok {
                        self.fail(&name, format!("wanted error code {codes:?}, got {shown}"));
                    }
                }
                None if codes.contains(&"proto") => {}
                None => self.fail(&name, format!("wanted error code {codes:?}, got {shown}")),
            }
        }
        if resp.status < 300 {
            if let Some(n) = case["body_len"].as_u64()
                && method != "HEAD"
                && resp.body.len() as u64 != n
            {
                self.fail(
                    &name,
                    format!("body of {} bytes, wanted {n}", resp.body.len()),
                );
            }
            // A listing never shows anything outside the scope it was asked for.
            if let Some(scope) = path.strip_prefix("/v1/list/")
                && method == "GET"
            {
                let scope = scope.split('?').next().unwrap();
                let root = format!("{}/", decode(scope));
                if let Some(files) = resp.json().and_then(|j| j["files"].as_array().cloned()) {
                    for f in files {
                        let key = f["key"].as_str().unwrap_or_default();
                        if !key.starts_with(&root) {
                            self.fail(&name, format!("listing of {root} shows {key}"));
                        }
                    }
                }
            }
            return true;
        }
        false
    }

    /// Records a file the case was allowed to create, and checks it is where it must be.
    async fn stored(&mut self, case: &Value, method: &str, status: u16) {
        let name = case["name"].as_str().unwrap().to_owned();
        if method != "PUT" || status != 201 {
            return;
        }
        let Some(key) = case["stores"].as_str() else {
            self.fail(&name, "stored a file but names no `stores` key".into());
            return;
        };
        let key = self.expand_str(key);
        let meta = self
            .send(&RawRequest {
                method: b"GET".to_vec(),
                target: format!("/v1/meta/{}", encode_key(&key)).into_bytes(),
                headers: vec![auth_header(&format!("Bearer {SERVICE_KEY}"))],
                ..Default::default()
            })
            .await;
        match meta.json() {
            Some(j) if meta.status == 200 && j["key"] == key.as_str() => {}
            _ => self.fail(
                &name,
                format!(
                    "not stored at {key:?}: meta {} {}",
                    meta.status,
                    String::from_utf8_lossy(&meta.body)
                ),
            ),
        }
        self.keys.insert(key);
    }

    async fn assert_absent(&mut self, name: &str, key: &str) {
        let meta = self
            .send(&RawRequest {
                method: b"GET".to_vec(),
                target: format!("/v1/meta/{}", encode_key(key)).into_bytes(),
                headers: vec![auth_header(&format!("Bearer {SERVICE_KEY}"))],
                ..Default::default()
            })
            .await;
        if meta.status != 404 {
            self.fail(
                name,
                format!("a refused request left {key} behind ({})", meta.status),
            );
        }
    }

    /// Replays one plain corpus case.
    async fn run_case(&mut self, case: &Value) {
        let method = case["method"].as_str().unwrap_or("GET").to_owned();
        let path = case["path"].as_str().expect("path");
        let target = self.expand(path);
        let mut headers = Vec::new();
        if let Some(a) = self.authorization(case["auth"].as_str().unwrap_or("svc")) {
            headers.push(a);
        }
        for h in case["headers"].as_array().into_iter().flatten() {
            let (n, v) = (h[0].as_str().unwrap(), h[1].as_str().unwrap());
            headers.push((self.expand(n), self.expand(v)));
        }
        let body = match (case["body"].as_str(), case["body_bytes"].as_u64()) {
            (Some(b), _) => self.expand(b),
            (None, Some(n)) => (0..n).map(|i| (i % 253) as u8).collect(),
            _ => Vec::new(),
        };
        let req = RawRequest {
            method: method.as_bytes().to_vec(),
            target: target.clone(),
            headers,
            body,
            chunked: case["chunked"].as_bool().unwrap_or(false),
            no_length: case["no_length"].as_bool().unwrap_or(false),
            half_close: case["half_close"].as_bool().unwrap_or(false),
        };
        let resp = self.send(&req).await;
        let shown_path = String::from_utf8_lossy(&target).into_owned();
        self.check(case, &method, &shown_path, &resp);
        self.stored(case, &method, resp.status).await;
    }

    /// Mints the URL a presigned case starts from.
    async fn mint(&self, case: &Value) -> Value {
        let kind = case["mint"].as_str().unwrap();
        let loc: Vec<String> = case["loc"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| self.expand_str(v.as_str().unwrap()))
            .collect();
        let mut body = json!({
            "domain": loc[0], "level": loc[1], "filename": loc[loc.len() - 1],
        });
        if loc.len() == 4 {
            body["user_id"] = json!(loc[2]);
        }
        for f in [
            "content_type",
            "expires_in",
            "max_size",
            "compress",
            "encrypt",
        ] {
            if !case[f].is_null() {
                body[f] = case[f].clone();
            }
        }
        if kind == "upload" && body["content_type"].is_null() {
            body["content_type"] = json!("text/plain");
        }
        let mut headers = Vec::new();
        if let Some(a) = self.authorization(case["minter"].as_str().unwrap_or("svc")) {
            headers.push(a);
        }
        headers.push((b"Content-Type".to_vec(), b"application/json".to_vec()));
        let r = self
            .send(&RawRequest {
                method: b"POST".to_vec(),
                target: format!("/v1/urls/{kind}").into_bytes(),
                headers,
                body: body.to_string().into_bytes(),
                ..Default::default()
            })
            .await;
        assert_eq!(
            r.status,
            200,
            "{}: minting failed: {}",
            case["name"],
            String::from_utf8_lossy(&r.body)
        );
        r.json().unwrap()
    }

    /// Applies a presigned case's edits to a minted URL, sends it and checks the answer.
    async fn run_presigned(&mut self, case: &Value, minted: &Value) {
        let name = case["name"].as_str().unwrap().to_owned();
        let url = minted["url"].as_str().unwrap();
        let target = url
            .strip_prefix(&self.inst.base)
            .expect("URL on this server");
        let (path, query) = target.split_once('?').unwrap();
        let mut path = path.to_owned();
        let mut params: Vec<(String, String)> = query
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let mut tail = String::new();
        for e in case["edit"].as_array().into_iter().flatten() {
            let e = self.expand_str(e.as_str().unwrap());
            edit_url(&e, &mut path, &mut params, &mut tail);
        }
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let target = format!("{path}?{}{tail}", query.join("&"));
        let method = case["method"]
            .as_str()
            .unwrap_or(minted["method"].as_str().unwrap())
            .to_owned();
        let mut headers = Vec::new();
        let signed_ct = minted["headers"]["Content-Type"].as_str();
        match case["content_type_header"].as_str() {
            Some("") => {}
            Some(ct) => headers.push((b"Content-Type".to_vec(), self.expand(ct))),
            None => {
                if let Some(ct) = signed_ct {
                    headers.push((b"Content-Type".to_vec(), ct.as_bytes().to_vec()));
                }
            }
        }
        for h in case["headers"].as_array().into_iter().flatten() {
            let (n, v) = (h[0].as_str().unwrap(), h[1].as_str().unwrap());
            headers.push((self.expand(n), self.expand(v)));
        }
        let body = match (case["body"].as_str(), case["body_bytes"].as_u64()) {
            (Some(b), _) => self.expand(b),
            (None, Some(n)) => vec![b'x'; n as usize],
            _ if method == "PUT" => b"presigned body".to_vec(),
            _ => Vec::new(),
        };
        let resp = self
            .send(&RawRequest {
                method: method.as_bytes().to_vec(),
                target: target.clone().into_bytes(),
                headers,
                body,
                ..Default::default()
            })
            .await;
        let ok = self.check(case, &method, &target, &resp);
        self.stored(case, &method, resp.status).await;
        // A refused upload URL stores nothing at the signed location.
        if case["mint"] == "upload" && !ok {
            let loc: Vec<String> = case["loc"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| self.expand_str(v.as_str().unwrap()))
                .collect();
            let key = loc.join("/");
            if !self.keys.contains(&key) {
                self.assert_absent(&name, &key).await;
            }
        }
    }

    /// The end-of-run checks: setup files intact, no 5xx in the service's metrics, and only
    /// the expected files on disk, all inside their key space.
    async fn finish(mut self, corpus: &str) {
        for (key, body) in self.originals.clone() {
            let r = self
                .send(&RawRequest {
                    method: b"GET".to_vec(),
                    target: format!("/v1/files/{key}?cache=false").into_bytes(),
                    headers: vec![auth_header(&format!("Bearer {SERVICE_KEY}"))],
                    ..Default::default()
                })
                .await;
            if r.status != 200 || r.body != body {
                self.fail(
                    "final",
                    format!("{key} was changed or removed ({})", r.status),
                );
            }
        }
        let metrics = self
            .send(&RawRequest {
                method: b"GET".to_vec(),
                target: b"/metrics".to_vec(),
                ..Default::default()
            })
            .await;
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        for line in text
            .lines()
            .filter(|l| l.starts_with("fm_http_requests_total"))
        {
            if line.contains("status=\"5") {
                self.fail("final", format!("the service answered 5xx: {line}"));
            }
        }
        // Let in-flight cache writes settle before walking the directory.
        if let Some(c) = self.inst.fm.cache() {
            c.run_pending_tasks().await;
        }
        if self.inst.fm.backend_name() == "s3" {
            self.check_listed().await;
            return self.conclude(corpus);
        }
        let files_root = self.data().join("files");
        let mut on_disk = BTreeSet::new();
        for rel in walk_files(self.root.path()) {
            let full = self.root.path().join(&rel);
            if rel.starts_with("data/cache") {
                continue;
            }
            let Ok(under_files) = full.strip_prefix(&files_root) else {
                self.fail(
                    "final",
                    format!("file outside the key space: {}", rel.display()),
                );
                continue;
            };
            let text = under_files.to_string_lossy().into_owned();
            match text.strip_suffix('\\') {
                Some(key) => {
                    on_disk.insert(key.to_owned());
                }
                None => self.fail("final", format!("a file that is not an object: {text}")),
            }
        }
        let unexpected: Vec<String> = on_disk.difference(&self.keys).cloned().collect();
        let missing: Vec<String> = self.keys.difference(&on_disk).cloned().collect();
        for key in unexpected {
            self.fail("final", format!("unexpected file on disk: {key:?}"));
        }
        for key in missing {
            self.fail("final", format!("expected file missing on disk: {key:?}"));
        }
        for key in &on_disk {
            let d = key.split('/').next().unwrap_or_default();
            let rest = &key[d.len()..];
            let scoped = (d == self.d || d == self.d2)
                && (rest.starts_with("/app/")
                    || [USER_A, USER_B]
                        .iter()
                        .any(|u| rest.starts_with(&format!("/user/{u}/"))));
            if !scoped {
                self.failures
                    .push(format!("final: {key:?} is outside the expected scopes"));
            }
        }
        self.conclude(corpus);
    }

    /// On S3: the listings of every scope the corpus touched hold exactly the expected keys.
    async fn check_listed(&mut self) {
        let mut listed = BTreeSet::new();
        for d in [self.d.clone(), self.d2.clone()] {
            for scope in [
                format!("{d}/app"),
                format!("{d}/user/{USER_A}"),
                format!("{d}/user/{USER_B}"),
            ] {
                let r = self
                    .send(&RawRequest {
                        method: b"GET".to_vec(),
                        target: format!("/v1/list/{scope}?cache=false").into_bytes(),
                        headers: vec![auth_header(&format!("Bearer {SERVICE_KEY}"))],
                        ..Default::default()
                    })
                    .await;
                let j = r.json().unwrap_or(Value::Null);
                assert_eq!(j["truncated"], false, "listing of {scope}");
                for f in j["files"].as_array().into_iter().flatten() {
                    listed.insert(f["key"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
        let unexpected: Vec<String> = listed.difference(&self.keys).cloned().collect();
        let missing: Vec<String> = self.keys.difference(&listed).cloned().collect();
        for key in unexpected {
            self.fail("final", format!("unexpected object: {key:?}"));
        }
        for key in missing {
            self.fail("final", format!("expected object missing: {key:?}"));
        }
    }

    fn conclude(self, corpus: &str) {
        println!(
            "hostile corpus {corpus}: {} cases, {} files stored, {} failures",
            self.ran,
            self.keys.len(),
            self.failures.len()
        );
        assert!(
            self.failures.is_empty(),
            "{} of the {corpus} cases failed:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

/// A long answer cut in the middle, so that both ends of an error message show.
fn abbreviate(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 400 {
        return s.to_owned();
    }
    let head: String = chars[..200].iter().collect();
    let tail: String = chars[chars.len() - 200..].iter().collect();
    format!("{head}…{tail}")
}

fn auth_header(value: &str) -> (Vec<u8>, Vec<u8>) {
    (b"Authorization".to_vec(), value.as_bytes().to_vec())
}

/// Percent-decodes a scope path for comparison with keys.
fn decode(s: &str) -> String {
    filemanager::location::percent_decode(s).unwrap_or_else(|_| s.to_owned())
}

/// A storage key as a URL path (each part encoded).
fn encode_key(key: &str) -> String {
    key.split('/')
        .map(filemanager::location::percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// One edit of a presigned URL:
/// `set K=V` (V `+N`/`-N` shifts a number), `pre K=V` (prepends V), `del K`, `add K=V`, `dup K`, `sig flip|upper|trunc|
/// empty|zero|double`, `path FROM=>TO`, `reorder`, `tail TEXT` (raw text after the query).
fn edit_url(e: &str, path: &mut String, params: &mut Vec<(String, String)>, tail: &mut String) {
    let (op, arg) = e.split_once(' ').unwrap_or((e, ""));
    let find = |params: &Vec<(String, String)>, k: &str| params.iter().position(|(n, _)| n == k);
    match op {
        "set" => {
            let (k, v) = arg.split_once('=').unwrap();
            let i = find(params, k).unwrap_or_else(|| panic!("no {k} in the URL"));
            let new = match (v.strip_prefix('+'), v.strip_prefix('-')) {
                (Some(n), _) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    (params[i].1.parse::<i64>().unwrap() + n.parse::<i64>().unwrap()).to_string()
                }
                (_, Some(n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    (params[i].1.parse::<i64>().unwrap() - n.parse::<i64>().unwrap()).to_string()
                }
                _ => v.to_owned(),
            };
            params[i].1 = new;
        }
        "del" => {
            let i = find(params, arg).unwrap_or_else(|| panic!("no {arg} in the URL"));
            params.remove(i);
        }
        "pre" => {
            let (k, v) = arg.split_once('=').unwrap();
            let i = find(params, k).unwrap_or_else(|| panic!("no {k} in the URL"));
            params[i].1 = format!("{v}{}", params[i].1);
        }
        "add" => {
            let (k, v) = arg.split_once('=').unwrap_or((arg, ""));
            params.push((k.to_owned(), v.to_owned()));
        }
        "dup" => {
            let i = find(params, arg).unwrap();
            let p = params[i].clone();
            params.push(p);
        }
        "sig" => {
            let i = find(params, "sig").unwrap();
            let s = &mut params[i].1;
            match arg {
                "flip" => {
                    let last = s.pop().unwrap();
                    s.push(if last == '0' { '1' } else { '0' });
                }
                "upper" => *s = s.to_ascii_uppercase(),
                "trunc" => s.truncate(s.len() - 2),
                "empty" => s.clear(),
                "zero" => *s = "0".repeat(s.len()),
                "double" => *s = s.repeat(2),
                other => panic!("unknown sig edit {other}"),
            }
        }
        "path" => {
            let (from, to) = arg.split_once("=>").unwrap();
            assert!(path.contains(from), "{path} has no {from}");
            *path = path.replacen(from, to, 1);
        }
        "reorder" => params.reverse(),
        "tail" => tail.push_str(arg),
        other => panic!("unknown edit {other}"),
    }
}

// ----- crafted tokens ---------------------------------------------------------------------------

fn b64url(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    out
}

fn jwt(header: &Value, claims: &Value, alg: Option<hmac::Algorithm>, secret: &[u8]) -> String {
    let signing = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = match alg {
        Some(a) => b64url(hmac::sign(&hmac::Key::new(a, secret), signing.as_bytes()).as_ref()),
        None => String::new(),
    };
    format!("{signing}.{sig}")
}

/// A token for user A crafted to be refused (or, for `kid`, accepted): see the cases in
/// `tests/hostile/auth.jsonl`.
fn crafted_token(name: &str, domain: &str) -> String {
    let exp = now_secs() + 3600;
    let good = json!({"sub": USER_A, "exp": exp});
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let s256 = Some(hmac::HMAC_SHA256);
    match name {
        "valid" => jwt(&hs256, &good, s256, JWT_SECRET),
        "kid" => jwt(
            &json!({"alg": "HS256", "typ": "JWT", "kid": "../../../../etc/passwd",
                    "jku": "http://127.0.0.1:9/keys"}),
            &good,
            s256,
            JWT_SECRET,
        ),
        "none" => jwt(&json!({"alg": "none", "typ": "JWT"}), &good, None, b""),
        "none-upper" => jwt(&json!({"alg": "NONE"}), &good, None, b""),
        "none-signed" => jwt(&json!({"alg": "none"}), &good, s256, JWT_SECRET),
        "hs384" => jwt(
            &json!({"alg": "HS384"}),
            &good,
            Some(hmac::HMAC_SHA384),
            JWT_SECRET,
        ),
        "hs512" => jwt(
            &json!({"alg": "HS512"}),
            &good,
            Some(hmac::HMAC_SHA512),
            JWT_SECRET,
        ),
        // Key confusion: an asymmetric algorithm name with an HMAC under the shared secret.
        "rs256" => jwt(&json!({"alg": "RS256"}), &good, s256, JWT_SECRET),
        "es256" => jwt(&json!({"alg": "ES256"}), &good, s256, JWT_SECRET),
        "no-alg" => jwt(&json!({"typ": "JWT"}), &good, s256, JWT_SECRET),
        "badsig" => jwt(&hs256, &good, s256, b"another-secret-another-secret-00"),
        "sigflip" => {
            let mut t = jwt(&hs256, &good, s256, JWT_SECRET);
            let last = t.pop().unwrap();
            t.push(if last == 'A' { 'B' } else { 'A' });
            t
        }
        "nosig" => {
            let t = jwt(&hs256, &good, s256, JWT_SECRET);
            t[..t.rfind('.').unwrap() + 1].to_owned()
        }
        "expired" => jwt(
            &hs256,
            &json!({"sub": USER_A, "exp": now_secs() - 3600}),
            s256,
            JWT_SECRET,
        ),
        "nbf" => jwt(
            &hs256,
            &json!({"sub": USER_A, "exp": exp, "nbf": now_secs() + 3600}),
            s256,
            JWT_SECRET,
        ),
        "nosub" => jwt(&hs256, &json!({"exp": exp}), s256, JWT_SECRET),
        "noexp" => jwt(&hs256, &json!({"sub": USER_A}), s256, JWT_SECRET),
        "emptysub" => jwt(&hs256, &json!({"sub": "", "exp": exp}), s256, JWT_SECRET),
        "subnum" => jwt(&hs256, &json!({"sub": 1, "exp": exp}), s256, JWT_SECRET),
        "expstr" => jwt(
            &hs256,
            &json!({"sub": USER_A, "exp": exp.to_string()}),
            s256,
            JWT_SECRET,
        ),
        "domains-str" => jwt(
            &hs256,
            &json!({"sub": USER_A, "exp": exp, "domains": domain}),
            s256,
            JWT_SECRET,
        ),
        "claims-array" => jwt(&hs256, &json!([USER_A, exp]), s256, JWT_SECRET),
        "garbage" => "not-a-jwt".to_owned(),
        "dots" => "..".to_owned(),
        "twoparts" => {
            let t = jwt(&hs256, &good, s256, JWT_SECRET);
            t[..t.rfind('.').unwrap()].to_owned()
        }
        "fourparts" => format!("{}.x", jwt(&hs256, &good, s256, JWT_SECRET)),
        "padded" => {
            // Standard base64 with padding instead of base64url.
            let t = jwt(&hs256, &good, s256, JWT_SECRET);
            t.replace('.', "=.")
        }
        "huge" => jwt(
            &hs256,
            &json!({"sub": USER_A, "exp": exp, "pad": "x".repeat(40_000)}),
            s256,
            b"another-secret-another-secret-00",
        ),
        other => panic!("unknown crafted token {other}"),
    }
}

// ----- corpus files ----------------------------------------------------------------------------

fn corpus(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/hostile")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut names = BTreeSet::new();
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}:{}: {e}", i + 1));
            let n = v["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}:{}: name", i + 1));
            assert!(names.insert(n.to_owned()), "{name}: duplicate case {n}");
            v
        })
        .collect()
}

async fn replay(file: &str) {
    let mut env = Env::start().await;
    for case in corpus(file) {
        env.run_case(&case).await;
    }
    env.finish(file).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_and_encodings() {
    replay("paths.jsonl").await;
}

/// The path corpus against S3 (Garage): encoded, double-encoded and look-alike names must be
/// stored under exactly their key there too (objects checked through the listings).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_and_encodings_s3() {
    let Some(s3) = s3_from_env("the S3 hostile corpus") else {
        return;
    };
    let mut env = Env::start_on(Some(s3)).await;
    for case in corpus("paths.jsonl") {
        env.run_case(&case).await;
    }
    env.finish("paths.jsonl on S3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_bodies() {
    replay("headers.jsonl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges() {
    replay("ranges.jsonl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens() {
    replay("auth.jsonl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_tenant() {
    replay("tenants.jsonl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_tampering() {
    let mut env = Env::start().await;
    let cases = corpus("presign.jsonl");
    // Mint everything first, so that the short-lived URLs of the expiry cases all age together.
    let mut minted = Vec::new();
    for case in &cases {
        minted.push(env.mint(case).await);
    }
    let mut later = Vec::new();
    for (case, m) in cases.iter().zip(&minted) {
        if case["after_expiry"].as_bool().unwrap_or(false) {
            later.push((case, m));
        } else {
            env.run_presigned(case, m).await;
        }
    }
    // Wait for the expiry instant of the short-lived URLs (a deadline, not a guess): the
    // service refuses a URL once its clock is past `expires`.
    let last = later
        .iter()
        .map(|(_, m)| {
            let q = m["url"].as_str().unwrap().split_once('?').unwrap().1;
            q.split('&')
                .find_map(|kv| kv.strip_prefix("expires="))
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .max()
        .unwrap_or(0);
    while now_secs() <= last {
        let wait = Duration::from_millis(1000 * (last + 1 - now_secs()).min(5));
        tokio::time::sleep(wait.max(Duration::from_millis(50))).await;
    }
    assert!(later.len() <= 20 && !later.is_empty());
    for (case, m) in later {
        env.run_presigned(case, m).await;
    }
    env.finish("presign.jsonl").await;
}
