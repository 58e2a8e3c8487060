//! `GET /api/tasks/{id}` and `GET /api/tasks/{id}/status`: the progress
//! snapshot (polling).

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
    Ok(Json(progress(&caller, task_id).await?))
}
