//! `GET /api/dead-letters` and `POST /api/tasks/{id}/retry`: a task whose
//! message a worker gave up on is listed, replayed, and completed.

mod support;

use dtask::infra::QueueConsumer;
use dtask::memory::MemoryQueue;
use dtask::{Host, TaskStatus};
use dtask_demo::CreateZipFromFiles;
use dtask_http::ApiConfig;
use futures::StreamExt;
use serde_json::{Value, json};
use support::{Echo, Gate, TestServer, expect_problem};

#[tokio::test]
async fn a_dead_lettered_task_is_listed_and_replayed_over_http() {
    let queue = MemoryQueue::new();
    let gate = Gate::default();
    let api = Host::builder()
        .register(CreateZipFromFiles)
        .register(Echo)
        .register(gate.clone())
        .queue(queue.clone())
        .serialize_in_process(true)
        .run_workers(false)
        .build()
        .unwrap();
    let server = TestServer::serve(api.clone(), gate, ApiConfig::default()).await;
    let id = server.submit_json("echo", json!({ "text": "hello" })).await;

    let mut deliveries = queue.consume("echo").await.unwrap();
    let delivery = deliveries.next().await.unwrap().unwrap();
    assert_eq!(delivery.message().task_id.to_string(), id);
    delivery.dead_letter("a downstream service refused it").await.unwrap();
    drop(deliveries);

    let (status, page) = server.get_json("/api/dead-letters").await;
    assert_eq!(status, 200);
    let (_, document) = server.get_json("/api/openapi.json").await;
    support::schema::check(
        &document,
        &json!({ "$ref": "#/components/schemas/DeadLetterPage" }),
        &page,
    )
    .unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["taskId"], id.as_str());
    assert_eq!(items[0]["taskName"], "Echo");
    assert_eq!(items[0]["queue"], "echo");
    assert_eq!(items[0]["reason"], "a downstream service refused it");
    assert_eq!(items[0]["deliveries"], 1);
    assert_eq!(items[0]["taskStatus"], "queued");
    assert_eq!(items[0]["errors"], json!([]), "no step ran, so none failed");

    let bad_limit = server
        .client
        .get(server.url("/api/dead-letters?limit=0"))
        .send()
        .await
        .unwrap();
    expect_problem(bad_limit, 400, "invalid-request").await;

    let retried = server
        .client
        .post(server.url(&format!("/api/tasks/{id}/retry")))
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 202);
    let answer: Value = retried.json().await.unwrap();
    assert_eq!(answer, json!({ "taskId": id, "status": "requeued" }));
    let (_, page) = server.get_json("/api/dead-letters").await;
    assert_eq!(page["items"], json!([]));
    let again = server
        .client
        .post(server.url(&format!("/api/tasks/{id}/retry")))
        .send()
        .await
        .unwrap();
    expect_problem(again, 409, "not-dead-lettered").await;

    let workers = Host::builder()
        .register(CreateZipFromFiles)
        .register(Echo)
        .register(Gate::default())
        .infrastructure(api.infrastructure().clone())
        .serialize_in_process(true)
        .build()
        .unwrap();
    let last = server.wait_end(&id).await;
    assert_eq!(last.status, TaskStatus::Completed);
    let ended = server
        .client
        .post(server.url(&format!("/api/tasks/{id}/retry")))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(ended, 409, "task-ended").await;
    assert_eq!(problem["taskStatus"], "completed");
    workers.shutdown().await;
}
