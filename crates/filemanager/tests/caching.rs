//! The cache seen through FileManager: it is used, it is never stale on the instance that
//! wrote, it is shared correctly across instances through Redis, and it degrades instead of
//! failing.

mod common;
#[path = "support/redis.rs"]
mod redis;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use filemanager::*;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult as OsList, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

fn at(domain: &str, name: &str) -> Location {
    Location::new(domain, StorageLevel::App, None, name).unwrap()
}

fn scope(domain: &str) -> Scope {
    Scope::parse(domain, StorageLevel::App, None).unwrap()
}

async fn read(fm: &FileManager, loc: &Location) -> (Bytes, bool) {
    let dl = fm.download(loc, &Default::default()).await.unwrap();
    let from_cache = dl.from_cache;
    (Bytes::from(collect(dl.body).await), from_cache)
}

fn names(r: &ListResult) -> Vec<(String, u64)> {
    r.files
        .iter()
        .map(|f| (f.filename.clone(), f.size))
        .collect()
}

/// Every read after a write, on the same instance, sees the write — content, metadata and
/// every listing that covers the key.
async fn read_your_writes(fm: &FileManager, d: &str) {
    let opts = UploadOptions::default();
    fm.upload(&at(d, "posts/a"), Bytes::from_static(b"one"), &opts)
        .await
        .unwrap();
    let (body, hit) = read(fm, &at(d, "posts/a")).await;
    assert_eq!(
        (&body[..], hit),
        (&b"one"[..], true),
        "an upload fills the cache"
    );
    let all = ListOptions::default();
    let posts = ListOptions {
        prefix: "posts/".into(),
        ..Default::default()
    };
    assert_eq!(
        names(&fm.list(&scope(d), &all).await.unwrap()),
        [("posts/a".into(), 3)]
    );
    assert_eq!(fm.list(&scope(d), &posts).await.unwrap().count, 1);

    // Overwrite: content, metadata and both cached listings change at once.
    fm.upload(&at(d, "posts/a"), Bytes::from_static(b"second"), &opts)
        .await
        .unwrap();
    assert_eq!(&read(fm, &at(d, "posts/a")).await.0[..], b"second");
    assert_eq!(
        fm.metadata(&at(d, "posts/a"), true)
            .await
            .unwrap()
            .unwrap()
            .size,
        6
    );
    assert_eq!(
        names(&fm.list(&scope(d), &all).await.unwrap()),
        [("posts/a".into(), 6)]
    );
    assert_eq!(
        names(&fm.list(&scope(d), &posts).await.unwrap()),
        [("posts/a".into(), 6)]
    );

    // A new file appears in every covering listing.
    fm.upload(&at(d, "posts/b"), Bytes::from_static(b"bb"), &opts)
        .await
        .unwrap();
    assert_eq!(fm.list(&scope(d), &all).await.unwrap().count, 2);
    assert_eq!(fm.list(&scope(d), &posts).await.unwrap().count, 2);

    // Delete: gone from content, metadata and listings.
    fm.delete(&at(d, "posts/a")).await.unwrap();
    assert_not_found(fm.download(&at(d, "posts/a"), &Default::default()).await);
    assert!(
        fm.metadata(&at(d, "posts/a"), true)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        names(&fm.list(&scope(d), &all).await.unwrap()),
        [("posts/b".into(), 2)]
    );
    assert_eq!(fm.list(&scope(d), &posts).await.unwrap().count, 1);
    let stats = fm.cache_stats().unwrap();
    assert!(stats.l1_hits > 0 && stats.invalidations >= 3, "{stats:?}");
}

#[tokio::test]
async fn read_your_writes_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let fm = FileManager::builder(StorageConfig::Local {
        root: dir.path().join("files"),
    })
    .keys(test_keys())
    .cache(Some(CacheSetup::with_disk(dir.path().join("cache"))))
    .build()
    .unwrap();
    read_your_writes(&fm, "blog").await;
}

#[tokio::test]
async fn read_your_writes_on_garage() {
    let Some(s3) = s3_config() else { return };
    let fm = FileManager::builder(StorageConfig::S3(s3))
        .keys(test_keys())
        .cache(Some(s3_cache()))
        .build()
        .unwrap();
    read_your_writes(&fm, &unique_domain()).await;
}

#[tokio::test]
async fn switches_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = CacheSetup::with_disk(dir.path().join("cache"));
    setup.config.max_item_bytes = 10_000;
    let fm = FileManager::builder(StorageConfig::Local {
        root: dir.path().join("files"),
    })
    .keys(test_keys())
    .cache(Some(setup))
    .build()
    .unwrap();
    let d = "s";
    // cache_content = false: never cached, not even after reads.
    let off = UploadOptions::default().cache_content(false);
    fm.upload(&at(d, "private"), Bytes::from_static(b"p"), &off)
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            read(&fm, &at(d, "private")).await,
            (Bytes::from_static(b"p"), false)
        );
    }
    // Exactly the item limit: cached (the entry's description does not count against it).
    fm.upload(
        &at(d, "edge"),
        pseudo_random(9, 10_000),
        &UploadOptions::default(),
    )
    .await
    .unwrap();
    assert!(read(&fm, &at(d, "edge")).await.1);
    // Larger than the item limit: streamed from storage every time.
    fm.upload(
        &at(d, "big"),
        pseudo_random(1, 20_000),
        &UploadOptions::default(),
    )
    .await
    .unwrap();
    for _ in 0..2 {
        let (body, hit) = read(&fm, &at(d, "big")).await;
        assert!(!hit);
        assert_eq!(body.len(), 20_000);
    }
    // A small streamed upload is kept as it passes and cached like one given in memory, and
    // served from memory, ranges included.
    let streamed = Body::from_stream(chunked(pseudo_random(2, 5000), 1000));
    fm.upload(&at(d, "s"), streamed, &UploadOptions::default())
        .await
        .unwrap();
    assert_eq!(
        read(&fm, &at(d, "s")).await,
        (Bytes::from(pseudo_random(2, 5000)), true)
    );
    // A large streamed one is not (20 000 bytes > the 10 000-byte item limit).
    let large = Body::from_stream(chunked(pseudo_random(5, 20_000), 1000));
    fm.upload(&at(d, "l"), large, &UploadOptions::default())
        .await
        .unwrap();
    assert!(!read(&fm, &at(d, "l")).await.1);
    let ranged = DownloadOptions {
        range: Some(ByteRange::FromTo(10, 19)),
        ..Default::default()
    };
    let dl = fm.download(&at(d, "s"), &ranged).await.unwrap();
    assert!(dl.from_cache);
    assert_eq!(dl.range, Some(10..20));
    assert_eq!(collect(dl.body).await, pseudo_random(2, 5000)[10..20]);
    // bypass_cache reads storage.
    let bypass = DownloadOptions {
        bypass_cache: true,
        ..Default::default()
    };
    assert!(!fm.download(&at(d, "s"), &bypass).await.unwrap().from_cache);
}

#[tokio::test(start_paused = true)]
async fn without_redis_another_instance_is_stale_for_at_most_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageConfig::Local {
        root: dir.path().join("files"),
    };
    let cached = FileManager::builder(storage.clone())
        .keys(test_keys())
        .cache(Some(CacheSetup {
            config: cache::CacheConfig::default(),
            tier2: CacheTier2::Off,
        }))
        .build()
        .unwrap();
    let other = FileManager::builder(storage)
        .keys(test_keys())
        .build()
        .unwrap();
    let d = "ttl";
    cached
        .upload(
            &at(d, "f"),
            Bytes::from_static(b"old"),
            &UploadOptions::default(),
        )
        .await
        .unwrap();
    other
        .upload(
            &at(d, "f"),
            Bytes::from_static(b"new"),
            &UploadOptions::default(),
        )
        .await
        .unwrap();
    // No bus: the first instance still answers from its cache...
    assert_eq!(
        read(&cached, &at(d, "f")).await,
        (Bytes::from_static(b"old"), true)
    );
    // ...until the content TTL (1 h) has passed.
    tokio::time::advance(Duration::from_secs(3601)).await;
    assert_eq!(
        read(&cached, &at(d, "f")).await,
        (Bytes::from_static(b"new"), false)
    );
}

#[tokio::test]
async fn the_disk_tier_survives_a_restart_and_holds_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let build = || {
        FileManager::builder(StorageConfig::Local {
            root: dir.path().join("files"),
        })
        .keys(test_keys())
        .cache(Some(CacheSetup::with_disk(dir.path().join("cache"))))
        .build()
        .unwrap()
    };
    let secret = b"attack at dawn, attack at dawn, attack at dawn".repeat(20);
    {
        let fm = build();
        let opts = UploadOptions::default().cache_content(false);
        fm.upload(&at("l2", "secret"), secret.clone(), &opts)
            .await
            .unwrap();
        let fm2 = build();
        drop(fm);
        // Read through a fresh instance: fills memory and disk.
        let _ = fm2.metadata(&at("l2", "secret"), true).await;
    }
    {
        let fm = build();
        fm.upload(
            &at("l2", "x"),
            Bytes::from_static(b"x"),
            &UploadOptions::default(),
        )
        .await
        .unwrap();
        let (body, hit) = read(&fm, &at("l2", "x")).await;
        assert!(hit && body == "x");
    }
    {
        // A new instance: empty memory, same disk tier.
        let fm = build();
        let (body, hit) = read(&fm, &at("l2", "x")).await;
        assert_eq!(&body[..], b"x");
        assert!(
            !hit,
            "filled by the upload into memory only, so this read loads"
        );
        let fm = build();
        let (body, hit) = read(&fm, &at("l2", "x")).await;
        assert!(
            hit && body == "x",
            "the previous instance's read filled the disk tier"
        );
        assert!(fm.cache_stats().unwrap().l2_hits >= 1);
    }
    // No cache file holds the plaintext of an encrypted file.
    let fm = build();
    let opts = UploadOptions::default();
    fm.upload(&at("l2", "enc"), secret.clone(), &opts)
        .await
        .unwrap();
    let fm = build();
    assert!(read(&fm, &at("l2", "enc")).await.0 == secret);
    for entry in std::fs::read_dir(dir.path().join("cache")).unwrap() {
        let raw = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !raw.windows(14).any(|w| w == b"attack at dawn"),
            "plaintext on the disk tier"
        );
    }
}

#[tokio::test]
async fn a_corrupt_disk_entry_is_a_miss_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let build = || {
        FileManager::builder(StorageConfig::Local {
            root: dir.path().join("files"),
        })
        .keys(test_keys())
        .cache(Some(CacheSetup::with_disk(dir.path().join("cache"))))
        .build()
        .unwrap()
    };
    let data = pseudo_random(3, 3000);
    build()
        .upload(
            &at("c", "f"),
            data.clone(),
            &UploadOptions::default().cache_content(false),
        )
        .await
        .unwrap();
    let fm = build();
    fm.upload(&at("c", "g"), data.clone(), &UploadOptions::default())
        .await
        .unwrap();
    assert!(read(&build(), &at("c", "g")).await.0 == data);
    for entry in std::fs::read_dir(dir.path().join("cache")).unwrap() {
        let path = entry.unwrap().path();
        let mut raw = std::fs::read(&path).unwrap();
        let n = raw.len();
        raw[n - 1] ^= 0xff;
        std::fs::write(&path, raw).unwrap();
    }
    let fm = build();
    assert!(read(&fm, &at("c", "g")).await.0 == data);
    assert!(fm.cache_stats().unwrap().l2_errors >= 1);
}

/// An object store that counts reads, to see single-flight from the storage side.
#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    gets: AtomicUsize,
}

impl std::fmt::Display for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CountingStore")
    }
}

#[async_trait::async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        l: &Path,
        p: PutPayload,
        o: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(l, p, o).await
    }
    async fn put_multipart_opts(
        &self,
        l: &Path,
        o: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(l, o).await
    }
    async fn get_opts(&self, l: &Path, o: GetOptions) -> object_store::Result<GetResult> {
        if !o.head {
            self.gets.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.get_opts(l, o).await
    }
    async fn get_ranges(&self, l: &Path, r: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get_ranges(l, r).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, p: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(p)
    }
    async fn list_with_delimiter(&self, p: Option<&Path>) -> object_store::Result<OsList> {
        self.inner.list_with_delimiter(p).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, o).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_read_storage_once() {
    let counting = Arc::new(CountingStore {
        inner: Arc::new(object_store::memory::InMemory::new()),
        gets: AtomicUsize::new(0),
    });
    let fm = FileManager::builder(StorageConfig::Custom {
        store: counting.clone(),
        capabilities: Capabilities::new(true, true),
    })
    .keys(test_keys())
    .cache(Some(CacheSetup {
        config: cache::CacheConfig::default(),
        tier2: CacheTier2::Off,
    }))
    .build()
    .unwrap();
    let data = pseudo_random(4, 50_000);
    // Written by another instance, so this one's cache has never seen it.
    let writer = FileManager::builder(StorageConfig::Custom {
        store: counting.clone(),
        capabilities: Capabilities::new(true, true),
    })
    .keys(test_keys())
    .build()
    .unwrap();
    writer
        .upload(&at("sf", "hot"), data.clone(), &UploadOptions::default())
        .await
        .unwrap();
    counting.gets.store(0, Ordering::SeqCst);
    let reads = futures::future::join_all((0..50).map(|_| {
        let fm = fm.clone();
        async move {
            fm.download_bytes(&at("sf", "hot"), &Default::default())
                .await
                .unwrap()
        }
    }))
    .await;
    assert!(reads.iter().all(|r| r[..] == data[..]));
    assert_eq!(
        counting.gets.load(Ordering::SeqCst),
        1,
        "50 concurrent misses, one storage read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_agree_through_redis() {
    let Some(s3) = s3_config() else { return };
    let Some(mut redis) = redis::Redis::start() else {
        return;
    };
    let instance = || {
        let mut setup = s3_cache();
        setup.config.invalidation_url = Some(redis.url());
        FileManager::builder(StorageConfig::S3(s3.clone()))
            .keys(test_keys())
            .cache(Some(setup))
            .build()
            .unwrap()
    };
    let (a, b) = (instance(), instance());
    let d = unique_domain();
    let loc = at(&d, "shared");
    // Wait for both subscriptions, on their own events.
    for fm in [&a, &b] {
        let mut st = fm.cache().unwrap().bus_status().unwrap();
        tokio::time::timeout(Duration::from_secs(30), st.wait_for(|s| s.connected))
            .await
            .expect("bus never connected")
            .unwrap();
    }
    let applied = |fm: &FileManager| {
        fm.cache()
            .unwrap()
            .bus_status()
            .unwrap()
            .borrow()
            .remote_applied
    };
    let wait_applied = |fm: FileManager, before: u64| async move {
        let mut st = fm.cache().unwrap().bus_status().unwrap();
        tokio::time::timeout(
            Duration::from_secs(30),
            st.wait_for(|s| s.remote_applied > before),
        )
        .await
        .expect("the invalidation never arrived")
        .unwrap();
    };
    let before = applied(&b);
    a.upload(&loc, Bytes::from_static(b"v1"), &UploadOptions::default())
        .await
        .unwrap();
    // Once A's invalidation has reached B, B caches what it reads and serves it again.
    wait_applied(b.clone(), before).await;
    assert_eq!(read(&b, &loc).await.0, "v1");
    assert!(read(&b, &loc).await.1, "B now serves from its cache");

    let before = applied(&b);
    a.upload(&loc, Bytes::from_static(b"v2"), &UploadOptions::default())
        .await
        .unwrap();
    wait_applied(b.clone(), before).await;
    assert_eq!(read(&b, &loc).await.0, "v2");

    let before = applied(&b);
    a.delete(&loc).await.unwrap();
    wait_applied(b.clone(), before).await;
    assert_not_found(b.download(&loc, &Default::default()).await);

    // Redis goes away: both keep serving, writes still succeed.
    let subs = b
        .cache()
        .unwrap()
        .bus_status()
        .unwrap()
        .borrow()
        .subscriptions;
    redis.stop();
    a.upload(&loc, Bytes::from_static(b"v3"), &UploadOptions::default())
        .await
        .unwrap();
    assert_eq!(read(&a, &loc).await.0, "v3");
    assert_eq!(read(&b, &loc).await.0, "v3");
    // It comes back: B resubscribes and applies new invalidations again.
    redis.restart();
    let mut st = b.cache().unwrap().bus_status().unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        st.wait_for(|s| s.connected && s.subscriptions > subs),
    )
    .await
    .expect("never resubscribed")
    .unwrap();
    let mut st = a.cache().unwrap().bus_status().unwrap();
    tokio::time::timeout(Duration::from_secs(60), st.wait_for(|s| s.connected))
        .await
        .expect("A never reconnected")
        .unwrap();
    assert!(read(&b, &loc).await.0 == "v3");
    let before = applied(&b);
    a.upload(&loc, Bytes::from_static(b"v4"), &UploadOptions::default())
        .await
        .unwrap();
    wait_applied(b.clone(), before).await;
    assert_eq!(read(&b, &loc).await.0, "v4");
}
