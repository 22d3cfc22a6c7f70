//! Invalidation bookkeeping: the global sequence that tickets are cut from,
//! the per-stripe "last invalidated at" marks that reject stale fills, the
//! clear mark, and the listing generations.
//!
//! Why stripes and a lock: a fill checks its ticket and writes L1 and L2
//! while holding its key's stripe lock, and `invalidate` bumps the stripe
//! mark and deletes from L1 and L2 under the same lock. So a fill is either
//! entirely before the invalidation (and its entries are deleted by it) or
//! entirely after (and sees the newer mark and is dropped). Gets take no
//! lock. A stripe is shared by many keys, which can only make a fill be
//! dropped needlessly (rare, harmless), never let a stale one through.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::keys;

const STRIPES: usize = 256;
/// Past this many tracked nodes the map is reset behind a new floor (every
/// cached listing misses once) so memory stays bounded.
const MAX_NODES: usize = 100_000;

#[derive(Debug)]
pub(crate) struct Epochs {
    seq: AtomicU64,
    cleared_at: AtomicU64,
    stripes: Box<[tokio::sync::Mutex<u64>]>,
    hasher: std::hash::RandomState,
    listings: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    /// Generation of nodes not in `nodes`. Only ever grows, so a generation
    /// value is never reused for a scope after it was superseded.
    floor: u64,
    nodes: HashMap<String, u64>,
}

impl Epochs {
    pub(crate) fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            cleared_at: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(0)).collect(),
            hasher: std::hash::RandomState::new(),
            listings: Mutex::new(Generations::default()),
        }
    }

    /// The sequence number a new ticket carries.
    pub(crate) fn current(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Allocates the sequence number of a new invalidation.
    pub(crate) fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Entries born (ticketed) before this were cleared.
    pub(crate) fn cleared_at(&self) -> u64 {
        self.cleared_at.load(Ordering::SeqCst)
    }

    pub(crate) fn stripe(&self, key: &str) -> &tokio::sync::Mutex<u64> {
        let h = self.hasher.hash_one(key);
        // Modulo of a u64 by a small constant always fits usize.
        &self.stripes[(h % STRIPES as u64) as usize]
    }

    /// Locks every stripe (in order, so it cannot deadlock with the
    /// single-stripe users) and marks them with `seq`.
    pub(crate) async fn lock_all(&self, seq: u64) -> Vec<tokio::sync::MutexGuard<'_, u64>> {
        let mut guards = Vec::with_capacity(STRIPES);
        for s in self.stripes.iter() {
            let mut g = s.lock().await;
            *g = (*g).max(seq);
            guards.push(g);
        }
        guards
    }

    /// Marks everything ticketed before `seq` as cleared and resets the
    /// listing generations behind a new floor.
    pub(crate) fn clear(&self, seq: u64) {
        self.cleared_at.fetch_max(seq, Ordering::SeqCst);
        let mut g = self.lock_listings();
        g.floor = g.floor.max(seq);
        g.nodes.clear();
    }

    /// Current generation of the listings of `scope`.
    pub(crate) fn listing_generation(&self, scope: &str) -> u64 {
        let node = keys::listing_node(scope);
        let g = self.lock_listings();
        g.nodes.get(node).copied().unwrap_or(0).max(g.floor)
    }

    /// Moves every node of `key` to generation `seq`, which makes every
    /// listing that could contain `key` unreachable.
    pub(crate) fn bump_listings(&self, key: &str, seq: u64) {
        let mut g = self.lock_listings();
        for node in keys::nodes(key) {
            g.nodes.insert(node.to_owned(), seq);
        }
        if g.nodes.len() > MAX_NODES {
            g.floor = seq;
            g.nodes.clear();
        }
    }

    fn lock_listings(&self) -> std::sync::MutexGuard<'_, Generations> {
        // The map stays consistent even if a holder panicked: every update is
        // a single insert or clear.
        self.listings.lock().unwrap_or_else(|e| e.into_inner())
    }
}
