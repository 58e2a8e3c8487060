//! The in-memory infrastructure: what a host runs on in InProcess mode.
//!
//! In InProcess mode the API side and the workers live in one process, so
//! every infrastructure trait of [`crate::infra`] is served from memory:
//!
//! | type | implements | notes |
//! |---|---|---|
//! | [`MemoryObjectStore`] | [`ObjectStore`](crate::infra::ObjectStore) | objects as shared [`Bytes`](bytes::Bytes), read back without copying |
//! | [`MemoryQueue`] | [`QueuePublisher`](crate::infra::QueuePublisher) and [`QueueConsumer`](crate::infra::QueueConsumer) | bounded channels with back-pressure, redelivery of nacked or dropped deliveries |
//! | [`MemoryLock`] | [`DistributedLock`](crate::infra::DistributedLock) | leases with real expiry on tokio's clock, fencing tokens |
//! | [`MemoryProgressTracker`] | [`ProgressTracker`](crate::infra::ProgressTracker) | latest snapshots, live streams, bounded retention of ended tasks |
//! | [`MemoryStateStore`] | [`SagaStateStore`](crate::infra::SagaStateStore) | snapshots with fencing |
//! | [`MemoryTaskHistory`] | [`TaskHistory`](crate::infra::TaskHistory) | task rows, attempts, conditions, audit; bounded retention of ended tasks |
//! | [`MemoryIdempotencyStore`] | [`IdempotencyStore`](crate::infra::IdempotencyStore) | keys with a time-to-live |
//!
//! These are not test doubles: they keep the same contracts as the remote
//! backends (the conformance suite checks both) and are built to be fast.
//! Payloads move between them as they are, so a
//! [`Payload::InMemory`](crate::Payload::InMemory) value is never
//! serialized. Nothing survives the process: for files that must outlive
//! it, use [`LocalFileSystemStore`](crate::fs::LocalFileSystemStore).
//!
//! The lock, the progress tracker and the state store are meant to be
//! shared behind an [`Arc`](std::sync::Arc); [`MemoryQueue`] is a cheap
//! handle already, cloned for the publisher and the consumer side.

mod history;
mod idempotency;
mod lock;
mod progress;
mod queue;
mod state;
mod storage;
mod workers;

pub use history::MemoryTaskHistory;
pub use idempotency::MemoryIdempotencyStore;
pub use lock::MemoryLock;
pub use progress::MemoryProgressTracker;
pub use queue::MemoryQueue;
pub use state::MemoryStateStore;
pub use storage::MemoryObjectStore;
pub use workers::MemoryWorkerRegistry;

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, ignoring poisoning: every critical section of this module
/// leaves its data consistent before anything that could panic.
fn lock_mutex<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks `lock`, ignoring poisoning (see [`lock_mutex`]).
fn read_lock<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `lock`, ignoring poisoning (see [`lock_mutex`]).
fn write_lock<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
