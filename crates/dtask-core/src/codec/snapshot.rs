//! The saga state that is snapshotted after every step and handed over to
//! the workers.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::progress::TaskProgress;
use crate::task::{Task, TaskDefinition};

/// Everything needed to resume a task: its request, every step's data, the
/// progress record (step states, attempts, completion order) and, once it
/// has completed, the response.
///
/// This is both the body of the worker message (the state at hand-off) and
/// what the [`SagaStateStore`](crate::infra::SagaStateStore) keeps.
#[derive(Serialize, Deserialize)]
#[serde(bound = "", rename_all = "camelCase")]
pub struct SagaSnapshot<T: Task> {
    /// The version of the schema it was written with
    /// ([`SCHEMA_VERSION`](crate::codec::SCHEMA_VERSION) when this build
    /// wrote it; 1 when absent). Readers refuse a newer one.
    #[serde(default = "first_version")]
    pub schema_version: u32,
    /// The request (its files already consumed by the API side).
    pub request: Arc<T::Request>,
    /// Every step's typed output so far.
    pub data: T::Data,
    /// The progress record.
    pub progress: TaskProgress,
    /// The response, once the task has completed.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub response: Option<T::Response>,
    /// When the task's timeout elapses.
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
}

impl<T: Task> SagaSnapshot<T> {
    /// Checks that the state was written for the task as this build
    /// declares it: the same name, and the same steps in the same order.
    /// A state from another version of the task (a deploy while its
    /// messages were in flight) would run the wrong step at each index.
    ///
    /// # Errors
    /// [`ShapeMismatch`], naming both shapes.
    pub fn check_shape(&self) -> Result<(), ShapeMismatch> {
        let definition = T::definition();
        let stored = self.progress.steps.iter().map(|s| s.name.as_str());
        let declared = definition.steps.iter().map(|s| s.name);
        if self.progress.task_name == definition.name && stored.eq(declared) {
            return Ok(());
        }
        Err(ShapeMismatch {
            found: shape(
                &self.progress.task_name,
                self.progress.steps.iter().map(|s| s.name.as_str()),
            ),
            declared: declared_shape(definition),
        })
    }
}

/// A saga state whose task name or step list is not the one this build
/// declares for the task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the saga state is of task shape {found}, but this build declares {declared}")]
pub struct ShapeMismatch {
    /// The shape the state was written with: `Name[StepA, StepB]`.
    pub found: String,
    /// The shape this build declares.
    pub declared: String,
}

fn shape<'a>(name: &str, steps: impl Iterator<Item = &'a str>) -> String {
    format!("`{name}[{}]`", steps.collect::<Vec<_>>().join(", "))
}

/// `Name[StepA, StepB]` of a definition.
fn declared_shape(definition: &TaskDefinition) -> String {
    shape(definition.name, definition.steps.iter().map(|s| s.name))
}

const fn first_version() -> u32 {
    1
}

fn none<R>() -> Option<R> {
    None
}

impl<T: Task> Clone for SagaSnapshot<T> {
    fn clone(&self) -> Self {
        Self {
            schema_version: self.schema_version,
            request: Arc::clone(&self.request),
            data: self.data.clone(),
            progress: self.progress.clone(),
            response: self.response.clone(),
            deadline: self.deadline,
        }
    }
}

impl<T: Task> std::fmt::Debug for SagaSnapshot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaSnapshot")
            .field("task_id", &self.progress.task_id)
            .field("status", &self.progress.status)
            .field("revision", &self.progress.revision)
            .finish_non_exhaustive()
    }
}
