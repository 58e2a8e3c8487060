//! `GET /api/queues`: how deep each task queue is (operators only).

use axum::Json;
use serde_json::{Value, json};

use crate::caller::RequestCaller;
use crate::problem::ApiResult;

/// `{ items: [{ queue, waiting, inFlight }] }`, by queue name.
pub(crate) async fn list(RequestCaller(caller): RequestCaller) -> ApiResult<Json<Value>> {
    let depths = caller.queue_depths().await?;
    let items: Vec<Value> = depths
        .iter()
        .map(|(queue, depth)| json!({ "queue": queue, "waiting": depth.waiting, "inFlight": depth.in_flight }))
        .collect();
    Ok(Json(json!({ "items": items })))
}
