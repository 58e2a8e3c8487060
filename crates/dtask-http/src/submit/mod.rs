//! `POST /api/tasks/{task}`: a submission becomes a task.
//!
//! A `multipart/form-data` body carries scalar fields first (mapped onto
//! the task's request by name, plus `listening` and `webhookUrl`), then
//! one or more `files` parts, streamed into the task's upload step as they
//! arrive. Tasks that take no files also accept an `application/json`
//! body. The answer is `202 Accepted` with the task's id, status and
//! links, or a problem. An `Idempotency-Key` makes the call safe to
//! repeat ([`idempotency`]).

mod accept;
mod channel;
mod fingerprint;
mod idempotency;
mod listening;
mod multipart;

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use dtask_core::{Caller, TaskId, TaskStatus};
use futures::StreamExt;
use serde_json::json;

use crate::problem::{ApiResult, kinds};
use crate::registry::Endpoint;
use crate::state::Shared;
use listening::ListeningRequest;
pub(crate) use listening::STRATEGIES;
pub(crate) use multipart::FILES_PART;

use fingerprint::Fingerprint;

/// The header that makes a submission idempotent.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The header set on the answer of a replayed submission.
pub(crate) const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// How a submission's body is encoded.
enum BodyKind {
    /// `multipart/form-data` with this boundary.
    Multipart(String),
    /// `application/json`.
    Json,
}

/// A submission whose headers have been checked.
struct Submission {
    body: Body,
    kind: BodyKind,
    query: ListeningRequest,
    content_length: Option<u64>,
}

/// A task the submission created (or, replayed, had created).
pub(crate) struct Accepted {
    task_id: TaskId,
    status: TaskStatus,
}

/// The submit handler of `endpoint`.
pub(crate) async fn submit(state: Shared, endpoint: Arc<Endpoint>, caller: Caller, request: Request) -> Response {
    match handle(&state, &endpoint, &caller, request).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn handle(state: &Shared, endpoint: &Endpoint, caller: &Caller, request: Request) -> ApiResult<Response> {
    let (parts, body) = request.into_parts();
    if let Err(forbidden) = caller.may_submit(endpoint.definition) {
        // Refused before the body is read: no upload is taken in vain.
        drain_raw(body, content_length(&parts.headers)).await;
        return Err(forbidden.into());
    }
    let content_length = content_length(&parts.headers);
    let checked = check_headers(state, endpoint, &parts.uri, &parts.headers, content_length);
    let (kind, query, key) = match checked {
        Ok(checked) => checked,
        Err(problem) => {
            drain_raw(body, content_length).await;
            return Err(problem);
        }
    };
    let mut fingerprint = Fingerprint::new(&endpoint.path());
    for (name, value) in [("?listening", &query.listening), ("?webhookUrl", &query.webhook_url)] {
        if let Some(value) = value {
            fingerprint.field(name, value);
        }
    }
    let submission = Submission {
        body,
        kind,
        query,
        content_length,
    };
    let task_id = TaskId::new();
    match key {
        Some(key) => idempotency::submit_once(state, endpoint, caller, &key, task_id, submission, fingerprint).await,
        None => {
            let accepted = accept::accept(state, endpoint, caller, task_id, submission, &mut fingerprint).await?;
            Ok(answer(endpoint, &accepted, false))
        }
    }
}

type Checked = (BodyKind, ListeningRequest, Option<String>);

fn check_headers(
    state: &Shared,
    endpoint: &Endpoint,
    uri: &Uri,
    headers: &HeaderMap,
    content_length: Option<u64>,
) -> ApiResult<Checked> {
    let query = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| kinds::invalid_request(format!("malformed query string: {e}")))?
        .0;
    let find = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let query = ListeningRequest {
        listening: find("listening"),
        webhook_url: find("webhookUrl"),
    };
    query.strategy()?;
    let kind = body_kind(endpoint, headers)?;
    let max = state.config.limits.max_total_bytes;
    if let Some(length) = content_length
        && length > max
    {
        return Err(kinds::too_large(format!(
            "the body is {length} bytes; the limit is {max} bytes"
        )));
    }
    let key = idempotency::key(headers)?;
    Ok((kind, query, key))
}

fn body_kind(endpoint: &Endpoint, headers: &HeaderMap) -> ApiResult<BodyKind> {
    let expected = if endpoint.takes_files {
        "multipart/form-data with `files` parts"
    } else {
        "multipart/form-data or application/json"
    };
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| kinds::unsupported_media_type(format!("no Content-Type: send {expected}")))?;
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "multipart/form-data" => multer::parse_boundary(content_type)
            .map(BodyKind::Multipart)
            .map_err(|e| kinds::invalid_request(format!("bad multipart Content-Type: {e}"))),
        "application/json" if endpoint.takes_files => Err(kinds::unsupported_media_type(format!(
            "{} takes files: send {expected}",
            endpoint.definition.name
        ))),
        "application/json" => Ok(BodyKind::Json),
        other => Err(kinds::unsupported_media_type(format!(
            "the body is `{other}`; send {expected}"
        ))),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Reads and discards an unwanted body (unless it is announced larger than
/// [`multipart::DRAIN_LIMIT`]), so the client can read the answer.
async fn drain_raw(body: Body, content_length: Option<u64>) {
    if content_length.is_some_and(|l| l > multipart::DRAIN_LIMIT) {
        return;
    }
    let mut stream = body.into_data_stream();
    let mut drained = 0u64;
    while let Some(Ok(chunk)) = stream.next().await {
        drained += chunk.len() as u64;
        if drained > multipart::DRAIN_LIMIT {
            return;
        }
    }
}

/// The `202 Accepted` answer.
fn answer(endpoint: &Endpoint, accepted: &Accepted, replayed: bool) -> Response {
    let base = format!("/api/tasks/{}", accepted.task_id);
    let mut links = json!({
        "status": base,
        "stream": format!("{base}/stream"),
        "ws": format!("{base}/ws"),
        "result": format!("{base}/result"),
        "cancel": base,
    });
    if endpoint.downloadable {
        links["download"] = json!(format!("{base}/download"));
    }
    let body = json!({
        "taskId": accepted.task_id,
        "status": accepted.status,
        "links": links,
    });
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&base) {
        headers.insert(LOCATION, location);
    }
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}
