//! Cross-instance invalidation against a real `redis-server` started by the
//! test on a free loopback port. Fails (does not skip) when redis-server is
//! missing, unless `FM_SKIP_REDIS=1`. Every wait is on an event (the bus
//! status channel, the server's "ready" line), bounded by a timeout.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use std::sync::Arc;

use filemanager_cache::{BusStatus, Cache, CacheConfig, DiskL2, L2Store};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(30);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn redis_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

struct RedisServer {
    child: Child,
}

impl RedisServer {
    /// Starts redis-server and returns once it logged that it is ready.
    fn start(bin: &PathBuf, port: u16) -> Self {
        let mut child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Keeps draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("Ready to accept connections") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(WAIT)
            .expect("redis-server did not become ready (port taken?)");
        Self { child }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn wait(
    rx: &mut watch::Receiver<BusStatus>,
    what: &str,
    cond: impl FnMut(&BusStatus) -> bool,
) {
    let outcome = tokio::time::timeout(WAIT, rx.wait_for(cond))
        .await
        .map(|r| r.is_ok());
    match outcome {
        Ok(true) => {}
        Ok(false) => panic!("bus closed while waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}; status {:?}", *rx.borrow()),
    }
}

async fn fill(c: &Cache, key: &str, scope: &str) {
    assert!(c.put_content(&c.ticket(key), b("content")).await);
    assert!(c.put_metadata(&c.ticket(key), b("meta")).await);
    assert!(
        c.put_listing(&c.listing_ticket(scope, ""), b("listing"))
            .await
    );
}

/// [`fill`], telling whether every put was taken instead of asserting it.
async fn try_fill(c: &Cache, key: &str, scope: &str) -> bool {
    c.put_content(&c.ticket(key), b("content")).await
        & c.put_metadata(&c.ticket(key), b("meta")).await
        & c.put_listing(&c.listing_ticket(scope, ""), b("listing"))
            .await
}

async fn is_cached(c: &Cache, key: &str, scope: &str) -> [bool; 3] {
    [
        c.get_content(key).await.is_some(),
        c.get_metadata(key).await.is_some(),
        c.get_listing(scope, "").await.is_some(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_reach_other_instances_and_survive_a_redis_restart() {
    let Some(bin) = redis_binary() else {
        if std::env::var("FM_SKIP_REDIS").as_deref() == Ok("1") {
            eprintln!("redis-server not found; skipped because FM_SKIP_REDIS=1");
            return;
        }
        panic!(
            "redis-server not found in PATH, /usr/bin or /usr/local/bin: install it \
             (Debian: apt-get install redis-server) or set FM_SKIP_REDIS=1 to skip"
        );
    };
    let port = free_port();
    let mut redis = RedisServer::start(&bin, port);
    let config = CacheConfig {
        invalidation_url: Some(format!("redis://127.0.0.1:{port}/")),
        invalidation_channel: format!("fm-test:{port}"),
        ..CacheConfig::default()
    };
    let a = Cache::new(config.clone(), None).unwrap();
    // B has a local disk L2, which remote invalidations and resyncs reach.
    let dir = tempfile::tempdir().unwrap();
    let b_l2: Arc<dyn L2Store> = Arc::new(DiskL2::open(dir.path(), 1 << 20).await);
    let b_ = Cache::new(config, Some(b_l2)).unwrap();
    assert_ne!(a.instance_id(), b_.instance_id());
    let mut a_bus = a.bus_status().unwrap();
    let mut b_bus = b_.bus_status().unwrap();
    wait(&mut a_bus, "A subscribed", |s| s.connected).await;
    wait(&mut b_bus, "B subscribed", |s| s.connected).await;

    // 1. An invalidation through A is applied by B.
    let (key, scope) = ("d/user/1/a.jpg", "d/user/1/");
    fill(&a, key, scope).await;
    fill(&b_, key, scope).await;
    fill(&b_, "d/user/10/a.jpg", "d/user/10/").await;
    assert!(b_.put_content_stored(&b_.ticket(key), b("enc")).await);
    assert!(
        b_.put_content_stored(&b_.ticket("d/app/kept"), b("enc"))
            .await
    );
    assert!(b_.get_content_stored("d/app/kept").await.is_some());
    a.invalidate(key).await;
    wait(&mut b_bus, "B applied A's invalidation", |s| {
        s.remote_applied >= 1
    })
    .await;
    assert_eq!(is_cached(&b_, key, scope).await, [false; 3]);
    assert_eq!(
        b_.get_content_stored(key).await,
        None,
        "B's L2 entry deleted"
    );
    assert_eq!(is_cached(&a, key, scope).await, [false; 3]);
    // Other tenants' entries on B are untouched.
    assert_eq!(
        is_cached(&b_, "d/user/10/a.jpg", "d/user/10/").await,
        [true; 3]
    );

    // A ignores its own echo: the channel is ordered, so once A has applied
    // B's later message, A's own earlier one has been seen and skipped.
    b_.invalidate("d/app/other").await;
    wait(&mut a_bus, "A applied B's invalidation", |s| {
        s.remote_applied >= 1
    })
    .await;
    assert_eq!(a_bus.borrow().remote_applied, 1);
    assert_eq!(a.stats().remote_invalidations_applied, 1);

    // 2. Redis goes away: both keep serving, invalidate does not fail.
    redis.stop();
    wait(&mut b_bus, "B noticed the outage", |s| !s.connected).await;
    wait(&mut a_bus, "A noticed the outage", |s| !s.connected).await;
    let key2 = "d/app/during-outage";
    fill(&a, key2, "d/app/").await;
    fill(&b_, key2, "d/app/").await;
    a.invalidate(key2).await;
    b_.invalidate("d/user/10/a.jpg").await;
    assert_eq!(is_cached(&a, key2, "d/app/").await, [false; 3]);
    assert_eq!(is_cached(&b_, key2, "d/app/").await, [true; 3]);
    assert!(b_.get_content("d/user/10/a.jpg").await.is_none());

    // 3. Redis returns on the same port: B resubscribes (clearing what it
    // may have missed) and applies new invalidations again.
    let _redis = RedisServer::start(&bin, port);
    wait(&mut b_bus, "B resubscribed", |s| {
        s.connected && s.subscriptions >= 2
    })
    .await;
    wait(&mut a_bus, "A resubscribed", |s| {
        s.connected && s.subscriptions >= 2
    })
    .await;
    assert_eq!(
        is_cached(&b_, key2, "d/app/").await,
        [false; 3],
        "resync clears"
    );
    // L2 entries written before the outage may have missed invalidations.
    let kept = b_.get_content_stored("d/app/kept").await;
    assert_eq!(kept, None, "resync fences the local L2");
    let key3 = "d/app/after-restart";
    // A's invalidation queued during the outage (key2, in the same scope) may land between
    // a ticket and its put: the put is then refused, as it must be. Fill again until one
    // round of puts meets no such invalidation.
    tokio::time::timeout(WAIT, async {
        while !try_fill(&b_, key3, "d/app/").await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("B fills its cache after Redis restarted");
    a.invalidate(key3).await;
    // A's queued outage message may arrive first: wait until key3's is in.
    tokio::time::timeout(WAIT, async {
        loop {
            let seen = b_bus.borrow_and_update().remote_applied;
            if is_cached(&b_, key3, "d/app/").await == [false; 3] {
                break;
            }
            b_bus.wait_for(|s| s.remote_applied > seen).await.unwrap();
        }
    })
    .await
    .expect("B applies invalidations after Redis restarted");
    let (sa, sb) = (a.stats(), b_.stats());
    assert!(sa.publish_errors >= 1, "{sa:?}");
    assert!(sb.subscribe_errors >= 1, "{sb:?}");
    assert!(sb.bus_resyncs >= 2, "{sb:?}");
}

#[tokio::test]
async fn a_bad_url_is_rejected_without_echoing_it() {
    let config = CacheConfig {
        invalidation_url: Some("bogus://:s3cr3t@host".into()),
        ..CacheConfig::default()
    };
    let e = Cache::new(config, None).unwrap_err();
    assert!(!e.to_string().contains("s3cr3t"));
}

/// Shared L2 race across instances: B's reader read the OLD value before
/// A's write, and its fill reaches the bucket after A's delete but before B
/// hears of the invalidation. A may copy that entry into its L1 meanwhile;
/// B's repair message must make A drop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_racing_fill_of_a_shared_l2_is_repaired_everywhere() {
    let Some(bin) = redis_binary() else {
        if std::env::var("FM_SKIP_REDIS").as_deref() == Ok("1") {
            return;
        }
        panic!("redis-server not found: install it or set FM_SKIP_REDIS=1");
    };
    let port = free_port();
    let _redis = RedisServer::start(&bin, port);
    let config = CacheConfig {
        invalidation_url: Some(format!("redis://127.0.0.1:{port}/")),
        invalidation_channel: format!("fm-test:{port}"),
        ..CacheConfig::default()
    };
    let bucket: Arc<dyn object_store::ObjectStore> =
        Arc::new(object_store::memory::InMemory::new());
    let shared = || -> Option<Arc<dyn L2Store>> {
        Some(Arc::new(filemanager_cache::ObjectStoreL2::new(
            Arc::clone(&bucket),
            "l2",
        )))
    };
    let a = Cache::new(config.clone(), shared()).unwrap();
    let b_ = Cache::new(config, shared()).unwrap();
    let mut a_bus = a.bus_status().unwrap();
    let mut b_bus = b_.bus_status().unwrap();
    wait(&mut a_bus, "A subscribed", |s| s.connected).await;
    wait(&mut b_bus, "B subscribed", |s| s.connected).await;

    let key = "d/user/3/profile.json";
    let stale_ticket = b_.ticket(key); // B reads OLD from storage...
    a.invalidate(key).await; // ...A writes NEW and invalidates...
    // ...then B's fill lands (unless B already applied A's message, in
    // which case the ticket check drops it and there is nothing to repair).
    let landed = b_.put_metadata(&stale_ticket, b("OLD")).await;
    // A copies whatever the bucket holds into its L1.
    let _ = a.get_metadata(key).await;

    wait(&mut b_bus, "B applied A's invalidation", |s| {
        s.remote_applied >= 1
    })
    .await;
    if landed {
        assert_eq!(b_.stats().repairs_published, 1);
        wait(&mut a_bus, "A applied B's repair", |s| {
            s.remote_applied >= 1
        })
        .await;
    } else {
        assert_eq!(b_.stats().stale_fills_dropped, 1);
    }
    assert_eq!(a.get_metadata(key).await, None, "A must not keep OLD");
    assert_eq!(b_.get_metadata(key).await, None, "B must not keep OLD");
    eprintln!("stale fill landed before B heard of the write: {landed}");
}
