//! Authorization, route by route: the test walks the OpenAPI document and
//! calls every operation without credentials (`401`), as a task's owner,
//! as another subject and as an operator. Another subject meets a task it
//! did not submit as a task that does not exist (`404 task-not-found`,
//! never `403`); the owner and the operator reach it; the dead letters are
//! the operator's; `requires_role` refuses the others (`403`). Tokens are
//! PyJWT's (`support/tokens.py`).

mod support;

use std::collections::BTreeSet;

use dtask_http::{Authenticator, JwtVerifier};
use reqwest::Method;
use serde_json::{Value, json};
use support::TestServer;
use support::tasks::Privileged;
use support::tokens::{AUDIENCE, SECRET, tokens};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Nobody,
    /// `alice`, holding `uploader`: submits the tasks.
    Owner,
    /// `bob`, holding no role.
    Other,
    /// `ops`, holding `dtask-operator`.
    Operator,
}

impl Who {
    fn token(self) -> Option<&'static str> {
        match self {
            Self::Nobody => None,
            Self::Owner => Some(tokens().get("hs256")),
            Self::Other => Some(tokens().get("hs256_bob")),
            Self::Operator => Some(tokens().get("hs256_operator")),
        }
    }
}

struct Answer {
    status: u16,
    kind: String,
    body: Value,
}

async fn call(server: &TestServer, who: Who, method: Method, path: &str, body: Option<Value>) -> Answer {
    let mut request = server.client.request(method, server.url(path));
    if let Some(token) = who.token() {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let kind = body["type"]
        .as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    Answer { status, kind, body }
}

async fn server() -> TestServer {
    server_keeping(false).await
}

/// A server keeping a task history when `history` says so.
async fn server_keeping(history: bool) -> TestServer {
    let verifier = JwtVerifier::hs256(SECRET.as_bytes()).unwrap().audience(AUDIENCE);
    TestServer::with_auth(
        Authenticator::default().jwt(verifier),
        move |b| {
            let b = b.register(Privileged);
            if history {
                b.history(dtask::memory::MemoryTaskHistory::new())
            } else {
                b
            }
        },
        |api| api.task::<Privileged>(),
    )
    .await
}

/// Submits an Echo task as `who` and waits for its end; returns its id.
async fn echo(server: &TestServer, who: Who, text: &str) -> String {
    let answer = call(
        server,
        who,
        Method::POST,
        "/api/tasks/echo",
        Some(json!({ "text": text })),
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let id = answer.body["taskId"].as_str().unwrap().to_owned();
    server.wait_end(&id).await;
    id
}

#[tokio::test]
async fn every_operation_of_the_document_is_scoped_to_its_owner_and_the_operator() {
    let server = server_keeping(true).await;
    let task = echo(&server, Who::Owner, "mine").await;
    server.host.flush_history().await;
    let document = call(&server, Who::Nobody, Method::GET, "/api/openapi.json", None)
        .await
        .body;
    let mut covered = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let id = operation["operationId"].as_str().unwrap().to_owned();
            if operation["security"] == json!([]) {
                let answer = call(&server, Who::Nobody, method.clone(), path, None).await;
                assert_eq!(answer.status, 200, "{id} is open");
                covered.insert(id);
                continue;
            }
            let concrete = path.replace("{id}", &task);
            let body = path.starts_with("/api/tasks/").then(|| json!({ "text": "x" }));
            let body = if method == Method::POST && !path.contains("{id}") {
                body
            } else {
                None
            };
            let anonymous = call(&server, Who::Nobody, method.clone(), &concrete, body.clone()).await;
            assert_eq!(anonymous.status, 401, "{id} without credentials: {}", anonymous.body);
            for who in [Who::Owner, Who::Other, Who::Operator] {
                let answer = call(&server, who, method.clone(), &concrete, body.clone()).await;
                expect(&id, path, who, &answer);
            }
            covered.insert(id);
        }
    }
    let operations: BTreeSet<&str> = [
        "submitCreateZipFromFiles",
        "submitEcho",
        "submitGate",
        "submitPrivileged",
        "listTasks",
        "getTask",
        "cancelTask",
        "getTaskStatus",
        "streamTask",
        "watchTask",
        "getTaskResult",
        "downloadTaskFile",
        "retryTask",
        "getTaskHistory",
        "listDeadLetters",
        "listWorkers",
        "listQueues",
        "negotiateTaskHub",
        "connectTaskHub",
        "getOpenApi",
        "healthz",
        "readyz",
    ]
    .into();
    let covered: BTreeSet<&str> = covered.iter().map(String::as_str).collect();
    assert_eq!(covered, operations, "every operation of the document was tried");
}

/// What `who` must get from operation `id` on the owner's task.
fn expect(id: &str, path: &str, who: Who, answer: &Answer) {
    let context = format!("{id} as {who:?}: {} {}", answer.status, answer.body);
    assert_ne!(answer.status, 401, "{context}");
    if path.contains("{id}") {
        if who == Who::Other {
            assert_eq!(
                (answer.status, answer.kind.as_str()),
                (404, "task-not-found"),
                "{context}"
            );
        } else {
            assert_ne!(answer.kind, "task-not-found", "{context}");
            assert_ne!(answer.status, 403, "{context}");
        }
        return;
    }
    match id {
        "listDeadLetters" if who == Who::Operator => assert_eq!(answer.status, 200, "{context}"),
        "listDeadLetters" => assert_eq!((answer.status, answer.kind.as_str()), (403, "forbidden"), "{context}"),
        "listWorkers" if who == Who::Operator => {
            assert_eq!(answer.status, 200, "{context}");
            let workers = answer.body["items"].as_array().unwrap();
            assert_eq!(workers.len(), 1, "the host's own worker: {context}");
            assert_eq!(workers[0]["pid"], std::process::id(), "{context}");
        }
        "listWorkers" => assert_eq!((answer.status, answer.kind.as_str()), (403, "forbidden"), "{context}"),
        "listQueues" if who == Who::Operator => {
            assert_eq!(answer.status, 200, "{context}");
            let queues = answer.body["items"].as_array().unwrap();
            assert!(queues.iter().all(|q| q["waiting"].is_u64()), "{context}");
        }
        "listQueues" => assert_eq!((answer.status, answer.kind.as_str()), (403, "forbidden"), "{context}"),
        // The operator manages tasks; submitting a role-gated one takes the
        // role all the same.
        "submitPrivileged" if who != Who::Owner => {
            assert_eq!((answer.status, answer.kind.as_str()), (403, "forbidden"), "{context}");
            let detail = answer.body["detail"].as_str().unwrap();
            assert!(detail.contains("`uploader` or `admin`"), "{context}");
        }
        "listTasks" | "negotiateTaskHub" => assert_eq!(answer.status, 200, "{context}"),
        // Plain requests: the hub speaks WebSockets only (its scoping is
        // `http_signalr`'s).
        "connectTaskHub" => assert_eq!(
            (answer.status, answer.kind.as_str()),
            (400, "websockets-only"),
            "{context}"
        ),
        // Submissions: anything but an authorization refusal (a zip
        // without files is refused for that).
        _ => assert_ne!(answer.status, 403, "{context}"),
    }
}

#[tokio::test]
async fn each_subject_lists_its_own_tasks_and_the_operator_every_task() {
    let server = server().await;
    let alices = echo(&server, Who::Owner, "alice").await;
    let bobs = echo(&server, Who::Other, "bob").await;
    let listed = |who: Who| {
        let server = &server;
        async move {
            let page = call(server, who, Method::GET, "/api/tasks", None).await.body;
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["taskId"].as_str().unwrap().to_owned())
                .collect::<BTreeSet<_>>()
        }
    };
    assert_eq!(listed(Who::Owner).await, BTreeSet::from([alices.clone()]));
    assert_eq!(listed(Who::Other).await, BTreeSet::from([bobs.clone()]));
    assert_eq!(listed(Who::Operator).await, BTreeSet::from([alices.clone(), bobs]));
    let status = call(&server, Who::Owner, Method::GET, &format!("/api/tasks/{alices}"), None).await;
    assert_eq!(status.body["submitter"], "alice", "the task records its submitter");
}

#[tokio::test]
async fn an_idempotency_key_is_each_subjects_own() {
    let server = server().await;
    let submit = |who: Who| {
        let server = &server;
        async move {
            let response = server
                .client
                .post(server.url("/api/tasks/echo"))
                .bearer_auth(who.token().unwrap())
                .header("Idempotency-Key", "order-42")
                .json(&json!({ "text": "same body" }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202);
            let replayed = response.headers().contains_key("idempotent-replayed");
            let body: Value = response.json().await.unwrap();
            (body["taskId"].as_str().unwrap().to_owned(), replayed)
        }
    };
    let (alices, _) = submit(Who::Owner).await;
    let (again, replayed) = submit(Who::Owner).await;
    assert_eq!(
        (again.as_str(), replayed),
        (alices.as_str(), true),
        "alice's repeat is replayed"
    );
    let (bobs, replayed) = submit(Who::Other).await;
    assert_ne!(bobs, alices, "bob's key is his own: a task of his, not alice's id");
    assert!(!replayed);
}
