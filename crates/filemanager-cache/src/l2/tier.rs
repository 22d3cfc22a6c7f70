//! The cache's view of its L2 store: entry encoding, TTL and integrity
//! checks on read, and degradation of every failure to a miss (logged and
//! counted in `l2_errors`).
//!
//! One failure needs more than a miss: a failed *delete* during
//! `invalidate` may leave the old entry readable once the store recovers.
//! Such keys are remembered as "suspect" and L2 reads bypass them until the
//! old entry must have expired (now + TTL) or a later delete or fill of the
//! key succeeds. Too many suspects, or a failed `clear`, fence all of L2
//! the same way.
//!
//! A local store is not bulk-deleted when the bus resyncs: it is fenced
//! instead (entries written up to now become misses and are reclaimed
//! lazily), O(1) rather than a directory sweep under every stripe lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::clock::Clock;
use crate::keys::{Kind, entry_name};
use crate::l2::{L2Stats, L2Store, entry};
use crate::stats::{Counters, bump};

const MAX_SUSPECTS: usize = 10_000;
const MAX_RECENT_FILLS: usize = 100_000;

#[derive(Debug, Default)]
struct Suspects {
    keys: HashMap<(Kind, Box<str>), u64>,
    /// All of L2 is bypassed until this Unix-ms time.
    all_until: u64,
}

#[derive(Debug)]
pub(crate) struct L2Tier {
    store: Arc<dyn L2Store>,
    counters: Arc<Counters>,
    clock: Clock,
    content_ttl: Duration,
    metadata_ttl: Duration,
    suspects: Mutex<Suspects>,
    /// Entries written at or before this Unix-ms time are stale.
    fenced_until: AtomicU64,
    /// Shared stores only: when this instance last filled each key (Unix
    /// ms), so a remote invalidation can tell whether our fill may have
    /// landed after the sender's delete (see `invalidation`, "repair").
    recent_fills: Mutex<HashMap<Box<str>, u64>>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl L2Tier {
    pub(crate) fn new(
        store: Arc<dyn L2Store>,
        counters: Arc<Counters>,
        clock: Clock,
        content_ttl: Duration,
        metadata_ttl: Duration,
    ) -> Self {
        Self {
            store,
            counters,
            clock,
            content_ttl,
            metadata_ttl,
            suspects: Mutex::new(Suspects::default()),
            fenced_until: AtomicU64::new(0),
            recent_fills: Mutex::new(HashMap::new()),
        }
    }

    fn ttl(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Content => self.content_ttl,
            // Listings never reach L2; the metadata TTL is a safe stand-in.
            Kind::Metadata | Kind::Listing => self.metadata_ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Suspects> {
        // Single inserts/removes: consistent after a panic.
        self.suspects.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Is a read of this key fenced off?
    fn is_suspect(&self, kind: Kind, key: &str, now: u64) -> bool {
        let mut s = self.lock();
        if now < s.all_until {
            return true;
        }
        if s.keys.is_empty() {
            return false;
        }
        let k = (kind, Box::<str>::from(key));
        match s.keys.get(&k) {
            Some(&until) if now < until => true,
            Some(_) => {
                s.keys.remove(&k);
                false
            }
            None => false,
        }
    }

    fn suspect(&self, kind: Kind, key: &str) {
        let now = self.clock.now_unix_ms();
        let until = now.saturating_add(ms(self.ttl(kind)));
        let mut s = self.lock();
        s.keys.insert((kind, key.into()), until);
        if s.keys.len() > MAX_SUSPECTS {
            s.keys.retain(|_, u| *u > now);
            if s.keys.len() > MAX_SUSPECTS {
                let latest = s.keys.values().copied().max().unwrap_or(until);
                s.all_until = s.all_until.max(latest);
                s.keys.clear();
            }
        }
    }

    fn unsuspect(&self, kind: Kind, key: &str) {
        let mut s = self.lock();
        if !s.keys.is_empty() {
            s.keys.remove(&(kind, Box::<str>::from(key)));
        }
    }

    fn error(&self, op: &'static str, kind: Kind, name: &str, e: &dyn std::fmt::Display) {
        bump(&self.counters.l2_errors);
        // The entry name (a hash) identifies the entry without logging the
        // storage key, which can contain user ids and file names.
        tracing::warn!(op, ?kind, entry = name, error = %e, "L2 cache failure, degrading to a miss");
    }

    /// Reads and verifies an entry; any problem is a miss.
    pub(crate) async fn get(&self, kind: Kind, key: &str) -> Option<Bytes> {
        let found = self.get_inner(kind, key).await;
        bump(if found.is_some() {
            &self.counters.l2_hits
        } else {
            &self.counters.l2_misses
        });
        found
    }

    async fn get_inner(&self, kind: Kind, key: &str) -> Option<Bytes> {
        let now = self.clock.now_unix_ms();
        let name = entry_name(kind, key);
        if self.is_suspect(kind, key, now) {
            // Retry the delete that failed; success lifts the fence.
            if self.store.delete(&name).await.is_ok() {
                self.unsuspect(kind, key);
            }
            return None;
        }
        let raw = match self.store.get(&name).await {
            Ok(Some(raw)) => raw,
            Ok(None) => return None,
            Err(e) => {
                self.error("get", kind, &name, &e);
                return None;
            }
        };
        let fence = self.fenced_until.load(Ordering::SeqCst);
        match entry::decode(kind, key, &raw, now, fence) {
            Ok(Some(value)) => Some(value),
            Ok(None) => {
                // Expired or fenced: reclaim the space now, not at eviction.
                let _ = self.store.delete(&name).await;
                None
            }
            Err(e) => {
                self.error("verify", kind, &name, &e);
                if let Err(e) = self.store.delete(&name).await {
                    self.error("delete-corrupt", kind, &name, &e);
                }
                None
            }
        }
    }

    /// Writes an entry. The caller checked the ticket and the size bound.
    pub(crate) async fn put(&self, kind: Kind, key: &str, value: &[u8]) {
        let ttl = self.ttl(kind);
        if ttl.is_zero() {
            return;
        }
        let now = self.clock.now_unix_ms();
        if now < self.lock().all_until {
            return;
        }
        let name = entry_name(kind, key);
        // Strictly after any fence, even within the fence's millisecond:
        // fills never overlap a fence (it is set under every stripe lock).
        let fence = self.fenced_until.load(Ordering::SeqCst);
        let written = now.max(fence.saturating_add(1));
        let raw = entry::encode(kind, key, written, now.saturating_add(ms(ttl)), value);
        match self.store.put(&name, raw).await {
            Ok(()) => {
                // The fresh entry replaced whatever a failed delete left.
                self.unsuspect(kind, key);
                if self.store.is_shared() {
                    self.record_fill(key, now);
                }
            }
            Err(e) => self.error("put", kind, &name, &e),
        }
    }

    /// Deletes an entry; on failure the key becomes suspect.
    pub(crate) async fn delete(&self, kind: Kind, key: &str) {
        let name = entry_name(kind, key);
        match self.store.delete(&name).await {
            Ok(()) => self.unsuspect(kind, key),
            Err(e) => {
                self.error("delete", kind, &name, &e);
                self.suspect(kind, key);
            }
        }
    }

    /// Deletes every entry; on failure all of L2 is fenced for one TTL.
    pub(crate) async fn clear(&self) {
        self.fills().clear();
        match self.store.clear().await {
            Ok(()) => {
                // Nothing stale can be left: lift every fence.
                let mut s = self.lock();
                s.keys.clear();
                s.all_until = 0;
            }
            Err(e) => {
                bump(&self.counters.l2_errors);
                tracing::warn!(error = %e, "L2 cache clear failed, bypassing L2 until its entries expire");
                let ttl = self.content_ttl.max(self.metadata_ttl);
                let until = self.clock.now_unix_ms().saturating_add(ms(ttl));
                let mut s = self.lock();
                s.all_until = s.all_until.max(until);
                s.keys.clear();
            }
        }
    }

    fn fills(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, u64>> {
        // Single inserts/removes: consistent after a panic.
        self.recent_fills.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record_fill(&self, key: &str, now: u64) {
        let mut fills = self.fills();
        fills.insert(key.into(), now);
        if fills.len() > MAX_RECENT_FILLS {
            // Older than the longest TTL: that entry has expired anyway.
            let ttl = ms(self.content_ttl.max(self.metadata_ttl));
            let cutoff = now.saturating_sub(ttl);
            fills.retain(|_, t| *t > cutoff);
            if fills.len() > MAX_RECENT_FILLS {
                // Forgetting only costs a possible repair; memory is bounded.
                fills.clear();
            }
        }
    }

    /// Forgets and returns when this instance last filled `key` into a
    /// shared store.
    pub(crate) fn take_fill(&self, key: &str) -> Option<u64> {
        let mut fills = self.fills();
        if fills.is_empty() {
            return None;
        }
        fills.remove(key)
    }

    /// Makes every entry written so far a miss, without touching the store.
    pub(crate) fn fence(&self) {
        let now = self.clock.now_unix_ms();
        self.fenced_until.fetch_max(now, Ordering::SeqCst);
    }

    pub(crate) fn is_shared(&self) -> bool {
        self.store.is_shared()
    }

    pub(crate) fn stats(&self) -> L2Stats {
        self.store.stats()
    }
}
