//! How many SSE clients one server holds: 1 000 clients on 10 running
//! tasks, each checked to receive its terminal event. Prints what it
//! measured (the process holds client and server together; the `load`
//! example measures the server alone, at 5 000 clients).

mod support;

use std::time::Instant;

use serde_json::json;
use support::sse::SseReader;
use support::{PATIENCE, TestServer, rss_mib};
use tokio::sync::mpsc;

// At most 16 (the host's default worker concurrency): each Gate task holds a
// worker slot while it waits.
const TASKS: usize = 10;
const CLIENTS_PER_TASK: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sse_clients_all_receive_the_terminal_event() {
    let server = TestServer::start().await;
    let mut ids = Vec::new();
    for value in 0..TASKS {
        let id = server.submit_json("gate", json!({ "value": value })).await;
        server.wait_gate(&id).await;
        ids.push(id);
    }
    let (rss_before, _) = rss_mib();
    let started = Instant::now();
    let (ready, mut readiness) = mpsc::unbounded_channel();
    let mut clients = Vec::new();
    for id in &ids {
        for _ in 0..CLIENTS_PER_TASK {
            let request = server.client.get(server.url(&format!("/api/tasks/{id}/stream")));
            let ready = ready.clone();
            clients.push(tokio::spawn(async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 200);
                let mut sse = SseReader::new(response);
                let first = sse.next().await.unwrap();
                assert_eq!(first.json()["status"], "running");
                ready.send(()).unwrap();
                let mut last = first;
                let mut count = 1;
                while let Some(event) = sse.next().await {
                    last = event;
                    count += 1;
                }
                (last.json()["status"].as_str().unwrap().to_owned(), count)
            }));
        }
    }
    drop(ready);
    let total = TASKS * CLIENTS_PER_TASK;
    tokio::time::timeout(PATIENCE, async {
        for _ in 0..total {
            readiness.recv().await.unwrap();
        }
    })
    .await
    .expect("every client connects");
    let connected = started.elapsed();
    let (rss_connected, _) = rss_mib();

    let released = Instant::now();
    server.gate.open();
    let mut events = 0;
    for client in clients {
        let (status, count) = tokio::time::timeout(PATIENCE, client).await.unwrap().unwrap();
        assert_eq!(status, "completed");
        events += count;
    }
    let delivered = released.elapsed();
    let (rss_after, peak) = rss_mib();
    println!(
        "SSE load: {total} clients on {TASKS} tasks connected in {connected:?}; every terminal event delivered {delivered:?} \
         after release ({events} events); process RSS {rss_before} MiB before, {rss_connected} MiB connected \
         (~{} KiB per client, client and server together), {rss_after} MiB after, peak {peak} MiB",
        (rss_connected.saturating_sub(rss_before)) * 1024 / total as u64
    );
}
