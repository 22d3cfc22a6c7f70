//! Shared test harness: backends, a per-test context and data helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use filemanager::*;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};

/// The backends every behaviour runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Local,
    S3,
}

/// The codec combinations every behaviour runs with: (name, compress, encrypt).
pub const CODECS: &[(&str, bool, bool)] = &[
    ("plain", false, false),
    ("zstd", true, false),
    ("aes", false, true),
    ("zstd+aes", true, true),
];

/// The suite's encryption key (hex, used as is).
pub const TEST_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// One test's world: a manager, a domain of its own, and the codec switches to upload with.
pub struct Ctx {
    pub fm: FileManager,
    pub domain: String,
    pub base: UploadOptions,
    pub backend: Backend,
    local_root: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

/// Whether S3 tests run: they need the seed's S3 variables, normally set by
/// `scripts/test.sh`. Missing variables fail the test unless `FM_SKIP_S3=1` says to skip.
pub fn s3_config() -> Option<S3Config> {
    match S3Config::from_env().expect("the S3 variables are malformed") {
        Some(cfg) => Some(cfg),
        None if std::env::var("FM_SKIP_S3").as_deref() == Ok("1") => {
            eprintln!("FM_SKIP_S3=1: skipping an S3 test");
            None
        }
        None => panic!(
            "S3 tests need APP_BUCKET/S3_URL/AWS_* (run scripts/test.sh, which starts Garage), \
             or FM_SKIP_S3=1 to skip them knowingly"
        ),
    }
}

/// A cache with a bucket tier in `S3_CACHE_BUCKET` (scripts/garage.sh creates `fm-cache`).
pub fn s3_cache() -> CacheSetup {
    let bucket =
        std::env::var("S3_CACHE_BUCKET").expect("S3_CACHE_BUCKET is set with the S3 variables");
    let s3 = S3Config::from_lookup(&|k| {
        if k == "APP_BUCKET" {
            Some(bucket.clone())
        } else {
            std::env::var(k).ok()
        }
    })
    .unwrap()
    .unwrap();
    CacheSetup {
        config: cache::CacheConfig::default(),
        tier2: CacheTier2::Bucket(s3),
    }
}

/// A domain name no other test uses, so tests can share one bucket.
pub fn unique_domain() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    format!(
        "t{:x}{:x}{:x}",
        std::process::id(),
        nanos & 0xffff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Ctx {
    /// A fresh context, or `None` when the backend is knowingly skipped.
    pub async fn new(backend: Backend, codec: (&str, bool, bool)) -> Option<Ctx> {
        eprintln!("== backend {backend:?}, codec {}", codec.0);
        let (storage, dir, local_root) = match backend {
            Backend::Memory => (StorageConfig::Memory, None, None),
            Backend::Local => {
                let dir = tempfile::tempdir().unwrap();
                let root = dir.path().join("files");
                (
                    StorageConfig::Local { root: root.clone() },
                    Some(dir),
                    Some(root),
                )
            }
            Backend::S3 => (StorageConfig::S3(s3_config()?), None, None),
        };
        let fm = FileManager::builder(storage)
            .keys(test_keys())
            .build()
            .unwrap();
        Some(Ctx {
            fm,
            domain: unique_domain(),
            base: UploadOptions::default().compress(codec.1).encrypt(codec.2),
            backend,
            local_root,
            _dir: dir,
        })
    }

    pub fn opts(&self) -> UploadOptions {
        self.base.clone()
    }

    pub fn app(&self, name: &str) -> Location {
        Location::new(&self.domain, StorageLevel::App, None, name).unwrap()
    }

    pub async fn upload_app(&self, name: &str, data: impl Into<Body>) -> Result<UploadResult> {
        self.upload_with(name, data, self.opts()).await
    }

    pub async fn upload_with(
        &self,
        name: &str,
        data: impl Into<Body>,
        opts: UploadOptions,
    ) -> Result<UploadResult> {
        self.fm
            .upload_file(&self.domain, StorageLevel::App, name, data, opts)
            .await
    }

    pub async fn download_app(&self, name: &str) -> Result<Bytes> {
        self.fm
            .download_file(&self.domain, StorageLevel::App, name, Default::default())
            .await
    }

    pub async fn meta_app(&self, name: &str) -> Result<Option<FileInfo>> {
        self.fm
            .get_file_metadata(&self.domain, StorageLevel::App, name, None, true)
            .await
    }

    pub async fn list_app(
        &self,
        prefix: &str,
        max_keys: usize,
        cursor: Option<String>,
    ) -> Result<ListResult> {
        self.fm
            .list_files(
                &self.domain,
                StorageLevel::App,
                ListOptions {
                    prefix: prefix.into(),
                    max_keys,
                    cursor,
                    ..Default::default()
                },
            )
            .await
    }

    /// On local disk, no staging file of an unfinished upload may remain. Cleanup of a
    /// dropped upload runs on a blocking thread, so this waits for it, boundedly.
    pub async fn assert_no_stray_files(&self) {
        let Some(root) = &self.local_root else { return };
        let mut stray = Vec::new();
        for _ in 0..100 {
            stray = staging_files(root);
            if stray.is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("stray staging files left behind: {stray:?}");
    }
}

fn staging_files(root: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.rsplit_once('#'))
                .is_some_and(|(_, suffix)| suffix.bytes().all(|b| b.is_ascii_digit()))
            {
                out.push(p);
            }
        }
    }
    out
}

/// The key configuration the suite uses.
pub fn test_keys() -> KeyConfig {
    KeyConfig::from_values(TEST_KEY, &[]).unwrap()
}

/// Deterministic bytes that do not compress much (xorshift).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `data` as a stream of `piece`-byte chunks.
pub fn chunked(
    data: Vec<u8>,
    piece: usize,
) -> impl Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + 'static {
    let data = Bytes::from(data);
    let n = data.len().div_ceil(piece);
    futures::stream::iter(
        (0..n).map(move |i| Ok(data.slice(i * piece..((i + 1) * piece).min(data.len())))),
    )
}

pub async fn collect(mut body: BoxStream<'static, Result<Bytes>>) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = body.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

pub fn assert_not_found<T: std::fmt::Debug>(r: Result<T>) {
    match r {
        Err(Error::FileNotFound { .. }) => {}
        other => panic!("expected FileNotFound, got {other:?}"),
    }
}

/// Turns a list of behaviours into one test per behaviour and backend; each test runs the
/// behaviour once per codec combination, each time in a fresh context.
#[macro_export]
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        $crate::suite!(@backend memory, Memory, $($name),*);
        $crate::suite!(@backend local, Local, $($name),*);
        $crate::suite!(@backend s3, S3, $($name),*);
    };
    (@backend $module:ident, $backend:ident, $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    for codec in $crate::common::CODECS {
                        let Some(cx) = $crate::common::Ctx::new(
                            $crate::common::Backend::$backend,
                            *codec,
                        ).await else { return };
                        super::behaviours::$name(&cx).await;
                    }
                }
            )*
        }
    };
}
