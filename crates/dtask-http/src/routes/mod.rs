//! The routes, and what they share: reading a task id, finding a task's
//! endpoint.

mod cancel;
mod dead_letters;
mod download;
pub(crate) mod health;
mod history;
mod list;
mod queues;
mod range;
mod result;
mod status;
mod stream;
mod workers;
mod ws;

pub(crate) use stream::PROGRESS_EVENT;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Router, middleware};
use dtask_core::{Caller, TaskId, TaskProgress};
use tower_http::trace::TraceLayer;

use crate::auth;
use crate::caller::RequestCaller;
use crate::exposition;
use crate::observe;
use crate::problem::{ApiResult, Problem, kinds};
use crate::protect;
use crate::registry::Endpoint;
use crate::state::Shared;
use crate::submit;

/// Every route of the API: those that take credentials (when the API has
/// an authenticator) and the open ones.
pub(crate) fn router(state: Shared) -> Router {
    let mut protected = Router::new();
    for endpoint in state.registry.iter() {
        let endpoint = Arc::clone(endpoint);
        let path = endpoint.path();
        let handler =
            move |axum::extract::State(state): axum::extract::State<Shared>, caller: RequestCaller, request| {
                submit::submit(state, Arc::clone(&endpoint), caller.0, request)
            };
        protected = protected.route(&path, post(handler).layer(DefaultBodyLimit::disable()));
    }
    let mut protected = protected
        .route("/api/tasks", get(list::list))
        .route("/api/tasks/{id}", get(status::status).delete(cancel::cancel))
        .route("/api/tasks/{id}/status", get(status::status))
        .route("/api/tasks/{id}/stream", get(stream::stream))
        .route("/api/tasks/{id}/ws", get(ws::ws))
        .route("/api/tasks/{id}/result", get(result::result))
        .route("/api/tasks/{id}/download", get(download::download))
        .route("/api/tasks/{id}/retry", post(dead_letters::retry))
        .route("/api/tasks/{id}/history", get(history::history))
        .route("/api/dead-letters", get(dead_letters::list))
        .route("/api/workers", get(workers::list))
        .route("/api/queues", get(queues::list));
    let mut hub = crate::hub::routes();
    if state.auth.is_enabled() {
        protected = protected.route_layer(middleware::from_fn_with_state(Arc::clone(&state.auth), auth::require));
        hub = hub.route_layer(middleware::from_fn_with_state(
            Arc::clone(&state.auth),
            auth::require_or_query_token,
        ));
    }
    let protected = protected.merge(hub);
    let protected = protect::limit_in_flight(protected, &state.config.traffic);
    let mut router = Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/ops", get(crate::dashboard::page));
    if let Some(render) = state.metrics.clone() {
        router = router.route(
            "/metrics",
            get(move || async move { exposition::metrics_response(&render) }),
        );
    }
    observe::describe();
    let bridge = state.host.trace_bridge().cloned();
    let router = router
        .merge(protected)
        .route_layer(middleware::from_fn(observe::mark_route))
        .route_layer(
            TraceLayer::new_for_http().make_span_with(move |request: &axum::extract::Request| {
                observe::request_span(request, bridge.as_ref())
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(Arc::clone(&state));
    protect::outer_layers(router, &state.config.traffic, &state.config.cors_origins)
        .layer(middleware::from_fn(observe::count))
}

async fn openapi(axum::extract::State(state): axum::extract::State<Shared>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        state.openapi.clone(),
    )
}

async fn not_found(uri: Uri) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        format!("no route for {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("{} does not answer {method}", uri.path()),
    )
}

/// The task id in a path.
///
/// # Errors
/// `400` when it is not a UUID.
pub(crate) fn task_id(raw: &str) -> ApiResult<TaskId> {
    raw.parse().map_err(|_| kinds::invalid_task_id(raw))
}

/// A host error about task `task_id`: an unknown task is its `404`.
pub(crate) fn task_error(task_id: TaskId, error: dtask_core::Error) -> Problem {
    if error.is_not_found() {
        kinds::task_not_found(format!("no task {task_id}"))
    } else {
        Problem::from(error)
    }
}

/// The `409` of an operation on a task that has already ended.
pub(crate) fn task_ended(task_id: TaskId, status: dtask_core::TaskStatus) -> Problem {
    kinds::conflict(
        "task-ended",
        "Task already ended",
        format!("task {task_id} has already ended: {}", status.as_str()),
    )
    .with("taskStatus", status.as_str())
}

/// The task's current snapshot, as `caller` may see it.
///
/// # Errors
/// `404` for an unknown task, and for a task the caller may not see (the
/// answer must not tell that it exists).
pub(crate) async fn progress(caller: &Caller, task_id: TaskId) -> ApiResult<TaskProgress> {
    caller
        .progress(task_id)
        .await?
        .ok_or_else(|| kinds::task_not_found(format!("no task {task_id}")))
}

/// The endpoint serving a task's type.
///
/// # Errors
/// `404` when this API does not mount the task's type.
pub(crate) fn endpoint_of<'a>(state: &'a Shared, progress: &TaskProgress) -> ApiResult<&'a Arc<Endpoint>> {
    state.registry.get(&progress.task_name).ok_or_else(|| {
        kinds::task_not_found(format!(
            "task {} is a {}, which this API does not serve",
            progress.task_id, progress.task_name
        ))
    })
}
