//! Storage that fails: refused, stalled and cut connections (through a fault-injecting proxy
//! in front of Garage), a Garage process killed and restarted, a local disk that fills up.
//!
//! What must hold every time: a clear, retryable error instead of a hang; no truncated file
//! ever returned as complete; no partial object left behind; recovery without a restart.

mod common;
#[path = "support/proxy.rs"]
mod proxy;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use filemanager::*;
use futures::StreamExt;
use proxy::{FaultProxy, Mode};

/// Generous bound that only catches a hang; never a performance assertion.
const HANG: Duration = Duration::from_secs(90);

fn upstream(cfg: &S3Config) -> SocketAddr {
    let url = cfg
        .endpoint
        .as_deref()
        .expect("tests run against a local S3 endpoint");
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("S3_URL is http://IP:PORT")
}

async fn through_proxy() -> Option<(FileManager, FaultProxy, String)> {
    let mut cfg = s3_config()?;
    let proxy = FaultProxy::start(upstream(&cfg)).await;
    cfg.endpoint = Some(proxy.url());
    cfg.request_timeout = Duration::from_secs(2);
    cfg.connect_timeout = Duration::from_secs(1);
    cfg.retry_timeout = Duration::from_secs(4);
    let fm = FileManager::builder(StorageConfig::S3(cfg))
        .keys(test_keys())
        .build()
        .unwrap();
    Some((fm, proxy, unique_domain()))
}

fn at(domain: &str, name: &str) -> Location {
    Location::new(domain, StorageLevel::App, None, name).unwrap()
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, f)
        .await
        .expect("the operation hung instead of failing")
}

fn assert_retryable<T: std::fmt::Debug>(r: Result<T>) {
    match r {
        Err(e) if e.is_retryable() => {
            let text = e.to_string();
            assert!(!text.contains("http://"), "error names a URL: {text}");
        }
        other => panic!("expected a retryable storage error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_storage_fails_clearly_and_recovers() {
    let Some((fm, proxy, d)) = through_proxy().await else {
        return;
    };
    fm.upload(
        &at(&d, "a"),
        pseudo_random(1, 1000),
        &UploadOptions::default(),
    )
    .await
    .unwrap();
    proxy.set(Mode::Refuse);
    assert_retryable(
        bounded(fm.upload(
            &at(&d, "b"),
            Bytes::from_static(b"b"),
            &UploadOptions::default(),
        ))
        .await,
    );
    assert_retryable(bounded(fm.download_bytes(&at(&d, "a"), &Default::default())).await);
    assert_retryable(bounded(fm.metadata(&at(&d, "a"), false)).await);
    let scope = Scope::parse(&d, StorageLevel::App, None).unwrap();
    assert_retryable(bounded(fm.list(&scope, &Default::default())).await);
    proxy.set(Mode::Pass);
    // The same manager works again: no restart.
    assert_eq!(
        fm.download_bytes(&at(&d, "a"), &Default::default())
            .await
            .unwrap(),
        pseudo_random(1, 1000)
    );
    assert!(fm.metadata(&at(&d, "b"), false).await.unwrap().is_none());
    fm.upload(
        &at(&d, "b"),
        Bytes::from_static(b"b"),
        &UploadOptions::default(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_storage_is_bounded_by_the_request_deadline() {
    let Some((fm, proxy, d)) = through_proxy().await else {
        return;
    };
    fm.upload(
        &at(&d, "s"),
        Bytes::from_static(b"s"),
        &UploadOptions::default(),
    )
    .await
    .unwrap();
    proxy.set(Mode::Stall);
    assert_retryable(bounded(fm.download_bytes(&at(&d, "s"), &Default::default())).await);
    assert_retryable(
        bounded(fm.upload(
            &at(&d, "t"),
            Bytes::from_static(b"t"),
            &UploadOptions::default(),
        ))
        .await,
    );
    proxy.set(Mode::Pass);
    assert!(fm.metadata(&at(&d, "t"), false).await.unwrap().is_none());
}

/// A cut response may end in an error, or — object_store resumes an interrupted GET with a
/// range request — in the complete, verified file; never in a short or altered one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_mid_body_is_never_a_complete_file() {
    let Some((fm, proxy, d)) = through_proxy().await else {
        return;
    };
    let data = pseudo_random(2, 2 * 1024 * 1024);
    for encrypt in [false, true] {
        let name = format!("cut-{encrypt}");
        fm.upload(
            &at(&d, &name),
            data.clone(),
            &UploadOptions::default().encrypt(encrypt),
        )
        .await
        .unwrap();
        // 300 bytes: inside the first answer's headers, so every attempt fails.
        // 700 000 bytes: inside the body, so resumed reads can complete it.
        let mut errors = 0;
        for cut in [300, 700_000] {
            proxy.set(Mode::CutResponse(cut));
            match bounded(fm.download_bytes(&at(&d, &name), &Default::default())).await {
                Err(_) => errors += 1,
                Ok(b) => assert!(b == data, "a cut download returned {} wrong bytes", b.len()),
            }
            if let Ok(dl) = bounded(fm.download(&at(&d, &name), &Default::default())).await {
                let mut body = dl.body;
                let mut got = Vec::new();
                let mut failed = false;
                while let Some(chunk) = bounded(body.next()).await {
                    match chunk {
                        Ok(c) => got.extend_from_slice(&c),
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
                assert!(
                    failed || got == data,
                    "stream ended cleanly with {} bytes",
                    got.len()
                );
            }
        }
        assert!(errors >= 1, "a connection cut inside the headers must fail");
        proxy.set(Mode::Pass);
        assert!(
            fm.download_bytes(&at(&d, &name), &Default::default())
                .await
                .unwrap()
                == data
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_mid_upload_stores_nothing_and_keeps_the_old_version() {
    let Some((fm, proxy, d)) = through_proxy().await else {
        return;
    };
    fm.upload(
        &at(&d, "keep"),
        Bytes::from_static(b"version 1"),
        &UploadOptions::default(),
    )
    .await
    .unwrap();
    proxy.set(Mode::CutRequest(300_000));
    for name in ["keep", "new"] {
        let body = Body::from_stream(chunked(pseudo_random(3, 12 * 1024 * 1024), 64 * 1024));
        assert!(
            bounded(fm.upload(&at(&d, name), body, &UploadOptions::default()))
                .await
                .is_err()
        );
    }
    proxy.set(Mode::Pass);
    assert_eq!(
        fm.download_bytes(&at(&d, "keep"), &Default::default())
            .await
            .unwrap(),
        "version 1"
    );
    assert!(fm.metadata(&at(&d, "new"), false).await.unwrap().is_none());
}

/// A Garage of this test's own, so it can be killed.
struct OwnGarage {
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl OwnGarage {
    fn script() -> String {
        format!("{}/../../scripts/garage.sh", env!("CARGO_MANIFEST_DIR"))
    }

    fn start() -> (Self, S3Config) {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("g");
        let ok = std::process::Command::new("bash")
            .arg(Self::script())
            .arg("start")
            .arg(&state)
            .status()
            .unwrap();
        assert!(ok.success(), "scripts/garage.sh start failed");
        let env = std::fs::read_to_string(state.join("env")).unwrap();
        let vars: std::collections::HashMap<String, String> = env
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let cfg = S3Config::from_lookup(&|k| vars.get(k).cloned())
            .unwrap()
            .unwrap();
        (OwnGarage { dir, child: None }, cfg)
    }

    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("g")
    }

    fn kill(&mut self) {
        let pid = std::fs::read_to_string(self.state().join("pid")).unwrap();
        std::process::Command::new("kill")
            .arg("-9")
            .arg(pid.trim())
            .status()
            .unwrap();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the same node again: same configuration, same data.
    fn restart(&mut self, port: SocketAddr) {
        let log = std::fs::File::create(self.state().join("server2.log")).unwrap();
        let child = std::process::Command::new("garage")
            .arg("-c")
            .arg(self.state().join("garage.toml"))
            .arg("server")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("garage is on PATH (scripts/test.sh puts ~/.cargo/bin there)");
        std::fs::write(self.state().join("pid"), child.id().to_string()).unwrap();
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(port).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Garage did not come back");
    }
}

impl Drop for OwnGarage {
    fn drop(&mut self) {
        self.kill();
        let _ = std::process::Command::new("bash")
            .arg(Self::script())
            .arg("stop")
            .arg(self.state())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_garage_gives_errors_then_service_resumes_by_itself() {
    if s3_config().is_none() {
        return;
    }
    let (mut garage, mut cfg) = OwnGarage::start();
    cfg.request_timeout = Duration::from_secs(3);
    cfg.retry_timeout = Duration::from_secs(4);
    let port = upstream(&cfg);
    let fm = FileManager::builder(StorageConfig::S3(cfg))
        .keys(test_keys())
        .build()
        .unwrap();
    let d = unique_domain();
    let data = pseudo_random(5, 3 * 1024 * 1024);
    fm.upload(&at(&d, "before"), data.clone(), &UploadOptions::default())
        .await
        .unwrap();

    // Killed in the middle of a streaming upload: a slow body, the kill, then the error.
    let slow = Body::from_stream(
        chunked(pseudo_random(6, 10 * 1024 * 1024), 256 * 1024).then(|c| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c
        }),
    );
    let upload = tokio::spawn({
        let fm = fm.clone();
        let loc = at(&d, "during");
        async move { fm.upload(&loc, slow, &UploadOptions::default()).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    garage.kill();
    assert!(bounded(upload).await.unwrap().is_err());
    assert_retryable(bounded(fm.download_bytes(&at(&d, "before"), &Default::default())).await);

    garage.restart(port);
    // Garage needs a moment to accept requests again; the manager is not rebuilt.
    let mut recovered = None;
    for _ in 0..100 {
        match fm
            .download_bytes(&at(&d, "before"), &Default::default())
            .await
        {
            Ok(b) => {
                recovered = Some(b);
                break;
            }
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("unexpected error after restart: {e}"),
        }
    }
    assert!(recovered.expect("never recovered") == data);
    assert!(
        fm.metadata(&at(&d, "during"), false)
            .await
            .unwrap()
            .is_none()
    );
    fm.upload(
        &at(&d, "after"),
        Bytes::from_static(b"ok"),
        &UploadOptions::default(),
    )
    .await
    .unwrap();
}

/// A 1 MiB tmpfs, unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount() -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok && std::env::var("FM_SKIP_TMPFS").as_deref() != Ok("1") {
            panic!("mounting a tmpfs failed (needs root); set FM_SKIP_TMPFS=1 to skip knowingly");
        }
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_local_disk_fails_cleanly_and_keeps_what_was_there() {
    let disk = SmallDisk::mount();
    let root = disk.0.path().join("files");
    let fm = FileManager::builder(StorageConfig::Local { root: root.clone() })
        .keys(test_keys())
        .build()
        .unwrap();
    let d = "full";
    fm.upload(
        &at(d, "small"),
        pseudo_random(7, 10_000),
        &UploadOptions::default(),
    )
    .await
    .unwrap();
    for body in [
        Body::from(pseudo_random(8, 2 * 1024 * 1024)),
        Body::from_stream(chunked(pseudo_random(8, 9 * 1024 * 1024), 100_000)),
    ] {
        let err = fm
            .upload(&at(d, "big"), body, &UploadOptions::default())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no space"), "{text}");
        assert!(
            !text.contains(disk.0.path().to_str().unwrap()),
            "error names a path: {text}"
        );
    }
    assert!(fm.metadata(&at(d, "big"), false).await.unwrap().is_none());
    assert_eq!(
        fm.download_bytes(&at(d, "small"), &Default::default())
            .await
            .unwrap(),
        pseudo_random(7, 10_000)
    );
    // No staging file is left to fill the disk further.
    let mut leftovers = Vec::new();
    for _ in 0..100 {
        leftovers = walk(&root)
            .into_iter()
            .filter(|p| !p.ends_with("small\\"))
            .collect();
        if leftovers.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else {
                out.push(e.path().to_string_lossy().into_owned());
            }
        }
    }
    out
}
