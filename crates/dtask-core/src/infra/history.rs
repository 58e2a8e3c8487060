//! The task history: a durable account of every task (its row, its step
//! attempts, its conditions' snapshots, its audit log), kept after the
//! progress tracker forgot the task.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::Result;
use crate::history::{HistoryPage, HistoryQuery, HistoryRecord, TaskHistoryDetail};
use crate::id::TaskId;

/// Keeps the history of tasks, written by the kernel in batches as events
/// happen ([`HostBuilder::history`](crate::HostBuilder::history)).
///
/// Every write is idempotent: a task row is replaced only by a newer
/// revision, an attempt row is keyed by task, step, kind and attempt, an
/// audit entry by its id, so a batch written twice (its first write's
/// answer was lost) changes nothing.
#[async_trait]
pub trait TaskHistory: Send + Sync + fmt::Debug + 'static {
    /// Keeps `batch`, all of it or (on error) none of it.
    ///
    /// # Errors
    /// A backend error; the writer keeps the batch and tries again.
    async fn write(&self, batch: &[HistoryRecord]) -> Result<()>;

    /// The tasks matching `query`, newest first (by creation time, then
    /// id), after its cursor.
    ///
    /// # Errors
    /// A backend error.
    async fn list(&self, query: &HistoryQuery) -> Result<HistoryPage>;

    /// Everything kept about `task_id`; `None` when its row is not kept.
    ///
    /// # Errors
    /// A backend error.
    async fn task(&self, task_id: TaskId) -> Result<Option<TaskHistoryDetail>>;

    /// Deletes up to `limit` tasks that ended before `ended_before`, with
    /// their attempts, conditions and audit entries; returns how many.
    ///
    /// # Errors
    /// A backend error.
    async fn purge(&self, ended_before: OffsetDateTime, limit: usize) -> Result<usize>;
}
