//! `/hubs/tasks`: a SignalR hub shared by every task, for browser and .NET
//! clients (`@microsoft/signalr`, `Microsoft.AspNetCore.SignalR.Client`).
//!
//! It speaks the ASP.NET Core SignalR protocol over WebSockets with the
//! JSON hub protocol, version 1:
//!
//! 1. `POST /hubs/tasks/negotiate?negotiateVersion=1` answers a
//!    `connectionId`, a `connectionToken` and the one transport offered,
//!    `WebSockets` (text). Long polling and server-sent events are not
//!    offered, and a request that tries them is refused (`400
//!    websockets-only`); clients that skip negotiation connect directly.
//! 2. `GET /hubs/tasks?id={connectionToken}` upgrades to the WebSocket.
//!    A token is good for one connection, by the caller who negotiated
//!    it, for [`negotiated::TOKEN_LIFETIME`]; another is `404`.
//! 3. The client's handshake `{"protocol":"json","version":1}` is answered
//!    `{}` (or `{"error":...}` and a close); then the hub methods
//!    `Subscribe(taskId)` and `Unsubscribe(taskId)` (see `connection`).
//!
//! Both routes take the API's credentials; the WebSocket also takes them
//! from the `access_token` query parameter, as browsers' SignalR clients
//! send them (a browser cannot set a WebSocket's headers).

mod connection;
mod negotiated;
mod protocol;

pub(crate) use negotiated::Negotiated;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::caller::RequestCaller;
use crate::problem::{ApiResult, Problem};
use crate::state::Shared;

/// The hub's path.
pub(crate) const HUB_PATH: &str = "/hubs/tasks";

/// The routes of the hub: negotiate, and the connection.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route(&format!("{HUB_PATH}/negotiate"), post(negotiate))
        .route(HUB_PATH, get(connect))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NegotiateQuery {
    #[serde(default)]
    negotiate_version: u32,
}

/// `POST /hubs/tasks/negotiate`.
async fn negotiate(
    State(state): State<Shared>,
    RequestCaller(caller): RequestCaller,
    query: Result<Query<NegotiateQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| crate::problem::kinds::invalid_request(e.body_text()))?;
    let token = state.hub.issue(caller.principal())?;
    let transports = json!([{ "transport": "WebSockets", "transferFormats": ["Text"] }]);
    let connection_id = uuid::Uuid::new_v4().simple().to_string();
    // Version 0 clients connect with the connection id; version 1 with
    // the token, which is then never shown to other clients.
    let body = if query.negotiate_version >= 1 {
        json!({
            "negotiateVersion": 1,
            "connectionId": connection_id,
            "connectionToken": token,
            "availableTransports": transports,
        })
    } else {
        json!({
            "negotiateVersion": 0,
            "connectionId": token,
            "availableTransports": transports,
        })
    };
    Ok(Json(body).into_response())
}

#[derive(Debug, Deserialize)]
struct ConnectQuery {
    id: Option<String>,
}

/// `GET /hubs/tasks`: the hub's WebSocket.
async fn connect(
    State(state): State<Shared>,
    RequestCaller(caller): RequestCaller,
    query: Result<Query<ConnectQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| crate::problem::kinds::invalid_request(e.body_text()))?;
    let upgrade = upgrade.map_err(|rejection| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "websockets-only",
            "WebSockets only",
            format!(
                "this hub's only transport is WebSockets (no long polling, no server-sent events): {}",
                rejection.body_text()
            ),
        )
    })?;
    if let Some(token) = query.id.as_deref()
        && !state.hub.take(token, caller.principal())
    {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no-connection",
            "No such connection",
            "no negotiated connection has this id: negotiate again",
        ));
    }
    Ok(upgrade
        .on_upgrade(move |socket| connection::run(socket, state, caller))
        .into_response())
}
