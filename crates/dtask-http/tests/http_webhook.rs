//! `listening=webhook`: the terminal snapshot, signed the Standard Webhooks
//! way (checked by the official Python library), POSTed to a receiver,
//! retried until it is taken; and destinations that are not public refused.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use bytes::Bytes;
use dtask::testing::Fault;
use dtask_http::{ApiConfig, WebhookConfig, WebhookSecret};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use support::{PATIENCE, TestServer, expect_problem};
use tokio::sync::mpsc;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ZIP: &str = "/api/tasks/create-zip-from-files";

type Deliveries = mpsc::UnboundedReceiver<(HeaderMap, Bytes)>;

/// A receiver that refuses its first `refusals` deliveries with a 500.
async fn receiver(refusals: u32) -> (String, Deliveries) {
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
    (listen(app).await + "/hook", deliveries)
}

async fn listen(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A server whose webhooks may reach this machine's loopback receivers.
async fn server() -> TestServer {
    TestServer::with_config(ApiConfig {
        webhooks: WebhookConfig {
            secret: Some(SECRET.parse().unwrap()),
            allow_hosts: vec!["127.0.0.1".to_owned()],
            backoff: Duration::from_millis(20),
            ..WebhookConfig::default()
        },
        ..ApiConfig::default()
    })
    .await
}

async fn delivery(deliveries: &mut Deliveries) -> (HeaderMap, Bytes) {
    tokio::time::timeout(PATIENCE, deliveries.recv())
        .await
        .expect("a delivery in time")
        .expect("the receiver runs")
}

fn submit_form(url: &str) -> Form {
    Form::new()
        .text("outputFileName", "hooked")
        .text("listening", "webhook")
        .text("webhookUrl", url.to_owned())
        .part("files", Part::bytes(b"hello".to_vec()).file_name("a.txt"))
}

/// What the official `standardwebhooks` package makes of a delivery: the
/// verified payload (it exits non-zero on a bad signature or timestamp).
fn verified_by_standardwebhooks(headers: &HeaderMap, body: &[u8]) -> Value {
    let headers: serde_json::Map<String, Value> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .into_iter()
        .map(|name| (name.to_owned(), json!(headers[name].to_str().unwrap())))
        .collect();
    let input = json!({ "secret": SECRET, "headers": headers, "body": std::str::from_utf8(body).unwrap() });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/verify_webhook.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3 (with the standardwebhooks package)");
    serde_json::to_writer(child.stdin.take().unwrap(), &input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "standardwebhooks refused the delivery: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn the_terminal_snapshot_is_delivered_signed_and_retried() {
    let server = server().await;
    let (url, mut deliveries) = receiver(1).await;
    let response = server
        .client
        .post(server.url(ZIP))
        .multipart(submit_form(&url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    let id = answer["taskId"].as_str().unwrap();

    let (first_headers, first_body) = delivery(&mut deliveries).await;
    let (headers, body) = delivery(&mut deliveries).await;
    assert_eq!(first_body, body, "a retry sends the same body");
    assert_eq!(
        first_headers["webhook-id"], headers["webhook-id"],
        "a retry is the same message"
    );
    let payload = verified_by_standardwebhooks(&headers, &body);
    let secret: WebhookSecret = SECRET.parse().unwrap();
    let field = |name: &str| headers[name].to_str().unwrap();
    secret
        .verify(
            field("webhook-id"),
            field("webhook-timestamp"),
            &body,
            field("webhook-signature"),
        )
        .unwrap();
    assert_eq!(headers["x-dtask-event"], "task.completed");
    assert_eq!(headers["x-dtask-task-id"], id);
    assert_eq!(headers["content-type"], "application/json");
    let (_, status) = server.get_json(&format!("/api/tasks/{id}")).await;
    assert_eq!(payload, status, "the terminal snapshot");
    assert_eq!(payload["status"], "completed");
    assert!(deliveries.try_recv().is_err(), "no delivery after a 2xx");
}

#[tokio::test]
async fn a_failed_task_is_delivered_too_and_json_submissions_use_the_query() {
    let server = server().await;
    let (url, mut deliveries) = receiver(0).await;
    server.test_host().inject("CreateZipArchive", Fault::FailPermanently);
    let response = server
        .client
        .post(server.url(ZIP))
        .multipart(submit_form(&url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let (headers, body) = delivery(&mut deliveries).await;
    assert_eq!(headers["x-dtask-event"], "task.compensated");
    assert_eq!(verified_by_standardwebhooks(&headers, &body)["status"], "compensated");

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
    assert_eq!(verified_by_standardwebhooks(&headers, &body)["taskName"], "Echo");
}

#[tokio::test]
async fn internal_destinations_are_refused_before_the_task_exists() {
    let server = TestServer::with_config(ApiConfig {
        webhooks: WebhookConfig {
            secret: Some(SECRET.parse().unwrap()),
            ..WebhookConfig::default()
        },
        ..ApiConfig::default()
    })
    .await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.1/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:9/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://[fd00::1]/hook",
        "http://192.168.0.1/hook",
    ] {
        let response = server
            .client
            .post(server.url(ZIP))
            .multipart(submit_form(url))
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 422, "webhook-address-refused").await;
        assert!(
            problem["detail"].as_str().unwrap().contains("public addresses only"),
            "{url}: {problem}"
        );
    }
    let (_, listed) = server.get_json("/api/tasks").await;
    assert_eq!(listed["items"], json!([]), "no task was created");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = server().await;
    let (target, mut followed) = receiver(0).await;
    let (sender, mut attempts) = mpsc::unbounded_channel();
    let redirect = Router::new().route(
        "/hook",
        post(move || {
            let _ = sender.send(());
            let target = target.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target)]).into_response() }
        }),
    );
    let url = listen(redirect).await + "/hook";
    let response = server
        .client
        .post(server.url(ZIP))
        .multipart(submit_form(&url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    // The first attempt and a retry both stop at the redirect.
    for _ in 0..2 {
        tokio::time::timeout(PATIENCE, attempts.recv()).await.unwrap().unwrap();
    }
    assert!(followed.try_recv().is_err(), "the redirect was followed");
}
