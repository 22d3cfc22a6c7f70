//! The mixed workload of the scale tests, and its consistency checker.
//!
//! Clients run a closed loop of uploads (1 KiB to 12 MiB, some chunked, compressed, plain or
//! not cached), full and ranged downloads (through the cache and around it), HEAD, metadata,
//! listings, overwrites and deletes over a small shared key space (two domains, APP and USER
//! level, user tokens and the service key), through one or more service instances.
//!
//! Every write is a *version* with a unique id (sent as `X-Meta-V`) and deterministic content
//! (random-access, so a range can be checked without holding the file). Each key keeps a log of
//! its versions with when they started and ended. A read that ran from `r0` to `r1` may return
//! version `v` only if `v` started before `r1` and no later write `w` (one that started after `v`
//! ended) had already ended before `r0` *and was visible to the reader*: always when the read
//! bypasses the cache or went to the instance that wrote `w`; through another instance's cache
//! only once that instance has applied `w`'s invalidation (its bus counter of messages applied
//! has reached the writer's count of messages published when `w` returned). Anything else is a
//! mismatch: bytes that match no version (corrupt), bytes and headers of different versions
//! (torn), or a version that was already overwritten (stale).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::{Instance, SERVICE_KEY, user_token};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

// ----- content -----------------------------------------------------------------------------------

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Bytes `range` of the content of a version (random-access; compressible content repeats one
/// letter per 4 KiB run).
pub fn content(seed: u64, compressible: bool, range: std::ops::Range<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity((range.end - range.start) as usize);
    let mut i = range.start;
    while i < range.end {
        if compressible {
            let letter = b'a' + (splitmix(seed ^ (i / 4096)) % 26) as u8;
            let run_end = ((i / 4096) + 1) * 4096;
            let n = run_end.min(range.end) - i;
            out.extend(std::iter::repeat_n(letter, n as usize));
            i += n;
        } else {
            let word = splitmix(seed ^ (i / 8).wrapping_mul(0xD6E8_FEB8_6659_FD93)).to_le_bytes();
            let from = (i % 8) as usize;
            let n = (8 - from).min((range.end - i) as usize);
            out.extend_from_slice(&word[from..from + n]);
            i += n as u64;
        }
    }
    out
}

fn sha(data: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .try_into()
        .unwrap()
}

// ----- versions and the checker --------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Version {
    id: u64,
    deleted: bool,
    seed: u64,
    compressible: bool,
    size: u64,
    sha: [u8; 32],
    /// Nanoseconds since the workload's origin.
    start: u64,
    /// When the write's answer arrived; `None` while in flight, or forever when it failed
    /// (it may or may not have taken effect).
    end: Option<u64>,
    /// The instance the write went through.
    instance: usize,
    /// That instance's count of bus messages published when the write returned.
    published: u64,
    /// Refused (4xx) or found nothing to delete (404): never took effect.
    void: bool,
}

#[derive(Debug, Default)]
struct KeyLog {
    versions: Vec<Version>,
    /// The latest operations on the key, for mismatch reports.
    events: std::collections::VecDeque<String>,
}

impl KeyLog {
    fn event(&mut self, text: String) {
        if self.events.len() == 30 {
            self.events.pop_front();
        }
        self.events.push_back(text);
    }

    fn history(&self) -> String {
        self.events.iter().cloned().collect::<Vec<_>>().join(" | ")
    }
}

/// How a read may lag: `Strict` for reads that go to storage, `Cache { instance, applied }`
/// for reads through an instance's cache, with that instance's bus counter at the read's start.
#[derive(Debug, Clone, Copy)]
pub enum View {
    Strict,
    Cache {
        instance: usize,
        applied: Option<u64>,
    },
}

impl KeyLog {
    fn visible(w: &Version, view: View) -> bool {
        match view {
            View::Strict => true,
            View::Cache { instance, applied } => {
                w.instance == instance || applied.is_some_and(|a| a >= w.published)
            }
        }
    }

    /// Whether the version at `idx` may be what a read over `[r0, r1]` returned.
    fn acceptable(&self, idx: usize, r0: u64, r1: u64, view: View) -> bool {
        let v = &self.versions[idx];
        if v.void || v.start >= r1 {
            return false;
        }
        let Some(v_end) = v.end else {
            return true;
        };
        !self.versions[idx + 1..].iter().any(|w| {
            !w.void && w.start > v_end && w.end.is_some_and(|e| e < r0) && Self::visible(w, view)
        })
    }

    fn absent_ok(&self, r0: u64, r1: u64, view: View) -> bool {
        (0..self.versions.len())
            .rev()
            .filter(|&i| self.versions[i].deleted)
            .any(|i| self.acceptable(i, r0, r1, view))
    }

    fn find(&self, id: u64) -> Option<usize> {
        self.versions.iter().position(|v| v.id == id)
    }
}

// ----- the key space -------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct KeySpec {
    /// `{domain}/app/{name}` or `{domain}/user/{user}/{name}`.
    pub key: String,
    pub domain: String,
    pub user: Option<String>,
}

impl KeySpec {
    fn scope(&self) -> String {
        match &self.user {
            None => format!("{}/app", self.domain),
            Some(u) => format!("{}/user/{u}", self.domain),
        }
    }
}

/// The key space: `domains` × (APP files + users × files).
pub fn key_space(domains: &[String], app_files: usize, users: usize, files: usize) -> Vec<KeySpec> {
    let mut out = Vec::new();
    for d in domains {
        for i in 0..app_files {
            out.push(KeySpec {
                key: format!("{d}/app/dir{}/file-{i}.bin", i % 3),
                domain: d.clone(),
                user: None,
            });
        }
        for u in 0..users {
            for i in 0..files {
                let user = format!("user{u}");
                out.push(KeySpec {
                    key: format!("{d}/user/{user}/f/{i}.dat"),
                    domain: d.clone(),
                    user: Some(user),
                });
            }
        }
    }
    out
}

// ----- counters ----------------------------------------------------------------------------------

/// Phases of a run (for the node-kill test): before the kill, outage (kill until healthy
/// again), after.
pub const PHASES: [&str; 3] = ["before", "outage", "after"];

#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub uploads: AtomicU64,
    pub big_uploads: AtomicU64,
    pub downloads: AtomicU64,
    pub ranged: AtomicU64,
    pub heads: AtomicU64,
    pub metas: AtomicU64,
    pub lists: AtomicU64,
    pub deletes: AtomicU64,
    pub xchecks: AtomicU64,
    pub cache_hits: AtomicU64,
    pub mismatches: AtomicU64,
    pub server_errors: AtomicU64,
    /// Downloads whose body was cut while a write or delete of the same key ran: S3 cannot
    /// keep serving a version being replaced (Garage drops its blocks), and after the 200 the
    /// only honest move left is to cut the connection. Counted, not failures.
    pub cut_by_write: AtomicU64,
    /// Failed requests (5xx, transport errors, unexpected 4xx) per phase.
    pub failures: [AtomicU64; 3],
    pub requests_by_phase: [AtomicU64; 3],
}

pub struct Workload {
    pub instances: Vec<Arc<Instance>>,
    pub keys: Vec<KeySpec>,
    logs: Vec<Mutex<KeyLog>>,
    origin: Instant,
    next_id: AtomicU64,
    pub counters: Counters,
    pub phase: AtomicU8,
    /// Bus counters at the start: (messages published, messages applied) per instance.
    baseline: Vec<(u64, u64)>,
    problems: Mutex<Vec<String>>,
    clients: Vec<reqwest::Client>,
    tokens: BTreeMap<String, String>,
    latencies: Mutex<Vec<(&'static str, u32)>>,
    /// Failures by (phase, class).
    classes: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    pub stop: AtomicBool,
}

/// A failure's class, for the report.
fn classify(what: &str) -> &'static str {
    if what.contains("a precondition failed") {
        "500 precondition failed (read raced an overwrite)"
    } else if what.starts_with("PUT") && what.contains("404 Not Found") {
        "PUT answered 404 (multipart upload superseded)"
    } else if what.contains(": body: ") || what.contains("transport") {
        "connection broke mid-answer"
    } else if what.contains("the connection to the backend broke") {
        // A small answer is read whole before its 200 goes out, so a cut from the backend
        // arrives as a clean 503 rather than as a cut connection.
        "connection broke under a small answer (503 before the status went out)"
    } else if what.contains("503") {
        "503 storage_unavailable"
    } else if what.starts_with("head") && what.contains(": 5") {
        "5xx on HEAD (no body to tell why)"
    } else if what.contains(": 5") {
        "other 5xx"
    } else {
        "other"
    }
}

fn published(inst: &Instance) -> u64 {
    inst.fm
        .cache_stats()
        .map(|s| s.invalidations + s.repairs_published)
        .unwrap_or(0)
}

fn applied(inst: &Instance) -> Option<u64> {
    inst.fm
        .cache()
        .and_then(|c| c.bus_status())
        .map(|rx| rx.borrow().remote_applied)
}

/// The outcome of one HTTP exchange.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Workload {
    pub fn new(instances: Vec<Arc<Instance>>, keys: Vec<KeySpec>) -> Workload {
        let baseline = instances
            .iter()
            .map(|i| (published(i), applied(i).unwrap_or(0)))
            .collect();
        let origin = Instant::now();
        let logs = keys
            .iter()
            .map(|_| {
                Mutex::new(KeyLog {
                    events: Default::default(),
                    versions: vec![Version {
                        id: 0,
                        deleted: true,
                        seed: 0,
                        compressible: false,
                        size: 0,
                        sha: [0; 32],
                        start: 0,
                        end: Some(0),
                        instance: usize::MAX,
                        published: 0,
                        void: false,
                    }],
                })
            })
            .collect();
        let mut tokens = BTreeMap::new();
        for k in &keys {
            if let Some(u) = &k.user {
                tokens
                    .entry(u.clone())
                    .or_insert_with(|| user_token(u, None));
            }
        }
        let clients = instances.iter().map(|_| crate::harness::client()).collect();
        Workload {
            instances,
            keys,
            logs,
            origin,
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
            phase: AtomicU8::new(0),
            baseline,
            problems: Mutex::new(Vec::new()),
            clients,
            tokens,
            latencies: Mutex::new(Vec::new()),
            classes: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn published(&self, i: usize) -> u64 {
        published(&self.instances[i]) - self.baseline[i].0
    }

    fn applied(&self, i: usize) -> Option<u64> {
        applied(&self.instances[i]).map(|a| a - self.baseline[i].1)
    }

    /// The number of bus messages instance `reader` must have applied to have seen everything
    /// the other instances published so far.
    pub fn others_published(&self, reader: usize) -> u64 {
        (0..self.instances.len())
            .filter(|&i| i != reader)
            .map(|i| self.published(i))
            .sum()
    }

    fn problem(&self, msg: String) {
        eprintln!("PROBLEM: {msg}");
        let mut p = self.problems.lock().unwrap();
        if p.len() < 200 {
            p.push(msg);
        }
    }

    pub fn problems(&self) -> Vec<String> {
        self.problems.lock().unwrap().clone()
    }

    fn phase_of(&self, start_phase: u8) -> usize {
        let end = self.phase.load(Ordering::SeqCst);
        if end == start_phase { end as usize } else { 1 }
    }

    fn failure(&self, start_phase: u8, what: String) {
        let p = self.phase_of(start_phase);
        self.counters.failures[p].fetch_add(1, Ordering::Relaxed);
        *self
            .classes
            .lock()
            .unwrap()
            .entry((PHASES[p], classify(&what)))
            .or_default() += 1;
        self.problem(format!("[{}] {what}", PHASES[p]));
    }

    fn mismatch(&self, what: String) {
        self.counters.mismatches.fetch_add(1, Ordering::Relaxed);
        self.problem(format!("MISMATCH {what}"));
    }

    fn bearer(&self, spec: &KeySpec, rng: &mut u64) -> String {
        match &spec.user {
            Some(u) if next(rng).is_multiple_of(2) => self.tokens[u].clone(),
            _ => SERVICE_KEY.to_owned(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        inst: usize,
        method: Method,
        path: &str,
        token: &str,
        headers: &[(&str, String)],
        body: Option<reqwest::Body>,
        op: &'static str,
    ) -> Result<Answer, String> {
        let t0 = Instant::now();
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let p = self.phase.load(Ordering::SeqCst) as usize;
        self.counters.requests_by_phase[p].fetch_add(1, Ordering::Relaxed);
        let mut req = self.clients[inst]
            .request(method, self.instances[inst].url(path))
            .bearer_auth(token);
        for (n, v) in headers {
            req = req.header(*n, v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.map_err(|e| format!("transport: {e}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.map_err(|e| format!("body: {e}"))?);
        }
        self.counters
            .bytes_down
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        let ms = t0.elapsed().as_millis().min(u32::MAX as u128) as u32;
        self.latencies.lock().unwrap().push((op, ms));
        if status.is_server_error() {
            self.counters.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    // ----- operations ------------------------------------------------------------------------

    /// Uploads a new version of key `k` through instance `inst`; returns its id on success.
    pub async fn write(&self, inst: usize, k: usize, rng: &mut u64, size: u64) -> Option<u64> {
        let spec = &self.keys[k];
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let seed = splitmix(id ^ 0xF11E);
        let r = next(rng) % 100;
        let compressible = r < 20;
        let query = match r {
            0..20 => "?compress=true",
            20..30 => "?encrypt=false",
            30..38 => "?cache=false",
            _ => "",
        };
        let data = content(seed, compressible, 0..size);
        let digest = sha(&data);
        let phase = self.phase.load(Ordering::SeqCst);
        let idx = {
            let mut log = self.logs[k].lock().unwrap();
            log.versions.push(Version {
                id,
                deleted: false,
                seed,
                compressible,
                size,
                sha: digest,
                start: self.now(),
                end: None,
                instance: inst,
                published: 0,
                void: false,
            });
            log.versions.len() - 1
        };
        let chunked = next(rng).is_multiple_of(5);
        let body = if chunked {
            let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
                data.chunks(256 * 1024).map(|c| Ok(c.to_vec())).collect();
            reqwest::Body::wrap_stream(futures::stream::iter(pieces))
        } else {
            reqwest::Body::from(data)
        };
        self.counters.uploads.fetch_add(1, Ordering::Relaxed);
        if size > 8 * MIB {
            self.counters.big_uploads.fetch_add(1, Ordering::Relaxed);
        }
        self.counters.bytes_up.fetch_add(size, Ordering::Relaxed);
        let token = self.bearer(spec, rng);
        let headers = [
            ("x-meta-v", id.to_string()),
            ("content-type", "application/x-fm-test".to_owned()),
        ];
        let path = format!("/v1/files/{}{query}", spec.key);
        let answer = self
            .send(
                inst,
                Method::PUT,
                &path,
                &token,
                &headers,
                Some(body),
                "put",
            )
            .await;
        let mut log = self.logs[k].lock().unwrap();
        match answer {
            Ok(a) if a.status == StatusCode::CREATED => {
                let now = self.now();
                let v = &mut log.versions[idx];
                v.end = Some(now);
                v.published = self.published(inst);
                let start = v.start;
                log.event(format!(
                    "{}-{} PUT v{id} {size}B{query} ok",
                    ms(start),
                    ms(now)
                ));
                let j: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                if j["size"].as_u64() != Some(size) || j["key"] != spec.key.as_str() {
                    drop(log);
                    self.mismatch(format!("PUT {} answered {j}", spec.key));
                }
                Some(id)
            }
            Ok(a) if a.status.is_client_error() => {
                log.versions[idx].void = true;
                drop(log);
                self.failure(
                    phase,
                    format!(
                        "PUT {} ({size} B{}) via {inst}: {} {}",
                        spec.key,
                        if chunked { ", chunked" } else { "" },
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    ),
                );
                None
            }
            Ok(a) => {
                drop(log);
                self.failure(
                    phase,
                    format!(
                        "PUT {} ({size} B) via {inst}: {} {}",
                        spec.key,
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    ),
                );
                None
            }
            Err(e) => {
                drop(log);
                self.failure(
                    phase,
                    format!("PUT {} ({size} B) via {inst}: {e}", spec.key),
                );
                None
            }
        }
    }

    pub async fn delete(&self, inst: usize, k: usize, rng: &mut u64) {
        let spec = &self.keys[k];
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let phase = self.phase.load(Ordering::SeqCst);
        let (idx, r0) = {
            let mut log = self.logs[k].lock().unwrap();
            let start = self.now();
            log.versions.push(Version {
                id,
                deleted: true,
                seed: 0,
                compressible: false,
                size: 0,
                sha: [0; 32],
                start,
                end: None,
                instance: inst,
                published: 0,
                void: false,
            });
            (log.versions.len() - 1, start)
        };
        self.counters.deletes.fetch_add(1, Ordering::Relaxed);
        let token = self.bearer(spec, rng);
        let answer = self
            .send(
                inst,
                Method::DELETE,
                &format!("/v1/files/{}", spec.key),
                &token,
                &[],
                None,
                "delete",
            )
            .await;
        let mut log = self.logs[k].lock().unwrap();
        match answer {
            Ok(a) if a.status == StatusCode::OK => {
                let now = self.now();
                let v = &mut log.versions[idx];
                v.end = Some(now);
                v.published = self.published(inst);
                log.event(format!("{}-{} DELETE v{id} ok", ms(r0), ms(now)));
            }
            Ok(a) if a.status == StatusCode::NOT_FOUND => {
                // Nothing to delete: a read of "absent" straight from storage.
                log.versions[idx].void = true;
                let r1 = self.now();
                log.event(format!("{}-{} DELETE v{id} 404", ms(r0), ms(r1)));
                if !log.absent_ok(r0, r1, View::Strict) {
                    drop(log);
                    self.mismatch(format!(
                        "DELETE {} via {inst} found nothing, but the key held a file",
                        spec.key
                    ));
                }
            }
            Ok(a) => {
                if a.status.is_client_error() {
                    log.versions[idx].void = true;
                }
                drop(log);
                self.failure(
                    phase,
                    format!(
                        "DELETE {} via {inst}: {} {}",
                        spec.key,
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    ),
                );
            }
            Err(e) => {
                drop(log);
                self.failure(phase, format!("DELETE {} via {inst}: {e}", spec.key));
            }
        }
    }

    /// Reads key `k` (whole, ranged, HEAD or metadata) through `inst` and checks the answer.
    pub async fn read(&self, inst: usize, k: usize, rng: &mut u64, kind: ReadKind) {
        let spec = &self.keys[k];
        let bypass =
            matches!(kind, ReadKind::Full | ReadKind::Range) && next(rng).is_multiple_of(6);
        let view = if bypass {
            View::Strict
        } else {
            View::Cache {
                instance: inst,
                applied: self.applied(inst),
            }
        };
        let mut headers = Vec::new();
        let range = if kind == ReadKind::Range {
            // Every version has at least 1 KiB, so these ranges are always satisfiable.
            let (h, r) = match next(rng) % 3 {
                0 => {
                    let a = next(rng) % 1000;
                    let len = 1 + next(rng) % (2 * MIB);
                    (format!("bytes={a}-{}", a + len - 1), (a, Some(a + len - 1)))
                }
                1 => {
                    let a = next(rng) % 1000;
                    (format!("bytes={a}-"), (a, None))
                }
                _ => {
                    let n = 1 + next(rng) % 1000;
                    (format!("bytes=-{n}"), (u64::MAX, Some(n)))
                }
            };
            headers.push(("range", h));
            Some(r)
        } else {
            None
        };
        let (method, path, op) = match kind {
            ReadKind::Meta => (Method::GET, format!("/v1/meta/{}", spec.key), "meta"),
            ReadKind::Head => (Method::HEAD, format!("/v1/files/{}", spec.key), "head"),
            ReadKind::Range => (Method::GET, format!("/v1/files/{}", spec.key), "range"),
            ReadKind::Full => (Method::GET, format!("/v1/files/{}", spec.key), "get"),
        };
        let path = if bypass {
            format!("{path}?cache=false")
        } else {
            path
        };
        match kind {
            ReadKind::Full => &self.counters.downloads,
            ReadKind::Range => &self.counters.ranged,
            ReadKind::Head => &self.counters.heads,
            ReadKind::Meta => &self.counters.metas,
        }
        .fetch_add(1, Ordering::Relaxed);
        let token = self.bearer(spec, rng);
        let phase = self.phase.load(Ordering::SeqCst);
        let r0 = self.now();
        let answer = self
            .send(inst, method, &path, &token, &headers, None, op)
            .await;
        let r1 = self.now();
        let a = match answer {
            Ok(a) => a,
            Err(e) => {
                let overlapped = self.logs[k]
                    .lock()
                    .unwrap()
                    .versions
                    .iter()
                    .any(|v| !v.void && v.start < r1 && v.end.is_none_or(|end| end > r0));
                if overlapped && e.starts_with("body: ") {
                    self.counters.cut_by_write.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.failure(phase, format!("{op} {} via {inst}: {e}", spec.key));
                }
                return;
            }
        };
        let what = format!(
            "{op} {} via {inst}{}",
            spec.key,
            if bypass { " (cache=false)" } else { "" }
        );
        if a.headers.get("x-cache").is_some_and(|v| v == "hit") {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        let spec_key = spec.key.clone();
        if let Some(m) = self.check_read(k, kind, range, &a, r0, r1, view, &what, phase, inst) {
            let probe = self.probe(inst, &spec_key).await;
            self.mismatch(format!("{m}; right after: {probe}"));
        }
    }

    /// Checks a read's answer against the key's log; a mismatch is returned, a failure recorded.
    #[allow(clippy::too_many_arguments)]
    fn check_read(
        &self,
        k: usize,
        kind: ReadKind,
        range: Option<(u64, Option<u64>)>,
        a: &Answer,
        r0: u64,
        r1: u64,
        view: View,
        what: &str,
        phase: u8,
        inst: usize,
    ) -> Option<String> {
        let mut log = self.logs[k].lock().unwrap();
        let seen = a
            .headers
            .get("x-meta-v")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                serde_json::from_slice::<Value>(&a.body)
                    .ok()
                    .and_then(|j| j["metadata"]["v"].as_str().map(str::to_owned))
            })
            .unwrap_or_default();
        log.event(format!(
            "{}-{} {kind:?}{} @{inst} -> {} v{seen}{}",
            ms(r0),
            ms(r1),
            if matches!(view, View::Strict) {
                " nocache"
            } else {
                ""
            },
            a.status.as_u16(),
            if a.headers.get("x-cache").is_some_and(|v| v == "hit") {
                " hit"
            } else {
                ""
            }
        ));
        match a.status {
            StatusCode::NOT_FOUND => {
                if !log.absent_ok(r0, r1, view) {
                    let latest = log
                        .versions
                        .last()
                        .map(|v| (v.id, v.deleted, v.end.is_some()));
                    return Some(format!(
                        "{what}: 404, but the key held a file (latest {latest:?}); history: {}",
                        log.history()
                    ));
                }
            }
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
                let (id, size) = match kind {
                    ReadKind::Meta => {
                        let j: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                        (
                            j["metadata"]["v"]
                                .as_str()
                                .and_then(|v| v.parse::<u64>().ok()),
                            j["size"].as_u64(),
                        )
                    }
                    _ => (
                        a.headers
                            .get("x-meta-v")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok()),
                        None,
                    ),
                };
                let Some(idx) = id.and_then(|id| log.find(id)) else {
                    return Some(format!("{what}: unknown version {id:?}"));
                };
                let v = log.versions[idx].clone();
                let mut bad = Vec::new();
                match kind {
                    ReadKind::Meta => {
                        if size != Some(v.size) {
                            bad.push(format!("size {size:?} of version {} ({} B)", v.id, v.size));
                        }
                    }
                    ReadKind::Head => {
                        let len = a
                            .headers
                            .get("content-length")
                            .and_then(|h| h.to_str().ok())
                            .and_then(|h| h.parse::<u64>().ok());
                        if len != Some(v.size) {
                            bad.push(format!(
                                "Content-Length {len:?} of version {} ({} B)",
                                v.id, v.size
                            ));
                        }
                    }
                    ReadKind::Full => {
                        if a.status != StatusCode::OK || sha(&a.body) != v.sha {
                            bad.push(format!(
                                "{} bytes that are not version {} ({} B)",
                                a.body.len(),
                                v.id,
                                v.size
                            ));
                        }
                    }
                    ReadKind::Range => {
                        let (first, last) = range.unwrap();
                        let want = if first == u64::MAX {
                            let n = last.unwrap().min(v.size);
                            v.size - n..v.size
                        } else {
                            first..last.map(|l| l + 1).unwrap_or(v.size).min(v.size)
                        };
                        let cr = a
                            .headers
                            .get("content-range")
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let want_cr = format!("bytes {}-{}/{}", want.start, want.end - 1, v.size);
                        if a.status != StatusCode::PARTIAL_CONTENT
                            || cr != want_cr
                            || a.body != content(v.seed, v.compressible, want.clone())
                        {
                            bad.push(format!(
                                "{} {cr} ({} bytes), wanted {want_cr} of version {}",
                                a.status,
                                a.body.len(),
                                v.id
                            ));
                        }
                    }
                }
                if !log.acceptable(idx, r0, r1, view) {
                    let newer: Vec<(u64, bool, Option<u64>, usize)> = log.versions[idx + 1..]
                        .iter()
                        .filter(|w| !w.void && w.end.is_some_and(|e| e < r0))
                        .map(|w| {
                            (
                                w.id,
                                w.deleted,
                                w.end.map(|e| (r0 - e) / 1_000_000),
                                w.instance,
                            )
                        })
                        .take(3)
                        .collect();
                    bad.push(format!(
                        "stale version {} (view {view:?}); newer writes done before the read (id, deleted, ms before, instance): {newer:?}",
                        v.id
                    ));
                }
                let history = log.history();
                drop(log);
                if !bad.is_empty() {
                    return Some(format!("{what}: {}; history: {history}", bad.join("; ")));
                }
            }
            s => {
                drop(log);
                self.failure(
                    phase,
                    format!("{what}: {s} {}", String::from_utf8_lossy(&a.body)),
                );
            }
        }
        None
    }

    /// For a mismatch report: what the metadata route says right now, through the cache and
    /// around it.
    async fn probe(&self, inst: usize, key: &str) -> String {
        let mut out = Vec::new();
        for q in ["", "?cache=false"] {
            let path = format!("/v1/meta/{key}{q}");
            let r = self
                .send(inst, Method::GET, &path, SERVICE_KEY, &[], None, "probe")
                .await;
            out.push(match r {
                Ok(a) if a.status == StatusCode::OK => {
                    let j: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                    format!(
                        "meta{q} = version {}",
                        j["metadata"]["v"].as_str().unwrap_or("?")
                    )
                }
                Ok(a) => format!("meta{q} = {}", a.status),
                Err(e) => format!("meta{q}: {e}"),
            });
        }
        out.join(", ")
    }

    /// Lists the scope of key `k` through `inst`: every listed file is one of ours, in scope,
    /// with the size of a version it may have, and every key of ours not listed may be absent.
    pub async fn list(&self, inst: usize, k: usize, rng: &mut u64) {
        let spec = &self.keys[k];
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        let token = self.bearer(spec, rng);
        let phase = self.phase.load(Ordering::SeqCst);
        let view = View::Cache {
            instance: inst,
            applied: self.applied(inst),
        };
        let r0 = self.now();
        let answer = self
            .send(
                inst,
                Method::GET,
                &format!("/v1/list/{}", spec.scope()),
                &token,
                &[],
                None,
                "list",
            )
            .await;
        let r1 = self.now();
        let a = match answer {
            Ok(a) if a.status == StatusCode::OK => a,
            Ok(a) => {
                self.failure(
                    phase,
                    format!(
                        "list {} via {inst}: {} {}",
                        spec.scope(),
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    ),
                );
                return;
            }
            Err(e) => {
                self.failure(phase, format!("list {} via {inst}: {e}", spec.scope()));
                return;
            }
        };
        let j: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        let listed: BTreeMap<String, u64> = j["files"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                (
                    f["key"].as_str().unwrap_or_default().to_owned(),
                    f["size"].as_u64().unwrap_or(u64::MAX),
                )
            })
            .collect();
        let root = format!("{}/", spec.scope());
        for (i, other) in self.keys.iter().enumerate() {
            if other.scope() != spec.scope() {
                continue;
            }
            let log = self.logs[i].lock().unwrap();
            let ok = match listed.get(&other.key) {
                Some(&size) => (0..log.versions.len()).any(|x| {
                    let v = &log.versions[x];
                    !v.deleted && v.size == size && log.acceptable(x, r0, r1, view)
                }),
                None => log.absent_ok(r0, r1, view),
            };
            let history = (!ok).then(|| log.history());
            drop(log);
            if let Some(history) = history {
                self.mismatch(format!(
                    "list {} via {inst} at {}-{}: {} {:?} is not a state the key could be in; \
                     history: {history}",
                    spec.scope(),
                    ms(r0),
                    ms(r1),
                    other.key,
                    listed.get(&other.key)
                ));
            }
        }
        for key in listed.keys() {
            if !key.starts_with(&root) || !self.keys.iter().any(|s| &s.key == key) {
                self.mismatch(format!(
                    "list {} via {inst} shows a foreign key {key}",
                    spec.scope()
                ));
            }
        }
    }

    /// Writes through one instance, waits until another has applied the invalidation (bounded),
    /// then reads through that other instance's cache.
    pub async fn cross_check(&self, k: usize, rng: &mut u64) {
        let n = self.instances.len();
        let from = (next(rng) % n as u64) as usize;
        let to = (from + 1) % n;
        self.counters.xchecks.fetch_add(1, Ordering::Relaxed);
        // A read through `to` first, so that its cache may hold the old version.
        self.read(to, k, rng, ReadKind::Full).await;
        let size = pick_size(rng, false);
        if self.write(from, k, rng, size).await.is_none() {
            return;
        }
        let need = self.published(from);
        let base = self.baseline[to].1;
        if let Some(mut rx) = self.instances[to].fm.cache().and_then(|c| c.bus_status()) {
            let waited = tokio::time::timeout(
                Duration::from_secs(10),
                rx.wait_for(|s| s.remote_applied - base >= need),
            )
            .await;
            if !matches!(waited, Ok(Ok(_))) {
                self.failure(
                    self.phase.load(Ordering::SeqCst),
                    format!(
                        "instance {to} did not apply instance {from}'s invalidation within 10 s"
                    ),
                );
                return;
            }
        }
        self.read(to, k, rng, ReadKind::Full).await;
    }

    /// One client's loop until `stop`.
    pub async fn client(self: Arc<Self>, id: u64, forced_big: bool) {
        let mut rng = splitmix(id.wrapping_mul(7919) ^ 0xC11E);
        let n = self.instances.len() as u64;
        let mut first = forced_big;
        while !self.stop.load(Ordering::Relaxed) {
            let k = (next(&mut rng) % self.keys.len() as u64) as usize;
            let inst = (next(&mut rng) % n) as usize;
            if first {
                first = false;
                let size = 8 * MIB + 1 + next(&mut rng) % (4 * MIB);
                self.write(inst, k, &mut rng, size).await;
                continue;
            }
            match next(&mut rng) % 100 {
                0..26 => self.read(inst, k, &mut rng, ReadKind::Full).await,
                26..40 => self.read(inst, k, &mut rng, ReadKind::Range).await,
                40..46 => self.read(inst, k, &mut rng, ReadKind::Head).await,
                46..52 => self.read(inst, k, &mut rng, ReadKind::Meta).await,
                52..59 => self.list(inst, k, &mut rng).await,
                59..66 => self.delete(inst, k, &mut rng).await,
                66..72 if n > 1 => self.cross_check(k, &mut rng).await,
                _ => {
                    let size = pick_size(&mut rng, true);
                    self.write(inst, k, &mut rng, size).await;
                }
            }
        }
    }

    /// After the clients stopped: once every instance has applied every invalidation, each key
    /// reads back (through every instance's cache and around it) as one of its last versions.
    pub async fn verify_final(&self) {
        for to in 0..self.instances.len() {
            let need = self.others_published(to);
            let base = self.baseline[to].1;
            if let Some(mut rx) = self.instances[to].fm.cache().and_then(|c| c.bus_status()) {
                let ok = tokio::time::timeout(
                    Duration::from_secs(15),
                    rx.wait_for(|s| s.remote_applied - base >= need),
                )
                .await;
                if !matches!(ok, Ok(Ok(_))) {
                    self.problem(format!(
                        "final: instance {to} did not apply all invalidations ({need} needed)"
                    ));
                }
            }
        }
        let mut rng = 42u64;
        for k in 0..self.keys.len() {
            for inst in 0..self.instances.len() {
                self.read(inst, k, &mut rng, ReadKind::Full).await;
                self.read(inst, k, &mut rng, ReadKind::Meta).await;
            }
        }
        for inst in 0..self.instances.len() {
            for k in 0..self.keys.len() {
                if k == 0 || self.keys[k].scope() != self.keys[k - 1].scope() {
                    self.list(inst, k, &mut rng).await;
                }
            }
        }
    }

    /// Latency percentiles per operation, in ms (reported, never asserted).
    pub fn latency_report(&self) -> String {
        let lat = self.latencies.lock().unwrap();
        let mut by: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for (op, ms) in lat.iter() {
            by.entry(op).or_default().push(*ms);
        }
        by.iter_mut()
            .map(|(op, v)| {
                v.sort_unstable();
                let p = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
                format!(
                    "{op} n={} p50={}ms p99={}ms max={}ms",
                    v.len(),
                    p(0.5),
                    p(0.99),
                    p(1.0)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Failures of one phase whose class starts with `class`.
    pub fn failures_of(&self, phase: usize, class: &str) -> u64 {
        self.classes
            .lock()
            .unwrap()
            .iter()
            .filter(|((p, c), _)| *p == PHASES[phase] && c.starts_with(class))
            .map(|(_, n)| n)
            .sum()
    }

    /// Failures by phase and class.
    pub fn failure_classes(&self) -> String {
        let c = self.classes.lock().unwrap();
        if c.is_empty() {
            return "none".into();
        }
        c.iter()
            .map(|((phase, class), n)| format!("{phase}: {n} × {class}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn summary(&self) -> String {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "requests={} (before/outage/after {}/{}/{}) uploads={} (>8MiB: {}) downloads={} ranged={} \
             heads={} metas={} lists={} deletes={} cross-instance checks={} cache hits={} \
             up={}MiB down={}MiB | mismatches={} 5xx={} failures before/outage/after={}/{}/{} \
             downloads cut by a concurrent write={}",
            g(&c.requests),
            g(&c.requests_by_phase[0]),
            g(&c.requests_by_phase[1]),
            g(&c.requests_by_phase[2]),
            g(&c.uploads),
            g(&c.big_uploads),
            g(&c.downloads),
            g(&c.ranged),
            g(&c.heads),
            g(&c.metas),
            g(&c.lists),
            g(&c.deletes),
            g(&c.xchecks),
            g(&c.cache_hits),
            g(&c.bytes_up) / MIB,
            g(&c.bytes_down) / MIB,
            g(&c.mismatches),
            g(&c.server_errors),
            g(&c.failures[0]),
            g(&c.failures[1]),
            g(&c.failures[2]),
            g(&c.cut_by_write),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    Full,
    Range,
    Head,
    Meta,
}

/// Nanoseconds as milliseconds with one decimal, for histories.
fn ms(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e6)
}

/// xorshift64*.
pub fn next(state: &mut u64) -> u64 {
    if *state == 0 {
        *state = 0x9E37_79B9_7F4A_7C15;
    }
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// A file size: mostly small, some over the cache's 1 MiB item limit, rarely over 8 MiB
/// (multipart upload).
pub fn pick_size(rng: &mut u64, allow_big: bool) -> u64 {
    match next(rng) % 1000 {
        0..600 => KIB + next(rng) % (63 * KIB),
        600..850 => 64 * KIB + next(rng) % (960 * KIB),
        850..995 => MIB + next(rng) % (2 * MIB),
        _ if allow_big => 8 * MIB + 1 + next(rng) % (4 * MIB),
        _ => MIB + next(rng) % (2 * MIB),
    }
}
