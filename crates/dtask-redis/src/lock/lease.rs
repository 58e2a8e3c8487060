//! [`RedisLease`]: one grant of a [`RedisLock`](super::RedisLock).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dtask_core::infra::LockLease;
use dtask_core::{Error, Result};

use super::quorum::fan_out;
use super::{LockKeys, LockShared, scripts};
use crate::conn::millis;

/// A granted lease: its owner token is the value of the lock's keys.
pub(crate) struct RedisLease {
    shared: Arc<LockShared>,
    resource: String,
    keys: LockKeys,
    owner: String,
    token: u64,
    released: bool,
}

impl RedisLease {
    pub(crate) fn new(shared: Arc<LockShared>, resource: String, keys: LockKeys, owner: String, token: u64) -> Self {
        Self {
            shared,
            resource,
            keys,
            owner,
            token,
            released: false,
        }
    }
}

#[async_trait]
impl LockLease for RedisLease {
    fn resource(&self) -> &str {
        &self.resource
    }

    fn fencing_token(&self) -> u64 {
        self.token
    }

    /// Extends the lease on every instance where it is still ours; it holds
    /// when a majority did.
    async fn extend(&self, ttl: Duration) -> Result<()> {
        if ttl.is_zero() {
            return Err(Error::invalid("lock ttl", "the time-to-live is zero"));
        }
        let lost = || Error::LockLost {
            resource: self.resource.clone(),
        };
        if self.released {
            return Err(lost());
        }
        let shared = &self.shared;
        let (keys, owner, lease_ms) = (&self.keys, &self.owner, millis(ttl));
        let all = 0..shared.instances.len();
        let answers = fan_out(&shared.instances, all, shared.timeout, |mut conn| async move {
            scripts::EXTEND
                .key(&keys.lock)
                .arg(owner)
                .arg(lease_ms)
                .invoke_async::<i64>(&mut conn)
                .await
        })
        .await;
        let (mut extended, mut refused, mut failures) = (0, 0, Vec::new());
        for (_, answer) in answers {
            match answer {
                Ok(1) => extended += 1,
                Ok(_) => refused += 1,
                Err(failure) => failures.push(failure),
            }
        }
        if extended >= shared.quorum {
            Ok(())
        } else if refused > shared.instances.len() - shared.quorum {
            Err(lost())
        } else {
            Err(shared.no_quorum("extend", failures))
        }
    }

    /// Deletes the lock on every instance where it is still ours.
    ///
    /// # Errors
    /// [`Error::Backend`] when fewer than a majority answered (the lease
    /// then ends when it expires).
    async fn release(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.released, true) {
            return Ok(());
        }
        let (answered, failures) = self.shared.release(&self.keys, &self.owner).await;
        if answered >= self.shared.quorum {
            return Ok(());
        }
        Err(self.shared.no_quorum("release", failures))
    }
}

impl Drop for RedisLease {
    /// Releases the lease in the background when a tokio runtime is
    /// running; otherwise it is left to expire.
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(resource = %self.resource, "no runtime to release the dropped lease; it will expire");
            return;
        };
        let shared = Arc::clone(&self.shared);
        let keys = self.keys.clone();
        let owner = std::mem::take(&mut self.owner);
        let resource = std::mem::take(&mut self.resource);
        runtime.spawn(async move {
            let (answered, failures) = shared.release(&keys, &owner).await;
            if answered < shared.quorum {
                tracing::warn!(%resource, ?failures, "releasing a dropped lease failed; it will expire");
            }
        });
    }
}
