//! [`Infrastructure`]: the services a host runs on, as one value.

use std::sync::Arc;

use super::{
    DeadLetters, DistributedLock, IdempotencyStore, ObjectStore, ProgressTracker, QueueConsumer, QueuePublisher,
    SagaStateStore,
};

/// The services a host runs on: the object store, both ends of the queue,
/// the lock, the progress tracker and the state store of the design, the
/// idempotency store, and the queue's dead letters when its backend keeps
/// them. (The serializer is chosen per task: [`Codec`](crate::Codec).)
#[derive(Debug, Clone)]
pub struct Infrastructure {
    /// Files.
    pub storage: Arc<dyn ObjectStore>,
    /// Hand-offs to the workers.
    pub publisher: Arc<dyn QueuePublisher>,
    /// Deliveries to the workers.
    pub consumer: Arc<dyn QueueConsumer>,
    /// One worker per task.
    pub lock: Arc<dyn DistributedLock>,
    /// Progress snapshots and streams.
    pub progress: Arc<dyn ProgressTracker>,
    /// Saga snapshots.
    pub state: Arc<dyn SagaStateStore>,
    /// Idempotency keys of submissions.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// The queue's dead letters, listed and replayed by
    /// [`Host::dead_letters`](crate::Host::dead_letters) and
    /// [`Host::retry`](crate::Host::retry); `None` when the queue backend
    /// keeps none.
    pub dead_letters: Option<Arc<dyn DeadLetters>>,
}

impl Infrastructure {
    /// Pings every service; returns the name and error of each that does
    /// not answer.
    pub async fn check(&self) -> Vec<(&'static str, crate::Error)> {
        let (storage, publisher, consumer, lock, progress, state, idempotency) = tokio::join!(
            self.storage.ping(),
            self.publisher.ping(),
            self.consumer.ping(),
            self.lock.ping(),
            self.progress.ping(),
            self.state.ping(),
            self.idempotency.ping(),
        );
        [
            ("storage", storage),
            ("queue publisher", publisher),
            ("queue consumer", consumer),
            ("lock", lock),
            ("progress", progress),
            ("state store", state),
            ("idempotency store", idempotency),
        ]
        .into_iter()
        .filter_map(|(name, result)| result.err().map(|e| (name, e)))
        .collect()
    }
}
