//! Conformance checks for [`WorkerRegistry`] backends.

use std::time::Duration;

use time::OffsetDateTime;

use super::{PATIENCE, unique_name};
use crate::infra::{WorkerInfo, WorkerRegistry};

/// Runs every check.
pub async fn run_all(registry: &dyn WorkerRegistry) {
    heartbeat_lists_the_worker(registry).await;
    heartbeat_replaces_the_entry(registry).await;
    deregister_forgets_at_once(registry).await;
    expires_unless_renewed(registry).await;
}

/// A worker described in full, with a unique id.
fn worker() -> WorkerInfo {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    WorkerInfo {
        id: unique_name("worker"),
        host: "conformance-host".into(),
        pid: 4242,
        version: "0.1.0".into(),
        queues: vec!["file-processing".into(), "video-processing".into()],
        concurrency: 8,
        in_flight: 3,
        started_at: now,
        last_seen: now,
    }
}

async fn listed(registry: &dyn WorkerRegistry, id: &str) -> Option<WorkerInfo> {
    let workers = registry.workers().await.expect("listing workers");
    workers.into_iter().find(|w| w.id == id)
}

/// A heartbeat makes the worker listed, every field intact.
pub async fn heartbeat_lists_the_worker(registry: &dyn WorkerRegistry) {
    let worker = worker();
    registry
        .heartbeat(&worker, Duration::from_secs(60))
        .await
        .expect("heartbeat");
    assert_eq!(
        listed(registry, &worker.id).await,
        Some(worker.clone()),
        "the worker is listed intact"
    );
    registry.deregister(&worker.id).await.expect("deregister");
}

/// A later heartbeat replaces the entry (its in-flight count, its time).
pub async fn heartbeat_replaces_the_entry(registry: &dyn WorkerRegistry) {
    let mut worker = worker();
    registry
        .heartbeat(&worker, Duration::from_secs(60))
        .await
        .expect("heartbeat");
    worker.in_flight = 0;
    worker.last_seen += Duration::from_secs(5);
    registry
        .heartbeat(&worker, Duration::from_secs(60))
        .await
        .expect("heartbeat");
    let entries = registry.workers().await.expect("listing workers");
    let mine: Vec<_> = entries.iter().filter(|w| w.id == worker.id).collect();
    assert_eq!(mine.len(), 1, "one entry per worker: {mine:?}");
    assert_eq!(mine[0], &worker, "the newest heartbeat wins");
    registry.deregister(&worker.id).await.expect("deregister");
}

/// Deregistering forgets the worker at once; twice is fine.
pub async fn deregister_forgets_at_once(registry: &dyn WorkerRegistry) {
    let worker = worker();
    registry
        .heartbeat(&worker, Duration::from_secs(60))
        .await
        .expect("heartbeat");
    registry.deregister(&worker.id).await.expect("deregister");
    assert_eq!(
        listed(registry, &worker.id).await,
        None,
        "a deregistered worker is not listed"
    );
    registry.deregister(&worker.id).await.expect("deregistering again");
}

/// An entry not renewed within its time-to-live is no longer listed (real
/// time: expiry is the property under test).
pub async fn expires_unless_renewed(registry: &dyn WorkerRegistry) {
    let worker = worker();
    registry
        .heartbeat(&worker, Duration::from_secs(1))
        .await
        .expect("heartbeat");
    assert!(listed(registry, &worker.id).await.is_some(), "listed before it expires");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while listed(registry, &worker.id).await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a worker whose heartbeat expired is still listed after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
