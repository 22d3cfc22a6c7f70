#![allow(missing_docs)] // criterion_group! generates undocumented items
//! L1 hit through the cache API vs a bare moka `get` of the same 4 KiB
//! value, and an L2 disk hit vs an L1 hit.
//!
//! Run: `cargo bench -p filemanager-cache`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use filemanager_cache::{Cache, CacheConfig, DiskL2, L2Store};

const KEY: &str = "blog/user/42/bench.bin";

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let value = Bytes::from(vec![7u8; 4096]);
    let dir = tempfile::tempdir().unwrap();
    let (cache, moka, disk_cache) = rt.block_on(async {
        let cache = Cache::new(CacheConfig::default(), None).unwrap();
        assert!(cache.put_content(&cache.ticket(KEY), value.clone()).await);
        let moka: moka::future::Cache<String, Bytes> = moka::future::Cache::builder()
            .max_capacity(256 * 1024 * 1024)
            .weigher(|k: &String, v: &Bytes| (k.len() + v.len()) as u32)
            .build();
        moka.insert(KEY.to_owned(), value.clone()).await;
        let l2: Arc<dyn L2Store> = Arc::new(DiskL2::open(dir.path(), 1 << 30).await);
        let disk_cache = Cache::new(CacheConfig::default(), Some(l2)).unwrap();
        disk_cache
            .put_content_stored(&disk_cache.ticket(KEY), value.clone())
            .await;
        (cache, moka, disk_cache)
    });

    let mut g = c.benchmark_group("l1_hit_4KiB");
    g.bench_function("cache.get_content", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cache.get_content(KEY).await.unwrap()) })
    });
    g.bench_function("cache.get_or_load_content", |b| {
        b.to_async(&rt).iter(|| async {
            let r = cache
                .get_or_load_content(KEY, |_| async { Err::<filemanager_cache::Fill, ()>(()) })
                .await;
            black_box(r.unwrap())
        })
    });
    g.bench_function("bare_moka.get", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(moka.get(KEY).await.unwrap()) })
    });
    g.finish();

    let mut g = c.benchmark_group("l2_vs_l1_4KiB");
    g.bench_function("l1_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cache.get_content(KEY).await.unwrap()) })
    });
    g.bench_function("l2_disk_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(disk_cache.get_content_stored(KEY).await.unwrap()) })
    });
    g.finish();
}

criterion_group! {
    name = cache_benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = benches
}
criterion_main!(cache_benches);
