//! Cross-instance invalidation bus over Redis pub/sub.
//!
//! Every local `invalidate`/`clear` is queued for PUBLISH on the channel as
//! JSON `{"origin": "<instance id>", "op": "invalidate", "key": "<key>",
//! "at": <unix ms>}` (or `{"origin": ..., "op": "clear"}`). A subscriber
//! task applies other instances' messages to the local cache and ignores
//! its own echo.
//!
//! With a shared L2 (bucket) one more step is needed: a peer whose fill of
//! the key reached the bucket *after* the sender deleted it (its storage
//! read raced the write) may have left an old entry there, which others
//! could copy into their L1 before the peer deletes it on receipt. Such a
//! peer re-publishes the invalidation once, marked `"repair": true`, after
//! deleting; repairs are applied like any invalidation but never repaired.
//!
//! Redis is never on the request path: publishing goes through a bounded
//! queue drained by a background task, which reconnects with backoff and
//! retries a failed message (so a brief outage delays it rather than losing
//! it). The subscriber reconnects with backoff too and, every time it is
//! (re)subscribed, clears the local tiers: messages sent while it was not
//! listening are gone, so anything cached meanwhile may be stale. A
//! periodic PING detects half-open connections.
//!
//! Without a bus, another instance's writes become visible here when the
//! entries expire: staleness is bounded by the TTLs.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, watch};

use crate::stats::{Counters, bump};

/// Default pub/sub channel.
pub const DEFAULT_CHANNEL: &str = "filemanager:invalidate";

/// Messages waiting for PUBLISH; beyond this they are dropped and counted
/// (receivers then rely on TTLs, or on the resync of their next reconnect).
const OUTBOX: usize = 10_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const PING_EVERY: Duration = Duration::from_secs(15);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Observable state of the bus subscriber, for health checks and tests
/// (wait on it with `watch::Receiver::wait_for` instead of sleeping).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BusStatus {
    /// Subscribed right now.
    pub connected: bool,
    /// Successful (re)subscriptions so far; each one was followed by a local
    /// resync (clear) before being counted here.
    pub subscriptions: u64,
    /// Messages from other instances applied so far (an invalidation is
    /// fully applied, L1 and L2, before this moves).
    pub remote_applied: u64,
}

/// One bus message's operation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op {
    Invalidate {
        key: String,
        /// Sender's Unix-ms time of the invalidation (0 if unknown).
        #[serde(default)]
        at: u64,
        /// A repair re-publication (see `Cache`): never triggers another.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        repair: bool,
    },
    Clear,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Message {
    origin: String,
    #[serde(flatten)]
    op: Op,
}

/// What the subscriber acts on (the cache).
pub(crate) trait Target: Send + Sync + 'static {
    /// Applies a remote operation locally, without publishing it again.
    fn apply(&self, op: Op) -> BoxFuture<'_, ()>;
    /// Drops everything that invalidations missed while unsubscribed could
    /// have made stale.
    fn resync(&self) -> BoxFuture<'_, ()>;
}

/// Handle owned by the cache; dropping it stops both background tasks.
#[derive(Debug)]
pub(crate) struct Bus {
    outbox: mpsc::Sender<Op>,
    status: watch::Receiver<BusStatus>,
    counters: Arc<Counters>,
    _shutdown: watch::Sender<()>,
}

impl Bus {
    /// Spawns the publisher and subscriber on the current Tokio runtime.
    pub(crate) fn start(
        client: redis::Client,
        channel: String,
        origin: String,
        counters: Arc<Counters>,
        target: Weak<dyn Target>,
    ) -> Self {
        let (outbox, queue) = mpsc::channel(OUTBOX);
        let (status_tx, status) = watch::channel(BusStatus::default());
        let (shutdown, shutdown_rx) = watch::channel(());
        let link = Link {
            client,
            channel,
            origin,
            counters: Arc::clone(&counters),
        };
        tokio::spawn(link.clone().publisher(queue, shutdown_rx.clone()));
        tokio::spawn(link.subscriber(status_tx, target, shutdown_rx));
        Self {
            outbox,
            status,
            counters,
            _shutdown: shutdown,
        }
    }

    /// Queues `op` for publication; never blocks, never fails the caller.
    pub(crate) fn publish(&self, op: Op) {
        if self.outbox.try_send(op).is_err() {
            bump(&self.counters.publish_errors);
            tracing::warn!("cache invalidation bus queue full; message dropped");
        }
    }

    pub(crate) fn status(&self) -> watch::Receiver<BusStatus> {
        self.status.clone()
    }
}

struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(BACKOFF_MIN)
    }
    fn reset(&mut self) {
        self.0 = BACKOFF_MIN;
    }
    fn step(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        d
    }
}

#[derive(Clone)]
struct Link {
    client: redis::Client,
    channel: String,
    origin: String,
    counters: Arc<Counters>,
}

/// Sleeps unless shut down first; `false` means stop.
async fn pause(shutdown: &mut watch::Receiver<()>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.changed() => false,
    }
}

impl Link {
    async fn publisher(self, mut queue: mpsc::Receiver<Op>, mut shutdown: watch::Receiver<()>) {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CONNECT_TIMEOUT));
        let mut conn: Option<MultiplexedConnection> = None;
        let mut pending: Option<String> = None;
        let mut backoff = Backoff::new();
        let mut healthy = true;
        loop {
            let payload = match pending.take() {
                Some(p) => p,
                None => {
                    let op = tokio::select! {
                        op = queue.recv() => op,
                        _ = shutdown.changed() => None,
                    };
                    let Some(op) = op else { return };
                    let msg = Message {
                        origin: self.origin.clone(),
                        op,
                    };
                    match serde_json::to_string(&msg) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(error = %e, "cache invalidation not serializable");
                            continue;
                        }
                    }
                }
            };
            let sent = async {
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => conn.insert(
                        self.client
                            .get_multiplexed_async_connection_with_config(&config)
                            .await?,
                    ),
                };
                redis::cmd("PUBLISH")
                    .arg(&self.channel)
                    .arg(&payload)
                    .query_async::<i64>(c)
                    .await
            }
            .await;
            match sent {
                Ok(_) => {
                    if !healthy {
                        tracing::info!("cache invalidation bus: publishing again");
                    }
                    healthy = true;
                    backoff.reset();
                }
                Err(e) => {
                    bump(&self.counters.publish_errors);
                    if healthy {
                        tracing::warn!(error = %e, "cache invalidation publish failed; retrying with backoff");
                    }
                    healthy = false;
                    conn = None;
                    pending = Some(payload);
                    if !pause(&mut shutdown, backoff.step()).await {
                        return;
                    }
                }
            }
        }
    }

    async fn subscribe(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(&self.channel).await?;
        Ok(pubsub)
    }

    async fn subscriber(
        self,
        status: watch::Sender<BusStatus>,
        target: Weak<dyn Target>,
        mut shutdown: watch::Receiver<()>,
    ) {
        let mut backoff = Backoff::new();
        let mut healthy = true;
        loop {
            let attempt = tokio::select! {
                r = tokio::time::timeout(CONNECT_TIMEOUT, self.subscribe()) => r,
                _ = shutdown.changed() => return,
            };
            let pubsub = match attempt {
                Ok(Ok(p)) => p,
                failed => {
                    bump(&self.counters.subscribe_errors);
                    if healthy {
                        match failed {
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "cache invalidation subscribe failed; retrying with backoff")
                            }
                            _ => tracing::warn!(
                                "cache invalidation subscribe timed out; retrying with backoff"
                            ),
                        }
                    }
                    healthy = false;
                    if !pause(&mut shutdown, backoff.step()).await {
                        return;
                    }
                    continue;
                }
            };
            backoff.reset();
            if !healthy {
                tracing::info!("cache invalidation bus: subscribed again");
            }
            // Messages are buffered from here on; drop what the ones we
            // could not hear may have made stale, then apply the new ones.
            let Some(t) = target.upgrade() else { return };
            t.resync().await;
            drop(t);
            bump(&self.counters.bus_resyncs);
            status.send_modify(|s| {
                s.connected = true;
                s.subscriptions += 1;
            });

            let (mut sink, mut stream) = pubsub.split();
            let mut ping =
                tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
            ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    msg = stream.next() => {
                        let Some(msg) = msg else { break };
                        let parsed: Message = match serde_json::from_slice(msg.get_payload_bytes()) {
                            Ok(m) => m,
                            Err(e) => {
                                tracing::warn!(error = %e, "ignoring malformed cache invalidation message");
                                continue;
                            }
                        };
                        if parsed.origin == self.origin {
                            continue;
                        }
                        let Some(t) = target.upgrade() else { return };
                        t.apply(parsed.op).await;
                        drop(t);
                        bump(&self.counters.remote_invalidations_applied);
                        status.send_modify(|s| s.remote_applied += 1);
                    }
                    _ = ping.tick() => {
                        let alive = tokio::time::timeout(CONNECT_TIMEOUT, sink.ping::<redis::Value>()).await;
                        if !matches!(alive, Ok(Ok(_))) {
                            break;
                        }
                    }
                }
            }
            status.send_modify(|s| s.connected = false);
            bump(&self.counters.subscribe_errors);
            tracing::warn!("cache invalidation subscription lost; reconnecting");
            healthy = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_format() {
        let m = Message {
            origin: "ab".into(),
            op: Op::Invalidate {
                key: "d/app/x".into(),
                at: 7,
                repair: false,
            },
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(
            s,
            r#"{"origin":"ab","op":"invalidate","key":"d/app/x","at":7}"#
        );
        let back: Message = serde_json::from_str(&s).unwrap();
        assert_eq!(back.op, m.op);
        let c: Message = serde_json::from_str(r#"{"origin":"x","op":"clear"}"#).unwrap();
        assert_eq!(c.op, Op::Clear);
        let r: Message =
            serde_json::from_str(r#"{"origin":"x","op":"invalidate","key":"k","repair":true}"#)
                .unwrap();
        assert_eq!(
            r.op,
            Op::Invalidate {
                key: "k".into(),
                at: 0,
                repair: true
            }
        );
    }
}
