//! The workers of a deployment, as they announce themselves: each worker
//! host renews its entry on a heartbeat, and an entry not renewed in time
//! expires (the worker died or was cut off).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::Result;

/// A worker, as its last heartbeat described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerInfo {
    /// The worker's id: its host's node name (`<host name>:<pid>` unless
    /// the builder named it), as step attempts and audit entries name it.
    pub id: String,
    /// The machine's host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The dtask version the worker runs.
    pub version: String,
    /// The queues it consumes.
    pub queues: Vec<String>,
    /// How many tasks it runs at once.
    pub concurrency: usize,
    /// How many deliveries it holds now.
    pub in_flight: usize,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it last announced itself.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
}

/// Where workers announce themselves (a key with an expiry in the progress
/// backend). An optional capability of a deployment
/// ([`Infrastructure::workers`](super::Infrastructure::workers)).
#[async_trait]
pub trait WorkerRegistry: Send + Sync + fmt::Debug + 'static {
    /// Records `worker` (replacing its previous entry), to be forgotten
    /// unless renewed within `ttl`.
    async fn heartbeat(&self, worker: &WorkerInfo, ttl: Duration) -> Result<()>;

    /// Forgets worker `id` at once (a worker stopping cleanly); a no-op for
    /// an unknown one.
    async fn deregister(&self, id: &str) -> Result<()>;

    /// The workers whose entries have not expired, by id.
    async fn workers(&self) -> Result<Vec<WorkerInfo>>;
}
