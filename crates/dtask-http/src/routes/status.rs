//! `GET /api/tasks/{id}` and `GET /api/tasks/{id}/status`: the progress
//! snapshot (polling).

use axum::Json;
use axum::extract::{Path, State};
use dtask_core::TaskProgress;

use super::{progress, task_id};
use crate::problem::ApiResult;
use crate::state::Shared;

/// The task's current snapshot.
pub(crate) async fn status(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult<Json<TaskProgress>> {
    let task_id = task_id(&id)?;
    Ok(Json(progress(&state.host, task_id).await?))
}
