//! `DELETE /api/tasks/{id}`: asks a task to stop. Its running step's token
//! fires, then its completed steps are compensated and it ends as
//! cancelled; follow its status to see that happen.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dtask_core::CancelOutcome;
use serde_json::json;

use super::task_id;
use crate::problem::{ApiResult, Problem, kinds};
use crate::state::Shared;

/// Requests the cancellation.
pub(crate) async fn cancel(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let task_id = task_id(&id)?;
    let outcome = state.host.cancel(task_id).await.map_err(|e| {
        if e.is_not_found() {
            kinds::task_not_found(format!("no task {task_id}"))
        } else {
            Problem::from(e)
        }
    })?;
    match outcome {
        CancelOutcome::Requested => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "taskId": task_id, "status": "cancelling" })),
        )
            .into_response()),
        CancelOutcome::AlreadyEnded(status) => Err(kinds::conflict(
            "task-ended",
            "Task already ended",
            format!("task {task_id} has already ended: {}", status.as_str()),
        )
        .with("taskStatus", status.as_str())),
        CancelOutcome::NotCancellable => Err(kinds::conflict(
            "not-cancellable",
            "Task not cancellable",
            format!("task {task_id} is not declared cancellable"),
        )),
    }
}
