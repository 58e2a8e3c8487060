//! Helpers shared by the integration tests: the local Redis, fresh key
//! prefixes, raw commands, and cleanup.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use dtask_core::infra::{Delivery, DeliveryStream, QueueMessage};
use dtask_core::{Codec, Format, TaskId};
use dtask_redis_streams::{RedisStreamsConfig, RedisStreamsQueue};
use futures::StreamExt;
use redis::aio::MultiplexedConnection;

/// The Redis every test uses.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(10);

fn unreachable(error: impl std::fmt::Display) -> ! {
    panic!("Redis is not reachable at 127.0.0.1:6379 (start redis-server): {error}")
}

/// A configuration whose key prefix no other run uses; dropping the
/// returned guard deletes every key under it.
pub fn config() -> (RedisStreamsConfig, Keys) {
    let prefix = format!("dtask-test:{}:", uuid::Uuid::new_v4().simple());
    let config = RedisStreamsConfig::new(REDIS_URL).with_key_prefix(prefix.clone());
    (config, Keys { prefix })
}

/// Connects, failing the test (never skipping it) when Redis is down.
pub async fn connect(config: RedisStreamsConfig) -> RedisStreamsQueue {
    RedisStreamsQueue::connect(config)
        .await
        .unwrap_or_else(|e| unreachable(e))
}

/// A raw connection, for what the queue does not do (or must not).
pub async fn raw() -> MultiplexedConnection {
    let client = redis::Client::open(REDIS_URL).unwrap_or_else(|e| unreachable(e));
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| unreachable(e))
}

/// Deletes the keys under its prefix when dropped (even when the test
/// panics).
pub struct Keys {
    pub prefix: String,
}

impl Drop for Keys {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(REDIS_URL) else {
            return;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
            return;
        };
        let keys: Vec<String> = match redis::cmd("KEYS").arg(format!("{}*", self.prefix)).query(&mut conn) {
            Ok(keys) => keys,
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _ = redis::cmd("DEL").arg(&keys).query::<()>(&mut conn);
        }
    }
}

/// A message whose JSON payload carries `n`.
pub fn message(n: u64) -> QueueMessage {
    let payload = Codec::new(Format::Json).encode(&serde_json::json!({ "n": n })).unwrap();
    QueueMessage::new(TaskId::new(), "TestTask", payload)
}

/// The `n` a [`message`] carries.
pub fn number(delivery: &Delivery) -> u64 {
    let value: serde_json::Value = delivery.message().payload.decode().unwrap();
    value["n"].as_u64().unwrap()
}

/// The next delivery, within [`PATIENCE`].
pub async fn next(stream: &mut DeliveryStream, what: &str) -> Delivery {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing after {PATIENCE:?}"))
        .unwrap_or_else(|| panic!("{what}: the stream ended"))
        .unwrap_or_else(|e| panic!("{what}: the stream failed: {e}"))
}

/// Asserts that nothing arrives on `stream` for `wait`.
pub async fn nothing_for(stream: &mut DeliveryStream, wait: Duration, what: &str) {
    if let Ok(item) = tokio::time::timeout(wait, stream.next()).await {
        panic!("{what}: unexpected {item:?}");
    }
}

/// The number of entries pending in `group` of stream `key`.
pub async fn pending(conn: &mut MultiplexedConnection, key: &str, group: &str) -> u64 {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(key)
        .arg(group)
        .query_async(conn)
        .await
        .unwrap();
    match reply {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(n)) => u64::try_from(*n).unwrap(),
            other => panic!("unexpected XPENDING summary: {other:?}"),
        },
        other => panic!("unexpected XPENDING reply: {other:?}"),
    }
}
