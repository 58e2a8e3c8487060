//! Observability across processes: an `api` and a `worker` process of the
//! demo binary on Redis Streams export their traces over OTLP/HTTP to a
//! receiver in this test, which decodes them with the official
//! OpenTelemetry protobuf types (`opentelemetry-proto`). A task submitted
//! with a W3C `traceparent` is one trace across both processes: the HTTP
//! span continues the caller's, the submit span is its child, the
//! worker's run span continues the submit span through the queue, and
//! each step attempt is a `DistributedTask.<Task>.<Step>` span with the
//! design's attributes and a `StepStarted` event. Both processes' metrics
//! pass `promtool check metrics` and count exactly the tasks run; the
//! worker's `/readyz` names each service with its latency. In this
//! process, a step that fails once and is retried shows as two attempt
//! spans, the first failed with its error, the second completed.

mod cluster;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use cluster::{Broker, Cluster, finish, write_file};
use dtask::TaskStatus;
use dtask::prelude::*;
use dtask::{Host, Mode};
use dtask_demo::client::{ApiClient, Submitted};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// The caller's trace: the task submitted with it must stay in it.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The spans received, with the `service.name` of the process that sent them.
#[derive(Default)]
struct Received {
    spans: Mutex<Vec<(String, Span)>>,
    arrived: Notify,
}

impl Received {
    fn of_trace(&self, trace_id: &[u8]) -> Vec<(String, Span)> {
        let spans = self.spans.lock().unwrap();
        spans.iter().filter(|(_, s)| s.trace_id == trace_id).cloned().collect()
    }

    /// Waits until `done` holds for the spans of `trace_id`.
    async fn wait_for(&self, trace_id: &[u8], done: impl Fn(&[(String, Span)]) -> bool) -> Vec<(String, Span)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let arrived = self.arrived.notified();
            let spans = self.of_trace(trace_id);
            if done(&spans) {
                return spans;
            }
            let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
            assert!(
                tokio::time::Instant::now() < deadline,
                "the trace is incomplete: {names:?}"
            );
            let _ = tokio::time::timeout_at(deadline, arrived).await;
        }
    }
}

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) on a free port.
async fn receiver() -> (String, Arc<Received>) {
    let received = Arc::new(Received::default());
    let state = Arc::clone(&received);
    let router = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| async move {
            let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
            let mut spans = state.spans.lock().unwrap();
            for resource_spans in request.resource_spans {
                let service = resource_spans
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                    .and_then(|a| a.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(Value::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for scope in resource_spans.scope_spans {
                    spans.extend(scope.spans.into_iter().map(|span| (service.clone(), span)));
                }
            }
            drop(spans);
            state.arrived.notify_waiters();
            (
                [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let endpoint = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (endpoint, received)
}

/// The last value of attribute `key` (a span records `step.status`
/// `Running` at its start, its final status at its end).
fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .rev()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> &'a str {
    match attribute(span, key) {
        Some(Value::StringValue(s)) => s,
        other => panic!("span {}: attribute {key} is {other:?}", span.name),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match attribute(span, key) {
        Some(Value::IntValue(n)) => *n,
        other => panic!("span {}: attribute {key} is {other:?}", span.name),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Submits a zip of `file` with the caller's `traceparent`.
async fn submit_traced(url: &str, file: &std::path::Path) -> Submitted {
    let bytes = std::fs::read(file).expect("the file");
    let part = reqwest::multipart::Part::bytes(bytes).file_name("traced.txt");
    let form = reqwest::multipart::Form::new()
        .text("listening", "sse")
        .part("files", part);
    let response = reqwest::Client::new()
        .post(format!("{url}/api/tasks/create-zip-from-files"))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .multipart(form)
        .send()
        .await
        .expect("the API answers");
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    response.json().await.expect("a submitted task")
}

/// The value of the sample `name{labels}` (labels as rendered), 0 when absent.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| {
            series.starts_with(&format!("{name}{{"))
                && labels
                    .iter()
                    .all(|(key, value)| series.contains(&format!("{key}=\"{value}\"")))
        })
        .map_or(0.0, |(_, value)| value.parse().expect("a number"))
}

/// `promtool check metrics` on `text`: Debian's `prometheus` package (which
/// `scripts/test` installs) checks the exposition format and its naming
/// conventions. Missing, it fails the run under CI and is skipped, loudly,
/// elsewhere.
fn promtool_accepts(text: &str, process: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("promtool is required under CI (apt-get install prometheus): {error}")
        }
        Err(error) => {
            eprintln!("SKIPPED promtool check of the {process}'s metrics: {error}");
            return;
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool refuses the {process}'s metrics:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    listener.local_addr().expect("an address").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_across_processes_and_metrics_that_count() {
    let (endpoint, received) = receiver().await;
    let cluster = Cluster::new(Broker::RedisStreams)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let (_api, url) = cluster.api();
    let metrics_address = free_address();
    let _worker = cluster.worker_with(&[("DTASK_METRICS_LISTEN", &metrics_address)]);
    let client = ApiClient::new(&url).expect("a client");
    let dir = tempfile::tempdir().expect("a directory");

    // Three tasks: one in the caller's trace, two in traces of their own.
    let traced_file = write_file(dir.path(), "traced.txt", b"traced\n");
    let traced = submit_traced(&url, &traced_file).await;
    let mut tasks = vec![traced];
    for i in 0..2 {
        let file = write_file(dir.path(), &format!("plain-{i}.txt"), format!("plain {i}\n").as_bytes());
        tasks.push(client.submit_zip(&[file], None).await.expect("submitted"));
    }
    for task in &tasks {
        assert_eq!(finish(&client, task).await.status, TaskStatus::Completed);
    }
    let progress = finish(&client, &tasks[0]).await;
    assert_eq!(
        progress.trace_id.as_deref(),
        Some(TRACE_ID),
        "the progress names the caller's trace"
    );

    // The trace, as both processes exported it.
    let trace_id = from_hex(TRACE_ID);
    let step = |name: &str| format!("DistributedTask.CreateZipFromFiles.{name}");
    let wanted = [
        "POST /api/tasks/create-zip-from-files".to_owned(),
        step("Submit"),
        step("UploadSourceFiles"),
        "DistributedTask.CreateZipFromFiles".to_owned(),
        step("CreateZipArchive"),
        step("UploadZip"),
    ];
    let spans = received
        .wait_for(&trace_id, |spans| {
            wanted.iter().all(|name| spans.iter().any(|(_, s)| &s.name == name))
        })
        .await;
    let find = |name: &str| -> (String, Span) {
        let found: Vec<_> = spans.iter().filter(|(_, s)| s.name == name).cloned().collect();
        assert_eq!(found.len(), 1, "one span {name}: {found:?}");
        found.into_iter().next().unwrap()
    };
    let (http_service, http) = find(&wanted[0]);
    let (submit_service, submit) = find(&wanted[1]);
    let (_, upload) = find(&wanted[2]);
    let (run_service, run) = find(&wanted[3]);
    let (archive_service, archive) = find(&wanted[4]);
    let (_, upload_zip) = find(&wanted[5]);
    assert_eq!(
        (http_service.as_str(), submit_service.as_str()),
        ("dtask-api", "dtask-api")
    );
    assert_eq!(
        (run_service.as_str(), archive_service.as_str()),
        ("dtask-worker", "dtask-worker")
    );

    // Parent links: caller → HTTP → submit → Api step; submit → (queue) →
    // run → Worker steps.
    assert_eq!(
        hex(&http.parent_span_id),
        CALLER_SPAN,
        "the HTTP span continues the caller's"
    );
    assert_eq!(http.kind, SpanKind::Server as i32);
    assert_eq!(submit.parent_span_id, http.span_id, "submit is a child of the request");
    assert_eq!(
        upload.parent_span_id, submit.span_id,
        "the Api step is a child of submit"
    );
    assert_eq!(
        run.parent_span_id, submit.span_id,
        "the worker continues the submit span"
    );
    assert_eq!(
        archive.parent_span_id, run.span_id,
        "the Worker step is a child of the run"
    );
    assert_eq!(upload_zip.parent_span_id, run.span_id);

    // The design's attributes, the kind, the StepStarted event.
    assert_eq!(archive.kind, SpanKind::Internal as i32);
    assert_eq!(text(&archive, "task.id"), tasks[0].task_id);
    assert_eq!(text(&archive, "task.name"), "CreateZipFromFiles");
    assert_eq!(text(&archive, "step.name"), "CreateZipArchive");
    assert_eq!(int(&archive, "step.order"), 2);
    assert_eq!(int(&archive, "step.attempt"), 1);
    assert_eq!(text(&archive, "step.status"), "Completed");
    assert!(!text(&archive, "step.host").is_empty());
    let started = archive
        .events
        .iter()
        .find(|e| e.name == "StepStarted")
        .expect("a StepStarted event");
    assert!(started.attributes.iter().any(|a| a.key == "step.attempt"));
    assert_eq!(text(&upload, "step.status"), "Completed");

    // The other tasks are traces of their own, each across both processes.
    for task in &tasks[1..] {
        let progress = finish(&client, task).await;
        let trace = from_hex(progress.trace_id.as_deref().expect("a trace id"));
        assert_ne!(trace, trace_id);
        received
            .wait_for(&trace, |spans| {
                spans
                    .iter()
                    .any(|(service, s)| service == "dtask-worker" && s.name == step("CreateZipArchive"))
                    && spans
                        .iter()
                        .any(|(service, s)| service == "dtask-api" && s.name == step("Submit"))
            })
            .await;
    }

    // Metrics: valid for promtool, and counting exactly these tasks.
    let http = reqwest::Client::new();
    let text_of = |url: String| {
        let request = http.get(url);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let api_metrics = text_of(format!("{url}/metrics")).await;
    let worker_metrics = text_of(format!("http://{metrics_address}/metrics")).await;
    promtool_accepts(&api_metrics, "API");
    promtool_accepts(&worker_metrics, "worker");
    let task = [("task", "CreateZipFromFiles")];
    assert_eq!(
        sample(&api_metrics, "dtask_tasks_submitted_total", &task),
        3.0,
        "{api_metrics}"
    );
    let submits = [
        ("method", "POST"),
        ("route", "/api/tasks/create-zip-from-files"),
        ("status", "202"),
    ];
    assert_eq!(sample(&api_metrics, "dtask_http_requests_total", &submits), 3.0);
    let completed = [("task", "CreateZipFromFiles"), ("status", "completed")];
    assert_eq!(
        sample(&worker_metrics, "dtask_tasks_ended_total", &completed),
        3.0,
        "{worker_metrics}"
    );
    let attempts = [("step", "CreateZipArchive"), ("outcome", "completed")];
    assert_eq!(sample(&worker_metrics, "dtask_step_attempts_total", &attempts), 3.0);
    assert_eq!(
        sample(&worker_metrics, "dtask_step_duration_seconds_count", &attempts),
        3.0
    );
    assert_eq!(sample(&worker_metrics, "dtask_tasks_in_flight", &[]), 0.0);
    for line in api_metrics.lines().chain(worker_metrics.lines()) {
        assert!(!line.contains(&tasks[0].task_id), "a task id as a label: {line}");
    }

    // The worker's readiness names each service with its latency.
    let ready: serde_json::Value = http
        .get(format!("http://{metrics_address}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    let services: HashMap<&str, &serde_json::Value> = ready["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| (s["service"].as_str().unwrap(), s))
        .collect();
    for name in [
        "storage",
        "queue publisher",
        "queue consumer",
        "lock",
        "progress",
        "state store",
    ] {
        let service = services.get(name).unwrap_or_else(|| panic!("{name} in {ready}"));
        assert_eq!(service["ok"], true);
        assert!(service["latencyMs"].as_f64().is_some_and(|ms| ms >= 0.0));
    }
    cluster.remove_queue().await;
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Flip {
    label: String,
}

/// Its one step fails its first attempt and succeeds on the second.
#[dtask::task(name = "FlakyOnce", request = Flip, response = String, queue = "flaky", mode = InProcess)]
#[custom_step(Attempt, order = 1, output = String)]
#[retry(Attempt, max_retries = 2, backoff = Constant, base_delay_ms = 10)]
#[derive(Debug, Default)]
struct FlakyOnce;

impl flaky_once::Steps for FlakyOnce {
    async fn attempt(&self, cx: &StepContext, input: flaky_once::AttemptInput<'_>) -> Result<String, StepError> {
        if cx.attempt() == 1 {
            return Err(StepError::transient("the first attempt fails"));
        }
        Ok(input.request.label.clone())
    }

    fn response(&self, outputs: flaky_once::Outputs<'_>) -> Result<String, StepError> {
        Ok(outputs.attempt.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_step_shows_two_attempt_spans() {
    let (endpoint, received) = receiver().await;
    // This test alone installs a subscriber in this process.
    let telemetry = dtask_telemetry::Telemetry::builder("retry-test")
        .otlp_endpoint(&endpoint)
        .init()
        .expect("telemetry");
    let host = Host::builder()
        .mode(Mode::InProcess)
        .register(FlakyOnce)
        .trace_bridge(dtask_telemetry::OtelBridge)
        .build()
        .expect("a host");
    let handle = host
        .submit::<FlakyOnce>(Flip { label: "ok".into() })
        .await
        .expect("submitted");
    let ended = handle.wait().await.expect("an outcome");
    assert_eq!(ended.progress.status, TaskStatus::Completed);
    telemetry.flush().expect("the spans are exported");
    let trace_id = from_hex(ended.progress.trace_id.as_deref().expect("a trace id"));
    let step = "DistributedTask.FlakyOnce.Attempt";
    let spans = received
        .wait_for(&trace_id, |spans| {
            spans.iter().filter(|(_, s)| s.name == step).count() == 2
        })
        .await;
    let mut attempts: Vec<&Span> = spans.iter().map(|(_, s)| s).filter(|s| s.name == step).collect();
    attempts.sort_by_key(|s| int(s, "step.attempt"));
    let (first, second) = (attempts[0], attempts[1]);
    assert_eq!((int(first, "step.attempt"), int(second, "step.attempt")), (1, 2));
    assert_eq!(text(first, "step.status"), "Failed");
    assert_eq!(text(first, "error.message"), "the first attempt fails");
    let error = opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32;
    assert_eq!(
        first.status.as_ref().map(|s| s.code),
        Some(error),
        "the failed attempt's span status"
    );
    assert_eq!(text(second, "step.status"), "Completed");
    assert_eq!(
        first.parent_span_id, second.parent_span_id,
        "both attempts are children of one run"
    );
    assert!(
        first.end_time_unix_nano <= second.start_time_unix_nano,
        "the retry follows the failure"
    );
    host.shutdown().await;
    telemetry.shutdown();
}
