//! [`AmqpQueue`]: the publisher and consumer handle.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use dtask_core::Result;
use dtask_core::infra::{
    DeadLetter, DeadLetters, DeliveryStream, QueueConsumer, QueueDepth, QueueDepths, QueueMessage, QueuePublisher,
};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;

use crate::config::{AmqpConfig, deadline_after};
use crate::error::{AmqpError, client};
use crate::supervisor::Supervisor;
use crate::{consumer, publisher, topology};

/// A work queue on RabbitMQ: publisher and consumer in one cheap,
/// cloneable handle over one supervised connection.
///
/// Each task queue is a durable quorum queue with a delivery limit and a
/// dead-letter queue (see the [crate docs](crate)); it is declared by
/// whoever uses it first on a connection. Publishing sends a persistent
/// message and waits for the broker's confirmation; concurrent publishes
/// share one channel and pipeline. Each [`consume`](QueueConsumer::consume)
/// stream has a channel of its own, with
/// [`prefetch`](AmqpConfig::prefetch) unacknowledged deliveries at most.
///
/// When the connection is lost, a supervisor reconnects with backoff;
/// publishes wait for it (up to [`reconnect_timeout`](AmqpConfig::reconnect_timeout))
/// and are sent again, and delivery streams subscribe again and go on.
#[derive(Clone)]
pub struct AmqpQueue {
    supervisor: Arc<Supervisor>,
}

impl AmqpQueue {
    /// Connects to the broker at [`AmqpConfig::url`], or to the first of
    /// [`AmqpConfig::failover_urls`] that answers.
    ///
    /// # Errors
    /// [`Error::Invalid`](dtask_core::Error::Invalid) for a URL that does
    /// not parse; an [`Error::Backend`](dtask_core::Error::Backend) naming
    /// the URLs (passwords redacted) when no node can be reached within
    /// [`connect_timeout`](AmqpConfig::connect_timeout) each or all refuse
    /// the connection; its source is an [`AmqpError`].
    ///
    /// # Cancel safety
    /// Dropping the future before it completes leaves no connection behind.
    pub async fn connect(config: AmqpConfig) -> Result<Self> {
        let supervisor = Supervisor::start(config).await?;
        Ok(Self {
            supervisor: Arc::new(supervisor),
        })
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &AmqpConfig {
        self.supervisor.config()
    }

    /// Declares `queue` (with its dead-letter queue and the dead-letter
    /// exchange), as publishing and consuming do on first use. Declaring
    /// again with the same configuration changes nothing.
    ///
    /// # Errors
    /// [`Error::Invalid`](dtask_core::Error::Invalid) for an empty or too
    /// long name; an [`Error::Backend`](dtask_core::Error::Backend) when the
    /// broker refuses (e.g. `queue` exists with other arguments) or stays
    /// unreachable for [`reconnect_timeout`](AmqpConfig::reconnect_timeout).
    pub async fn declare(&self, queue: &str) -> Result<()> {
        topology::queue_name(queue)?;
        let session = self.session().await?;
        session.declare(queue, self.config().max_deliveries).await
    }

    /// Deletes `queue` and its dead-letter queue, with the messages they
    /// hold, and returns how many messages were deleted. Consumers of the
    /// queue are cancelled (and their streams declare it again: stop them
    /// first).
    ///
    /// # Errors
    /// As [`declare`](Self::declare).
    pub async fn delete(&self, queue: &str) -> Result<u32> {
        let name = topology::queue_name(queue)?;
        let session = self.session().await?;
        session.forget(queue);
        let channel = session.connection.create_channel().await.map_err(client)?;
        let mut deleted = 0;
        for name in [name, topology::dead_letter_queue(queue).into()] {
            deleted += channel
                .queue_delete(name, QueueDeleteOptions::default())
                .await
                .map_err(client)?;
        }
        Ok(deleted)
    }

    /// How many messages of `queue` wait to be delivered (not counting
    /// those out for delivery and not settled yet), by a passive
    /// declaration.
    ///
    /// # Errors
    /// As [`declare`](Self::declare); a backend error when the queue does
    /// not exist.
    pub async fn message_count(&self, queue: &str) -> Result<u32> {
        self.passive_count(queue)
            .await?
            .ok_or_else(|| dtask_core::Error::not_found(format!("queue `{queue}`")))
    }

    /// The ready messages of `queue` by a passive declaration; `None` when
    /// the broker has no such queue (`404 NOT_FOUND`).
    async fn passive_count(&self, queue: &str) -> Result<Option<u32>> {
        let name = topology::queue_name(queue)?;
        let session = self.session().await?;
        let channel = session.connection.create_channel().await.map_err(client)?;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match channel.queue_declare(name, options, FieldTable::default()).await {
            Ok(declared) => {
                let _ = channel.close(200, "counted".into()).await;
                Ok(Some(declared.message_count()))
            }
            // The broker closed the channel with the error.
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(client(error)),
        }
    }

    async fn session(&self) -> Result<Arc<crate::session::Session>> {
        let deadline = deadline_after(self.config().reconnect_timeout);
        self.supervisor.session(deadline).await
    }

    /// Checks that the connection is up and the broker answers (by opening
    /// and closing a channel). Does not wait for a reconnection: a readiness
    /// probe should see the outage.
    ///
    /// # Errors
    /// An [`Error::Backend`](dtask_core::Error::Backend) while the
    /// connection is down or when the broker does not answer.
    pub async fn ping(&self) -> Result<()> {
        let session = self.supervisor.current().map_err(|error| AmqpError::Disconnected {
            url: self.supervisor.url().to_owned(),
            waited: std::time::Duration::ZERO,
            last_error: error.to_string(),
        })?;
        let channel = session.connection.create_channel().await.map_err(client)?;
        channel.close(200, "ping".into()).await.map_err(client)
    }
}

impl fmt::Debug for AmqpQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpQueue")
            .field("url", &self.supervisor.url())
            .field("connected", &self.supervisor.current().is_ok())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl QueuePublisher for AmqpQueue {
    /// Publishes `message` as a persistent message and waits for the
    /// broker's confirmation. Does not wait for room: RabbitMQ queues are
    /// unbounded. (When the broker blocks publishers on a memory or disk
    /// alarm, this waits, up to [`confirm_timeout`](AmqpConfig::confirm_timeout).)
    ///
    /// # Errors
    /// [`Error::Unsupported`](dtask_core::Error::Unsupported) for a
    /// [`Payload::InMemory`](dtask_core::Payload::InMemory);
    /// [`Error::Invalid`](dtask_core::Error::Invalid) for a bad queue name;
    /// an [`Error::Backend`](dtask_core::Error::Backend) when the broker
    /// still nacks the message after its retries, or does not confirm it within
    /// [`confirm_timeout`](AmqpConfig::confirm_timeout), or stays
    /// unreachable for [`reconnect_timeout`](AmqpConfig::reconnect_timeout).
    ///
    /// # Cancel safety
    /// A dropped publish may or may not have been published.
    async fn publish(&self, queue: &str, message: QueueMessage) -> Result<()> {
        publisher::publish(&self.supervisor, queue, &message).await
    }

    /// Sends every message, in order, then waits for their confirmations
    /// together; a message that could not go that way is published on its
    /// own, as [`publish`](Self::publish) does.
    async fn publish_many(&self, queue: &str, messages: Vec<QueueMessage>) -> Vec<Result<()>> {
        publisher::publish_many(&self.supervisor, queue, &messages).await
    }

    /// As [`AmqpQueue::ping`].
    async fn ping(&self) -> Result<()> {
        AmqpQueue::ping(self).await
    }
}

#[async_trait]
impl QueueConsumer for AmqpQueue {
    /// Declares `queue`, subscribes to it and returns its deliveries. The
    /// stream never ends: after a lost connection or a cancelled consumer
    /// it subscribes again (logging a warning) and goes on. Deliveries
    /// received before that can no longer be acked (the broker delivers
    /// them again); nacking them succeeds.
    ///
    /// # Errors
    /// As [`declare`](AmqpQueue::declare), for the first subscription.
    ///
    /// # Cancel safety
    /// Dropping a pending `next()` of the stream loses no message.
    async fn consume(&self, queue: &str) -> Result<DeliveryStream> {
        consumer::consume(Arc::clone(&self.supervisor), queue).await
    }

    /// As [`AmqpQueue::ping`].
    async fn ping(&self) -> Result<()> {
        AmqpQueue::ping(self).await
    }
}

/// The dead-letter queue `<queue>.dead-letter` of each task queue.
/// Whether `error` is the broker's `404 NOT_FOUND`.
fn is_not_found(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp) if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
    )
}

/// The ready messages, by a passive declaration after declaring the queue
/// as publishing and consuming do (so a queue not used yet is an empty
/// one, not a `404` the broker answers by closing the channel); AMQP 0.9.1
/// does not tell the unacknowledged ones.
#[async_trait]
impl QueueDepths for AmqpQueue {
    async fn depth(&self, queue: &str) -> Result<QueueDepth> {
        self.declare(queue).await?;
        let waiting = self.passive_count(queue).await?.unwrap_or(0);
        Ok(QueueDepth {
            waiting: u64::from(waiting),
            in_flight: None,
        })
    }
}

#[async_trait]
impl DeadLetters for AmqpQueue {
    /// Takes up to `limit` messages of `<queue>.dead-letter` without
    /// acknowledging them and hands them back (see the `dead_letters`
    /// module). The ids are the messages' `message_id`s. The reason is the
    /// worker's (`dtask-dead-letter-reason`) or the broker's
    /// (`x-first-death-reason`, e.g. `delivery_limit`).
    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        topology::queue_name(queue)?;
        crate::dead_letters::list(&*self.session().await?, queue, limit).await
    }

    async fn remove_dead_letter(&self, queue: &str, id: &str) -> Result<bool> {
        topology::queue_name(queue)?;
        crate::dead_letters::remove(&*self.session().await?, queue, id).await
    }
}
