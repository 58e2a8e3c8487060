//! `GET /api/tasks/{id}` and `GET /api/tasks/{id}/status`: the progress
//! snapshot (polling); from the task history when the progress tracker no
//! longer holds the task.

use axum::Json;
use dtask_core::TaskProgress;

use super::{progress, task_id};
use crate::caller::RequestCaller;
use crate::extract::Path;
use crate::problem::ApiResult;

/// The task's current snapshot.
pub(crate) async fn status(
    RequestCaller(caller): RequestCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskProgress>> {
    let task_id = task_id(&id)?;
    if caller.host().history().is_some()
        && caller.progress(task_id).await?.is_none()
        && let Some(kept) = caller.task_history(task_id).await?
    {
        // The tracker forgot the task (its retention passed, or its store
        // was wiped); the history still knows how it ended.
        return Ok(Json(kept.task.progress));
    }
    Ok(Json(progress(&caller, task_id).await?))
}
