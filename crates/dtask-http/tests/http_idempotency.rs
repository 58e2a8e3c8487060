//! `Idempotency-Key` on submit: replay, conflict, in progress, release.

mod support;

use dtask::EventKind;
use dtask_http::{ApiConfig, UploadLimits};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use support::{PATIENCE, TestServer, expect_problem, noise, zip_form};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const ZIP: &str = "/api/tasks/create-zip-from-files";

fn new_key() -> String {
    format!("key-{}", uuid::Uuid::new_v4())
}

#[tokio::test]
async fn the_same_key_and_request_replays_the_first_answer() {
    let server = TestServer::start().await;
    let key = new_key();
    let a = noise(200_000, 5);
    let send = || {
        server
            .client
            .post(server.url(ZIP))
            .header("idempotency-key", &key)
            .multipart(zip_form(&[("a.bin", &a), ("b.txt", b"b")], Some("same")))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let id = first["taskId"].as_str().unwrap();
    server.wait_end(id).await;

    let second = send().await.unwrap();
    assert_eq!(second.status(), 202);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.headers()["location"], format!("/api/tasks/{id}").as_str());
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["taskId"], id);
    assert_eq!(second["links"], first["links"]);
    assert_eq!(second["status"], "completed");
    let (_, page) = server.get_json("/api/tasks").await;
    assert_eq!(page["total"], 1, "no second task");

    // JSON submissions too.
    let json_key = new_key();
    let send = |text: &'static str| {
        server
            .client
            .post(server.url("/api/tasks/echo"))
            .header("idempotency-key", &json_key)
            .json(&json!({ "text": text }))
            .send()
    };
    let one: Value = send("x").await.unwrap().json().await.unwrap();
    let two: Value = send("x").await.unwrap().json().await.unwrap();
    assert_eq!(one["taskId"], two["taskId"]);
    let response = send("y").await.unwrap();
    expect_problem(response, 422, "idempotency-key-reused").await;
}

#[tokio::test]
async fn the_same_key_with_another_request_is_422() {
    let server = TestServer::start().await;
    let key = new_key();
    let send = |output: &str, bytes: &'static [u8]| {
        server
            .client
            .post(server.url(ZIP))
            .header("idempotency-key", &key)
            .multipart(zip_form(&[("a.txt", bytes)], Some(output)))
            .send()
    };
    assert_eq!(send("one", b"a").await.unwrap().status(), 202);
    expect_problem(send("two", b"a").await.unwrap(), 422, "idempotency-key-reused").await;
    // Same fields, different bytes.
    expect_problem(send("one", b"b").await.unwrap(), 422, "idempotency-key-reused").await;
    let (_, page) = server.get_json("/api/tasks").await;
    assert_eq!(page["total"], 1);
}

#[tokio::test]
async fn the_same_key_while_the_first_is_uploading_is_409() {
    let server = TestServer::start().await;
    let key = new_key();
    let mut events = server.host.events();
    let (chunks, receiver) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(ReceiverStream::new(receiver));
    let form = Form::new()
        .text("outputFileName", "slow")
        .part("files", Part::stream(body).file_name("slow.bin"));
    let first = tokio::spawn(
        server
            .client
            .post(server.url(ZIP))
            .header("idempotency-key", &key)
            .multipart(form)
            .send(),
    );
    chunks.send(Ok(vec![1; 64 * 1024])).await.unwrap();
    // The first submission's task exists once its key was claimed.
    let id = tokio::time::timeout(PATIENCE, async {
        loop {
            let event = events.recv().await.unwrap();
            if matches!(event.kind, EventKind::Submitted) {
                return event.task_id.to_string();
            }
        }
    })
    .await
    .unwrap();
    let second = server
        .client
        .post(server.url(ZIP))
        .header("idempotency-key", &key)
        .multipart(zip_form(&[("slow.bin", &[1; 10])], Some("slow")))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(second, 409, "idempotency-in-progress").await;
    assert!(problem["detail"].as_str().unwrap().contains(&id), "{problem}");

    chunks.send(Ok(vec![2; 1000])).await.unwrap();
    drop(chunks);
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["taskId"], id);
}

#[tokio::test]
async fn a_refused_submission_releases_its_key() {
    let server = TestServer::with_config(ApiConfig {
        limits: UploadLimits {
            max_files: 1,
            ..UploadLimits::default()
        },
        ..ApiConfig::default()
    })
    .await;
    let key = new_key();
    let two = zip_form(&[("a", b"1"), ("b", b"2")], None);
    let response = server
        .client
        .post(server.url(ZIP))
        .header("idempotency-key", &key)
        .multipart(two)
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "too-many-files").await;
    let one = zip_form(&[("a", b"1")], None);
    let response = server
        .client
        .post(server.url(ZIP))
        .header("idempotency-key", &key)
        .multipart(one)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "the key was released");

    let response = server
        .client
        .post(server.url(ZIP))
        .header("idempotency-key", "")
        .multipart(zip_form(&[("a", b"1")], None))
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "invalid-request").await;
    let long = "k".repeat(256);
    let response = server
        .client
        .post(server.url(ZIP))
        .header("idempotency-key", long)
        .multipart(zip_form(&[("a", b"1")], None))
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "invalid-request").await;
}
