//! [`MemoryLock`]: leases on named resources, with expiry on tokio's clock
//! and fencing tokens.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::lock_mutex;
use crate::error::{Error, Result};
use crate::infra::{DistributedLock, LockGuard, LockLease};

/// The live grant of one resource.
struct Entry {
    token: u64,
    expires_at: Instant,
}

#[derive(Default)]
struct Inner {
    entries: Mutex<HashMap<String, Entry>>,
    /// The last token granted; the first grant gets 1.
    last_token: AtomicU64,
}

/// A [`DistributedLock`] inside one process: leases kept in a map, with
/// real expiry.
///
/// A lease lasts its time-to-live unless extended or released; once it has
/// expired, the resource can be taken by another holder and the old lease
/// can no longer be extended. Expiry is measured on
/// [`tokio::time::Instant`], so tests running on tokio's paused clock can
/// move time forward with `tokio::time::advance`.
///
/// Every grant gets a fencing token from one counter shared by all
/// resources of this lock: tokens start at 1 and strictly increase.
/// Dropping a [`LockGuard`] releases its lease at once.
///
/// Clones share their leases.
#[derive(Clone, Default)]
pub struct MemoryLock {
    inner: Arc<Inner>,
}

impl MemoryLock {
    /// A lock with no leases.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `resource` is held by a live (unexpired) lease.
    pub fn is_held(&self, resource: &str) -> bool {
        let now = Instant::now();
        lock_mutex(&self.inner.entries)
            .get(resource)
            .is_some_and(|entry| entry.expires_at > now)
    }
}

impl fmt::Debug for MemoryLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLock")
            .field("leases", &lock_mutex(&self.inner.entries).len())
            .field("last_token", &self.inner.last_token.load(Ordering::Relaxed))
            .finish()
    }
}

/// `now + ttl`, saturating at a date far enough never to come.
fn deadline(now: Instant, ttl: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
    now.checked_add(ttl).or_else(|| now.checked_add(FAR)).unwrap_or(now)
}

fn check_ttl(ttl: Duration) -> Result<()> {
    if ttl.is_zero() {
        return Err(Error::invalid("lock ttl", "the time-to-live is zero"));
    }
    Ok(())
}

#[async_trait]
impl DistributedLock for MemoryLock {
    /// Takes `resource` for `ttl` unless a live lease holds it.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a zero `ttl`.
    ///
    /// # Cancel safety
    /// The call completes without waiting, so it cannot be cancelled
    /// half-way.
    async fn try_acquire(&self, resource: &str, ttl: Duration) -> Result<Option<LockGuard>> {
        check_ttl(ttl)?;
        let now = Instant::now();
        let token = {
            let mut entries = lock_mutex(&self.inner.entries);
            if entries.get(resource).is_some_and(|e| e.expires_at > now) {
                return Ok(None);
            }
            // Taken under the map's lock, so grants of one resource get
            // their tokens in the order they are made.
            let token = self.inner.last_token.fetch_add(1, Ordering::Relaxed) + 1;
            let entry = Entry {
                token,
                expires_at: deadline(now, ttl),
            };
            entries.insert(resource.to_owned(), entry);
            token
        };
        Ok(Some(LockGuard::new(MemoryLease {
            inner: Arc::clone(&self.inner),
            resource: resource.to_owned(),
            token,
            released: false,
        })))
    }
}

/// One grant of a [`MemoryLock`].
struct MemoryLease {
    inner: Arc<Inner>,
    resource: String,
    token: u64,
    released: bool,
}

impl MemoryLease {
    /// Removes the entry if it is still ours (expired or not: an expired
    /// entry with our token has not been taken over).
    fn release_now(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        let mut entries = lock_mutex(&self.inner.entries);
        if entries.get(&self.resource).is_some_and(|e| e.token == self.token) {
            entries.remove(&self.resource);
        }
    }
}

#[async_trait]
impl LockLease for MemoryLease {
    fn resource(&self) -> &str {
        &self.resource
    }

    fn fencing_token(&self) -> u64 {
        self.token
    }

    async fn extend(&self, ttl: Duration) -> Result<()> {
        check_ttl(ttl)?;
        let now = Instant::now();
        let mut entries = lock_mutex(&self.inner.entries);
        match entries.get_mut(&self.resource) {
            Some(entry) if !self.released && entry.token == self.token && entry.expires_at > now => {
                entry.expires_at = deadline(now, ttl);
                Ok(())
            }
            _ => Err(Error::LockLost {
                resource: self.resource.clone(),
            }),
        }
    }

    async fn release(&mut self) -> Result<()> {
        self.release_now();
        Ok(())
    }
}

impl Drop for MemoryLease {
    fn drop(&mut self) {
        self.release_now();
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::advance;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn a_lease_expires_exactly_at_its_ttl() {
        let lock = MemoryLock::new();
        let first = lock.try_acquire("job", SECOND).await.unwrap().unwrap();
        advance(Duration::from_millis(999)).await;
        assert!(lock.try_acquire("job", SECOND).await.unwrap().is_none());
        assert!(lock.is_held("job"));

        advance(Duration::from_millis(1)).await;
        assert!(!lock.is_held("job"));
        let second = lock.try_acquire("job", SECOND).await.unwrap().unwrap();
        assert!(second.fencing_token() > first.fencing_token());
        assert!(matches!(first.extend(SECOND).await, Err(Error::LockLost { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_holder_cannot_release_the_new_holder() {
        let lock = MemoryLock::new();
        let stale = lock.try_acquire("job", SECOND).await.unwrap().unwrap();
        advance(2 * SECOND).await;
        let fresh = lock.try_acquire("job", SECOND).await.unwrap().unwrap();

        stale.release().await.unwrap();
        assert!(lock.is_held("job"), "released by the stale holder");
        fresh.extend(10 * SECOND).await.unwrap();
        advance(5 * SECOND).await;
        assert!(lock.is_held("job"), "the extension did not hold");
    }

    #[tokio::test(start_paused = true)]
    async fn extending_pushes_the_expiry_from_now() {
        let lock = MemoryLock::new();
        let guard = lock.try_acquire("job", SECOND).await.unwrap().unwrap();
        advance(Duration::from_millis(800)).await;
        guard.extend(SECOND).await.unwrap();
        advance(Duration::from_millis(800)).await;
        assert!(lock.is_held("job"));
        advance(Duration::from_millis(200)).await;
        assert!(!lock.is_held("job"));
    }

    #[tokio::test]
    async fn tokens_start_at_one_and_are_shared_across_resources() {
        let lock = MemoryLock::new();
        let a = lock.try_acquire("a", SECOND).await.unwrap().unwrap();
        let b = lock.try_acquire("b", SECOND).await.unwrap().unwrap();
        assert_eq!((a.fencing_token(), b.fencing_token()), (1, 2));
        drop(a);
        assert!(!lock.is_held("a"), "dropping the guard releases it");
        assert!(lock.is_held("b"));
    }

    #[tokio::test]
    async fn a_huge_ttl_does_not_overflow() {
        let lock = MemoryLock::new();
        let guard = lock.try_acquire("job", Duration::MAX).await.unwrap();
        assert!(guard.is_some());
        assert!(lock.is_held("job"));
    }
}
