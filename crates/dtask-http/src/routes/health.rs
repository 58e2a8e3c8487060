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
/// ping, `503` naming the ones that do not (with their errors only when
/// [`ApiConfig::expose_internal_errors`](crate::ApiConfig) is set: they may
/// name internal hosts; they are always logged).
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
    let expose = state.config.expose_internal_errors;
    let failing: Vec<Value> = failing
        .iter()
        .map(|(name, error)| match expose {
            true => json!({ "service": name, "error": error.to_string() }),
            false => json!({ "service": name }),
        })
        .collect();
    tracing::warn!(%detail, "not ready");
    let shown = if expose {
        detail
    } else {
        let names: Vec<&str> = failing.iter().filter_map(|f| f["service"].as_str()).collect();
        format!(
            "not answering: {}; the causes are in the server's log",
            names.join(", ")
        )
    };
    Err(Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready", shown).with("failing", failing))
}
