//! L2 tiers: disk and object store, entry integrity, TTL, size bound, and
//! degradation of every failure to a miss.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use filemanager_cache::{
    Cache, CacheConfig, DiskL2, Fill, Hit, L2Error, L2Store, Loaded, ObjectStoreL2, Tier,
};
use futures::future::BoxFuture;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn with_l2(l2: impl L2Store, f: impl FnOnce(&mut CacheConfig)) -> Cache {
    let mut config = CacheConfig::default();
    f(&mut config);
    Cache::new(config, Some(Arc::new(l2))).unwrap()
}

fn entry_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().len() == 64)
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn disk_entries_survive_a_restart_and_metadata_is_promoted_to_l1() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = with_l2(DiskL2::open(dir.path(), 1 << 20).await, |_| {});
        let t = c.ticket("d/app/x");
        assert!(c.put_content_stored(&t, b("stored-x")).await);
        assert!(c.put_metadata(&t, b("{\"size\":1}")).await);
        // L1 content was not filled by the stored form.
        assert_eq!(c.get_content("d/app/x").await, None);
    }
    let c = with_l2(DiskL2::open(dir.path(), 1 << 20).await, |_| {});
    assert_eq!(c.get_content_stored("d/app/x").await, Some(b("stored-x")));
    assert_eq!(c.get_content_stored("e/app/x").await, None);
    assert_eq!(
        c.get_metadata("d/app/x").await,
        Some(Hit {
            value: b("{\"size\":1}"),
            tier: Tier::L2
        })
    );
    assert_eq!(
        c.get_metadata("d/app/x").await,
        Some(Hit {
            value: b("{\"size\":1}"),
            tier: Tier::L1
        })
    );
    let s = c.stats();
    assert_eq!(s.l2_entries, Some(2));
    assert!(s.l2_bytes.unwrap() > 0);
    assert_eq!(s.l2_hits, 2);
}

#[tokio::test]
async fn get_or_load_content_decodes_l2_hits_and_fills_both_forms() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_l2(DiskL2::open(dir.path(), 1 << 20).await, |_| {});
    // Miss everywhere: the loader reads storage, returns both forms.
    let first = c
        .get_or_load_content("d/user/1/a", |stored| async move {
            assert_eq!(stored, None);
            Ok::<_, Infallible>(Fill::FromStorage {
                value: b("plain"),
                stored: Some(b("ENC(plain)")),
            })
        })
        .await
        .unwrap();
    assert_eq!(
        first,
        Loaded {
            value: b("plain"),
            tier: None
        }
    );
    assert_eq!(
        c.get_content_stored("d/user/1/a").await,
        Some(b("ENC(plain)"))
    );

    // A fresh L1 (new cache, same disk): the loader gets the L2 bytes.
    let c = with_l2(DiskL2::open(dir.path(), 1 << 20).await, |_| {});
    let second = c
        .get_or_load_content("d/user/1/a", |stored| async move {
            let stored = stored.expect("L2 hit");
            assert_eq!(stored, b("ENC(plain)"));
            Ok::<_, Infallible>(Fill::FromL2(b("plain")))
        })
        .await
        .unwrap();
    assert_eq!(
        second,
        Loaded {
            value: b("plain"),
            tier: Some(Tier::L2)
        }
    );
    assert_eq!(c.get_content("d/user/1/a").await, Some(b("plain")));
}

#[tokio::test]
async fn invalidate_deletes_l2_entries() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_l2(DiskL2::open(dir.path(), 1 << 20).await, |_| {});
    let t = c.ticket("d/app/x");
    c.put_content_stored(&t, b("s")).await;
    c.put_metadata(&t, b("m")).await;
    assert_eq!(entry_files(dir.path()).len(), 2);
    c.invalidate("d/app/x").await;
    assert_eq!(entry_files(dir.path()).len(), 0);
    assert_eq!(c.get_content_stored("d/app/x").await, None);
    assert_eq!(c.get_metadata("d/app/x").await, None);
    assert_eq!(c.stats().l2_bytes, Some(0));
}

async fn corrupt_and_check(damage: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let c = with_l2(DiskL2::open(dir.path(), 1 << 20).await, |_| {});
    c.put_content_stored(&c.ticket("d/app/x"), b("some stored bytes"))
        .await;
    let files = entry_files(dir.path());
    assert_eq!(files.len(), 1);
    damage(&files[0]);
    assert_eq!(c.get_content_stored("d/app/x").await, None);
    assert!(!files[0].exists(), "corrupt entry must be deleted");
    assert_eq!(c.stats().l2_errors, 1);
    // Still usable afterwards.
    c.put_content_stored(&c.ticket("d/app/x"), b("again")).await;
    assert_eq!(c.get_content_stored("d/app/x").await, Some(b("again")));
}

#[tokio::test]
async fn a_flipped_byte_is_a_miss_and_the_entry_is_deleted() {
    corrupt_and_check(|p| {
        let mut v = std::fs::read(p).unwrap();
        let last = v.len() - 1;
        v[last] ^= 0x40;
        std::fs::write(p, v).unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_flipped_header_byte_is_a_miss_and_the_entry_is_deleted() {
    corrupt_and_check(|p| {
        let mut v = std::fs::read(p).unwrap();
        v[8] ^= 0x01; // inside the expiry field
        std::fs::write(p, v).unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_truncated_entry_is_a_miss_and_the_entry_is_deleted() {
    corrupt_and_check(|p| {
        let v = std::fs::read(p).unwrap();
        std::fs::write(p, &v[..v.len() - 3]).unwrap();
    })
    .await;
}

#[tokio::test]
async fn an_entry_under_another_keys_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_l2(DiskL2::open(dir.path(), 1 << 20).await, |_| {});
    c.put_content_stored(&c.ticket("d/user/1/a"), b("tenant 1"))
        .await;
    let one = entry_files(dir.path()).remove(0);
    c.put_content_stored(&c.ticket("d/user/10/a"), b("tenant 10"))
        .await;
    let ten = entry_files(dir.path())
        .into_iter()
        .find(|p| *p != one)
        .unwrap();
    // Simulate a mix-up: tenant 1's entry sits where tenant 10's belongs.
    std::fs::copy(&one, &ten).unwrap();
    assert_eq!(c.get_content_stored("d/user/10/a").await, None);
    assert_eq!(c.stats().l2_errors, 1);
    assert_eq!(
        c.get_content_stored("d/user/1/a").await,
        Some(b("tenant 1"))
    );
}

#[tokio::test(start_paused = true)]
async fn l2_ttl_is_enforced_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_l2(DiskL2::open(dir.path(), 1 << 20).await, |c| {
        c.content_ttl = Duration::from_secs(10);
        c.metadata_ttl = Duration::from_secs(20);
    });
    let t = c.ticket("d/app/x");
    c.put_content_stored(&t, b("s")).await;
    c.put_metadata(&t, b("m")).await;
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(c.get_content_stored("d/app/x").await.is_some());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(c.get_content_stored("d/app/x").await, None);
    assert_eq!(entry_files(dir.path()).len(), 1, "expired entry reclaimed");
    assert!(c.get_metadata("d/app/x").await.is_some());
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(c.get_metadata("d/app/x").await, None);
    assert_eq!(c.stats().l2_errors, 0);
}

#[tokio::test]
async fn disk_size_bound_evicts_oldest_and_a_restart_rebuilds_the_accounting() {
    let dir = tempfile::tempdir().unwrap();
    let value = Bytes::from(vec![1u8; 1000]);
    // Entry = 65-byte header + key ("d/app/N": 7) + value (1000).
    let entry = 65 + 7 + 1000;
    let l2 = DiskL2::open(dir.path(), 3 * entry + 10).await;
    let c = with_l2(l2, |_| {});
    for i in 0..5 {
        let key = format!("d/app/{i}");
        c.put_content_stored(&c.ticket(&key), value.clone()).await;
    }
    let s = c.stats();
    assert_eq!(s.l2_entries, Some(3));
    assert_eq!(s.l2_bytes, Some(3 * entry));
    assert_eq!(s.l2_evictions, 2);
    assert_eq!(c.get_content_stored("d/app/0").await, None);
    assert_eq!(c.get_content_stored("d/app/1").await, None);
    assert!(c.get_content_stored("d/app/4").await.is_some());
    assert_eq!(entry_files(dir.path()).len(), 3);
    drop(c);

    // Leftover temp file from a crashed write, and a tighter bound.
    std::fs::write(
        dir.path().join(format!("{}.9.tmp", "a".repeat(64))),
        b"partial",
    )
    .unwrap();
    let l2 = DiskL2::open(dir.path(), 2 * entry).await;
    let st = l2.stats();
    assert_eq!(st.entries, Some(2));
    assert_eq!(st.bytes, Some(2 * entry));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[tokio::test]
async fn an_entry_larger_than_the_whole_bound_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_l2(DiskL2::open(dir.path(), 100).await, |_| {});
    c.put_content_stored(&c.ticket("d/app/small"), b("s")).await;
    c.put_content_stored(&c.ticket("d/app/big"), Bytes::from(vec![0u8; 200]))
        .await;
    assert!(c.get_content_stored("d/app/small").await.is_some());
    assert_eq!(c.get_content_stored("d/app/big").await, None);
}

#[tokio::test]
async fn an_unusable_directory_degrades_to_misses_never_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    // Tests run as root, so permissions would not stop us: use a path below
    // a regular file, which no one can create.
    let c = with_l2(DiskL2::open(file.join("cache"), 1 << 20).await, |_| {});
    let t = c.ticket("d/app/x");
    assert!(c.put_content_stored(&t, b("s")).await);
    assert!(c.put_metadata(&t, b("m")).await);
    assert_eq!(c.get_content_stored("d/app/x").await, None);
    // Metadata still answered by L1.
    assert_eq!(
        c.get_metadata("d/app/x").await.map(|h| h.tier),
        Some(Tier::L1)
    );
    c.invalidate("d/app/x").await;
    let loaded = c
        .get_or_load_content("d/app/x", |stored| async move {
            assert_eq!(stored, None);
            Ok::<_, Infallible>(Fill::FromStorage {
                value: b("v"),
                stored: Some(b("s")),
            })
        })
        .await
        .unwrap();
    assert_eq!(loaded.value, b("v"));
    assert!(c.stats().l2_errors >= 4, "{:?}", c.stats());
    c.clear().await;
}

#[tokio::test]
async fn a_directory_removed_after_open_is_recreated_on_write() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("l2");
    let c = with_l2(DiskL2::open(&sub, 1 << 20).await, |_| {});
    std::fs::remove_dir_all(&sub).unwrap();
    assert_eq!(c.get_content_stored("d/app/x").await, None);
    c.put_content_stored(&c.ticket("d/app/x"), b("s")).await;
    assert_eq!(c.get_content_stored("d/app/x").await, Some(b("s")));
    assert_eq!(c.stats().l2_errors, 0);
}

#[tokio::test]
async fn object_store_l2_roundtrip_corruption_and_scoped_clear() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let c = with_l2(ObjectStoreL2::new(Arc::clone(&store), "cache/l2"), |_| {});
    let t = c.ticket("d/app/x");
    assert!(c.put_content_stored(&t, b("enc")).await);
    assert!(c.put_metadata(&t, b("m")).await);
    assert_eq!(c.get_content_stored("d/app/x").await, Some(b("enc")));

    // Unrelated objects that clear() must leave alone.
    let keep = [
        ObjPath::from("cache/l2/README"),
        ObjPath::from("files/d/app/x"),
        ObjPath::from("cache/l2/sub/x"),
    ];
    for p in &keep {
        store
            .put(p, PutPayload::from_static(b"keep"))
            .await
            .unwrap();
    }
    // Corrupt the content entry in the bucket.
    let entries: Vec<ObjPath> = {
        use futures::TryStreamExt;
        store
            .list(Some(&ObjPath::from("cache/l2")))
            .map_ok(|m| m.location)
            .try_filter(|p| std::future::ready(p.filename().is_some_and(|f| f.len() == 64)))
            .try_collect()
            .await
            .unwrap()
    };
    assert_eq!(entries.len(), 2);
    for p in &entries {
        let mut v = store.get(p).await.unwrap().bytes().await.unwrap().to_vec();
        if v[4] == b'c' {
            let last = v.len() - 1;
            v[last] ^= 1;
            store.put(p, PutPayload::from(v)).await.unwrap();
        }
    }
    assert_eq!(c.get_content_stored("d/app/x").await, None);
    assert_eq!(c.stats().l2_errors, 1);
    assert_eq!(
        c.get_metadata("d/app/x").await.map(|h| h.tier),
        Some(Tier::L1)
    );

    c.clear().await;
    for p in &entries {
        assert!(store.head(p).await.is_err(), "entry {p} survived clear");
    }
    for p in &keep {
        assert!(store.head(p).await.is_ok(), "{p} must survive clear");
    }
}

#[tokio::test(start_paused = true)]
async fn object_store_l2_ttl_is_enforced_on_read() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let c = with_l2(ObjectStoreL2::new(store, ""), |c| {
        c.content_ttl = Duration::from_secs(5)
    });
    c.put_content_stored(&c.ticket("d/app/x"), b("enc")).await;
    tokio::time::advance(Duration::from_secs(4)).await;
    assert!(c.get_content_stored("d/app/x").await.is_some());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(c.get_content_stored("d/app/x").await, None);
}

/// An L2 whose operations can be made to fail, to test degradation.
#[derive(Debug, Default)]
struct Flaky {
    map: Mutex<HashMap<String, Bytes>>,
    fail_get: AtomicBool,
    fail_put: AtomicBool,
    fail_delete: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
#[error("injected failure")]
struct Injected;

impl L2Store for Flaky {
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, L2Error>> {
        Box::pin(async move {
            if self.fail_get.load(Ordering::SeqCst) {
                return Err(L2Error::new(Injected));
            }
            Ok(self.map.lock().unwrap().get(name).cloned())
        })
    }
    fn put<'a>(&'a self, name: &'a str, entry: Bytes) -> BoxFuture<'a, Result<(), L2Error>> {
        Box::pin(async move {
            if self.fail_put.load(Ordering::SeqCst) {
                return Err(L2Error::new(Injected));
            }
            self.map.lock().unwrap().insert(name.to_owned(), entry);
            Ok(())
        })
    }
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), L2Error>> {
        Box::pin(async move {
            if self.fail_delete.load(Ordering::SeqCst) {
                return Err(L2Error::new(Injected));
            }
            self.map.lock().unwrap().remove(name);
            Ok(())
        })
    }
    fn clear(&self) -> BoxFuture<'_, Result<(), L2Error>> {
        Box::pin(async move {
            self.map.lock().unwrap().clear();
            Ok(())
        })
    }
}

#[tokio::test]
async fn failing_l2_reads_and_writes_are_misses_and_counted() {
    let flaky = Arc::new(Flaky::default());
    let c = Cache::new(
        CacheConfig::default(),
        Some(Arc::clone(&flaky) as Arc<dyn L2Store>),
    )
    .unwrap();
    flaky.fail_put.store(true, Ordering::SeqCst);
    assert!(c.put_content_stored(&c.ticket("d/app/x"), b("s")).await);
    flaky.fail_put.store(false, Ordering::SeqCst);
    c.put_content_stored(&c.ticket("d/app/y"), b("s")).await;
    flaky.fail_get.store(true, Ordering::SeqCst);
    assert_eq!(c.get_content_stored("d/app/y").await, None);
    flaky.fail_get.store(false, Ordering::SeqCst);
    assert_eq!(c.get_content_stored("d/app/y").await, Some(b("s")));
    let s = c.stats();
    assert_eq!(s.l2_errors, 2);
    assert_eq!((s.l2_hits, s.l2_misses), (1, 1));
}

/// If the delete of an invalidation fails, the old entry may still be in L2
/// when the store recovers: it must not be served.
#[tokio::test]
async fn an_entry_whose_delete_failed_is_never_served_again() {
    let flaky = Arc::new(Flaky::default());
    let c = Cache::new(
        CacheConfig::default(),
        Some(Arc::clone(&flaky) as Arc<dyn L2Store>),
    )
    .unwrap();
    c.put_content_stored(&c.ticket("d/app/x"), b("old")).await;
    flaky.fail_delete.store(true, Ordering::SeqCst);
    c.invalidate("d/app/x").await; // delete fails, entry still there
    assert_eq!(flaky.map.lock().unwrap().len(), 1);
    assert_eq!(c.get_content_stored("d/app/x").await, None);
    flaky.fail_delete.store(false, Ordering::SeqCst);
    // The next read retries the delete instead of serving the entry.
    assert_eq!(c.get_content_stored("d/app/x").await, None);
    assert!(flaky.map.lock().unwrap().is_empty());
    // And a fresh fill works normally again.
    c.put_content_stored(&c.ticket("d/app/x"), b("new")).await;
    assert_eq!(c.get_content_stored("d/app/x").await, Some(b("new")));
}

/// An L2 that can hold its next delete until released, to stop an invalidation half way.
#[derive(Debug, Default)]
struct Gated {
    map: Mutex<HashMap<String, Bytes>>,
    /// Hold the next delete.
    hold: AtomicBool,
    /// Signalled when a delete is being held, and when a get runs during the hold.
    held: tokio::sync::Notify,
    got_during_hold: tokio::sync::Notify,
    holding: AtomicBool,
    release: tokio::sync::Notify,
}

impl L2Store for Gated {
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, L2Error>> {
        Box::pin(async move {
            let found = self.map.lock().unwrap().get(name).cloned();
            if self.holding.load(Ordering::SeqCst) {
                self.got_during_hold.notify_one();
            }
            Ok(found)
        })
    }
    fn put<'a>(&'a self, name: &'a str, entry: Bytes) -> BoxFuture<'a, Result<(), L2Error>> {
        Box::pin(async move {
            self.map.lock().unwrap().insert(name.to_owned(), entry);
            Ok(())
        })
    }
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), L2Error>> {
        Box::pin(async move {
            if self.hold.swap(false, Ordering::SeqCst) {
                self.holding.store(true, Ordering::SeqCst);
                self.held.notify_one();
                self.release.notified().await;
                self.holding.store(false, Ordering::SeqCst);
            }
            self.map.lock().unwrap().remove(name);
            Ok(())
        })
    }
    fn clear(&self) -> BoxFuture<'_, Result<(), L2Error>> {
        Box::pin(async move {
            self.map.lock().unwrap().clear();
            Ok(())
        })
    }
}

/// A listing loaded while an invalidation of one of its keys is half done (memory entries
/// gone, the second tier not yet) may read the old entry from the second tier. It may answer
/// its own caller (the two overlapped), but it must not stay cached: a listing asked for after
/// the invalidation returned must not show the old value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_loaded_during_an_invalidation_is_not_kept() {
    let l2 = Arc::new(Gated::default());
    let c = Arc::new(
        Cache::new(
            CacheConfig::default(),
            Some(Arc::clone(&l2) as Arc<dyn L2Store>),
        )
        .unwrap(),
    );
    let key = "d/app/x";
    assert!(c.put_metadata(&c.ticket(key), b("old")).await);
    l2.hold.store(true, Ordering::SeqCst);
    let invalidation = {
        let c = Arc::clone(&c);
        tokio::spawn(async move { c.invalidate(key).await })
    };
    l2.held.notified().await;
    let lister = {
        let c = Arc::clone(&c);
        tokio::spawn(async move {
            c.get_or_load_listing("d/app/", "", || async {
                let meta = c
                    .get_or_load_metadata(key, || async { Ok::<_, Infallible>(b("fresh")) })
                    .await
                    .unwrap();
                Ok::<_, Infallible>(meta.value)
            })
            .await
            .unwrap()
            .value
        })
    };
    // The lister has read the second tier while the invalidation is stopped in it.
    l2.got_during_hold.notified().await;
    l2.release.notify_one();
    invalidation.await.unwrap();
    let seen = lister.await.unwrap();
    assert!(seen == b("old") || seen == b("fresh"), "{seen:?}");
    assert_ne!(
        c.get_listing("d/app/", "").await,
        Some(b("old")),
        "a listing from before the invalidation is still served"
    );
}
