//! L1, tickets, invalidation, listings, single-flight, stats and config.
//! No wall-clock sleeps: TTLs use a paused Tokio clock, races use channels.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use filemanager_cache::{Cache, CacheConfig, Fill, Hit, Loaded, Tier};
use tokio::sync::oneshot;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn cache() -> Cache {
    Cache::new(CacheConfig::default(), None).unwrap()
}

fn cache_with(f: impl FnOnce(&mut CacheConfig)) -> Cache {
    let mut c = CacheConfig::default();
    f(&mut c);
    Cache::new(c, None).unwrap()
}

/// Yields until `cond` holds, letting other tasks progress; bounded by a
/// generous timeout so a slow machine cannot make it flaky.
async fn until(mut cond: impl FnMut() -> bool) {
    let spin = async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), spin)
        .await
        .expect("condition not reached");
}

#[test]
fn the_api_is_usable_from_multithreaded_servers() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Cache>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let c = cache();
    send(&c.get_or_load_content("d/app/x", no_load));
    send(&c.get_or_load_metadata("d/app/x", || async {
        Ok::<Bytes, Infallible>(Bytes::new())
    }));
    send(&c.get_or_load_listing("d/app/", "", || async {
        Ok::<Bytes, Infallible>(Bytes::new())
    }));
    send(&c.get_metadata("d/app/x"));
    send(&c.invalidate("d/app/x"));
    send(&c.clear());
}

#[tokio::test]
async fn keys_are_isolated_between_tenants_and_domains() {
    let c = cache();
    let entries = [
        ("d/user/1/a", "one"),
        ("d/user/10/a", "ten"),
        ("d/app/x", "d-app"),
        ("e/app/x", "e-app"),
    ];
    for (k, v) in entries {
        assert!(c.put_content(&c.ticket(k), b(v)).await);
        assert!(c.put_metadata(&c.ticket(k), b(&format!("meta-{v}"))).await);
    }
    for (k, v) in entries {
        assert_eq!(c.get_content(k).await, Some(b(v)), "{k}");
        assert_eq!(
            c.get_metadata(k).await,
            Some(Hit {
                value: b(&format!("meta-{v}")),
                tier: Tier::L1
            })
        );
    }
    assert_eq!(c.get_content("d/user/2/a").await, None);
    assert_eq!(c.get_content("d/user/1").await, None);
    assert_eq!(c.get_metadata("f/app/x").await, None);

    let t1 = c.listing_ticket("d/user/1/", "p");
    let t10 = c.listing_ticket("d/user/10/", "p");
    assert!(c.put_listing(&t1, b("list-1")).await);
    assert!(c.put_listing(&t10, b("list-10")).await);
    assert_eq!(c.get_listing("d/user/1/", "p").await, Some(b("list-1")));
    assert_eq!(c.get_listing("d/user/10/", "p").await, Some(b("list-10")));
    assert_eq!(c.get_listing("d/user/1/", "q").await, None);
    assert_eq!(c.get_listing("d/user/1", "p").await, None);
}

#[tokio::test(start_paused = true)]
async fn each_kind_expires_at_its_own_ttl() {
    let c = cache_with(|c| {
        c.content_ttl = Duration::from_secs(100);
        c.metadata_ttl = Duration::from_secs(200);
        c.listing_ttl = Duration::from_secs(50);
    });
    let k = "d/app/x";
    assert!(c.put_content(&c.ticket(k), b("c")).await);
    assert!(c.put_metadata(&c.ticket(k), b("m")).await);
    assert!(c.put_listing(&c.listing_ticket("d/app/", ""), b("l")).await);

    tokio::time::advance(Duration::from_secs(49)).await;
    assert!(c.get_listing("d/app/", "").await.is_some());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(c.get_listing("d/app/", "").await, None);
    assert!(c.get_content(k).await.is_some());

    tokio::time::advance(Duration::from_secs(50)).await;
    assert_eq!(c.get_content(k).await, None);
    assert!(c.get_metadata(k).await.is_some());

    tokio::time::advance(Duration::from_secs(100)).await;
    assert_eq!(c.get_metadata(k).await, None);
    assert_eq!(c.stats().l1_expirations, 3);
}

#[tokio::test(start_paused = true)]
async fn a_refill_restarts_the_ttl() {
    let c = cache_with(|c| c.content_ttl = Duration::from_secs(10));
    assert!(c.put_content(&c.ticket("d/app/x"), b("1")).await);
    tokio::time::advance(Duration::from_secs(8)).await;
    assert!(c.put_content(&c.ticket("d/app/x"), b("2")).await);
    tokio::time::advance(Duration::from_secs(8)).await;
    assert_eq!(c.get_content("d/app/x").await, Some(b("2")));
}

#[tokio::test]
async fn zero_ttl_and_zero_capacity_disable_caching() {
    let c = cache_with(|c| c.content_ttl = Duration::ZERO);
    assert!(!c.put_content(&c.ticket("d/app/x"), b("v")).await);
    assert_eq!(c.get_content("d/app/x").await, None);
    assert!(c.put_metadata(&c.ticket("d/app/x"), b("m")).await);

    let c = cache_with(|c| c.max_bytes = 0);
    c.put_content(&c.ticket("d/app/x"), b("v")).await;
    assert_eq!(c.get_content("d/app/x").await, None);
}

#[tokio::test]
async fn values_over_the_item_threshold_are_not_cached() {
    let c = cache_with(|c| c.max_item_bytes = 10);
    assert!(
        !c.put_content(&c.ticket("d/app/big"), Bytes::from(vec![0u8; 11]))
            .await
    );
    assert!(
        c.put_content(&c.ticket("d/app/ok"), Bytes::from(vec![0u8; 10]))
            .await
    );
    assert!(
        !c.put_listing(&c.listing_ticket("d/app/", ""), Bytes::from(vec![0u8; 11]))
            .await
    );
    assert_eq!(c.get_content("d/app/big").await, None);
    assert!(c.get_content("d/app/ok").await.is_some());
    assert_eq!(c.stats().oversize_skipped, 2);

    // get_or_load still returns an oversize value, it just is not kept.
    let loaded = c
        .get_or_load_content("d/app/big", |_| async {
            Ok::<_, Infallible>(Fill::FromStorage {
                value: Bytes::from(vec![1u8; 20]),
                stored: None,
            })
        })
        .await
        .unwrap();
    assert_eq!(loaded.value.len(), 20);
    assert_eq!(loaded.tier, None);
    assert_eq!(c.get_content("d/app/big").await, None);
}

#[tokio::test]
async fn capacity_is_in_bytes_and_evictions_are_counted() {
    let c = cache_with(|c| c.max_bytes = 20 * 1024);
    for i in 0..100 {
        let key = format!("d/app/f{i}");
        c.put_content(&c.ticket(&key), Bytes::from(vec![7u8; 1000]))
            .await;
        c.run_pending_tasks().await;
    }
    let s = c.stats();
    assert!(s.l1_bytes <= 20 * 1024, "{s:?}");
    assert!(s.l1_entries <= 20, "{s:?}");
    assert!(s.l1_evictions >= 80, "{s:?}");
}

#[tokio::test]
async fn invalidate_removes_content_metadata_and_covering_listings() {
    let c = cache();
    let key = "d/user/1/a.jpg";
    assert!(c.put_content(&c.ticket(key), b("c")).await);
    assert!(c.put_metadata(&c.ticket(key), b("m")).await);
    let scopes = [
        "",
        "d/",
        "d/user/",
        "d/user/1/",
        "d/user/10/",
        "d/app/",
        "e/user/1/",
        "d/user/1/sub/",
    ];
    for s in scopes {
        assert!(c.put_listing(&c.listing_ticket(s, "p"), b(s)).await);
    }
    c.invalidate(key).await;

    assert_eq!(c.get_content(key).await, None);
    assert_eq!(c.get_metadata(key).await, None);
    for s in ["", "d/", "d/user/", "d/user/1/", "d/user/1/sub/"] {
        assert_eq!(
            c.get_listing(s, "p").await,
            None,
            "scope {s:?} covers the key"
        );
    }
    for s in ["d/user/10/", "d/app/", "e/user/1/"] {
        assert_eq!(
            c.get_listing(s, "p").await,
            Some(b(s)),
            "scope {s:?} does not"
        );
    }
    assert_eq!(c.stats().invalidations, 1);
}

#[tokio::test]
async fn a_fill_with_a_ticket_older_than_the_invalidation_is_dropped() {
    let c = cache();
    let key = "d/app/x";
    let old_ticket = c.ticket(key);
    let old_listing = c.listing_ticket("d/app/", "");
    c.invalidate(key).await;
    assert!(!c.put_content(&old_ticket, b("old")).await);
    assert!(!c.put_metadata(&old_ticket, b("old")).await);
    assert!(!c.put_listing(&old_listing, b("old")).await);
    assert_eq!(c.get_content(key).await, None);
    assert_eq!(c.get_metadata(key).await, None);
    assert_eq!(c.get_listing("d/app/", "").await, None);
    assert_eq!(c.stats().stale_fills_dropped, 3);

    // Tickets taken after the invalidation fill normally; other keys'
    // tickets are unaffected by it unless they share a lock stripe.
    assert!(c.put_content(&c.ticket(key), b("new")).await);
    assert_eq!(c.get_content(key).await, Some(b("new")));
}

#[tokio::test]
async fn invalidated_since_tells_whether_the_key_changed_after_a_ticket() {
    let c = cache();
    let key = "d/app/x";
    let ticket = c.ticket(key);
    assert!(!c.invalidated_since(&ticket).await);
    c.invalidate(key).await;
    assert!(c.invalidated_since(&ticket).await);
    let later = c.ticket(key);
    assert!(!c.invalidated_since(&later).await);
    c.clear().await;
    assert!(c.invalidated_since(&later).await);
}

/// The classic race, made deterministic with channels: a reader misses,
/// reads the OLD value from storage, a writer replaces it and invalidates,
/// then the reader tries to fill. The fill must be dropped.
#[tokio::test]
async fn reader_fill_after_writer_invalidation_is_dropped() {
    let c = cache();
    let key = "d/user/7/doc.txt";
    let (read_done, read_done_rx) = oneshot::channel();
    let (may_fill, may_fill_rx) = oneshot::channel::<()>();
    let reader = {
        let c = c.clone();
        tokio::spawn(async move {
            c.get_or_load_content(key, |_| async move {
                let old = b("old"); // storage read happens here
                read_done.send(()).unwrap();
                may_fill_rx.await.unwrap();
                Ok::<_, Infallible>(Fill::FromStorage {
                    value: old.clone(),
                    stored: Some(old),
                })
            })
            .await
        })
    };
    read_done_rx.await.unwrap();
    // Writer: storage now holds "new"; invalidate.
    c.invalidate(key).await;
    may_fill.send(()).unwrap();
    let got = reader.await.unwrap().unwrap();
    assert_eq!(got.value, b("old")); // that reader started before the write
    assert_eq!(c.get_content(key).await, None);
    assert_eq!(c.stats().stale_fills_dropped, 1);

    let fresh = c
        .get_or_load_content(key, |_| async {
            Ok::<_, Infallible>(Fill::FromStorage {
                value: b("new"),
                stored: None,
            })
        })
        .await
        .unwrap();
    assert_eq!(
        fresh,
        Loaded {
            value: b("new"),
            tier: None
        }
    );
    assert_eq!(c.get_content(key).await, Some(b("new")));
}

/// A caller arriving after an invalidation must not join a load that began
/// before it (that load may return the old value).
#[tokio::test]
async fn callers_after_an_invalidation_do_not_join_an_older_load() {
    let c = cache();
    let key = "d/app/x";
    let (started, started_rx) = oneshot::channel();
    let (release, release_rx) = oneshot::channel::<()>();
    let first = {
        let c = c.clone();
        tokio::spawn(async move {
            c.get_or_load_content(key, |_| async move {
                started.send(()).unwrap();
                release_rx.await.unwrap();
                Ok::<_, Infallible>(Fill::FromStorage {
                    value: b("old"),
                    stored: None,
                })
            })
            .await
        })
    };
    started_rx.await.unwrap();
    c.invalidate(key).await;
    let second = c
        .get_or_load_content(key, |_| async {
            Ok::<_, Infallible>(Fill::FromStorage {
                value: b("new"),
                stored: None,
            })
        })
        .await
        .unwrap();
    assert_eq!(second.value, b("new"));
    release.send(()).unwrap();
    assert_eq!(first.await.unwrap().unwrap().value, b("old"));
    assert_eq!(c.get_content(key).await, Some(b("new")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_misses_cause_one_load() {
    let c = cache();
    let calls = Arc::new(AtomicUsize::new(0));
    let (release, release_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let c = c.clone();
        let calls = Arc::clone(&calls);
        let mut release_rx = release_rx.clone();
        tasks.push(tokio::spawn(async move {
            c.get_or_load_content("d/app/hot", |_| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                release_rx.wait_for(|r| *r).await.unwrap();
                Ok::<_, Infallible>(Fill::FromStorage {
                    value: b("hot"),
                    stored: None,
                })
            })
            .await
        }));
    }
    // All 50 are either the loader or waiting on it before it may finish.
    until(|| c.stats().coalesced >= 49).await;
    release.send(true).unwrap();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().value, b("hot"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(c.stats().loads, 1);
    // Later callers hit L1.
    let again = c.get_or_load_content("d/app/hot", no_load).await.unwrap();
    assert_eq!(again.tier, Some(Tier::L1));
}

async fn no_load(_: Option<Bytes>) -> Result<Fill, Infallible> {
    panic!("no load expected")
}

#[derive(Debug, PartialEq)]
struct Boom;

#[tokio::test]
async fn a_load_error_is_shared_by_all_waiters() {
    let c = cache();
    let calls = AtomicUsize::new(0);
    let (release, release_rx) = tokio::sync::watch::channel(false);
    let load = || {
        let mut rx = release_rx.clone();
        let calls = &calls;
        c.get_or_load_metadata("d/app/m", move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            rx.wait_for(|r| *r).await.unwrap();
            Err::<Bytes, _>(Boom)
        })
    };
    let all = futures::future::join_all((0..10).map(|_| load()));
    let release_when_joined = async {
        until(|| c.stats().coalesced >= 9).await;
        release.send(true).unwrap();
    };
    let (results, ()) = tokio::join!(all, release_when_joined);
    let first = results[0].clone().unwrap_err();
    for r in &results {
        assert!(Arc::ptr_eq(r.as_ref().unwrap_err(), &first));
    }
    assert_eq!(*first, Boom);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(c.get_metadata("d/app/m").await, None);
}

#[tokio::test]
async fn waiters_take_over_when_the_loading_caller_is_cancelled() {
    let c = cache();
    let (started, started_rx) = oneshot::channel();
    let leader = {
        let c = c.clone();
        tokio::spawn(async move {
            c.get_or_load_listing("d/app/", "p", || async move {
                started.send(()).unwrap();
                std::future::pending::<Result<Bytes, Infallible>>().await
            })
            .await
        })
    };
    started_rx.await.unwrap();
    let follower = {
        let c = c.clone();
        tokio::spawn(async move {
            c.get_or_load_listing("d/app/", "p", || async {
                Ok::<_, Infallible>(b("listing"))
            })
            .await
        })
    };
    until(|| c.stats().coalesced >= 1).await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    let got = follower.await.unwrap().unwrap();
    assert_eq!(got.value, b("listing"));
    assert_eq!(c.get_listing("d/app/", "p").await, Some(b("listing")));
}

#[tokio::test]
async fn clear_empties_l1_and_rejects_older_tickets() {
    let c = cache();
    let t = c.ticket("d/app/x");
    let lt = c.listing_ticket("d/app/", "");
    assert!(c.put_content(&c.ticket("d/app/y"), b("y")).await);
    assert!(c.put_listing(&c.listing_ticket("e/app/", ""), b("l")).await);
    c.clear().await;
    assert_eq!(c.get_content("d/app/y").await, None);
    assert_eq!(c.get_listing("e/app/", "").await, None);
    assert!(!c.put_content(&t, b("x")).await);
    assert!(!c.put_listing(&lt, b("x")).await);
    assert!(c.put_content(&c.ticket("d/app/x"), b("x")).await);
    assert_eq!(c.get_content("d/app/x").await, Some(b("x")));
}

#[tokio::test]
async fn stats_count_hits_and_misses_and_render_for_prometheus() {
    let c = cache();
    assert_eq!(c.get_content("d/app/x").await, None);
    c.put_content(&c.ticket("d/app/x"), b("x")).await;
    assert!(c.get_content("d/app/x").await.is_some());
    let s = c.stats();
    assert_eq!((s.l1_hits, s.l1_misses), (1, 1));
    assert_eq!(s.l2_bytes, None);
    let text = s.to_prometheus("filemanager_cache");
    assert!(
        text.contains("filemanager_cache_hits_total{tier=\"l1\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE filemanager_cache_bytes gauge\n"));
    assert!(text.contains("filemanager_cache_l2_errors_total 0\n"));
}

#[test]
fn config_from_env_reads_every_variable() {
    let vars = [
        ("CACHE_MAX_BYTES", "1000"),
        ("CACHE_CONTENT_TTL_SECS", "60"),
        ("CACHE_METADATA_TTL_SECS", "61"),
        ("CACHE_LIST_TTL_SECS", "7"),
        ("CACHE_MAX_ITEM_BYTES", "99"),
        (
            "CACHE_INVALIDATION_URL",
            "redis://:hunter2@127.0.0.1:6390/0",
        ),
        ("CACHE_INVALIDATION_CHANNEL", "chan"),
        ("CACHE_L2_DIR", "/var/cache/fm"),
        ("CACHE_L2_MAX_BYTES", "5000"),
    ];
    let c = CacheConfig::from_lookup(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    assert_eq!(c.max_bytes, 1000);
    assert_eq!(c.content_ttl, Duration::from_secs(60));
    assert_eq!(c.metadata_ttl, Duration::from_secs(61));
    assert_eq!(c.listing_ttl, Duration::from_secs(7));
    assert_eq!(c.max_item_bytes, 99);
    assert_eq!(c.invalidation_channel, "chan");
    assert_eq!(
        c.l2_dir.as_deref(),
        Some(std::path::Path::new("/var/cache/fm"))
    );
    assert_eq!(c.l2_max_bytes, 5000);
    assert!(c.invalidation_url.is_some());
    let debug = format!("{c:?}");
    assert!(!debug.contains("hunter2"), "{debug}");

    let d = CacheConfig::from_lookup(|_| None).unwrap();
    assert_eq!(d, CacheConfig::default());
    assert_eq!(d.content_ttl, Duration::from_secs(3600));
    assert_eq!(d.listing_ttl, Duration::from_secs(300));
}

#[test]
fn config_errors_name_the_variable_not_the_value() {
    let bad = |var: &'static str, value: &'static str| {
        CacheConfig::from_lookup(move |k| (k == var).then(|| value.to_string())).unwrap_err()
    };
    let e = bad("CACHE_MAX_BYTES", "lots-s3cr3t");
    assert_eq!(e.var, "CACHE_MAX_BYTES");
    assert!(e.to_string().contains("CACHE_MAX_BYTES"));
    assert!(!e.to_string().contains("s3cr3t"));
    let e = bad("CACHE_INVALIDATION_URL", "http://user:s3cr3t@host");
    assert_eq!(e.var, "CACHE_INVALIDATION_URL");
    assert!(!e.to_string().contains("s3cr3t"));
    assert_eq!(bad("CACHE_LIST_TTL_SECS", "-1").var, "CACHE_LIST_TTL_SECS");
}
