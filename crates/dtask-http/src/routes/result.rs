//! `GET /api/tasks/{id}/result`: the typed response of a completed task.

use axum::Json;
use axum::extract::State;
use dtask_core::{TaskProgress, TaskStatus};
use serde_json::Value;

use super::{endpoint_of, progress, task_id};
use crate::caller::RequestCaller;
use crate::extract::Path;
use crate::problem::{ApiResult, Problem, kinds};
use crate::state::Shared;

/// The response, once the task completed.
pub(crate) async fn result(
    State(state): State<Shared>,
    RequestCaller(caller): RequestCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let task_id = task_id(&id)?;
    let progress = progress(&caller, task_id).await?;
    let endpoint = endpoint_of(&state, &progress)?;
    require_completed(&progress)?;
    let response = endpoint
        .response(&caller, task_id)
        .await?
        .ok_or_else(|| kinds::internal(format!("task {task_id} completed but its response is missing")))?;
    Ok(Json(response))
}

/// Passes a completed task.
///
/// # Errors
/// `409`: `task-not-finished` while it runs (the detail says its status);
/// `task-cancelled` or `task-failed` when it ended otherwise, with the
/// task's error as detail and the extension members `taskStatus` and
/// `error`.
pub(crate) fn require_completed(progress: &TaskProgress) -> ApiResult<()> {
    let task_id = progress.task_id;
    let status = progress.status;
    if status == TaskStatus::Completed {
        return Ok(());
    }
    if !status.is_terminal() {
        return Err(kinds::conflict(
            "task-not-finished",
            "Task not finished",
            format!("task {task_id} is {}; it has not ended yet", status.as_str()),
        )
        .with("taskStatus", status.as_str()));
    }
    let (kind, title, default) = if status == TaskStatus::Cancelled {
        ("task-cancelled", "Task cancelled", "the task was cancelled")
    } else {
        ("task-failed", "Task failed", "the task failed")
    };
    let problem: Problem = kinds::conflict(
        kind,
        title,
        progress.error.clone().unwrap_or_else(|| default.to_owned()),
    );
    Err(problem
        .with("taskStatus", status.as_str())
        .with("error", progress.error.clone()))
}
