//! Load and scale-out tests of the HTTP service over real S3 (Garage), with the cache on.
//!
//! - [`mixed_workload_single_node`]: one instance on the Garage of the test environment
//!   (`scripts/garage.sh`; the S3 variables must be exported, or FM_SKIP_S3=1), 32 clients of
//!   the mixed workload in `scale/workload.rs` for 20 s (FM_SOAK_SECS for longer). Zero
//!   mismatches, zero 5xx, zero failed requests.
//! - [`scale_out_node_kill`]: a 3-node Garage cluster (`scripts/garage-cluster.sh`, replication
//!   factor 3) behind a loopback TCP balancer, two service instances with their own caches and
//!   Redis invalidation between them, the workload through both; one Garage node is killed
//!   (SIGKILL) mid-run and brought back. Zero mismatches throughout (including reads through
//!   one instance of writes through the other once the invalidation arrived), zero failures
//!   before the kill and after the cluster is healthy again; failures during the outage are
//!   counted and reported, and must stay zero (with 2 of 3 nodes Garage keeps its quorum).
//!   The short form takes under a minute; FM_SOAK_SECS stretches every phase.
//!
//! Both print the request counts, mismatches, 5xx, failures and the peak RSS of the test process
//! (VmHWM). Performance is reported, never asserted. `scripts/soak.sh` runs the long forms.
//!
//! One thing is counted apart rather than as a failure: a download whose body is cut while a
//! write or delete of the same file runs. Garage cannot keep serving a version being replaced,
//! and once the 200 is out the service can only cut the connection (the client sees a short
//! body, never a complete-looking wrong one). `FM_TEST_LOG=1` prints the service's warnings.

#[path = "scale/harness.rs"]
mod harness;
#[path = "scale/workload.rs"]
mod workload;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use filemanager::cache::CacheConfig;
use filemanager::{CacheSetup, CacheTier2, LargeFileSetup, StorageConfig};
use harness::*;
use workload::{Workload, key_space};

/// The two tests share the machine; run them one after the other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn soak_secs() -> Option<u64> {
    std::env::var("FM_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&s| s > 0)
}

fn clients() -> u64 {
    std::env::var("FM_SCALE_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

/// Starts `n` clients (the first four begin with an upload over 8 MiB).
fn spawn_clients(w: &Arc<Workload>, n: u64) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|i| tokio::spawn(w.clone().client(i, i < 4)))
        .collect()
}

async fn stop_clients(w: &Arc<Workload>, handles: Vec<tokio::task::JoinHandle<()>>) {
    w.stop.store(true, Ordering::SeqCst);
    for h in handles {
        // A client finishes its current request (bounded by the HTTP client's timeout).
        h.await.expect("a client panicked");
    }
}

fn report(name: &str, w: &Workload, elapsed: Duration) {
    println!("== {name} ({:.1} s)", elapsed.as_secs_f64());
    println!("{}", w.summary());
    println!("failures by class: {}", w.failure_classes());
    println!("latency: {}", w.latency_report());
    println!(
        "peak RSS of the test process (VmHWM): {} MiB; RSS now {} MiB",
        peak_rss_kib() / 1024,
        rss_kib() / 1024
    );
    for i in &w.instances {
        if let Some(s) = i.fm.cache_stats() {
            println!(
                "cache {}: l1 hits {} misses {} | l2 hits {} misses {} errors {} | loads {} coalesced {} \
                 stale fills dropped {} | invalidations {} remote applied {} publish errors {} resyncs {}",
                i.base,
                s.l1_hits,
                s.l1_misses,
                s.l2_hits,
                s.l2_misses,
                s.l2_errors,
                s.loads,
                s.coalesced,
                s.stale_fills_dropped,
                s.invalidations,
                s.remote_invalidations_applied,
                s.publish_errors,
                s.bus_resyncs
            );
        }
        if let Some(s) = i.fm.large_file_stats() {
            println!(
                "large files {}: hits {} misses {} fills {} discarded {} evictions {} damaged {} \
                 | {} copies, {} MiB",
                i.base,
                s.hits,
                s.misses,
                s.fills,
                s.fills_discarded,
                s.evictions,
                s.damaged,
                s.files,
                s.bytes >> 20
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_workload_single_node() {
    let _serial = SERIAL.lock().await;
    reset_peak_rss();
    let Some(s3) = s3_from_env("the load test") else {
        return;
    };
    let secs = soak_secs().unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let inst = Arc::new(
        Instance::start(InstanceConfig {
            storage: StorageConfig::S3(s3),
            // The cache as `serve` sets it up: memory plus a disk tier (FM_SCALE_L2=off: memory
            // only; =bucket: the S3_CACHE_BUCKET tier).
            cache: Some(match std::env::var("FM_SCALE_L2").as_deref() {
                Ok("off") => CacheSetup {
                    config: CacheConfig::default(),
                    tier2: CacheTier2::Off,
                },
                Ok("bucket") => CacheSetup::from_env().unwrap().expect("cache from env"),
                _ => CacheSetup::with_disk(dir.path().join("cache")),
            }),
            large: Some(LargeFileSetup::new(dir.path().join("cache-large"), 1 << 30)),
            max_upload: None,
            domains: Vec::new(),
        })
        .await,
    );
    let run = random_hex(4);
    let domains = vec![format!("load-{run}-a"), format!("load-{run}-b")];
    let w = Arc::new(Workload::new(vec![inst], key_space(&domains, 8, 3, 6)));
    let t0 = Instant::now();
    let handles = spawn_clients(&w, clients());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop_clients(&w, handles).await;
    w.verify_final().await;
    report(
        "mixed workload, 1 instance, single-node Garage",
        &w,
        t0.elapsed(),
    );
    let c = &w.counters;
    let failures: u64 = c.failures.iter().map(|f| f.load(Ordering::Relaxed)).sum();
    assert!(
        c.big_uploads.load(Ordering::Relaxed) >= 1,
        "no upload over 8 MiB ran"
    );
    assert_eq!(
        (
            c.mismatches.load(Ordering::Relaxed),
            c.server_errors.load(Ordering::Relaxed),
            failures
        ),
        (0, 0, 0),
        "mismatches, 5xx, failed requests:\n{}",
        w.problems().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_out_node_kill() {
    let _serial = SERIAL.lock().await;
    reset_peak_rss();
    let Some(redis) = Redis::start() else {
        return;
    };
    let Some(cluster) = tokio::task::block_in_place(GarageCluster::start) else {
        return;
    };
    // Phase lengths: warm-up, outage (after Garage noticed the dead node), after recovery.
    let (warm, outage, after) = match soak_secs() {
        Some(s) => (s / 4, s / 2, s / 4),
        None => (5, 8, 5),
    };
    let balancer = Balancer::start(cluster.s3_addrs()).await;
    let l2 = std::env::var("FM_SCALE_L2").unwrap_or_default();
    let mut instances = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let tier2 = match l2.as_str() {
            "bucket" => CacheTier2::Bucket(cluster.s3_config(&balancer.url(), "S3_CACHE_BUCKET")),
            "off" => CacheTier2::Off,
            _ => CacheTier2::Disk {
                dir: dir.path().join("cache"),
                max_bytes: 256 * 1024 * 1024,
            },
        };
        let cache = CacheSetup {
            config: CacheConfig {
                invalidation_url: Some(redis.url()),
                ..CacheConfig::default()
            },
            tier2,
        };
        instances.push(Arc::new(
            Instance::start(InstanceConfig {
                storage: StorageConfig::S3(cluster.s3_config(&balancer.url(), "APP_BUCKET")),
                cache: Some(cache),
                large: Some(LargeFileSetup::new(dir.path().join("cache-large"), 1 << 30)),
                max_upload: None,
                domains: Vec::new(),
            })
            .await,
        ));
        dirs.push(dir);
    }
    // Both buses subscribed before any write, so that no invalidation is published unheard.
    for i in &instances {
        let mut rx = i.fm.cache().unwrap().bus_status().unwrap();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.connected))
            .await
            .expect("the cache bus did not subscribe within 10 s")
            .unwrap();
    }
    let run = random_hex(4);
    let domains = vec![format!("scale-{run}-a"), format!("scale-{run}-b")];
    let w = Arc::new(Workload::new(instances, key_space(&domains, 8, 3, 6)));
    let t0 = Instant::now();
    let handles = spawn_clients(&w, clients());

    tokio::time::sleep(Duration::from_secs(warm)).await;
    let killed = 2;
    w.phase.store(1, Ordering::SeqCst);
    let kill_at = Instant::now();
    tokio::task::block_in_place(|| cluster.kill(killed));
    let noticed = cluster
        .wait_health("degraded", Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(outage)).await;
    tokio::task::block_in_place(|| cluster.revive(killed));
    let revived_at = Instant::now();
    let healed = cluster
        .wait_health("healthy", Duration::from_secs(90))
        .await;
    w.phase.store(2, Ordering::SeqCst);
    let outage_len = kill_at.elapsed();
    tokio::time::sleep(Duration::from_secs(after)).await;
    stop_clients(&w, handles).await;
    w.verify_final().await;

    report(
        "scale-out: 2 instances, Redis invalidation, 3-node Garage (rf 3), node 2 killed",
        &w,
        t0.elapsed(),
    );
    println!(
        "node {killed}: killed after {warm} s; cluster degraded after {:.1} s; revived {:.1} s \
         after the kill; healthy {:.1} s after revival; outage window {:.1} s; balancer \
         connections {}",
        noticed.as_secs_f64(),
        (revived_at - kill_at).as_secs_f64(),
        healed.as_secs_f64(),
        outage_len.as_secs_f64(),
        balancer.connections.load(Ordering::Relaxed)
    );
    let c = &w.counters;
    let f = |i: usize| c.failures[i].load(Ordering::Relaxed);
    assert_eq!(
        c.mismatches.load(Ordering::Relaxed),
        0,
        "mismatches (lost, stale or corrupt data):\n{}",
        w.problems().join("\n")
    );
    assert_eq!(
        (f(0), f(2)),
        (0, 0),
        "failed requests before the kill / after recovery:\n{}",
        w.problems().join("\n")
    );
    // A download streaming from the node at the moment it dies loses its connection after the
    // 200 went out (nothing can retry that), or, for a small answer read whole before its
    // status, gets a 503 that names the broken backend connection (the service does not retry
    // it); everything else must succeed with 2 of 3 nodes up.
    let broken = w.failures_of(1, "connection broke");
    let outage_requests = c.requests_by_phase[1].load(Ordering::Relaxed);
    assert_eq!(
        f(1) - broken,
        0,
        "failed requests while node {killed} was down (Garage keeps quorum with 2 of 3 nodes):\n{}",
        w.problems().join("\n")
    );
    assert!(
        broken <= 5.max(outage_requests / 100),
        "{broken} of {outage_requests} requests lost their connection during the outage"
    );
    drop(redis);
}

/// The same workload and checker on local disk (no S3 needed), concentrated on four keys so
/// that reads, fills, overwrites and deletes of one key overlap all the time: a fast check of
/// the cache's coherence on one instance (memory plus disk tier).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cache_coherence_hot_keys_local() {
    let _serial = SERIAL.lock().await;
    reset_peak_rss();
    let dir = tempfile::tempdir().unwrap();
    let tier2 = match std::env::var("FM_SCALE_L2").as_deref() {
        Ok("off") => CacheTier2::Off,
        _ => CacheTier2::Disk {
            dir: dir.path().join("cache"),
            max_bytes: 256 * 1024 * 1024,
        },
    };
    let inst = Arc::new(
        Instance::start(InstanceConfig {
            storage: StorageConfig::Local {
                root: dir.path().join("files"),
            },
            cache: Some(CacheSetup {
                config: CacheConfig::default(),
                tier2,
            }),
            large: None,
            max_upload: None,
            domains: Vec::new(),
        })
        .await,
    );
    let w = Arc::new(Workload::new(
        vec![inst],
        key_space(&["hot".to_owned()], 2, 1, 2),
    ));
    let t0 = Instant::now();
    let handles = (0..16)
        .map(|i| tokio::spawn(w.clone().client(i, false)))
        .collect();
    tokio::time::sleep(Duration::from_secs(soak_secs().unwrap_or(8))).await;
    stop_clients(&w, handles).await;
    w.verify_final().await;
    report("cache coherence, 4 hot keys, local disk", &w, t0.elapsed());
    let c = &w.counters;
    let failures: u64 = c.failures.iter().map(|f| f.load(Ordering::Relaxed)).sum();
    assert_eq!(
        (
            c.mismatches.load(Ordering::Relaxed),
            c.server_errors.load(Ordering::Relaxed),
            failures
        ),
        (0, 0, 0),
        "mismatches, 5xx, failed requests:\n{}",
        w.problems().join("\n")
    );
}

/// Read-your-writes through the cache while other readers keep filling it: one writer uploads
/// (every third upload with `cache=false`, so nothing refills the cache) and deletes one key and
/// reads its metadata back after each write, while eight readers load the same key's metadata
/// and content. Through the library, on local disk with the disk tier (FM_SCALE_L2=off: memory
/// only, which passes), in about two seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cache_read_your_writes_with_concurrent_fills() {
    use filemanager::{
        DownloadOptions, FileManager, KeyConfig, Location, StorageLevel, UploadOptions,
    };
    let _serial = SERIAL.lock().await;
    reset_peak_rss();
    let dir = tempfile::tempdir().unwrap();
    let cache = match std::env::var("FM_SCALE_L2").as_deref() {
        Ok("off") => CacheSetup {
            config: CacheConfig::default(),
            tier2: CacheTier2::Off,
        },
        _ => CacheSetup::with_disk(dir.path().join("cache")),
    };
    let fm = FileManager::builder(StorageConfig::Local {
        root: dir.path().join("files"),
    })
    .keys(KeyConfig::from_values(KEY_HEX, &[]).unwrap())
    .cache(Some(cache))
    .build()
    .unwrap();
    let loc = Location::new("ryw", StorageLevel::App, None, "f").unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..8 {
        let (fm, loc, stop) = (fm.clone(), loc.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Cache hits complete without a pending await: yield so the writer runs.
                tokio::task::yield_now().await;
                if r % 2 == 0 {
                    let _ = fm.metadata(&loc, true).await;
                } else {
                    let _ = fm.download_bytes(&loc, &DownloadOptions::default()).await;
                }
            }
        }));
    }
    let mut stale = Vec::new();
    for i in 0..300usize {
        let mut opts = UploadOptions::default();
        opts.metadata.insert("v".into(), i.to_string());
        opts.cache_content = i % 3 != 0;
        fm.upload(&loc, vec![i as u8; 1000 + i], &opts)
            .await
            .unwrap();
        let m = fm.metadata(&loc, true).await.unwrap();
        if m.as_ref().map(|m| m.metadata["v"].clone()) != Some(i.to_string()) {
            stale.push(format!("after upload {i}: {:?}", m.map(|m| m.metadata)));
        }
        if i % 2 == 0 {
            fm.delete(&loc).await.unwrap();
            let m = fm.metadata(&loc, true).await.unwrap();
            if m.is_some() {
                stale.push(format!("after delete {i}: {:?}", m.map(|m| m.metadata)));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    assert!(
        stale.is_empty(),
        "{} stale reads of the writer's own writes (450 checked):\n{}",
        stale.len(),
        stale.join("\n")
    );
}
