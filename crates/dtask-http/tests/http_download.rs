//! `GET /api/tasks/{id}/download`: the archive byte for byte, ranges, and
//! the refusals.

mod support;

use dtask::infra::ObjectStoreExt;
use dtask::testing::Fault;
use serde_json::json;
use support::{TestServer, expect_problem, noise, zip_entries};

#[tokio::test]
async fn the_archive_downloads_byte_for_byte_with_its_headers() {
    let server = TestServer::start().await;
    let a = noise(300_000, 7);
    let answer = server
        .submit_zip(&[("a.bin", &a), ("notes/b.txt", b"bee")], Some("résumé"))
        .await;
    let id = answer["taskId"].as_str().unwrap();
    server.wait_end(id).await;
    let (_, result) = server.get_json(&format!("/api/tasks/{id}/result")).await;
    let stored = server
        .test_host()
        .storage()
        .get_bytes(result["bucket"].as_str().unwrap(), result["key"].as_str().unwrap())
        .await
        .unwrap();

    let response = server
        .client
        .get(server.url(&format!("/api/tasks/{id}/download")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/zip");
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["content-length"], stored.len().to_string().as_str());
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"r_sum_.zip\"; filename*=UTF-8''r%C3%A9sum%C3%A9.zip"
    );
    let body = response.bytes().await.unwrap();
    assert_eq!(body, stored);
    let entries = zip_entries(&body);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries["a.bin"], a);
    assert_eq!(entries["notes/b.txt"], b"bee");
}

#[tokio::test]
async fn byte_ranges_are_206_and_past_the_end_416() {
    let server = TestServer::start().await;
    let answer = server.submit_zip(&[("a.bin", &noise(50_000, 3))], None).await;
    let id = answer["taskId"].as_str().unwrap();
    server.wait_end(id).await;
    let url = server.url(&format!("/api/tasks/{id}/download"));
    let whole = server.client.get(&url).send().await.unwrap().bytes().await.unwrap();
    let size = whole.len();

    for (range, expected) in [
        ("bytes=0-99".to_owned(), 0..100),
        (format!("bytes={}-", size - 10), size - 10..size),
        ("bytes=-25".to_owned(), size - 25..size),
        (format!("bytes=100-{}", size + 1000), 100..size),
    ] {
        let response = server.client.get(&url).header("range", &range).send().await.unwrap();
        assert_eq!(response.status(), 206, "{range}");
        assert_eq!(
            response.headers()["content-range"],
            format!("bytes {}-{}/{size}", expected.start, expected.end - 1).as_str()
        );
        assert_eq!(
            response.headers()["content-length"],
            (expected.end - expected.start).to_string().as_str()
        );
        let body = response.bytes().await.unwrap();
        assert_eq!(body, whole.slice(expected), "{range}");
    }
    // Ranges the server ignores: several, another unit.
    for range in ["bytes=0-1,5-6", "lines=1-2"] {
        let response = server.client.get(&url).header("range", range).send().await.unwrap();
        assert_eq!(response.status(), 200, "{range}");
    }
    let response = server
        .client
        .get(&url)
        .header("range", format!("bytes={size}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-range"], format!("bytes */{size}").as_str());
    expect_problem(response, 416, "range-not-satisfiable").await;
}

#[tokio::test]
async fn download_is_409_until_completed_and_404_for_tasks_without_files() {
    let server = TestServer::start().await;
    server.test_host().inject("UploadZip", Fault::Hang);
    let answer = server.submit_zip(&[("a.txt", b"a")], None).await;
    let id = answer["taskId"].as_str().unwrap();
    server.wait_running(id, "UploadZip").await;
    let response = server
        .client
        .get(server.url(&format!("/api/tasks/{id}/download")))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 409, "task-not-finished").await;
    assert_eq!(problem["taskStatus"], "running");
    server
        .client
        .delete(server.url(&format!("/api/tasks/{id}")))
        .send()
        .await
        .unwrap();
    server.wait_end(id).await;
    let response = server
        .client
        .get(server.url(&format!("/api/tasks/{id}/download")))
        .send()
        .await
        .unwrap();
    expect_problem(response, 409, "task-cancelled").await;

    let echo = server.submit_json("echo", json!({ "text": "a" })).await;
    server.wait_end(&echo).await;
    let response = server
        .client
        .get(server.url(&format!("/api/tasks/{echo}/download")))
        .send()
        .await
        .unwrap();
    expect_problem(response, 404, "not-downloadable").await;
}
