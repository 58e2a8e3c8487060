//! [`MemoryQueue`]: named in-process work queues with back-pressure and
//! redelivery.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_channel::{Receiver, Sender};
use async_trait::async_trait;
use futures::StreamExt;

use super::{read_lock, write_lock};
use crate::error::{Error, Result};
use crate::infra::{
    Acknowledger, DeadLetter, DeadLetters, Delivery, DeliveryStream, QueueConsumer, QueueDepth, QueueDepths,
    QueueMessage, QueuePublisher,
};

/// The capacity of each queue made by [`MemoryQueue::new`].
const DEFAULT_CAPACITY: usize = 100;

/// A message waiting in a queue, with how many times it was delivered.
struct Envelope {
    message: QueueMessage,
    deliveries: u32,
}

/// One named queue: a bounded channel of new messages and an unbounded one
/// of messages to deliver again.
struct Channel {
    ready_tx: Sender<Envelope>,
    ready_rx: Receiver<Envelope>,
    redeliver_tx: Sender<Envelope>,
    redeliver_rx: Receiver<Envelope>,
    dead_letters: Mutex<VecDeque<DeadLetter>>,
    /// Deliveries out and not settled yet.
    out: AtomicU64,
}

impl Channel {
    fn new(capacity: usize) -> Self {
        let (ready_tx, ready_rx) = async_channel::bounded(capacity);
        let (redeliver_tx, redeliver_rx) = async_channel::unbounded();
        Self {
            ready_tx,
            ready_rx,
            redeliver_tx,
            redeliver_rx,
            dead_letters: Mutex::new(VecDeque::new()),
            out: AtomicU64::new(0),
        }
    }

    fn dead_letter(&self, envelope: Envelope, reason: &str) {
        let mut dead = self.dead_letters.lock().unwrap_or_else(PoisonError::into_inner);
        dead.push_back(DeadLetter {
            id: envelope.message.id.to_string(),
            message: Some(envelope.message),
            deliveries: envelope.deliveries,
            reason: reason.to_owned(),
        });
    }

    /// The next message, redeliveries first; `None` once closed (which
    /// cannot happen while the channel holds its own senders).
    async fn next(&self) -> Option<Envelope> {
        // Fast path: no waker registration when a message is waiting.
        if let Ok(envelope) = self.redeliver_rx.try_recv() {
            return Some(envelope);
        }
        if let Ok(envelope) = self.ready_rx.try_recv() {
            return Some(envelope);
        }
        let received = tokio::select! {
            biased;
            envelope = self.redeliver_rx.recv() => envelope,
            envelope = self.ready_rx.recv() => envelope,
        };
        received.ok()
    }

    /// Puts a delivered message back, to be delivered before new ones.
    /// Never waits: the redelivery channel is unbounded, so a nack cannot
    /// deadlock on a full queue.
    fn requeue(&self, envelope: Envelope) {
        // Fails only when closed, which cannot happen while `self` lives.
        let _ = self.redeliver_tx.try_send(envelope);
    }

    fn len(&self) -> usize {
        self.ready_rx.len() + self.redeliver_rx.len()
    }
}

struct Inner {
    capacity: usize,
    queues: RwLock<HashMap<String, Arc<Channel>>>,
}

/// An in-process work queue: publisher and consumer in one cheap handle.
///
/// Each queue name maps to its own bounded channel, created on first use,
/// so queues never block each other and the hot path takes no global
/// lock beyond a shared read of the name registry. Publishing waits while
/// the queue is full (back-pressure) and never drops a message. Several
/// [`consume`](QueueConsumer::consume) streams on one queue share its
/// messages, each going to one of them.
///
/// Delivery is at least once: a delivery that is nacked, or dropped
/// without being settled, goes back to the queue with its
/// [`delivery_count`](Delivery::delivery_count) increased, ahead of new
/// messages. Redeliveries wait in a separate unbounded list, so settling
/// never waits for room in a full queue.
///
/// Payloads move as they are: a [`Payload::InMemory`](crate::Payload)
/// value is handed to the consumer without being serialized.
///
/// ```
/// use dtask_core::infra::{QueueConsumer, QueueMessage, QueuePublisher};
/// use dtask_core::memory::MemoryQueue;
/// use dtask_core::{Payload, TaskId};
/// use futures::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> dtask_core::Result<()> {
/// let queue = MemoryQueue::with_capacity(16);
/// let message = QueueMessage::new(TaskId::new(), "Resize", Payload::in_memory(42u32));
/// queue.publish("images", message).await?;
///
/// let mut deliveries = queue.consume("images").await?;
/// if let Some(delivery) = deliveries.next().await {
///     let delivery = delivery?;
///     assert_eq!(delivery.message().payload.decode::<u32>()?, 42);
///     delivery.ack().await?;
/// }
/// assert_eq!(queue.len("images"), 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
}

impl MemoryQueue {
    /// A set of queues holding up to 100 ready messages each.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A set of queues holding up to `capacity` ready messages each (at
    /// least one: a capacity of 0 is taken as 1). Messages waiting for
    /// redelivery do not count against it.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                queues: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The capacity of each queue.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// How many messages of `queue` wait to be delivered (new ones and
    /// ones to deliver again; not the ones out for delivery). 0 for a queue
    /// never used.
    pub fn len(&self, queue: &str) -> usize {
        read_lock(&self.inner.queues).get(queue).map_or(0, |c| c.len())
    }

    /// The channel of `queue`, created on first use.
    fn channel(&self, queue: &str) -> Arc<Channel> {
        if let Some(channel) = read_lock(&self.inner.queues).get(queue) {
            return Arc::clone(channel);
        }
        let mut queues = write_lock(&self.inner.queues);
        let channel = queues
            .entry(queue.to_owned())
            .or_insert_with(|| Arc::new(Channel::new(self.inner.capacity)));
        Arc::clone(channel)
    }
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("capacity", &self.inner.capacity)
            .field("queues", &read_lock(&self.inner.queues).len())
            .finish()
    }
}

#[async_trait]
impl QueuePublisher for MemoryQueue {
    /// Appends `message` to `queue`, waiting while the queue is full.
    ///
    /// # Errors
    /// None in practice; [`Error::Closed`] is reserved for a closed queue.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes publishes nothing.
    async fn publish(&self, queue: &str, message: QueueMessage) -> Result<()> {
        let envelope = Envelope { message, deliveries: 0 };
        self.channel(queue)
            .ready_tx
            .send(envelope)
            .await
            .map_err(|_| Error::Closed { what: "memory queue" })
    }
}

#[async_trait]
impl QueueDepths for MemoryQueue {
    async fn depth(&self, queue: &str) -> Result<QueueDepth> {
        Ok(read_lock(&self.inner.queues)
            .get(queue)
            .map_or_else(QueueDepth::default, |c| QueueDepth {
                waiting: c.len() as u64,
                in_flight: Some(c.out.load(Ordering::Relaxed)),
            }))
    }
}

/// Dead letters are kept, unbounded, until removed: each may be the only
/// copy of a task.
#[async_trait]
impl DeadLetters for MemoryQueue {
    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        Ok(read_lock(&self.inner.queues).get(queue).map_or_else(Vec::new, |c| {
            let dead = c.dead_letters.lock().unwrap_or_else(PoisonError::into_inner);
            dead.iter().take(limit).cloned().collect()
        }))
    }

    async fn remove_dead_letter(&self, queue: &str, id: &str) -> Result<bool> {
        let Some(channel) = read_lock(&self.inner.queues).get(queue).cloned() else {
            return Ok(false);
        };
        let mut dead = channel.dead_letters.lock().unwrap_or_else(PoisonError::into_inner);
        let before = dead.len();
        dead.retain(|letter| letter.id != id);
        Ok(dead.len() < before)
    }
}

#[async_trait]
impl QueueConsumer for MemoryQueue {
    /// A never-ending stream of the deliveries of `queue`.
    ///
    /// # Cancel safety
    /// Dropping a pending `next()` of the stream loses no message.
    async fn consume(&self, queue: &str) -> Result<DeliveryStream> {
        let channel = self.channel(queue);
        let deliveries = futures::stream::unfold(channel, |channel| async move {
            let mut envelope = channel.next().await?;
            envelope.deliveries += 1;
            channel.out.fetch_add(1, Ordering::Relaxed);
            let delivery = Delivery::new(
                envelope.message.clone(),
                envelope.deliveries,
                Box::new(MemoryAcker {
                    channel: Arc::clone(&channel),
                    pending: Some(envelope),
                }),
            );
            Some((Ok(delivery), channel))
        });
        Ok(deliveries.boxed())
    }
}

/// Settles one delivery; requeues it when nacked or dropped unsettled.
struct MemoryAcker {
    channel: Arc<Channel>,
    /// The delivered message until it is settled.
    pending: Option<Envelope>,
}

#[async_trait]
impl Acknowledger for MemoryAcker {
    async fn ack(mut self: Box<Self>) -> Result<()> {
        self.pending = None;
        Ok(())
    }

    async fn nack(mut self: Box<Self>) -> Result<()> {
        if let Some(envelope) = self.pending.take() {
            self.channel.requeue(envelope);
        }
        Ok(())
    }

    async fn dead_letter(mut self: Box<Self>, reason: &str) -> Result<()> {
        if let Some(envelope) = self.pending.take() {
            tracing::warn!(task_id = %envelope.message.task_id, reason, "message moved to the dead letters");
            self.channel.dead_letter(envelope, reason);
        }
        Ok(())
    }
}

impl Drop for MemoryAcker {
    /// Every delivery's acker is dropped once, however it was settled.
    fn drop(&mut self) {
        self.channel.out.fetch_sub(1, Ordering::Relaxed);
        if let Some(envelope) = self.pending.take() {
            self.channel.requeue(envelope);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::timeout;

    use super::*;
    use crate::codec::Payload;
    use crate::id::TaskId;

    fn message(n: u32) -> QueueMessage {
        QueueMessage::new(TaskId::new(), "Test", Payload::in_memory(n))
    }

    fn number(delivery: &Delivery) -> u32 {
        delivery.message().payload.decode::<u32>().unwrap()
    }

    #[tokio::test]
    async fn nack_on_a_full_queue_does_not_deadlock() {
        let queue = MemoryQueue::with_capacity(2);
        queue.publish("jobs", message(1)).await.unwrap();
        queue.publish("jobs", message(2)).await.unwrap();
        let mut stream = queue.consume("jobs").await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        queue.publish("jobs", message(3)).await.unwrap();
        assert_eq!(queue.len("jobs"), 2, "the queue is full again");

        timeout(Duration::from_secs(1), first.nack())
            .await
            .expect("nack must not wait for room")
            .unwrap();
        assert_eq!(queue.len("jobs"), 3);

        let again = stream.next().await.unwrap().unwrap();
        assert_eq!((number(&again), again.delivery_count()), (1, 2));
        again.ack().await.unwrap();
        for expected in [2, 3] {
            let delivery = stream.next().await.unwrap().unwrap();
            assert_eq!((number(&delivery), delivery.delivery_count()), (expected, 1));
            delivery.ack().await.unwrap();
        }
        assert_eq!(queue.len("jobs"), 0);
    }

    #[tokio::test]
    async fn a_delivery_outliving_its_stream_is_still_redelivered() {
        let queue = MemoryQueue::new();
        queue.publish("jobs", message(7)).await.unwrap();
        let mut stream = queue.consume("jobs").await.unwrap();
        let delivery = stream.next().await.unwrap().unwrap();
        drop(stream);
        drop(delivery);

        let mut stream = queue.consume("jobs").await.unwrap();
        let again = stream.next().await.unwrap().unwrap();
        assert_eq!((number(&again), again.delivery_count()), (7, 2));
    }

    #[tokio::test]
    async fn in_memory_payloads_are_handed_over_as_they_are() {
        let queue = MemoryQueue::new();
        let value = Arc::new(String::from("shared"));
        let message = QueueMessage::new(TaskId::new(), "Test", Payload::InMemory(value.clone()));
        queue.publish("jobs", message).await.unwrap();
        let mut stream = queue.consume("jobs").await.unwrap();
        let delivery = stream.next().await.unwrap().unwrap();
        let Payload::InMemory(received) = &delivery.message().payload else {
            panic!("the payload was converted");
        };
        let received = received.clone().downcast::<String>().unwrap();
        assert!(Arc::ptr_eq(&received, &value));
    }

    #[tokio::test]
    async fn zero_capacity_is_taken_as_one_and_len_of_unknown_queue_is_zero() {
        let queue = MemoryQueue::with_capacity(0);
        assert_eq!(queue.capacity(), 1);
        assert_eq!(queue.len("never-used"), 0);
        queue.publish("jobs", message(1)).await.unwrap();
        assert_eq!(queue.len("jobs"), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_messages_through_several_consumers() {
        const N: u32 = 20_000;
        let queue = MemoryQueue::with_capacity(64);
        let mut consumers = Vec::new();
        for _ in 0..2 {
            let mut stream = queue.consume("bulk").await.unwrap();
            consumers.push(tokio::spawn(async move {
                let mut sum = 0u64;
                while let Some(delivery) = stream.next().await {
                    let delivery = delivery.unwrap();
                    let n = number(&delivery);
                    delivery.ack().await.unwrap();
                    if n == u32::MAX {
                        break;
                    }
                    sum += u64::from(n);
                }
                sum
            }));
        }
        for n in 1..=N {
            queue.publish("bulk", message(n)).await.unwrap();
        }
        for _ in 0..2 {
            queue.publish("bulk", message(u32::MAX)).await.unwrap();
        }
        let mut total = 0;
        for consumer in consumers {
            total += timeout(Duration::from_secs(30), consumer).await.unwrap().unwrap();
        }
        assert_eq!(total, u64::from(N) * u64::from(N + 1) / 2);
    }
}
