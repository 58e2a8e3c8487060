//! Sealed tasks against the real RabbitMQ, Redis Streams and Redis on
//! loopback, read raw by clients that are not dtask's: the RabbitMQ message
//! as `pika` takes it from the queue (`support/peek_amqp.py`), and every
//! key of the test's Redis prefix (saga state, progress, lock, the stream's
//! entries) as the `redis` crate reads it. No byte of either holds the
//! request's marker; the message sealed before a key rotation is opened by a
//! worker that seals with the new key.
//!
//! Needs Redis on 127.0.0.1:6379, RabbitMQ on 127.0.0.1:5672 and python3
//! with `pika` (scripts/test installs it).

#![cfg(feature = "distributed")]

#[path = "support/vault.rs"]
mod vault;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dtask::codec::KeyRing;
use dtask::distributed::dtask_amqp::{AmqpConfig, AmqpQueue};
use dtask::distributed::dtask_redis::RedisConfig;
use dtask::distributed::dtask_redis_streams::{RedisStreamsConfig, RedisStreamsQueue};
use dtask::infra::{DeadLetters, NamespacedQueue, QueueConsumer, QueuePublisher};
use dtask::memory::MemoryObjectStore;
use dtask::prelude::*;
use dtask::{Host, Infrastructure, Mode};
use vault::{Deposit, MARKER, Vault, contains, key_ring};

const REDIS_URL: &str = "redis://127.0.0.1:6379";
const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const PATIENCE: Duration = Duration::from_secs(30);
/// The first bytes of every sealed envelope.
const SEALED_MAGIC: &[u8] = &[0x00, b'D', b'T', b'S'];

#[derive(Clone, Copy)]
enum Broker {
    RabbitMq,
    RedisStreams,
}

fn unique() -> String {
    TaskId::new().to_string().replace('-', "")
}

async fn redis() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(REDIS_URL).expect("a Redis URL");
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis is not reachable at {REDIS_URL} (this test needs it): {e}"))
}

/// Every key under `prefix`.
async fn redis_keys(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Every value of every key under `prefix`, as raw byte strings.
async fn raw_redis(prefix: &str) -> Vec<(String, Vec<Vec<u8>>)> {
    let mut conn = redis().await;
    let keys = redis_keys(&mut conn, prefix).await;
    let mut dump = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
        let mut read = match kind.as_str() {
            "string" => redis::cmd("GET"),
            "hash" => redis::cmd("HGETALL"),
            "list" => {
                let mut cmd = redis::cmd("LRANGE");
                cmd.arg(&key).arg(0).arg(-1);
                cmd
            }
            "set" => redis::cmd("SMEMBERS"),
            "zset" => {
                let mut cmd = redis::cmd("ZRANGE");
                cmd.arg(&key).arg(0).arg(-1);
                cmd
            }
            "stream" => {
                let mut cmd = redis::cmd("XRANGE");
                cmd.arg(&key).arg("-").arg("+");
                cmd
            }
            "none" => continue, // expired between SCAN and TYPE
            other => panic!("key {key} has a type this test does not read: {other}"),
        };
        if matches!(kind.as_str(), "string" | "hash" | "set") {
            read.arg(&key);
        }
        let value: redis::Value = read.query_async(&mut conn).await.unwrap();
        let mut strings = Vec::new();
        flatten(&value, &mut strings);
        dump.push((key, strings));
    }
    dump
}

fn flatten(value: &redis::Value, out: &mut Vec<Vec<u8>>) {
    match value {
        redis::Value::BulkString(bytes) => out.push(bytes.clone()),
        redis::Value::SimpleString(text) => out.push(text.clone().into_bytes()),
        redis::Value::Array(items) | redis::Value::Set(items) => items.iter().for_each(|v| flatten(v, out)),
        redis::Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out);
        }),
        _ => {}
    }
}

async fn delete_redis(prefix: &str) {
    let mut conn = redis().await;
    let keys = redis_keys(&mut conn, prefix).await;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
    }
}

/// Asserts that no value under `prefix` shows the marker, and that the
/// task's saga state is sealed with `key_id`.
async fn assert_redis_sealed(prefix: &str, task_id: TaskId, key_id: &str) {
    let dump = raw_redis(prefix).await;
    assert!(!dump.is_empty(), "nothing under {prefix}");
    for (key, values) in &dump {
        for value in values {
            assert!(!contains(value, MARKER), "{key} shows the request in plaintext");
        }
    }
    let state_key = format!("{prefix}state:{{{task_id}}}");
    let (_, state) = dump.iter().find(|(key, _)| *key == state_key).unwrap_or_else(|| {
        panic!(
            "no {state_key} among {:?}",
            dump.iter().map(|(k, _)| k).collect::<Vec<_>>()
        )
    });
    assert!(
        state.iter().any(|value| KeyRing::sealed_with(value) == Some(key_id)),
        "the saga state is not sealed with {key_id}"
    );
}

/// The one message waiting in `queue`, read by pika and put back.
fn peek_with_pika(queue: &str) -> (Vec<u8>, serde_json::Value) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/peek_amqp.py");
    let output = std::process::Command::new("python3")
        .arg(&script)
        .arg(queue)
        .args(["--url", AMQP_URL])
        .output()
        .unwrap_or_else(|e| panic!("python3 cannot be run ({e}): install Python 3 and `pip install pika`"));
    assert!(
        output.status.success(),
        "peek_amqp.py failed (pip install pika?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    let body = read["body"].as_str().expect("a hex body");
    let body = (0..body.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&body[i..i + 2], 16).expect("hex"))
        .collect();
    (body, read["headers"].clone())
}

struct Queue {
    publisher: Arc<dyn QueuePublisher>,
    consumer: Arc<dyn QueueConsumer>,
    dead_letters: Arc<dyn DeadLetters>,
    amqp: Option<AmqpQueue>,
    streams: Option<RedisStreamsQueue>,
}

impl Queue {
    async fn connect(broker: Broker, namespace: &str, prefix: &str) -> Self {
        fn ends<Q>(namespace: &str, queue: Q) -> (Arc<dyn QueuePublisher>, Arc<dyn QueueConsumer>, Arc<dyn DeadLetters>)
        where
            Q: QueuePublisher + QueueConsumer + DeadLetters + Clone,
        {
            let queue = NamespacedQueue::new(namespace, queue);
            (Arc::new(queue.clone()), Arc::new(queue.clone()), Arc::new(queue))
        }
        match broker {
            Broker::RabbitMq => {
                let amqp = AmqpQueue::connect(AmqpConfig::new(AMQP_URL).with_connection_name("encryption-wire"))
                    .await
                    .unwrap_or_else(|e| panic!("RabbitMQ is not reachable (this test needs it): {e}"));
                let (publisher, consumer, dead_letters) = ends(namespace, amqp.clone());
                Self {
                    publisher,
                    consumer,
                    dead_letters,
                    amqp: Some(amqp),
                    streams: None,
                }
            }
            Broker::RedisStreams => {
                let config = RedisStreamsConfig::new(REDIS_URL)
                    .with_key_prefix(format!("{prefix}queue:"))
                    .with_block_timeout(Duration::from_millis(200));
                let streams = RedisStreamsQueue::connect(config).await.expect("Redis Streams");
                let (publisher, consumer, dead_letters) = ends(namespace, streams.clone());
                Self {
                    publisher,
                    consumer,
                    dead_letters,
                    amqp: None,
                    streams: Some(streams),
                }
            }
        }
    }

    async fn delete(&self, queue: &str) {
        if let Some(amqp) = &self.amqp {
            amqp.delete(queue).await.unwrap();
        }
        if let Some(streams) = &self.streams {
            streams.delete_queue(queue).await.unwrap();
        }
    }
}

async fn sealed_end_to_end(broker: Broker) {
    let id = unique();
    let prefix = format!("dtask-seal-{id}:");
    let namespace = format!("seal-{id}");
    let redis = RedisConfig::new(REDIS_URL)
        .with_key_prefix(&prefix)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("Redis is not reachable at {REDIS_URL} (this test needs it): {e}"));
    let queue = Queue::connect(broker, &namespace, &prefix).await;
    let infra = Infrastructure {
        storage: Arc::new(MemoryObjectStore::new()),
        publisher: Arc::clone(&queue.publisher),
        consumer: Arc::clone(&queue.consumer),
        lock: Arc::new(redis.lock()),
        progress: Arc::new(redis.progress()),
        state: Arc::new(redis.state()),
        idempotency: Arc::new(redis.idempotency()),
        dead_letters: Some(Arc::clone(&queue.dead_letters)),
        workers: None,
        depths: None,
        cancellations: Some(Arc::new(redis.progress())),
        settlement: Some(Arc::new(redis.settlement())),
        lock_with_state: redis.lock_with_state().map(|take| Arc::new(take) as _),
    };
    let host = |keys: &[&str], run_workers: bool| {
        Host::builder()
            .mode(Mode::Distributed)
            .infrastructure(infra.clone())
            .register(Vault)
            .encryption(key_ring(keys))
            .run_workers(run_workers)
            .build()
            .unwrap()
    };

    // The API seals with k1 (and already holds k2: step one of a rotation).
    let api = host(&["k1", "k2"], false);
    let handle = api.submit::<Vault>(Deposit::marked()).await.unwrap();
    let queue_name = format!("{namespace}.vault");
    if let Broker::RabbitMq = broker {
        let (body, headers) = peek_with_pika(&queue_name);
        assert!(body.starts_with(SEALED_MAGIC), "the message body is not sealed");
        assert_eq!(KeyRing::sealed_with(&body), Some("k1"));
        assert!(!contains(&body, MARKER), "the message body shows the request");
        assert!(!headers.to_string().contains(MARKER), "the headers show the request");
        assert_eq!(headers["dtask-task-id"], handle.id().to_string());
    }
    assert_redis_sealed(&prefix, handle.id(), "k1").await;

    // The worker seals with k2 and opens the message k1 sealed.
    let worker = host(&["k2", "k1"], true);
    let outcome = tokio::time::timeout(PATIENCE, handle.wait())
        .await
        .expect("the task ends")
        .unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed, "{:?}", outcome.progress.error);
    assert_eq!(outcome.response.expect("a response").account, MARKER);
    assert_redis_sealed(&prefix, handle.id(), "k2").await;
    assert!(
        queue.dead_letters.dead_letters("vault", 10).await.unwrap().is_empty(),
        "nothing is dead-lettered"
    );

    worker.shutdown().await;
    api.shutdown().await;
    queue.delete(&queue_name).await;
    delete_redis(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_and_redis_hold_no_plaintext_of_a_sealed_task() {
    sealed_end_to_end(Broker::RabbitMq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_and_redis_hold_no_plaintext_of_a_sealed_task() {
    sealed_end_to_end(Broker::RedisStreams).await;
}
