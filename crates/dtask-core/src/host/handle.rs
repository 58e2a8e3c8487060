//! Handles on submitted tasks and their outcomes.

use std::marker::PhantomData;

use futures::StreamExt;

use super::Host;
use crate::error::{Error, Result};
use crate::id::TaskId;
use crate::infra::ProgressStream;
use crate::progress::{TaskProgress, TaskStatus};
use crate::task::Task;

/// What came of a cancellation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The task was told to stop; it will compensate and end as cancelled.
    Requested,
    /// The task had already ended, in this state.
    AlreadyEnded(TaskStatus),
    /// The task was not declared `cancellable`.
    NotCancellable,
}

/// How a task ended: its final progress and, when it completed, its
/// response.
#[derive(Debug, Clone)]
pub struct TaskOutcome<R> {
    /// The final progress snapshot (or the current one, if it has not
    /// ended).
    pub progress: TaskProgress,
    /// The response, when the task completed.
    pub response: Option<R>,
}

impl<R> TaskOutcome<R> {
    /// The task's state.
    pub fn status(&self) -> TaskStatus {
        self.progress.status
    }

    /// The response of a completed task, or the error that ended it.
    ///
    /// # Errors
    /// [`Error::Invalid`] describing the task's end when it did not
    /// complete.
    pub fn into_response(self) -> Result<R> {
        match self.response {
            Some(response) => Ok(response),
            None => Err(Error::invalid(
                "task outcome",
                format!(
                    "task {} ended {}: {}",
                    self.progress.task_id,
                    self.progress.status.as_str(),
                    self.progress.error.as_deref().unwrap_or("no error recorded")
                ),
            )),
        }
    }
}

/// A handle on one submitted task of type `T`.
pub struct TaskHandle<T: Task> {
    host: Host,
    id: TaskId,
    _task: PhantomData<fn() -> T>,
}

impl<T: Task> TaskHandle<T> {
    pub(crate) fn new(host: Host, id: TaskId) -> Self {
        Self {
            host,
            id,
            _task: PhantomData,
        }
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Its latest progress.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the tracker forgot it.
    pub async fn progress(&self) -> Result<TaskProgress> {
        self.host
            .progress(self.id)
            .await?
            .ok_or_else(|| Error::not_found(format!("task {}", self.id)))
    }

    /// Its progress stream.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the tracker forgot it.
    pub async fn stream(&self) -> Result<ProgressStream> {
        self.host.stream(self.id).await
    }

    /// Asks it to stop.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the tracker forgot it.
    pub async fn cancel(&self) -> Result<super::CancelOutcome> {
        self.host.cancel(self.id).await
    }

    /// Waits until it ends and returns its outcome.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the tracker forgot it.
    pub async fn wait(&self) -> Result<TaskOutcome<T::Response>> {
        let mut stream = self.stream().await?;
        while let Some(progress) = stream.next().await {
            if progress.is_terminal() {
                break;
            }
        }
        self.host.outcome::<T>(self.id).await
    }
}

impl<T: Task> Clone for TaskHandle<T> {
    fn clone(&self) -> Self {
        Self::new(self.host.clone(), self.id)
    }
}

impl<T: Task> std::fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle").field("id", &self.id).finish()
    }
}
