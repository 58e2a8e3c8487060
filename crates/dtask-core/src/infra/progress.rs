//! The progress tracker: the latest [`TaskProgress`] of every task, and a
//! live stream of its changes.

use std::fmt;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::Result;
use crate::id::TaskId;
use crate::progress::{TaskProgress, TaskStatus};

/// A live stream of one task's snapshots: the current one first, then every
/// change, ending after the terminal one.
pub type ProgressStream = BoxStream<'static, TaskProgress>;

/// Which tasks [`ProgressTracker::list`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressQuery {
    /// Only tasks in this state.
    pub status: Option<TaskStatus>,
    /// Only tasks of this declared name.
    pub task_name: Option<String>,
    /// Only tasks this subject submitted
    /// ([`TaskProgress::submitter`](crate::TaskProgress::submitter)).
    pub submitter: Option<String>,
    /// Tasks to skip, newest first.
    pub offset: usize,
    /// At most this many.
    pub limit: usize,
}

impl Default for ProgressQuery {
    fn default() -> Self {
        Self {
            status: None,
            task_name: None,
            submitter: None,
            offset: 0,
            limit: 50,
        }
    }
}

/// One page of [`ProgressTracker::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressPage {
    /// The tasks, newest first.
    pub items: Vec<TaskProgress>,
    /// How many tasks match the query in all.
    pub total: usize,
}

/// Keeps each task's latest progress snapshot and streams its changes.
///
/// Snapshots are ordered by [`TaskProgress::revision`]: an `update` older
/// than the stored snapshot is ignored, so a late write from a worker that
/// lost its lease cannot roll progress back. The cancellation flag set by
/// [`request_cancellation`](Self::request_cancellation) is sticky: later
/// updates keep it.
#[async_trait]
pub trait ProgressTracker: Send + Sync + fmt::Debug + 'static {
    /// Records the first snapshot of a task.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) when the task
    /// is known.
    async fn init(&self, progress: &TaskProgress) -> Result<()>;

    /// Records a newer snapshot and sends it to the task's streams.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) for an unknown task.
    async fn update(&self, progress: &TaskProgress) -> Result<()>;

    /// Records the terminal snapshot, sends it, and ends the task's
    /// streams.
    ///
    /// # Errors
    /// [`Error::Invalid`](crate::Error::Invalid) when the snapshot is not
    /// terminal; [`Error::NotFound`](crate::Error::NotFound) for an
    /// unknown task.
    async fn complete(&self, progress: &TaskProgress) -> Result<()>;

    /// The latest snapshot, if the task is known.
    async fn get(&self, task_id: TaskId) -> Result<Option<TaskProgress>>;

    /// The current snapshot followed by every change, with none lost in
    /// between; ends after the terminal snapshot (at once, after yielding
    /// it, for a task that has ended).
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) for an unknown task.
    async fn stream(&self, task_id: TaskId) -> Result<ProgressStream>;

    /// Marks the task as asked to cancel and tells its streams. Returns the
    /// snapshot after the change (unchanged for an ended task).
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) for an unknown task.
    async fn request_cancellation(&self, task_id: TaskId) -> Result<TaskProgress>;

    /// Known tasks, newest first.
    async fn list(&self, query: &ProgressQuery) -> Result<ProgressPage>;

    /// Checks that the backend answers (used by readiness probes).
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
