//! Cache statistics: lock-free counters updated on the hot path, and the
//! plain [`Stats`] snapshot handed to metrics endpoints.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters shared by the tiers and the bus. Relaxed atomics: each
/// counter is independent and only read for reporting.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) l1_hits: AtomicU64,
    pub(crate) l1_misses: AtomicU64,
    pub(crate) l1_evictions: AtomicU64,
    pub(crate) l1_expirations: AtomicU64,
    pub(crate) l2_hits: AtomicU64,
    pub(crate) l2_misses: AtomicU64,
    pub(crate) l2_errors: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) stale_fills_dropped: AtomicU64,
    pub(crate) oversize_skipped: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) remote_invalidations_applied: AtomicU64,
    pub(crate) publish_errors: AtomicU64,
    pub(crate) subscribe_errors: AtomicU64,
    pub(crate) bus_resyncs: AtomicU64,
    pub(crate) repairs_published: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A point-in-time snapshot of the cache counters.
///
/// Counters are monotonic since the cache was created; `*_bytes` and
/// `*_entries` are gauges. L1 gauges are moka's view, which lags by the
/// housekeeping moka has not run yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// L1 lookups that hit.
    pub l1_hits: u64,
    /// L1 lookups that missed (absent, expired or cleared).
    pub l1_misses: u64,
    /// L1 entries evicted to stay within `max_bytes`.
    pub l1_evictions: u64,
    /// L1 entries dropped because their TTL passed.
    pub l1_expirations: u64,
    /// Entries in L1.
    pub l1_entries: u64,
    /// Weighted bytes in L1 (keys + values + per-entry overhead).
    pub l1_bytes: u64,
    /// L2 lookups that hit.
    pub l2_hits: u64,
    /// L2 lookups that missed (absent, expired, corrupt, failed or bypassed).
    pub l2_misses: u64,
    /// L2 failures: I/O or store errors and corrupt entries. Each one
    /// degraded to a miss or a skipped write.
    pub l2_errors: u64,
    /// Bytes in L2, when the store tracks them (disk: yes, bucket: no).
    pub l2_bytes: Option<u64>,
    /// Entries in L2, when the store tracks them.
    pub l2_entries: Option<u64>,
    /// L2 entries evicted to stay within the store's bound.
    pub l2_evictions: u64,
    /// Loader calls made by `get_or_load_*` (one per coalesced miss).
    pub loads: u64,
    /// Callers that waited for another caller's load instead of loading.
    pub coalesced: u64,
    /// Fills dropped because their key was invalidated after the ticket.
    pub stale_fills_dropped: u64,
    /// Values not cached because they exceed `max_item_bytes`.
    pub oversize_skipped: u64,
    /// Local calls to `invalidate`.
    pub invalidations: u64,
    /// Invalidations received from other instances and applied.
    pub remote_invalidations_applied: u64,
    /// Failed or dropped publications on the bus.
    pub publish_errors: u64,
    /// Failed (re)subscriptions and lost subscriber connections.
    pub subscribe_errors: u64,
    /// Local clears done after (re)subscribing, because invalidations sent
    /// while this instance was not listening are lost.
    pub bus_resyncs: u64,
    /// Remote invalidations re-published because this instance's fill of a
    /// shared L2 may have landed after the sender's delete.
    pub repairs_published: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            l1_hits: get(&self.l1_hits),
            l1_misses: get(&self.l1_misses),
            l1_evictions: get(&self.l1_evictions),
            l1_expirations: get(&self.l1_expirations),
            l2_hits: get(&self.l2_hits),
            l2_misses: get(&self.l2_misses),
            l2_errors: get(&self.l2_errors),
            loads: get(&self.loads),
            coalesced: get(&self.coalesced),
            stale_fills_dropped: get(&self.stale_fills_dropped),
            oversize_skipped: get(&self.oversize_skipped),
            invalidations: get(&self.invalidations),
            remote_invalidations_applied: get(&self.remote_invalidations_applied),
            publish_errors: get(&self.publish_errors),
            subscribe_errors: get(&self.subscribe_errors),
            bus_resyncs: get(&self.bus_resyncs),
            repairs_published: get(&self.repairs_published),
            ..Stats::default()
        }
    }
}

impl Stats {
    /// Renders the snapshot in the Prometheus text exposition format, with
    /// metric names starting with `prefix` (e.g. `filemanager_cache`).
    pub fn to_prometheus(&self, prefix: &str) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {prefix}_{name} {help}");
            let _ = writeln!(out, "# TYPE {prefix}_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{prefix}_{name}{labels} {value}");
            }
        };
        metric(
            "hits_total",
            "counter",
            "Cache hits per tier.",
            &[
                (r#"{tier="l1"}"#, self.l1_hits),
                (r#"{tier="l2"}"#, self.l2_hits),
            ],
        );
        metric(
            "misses_total",
            "counter",
            "Cache misses per tier.",
            &[
                (r#"{tier="l1"}"#, self.l1_misses),
                (r#"{tier="l2"}"#, self.l2_misses),
            ],
        );
        metric(
            "evictions_total",
            "counter",
            "Entries evicted for space per tier.",
            &[
                (r#"{tier="l1"}"#, self.l1_evictions),
                (r#"{tier="l2"}"#, self.l2_evictions),
            ],
        );
        metric(
            "expirations_total",
            "counter",
            "L1 entries dropped at TTL.",
            &[("", self.l1_expirations)],
        );
        let mut bytes = vec![(r#"{tier="l1"}"#, self.l1_bytes)];
        let mut entries = vec![(r#"{tier="l1"}"#, self.l1_entries)];
        if let Some(b) = self.l2_bytes {
            bytes.push((r#"{tier="l2"}"#, b));
        }
        if let Some(e) = self.l2_entries {
            entries.push((r#"{tier="l2"}"#, e));
        }
        metric("bytes", "gauge", "Bytes held per tier.", &bytes);
        metric("entries", "gauge", "Entries held per tier.", &entries);
        for (name, help, value) in [
            (
                "l2_errors_total",
                "L2 failures degraded to misses.",
                self.l2_errors,
            ),
            ("loads_total", "Loader calls on misses.", self.loads),
            (
                "coalesced_total",
                "Misses served by another caller's load.",
                self.coalesced,
            ),
            (
                "stale_fills_dropped_total",
                "Fills dropped after an invalidation.",
                self.stale_fills_dropped,
            ),
            (
                "oversize_skipped_total",
                "Values too large to cache.",
                self.oversize_skipped,
            ),
            (
                "invalidations_total",
                "Local invalidations.",
                self.invalidations,
            ),
            (
                "remote_invalidations_total",
                "Invalidations applied from other instances.",
                self.remote_invalidations_applied,
            ),
            (
                "publish_errors_total",
                "Failed or dropped bus publications.",
                self.publish_errors,
            ),
            (
                "subscribe_errors_total",
                "Failed or lost bus subscriptions.",
                self.subscribe_errors,
            ),
            (
                "bus_resyncs_total",
                "Local clears after (re)subscribing.",
                self.bus_resyncs,
            ),
            (
                "repairs_published_total",
                "Invalidations re-published after a racing shared-L2 fill.",
                self.repairs_published,
            ),
        ] {
            metric(name, "counter", help, &[("", value)]);
        }
        out
    }
}
