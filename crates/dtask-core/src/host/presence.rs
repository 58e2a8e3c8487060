//! A worker host's presence in the deployment's
//! [`WorkerRegistry`](crate::infra::WorkerRegistry): a heartbeat renews its
//! entry every third of [`HEARTBEAT_TTL`], and a clean shutdown removes it;
//! a worker that dies is forgotten when its entry expires.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use time::OffsetDateTime;

use super::Host;
use crate::error::{Error, Result};
use crate::infra::{WorkerInfo, WorkerRegistry};
use crate::kernel::Runtime;

/// How long a worker's entry outlives its last heartbeat.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(15);

/// How long a stopping worker waits to remove its entry (it expires anyway).
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// The machine's host name.
pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Announces this worker host until it shuts down, then withdraws it.
pub(super) async fn announce(
    rt: Arc<Runtime>,
    registry: Arc<dyn WorkerRegistry>,
    mut queues: Vec<String>,
    concurrency: usize,
) {
    queues.sort();
    let started_at = OffsetDateTime::now_utc();
    let mut info = WorkerInfo {
        id: rt.node.clone(),
        host: host_name(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        queues,
        concurrency,
        in_flight: 0,
        started_at,
        last_seen: started_at,
    };
    let mut ticks = tokio::time::interval(HEARTBEAT_TTL / 3);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = rt.shutdown.cancelled() => break,
        }
        info.in_flight = rt.in_flight.load(Ordering::Relaxed);
        info.last_seen = OffsetDateTime::now_utc();
        if let Err(error) = registry.heartbeat(&info, HEARTBEAT_TTL).await {
            // The next beat tries again; meanwhile the worker may look gone.
            tracing::warn!(%error, "could not renew this worker's entry in the registry");
        }
    }
    match tokio::time::timeout(DEREGISTER_TIMEOUT, registry.deregister(&info.id)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "could not remove this worker's entry; it expires"),
        Err(_) => tracing::debug!("removing this worker's entry timed out; it expires"),
    }
}

impl Host {
    /// The workers of the deployment that have announced themselves and
    /// not expired, by id.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the host has no worker registry (a
    /// Distributed host built without one); a backend error.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        let registry = self.inner.rt.infra.workers.as_ref().ok_or_else(|| {
            Error::Unsupported("this host has no worker registry (HostBuilder::worker_registry)".into())
        })?;
        registry.workers().await
    }
}
