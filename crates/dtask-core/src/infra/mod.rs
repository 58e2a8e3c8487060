//! The infrastructure boundary: the traits that the kernel and the
//! generated code depend on, and nothing else. Six of the design's seven
//! abstractions are here (the seventh, the serializer, is in
//! [`codec`](crate::codec)):
//!
//! | trait | role | in memory ([`crate::memory`]) |
//! |---|---|---|
//! | [`ObjectStore`] | files, as byte streams | [`MemoryObjectStore`](crate::memory::MemoryObjectStore), and [`LocalFileSystemStore`](crate::fs::LocalFileSystemStore) on disk |
//! | [`QueuePublisher`] | hand a task to the workers | [`MemoryQueue`](crate::memory::MemoryQueue) |
//! | [`QueueConsumer`] | receive it, ack or nack | [`MemoryQueue`](crate::memory::MemoryQueue) |
//! | [`DistributedLock`] | one worker per task, with expiry | [`MemoryLock`](crate::memory::MemoryLock) |
//! | [`ProgressTracker`] | latest snapshot and its live stream | [`MemoryProgressTracker`](crate::memory::MemoryProgressTracker) |
//! | [`SagaStateSerializer`](crate::codec::SagaStateSerializer) | state to bytes and back | [`JsonSerializer`](crate::codec::JsonSerializer) |
//! | [`SagaStateStore`] | snapshots to resume from | [`MemoryStateStore`](crate::memory::MemoryStateStore) |
//!
//! Beside them, [`IdempotencyStore`] keeps the idempotency keys of
//! submissions ([`MemoryIdempotencyStore`](crate::memory::MemoryIdempotencyStore)),
//! a queue backend that keeps dead letters implements [`DeadLetters`],
//! workers announce themselves in a [`WorkerRegistry`], and a backend that
//! keeps both the state and the progress may save and show a settlement at
//! once ([`StateWithProgress`]), one that keeps both the locks and the
//! states may take a task's lock and read its state at once
//! ([`LockWithState`]).
//! [`Infrastructure`] holds one of each, the set a host runs on.

mod history;
mod idempotency;
mod lock;
mod namespace;
mod progress;
mod queue;
mod redact;
mod services;
mod settle;
mod state;
mod storage;
mod take;
mod workers;

pub use history::TaskHistory;
pub use idempotency::{IdempotencyRecord, IdempotencyStore};
pub use lock::{DistributedLock, LockGuard, LockLease};
pub use namespace::NamespacedQueue;
pub use progress::{
    CancellationFeed, CancellationNotice, CancellationStream, ProgressPage, ProgressQuery, ProgressStream,
    ProgressTracker,
};
pub use queue::{
    Acknowledger, DeadLetter, DeadLetters, Delivery, DeliveryStream, MessageHeaders, QueueConsumer, QueueDepth,
    QueueDepths, QueueMessage, QueuePublisher,
};
pub use redact::redact_url;
pub use services::{CHECK_TIMEOUT, Infrastructure, ServiceCheck};
pub use settle::{ProgressWrite, StateWithProgress};
pub use state::{SagaStateStore, StoredState};
pub use storage::{
    ByteStream, GetResult, ObjectMeta, ObjectStore, ObjectStoreExt, clamp_range, stream_bytes, validate_bucket,
    validate_location,
};
pub use take::{LockWithState, Taken};
pub use workers::{WorkerInfo, WorkerRegistry};
