//! `GET /api/tasks/{id}/ws`: the task's snapshots over a WebSocket.
//!
//! The server sends each snapshot as a JSON text message (the same as the
//! SSE stream's data), then a close frame with code 1000 after the
//! terminal one. Messages from the client are ignored; a close from the
//! client ends the stream. Sockets count against the subscriber bounds.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::{IntoResponse, Response};
use dtask_core::TaskProgress;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};

use super::task_id;
use crate::caller::RequestCaller;
use crate::extract::Path;
use crate::follow::snapshots;
use crate::problem::{ApiResult, Problem};
use crate::state::Shared;

/// How long the server waits for the client's close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Upgrades to a WebSocket that carries the task's snapshots.
pub(crate) async fn ws(
    State(state): State<Shared>,
    RequestCaller(caller): RequestCaller,
    Path(id): Path<String>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let task_id = task_id(&id)?;
    let stream = snapshots(&caller, task_id).await?;
    let subscription = state.subscribers.subscribe(task_id)?;
    let upgrade = upgrade.map_err(|rejection| {
        Problem::new(
            rejection.status(),
            "websocket-upgrade-required",
            "WebSocket upgrade required",
            format!("this route speaks WebSocket: {}", rejection.body_text()),
        )
    })?;
    Ok(upgrade
        .on_upgrade(move |socket| async move {
            send_snapshots(socket, stream).await;
            drop(subscription);
        })
        .into_response())
}

async fn send_snapshots(socket: WebSocket, mut snapshots: BoxStream<'static, TaskProgress>) {
    let (mut sender, mut receiver) = socket.split();
    loop {
        tokio::select! {
            progress = snapshots.next() => {
                let Some(progress) = progress else { break };
                let Ok(json) = serde_json::to_string(&progress) else { break };
                if sender.send(Message::Text(json.into())).await.is_err() {
                    return;
                }
                if progress.is_terminal() {
                    break;
                }
            }
            message = receiver.next() => match message {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let close = CloseFrame {
        code: close_code::NORMAL,
        reason: "task ended".into(),
    };
    if sender.send(Message::Close(Some(close))).await.is_err() {
        return;
    }
    // Wait for the client's close frame, so the close handshake completes.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(message)) = receiver.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
