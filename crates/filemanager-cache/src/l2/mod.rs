//! L2: the second tier, behind the small [`L2Store`] trait.
//!
//! A store is a dumb blob store of named entries. Everything that makes an
//! entry trustworthy lives above it, shared by all stores: the entry format
//! ([`entry`]: expiry, own key, SHA-256 checksum), TTL enforcement on read,
//! deleting corrupt entries, and turning every failure into a miss plus an
//! `l2_errors` count. Two stores ship: [`DiskL2`] (a local directory, the
//! embedded default, size-bounded) and [`ObjectStoreL2`] (a bucket shared
//! by the instances; bound its size with a lifecycle rule).

use std::fmt;

use bytes::Bytes;
use futures::future::BoxFuture;

mod disk;
pub mod entry;
mod object;
pub mod sized_dir;
pub(crate) mod tier;

pub use disk::DiskL2;
pub use object::ObjectStoreL2;

/// A failure of an L2 store. The cache logs it and degrades to a miss; it
/// never reaches the caller of a lookup.
#[derive(Debug, thiserror::Error)]
#[error("L2 store error: {0}")]
pub struct L2Error(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl L2Error {
    /// Wraps any error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(e))
    }
}

/// Size accounting of a store, for [`Stats`](crate::Stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L2Stats {
    /// Bytes held, when tracked.
    pub bytes: Option<u64>,
    /// Entries held, when tracked.
    pub entries: Option<u64>,
    /// Entries evicted to respect the store's bound.
    pub evictions: u64,
}

/// A second-tier store of opaque entries. `name` is always 64 lowercase hex
/// characters (see [`entry`]); the bytes are a complete encoded entry.
///
/// Implementations report failures as `Err`; they need not validate
/// content. Methods return boxed futures so the trait is object-safe
/// (`Arc<dyn L2Store>`).
pub trait L2Store: Send + Sync + fmt::Debug + 'static {
    /// Reads an entry; `Ok(None)` when absent.
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, L2Error>>;
    /// Writes (or replaces) an entry, atomically: a reader sees the old or
    /// the new entry, never a mix.
    fn put<'a>(&'a self, name: &'a str, entry: Bytes) -> BoxFuture<'a, Result<(), L2Error>>;
    /// Deletes an entry; absent is success.
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), L2Error>>;
    /// Deletes every entry of this store.
    fn clear(&self) -> BoxFuture<'_, Result<(), L2Error>>;
    /// `true` when other instances read and write the same entries (a
    /// bucket). When the invalidation bus (re)subscribes, a local store is
    /// fenced (its current entries become misses), since it may hold
    /// entries invalidated meanwhile; a shared one is not (invalidating
    /// instances delete from it directly). Fills of a shared store are
    /// remembered so racing fills can be repaired (see `invalidation`).
    fn is_shared(&self) -> bool {
        false
    }
    /// Size accounting; default: untracked.
    fn stats(&self) -> L2Stats {
        L2Stats::default()
    }
}
