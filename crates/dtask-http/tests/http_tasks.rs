//! The id routes (status, result, cancel), the list, health, readiness and
//! the fallbacks.

mod support;

use async_trait::async_trait;
use dtask::infra::{GetResult, ObjectMeta, ObjectStore};
use dtask::testing::Fault;
use dtask::{Host, TaskStatus};
use dtask_demo::CreateZipFromFiles;
use dtask_http::ApiConfig;
use serde_json::{Value, json};
use support::{Echo, Gate, TestServer, expect_problem};

const UNKNOWN: &str = "0190a0a0-0000-7000-8000-000000000000";

#[tokio::test]
async fn status_answers_the_snapshot_and_refuses_unknown_and_malformed_ids() {
    let server = TestServer::start().await;
    let id = server.submit_json("echo", json!({ "text": "a" })).await;
    server.wait_end(&id).await;
    for path in [format!("/api/tasks/{id}"), format!("/api/tasks/{id}/status")] {
        let (status, body) = server.get_json(&path).await;
        assert_eq!(status, 200);
        assert_eq!(body["taskId"], id);
        assert_eq!(body["taskName"], "Echo");
        assert_eq!(body["status"], "completed");
        assert_eq!(body["isComplete"], true);
        assert_eq!(body["steps"][0]["name"], "Shout");
    }
    for suffix in ["", "/status", "/result", "/stream", "/ws", "/download"] {
        let response = server
            .client
            .get(server.url(&format!("/api/tasks/{UNKNOWN}{suffix}")))
            .send()
            .await
            .unwrap();
        expect_problem(response, 404, "task-not-found").await;
        let response = server
            .client
            .get(server.url(&format!("/api/tasks/not-a-uuid{suffix}")))
            .send()
            .await
            .unwrap();
        expect_problem(response, 400, "invalid-task-id").await;
    }
}

#[tokio::test]
async fn result_is_409_until_completed_then_the_response() {
    let server = TestServer::start().await;
    let id = server.submit_json("gate", json!({ "value": 41 })).await;
    server.wait_gate(&id).await;
    let response = server
        .client
        .get(server.url(&format!("/api/tasks/{id}/result")))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 409, "task-not-finished").await;
    assert_eq!(problem["taskStatus"], "running");
    assert!(problem["detail"].as_str().unwrap().contains("running"), "{problem}");
    server.gate.open();
    server.wait_end(&id).await;
    let (status, body) = server.get_json(&format!("/api/tasks/{id}/result")).await;
    assert_eq!((status, body), (200, json!({ "value": 42 })));
}

#[tokio::test]
async fn result_of_a_failed_task_carries_its_error() {
    let server = TestServer::start().await;
    server.test_host().inject("CreateZipArchive", Fault::FailPermanently);
    let answer = server.submit_zip(&[("a.txt", b"a")], None).await;
    let id = answer["taskId"].as_str().unwrap();
    let end = server.wait_end(id).await;
    assert_eq!(end.status, TaskStatus::Compensated);
    let response = server
        .client
        .get(server.url(&format!("/api/tasks/{id}/result")))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 409, "task-failed").await;
    assert_eq!(problem["taskStatus"], "compensated");
    assert_eq!(problem["error"], end.error.clone().unwrap());
    assert_eq!(problem["detail"], end.error.unwrap());
}

#[tokio::test]
async fn cancel_stops_a_running_task_and_compensates() {
    let server = TestServer::start().await;
    server.test_host().inject("UploadZip", Fault::Hang);
    let answer = server.submit_zip(&[("a.txt", b"a"), ("b.txt", b"b")], None).await;
    let id = answer["taskId"].as_str().unwrap();
    server.wait_running(id, "UploadZip").await;
    let response = server
        .client
        .delete(server.url(&format!("/api/tasks/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({ "taskId": id, "status": "cancelling" }));
    let end = server.wait_end(id).await;
    assert_eq!(end.status, TaskStatus::Cancelled);
    let left = server.test_host().storage().list("incoming-files", id).await.unwrap();
    assert!(left.is_empty(), "the uploads are compensated: {left:?}");

    let response = server
        .client
        .get(server.url(&format!("/api/tasks/{id}/result")))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 409, "task-cancelled").await;
    assert_eq!(problem["taskStatus"], "cancelled");

    // Cancelling again: it has ended.
    let response = server
        .client
        .delete(server.url(&format!("/api/tasks/{id}")))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 409, "task-ended").await;
    assert_eq!(problem["taskStatus"], "cancelled");
}

#[tokio::test]
async fn cancel_refuses_ended_unknown_malformed_and_non_cancellable_tasks() {
    let server = TestServer::start().await;
    let done = server.submit_json("echo", json!({ "text": "a" })).await;
    server.wait_end(&done).await;
    let response = server
        .client
        .delete(server.url(&format!("/api/tasks/{done}")))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 409, "task-ended").await;
    assert_eq!(problem["taskStatus"], "completed");

    let response = server
        .client
        .delete(server.url(&format!("/api/tasks/{UNKNOWN}")))
        .send()
        .await
        .unwrap();
    expect_problem(response, 404, "task-not-found").await;
    let response = server
        .client
        .delete(server.url("/api/tasks/12345"))
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "invalid-task-id").await;

    server.test_host().inject("Shout", Fault::Hang);
    let running = server.submit_json("echo", json!({ "text": "a" })).await;
    server.wait_running(&running, "Shout").await;
    let response = server
        .client
        .delete(server.url(&format!("/api/tasks/{running}")))
        .send()
        .await
        .unwrap();
    expect_problem(response, 409, "not-cancellable").await;
}

#[tokio::test]
async fn the_list_is_newest_first_filtered_and_paginated() {
    let server = TestServer::start().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = server.submit_json("echo", json!({ "text": i.to_string() })).await;
        server.wait_end(&id).await;
        ids.push(id);
    }
    let gate = server.submit_json("gate", json!({})).await;
    server.wait_gate(&gate).await;

    let (status, page) = server.get_json("/api/tasks").await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 4);
    assert_eq!(page["limit"], 50);
    assert_eq!(page["offset"], 0);
    assert_eq!(page["items"][0]["taskId"], gate);

    let (_, page) = server.get_json("/api/tasks?taskName=Echo&limit=2").await;
    assert_eq!(page["total"], 3);
    let items: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["taskId"].as_str().unwrap())
        .collect();
    assert_eq!(items, [ids[2].as_str(), ids[1].as_str()]);
    let (_, page) = server.get_json("/api/tasks?taskName=echo&limit=2&offset=2").await;
    assert_eq!(page["items"][0]["taskId"], ids[0]);
    assert_eq!(page["offset"], 2);

    let (_, page) = server.get_json("/api/tasks?status=running").await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["taskId"], gate);
    let (_, page) = server.get_json("/api/tasks?status=completed&limit=200").await;
    assert_eq!(page["total"], 3);

    for query in ["status=bogus", "limit=0", "limit=201", "limit=ten", "offset=-1"] {
        let response = server
            .client
            .get(server.url(&format!("/api/tasks?{query}")))
            .send()
            .await
            .unwrap();
        expect_problem(response, 400, "invalid-request").await;
    }
}

#[tokio::test]
async fn health_readiness_and_fallbacks() {
    let server = TestServer::start().await;
    assert_eq!(server.get_json("/healthz").await, (200, json!({ "status": "ok" })));
    let (status, ready) = server.get_json("/readyz").await;
    assert_eq!((status, &ready["status"]), (200, &json!("ready")));
    let services = ready["services"].as_array().expect("each service");
    assert_eq!(services.len(), 7, "{ready}");
    assert!(
        services
            .iter()
            .all(|s| s["ok"] == true && s["latencyMs"].as_f64().is_some()),
        "{ready}"
    );

    let response = server.client.get(server.url("/nowhere")).send().await.unwrap();
    expect_problem(response, 404, "not-found").await;
    let response = server.client.put(server.url("/api/tasks")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET,HEAD");
    expect_problem(response, 405, "method-not-allowed").await;
    let response = server
        .client
        .get(server.url("/api/tasks/create-zip-from-files"))
        .send()
        .await
        .unwrap();
    expect_problem(response, 405, "method-not-allowed").await;
    let response = server
        .client
        .post(server.url("/api/tasks/no-such-task"))
        .send()
        .await
        .unwrap();
    expect_problem(response, 405, "method-not-allowed").await;
}

/// A store that is down.
#[derive(Debug)]
struct DownStore;

fn down() -> dtask::Error {
    dtask::Error::backend("test", std::io::Error::other("connection refused"))
}

#[async_trait]
impl ObjectStore for DownStore {
    async fn put(&self, _: &str, _: &str, _: dtask::infra::ByteStream) -> dtask::Result<ObjectMeta> {
        Err(down())
    }
    async fn get(&self, _: &str, _: &str, _: Option<std::ops::Range<u64>>) -> dtask::Result<GetResult> {
        Err(down())
    }
    async fn head(&self, _: &str, _: &str) -> dtask::Result<ObjectMeta> {
        Err(down())
    }
    async fn delete(&self, _: &str, _: &str) -> dtask::Result<()> {
        Err(down())
    }
    async fn list(&self, _: &str, _: &str) -> dtask::Result<Vec<ObjectMeta>> {
        Err(down())
    }
    async fn ping(&self) -> dtask::Result<()> {
        Err(down())
    }
}

#[tokio::test]
async fn readiness_names_the_backends_that_are_down() {
    let gate = Gate::default();
    let host = Host::builder()
        .register(CreateZipFromFiles)
        .register(Echo)
        .register(gate.clone())
        .storage(DownStore)
        .build()
        .unwrap();
    let server = TestServer::serve(host.clone(), gate.clone(), ApiConfig::default()).await;
    let response = server.client.get(server.url("/readyz")).send().await.unwrap();
    let problem = expect_problem(response, 503, "not-ready").await;
    assert_eq!(problem["failing"][0]["service"], "storage");
    assert!(
        !problem.to_string().contains("connection refused"),
        "the cause stays in the log: {problem}"
    );
    assert_eq!(server.get_json("/healthz").await.0, 200);

    let debugging = ApiConfig {
        expose_internal_errors: true,
        ..ApiConfig::default()
    };
    let server = TestServer::serve(host, gate, debugging).await;
    let response = server.client.get(server.url("/readyz")).send().await.unwrap();
    let problem = expect_problem(response, 503, "not-ready").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("connection refused"),
        "{problem}"
    );
}
