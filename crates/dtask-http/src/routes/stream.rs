//! `GET /api/tasks/{id}/stream`: the task's snapshots as Server-Sent
//! Events.
//!
//! Each snapshot is one `progress` event whose `id` is the snapshot's
//! revision and whose data is its JSON: the current snapshot first, then
//! every change; the stream ends after the terminal one. Streams count
//! against the subscriber bounds (`503 too-many-subscribers` past them). A reconnecting
//! client (`Last-Event-ID`) simply gets the current snapshot first again,
//! which tells it everything it missed. Idle streams carry keep-alive
//! comments.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderName;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use dtask_core::TaskProgress;
use futures::StreamExt;

use super::task_id;
use crate::caller::RequestCaller;
use crate::extract::Path;
use crate::follow::snapshots;
use crate::problem::ApiResult;
use crate::state::Shared;

/// The SSE event name of a snapshot.
pub(crate) const PROGRESS_EVENT: &str = "progress";

/// The task's SSE stream.
pub(crate) async fn stream(
    State(state): State<Shared>,
    RequestCaller(caller): RequestCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let task_id = task_id(&id)?;
    let snapshots = snapshots(&caller, task_id).await?;
    // Taken once the caller may see the task, held while the stream lives.
    let subscription = state.subscribers.subscribe(task_id)?;
    let events = snapshots.map(move |progress| {
        let _held = &subscription;
        Ok::<_, Infallible>(event(&progress))
    });
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(state.config.sse_keep_alive));
    // Tells reverse proxies (nginx) not to buffer the stream.
    Ok(([(HeaderName::from_static("x-accel-buffering"), "no")], sse))
}

fn event(progress: &TaskProgress) -> Event {
    let event = Event::default().event(PROGRESS_EVENT).id(progress.revision.to_string());
    match serde_json::to_string(progress) {
        Ok(json) => event.data(json),
        Err(error) => Event::default().event("error").data(error.to_string()),
    }
}
