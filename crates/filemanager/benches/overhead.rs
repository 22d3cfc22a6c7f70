#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Library overhead: FileManager upload and download (no codec, cache off) against raw
//! `object_store` on the same local disk, in the same run, for 4 KiB and 64 MiB files.
//!
//! Run: `cargo bench -p filemanager --bench overhead`. The ratio raw/FileManager of the
//! medians is the figure in BENCHMARKS.md (1.0 = no overhead).

mod support;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use filemanager::{Location, StorageLevel};
use object_store::ObjectStoreExt;
use object_store::path::Path;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let support::Sides {
        fm,
        raw,
        plain,
        no_cache,
    } = support::sides(dir.path());

    for (label, size) in [("4KiB", 4 * 1024), ("64MiB", 64 * 1024 * 1024)] {
        let data = Bytes::from(vec![0x5au8; size]);
        let loc = Location::new("bench", StorageLevel::App, None, label).unwrap();
        let path = Path::from(format!("bench/app/{label}"));
        // Both files exist before any bench runs, so a download bench can run on its own
        // (`cargo bench --bench overhead -- download/4KiB`).
        rt.block_on(async {
            raw.put(&path, data.clone().into()).await.unwrap();
            fm.upload(&loc, data.clone(), &plain).await.unwrap();
        });

        let mut g = c.benchmark_group(format!("upload/{label}"));
        g.throughput(Throughput::Bytes(size as u64));
        if size > 1 << 20 {
            g.sample_size(10);
        }
        g.bench_function(BenchmarkId::new("raw_object_store", label), |b| {
            b.to_async(&rt)
                .iter(|| async { raw.put(&path, data.clone().into()).await.unwrap() })
        });
        g.bench_function(BenchmarkId::new("filemanager", label), |b| {
            b.to_async(&rt)
                .iter(|| async { fm.upload(&loc, data.clone(), &plain).await.unwrap() })
        });
        g.finish();

        let mut g = c.benchmark_group(format!("download/{label}"));
        g.throughput(Throughput::Bytes(size as u64));
        if size > 1 << 20 {
            g.sample_size(10);
        }
        g.bench_function(BenchmarkId::new("raw_object_store", label), |b| {
            b.to_async(&rt)
                .iter(|| async { raw.get(&path).await.unwrap().bytes().await.unwrap() })
        });
        g.bench_function(BenchmarkId::new("filemanager", label), |b| {
            b.to_async(&rt)
                .iter(|| async { fm.download_bytes(&loc, &no_cache).await.unwrap() })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
