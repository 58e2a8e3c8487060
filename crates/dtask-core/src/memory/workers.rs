//! [`MemoryWorkerRegistry`]: the workers of one process, in memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::error::Result;
use crate::infra::{WorkerInfo, WorkerRegistry};

/// Worker entries in a map, each forgotten when its time-to-live passes
/// unrenewed.
#[derive(Debug, Default)]
pub struct MemoryWorkerRegistry {
    workers: Mutex<HashMap<String, (WorkerInfo, Instant)>>,
}

impl MemoryWorkerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, (WorkerInfo, Instant)>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl WorkerRegistry for MemoryWorkerRegistry {
    async fn heartbeat(&self, worker: &WorkerInfo, ttl: Duration) -> Result<()> {
        let expires = Instant::now() + ttl;
        self.workers().insert(worker.id.clone(), (worker.clone(), expires));
        Ok(())
    }

    async fn deregister(&self, id: &str) -> Result<()> {
        self.workers().remove(id);
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        let now = Instant::now();
        let mut workers = self.workers();
        workers.retain(|_, (_, expires)| *expires > now);
        let mut listed: Vec<WorkerInfo> = workers.values().map(|(info, _)| info.clone()).collect();
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(listed)
    }
}
