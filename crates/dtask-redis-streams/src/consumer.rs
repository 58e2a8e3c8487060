//! The consume loop: reclaim idle entries, read new ones, hand them out as
//! [`Delivery`]s; reconnect with backoff when Redis goes away.
//!
//! A stream works in rounds. A round first reclaims, when due (every half
//! visibility timeout, or at once while the last reclaim found more), the
//! entries that other consumers left idle for longer than the visibility
//! timeout; if it claimed none, it reads new entries with `XREADGROUP ...
//! BLOCK` on the stream's own connection. Malformed entries are
//! dead-lettered on the way and never yielded. Beside the rounds, a
//! renewal task resets the idle time of the entries the stream holds
//! (fetched, yielded and not settled), so a live consumer keeps them.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use dtask_core::infra::{Delivery, QueueMessage};
use dtask_core::{Error, Result};
use dtask_redis::connection::Commands;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream};
use redis::{ErrorKind, RedisError, RedisResult, Value};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::acker::{ConsumerCtx, RedisAcker};
use crate::entry::{RawEntry, parse_entry, parse_read_reply};
use crate::error::{backend, backoff, is_no_group, is_transient};
use crate::queue::Shared;
use crate::scripts::{self, QueueKeys, Settlement, millis};
use crate::stats::Counter;

/// An entry fetched and decoded, not yet yielded.
struct Fetched {
    id: String,
    message: QueueMessage,
    deliveries: u32,
}

type Round = BoxFuture<'static, (Reader, Result<Vec<Fetched>>)>;

/// The state the rounds carry from one to the next.
struct Reader {
    ctx: Arc<ConsumerCtx>,
    conn: Option<Commands>,
    failures: u32,
    next_reclaim: Instant,
    cursor: String,
    next_prune: Instant,
}

impl Reader {
    /// One round; never fails for a transient reason (it logs and backs
    /// off instead), so the stream never ends.
    async fn round(mut self) -> (Self, Result<Vec<Fetched>>) {
        let error = match self.try_round().await {
            Ok(fetched) => {
                self.failures = 0;
                return (self, Ok(fetched));
            }
            Err(error) => error,
        };
        self.failures = self.failures.saturating_add(1);
        let (queue, delay) = (self.ctx.keys.queue.as_str(), backoff(self.failures));
        if is_no_group(&error) {
            tracing::info!(queue, "the consumer group is gone (stream deleted?); creating it again");
            self.ctx.shared.forget_group(&self.ctx.keys);
            if let Err(error) = self.ctx.shared.ensure_group(&self.ctx.keys).await {
                tracing::warn!(queue, %error, "cannot create the consumer group");
                tokio::time::sleep(delay).await;
            }
            return (self, Ok(Vec::new()));
        }
        self.conn = None;
        tracing::warn!(queue, %error, retry_in = ?delay, "reading from Redis failed; retrying");
        tokio::time::sleep(delay).await;
        if is_transient(&error) {
            (self, Ok(Vec::new()))
        } else {
            (self, Err(backend(error)))
        }
    }

    async fn try_round(&mut self) -> RedisResult<Vec<Fetched>> {
        let mut fetched = Vec::new();
        if Instant::now() >= self.next_reclaim {
            self.reclaim(&mut fetched).await?;
            if !fetched.is_empty() {
                return Ok(fetched);
            }
        }
        let config = &self.ctx.shared.config;
        let until_reclaim = self.next_reclaim.saturating_duration_since(Instant::now());
        let block = config.read_block().min(until_reclaim).max(Duration::from_millis(1));
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(self.ctx.shared.reader_connection().await?),
        };
        self.ctx.shared.count(Counter::RoundTrips, 1);
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&config.group)
            .arg(&config.consumer)
            .arg("COUNT")
            .arg(config.read_count.max(1))
            .arg("BLOCK")
            .arg(millis(block))
            .arg("STREAMS")
            .arg(&self.ctx.keys.stream)
            .arg(">")
            .query_async(conn)
            .await?;
        let entries = parse_read_reply(reply)
            .map_err(|e| RedisError::from((ErrorKind::Parse, "unexpected XREADGROUP reply", e)))?;
        for value in entries {
            match parse_entry(value) {
                Ok(entry) => {
                    let deliveries = entry.prior_deliveries().saturating_add(1);
                    self.accept(entry, deliveries, &mut fetched).await;
                }
                Err(problem) => tracing::warn!(queue = self.ctx.keys.queue, problem, "unreadable stream entry skipped"),
            }
        }
        Ok(fetched)
    }

    /// Claims the entries left idle past the visibility timeout.
    async fn reclaim(&mut self, fetched: &mut Vec<Fetched>) -> RedisResult<()> {
        let shared = &self.ctx.shared;
        let (config, keys) = (&shared.config, &self.ctx.keys);
        let reclaimed = scripts::reclaim(&mut shared.conn(), config, keys, &self.cursor).await?;
        let now = Instant::now();
        self.next_reclaim = if reclaimed.cursor == "0-0" {
            now + config.reclaim_interval()
        } else {
            now
        };
        self.cursor = reclaimed.cursor;
        shared.count(Counter::DeadLettered, reclaimed.dead_lettered);
        shared.count(
            Counter::Reclaimed,
            u64::try_from(reclaimed.entries.len()).unwrap_or(u64::MAX),
        );
        if reclaimed.dead_lettered > 0 {
            tracing::warn!(
                queue = keys.queue,
                count = reclaimed.dead_lettered,
                "messages left unsettled too often moved to the dead-letter stream"
            );
        }
        if reclaimed.deleted > 0 {
            tracing::warn!(
                queue = keys.queue,
                count = reclaimed.deleted,
                "pending messages had been deleted from the stream (by hand) before being handled"
            );
        }
        if !reclaimed.entries.is_empty() {
            tracing::info!(
                queue = keys.queue,
                count = reclaimed.entries.len(),
                "reclaimed idle messages"
            );
        }
        for (entry, deliveries) in reclaimed.entries {
            self.accept(entry, deliveries, fetched).await;
        }
        if now >= self.next_prune {
            self.next_prune = now + PRUNE_EVERY;
            let idle = (config.visibility_timeout * 20).max(PRUNE_IDLE);
            if let Err(error) = scripts::prune(&mut shared.conn(), config, keys, idle).await {
                tracing::debug!(queue = keys.queue, %error, "pruning idle consumers failed");
            }
        }
        Ok(())
    }

    /// Decodes `entry` into `fetched`, or dead-letters it when malformed.
    async fn accept(&self, entry: RawEntry, deliveries: u32, fetched: &mut Vec<Fetched>) {
        match entry.decode() {
            Ok(message) => fetched.push(Fetched {
                id: entry.id,
                message,
                deliveries,
            }),
            Err(problem) => {
                let settlement = Settlement::DeadLetter {
                    deliveries,
                    reason: format!("malformed entry: {problem}"),
                };
                if let Err(error) = self.ctx.settle(&entry.id, uuid::Uuid::nil(), &settlement).await {
                    tracing::warn!(
                        queue = self.ctx.keys.queue, entry = entry.id, %error,
                        "could not dead-letter a malformed entry; it will be reclaimed and tried again"
                    );
                }
            }
        }
    }
}

/// How often a stream deletes the group's long-idle empty consumers.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The least idle time of a consumer that pruning deletes.
const PRUNE_IDLE: Duration = Duration::from_secs(600);

/// The [`DeliveryStream`](dtask_core::infra::DeliveryStream) of one queue.
pub(crate) struct Deliveries {
    ctx: Arc<ConsumerCtx>,
    reader: Option<Reader>,
    round: Option<Round>,
    buffer: VecDeque<Fetched>,
    renewal: JoinHandle<()>,
}

impl Deliveries {
    pub(crate) fn new(shared: Arc<Shared>, keys: QueueKeys) -> Self {
        let ctx = Arc::new(ConsumerCtx::new(shared, keys));
        let now = Instant::now();
        let reader = Reader {
            ctx: Arc::clone(&ctx),
            conn: None,
            failures: 0,
            next_reclaim: now,
            cursor: "0-0".to_owned(),
            next_prune: now,
        };
        Self {
            renewal: tokio::spawn(renew(Arc::clone(&ctx))),
            ctx,
            reader: Some(reader),
            round: None,
            buffer: VecDeque::new(),
        }
    }

    fn deliver(&self, fetched: Fetched) -> Delivery {
        self.ctx.shared.count(Counter::Delivered, 1);
        let acker = RedisAcker::new(
            Arc::clone(&self.ctx),
            fetched.id,
            fetched.message.id,
            fetched.deliveries,
        );
        Delivery::new(fetched.message, fetched.deliveries, Box::new(acker))
    }
}

impl Stream for Deliveries {
    type Item = Result<Delivery>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(fetched) = this.buffer.pop_front() {
                return Poll::Ready(Some(Ok(this.deliver(fetched))));
            }
            let round = match &mut this.round {
                Some(round) => round,
                None => {
                    let Some(reader) = this.reader.take() else {
                        return Poll::Ready(Some(Err(Error::Closed {
                            what: "redis streams consumer",
                        })));
                    };
                    this.round.insert(reader.round().boxed())
                }
            };
            let (reader, result) = ready!(round.as_mut().poll(cx));
            this.round = None;
            this.reader = Some(reader);
            match result {
                Ok(fetched) => {
                    for entry in &fetched {
                        this.ctx.hold(&entry.id);
                    }
                    this.buffer.extend(fetched);
                }
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
        }
    }
}

impl Drop for Deliveries {
    /// Hands back what was fetched but not yielded, without counting a
    /// delivery, including what a read still in flight brings.
    fn drop(&mut self) {
        self.renewal.abort();
        let buffered: Vec<Fetched> = self.buffer.drain(..).collect();
        let round = self.round.take();
        if buffered.is_empty() && round.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let ctx = Arc::clone(&self.ctx);
        runtime.spawn(async move {
            hand_back(&ctx, buffered).await;
            if let Some(round) = round
                && let (_, Ok(fetched)) = round.await
            {
                hand_back(&ctx, fetched).await;
            }
        });
    }
}

/// Re-adds fetched, never-yielded entries with their delivery count
/// unchanged.
async fn hand_back(ctx: &ConsumerCtx, fetched: Vec<Fetched>) {
    let settles = fetched.iter().map(|entry| {
        ctx.release(&entry.id);
        let settlement = Settlement::Requeue {
            deliveries: entry.deliveries.saturating_sub(1),
        };
        async move {
            if let Err(error) = ctx.settle(&entry.id, entry.message.id, &settlement).await {
                tracing::warn!(
                    queue = ctx.keys.queue, entry = entry.id, %error,
                    "could not hand back a fetched message; it comes back after the visibility timeout"
                );
            }
        }
    });
    futures::future::join_all(settles).await;
}

/// Renews the entries the stream holds, every third of the visibility
/// timeout, until the stream is dropped.
async fn renew(ctx: Arc<ConsumerCtx>) {
    let config = &ctx.shared.config;
    let mut ticks = tokio::time::interval(config.renew_interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let held = ctx.held();
        if held.is_empty() {
            continue;
        }
        match scripts::renew(&mut ctx.shared.conn(), config, &ctx.keys, &held).await {
            Ok(lost) => {
                for id in &lost {
                    ctx.release(id);
                }
            }
            Err(error) => tracing::warn!(queue = ctx.keys.queue, %error, "renewing held messages failed"),
        }
    }
}
