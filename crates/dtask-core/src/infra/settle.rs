//! An optional capability of a backend that keeps both the saga state and
//! the progress: a settlement's save and its progress write in one atomic
//! step.

use std::fmt;

use async_trait::async_trait;

use super::StoredState;
use crate::error::Result;
use crate::id::TaskId;
use crate::progress::TaskProgress;

/// What [`StateWithProgress::save_with_progress`] did with the progress,
/// once the state was saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressWrite {
    /// Stored and published, as [`ProgressTracker::update`](super::ProgressTracker::update)
    /// stores a newer snapshot.
    Stored,
    /// Left as it was: the tracker holds the same or a later revision, or
    /// the task's final snapshot.
    Stale,
    /// The tracker does not know the task (its progress expired or was
    /// never created): only the state was saved.
    UnknownTask,
}

/// Saves a saga state and writes the progress it holds in one atomic step:
/// both or neither. A backend that keeps the state store and the progress
/// tracker of the same [`Infrastructure`](super::Infrastructure) offers it
/// as [`Infrastructure::settlement`](super::Infrastructure::settlement),
/// and a settlement then costs one round trip instead of two (the kernel
/// saves, then writes the progress, when there is none).
///
/// The progress written must be the one inside the saved state, so that
/// progress never shows a state that is not saved.
#[async_trait]
pub trait StateWithProgress: Send + Sync + fmt::Debug + 'static {
    /// Saves `state` as `task_id`'s, fenced as
    /// [`SagaStateStore::save`](super::SagaStateStore::save) is; once it is
    /// saved, stores `progress` as [`ProgressTracker::update`](super::ProgressTracker::update)
    /// (or, terminal, [`complete`](super::ProgressTracker::complete)) does,
    /// publishing it to the task's followers, in the same atomic step.
    ///
    /// # Errors
    /// [`Error::Fenced`](crate::Error::Fenced) when a snapshot with a
    /// larger fencing token was saved before (nothing is written); a
    /// backend error (either both were written or neither, but the caller
    /// cannot tell which).
    async fn save_with_progress(
        &self,
        task_id: TaskId,
        state: StoredState,
        progress: &TaskProgress,
    ) -> Result<ProgressWrite>;
}
