//! [`RedisAcker`]: settles one delivery, and nacks it in the background
//! when it is dropped unsettled.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use dtask_core::Result;
use dtask_core::infra::Acknowledger;
use uuid::Uuid;

use crate::ack_batch::{AckBatcher, Acked};
use crate::error::backend;
use crate::queue::Shared;
use crate::scripts::{self, QueueKeys, Settled, Settlement};
use crate::stats::Counter;

/// What one consume stream and the deliveries it yielded share.
pub(crate) struct ConsumerCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) keys: QueueKeys,
    /// Entries pending on this consumer that the stream fetched and that
    /// are not settled yet: renewed so that they are not reclaimed.
    in_flight: Mutex<HashSet<String>>,
    acks: AckBatcher,
}

impl ConsumerCtx {
    /// The context of a new stream; spawns its ack batcher.
    pub(crate) fn new(shared: Arc<Shared>, keys: QueueKeys) -> Self {
        Self {
            acks: AckBatcher::spawn(Arc::clone(&shared), keys.clone()),
            shared,
            keys,
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts renewing `id`.
    pub(crate) fn hold(&self, id: &str) {
        self.in_flight().insert(id.to_owned());
    }

    /// Stops renewing `id`.
    pub(crate) fn release(&self, id: &str) {
        self.in_flight().remove(id);
    }

    /// The entries to renew.
    pub(crate) fn held(&self) -> Vec<String> {
        self.in_flight().iter().cloned().collect()
    }

    /// Settles entry `id`, delivered `deliveries` times, as not processed:
    /// re-added for another delivery, or dead-lettered when that was the
    /// last one allowed. `why` says what happened, for the reason.
    pub(crate) async fn nack(&self, id: &str, message_id: Uuid, deliveries: u32, why: &str) -> Result<()> {
        let config = &self.shared.config;
        let settlement = if deliveries >= config.max_deliveries {
            Settlement::DeadLetter {
                deliveries,
                reason: format!("{why} on delivery {deliveries} (max {})", config.max_deliveries),
            }
        } else {
            Settlement::Requeue { deliveries }
        };
        self.settle(id, message_id, &settlement).await
    }

    /// Applies `settlement` to entry `id` and logs what came of it.
    pub(crate) async fn settle(&self, id: &str, message_id: Uuid, settlement: &Settlement) -> Result<()> {
        let settled = scripts::settle(&mut self.shared.conn(), &self.shared.config, &self.keys, id, settlement)
            .await
            .map_err(backend)?;
        let queue = self.keys.queue.as_str();
        match settled {
            Settled::Requeued => self.shared.count(Counter::Requeued, 1),
            Settled::DeadLettered => self.shared.count(Counter::DeadLettered, 1),
            Settled::NotOurs | Settled::Gone => {}
        }
        match (settled, settlement) {
            (Settled::DeadLettered, Settlement::DeadLetter { reason, .. }) => {
                tracing::warn!(queue, entry = id, %message_id, reason, "message moved to the dead-letter stream");
            }
            (Settled::NotOurs, _) => {
                tracing::debug!(queue, entry = id, %message_id, "already settled or taken over by another consumer");
            }
            (Settled::Gone, _) => {
                tracing::warn!(queue, entry = id, %message_id, "the entry had been deleted from the stream");
            }
            _ => {}
        }
        Ok(())
    }
}

/// Settles one delivered entry.
pub(crate) struct RedisAcker {
    ctx: Arc<ConsumerCtx>,
    id: String,
    message_id: Uuid,
    deliveries: u32,
    settled: bool,
}

impl RedisAcker {
    pub(crate) fn new(ctx: Arc<ConsumerCtx>, id: String, message_id: Uuid, deliveries: u32) -> Self {
        Self {
            ctx,
            id,
            message_id,
            deliveries,
            settled: false,
        }
    }
}

#[async_trait]
impl Acknowledger for RedisAcker {
    /// `XACK` and `XDEL` in one script that first checks the entry is
    /// still pending on this consumer, batched with the acks of the
    /// stream's other deliveries that come meanwhile: one round trip.
    ///
    /// # Errors
    /// [`Error::NotOwned`](dtask_core::Error::NotOwned) when another
    /// consumer reclaimed the entry (its lease lapsed): nothing was done,
    /// and the other consumer settles it.
    async fn ack(mut self: Box<Self>) -> Result<()> {
        self.settled = true;
        self.ctx.release(&self.id);
        let id = std::mem::take(&mut self.id);
        match self.ctx.acks.ack(id.clone()).await.map_err(backend)? {
            Acked::Done => Ok(()),
            Acked::NotOurs => Err(dtask_core::Error::NotOwned {
                what: format!("entry {id} of queue `{}`", self.ctx.keys.queue),
            }),
        }
    }

    async fn nack(mut self: Box<Self>) -> Result<()> {
        self.settled = true;
        self.ctx.release(&self.id);
        self.ctx
            .nack(&self.id, self.message_id, self.deliveries, "nacked")
            .await
    }

    /// Moves the entry to the dead-letter stream with `reason` (one script
    /// call, as a nack on the last allowed delivery).
    async fn dead_letter(mut self: Box<Self>, reason: &str) -> Result<()> {
        self.settled = true;
        self.ctx.release(&self.id);
        let settlement = Settlement::DeadLetter {
            deliveries: self.deliveries,
            reason: reason.to_owned(),
        };
        self.ctx.settle(&self.id, self.message_id, &settlement).await
    }
}

impl Drop for RedisAcker {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        self.ctx.release(&self.id);
        let (ctx, id, message_id, deliveries) =
            (Arc::clone(&self.ctx), self.id.clone(), self.message_id, self.deliveries);
        let queue = ctx.keys.queue.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = ctx.nack(&id, message_id, deliveries, "dropped unsettled").await {
                        tracing::warn!(
                            queue, entry = id, %message_id, %error,
                            "could not hand back a dropped delivery; it comes back after the visibility timeout"
                        );
                    }
                });
            }
            Err(_) => tracing::warn!(
                queue, entry = id, %message_id,
                "delivery dropped outside a Tokio runtime; it comes back after the visibility timeout"
            ),
        }
    }
}
