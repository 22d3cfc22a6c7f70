//! [`Cache`]: the public face of the hybrid cache. It orchestrates L1, the
//! optional L2, tickets, single-flight loads, invalidation and the bus.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::CacheConfig;
use crate::epochs::Epochs;
use crate::flight::{self, ErasedError, Flights, Role};
use crate::invalidation::{Bus, BusStatus, Op, Target};
use crate::keys::{Kind, listing_key};
use crate::l1::{L1, L1Key};
use crate::l2::L2Store;
use crate::l2::tier::L2Tier;
use crate::stats::{Counters, Stats, bump};
use crate::{Fill, Hit, Loaded, Tier};

/// Why a [`Cache`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The Redis URL does not parse (its value is never included).
    #[error("invalid CACHE_INVALIDATION_URL")]
    InvalidationUrl,
    /// The invalidation bus was configured outside a Tokio runtime.
    #[error("the cache invalidation bus must be started inside a Tokio runtime")]
    NoRuntime,
}

/// Permission to fill the cache for one key, taken *before* reading
/// storage. A fill with a ticket issued before the key's last invalidation
/// is dropped, so a slow reader cannot put back a value a writer just
/// replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    key: Box<str>,
    seq: u64,
}

impl Ticket {
    /// The storage key this ticket is for.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Like [`Ticket`], for one listing (scope + parameters). It pins the
/// scope's generation: a listing read before an invalidation of the scope
/// is stored under a key no lookup uses any more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListingTicket {
    scope: Box<str>,
    l1_key: Box<str>,
    generation: u64,
    seq: u64,
}

/// The hybrid cache. Cheap to clone (one shared instance).
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    config: CacheConfig,
    l1: L1,
    l2: Option<L2Tier>,
    epochs: Epochs,
    flights: Flights,
    counters: Arc<Counters>,
    instance_id: String,
    clock: Clock,
    bus: OnceLock<Bus>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("instance_id", &self.inner.instance_id)
            .field("config", &self.inner.config)
            .field("l2", &self.inner.l2.is_some())
            .field("bus", &self.inner.bus.get().is_some())
            .finish()
    }
}

fn random_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // Only needs to differ between instances: pid and time will do.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        b[..4].copy_from_slice(&std::process::id().to_be_bytes());
        b[4..].copy_from_slice(&nanos.to_be_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Cache {
    /// Builds a cache. `l2` is the second tier (e.g. [`DiskL2`](crate::DiskL2)
    /// or [`ObjectStoreL2`](crate::ObjectStoreL2)), `None` for L1 only.
    ///
    /// With `config.invalidation_url` set, starts the Redis bus tasks on the
    /// current Tokio runtime (they stop when the last clone is dropped); an
    /// unreachable Redis is not an error, the bus keeps retrying.
    pub fn new(config: CacheConfig, l2: Option<Arc<dyn L2Store>>) -> Result<Self, CacheError> {
        let client = match &config.invalidation_url {
            Some(url) => {
                Some(redis::Client::open(url.as_str()).map_err(|_| CacheError::InvalidationUrl)?)
            }
            None => None,
        };
        if client.is_some() && tokio::runtime::Handle::try_current().is_err() {
            return Err(CacheError::NoRuntime);
        }
        let counters = Arc::new(Counters::default());
        let clock = Clock::new();
        let l2 = l2.map(|store| {
            L2Tier::new(
                store,
                Arc::clone(&counters),
                clock,
                config.content_ttl,
                config.metadata_ttl,
            )
        });
        let inner = Arc::new(Inner {
            l1: L1::new(&config, Arc::clone(&counters)),
            l2,
            epochs: Epochs::new(),
            flights: Flights::default(),
            counters: Arc::clone(&counters),
            instance_id: random_id(),
            clock,
            bus: OnceLock::new(),
            config,
        });
        if let Some(client) = client {
            // Started after the Arc exists so the subscriber can always
            // upgrade its weak handle while the cache is alive.
            let target: Weak<dyn Target> = Arc::downgrade(&inner) as Weak<dyn Target>;
            let bus = Bus::start(
                client,
                inner.config.invalidation_channel.clone(),
                inner.instance_id.clone(),
                counters,
                target,
            );
            let _ = inner.bus.set(bus);
        }
        Ok(Self { inner })
    }

    /// The settings this cache was built with.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// Random id of this instance, carried by its bus messages.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// Takes a fill ticket for `key`. Take it before reading storage.
    pub fn ticket(&self, key: &str) -> Ticket {
        Ticket {
            key: key.into(),
            seq: self.inner.epochs.current(),
        }
    }

    /// Whether `ticket`'s key may have been invalidated since the ticket was taken, on this
    /// instance or by a peer through the bus. Keys share their marks in stripes, so `true` may
    /// also mean that a neighbouring key changed; `false` is exact.
    pub async fn invalidated_since(&self, ticket: &Ticket) -> bool {
        let e = &self.inner.epochs;
        let mark = *e.stripe(&ticket.key).lock().await;
        mark > ticket.seq || e.cleared_at() > ticket.seq
    }

    // ----- content -----

    /// L1 lookup of content (the plaintext form).
    pub async fn get_content(&self, key: &str) -> Option<Bytes> {
        let i = &self.inner;
        i.l1.get(&L1Key::new(Kind::Content, key), i.epochs.cleared_at())
            .await
    }

    /// L2 lookup of content (the stored/encoded form); `None` without L2.
    pub async fn get_content_stored(&self, key: &str) -> Option<Bytes> {
        self.inner.l2.as_ref()?.get(Kind::Content, key).await
    }

    /// Puts plaintext content in L1. `false`: dropped (stale ticket, larger
    /// than `max_item_bytes`, or TTL zero).
    pub async fn put_content(&self, ticket: &Ticket, plaintext: Bytes) -> bool {
        self.inner
            .fill(ticket, Kind::Content, plaintext, Tiers::L1)
            .await
    }

    /// Puts the stored form of content in L2. `false`: dropped as for
    /// [`put_content`](Self::put_content). L2 write failures are logged and
    /// counted, not reported.
    pub async fn put_content_stored(&self, ticket: &Ticket, stored: Bytes) -> bool {
        self.inner
            .fill(ticket, Kind::Content, stored, Tiers::L2)
            .await
    }

    /// Content with single-flight loading. On an L1 miss, one caller per key
    /// runs `loader` while concurrent callers wait for its outcome. The
    /// loader gets the L2 bytes when L2 had them (`Some(stored)`: decode and
    /// return [`Fill::FromL2`], or re-read storage if they are unusable) or
    /// `None` (read storage, return [`Fill::FromStorage`]). The result is
    /// filled under a ticket taken before L2/storage were read.
    ///
    /// Errors are shared: every waiter gets the same `Arc<E>`.
    pub async fn get_or_load_content<F, Fut, E>(
        &self,
        key: &str,
        loader: F,
    ) -> Result<Loaded, Arc<E>>
    where
        F: FnOnce(Option<Bytes>) -> Fut,
        Fut: Future<Output = Result<Fill, E>>,
        E: Send + Sync + 'static,
    {
        let i = &self.inner;
        self.coalesce(L1Key::new(Kind::Content, key), || async move {
            let ticket = self.ticket(key);
            let stored = match &i.l2 {
                Some(l2) => l2.get(Kind::Content, key).await,
                None => None,
            };
            let had_l2 = stored.is_some();
            bump(&i.counters.loads);
            match loader(stored).await.map_err(Arc::new)? {
                Fill::FromL2(value) => {
                    i.fill(&ticket, Kind::Content, value.clone(), Tiers::L1)
                        .await;
                    let tier = had_l2.then_some(Tier::L2);
                    Ok(Loaded { value, tier })
                }
                Fill::FromStorage { value, stored } => {
                    i.fill(&ticket, Kind::Content, value.clone(), Tiers::L1)
                        .await;
                    if let Some(stored) = stored {
                        i.fill(&ticket, Kind::Content, stored, Tiers::L2).await;
                    }
                    Ok(Loaded { value, tier: None })
                }
            }
        })
        .await
    }

    // ----- metadata -----

    /// Metadata lookup, L1 then L2 (an L2 hit is copied into L1).
    pub async fn get_metadata(&self, key: &str) -> Option<Hit> {
        let i = &self.inner;
        let k = L1Key::new(Kind::Metadata, key);
        if let Some(value) = i.l1.get(&k, i.epochs.cleared_at()).await {
            return Some(Hit {
                value,
                tier: Tier::L1,
            });
        }
        let l2 = i.l2.as_ref()?;
        let ticket = self.ticket(key);
        let value = l2.get(Kind::Metadata, key).await?;
        i.fill(&ticket, Kind::Metadata, value.clone(), Tiers::L1)
            .await;
        Some(Hit {
            value,
            tier: Tier::L2,
        })
    }

    /// Puts metadata in L1 and L2. `false`: dropped (see
    /// [`put_content`](Self::put_content)).
    pub async fn put_metadata(&self, ticket: &Ticket, value: Bytes) -> bool {
        self.inner
            .fill(ticket, Kind::Metadata, value, Tiers::Both)
            .await
    }

    /// Metadata with single-flight loading: L1, then L2, then `loader`
    /// (storage), filled into both tiers under a ticket.
    pub async fn get_or_load_metadata<F, Fut, E>(
        &self,
        key: &str,
        loader: F,
    ) -> Result<Loaded, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: Send + Sync + 'static,
    {
        let i = &self.inner;
        self.coalesce(L1Key::new(Kind::Metadata, key), || async move {
            let ticket = self.ticket(key);
            if let Some(l2) = &i.l2
                && let Some(value) = l2.get(Kind::Metadata, key).await
            {
                i.fill(&ticket, Kind::Metadata, value.clone(), Tiers::L1)
                    .await;
                return Ok(Loaded {
                    value,
                    tier: Some(Tier::L2),
                });
            }
            bump(&i.counters.loads);
            let value = loader().await.map_err(Arc::new)?;
            i.fill(&ticket, Kind::Metadata, value.clone(), Tiers::Both)
                .await;
            Ok(Loaded { value, tier: None })
        })
        .await
    }

    // ----- listings -----

    /// Takes a fill ticket for a listing of `scope` (a key prefix such as
    /// `blog/app/` or `blog/user/42/`) with caller-chosen `params`.
    pub fn listing_ticket(&self, scope: &str, params: &str) -> ListingTicket {
        let e = &self.inner.epochs;
        let seq = e.current();
        let generation = e.listing_generation(scope);
        ListingTicket {
            scope: scope.into(),
            l1_key: listing_key(generation, scope, params).into(),
            generation,
            seq,
        }
    }

    /// L1 lookup of a listing (listings are never in L2).
    pub async fn get_listing(&self, scope: &str, params: &str) -> Option<Bytes> {
        let e = &self.inner.epochs;
        let key = listing_key(e.listing_generation(scope), scope, params);
        self.inner
            .l1
            .get(&L1Key::new(Kind::Listing, &key), e.cleared_at())
            .await
    }

    /// Puts a listing in L1. `false`: dropped (scope invalidated since the
    /// ticket, too large, TTL zero).
    pub async fn put_listing(&self, ticket: &ListingTicket, value: Bytes) -> bool {
        let i = &self.inner;
        let ttl = i.config.listing_ttl;
        if ttl.is_zero() {
            return false;
        }
        if value.len() as u64 > i.config.max_item_bytes {
            bump(&i.counters.oversize_skipped);
            return false;
        }
        // Not needed for correctness (the generation is in the key), but a
        // dead entry would only waste memory.
        if i.epochs.listing_generation(&ticket.scope) != ticket.generation
            || ticket.seq < i.epochs.cleared_at()
        {
            bump(&i.counters.stale_fills_dropped);
            return false;
        }
        i.l1.insert(
            L1Key::new(Kind::Listing, &ticket.l1_key),
            value,
            ttl,
            ticket.seq,
        )
        .await;
        true
    }

    /// Listing with single-flight loading (L1 only).
    pub async fn get_or_load_listing<F, Fut, E>(
        &self,
        scope: &str,
        params: &str,
        loader: F,
    ) -> Result<Loaded, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: Send + Sync + 'static,
    {
        let ticket = self.listing_ticket(scope, params);
        let k = L1Key::new(Kind::Listing, &ticket.l1_key);
        self.coalesce(k, || async move {
            bump(&self.inner.counters.loads);
            let value = loader().await.map_err(Arc::new)?;
            self.put_listing(&ticket, value.clone()).await;
            Ok(Loaded { value, tier: None })
        })
        .await
    }

    // ----- invalidation -----

    /// Invalidates `key` after a write or delete in storage. When this
    /// returns, no lookup on this instance returns the old content or
    /// metadata of `key`, no listing whose scope covers `key` is served
    /// from before, and fills with older tickets are dropped. The message
    /// to other instances is queued (never blocks on Redis).
    pub async fn invalidate(&self, key: &str) {
        bump(&self.inner.counters.invalidations);
        self.inner.invalidate_local(key).await;
        if let Some(bus) = self.inner.bus.get() {
            bus.publish(Op::Invalidate {
                key: key.to_owned(),
                at: self.inner.clock.now_unix_ms(),
                repair: false,
            });
        }
    }

    /// Empties both tiers on this instance (and, through the bus, L1 and
    /// local L2s of the others).
    pub async fn clear(&self) {
        self.inner.clear_local(ClearKind::Explicit).await;
        if let Some(bus) = self.inner.bus.get() {
            bus.publish(Op::Clear);
        }
    }

    // ----- observability -----

    /// Snapshot of the counters and gauges.
    pub fn stats(&self) -> Stats {
        let i = &self.inner;
        let mut s = i.counters.snapshot();
        s.l1_entries = i.l1.entry_count();
        s.l1_bytes = i.l1.weighted_size();
        if let Some(l2) = &i.l2 {
            let l = l2.stats();
            s.l2_bytes = l.bytes;
            s.l2_entries = l.entries;
            s.l2_evictions = l.evictions;
        }
        s
    }

    /// The bus subscriber's state, `None` without a bus. Wait on it (e.g.
    /// `rx.wait_for(|s| s.remote_applied >= n)`) instead of sleeping.
    pub fn bus_status(&self) -> Option<watch::Receiver<BusStatus>> {
        self.inner.bus.get().map(Bus::status)
    }

    /// Runs moka's pending housekeeping (evictions, gauges) now. Lookups are
    /// exact without it; it makes `stats()` gauges current.
    pub async fn run_pending_tasks(&self) {
        self.inner.l1.run_pending_tasks().await;
    }

    /// Single-flight core: L1 check, then join or lead the key's load.
    async fn coalesce<F, Fut, E>(&self, key: L1Key, lead: F) -> Result<Loaded, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Loaded, Arc<E>>>,
        E: Send + Sync + 'static,
    {
        let i = &self.inner;
        let mut lead = Some(lead);
        loop {
            if let Some(value) = i.l1.get(&key, i.epochs.cleared_at()).await {
                return Ok(Loaded {
                    value,
                    tier: Some(Tier::L1),
                });
            }
            match i.flights.join(&key) {
                Role::Follower(rx) => {
                    bump(&i.counters.coalesced);
                    match flight::wait(rx).await {
                        Some(Ok(loaded)) => return Ok(loaded),
                        Some(Err(e)) => {
                            if let Ok(e) = e.downcast::<E>() {
                                return Err(e);
                            }
                        }
                        None => {}
                    }
                    // The leader was cancelled, or failed with another error
                    // type: try again (possibly as the leader).
                }
                Role::Leader(guard) => {
                    // A load that finished between our L1 check and our join
                    // has filled L1 already: do not load twice.
                    if let Some(value) = i.l1.peek(&key, i.epochs.cleared_at()).await {
                        let loaded = Loaded {
                            value,
                            tier: Some(Tier::L1),
                        };
                        guard.finish(Ok(loaded.clone()));
                        return Ok(loaded);
                    }
                    let lead = lead.take().expect("a leader loads once and returns");
                    // Boxed, so that the load's state (which reads L2 and storage, several
                    // KiB) is not part of every lookup's future: a hit would carry it
                    // unused and copy it as the request's future is set up.
                    let outcome = Box::pin(lead()).await;
                    guard.finish(outcome.clone().map_err(|e| e as ErasedError));
                    return outcome;
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ClearKind {
    Explicit,
    Remote,
}

/// Tolerated clock skew between instances when deciding whether our fill
/// may have followed another instance's invalidation.
const REPAIR_SKEW_MS: u64 = 5_000;

/// Which tiers a fill writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tiers {
    L1,
    L2,
    Both,
}

impl Inner {
    /// Fills under the key's stripe lock after checking the ticket (see
    /// `epochs` for why this makes fills and invalidations atomic).
    async fn fill(&self, ticket: &Ticket, kind: Kind, value: Bytes, tiers: Tiers) -> bool {
        let ttl = self.config.ttl(kind);
        if ttl.is_zero() || (tiers == Tiers::L2 && self.l2.is_none()) {
            return false;
        }
        if value.len() as u64 > self.config.max_item_bytes {
            bump(&self.counters.oversize_skipped);
            return false;
        }
        let mark = self.epochs.stripe(&ticket.key).lock().await;
        if *mark > ticket.seq {
            bump(&self.counters.stale_fills_dropped);
            return false;
        }
        if tiers != Tiers::L2 {
            let key = L1Key::new(kind, &ticket.key);
            self.l1.insert(key, value.clone(), ttl, ticket.seq).await;
        }
        if tiers != Tiers::L1
            && let Some(l2) = &self.l2
        {
            l2.put(kind, &ticket.key, &value).await;
        }
        drop(mark);
        true
    }

    /// Returns when this instance last filled `key` into a shared L2.
    async fn invalidate_local(&self, key: &str) -> Option<u64> {
        let mut mark = self.epochs.stripe(key).lock().await;
        let seq = self.epochs.next();
        *mark = seq;
        self.epochs.bump_listings(key, seq);
        for kind in [Kind::Content, Kind::Metadata] {
            self.l1.remove(&L1Key::new(kind, key)).await;
        }
        let mut filled = None;
        if let Some(l2) = &self.l2 {
            l2.delete(Kind::Content, key).await;
            l2.delete(Kind::Metadata, key).await;
            filled = l2.take_fill(key);
        }
        // A load that started while the deletes ran may have read an L2 entry just before it
        // was deleted. A fresh mark makes its ticket too old to fill, and forgetting the loads
        // in flight only now keeps later callers from joining it: they load again. Listings
        // too: one started after the first bump may have read the old entry (or joined an old
        // load), so once the loads are forgotten the scopes move to a new generation again,
        // and what such a listing stored is never looked up.
        let seq = self.epochs.next();
        *mark = seq;
        for kind in [Kind::Content, Kind::Metadata] {
            self.flights.forget(&L1Key::new(kind, key));
        }
        self.epochs.bump_listings(key, seq);
        drop(mark);
        filled
    }

    /// Clears this instance. `Explicit` (a `clear()` call) deletes every L2
    /// entry; `Remote` (a peer's clear, or a bus resync) leaves a shared L2
    /// alone (the peer cleared it; peers delete from it directly) and
    /// fences a local one.
    async fn clear_local(&self, how: ClearKind) {
        let seq = self.epochs.next();
        let marks = self.epochs.lock_all(seq).await;
        self.epochs.clear(seq);
        self.flights.clear();
        self.l1.clear();
        if let Some(l2) = &self.l2 {
            match how {
                ClearKind::Explicit => l2.clear().await,
                ClearKind::Remote if !l2.is_shared() => l2.fence(),
                ClearKind::Remote => {}
            }
        }
        drop(marks);
    }
}

impl Target for Inner {
    fn apply(&self, op: Op) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            match op {
                Op::Invalidate { key, at, repair } => {
                    let filled = self.invalidate_local(&key).await;
                    // Our fill of the shared L2 may have landed after the
                    // sender's delete, and peers may have copied it into
                    // their L1 before our delete above: make them drop it.
                    let raced = filled.is_some_and(|f| f.saturating_add(REPAIR_SKEW_MS) >= at);
                    if raced
                        && !repair
                        && let Some(bus) = self.bus.get()
                    {
                        bump(&self.counters.repairs_published);
                        bus.publish(Op::Invalidate {
                            key,
                            at: self.clock.now_unix_ms(),
                            repair: true,
                        });
                    }
                }
                Op::Clear => self.clear_local(ClearKind::Remote).await,
            }
        })
    }

    fn resync(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.clear_local(ClearKind::Remote))
    }
}
