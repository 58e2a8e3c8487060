//! Helpers shared by the integration tests: a connection to the local
//! RabbitMQ that fails loudly when it is down, unique names, raw lapin
//! access to look behind `AmqpQueue`, and cleanup.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dtask_amqp::{AmqpConfig, AmqpQueue, DEFAULT_URL};
use dtask_core::infra::{
    DeadLetter, DeadLetters, DeliveryStream, QueueConsumer, QueueDepth, QueueDepths, QueueMessage, QueuePublisher,
};
use dtask_core::{Codec, Format, Result, TaskId};
use lapin::options::BasicGetOptions;
use lapin::{Channel, Connection, ConnectionProperties};

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The broker's URL: `DTASK_AMQP_URL`, or the local RabbitMQ.
pub fn url() -> String {
    std::env::var("DTASK_AMQP_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The test configuration: the local broker, a connection named after the
/// test binary.
pub fn config() -> AmqpConfig {
    AmqpConfig::new(url()).with_connection_name("dtask-amqp-tests")
}

/// Connects with `config`, failing (never skipping) when RabbitMQ is down.
pub async fn connect_with(config: AmqpConfig) -> AmqpQueue {
    match AmqpQueue::connect(config).await {
        Ok(queue) => queue,
        Err(error) => {
            panic!("RabbitMQ is not reachable at 127.0.0.1:5672 (start it: `rabbitmq-server -detached`): {error}")
        }
    }
}

/// Connects with [`config`].
pub async fn connect() -> AmqpQueue {
    connect_with(config()).await
}

/// A raw lapin channel on a connection of its own, for looking behind
/// `AmqpQueue`.
pub async fn raw_channel() -> (Connection, Channel) {
    let connection = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ is not reachable at 127.0.0.1:5672: {e}"));
    let channel = connection.create_channel().await.expect("open a channel");
    (connection, channel)
}

/// Takes one message from `queue` (acking it), if there is one.
pub async fn get_one(channel: &Channel, queue: &str) -> Option<lapin::message::BasicGetMessage> {
    channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap_or_else(|e| panic!("basic.get on {queue}: {e}"))
}

/// Runs `rabbitmqctl` with `args` (it needs root here), failing the test
/// with its output when it fails.
pub fn rabbitmqctl(args: &[&str]) {
    let output = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `rabbitmqctl {args:?}` (is RabbitMQ installed here?): {e}"));
    assert!(
        output.status.success(),
        "`rabbitmqctl {args:?}` failed (it needs root): {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A raw consumer of `queue` that needs no acks.
pub async fn consume_raw(channel: &Channel, queue: &str) -> lapin::Consumer {
    let options = lapin::options::BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    channel
        .basic_consume(queue.into(), unique("raw").into(), options, Default::default())
        .await
        .unwrap_or_else(|e| panic!("basic.consume on {queue}: {e}"))
}

/// `prefix` and a random suffix.
pub fn unique(prefix: &str) -> String {
    format!("dtask-amqp-test-{prefix}-{}", uuid::Uuid::new_v4().simple())
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

/// An `AmqpQueue` that remembers every queue it was asked to use, so a
/// test can delete them at the end (the conformance suite names its own).
#[derive(Debug, Clone)]
pub struct RecordingQueue {
    pub inner: AmqpQueue,
    seen: Arc<Mutex<HashSet<String>>>,
}

impl RecordingQueue {
    pub fn new(inner: AmqpQueue) -> Self {
        Self {
            inner,
            seen: Arc::default(),
        }
    }

    fn record(&self, queue: &str) {
        self.seen.lock().unwrap().insert(queue.to_owned());
    }

    /// Deletes every queue used (and its dead-letter queue); returns how
    /// many queues that was.
    pub async fn delete_all(&self) -> usize {
        let queues: Vec<String> = self.seen.lock().unwrap().drain().collect();
        for queue in &queues {
            self.inner
                .delete(queue)
                .await
                .unwrap_or_else(|e| panic!("deleting {queue}: {e}"));
        }
        queues.len()
    }
}

#[async_trait]
impl QueuePublisher for RecordingQueue {
    async fn publish(&self, queue: &str, message: QueueMessage) -> Result<()> {
        self.record(queue);
        self.inner.publish(queue, message).await
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
impl QueueDepths for RecordingQueue {
    async fn depth(&self, queue: &str) -> Result<QueueDepth> {
        self.record(queue);
        self.inner.depth(queue).await
    }
}

#[async_trait]
impl DeadLetters for RecordingQueue {
    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        self.inner.dead_letters(queue, limit).await
    }

    async fn remove_dead_letter(&self, queue: &str, id: &str) -> Result<bool> {
        self.inner.remove_dead_letter(queue, id).await
    }
}
