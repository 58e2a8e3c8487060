//! `POST /api/tasks/{task}`: multipart and JSON submissions, and every way
//! a submission is refused.

mod support;

use dtask::TaskStatus;
use dtask::infra::ObjectStoreExt;
use dtask_http::{ApiConfig, UploadLimits, WebhookConfig};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use support::{TestServer, expect_problem, noise, zip_entries, zip_form};

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
async fn a_multipart_submission_is_accepted_with_links_and_location() {
    let server = TestServer::start().await;
    let a = noise(100_000, 1);
    let response = server
        .client
        .post(server.url(ZIP))
        .multipart(zip_form(&[("a.bin", &a), ("b.txt", b"bee")], Some("out")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let answer: Value = response.json().await.unwrap();
    let id = answer["taskId"].as_str().unwrap();
    assert_eq!(location, format!("/api/tasks/{id}"));
    let status: TaskStatus = serde_json::from_value(answer["status"].clone()).unwrap();
    assert!(
        !matches!(
            status,
            TaskStatus::Failed | TaskStatus::Compensated | TaskStatus::Cancelled
        ),
        "{answer}"
    );
    let links = &answer["links"];
    assert_eq!(links["status"], format!("/api/tasks/{id}"));
    assert_eq!(links["stream"], format!("/api/tasks/{id}/stream"));
    assert_eq!(links["ws"], format!("/api/tasks/{id}/ws"));
    assert_eq!(links["result"], format!("/api/tasks/{id}/result"));
    assert_eq!(links["download"], format!("/api/tasks/{id}/download"));
    assert_eq!(links["cancel"], format!("/api/tasks/{id}"));

    let end = server.wait_end(id).await;
    assert_eq!(end.status, TaskStatus::Completed, "{end:?}");
    let (status, result) = server.get_json(&format!("/api/tasks/{id}/result")).await;
    assert_eq!(status, 200);
    assert_eq!(result["fileName"], "out.zip");
    assert_eq!(result["entries"], 2);
    let archive = server
        .test_host()
        .storage()
        .get_bytes(result["bucket"].as_str().unwrap(), result["key"].as_str().unwrap())
        .await
        .unwrap();
    let entries = zip_entries(&archive);
    assert_eq!(entries["a.bin"], a);
    assert_eq!(entries["b.txt"], b"bee");
}

#[tokio::test]
async fn tasks_without_files_take_json_or_form_fields() {
    let server = TestServer::start().await;
    let id = server.submit_json("echo", json!({ "text": "ab", "times": 3 })).await;
    server.wait_end(&id).await;
    let (_, result) = server.get_json(&format!("/api/tasks/{id}/result")).await;
    assert_eq!(result, json!({ "text": "ababab" }));

    // `times=2` is tried as a string first, then as the number it parses to.
    let form = Form::new().text("text", "xy").text("times", "2");
    let response = server
        .client
        .post(server.url("/api/tasks/echo"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["links"].get("download").is_none(), "Echo is not downloadable");
    let id = answer["taskId"].as_str().unwrap();
    server.wait_end(id).await;
    let (_, result) = server.get_json(&format!("/api/tasks/{id}/result")).await;
    assert_eq!(result, json!({ "text": "xyxy" }));
}

#[tokio::test]
async fn bad_fields_are_400_with_serdes_message() {
    let server = TestServer::start().await;
    let form = Form::new().text("text", "x").text("times", "-1");
    let response = server
        .client
        .post(server.url("/api/tasks/echo"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 400, "invalid-request").await;
    assert!(problem["detail"].as_str().unwrap().contains("-1"), "{problem}");

    let response = server
        .client
        .post(server.url("/api/tasks/echo"))
        .json(&json!({ "times": 2 }))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 400, "invalid-request").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("missing field `text`"),
        "{problem}"
    );

    let response = server
        .client
        .post(server.url("/api/tasks/echo"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "invalid-request").await;

    let form = Form::new().text("text", "x").text("text", "y");
    let response = server
        .client
        .post(server.url("/api/tasks/echo"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "invalid-request").await;
}

#[tokio::test]
async fn missing_files_and_empty_multipart_are_400() {
    let server = TestServer::start().await;
    let form = Form::new().text("outputFileName", "x.zip");
    let response = server
        .client
        .post(server.url(ZIP))
        .multipart(form)
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "missing-files").await;

    // A multipart body with no part at all.
    let response = server
        .client
        .post(server.url(ZIP))
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body("--XyZ--\r\n")
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "missing-files").await;

    // An empty body.
    let response = server
        .client
        .post(server.url(ZIP))
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body("")
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "invalid-request").await;

    // No boundary.
    let response = server
        .client
        .post(server.url(ZIP))
        .header("content-type", "multipart/form-data")
        .body("")
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "invalid-request").await;

    // Files to a task that takes none.
    let response = server
        .client
        .post(server.url("/api/tasks/echo"))
        .multipart(
            Form::new()
                .text("text", "x")
                .part("files", Part::bytes(b"a".to_vec()).file_name("a")),
        )
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "unexpected-files").await;

    // A file in a part not named `files`.
    let response = server
        .client
        .post(server.url(ZIP))
        .multipart(Form::new().part("document", Part::bytes(b"a".to_vec()).file_name("a")))
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "invalid-request").await;
}

#[tokio::test]
async fn wrong_content_types_are_415() {
    let server = TestServer::start().await;
    let response = server
        .client
        .post(server.url(ZIP))
        .body("hello")
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    expect_problem(response, 415, "unsupported-media-type").await;
    let response = server.client.post(server.url(ZIP)).body("hello").send().await.unwrap();
    expect_problem(response, 415, "unsupported-media-type").await;
    // JSON to a task that takes files.
    let response = server
        .client
        .post(server.url(ZIP))
        .json(&json!({ "outputFileName": "x" }))
        .send()
        .await
        .unwrap();
    expect_problem(response, 415, "unsupported-media-type").await;
}

#[tokio::test]
async fn a_field_after_a_file_is_400() {
    let server = TestServer::start().await;
    let form = Form::new()
        .part("files", Part::bytes(b"a".to_vec()).file_name("a.txt"))
        .text("outputFileName", "late.zip");
    let response = server
        .client
        .post(server.url(ZIP))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 422, "field-after-file").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("outputFileName"),
        "{problem}"
    );
}

#[tokio::test]
async fn webhook_urls_must_be_http_and_webhooks_configured() {
    let unconfigured = TestServer::start().await;
    let form = Form::new()
        .text("listening", "webhook")
        .text("webhookUrl", "http://127.0.0.1:9/x")
        .part("files", Part::bytes(b"1".to_vec()).file_name("a"));
    let response = unconfigured
        .client
        .post(unconfigured.url(ZIP))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 400, "webhooks-not-configured").await;
    assert_eq!(problem["detail"], "webhooks are not configured");

    let server = TestServer::with_config(small_limits(UploadLimits::default())).await;
    for (url, status) in [
        ("ftp://example.com/hook", 422),
        ("file:///etc/passwd", 422),
        ("not a url", 400),
        ("javascript:alert(1)", 422),
    ] {
        let form = Form::new()
            .text("listening", "webhook")
            .text("webhookUrl", url)
            .part("files", Part::bytes(b"1".to_vec()).file_name("a"));
        let response = server
            .client
            .post(server.url(ZIP))
            .multipart(form)
            .send()
            .await
            .unwrap();
        expect_problem(response, status, "invalid-webhook").await;
    }
    // Without a URL, and through the query parameter.
    let response = server
        .client
        .post(server.url(&format!("{ZIP}?listening=webhook")))
        .multipart(zip_form(&[("a", b"1")], None))
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "invalid-webhook").await;
    let response = server
        .client
        .post(server.url(&format!("{ZIP}?listening=pigeon")))
        .multipart(zip_form(&[("a", b"1")], None))
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "invalid-request").await;
    // A valid field does not hide a bad query value (schemathesis found it).
    let form = reqwest::multipart::Form::new()
        .text("listening", "sse")
        .part("files", reqwest::multipart::Part::bytes(b"1".to_vec()).file_name("a"));
    let response = server
        .client
        .post(server.url(&format!("{ZIP}?listening=")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "invalid-request").await;
    let response = server
        .client
        .post(server.url(&format!("{ZIP}?listening=sse")))
        .multipart(zip_form(&[("a", b"1")], None))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn hostile_file_names_are_sanitized() {
    let server = TestServer::start().await;
    let answer = server
        .submit_zip(&[("../../etc/passwd", b"root"), (r"C:\x\y.txt", b"y")], None)
        .await;
    let id = answer["taskId"].as_str().unwrap();
    server.wait_end(id).await;
    let (_, result) = server.get_json(&format!("/api/tasks/{id}/result")).await;
    let archive = server
        .test_host()
        .storage()
        .get_bytes(result["bucket"].as_str().unwrap(), result["key"].as_str().unwrap())
        .await
        .unwrap();
    let names: Vec<String> = zip_entries(&archive).into_keys().collect();
    assert!(
        names.iter().all(|n| !n.contains("..") && !n.starts_with('/')),
        "{names:?}"
    );
}
