//! `DELETE /api/tasks/{id}`: asks a task to stop. Its running step's token
//! fires, then its completed steps are compensated and it ends as
//! cancelled; follow its status to see that happen.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dtask_core::CancelOutcome;
use serde_json::json;

use super::{task_ended, task_error, task_id};
use crate::caller::RequestCaller;
use crate::extract::Path;
use crate::problem::{ApiResult, kinds};

/// Requests the cancellation.
pub(crate) async fn cancel(RequestCaller(caller): RequestCaller, Path(id): Path<String>) -> ApiResult<Response> {
    let task_id = task_id(&id)?;
    let outcome = caller.cancel(task_id).await.map_err(|e| task_error(task_id, e))?;
    match outcome {
        CancelOutcome::Requested => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "taskId": task_id, "status": "cancelling" })),
        )
            .into_response()),
        CancelOutcome::AlreadyEnded(status) => Err(task_ended(task_id, status)),
        CancelOutcome::NotCancellable => Err(kinds::conflict(
            "not-cancellable",
            "Task not cancellable",
            format!("task {task_id} is not declared cancellable"),
        )),
    }
}
