//! Cache settings: [`CacheConfig`] with the seed defaults, and
//! [`CacheConfig::from_env`] for the `CACHE_*` environment variables.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::invalidation::DEFAULT_CHANNEL;

const MIB: u64 = 1024 * 1024;

/// Settings of a [`Cache`](crate::Cache).
///
/// A TTL of zero disables caching of that kind; `max_bytes == 0` disables L1.
#[derive(Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// L1 capacity in bytes (keys + values + a fixed per-entry overhead).
    /// Default 256 MiB. Env: `CACHE_MAX_BYTES`.
    pub max_bytes: u64,
    /// TTL of content entries in both tiers. Default 1 h.
    /// Env: `CACHE_CONTENT_TTL_SECS`.
    pub content_ttl: Duration,
    /// TTL of metadata entries in both tiers. Default 1 h.
    /// Env: `CACHE_METADATA_TTL_SECS`.
    pub metadata_ttl: Duration,
    /// TTL of listing entries (L1 only). Default 5 min.
    /// Env: `CACHE_LIST_TTL_SECS`.
    pub listing_ttl: Duration,
    /// Values longer than this are not cached (checked per tier on the bytes
    /// put in that tier). Default 1 MiB: larger files are streamed by the
    /// caller, and one of them would otherwise push out hundreds of small
    /// ones. Env: `CACHE_MAX_ITEM_BYTES`.
    pub max_item_bytes: u64,
    /// Redis URL of the invalidation bus (`redis://[:password@]host:port[/db]`);
    /// `None` runs without cross-instance invalidation. Never printed.
    /// Env: `CACHE_INVALIDATION_URL`.
    pub invalidation_url: Option<String>,
    /// Pub/sub channel of the bus. Default `filemanager:invalidate`.
    /// Env: `CACHE_INVALIDATION_CHANNEL`.
    pub invalidation_channel: String,
    /// Directory for the embedded disk L2, for callers that build a
    /// [`DiskL2`](crate::DiskL2) from the environment; the cache itself takes
    /// its L2 as an argument. Env: `CACHE_L2_DIR`.
    pub l2_dir: Option<PathBuf>,
    /// Size bound of that disk L2 in bytes. Default 1 GiB.
    /// Env: `CACHE_L2_MAX_BYTES`.
    pub l2_max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 256 * MIB,
            content_ttl: Duration::from_secs(3600),
            metadata_ttl: Duration::from_secs(3600),
            listing_ttl: Duration::from_secs(300),
            max_item_bytes: MIB,
            invalidation_url: None,
            invalidation_channel: DEFAULT_CHANNEL.to_owned(),
            l2_dir: None,
            l2_max_bytes: 1024 * MIB,
        }
    }
}

// Hand-written so that a password in the Redis URL never reaches a log.
impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("max_bytes", &self.max_bytes)
            .field("content_ttl", &self.content_ttl)
            .field("metadata_ttl", &self.metadata_ttl)
            .field("listing_ttl", &self.listing_ttl)
            .field("max_item_bytes", &self.max_item_bytes)
            .field(
                "invalidation_url",
                &self.invalidation_url.as_ref().map(|_| "<redacted>"),
            )
            .field("invalidation_channel", &self.invalidation_channel)
            .field("l2_dir", &self.l2_dir)
            .field("l2_max_bytes", &self.l2_max_bytes)
            .finish()
    }
}

/// A `CACHE_*` variable that could not be used. Names the variable, never
/// contains its value (which may hold a password).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {var}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl CacheConfig {
    /// Reads the `CACHE_*` variables over the defaults. Unset or empty
    /// variables keep the default.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env) with a custom lookup (for tests and
    /// for callers with their own settings source).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
        let mut c = Self::default();
        if let Some(v) = get("CACHE_MAX_BYTES") {
            c.max_bytes = parse_u64("CACHE_MAX_BYTES", &v)?;
        }
        if let Some(v) = get("CACHE_CONTENT_TTL_SECS") {
            c.content_ttl = parse_secs("CACHE_CONTENT_TTL_SECS", &v)?;
        }
        if let Some(v) = get("CACHE_METADATA_TTL_SECS") {
            c.metadata_ttl = parse_secs("CACHE_METADATA_TTL_SECS", &v)?;
        }
        if let Some(v) = get("CACHE_LIST_TTL_SECS") {
            c.listing_ttl = parse_secs("CACHE_LIST_TTL_SECS", &v)?;
        }
        if let Some(v) = get("CACHE_MAX_ITEM_BYTES") {
            c.max_item_bytes = parse_u64("CACHE_MAX_ITEM_BYTES", &v)?;
        }
        if let Some(v) = get("CACHE_INVALIDATION_URL") {
            let v = v.trim().to_owned();
            // Parse now so a typo fails at startup, not at first reconnect.
            if redis::Client::open(v.as_str()).is_err() {
                return Err(ConfigError {
                    var: "CACHE_INVALIDATION_URL",
                    reason: "not a usable redis:// URL",
                });
            }
            c.invalidation_url = Some(v);
        }
        if let Some(v) = get("CACHE_INVALIDATION_CHANNEL") {
            c.invalidation_channel = v.trim().to_owned();
        }
        if let Some(v) = get("CACHE_L2_DIR") {
            c.l2_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get("CACHE_L2_MAX_BYTES") {
            c.l2_max_bytes = parse_u64("CACHE_L2_MAX_BYTES", &v)?;
        }
        Ok(c)
    }

    /// TTL of one kind of entry.
    pub fn ttl(&self, kind: crate::Kind) -> Duration {
        match kind {
            crate::Kind::Content => self.content_ttl,
            crate::Kind::Metadata => self.metadata_ttl,
            crate::Kind::Listing => self.listing_ttl,
        }
    }
}

fn parse_u64(var: &'static str, value: &str) -> Result<u64, ConfigError> {
    value.trim().parse::<u64>().map_err(|_| ConfigError {
        var,
        reason: "expected a non-negative integer",
    })
}

fn parse_secs(var: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let secs = value.trim().parse::<u64>().map_err(|_| ConfigError {
        var,
        reason: "expected a whole number of seconds",
    })?;
    // Far beyond any sensible TTL, and keeps Instant arithmetic from overflowing.
    if secs > 10 * 365 * 24 * 3600 {
        return Err(ConfigError {
            var,
            reason: "more than ten years",
        });
    }
    Ok(Duration::from_secs(secs))
}
