//! `GET /api/tasks/{id}/stream` (SSE) and `GET /api/tasks/{id}/ws`
//! (WebSocket), message by message.

mod support;

use std::time::Duration;

use dtask_http::ApiConfig;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::sse::{SseItem, SseReader};
use support::{PATIENCE, TestServer};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn open_sse(server: &TestServer, id: &str, last_event_id: Option<&str>) -> SseReader {
    let mut request = server.client.get(server.url(&format!("/api/tasks/{id}/stream")));
    if let Some(last) = last_event_id {
        request = request.header("last-event-id", last);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    SseReader::new(response)
}

#[tokio::test]
async fn sse_sends_the_current_snapshot_then_every_change_then_ends() {
    let server = TestServer::start().await;
    let id = server.submit_json("gate", json!({ "value": 1 })).await;
    server.wait_gate(&id).await;
    let (_, current) = server.get_json(&format!("/api/tasks/{id}")).await;

    let mut sse = open_sse(&server, &id, None).await;
    let first = sse.next().await.unwrap();
    assert_eq!(first.event.as_deref(), Some("progress"));
    assert_eq!(first.id.as_deref(), Some(current["revision"].to_string().as_str()));
    assert_eq!(first.json(), current, "the first event is the current snapshot");

    server.gate.open();
    let mut events = vec![first];
    let rest = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = sse.next().await {
            events.push(event);
        }
    });
    rest.await.expect("the stream ends after the terminal event");
    let revisions: Vec<u64> = events.iter().map(|e| e.id.as_ref().unwrap().parse().unwrap()).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "ids strictly increase: {revisions:?}"
    );
    for event in &events {
        assert_eq!(event.event.as_deref(), Some("progress"));
        assert_eq!(event.json()["revision"].to_string(), *event.id.as_ref().unwrap());
    }
    let last = events.last().unwrap().json();
    assert_eq!(last["status"], "completed");
    assert_eq!(last["isComplete"], true);
    assert!(
        events[..events.len() - 1]
            .iter()
            .all(|e| e.json()["isComplete"] == false)
    );
    assert!(
        events.len() >= 3,
        "Finish started and completed in between: {}",
        events.len()
    );
}

#[tokio::test]
async fn a_finished_tasks_stream_sends_its_final_snapshot_and_ends() {
    let server = TestServer::start().await;
    let id = server.submit_json("echo", json!({ "text": "a" })).await;
    let end = server.wait_end(&id).await;
    let mut sse = open_sse(&server, &id, None).await;
    let only = sse.next().await.unwrap();
    assert_eq!(only.id, Some(end.revision.to_string()));
    assert_eq!(only.json()["status"], "completed");
    assert!(sse.next().await.is_none());
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_starts_with_the_current_snapshot() {
    let server = TestServer::start().await;
    let id = server.submit_json("gate", json!({})).await;
    server.wait_gate(&id).await;
    let mut sse = open_sse(&server, &id, None).await;
    let first = sse.next().await.unwrap();
    drop(sse);
    let mut again = open_sse(&server, &id, first.id.as_deref()).await;
    let resumed = again.next().await.unwrap();
    assert_eq!(resumed.id, first.id);
    assert_eq!(resumed.json(), first.json());
    server.gate.open();
    let mut last = resumed;
    while let Some(event) = again.next().await {
        last = event;
    }
    assert_eq!(last.json()["status"], "completed");
}

#[tokio::test]
async fn idle_streams_carry_keep_alive_comments() {
    let server = TestServer::with_config(ApiConfig {
        sse_keep_alive: Duration::from_millis(50),
        ..ApiConfig::default()
    })
    .await;
    let id = server.submit_json("gate", json!({})).await;
    server.wait_gate(&id).await;
    let mut sse = open_sse(&server, &id, None).await;
    sse.next().await.unwrap();
    // Nothing changes while the gate is closed: the next item is a
    // keep-alive comment.
    let item = tokio::time::timeout(PATIENCE, sse.item()).await.unwrap().unwrap();
    assert!(matches!(item, SseItem::Comment(_)), "{item:?}");
    server.gate.open();
    let mut last = None;
    while let Some(event) = sse.next().await {
        last = Some(event);
    }
    assert_eq!(last.unwrap().json()["status"], "completed");
}

#[tokio::test]
async fn the_websocket_sends_each_snapshot_then_closes_normally() {
    let server = TestServer::start().await;
    let id = server.submit_json("gate", json!({ "value": 7 })).await;
    server.wait_gate(&id).await;
    let (_, current) = server.get_json(&format!("/api/tasks/{id}")).await;

    let url = format!("ws://{}/api/tasks/{id}/ws", server.addr);
    let (mut socket, response) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    assert_eq!(response.status(), 101);
    let first = socket.next().await.unwrap().unwrap();
    let first: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(first, current, "the first message is the current snapshot");

    server.gate.open();
    let mut snapshots = vec![first];
    let close = tokio::time::timeout(PATIENCE, async {
        loop {
            match socket.next().await.unwrap().unwrap() {
                Message::Text(text) => snapshots.push(serde_json::from_str(&text).unwrap()),
                Message::Close(frame) => return frame,
                other => panic!("unexpected message {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    let frame = close.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Normal);
    let revisions: Vec<u64> = snapshots.iter().map(|s| s["revision"].as_u64().unwrap()).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    assert_eq!(snapshots.last().unwrap()["status"], "completed");
    // The client answers the close; the server then ends the connection.
    socket.close(None).await.ok();
    assert!(
        socket
            .next()
            .await
            .is_none_or(|m| m.is_err() || matches!(m, Ok(Message::Close(_))))
    );
}

#[tokio::test]
async fn the_websocket_of_a_finished_task_sends_one_message() {
    let server = TestServer::start().await;
    let id = server.submit_json("echo", json!({ "text": "a" })).await;
    server.wait_end(&id).await;
    let url = format!("ws://{}/api/tasks/{id}/ws", server.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    let only: Value = serde_json::from_str(socket.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(only["status"], "completed");
    match socket.next().await.unwrap().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected a close frame, got {other:?}"),
    }
    socket.send(Message::Close(None)).await.ok();
}
