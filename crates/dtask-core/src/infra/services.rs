//! [`Infrastructure`]: the services a host runs on, as one value.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    CancellationFeed, DeadLetters, DistributedLock, IdempotencyStore, LockWithState, ObjectStore, ProgressTracker,
    QueueConsumer, QueueDepths, QueuePublisher, SagaStateStore, StateWithProgress, WorkerRegistry,
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
    /// Where the workers announce themselves (listed by
    /// [`Host::workers`](crate::Host::workers)); `None` when the
    /// deployment keeps no such registry.
    pub workers: Option<Arc<dyn WorkerRegistry>>,
    /// How deep the queues are, when the queue backend tells.
    pub depths: Option<Arc<dyn QueueDepths>>,
    /// Every cancellation request as one feed, when the progress tracker
    /// offers one: a worker then follows its tasks' cancellations with one
    /// subscription, not a progress stream per task.
    pub cancellations: Option<Arc<dyn CancellationFeed>>,
    /// The state store and the progress tracker as one, when the backend
    /// that keeps both can save a settlement and show it in one atomic step
    /// (one round trip instead of two). Only for `state` and `progress` of
    /// this same backend: a host given another store or tracker drops it.
    pub settlement: Option<Arc<dyn StateWithProgress>>,
    /// The lock and the state store as one, when the backend that keeps
    /// both can take a task's lock and read its state in one atomic step
    /// (one round trip instead of two as a delivery starts). Only for
    /// `lock` and `state` of this same backend: a host given another lock
    /// or store drops it.
    pub lock_with_state: Option<Arc<dyn LockWithState>>,
}

/// How one service answered [`Infrastructure::check`].
#[derive(Debug)]
pub struct ServiceCheck {
    /// The service's role (`storage`, `queue publisher`, `lock`...).
    pub name: &'static str,
    /// How long its ping took (at most [`CHECK_TIMEOUT`]).
    pub latency: Duration,
    /// Its answer: an error when it failed or did not answer in time.
    pub result: crate::Result<()>,
}

/// How long [`Infrastructure::check`] waits for one service.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

impl Infrastructure {
    /// Pings every service at once; says how each answered and how fast.
    pub async fn check(&self) -> Vec<ServiceCheck> {
        let (storage, publisher, consumer, lock, progress, state, idempotency) = tokio::join!(
            timed("storage", self.storage.ping()),
            timed("queue publisher", self.publisher.ping()),
            timed("queue consumer", self.consumer.ping()),
            timed("lock", self.lock.ping()),
            timed("progress", self.progress.ping()),
            timed("state store", self.state.ping()),
            timed("idempotency store", self.idempotency.ping()),
        );
        vec![storage, publisher, consumer, lock, progress, state, idempotency]
    }
}

async fn timed(name: &'static str, ping: impl Future<Output = crate::Result<()>>) -> ServiceCheck {
    let started = Instant::now();
    let result = match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
        Ok(result) => result,
        Err(_) => Err(crate::Error::backend(
            name,
            format!("no answer within {CHECK_TIMEOUT:?}"),
        )),
    };
    ServiceCheck {
        name,
        latency: started.elapsed(),
        result,
    }
}
