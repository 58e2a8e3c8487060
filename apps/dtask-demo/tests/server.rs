//! The demo server in-process: the dashboard and the API on one port, and a
//! graceful stop that ends open event streams instead of waiting for tasks.

mod support;

use std::time::Duration;

use dtask_demo::client::ApiClient;
use support::Gate;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_api_share_the_port() {
    let server = support::start(None).await;
    let http = reqwest::Client::new();
    let page = http.get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.text().await.unwrap().contains("data-testid=\"file-input\""));
    for path in ["/healthz", "/readyz", "/api/tasks", "/api/openapi.json"] {
        let answer = http.get(format!("{}{path}", server.url)).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
    let missing = http.get(format!("{}/nope", server.url)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["content-type"], "application/problem+json");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_ends_the_streams_of_running_tasks() {
    // The archive step takes 3 s: the stop waits for it (a step boundary),
    // the open event stream does not keep the server up.
    let server = support::start(Some(Gate::Delay("CreateZipArchive", Duration::from_secs(3)))).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, b"a").unwrap();
    let client = ApiClient::new(&server.url).unwrap();
    let submitted = client.submit_zip(&[file], None).await.unwrap();
    let mut events = client.events(&submitted.links.stream, None).await.unwrap();
    let first = events.next().await.unwrap().expect("the current snapshot first");
    assert!(!first.is_terminal());

    let reader = tokio::spawn(async move {
        let mut last = None;
        while let Ok(Some(progress)) = events.next().await {
            last = Some(progress);
        }
        last
    });
    server.stop_within(Duration::from_secs(20)).await;
    // The stream ended (cleanly or not) instead of waiting for a terminal
    // snapshot that a stopped host never sends.
    let last = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the event stream ended with the server")
        .unwrap();
    assert!(!last.is_some_and(|p| p.is_terminal()));
}
