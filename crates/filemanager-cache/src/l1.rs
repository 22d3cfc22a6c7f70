//! L1: the in-memory tier, a byte-weighted moka `future::Cache`.
//!
//! Each value carries its own expiry (a Tokio `Instant`) and the ticket
//! sequence it was filled under; both are checked on every read. The expiry
//! check makes TTLs exact and testable with a paused Tokio clock (moka runs
//! on its own clock and is only used here to reclaim memory of expired
//! entries); the sequence check makes `clear()` exact regardless of moka's
//! lazy invalidation.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moka::Expiry;
use moka::notification::RemovalCause;
use tokio::time::Instant;

use crate::config::CacheConfig;
use crate::keys::Kind;
use crate::stats::{Counters, bump};

/// Fixed per-entry overhead charged by the weigher (moka bookkeeping, the
/// value struct, hash-map slot), so many tiny entries cannot exceed the
/// byte budget by much.
const ENTRY_OVERHEAD: usize = 96;

/// L1 key: the kind plus the full storage key (or encoded listing key).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct L1Key {
    pub(crate) kind: Kind,
    pub(crate) key: Box<str>,
}

impl L1Key {
    pub(crate) fn new(kind: Kind, key: &str) -> Self {
        Self {
            kind,
            key: key.into(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct L1Value {
    bytes: Bytes,
    expires_at: Instant,
    /// Ticket sequence of the fill; older than the clear mark = cleared.
    born: u64,
}

/// Gives moka the per-kind TTL so it reclaims expired entries by itself.
struct PerKindTtl {
    content: Duration,
    metadata: Duration,
    listing: Duration,
}

impl PerKindTtl {
    fn ttl(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Content => self.content,
            Kind::Metadata => self.metadata,
            Kind::Listing => self.listing,
        }
    }
}

impl Expiry<L1Key, L1Value> for PerKindTtl {
    fn expire_after_create(
        &self,
        key: &L1Key,
        _value: &L1Value,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(self.ttl(key.kind))
    }

    // A re-fill restarts the TTL (moka's default keeps the old deadline).
    fn expire_after_update(
        &self,
        key: &L1Key,
        _value: &L1Value,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.ttl(key.kind))
    }
}

#[derive(Debug)]
pub(crate) struct L1 {
    cache: moka::future::Cache<L1Key, L1Value>,
    enabled: bool,
    counters: Arc<Counters>,
}

impl L1 {
    pub(crate) fn new(config: &CacheConfig, counters: Arc<Counters>) -> Self {
        let listener_counters = Arc::clone(&counters);
        let cache = moka::future::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|k: &L1Key, v: &L1Value| {
                let w = k.key.len() + v.bytes.len() + ENTRY_OVERHEAD;
                u32::try_from(w).unwrap_or(u32::MAX)
            })
            .expire_after(PerKindTtl {
                content: config.content_ttl,
                metadata: config.metadata_ttl,
                listing: config.listing_ttl,
            })
            .eviction_listener(move |_k, _v, cause| match cause {
                RemovalCause::Size => bump(&listener_counters.l1_evictions),
                RemovalCause::Expired => bump(&listener_counters.l1_expirations),
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            })
            .build();
        Self {
            cache,
            enabled: config.max_bytes > 0,
            counters,
        }
    }

    /// Looks up `key`; counts a hit or a miss.
    pub(crate) async fn get(&self, key: &L1Key, cleared_at: u64) -> Option<Bytes> {
        let found = self.peek(key, cleared_at).await;
        bump(if found.is_some() {
            &self.counters.l1_hits
        } else {
            &self.counters.l1_misses
        });
        found
    }

    /// Looks up `key` without counting (re-checks inside the cache).
    pub(crate) async fn peek(&self, key: &L1Key, cleared_at: u64) -> Option<Bytes> {
        if !self.enabled {
            return None;
        }
        let v = self.cache.get(key).await?;
        if v.born < cleared_at {
            return None;
        }
        if Instant::now() >= v.expires_at {
            // May remove a fresher value put concurrently: that is a miss,
            // never a stale read.
            self.cache.invalidate(key).await;
            bump(&self.counters.l1_expirations);
            return None;
        }
        Some(v.bytes)
    }

    /// Inserts; the caller has checked the ticket and the size threshold.
    pub(crate) async fn insert(&self, key: L1Key, bytes: Bytes, ttl: Duration, born: u64) {
        if !self.enabled || ttl.is_zero() {
            return;
        }
        let expires_at = Instant::now() + ttl;
        self.cache
            .insert(
                key,
                L1Value {
                    bytes,
                    expires_at,
                    born,
                },
            )
            .await;
    }

    pub(crate) async fn remove(&self, key: &L1Key) {
        self.cache.invalidate(key).await;
    }

    pub(crate) fn clear(&self) {
        self.cache.invalidate_all();
    }

    pub(crate) async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }

    pub(crate) fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    pub(crate) fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }
}
