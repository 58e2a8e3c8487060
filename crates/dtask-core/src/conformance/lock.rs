//! Checks for [`DistributedLock`] backends.
//!
//! Every check locks resources of its own, named by
//! [`unique_name`]. The expiry checks run on real time
//! (a remote server's clock cannot be paused) and sleep briefly past short
//! time-to-lives: expiry is the property they test.

use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::{PATIENCE, unique_name};
use crate::error::Error;
use crate::infra::{DistributedLock, LockGuard};

/// A time-to-live long enough never to elapse during a check.
pub(super) const LONG: Duration = Duration::from_secs(30);

/// Runs every check of this module against `lock`.
pub async fn run_all(lock: &dyn DistributedLock) {
    acquire_and_contend(lock).await;
    release_allows_reacquire(lock).await;
    drop_releases(lock).await;
    expiry_is_real(lock).await;
    extend_keeps_the_lease(lock).await;
    fencing_tokens_increase(lock).await;
    zero_ttl_is_invalid(lock).await;
}

pub(super) fn resource() -> String {
    unique_name("dtask-conformance-lock")
}

pub(super) async fn acquire(lock: &dyn DistributedLock, resource: &str, ttl: Duration) -> LockGuard {
    lock.try_acquire(resource, ttl)
        .await
        .unwrap_or_else(|e| panic!("try_acquire {resource}: {e}"))
        .unwrap_or_else(|| panic!("{resource} should be free"))
}

pub(super) async fn assert_held(lock: &dyn DistributedLock, resource: &str, what: &str) {
    let second = lock
        .try_acquire(resource, LONG)
        .await
        .unwrap_or_else(|e| panic!("{what}: try_acquire: {e}"));
    assert!(second.is_none(), "{what}: a held lock was granted again: {second:?}");
}

/// Polls `try_acquire` until it grants the lock (remote backends may
/// release in the background), for at most [`PATIENCE`].
async fn acquire_eventually(lock: &dyn DistributedLock, resource: &str, what: &str) -> LockGuard {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let granted = lock
            .try_acquire(resource, LONG)
            .await
            .unwrap_or_else(|e| panic!("{what}: try_acquire: {e}"));
        if let Some(guard) = granted {
            return guard;
        }
        assert!(Instant::now() < deadline, "{what}: still held after {PATIENCE:?}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// A held lock is not granted again.
pub async fn acquire_and_contend(lock: &dyn DistributedLock) {
    let resource = resource();
    let guard = acquire(lock, &resource, LONG).await;
    assert_eq!(guard.resource(), resource, "the guard names its resource");
    assert_held(lock, &resource, "second acquire").await;
    guard.release().await.expect("release failed");
}

/// After a release the lock can be taken again at once.
pub async fn release_allows_reacquire(lock: &dyn DistributedLock) {
    let resource = resource();
    let guard = acquire(lock, &resource, LONG).await;
    guard.release().await.expect("release failed");
    let again = lock
        .try_acquire(&resource, LONG)
        .await
        .expect("try_acquire after release");
    let again = again.unwrap_or_else(|| panic!("a released lock must be free at once"));
    again.release().await.expect("second release failed");
}

/// Dropping a guard releases the lock (possibly in the background).
pub async fn drop_releases(lock: &dyn DistributedLock) {
    let resource = resource();
    drop(acquire(lock, &resource, LONG).await);
    let again = acquire_eventually(lock, &resource, "after a dropped guard").await;
    again.release().await.expect("release failed");
}

/// A lease not extended expires: another holder takes the lock, and the
/// old lease can neither be extended nor release the new holder's.
pub async fn expiry_is_real(lock: &dyn DistributedLock) {
    let resource = resource();
    let stale = acquire(lock, &resource, Duration::from_millis(200)).await;
    assert_held(lock, &resource, "before expiry").await;
    sleep(Duration::from_millis(400)).await;

    let fresh = lock
        .try_acquire(&resource, LONG)
        .await
        .expect("try_acquire after expiry");
    let fresh = fresh.unwrap_or_else(|| panic!("an expired lease must let another holder in"));
    assert!(
        fresh.fencing_token() > stale.fencing_token(),
        "a takeover must get a larger fencing token ({} after {})",
        fresh.fencing_token(),
        stale.fencing_token()
    );
    let extended = stale.extend(LONG).await;
    assert!(
        matches!(extended, Err(Error::LockLost { .. })),
        "extending an expired, taken-over lease must be LockLost, got {extended:?}"
    );
    stale.release().await.expect("releasing an expired lease is a no-op");
    assert_held(lock, &resource, "after the stale holder released").await;
    fresh.release().await.expect("release failed");
}

/// Extending a lease keeps it past its first time-to-live.
pub async fn extend_keeps_the_lease(lock: &dyn DistributedLock) {
    let resource = resource();
    let guard = acquire(lock, &resource, Duration::from_millis(300)).await;
    guard.extend(Duration::from_secs(2)).await.expect("extend failed");
    sleep(Duration::from_millis(500)).await;
    assert_held(lock, &resource, "after extending").await;
    guard.extend(LONG).await.expect("a live lease extends again");
    guard.release().await.expect("release failed");
}

/// Every grant of a resource carries a larger token than the last.
pub async fn fencing_tokens_increase(lock: &dyn DistributedLock) {
    let resource = resource();
    let mut last = 0;
    for round in 0..5 {
        let guard = acquire(lock, &resource, LONG).await;
        let token = guard.fencing_token();
        assert!(token > last, "grant {round}: token {token} is not above {last}");
        last = token;
        guard.release().await.expect("release failed");
    }
}

/// A zero time-to-live is rejected.
pub async fn zero_ttl_is_invalid(lock: &dyn DistributedLock) {
    let resource = resource();
    let result = lock.try_acquire(&resource, Duration::ZERO).await;
    assert!(
        matches!(result, Err(Error::Invalid { .. })),
        "a zero ttl must be Error::Invalid, got {result:?}"
    );
    let guard = acquire(lock, &resource, LONG).await;
    guard.release().await.expect("release failed");
}
