//! Submission limits: the total size (413, announced or streamed), the
//! number of files and the file name length (400).

mod support;

use dtask_http::{ApiConfig, UploadLimits, WebhookConfig};
use futures::stream;
use reqwest::multipart::{Form, Part};
use support::{TestServer, expect_problem, noise, zip_form};

const ZIP: &str = "/api/tasks/create-zip-from-files";
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn small_limits(limits: UploadLimits) -> ApiConfig {
    ApiConfig {
        limits,
        webhooks: WebhookConfig {
            secret: Some(WEBHOOK_SECRET.parse().unwrap()),
            ..WebhookConfig::default()
        },
        ..ApiConfig::default()
    }
}

#[tokio::test]
async fn an_announced_oversized_upload_is_413_before_any_task_exists() {
    let server = TestServer::with_config(small_limits(UploadLimits {
        max_total_bytes: 64 * 1024,
        ..UploadLimits::default()
    }))
    .await;
    let big = noise(256 * 1024, 2);
    let response = server
        .client
        .post(server.url(ZIP))
        .multipart(zip_form(&[("big.bin", &big)], None))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 413, "payload-too-large").await;
    assert!(problem.get("taskId").is_none());
    let (_, page) = server.get_json("/api/tasks").await;
    assert_eq!(page["total"], 0);
}

#[tokio::test]
async fn a_streamed_oversized_upload_is_413_and_leaves_no_objects() {
    let server = TestServer::with_config(small_limits(UploadLimits {
        max_total_bytes: 64 * 1024,
        ..UploadLimits::default()
    }))
    .await;
    // A part of unknown length: the body is chunked, so only counting
    // while streaming can catch it.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..16).map(|i| Ok(noise(16 * 1024, i))).collect();
    let part = Part::stream(reqwest::Body::wrap_stream(stream::iter(chunks))).file_name("big.bin");
    let form = Form::new()
        .part("files", Part::bytes(b"small".to_vec()).file_name("small.txt"))
        .part("files", part);
    let response = server
        .client
        .post(server.url(ZIP))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 413, "payload-too-large").await;
    let id = problem["taskId"].as_str().expect("the task had started").to_owned();
    let end = server.wait_end(&id).await;
    assert!(!end.success.unwrap(), "{end:?}");
    let left = server.test_host().storage().list("incoming-files", &id).await.unwrap();
    assert!(left.is_empty(), "partial objects left: {left:?}");
}

#[tokio::test]
async fn too_many_files_and_long_names_are_400() {
    let server = TestServer::with_config(small_limits(UploadLimits {
        max_files: 2,
        max_file_name_bytes: 20,
        ..UploadLimits::default()
    }))
    .await;
    let three = zip_form(&[("a", b"1"), ("b", b"2"), ("c", b"3")], None);
    let response = server
        .client
        .post(server.url(ZIP))
        .multipart(three)
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 400, "too-many-files").await;
    let end = server.wait_end(problem["taskId"].as_str().unwrap()).await;
    assert!(!end.success.unwrap());

    let long = "n".repeat(21);
    let response = server
        .client
        .post(server.url(ZIP))
        .multipart(zip_form(&[(long.as_str(), b"1")], None))
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "file-name-too-long").await;

    let ok = zip_form(&[("a", b"1"), (&"n".repeat(20), b"2")], None);
    let response = server.client.post(server.url(ZIP)).multipart(ok).send().await.unwrap();
    assert_eq!(response.status(), 202);
}
