//! Turning a checked submission into a task.

use axum::body::Body;
use bytes::Bytes;
use dtask_core::{Caller, Files, TaskId, TaskStatus};
use futures::StreamExt;
use reqwest::Url;
use serde_json::Value;

use super::channel;
use super::fingerprint::Fingerprint;
use super::listening::ListeningRequest;
use super::multipart::{FILES_PART, MultipartReader};
use super::{Accepted, BodyKind, Submission};
use crate::config::UploadLimits;
use crate::problem::{ApiResult, Problem, kinds};
use crate::registry::{Endpoint, PreparedRequest};
use crate::state::Shared;

/// The largest JSON body, in bytes (and at most the upload limit).
const MAX_JSON_BYTES: u64 = 1024 * 1024;

/// Builds the request, submits the task (streaming its files into its
/// upload step), starts its webhook, and reports its status.
///
/// # Errors
/// A problem for every client mistake (the task is then not created, or
/// fails at once if its upload had begun); `503` when a backend failed.
pub(super) async fn accept(
    state: &Shared,
    endpoint: &Endpoint,
    caller: &Caller,
    task_id: TaskId,
    submission: Submission,
    fingerprint: &mut Fingerprint,
) -> ApiResult<Accepted> {
    let webhook = match submission.kind {
        BodyKind::Multipart(ref boundary) => {
            let boundary = boundary.clone();
            accept_multipart(state, endpoint, caller, task_id, submission, boundary, fingerprint).await?
        }
        BodyKind::Json => accept_json(state, endpoint, caller, task_id, submission, fingerprint).await?,
    };
    if let (Some(url), Some(webhooks)) = (webhook, &state.webhooks) {
        webhooks.watch(caller.clone(), task_id, url);
    }
    let status = caller
        .progress(task_id)
        .await?
        .map_or(TaskStatus::Pending, |p| p.status);
    Ok(Accepted { task_id, status })
}

async fn accept_multipart(
    state: &Shared,
    endpoint: &Endpoint,
    caller: &Caller,
    task_id: TaskId,
    submission: Submission,
    boundary: String,
    fingerprint: &mut Fingerprint,
) -> ApiResult<Option<Url>> {
    let mut reader = MultipartReader::new(submission.body, boundary, state.config.limits.clone());
    let (mut fields, first) = match reader.read_fields(fingerprint).await {
        Ok(read) => read,
        Err(problem) => {
            reader.drain().await;
            return Err(problem);
        }
    };
    let prepared = listening_of(&mut fields, &submission.query, state)
        .and_then(|webhook| Ok((webhook, endpoint.prepare_fields(&fields)?)));
    let checked = match prepared {
        Ok((webhook, prepared)) => admit(state, webhook.as_ref()).await.map(|()| (webhook, prepared)),
        Err(problem) => Err(problem),
    };
    let (webhook, mut prepared) = match checked {
        Ok(checked) => checked,
        Err(problem) => {
            reader.drain().await;
            return Err(problem);
        }
    };
    let (sender, files) = match first {
        Some(_) => {
            let (sender, stream) = channel::guarded(1);
            (Some(sender), Files::from_stream(stream, submission.content_length))
        }
        None => (None, Files::empty()),
    };
    let takes_files = prepared.attach(files).is_ok();
    let (first, sender) = match (first, sender, takes_files) {
        (Some(first), Some(sender), true) => (first, sender),
        (None, _, false) => {
            submit(caller, prepared, task_id).await?;
            return Ok(webhook);
        }
        (None, _, true) => {
            return Err(problem(
                "missing-files",
                "No files",
                format!(
                    "{} takes files: send one or more `{FILES_PART}` parts",
                    endpoint.definition.name
                ),
            ));
        }
        (Some(_), _, _) => {
            reader.drain().await;
            return Err(problem(
                "unexpected-files",
                "Files not accepted",
                format!("{} takes no files", endpoint.definition.name),
            ));
        }
    };
    let submission = tokio::spawn(prepared.submit(caller.clone(), task_id));
    if let Err(problem) = reader.pump(first, Some(sender), fingerprint).await {
        // The upload step fails and removes what it stored; the task ends
        // failed in the background.
        reader.drain().await;
        return Err(problem.with("taskId", task_id.to_string()));
    }
    match submission.await {
        Ok(result) => result.map_err(|e| submission_failed(task_id, e))?,
        Err(join) => {
            return Err(kinds::internal(format!(
                "the submission of task {task_id} panicked: {join}"
            )));
        }
    }
    Ok(webhook)
}

async fn accept_json(
    state: &Shared,
    endpoint: &Endpoint,
    caller: &Caller,
    task_id: TaskId,
    submission: Submission,
    fingerprint: &mut Fingerprint,
) -> ApiResult<Option<Url>> {
    let body = read_json(submission.body, json_limit(&state.config.limits)).await?;
    fingerprint.json(&body);
    let mut value: Value =
        serde_json::from_slice(&body).map_err(|e| kinds::invalid_request(format!("the body is not JSON: {e}")))?;
    let mut listening = ListeningRequest::default();
    if let Some(object) = value.as_object_mut() {
        let mut take = |name: &str| match object.remove(name) {
            Some(Value::String(s)) => Ok(Some(s)),
            None | Some(Value::Null) => Ok(None),
            Some(_) => Err(kinds::invalid_request(format!("`{name}` must be a string"))),
        };
        listening.listening = take("listening")?;
        listening.webhook_url = take("webhookUrl")?;
    }
    let webhook = listening.or(&submission.query).webhook(state.webhooks.is_some())?;
    let mut prepared = endpoint.prepare_json(value)?;
    admit(state, webhook.as_ref()).await?;
    if prepared.attach(Files::empty()).is_ok() {
        return Err(kinds::unsupported_media_type(format!(
            "{} takes files: send multipart/form-data with `{FILES_PART}` parts",
            endpoint.definition.name
        )));
    }
    submit(caller, prepared, task_id).await?;
    Ok(webhook)
}

/// The largest JSON body: 1 MiB, or the upload limit if smaller.
pub(super) fn json_limit(limits: &UploadLimits) -> u64 {
    limits.max_total_bytes.min(MAX_JSON_BYTES)
}

/// Reads a whole JSON body of at most `limit` bytes.
pub(super) async fn read_json(body: Body, limit: u64) -> ApiResult<Bytes> {
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| kinds::unreadable_body(&e))?;
        if (buffer.len() + chunk.len()) as u64 > limit {
            return Err(kinds::too_large(format!("a JSON body may be at most {limit} bytes")));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.into())
}

/// Takes `listening` and `webhookUrl` out of the fields and resolves the
/// webhook.
fn listening_of(
    fields: &mut Vec<(String, String)>,
    query: &ListeningRequest,
    state: &Shared,
) -> ApiResult<Option<Url>> {
    let mut take = |name: &str| {
        let index = fields.iter().position(|(n, _)| n == name)?;
        Some(fields.remove(index).1)
    };
    let listening = ListeningRequest {
        listening: take("listening"),
        webhook_url: take("webhookUrl"),
    };
    listening.or(query).webhook(state.webhooks.is_some())
}

/// Refuses a webhook URL whose host resolves to an address that is not
/// public (unless allowed), before the task exists.
async fn admit(state: &Shared, webhook: Option<&Url>) -> ApiResult<()> {
    let (Some(url), Some(webhooks)) = (webhook, &state.webhooks) else {
        return Ok(());
    };
    webhooks.admit(url).await.map_err(|refusal| {
        Problem::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "webhook-address-refused",
            "Webhook address refused",
            refusal.to_string(),
        )
    })
}

async fn submit(caller: &Caller, prepared: Box<dyn PreparedRequest>, task_id: TaskId) -> ApiResult<()> {
    prepared
        .submit(caller.clone(), task_id)
        .await
        .map_err(|e| submission_failed(task_id, e))
}

fn submission_failed(task_id: TaskId, error: dtask_core::Error) -> Problem {
    use dtask_core::Error;
    let problem = match &error {
        Error::Forbidden { .. } => return Problem::from(error),
        Error::Backend { .. } | Error::Closed { .. } => kinds::unavailable(format!(
            "task {task_id} could not be submitted: {}",
            crate::problem::public_message(&error)
        )),
        _ => kinds::internal(format!("task {task_id} could not be submitted: {error}")),
    };
    tracing::error!(%task_id, error = %error, "a submission failed");
    problem.with("taskId", task_id.to_string())
}

fn problem(kind: &str, title: &str, detail: String) -> Problem {
    Problem::new(axum::http::StatusCode::BAD_REQUEST, kind, title, detail)
}
