//! `GET /api/workers`: the workers that have announced themselves and not
//! expired (operators only).

use axum::Json;
use serde_json::{Value, json};

use crate::caller::RequestCaller;
use crate::problem::ApiResult;

/// `{ items }`: each live worker (id, host, pid, version, queues,
/// concurrency, in-flight, started, last seen), by id.
pub(crate) async fn list(RequestCaller(caller): RequestCaller) -> ApiResult<Json<Value>> {
    let workers = caller.workers().await?;
    Ok(Json(json!({ "items": workers })))
}
