//! Helpers shared by the integration tests: a connection to the local
//! RabbitMQ's AMQP 1.0 endpoint that fails loudly when it is down, unique
//! names, and cleanup of the queues a test used (through AMQP 0-9-1:
//! RabbitMQ 3.10 deletes no queue over AMQP 1.0).

#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dtask_amqp10::{Amqp10Config, Amqp10Queue, DEFAULT_URL, URL_ENV, dead_letter_queue};
use dtask_core::infra::{DeadLetter, DeadLetters, DeliveryStream, QueueConsumer, QueueMessage, QueuePublisher};
use dtask_core::{Codec, Format, Result, TaskId};

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The broker's URL: `DTASK_AMQP10_URL`, or the local RabbitMQ.
pub fn url() -> String {
    std::env::var(URL_ENV).unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The test configuration.
pub fn config() -> Amqp10Config {
    Amqp10Config::parse(&url()).expect("DTASK_AMQP10_URL parses")
}

/// Connects with `config`, failing (never skipping) when RabbitMQ's AMQP
/// 1.0 endpoint is down.
pub async fn connect_with(config: Amqp10Config) -> Amqp10Queue {
    match Amqp10Queue::connect(config).await {
        Ok(queue) => queue,
        Err(error) => panic!(
            "RabbitMQ's AMQP 1.0 endpoint is not reachable at {} (start RabbitMQ and run \
             `rabbitmq-plugins enable rabbitmq_amqp1_0`): {error}",
            url()
        ),
    }
}

/// Connects with [`config`].
pub async fn connect() -> Amqp10Queue {
    connect_with(config()).await
}

/// `prefix` and a random suffix.
pub fn unique(prefix: &str) -> String {
    format!("dtask-amqp10-test-{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A message with a small JSON payload carrying `n`.
pub fn message(n: usize) -> QueueMessage {
    let payload = Codec::new(Format::Json)
        .encode(&serde_json::json!({ "n": n }))
        .expect("encode a test payload");
    QueueMessage::new(TaskId::new(), "TestTask", payload)
}

/// Awaits `future` for at most [`PATIENCE`].
pub async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing after {PATIENCE:?}"))
}

/// Deletes `queues` and their dead-letter queues from the local RabbitMQ
/// (over AMQP 0-9-1); returns how many of the task queues existed.
pub async fn delete_queues(queues: &[String]) -> usize {
    let amqp_url = std::env::var("DTASK_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let connection = lapin::Connection::connect(&amqp_url, lapin::ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ (AMQP 0-9-1, for cleanup) is not reachable: {e}"));
    let channel = connection.create_channel().await.expect("a channel");
    let mut existed = 0;
    for queue in queues {
        for name in [queue.clone(), dead_letter_queue(queue)] {
            // A queue never declared answers 404 and closes the channel:
            // check passively on a channel of its own first.
            let probe = connection.create_channel().await.expect("a channel");
            let passive = lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            if probe
                .queue_declare(name.as_str().into(), passive, Default::default())
                .await
                .is_ok()
            {
                existed += usize::from(&name == queue);
                channel
                    .queue_delete(name.as_str().into(), Default::default())
                    .await
                    .unwrap_or_else(|e| panic!("deleting {name}: {e}"));
                let _ = probe.close(200, "probed".into()).await;
            }
        }
    }
    let _ = connection.close(200, "cleaned up".into()).await;
    existed
}

/// RabbitMQ's dead letters of `queue`'s backend.
pub fn dead_letters(queue: &Amqp10Queue) -> dtask_amqp10::Amqp10DeadLetters {
    queue.dead_letters().expect("RabbitMQ's dead letters can be read")
}

/// An `Amqp10Queue` that remembers every queue it was asked to use, so a
/// test can delete them at the end (the conformance suite names its own).
#[derive(Debug, Clone)]
pub struct RecordingQueue {
    pub inner: Amqp10Queue,
    seen: Arc<Mutex<HashSet<String>>>,
}

impl RecordingQueue {
    pub fn new(inner: Amqp10Queue) -> Self {
        Self {
            inner,
            seen: Arc::default(),
        }
    }

    fn record(&self, queue: &str) {
        self.seen.lock().unwrap().insert(queue.to_owned());
    }

    /// Deletes every queue used (and its dead-letter queue); returns how
    /// many of them existed.
    pub async fn delete_all(&self) -> usize {
        let queues: Vec<String> = self.seen.lock().unwrap().drain().collect();
        delete_queues(&queues).await
    }
}

#[async_trait]
impl QueuePublisher for RecordingQueue {
    async fn publish(&self, queue: &str, message: QueueMessage) -> Result<()> {
        self.record(queue);
        self.inner.publish(queue, message).await
    }

    async fn publish_many(&self, queue: &str, messages: Vec<QueueMessage>) -> Vec<Result<()>> {
        self.record(queue);
        self.inner.publish_many(queue, messages).await
    }
}

#[async_trait]
impl QueueConsumer for RecordingQueue {
    async fn consume(&self, queue: &str) -> Result<DeliveryStream> {
        self.record(queue);
        self.inner.consume(queue).await
    }
}

#[async_trait]
impl DeadLetters for RecordingQueue {
    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        self.record(queue);
        dead_letters(&self.inner).dead_letters(queue, limit).await
    }

    async fn remove_dead_letter(&self, queue: &str, id: &str) -> Result<bool> {
        dead_letters(&self.inner).remove_dead_letter(queue, id).await
    }
}
