//! A worker message read by another language: an API-only host with the
//! protobuf serializer publishes a CreateZipFromFiles to RabbitMQ, and
//! `tests/cross_language/read_worker_message.py` (Python, with PyPI's
//! `protobuf`, `grpcio-tools` and `pika`, and nothing of dtask but the
//! shipped .proto files) takes it from the queue, decodes it, acks it and
//! prints what it read. Every field it printed must equal what the Rust side
//! knows. The queue lives in a namespace of its own and is deleted at the end.
//!
//! Without python3, its packages or RabbitMQ the test fails when `CI=true`
//! and otherwise prints a notice and passes.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dtask::distributed::dtask_amqp::{AmqpConfig, AmqpQueue};
use dtask::infra::{NamespacedQueue, ObjectStore};
use dtask::memory::{
    MemoryIdempotencyStore, MemoryLock, MemoryObjectStore, MemoryProgressTracker, MemoryQueue, MemoryStateStore,
};
use dtask::prelude::*;
use dtask::{Format, Host, Infrastructure, Mode, SCHEMA_VERSION, SagaSnapshot, StepHost, StepStatus};
use dtask_demo::{CreateZipFromFiles, CreateZipRequest};
use futures::FutureExt;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const PIP_INSTALL: &str = "pip install protobuf grpcio-tools pika";
const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const FILES: [(&str, &[u8]); 2] = [("notes.txt", b"first file\n"), ("table.csv", b"a,b\n1,2\n")];
const ARCHIVE_NAME: &str = "bundle.zip";

fn amqp_url() -> String {
    std::env::var("DTASK_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

/// A prerequisite is missing: a failure in CI, a notice elsewhere.
fn missing(what: &str) {
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("{what}");
    }
    eprintln!("notice: cross_language test not run: {what}");
}

/// Whether python3 and the reader's packages are there; the reason if not.
fn python_ready() -> Result<(), String> {
    let output = std::process::Command::new("python3")
        .args(["-c", "import google.protobuf, grpc_tools.protoc, pika"])
        .output()
        .map_err(|error| format!("python3 cannot be run ({error}); install Python 3.11, then: {PIP_INSTALL}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "the Python packages of the cross-language reader are missing; run: {PIP_INSTALL}\n{}",
        String::from_utf8_lossy(&output.stderr)
    ))
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An API-only host: protobuf, `queue` as publisher, the rest in memory.
fn api_host(queue: NamespacedQueue<AmqpQueue>) -> Host {
    let unused_consumer = MemoryQueue::new(); // no worker runs here
    let infrastructure = Infrastructure {
        storage: Arc::new(MemoryObjectStore::new()) as Arc<dyn ObjectStore>,
        publisher: Arc::new(queue),
        consumer: Arc::new(unused_consumer),
        lock: Arc::new(MemoryLock::new()),
        progress: Arc::new(MemoryProgressTracker::new()),
        state: Arc::new(MemoryStateStore::new()),
        idempotency: Arc::new(MemoryIdempotencyStore::new()),
        dead_letters: None,
        workers: None,
        depths: None,
        cancellations: None,
        settlement: None,
        lock_with_state: None,
    };
    Host::builder()
        .mode(Mode::Distributed)
        .infrastructure(infrastructure)
        .serializer(Format::Protobuf)
        .run_workers(false)
        .register(CreateZipFromFiles)
        .build()
        .expect("the API host builds")
}

fn request() -> CreateZipRequest {
    CreateZipRequest {
        files: Files::from_files(
            FILES
                .iter()
                .map(|(name, bytes)| IncomingFile::from_bytes(*name, bytes.to_vec()))
                .collect(),
        ),
        output_file_name: Some(ARCHIVE_NAME.into()),
    }
}

/// Runs the Python reader on `queue`; its JSON output.
async fn read_with_python(queue: &str) -> Value {
    let script = manifest_dir().join("tests/cross_language/read_worker_message.py");
    let protos = manifest_dir().join("../../crates/dtask-proto/proto");
    let run = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(queue)
        .arg("--url")
        .arg(amqp_url())
        .arg("--proto-dir")
        .arg(&protos)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the Python reader ends within 2 minutes")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python reader failed ({}):\n{stderr}{stdout}",
        output.status
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("the reader printed no JSON object ({e}):\n{stdout}"))
}

/// The protobuf enum value name of a dtask enum: `TaskStatus::Queued` is
/// `TASK_STATUS_QUEUED`, `StepStatus::CompensationFailed` is
/// `STEP_STATUS_COMPENSATION_FAILED` (from the camelCase serde name).
fn proto_name(prefix: &str, value: impl Serialize) -> String {
    let camel = serde_json::to_value(value).expect("an enum serializes");
    let camel = camel.as_str().expect("a unit variant");
    let mut name = format!("{prefix}_");
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// Submits the task, runs the reader, and checks every field it printed.
async fn submit_and_read(queue: NamespacedQueue<AmqpQueue>, broker_queue: &str) {
    let host = api_host(queue);
    let before = OffsetDateTime::now_utc();
    let handle = host
        .submit::<CreateZipFromFiles>(request())
        .await
        .expect("the task is handed to RabbitMQ");
    let after = OffsetDateTime::now_utc();
    let task_id = handle.id();
    let progress = handle.progress().await.expect("the tracker has the task");
    let stored = host
        .infrastructure()
        .state
        .load(task_id)
        .await
        .expect("the state store answers")
        .expect("the hand-off saved a snapshot");
    let snapshot: SagaSnapshot<CreateZipFromFiles> = stored.payload.decode_state().expect("the snapshot decodes");
    assert_eq!(
        stored.payload.encoded().expect("an encoded snapshot").0,
        Format::Protobuf
    );

    let read = read_with_python(broker_queue).await;
    eprintln!("the Python reader printed: {read:#}");

    // The message's properties and headers.
    let message_id = read["properties"]["message_id"].as_str().expect("a message id");
    assert_eq!(read["queue"], broker_queue);
    assert_eq!(read["properties"]["content_type"], Format::Protobuf.content_type());
    assert_eq!(read["properties"]["delivery_mode"], 2);
    assert_eq!(read["headers"]["dtask-message-id"], message_id);
    assert_eq!(read["headers"]["dtask-task-id"], task_id.to_string());
    assert_eq!(read["headers"]["dtask-task-name"], "CreateZipFromFiles");
    assert_eq!(read["headers"]["dtask-format"], "protobuf");
    assert_eq!(read["headers"]["dtask-schema-version"], SCHEMA_VERSION.to_string());
    assert_eq!(read["header_schema_version"], SCHEMA_VERSION);
    assert_eq!(read["redelivered"], false);

    // The saga state: schema, progress, steps.
    assert_eq!(SCHEMA_VERSION, 1, "the reader understands schema version 1");
    assert_eq!(read["schema_version"], SCHEMA_VERSION);
    assert_eq!(read["task_id"], task_id.to_string());
    assert_eq!(read["task_name"], CreateZipFromFiles::definition().name);
    assert_eq!(progress.status, TaskStatus::Queued, "the hand-off state");
    assert_eq!(read["status"], proto_name("TASK_STATUS", progress.status));
    assert_eq!(read["total_steps"], progress.total_steps);
    assert_eq!(read["completed_steps"], progress.completed_steps);
    let steps = read["steps"].as_array().expect("a list of steps");
    assert_eq!(steps.len(), progress.steps.len());
    for (printed, known) in steps.iter().zip(&progress.steps) {
        assert_eq!(printed["name"], known.name);
        assert_eq!(printed["order"], known.order);
        assert_eq!(printed["host"], proto_name("STEP_HOST", known.host));
        assert_eq!(
            printed["status"],
            proto_name("STEP_STATUS", known.status),
            "{}",
            known.name
        );
        assert_eq!(printed["attempts"], known.attempts, "{}", known.name);
    }
    let expected_steps: Vec<(&str, StepHost, StepStatus)> = progress
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.host, s.status))
        .collect();
    assert_eq!(
        expected_steps,
        [
            ("UploadSourceFiles", StepHost::Api, StepStatus::Completed),
            ("CreateZipArchive", StepHost::Worker, StepStatus::Pending),
            ("UploadZip", StepHost::Worker, StepStatus::Pending),
        ]
    );

    // The nested request and step data, JSON.
    assert_eq!(read["encodings"]["request"], "ENCODING_JSON");
    assert_eq!(read["encodings"]["data"], "ENCODING_JSON");
    assert_eq!(read["encodings"]["response"], "ABSENT");
    assert_eq!(read["response"], Value::Null);
    assert_eq!(read["request"], serde_json::to_value(&*snapshot.request).expect("JSON"));
    assert_eq!(read["request"]["outputFileName"], ARCHIVE_NAME);
    assert_eq!(read["data"], serde_json::to_value(&snapshot.data).expect("JSON"));
    let uploaded = &read["data"]["uploadSourceFiles"];
    assert_eq!(uploaded["bucket"], "incoming-files");
    let objects = uploaded["objects"].as_array().expect("the stored objects");
    let printed_files: Vec<(&str, u64)> = objects
        .iter()
        .map(|o| (o["name"].as_str().expect("a name"), o["size"].as_u64().expect("a size")))
        .collect();
    let sent_files: Vec<(&str, u64)> = FILES.iter().map(|(name, bytes)| (*name, bytes.len() as u64)).collect();
    assert_eq!(printed_files, sent_files);
    for object in objects {
        let key = object["key"].as_str().expect("a key");
        assert!(
            key.starts_with(&task_id.to_string()),
            "{key} is under the task's prefix"
        );
    }

    // The deadline: the same instant, submit time plus the task's timeout.
    let deadline = read["deadline"].as_str().expect("an RFC 3339 deadline");
    let deadline = OffsetDateTime::parse(deadline, &Rfc3339).expect("RFC 3339");
    assert_eq!(deadline, snapshot.deadline);
    let timeout = CreateZipFromFiles::definition().timeout;
    assert!(
        before + timeout <= deadline && deadline <= after + timeout,
        "{deadline}"
    );

    host.shutdown().await;
}

#[tokio::test]
async fn a_python_consumer_reads_the_protobuf_worker_message_from_rabbitmq() {
    if let Err(reason) = python_ready() {
        return missing(&reason);
    }
    let config = AmqpConfig::new(amqp_url()).with_connect_timeout(Duration::from_secs(3));
    let amqp = match AmqpQueue::connect(config).await {
        Ok(amqp) => amqp,
        Err(error) => return missing(&format!("RabbitMQ is not reachable: {error}")),
    };
    let queue = NamespacedQueue::new(format!("dtask-xlang-{}", TaskId::new()), amqp.clone());
    let broker_queue = queue.queue_name(CreateZipFromFiles::definition().queue);
    amqp.declare(&broker_queue).await.expect("the test queue is declared");

    let checked = AssertUnwindSafe(submit_and_read(queue, &broker_queue))
        .catch_unwind()
        .await;
    let left = amqp.delete(&broker_queue).await;
    if let Err(panic) = checked {
        std::panic::resume_unwind(panic);
    }
    assert_eq!(
        left.expect("the test queue is deleted"),
        0,
        "the reader acked the message"
    );
}
