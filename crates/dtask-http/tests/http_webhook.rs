//! `listening=webhook`: the terminal snapshot, signed, POSTed to a local
//! receiver, retried until it is taken.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use dtask::testing::Fault;
use dtask_http::{ApiConfig, verify_signature};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use support::{PATIENCE, TestServer};
use tokio::sync::mpsc;

const SECRET: &str = "whsec_test";

/// A receiver that refuses its first `refusals` deliveries with a 500.
async fn receiver(refusals: u32) -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
    let (sender, deliveries) = mpsc::unbounded_channel();
    let seen = Arc::new(AtomicU32::new(0));
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let sender = sender.clone();
            let seen = Arc::clone(&seen);
            async move {
                let _ = sender.send((headers, body));
                if seen.fetch_add(1, Ordering::SeqCst) < refusals {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, deliveries)
}

async fn server() -> TestServer {
    TestServer::with_config(ApiConfig {
        webhook_secret: Some(SECRET.into()),
        webhook_backoff: Duration::from_millis(20),
        ..ApiConfig::default()
    })
    .await
}

async fn delivery(deliveries: &mut mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) -> (HeaderMap, Bytes) {
    tokio::time::timeout(PATIENCE, deliveries.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn the_terminal_snapshot_is_delivered_signed_and_retried() {
    let server = server().await;
    let (url, mut deliveries) = receiver(1).await;
    let form = Form::new()
        .text("outputFileName", "hooked")
        .text("listening", "webhook")
        .text("webhookUrl", url)
        .part("files", Part::bytes(b"hello".to_vec()).file_name("a.txt"));
    let response = server
        .client
        .post(server.url("/api/tasks/create-zip-from-files"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    let id = answer["taskId"].as_str().unwrap();

    let (first_headers, first_body) = delivery(&mut deliveries).await;
    let (headers, body) = delivery(&mut deliveries).await;
    assert_eq!(first_body, body, "a retry sends the same body");
    assert_eq!(first_headers["x-dtask-delivery"], headers["x-dtask-delivery"]);
    let signature = headers["x-dtask-signature"].to_str().unwrap();
    assert!(signature.starts_with("sha256="));
    assert!(verify_signature(SECRET, &body, signature));
    assert!(!verify_signature("another secret", &body, signature));
    assert_eq!(headers["x-dtask-event"], "task.completed");
    assert_eq!(headers["x-dtask-task-id"], id);
    assert_eq!(headers["content-type"], "application/json");
    let snapshot: Value = serde_json::from_slice(&body).unwrap();
    let (_, status) = server.get_json(&format!("/api/tasks/{id}")).await;
    assert_eq!(snapshot, status, "the terminal snapshot");
    assert_eq!(snapshot["status"], "completed");
    assert!(deliveries.try_recv().is_err(), "no delivery after a 2xx");
}

#[tokio::test]
async fn a_failed_task_is_delivered_too_and_json_submissions_use_the_query() {
    let server = server().await;
    let (url, mut deliveries) = receiver(0).await;
    server.test_host().inject("CreateZipArchive", Fault::FailPermanently);
    let form = Form::new()
        .text("listening", "webhook")
        .text("webhookUrl", url.clone())
        .part("files", Part::bytes(b"x".to_vec()).file_name("x"));
    let response = server
        .client
        .post(server.url("/api/tasks/create-zip-from-files"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let (headers, body) = delivery(&mut deliveries).await;
    assert_eq!(headers["x-dtask-event"], "task.compensated");
    assert!(verify_signature(
        SECRET,
        &body,
        headers["x-dtask-signature"].to_str().unwrap()
    ));

    let response = server
        .client
        .post(
            reqwest::Url::parse_with_params(
                &server.url("/api/tasks/echo"),
                &[("listening", "webhook"), ("webhookUrl", url.as_str())],
            )
            .unwrap(),
        )
        .json(&json!({ "text": "hi" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let (headers, body) = delivery(&mut deliveries).await;
    assert_eq!(headers["x-dtask-event"], "task.completed");
    let snapshot: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(snapshot["taskName"], "Echo");
}
