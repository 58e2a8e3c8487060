//! `Idempotency-Key`: the same key with the same submission answers the
//! first submission's `202` (same task, no second one); with a different
//! submission it is `422`; while the first is still being read it is
//! `409`.
//!
//! Keys are the caller's own: the store holds each one scoped to the
//! subject that sent it. The key is claimed in the host's
//! [`IdempotencyStore`] before the task exists. A submission that is accepted records its fingerprint
//! ([`Fingerprint`]: the route, the fields and every file's name and
//! bytes); one that is refused releases the key, so the client may try
//! again. A repeated submission is read and hashed the same way, never
//! stored.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use dtask_core::infra::{IdempotencyRecord, IdempotencyStore};
use dtask_core::{Caller, TaskId, TaskStatus};

use super::accept::{accept, json_limit, read_json};
use super::fingerprint::Fingerprint;
use super::multipart::MultipartReader;
use super::{Accepted, BodyKind, IDEMPOTENCY_KEY, Submission, answer, drain_raw};
use crate::problem::{ApiResult, Problem, kinds};
use crate::registry::Endpoint;
use crate::state::Shared;

/// The longest key accepted.
const MAX_KEY_LEN: usize = 255;

/// The submission's `Idempotency-Key`, if it has one.
///
/// # Errors
/// `400` for an empty or over-long key, or one with characters outside
/// visible ASCII.
pub(super) fn key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(kinds::invalid_request(format!(
            "the Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
        )));
    }
    Ok(Some(key.to_owned()))
}

/// The key as stored: scoped to the subject that sent it, so one
/// subject's key never meets (nor reveals the task of) another's.
fn scoped(subject: &str, key: &str) -> String {
    format!("{}:{subject}:{key}", subject.len())
}

/// Submits once per key (of the caller's).
pub(super) async fn submit_once(
    state: &Shared,
    endpoint: &Endpoint,
    caller: &Caller,
    key: &str,
    task_id: TaskId,
    submission: Submission,
    mut fingerprint: Fingerprint,
) -> ApiResult<Response> {
    let key = scoped(caller.principal().subject(), key);
    let store = Arc::clone(&state.host.infrastructure().idempotency);
    let claimed = match store.claim(&key, task_id, state.config.idempotency_ttl).await {
        Ok(claimed) => claimed,
        Err(error) => {
            drain_raw(submission.body, submission.content_length).await;
            return Err(error.into());
        }
    };
    if let Some(record) = claimed {
        return replay(state, endpoint, caller, record, submission, fingerprint).await;
    }
    let guard = KeyGuard {
        store: Some(Arc::clone(&store)),
        key,
    };
    match accept(state, endpoint, caller, task_id, submission, &mut fingerprint).await {
        Ok(accepted) => {
            guard.finish(fingerprint.finish()).await;
            Ok(answer(endpoint, &accepted, false))
        }
        Err(problem) => {
            guard.release().await;
            Err(problem)
        }
    }
}

async fn replay(
    state: &Shared,
    endpoint: &Endpoint,
    caller: &Caller,
    record: IdempotencyRecord,
    submission: Submission,
    mut fingerprint: Fingerprint,
) -> ApiResult<Response> {
    let Some(expected) = record.fingerprint else {
        drain_raw(submission.body, submission.content_length).await;
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "idempotency-in-progress",
            "Submission in progress",
            format!(
                "a submission with this Idempotency-Key (task {}) is still being received; retry once it is answered",
                record.task_id
            ),
        ));
    };
    hash(state, submission, &mut fingerprint).await?;
    if fingerprint.finish() != expected {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency key reused",
            format!(
                "this Idempotency-Key was used for a different submission (task {}); use a new key",
                record.task_id
            ),
        ));
    }
    let status = caller
        .progress(record.task_id)
        .await?
        .map_or(TaskStatus::Pending, |p| p.status);
    let accepted = Accepted {
        task_id: record.task_id,
        status,
    };
    Ok(answer(endpoint, &accepted, true))
}

/// Reads a repeated submission to the end, feeding the fingerprint.
async fn hash(state: &Shared, submission: Submission, fingerprint: &mut Fingerprint) -> ApiResult<()> {
    let limits = state.config.limits.clone();
    match submission.kind {
        BodyKind::Multipart(boundary) => {
            let mut reader = MultipartReader::new(submission.body, boundary, limits);
            let (_, first) = reader.read_fields(fingerprint).await?;
            if let Some(first) = first {
                reader.pump(first, None, fingerprint).await?;
            }
        }
        BodyKind::Json => {
            let body = read_json(submission.body, json_limit(&limits)).await?;
            fingerprint.json(&body);
        }
    }
    Ok(())
}

/// A claimed key: released if the submission is dropped before it is
/// answered (the client went away), so the key does not stay "in
/// progress" for its whole time-to-live.
struct KeyGuard {
    store: Option<Arc<dyn IdempotencyStore>>,
    key: String,
}

impl KeyGuard {
    async fn finish(mut self, fingerprint: String) {
        if let Some(store) = self.store.take()
            && let Err(error) = store.finish(&self.key, &fingerprint).await
        {
            tracing::warn!(key = %self.key, %error, "could not record an idempotency fingerprint");
        }
    }

    async fn release(mut self) {
        if let Some(store) = self.store.take()
            && let Err(error) = store.release(&self.key).await
        {
            tracing::warn!(key = %self.key, %error, "could not release an idempotency key");
        }
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        let Some(store) = self.store.take() else { return };
        let key = std::mem::take(&mut self.key);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = store.release(&key).await {
                    tracing::warn!(%key, %error, "could not release an idempotency key");
                }
            });
        }
    }
}
