//! [`MemoryStateStore`]: saga snapshots in memory, fenced by lock tokens.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
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
///
/// The states of ended tasks are kept for the newest
/// [`DEFAULT_RETENTION`](Self::DEFAULT_RETENTION) ended tasks ([`with_retention`](Self::with_retention)
/// to change it), as the in-memory progress tracker keeps their progress, so
/// a long-running InProcess server does not grow without bound. States of
/// live tasks are always kept.
pub struct MemoryStateStore {
    inner: Mutex<Inner>,
    retention: usize,
}

#[derive(Default)]
struct Inner {
    states: HashMap<TaskId, StoredState>,
    /// Ended tasks, oldest first.
    ended: VecDeque<TaskId>,
}

impl Default for MemoryStateStore {
    fn default() -> Self {
        Self::with_retention(Self::DEFAULT_RETENTION)
    }
}

impl MemoryStateStore {
    /// How many ended tasks' states [`new`](Self::new) keeps.
    pub const DEFAULT_RETENTION: usize = 10_000;

    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store keeping the states of the newest `retention` ended
    /// tasks.
    pub fn with_retention(retention: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            retention,
        }
    }

    /// How many snapshots the store holds.
    pub fn len(&self) -> usize {
        lock_mutex(&self.inner).states.len()
    }

    /// Whether the store holds no snapshot.
    pub fn is_empty(&self) -> bool {
        lock_mutex(&self.inner).states.is_empty()
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
        match lock_mutex(&self.inner).states.entry(task_id) {
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
        Ok(lock_mutex(&self.inner).states.get(&task_id).cloned())
    }

    async fn delete(&self, task_id: TaskId) -> Result<()> {
        lock_mutex(&self.inner).states.remove(&task_id);
        Ok(())
    }

    /// Drops the state of the oldest ended task once more than the
    /// retention have ended.
    async fn ended(&self, task_id: TaskId) -> Result<()> {
        let mut inner = lock_mutex(&self.inner);
        inner.ended.push_back(task_id);
        while inner.ended.len() > self.retention {
            if let Some(oldest) = inner.ended.pop_front() {
                inner.states.remove(&oldest);
            }
        }
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
    async fn only_the_newest_ended_states_are_kept() {
        let store = MemoryStateStore::with_retention(2);
        let live = TaskId::new();
        store.save(live, state(1, 0)).await.unwrap();
        let ended: Vec<TaskId> = (0..3).map(|_| TaskId::new()).collect();
        for (i, id) in ended.iter().enumerate() {
            store.save(*id, state(1, i as u32)).await.unwrap();
            store.ended(*id).await.unwrap();
        }
        assert!(
            store.load(ended[0]).await.unwrap().is_none(),
            "the oldest ended state is gone"
        );
        assert!(store.load(ended[1]).await.unwrap().is_some());
        assert!(store.load(ended[2]).await.unwrap().is_some());
        assert!(store.load(live).await.unwrap().is_some(), "a live task's state is kept");
        assert_eq!(store.len(), 3);
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
