//! Time source of the cache.
//!
//! Every expiry check (L1 and L2) goes through [`tokio::time::Instant`], so
//! tests drive TTLs with `tokio::time::pause()` / `advance()` instead of
//! sleeping. moka's own expiry (wall clock) is only used to reclaim memory.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Maps the Tokio clock onto Unix time for the L2 expiry header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    base_unix_ms: u64,
    base: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self {
            base_unix_ms: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
            base: Instant::now(),
        }
    }

    /// Unix time in milliseconds: wall clock at creation plus monotonic time
    /// since (drift from NTP steps is irrelevant at TTL granularity).
    pub(crate) fn now_unix_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.base_unix_ms.saturating_add(elapsed)
    }
}
