//! A server keeping a task history: the list is served from it in keyset
//! pages with filters, `GET /api/tasks/{id}/history` reads a task's
//! attempts, conditions and audit log, and a task the progress tracker
//! forgot is still answered.

mod support;

use dtask::memory::{MemoryProgressTracker, MemoryTaskHistory};
use dtask_http::Authenticator;
use serde_json::{Value, json};
use support::{TestServer, expect_problem};

/// A server whose progress tracker keeps a single ended task.
async fn server() -> TestServer {
    TestServer::with_auth(
        Authenticator::default(),
        |b| {
            b.history(MemoryTaskHistory::new())
                .progress(MemoryProgressTracker::with_retention(1))
        },
        |api| api,
    )
    .await
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["taskId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_list_pages_the_history_newest_first_with_a_cursor_and_filters() {
    let server = server().await;
    let mut echoes = Vec::new();
    for i in 0..5 {
        let id = server.submit_json("echo", json!({ "text": i.to_string() })).await;
        server.wait_end(&id).await;
        echoes.push(id);
    }
    server.gate.open();
    let gate = server.submit_json("gate", json!({})).await;
    server.wait_end(&gate).await;
    server.host.flush_history().await;

    // Pages of two, following the cursor: every task once, newest first,
    // the forgotten ones included.
    let mut seen = Vec::new();
    let mut path = "/api/tasks?taskName=echo&limit=2".to_owned();
    loop {
        let (status, page) = server.get_json(&path).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.get("total").is_none(), "a history page does not count");
        seen.extend(ids(&page));
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/tasks?taskName=echo&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let newest_first: Vec<String> = echoes.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let (_, all) = server.get_json("/api/tasks").await;
    assert_eq!(ids(&all)[0], gate);
    assert_eq!(all["nextCursor"], Value::Null);
    let (_, completed) = server.get_json("/api/tasks?status=completed&taskName=Gate").await;
    assert_eq!(ids(&completed), std::slice::from_ref(&gate));

    // The creation window of the third to the fifth echo.
    let created = |id: &str| {
        let item = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["taskId"] == id)
            .unwrap();
        item["createdAt"].as_str().unwrap().to_owned()
    };
    let from = created(&echoes[2]);
    let to = created(&gate);
    let path = format!("/api/tasks?createdAfter={from}&createdBefore={to}");
    let (status, window) = server.get_json(&path.replace('+', "%2B")).await;
    assert_eq!(status, 200, "{window}");
    assert_eq!(ids(&window), [echoes[4].clone(), echoes[3].clone(), echoes[2].clone()]);

    for query in [
        "offset=1",
        "cursor=nonsense",
        "createdAfter=yesterday",
        "createdBefore=2026-13-01T00:00:00Z",
        "limit=0",
    ] {
        let response = server
            .client
            .get(server.url(&format!("/api/tasks?{query}")))
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400, "invalid-request").await;
        assert!(!problem["detail"].as_str().unwrap().is_empty(), "{query}");
    }
}

#[tokio::test]
async fn a_task_s_history_and_a_task_the_tracker_forgot() {
    let server = server().await;
    let first = server.submit_json("echo", json!({ "text": "first" })).await;
    let ended = server.wait_end(&first).await;
    let second = server.submit_json("echo", json!({ "text": "second" })).await;
    server.wait_end(&second).await;
    server.host.flush_history().await;
    assert!(
        server.host.progress(first.parse().unwrap()).await.unwrap().is_none(),
        "the tracker keeps one ended task: it forgot the first"
    );

    let (status, progress) = server.get_json(&format!("/api/tasks/{first}")).await;
    assert_eq!(status, 200, "{progress}");
    assert_eq!(
        progress,
        serde_json::to_value(&ended).unwrap(),
        "the history's row answers"
    );

    let (status, history) = server.get_json(&format!("/api/tasks/{first}/history")).await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["task"]["progress"]["status"], "completed");
    let summary: Value = serde_json::from_str(history["task"]["responseSummary"].as_str().unwrap()).unwrap();
    assert!(summary["text"].is_string(), "the response, as JSON: {summary}");
    let actions: Vec<&str> = history["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.first(), Some(&"submit"));
    assert_eq!(actions.last(), Some(&"completed"));
    let trace = history["task"]["progress"]["traceId"].as_str().unwrap();
    assert!(
        history["audit"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["traceId"] == trace)
    );
    assert_eq!(history["attempts"][0]["outcome"], "succeeded");

    let unknown = "0190a0a0-0000-7000-8000-000000000000";
    let response = server
        .client
        .get(server.url(&format!("/api/tasks/{unknown}/history")))
        .send()
        .await
        .unwrap();
    expect_problem(response, 404, "task-not-found").await;
    let response = server
        .client
        .get(server.url("/api/tasks/x/history"))
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "invalid-task-id").await;
}

#[tokio::test]
async fn without_a_history_its_parameters_and_route_are_refused() {
    let server = TestServer::start().await;
    let cursor = "1783000000000000000.0190a0a0000070008000000000000000";
    let response = server
        .client
        .get(server.url(&format!("/api/tasks?cursor={cursor}")))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 400, "invalid-request").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("DTASK_HISTORY"),
        "{problem}"
    );
    let id = server.submit_json("echo", json!({ "text": "x" })).await;
    server.wait_end(&id).await;
    let response = server
        .client
        .get(server.url(&format!("/api/tasks/{id}/history")))
        .send()
        .await
        .unwrap();
    expect_problem(response, 501, "not-supported").await;
}
