//! Single-flight: concurrent misses of one key share one load.
//!
//! moka's `get_with` also coalesces, but it inserts the loaded value itself,
//! which would bypass the ticket check that rejects stale fills; hence this
//! small map of in-flight loads. Results are type-erased (`Arc<dyn Any>`) so
//! one map serves every loader error type; a waiter whose error type does
//! not match simply loads again.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use crate::Loaded;
use crate::l1::L1Key;

pub(crate) type ErasedError = Arc<dyn Any + Send + Sync>;
pub(crate) type Outcome = Result<Loaded, ErasedError>;
type Slot = watch::Receiver<Option<Outcome>>;

#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<L1Key, (u64, Slot)>>,
    next_id: AtomicU64,
}

/// What a caller that missed becomes.
pub(crate) enum Role<'a> {
    /// Runs the load and publishes its outcome.
    Leader(LeaderGuard<'a>),
    /// Waits for the leader's outcome.
    Follower(Slot),
}

/// Held by the leader. Dropping it without [`finish`](Self::finish) (the
/// leader's future was cancelled) wakes the followers with no outcome, and
/// they retry.
pub(crate) struct LeaderGuard<'a> {
    flights: &'a Flights,
    key: L1Key,
    id: u64,
    tx: watch::Sender<Option<Outcome>>,
}

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<L1Key, (u64, Slot)>> {
        // Map operations are single inserts/removes: consistent after a panic.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn join(&self, key: &L1Key) -> Role<'_> {
        let mut map = self.lock();
        if let Some((_, rx)) = map.get(key) {
            return Role::Follower(rx.clone());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        map.insert(key.clone(), (id, rx));
        Role::Leader(LeaderGuard {
            flights: self,
            key: key.clone(),
            id,
            tx,
        })
    }

    /// Detaches the in-flight load of `key`, if any, so that callers arriving
    /// after an invalidation start a fresh load instead of joining one that
    /// may have read the old value.
    pub(crate) fn forget(&self, key: &L1Key) {
        self.lock().remove(key);
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

impl LeaderGuard<'_> {
    pub(crate) fn finish(self, outcome: Outcome) {
        self.tx.send_replace(Some(outcome));
        // Drop removes the map entry.
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.lock();
        // Only our own flight: an invalidation may have replaced it.
        if map.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            map.remove(&self.key);
        }
    }
}

/// Waits for a leader. `None`: the leader went away without an outcome.
pub(crate) async fn wait(mut rx: Slot) -> Option<Outcome> {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone(),
        Err(_) => None,
    }
}
