//! Conformance checks for [`IdempotencyStore`] backends.

use std::time::Duration;

use crate::Error;
use crate::id::TaskId;
use crate::infra::IdempotencyStore;

use super::unique_name;

/// Runs every check.
pub async fn run_all(store: &dyn IdempotencyStore) {
    first_claim_wins(store).await;
    finish_records_the_fingerprint(store).await;
    release_frees_the_key(store).await;
    expiry(store).await;
}

/// The first claim gets `None`; later ones get its record.
pub async fn first_claim_wins(store: &dyn IdempotencyStore) {
    let key = unique_name("idem");
    let first = TaskId::new();
    assert_eq!(store.claim(&key, first, Duration::from_secs(60)).await.unwrap(), None);
    let again = store.claim(&key, TaskId::new(), Duration::from_secs(60)).await.unwrap();
    let record = again.expect("a second claim sees the first");
    assert_eq!(record.task_id, first);
    assert_eq!(record.fingerprint, None, "no fingerprint before finish");
}

/// `finish` stores the fingerprint; finishing an unknown key is not found.
pub async fn finish_records_the_fingerprint(store: &dyn IdempotencyStore) {
    let key = unique_name("idem");
    let task = TaskId::new();
    store.claim(&key, task, Duration::from_secs(60)).await.unwrap();
    store.finish(&key, "sha256:abc").await.unwrap();
    let record = store
        .claim(&key, TaskId::new(), Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.fingerprint.as_deref(), Some("sha256:abc"));
    assert_eq!(record.task_id, task);
    let missing = store.finish(&unique_name("idem"), "x").await.unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing}");
}

/// A released key can be claimed anew; releasing twice is fine.
pub async fn release_frees_the_key(store: &dyn IdempotencyStore) {
    let key = unique_name("idem");
    store.claim(&key, TaskId::new(), Duration::from_secs(60)).await.unwrap();
    store.release(&key).await.unwrap();
    store.release(&key).await.unwrap();
    assert_eq!(
        store.claim(&key, TaskId::new(), Duration::from_secs(60)).await.unwrap(),
        None
    );
}

/// A key is forgotten after its time-to-live (real time: remote stores
/// cannot be paused).
pub async fn expiry(store: &dyn IdempotencyStore) {
    let key = unique_name("idem");
    store
        .claim(&key, TaskId::new(), Duration::from_millis(200))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        store.claim(&key, TaskId::new(), Duration::from_secs(60)).await.unwrap(),
        None,
        "an expired key can be claimed again"
    );
}
