//! The bounds that keep the API standing: header bytes (431), a slowloris
//! head (disconnected), a stalled body (408), requests in flight (503 with
//! the probes still answering), live subscribers (503, freed when they
//! leave), multipart fields (400), and axum's own rejections as problems.

mod support;

use std::time::Duration;

use dtask_http::{ApiConfig, TrafficLimits, UploadLimits};
use serde_json::json;
use support::{PATIENCE, SLOW_CLIENT, TestServer, expect_problem};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn limited(traffic: TrafficLimits) -> ApiConfig {
    ApiConfig {
        traffic,
        sse_keep_alive: Duration::from_millis(100),
        ..ApiConfig::default()
    }
}

/// Reads what the server sends until it closes the connection (or
/// `PATIENCE` passes, which fails the test).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_header_flood_is_431() {
    let server = TestServer::start().await;
    let response = server
        .client
        .get(server.url("/api/tasks"))
        .header("x-padding", "a".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 431, "headers-too-large").await;
    assert!(problem["detail"].as_str().unwrap().contains("16384"), "{problem}");
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_disconnected() {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let started = tokio::time::Instant::now();
    let trickle = async {
        // One header byte every half second: never a whole head.
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if stream.write_all(b"x").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(PATIENCE, trickle).await;
    assert!(started.elapsed() >= SLOW_CLIENT, "closed before the head timeout");
    assert!(started.elapsed() < PATIENCE, "never disconnected");
}

#[tokio::test]
async fn a_stalled_body_is_408() {
    let server = TestServer::with_config(limited(TrafficLimits {
        body_idle_timeout: Duration::from_millis(500),
        ..TrafficLimits::default()
    }))
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                content-length: 100\r\nconnection: close\r\n\r\n{\"text\":";
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("request-timeout"), "{answer}");
}

#[tokio::test]
async fn past_the_in_flight_bound_requests_are_shed_and_probes_answer() {
    let server = TestServer::with_config(limited(TrafficLimits {
        max_in_flight: 2,
        ..TrafficLimits::default()
    }))
    .await;
    // Two submissions whose bodies never come hold both places.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let head = "POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                    content-length: 100\r\n\r\n{";
        stream.write_all(head.as_bytes()).await.unwrap();
        held.push(stream);
    }
    // The places are taken as the servers' handlers start; wait for it.
    let refused = tokio::time::timeout(PATIENCE, async {
        loop {
            let response = server.client.get(server.url("/api/tasks")).send().await.unwrap();
            if response.status() == 503 {
                return response;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the bound is reached");
    assert_eq!(refused.headers()["retry-after"], "1");
    expect_problem(refused, 503, "overloaded").await;
    let (status, _) = server.get_json("/healthz").await;
    assert_eq!(status, 200, "the liveness probe answers under load");
    let (status, _) = server.get_json("/readyz").await;
    assert_eq!(status, 200, "the readiness probe answers under load");

    drop(held);
    tokio::time::timeout(PATIENCE, async {
        while server.get_json("/api/tasks").await.0 != 200 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the places are freed when the requests end");
}

#[tokio::test]
async fn subscribers_are_bounded_per_task_and_in_all() {
    let server = TestServer::with_config(limited(TrafficLimits {
        max_subscribers_per_task: 1,
        max_subscribers: 2,
        ..TrafficLimits::default()
    }))
    .await;
    let first = server.submit_json("gate", json!({ "value": 1 })).await;
    let second = server.submit_json("gate", json!({ "value": 2 })).await;
    let third = server.submit_json("gate", json!({ "value": 3 })).await;
    let subscribe = |id: &str| server.client.get(server.url(&format!("/api/tasks/{id}/stream"))).send();

    let stream = subscribe(&first).await.unwrap();
    assert_eq!(stream.status(), 200);
    let refused = subscribe(&first).await.unwrap();
    assert_eq!(refused.headers()["retry-after"], "5");
    expect_problem(refused, 503, "too-many-subscribers").await;
    let websocket = tokio_tungstenite::connect_async(format!("ws://{}/api/tasks/{first}/ws", server.addr)).await;
    match websocket {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("a second subscriber of one task got {other:?}"),
    }
    let other = subscribe(&second).await.unwrap();
    assert_eq!(other.status(), 200);
    let refused = subscribe(&third).await.unwrap();
    expect_problem(refused, 503, "too-many-subscribers").await;

    // A subscriber that leaves frees its place (the server notices at its
    // next keep-alive).
    drop(stream);
    tokio::time::timeout(PATIENCE, async {
        loop {
            let response = subscribe(&first).await.unwrap();
            if response.status() == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the place is freed");
    server.gate.open();
}

#[tokio::test]
async fn ten_thousand_fields_are_refused_at_the_sixty_fifth() {
    let server = TestServer::with_config(ApiConfig {
        limits: UploadLimits::default(),
        ..ApiConfig::default()
    })
    .await;
    let mut form = reqwest::multipart::Form::new();
    for i in 0..10_000 {
        form = form.text(format!("field{i}"), "x");
    }
    let response = server
        .client
        .post(server.url("/api/tasks/create-zip-from-files"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 400, "too-many-fields").await;
    assert!(problem["detail"].as_str().unwrap().contains("64"), "{problem}");
}

#[tokio::test]
async fn malformed_paths_and_queries_are_problems() {
    let server = TestServer::start().await;
    let response = server
        .client
        .get(server.url("/api/dead-letters?limit=1&limit=2"))
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "invalid-query").await;
    let response = server.client.get(server.url("/api/tasks/%FF%FE")).send().await.unwrap();
    expect_problem(response, 400, "invalid-path").await;
    let response = server
        .client
        .get(server.url("/api/tasks?status="))
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "invalid-request").await;
    let (status, page) = server.get_json("/api/tasks?offset=99999999999999999999999999").await;
    assert_eq!(status, 200);
    assert_eq!(page["items"], json!([]));
}
