//! [`RedisLock`]: the RedLock algorithm over one or several independent
//! Redis servers, with fencing tokens (see the type's documentation).

mod lease;
mod quorum;
mod scripts;
mod take;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dtask_core::infra::{DistributedLock, LockGuard};
use dtask_core::{Error, Result};
use tokio::time::Instant;

use self::lease::RedisLease;
use self::quorum::{NoQuorum, fan_out};
pub use self::take::RedisLockWithState;
use crate::conn::{Connection, millis};

/// How long a fence counter outlives the lease that last drew from it.
const FENCE_RETENTION: Duration = Duration::from_secs(60 * 60);

/// The names of one resource's keys.
#[derive(Debug, Clone)]
pub(crate) struct LockKeys {
    pub(crate) lock: String,
    pub(crate) fence: String,
}

/// What a lock shares with its leases.
pub(crate) struct LockShared {
    pub(crate) instances: Vec<Connection>,
    pub(crate) quorum: usize,
    pub(crate) prefix: String,
    /// How long one instance may take to answer.
    pub(crate) timeout: Duration,
}

impl LockShared {
    fn keys(&self, resource: &str) -> LockKeys {
        LockKeys {
            lock: format!("{}lock:{{{resource}}}", self.prefix),
            fence: format!("{}fence:{{{resource}}}", self.prefix),
        }
    }

    fn all(&self) -> std::ops::Range<usize> {
        0..self.instances.len()
    }

    /// The error for an action that too many instances failed.
    pub(crate) fn no_quorum(&self, action: &'static str, failures: Vec<String>) -> Error {
        NoQuorum {
            action,
            instances: self.instances.len(),
            quorum: self.quorum,
            failures,
        }
        .into_error()
    }

    /// Deletes the lock on every instance where it is still `owner`'s.
    /// Returns how many instances answered and why the others did not.
    pub(crate) async fn release(&self, keys: &LockKeys, owner: &str) -> (usize, Vec<String>) {
        let answers = fan_out(&self.instances, self.all(), self.timeout, |mut conn| async move {
            scripts::RELEASE
                .key(&keys.lock)
                .arg(owner)
                .invoke_async::<i64>(&mut conn)
                .await
        })
        .await;
        let mut answered = 0;
        let mut failures = Vec::new();
        for (_, answer) in answers {
            match answer {
                Ok(_) => answered += 1,
                Err(failure) => failures.push(failure),
            }
        }
        (answered, failures)
    }
}

/// The time left of a lease of `ttl` taken at `start`, after the clock
/// drift allowance; `None` when nothing is left.
fn validity(start: Instant, ttl: Duration) -> Option<Duration> {
    let drift = ttl / 100 + Duration::from_millis(2);
    ttl.checked_sub(start.elapsed() + drift).filter(|left| !left.is_zero())
}

/// A [`DistributedLock`] on Redis: RedLock over one or several independent
/// servers, with token-checked release and extension and fencing tokens.
///
/// Locks live under `{prefix}lock:{<resource>}` and their fence counters
/// under `{prefix}fence:{<resource>}` (the prefix is `dtask:` unless
/// configured; the braces around the resource are part of the key, a
/// Redis Cluster hash tag that keeps both keys in one slot). Dropping a guard releases the lease in the background; a
/// lease that is not released expires.
///
/// Clones share their connections. Built by
/// [`RedisBackends`](crate::RedisBackends).
///
/// # Acquiring
///
/// A grant writes `SET {prefix}lock:{<resource>} <owner> NX PX <ttl>` with a
/// random owner token (a UUIDv4) on every instance at once, each call
/// bounded by the instance timeout. The lock is granted when a majority
/// (`n / 2 + 1`) of the instances took it and the time spent doing so,
/// plus an allowance for clock drift (1 % of the lease and 2 ms), is less
/// than the lease. Otherwise the partial grants are released at once.
/// With one instance this is a plain `SET NX PX`.
///
/// # Fencing tokens
///
/// The same script that takes the lock on an instance draws that
/// instance's next token for the resource: `max(previous + 1, server time
/// in µs)` from the counter `{prefix}fence:{<resource>}`. The grant's token
/// is the largest of its quorum's, and before the guard is handed out the
/// counter of every instance of the quorum is raised to it (while the
/// lease is still ours there).
///
/// Why tokens increase from one grant to the next: a later grant's quorum
/// and the earlier grant's share at least one instance (two majorities
/// always meet). On that instance the two leases did not overlap: the
/// earlier grant's key was set (and the counter raised to the earlier
/// token) before the later grant could set its own key, which it could
/// only do once the earlier key had expired or been released. So the
/// later grant's draw on that instance is above the earlier token, and its
/// token, the largest of its quorum's draws, is too. The time floor keeps
/// tokens increasing when a counter has been lost (an instance restarted
/// without persistence) or has expired: counters are kept for an hour
/// beyond the lease, so they do not pile up per resource.
///
/// The usual RedLock caveats hold: safety assumes bounded clock drift
/// between the instances, and an instance that restarts without
/// persistence should stay down for a lease time before rejoining.
#[derive(Clone)]
pub struct RedisLock {
    shared: Arc<LockShared>,
}

impl RedisLock {
    pub(crate) fn new(instances: Vec<Connection>, prefix: String, timeout: Duration) -> Self {
        let quorum = instances.len() / 2 + 1;
        Self {
            shared: Arc::new(LockShared {
                instances,
                quorum,
                prefix,
                timeout,
            }),
        }
    }

    /// How many independent instances the lock spans.
    pub fn instances(&self) -> usize {
        self.shared.instances.len()
    }

    /// How many of them must grant a lease: a majority.
    pub fn quorum(&self) -> usize {
        self.shared.quorum
    }

    /// Sends `PING` to every instance.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the instances that did not answer, when
    /// fewer than a majority did.
    pub async fn ping(&self) -> Result<()> {
        let shared = &self.shared;
        let answers = fan_out(&shared.instances, shared.all(), shared.timeout, |mut conn| async move {
            redis::cmd("PING").query_async::<()>(&mut conn).await
        })
        .await;
        let failures: Vec<String> = answers.into_iter().filter_map(|(_, a)| a.err()).collect();
        if shared.instances.len() - failures.len() >= shared.quorum {
            return Ok(());
        }
        Err(shared.no_quorum("ping", failures))
    }

    /// Raises the fence counters of the quorum to `token`; returns whether
    /// a majority did while the lease was still ours.
    async fn raise(&self, keys: &LockKeys, owner: &str, token: &str, granted: Vec<usize>, keep: u64) -> bool {
        let shared = &self.shared;
        let answers = fan_out(&shared.instances, granted, shared.timeout, |mut conn| async move {
            scripts::RAISE
                .key(&keys.lock)
                .key(&keys.fence)
                .arg(owner)
                .arg(token)
                .arg(keep)
                .invoke_async::<i64>(&mut conn)
                .await
        })
        .await;
        answers.iter().filter(|(_, a)| matches!(a, Ok(1))).count() >= shared.quorum
    }
}

impl fmt::Debug for RedisLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<&str> = self.shared.instances.iter().map(|c| c.url.as_str()).collect();
        f.debug_struct("RedisLock")
            .field("instances", &urls)
            .field("quorum", &self.shared.quorum)
            .field("prefix", &self.shared.prefix)
            .finish()
    }
}

#[async_trait]
impl DistributedLock for RedisLock {
    /// Takes `resource` for `ttl` on a majority of the instances.
    ///
    /// One round trip to every instance (concurrently) when it is free or
    /// held; a second one, to the quorum, when there are several
    /// instances; a third to undo partial grants when it is refused.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a zero `ttl`; [`Error::Backend`] naming the
    /// failing instances when so many failed that no majority could be
    /// reached (rather than `None`, which means "held by someone else").
    ///
    /// # Cancel safety
    /// Not cancel safe: a call dropped half-way may leave keys that hold
    /// the resource until `ttl` elapses.
    async fn try_acquire(&self, resource: &str, ttl: Duration) -> Result<Option<LockGuard>> {
        if ttl.is_zero() {
            return Err(Error::invalid("lock ttl", "the time-to-live is zero"));
        }
        let shared = &self.shared;
        let keys = shared.keys(resource);
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let (lease_ms, keep_ms) = (millis(ttl), millis(ttl.saturating_add(FENCE_RETENTION)));
        let start = Instant::now();
        let answers = fan_out(&shared.instances, shared.all(), shared.timeout, |mut conn| {
            let (keys, owner) = (&keys, &owner);
            async move {
                scripts::ACQUIRE
                    .key(&keys.lock)
                    .key(&keys.fence)
                    .arg(owner)
                    .arg(lease_ms)
                    .arg(keep_ms)
                    .invoke_async::<Option<String>>(&mut conn)
                    .await
            }
        })
        .await;

        let (mut granted, mut failures, mut token) = (Vec::new(), Vec::new(), 0u64);
        for (index, answer) in answers {
            match answer.map(|drawn| drawn.map(|t| t.parse::<u64>())) {
                Ok(Some(Ok(drawn))) => {
                    granted.push(index);
                    token = token.max(drawn);
                }
                Ok(Some(Err(e))) => failures.push(format!("{}: bad fencing token: {e}", shared.instances[index].url)),
                Ok(None) => {}
                Err(failure) => failures.push(failure),
            }
        }
        let mut won = granted.len() >= shared.quorum && validity(start, ttl).is_some();
        if won && shared.instances.len() > 1 {
            let raised = self
                .raise(&keys, &owner, &token.to_string(), granted.clone(), keep_ms)
                .await;
            won = raised && validity(start, ttl).is_some();
        }
        if won {
            let lease = RedisLease::new(Arc::clone(shared), resource.to_owned(), keys, owner, token);
            return Ok(Some(LockGuard::new(lease)));
        }
        if !granted.is_empty() || !failures.is_empty() {
            // Some instances may hold our key (or did not say): undo.
            shared.release(&keys, &owner).await;
        }
        if failures.len() > shared.instances.len() - shared.quorum {
            return Err(shared.no_quorum("acquire", failures));
        }
        if granted.len() >= shared.quorum {
            tracing::warn!(
                resource,
                ?ttl,
                "lock granted by a majority too late to be valid; refused"
            );
        }
        Ok(None)
    }

    async fn ping(&self) -> Result<()> {
        RedisLock::ping(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_and_its_fence_share_a_hash_tag() {
        let shared = LockShared {
            instances: Vec::new(),
            quorum: 1,
            prefix: "app:".to_owned(),
            timeout: Duration::from_millis(1),
        };
        let keys = shared.keys("task:42");
        assert_eq!(keys.lock, "app:lock:{task:42}");
        assert_eq!(keys.fence, "app:fence:{task:42}");
    }
}
