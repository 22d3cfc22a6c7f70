#![forbid(unsafe_code)]
//! Hybrid cache for the FileManager library.
//!
//! Values are opaque [`Bytes`]: this crate knows nothing about HTTP, storage
//! backends or encryption. The caller decides what goes in which tier; the
//! FileManager puts the *plaintext* of small files in L1 (memory) and the
//! *stored/encoded* bytes in L2 (disk directory or object-store bucket), so
//! that L2 never holds the plaintext of an encrypted file.
//!
//! Three kinds of entries ([`Kind`]), each with its own TTL:
//! - content, keyed by the full storage key (`{domain}/app/{file}` or
//!   `{domain}/user/{uid}/{file}`), L1 and L2 hold different forms;
//! - metadata, keyed by the storage key, same bytes in L1 and L2;
//! - listings, keyed by a scope prefix plus an opaque parameter string,
//!   L1 only (their invalidation uses per-instance generations).
//!
//! Correctness rests on three mechanisms, all in [`Cache`]:
//! - [`Ticket`]s taken *before* reading storage: a fill whose key was
//!   invalidated after its ticket was issued is dropped (classic fill race);
//! - listing generations baked into listing keys, bumped by every
//!   invalidation of a key the listing could contain;
//! - an optional Redis pub/sub bus ([`invalidation`]) that replays
//!   invalidations on the other instances, resyncs (clears) after any gap
//!   in its subscription, and repairs fills of a shared L2 that raced
//!   another instance's write.
//!
//! Modules: [`config`] (settings and environment), [`stats`] (counters),
//! [`l2`] (second tier: trait, entry format, disk and object-store
//! implementations), [`invalidation`] (cross-instance bus). The memory tier,
//! single-flight and epoch bookkeeping are private modules.

mod cache;
mod clock;
pub mod config;
mod epochs;
mod flight;
pub mod invalidation;
mod keys;
mod l1;
pub mod l2;
pub mod stats;

use bytes::Bytes;

pub use cache::{Cache, CacheError, ListingTicket, Ticket};
pub use config::{CacheConfig, ConfigError};
pub use invalidation::BusStatus;
pub use keys::{Kind, scope_of};
pub use l2::{DiskL2, L2Error, L2Stats, L2Store, ObjectStoreL2};
pub use stats::Stats;

/// Which cache tier answered a lookup (for an `X-Cache` header and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// The in-memory tier.
    L1,
    /// The disk or object-store tier.
    L2,
}

/// A cache hit: the value and the tier it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The cached bytes.
    pub value: Bytes,
    /// The tier that answered.
    pub tier: Tier,
}

/// Result of a `get_or_load_*` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The value (for content: the L1 form, i.e. plaintext).
    pub value: Bytes,
    /// `Some(tier)` when a cache tier answered, `None` when the loader read
    /// storage (`X-Cache: miss`). Callers that waited on another caller's
    /// load get that load's answer.
    pub tier: Option<Tier>,
}

/// What a content loader hands back to [`Cache::get_or_load_content`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fill {
    /// The value decoded from the L2 bytes the loader was given. Nothing is
    /// written back to L2.
    FromL2(Bytes),
    /// The value read from storage. `value` (plaintext) goes to L1 and is
    /// returned; `stored` (the stored/encoded form), when `Some`, goes to L2.
    FromStorage {
        /// L1 form, returned to the caller.
        value: Bytes,
        /// L2 form; `None` leaves L2 untouched.
        stored: Option<Bytes>,
    },
}
