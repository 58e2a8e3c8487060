//! [`RedisLockWithState`]: a task's lock taken and its saved state read by
//! one script.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dtask_core::infra::{LockGuard, LockWithState, Taken};
use dtask_core::{Error, Result, TaskId};
use tokio::time::Instant;

use super::lease::RedisLease;
use super::{FENCE_RETENTION, RedisLock, scripts, validity};
use crate::conn::millis;
use crate::state::{RedisStateStore, stored};

/// What `ACQUIRE_LOADING` answers when it took the lock: the fencing
/// token, and the state hash's `fence`, `format` and `bytes`.
type Grant = (String, Option<u64>, Option<String>, Option<Vec<u8>>);

/// The [`RedisLock`] and the [`RedisStateStore`] of one
/// [`RedisBackends`](crate::RedisBackends) as one [`LockWithState`]: the
/// task's lock taken (a plain `SET NX PX` and the fence draw, as the lock
/// takes it on one instance) and its state read in one script. Offered
/// only where the lock is the main server alone, not a RedLock quorum of
/// other servers, and not on a Redis Cluster (a lock and a state live in
/// different slots there).
///
/// Built by [`RedisBackends::lock_with_state`](crate::RedisBackends::lock_with_state).
#[derive(Clone)]
pub struct RedisLockWithState {
    lock: RedisLock,
    state: RedisStateStore,
}

impl RedisLockWithState {
    /// `lock` must have one instance, the server `state` is on.
    pub(crate) fn new(lock: RedisLock, state: RedisStateStore) -> Self {
        Self { lock, state }
    }
}

impl fmt::Debug for RedisLockWithState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLockWithState")
            .field("lock", &self.lock)
            .field("state", &self.state)
            .finish()
    }
}

#[async_trait]
impl LockWithState for RedisLockWithState {
    /// # Errors
    /// [`Error::Invalid`] for a zero `ttl`; [`Error::Backend`] when the
    /// server does not answer within the lock's instance timeout (a lock
    /// it may have granted is released).
    async fn try_acquire_loading(&self, resource: &str, ttl: Duration, task_id: TaskId) -> Result<Option<Taken>> {
        if ttl.is_zero() {
            return Err(Error::invalid("lock ttl", "the time-to-live is zero"));
        }
        let shared = &self.lock.shared;
        let keys = shared.keys(resource);
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let (lease_ms, keep_ms) = (millis(ttl), millis(ttl.saturating_add(FENCE_RETENTION)));
        let instance = &shared.instances[0];
        let mut invocation = scripts::ACQUIRE_LOADING.key(&keys.lock);
        invocation
            .key(&keys.fence)
            .key(self.state.key(task_id))
            .arg(&owner)
            .arg(lease_ms)
            .arg(keep_ms);
        let start = Instant::now();
        let mut conn = instance.manager.clone();
        let answer = tokio::time::timeout(shared.timeout, invocation.invoke_async::<Option<Grant>>(&mut conn)).await;
        let failure = match answer {
            Ok(Ok(None)) => return Ok(None),
            Ok(Ok(Some((token, fence, format, bytes)))) => match token.parse::<u64>() {
                Ok(token) if validity(start, ttl).is_some() => {
                    let lease = RedisLease::new(Arc::clone(shared), resource.to_owned(), keys, owner, token);
                    let state = stored(fence, format, bytes);
                    return Ok(Some(Taken {
                        guard: LockGuard::new(lease),
                        state,
                    }));
                }
                Ok(_) => {
                    tracing::warn!(resource, ?ttl, "lock granted too late to be valid; refused");
                    shared.release(&keys, &owner).await;
                    return Ok(None);
                }
                Err(error) => format!("{}: bad fencing token: {error}", instance.url),
            },
            Ok(Err(error)) => format!("{}: {error}", instance.url),
            Err(_) => format!("{}: no answer within {:?}", instance.url, shared.timeout),
        };
        // The server may hold our key (or did not say): undo.
        shared.release(&keys, &owner).await;
        Err(shared.no_quorum("acquire", vec![failure]))
    }
}
