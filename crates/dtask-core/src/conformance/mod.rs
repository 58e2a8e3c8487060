//! The conformance suite: one set of checks per infrastructure trait,
//! written once and run against every backend (feature `test-suite`).
//!
//! Each module holds async check functions that take a backend as a trait
//! object and panic, with a message saying which rule was broken, when the
//! backend does not keep its trait's contract. `run_all` runs a module's
//! checks in turn; the checks are public too, so a backend can run one of
//! them alone while it is being written.
//!
//! The checks assume nothing of a backend's internals. They name their
//! buckets, queues, resources and tasks with fresh random names (see
//! [`unique_name`]) and clean up after themselves, so they can run
//! concurrently against shared, real servers. Waiting for something that
//! should happen is bounded by generous timeouts rather than sleeps; the
//! lock checks sleep only where expiry itself is the property under test.
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use dtask_core::conformance;
//! use dtask_core::memory::{MemoryObjectStore, MemoryQueue};
//!
//! conformance::storage::run_all(&MemoryObjectStore::new()).await;
//! let queue = MemoryQueue::new();
//! conformance::queue::run_all(Arc::new(queue.clone()), Arc::new(queue)).await;
//! # }
//! ```
//!
//! | module | trait |
//! |---|---|
//! | [`storage`] | [`ObjectStore`](crate::infra::ObjectStore) |
//! | [`queue`] | [`QueuePublisher`](crate::infra::QueuePublisher) and [`QueueConsumer`](crate::infra::QueueConsumer) |
//! | [`dead_letters`] | [`DeadLetters`](crate::infra::DeadLetters) |
//! | [`depths`] | [`QueueDepths`](crate::infra::QueueDepths) |
//! | [`history`] | [`TaskHistory`](crate::infra::TaskHistory) |
//! | [`lock`] | [`DistributedLock`](crate::infra::DistributedLock) |
//! | [`lock_with_state`] | [`LockWithState`](crate::infra::LockWithState) |
//! | [`progress`] | [`ProgressTracker`](crate::infra::ProgressTracker) |
//! | [`state`] | [`SagaStateStore`](crate::infra::SagaStateStore) |
//! | [`settlement`] | [`StateWithProgress`](crate::infra::StateWithProgress) |
//! | [`workers`] | [`WorkerRegistry`](crate::infra::WorkerRegistry) |
//! | [`serializer`] | [`SagaStateSerializer`](crate::codec::SagaStateSerializer) |
//!
//! Beside the suites, [`FaultProxy`]: a TCP proxy that cuts a backend's
//! connections at an exact moment, for each backend's fault tests.

pub mod dead_letters;
pub mod depths;
pub mod fault_proxy;
pub mod history;
pub mod idempotency;
pub mod lock;
pub mod lock_with_state;
pub mod progress;
pub mod queue;
pub mod serializer;
pub mod settlement;
pub mod state;
pub mod storage;
pub mod workers;

pub use fault_proxy::FaultProxy;

use std::future::Future;
use std::time::Duration;

/// How long a check waits for something that should happen (a delivery, a
/// snapshot, a release): long enough for a loaded remote server.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// `prefix` followed by a random suffix of 32 lower-case hexadecimal
/// digits: a name no other run uses, valid as a bucket name when `prefix`
/// is lower-case and at most 30 characters long.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Awaits `future` for at most [`PATIENCE`], panicking with `what` when it
/// takes longer.
async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: nothing after {PATIENCE:?}"),
    }
}
