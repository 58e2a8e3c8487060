//! `GET /api/openapi.json`: a valid OpenAPI 3.1 document (checked by
//! Python's `openapi-spec-validator`), and every documented route and
//! method exercised: each answer's status is documented and its JSON body
//! matches the documented schema.

mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::schema;
use support::{TestServer, zip_form};

const UNKNOWN: &str = "0190a0a0-0000-7000-8000-000000000000";

#[tokio::test]
async fn the_document_is_valid_openapi_3_1() {
    let server = TestServer::start().await;
    let (status, document) = server.get_json("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    let output = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output()
        .expect("run: python3 (needed to validate the OpenAPI document)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named") {
        panic!("the Python module openapi-spec-validator is missing; run: pip install openapi-spec-validator");
    }
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document:\n{}\n{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// One request of the exercise.
enum Call {
    Http(Box<reqwest::RequestBuilder>),
    WebSocket(String),
}

#[tokio::test]
async fn every_documented_route_answers_documented_statuses_and_schemas() {
    exercise(TestServer::start().await).await;
}

#[tokio::test]
async fn with_a_task_history_too() {
    let server = TestServer::with_auth(
        dtask_http::Authenticator::default(),
        |b| b.history(dtask::memory::MemoryTaskHistory::new()),
        |api| api,
    )
    .await;
    exercise(server).await;
}

/// Calls every operation of the server's document as [`calls`] says, and
/// checks each answer against the document.
async fn exercise(server: TestServer) {
    server.gate.open();
    let zip = server.submit_zip(&[("a.txt", b"a")], Some("doc")).await;
    let zip = zip["taskId"].as_str().unwrap().to_owned();
    server.wait_end(&zip).await;
    let echo = server.submit_json("echo", json!({ "text": "a" })).await;
    server.wait_end(&echo).await;
    server.host.flush_history().await;
    let (_, document) = server.get_json("/api/openapi.json").await;

    let mut exercised = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for call in calls(&server, path, method, &zip, &echo) {
                let status = match call {
                    Call::WebSocket(url) => {
                        let (_, response) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
                        response.status().as_u16()
                    }
                    Call::Http(request) => {
                        let response = (*request).send().await.unwrap();
                        check_answer(&document, path, method, operation, response).await
                    }
                };
                let documented = &operation["responses"][status.to_string()];
                assert!(
                    documented.is_object(),
                    "{method} {path} answered {status}, which is not documented"
                );
                exercised.insert(format!("{method} {path}"));
            }
        }
    }
    let documented: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|i| i.as_object().unwrap().len())
        .sum();
    assert_eq!(exercised.len(), documented, "exercised: {exercised:?}");
    assert!(exercised.contains("post /api/tasks/create-zip-from-files"));
    assert!(exercised.contains("get /api/tasks/{id}/ws"));
}

/// Checks the body of an answer against its documented schema; returns
/// the status.
async fn check_answer(
    document: &Value,
    path: &str,
    method: &str,
    operation: &Value,
    response: reqwest::Response,
) -> u16 {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = response.bytes().await.unwrap();
    let documented = &operation["responses"][status.to_string()];
    let Some(content_type) = content_type else {
        return status;
    };
    let schema = &documented["content"][&content_type]["schema"];
    let what = format!("{method} {path} → {status} {content_type}");
    match content_type.as_str() {
        "application/json" | "application/problem+json" => {
            assert!(schema.is_object(), "{what}: no schema documented");
            let value: Value = serde_json::from_slice(&body).unwrap();
            schema::check(document, schema, &value).unwrap_or_else(|e| panic!("{what}: {e}\n{value}"));
        }
        "text/event-stream" => {
            assert!(schema.is_object(), "{what}: not documented");
            let snapshot = json!({ "$ref": "#/components/schemas/TaskProgress" });
            let text = String::from_utf8(body.to_vec()).unwrap();
            let events: Vec<Value> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .map(|d| serde_json::from_str(d).unwrap())
                .collect();
            assert!(!events.is_empty());
            for event in events {
                schema::check(document, &snapshot, &event).unwrap_or_else(|e| panic!("{what}: {e}"));
            }
        }
        _ => assert!(
            documented["content"].as_object().is_some_and(|c| !c.is_empty()),
            "{what}: undocumented content"
        ),
    }
    status
}

/// The requests that exercise one documented operation: its success and
/// its usual refusals.
fn calls(server: &TestServer, path: &str, method: &str, zip: &str, echo: &str) -> Vec<Call> {
    let client = &server.client;
    let http = |method: &str, path: &str| {
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        client.request(method, server.url(path))
    };
    let with_id = |id: &str| path.replace("{id}", id);
    match (method, path) {
        ("post", "/api/tasks/create-zip-from-files") => vec![
            Call::Http(Box::new(
                http(method, path).multipart(zip_form(&[("b.txt", b"b")], None)),
            )),
            Call::Http(Box::new(
                http(method, path).body("text").header("content-type", "text/plain"),
            )),
            Call::Http(Box::new(http(method, path).multipart(zip_form(&[], Some("x"))))),
        ],
        ("post", "/api/tasks/echo") => vec![
            Call::Http(Box::new(http(method, path).json(&json!({ "text": "b" })))),
            Call::Http(Box::new(http(method, path).json(&json!({ "times": 1 })))),
        ],
        ("post", "/api/tasks/gate") => vec![Call::Http(Box::new(http(method, path).json(&json!({ "value": 1 }))))],
        ("get", "/api/tasks") => vec![
            Call::Http(Box::new(http(method, "/api/tasks?limit=1"))),
            Call::Http(Box::new(http(method, "/api/tasks?status=nope"))),
            Call::Http(Box::new(http(method, "/api/tasks?createdAfter=yesterday"))),
        ],
        ("get", "/api/tasks/{id}/ws") => vec![
            Call::WebSocket(format!("ws://{}{}", server.addr, with_id(zip))),
            Call::Http(Box::new(http(method, &with_id(zip)))),
            Call::Http(Box::new(http(method, &with_id(UNKNOWN)))),
            Call::Http(Box::new(http(method, &with_id("x")))),
        ],
        ("get", "/api/tasks/{id}/download") => vec![
            Call::Http(Box::new(http(method, &with_id(zip)))),
            Call::Http(Box::new(http(method, &with_id(zip)).header("range", "bytes=0-9"))),
            Call::Http(Box::new(http(method, &with_id(zip)).header("range", "bytes=999999-"))),
            Call::Http(Box::new(http(method, &with_id(echo)))),
            Call::Http(Box::new(http(method, &with_id(UNKNOWN)))),
            Call::Http(Box::new(http(method, &with_id("x")))),
        ],
        (_, p) if p.contains("{id}") => vec![
            Call::Http(Box::new(http(method, &with_id(zip)))),
            Call::Http(Box::new(http(method, &with_id(UNKNOWN)))),
            Call::Http(Box::new(http(method, &with_id("x")))),
        ],
        ("post", "/hubs/tasks/negotiate") => vec![
            Call::Http(Box::new(http(method, "/hubs/tasks/negotiate?negotiateVersion=1"))),
            Call::Http(Box::new(http(method, path))),
            Call::Http(Box::new(http(method, "/hubs/tasks/negotiate?negotiateVersion=-1"))),
        ],
        ("get", "/hubs/tasks") => vec![
            Call::WebSocket(format!("ws://{}{path}", server.addr)),
            Call::Http(Box::new(http(method, path))),
        ],
        ("get", "/api/dead-letters") => vec![
            Call::Http(Box::new(http(method, "/api/dead-letters?limit=5"))),
            Call::Http(Box::new(http(method, "/api/dead-letters?limit=0"))),
        ],
        ("get", "/api/openapi.json" | "/healthz" | "/readyz" | "/api/workers" | "/api/queues") => {
            vec![Call::Http(Box::new(http(method, path)))]
        }
        _ => panic!("no request exercises {method} {path}: add one"),
    }
}
