//! [`MemoryIdempotencyStore`]: idempotency keys in memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::id::TaskId;
use crate::infra::{IdempotencyRecord, IdempotencyStore};

/// Idempotency keys in a map, each forgotten after its time-to-live.
/// Expired keys are swept on every claim.
#[derive(Debug, Default)]
pub struct MemoryIdempotencyStore {
    keys: Mutex<HashMap<String, (IdempotencyRecord, Instant)>>,
}

impl MemoryIdempotencyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, (IdempotencyRecord, Instant)>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotencyStore {
    async fn claim(&self, key: &str, task_id: TaskId, ttl: Duration) -> Result<Option<IdempotencyRecord>> {
        let now = Instant::now();
        let mut keys = self.keys();
        keys.retain(|_, (_, expires)| *expires > now);
        if let Some((record, _)) = keys.get(key) {
            return Ok(Some(record.clone()));
        }
        let record = IdempotencyRecord {
            task_id,
            fingerprint: None,
        };
        keys.insert(key.to_owned(), (record, now + ttl));
        Ok(None)
    }

    async fn finish(&self, key: &str, fingerprint: &str) -> Result<()> {
        let now = Instant::now();
        match self.keys().get_mut(key) {
            Some((record, expires)) if *expires > now => {
                record.fingerprint = Some(fingerprint.to_owned());
                Ok(())
            }
            _ => Err(Error::not_found(format!("idempotency key `{key}`"))),
        }
    }

    async fn release(&self, key: &str) -> Result<()> {
        self.keys().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn keys_expire_after_their_ttl() {
        let store = MemoryIdempotencyStore::new();
        let first = TaskId::new();
        assert_eq!(store.claim("k", first, Duration::from_secs(10)).await.unwrap(), None);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            store.claim("k", TaskId::new(), Duration::from_secs(10)).await.unwrap(),
            None
        );
    }
}
