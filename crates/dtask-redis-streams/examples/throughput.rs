//! Throughput of `RedisStreamsQueue` beside raw Redis Streams, on the
//! local Redis: what the queue costs over the commands it is made of.
//!
//! ```text
//! cargo run --release -p dtask-redis-streams --example throughput [MESSAGES]
//! ```
//!
//! Prints (asserts nothing) messages per second for: raw `XADD` /
//! `XREADGROUP` / `XACK` awaited one by one and pipelined, then the queue
//! publishing and acking one at a time and with many in flight, and the
//! round trips to Redis each message cost (counted by the raw loops
//! themselves and by the queue's [`RedisStreamsStats`]). Every key it makes
//! is deleted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dtask_core::infra::{QueueConsumer, QueueMessage, QueuePublisher};
use dtask_core::{Codec, Format, TaskId};
use dtask_redis_streams::{RedisStreamsConfig, RedisStreamsQueue, RedisStreamsStats};
use futures::{StreamExt, TryStreamExt};
use redis::{AsyncCommands, Value};

const URL: &str = "redis://127.0.0.1:6379";
const IN_FLIGHT: usize = 64;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result<()> {
    let n: usize = std::env::args().nth(1).map_or(Ok(20_000), |arg| arg.parse())?;
    let prefix = format!("dtask-bench:{}:", uuid::Uuid::new_v4().simple());
    let client = redis::Client::open(URL)?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("Redis is not reachable at 127.0.0.1:6379: {e}"))?;
    println!(
        "{n} messages of ~{} payload bytes, one consumer, Redis at {URL}\n",
        payload(0).len()
    );
    let outcome = run(n, &prefix, &client).await;
    let keys: Vec<String> = conn.keys(format!("{prefix}*")).await?;
    if !keys.is_empty() {
        conn.del::<_, ()>(keys).await?;
    }
    outcome
}

async fn run(n: usize, prefix: &str, client: &redis::Client) -> Result<()> {
    println!(
        "{:<48} {:>10} {:>10} {:>12} {:>10}",
        "", "publish/s", "consume/s", "end-to-end/s", "trips/msg"
    );
    let raw = RawBench { client, prefix };
    report(
        n,
        "raw: XADD, XREADGROUP 100, XACK+XDEL, awaited",
        raw.run(n, 1, 100).await?,
    );
    report(n, "raw: pipelined by 1000", raw.run(n, 1000, 1000).await?);

    let config = RedisStreamsConfig::new(URL).with_key_prefix(prefix);
    let queue = RedisStreamsQueue::connect(config).await?;
    let before = queue.stats();
    report(
        n,
        "queue: one at a time (publish, then consume)",
        queue_sequential(&queue, n).await?.trips(&queue, before),
    );
    let before = queue.stats();
    report(
        n,
        "queue: 64 in flight (publish, then consume)",
        queue_concurrent(&queue, n).await?.trips(&queue, before),
    );
    let before = queue.stats();
    report(
        n,
        "queue: 64 in flight, producer and consumer live",
        queue_live(&queue, n).await?.trips(&queue, before),
    );
    println!(
        "\nqueue round trips per message: publish 1 (a script: XLEN check, XADD), read 1/{} (XREADGROUP COUNT), \
         ack 1 (a script: ownership check, XACK, XDEL), plus reclaims and renewals (rare); concurrent calls \
         share one multiplexed connection, which pipelines them.",
        queue.config().read_count
    );
    Ok(())
}

/// Three phases' durations, and the round trips they took.
struct Timings {
    publish: Duration,
    consume: Duration,
    total: Duration,
    round_trips: u64,
}

impl Timings {
    /// With the round trips `queue` counted since `before`.
    fn trips(mut self, queue: &RedisStreamsQueue, before: RedisStreamsStats) -> Self {
        self.round_trips = queue.stats().round_trips - before.round_trips;
        self
    }
}

fn report(n: usize, label: &str, timings: Timings) {
    let rate = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    println!(
        "{label:<48} {:>10.0} {:>10.0} {:>12.0} {:>10.3}",
        rate(timings.publish),
        rate(timings.consume),
        rate(timings.total),
        timings.round_trips as f64 / n as f64
    );
}

fn payload(n: usize) -> Vec<u8> {
    format!("{{\"n\":{n},\"name\":\"small message\"}}").into_bytes()
}

fn message(n: usize) -> QueueMessage {
    let payload = Codec::new(Format::Json)
        .encode(&serde_json::json!({ "n": n, "name": "small message" }))
        .expect("a small JSON value encodes");
    QueueMessage::new(TaskId::new(), "Bench", payload)
}

struct RawBench<'a> {
    client: &'a redis::Client,
    prefix: &'a str,
}

impl RawBench<'_> {
    /// Publishes in pipelines of `batch` XADDs, reads `count` entries per
    /// XREADGROUP, and acks them one pipelined XACK+XDEL at a time when
    /// `batch` is 1, all of a read's ids in one XACK+XDEL otherwise.
    async fn run(&self, n: usize, batch: usize, count: usize) -> Result<Timings> {
        let mut conn = self.client.get_multiplexed_async_connection().await?;
        let key = format!("{}raw-{}", self.prefix, uuid::Uuid::new_v4().simple());
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg("g")
            .arg("0")
            .arg("MKSTREAM")
            .exec_async(&mut conn)
            .await?;
        let mut round_trips = 0;
        let started = Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(batch) {
            let mut pipe = redis::pipe();
            for &i in chunk {
                pipe.cmd("XADD")
                    .arg(&key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(100_000)
                    .arg("*")
                    .arg("payload")
                    .arg(payload(i))
                    .ignore();
            }
            pipe.exec_async(&mut conn).await?;
            round_trips += 1;
        }
        let published = started.elapsed();
        let mut received = 0;
        while received < n {
            let reply: Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("c")
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(1000)
                .arg("STREAMS")
                .arg(&key)
                .arg(">")
                .query_async(&mut conn)
                .await?;
            round_trips += 1;
            let ids = entry_ids(reply);
            received += ids.len();
            let acks: Vec<&[Vec<u8>]> = if batch == 1 {
                ids.chunks(1).collect()
            } else {
                vec![&ids[..]]
            };
            for ids in acks.into_iter().filter(|ids| !ids.is_empty()) {
                let mut pipe = redis::pipe();
                pipe.cmd("XACK").arg(&key).arg("g").arg(ids).ignore();
                pipe.cmd("XDEL").arg(&key).arg(ids).ignore();
                pipe.exec_async(&mut conn).await?;
                round_trips += 1;
            }
        }
        let total = started.elapsed();
        Ok(Timings {
            publish: published,
            consume: total - published,
            total,
            round_trips,
        })
    }
}

/// The entry ids of an `XREADGROUP` reply.
fn entry_ids(reply: Value) -> Vec<Vec<u8>> {
    let Value::Array(streams) = reply else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for stream in streams {
        let Value::Array(mut pair) = stream else { continue };
        let Some(Value::Array(entries)) = pair.pop() else {
            continue;
        };
        for entry in entries {
            if let Value::Array(parts) = entry
                && let Some(Value::BulkString(id)) = parts.into_iter().next()
            {
                ids.push(id);
            }
        }
    }
    ids
}

fn queue_name() -> String {
    format!("bench-{}", uuid::Uuid::new_v4().simple())
}

async fn queue_sequential(queue: &RedisStreamsQueue, n: usize) -> Result<Timings> {
    let name = queue_name();
    let started = Instant::now();
    for i in 0..n {
        queue.publish(&name, message(i)).await?;
    }
    let published = started.elapsed();
    let mut deliveries = queue.consume(&name).await?;
    for _ in 0..n {
        let delivery = deliveries.next().await.ok_or("the stream ended")??;
        delivery.ack().await?;
    }
    let total = started.elapsed();
    Ok(Timings {
        publish: published,
        consume: total - published,
        total,
        round_trips: 0,
    })
}

async fn queue_concurrent(queue: &RedisStreamsQueue, n: usize) -> Result<Timings> {
    let name = queue_name();
    let started = Instant::now();
    publish_all(queue, &name, n).await?;
    let published = started.elapsed();
    consume_all(queue, &name, n).await?;
    let total = started.elapsed();
    Ok(Timings {
        publish: published,
        consume: total - published,
        total,
        round_trips: 0,
    })
}

async fn queue_live(queue: &RedisStreamsQueue, n: usize) -> Result<Timings> {
    let name = Arc::new(queue_name());
    let started = Instant::now();
    let consumer = {
        let (queue, name) = (queue.clone(), Arc::clone(&name));
        tokio::spawn(async move { consume_all(&queue, &name, n).await })
    };
    publish_all(queue, &name, n).await?;
    let published = started.elapsed();
    consumer.await??;
    let total = started.elapsed();
    Ok(Timings {
        publish: published,
        consume: total,
        total,
        round_trips: 0,
    })
}

async fn publish_all(queue: &RedisStreamsQueue, name: &str, n: usize) -> Result<()> {
    futures::stream::iter((0..n).map(|i| queue.publish(name, message(i))))
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<()>()
        .await?;
    Ok(())
}

/// Consumes `n` messages as a worker would: each acked by a task of its
/// own, at most [`IN_FLIGHT`] at once.
async fn consume_all(queue: &RedisStreamsQueue, name: &str, n: usize) -> Result<()> {
    let deliveries = queue.consume(name).await?;
    deliveries
        .take(n)
        .map(|delivery| async move { delivery?.ack().await })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<()>()
        .await?;
    Ok(())
}
