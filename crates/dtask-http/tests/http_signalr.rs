//! The SignalR hub at `/hubs/tasks`, frame by frame: negotiate, the
//! handshake, subscriptions and their snapshots, bad calls, pings and
//! timeouts, and credentials (header or `access_token` query). The
//! official client's test (`@microsoft/signalr` in Node) is
//! `apps/dtask-demo/tests/signalr_e2e.rs`.

mod support;

use std::time::Duration;

use dtask_http::{ApiConfig, Authenticator, JwtVerifier};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::tokens::{AUDIENCE, SECRET, tokens};
use support::{PATIENCE, TestServer, expect_problem};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const RS: char = '\u{1e}';

/// A hand-written hub client that shows every record.
struct Hub {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pending: std::collections::VecDeque<Value>,
    invocations: u32,
}

/// How a client presents its credentials.
#[derive(Clone, Copy)]
enum Credentials<'a> {
    None,
    Header(&'a str),
    Query(&'a str),
}

impl Hub {
    /// Negotiates and connects, without the handshake.
    async fn open(server: &TestServer, credentials: Credentials<'_>) -> Self {
        let token = negotiate(server, credentials).await["connectionToken"]
            .as_str()
            .unwrap()
            .to_owned();
        Self::open_with_id(server, credentials, Some(&token)).await.unwrap()
    }

    /// Connects with connection id `id`; the refusal's status if refused.
    async fn open_with_id(server: &TestServer, credentials: Credentials<'_>, id: Option<&str>) -> Result<Self, u16> {
        let mut url = format!("ws://{}/hubs/tasks", server.addr);
        let mut query = Vec::new();
        if let Some(id) = id {
            query.push(format!("id={id}"));
        }
        if let Credentials::Query(token) = credentials {
            query.push(format!("access_token={token}"));
        }
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        let mut request = url.into_client_request().unwrap();
        if let Credentials::Header(token) = credentials {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(Self {
                ws,
                pending: Default::default(),
                invocations: 0,
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
            Err(other) => panic!("connecting: {other}"),
        }
    }

    /// Negotiates, connects and completes the handshake.
    async fn connect(server: &TestServer, credentials: Credentials<'_>) -> Self {
        let mut hub = Self::open(server, credentials).await;
        hub.send_text(&format!("{{\"protocol\":\"json\",\"version\":1}}{RS}"))
            .await;
        assert_eq!(hub.next_record().await, json!({}), "the handshake is accepted");
        hub
    }

    async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    async fn send(&mut self, message: Value) {
        self.send_text(&format!("{message}{RS}")).await;
    }

    /// The next record, pings included; `Value::Null` once the socket
    /// closed.
    async fn next_record(&mut self) -> Value {
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(record) = self.pending.pop_front() {
                    return record;
                }
                match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let text = text.as_str();
                        assert!(text.ends_with(RS), "every frame ends a record: {text:?}");
                        for record in text.split_terminator(RS) {
                            self.pending.push_back(serde_json::from_str(record).unwrap());
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => return Value::Null,
                    Some(Ok(other)) => panic!("an unexpected frame: {other:?}"),
                    Some(Err(error)) => panic!("the socket failed: {error}"),
                }
            }
        })
        .await
        .expect("a record in time")
    }

    /// The next record that is not a ping.
    async fn next(&mut self) -> Value {
        loop {
            let record = self.next_record().await;
            if record["type"] != 6 {
                return record;
            }
        }
    }

    /// Calls `target` and returns its completion.
    async fn invoke(&mut self, target: &str, arguments: Value) -> Value {
        self.invocations += 1;
        let id = self.invocations.to_string();
        self.send(json!({ "type": 1, "invocationId": id, "target": target, "arguments": arguments }))
            .await;
        let completion = self.next().await;
        assert_eq!(completion["type"], 3, "a completion: {completion}");
        assert_eq!(completion["invocationId"], id.as_str());
        completion
    }
}

async fn negotiate(server: &TestServer, credentials: Credentials<'_>) -> Value {
    let mut request = server
        .client
        .post(server.url("/hubs/tasks/negotiate?negotiateVersion=1"));
    // Negotiate is a plain request: browsers send the header there too.
    if let Credentials::Header(token) | Credentials::Query(token) = credentials {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// The snapshot a client-method call carries, checking its target.
fn argument_of(record: &Value, target: &str) -> Value {
    assert_eq!(record["type"], 1, "an invocation: {record}");
    assert_eq!(record["target"], target, "{record}");
    assert!(
        record.get("invocationId").is_none(),
        "the server expects no answer: {record}"
    );
    let arguments = record["arguments"].as_array().unwrap();
    assert_eq!(arguments.len(), 1, "{record}");
    arguments[0].clone()
}

#[tokio::test]
async fn a_subscription_sends_the_current_snapshot_then_every_change_then_completes() {
    let server = TestServer::start().await;
    let id = server.submit_json("gate", json!({ "value": 1 })).await;
    server.wait_gate(&id).await;
    let (_, current) = server.get_json(&format!("/api/tasks/{id}")).await;

    let mut hub = Hub::connect(&server, Credentials::None).await;
    let done = hub.invoke("Subscribe", json!([id])).await;
    assert!(done.get("error").is_none(), "{done}");
    let first = argument_of(&hub.next().await, "TaskProgress");
    assert_eq!(first, current, "the current snapshot first");

    server.gate.open();
    let mut snapshots = vec![first];
    let completed = loop {
        let record = hub.next().await;
        if record["target"] == "TaskCompleted" {
            break argument_of(&record, "TaskCompleted");
        }
        snapshots.push(argument_of(&record, "TaskProgress"));
    };
    let revisions: Vec<u64> = snapshots.iter().map(|s| s["revision"].as_u64().unwrap()).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    assert!(snapshots.len() >= 3, "every change: {revisions:?}");
    assert_eq!(completed["status"], "completed");
    assert_eq!(
        &completed,
        snapshots.last().unwrap(),
        "the terminal snapshot is the last progress"
    );
    // The subscription ended; the connection lives on.
    let again = hub.invoke("Unsubscribe", json!([id])).await;
    assert!(again.get("error").is_none(), "{again}");
}

#[tokio::test]
async fn negotiate_offers_websockets_only_and_a_token_is_good_once() {
    let server = TestServer::start().await;
    let answer = negotiate(&server, Credentials::None).await;
    assert_eq!(answer["negotiateVersion"], 1);
    assert_eq!(
        answer["availableTransports"],
        json!([{ "transport": "WebSockets", "transferFormats": ["Text"] }])
    );
    let token = answer["connectionToken"].as_str().unwrap();
    assert_ne!(answer["connectionId"], answer["connectionToken"]);
    assert!(Hub::open_with_id(&server, Credentials::None, Some(token)).await.is_ok());
    assert_eq!(
        Hub::open_with_id(&server, Credentials::None, Some(token)).await.err(),
        Some(404),
        "a token is good for one connection"
    );
    assert_eq!(
        Hub::open_with_id(&server, Credentials::None, Some("made-up"))
            .await
            .err(),
        Some(404)
    );
    // A client that skips negotiation connects without an id.
    assert!(Hub::open_with_id(&server, Credentials::None, None).await.is_ok());

    let old = server
        .client
        .post(server.url("/hubs/tasks/negotiate"))
        .send()
        .await
        .unwrap();
    let old: Value = old.json().await.unwrap();
    assert_eq!(old["negotiateVersion"], 0);
    assert!(old.get("connectionToken").is_none(), "{old}");
    let id = old["connectionId"].as_str().unwrap();
    assert!(Hub::open_with_id(&server, Credentials::None, Some(id)).await.is_ok());

    // Long polling and server-sent events are refused.
    let polling = server.client.get(server.url("/hubs/tasks?id=x")).send().await.unwrap();
    expect_problem(polling, 400, "websockets-only").await;
    let sse = server
        .client
        .get(server.url("/hubs/tasks"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    expect_problem(sse, 400, "websockets-only").await;
    let bad = server
        .client
        .post(server.url("/hubs/tasks/negotiate?negotiateVersion=one"))
        .send()
        .await
        .unwrap();
    expect_problem(bad, 400, "invalid-request").await;
}

#[tokio::test]
async fn bad_calls_complete_with_errors_and_the_connection_lives_on() {
    let server = TestServer::start().await;
    let id = server.submit_json("echo", json!({ "text": "a" })).await;
    let end = server.wait_end(&id).await;
    let mut hub = Hub::connect(&server, Credentials::None).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    for (target, arguments, error) in [
        ("Subscribe", json!([unknown]), "no task"),
        ("Subscribe", json!(["not-a-uuid"]), "not a task id"),
        ("Subscribe", json!([]), "one argument"),
        ("Subscribe", json!([id, id]), "one argument"),
        ("Subscribe", json!([42]), "one argument"),
        ("Explode", json!([id]), "no method 'Explode'"),
    ] {
        let completion = hub.invoke(target, arguments.clone()).await;
        let message = completion["error"].as_str().unwrap_or_default();
        assert!(message.contains(error), "{target}{arguments}: {completion}");
    }
    hub.send(json!({ "type": 4, "invocationId": "s", "target": "Subscribe", "arguments": [id] }))
        .await;
    let stream = hub.next().await;
    assert_eq!(stream["invocationId"], "s");
    assert!(
        stream["error"].as_str().unwrap().contains("no streaming methods"),
        "{stream}"
    );
    // A call without an invocation id gets no completion: the snapshots
    // come first.
    hub.send(json!({ "type": 1, "target": "subscribe", "arguments": [id] }))
        .await;
    let only = argument_of(&hub.next().await, "TaskProgress");
    assert_eq!(only["revision"], end.revision);
    assert_eq!(argument_of(&hub.next().await, "TaskCompleted"), only);
}

#[tokio::test]
async fn records_may_share_and_split_frames() {
    let server = TestServer::start().await;
    let id = server.submit_json("echo", json!({ "text": "a" })).await;
    server.wait_end(&id).await;
    let mut hub = Hub::open(&server, Credentials::None).await;
    let call = json!({ "type": 1, "invocationId": "1", "target": "Subscribe", "arguments": [id] }).to_string();
    let (head, tail) = call.split_at(10);
    hub.send_text(&format!(
        "{{\"protocol\":\"json\",\"version\":1}}{RS}{{\"type\":6}}{RS}{head}"
    ))
    .await;
    hub.send_text(&format!("{tail}{RS}")).await;
    assert_eq!(hub.next().await, json!({}));
    assert_eq!(hub.next().await, json!({ "type": 3, "invocationId": "1" }));
    assert_eq!(hub.next().await["target"], "TaskProgress");
    assert_eq!(hub.next().await["target"], "TaskCompleted");
}

#[tokio::test]
async fn a_handshake_in_another_protocol_is_refused() {
    let server = TestServer::start().await;
    let mut hub = Hub::open(&server, Credentials::None).await;
    hub.send_text(&format!("{{\"protocol\":\"messagepack\",\"version\":1}}{RS}"))
        .await;
    let answer = hub.next_record().await;
    assert!(answer["error"].as_str().unwrap().contains("messagepack"), "{answer}");
    assert_eq!(hub.next_record().await, Value::Null, "then the socket closes");
}

#[tokio::test]
async fn a_message_outside_the_protocol_closes_with_an_error() {
    let server = TestServer::start().await;
    let mut hub = Hub::connect(&server, Credentials::None).await;
    hub.send_text(&format!("this is not JSON{RS}")).await;
    let close = hub.next().await;
    assert_eq!(close["type"], 7, "{close}");
    assert_eq!(close["allowReconnect"], false);
    assert!(close["error"].as_str().unwrap().contains("not valid"), "{close}");
    assert_eq!(hub.next_record().await, Value::Null);

    let mut hub = Hub::connect(&server, Credentials::None).await;
    hub.send_text(&"x".repeat(33 * 1024)).await;
    let close = hub.next().await;
    assert!(close["error"].as_str().unwrap().contains("larger than"), "{close}");
}

#[tokio::test]
async fn the_hub_pings_and_closes_a_silent_client() {
    let server = TestServer::with_config(ApiConfig {
        hub_keep_alive: Duration::from_millis(50),
        hub_client_timeout: Duration::from_millis(400),
        ..ApiConfig::default()
    })
    .await;
    let mut hub = Hub::connect(&server, Credentials::None).await;
    assert_eq!(hub.next_record().await, json!({ "type": 6 }), "a ping");
    // Pings from the client keep it open past the timeout...
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(800) {
        hub.send(json!({ "type": 6 })).await;
        assert_eq!(hub.next_record().await, json!({ "type": 6 }));
    }
    // ...and silence closes it.
    let close = hub.next().await;
    assert_eq!(close["type"], 7, "{close}");
    assert!(close["error"].as_str().unwrap().contains("sent nothing"), "{close}");
}

#[tokio::test]
async fn the_hub_takes_credentials_in_a_header_or_the_query_and_scopes_tasks_to_their_owner() {
    let verifier = JwtVerifier::hs256(SECRET.as_bytes()).unwrap().audience(AUDIENCE);
    let server = TestServer::with_auth(Authenticator::default().jwt(verifier), |b| b, |api| api).await;
    let (alice, bob) = (tokens().get("hs256"), tokens().get("hs256_bob"));
    let submitted = server
        .client
        .post(server.url("/api/tasks/echo?listening=signalr"))
        .bearer_auth(alice)
        .json(&json!({ "text": "mine" }))
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 202, "listening=signalr is accepted");
    let id = submitted.json::<Value>().await.unwrap()["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    server.wait_end(&id).await;

    let anonymous = server
        .client
        .post(server.url("/hubs/tasks/negotiate?negotiateVersion=1"))
        .send()
        .await
        .unwrap();
    expect_problem(anonymous, 401, "unauthenticated").await;
    assert_eq!(
        Hub::open_with_id(&server, Credentials::None, None).await.err(),
        Some(401)
    );
    assert_eq!(
        Hub::open_with_id(&server, Credentials::Query("not.a.token"), None)
            .await
            .err(),
        Some(401)
    );
    // A token negotiated by alice is not bob's to use.
    let token = negotiate(&server, Credentials::Header(alice)).await["connectionToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        Hub::open_with_id(&server, Credentials::Query(bob), Some(&token))
            .await
            .err(),
        Some(404)
    );

    // Alice, through the query as a browser sends it, follows her task.
    let mut hub = Hub::connect(&server, Credentials::Query(alice)).await;
    let done = hub.invoke("Subscribe", json!([id])).await;
    assert!(done.get("error").is_none(), "{done}");
    assert_eq!(argument_of(&hub.next().await, "TaskProgress")["status"], "completed");
    // Bob, through the header, meets it as a task that does not exist.
    let mut hub = Hub::connect(&server, Credentials::Header(bob)).await;
    let refused = hub.invoke("Subscribe", json!([id])).await;
    assert_eq!(refused["error"], format!("no task {id}"));
}

#[tokio::test]
async fn a_zero_keep_alive_pings_often_and_never_panics() {
    let server = TestServer::with_config(ApiConfig {
        hub_keep_alive: Duration::ZERO,
        ..ApiConfig::default()
    })
    .await;
    let mut hub = Hub::connect(&server, Credentials::None).await;
    assert_eq!(hub.next_record().await, json!({ "type": 6 }));
    let id = server.submit_json("echo", json!({ "text": "a" })).await;
    server.wait_end(&id).await;
    let done = hub.invoke("Subscribe", json!([id])).await;
    assert!(done.get("error").is_none(), "the connection still serves calls: {done}");
}
