//! `GET /api/tasks/{id}/history`: everything the task history keeps of a
//! task: its row, its step attempts, its conditions' snapshots and its
//! audit log.

use axum::Json;
use dtask_core::history::TaskHistoryDetail;

use super::task_id;
use crate::caller::RequestCaller;
use crate::extract::Path;
use crate::problem::{ApiResult, kinds};

/// The task's history.
pub(crate) async fn history(
    RequestCaller(caller): RequestCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskHistoryDetail>> {
    let task_id = task_id(&id)?;
    caller
        .task_history(task_id)
        .await?
        .map(Json)
        .ok_or_else(|| kinds::task_not_found(format!("the history holds no task {task_id}")))
}
