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

    /// Records the first snapshot of each task, as [`init`](Self::init)
    /// does; one result per snapshot, in order. A backend that can send
    /// them together does; the default records one after the other.
    async fn init_many(&self, progress: &[TaskProgress]) -> Vec<Result<()>> {
        let mut results = Vec::with_capacity(progress.len());
        for snapshot in progress {
            results.push(self.init(snapshot).await);
        }
        results
    }

    /// Records a newer snapshot and sends it to the task's streams.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) for an unknown task.
    async fn update(&self, progress: &TaskProgress) -> Result<()>;

    /// Records each newer snapshot, as [`update`](Self::update) does; one
    /// result per snapshot, in order. The default records one after the
    /// other.
    async fn update_many(&self, progress: &[TaskProgress]) -> Vec<Result<()>> {
        let mut results = Vec::with_capacity(progress.len());
        for snapshot in progress {
            results.push(self.update(snapshot).await);
        }
        results
    }

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

/// What a [`CancellationFeed`] tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancellationNotice {
    /// A client asked to cancel this task
    /// ([`ProgressTracker::request_cancellation`] of a task not ended).
    Requested(TaskId),
    /// Notices may have been missed (the feed's connection dropped and is
    /// back, or its reader fell behind): whoever follows tasks reads their
    /// cancellation flags again.
    Gap,
}

/// The notices of a [`CancellationFeed`], from the moment it was opened.
pub type CancellationStream = BoxStream<'static, CancellationNotice>;

/// Optional capability of a progress tracker: every cancellation request,
/// of any task, as one feed. A worker follows the cancellations of all the
/// tasks it runs with one subscription instead of one
/// [`ProgressTracker::stream`] per task (three commands a task, on Redis).
#[async_trait]
pub trait CancellationFeed: Send + Sync + fmt::Debug + 'static {
    /// Opens the feed: a notice for every request made after this returns,
    /// or a [`CancellationNotice::Gap`] where some may be missing. The
    /// stream ends only when the tracker is gone.
    ///
    /// # Errors
    /// A backend error when the feed cannot be opened.
    async fn cancellations(&self) -> Result<CancellationStream>;
}
