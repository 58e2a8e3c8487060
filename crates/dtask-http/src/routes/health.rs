//! `GET /healthz` (the process answers) and `GET /readyz` (every backend
//! answers).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::problem::{ApiResult, Problem};
use crate::state::Shared;

/// Liveness: `200 {"status":"ok"}`.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: `200 {"status":"ready"}` when every backend answers its
/// ping, `503` naming the ones that do not.
pub(crate) async fn readyz(State(state): State<Shared>) -> ApiResult<Json<Value>> {
    let failing = state.host.infrastructure().check().await;
    if failing.is_empty() {
        return Ok(Json(json!({ "status": "ready" })));
    }
    let detail = failing
        .iter()
        .map(|(name, error)| format!("{name}: {error}"))
        .collect::<Vec<_>>()
        .join("; ");
    let failing: Vec<Value> = failing
        .iter()
        .map(|(name, error)| json!({ "service": name, "error": error.to_string() }))
        .collect();
    tracing::warn!(%detail, "not ready");
    Err(Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready", detail).with("failing", failing))
}
