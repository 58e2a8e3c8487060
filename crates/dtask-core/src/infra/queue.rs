//! The work queue: a publisher that hands a task over to the workers and a
//! consumer that receives it, with at-least-once delivery.
//!
//! A [`Delivery`] must be acknowledged once its outcome is durably
//! recorded. A delivery that is nacked, or dropped without either, is
//! delivered again (to this or another consumer), with its
//! [`Delivery::delivery_count`] increased.

use std::fmt;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::Payload;
use crate::error::Result;
use crate::id::TaskId;
use crate::trace::TraceParent;

/// One message on a queue: a task handed over to the workers.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    /// The message's own id (not the task's).
    pub id: Uuid,
    /// The task the message is about.
    pub task_id: TaskId,
    /// The task's declared name, so a worker can dispatch it.
    pub task_name: String,
    /// The body: the saga state at hand-off.
    pub payload: Payload,
    /// The trace context of the span that published the message, which the
    /// worker's spans continue (W3C `traceparent`; a header or field of its
    /// own on every backend).
    pub trace_parent: Option<TraceParent>,
    /// For a message that runs one member of a distributed parallel group
    /// (`#[parallel_group(distribute)]`): the member step's name. `None`
    /// for a message that runs the task itself.
    pub member: Option<String>,
}

impl QueueMessage {
    /// A message with a fresh id.
    pub fn new(task_id: TaskId, task_name: impl Into<String>, payload: Payload) -> Self {
        Self {
            id: Uuid::now_v7(),
            task_id,
            task_name: task_name.into(),
            payload,
            trace_parent: None,
            member: None,
        }
    }

    /// The message, carrying the trace context `parent`.
    #[must_use]
    pub fn with_trace_parent(mut self, parent: Option<TraceParent>) -> Self {
        self.trace_parent = parent;
        self
    }

    /// The message, running only the group member step `member`.
    #[must_use]
    pub fn for_member(mut self, member: impl Into<String>) -> Self {
        self.member = Some(member.into());
        self
    }
}

/// The header fields of a message, as remote backends store them beside
/// the encoded payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageHeaders {
    /// [`QueueMessage::id`].
    pub message_id: Uuid,
    /// [`QueueMessage::task_id`].
    pub task_id: TaskId,
    /// [`QueueMessage::task_name`].
    pub task_name: String,
}

/// A message moved to a dead-letter queue, and why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The backend's id of the dead letter, for
    /// [`DeadLetters::remove_dead_letter`].
    pub id: String,
    /// The message as it was published; `None` when the backend could not
    /// even read its envelope (a message not written by dtask).
    pub message: Option<QueueMessage>,
    /// How many times it had been delivered.
    pub deliveries: u32,
    /// Why it was moved.
    pub reason: String,
}

/// Publishes messages to named queues.
///
/// # Cancel safety
/// A dropped `publish` may or may not have published; the caller treats the
/// hand-off as not done and retries, which the worker side deduplicates.
#[async_trait]
pub trait QueuePublisher: Send + Sync + fmt::Debug + 'static {
    /// Appends `message` to `queue`, creating the queue if needed. Waits
    /// while the queue is full (back-pressure); never drops.
    async fn publish(&self, queue: &str, message: QueueMessage) -> Result<()>;

    /// Appends `messages` to `queue`, as [`publish`](Self::publish) does
    /// each; one result per message, in order. A backend that can send
    /// them together (one pipeline, confirms awaited together) does; the
    /// default publishes one after the other.
    async fn publish_many(&self, queue: &str, messages: Vec<QueueMessage>) -> Vec<Result<()>> {
        let mut results = Vec::with_capacity(messages.len());
        for message in messages {
            results.push(self.publish(queue, message).await);
        }
        results
    }

    /// Checks that the broker answers (used by readiness probes).
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// A stream of deliveries from one queue.
pub type DeliveryStream = BoxStream<'static, Result<Delivery>>;

/// Receives messages from named queues.
#[async_trait]
pub trait QueueConsumer: Send + Sync + fmt::Debug + 'static {
    /// Starts consuming `queue`, creating it if needed. Several streams on
    /// one queue share its messages: each message goes to one of them.
    async fn consume(&self, queue: &str) -> Result<DeliveryStream>;

    /// Checks that the broker answers (used by readiness probes).
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// The dead letters of a queue backend: the messages it moved aside
/// because they could not be processed ([`Delivery::dead_letter`]) or were
/// delivered too often. A capability of its own: a backend that keeps no
/// dead letters does not implement it, and a host without one answers
/// that it has none.
///
/// A backend keeps every dead letter until it is removed: none is trimmed
/// or expired, since each may be the only copy of a task.
#[async_trait]
pub trait DeadLetters: Send + Sync + fmt::Debug + 'static {
    /// Up to `limit` dead letters of `queue`, oldest first, left where they
    /// are.
    ///
    /// # Errors
    /// A backend error.
    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetter>>;

    /// Deletes the dead letter `id` (a [`DeadLetter::id`]) of `queue`.
    /// `Ok(false)` when it is not there (any more).
    ///
    /// # Errors
    /// A backend error.
    async fn remove_dead_letter(&self, queue: &str, id: &str) -> Result<bool>;
}

/// Settles one delivery with its broker. Implemented by each backend.
#[async_trait]
pub trait Acknowledger: Send + Sync + 'static {
    /// The message was processed: remove it for good.
    async fn ack(self: Box<Self>) -> Result<()>;
    /// The message was not processed: deliver it again.
    async fn nack(self: Box<Self>) -> Result<()>;
    /// The message can never be processed (it cannot be decoded, or it was
    /// written by a newer version): move it to the queue's dead-letter
    /// queue with `reason`, where an operator can read it, instead of
    /// delivering it again. Returns once the dead letter is durably kept;
    /// when that fails the message stays in the queue, to be delivered
    /// again.
    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<()>;
}

/// A message received from a queue, to be settled with [`ack`](Self::ack)
/// or [`nack`](Self::nack).
pub struct Delivery {
    message: QueueMessage,
    delivery_count: u32,
    acker: Box<dyn Acknowledger>,
}

impl Delivery {
    /// A delivery of `message` for the `delivery_count`-th time (1 for the
    /// first), settled through `acker`.
    pub fn new(message: QueueMessage, delivery_count: u32, acker: Box<dyn Acknowledger>) -> Self {
        Self {
            message,
            delivery_count,
            acker,
        }
    }

    /// The message.
    pub fn message(&self) -> &QueueMessage {
        &self.message
    }

    /// How many times this message has been delivered, this time included.
    pub fn delivery_count(&self) -> u32 {
        self.delivery_count
    }

    /// Removes the message from the queue for good.
    ///
    /// # Errors
    /// A backend error; the message may then be delivered again.
    pub async fn ack(self) -> Result<()> {
        self.acker.ack().await
    }

    /// Returns the message to the queue to be delivered again.
    ///
    /// # Errors
    /// A backend error; brokers redeliver unsettled messages anyway.
    pub async fn nack(self) -> Result<()> {
        self.acker.nack().await
    }

    /// Moves the message to the dead-letter queue with `reason`: it will not
    /// be delivered again.
    ///
    /// # Errors
    /// As the backend reports; the message is then left in the queue, to
    /// be delivered again: a failed dead-lettering never loses it.
    pub async fn dead_letter(self, reason: &str) -> Result<()> {
        self.acker.dead_letter(reason).await
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("delivery_count", &self.delivery_count)
            .finish_non_exhaustive()
    }
}

/// How many messages a queue holds, as its backend tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDepth {
    /// Messages waiting for a consumer: new ones and ones handed back.
    pub waiting: u64,
    /// Messages delivered and not settled yet; `None` where the backend
    /// cannot tell (RabbitMQ over AMQP 0.9.1).
    pub in_flight: Option<u64>,
}

/// An optional capability of a queue backend: how deep its queues are, for
/// metrics (`dtask_queue_depth`) and the operations dashboard.
#[async_trait]
pub trait QueueDepths: Send + Sync + fmt::Debug + 'static {
    /// The depth of task queue `queue` (zero for one never used).
    async fn depth(&self, queue: &str) -> Result<QueueDepth>;
}
