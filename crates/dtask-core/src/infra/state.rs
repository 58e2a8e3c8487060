//! The saga state store: the latest snapshot of each task's saga state,
//! from which a task resumes after a crash.

use std::fmt;

use async_trait::async_trait;

use crate::codec::Payload;
use crate::error::Result;
use crate::id::TaskId;

/// A snapshot as stored: its payload and the fencing token of the writer.
#[derive(Debug, Clone)]
pub struct StoredState {
    /// The writer's fencing token: 0 for the API side (which holds no
    /// lock), the worker's lock token otherwise.
    pub fence: u64,
    /// The encoded (or, in memory, typed) saga state.
    pub payload: Payload,
}

/// Keeps the latest saga snapshot of each task.
#[async_trait]
pub trait SagaStateStore: Send + Sync + fmt::Debug + 'static {
    /// Replaces the task's snapshot.
    ///
    /// # Errors
    /// [`Error::Fenced`](crate::Error::Fenced) when a snapshot with a
    /// larger fencing token was saved before: the writer's lease has lapsed
    /// and a newer holder owns the task.
    async fn save(&self, task_id: TaskId, state: StoredState) -> Result<()>;

    /// Saves each state, as [`save`](Self::save) does; one result per
    /// state, in order. A backend that can send them together does; the
    /// default saves one after the other.
    async fn save_many(&self, states: Vec<(TaskId, StoredState)>) -> Vec<Result<()>> {
        let mut results = Vec::with_capacity(states.len());
        for (task_id, state) in states {
            results.push(self.save(task_id, state).await);
        }
        results
    }

    /// The task's latest snapshot.
    async fn load(&self, task_id: TaskId) -> Result<Option<StoredState>>;

    /// Forgets the task's snapshot (a no-op for an unknown task).
    async fn delete(&self, task_id: TaskId) -> Result<()>;

    /// Told once a task has ended and its final state is saved. A store
    /// may then let the state go after its retention (until then it serves
    /// the task's result and downloads). The default keeps it.
    ///
    /// # Errors
    /// A backend error.
    async fn ended(&self, task_id: TaskId) -> Result<()> {
        let _ = task_id;
        Ok(())
    }

    /// Checks that the backend answers (used by readiness probes).
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
