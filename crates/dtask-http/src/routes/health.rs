//! `GET /healthz` (the process answers) and `GET /readyz` (every backend
//! answers, and how fast).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use dtask_core::Host;
use serde_json::{Value, json};

use crate::problem::{ApiResult, Problem};
use crate::state::Shared;

/// Liveness: `200 {"status":"ok"}`.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness of the API's host. See [`readiness`].
pub(crate) async fn readyz(State(state): State<Shared>) -> ApiResult<Json<Value>> {
    readiness(&state.host, state.config.expose_internal_errors).await
}

/// Readiness: `200 {"status":"ready","services":[...]}` when every backend
/// answers its ping, each with its `latencyMs`; `503` naming the ones that
/// do not (with their errors only when `expose` is set, from
/// [`ApiConfig::expose_internal_errors`](crate::ApiConfig): they may name
/// internal hosts; they are always logged).
pub(crate) async fn readiness(host: &Host, expose: bool) -> ApiResult<Json<Value>> {
    let checks = host.infrastructure().check().await;
    let services: Vec<Value> = checks
        .iter()
        .map(|check| {
            let mut service = json!({
                "service": check.name,
                "ok": check.result.is_ok(),
                "latencyMs": check.latency.as_secs_f64() * 1000.0,
            });
            if let (true, Err(error)) = (expose, &check.result) {
                service["error"] = json!(error.to_string());
            }
            service
        })
        .collect();
    let failing: Vec<_> = checks.iter().filter(|check| check.result.is_err()).collect();
    if failing.is_empty() {
        return Ok(Json(json!({ "status": "ready", "services": services })));
    }
    let detail = failing
        .iter()
        .filter_map(|check| {
            check
                .result
                .as_ref()
                .err()
                .map(|error| format!("{}: {error}", check.name))
        })
        .collect::<Vec<_>>()
        .join("; ");
    tracing::warn!(%detail, "not ready");
    let shown = if expose {
        detail
    } else {
        let names: Vec<&str> = failing.iter().map(|check| check.name).collect();
        format!(
            "not answering: {}; the causes are in the server's log",
            names.join(", ")
        )
    };
    let failing: Vec<Value> = services.iter().filter(|s| s["ok"] == false).cloned().collect();
    Err(
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready", shown)
            .with("failing", failing)
            .with("services", services),
    )
}
