//! [`MemoryStateStore`]: saga snapshots in memory, fenced by lock tokens.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock_mutex;
use crate::error::{Error, Result};
use crate::id::TaskId;
use crate::infra::{SagaStateStore, StoredState};

/// A [`SagaStateStore`] keeping each task's latest snapshot in memory.
///
/// A save carrying a smaller fencing token than the stored snapshot's is
/// refused with [`Error::Fenced`]; an equal or larger one replaces it.
/// Payloads are kept as they are, so an in-memory payload is never
/// serialized.
#[derive(Default)]
pub struct MemoryStateStore {
    states: Mutex<HashMap<TaskId, StoredState>>,
}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many snapshots the store holds.
    pub fn len(&self) -> usize {
        lock_mutex(&self.states).len()
    }

    /// Whether the store holds no snapshot.
    pub fn is_empty(&self) -> bool {
        lock_mutex(&self.states).is_empty()
    }
}

impl fmt::Debug for MemoryStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStateStore").field("states", &self.len()).finish()
    }
}

#[async_trait]
impl SagaStateStore for MemoryStateStore {
    /// Replaces the task's snapshot unless a larger fencing token wrote
    /// before.
    ///
    /// # Errors
    /// [`Error::Fenced`] as above.
    async fn save(&self, task_id: TaskId, state: StoredState) -> Result<()> {
        match lock_mutex(&self.states).entry(task_id) {
            Entry::Occupied(stored) if stored.get().fence > state.fence => Err(Error::Fenced {
                presented: state.fence,
                current: stored.get().fence,
            }),
            Entry::Occupied(mut stored) => {
                stored.insert(state);
                Ok(())
            }
            Entry::Vacant(slot) => {
                slot.insert(state);
                Ok(())
            }
        }
    }

    async fn load(&self, task_id: TaskId) -> Result<Option<StoredState>> {
        Ok(lock_mutex(&self.states).get(&task_id).cloned())
    }

    async fn delete(&self, task_id: TaskId) -> Result<()> {
        lock_mutex(&self.states).remove(&task_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Payload;

    fn state(fence: u64, value: u32) -> StoredState {
        StoredState {
            fence,
            payload: Payload::in_memory(value),
        }
    }

    #[tokio::test]
    async fn in_memory_payloads_are_kept_as_they_are() {
        let store = MemoryStateStore::new();
        let id = TaskId::new();
        store.save(id, state(1, 42)).await.unwrap();
        let loaded = store.load(id).await.unwrap().unwrap();
        assert_eq!(loaded.payload.decode::<u32>().unwrap(), 42);
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn a_deleted_snapshot_no_longer_fences() {
        let store = MemoryStateStore::new();
        let id = TaskId::new();
        store.save(id, state(9, 1)).await.unwrap();
        store.delete(id).await.unwrap();
        assert!(store.is_empty());
        store.save(id, state(0, 2)).await.unwrap();
        assert_eq!(store.load(id).await.unwrap().unwrap().fence, 0);
    }
}
