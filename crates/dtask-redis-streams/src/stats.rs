//! [`RedisStreamsStats`]: what a queue handle has done, for metrics and
//! benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one [`RedisStreamsQueue`](crate::RedisStreamsQueue) (all
/// its clones, streams and deliveries together) since it connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStreamsStats {
    /// Requests sent to Redis and answered or failed: one per command,
    /// pipeline or script call (a pipelined `XACK` + `XDEL` is one).
    pub round_trips: u64,
    /// Messages published.
    pub published: u64,
    /// Deliveries handed to callers.
    pub delivered: u64,
    /// Deliveries acked.
    pub acked: u64,
    /// Entries re-added to their stream: nacked, dropped unsettled, or
    /// fetched and handed back by a dropped stream.
    pub requeued: u64,
    /// Entries moved to a dead-letter stream.
    pub dead_lettered: u64,
    /// Entries claimed from consumers that left them idle.
    pub reclaimed: u64,
    /// Acks refused because the entry was no longer pending on this
    /// consumer (another consumer reclaimed it after its lease lapsed).
    pub acks_refused: u64,
    /// Publishes that found their queue full and waited for room.
    pub publishes_waited: u64,
}

/// The live counters behind [`RedisStreamsStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    round_trips: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    acked: AtomicU64,
    requeued: AtomicU64,
    dead_lettered: AtomicU64,
    reclaimed: AtomicU64,
    acks_refused: AtomicU64,
    publishes_waited: AtomicU64,
}

/// Which counter to add to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    RoundTrips,
    Published,
    Delivered,
    Acked,
    Requeued,
    DeadLettered,
    Reclaimed,
    AcksRefused,
    PublishesWaited,
}

impl Counters {
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let atomic = match counter {
            Counter::RoundTrips => &self.round_trips,
            Counter::Published => &self.published,
            Counter::Delivered => &self.delivered,
            Counter::Acked => &self.acked,
            Counter::Requeued => &self.requeued,
            Counter::DeadLettered => &self.dead_lettered,
            Counter::Reclaimed => &self.reclaimed,
            Counter::AcksRefused => &self.acks_refused,
            Counter::PublishesWaited => &self.publishes_waited,
        };
        atomic.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RedisStreamsStats {
        let get = |atomic: &AtomicU64| atomic.load(Ordering::Relaxed);
        RedisStreamsStats {
            round_trips: get(&self.round_trips),
            published: get(&self.published),
            delivered: get(&self.delivered),
            acked: get(&self.acked),
            requeued: get(&self.requeued),
            dead_lettered: get(&self.dead_lettered),
            reclaimed: get(&self.reclaimed),
            acks_refused: get(&self.acks_refused),
            publishes_waited: get(&self.publishes_waited),
        }
    }
}
