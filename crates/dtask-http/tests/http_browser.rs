//! Browser safety: a page of another site cannot submit, cancel or retry
//! (what a browser sends is reproduced header for header); the API's own
//! pages and non-browser clients can; CORS answers only allowed origins.

mod support;

use dtask_http::{AllowedOrigins, ApiConfig};
use reqwest::Method;
use serde_json::json;
use support::{TestServer, expect_problem};

const EVIL: &str = "https://evil.example";
const APP: &str = "https://app.example.com";

/// The headers a browser adds to a request a page of `origin` sends
/// elsewhere.
fn cross_site(request: reqwest::RequestBuilder, origin: &str) -> reqwest::RequestBuilder {
    request
        .header("origin", origin)
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "no-cors")
}

#[tokio::test]
async fn a_page_of_another_site_cannot_change_anything() {
    let server = TestServer::start().await;
    let id = server.submit_json("gate", json!({ "value": 1 })).await;
    // An HTML form POST: urlencoded, multipart or text/plain, no preflight.
    let form = cross_site(server.client.post(server.url("/api/tasks/echo")), EVIL)
        .header("content-type", "text/plain")
        .body(r#"{"text":"forged"}"#);
    expect_problem(form.send().await.unwrap(), 403, "cross-site-request").await;
    let multipart = cross_site(server.client.post(server.url("/api/tasks/create-zip-from-files")), EVIL)
        .multipart(support::zip_form(&[("a.txt", b"a")], None));
    expect_problem(multipart.send().await.unwrap(), 403, "cross-site-request").await;
    for (method, path) in [
        (Method::DELETE, format!("/api/tasks/{id}")),
        (Method::POST, format!("/api/tasks/{id}/retry")),
    ] {
        let request = cross_site(server.client.request(method, server.url(&path)), EVIL);
        expect_problem(request.send().await.unwrap(), 403, "cross-site-request").await;
    }
    // An old browser without Sec-Fetch-Site still sends Origin.
    let old = server
        .client
        .post(server.url("/api/tasks/echo"))
        .header("origin", EVIL)
        .json(&json!({ "text": "forged" }));
    expect_problem(old.send().await.unwrap(), 403, "cross-site-request").await;

    let (_, page) = server.get_json("/api/tasks").await;
    assert_eq!(page["total"], 1, "only the gate task exists: {page}");
    let (_, status) = server.get_json(&format!("/api/tasks/{id}")).await;
    assert_ne!(status["status"], "cancelled");
    // Reading is not refused: CORS keeps the answer from the page.
    let read = cross_site(server.client.get(server.url(&format!("/api/tasks/{id}"))), EVIL);
    let read = read.send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert!(read.headers().get("access-control-allow-origin").is_none());
    server.gate.open();
}

#[tokio::test]
async fn the_apis_own_pages_and_other_clients_pass() {
    let server = TestServer::start().await;
    let same_origin = server
        .client
        .post(server.url("/api/tasks/echo"))
        .header("sec-fetch-site", "same-origin")
        .header("origin", format!("http://{}", server.addr))
        .json(&json!({ "text": "mine" }));
    assert_eq!(same_origin.send().await.unwrap().status(), 202);
    let origin_is_host = server
        .client
        .post(server.url("/api/tasks/echo"))
        .header("origin", format!("http://{}", server.addr))
        .json(&json!({ "text": "mine" }));
    assert_eq!(origin_is_host.send().await.unwrap().status(), 202);
    let typed_url = server
        .client
        .post(server.url("/api/tasks/echo"))
        .header("sec-fetch-site", "none")
        .json(&json!({ "text": "typed" }));
    assert_eq!(typed_url.send().await.unwrap().status(), 202);
    server.submit_json("echo", json!({ "text": "curl" })).await;
}

#[tokio::test]
async fn cors_answers_allowed_origins_only() {
    let server = TestServer::with_config(ApiConfig {
        cors_origins: AllowedOrigins::parse([APP]).unwrap(),
        ..ApiConfig::default()
    })
    .await;
    let preflight = server
        .client
        .request(Method::OPTIONS, server.url("/api/tasks/echo"))
        .header("origin", APP)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,idempotency-key")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], APP);
    let allowed_headers = preflight.headers()["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed_headers.contains("idempotency-key"), "{allowed_headers}");

    let submitted = cross_site(server.client.post(server.url("/api/tasks/echo")), APP)
        .header("sec-fetch-mode", "cors")
        .json(&json!({ "text": "from the app" }))
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 202, "an allowed origin may submit");
    assert_eq!(submitted.headers()["access-control-allow-origin"], APP);
    assert!(
        submitted.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("location")
    );

    let evil = cross_site(server.client.get(server.url("/api/tasks")), EVIL)
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 200);
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    let forged = cross_site(server.client.post(server.url("/api/tasks/echo")), EVIL).json(&json!({ "text": "forged" }));
    expect_problem(forged.send().await.unwrap(), 403, "cross-site-request").await;
}
