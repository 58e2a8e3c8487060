//! An optional capability of a backend that keeps both the locks and the
//! saga states: a task's lock taken and its saved state read in one atomic
//! step.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use super::{LockGuard, StoredState};
use crate::error::Result;
use crate::id::TaskId;

/// A lock taken by [`LockWithState::try_acquire_loading`], and the state
/// read with it.
#[derive(Debug)]
pub struct Taken {
    /// The lock, as [`DistributedLock::try_acquire`](super::DistributedLock::try_acquire)
    /// grants it.
    pub guard: LockGuard,
    /// The task's saved state as it stood when the lock was granted, as
    /// [`SagaStateStore::load`](super::SagaStateStore::load) answers (an
    /// error when it cannot be read: the lock is held all the same).
    pub state: Result<Option<StoredState>>,
}

/// Takes a lock and reads a task's saved state in one atomic step: a
/// worker starting a delivery takes the task's lock, then loads its state,
/// and a backend that keeps both does the two in one round trip. Offered
/// as [`Infrastructure::lock_with_state`](super::Infrastructure::lock_with_state)
/// for the `lock` and `state` of the same infrastructure.
#[async_trait]
pub trait LockWithState: Send + Sync + fmt::Debug + 'static {
    /// Takes `resource` for `ttl` as
    /// [`DistributedLock::try_acquire`](super::DistributedLock::try_acquire)
    /// does and, when it is granted, reads `task_id`'s saved state in the
    /// same step. `None` when another holder has it (nothing is read).
    ///
    /// # Errors
    /// As [`DistributedLock::try_acquire`](super::DistributedLock::try_acquire).
    async fn try_acquire_loading(&self, resource: &str, ttl: Duration, task_id: TaskId) -> Result<Option<Taken>>;
}
