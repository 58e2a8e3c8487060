//! `GET /api/dead-letters`: the messages the workers gave up on, and
//! `POST /api/tasks/{id}/retry`: replays a dead-lettered task from its last
//! snapshot.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dtask_core::{DeadLetteredTask, RetryOutcome};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{task_ended, task_error, task_id};
use crate::caller::RequestCaller;
use crate::extract::{Path, Query};
use crate::problem::{ApiResult, kinds};

/// The page size when none is asked for.
const DEFAULT_LIMIT: usize = 50;
/// The largest page.
const MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<String>,
}

/// `{ items, limit }`: up to `limit` dead letters of each task queue.
pub(crate) async fn list(
    RequestCaller(caller): RequestCaller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let limit = match query.limit {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| kinds::invalid_request(format!("`limit` must be 1 to {MAX_LIMIT}, not `{text}`")))?,
    };
    let letters = caller.dead_letters(limit).await?;
    let items: Vec<Value> = letters.iter().map(item).collect();
    Ok(Json(json!({ "items": items, "limit": limit })))
}

fn item(queued: &DeadLetteredTask) -> Value {
    let letter = &queued.letter;
    let message = letter.message.as_ref();
    json!({
        "queue": queued.queue,
        "id": letter.id,
        "taskId": message.map(|m| m.task_id),
        "taskName": message.map(|m| m.task_name.as_str()),
        "messageId": message.map(|m| m.id),
        "deliveries": letter.deliveries,
        "reason": letter.reason,
        "taskStatus": queued.progress.as_ref().map(|p| p.status.as_str()),
        "errors": errors(queued),
    })
}

/// The task's error history: each step that failed at least once, with
/// its attempts and last error.
fn errors(queued: &DeadLetteredTask) -> Vec<Value> {
    let Some(progress) = &queued.progress else {
        return Vec::new();
    };
    progress
        .steps
        .iter()
        .filter_map(|step| {
            let error = step.error.as_ref()?;
            Some(json!({ "step": step.name, "attempts": step.attempts, "error": error }))
        })
        .collect()
}

/// Requeues the task (202), or says why not (404, 409).
pub(crate) async fn retry(RequestCaller(caller): RequestCaller, Path(id): Path<String>) -> ApiResult<Response> {
    let task_id = task_id(&id)?;
    let outcome = caller.retry(task_id).await.map_err(|e| task_error(task_id, e))?;
    match outcome {
        RetryOutcome::Requeued => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "taskId": task_id, "status": "requeued" })),
        )
            .into_response()),
        RetryOutcome::AlreadyEnded(status) => Err(task_ended(task_id, status)),
        RetryOutcome::NotDeadLettered => Err(kinds::conflict(
            "not-dead-lettered",
            "Task not dead-lettered",
            format!("task {task_id} has no message in its queue's dead letters; it is still being worked on"),
        )),
        _ => Err(kinds::internal(format!("unexpected retry outcome for task {task_id}"))),
    }
}
